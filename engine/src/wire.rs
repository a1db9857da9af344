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

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::ids::{ConnectionId, DataType, GraphId, PeerId};

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

/// Frame types.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum FrameType {
    /// Opens a connection: the first frame the connecting node sends.
    Connect = 0x01,
    /// Accepts a CONNECT.
    Welcome = 0x02,
    /// Refuses a CONNECT, with a reason.
    Refuse = 0x03,
    /// Ends a connection, with a reason: the sender sends no DATA after it (in a
    /// simultaneous close, DATA the peer sent before reading it still arrives).
    Disconnect = 0x04,
    /// Application data (the protocol's PT2PT): a type GUID and bytes.
    Data = 0x05,
}

impl FrameType {
    fn from_byte(byte: u8) -> Result<Self, ProtocolError> {
        Ok(match byte {
            0x01 => FrameType::Connect,
            0x02 => FrameType::Welcome,
            0x03 => FrameType::Refuse,
            0x04 => FrameType::Disconnect,
            0x05 => FrameType::Data,
            other => return Err(ProtocolError::UnknownFrameType(other)),
        })
    }

    /// The largest body this type may have.
    pub const fn max_body_len(self) -> usize {
        match self {
            FrameType::Data => MAX_DATA_BODY_LEN,
            _ => MAX_CONTROL_BODY_LEN,
        }
    }
}

/// Why a node refuses a CONNECT. 1 to 4 are the reference's REFUSE reasons; the rest are
/// this protocol's own. `docs/PROTOCOL.md` lists the result code each maps to at the
/// connecting node.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum RefuseReason {
    /// The node has too many connections (never used for direct connections).
    Busy = 1,
    /// A connection between the two nodes already exists.
    AlreadyConnected = 2,
    /// The connection id is already in use at the accepting node.
    DuplicateConnection = 3,
    /// The node does not accept direct connections (it has not registered for
    /// DIRECT_CONNECTION events).
    DirectConnectionDisallowed = 4,
    /// The node is not a member of the graph named in CONNECT.
    WrongGraph = 0x80,
    /// The node is not the peer named in CONNECT.
    WrongPeer = 0x81,
    /// The CONNECT's protocol version is not supported.
    UnsupportedVersion = 0x82,
    /// The node is at its connection limit (per graph or per remote node).
    LimitReached = 0x83,
    /// The connecting node did not prove membership of the graph (wrong or missing
    /// membership proof, or a key that is not on the graph's allowed list).
    NotAuthorized = 0x84,
    /// The connecting node's key is allowed, but for another peer id.
    KeyMismatch = 0x85,
}

impl RefuseReason {
    fn from_byte(byte: u8) -> Result<Self, ProtocolError> {
        Ok(match byte {
            1 => RefuseReason::Busy,
            2 => RefuseReason::AlreadyConnected,
            3 => RefuseReason::DuplicateConnection,
            4 => RefuseReason::DirectConnectionDisallowed,
            0x80 => RefuseReason::WrongGraph,
            0x81 => RefuseReason::WrongPeer,
            0x82 => RefuseReason::UnsupportedVersion,
            0x83 => RefuseReason::LimitReached,
            0x84 => RefuseReason::NotAuthorized,
            0x85 => RefuseReason::KeyMismatch,
            other => return Err(ProtocolError::UnknownReason(other)),
        })
    }
}

/// Why a node ends a connection (the reference's DISCONNECT reasons).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum DisconnectReason {
    /// The node is leaving the graph. Defined for completeness: a node that leaves closes
    /// its links with close code LEAVING at once instead of sending this.
    Leaving = 1,
    /// The connection was the least useful one.
    LeastUseful = 2,
    /// The application closed the connection (CloseDirectConnection).
    AppDisconnect = 3,
}

impl DisconnectReason {
    fn from_byte(byte: u8) -> Result<Self, ProtocolError> {
        Ok(match byte {
            1 => DisconnectReason::Leaving,
            2 => DisconnectReason::LeastUseful,
            3 => DisconnectReason::AppDisconnect,
            other => return Err(ProtocolError::UnknownReason(other)),
        })
    }
}

