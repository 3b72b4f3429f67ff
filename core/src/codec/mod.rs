//! Wire codecs: pure functions from frames to packets and back. No I/O, no clocks, no panics:
//! every malformed input is a [`CodecError`].

pub mod engineio;
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
