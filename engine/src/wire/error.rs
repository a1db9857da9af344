//! What can be wrong with bytes received from a peer.

use thiserror::Error;

use super::FrameType;

/// What is wrong with bytes received from a peer. Any of these on an established link, or
/// at an accepting node before WELCOME, closes the link with
/// [`close_code::PROTOCOL_ERROR`](super::close_code::PROTOCOL_ERROR); a connecting node whose
/// handshake reply is malformed fails the attempt with `PEER_E_CONNECTION_FAILED` and closes
/// with [`close_code::REFUSED`](super::close_code::REFUSED).
#[derive(Clone, PartialEq, Eq, Debug, Error)]
pub enum ProtocolError {
    /// The frame type byte is not one this protocol defines.
    #[error("unknown frame type {0:#04x}")]
    UnknownFrameType(u8),
    /// The body length is over the limit for the frame's type.
    #[error("frame body of {len} bytes exceeds the limit of {max}")]
    FrameTooLong {
        /// The length the header claimed.
        len: usize,
        /// The limit for that frame type.
        max: usize,
    },
    /// The body ended before a field did.
    #[error("frame body ends before its fields do")]
    Truncated,
    /// The body has bytes after its last field.
    #[error("frame body has {0} bytes past its last field")]
    TrailingBytes(usize),
    /// A string is not UTF-8 or not a valid id.
    #[error("invalid id string")]
    InvalidString,
    /// A connection id is zero.
    #[error("connection id is zero")]
    ZeroConnectionId,
    /// A reason byte is not one this protocol defines.
    #[error("unknown reason {0}")]
    UnknownReason(u8),
    /// A membership proof is neither empty nor [`PROOF_LEN`](super::PROOF_LEN) bytes.
    #[error("membership proof of {0} bytes")]
    InvalidProof(usize),
    /// A flags byte has bits this protocol does not define.
    #[error("unknown flag bits {0:#04x}")]
    UnknownFlags(u8),
    /// A frame arrived where the protocol does not allow it (for example DATA before
    /// CONNECT, or a second CONNECT).
    #[error("unexpected {0:?} frame")]
    Unexpected(FrameType),
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame")]
    EndOfStreamInFrame,
}
