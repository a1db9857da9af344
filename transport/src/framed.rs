//! Frames over QUIC streams: reading whole [`Message`]s from a receive stream and writing
//! them to a send stream, with the engine's codec and limits.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use peergraph_engine::wire::{data_header, FrameDecoder, Message, ProtocolError, DATA_HEADER_LEN};
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

/// Reads whole frames from a QUIC receive stream: each chunk quinn delivers goes into the
/// engine's [`FrameDecoder`], and whole messages come out.
///
/// The decoder copies nothing for a frame inside one chunk, commits memory only as bytes
/// arrive and checks a frame's length as soon as its header is in; since the reader reads
/// a chunk only once the decoder has no whole frame left, it holds at most one frame plus
/// one chunk, and the decoder's shared buffer for small frames that span chunks (4 KiB),
/// which it gives back whenever a read has to wait: an idle link holds no buffer.
#[derive(Debug)]
pub struct FrameReader {
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
    /// The stream's end (`Ok`) or its error, found by [`read_ready`](Self::read_ready)
    /// and reported by [`read`](Self::read) after the frames before it. Boxed: found once
    /// in a stream's life, it should not take 56 bytes of every idle link.
    end: Option<Box<Result<(), quinn::ReadError>>>,
    /// Bytes in the last chunk quinn delivered.
    last_chunk: usize,
}

impl FrameReader {
    /// A reader over `recv`.
    pub fn new(recv: quinn::RecvStream) -> Self {
        FrameReader {
            recv,
            decoder: FrameDecoder::new(),
            end: None,
            last_chunk: 0,
        }
    }

    /// The next frame; `Ok(None)` when the peer finished the stream cleanly between frames.
    ///
    /// # Errors
    /// [`ReadFrameError::Protocol`] for malformed bytes or a stream that ends inside a
    /// frame; [`ReadFrameError::Stream`] when the stream or connection fails.
    pub async fn read(&mut self) -> Result<Option<Message>, ReadFrameError> {
        loop {
            // The common frame first, by the decoder's shorter way.
            if let Some((data_type, payload)) = self.decoder.next_data() {
                return Ok(Some(Message::Data { data_type, payload }));
            }
            if let Some(message) = self.decoder.next_message()? {
                return Ok(Some(message));
            }
            let read = match self.end.take() {
                Some(end) => (*end).map(|()| None),
                None => {
                    let (recv, decoder) = (&mut self.recv, &mut self.decoder);
                    std::future::poll_fn(|cx| {
                        let polled =
                            std::pin::pin!(recv.read_chunk(READ_CHUNK_LIMIT, true)).poll(cx);
                        // The read waits: a link idle inside a frame keeps no spare buffer.
                        if polled.is_pending() {
                            decoder.release_spare();
                        }
                        polled
                    })
                    .await
                }
            };
            match read? {
                Some(chunk) => self.push(chunk.bytes),
                None if self.decoder.is_mid_frame() => {
                    return Err(ProtocolError::EndOfStreamInFrame.into())
                }
                None => return Ok(None),
            }
        }
    }

    /// Moves one more chunk that quinn has already received into the decoder, without
    /// waiting: `true` if it took one. Lets a caller that has taken every whole frame
    /// buffered go on with the next packet's frames in the same step (called only then,
    /// as [`read`](Self::read) reads, the reader still holds at most one frame plus one
    /// chunk). The stream's end or error found here is kept, and `read` returns it once
    /// the frames before it are out. Takes nothing once the decoder has failed (its error
    /// comes from the next read) or the end is found.
    ///
    /// A call that finds nothing leaves quinn a waker that wakes no one: a task that would
    /// wait for the stream must do so through [`read`](Self::read), which registers its own.
    pub fn read_ready(&mut self) -> bool {
        if self.end.is_some() || self.decoder.has_failed() {
            return false;
        }
        // A read that finds nothing leaves this no-op waker with quinn; the caller's next
        // `read`, which waits, registers its own.
        let mut cx = Context::from_waker(Waker::noop());
        let polled = std::pin::pin!(self.recv.read_chunk(READ_CHUNK_LIMIT, true)).poll(&mut cx);
        match polled {
            Poll::Pending => false,
            Poll::Ready(Ok(Some(chunk))) => {
                let taken = !chunk.bytes.is_empty();
                self.push(chunk.bytes);
                taken
            }
            Poll::Ready(end) => {
                self.end = Some(Box::new(end.map(|_| ())));
                false
            }
        }
    }

    /// The next frame among the bytes already received, without waiting for more:
    /// `Ok(None)` when what is buffered holds no whole frame. Lets a caller take every
    /// frame of a chunk in one go after [`read`](Self::read) returned the first.
    ///
    /// # Errors
    /// [`ProtocolError`] for malformed bytes.
    pub fn read_buffered(&mut self) -> Result<Option<Message>, ProtocolError> {
        self.decoder.next_message()
    }

    /// Appends to `run` the payloads of the DATA frames of `data_type` already received
    /// whole, one after another, in the chunk being read, up to `max_frames` in `run` and
    /// until the bytes taken reach `max_bytes`; returns those bytes. Stops at the first
    /// other frame, which is left for [`read_buffered`](Self::read_buffered) (see
    /// [`FrameDecoder::next_data_run`]). Lets a caller take a run of DATA of one type
    /// after [`read`](Self::read) returned the first, without building a message for each.
    pub fn read_buffered_run(
        &mut self,
        data_type: DataType,
        run: &mut Vec<Bytes>,
        max_frames: usize,
        max_bytes: usize,
    ) -> usize {
        self.decoder
            .next_data_run(data_type, run, max_frames, max_bytes)
    }

    /// Bytes in the last chunk quinn delivered: about a packet's payload while the peer
    /// sends faster than it is read, less when the peer's sender had nothing more queued
    /// as it sent that packet (and then the next packet is not likely to be in yet).
    pub fn last_chunk_len(&self) -> usize {
        self.last_chunk
    }

    fn push(&mut self, chunk: Bytes) {
        self.last_chunk = chunk.len();
        self.decoder.push(chunk);
    }

    /// Bytes received and not yet read out in a frame.
    pub fn buffered_len(&self) -> usize {
        self.decoder.buffered_len()
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

    /// The frame's chunks: the header (copied out) and the payload (empty for an empty
    /// payload).
    pub fn into_chunks(self) -> [Bytes; 2] {
        [Bytes::copy_from_slice(&self.header), self.payload]
    }

    /// Appends the frame's chunks to `chunks`: the header (copied out) and the payload.
    pub fn push_chunks(self, chunks: &mut Vec<Bytes>) {
        chunks.push(Bytes::copy_from_slice(&self.header));
        if !self.payload.is_empty() {
            chunks.push(self.payload);
        }
    }
}
