//! The frame decoder: the one way bytes from a peer become [`Message`]s. The transport
//! pushes each chunk a QUIC stream delivers and takes out whole messages; the fuzz target
//! and the property tests drive the same code with the bytes cut anywhere.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use super::{
    FrameHeader, FrameType, Message, ProtocolError, DATA_HEADER_LEN, DATA_PREFIX_LEN,
    FRAME_HEADER_LEN, MAX_DATA_BODY_LEN,
};
use crate::ids::DataType;

/// How many chunk handles the decoder keeps room for between frames: enough for a 64 KiB
/// frame in full-size packets. Room for more (a 1 MiB frame needs about 900) is given back
/// after the frame, so a link that once carried one large frame does not keep it.
const PARTS_KEPT: usize = 64;

/// The largest frame that spans chunks which is copied into the spare buffer that such
/// frames share, and that buffer's size: a run of small frames cut by packet boundaries
/// costs one allocation per [`SPARE_LEN`] bytes of them, not one per frame, as long as the
/// buffer is not given back in between (see [`FrameDecoder::release_spare`]). A larger
/// frame gets a buffer of its own size.
const SPARE_FRAME_MAX: usize = 1024;
const SPARE_LEN: usize = 4 * SPARE_FRAME_MAX;

/// Cuts whole [`Message`]s out of the chunks a stream delivers, however the stream was cut.
///
/// [`push`](Self::push) each chunk as it arrives, then call
/// [`next_message`](Self::next_message) until it returns `Ok(None)`.
///
/// - A frame that lies within one chunk is decoded from that chunk without a copy (a DATA
///   payload shares the chunk's buffer).
/// - A frame that spans chunks is gathered as handles to the chunks themselves and copied
///   once, when its last byte has arrived: memory is committed only as bytes arrive,
///   never for a length a header merely announces, and a large frame is not copied again
///   as a buffer grows. A frame of up to 1 KiB is copied onto the end of a 4 KiB buffer
///   that such frames share (the messages decoded from it share it too); a larger one
///   into a buffer of exactly its size.
/// - A frame's type and length are checked against the type's limit as soon as its five
///   header bytes are in, before any of its body is held.
/// - An idle link costs nothing here: the shared buffer is given back when
///   [`next_message`](Self::next_message) finds no byte held, and by
///   [`release_spare`](Self::release_spare), which a reader calls when it has to wait for
///   the stream. Fed one chunk at a time, the decoder holds at most one frame plus one
///   chunk, and the shared buffer.
/// - After an error it returns the same error on every call and holds nothing: past a bad
///   frame the stream has no boundaries left to trust, and the link is closed.
///
/// ```
/// use peergraph_engine::wire::{DisconnectReason, FrameDecoder, Message};
///
/// let disconnect = Message::Disconnect(DisconnectReason::AppDisconnect);
/// let bytes = disconnect.to_bytes();
/// let mut decoder = FrameDecoder::new();
/// decoder.push(bytes.slice(..3)); // a header cut in two
/// assert_eq!(decoder.next_message(), Ok(None));
/// assert!(decoder.is_mid_frame());
/// decoder.push(bytes.slice(3..));
/// assert_eq!(decoder.next_message(), Ok(Some(disconnect)));
/// assert!(!decoder.is_mid_frame());
/// ```
#[derive(Debug, Default)]
pub struct FrameDecoder {
    /// What is left of the chunk being cut up; empty when there is none.
    chunk: Bytes,
    /// Chunks pushed while `chunk` was not used up, in order (none are empty). The reader
    /// pushes only once it has taken every message, so this stays empty and unallocated.
    later: VecDeque<Bytes>,
    /// The pieces received so far of a frame that runs past one chunk, in order.
    parts: Vec<Bytes>,
    /// Bytes in `parts`.
    gathered: usize,
    /// The header of the frame in `parts`, once its five bytes are in.
    header: Option<FrameHeader>,
    /// The error already returned, returned again by every later call.
    failed: Option<ProtocolError>,
    /// What is left of the buffer small frames that span chunks are copied into
    /// ([`SPARE_LEN`]); empty, and unallocated, when none was needed since it was given
    /// back.
    spare: BytesMut,
}

