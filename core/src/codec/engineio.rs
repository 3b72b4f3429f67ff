//! Engine.IO protocol v4 packets: the framing layer under Socket.IO.
//!
//! Pure functions only: nothing here does I/O, so every branch is unit-tested with the packet
//! examples of the official protocol document. Over WebSocket one frame carries one packet; a
//! text frame starts with the packet type digit, a binary frame is a whole binary message.

use std::time::Duration;

use serde::Deserialize;

use super::CodecError;

/// The Engine.IO protocol revision this codec speaks (the `EIO=4` query parameter).
pub const PROTOCOL_VERSION: u8 = 4;

/// The handshake the server sends in its `open` packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// Engine.IO session id; carried by polling requests and by the upgrade.
    pub sid: String,
    /// Transports the server lets this session upgrade to.
    pub upgrades: Vec<String>,
    /// How often the server pings.
    pub ping_interval: Duration,
    /// How long the server waits for a pong (and the client for the next ping) beyond the interval.
    pub ping_timeout: Duration,
    /// The largest payload the server accepts in one packet or polling batch, in bytes.
    pub max_payload: usize,
}

impl Handshake {
    /// How long the link may stay silent before it is declared dead: the next ping is due after
    /// `ping_interval` and the server allows `ping_timeout` on top of it.
    pub fn heartbeat_deadline(&self) -> Duration {
        self.ping_interval + self.ping_timeout
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawHandshake {
    sid: String,
    #[serde(default)]
    upgrades: Vec<String>,
    ping_interval: u64,
    ping_timeout: u64,
    #[serde(default = "default_max_payload")]
    max_payload: usize,
}

fn default_max_payload() -> usize {
    1_000_000
}

/// One decoded Engine.IO packet. Text data borrows from the frame it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `0{...}`: session opened.
    Open(Handshake),
    /// `1`: the server closes the session.
    Close,
    /// `2` or `2probe`: heartbeat (or upgrade probe) from the server.
    Ping(&'a str),
    /// `3` or `3probe`: answer to a ping.
    Pong(&'a str),
    /// `4...`: a text message for the layer above.
    Message(&'a str),
    /// A binary frame: a binary message for the layer above.
    Binary(&'a [u8]),
    /// `5`: transport upgrade completed.
    Upgrade,
    /// `6`: no operation (used to flush a pending poll during upgrade).
    Noop,
}

/// Decodes one text frame.
pub fn decode_text(frame: &str) -> Result<Packet<'_>, CodecError> {
    let Some(kind) = frame.chars().next() else {
        return Err(CodecError::Empty);
    };
    let data = &frame[kind.len_utf8()..];
    match kind {
        '0' => {
            let raw: RawHandshake = serde_json::from_str(data)
                .map_err(|e| CodecError::InvalidJson(format!("open packet: {e}")))?;
            Ok(Packet::Open(Handshake {
                sid: raw.sid,
                upgrades: raw.upgrades,
                ping_interval: Duration::from_millis(raw.ping_interval),
                ping_timeout: Duration::from_millis(raw.ping_timeout),
                max_payload: raw.max_payload,
            }))
        }
        '1' => Ok(Packet::Close),
        '2' => Ok(Packet::Ping(data)),
        '3' => Ok(Packet::Pong(data)),
        '4' => Ok(Packet::Message(data)),
        '5' => Ok(Packet::Upgrade),
        '6' => Ok(Packet::Noop),
        other => Err(CodecError::UnknownType(other)),
    }
}

/// Encodes a text message packet: `4` followed by what `encode` writes (the layer above's
/// packet), built in one buffer so the packet is never copied. `capacity` is a size hint.
pub fn encode_message(capacity: usize, encode: impl FnOnce(&mut String)) -> String {
    let mut out = String::with_capacity(capacity + 1);
    out.push('4');
    encode(&mut out);
    out
}

/// The pong that answers a ping carrying `data` (empty for a heartbeat, `probe` for a probe).
pub fn encode_pong(data: &str) -> String {
    format!("3{data}")
}

/// Checks a packet of `len` bytes against the negotiated maximum payload: the server closes
/// the whole session on a larger one, so it is refused before it is written.
pub fn check_size(len: usize, max: usize) -> Result<(), CodecError> {
    if len > max {
        Err(CodecError::TooLarge { len, max })
    } else {
        Ok(())
    }
}

/// The ping a client sends to probe a new transport during an upgrade.
pub const PING_PROBE: &str = "2probe";
/// The packet that completes an upgrade.
pub const UPGRADE: &str = "5";
/// The packet a client sends to close the session.
pub const CLOSE: &str = "1";

#[cfg(test)]
mod tests {
    use super::*;

    // Examples from the Engine.IO v4 protocol document.
    #[test]
    fn decodes_open_handshake() {
        let p = decode_text(
            r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#,
        )
        .unwrap();
        let Packet::Open(h) = p else {
            panic!("not open: {p:?}")
        };
        assert_eq!(h.sid, "lv_VI97HAXpY6yYWAAAC");
        assert_eq!(h.upgrades, vec!["websocket"]);
        assert_eq!(h.ping_interval, Duration::from_secs(25));
        assert_eq!(h.ping_timeout, Duration::from_secs(20));
        assert_eq!(h.max_payload, 1_000_000);
        assert_eq!(h.heartbeat_deadline(), Duration::from_secs(45));
    }

    #[test]
    fn decodes_every_packet_type() {
        assert_eq!(decode_text("1").unwrap(), Packet::Close);
        assert_eq!(decode_text("2").unwrap(), Packet::Ping(""));
        assert_eq!(decode_text("2probe").unwrap(), Packet::Ping("probe"));
        assert_eq!(decode_text("3probe").unwrap(), Packet::Pong("probe"));
        assert_eq!(decode_text("4hello").unwrap(), Packet::Message("hello"));
        assert_eq!(decode_text("4€").unwrap(), Packet::Message("€"));
        assert_eq!(decode_text("5").unwrap(), Packet::Upgrade);
        assert_eq!(decode_text("6").unwrap(), Packet::Noop);
    }

    #[test]
    fn rejects_malformed_frames() {
        assert_eq!(decode_text(""), Err(CodecError::Empty));
        assert_eq!(decode_text("7"), Err(CodecError::UnknownType('7')));
        assert_eq!(decode_text("é4"), Err(CodecError::UnknownType('é')));
        assert!(matches!(decode_text("0{"), Err(CodecError::InvalidJson(_))));
        assert!(matches!(
            decode_text(r#"0{"sid":"x"}"#),
            Err(CodecError::InvalidJson(_))
        ));
    }

    #[test]
    fn checks_the_payload_limit() {
        assert_eq!(check_size(10, 10), Ok(()));
        assert_eq!(
            check_size(11, 10),
            Err(CodecError::TooLarge { len: 11, max: 10 })
        );
    }

    #[test]
    fn encodes_client_packets() {
        assert_eq!(encode_message(8, |s| s.push_str("2[\"a\"]")), "42[\"a\"]");
        assert_eq!(encode_pong(""), "3");
        assert_eq!(encode_pong("probe"), "3probe");
    }
}
