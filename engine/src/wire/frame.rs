//! The frame layer: frame types, the 5-byte header every frame starts with, and the DATA
//! header written ahead of a payload that is sent without a copy.

use bytes::{BufMut, BytesMut};

use super::{
    ProtocolError, DATA_HEADER_LEN, DATA_PREFIX_LEN, FRAME_HEADER_LEN, MAX_CONTROL_BODY_LEN,
    MAX_DATA_BODY_LEN,
};
use crate::ids::DataType;

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

    /// Bytes in the whole frame: this header and the body it announces.
    pub const fn frame_len(self) -> usize {
        FRAME_HEADER_LEN + self.body_len
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
