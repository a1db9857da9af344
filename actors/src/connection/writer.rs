//! The writer of one link: drains the outbox into the control stream, gathering small
//! frames into shared chunks, and on DISCONNECT closes the outbox, writes what it still
//! held, then DISCONNECT, and hands the stream back to the connection actor.

use bytes::{Bytes, BytesMut};
use peergraph_engine::wire::{DisconnectReason, Message};
use peergraph_transport::DataFrame;
use tokio::sync::OwnedSemaphorePermit;

use crate::outbox::{OutboxReceiver, Outgoing, QueuedData};

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

/// The chunks of one write: small frames copied together into shared chunks, large
/// payloads and control frames as they are.
struct WriteBatch {
    chunks: Vec<Bytes>,
    /// Small frames not yet sealed into `chunks`. Its spare capacity serves the next
    /// batch while the outbox keeps delivering, and is given back when the link goes
    /// quiet, so an idle link holds nothing here.
    small: BytesMut,
    /// The capacity of the next shared chunk: doubles while a burst goes on, back to
    /// [`FIRST_CHUNK_BYTES`] when the link goes quiet.
    next_chunk: usize,
}

impl Default for WriteBatch {
    fn default() -> Self {
        WriteBatch {
            chunks: Vec::new(),
            small: BytesMut::new(),
            next_chunk: FIRST_CHUNK_BYTES,
        }
    }
}

impl WriteBatch {
    fn push_frame(&mut self, frame: DataFrame) {
        let len = frame.wire_len();
        if len > COALESCE_FRAME_BYTES {
            self.seal();
            frame.push_chunks(&mut self.chunks);
            return;
        }
        if self.small.capacity() - self.small.len() < len {
            self.seal();
            self.small = BytesMut::with_capacity(self.next_chunk.max(len));
            self.next_chunk = (2 * self.next_chunk).min(COALESCE_CHUNK_BYTES);
        }
        frame.copy_into(&mut self.small);
    }

    /// Gives back the spare capacity of the shared chunk (the link has gone quiet).
    fn release(&mut self) {
        self.small = BytesMut::new();
        self.next_chunk = FIRST_CHUNK_BYTES;
    }

    fn push_control(&mut self, frame: Bytes) {
        self.seal();
        self.chunks.push(frame);
    }

    /// Moves the gathered small frames into `chunks`, keeping their order.
    fn seal(&mut self) {
        if !self.small.is_empty() {
            self.chunks.push(self.small.split().freeze());
        }
    }
}

/// What one turn of the writer gathered from the outbox.
#[derive(Debug, PartialEq)]
enum Gathered {
    /// Frames to write; the link goes on.
    Frames,
    /// Frames to write, then DISCONNECT with this reason: the outbox is closed and every
    /// frame a SendData was told is queued is in the batch.
    Disconnect(DisconnectReason),
    /// Every sender is gone and nothing is queued.
    Ended,
}

/// Waits for the next frame in the outbox, then gathers into `batch` what else is queued,
/// up to [`WRITE_BATCH_BYTES`], merging each DATA frame's budget permit into `permits`,
/// which holds the batch's share of the budget until the write and then gives it back in
/// one release (one lock of the budget per batch, not per frame).
///
/// On `Disconnect` it closes the outbox, so that later SendData calls are refused, and
/// then gathers everything still queued, however much: a SendData that had already taken
/// its slot in the channel when the outbox closed still puts its frame there and is told
/// `Ok`, so its frame must be written before DISCONNECT. `try_recv` cannot see such a
/// frame yet (it answers `Empty`); `recv` waits for it and ends only once the channel is
/// empty with no slot still taken.
async fn gather(
    outbox: &mut OutboxReceiver,
    batch: &mut WriteBatch,
    permits: &mut Option<OwnedSemaphorePermit>,
) -> Gathered {
    let Some(first) = outbox.frames.recv().await else {
        return Gathered::Ended;
    };
    let mut disconnect = None;
    let mut batched = 0;
    let mut next = Some(first);
    while let Some(item) = next.take() {
        match item {
            Outgoing::Data(queued) => {
                let QueuedData { frame, permit } = *queued;
                batched += frame.wire_len();
                batch.push_frame(frame);
                match permits {
                    // Every permit comes from this outbox's budget, as `merge` requires.
                    Some(held) => held.merge(permit),
                    None => *permits = Some(permit),
                }
            }
            Outgoing::Control(frame) => {
                batched += frame.len();
                batch.push_control(*frame);
            }
            // A second DISCONNECT can only have taken its slot before the first closed
            // the outbox; the first one's reason stands.
            Outgoing::Disconnect(_) if disconnect.is_some() => {}
            Outgoing::Disconnect(reason) => {
                outbox.frames.close();
                outbox.budget.close();
                disconnect = Some(reason);
            }
        }
        next = if disconnect.is_some() {
            outbox.frames.recv().await
        } else if batched < WRITE_BATCH_BYTES {
            outbox.frames.try_recv().ok()
        } else {
            None
        };
    }
    match disconnect {
        Some(reason) => Gathered::Disconnect(reason),
        None => Gathered::Frames,
    }
}

