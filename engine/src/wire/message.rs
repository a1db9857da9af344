//! The messages a frame carries: their types, the encoder, and the parser of one frame's
//! body (which [`FrameDecoder`](super::FrameDecoder) calls once it holds the whole frame).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{
    encode_data_header, DisconnectReason, FrameHeader, FrameType, ProtocolError, RefuseReason,
    DATA_PREFIX_LEN, FRAME_HEADER_LEN, MAX_WIRE_STRING_LEN, PROOF_LEN,
};
use crate::ids::{ConnectionId, DataType, GraphId, PeerId};

/// The first frame of a connection.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Connect {
    /// The protocol version ([`PROTOCOL_VERSION`](super::PROTOCOL_VERSION)).
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
        /// The payload (at most [`MAX_DATA_LEN`](super::MAX_DATA_LEN) bytes).
        payload: Bytes,
    },
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

    /// Parses the body of a frame whose header was already parsed and checked: the step
    /// after framing, which only [`FrameDecoder`](super::FrameDecoder) takes, so that bytes
    /// become messages in one way.
    ///
    /// # Errors
    /// Any [`ProtocolError`] the body's contents call for.
    pub(super) fn decode_body(
        frame_type: FrameType,
        mut body: Bytes,
    ) -> Result<Message, ProtocolError> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{FrameDecoder, PROTOCOL_VERSION};

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

    #[test]
    fn every_message_round_trips() {
        for message in samples() {
            let mut buf = BytesMut::new();
            message.encode(&mut buf);
            let encoded_len = buf.len();
            let mut decoder = FrameDecoder::new();
            decoder.push(buf.freeze());
            assert_eq!(decoder.next_message(), Ok(Some(message.clone())));
            assert!(!decoder.is_mid_frame(), "decode consumes exactly one frame");
            assert_eq!(message.to_bytes().len(), encoded_len);
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
