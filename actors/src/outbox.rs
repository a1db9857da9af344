//! The bounded outbox of one connection: SendData queues DATA frames into it from any
//! thread, the connection's writer drains it, and a close queues DISCONNECT behind
//! everything accepted before it.
//!
//! One lock guards the queue, its bounds and the line of senders waiting for room. A
//! large frame is queued as it is (no copy); a small one that is not written straight
//! into quinn (below) is copied onto the end of a shared chunk, as the writer would gather
//! it, so that a burst of small messages costs a copy each and not a queue entry each.
//! The writer takes a batch under one lock, and an idle link's outbox holds no queue
//! memory at all: its queue and chunk are given back whenever the writer finds it empty.
//!
//! While the writer waits for frames it lends the outbox its send stream, and a sender
//! that finds the queue empty writes its frame into quinn itself, under the lock: a
//! request, or the answer to one, reaches quinn without waking the writer's task on the
//! way. Frames that follow within [`DIRECT_WRITE_GAP`] are queued for the writer as before,
//! so a sender in a burst still hands quinn large batches.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use peergraph_engine::wire::{DisconnectReason, Message, DATA_HEADER_LEN, MAX_DATA_LEN};
use peergraph_engine::{DataType, PeerError};
use peergraph_transport::DataFrame;
use tokio::sync::Notify;

use crate::connection::{is_small, lone_frame_chunks, Gathered};

/// The most items waiting in one connection's outbox: DATA frames (each SendData's frame
/// counts as one, also once it is copied into a shared chunk with others), or the shared
/// chunks a SendDataMany packs its small frames into (up to 32 KiB each; [`OUTBOX_BYTES`]
/// bounds their bytes as it does every frame's).
pub const OUTBOX_FRAMES: usize = 1024;
/// The most bytes waiting in one connection's outbox: 2 MiB. quinn buffers up to its send
/// window behind this, so a small outbox keeps the link busy while a sender that outruns
/// the network waits here instead of growing memory.
pub const OUTBOX_BYTES: usize = 2 * 1024 * 1024;

/// The least time between two frames that senders write into the lent stream themselves.
/// A frame that comes sooner after the last one is queued for the writer, and a burst's
/// small frames are gathered into a few large chunks: a chunk of its own per frame in quinn's
/// send buffer costs time that grows with their number (see the writer's
/// `COALESCE_FRAME_BYTES`), and a call into quinn per frame takes its connection lock each
/// time. A request and its answer are further apart than this on any link.
const DIRECT_WRITE_GAP: Duration = Duration::from_micros(50);

/// What the writer of a connection is asked to send.
pub(crate) enum Outgoing {
    /// A DATA frame.
    Data(DataFrame),
    /// Encoded bytes written as they are, before anything queued after them: the rest of a
    /// WELCOME, what quinn did not take of a frame its sender wrote itself, or the small
    /// frames of a SendDataMany.
    Encoded(Bytes),
    /// Small DATA frames of SendData calls, `frames` of them, copied together by their
    /// senders; written as they are.
    Gathered { chunk: Bytes, frames: usize },
    /// Write everything queued so far, then our DISCONNECT (`frame`; `None` when what
    /// quinn did not take of it, written into the lent stream, is queued before this as
    /// encoded bytes), then end the stream as `fin` says; nothing is accepted after it.
    Disconnect {
        frame: Option<DisconnectReason>,
        fin: Fin,
    },
}

/// What becomes of the stream after our DISCONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fin {
    /// It stays open: the actor finishes it once the peer's DISCONNECT is read.
    Keep,
    /// The writer ends it right after the DISCONNECT, in the same write.
    Finish,
}

impl From<bool> for Fin {
    /// `Finish` when the stream is to be ended with the DISCONNECT, `Keep` otherwise.
    fn from(finish: bool) -> Self {
        match finish {
            true => Fin::Finish,
            false => Fin::Keep,
        }
    }
}

impl Outgoing {
    /// Its share of [`OUTBOX_BYTES`]: its bytes on the wire, at least 1 (so that the frame
    /// bound holds for empty payloads too), at most the whole budget (a frame larger than
    /// the budget passes alone).
    fn cost(&self) -> usize {
        let len = match self {
            Outgoing::Data(frame) => frame.wire_len(),
            Outgoing::Encoded(bytes) | Outgoing::Gathered { chunk: bytes, .. } => bytes.len(),
            Outgoing::Disconnect { .. } => 0,
        };
        len.clamp(1, OUTBOX_BYTES)
    }

    /// How many of the [`OUTBOX_FRAMES`] items it takes: one, or one for each of the
    /// frames gathered in it.
    fn items(&self) -> usize {
        match self {
            Outgoing::Gathered { frames, .. } => *frames,
            _ => 1,
        }
    }
}

struct State {
    queue: VecDeque<Outgoing>,
    /// Small DATA frames copied together by their senders, after everything in `queue`:
    /// the writer takes them last. Anything queued after them seals them into `queue`
    /// first, as an [`Outgoing::Gathered`] chunk.
    gathered: Gathered,
    /// How many frames `gathered` holds.
    gathered_frames: usize,
    /// The items `queue` holds, as [`Outgoing::items`] counts them.
    queued_items: usize,
    /// Bytes queued (gathered ones included), and taken by the writer but not yet written
    /// (their room is freed once quinn has them).
    bytes: usize,
    /// Senders waiting for room, by ticket, served in order: only the first may take
    /// room, so a large frame is not starved by small ones behind it.
    waiting: VecDeque<u64>,
    next_ticket: u64,
    /// DISCONNECT is queued, or the writer is gone: nothing more is accepted.
    closed: bool,
    /// DISCONNECT is queued (or written): asking for it again is not an error.
    disconnect_queued: bool,
    /// The writer waits for a frame and must be woken by the next one.
    writer_parked: bool,
    /// The send stream, lent by the writer while it waits for frames (and only then), for
    /// a sender that finds the queue empty to write into.
    stream: Option<quinn::SendStream>,
    /// When a sender last wrote into the lent stream.
    last_direct: Option<Instant>,
    /// Our DISCONNECT went whole into the lent stream, and whether the stream was ended
    /// with it: the stream waits here for the connection actor
    /// ([`Outbox::take_written_disconnect`]), and the writer is not woken for it.
    disconnect_written: Option<bool>,
}