impl FrameDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        FrameDecoder::default()
    }

    /// Adds the next chunk of the stream. An empty chunk changes nothing.
    pub fn push(&mut self, chunk: Bytes) {
        if chunk.is_empty() || self.failed.is_some() {
            return;
        }
        // Behind every chunk pushed before it: the one being cut up may be used up while
        // later ones wait.
        if self.chunk.is_empty() && self.later.is_empty() {
            self.chunk = chunk;
        } else {
            self.later.push_back(chunk);
        }
    }

    /// The next whole message, or `Ok(None)` when the bytes pushed so far end before the
    /// next frame does (they are kept for the next call).
    ///
    /// # Errors
    /// Any [`ProtocolError`] but [`Unexpected`](ProtocolError::Unexpected) and
    /// [`EndOfStreamInFrame`](ProtocolError::EndOfStreamInFrame): a bad header as soon as
    /// its five bytes are in, a bad body once all of it is. Every later call returns the
    /// same error.
    pub fn next_message(&mut self) -> Result<Option<Message>, ProtocolError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        // Nothing new since the last call (the reader asks once more after each chunk).
        if self.chunk.is_empty() && self.later.is_empty() {
            if self.gathered == 0 {
                self.release_spare();
            }
            return Ok(None);
        }
        let result = self.decode();
        if let Err(error) = &result {
            *self = FrameDecoder {
                failed: Some(error.clone()),
                ..FrameDecoder::default()
            };
        }
        result
    }

    /// Takes the DATA frames of `data_type` lying whole, one after another, at the front
    /// of the chunk being cut up, and appends their payloads to `run` (each shares the
    /// chunk's buffer): what [`next_message`](Self::next_message) would return as
    /// `Message::Data` with that type, called until it returns something else, without
    /// building the messages. Stops once `run` holds `max_frames` payloads, or after the
    /// frame whose payload brings the bytes taken to `max_bytes` or more; and at the first
    /// frame that is not such DATA (another frame or type, a frame not whole in this
    /// chunk, a header the limits refuse), which is left for `next_message` to decode, or
    /// refuse, as ever. Returns the payload bytes taken. For a reader taking a run of DATA
    /// of one type: one call for a chunk's frames, not one per frame.
    pub fn next_data_run(
        &mut self,
        data_type: DataType,
        run: &mut Vec<Bytes>,
        max_frames: usize,
        max_bytes: usize,
    ) -> usize {
        if self.gathered != 0 || self.failed.is_some() {
            return 0;
        }
        let (mut at, mut taken) = (0, 0);
        while run.len() < max_frames && taken < max_bytes {
            match whole_data_in(&self.chunk[at..]) {
                Some((next_type, frame_len)) if next_type == data_type => {
                    run.push(self.chunk.slice(at + DATA_HEADER_LEN..at + frame_len));
                    taken += frame_len - DATA_HEADER_LEN;
                    at += frame_len;
                }
                _ => break,
            }
        }
        self.chunk.advance(at);
        taken
    }

    /// The type and payload of the next frame if it is a DATA frame lying whole in the
    /// chunk being cut up: what [`next_message`](Self::next_message) would return as
    /// `Message::Data`, by a shorter way. `None` in every other case, and then nothing is
    /// taken: `next_message` decodes, or refuses, what comes next as ever. For a reader
    /// whose next frame is most often DATA.
    pub fn next_data(&mut self) -> Option<(DataType, Bytes)> {
        if self.gathered != 0 || self.failed.is_some() {
            return None;
        }
        let (data_type, frame_len) = whole_data_in(&self.chunk)?;
        let mut payload = self.chunk.split_to(frame_len);
        payload.advance(DATA_HEADER_LEN);
        Some((data_type, payload))
    }

    /// Gives back the buffer that small frames spanning chunks are copied into (the
    /// messages decoded from it keep their bytes). The decoder does so itself when
    /// [`next_message`](Self::next_message) finds no byte held; a reader calls this when a
    /// read has to wait for the stream, so that a link idle inside a frame holds only what
    /// that frame has received.
    pub fn release_spare(&mut self) {
        if self.spare.capacity() != 0 {
            self.spare = BytesMut::new();
        }
    }

    /// Bytes pushed that have not come out in a message yet.
    pub fn buffered_len(&self) -> usize {
        self.gathered + self.chunk.len() + self.later.iter().map(Bytes::len).sum::<usize>()
    }

    /// Whether an error was returned: every later call returns it again, and chunks
    /// pushed from now on are dropped.
    pub fn has_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Whether bytes are held that have not come out in a message. Right after
    /// [`next_message`](Self::next_message) returned `Ok(None)`, they are the start of a
    /// frame not yet whole: a stream that ends now ends inside a frame
    /// ([`ProtocolError::EndOfStreamInFrame`]).
    pub fn is_mid_frame(&self) -> bool {
        self.buffered_len() != 0
    }

    fn decode(&mut self) -> Result<Option<Message>, ProtocolError> {
        loop {
            if self.chunk.is_empty() {
                match self.later.pop_front() {
                    Some(next) => self.chunk = next,
                    None => return Ok(None),
                }
            }
            if self.gathered == 0 && self.chunk.len() >= FRAME_HEADER_LEN {
                let header = header_at_front(&self.chunk)?;
                if self.chunk.len() >= header.frame_len() {
                    let mut frame = self.chunk.split_to(header.frame_len());
                    frame.advance(FRAME_HEADER_LEN);
                    return Message::decode_body(header.frame_type, frame).map(Some);
                }
                self.header = Some(header);
            }
            // The frame (or its header) runs past this chunk: gather the bytes of the chunk
            // that belong to it, as a handle (no copy).
            let wanted =
                self.header.map_or(FRAME_HEADER_LEN, FrameHeader::frame_len) - self.gathered;
            let part = self.chunk.split_to(wanted.min(self.chunk.len()));
            self.gathered += part.len();
            self.parts.push(part);
            if self.header.is_none() && self.gathered == FRAME_HEADER_LEN {
                self.header = Some(self.gathered_header()?);
            }
            if let Some(header) = self.header.filter(|h| self.gathered == h.frame_len()) {
                return self.assemble(header).map(Some);
            }
        }
    }

    /// The header of the frame being gathered, from its first [`FRAME_HEADER_LEN`] bytes
    /// (which may span parts).
    fn gathered_header(&self) -> Result<FrameHeader, ProtocolError> {
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
        FrameHeader::parse(header)
    }

    /// Copies the gathered parts, all of one frame, into one buffer and decodes it: the
    /// spare buffer for a small frame, one of the frame's size for a larger one.
    fn assemble(&mut self, header: FrameHeader) -> Result<Message, ProtocolError> {
        let len = self.gathered;
        let mut body = if len <= SPARE_FRAME_MAX {
            if self.spare.capacity() < len {
                self.spare = BytesMut::with_capacity(SPARE_LEN);
            }
            copy_parts(&mut self.parts, &mut self.spare);
            self.spare.split().freeze()
        } else {
            let mut frame = BytesMut::with_capacity(len);
            copy_parts(&mut self.parts, &mut frame);
            frame.freeze()
        };
        self.gathered = 0;
        self.header = None;
        self.parts.shrink_to(PARTS_KEPT);
        body.advance(FRAME_HEADER_LEN);
        Message::decode_body(header.frame_type, body)
    }
}

