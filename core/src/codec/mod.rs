//! Wire codecs: pure functions from frames to packets and back. No I/O, no clocks, no panics:
//! every malformed input is a [`CodecError`].

pub mod engineio;
pub mod envelope;
pub(crate) mod intern;
pub mod json;
pub mod polling;
pub mod socketio;

/// Why a frame could not be decoded. The engine counts these and drops the connection; the
/// peer is broken or hostile, and nothing it sent after this can be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The frame was empty.
    #[error("empty packet")]
    Empty,
    /// The packet type is not one this protocol defines.
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    /// A binary packet's attachment count is missing, malformed or absurdly large.
    #[error("malformed binary attachment count")]
    BadAttachmentCount,
    /// The acknowledgement id is not a number that fits in 64 bits.
    #[error("malformed acknowledgement id")]
    BadAckId,
    /// The payload is not valid JSON.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// The JSON is valid but not what this packet type must carry.
    #[error("invalid payload: {0}")]
    InvalidPayload(&'static str),
    /// A binary frame arrived when no binary packet was waiting for one.
    #[error("binary frame without a binary packet")]
    UnexpectedBinary,
    /// A new packet started before the previous one received all its attachments.
    #[error("binary packet announced {expected} attachments but {received} arrived")]
    AttachmentMismatch {
        /// Attachments the header announced.
        expected: usize,
        /// Attachments that arrived.
        received: usize,
    },
    /// The JSON nests arrays and objects deeper than [`json::MAX_DEPTH`].
    #[error("JSON nested deeper than {0} levels")]
    TooDeep(usize),
    /// A placeholder refers to an attachment the packet does not have.
    #[error("binary placeholder refers to a missing attachment")]
    BadPlaceholder,
    /// The frame is larger than the negotiated maximum payload.
    #[error("packet of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Size of the frame.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A binary frame arrived where only text is allowed.
    #[error("unexpected frame: {0}")]
    UnexpectedFrame(&'static str),
}

#[cfg(test)]
mod robustness {
    //! Mutated and random input never panics the decoders (a cheap stand-in for the cargo-fuzz
    //! targets of the reliability suite). Seeded, so a failure reproduces.

    use super::{engineio, socketio::Decoder};

    const SEEDS: &[&str] = &[
        r#"0{"sid":"a","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#,
        r#"42["metric:recorded",{"v":1,"s":"x\"y"}]"#,
        r#"42/rooms/r1,17["a",[1,{"b":null}],true]"#,
        r#"451-["baz",{"_placeholder":true,"num":0}]"#,
        r#"461-/admin,15[{"_placeholder":true,"num":0}]"#,
        r#"43/admin,13["bar"]"#,
        r#"44{"message":"Authentication failed","data":{"code":401}}"#,
        r#"40/admin,{"sid":"oSO0","pid":"p"}"#,
        "41/admin,",
        "2probe",
    ];

    fn mutate(rng: &mut fastrand::Rng, seed: &str) -> Vec<u8> {
        let mut b = seed.as_bytes().to_vec();
        for _ in 0..rng.usize(1..4) {
            let len = b.len();
            match rng.u8(0..4) {
                0 if len > 0 => b[rng.usize(0..len)] = rng.u8(..),
                1 if len > 0 => b.truncate(rng.usize(0..len)),
                2 => b.insert(
                    rng.usize(0..=len),
                    *rng.choice(b"[]{}\",:-/0123456789\\".iter())
                        .unwrap_or(&b'x'),
                ),
                _ => {
                    let copy = b[..rng.usize(0..=len)].to_vec();
                    b.extend_from_slice(&copy);
                }
            }
        }
        b
    }

    #[test]
    fn mutated_and_random_frames_are_errors_not_panics() {
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let mut decoder = Decoder::new();
        let mut decoded = 0;
        for i in 0..200_000 {
            let bytes = if i % 10 == 0 {
                (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect()
            } else {
                let seed = SEEDS[rng.usize(0..SEEDS.len())];
                mutate(&mut rng, seed)
            };
            let Ok(text) = std::str::from_utf8(&bytes) else {
                // Transports hand over binary frames as attachments.
                let _ = decoder.feed_binary(bytes);
                continue;
            };
            if let Ok(engineio::Packet::Message(m)) = engineio::decode_text(text)
                && decoder.feed_text(m).is_ok_and(|p| p.is_some())
            {
                decoded += 1;
            }
        }
        // The mutations must leave plenty of valid packets, or this test proves nothing.
        assert!(decoded > 10_000, "only {decoded} packets decoded");
    }
}
