//! The bytes every system but peergraph puts on its stream: peergraph's own DATA frames
//! (a 5-byte header of type and u32 length, the 16-byte data type, the payload), so that all
//! four carry the same application bytes, and a splitter that cuts them out of received
//! chunks as `compare`'s raw side does.

use bytes::{Bytes, BytesMut};
use peergraph::DataType;
use peergraph_engine::wire::{encode_data_header, FRAME_HEADER_LEN};

/// The data type every benchmark message carries.
pub const DATA_TYPE: DataType = DataType::from_u128(0x7065_6572_6772_6170_6862_656e_6368_0001);

/// What the connecting side writes first on its stream, so that the accepting side sees the
/// stream (a QUIC stream exists for the peer only once data is sent on it).
pub const HELLO: &[u8; 8] = b"rawhello";

/// A whole DATA frame for `payload`.
pub fn data_frame(payload: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(FRAME_HEADER_LEN + 16 + payload.len());
    encode_data_header(DATA_TYPE, payload.len(), &mut frame);
    frame.extend_from_slice(payload);
    frame.freeze()
}

/// Cuts whole frames (header and body) out of the bytes pushed into it.
pub struct Splitter {
    buffer: BytesMut,
}

impl Splitter {
    /// An empty splitter with a 64 KiB buffer.
    pub fn new() -> Splitter {
        Splitter {
            buffer: BytesMut::with_capacity(64 * 1024),
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next whole frame, if one is in.
    pub fn next_frame(&mut self) -> Option<Bytes> {
        if self.buffer.len() < FRAME_HEADER_LEN {
            return None;
        }
        let len = u32::from_be_bytes([
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
            self.buffer[4],
        ]) as usize;
        (self.buffer.len() >= FRAME_HEADER_LEN + len)
            .then(|| self.buffer.split_to(FRAME_HEADER_LEN + len).freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_whole_across_chunks() {
        let frame = data_frame(&[7; 64]);
        let mut stream = Vec::new();
        for _ in 0..3 {
            stream.extend_from_slice(&frame);
        }
        let mut splitter = Splitter::new();
        let mut out = Vec::new();
        for chunk in stream.chunks(50) {
            splitter.push(chunk);
            while let Some(frame) = splitter.next_frame() {
                out.push(frame);
            }
        }
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|f| f == &frame));
    }
}