/// QUIC application close codes (the `error_code` of CONNECTION_CLOSE).
pub mod close_code {
    /// An orderly close after DISCONNECT with reason APP_DISCONNECT.
    pub const APP_DISCONNECT: u32 = 0x01;
    /// An orderly close because the node leaves (graph closed or engine shut down).
    pub const LEAVING: u32 = 0x02;
    /// The peer sent something this protocol does not allow.
    pub const PROTOCOL_ERROR: u32 = 0x10;
    /// The CONNECT was refused (a REFUSE frame was sent first when possible).
    pub const REFUSED: u32 = 0x11;
    /// The handshake (CONNECT / WELCOME) did not finish in time.
    pub const HANDSHAKE_TIMEOUT: u32 = 0x12;
    /// The local connection handler failed (for example, it panicked).
    pub const INTERNAL_ERROR: u32 = 0x13;
    /// A close did not complete within the close timeout.
    pub const CLOSE_TIMEOUT: u32 = 0x14;
}

/// The first frame of a connection.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Connect {
    /// The protocol version ([`PROTOCOL_VERSION`]).
    pub version: u8,
    /// True for a direct connection (the reference's D bit); false for a neighbor.
    pub direct: bool,
    /// The connection id the connecting node chose; the accepting node uses it too.
    pub connection_id: ConnectionId,
    /// The graph the connecting node belongs to.
    pub graph_id: GraphId,
    /// The connecting node's peer id.
    pub source_peer_id: PeerId,
    /// The peer id the connecting node expects to reach.
    pub target_peer_id: PeerId,
    /// The connecting node's membership proof: empty, or [`PROOF_LEN`] bytes.
    pub proof: Bytes,
}

/// The answer to an accepted CONNECT.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Welcome {
    /// The connection id from CONNECT.
    pub connection_id: ConnectionId,
    /// The accepting node's graph id.
    pub graph_id: GraphId,
    /// The accepting node's peer id.
    pub peer_id: PeerId,
    /// The accepting node's membership proof: empty, or [`PROOF_LEN`] bytes.
    pub proof: Bytes,
}

/// A decoded frame.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Message {
    /// CONNECT.
    Connect(Connect),
    /// WELCOME.
    Welcome(Welcome),
    /// REFUSE.
    Refuse(RefuseReason),
    /// DISCONNECT.
    Disconnect(DisconnectReason),
    /// DATA.
    Data {
        /// The data type GUID.
        data_type: DataType,
        /// The payload (at most [`MAX_DATA_LEN`] bytes).
        payload: Bytes,
    },
}

/// What is wrong with bytes received from a peer. Any of these on an established link, or
/// at an accepting node before WELCOME, closes the link with [`close_code::PROTOCOL_ERROR`];
/// a connecting node whose handshake reply is malformed fails the attempt with
/// `PEER_E_CONNECTION_FAILED` and closes with [`close_code::REFUSED`].
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
    /// A membership proof is neither empty nor [`PROOF_LEN`] bytes.
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

/// A parsed frame header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FrameHeader {
    /// The frame's type.
    pub frame_type: FrameType,
    /// The body's length in bytes (already checked against the type's limit).
    pub body_len: usize,
}

impl FrameHeader {
    /// Parses and checks a header.
    ///
    /// # Errors
    /// [`ProtocolError::UnknownFrameType`] or [`ProtocolError::FrameTooLong`].
    pub fn parse(header: [u8; FRAME_HEADER_LEN]) -> Result<Self, ProtocolError> {
        let frame_type = FrameType::from_byte(header[0])?;
        let body_len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let max = frame_type.max_body_len();
        if body_len > max {
            return Err(ProtocolError::FrameTooLong { len: body_len, max });
        }
        Ok(FrameHeader {
            frame_type,
            body_len,
        })
    }

    /// The header's five bytes.
    pub fn to_bytes(self) -> [u8; FRAME_HEADER_LEN] {
        let len = (self.body_len as u32).to_be_bytes();
        [self.frame_type as u8, len[0], len[1], len[2], len[3]]
    }
}

const CONNECT_FLAG_DIRECT: u8 = 0x01;

fn put_string(buf: &mut BytesMut, text: &str) {
    // Ids are at most 256 characters, so at most 1,024 bytes: the u16 always fits.
    buf.put_u16(text.len() as u16);
    buf.put_slice(text.as_bytes());
}

fn take_string(body: &mut Bytes) -> Result<String, ProtocolError> {
    if body.remaining() < 2 {
        return Err(ProtocolError::Truncated);
    }
    let len = body.get_u16() as usize;
    if len > MAX_WIRE_STRING_LEN {
        return Err(ProtocolError::InvalidString);
    }
    if body.remaining() < len {
        return Err(ProtocolError::Truncated);
    }
    let raw = body.split_to(len);
    String::from_utf8(raw.to_vec()).map_err(|_| ProtocolError::InvalidString)
}

