//! The writer of one link: drains the outbox into the control stream, gathering small
//! frames into shared chunks, and on DISCONNECT (after which the outbox accepts nothing)
//! writes what came before it, then DISCONNECT, and hands the stream back to the
//! connection actor.

use std::collections::VecDeque;
use std::future::Future;

use actix::WeakAddr;
use bytes::{Bytes, BytesMut};
use peergraph_engine::wire::{data_header, Message, DATA_HEADER_LEN};
use peergraph_engine::{DataType, PeerError};
use peergraph_transport::DataFrame;

use super::{ConnectionActor, WriterEnded};
use crate::outbox::{check_payload, Fin, OutboxReceiver, Outgoing};

/// Bytes the writer gathers from the outbox into one write, so that many small frames
/// cost one call into quinn.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// DATA frames up to this many bytes (header included) are copied into a shared chunk
/// instead of going to quinn as two chunks of their own (header, payload). quinn's send
/// buffer finds the bytes of every packet it builds by walking its unacknowledged chunks
/// from the front, so a window full of tiny chunks costs time quadratic in their number:
/// with 64-byte messages that walk took a fifth to a half of the engine's CPU time
/// (benches/RESULTS.md). Copying a frame this small costs less than one step of that walk
/// per packet; larger payloads still go without a copy.
const COALESCE_FRAME_BYTES: usize = 8 * 1024;

/// The largest shared chunk of small frames: a few packets' worth, small enough to come
/// from the allocator's heap rather than its own mapping.
const COALESCE_CHUNK_BYTES: usize = 32 * 1024;

/// The first shared chunk of a burst. Each next one is twice as large, up to
/// [`COALESCE_CHUNK_BYTES`]: a link that sends one small message holds 1 KiB until quinn
/// has it acknowledged, not 32 (with 10,000 such links, 10 MB rather than 320).
const FIRST_CHUNK_BYTES: usize = 1024;

pub(crate) fn is_small(frame: &DataFrame) -> bool {
    frame.wire_len() <= COALESCE_FRAME_BYTES
}

/// Small frames copied together into shared chunks, in order: the writer's batch gathers
/// the small frames it takes as they are, and the outbox the small frames of SendData
/// calls that are not written straight into quinn. A chunk starts at [`FIRST_CHUNK_BYTES`] and each next one is
/// twice as large, up to [`COALESCE_CHUNK_BYTES`], until [`release`](Self::release).
pub(crate) struct Gathered {
    /// The frames gathered since the last [`take`](Self::take), then the spare capacity
    /// the next ones go into.
    chunk: BytesMut,
    /// The capacity of the next chunk.
    next_chunk: usize,
}

impl Default for Gathered {
    fn default() -> Self {
        Gathered {
            chunk: BytesMut::new(),
            next_chunk: FIRST_CHUNK_BYTES,
        }
    }
}

impl Gathered {
    /// Copies `frame`, a small one ([`is_small`]), after the frames gathered so far. When
    /// the chunk at hand has no room left for it, the frames gathered so far come back
    /// first, sealed, to go before it, and it starts the next chunk.
    pub(crate) fn push(&mut self, frame: &DataFrame) -> Option<Bytes> {
        let len = frame.wire_len();
        let mut full = None;
        if self.chunk.capacity() - self.chunk.len() < len {
            full = self.take();
            self.chunk = BytesMut::with_capacity(self.next_chunk.max(len));
            self.next_chunk = (2 * self.next_chunk).min(COALESCE_CHUNK_BYTES);
        }
        frame.copy_into(&mut self.chunk);
        full
    }

    /// The frames gathered since the last take, sealed; `None` if there are none. The
    /// spare capacity stays for the next frames.
    pub(crate) fn take(&mut self) -> Option<Bytes> {
        (!self.chunk.is_empty()).then(|| self.chunk.split().freeze())
    }

    /// Bytes gathered and not taken.
    pub(crate) fn len(&self) -> usize {
        self.chunk.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.chunk.is_empty()
    }

    /// Gives back the spare capacity (the link has gone quiet), so that an idle link holds
    /// nothing here; the next chunk starts small again. Call with nothing gathered.
    pub(crate) fn release(&mut self) {
        debug_assert!(self.chunk.is_empty(), "released with frames gathered");
        *self = Gathered::default();
    }

    /// The capacity of the chunk at hand, gathered bytes included.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.chunk.capacity()
    }
}