impl State {
    fn fits(&self, cost: usize) -> bool {
        self.items() < OUTBOX_FRAMES && self.bytes + cost <= OUTBOX_BYTES
    }

    /// Items waiting for the writer, each gathered frame counted as one: a burst of
    /// small frames goes to the writer in batches of at most [`OUTBOX_FRAMES`], as when
    /// each was queued as it is, and so a batch's bytes stay in the processor's caches.
    fn items(&self) -> usize {
        self.queued_items + self.gathered_frames
    }

    fn push_back(&mut self, item: Outgoing) {
        self.queued_items += item.items();
        self.queue.push_back(item);
    }

    /// Nothing waits for the writer.
    fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.gathered.is_empty()
    }

    /// Adds `item` to the queue, after the frames gathered so far; true when the writer
    /// waits and must be woken.
    fn enqueue(&mut self, item: Outgoing) -> bool {
        self.seal_gathered();
        self.bytes += item.cost();
        self.push_back(item);
        std::mem::take(&mut self.writer_parked)
    }

    /// Moves the frames gathered so far into the queue, as one chunk.
    fn seal_gathered(&mut self) {
        if let Some(chunk) = self.gathered.take() {
            let item = self.gathered_item(chunk);
            self.push_back(item);
        }
    }

    /// `chunk`, every frame gathered so far (taken out of `gathered`), as one item.
    fn gathered_item(&mut self, chunk: Bytes) -> Outgoing {
        let frames = std::mem::take(&mut self.gathered_frames);
        Outgoing::Gathered { chunk, frames }
    }

    /// Queues `frame`: copied after the frames gathered so far if it is small (a chunk
    /// that fills up goes into the queue whole), as it is otherwise. True when the
    /// writer waits and must be woken.
    fn enqueue_frame(&mut self, frame: DataFrame) -> bool {
        if !is_small(&frame) {
            return self.enqueue(Outgoing::Data(frame));
        }
        self.bytes += frame.wire_len().clamp(1, OUTBOX_BYTES);
        if let Some(chunk) = self.gathered.push(&frame) {
            let item = self.gathered_item(chunk);
            self.push_back(item);
        }
        self.gathered_frames += 1;
        std::mem::take(&mut self.writer_parked)
    }

    /// Writes `frame` into the stream the waiting writer lent, unless it lent none or a
    /// sender wrote into it less than [`DIRECT_WRITE_GAP`] ago: then the frame comes back,
    /// to be queued. Call only with nothing queued (the frame goes after everything
    /// accepted before it). What quinn does not take now (its window is full, or the stream
    /// failed) is queued for the writer, whose own write waits for room or meets the error;
    /// the result is then true when the writer must be woken.
    fn write_direct(&mut self, frame: DataFrame) -> Result<bool, DataFrame> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(frame);
        };
        let now = Instant::now();
        if self
            .last_direct
            .is_some_and(|last| now.duration_since(last) < DIRECT_WRITE_GAP)
        {
            return Err(frame);
        }
        self.last_direct = Some(now);
        let mut chunks = lone_frame_chunks(frame);
        let used = match chunks[1].is_empty() {
            true => 1,
            false => 2,
        };
        // One poll, never waiting: blocked, quinn keeps this no-op waker until the writer's
        // own write replaces it, and writes nothing.
        let mut cx = Context::from_waker(Waker::noop());
        let written = match std::pin::pin!(stream.write_chunks(&mut chunks[..used])).poll(&mut cx) {
            Poll::Ready(Ok(written)) => written.chunks,
            Poll::Ready(Err(_)) | Poll::Pending => 0,
        };
        let mut wake = false;
        for rest in chunks[written..used].iter_mut().map(std::mem::take) {
            // quinn leaves a chunk it took in part holding the rest.
            if !rest.is_empty() {
                wake |= self.enqueue(Outgoing::Encoded(rest));
            }
        }
        Ok(wake)
    }

    /// Our DISCONNECT: written into the stream the waiting writer lent if the queue is
    /// empty and it lent one (and ended with it when `fin` says so), so that it leaves
    /// without waiting for the writer's turn; otherwise queued for the writer, behind
    /// everything queued, or as what quinn did not take of it. Returns whether the writer
    /// must be woken: not when quinn took all of it, for then the writer has nothing left
    /// to do, and the stream waits here for the connection actor.
    fn queue_disconnect(&mut self, reason: DisconnectReason, fin: Fin) -> bool {
        let lent = match self.is_empty() {
            true => self.stream.as_mut(),
            false => None,
        };
        let Some(stream) = lent else {
            let frame = Some(reason);
            return self.enqueue(Outgoing::Disconnect { frame, fin });
        };
        let mut chunks = [Message::Disconnect(reason).to_bytes()];
        // One poll, never waiting, as in `write_direct`.
        let mut cx = Context::from_waker(Waker::noop());
        let written = match std::pin::pin!(stream.write_chunks(&mut chunks)).poll(&mut cx) {
            Poll::Ready(Ok(written)) => written.chunks,
            Poll::Ready(Err(_)) | Poll::Pending => 0,
        };
        if written == chunks.len() {
            // Finishing fails only if the stream was stopped or reset, which the reader or
            // the connection reports; the actor then sees that the FIN did not go.
            let finished = fin == Fin::Finish && stream.finish().is_ok();
            self.disconnect_written = Some(finished);
            return false;
        }
        let [rest] = chunks;
        let wake = self.enqueue(Outgoing::Encoded(rest));
        self.enqueue(Outgoing::Disconnect { frame: None, fin }) | wake
    }
}

struct Shared {
    state: Mutex<State>,
    /// The writer's task, woken when a frame comes to an empty queue.
    writer: AtomicWaker,
    /// Wakes the senders waiting for room when the writer frees some, or the outbox
    /// closes.
    room_freed: Notify,
    /// Live [`Outbox`] handles: the writer ends once there are none and nothing is queued.
    senders: AtomicUsize,
}