fn take_peer_id(body: &mut Bytes) -> Result<PeerId, ProtocolError> {
    PeerId::new(take_string(body)?).map_err(|_| ProtocolError::InvalidString)
}

fn take_graph_id(body: &mut Bytes) -> Result<GraphId, ProtocolError> {
    GraphId::new(take_string(body)?).map_err(|_| ProtocolError::InvalidString)
}

fn put_proof(buf: &mut BytesMut, proof: &Bytes) {
    // A proof is at most PROOF_LEN bytes: its length always fits in the u8.
    buf.put_u8(proof.len() as u8);
    buf.put_slice(proof);
}

fn take_proof(body: &mut Bytes) -> Result<Bytes, ProtocolError> {
    let len = take_u8(body)? as usize;
    if len != 0 && len != PROOF_LEN {
        return Err(ProtocolError::InvalidProof(len));
    }
    if body.remaining() < len {
        return Err(ProtocolError::Truncated);
    }
    Ok(body.split_to(len))
}

fn take_u8(body: &mut Bytes) -> Result<u8, ProtocolError> {
    if body.remaining() < 1 {
        return Err(ProtocolError::Truncated);
    }
    Ok(body.get_u8())
}

fn take_connection_id(body: &mut Bytes) -> Result<ConnectionId, ProtocolError> {
    if body.remaining() < 8 {
        return Err(ProtocolError::Truncated);
    }
    ConnectionId::new(body.get_u64()).map_err(|_| ProtocolError::ZeroConnectionId)
}

fn finished(body: &Bytes) -> Result<(), ProtocolError> {
    match body.remaining() {
        0 => Ok(()),
        extra => Err(ProtocolError::TrailingBytes(extra)),
    }
}

impl Message {
    /// The frame type this message is sent as.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Message::Connect(_) => FrameType::Connect,
            Message::Welcome(_) => FrameType::Welcome,
            Message::Refuse(_) => FrameType::Refuse,
            Message::Disconnect(_) => FrameType::Disconnect,
            Message::Data { .. } => FrameType::Data,
        }
    }

    /// Appends the whole frame (header and body) to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        if let Message::Data { data_type, payload } = self {
            encode_data_header(*data_type, payload.len(), buf);
            buf.put_slice(payload);
            return;
        }
        let start = buf.len();
        buf.put_slice(&[0; FRAME_HEADER_LEN]);
        match self {
            Message::Connect(connect) => {
                buf.put_u8(connect.version);
                buf.put_u8(if connect.direct {
                    CONNECT_FLAG_DIRECT
                } else {
                    0
                });
                buf.put_u64(connect.connection_id.get());
                put_string(buf, connect.graph_id.as_str());
                put_string(buf, connect.source_peer_id.as_str());
                put_string(buf, connect.target_peer_id.as_str());
                put_proof(buf, &connect.proof);
            }
            Message::Welcome(welcome) => {
                buf.put_u64(welcome.connection_id.get());
                put_string(buf, welcome.graph_id.as_str());
                put_string(buf, welcome.peer_id.as_str());
                put_proof(buf, &welcome.proof);
            }
            Message::Refuse(reason) => buf.put_u8(*reason as u8),
            Message::Disconnect(reason) => buf.put_u8(*reason as u8),
            Message::Data { .. } => unreachable!("handled above"),
        }
        let header = FrameHeader {
            frame_type: self.frame_type(),
            body_len: buf.len() - start - FRAME_HEADER_LEN,
        };
        buf[start..start + FRAME_HEADER_LEN].copy_from_slice(&header.to_bytes());
    }

    /// The whole frame as bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::new();
        self.encode(&mut buf);
        buf.freeze()
    }

    /// Decodes a body whose header was already parsed.
    ///
    /// # Errors
    /// Any [`ProtocolError`] the body's contents call for.
    pub fn decode_body(frame_type: FrameType, mut body: Bytes) -> Result<Message, ProtocolError> {
        let message = match frame_type {
            FrameType::Connect => {
                let version = take_u8(&mut body)?;
                let flags = take_u8(&mut body)?;
                if flags & !CONNECT_FLAG_DIRECT != 0 {
                    return Err(ProtocolError::UnknownFlags(flags));
                }
                Message::Connect(Connect {
                    version,
                    direct: flags & CONNECT_FLAG_DIRECT != 0,
                    connection_id: take_connection_id(&mut body)?,
                    graph_id: take_graph_id(&mut body)?,
                    source_peer_id: take_peer_id(&mut body)?,
                    target_peer_id: take_peer_id(&mut body)?,
                    proof: take_proof(&mut body)?,
                })
            }
            FrameType::Welcome => Message::Welcome(Welcome {
                connection_id: take_connection_id(&mut body)?,
                graph_id: take_graph_id(&mut body)?,
                peer_id: take_peer_id(&mut body)?,
                proof: take_proof(&mut body)?,
            }),
            FrameType::Refuse => Message::Refuse(RefuseReason::from_byte(take_u8(&mut body)?)?),
            FrameType::Disconnect => {
                Message::Disconnect(DisconnectReason::from_byte(take_u8(&mut body)?)?)
            }
            FrameType::Data => {
                if body.remaining() < DATA_PREFIX_LEN {
                    return Err(ProtocolError::Truncated);
                }
                let mut guid = [0u8; DATA_PREFIX_LEN];
                body.copy_to_slice(&mut guid);
                return Ok(Message::Data {
                    data_type: DataType(guid),
                    payload: body,
                });
            }
        };
        finished(&body)?;
        Ok(message)
    }

    /// Decodes one frame from the front of `buf`, removing it; `Ok(None)` when `buf` does
    /// not yet hold a whole frame (a bad header is reported at once, before its body).
    ///
    /// # Errors
    /// Any [`ProtocolError`].
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        if buf.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let mut header = [0u8; FRAME_HEADER_LEN];
        header.copy_from_slice(&buf[..FRAME_HEADER_LEN]);
        let header = FrameHeader::parse(header)?;
        if buf.len() < FRAME_HEADER_LEN + header.body_len {
            // No reservation for the announced body: memory is committed only as bytes
            // actually arrive, so a header alone costs a peer's link nothing.
            return Ok(None);
        }
        buf.advance(FRAME_HEADER_LEN);
        let body = buf.split_to(header.body_len).freeze();
        Message::decode_body(header.frame_type, body).map(Some)
    }
}