/// The chunks of a frame written alone (by its sender, into the stream the writer lent
/// the outbox), without an allocation to hold them: a small frame copied into one chunk of
/// its own size, a larger one as its header and its payload, as a batch would hold them.
/// The second chunk is empty for a small frame.
pub(crate) fn lone_frame_chunks(frame: DataFrame) -> [Bytes; 2] {
    if is_small(&frame) {
        let mut chunk = BytesMut::with_capacity(frame.wire_len());
        frame.copy_into(&mut chunk);
        [chunk.freeze(), Bytes::new()]
    } else {
        frame.into_chunks()
    }
}

/// The frames of one SendDataMany call, ready to queue in its outbox, in order: each run
/// of small frames copied together into shared chunks of up to [`COALESCE_CHUNK_BYTES`]
/// (what the writer would gather them into, done once by the caller instead of once per
/// frame), larger payloads as frames of their own, not copied. One pass over the
/// payloads, which are checked as they come: none is queued if one is too long.
///
/// A shared chunk is sized for the frames the iterator says are left, all taken as the
/// size of the one at hand (exact for a run of one size from a `Vec` or an array); when
/// the iterator cannot say, chunks double from [`FIRST_CHUNK_BYTES`] as the run goes on.
///
/// # Errors
/// `E_INVALIDARG` for a payload over [`MAX_DATA_LEN`](crate::MAX_DATA_LEN).
pub(crate) fn batch_items<I>(
    data_type: DataType,
    payloads: I,
) -> Result<VecDeque<Outgoing>, PeerError>
where
    I: IntoIterator,
    I::Item: Into<Bytes>,
{
    let mut payloads = payloads.into_iter();
    let mut items = VecDeque::new();
    let mut chunk = BytesMut::new();
    // The header of the last small frame: a run of one size encodes it once.
    let mut header = (usize::MAX, [0; DATA_HEADER_LEN]);
    let mut grow = FIRST_CHUNK_BYTES;
    while let Some(payload) = payloads.next() {
        let payload: Bytes = payload.into();
        check_payload(&payload)?;
        let len = DATA_HEADER_LEN + payload.len();
        if len > COALESCE_FRAME_BYTES {
            if !chunk.is_empty() {
                items.push_back(Outgoing::Encoded(seal(&mut chunk)));
            }
            items.push_back(Outgoing::Data(DataFrame::new(data_type, payload)));
            continue;
        }
        if chunk.capacity() - chunk.len() < len {
            if !chunk.is_empty() {
                items.push_back(Outgoing::Encoded(seal(&mut chunk)));
            }
            let (left, most) = payloads.size_hint();
            let mut room = len.saturating_mul(left.saturating_add(1));
            if most != Some(left) {
                room = room.max(grow);
                grow = (2 * grow).min(COALESCE_CHUNK_BYTES);
            }
            chunk = BytesMut::with_capacity(room.clamp(len, COALESCE_CHUNK_BYTES));
        }
        if header.0 != payload.len() {
            header = (payload.len(), data_header(data_type, payload.len()));
        }
        chunk.extend_from_slice(&header.1);
        chunk.extend_from_slice(&payload);
    }
    if !chunk.is_empty() {
        items.push_back(Outgoing::Encoded(seal(&mut chunk)));
    }
    Ok(items)
}

/// The frames gathered in `chunk`, sealed for the outbox; what room is left stays with
/// `chunk`. A chunk sized for more frames than came (the iterator's hint counted larger
/// frames, or went alone) is copied out at its size instead, so that the frames do not keep
/// the spare room until quinn has them acknowledged: a sealed chunk holds at most twice
/// its bytes.
fn seal(chunk: &mut BytesMut) -> Bytes {
    if chunk.capacity() - chunk.len() > chunk.len() {
        let sealed = Bytes::copy_from_slice(chunk);
        chunk.clear();
        return sealed;
    }
    chunk.split().freeze()
}

/// The chunks of one write: small frames copied together into shared chunks, large
/// payloads and control frames as they are.
#[derive(Default)]
struct WriteBatch {
    chunks: Vec<Bytes>,
    /// Small frames not yet sealed into `chunks`. Its spare capacity serves the next
    /// batch while the outbox keeps delivering, and is given back when the link goes
    /// quiet, so an idle link holds nothing here.
    small: Gathered,
}

impl WriteBatch {
    fn push_frame(&mut self, frame: DataFrame) {
        if !is_small(&frame) {
            self.seal();
            frame.push_chunks(&mut self.chunks);
            return;
        }
        if let Some(full) = self.small.push(&frame) {
            self.chunks.push(full);
        }
    }

