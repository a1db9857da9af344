//! Frames over QUIC streams: reading whole [`Message`]s from a receive stream and writing
//! them to a send stream, with the engine's codec and limits.

use bytes::{Buf, Bytes, BytesMut};
use peergraph_engine::wire::{
    data_header, FrameHeader, Message, ProtocolError, DATA_HEADER_LEN, FRAME_HEADER_LEN,
};
use peergraph_engine::DataType;
use thiserror::Error;

/// Why reading a frame failed.
#[derive(Debug, Error)]
pub enum ReadFrameError {
    /// The peer sent bytes the protocol does not allow.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The stream or the connection failed.
    #[error("stream: {0}")]
    Stream(#[from] quinn::ReadError),
}

/// How many bytes the reader asks quinn for at most in one read: enough for a few large
/// frames without one read holding more than the stream window allows anyway.
const READ_CHUNK_LIMIT: usize = 256 * 1024;

/// Reads whole frames from a QUIC receive stream.
///
/// A frame that lies within one received chunk is decoded from that chunk without a copy
/// (its payload shares the chunk's buffer). A frame that spans chunks is gathered as the
/// received chunks themselves and copied once, into a buffer of exactly its size, when its
/// last byte has arrived: memory is committed only as bytes arrive, never for a length a
/// header merely announces, and a large frame is not copied again as a buffer grows. The
/// reader holds no buffer while it waits between frames, so an idle link costs nothing
/// here, and never more than one frame plus one chunk, because a frame's length is
/// checked against its type's limit as soon as its header arrives.
#[derive(Debug)]
pub struct FrameReader {
    recv: quinn::RecvStream,
    assembler: Assembler,
}

impl FrameReader {
    /// A reader over `recv`.
    pub fn new(recv: quinn::RecvStream) -> Self {
        FrameReader {
            recv,
            assembler: Assembler::default(),
        }
    }

    /// The next frame; `Ok(None)` when the peer finished the stream cleanly between frames.
    ///
    /// # Errors
    /// [`ReadFrameError::Protocol`] for malformed bytes or a stream that ends inside a
    /// frame; [`ReadFrameError::Stream`] when the stream or connection fails.
    pub async fn read(&mut self) -> Result<Option<Message>, ReadFrameError> {
        loop {
            if let Some(message) = self.assembler.decode()? {
                return Ok(Some(message));
            }
            match self.recv.read_chunk(READ_CHUNK_LIMIT, true).await? {
                Some(chunk) => self.assembler.chunk = chunk.bytes,
                None if self.assembler.gathered == 0 => return Ok(None),
                None => return Err(ProtocolError::EndOfStreamInFrame.into()),
            }
        }
    }

    /// Stops the stream: the peer's further writes fail with `error_code`.
    pub fn stop(&mut self, error_code: u32) {
        let _ = self.recv.stop(quinn::VarInt::from_u32(error_code));
    }
}

/// How many chunk handles the reader keeps room for between frames: enough for a 64 KiB
/// frame in full-size packets. Room for more (a 1 MiB frame needs about 900) is given back
/// after the frame, so a link that once carried one large frame does not keep it.
const PARTS_KEPT: usize = 64;

/// Cuts frames out of the chunks a stream delivers (the I/O-free half of [`FrameReader`]).
#[derive(Debug, Default)]
struct Assembler {
    /// What is left of the last chunk read, not yet decoded.
    chunk: Bytes,
    /// The pieces received so far of a frame that runs past one chunk, in order.
    parts: Vec<Bytes>,
    /// Bytes in `parts`.
    gathered: usize,
}

impl Assembler {
    /// The next frame if the bytes read so far hold all of it; otherwise keeps what there
    /// is (in `parts`) and returns `None` with `chunk` used up.
    fn decode(&mut self) -> Result<Option<Message>, ProtocolError> {
        loop {
            if self.gathered == 0 {
                if self.chunk.len() >= FRAME_HEADER_LEN {
                    let header = header_of(&self.chunk)?;
                    let frame_len = FRAME_HEADER_LEN + header.body_len;
                    if self.chunk.len() >= frame_len {
                        let mut body = self.chunk.split_to(frame_len);
                        body.advance(FRAME_HEADER_LEN);
                        return Message::decode_body(header.frame_type, body).map(Some);
                    }
                }
                // The frame (or its header) runs past this chunk: gather the rest of it.
                if !self.chunk.is_empty() {
                    self.gather(self.chunk.len());
                }
                return Ok(None);
            }
            // Gathering a frame: take from the chunk only the bytes that belong to it.
            let header = self.gathered_header()?;
            let frame_len = header.map_or(FRAME_HEADER_LEN, |h| FRAME_HEADER_LEN + h.body_len);
            if let Some(header) = header.filter(|_| self.gathered == frame_len) {
                return self.assemble(header).map(Some);
            }
            if self.chunk.is_empty() {
                return Ok(None);
            }
            self.gather((frame_len - self.gathered).min(self.chunk.len()));
        }
    }

