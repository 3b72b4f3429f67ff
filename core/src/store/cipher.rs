//! Encryption of outbox payloads at rest: ChaCha20-Poly1305 (ring) with a key the app keeps in
//! the platform keystore. Each entry's arguments and attachments are sealed together under a
//! fresh random nonce, bound to the entry's namespace and event name, so a sealed payload
//! cannot be moved to another event unnoticed.
//!
//! What stays readable in the file: namespaces, event names, timestamps, coalesce keys and
//! subscriptions (the routing the engine needs before anything is decrypted).

use std::fmt;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use ring::{
    aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    rand::{SecureRandom, SystemRandom},
};

/// Marks a sealed `args` value. Plain arguments are JSON arrays and start with `[`, so old
/// plain rows and sealed ones can share a file.
const SEALED: &str = "pl1:";

/// A 256-bit key for [`crate::OutboxConfig::encryption_key`]. Its `Debug` shows nothing and
/// the bytes are overwritten when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboxKey([u8; 32]);

impl OutboxKey {
    /// The key from 32 bytes (e.g. from the iOS Keychain or the Android Keystore).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key from 32 bytes in base64 or hex, as foreign code often holds it; the error
    /// never echoes the input.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| "not hex".to_owned())?
        } else {
            STANDARD.decode(text).map_err(|_| {
                "outbox key: expected 32 bytes as base64 or 64 hex digits".to_owned()
            })?
        };
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("outbox key: expected 32 bytes, got {}", b.len()))?;
        Ok(Self(bytes))
    }

    /// A fresh random key, for apps that generate one on first launch and store it; fails
    /// only if the operating system cannot provide randomness.
    pub fn generate() -> Result<Self, String> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| "the system random number generator failed".to_owned())?;
        Ok(Self(bytes))
    }

    /// The key as base64, to store it.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl fmt::Debug for OutboxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OutboxKey(<redacted>)")
    }
}

impl Drop for OutboxKey {
    fn drop(&mut self) {
        // Best effort against the key lingering in freed memory; `black_box` keeps the
        // compiler from dropping a write to memory that is about to be freed.
        self.0 = [0; 32];
        std::hint::black_box(&self.0);
    }
}

/// An entry's arguments (JSON array text) and attachments.
pub(crate) type Payload = (String, Vec<Vec<u8>>);

/// Seals and opens payloads with one key (its `Debug` names the algorithm, never the key).
#[derive(Debug)]
pub(crate) struct Cipher {
    key: LessSafeKey,
    /// Nonces are a random 96-bit start, drawn once per open, plus a counter in the last 64
    /// bits: unique for this key without a system call per entry. Two opens of one file
    /// repeat a nonce only if their first 32 bits match and their counter ranges overlap,
    /// about 2^-32 · n / 2^64 for n entries: never, in practice.
    nonce_base: [u8; NONCE_LEN],
    sealed: std::sync::atomic::AtomicU64,
}

/// A sealed payload that does not open (another key, or the file was altered), or the
/// system could not provide randomness to seal one.
#[derive(Debug)]
pub(crate) struct Unreadable;