    /// Gives back the spare capacity of the shared chunk (the link has gone quiet).
    fn release(&mut self) {
        self.small.release();
    }

    fn push_control(&mut self, frame: Bytes) {
        self.seal();
        self.chunks.push(frame);
    }

    /// Moves the gathered small frames into `chunks`, keeping their order.
    fn seal(&mut self) {
        if let Some(chunk) = self.small.take() {
            self.chunks.push(chunk);
        }
    }
}

/// The stream after our DISCONNECT is written, handed back to the connection actor.
pub(super) struct AfterDisconnect {
    pub(super) send: quinn::SendStream,
    /// The FIN went in the same write (the DISCONNECT answered the peer's).
    pub(super) finished: bool,
}

/// The writer of one link, a task of its own: the state it keeps between batches, and
/// the connection actor to report its end to.
///
/// One value, moved into [`run`](Self::run) and used in place there, so that the task
/// keeps each field once: an `async fn` keeps its arguments' room beside the locals they
/// were moved into, which here took a tokio task of 512 bytes on every link where
/// 384 do.
pub(super) struct Writer {
    /// The stream, lent to the outbox while the writer waits for frames.
    stream: Option<quinn::SendStream>,
    outbox: OutboxReceiver,
    /// The batch and the items taken for it grow on first use and are given back when the
    /// link goes quiet: an idle link holds neither.
    batch: WriteBatch,
    taken: VecDeque<Outgoing>,
    actor: WeakAddr<ConnectionActor>,
}

impl Writer {
    /// The writer of `send`, fed by `outbox`, reporting its end to `actor`.
    pub(super) fn new(
        send: quinn::SendStream,
        outbox: OutboxReceiver,
        actor: WeakAddr<ConnectionActor>,
    ) -> Writer {
        Writer {
            stream: Some(send),
            outbox,
            batch: WriteBatch::default(),
            taken: VecDeque::new(),
            actor,
        }
    }