    /// Moves the first `len` bytes of the chunk to `parts` (no copy: a handle).
    fn gather(&mut self, len: usize) {
        self.gathered += len;
        self.parts.push(self.chunk.split_to(len));
    }

    /// The gathered frame's header, once its five bytes are in (they may span parts).
    fn gathered_header(&self) -> Result<Option<FrameHeader>, ProtocolError> {
        if self.gathered < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let mut header = [0u8; FRAME_HEADER_LEN];
        let mut filled = 0;
        for part in &self.parts {
            let n = (FRAME_HEADER_LEN - filled).min(part.len());
            header[filled..filled + n].copy_from_slice(&part[..n]);
            filled += n;
            if filled == FRAME_HEADER_LEN {
                break;
            }
        }
        FrameHeader::parse(header).map(Some)
    }

    /// Copies the gathered parts, all of one frame, into one buffer and decodes it.
    fn assemble(&mut self, header: FrameHeader) -> Result<Message, ProtocolError> {
        let mut frame = BytesMut::with_capacity(self.gathered);
        for part in self.parts.drain(..) {
            frame.extend_from_slice(&part);
        }
        self.gathered = 0;
        self.parts.shrink_to(PARTS_KEPT);
        let mut body = frame.freeze();
        body.advance(FRAME_HEADER_LEN);
        Message::decode_body(header.frame_type, body)
    }
}

/// Parses and checks the header at the front of `bytes` (at least [`FRAME_HEADER_LEN`]).
fn header_of(bytes: &[u8]) -> Result<FrameHeader, ProtocolError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    header.copy_from_slice(&bytes[..FRAME_HEADER_LEN]);
    FrameHeader::parse(header)
}

/// Writes one control frame and waits until quinn has taken it.
///
/// # Errors
/// The stream's write error.
pub async fn write_message(
    send: &mut quinn::SendStream,
    message: &Message,
) -> Result<(), quinn::WriteError> {
    send.write_chunk(message.to_bytes()).await
}

/// A DATA frame as its header (kept inline: queueing a frame allocates nothing for it) and
/// its payload, so the payload is written as its own chunk without being copied.
#[derive(Debug, Clone)]
pub struct DataFrame {
    header: [u8; DATA_HEADER_LEN],
    payload: Bytes,
}

impl DataFrame {
    /// The frame for `payload` of `data_type`. The caller has checked the payload's length
    /// against `MAX_DATA_LEN`.
    pub fn new(data_type: DataType, payload: Bytes) -> Self {
        DataFrame {
            header: data_header(data_type, payload.len()),
            payload,
        }
    }

    /// Bytes on the wire.
    pub fn wire_len(&self) -> usize {
        DATA_HEADER_LEN + self.payload.len()
    }

    /// Appends the whole frame to `buf`, copying the payload: for a small frame, cheaper
    /// than a chunk of its own in the stream's send buffer.
    pub fn copy_into(&self, buf: &mut BytesMut) {
        buf.reserve(self.wire_len());
        buf.extend_from_slice(&self.header);
        buf.extend_from_slice(&self.payload);
    }