impl Cipher {
    pub(crate) fn new(key: &OutboxKey) -> Result<Self, Unreadable> {
        // Cannot fail: the key is 32 bytes, what ChaCha20-Poly1305 takes.
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &key.0).map_err(|_| Unreadable)?;
        let mut nonce_base = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce_base)
            .map_err(|_| Unreadable)?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            nonce_base,
            sealed: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The next nonce: the base with the counter added to its last eight bytes.
    fn next_nonce(&self) -> [u8; NONCE_LEN] {
        let n = self
            .sealed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut nonce = self.nonce_base;
        let tail: [u8; 8] = nonce[4..].try_into().unwrap_or_default();
        nonce[4..].copy_from_slice(&u64::from_le_bytes(tail).wrapping_add(n).to_le_bytes());
        nonce
    }

    /// `args` and `attachments` sealed into one text value, bound to `context`; fails only
    /// for payloads over 256 GiB.
    pub(crate) fn seal(
        &self,
        context: &str,
        args: &str,
        attachments: &[Vec<u8>],
    ) -> Result<String, Unreadable> {
        let nonce = self.next_nonce();
        // nonce ‖ packed payload ‖ tag, sealed in place in one buffer.
        let payload: usize =
            4 + args.len() + attachments.iter().map(|a| 4 + a.len()).sum::<usize>();
        let mut buf = Vec::with_capacity(NONCE_LEN + payload + CHACHA20_POLY1305.tag_len());
        buf.extend_from_slice(&nonce);
        for part in std::iter::once(args.as_bytes()).chain(attachments.iter().map(Vec::as_slice)) {
            buf.extend_from_slice(&(part.len() as u32).to_le_bytes());
            buf.extend_from_slice(part);
        }
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf[NONCE_LEN..],
            )
            .map_err(|_| Unreadable)?;
        buf.extend_from_slice(tag.as_ref());
        let mut sealed = String::with_capacity(SEALED.len() + buf.len().div_ceil(3) * 4);
        sealed.push_str(SEALED);
        STANDARD.encode_string(&buf, &mut sealed);
        Ok(sealed)
    }

    /// The arguments and attachments in `stored`, or `None` when it is not sealed.
    pub(crate) fn open(&self, context: &str, stored: &str) -> Result<Option<Payload>, Unreadable> {
        let Some(b64) = stored.strip_prefix(SEALED) else {
            return Ok(None);
        };
        let mut sealed = STANDARD.decode(b64).map_err(|_| Unreadable)?;
        if sealed.len() < NONCE_LEN {
            return Err(Unreadable);
        }
        let mut body = sealed.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&sealed).map_err(|_| Unreadable)?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut body)
            .map_err(|_| Unreadable)?;
        let mut parts = super::blob::unpack(plain).into_iter();
        let args = parts.next().ok_or(Unreadable)?;
        let args = String::from_utf8(args).map_err(|_| Unreadable)?;
        Ok(Some((args, parts.collect())))
    }
}

/// Whether a stored `args` value is sealed (and so needs the key).
pub(crate) fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED)
}

/// What a store's key check holds: proof of the key without storing it.
pub(crate) const CHECK_CONTEXT: &str = "pulselink outbox key check";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_refuses_another_key_or_context() {
        let key = OutboxKey::generate().unwrap();
        let c = Cipher::new(&key).unwrap();
        let sealed = c
            .seal(
                "/\0metric:recorded",
                r#"[{"hr":142}]"#,
                &[vec![1, 2], vec![]],
            )
            .unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("142"));
        let (args, att) = c.open("/\0metric:recorded", &sealed).unwrap().unwrap();
        assert_eq!(args, r#"[{"hr":142}]"#);
        assert_eq!(att, vec![vec![1, 2], vec![]]);
        // Bound to its event; useless under another key; plain rows pass through.
        assert!(c.open("/\0other", &sealed).is_err());
        assert!(
            Cipher::new(&OutboxKey::generate().unwrap())
                .unwrap()
                .open("/\0metric:recorded", &sealed)
                .is_err()
        );
        assert!(c.open("x", "[1]").unwrap().is_none());
        // Two seals of the same payload differ (fresh nonces).
        let again = c.seal(
            "/\0metric:recorded",
            r#"[{"hr":142}]"#,
            &[vec![1, 2], vec![]],
        );
        assert_ne!(sealed, again.unwrap());
    }

    #[test]
    fn keys_parse_from_base64_or_hex_and_never_show() {
        let key = OutboxKey::generate().unwrap();
        assert_eq!(OutboxKey::parse(&key.to_base64()).unwrap(), key);
        let hex: String = key.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(OutboxKey::parse(&hex).unwrap(), key);
        assert!(OutboxKey::parse("c2hvcnQ=").unwrap_err().contains("got 5"));
        assert!(
            !OutboxKey::parse("not a key!")
                .unwrap_err()
                .contains("not a key")
        );
        assert_eq!(format!("{key:?}"), "OutboxKey(<redacted>)");
    }
}