    /// Writes until the end (see [`write`](Self::write)) and reports it to the actor
    /// ([`WriterEnded`]). If the actor is gone by then, the report goes nowhere, and the
    /// link is already closed.
    ///
    /// Not an `async fn`: that would move `self` into a local of its own and keep both.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would keep `self` twice in the task"
    )]
    pub(super) fn run(mut self) -> impl Future<Output = ()> {
        async move {
            let ended = self.write().await;
            // The outbox's receiver and the stream go before the report, as they did
            // when the writer was a function that returned: the actor that reads the
            // report finds the outbox closed to senders and the stream released.
            let Writer {
                actor,
                stream,
                outbox,
                batch,
                taken,
            } = self;
            drop((stream, outbox, batch, taken));
            if let Some(actor) = actor.upgrade() {
                actor.do_send(WriterEnded(ended));
            }
        }
    }

    /// Drains the outbox into the send stream, batching frames; on `Disconnect` (the last
    /// item the outbox ever holds: it refuses everything after it) writes what came
    /// before it, then DISCONNECT, and returns the stream: the actor finishes it once it
    /// has read the peer's DISCONNECT (or the writer did, when the DISCONNECT answers the
    /// peer's), and then waits for the peer to acknowledge the FIN. Each batch's room in
    /// the outbox is freed once quinn has taken it; while it waits for frames, the stream
    /// is lent to the outbox, for a sender finding it empty to write into. Ends with
    /// `None` when every sender of the outbox is gone and nothing is queued.
    async fn write(&mut self) -> Result<Option<AfterDisconnect>, quinn::WriteError> {
        loop {
            let Some(bytes) = self
                .outbox
                .take(&mut self.stream, &mut self.taken, WRITE_BATCH_BYTES)
                .await
            else {
                return Ok(None);
            };
            // `take` hands the stream back with every batch; without it, the link cannot
            // go on.
            let Some(send) = self.stream.as_mut() else {
                return Err(quinn::WriteError::ClosedStream);
            };
            let mut disconnect = None;
            for item in self.taken.drain(..) {
                match item {
                    Outgoing::Data(frame) => self.batch.push_frame(frame),
                    Outgoing::Encoded(bytes) | Outgoing::Gathered { chunk: bytes, .. } => {
                        self.batch.push_control(bytes)
                    }
                    Outgoing::Disconnect { frame, fin } => disconnect = Some((frame, fin)),
                }
            }
            if let Some((Some(reason), _)) = disconnect {
                self.batch
                    .push_control(Message::Disconnect(reason).to_bytes());
            }
            self.batch.seal();
            // `write_all_chunks`, written out: its future is twice the size of this loop's.
            let mut rest = &mut self.batch.chunks[..];
            while !rest.is_empty() {
                let written = send.write_chunks(rest).await?;
                rest = &mut rest[written.chunks..];
            }
            self.batch.chunks.clear();
            self.outbox.written(bytes);
            if let Some((_, fin)) = disconnect {
                // Finishing fails only if the stream was stopped or reset, which the
                // reader or the connection reports; the machine then asks for the FIN
                // again, and the actor's attempt fails the same way, harmlessly.
                let finished = match fin {
                    Fin::Finish => send.finish().is_ok(),
                    Fin::Keep => false,
                };
                return Ok(self
                    .stream
                    .take()
                    .map(|send| AfterDisconnect { send, finished }));
            }
            if self.outbox.quiet() {
                self.batch.release();
                self.taken = VecDeque::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> DataFrame {
        DataFrame::new(DataType::from_u128(7), Bytes::from(vec![len as u8; len]))
    }

    /// The bytes a batch would write, in order.
    fn written(batch: &mut WriteBatch) -> Vec<u8> {
        batch.seal();
        let bytes = batch.chunks.concat();
        batch.chunks.clear();
        bytes
    }

    fn expected(frames: &[DataFrame]) -> Vec<u8> {
        let mut buf = BytesMut::new();
        for frame in frames {
            frame.copy_into(&mut buf);
        }
        buf.to_vec()
    }

    #[test]
    fn a_lone_small_frame_takes_a_small_chunk() {
        let mut batch = WriteBatch::default();
        batch.push_frame(frame(5));
        assert_eq!(batch.small.capacity(), FIRST_CHUNK_BYTES);
        assert_eq!(written(&mut batch), expected(&[frame(5)]));
    }

    #[test]
    fn chunks_double_during_a_burst_and_start_small_again_after_it() {
        let mut batch = WriteBatch::default();
        let frames: Vec<DataFrame> = (0..2_000).map(|i| frame(20 + i % 300)).collect();
        let mut capacities = Vec::new();
        for f in &frames {
            let before = batch.small.capacity() - batch.small.len();
            batch.push_frame(f.clone());
            if before < f.wire_len() {
                capacities.push(batch.small.capacity());
            }
        }
        assert_eq!(capacities[0], FIRST_CHUNK_BYTES);
        assert!(capacities
            .windows(2)
            .all(|w| w[1] == (2 * w[0]).min(COALESCE_CHUNK_BYTES)));
        assert_eq!(*capacities.last().expect("chunks"), COALESCE_CHUNK_BYTES);
        assert_eq!(written(&mut batch), expected(&frames));
        batch.release();
        batch.push_frame(frame(5));
        assert_eq!(batch.small.capacity(), FIRST_CHUNK_BYTES);
    }

    #[test]
    fn large_and_control_frames_keep_their_place() {
        let mut batch = WriteBatch::default();
        let big = frame(COALESCE_FRAME_BYTES + 1);
        batch.push_frame(frame(10));
        batch.push_frame(big.clone());
        batch.push_control(Bytes::from_static(b"control"));
        batch.push_frame(frame(11));
        let mut want = expected(&[frame(10), big]);
        want.extend_from_slice(b"control");
        want.extend(expected(&[frame(11)]));
        assert_eq!(written(&mut batch), want);
    }

    /// The bytes `items` would put on the wire, in order.
    fn items_bytes(items: &VecDeque<Outgoing>) -> Vec<u8> {
        let mut chunks = Vec::new();
        for item in items {
            match item {
                Outgoing::Data(frame) => frame.clone().push_chunks(&mut chunks),
                Outgoing::Encoded(bytes) | Outgoing::Gathered { chunk: bytes, .. } => {
                    chunks.push(bytes.clone())
                }
                Outgoing::Disconnect { .. } => panic!("a batch holds no DISCONNECT"),
            }
        }
        chunks.concat()
    }

    #[test]
    fn a_batch_is_its_frames_in_order_small_ones_gathered_large_ones_alone() {
        let data_type = DataType::from_u128(7);
        let lens = [0, 64, 5, COALESCE_FRAME_BYTES, 64, 3, 70_000, 1];
        let mut payloads: Vec<Bytes> = lens
            .iter()
            .map(|&len| Bytes::from(vec![len as u8; len]))
            .collect();
        // A run of small frames long enough to fill several shared chunks.
        payloads.extend((0..2_000).map(|i| Bytes::from(vec![i as u8; 64])));
        let frames: Vec<DataFrame> = payloads
            .iter()
            .map(|payload| DataFrame::new(data_type, payload.clone()))
            .collect();
        let items = batch_items(data_type, payloads).expect("every payload is short enough");
        assert_eq!(items_bytes(&items), expected(&frames));
        let large: Vec<usize> = items
            .iter()
            .filter_map(|item| match item {
                Outgoing::Data(frame) => Some(frame.wire_len()),
                _ => None,
            })
            .collect();
        // Only the two frames over the coalescing size go alone.
        assert_eq!(
            large,
            vec![
                DATA_HEADER_LEN + COALESCE_FRAME_BYTES,
                DATA_HEADER_LEN + 70_000
            ]
        );
        for item in &items {
            if let Outgoing::Encoded(chunk) = item {
                assert!(!chunk.is_empty() && chunk.len() <= COALESCE_CHUNK_BYTES);
            }
        }
        // 2,000 frames of 64 bytes gather into as few chunks as their size allows.
        let gathered = items
            .iter()
            .filter(|item| matches!(item, Outgoing::Encoded(_)));
        let least = (2_000 * (DATA_HEADER_LEN + 64)).div_ceil(COALESCE_CHUNK_BYTES);
        assert!(gathered.count() <= least + 3);
    }

    /// Shared chunks of an iterator that cannot say how many payloads are left grow as
    /// the writer's do, so a long run still takes few chunks, all frames in order.
    #[test]
    fn a_run_of_unknown_length_gathers_into_growing_chunks() {
        let data_type = DataType::from_u128(7);
        let payloads: Vec<Bytes> = (0..2_000).map(|i| Bytes::from(vec![i as u8; 64])).collect();
        let frames: Vec<DataFrame> = payloads
            .iter()
            .map(|payload| DataFrame::new(data_type, payload.clone()))
            .collect();
        let unknown = payloads.into_iter().filter(|_| true);
        assert_ne!(unknown.size_hint().1, Some(unknown.size_hint().0));
        let items = batch_items(data_type, unknown).expect("every payload is short enough");
        assert_eq!(items_bytes(&items), expected(&frames));
        let least = (2_000 * (DATA_HEADER_LEN + 64)).div_ceil(COALESCE_CHUNK_BYTES);
        // Up to 32 KiB in five doublings from 1 KiB, then full chunks.
        assert!(items.len() <= least + 6, "{} chunks", items.len());
    }

    /// A small frame the size hint took for the first of many (the rest go alone, being
    /// large) is not sealed into a chunk sized for all of them.
    #[test]
    fn a_chunk_sized_for_frames_that_went_alone_is_sealed_at_its_size() {
        let data_type = DataType::from_u128(7);
        let mut payloads = vec![Bytes::from(vec![1; 64])];
        payloads.extend((0..400).map(|_| Bytes::from(vec![2; COALESCE_FRAME_BYTES])));
        let frames: Vec<DataFrame> = payloads
            .iter()
            .map(|payload| DataFrame::new(data_type, payload.clone()))
            .collect();
        let mut items = batch_items(data_type, payloads).expect("every payload is short enough");
        assert_eq!(items_bytes(&items), expected(&frames));
        let Some(Outgoing::Encoded(first)) = items.pop_front() else {
            panic!("the small frame comes first, in a chunk");
        };
        assert_eq!(first.len(), DATA_HEADER_LEN + 64);
        // The chunk's bytes were copied out: dropping the rest of the batch and the chunk
        // leaves an allocation of the frame's size (a `Vec`-backed `Bytes` owns exactly
        // its bytes once it is the only handle).
        drop(items);
        assert_eq!(Vec::from(first).capacity(), DATA_HEADER_LEN + 64);
    }

    /// A payload over the limit anywhere in the call refuses the whole call.
    #[test]
    fn one_payload_too_long_refuses_the_batch() {
        let payloads = [
            Bytes::from_static(b"first"),
            Bytes::from(vec![0; crate::MAX_DATA_LEN + 1]),
            Bytes::from_static(b"last"),
        ];
        assert_eq!(
            batch_items(DataType::from_u128(7), payloads).map(|items| items.len()),
            Err(PeerError::INVALID_ARG)
        );
    }

    #[test]
    fn an_empty_batch_queues_nothing() {
        assert!(batch_items(DataType::from_u128(7), Vec::<Bytes>::new())
            .expect("no payload to refuse")
            .is_empty());
    }
}