/// A DATA frame's header and type GUID ([`DATA_HEADER_LEN`] bytes) for a payload of
/// `payload_len` bytes, so that the payload itself can be sent without a copy.
pub fn data_header(data_type: DataType, payload_len: usize) -> [u8; DATA_HEADER_LEN] {
    let header = FrameHeader {
        frame_type: FrameType::Data,
        body_len: DATA_PREFIX_LEN + payload_len,
    };
    let mut bytes = [0u8; DATA_HEADER_LEN];
    bytes[..FRAME_HEADER_LEN].copy_from_slice(&header.to_bytes());
    bytes[FRAME_HEADER_LEN..].copy_from_slice(&data_type.0);
    bytes
}

/// Appends [`data_header`] to `buf`.
pub fn encode_data_header(data_type: DataType, payload_len: usize, buf: &mut BytesMut) {
    buf.put_slice(&data_header(data_type, payload_len));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect() -> Message {
        Message::Connect(Connect {
            version: PROTOCOL_VERSION,
            direct: true,
            connection_id: ConnectionId::new(0x0102_0304_0506_0708).expect("nonzero"),
            graph_id: GraphId::new("chat").expect("valid"),
            source_peer_id: PeerId::new("alice").expect("valid"),
            target_peer_id: PeerId::new("bob").expect("valid"),
            proof: Bytes::new(),
        })
    }

    fn samples() -> Vec<Message> {
        vec![
            connect(),
            Message::Welcome(Welcome {
                connection_id: ConnectionId::new(9).expect("nonzero"),
                graph_id: GraphId::new("chat").expect("valid"),
                peer_id: PeerId::new("bob").expect("valid"),
                proof: Bytes::from(vec![0xab; PROOF_LEN]),
            }),
            Message::Refuse(RefuseReason::DirectConnectionDisallowed),
            Message::Refuse(RefuseReason::NotAuthorized),
            Message::Refuse(RefuseReason::WrongPeer),
            Message::Disconnect(DisconnectReason::AppDisconnect),
            Message::Data {
                data_type: DataType::from_u128(42),
                payload: Bytes::from_static(b"hello"),
            },
            Message::Data {
                data_type: DataType::from_u128(7),
                payload: Bytes::new(),
            },
        ]
    }

    /// A tiny deterministic generator (xorshift) so the round-trip test covers many
    /// shapes without a property-testing dependency.
    struct Xorshift(u64);
    impl Xorshift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn every_message_round_trips() {
        for message in samples() {
            let mut buf = BytesMut::new();
            message.encode(&mut buf);
            let encoded_len = buf.len();
            assert_eq!(Message::decode(&mut buf), Ok(Some(message.clone())));
            assert!(buf.is_empty(), "decode consumes exactly one frame");
            assert_eq!(message.to_bytes().len(), encoded_len);
        }
    }

    #[test]
    fn random_data_frames_round_trip_in_pieces() {
        let mut rng = Xorshift(0x9E37_79B9_7F4A_7C15);
        let mut stream = BytesMut::new();
        let mut sent = Vec::new();
        for _ in 0..200 {
            let len = (rng.next() % 3000) as usize;
            let payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let message = Message::Data {
                data_type: DataType::from_u128(rng.next() as u128),
                payload: Bytes::from(payload),
            };
            message.encode(&mut stream);
            sent.push(message);
        }
        // Feed the stream in random-sized pieces, as QUIC may deliver it.
        let mut received = Vec::new();
        let mut buf = BytesMut::new();
        let mut stream = stream.freeze();
        while !stream.is_empty() {
            let take = ((rng.next() % 700) as usize + 1).min(stream.len());
            buf.extend_from_slice(&stream.split_to(take));
            while let Some(message) = Message::decode(&mut buf).expect("valid stream") {
                received.push(message);
            }
        }
        assert_eq!(received, sent);
    }

    #[test]
    fn bad_frames_are_rejected() {
        let mut unknown = BytesMut::from(&[0x7f, 0, 0, 0, 0][..]);
        assert_eq!(
            Message::decode(&mut unknown),
            Err(ProtocolError::UnknownFrameType(0x7f))
        );
        let mut too_long = BytesMut::from(&[0x05, 0xff, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            Message::decode(&mut too_long),
            Err(ProtocolError::FrameTooLong { .. })
        ));
        let mut control_too_long = BytesMut::from(&[0x01, 0, 0, 0x10, 0x01][..]);
        assert!(matches!(
            Message::decode(&mut control_too_long),
            Err(ProtocolError::FrameTooLong { .. })
        ));
        // A truncated CONNECT body: the header says 3 bytes, the fields need more.
        let mut truncated = BytesMut::from(&[0x01, 0, 0, 0, 3, 1, 1, 0][..]);
        assert_eq!(
            Message::decode(&mut truncated),
            Err(ProtocolError::Truncated)
        );
        // A body with one byte too many.
        let mut trailing = BytesMut::from(&[0x04, 0, 0, 0, 2, 3, 0][..]);
        assert_eq!(
            Message::decode(&mut trailing),
            Err(ProtocolError::TrailingBytes(1))
        );
        let mut bad_reason = BytesMut::from(&[0x04, 0, 0, 0, 1, 9][..]);
        assert_eq!(
            Message::decode(&mut bad_reason),
            Err(ProtocolError::UnknownReason(9))
        );
        let mut short_data = BytesMut::from(&[0x05, 0, 0, 0, 3, 1, 2, 3][..]);
        assert_eq!(
            Message::decode(&mut short_data),
            Err(ProtocolError::Truncated)
        );
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut rng = Xorshift(12345);
        for _ in 0..5000 {
            let len = (rng.next() % 64) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if let Some(first) = bytes.first_mut() {
                *first %= 7; // mostly valid types, so bodies get parsed too
            }
            if bytes.len() >= FRAME_HEADER_LEN {
                let body_len = (bytes.len() - FRAME_HEADER_LEN) as u32;
                bytes[1..5].copy_from_slice(&body_len.to_be_bytes());
            }
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = Message::decode(&mut buf);
        }
    }

    #[test]
    fn connect_layout_is_stable() {
        let bytes = connect().to_bytes();
        let expected: &[u8] = &[
            0x01, 0x00, 0x00, 0x00, 0x1d, // CONNECT, body 29 bytes
            0x01, 0x01, // version 1, direct
            0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // connection id
            0x00, 0x04, b'c', b'h', b'a', b't', // graph id
            0x00, 0x05, b'a', b'l', b'i', b'c', b'e', // source peer id
            0x00, 0x03, b'b', b'o', b'b', // target peer id
            0x00, // no membership proof
        ];
        assert_eq!(&bytes[..], expected);
    }
}
