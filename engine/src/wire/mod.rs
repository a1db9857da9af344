//! The wire protocol: frames on the control stream, their codec, and the numbers that go
//! with them (message types, refuse and disconnect reasons, QUIC close codes, limits).
//!
//! `docs/PROTOCOL.md` describes the same layout for implementers in other languages; the
//! constants here are the normative values.
//!
//! Every frame is a 5-byte header followed by a body:
//!
//! ```text
//! +--------+--------------------------------+=================+
//! | type   | body length (u32, big-endian)  | body ...        |
//! | 1 byte | 4 bytes                        | length bytes    |
//! +--------+--------------------------------+=================+
//! ```
//!
//! Strings in bodies are a u16 big-endian byte length followed by UTF-8.
//!
//! Messages are encoded with [`Message::encode`] and decoded with a [`FrameDecoder`], the
//! one decoder: it takes the chunks a stream delivers and hands out whole messages.
//!
//! # Layout
//! - `frame`: [`FrameType`], [`FrameHeader`] and the DATA header ([`data_header`]).
//! - `reason`: [`RefuseReason`] and [`DisconnectReason`].
//! - [`close_code`]: the QUIC application close codes.
//! - `error`: [`ProtocolError`], what is wrong with bytes from a peer.
//! - `message`: [`Message`] with [`Connect`] and [`Welcome`], its encoder and the parser of
//!   one frame's body.
//! - `decoder`: [`FrameDecoder`], which cuts a stream's chunks into frames.

pub mod close_code;
mod decoder;
mod error;
mod frame;
mod message;
mod reason;

pub use self::decoder::FrameDecoder;
pub use self::error::ProtocolError;
pub use self::frame::{data_header, encode_data_header, FrameHeader, FrameType};
pub use self::message::{Connect, Message, Welcome};
pub use self::reason::{DisconnectReason, RefuseReason};

/// The ALPN protocol id every link negotiates.
pub const ALPN: &[u8] = b"peergraph/1";
/// The protocol version carried in CONNECT.
pub const PROTOCOL_VERSION: u8 = 1;
/// Bytes in a frame header (type + length).
pub const FRAME_HEADER_LEN: usize = 5;
/// The largest application payload one SendData may carry: 1 MiB. Larger payloads are
/// refused with `E_INVALIDARG` before anything is queued. One MiB keeps a single frame's
/// buffering small next to the stream's flow-control window while amortising the 21-byte
/// header to nothing.
pub const MAX_DATA_LEN: usize = 1024 * 1024;
/// Bytes before the payload in a DATA body (the data type GUID).
pub const DATA_PREFIX_LEN: usize = 16;
/// A DATA frame's bytes before its payload: the frame header and the type GUID.
pub const DATA_HEADER_LEN: usize = FRAME_HEADER_LEN + DATA_PREFIX_LEN;
/// The largest body of a control frame (CONNECT, WELCOME, REFUSE, DISCONNECT): three
/// 256-character ids in UTF-8 (at most 4 bytes a character) fit well within it.
pub const MAX_CONTROL_BODY_LEN: usize = 4096;
/// The largest body of a DATA frame.
pub const MAX_DATA_BODY_LEN: usize = DATA_PREFIX_LEN + MAX_DATA_LEN;
/// The longest id on the wire, in bytes (256 characters of at most 4 UTF-8 bytes each).
pub const MAX_WIRE_STRING_LEN: usize = 1024;
/// The length of a membership proof (an HMAC-SHA256); a proof field is either empty (the
/// graph has no secret) or exactly this long.
pub const PROOF_LEN: usize = 32;