impl Shared {
    /// The state, also after a panic elsewhere while it was held (every change to it is
    /// complete before the lock is released, so it is consistent).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `item` under the held lock and wakes the writer if it waits.
    fn push(&self, mut state: MutexGuard<'_, State>, item: Outgoing) {
        let wake = state.enqueue(item);
        self.release(state, wake);
    }

    /// Releases the lock, then wakes the writer if `wake`.
    fn release(&self, state: MutexGuard<'_, State>, wake: bool) {
        drop(state);
        if wake {
            self.writer.wake();
        }
    }
}

/// The sending side of a connection's outbox. Cheap to clone.
pub(crate) struct Outbox {
    shared: Arc<Shared>,
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Outbox {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last sender: a writer waiting for frames may end.
            self.shared.writer.wake();
        }
    }
}

/// The receiving side, owned by the connection's writer. Dropping it (the writer ended)
/// closes the outbox: senders, waiting ones included, are refused from then on.
pub(crate) struct OutboxReceiver {
    shared: Arc<Shared>,
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        state.queue = VecDeque::new();
        state.gathered = Gathered::default();
        (state.queued_items, state.gathered_frames) = (0, 0);
        // The stream ends with the writer, as if the writer had kept it.
        let stream = state.stream.take();
        drop(state);
        drop(stream);
        self.shared.room_freed.notify_waiters();
    }
}

pub(crate) fn outbox() -> (Outbox, OutboxReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            gathered: Gathered::default(),
            gathered_frames: 0,
            queued_items: 0,
            bytes: 0,
            waiting: VecDeque::new(),
            next_ticket: 0,
            closed: false,
            disconnect_queued: false,
            writer_parked: false,
            stream: None,
            last_direct: None,
            disconnect_written: None,
        }),
        writer: AtomicWaker::new(),
        room_freed: Notify::new(),
        senders: AtomicUsize::new(1),
    });
    (
        Outbox {
            shared: shared.clone(),
        },
        OutboxReceiver { shared },
    )
}

/// Checks a SendData payload's length.
///
/// # Errors
/// `E_INVALIDARG` when it passes [`MAX_DATA_LEN`].
pub(crate) fn check_payload(payload: &Bytes) -> Result<(), PeerError> {
    if payload.len() > MAX_DATA_LEN {
        return Err(PeerError::INVALID_ARG);
    }
    Ok(())
}

/// Why [`Outbox::try_send_data`] did not queue a frame.
pub(crate) enum Refused {
    /// No room now: the payload, to queue by waiting.
    Full(Bytes),
    /// The connection is closing or gone.
    Gone,
}

/// What one try of a sender waiting in line came to.
enum InLine {
    Queued,
    Closed,
    Wait,
}

/// A sender's place in the line of those waiting for room: dropped before it got room
/// (its call was cancelled), it leaves the line, so those behind it go on.
struct Place {
    outbox: Outbox,
    ticket: Option<u64>,
}

impl Drop for Place {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket else {
            return;
        };
        let shared = &self.outbox.shared;
        let mut state = shared.lock();
        let was_first = state.waiting.front() == Some(&ticket);
        state.waiting.retain(|&waiting| waiting != ticket);
        drop(state);
        if was_first {
            shared.room_freed.notify_waiters();
        }
    }
}

/// Items of one call that did not all fit at once: their place in the line is taken, so
/// nothing queued after the call began comes before them. Dropped before
/// [`finish`](Self::finish) ends (the call was cancelled), it leaves the line; what was
/// queued already is still written, the rest is not.
pub(crate) struct PendingSend {
    place: Place,
    items: VecDeque<Outgoing>,
}

impl PendingSend {
    /// Waits in line and queues the rest of the items as room is freed.
    ///
    /// # Errors
    /// `PEER_E_CONNECTION_NOT_FOUND` once the connection is closing or gone; the items
    /// queued before that are still written, the others are not.
    pub(crate) async fn finish(mut self) -> Result<(), PeerError> {
        let outbox = self.place.outbox.clone();
        loop {
            let freed = outbox.shared.room_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match outbox.queue_in_line(&mut self.place, &mut self.items) {
                InLine::Queued => return Ok(()),
                InLine::Closed => return Err(PeerError::CONNECTION_NOT_FOUND),
                InLine::Wait => freed.await,
            }
        }
    }
}

impl Outbox {
    /// Queues a DATA frame if the outbox has room for it now and no sender waits before
    /// it; never waits, and spends nothing of the calling task's cooperative budget, so a
    /// sender filling the outbox runs on until it is full and the writer then takes a
    /// large batch. A frame that finds the queue empty and the writer waiting is written
    /// into quinn here (see the module doc).
    ///
    /// # Errors
    /// [`Refused::Full`] with the payload back when SendData would have to wait;
    /// [`Refused::Gone`] once the connection is closing or gone.
    pub(crate) fn try_send_data(&self, data_type: DataType, payload: Bytes) -> Result<(), Refused> {
        let cost = (DATA_HEADER_LEN + payload.len()).clamp(1, OUTBOX_BYTES);
        let mut state = self.shared.lock();
        if state.closed {
            return Err(Refused::Gone);
        }
        if !state.waiting.is_empty() || !state.fits(cost) {
            return Err(Refused::Full(payload));
        }
        let mut frame = DataFrame::new(data_type, payload);
        if state.is_empty() {
            match state.write_direct(frame) {
                Ok(wake) => {
                    self.shared.release(state, wake);
                    return Ok(());
                }
                Err(unwritten) => frame = unwritten,
            }
        }
        let wake = state.enqueue_frame(frame);
        self.shared.release(state, wake);
        Ok(())
    }

