//! Engine.IO v4 HTTP long-polling payloads: several packets in one HTTP body.
//!
//! Packets are joined with the record separator `\x1e`; a binary packet travels as `b`
//! followed by its base64 encoding. Pure functions: the polling transport does the I/O.

use base64::{Engine as _, engine::general_purpose::STANDARD};

use super::CodecError;

/// Separates packets in a polling payload.
pub const SEPARATOR: char = '\x1e';

/// One packet of a payload, as a WebSocket frame would carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A text packet (`4hello`, `2`, `6`, ...).
    Text(&'a str),
    /// A binary packet, decoded from base64.
    Binary(Vec<u8>),
}

/// Splits a payload into its packets.
pub fn decode_payload(body: &str) -> Result<Vec<Piece<'_>>, CodecError> {
    body.split(SEPARATOR)
        .map(|packet| match packet.strip_prefix('b') {
            Some(b64) => STANDARD.decode(b64).map(Piece::Binary).map_err(|_| {
                CodecError::InvalidPayload("invalid base64 in a binary polling packet")
            }),
            None if packet.is_empty() => Err(CodecError::Empty),
            None => Ok(Piece::Text(packet)),
        })
        .collect()
}

/// Appends one packet to a payload being built.
pub fn push_packet(payload: &mut String, packet: &Piece<'_>) {
    if !payload.is_empty() {
        payload.push(SEPARATOR);
    }
    match packet {
        Piece::Text(t) => payload.push_str(t),
        Piece::Binary(b) => {
            payload.push('b');
            STANDARD.encode_string(b, payload);
        }
    }
}

/// The encoded length `packet` adds to a payload (separator included when not first).
pub fn encoded_len(packet: &Piece<'_>, first: bool) -> usize {
    let body = match packet {
        Piece::Text(t) => t.len(),
        Piece::Binary(b) => 1 + b.len().div_ceil(3) * 4,
    };
    body + usize::from(!first)
}

/// Engine.IO's error code for a request whose session id the server does not know.
const UNKNOWN_SID: u64 = 1;

/// Whether an HTTP error body is Engine.IO's "Session ID unknown" (`{"code":1,…}`): the
/// server that answered never opened this session — behind a load balancer without sticky
/// sessions, another node did — or has already closed it.
pub fn is_unknown_session(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Refusal {
        code: u64,
    }
    serde_json::from_slice::<Refusal>(body).is_ok_and(|r| r.code == UNKNOWN_SID)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_unknown_session_refusal_and_nothing_else() {
        assert!(is_unknown_session(
            br#"{"code":1,"message":"Session ID unknown"}"#
        ));
        assert!(!is_unknown_session(
            br#"{"code":3,"message":"Bad request"}"#
        ));
        assert!(!is_unknown_session(b"Bad Gateway"));
        assert!(!is_unknown_session(b""));
    }

    #[test]
    fn payloads_from_the_protocol_document() {
        // https://github.com/socketio/engine.io-protocol (v4, "Packet encoding" / polling).
        assert_eq!(
            decode_payload("4hello\x1e4€").unwrap(),
            vec![Piece::Text("4hello"), Piece::Text("4€")]
        );
        assert_eq!(
            decode_payload("4€\x1ebAQIDBA==").unwrap(),
            vec![Piece::Text("4€"), Piece::Binary(vec![1, 2, 3, 4])]
        );
        assert_eq!(decode_payload("6").unwrap(), vec![Piece::Text("6")]);
    }

    #[test]
    fn encoding_round_trips_and_predicts_its_length() {
        let packets = [
            Piece::Text("4hello"),
            Piece::Binary(vec![1, 2, 3, 4, 5]),
            Piece::Text("2"),
        ];
        let mut payload = String::new();
        let mut predicted = 0;
        for (i, p) in packets.iter().enumerate() {
            predicted += encoded_len(p, i == 0);
            push_packet(&mut payload, p);
        }
        assert_eq!(payload.len(), predicted);
        assert_eq!(decode_payload(&payload).unwrap(), packets);
    }

    #[test]
    fn malformed_payloads_are_errors() {
        assert_eq!(decode_payload(""), Err(CodecError::Empty));
        assert_eq!(decode_payload("4a\x1e\x1e4b"), Err(CodecError::Empty));
        assert!(matches!(
            decode_payload("b!!!"),
            Err(CodecError::InvalidPayload(_))
        ));
    }
}