/// Moves `parts`, in order, onto the end of `frame`.
fn copy_parts(parts: &mut Vec<Bytes>, frame: &mut BytesMut) {
    for part in parts.drain(..) {
        frame.extend_from_slice(&part);
    }
}

/// The type and frame length of a DATA frame lying whole at the front of `bytes`, with a
/// header the limits accept; `None` otherwise.
fn whole_data_in(bytes: &[u8]) -> Option<(DataType, usize)> {
    if bytes.len() < DATA_HEADER_LEN || bytes[0] != FrameType::Data as u8 {
        return None;
    }
    let body_len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
    if !(DATA_PREFIX_LEN..=MAX_DATA_BODY_LEN).contains(&body_len)
        || bytes.len() < FRAME_HEADER_LEN + body_len
    {
        return None;
    }
    let mut data_type = [0u8; 16];
    data_type.copy_from_slice(&bytes[FRAME_HEADER_LEN..DATA_HEADER_LEN]);
    Some((DataType(data_type), FRAME_HEADER_LEN + body_len))
}

/// Parses and checks the header at the front of `bytes`, which holds at least
/// [`FRAME_HEADER_LEN`] bytes (the caller checked; the slice would panic otherwise).
fn header_at_front(bytes: &[u8]) -> Result<FrameHeader, ProtocolError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    header.copy_from_slice(&bytes[..FRAME_HEADER_LEN]);
    FrameHeader::parse(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DataType;
    use crate::wire::{data_header, DisconnectReason, MAX_DATA_LEN};

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

    /// Decodes `bytes` pushed as one chunk: the first message or error.
    fn decode_one(bytes: &[u8]) -> Result<Option<Message>, ProtocolError> {
        let mut decoder = FrameDecoder::new();
        decoder.push(Bytes::copy_from_slice(bytes));
        decoder.next_message()
    }

    /// Feeds `stream` in chunks of `size` and collects every frame.
    fn cut(stream: &[u8], size: usize) -> Result<Vec<Message>, ProtocolError> {
        let mut decoder = FrameDecoder::new();
        let mut frames = Vec::new();
        for chunk in stream.chunks(size) {
            decoder.push(Bytes::copy_from_slice(chunk));
            while let Some(message) = decoder.next_message()? {
                frames.push(message);
            }
            assert!(
                decoder.chunk.is_empty() && decoder.later.is_empty(),
                "a chunk is used up before the next"
            );
        }
        assert_eq!(decoder.gathered, 0, "no frame left half-read");
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
        let mut decoder = FrameDecoder::new();
        decoder.push(chunk.clone());
        for _ in 0..2 {
            let Ok(Some(Message::Data { payload, .. })) = decoder.next_message() else {
                panic!("a whole DATA frame");
            };
            let inside = chunk.as_ptr_range();
            assert!(
                inside.contains(&payload.as_ptr()),
                "payload shares the chunk"
            );
        }
        assert_eq!(decoder.parts.capacity(), 0, "nothing was gathered");
        assert_eq!(decoder.later.capacity(), 0, "no chunk waited");
    }

    #[test]
    fn an_announced_body_commits_no_memory_before_it_arrives() {
        let header = data_header(DataType::from_u128(1), MAX_DATA_LEN);
        let mut decoder = FrameDecoder::new();
        decoder.push(Bytes::copy_from_slice(&header));
        assert_eq!(decoder.next_message(), Ok(None));
        assert_eq!(decoder.gathered, 21, "only the bytes that came");
        decoder.push(Bytes::from(vec![0u8; 1000]));
        assert_eq!(decoder.next_message(), Ok(None));
        assert_eq!(decoder.gathered, 1021);
        assert_eq!(decoder.parts.len(), 2, "held as received, not copied");
    }

    #[test]
    fn a_bad_header_fails_before_its_body_arrives() {
        let mut decoder = FrameDecoder::new();
        decoder.push(Bytes::from_static(&[0x05, 0xff, 0xff]));
        assert_eq!(decoder.next_message(), Ok(None));
        decoder.push(Bytes::from_static(&[0xff, 0xff]));
        assert!(matches!(
            decoder.next_message(),
            Err(ProtocolError::FrameTooLong { .. })
        ));
    }

    #[test]
    fn a_large_frame_gives_back_its_room_for_parts() {
        let message = data(10_000, 9);
        let stream = message.to_bytes();
        let mut decoder = FrameDecoder::new();
        for (index, byte) in stream.iter().enumerate() {
            decoder.push(Bytes::copy_from_slice(&[*byte]));
            let decoded = decoder.next_message().expect("a valid frame");
            assert_eq!(decoded.is_some(), index + 1 == stream.len());
        }
        assert!(decoder.parts.capacity() <= PARTS_KEPT);
        assert!(!decoder.is_mid_frame());
    }

    #[test]
    fn small_frames_across_chunks_share_a_buffer_given_back_when_idle() {
        let (small, large) = (data(64, 1), data(SPARE_FRAME_MAX, 2));
        let mut stream = BytesMut::new();
        for message in [&small, &small, &large, &small] {
            message.encode(&mut stream);
        }
        let stream = stream.freeze();
        // Every frame is cut in two: each is copied once it is whole.
        let mut decoder = FrameDecoder::new();
        let mut payloads = Vec::new();
        for piece in stream.chunks(50) {
            decoder.push(Bytes::copy_from_slice(piece));
            while let Some(message) = decoder.next_message().expect("valid frames") {
                let Message::Data { payload, .. } = &message else {
                    panic!("DATA only")
                };
                payloads.push(payload.clone());
            }
            if !decoder.is_mid_frame() {
                assert_eq!(decoder.spare.capacity(), 0, "no buffer between frames");
            }
        }
        let decoded: Vec<Message> = payloads
            .iter()
            .map(|payload| Message::Data {
                data_type: DataType::from_u128(0xfeed),
                payload: payload.clone(),
            })
            .collect();
        assert_eq!(
            decoded,
            [small.clone(), small.clone(), large, small.clone()]
        );
        let spare_start = payloads[0].as_ptr().wrapping_sub(DATA_HEADER_LEN);
        let spare = spare_start..spare_start.wrapping_add(SPARE_LEN);
        assert!(
            spare.contains(&payloads[1].as_ptr()),
            "small frames share one buffer"
        );
        assert!(spare.contains(&payloads[3].as_ptr()));
        assert!(
            !spare.contains(&payloads[2].as_ptr()),
            "a large frame has its own"
        );
        assert_eq!(decoder.spare.capacity(), 0, "given back: nothing is held");
        // A reader about to wait inside a frame gives the buffer back too.
        decoder.push(stream.slice(..50));
        decoder.push(stream.slice(50..100));
        assert!(decoder.next_message().expect("a frame").is_some());
        assert_eq!(decoder.next_message(), Ok(None));
        assert!(decoder.is_mid_frame() && decoder.spare.capacity() != 0);
        decoder.release_spare();
        assert_eq!(decoder.spare.capacity(), 0);
        decoder.push(stream.slice(100..));
        assert_eq!(decoder.next_message(), Ok(Some(small)));
    }

    #[test]
    fn chunks_pushed_before_reading_are_all_decoded() {
        let messages = [data(10, 1), data(300, 2), data(0, 3)];
        let mut stream = BytesMut::new();
        for message in &messages {
            message.encode(&mut stream);
        }
        let stream = stream.freeze();
        let mut decoder = FrameDecoder::new();
        for start in (0..stream.len()).step_by(7) {
            decoder.push(stream.slice(start..(start + 7).min(stream.len())));
        }
        decoder.push(Bytes::new());
        assert_eq!(decoder.buffered_len(), stream.len());
        for message in &messages {
            assert_eq!(decoder.next_message().as_ref(), Ok(&Some(message.clone())));
        }
        assert_eq!(decoder.next_message(), Ok(None));
        assert!(!decoder.is_mid_frame());
    }

    #[test]
    fn an_error_is_returned_again_and_frees_what_was_held() {
        let frame = data(100, 1).to_bytes();
        let mut decoder = FrameDecoder::new();
        decoder.push(frame.slice(..50));
        assert_eq!(decoder.next_message(), Ok(None));
        decoder.push(frame.slice(50..));
        decoder.push(Bytes::from_static(&[0x7f, 0, 0, 0, 0]));
        assert_eq!(decoder.next_message(), Ok(Some(data(100, 1))));
        assert_eq!(
            decoder.next_message(),
            Err(ProtocolError::UnknownFrameType(0x7f))
        );
        assert!(!decoder.is_mid_frame(), "nothing is held after an error");
        decoder.push(data(1, 1).to_bytes());
        assert_eq!(
            decoder.next_message(),
            Err(ProtocolError::UnknownFrameType(0x7f))
        );
        assert!(!decoder.is_mid_frame());
    }

    /// A tiny deterministic generator (xorshift) so these tests cover many shapes without
    /// a property-testing dependency (`tests/codec_props.rs` has the property tests).
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
        let mut decoder = FrameDecoder::new();
        let mut stream = stream.freeze();
        while !stream.is_empty() {
            let take = ((rng.next() % 700) as usize + 1).min(stream.len());
            decoder.push(stream.split_to(take));
            while let Some(message) = decoder.next_message().expect("valid stream") {
                received.push(message);
            }
        }
        assert_eq!(received, sent);
    }

    #[test]
    fn bad_frames_are_rejected() {
        assert_eq!(
            decode_one(&[0x7f, 0, 0, 0, 0]),
            Err(ProtocolError::UnknownFrameType(0x7f))
        );
        assert!(matches!(
            decode_one(&[0x05, 0xff, 0xff, 0xff, 0xff]),
            Err(ProtocolError::FrameTooLong { .. })
        ));
        assert!(matches!(
            decode_one(&[0x01, 0, 0, 0x10, 0x01]),
            Err(ProtocolError::FrameTooLong { .. })
        ));
        // A truncated CONNECT body: the header says 3 bytes, the fields need more.
        assert_eq!(
            decode_one(&[0x01, 0, 0, 0, 3, 1, 1, 0]),
            Err(ProtocolError::Truncated)
        );
        // A body with one byte too many.
        assert_eq!(
            decode_one(&[0x04, 0, 0, 0, 2, 3, 0]),
            Err(ProtocolError::TrailingBytes(1))
        );
        assert_eq!(
            decode_one(&[0x04, 0, 0, 0, 1, 9]),
            Err(ProtocolError::UnknownReason(9))
        );
        assert_eq!(
            decode_one(&[0x05, 0, 0, 0, 3, 1, 2, 3]),
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
            let _ = decode_one(&bytes);
        }
    }

    /// Chunks come out in the order they were pushed, also when one is pushed while an
    /// earlier one waits and the chunk being cut up ends exactly with a frame.
    #[test]
    fn a_chunk_pushed_behind_waiting_ones_comes_after_them() {
        let (a, b, c) = (data(3, 1), data(4, 2), data(5, 3));
        let mut decoder = FrameDecoder::new();
        decoder.push(a.to_bytes());
        decoder.push(b.to_bytes());
        assert_eq!(decoder.next_message(), Ok(Some(a)));
        decoder.push(c.to_bytes());
        assert_eq!(decoder.next_message(), Ok(Some(b)));
        assert_eq!(decoder.next_message(), Ok(Some(c)));
        assert_eq!(decoder.next_message(), Ok(None));
    }

    /// Which DATA fast path [`drain`] asks first.
    #[derive(Clone, Copy)]
    enum Fast {
        /// None: `next_message` only.
        Off,
        /// [`FrameDecoder::next_data_run`] with this type and these most frames and bytes.
        Run(DataType, usize, usize),
        /// [`FrameDecoder::next_data`].
        Any,
    }

    /// Everything a decoder yields for `pieces` pushed in turn: each step asks the `fast`
    /// path first, then `next_message`; ends at the first error.
    fn drain(pieces: &[Bytes], fast: Fast) -> Vec<Result<Message, ProtocolError>> {
        let mut decoder = FrameDecoder::new();
        let mut out = Vec::new();
        for piece in pieces {
            decoder.push(piece.clone());
            loop {
                let taken = match fast {
                    Fast::Off => Vec::new(),
                    Fast::Run(data_type, max_frames, max_bytes) => {
                        let mut run = Vec::new();
                        let bytes =
                            decoder.next_data_run(data_type, &mut run, max_frames, max_bytes);
                        let lens: Vec<usize> = run.iter().map(Bytes::len).collect();
                        assert_eq!(bytes, lens.iter().sum::<usize>());
                        assert!(run.len() <= max_frames, "at most {max_frames} frames");
                        let before_last: usize = lens.iter().rev().skip(1).sum();
                        assert!(before_last < max_bytes, "no frame after {max_bytes} bytes");
                        run.into_iter()
                            .map(|payload| (data_type, payload))
                            .collect()
                    }
                    Fast::Any => decoder.next_data().into_iter().collect(),
                };
                if !taken.is_empty() {
                    for (data_type, payload) in taken {
                        out.push(Ok(Message::Data { data_type, payload }));
                    }
                    continue;
                }
                match decoder.next_message() {
                    Ok(Some(message)) => out.push(Ok(message)),
                    Ok(None) => break,
                    Err(error) => {
                        out.push(Err(error));
                        return out;
                    }
                }
            }
        }
        out
    }

    /// The fast paths for DATA yield exactly what `next_message` would, for streams of
    /// DATA of two types, control frames and bad frames, however they are cut.
    #[test]
    fn the_data_fast_path_agrees_with_next_message() {
        let mut rng = Xorshift(0xDA7A);
        let fast = DataType::from_u128(0xFA57);
        // It does take a run of DATA of its type, sharing the chunk, and stops at another.
        let mut stream = BytesMut::new();
        for len in [64, 0, 7] {
            Message::Data {
                data_type: fast,
                payload: Bytes::from(vec![9; len]),
            }
            .encode(&mut stream);
        }
        data(5, 1).encode(&mut stream);
        let chunk = stream.freeze();
        let mut decoder = FrameDecoder::new();
        decoder.push(chunk.clone());
        let mut run = Vec::new();
        assert_eq!(
            decoder.next_data_run(fast, &mut run, 2, 1000),
            64,
            "two frames"
        );
        assert_eq!(run, [vec![9; 64], vec![]]);
        assert!(chunk.as_ptr_range().contains(&run[0].as_ptr()));
        assert_eq!(
            decoder.next_data_run(fast, &mut run, 10, 1),
            7,
            "past the byte bound"
        );
        assert_eq!(
            decoder.next_data_run(fast, &mut run, 10, 1000),
            0,
            "another type"
        );
        assert_eq!(run.len(), 3);
        let (data_type, payload) = decoder.next_data().expect("DATA of any type");
        assert_eq!(Message::Data { data_type, payload }, data(5, 1));
        assert_eq!(decoder.next_data(), None, "nothing left");
        assert_eq!(decoder.next_message(), Ok(None));
        for round in 0..300 {
            let mut stream = BytesMut::new();
            for _ in 0..(rng.next() % 40) {
                match rng.next() % 8 {
                    0 => Message::Disconnect(DisconnectReason::AppDisconnect).encode(&mut stream),
                    1 => data((rng.next() % 200) as usize, 1).encode(&mut stream),
                    _ => Message::Data {
                        data_type: fast,
                        payload: Bytes::from(vec![rng.next() as u8; (rng.next() % 300) as usize]),
                    }
                    .encode(&mut stream),
                }
            }
            // Some streams end in a bad DATA header: a body shorter than the type GUID, a
            // body over the limit, or a frame cut short.
            match round % 4 {
                0 => stream.extend_from_slice(&[FrameType::Data as u8, 0, 0, 0, 3, 1, 2, 3]),
                1 => stream.extend_from_slice(&[FrameType::Data as u8, 0xff, 0xff, 0xff, 0xff]),
                2 => stream.extend_from_slice(&data_header(fast, 10)),
                _ => {}
            }
            let mut stream = stream.freeze();
            let mut pieces = Vec::new();
            while !stream.is_empty() {
                let take = ((rng.next() % 500) as usize + 1).min(stream.len());
                pieces.push(stream.split_to(take));
            }
            let slow = drain(&pieces, Fast::Off);
            for (frames, bytes) in [(1, usize::MAX), (3, 100), (256, 64 * 1024)] {
                let run = Fast::Run(fast, frames, bytes);
                assert_eq!(drain(&pieces, run), slow, "round {round}");
            }
            assert_eq!(drain(&pieces, Fast::Any), slow, "round {round}");
        }
    }
}