    /// Queues a DATA frame, waiting in line while the outbox is full. `Ok` means the frame
    /// will be written before any DISCONNECT of this connection.
    ///
    /// # Errors
    /// `PEER_E_CONNECTION_NOT_FOUND` once the connection is closing or gone.
    pub(crate) async fn send_data(
        &self,
        data_type: DataType,
        payload: Bytes,
    ) -> Result<(), PeerError> {
        let payload = match self.try_send_data(data_type, payload) {
            Ok(()) => return Ok(()),
            Err(Refused::Gone) => return Err(PeerError::CONNECTION_NOT_FOUND),
            Err(Refused::Full(payload)) => payload,
        };
        self.send_all(VecDeque::from([Outgoing::Data(DataFrame::new(
            data_type, payload,
        ))]))
        .await
    }

    /// Queues `items` in order, waiting in line while the outbox is full: the first
    /// that fit go at once, the rest as room is freed, and no other sender's frame comes
    /// between them (the line keeps their place until the last is queued). `Ok` means
    /// every item will be written before any DISCONNECT of this connection.
    ///
    /// # Errors
    /// `PEER_E_CONNECTION_NOT_FOUND` once the connection is closing or gone; the items
    /// queued before that are still written, the others are not.
    pub(crate) async fn send_all(&self, items: VecDeque<Outgoing>) -> Result<(), PeerError> {
        match self.start_all(items)? {
            None => Ok(()),
            Some(pending) => pending.finish().await,
        }
    }

    /// The part of [`send_all`](Self::send_all) that does not wait: takes the call's place
    /// in line and queues what of `items` fits now, in order. `None` when all are queued;
    /// otherwise the rest, to [`finish`](PendingSend::finish). A caller that must keep
    /// its items in order with what it queues next (an actor handling messages one after
    /// another) calls this before it handles the next.
    ///
    /// # Errors
    /// `PEER_E_CONNECTION_NOT_FOUND` if the connection is closing or gone.
    pub(crate) fn start_all(
        &self,
        mut items: VecDeque<Outgoing>,
    ) -> Result<Option<PendingSend>, PeerError> {
        let mut place = Place {
            outbox: self.clone(),
            ticket: None,
        };
        match self.queue_in_line(&mut place, &mut items) {
            InLine::Queued => Ok(None),
            InLine::Closed => Err(PeerError::CONNECTION_NOT_FOUND),
            InLine::Wait => Ok(Some(PendingSend { place, items })),
        }
    }

    /// One try of a sender waiting in line: takes a place in the line on the first try,
    /// and once it is first in line queues as many of `items` as fit, from the front; it
    /// leaves the line when all are queued.
    fn queue_in_line(&self, place: &mut Place, items: &mut VecDeque<Outgoing>) -> InLine {
        let mut state = self.shared.lock();
        if state.closed {
            return InLine::Closed;
        }
        let ticket = *place.ticket.get_or_insert_with(|| {
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            state.waiting.push_back(ticket);
            ticket
        });
        if state.waiting.front() != Some(&ticket) {
            return InLine::Wait;
        }
        let mut wake = false;
        while let Some(item) = items.pop_front() {
            if !state.fits(item.cost()) {
                items.push_front(item);
                self.shared.release(state, wake);
                return InLine::Wait;
            }
            // A frame that waited for room goes into the shared chunk like any other.
            wake |= match item {
                Outgoing::Data(frame) => state.enqueue_frame(frame),
                other => state.enqueue(other),
            };
        }
        state.waiting.pop_front();
        place.ticket = None;
        let next_may_go = !state.waiting.is_empty();
        self.shared.release(state, wake);
        if next_may_go {
            // The next in line may fit in what is left.
            self.shared.room_freed.notify_waiters();
        }
        InLine::Queued
    }

    /// Queues a control frame on a new link, before anything else.
    ///
    /// # Errors
    /// `PEER_E_CONNECTION_NOT_FOUND` if the writer is already gone.
    pub(crate) fn control(&self, frame: Bytes) -> Result<(), PeerError> {
        let state = self.shared.lock();
        if state.closed {
            return Err(PeerError::CONNECTION_NOT_FOUND);
        }
        self.shared.push(state, Outgoing::Encoded(frame));
        Ok(())
    }

    /// Asks the writer to write everything queued, then DISCONNECT, then (with `finish`)
    /// to end the stream in the same write; refuses every SendData from now on (senders
    /// waiting for room included). Never waits: DISCONNECT needs no room. A DISCONNECT
    /// queued already stays the only one: the graph queues it as a close starts, before
    /// the link's machine asks for it, and `finish` then applies to it if it is still
    /// queued (the writer says whether it finished). With nothing queued and the stream
    /// lent, the DISCONNECT goes into the stream at once, ended there with `finish`, and
    /// the stream then waits for [`take_written_disconnect`](Self::take_written_disconnect)
    /// (which says whether it was ended) instead of going back to the writer; a later
    /// `finish` leaves the FIN to the connection actor.
    ///
    /// # Errors
    /// `PEER_E_CONNECTION_NOT_FOUND` if the writer is gone with no DISCONNECT queued.
    pub(crate) fn disconnect(
        &self,
        reason: DisconnectReason,
        finish: bool,
    ) -> Result<(), PeerError> {
        let mut state = self.shared.lock();
        if state.disconnect_queued {
            if let Some(Outgoing::Disconnect { fin, .. }) = state.queue.back_mut() {
                if finish && *fin == Fin::Keep {
                    *fin = Fin::Finish;
                }
            }
            return Ok(());
        }
        if state.closed {
            return Err(PeerError::CONNECTION_NOT_FOUND);
        }
        state.closed = true;
        state.disconnect_queued = true;
        let wake = state.queue_disconnect(reason, Fin::from(finish));
        self.shared.release(state, wake);
        self.shared.room_freed.notify_waiters();
        Ok(())
    }
}

impl Outbox {
    /// The send stream, if our DISCONNECT went whole into it while the writer had lent it
    /// (see [`disconnect`](Self::disconnect)), with whether it was ended too: the
    /// connection actor takes it back here, as it would from the writer, without a turn of
    /// the writer's task. `None` when the writer writes the DISCONNECT (it then hands the
    /// stream back itself), or the stream was taken already.
    pub(crate) fn take_written_disconnect(&self) -> Option<(quinn::SendStream, bool)> {
        let mut state = self.shared.lock();
        let finished = state.disconnect_written?;
        let stream = state.stream.take()?;
        state.disconnect_written = None;
        Some((stream, finished))
    }
}

