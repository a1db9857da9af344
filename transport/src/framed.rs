//! Frames over QUIC streams: reading whole [`Message`]s from a receive stream and writing
//! them to a send stream, with the engine's codec and limits.

use bytes::{Bytes, BytesMut};
use peergraph_engine::wire::{encode_data_header, Message, ProtocolError};
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
/// Bytes are read in chunks and decoded from one buffer, so small frames cost no extra
/// read calls and a frame's body is handed on without another copy. The buffer never holds
/// more than one frame plus one chunk, because a frame's length is checked against its
/// type's limit as soon as its header arrives.
#[derive(Debug)]
pub struct FrameReader {
    recv: quinn::RecvStream,
    buffer: BytesMut,
}

impl FrameReader {
    /// A reader over `recv`.
    pub fn new(recv: quinn::RecvStream) -> Self {
        FrameReader {
            recv,
            buffer: BytesMut::with_capacity(64 * 1024),
        }
    }

    /// The next frame; `Ok(None)` when the peer finished the stream cleanly between frames.
    ///
    /// # Errors
    /// [`ReadFrameError::Protocol`] for malformed bytes or a stream that ends inside a
    /// frame; [`ReadFrameError::Stream`] when the stream or connection fails.
    pub async fn read(&mut self) -> Result<Option<Message>, ReadFrameError> {
        loop {
            if let Some(message) = Message::decode(&mut self.buffer)? {
                return Ok(Some(message));
            }
            match self.recv.read_chunk(READ_CHUNK_LIMIT, true).await? {
                Some(chunk) => self.buffer.extend_from_slice(&chunk.bytes),
                None if self.buffer.is_empty() => return Ok(None),
                None => return Err(ProtocolError::EndOfStreamInFrame.into()),
            }
        }
    }

    /// Stops the stream: the peer's further writes fail with `error_code`.
    pub fn stop(&mut self, error_code: u32) {
        let _ = self.recv.stop(quinn::VarInt::from_u32(error_code));
    }
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

/// A DATA frame split into its 21-byte header and its payload, so the payload is written
/// as its own chunk without being copied.
#[derive(Debug, Clone)]
pub struct DataFrame {
    header: Bytes,
    payload: Bytes,
}

impl DataFrame {
    /// The frame for `payload` of `data_type`. The caller has checked the payload's length
    /// against `MAX_DATA_LEN`.
    pub fn new(data_type: DataType, payload: Bytes) -> Self {
        let mut header = BytesMut::with_capacity(21);
        encode_data_header(data_type, payload.len(), &mut header);
        DataFrame {
            header: header.freeze(),
            payload,
        }
    }

    /// Bytes on the wire.
    pub fn wire_len(&self) -> usize {
        self.header.len() + self.payload.len()
    }

    /// Appends the frame's chunks to `chunks`.
    pub fn push_chunks(self, chunks: &mut Vec<Bytes>) {
        chunks.push(self.header);
        if !self.payload.is_empty() {
            chunks.push(self.payload);
        }
    }
}