    /// Appends the frame's chunks to `chunks`: the header (copied out) and the payload.
    pub fn push_chunks(self, chunks: &mut Vec<Bytes>) {
        chunks.push(Bytes::copy_from_slice(&self.header));
        if !self.payload.is_empty() {
            chunks.push(self.payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peergraph_engine::wire::{DisconnectReason, MAX_DATA_LEN};

    fn data(len: usize, seed: u8) -> Message {
        Message::Data {
            data_type: DataType::from_u128(0xfeed),
            payload: Bytes::from(
                (0..len)
                    .map(|i| seed.wrapping_add(i as u8))
                    .collect::<Vec<_>>(),
            ),
        }
    }

    /// Feeds `stream` in chunks of `size` and collects every frame.
    fn cut(stream: &[u8], size: usize) -> Result<Vec<Message>, ProtocolError> {
        let mut assembler = Assembler::default();
        let mut frames = Vec::new();
        for chunk in stream.chunks(size) {
            assembler.chunk = Bytes::copy_from_slice(chunk);
            while let Some(message) = assembler.decode()? {
                frames.push(message);
            }
            assert!(
                assembler.chunk.is_empty(),
                "a chunk is used up before the next"
            );
        }
        assert_eq!(assembler.gathered, 0, "no frame left half-read");
        Ok(frames)
    }

    #[test]
    fn frames_come_out_whole_however_the_stream_is_cut() {
        let messages = vec![
            data(0, 1),
            data(64, 2),
            Message::Disconnect(DisconnectReason::AppDisconnect),
            data(3000, 3),
            data(1, 4),
        ];
        let mut stream = BytesMut::new();
        for message in &messages {
            message.encode(&mut stream);
        }
        for size in [1, 2, 4, 5, 6, 21, 22, 85, 100, 1200, 4096, stream.len()] {
            assert_eq!(
                cut(&stream, size).expect("valid frames"),
                messages,
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn a_frame_inside_a_chunk_is_not_copied() {
        let mut stream = BytesMut::new();
        data(64, 7).encode(&mut stream);
        data(64, 8).encode(&mut stream);
        let chunk = stream.freeze();
        let mut assembler = Assembler {
            chunk: chunk.clone(),
            ..Assembler::default()
        };
        for _ in 0..2 {
            let Ok(Some(Message::Data { payload, .. })) = assembler.decode() else {
                panic!("a whole DATA frame");
            };
            let inside = chunk.as_ptr_range();
            assert!(
                inside.contains(&payload.as_ptr()),
                "payload shares the chunk"
            );
        }
        assert_eq!(assembler.parts.capacity(), 0, "nothing was gathered");
    }

    #[test]
    fn an_announced_body_commits_no_memory_before_it_arrives() {
        let header = data_header(DataType::from_u128(1), MAX_DATA_LEN);
        let mut assembler = Assembler {
            chunk: Bytes::copy_from_slice(&header),
            ..Assembler::default()
        };
        assert_eq!(assembler.decode(), Ok(None));
        assert_eq!(assembler.gathered, 21, "only the bytes that came");
        assembler.chunk = Bytes::from(vec![0u8; 1000]);
        assert_eq!(assembler.decode(), Ok(None));
        assert_eq!(assembler.gathered, 1021);
        assert_eq!(assembler.parts.len(), 2, "held as received, not copied");
    }

    #[test]
    fn a_bad_header_fails_before_its_body_arrives() {
        let mut assembler = Assembler {
            chunk: Bytes::from_static(&[0x05, 0xff, 0xff]),
            ..Assembler::default()
        };
        assert_eq!(assembler.decode(), Ok(None));
        assembler.chunk = Bytes::from_static(&[0xff, 0xff]);
        assert!(matches!(
            assembler.decode(),
            Err(ProtocolError::FrameTooLong { .. })
        ));
    }
}