#[cfg(test)]
impl Outbox {
    /// Whether the writer has lent its stream (it waits for frames).
    pub(crate) fn is_lent(&self) -> bool {
        self.shared.lock().stream.is_some()
    }

    /// Forgets the last frame a sender wrote itself, so that the next one may.
    pub(crate) fn forget_direct_write(&self) {
        self.shared.lock().last_direct = None;
    }

    /// Whether a sender wrote a frame itself since [`forget_direct_write`](Self::forget_direct_write).
    pub(crate) fn wrote_directly(&self) -> bool {
        self.shared.lock().last_direct.is_some()
    }
}

impl OutboxReceiver {
    /// Waits for frames, then moves what is queued, up to `limit` bytes (at least one
    /// item), into `into`; returns the bytes moved, whose room stays taken until
    /// [`written`](Self::written). `None` once every sender is gone and nothing is queued.
    ///
    /// While it waits, the writer's `stream` is lent to the outbox, for senders to write
    /// into (see the module doc); it is back in `stream` whenever this returns frames.
    pub(crate) async fn take(
        &mut self,
        stream: &mut Option<quinn::SendStream>,
        into: &mut VecDeque<Outgoing>,
        limit: usize,
    ) -> Option<usize> {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            if state.is_empty() {
                if self.shared.senders.load(Ordering::Acquire) == 0 {
                    return Poll::Ready(None);
                }
                self.shared.writer.register(cx.waker());
                state.writer_parked = true;
                if stream.is_some() {
                    state.stream = stream.take();
                }
                // A sender that dropped between the check and the registration.
                if self.shared.senders.load(Ordering::Acquire) == 0 {
                    return Poll::Ready(None);
                }
                return Poll::Pending;
            }
            if stream.is_none() {
                *stream = state.stream.take();
            }
            let (mut taken, mut count, mut items) = (0, 0, 0);
            for item in &state.queue {
                let cost = item.cost();
                if count > 0 && taken + cost > limit {
                    break;
                }
                taken += cost;
                count += 1;
                items += item.items();
            }
            state.queued_items -= items;
            let whole = count == state.queue.len();
            if whole && into.is_empty() {
                // The whole queue: the two queues change places, and the senders fill
                // the writer's emptied one, whose capacity a burst keeps using.
                std::mem::swap(&mut state.queue, into);
            } else {
                into.extend(state.queue.drain(..count));
            }
            // The gathered frames come last, if the limit leaves room for them (they are
            // all there is when nothing else was queued).
            if whole && (count == 0 || taken + state.gathered.len() <= limit) {
                if let Some(chunk) = state.gathered.take() {
                    taken += chunk.len();
                    into.push_back(state.gathered_item(chunk));
                }
            }
            Poll::Ready(Some(taken))
        })
        .await
    }

    /// The writer has handed `bytes` of taken frames to quinn: their room is free again.
    pub(crate) fn written(&self, bytes: usize) {
        let mut state = self.shared.lock();
        state.bytes -= bytes;
        let wake = !state.waiting.is_empty();
        drop(state);
        if wake {
            self.shared.room_freed.notify_waiters();
        }
    }

    /// Whether the link has gone quiet: nothing is queued. Then the queue's memory and
    /// the shared chunk's spare room are given back, so that an idle link keeps none.
    pub(crate) fn quiet(&self) -> bool {
        let mut state = self.shared.lock();
        let quiet = state.is_empty();
        if quiet {
            state.queue = VecDeque::new();
            state.gathered.release();
        }
        quiet
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::close_tests::{quic_pair, within};
    use bytes::BytesMut;
    use futures_util::FutureExt;
    use peergraph_transport::FrameReader;

    fn data_type() -> DataType {
        DataType::from_u128(7)
    }

    fn payload(len: usize) -> Bytes {
        Bytes::from(vec![1; len])
    }

    /// A payload length whose frame is one byte too large to be gathered.
    const COALESCE_BYTES_PAST: usize = 8 * 1024 - DATA_HEADER_LEN + 1;

    /// The wire bytes of small frames of `payloads`, as their senders gather them.
    fn wire(payloads: &[Bytes]) -> Vec<u8> {
        let mut wire = BytesMut::new();
        for payload in payloads {
            DataFrame::new(data_type(), payload.clone()).copy_into(&mut wire);
        }
        wire.to_vec()
    }

    /// The bytes of `items`, which hold no DISCONNECT, in order.
    fn items_wire(items: &mut VecDeque<Outgoing>) -> Vec<u8> {
        let mut wire = BytesMut::new();
        for item in items.drain(..) {
            match item {
                Outgoing::Data(frame) => frame.copy_into(&mut wire),
                Outgoing::Encoded(bytes) | Outgoing::Gathered { chunk: bytes, .. } => {
                    wire.extend_from_slice(&bytes)
                }
                Outgoing::Disconnect { .. } => panic!("no DISCONNECT was queued"),
            }
        }
        wire.to_vec()
    }

    /// The item bound: with 1,024 frames queued, the next one waits, and goes once the
    /// writer has taken and written some. Small frames gathered into shared chunks count
    /// one by one.
    #[tokio::test]
    async fn a_full_outbox_makes_senders_wait_until_the_writer_frees_room() {
        let (outbox, mut receiver) = outbox();
        for _ in 0..OUTBOX_FRAMES {
            assert!(outbox.try_send_data(data_type(), payload(1)).is_ok());
        }
        assert!(matches!(
            outbox.try_send_data(data_type(), payload(1)),
            Err(Refused::Full(_))
        ));
        let mut waiting = Box::pin(outbox.send_data(data_type(), payload(1)));
        assert!(
            (&mut waiting).now_or_never().is_none(),
            "the outbox is full"
        );
        // The first chunk alone: 1 KiB of frames, past the limit of 100 bytes.
        let mut taken = VecDeque::new();
        let bytes = receiver
            .take(&mut None, &mut taken, 100)
            .await
            .expect("frames");
        let frames = 1024 / (DATA_HEADER_LEN + 1);
        assert!(matches!(
            taken.front(),
            Some(Outgoing::Gathered { frames: n, .. }) if *n == frames
        ));
        assert_eq!((taken.len(), bytes), (1, frames * (DATA_HEADER_LEN + 1)));
        assert!(
            (&mut waiting).now_or_never().is_none(),
            "room is freed once written"
        );
        receiver.written(bytes);
        assert_eq!(waiting.now_or_never(), Some(Ok(())));
    }

    /// Items of a SendDataMany or a control frame count one each, as a frame does.
    #[tokio::test]
    async fn chunks_and_control_frames_count_as_one_item_each() {
        let (outbox, _receiver) = outbox();
        let items = (0..OUTBOX_FRAMES - 1)
            .map(|_| Outgoing::Encoded(payload(1)))
            .collect();
        assert!(outbox.start_all(items).expect("open").is_none(), "all fit");
        assert!(outbox.try_send_data(data_type(), payload(1)).is_ok());
        assert!(matches!(
            outbox.try_send_data(data_type(), payload(1)),
            Err(Refused::Full(_))
        ));
    }

    /// Small frames that find frames queued before them (here: no stream is lent, so
    /// even the first) are copied together into a few chunks, in order, that grow
    /// through a burst; their bytes count against the bound as the frames' would. A large
    /// frame, and anything else, goes after the frames gathered before it. Once the link
    /// is quiet, the outbox keeps no chunk memory.
    #[tokio::test]
    async fn small_frames_behind_queued_ones_are_gathered_in_order() {
        let (outbox, mut receiver) = outbox();
        let small: Vec<Bytes> = (0..500u16)
            .map(|i| Bytes::from(vec![i as u8; usize::from(i % 90)]))
            .collect();
        for payload in &small {
            assert!(outbox.try_send_data(data_type(), payload.clone()).is_ok());
        }
        let large = payload(COALESCE_BYTES_PAST);
        assert!(outbox.try_send_data(data_type(), large.clone()).is_ok());
        assert!(outbox.try_send_data(data_type(), payload(3)).is_ok());
        let mut want = wire(&small);
        let mut frames = BytesMut::new();
        DataFrame::new(data_type(), large).copy_into(&mut frames);
        want.extend_from_slice(&frames);
        want.extend(wire(&[payload(3)]));
        let mut taken = VecDeque::new();
        let bytes = receiver
            .take(&mut None, &mut taken, usize::MAX)
            .await
            .expect("frames");
        assert_eq!(bytes, want.len(), "every byte is counted");
        // Chunks of 1, 2, 4, 8, 16 and 32 KiB hold the 500 small frames (32 KiB in all),
        // then come the large frame alone and the last small one in a chunk of its own.
        assert_eq!(taken.len(), 8);
        assert!(matches!(
            taken.back(),
            Some(Outgoing::Gathered { frames: 1, .. })
        ));
        assert_eq!(items_wire(&mut taken), want);
        receiver.written(bytes);
        assert!(receiver.quiet());
        let state = receiver.shared.lock();
        assert_eq!(
            (state.bytes, state.items(), state.gathered.capacity()),
            (0, 0, 0)
        );
    }

    /// A burst moves the whole queue to the writer at once, in order, and the senders go
    /// on filling the queue the writer emptied, room and all; once the link is quiet,
    /// neither queue keeps memory.
    #[tokio::test]
    async fn a_burst_reuses_the_queues_and_a_quiet_link_keeps_none() {
        let (outbox, mut receiver) = outbox();
        let mut taken = VecDeque::new();
        for round in 0..3u8 {
            // Large frames, which are queued as they are.
            let payloads: Vec<Bytes> = (0..100u8)
                .map(|i| Bytes::from(vec![round ^ i; COALESCE_BYTES_PAST]))
                .collect();
            for payload in &payloads {
                assert!(outbox.try_send_data(data_type(), payload.clone()).is_ok());
            }
            let bytes = receiver
                .take(&mut None, &mut taken, usize::MAX)
                .await
                .expect("frames");
            assert_eq!(bytes, 100 * (DATA_HEADER_LEN + COALESCE_BYTES_PAST));
            assert_eq!(taken.len(), 100);
            let mut want = BytesMut::new();
            for payload in payloads {
                DataFrame::new(data_type(), payload).copy_into(&mut want);
            }
            assert_eq!(items_wire(&mut taken), want.to_vec());
            receiver.written(bytes);
        }
        // The third burst went into the queue the first one had grown.
        assert!(receiver.shared.lock().queue.capacity() >= 100);
        assert!(taken.capacity() >= 100);
        assert!(receiver.quiet());
        assert_eq!(receiver.shared.lock().queue.capacity(), 0);
    }

    /// A batch larger than the outbox goes in as room is freed, keeping its place in line:
    /// a sender that comes while the batch waits goes after all of it. A close while the
    /// batch waits refuses what it had not queued yet, and the queued part stays before
    /// DISCONNECT.
    #[tokio::test]
    async fn a_batch_larger_than_the_outbox_keeps_its_place_in_line() {
        let (outbox, mut receiver) = outbox();
        let frame = |tag: u8| Outgoing::Encoded(Bytes::from(vec![tag; OUTBOX_BYTES / 4]));
        let tags = |items: &mut VecDeque<Outgoing>| -> Vec<u8> {
            items
                .drain(..)
                .map(|item| match item {
                    Outgoing::Encoded(bytes) => bytes[0],
                    Outgoing::Data(_) | Outgoing::Gathered { .. } => 0,
                    Outgoing::Disconnect { .. } => u8::MAX,
                })
                .collect()
        };
        let mut batch = Box::pin(outbox.send_all((1..=6).map(frame).collect()));
        assert!((&mut batch).now_or_never().is_none(), "four fit, two wait");
        let mut late = Box::pin(outbox.send_data(data_type(), payload(1)));
        assert!((&mut late).now_or_never().is_none(), "behind the batch");
        let mut taken = VecDeque::new();
        let bytes = receiver.take(&mut None, &mut taken, usize::MAX).await;
        receiver.written(bytes.expect("frames"));
        assert_eq!(tags(&mut taken), [1, 2, 3, 4]);
        assert_eq!((&mut batch).now_or_never(), Some(Ok(())));
        assert_eq!((&mut late).now_or_never(), Some(Ok(())));
        let bytes = receiver.take(&mut None, &mut taken, usize::MAX).await;
        receiver.written(bytes.expect("frames"));
        assert_eq!(
            tags(&mut taken),
            [5, 6, 0],
            "the late frame after the batch"
        );

        let mut cut = Box::pin(outbox.send_all((7..=12).map(frame).collect()));
        assert!((&mut cut).now_or_never().is_none());
        assert!(outbox
            .disconnect(DisconnectReason::AppDisconnect, false)
            .is_ok());
        assert_eq!(
            cut.now_or_never(),
            Some(Err(PeerError::CONNECTION_NOT_FOUND))
        );
        let bytes = receiver.take(&mut None, &mut taken, usize::MAX).await;
        receiver.written(bytes.expect("frames"));
        assert_eq!(tags(&mut taken), [7, 8, 9, 10, u8::MAX]);
    }

    /// A large frame waiting for room is not passed by small ones that would fit.
    #[tokio::test]
    async fn small_frames_do_not_pass_a_large_one_waiting() {
        let (outbox, mut receiver) = outbox();
        assert!(outbox
            .try_send_data(data_type(), payload(OUTBOX_BYTES / 2))
            .is_ok());
        let mut large = Box::pin(outbox.send_data(data_type(), payload(OUTBOX_BYTES / 2 + 100)));
        assert!((&mut large).now_or_never().is_none());
        assert!(
            matches!(
                outbox.try_send_data(data_type(), payload(1)),
                Err(Refused::Full(_))
            ),
            "a small frame that would fit waits behind the large one"
        );
        let mut taken = VecDeque::new();
        let bytes = receiver
            .take(&mut None, &mut taken, usize::MAX)
            .await
            .expect("frames");
        receiver.written(bytes);
        assert_eq!(large.now_or_never(), Some(Ok(())));
        assert!(outbox.try_send_data(data_type(), payload(1)).is_ok());
    }

    /// Every SendData told `Ok` is queued before DISCONNECT; after it, every one (waiting
    /// ones included) is refused.
    #[tokio::test]
    async fn disconnect_comes_after_everything_accepted_and_refuses_the_rest() {
        let (outbox, mut receiver) = outbox();
        // Three small frames, gathered into one chunk, then items up to the bound (each
        // gathered frame counts as one).
        for tag in 1..=3 {
            assert!(outbox.try_send_data(data_type(), payload(tag)).is_ok());
        }
        let items = (3..OUTBOX_FRAMES)
            .map(|_| Outgoing::Encoded(payload(1)))
            .collect();
        assert!(outbox.start_all(items).expect("open").is_none(), "all fit");
        let mut waiting = Box::pin(outbox.send_data(data_type(), payload(1)));
        assert!((&mut waiting).now_or_never().is_none());
        assert!(outbox
            .disconnect(DisconnectReason::AppDisconnect, false)
            .is_ok());
        assert_eq!(
            waiting.now_or_never(),
            Some(Err(PeerError::CONNECTION_NOT_FOUND))
        );
        assert!(matches!(
            outbox.try_send_data(data_type(), payload(1)),
            Err(Refused::Gone)
        ));
        // Asked again (the link's machine, after the graph queued it), DISCONNECT stays
        // the only one, and may take the FIN along while it waits.
        assert!(outbox
            .disconnect(DisconnectReason::AppDisconnect, true)
            .is_ok());
        let mut taken = VecDeque::new();
        receiver
            .take(&mut None, &mut taken, usize::MAX)
            .await
            .expect("frames");
        // The three gathered frames in one chunk, the other items, the DISCONNECT.
        assert_eq!(taken.len(), OUTBOX_FRAMES - 1);
        let gathered = wire(&[payload(1), payload(2), payload(3)]);
        assert!(
            matches!(
                taken.front(),
                Some(Outgoing::Gathered { chunk, frames: 3 }) if chunk[..] == gathered[..]
            ),
            "the gathered frames first"
        );
        assert!(matches!(
            taken.back(),
            Some(Outgoing::Disconnect {
                frame: Some(DisconnectReason::AppDisconnect),
                fin: Fin::Finish
            })
        ));
        // Taken by the writer, it is still queued as far as a later ask goes; once the
        // writer is gone without one, asking fails.
        assert!(outbox
            .disconnect(DisconnectReason::AppDisconnect, true)
            .is_ok());
        let (other, receiver) = super::outbox();
        drop(receiver);
        assert_eq!(
            other.disconnect(DisconnectReason::AppDisconnect, false),
            Err(PeerError::CONNECTION_NOT_FOUND)
        );
    }

    /// An outbox whose writer waits for frames with a real stream lent to it: the outbox,
    /// its receiver, the writer's slot for its stream (empty while the stream is lent),
    /// the writer's batch, the peer's end of the link to read the stream from, and the
    /// endpoints, kept for as long as the test runs.
    type Lent = (
        Outbox,
        OutboxReceiver,
        Option<quinn::SendStream>,
        VecDeque<Outgoing>,
        quinn::Connection,
        [quinn::Endpoint; 2],
    );

    async fn lent() -> Lent {
        let (local, peer, _, endpoints) = quic_pair().await;
        let (send, _recv) = within("open", local.open_bi()).await.expect("open");
        let (outbox, mut receiver) = outbox();
        let mut stream = Some(send);
        let mut taken = VecDeque::new();
        // The writer waits for frames: its stream is lent.
        let waiting = receiver
            .take(&mut stream, &mut taken, usize::MAX)
            .now_or_never();
        assert!(waiting.is_none() && stream.is_none(), "the stream is lent");
        (outbox, receiver, stream, taken, peer, endpoints)
    }

    /// With the stream lent (the writer waits), DISCONNECT and the FIN asked with it go
    /// into the stream at once: the peer reads both though the writer never runs again.
    /// The writer is not woken; the stream waits for the connection actor, once, and the
    /// writer ends with the last sender, with nothing to write.
    #[tokio::test]
    async fn a_disconnect_with_the_stream_lent_is_written_and_finished_at_once() {
        let (outbox, mut receiver, mut stream, mut taken, peer, _endpoints) = lent().await;
        outbox
            .disconnect(DisconnectReason::AppDisconnect, true)
            .expect("queued");
        let (_, recv) = within("the peer's stream", peer.accept_bi())
            .await
            .expect("accept");
        let mut reader = FrameReader::new(recv);
        let first = within("our DISCONNECT", reader.read()).await;
        assert!(
            matches!(first, Ok(Some(Message::Disconnect(_)))),
            "{first:?}"
        );
        let fin = within("our FIN", reader.read()).await;
        assert!(matches!(fin, Ok(None)), "{fin:?}");
        {
            let state = receiver.shared.lock();
            assert!(state.is_empty(), "nothing is queued for the writer");
            assert!(state.writer_parked, "and it was not woken");
        }
        let (_stream, finished) = outbox
            .take_written_disconnect()
            .expect("the stream waits for the actor");
        assert!(finished, "and says it was ended");
        assert!(outbox.take_written_disconnect().is_none(), "taken once");
        drop(outbox);
        let end = within(
            "the writer's end",
            receiver.take(&mut stream, &mut taken, usize::MAX),
        )
        .await;
        assert_eq!(end, None, "the writer has nothing left to write");
        assert!(taken.is_empty());
    }

    /// With the stream lent, a lone frame goes straight into quinn and one right behind it
    /// is gathered; from then on nothing passes the gathered frame: a later frame (the
    /// gap since the direct write forgotten) and DISCONNECT wait behind it for the writer,
    /// and the peer reads every frame in order, then DISCONNECT and the FIN.
    #[tokio::test]
    async fn nothing_passes_a_gathered_frame() {
        let (outbox, mut receiver, mut stream, mut taken, peer, _endpoints) = lent().await;
        let tagged = |tag: u8| Bytes::from(vec![tag; 10]);
        outbox.forget_direct_write();
        assert!(outbox.try_send_data(data_type(), tagged(1)).is_ok());
        assert!(
            outbox.wrote_directly(),
            "the first goes straight into quinn"
        );
        assert!(outbox.try_send_data(data_type(), tagged(2)).is_ok());
        outbox.forget_direct_write();
        assert!(outbox.try_send_data(data_type(), tagged(3)).is_ok());
        assert!(
            !outbox.wrote_directly(),
            "the third waits behind the second"
        );
        outbox
            .disconnect(DisconnectReason::AppDisconnect, true)
            .expect("queued");
        assert!(
            outbox.take_written_disconnect().is_none(),
            "DISCONNECT waits for the writer too"
        );
        // The writer's turn: what it takes, written as `Writer::write` writes it.
        let bytes = receiver
            .take(&mut stream, &mut taken, usize::MAX)
            .await
            .expect("frames");
        let send = stream
            .as_mut()
            .expect("the stream came back with the frames");
        assert!(matches!(
            taken.pop_front(),
            Some(Outgoing::Gathered { ref chunk, frames: 2 })
                if chunk[..] == wire(&[tagged(2), tagged(3)])[..]
        ));
        assert!(matches!(
            taken.pop_front(),
            Some(Outgoing::Disconnect {
                frame: Some(DisconnectReason::AppDisconnect),
                fin: Fin::Finish
            })
        ));
        // The two frames' bytes, and 1 for the DISCONNECT (every item counts at least 1).
        assert_eq!(bytes, wire(&[tagged(2), tagged(3)]).len() + 1);
        send.write_all(&wire(&[tagged(2), tagged(3)]))
            .await
            .expect("written");
        let disconnect = Message::Disconnect(DisconnectReason::AppDisconnect);
        send.write_all(&disconnect.to_bytes())
            .await
            .expect("written");
        send.finish().expect("finished");
        let (_, recv) = within("the peer's stream", peer.accept_bi())
            .await
            .expect("accept");
        let mut reader = FrameReader::new(recv);
        for tag in 1..=3 {
            let read = within("a frame", reader.read()).await;
            assert!(
                matches!(&read, Ok(Some(Message::Data { payload, .. })) if *payload == tagged(tag)),
                "frame {tag}: {read:?}"
            );
        }
        let read = within("our DISCONNECT", reader.read()).await;
        assert!(matches!(read, Ok(Some(Message::Disconnect(_)))), "{read:?}");
        let fin = within("our FIN", reader.read()).await;
        assert!(matches!(fin, Ok(None)), "{fin:?}");
    }

    /// The writer ends once every sender is gone and the queue is drained; a writer that
    /// ends refuses senders, and an idle outbox holds no queue memory.
    #[tokio::test]
    async fn the_writer_ends_with_the_last_sender_and_senders_end_with_the_writer() {
        let (outbox, mut receiver) = outbox();
        let other = outbox.clone();
        // A frame queued as it is (too large to be gathered): the queue grows for it.
        let large = payload(COALESCE_BYTES_PAST);
        assert!(other.try_send_data(data_type(), large).is_ok());
        assert!(receiver.shared.lock().queue.capacity() > 0);
        drop(other);
        let mut taken = VecDeque::new();
        assert!(receiver
            .take(&mut None, &mut taken, usize::MAX)
            .await
            .is_some());
        assert_eq!(receiver.shared.lock().queue.capacity(), 0);
        let mut stream = None;
        let mut next = Box::pin(receiver.take(&mut stream, &mut taken, usize::MAX));
        assert!((&mut next).now_or_never().is_none(), "a sender is left");
        drop(next);
        drop(outbox);
        assert_eq!(receiver.take(&mut None, &mut taken, usize::MAX).await, None);

        let (outbox, receiver) = super::outbox();
        drop(receiver);
        assert!(matches!(
            outbox.try_send_data(data_type(), payload(1)),
            Err(Refused::Gone)
        ));
        assert!(outbox.control(payload(1)).is_err());
    }
}
