//! Certificates made for one test run (rcgen): a CA, server certificates it signs (valid,
//! expired, for another host) and self-signed ones, and a Node server presenting them.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};

use crate::{NodeServer, ServerOptions};

/// A certificate authority that exists only in this test run.
pub struct TestCa(CertifiedIssuer<'static, KeyPair>);

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Self(CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA"))
    }

    /// Its certificate, PEM: what a client adds to trust it.
    pub fn pem(&self) -> String {
        self.0.pem()
    }

    /// A server certificate for `names` (host names or IP addresses) signed by this CA,
    /// valid now or expired since 2021.
    pub fn issue(&self, names: &[&str], expired: bool) -> Leaf {
        Leaf::make(names, Some(&self.0), expired)
    }
}

/// A server certificate and its key.
pub struct Leaf {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

impl Leaf {
    /// A self-signed certificate for `names`, like a development server's.
    pub fn self_signed(names: &[&str]) -> Self {
        Self::make(names, None, false)
    }

    fn make(names: &[&str], ca: Option<&CertifiedIssuer<'static, KeyPair>>, expired: bool) -> Self {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("valid names");
        params
            .distinguished_name
            .push(DnType::CommonName, "pulselink test server");
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().expect("key");
        let cert = match ca {
            Some(ca) => params.signed_by(&key, ca),
            None => params.self_signed(&key),
        }
        .expect("certificate");
        Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// Writes the certificate and key into `dir` and starts the Node Socket.IO server
    /// presenting them (HTTPS and WSS only).
    pub async fn serve(&self, dir: &Path) -> NodeServer {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &self.cert_pem).expect("write cert.pem");
        std::fs::write(&key, &self.key_pem).expect("write key.pem");
        NodeServer::start_with(ServerOptions {
            tls: Some((cert, key)),
            ..Default::default()
        })
        .await
    }
}
