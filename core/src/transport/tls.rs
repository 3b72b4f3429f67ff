//! TLS for `wss://` and `https://`: rustls, certificate verification always on, the webpki
//! (Mozilla) roots unless the app says otherwise, extra CAs for private PKI, and optional
//! public-key pinning.
//!
//! There is deliberately no switch to turn verification off: a self-signed development
//! server is trusted by adding its certificate as a CA, which keeps hostname and validity
//! checks on.

use std::sync::{Arc, LazyLock};

use ring::digest;
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};

use crate::error::Error;

/// Certificate trust for `wss://` and `https://`. Verification is always on; these options
/// only choose what counts as trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// Extra CA certificates, PEM (each string may hold several `BEGIN CERTIFICATE` blocks):
    /// a company CA, or a development server's self-signed certificate.
    pub ca_pem: Vec<String>,
    /// Trust the built-in webpki (Mozilla) roots as well. Turn off to trust only `ca_pem`
    /// (private PKI).
    pub builtin_roots: bool,
    /// Public-key pins, `sha256/<base64 of the SHA-256 of a SubjectPublicKeyInfo>` (the
    /// format of OkHttp and HPKP). When any are set, a server is accepted only if, after full
    /// verification, the leaf or an intermediate it presents has one of these keys. Pin a
    /// backup key too, or a key rotation locks every installed app out.
    pub pins: Vec<String>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self {
            ca_pem: Vec::new(),
            builtin_roots: true,
            pins: Vec::new(),
        }
    }
}

/// The prefix of a pin, as in OkHttp's `CertificatePinner` and HPKP.
const PIN_PREFIX: &str = "sha256/";

/// The rustls configuration for the default options, built once per process.
static DEFAULT: LazyLock<Result<Arc<ClientConfig>, String>> =
    LazyLock::new(|| build(&TlsOptions::default()));

/// The rustls client configuration `options` describe, or what is wrong with them (naming
/// the field, never echoing a certificate).
pub(crate) fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>, String> {
    if *options == TlsOptions::default() {
        return DEFAULT.clone();
    }
    build(options)
}

fn build(options: &TlsOptions) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    if options.builtin_roots {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    for (i, pem) in options.ca_pem.iter().enumerate() {
        let mut found = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("tls ca_pem[{i}]: unreadable PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("tls ca_pem[{i}]: not a usable CA certificate: {e}"))?;
            found += 1;
        }
        if found == 0 {
            return Err(format!(
                "tls ca_pem[{i}]: no \"BEGIN CERTIFICATE\" block found"
            ));
        }
    }
    if roots.is_empty() {
        return Err(
            "tls: no trust anchors (builtin_roots is off and ca_pem is empty): nothing could be verified"
                .into(),
        );
    }
    let pins = options
        .pins
        .iter()
        .enumerate()
        .map(|(i, p)| parse_pin(p).ok_or_else(|| format!("tls pins[{i}]: expected \"sha256/\" followed by the base64 SHA-256 of a SubjectPublicKeyInfo, got {p:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("tls: {e}"))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let config = if pins.is_empty() {
        builder.with_webpki_verifier(webpki)
    } else {
        builder
            .dangerous() // not dangerous: the pinning verifier runs the full webpki check first
            .with_custom_certificate_verifier(Arc::new(Pinned { webpki, pins }))
    };
    Ok(Arc::new(config.with_no_client_auth()))
}

/// `sha256/<base64>` as the 32 bytes it names.
fn parse_pin(pin: &str) -> Option<[u8; 32]> {
    use base64::Engine as _;
    let b64 = pin.strip_prefix(PIN_PREFIX)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    bytes.try_into().ok()
}

/// The pin of a certificate: SHA-256 of its DER SubjectPublicKeyInfo (`None` if the
/// certificate cannot be parsed).
fn spki_sha256(cert: &CertificateDer<'_>) -> Option<[u8; 32]> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    let spki = parsed.subject_public_key_info();
    digest::digest(&digest::SHA256, spki.as_ref())
        .as_ref()
        .try_into()
        .ok()
}

/// The pin string of a DER certificate, `sha256/<base64>`: what to put in
/// [`TlsOptions::pins`] to pin that certificate's key.
pub fn certificate_pin(cert_der: &[u8]) -> Option<String> {
    use base64::Engine as _;
    let hash = spki_sha256(&CertificateDer::from(cert_der))?;
    Some(format!(
        "{PIN_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    ))
}

/// The pin of every certificate in `pem` (one or more `BEGIN CERTIFICATE` blocks), in order:
/// how to compute pins from the server's certificate file (`pulselink pin cert.pem`).
pub fn certificate_pins(pem: &str) -> Result<Vec<String>, Error> {
    let bad = |m: String| Error::InvalidArgs(m);
    let pins = CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|cert| {
            let cert = cert.map_err(|e| bad(format!("unreadable PEM: {e}")))?;
            certificate_pin(&cert).ok_or_else(|| bad("not an X.509 certificate".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if pins.is_empty() {
        return Err(bad("no \"BEGIN CERTIFICATE\" block found".into()));
    }
    Ok(pins)
}

/// Full webpki verification (chain to a trusted root, hostname, validity), then at least one
/// presented certificate (leaf or intermediate) must carry a pinned key. Pinning a key rather
/// than a certificate survives renewals that keep the key.
#[derive(Debug)]
struct Pinned {
    webpki: Arc<WebPkiServerVerifier>,
    pins: Vec<[u8; 32]>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let pinned = std::iter::once(end_entity)
            .chain(intermediates)
            .filter_map(spki_sha256)
            .any(|hash| self.pins.contains(&hash));
        if pinned {
            Ok(verified)
        } else {
            Err(rustls::Error::General(
                "certificate pin mismatch: no certificate the server presented has a pinned key"
                    .into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOT_PEM: &str = "hello";

    #[test]
    fn default_options_build_once() {
        let a = client_config(&TlsOptions::default()).unwrap();
        let b = client_config(&TlsOptions::default()).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn bad_options_name_the_field() {
        let no_pem = TlsOptions {
            ca_pem: vec![NOT_PEM.into()],
            ..Default::default()
        };
        assert!(client_config(&no_pem).unwrap_err().contains("ca_pem[0]"));

        let no_roots = TlsOptions {
            builtin_roots: false,
            ..Default::default()
        };
        assert!(
            client_config(&no_roots)
                .unwrap_err()
                .contains("no trust anchors")
        );

        for pin in ["AAAA", "sha256/not base64!", "sha256/AAAA", "sha1/AAAA"] {
            let bad_pin = TlsOptions {
                pins: vec![pin.into()],
                ..Default::default()
            };
            let err = client_config(&bad_pin).unwrap_err();
            assert!(err.contains("pins[0]"), "{pin}: {err}");
        }
        let good_pin = TlsOptions {
            pins: vec![format!("sha256/{}", "A".repeat(43) + "=")],
            ..Default::default()
        };
        client_config(&good_pin).unwrap();
    }

    #[test]
    fn pins_of_unparseable_certificates_are_errors() {
        assert_eq!(certificate_pin(b"not a certificate"), None);
        assert!(certificate_pins(NOT_PEM).is_err());
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(certificate_pins(garbage).is_err());
    }
}