/// Drains the outbox into the send stream, batching frames; on `Disconnect`, closes the
/// outbox, writes what it still held, then DISCONNECT, and returns the stream: the actor
/// finishes it once it has read the peer's DISCONNECT, and then waits for the peer to
/// acknowledge the FIN.
pub(super) async fn run_writer(
    mut send: quinn::SendStream,
    mut outbox: OutboxReceiver,
) -> Result<Option<quinn::SendStream>, quinn::WriteError> {
    // Both grow on first use and keep their size: an idle link allocates neither.
    let mut batch = WriteBatch::default();
    let mut permits = None;
    loop {
        let gathered = gather(&mut outbox, &mut batch, &mut permits).await;
        let disconnect = match gathered {
            Gathered::Ended => return Ok(None),
            Gathered::Frames => false,
            Gathered::Disconnect(reason) => {
                batch.push_control(Message::Disconnect(reason).to_bytes());
                true
            }
        };
        batch.seal();
        send.write_all_chunks(&mut batch.chunks).await?;
        batch.chunks.clear();
        permits = None;
        if outbox.frames.is_empty() {
            batch.release();
        }
        if disconnect {
            return Ok(Some(send));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use peergraph_engine::DataType;
    use peergraph_engine::PeerError;

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

    /// The race behind a lost SendData: a sender has passed every check and taken its
    /// place in the channel when the close comes. Its call returns `Ok`, so the writer must
    /// wait for the frame and write it before DISCONNECT (it used to end the batch at the
    /// first empty `try_recv` and lose it).
    #[tokio::test]
    async fn a_send_that_took_its_place_before_the_close_is_written_before_disconnect() {
        use futures_util::FutureExt;
        let (outbox, mut receiver) = crate::outbox::outbox();
        let late = DataFrame::new(DataType::from_u128(7), Bytes::from_static(b"late"));
        let slot = outbox
            .slot(DataType::from_u128(7), Bytes::from_static(b"late"))
            .await
            .expect("a place in the outbox");
        outbox
            .disconnect(DisconnectReason::AppDisconnect)
            .await
            .expect("disconnect queued");
        let mut batch = WriteBatch::default();
        let mut permits = None;
        let mut gathering = Box::pin(gather(&mut receiver, &mut batch, &mut permits));
        assert!(
            (&mut gathering).now_or_never().is_none(),
            "the writer must wait for the frame whose place is taken"
        );
        // The outbox is closed: a SendData from now on is refused.
        assert_eq!(
            outbox
                .send_data(DataType::from_u128(7), Bytes::from_static(b"refused"))
                .await,
            Err(PeerError::CONNECTION_NOT_FOUND)
        );
        slot.queue();
        assert_eq!(
            gathering.await,
            Gathered::Disconnect(DisconnectReason::AppDisconnect)
        );
        assert_eq!(
            permits.as_ref().map(OwnedSemaphorePermit::num_permits),
            Some(late.wire_len())
        );
        assert_eq!(written(&mut batch), expected(&[late]));
    }
}
