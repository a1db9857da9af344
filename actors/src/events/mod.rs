//! Event registrations: bounded per-registration queues, the [`EventStream`] an application
//! reads, and delivery to an actix [`Recipient`].
//!
//! ```text
//!  graph actor ──publish──▶ Subscribers ──▶ queue ──▶ EventStream (the application reads)
//!  connection actors ──try_reserve_data, deliver─▶ │   └──▶ forward task ──▶ Recipient
//! ```
//!
//! # Data pushes back; other events are kept
//! INCOMING_DATA is never dropped. A link that reads a DATA frame first reserves room for
//! it in every registration that takes it (an event slot and its payload bytes in the
//! registration's queue) and reads nothing more until it has that room (or the link
//! ends); links waiting for room in one queue are served in the order they came. So a
//! full registration stops the links that feed it, QUIC flow control holds their senders, SendData waits once their outboxes are full, and a peer's
//! DISCONNECT is read only after every byte before it was handed to the application: a
//! close's S_OK means the application has every byte. With several registrations the
//! slowest reader sets the pace of every link whose data it takes.
//!
//! The other events (status, connection changes) never wait: a queue keeps up to
//! `QueueLimits::events` of them unread beside its data, and only past that (thousands of
//! links coming and going while the application reads nothing) loses one, counts it, and
//! delivers one [`GraphEvent::EventsLost`] with the count as soon as it has read what was
//! queued. A recipient registration has a queue too, with the default limits; a task hands
//! its events to the recipient in order, with `try_send`, waiting for room while the
//! mailbox is full. A subscriber
//! that stops reading therefore costs at most its queue's bounds (and, for a recipient,
//! its mailbox).

use std::collections::VecDeque;
use std::fmt;
use std::num::NonZeroU64;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use futures_util::future::Either;
use futures_util::task::AtomicWaker;
use futures_util::Stream;
use peergraph_engine::{ConnectionId, DataType, EventFilter, EventType, GraphEvent, GraphHandle};
use tokio::sync::Notify;

/// The default most events a registration's queue holds before it drops new ones.
pub const DEFAULT_QUEUE_EVENTS: usize = 4096;
/// The default most payload bytes (INCOMING_DATA) a registration's queue holds: 64 MiB,
/// enough for a reader that falls briefly behind a fast link, small enough to bound a
/// reader that stopped.
pub const DEFAULT_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// The handle of an event registration (the API's `HPEEREVENT`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct EventHandle(NonZeroU64);

impl EventHandle {
    pub(crate) fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let raw = NEXT.fetch_add(1, Ordering::Relaxed);
        EventHandle(NonZeroU64::new(raw).unwrap_or(NonZeroU64::MIN))
    }

    /// The raw value.
    pub fn get(self) -> u64 {
        self.0.get()
    }
}

/// The bounds of one registration's queue.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct QueueLimits {
    /// The most INCOMING_DATA events held (links wait for room beyond it), and, apart, the
    /// most other events held (lost and counted beyond it). For a recipient: the most
    /// INCOMING_DATA messages in flight to it (sent and not yet handled).
    pub events: usize,
    /// The most INCOMING_DATA payload bytes held (links wait for room beyond it).
    pub bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            events: DEFAULT_QUEUE_EVENTS,
            bytes: DEFAULT_QUEUE_BYTES,
        }
    }
}

/// An event delivered to an actix [`Recipient`] registered with
/// [`RegisterEventRecipient`](crate::RegisterEventRecipient).
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct PeerEvent {
    /// The graph the event comes from.
    pub graph: GraphHandle,
    /// The registration it was delivered for.
    pub registration: EventHandle,
    /// The event.
    pub event: GraphEvent,
}

/// The room for entries (events, or runs of INCOMING_DATA) a registration's queue always
/// keeps. A `VecDeque` never gives room back by itself: a queue that once held 10,000
/// events kept about 1 MB after they were read. So once the reader has read it down to a
/// quarter of its room, the queue shrinks to twice what it holds. The check costs two comparisons per read; a shrink moves at
/// most a quarter of the room and needs the queue to halve again before the next one, so
/// reads stay O(1) amortised.
const QUEUE_ROOM_KEPT: usize = 256;

/// INCOMING_DATA of one link and data type, read from one chunk of the link: the payloads
/// in order, handed to the registration together and kept together in its queue. An
/// event is made of each only as the application takes it, so a run of small messages
/// costs one entry in the queue, not an event moved in and out per message.
pub(crate) struct DataRun {
    pub(crate) connection_id: ConnectionId,
    pub(crate) data_type: DataType,
    pub(crate) payloads: Vec<Bytes>,
}

impl DataRun {
    /// A run of the one payload of `event`, an INCOMING_DATA event; `None` for any other.
    #[cfg(test)]
    fn of(event: GraphEvent) -> Option<DataRun> {
        match event {
            GraphEvent::IncomingData {
                connection_id,
                data_type,
                data,
            } => Some(DataRun {
                connection_id,
                data_type,
                payloads: vec![data],
            }),
            _ => None,
        }
    }
}

/// One entry of a registration's queue.
enum Entry {
    /// An event other than INCOMING_DATA.
    Other(GraphEvent),
    /// INCOMING_DATA payloads of one run not read yet, with the room they hold.
    Data(QueuedRun),
}

struct QueuedRun {
    connection_id: ConnectionId,
    data_type: DataType,
    payloads: std::vec::IntoIter<Bytes>,
    /// The payload bytes the rest of the run holds of the queue's budget. Each payload's
    /// share is its length, at most the whole budget and at most what is left here: the
    /// same shares, in the same order, as its room was reserved with.
    bytes: usize,
}

impl QueuedRun {
    /// The next payload's event and the bytes of room it gives back; `None` at the run's
    /// end.
    fn next(&mut self, budget: usize) -> Option<(GraphEvent, usize)> {
        let data = self.payloads.next()?;
        let share = data.len().min(budget).min(self.bytes);
        self.bytes -= share;
        let event = GraphEvent::IncomingData {
            connection_id: self.connection_id,
            data_type: self.data_type,
            data,
        };
        Some((event, share))
    }
}

struct QueueState {
    /// The events: others one by one, INCOMING_DATA in runs.
    events: VecDeque<Entry>,
    /// Events other than INCOMING_DATA held.
    others: usize,
    /// INCOMING_DATA events held or reserved.
    data_events: usize,
    /// INCOMING_DATA payload bytes held or reserved.
    data_bytes: usize,
    /// The links waiting for room, by ticket, served in order: only the first may take
    /// room, so a large payload is not starved by small ones behind it.
    waiting: VecDeque<u64>,
    /// The next waiting link's ticket.
    next_ticket: u64,
    /// Events lost since the reader last heard of a loss.
    lost: u64,
    closed: bool,
}

/// A link's place among those waiting for room in a queue: dropped before the link got
/// room (its reader stopped), it leaves the line, so those behind it go on.
struct Place<'a> {
    queue: &'a Queue,
    ticket: u64,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let was_first = {
            let Ok(mut state) = self.queue.state.lock() else {
                return;
            };
            let was_first = state.waiting.front() == Some(&self.ticket);
            state.waiting.retain(|&ticket| ticket != self.ticket);
            was_first
        };
        if was_first {
            self.queue.room_freed.notify_waiters();
        }
    }
}

/// The room INCOMING_DATA events hold in a queue until they are read: event slots and
/// their payload bytes. One reservation may hold the room of a batch of events, read from
/// one chunk of a link; each event frees its own share when it is read.
#[derive(Clone, Copy, Debug)]
struct DataRoom {
    events: usize,
    bytes: usize,
}

struct Queue {
    limits: QueueLimits,
    state: Mutex<QueueState>,
    /// Whether a read may find something: an event, a loss to report, or the end. Set
    /// and cleared under the state's lock; read without it, so that the reader finds an
    /// empty queue without taking the lock (before and after it registers its waker, on
    /// every wait). A writer sets it before it wakes the reader, and the reader looks at
    /// it after it registers: the waker's own ordering then makes the reader either see
    /// it set or be woken.
    readable: AtomicBool,
    waker: AtomicWaker,
    /// Wakes the links waiting for room when the reader frees some.
    room_freed: Notify,
}

impl Queue {
    fn new(limits: QueueLimits) -> Self {
        Queue {
            limits,
            state: Mutex::new(QueueState {
                events: VecDeque::new(),
                others: 0,
                data_events: 0,
                data_bytes: 0,
                waiting: VecDeque::new(),
                next_ticket: 0,
                lost: 0,
                closed: false,
            }),
            readable: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            room_freed: Notify::new(),
        }
    }

    /// Room for an INCOMING_DATA event of `bytes` payload bytes if there is some now and
    /// no link waits before this one (`ticket` is the caller's place among the waiting).
    /// A payload larger than the whole byte budget takes all of it. `Err(())` once the
    /// queue is closed.
    fn try_reserve(&self, bytes: usize, ticket: Option<u64>) -> Result<Option<DataRoom>, ()> {
        let Ok(mut state) = self.state.lock() else {
            return Err(());
        };
        if state.closed {
            return Err(());
        }
        let bytes = bytes.min(self.limits.bytes);
        let first = state.waiting.front().copied() == ticket;
        let room = first
            && state.data_events < self.limits.events
            && state.data_bytes + bytes <= self.limits.bytes;
        if !room {
            return Ok(None);
        }
        if ticket.is_some() {
            state.waiting.pop_front();
        }
        state.data_events += 1;
        state.data_bytes += bytes;
        let next_may_go = !state.waiting.is_empty();
        drop(state);
        if next_may_go {
            // The next in line may fit in what is left.
            self.room_freed.notify_waiters();
        }
        Ok(Some(DataRoom { events: 1, bytes }))
    }

    /// Adds room for `events` more INCOMING_DATA events of `bytes` payload bytes in all
    /// to `room`, if it fits now whole and no link waits for room (a batch never passes a
    /// link in line, and never takes more than the bounds). False, changing nothing,
    /// otherwise.
    fn try_extend(&self, room: &mut DataRoom, events: usize, bytes: usize) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let fits = !state.closed
            && state.waiting.is_empty()
            && state.data_events + events <= self.limits.events
            && state.data_bytes + bytes <= self.limits.bytes;
        if fits {
            state.data_events += events;
            state.data_bytes += bytes;
            room.events += events;
            room.bytes += bytes;
        }
        fits
    }

    /// Waits, in line behind the links already waiting, for room for an INCOMING_DATA
    /// event of `bytes` payload bytes; `None` once the queue is closed. Dropping the
    /// future gives up its place.
    async fn reserve(&self, bytes: usize) -> Option<DataRoom> {
        let ticket = {
            let Ok(mut state) = self.state.lock() else {
                return None;
            };
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            state.waiting.push_back(ticket);
            ticket
        };
        let _place = Place {
            queue: self,
            ticket,
        };
        loop {
            let freed = self.room_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.try_reserve(bytes, Some(ticket)) {
                // Served: `try_reserve` took the ticket out of the line, so dropping the
                // place below finds nothing to give up.
                Ok(Some(room)) => return Some(room),
                Ok(None) => freed.await,
                Err(()) => return None,
            }
        }
    }

    /// Gives back room that was reserved and not used.
    fn release(&self, room: DataRoom) {
        let wake = {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            state.data_events -= room.events;
            state.data_bytes -= room.bytes;
            !state.waiting.is_empty()
        };
        if wake {
            self.room_freed.notify_waiters();
        }
    }

    /// Queues a run of INCOMING_DATA, in order, in the room reserved for it (one lock, one
    /// entry and one wake of the reader for the lot); room it does not use is given back.
    fn push_data(&self, mut run: DataRun, mut room: DataRoom) {
        let wake_links = {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            if state.closed {
                return;
            }
            Self::report_loss(&mut state);
            run.payloads.truncate(room.events);
            // Each payload's share, as it was reserved: a payload larger than the whole
            // byte budget took all of it.
            let mut bytes = 0;
            for payload in &run.payloads {
                bytes += payload.len().min(self.limits.bytes).min(room.bytes - bytes);
            }
            room.events -= run.payloads.len();
            room.bytes -= bytes;
            if !run.payloads.is_empty() {
                state.events.push_back(Entry::Data(QueuedRun {
                    connection_id: run.connection_id,
                    data_type: run.data_type,
                    payloads: run.payloads.into_iter(),
                    bytes,
                }));
                self.readable.store(true, Ordering::Release);
            }
            state.data_events -= room.events;
            state.data_bytes -= room.bytes;
            (room.events > 0 || room.bytes > 0) && !state.waiting.is_empty()
        };
        self.waker.wake();
        if wake_links {
            self.room_freed.notify_waiters();
        }
    }

    /// Queues an event other than INCOMING_DATA, or counts it lost past the bound (and
    /// then answers true).
    fn push_other(&self, event: GraphEvent) -> bool {
        {
            let Ok(mut state) = self.state.lock() else {
                return false;
            };
            if state.closed {
                return false;
            }
            // A loss is read too, once the reader has caught up.
            self.readable.store(true, Ordering::Release);
            if state.others >= self.limits.events {
                state.lost += 1;
                return true;
            }
            Self::report_loss(&mut state);
            state.others += 1;
            state.events.push_back(Entry::Other(event));
        }
        self.waker.wake();
        false
    }

    /// Puts a pending loss report in the queue, before the next event.
    fn report_loss(state: &mut QueueState) {
        if state.lost > 0 {
            let count = std::mem::take(&mut state.lost);
            state
                .events
                .push_back(Entry::Other(GraphEvent::EventsLost { count }));
            state.others += 1;
        }
    }

    fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
        }
        // Also when the lock is poisoned: the reader then finds the failed lock and ends.
        self.readable.store(true, Ordering::Release);
        // Links waiting for room go on (their data has nowhere to go).
        self.room_freed.notify_waiters();
        self.waker.wake();
    }

    /// Moves up to `limit` queued events into `into`, in one lock: `Ready(n)` with the
    /// number moved, `Ready(0)` once the queue is closed and read, `Pending` when it is
    /// empty and open (or `limit` is 0).
    fn pop_many(&self, into: &mut Vec<GraphEvent>, limit: usize) -> Poll<usize> {
        if limit == 0 || !self.readable.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        let Ok(mut state) = self.state.lock() else {
            return Poll::Ready(0);
        };
        if state.events.is_empty() {
            return match state.lost {
                // As in `pop`: a reader that caught up with an overflow hears of it now.
                0 if state.closed => Poll::Ready(0),
                0 => {
                    self.readable.store(false, Ordering::Release);
                    Poll::Pending
                }
                _ => {
                    let count = std::mem::take(&mut state.lost);
                    into.push(GraphEvent::EventsLost { count });
                    self.after_read(state, false);
                    Poll::Ready(1)
                }
            };
        }
        let (mut data_events, mut data_bytes, mut others) = (0, 0, 0);
        let budget = self.limits.bytes;
        while data_events + others < limit {
            let Some(entry) = state.events.front_mut() else {
                break;
            };
            match entry {
                Entry::Other(_) => {
                    if let Some(Entry::Other(event)) = state.events.pop_front() {
                        into.push(event);
                        others += 1;
                    }
                }
                Entry::Data(run) if limit - data_events - others >= run.payloads.len() => {
                    // The whole rest of the run: its events in one go, and all the room it
                    // holds (the sum of the shares `next` would give back one by one).
                    let (connection_id, data_type) = (run.connection_id, run.data_type);
                    data_events += run.payloads.len();
                    data_bytes += std::mem::take(&mut run.bytes);
                    into.extend(run.payloads.by_ref().map(|data| GraphEvent::IncomingData {
                        connection_id,
                        data_type,
                        data,
                    }));
                    state.events.pop_front();
                }
                Entry::Data(run) => {
                    let want = limit - data_events - others;
                    into.reserve(want.min(run.payloads.len()));
                    for _ in 0..want {
                        let Some((event, share)) = run.next(budget) else {
                            break;
                        };
                        into.push(event);
                        data_events += 1;
                        data_bytes += share;
                    }
                    if run.payloads.len() == 0 {
                        state.events.pop_front();
                    }
                }
            }
        }
        state.data_events -= data_events;
        state.data_bytes -= data_bytes;
        state.others -= others;
        self.after_read(state, data_events > 0);
        Poll::Ready(data_events + others)
    }

    /// After the reader took events (`freed_data`: INCOMING_DATA among them): shrinks the
    /// queue's room once it is read down (see [`QUEUE_ROOM_KEPT`]), releases the lock, and
    /// wakes the links waiting for room if data room was freed.
    fn after_read(&self, mut state: std::sync::MutexGuard<'_, QueueState>, freed_data: bool) {
        if state.events.is_empty() && state.lost == 0 && !state.closed {
            self.readable.store(false, Ordering::Release);
        }
        let wake = freed_data && !state.waiting.is_empty();
        let (len, room) = (state.events.len(), state.events.capacity());
        if room > QUEUE_ROOM_KEPT && len <= room / 4 {
            state.events.shrink_to((2 * len).max(QUEUE_ROOM_KEPT));
        }
        drop(state);
        if wake {
            self.room_freed.notify_waiters();
        }
    }

    fn pop(&self) -> Poll<Option<GraphEvent>> {
        if !self.readable.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        let Ok(mut state) = self.state.lock() else {
            return Poll::Ready(None);
        };
        let budget = self.limits.bytes;
        let taken = match state.events.front_mut() {
            Some(Entry::Data(run)) => {
                let taken = run.next(budget);
                if run.payloads.len() == 0 {
                    state.events.pop_front();
                }
                taken.map(|(event, share)| (event, Some(share)))
            }
            Some(Entry::Other(_)) => match state.events.pop_front() {
                Some(Entry::Other(event)) => Some((event, None)),
                _ => None,
            },
            None => None,
        };
        match taken {
            Some((event, room)) => {
                match room {
                    Some(bytes) => {
                        state.data_events -= 1;
                        state.data_bytes -= bytes;
                    }
                    None => state.others -= 1,
                }
                self.after_read(state, room.is_some());
                Poll::Ready(Some(event))
            }
            // The reader caught up with a queue that overflowed: tell it now, not only
            // when the next event happens to come.
            None if state.lost > 0 => {
                let count = std::mem::take(&mut state.lost);
                self.after_read(state, false);
                Poll::Ready(Some(GraphEvent::EventsLost { count }))
            }
            None if state.closed => Poll::Ready(None),
            None => {
                self.readable.store(false, Ordering::Release);
                Poll::Pending
            }
        }
    }
}

/// The events of one registration, read as an async stream.
///
/// Ends (yields `None`) once the registration is unregistered or its graph closed, after
/// the events already queued. Implements [`futures_util::Stream`].
pub struct EventStream {
    handle: EventHandle,
    queue: Arc<Queue>,
}

impl EventStream {
    /// The registration's handle, for [`UnregisterEvent`](crate::UnregisterEvent).
    pub fn handle(&self) -> EventHandle {
        self.handle
    }

    /// The next event, waiting for one; `None` once the registration has ended.
    pub async fn recv(&mut self) -> Option<GraphEvent> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Waits for at least one event, then moves every event queued, up to `limit`, into
    /// `buffer` (after what it holds) in one go: the way to read a fast link's
    /// INCOMING_DATA, which takes the queue's lock once per call instead of once per
    /// event. Returns how many it moved; `0` once the registration has ended and every
    /// event was read (or when `limit` is 0, at once). The events come in the order
    /// [`recv`](Self::recv) would give them.
    ///
    /// On a fast link, read the events where they lie, then clear the buffer, as below:
    /// an event moved out of the buffer (`drain`, `into_iter`) and read at once can be read
    /// back while the processor is still writing its copy, and stall it on every message
    /// (on the machine of `benches/RESULTS.md`, session 23, about a tenth of the receiving
    /// thread's throughput on small messages).
    ///
    /// ```
    /// # async fn read(mut events: peergraph::EventStream) {
    /// use peergraph::GraphEvent;
    ///
    /// let mut batch = Vec::with_capacity(256);
    /// let mut received = 0;
    /// while events.recv_many(&mut batch, 256).await > 0 {
    ///     for event in &batch {
    ///         match event {
    ///             GraphEvent::IncomingData { data, .. } => received += data.len(),
    ///             other => println!("{other:?}"),
    ///         }
    ///     }
    ///     batch.clear();
    /// }
    /// # let _ = received;
    /// # }
    /// ```
    pub async fn recv_many(&mut self, buffer: &mut Vec<GraphEvent>, limit: usize) -> usize {
        if limit == 0 {
            return 0;
        }
        std::future::poll_fn(|cx| {
            if let Poll::Ready(n) = self.queue.pop_many(buffer, limit) {
                return Poll::Ready(n);
            }
            self.queue.waker.register(cx.waker());
            self.queue.pop_many(buffer, limit)
        })
        .await
    }

    /// The next event if one is waiting (`GetEventData`); `None` stands for
    /// `PEER_S_NO_EVENT_DATA`.
    pub fn try_recv(&mut self) -> Option<GraphEvent> {
        match self.queue.pop() {
            Poll::Ready(event) => event,
            Poll::Pending => None,
        }
    }
}

impl Stream for EventStream {
    type Item = GraphEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<GraphEvent>> {
        if let Poll::Ready(event) = self.queue.pop() {
            return Poll::Ready(event);
        }
        self.queue.waker.register(cx.waker());
        self.queue.pop()
    }
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

struct Subscriber {
    handle: EventHandle,
    filter: EventFilter,
    /// The registration's queue: read by its [`EventStream`], or by the task that hands
    /// its events, in order, to its recipient.
    queue: Arc<Queue>,
}

impl Subscriber {
    /// Ends the registration: a stream ends after what is queued, and links waiting for
    /// room in it go on.
    fn close(&self) {
        self.queue.close();
    }

    /// Room for an INCOMING_DATA event of `bytes` payload bytes if there is some now;
    /// `Err(())` once the registration has ended.
    fn try_reserve(&self, bytes: usize) -> Result<Option<DataRoom>, ()> {
        self.queue.try_reserve(bytes, None)
    }

    /// Gives back room reserved and not used.
    fn release(&self, room: DataRoom) {
        self.queue.release(room);
    }

    /// Waits for room for an INCOMING_DATA event of `bytes` payload bytes; `None` once
    /// the registration has ended.
    async fn reserve(&self, bytes: usize) -> Option<DataRoom> {
        self.queue.reserve(bytes).await
    }

    /// Queues a run of INCOMING_DATA in the room reserved for it.
    fn deliver_data(&self, run: DataRun, room: DataRoom) {
        self.queue.push_data(run, room);
    }

    /// Queues an event other than INCOMING_DATA; never waits. True if it was lost (the
    /// queue was full).
    fn deliver(&self, event: &GraphEvent) -> bool {
        self.queue.push_other(event.clone())
    }
}

/// How long the task that feeds a recipient waits at first before it offers an event to a
/// full mailbox again; it doubles up to [`MAILBOX_RETRY_MAX`]. actix's `send` to a full
/// mailbox parks without registering a waker and so may never finish: `try_send` again
/// after a wait is the way to wait for room.
const MAILBOX_RETRY_FIRST: Duration = Duration::from_micros(100);
/// The longest wait between two offers to a full mailbox: a recipient that frees room is
/// fed again within 10 ms.
const MAILBOX_RETRY_MAX: Duration = Duration::from_millis(10);

/// Hands a recipient registration's events to its recipient, in order, with `try_send`;
/// while the mailbox is full it waits and offers the event again. So a recipient that
/// falls behind fills its mailbox, then its queue, and then holds back the links that
/// feed it, as a stream's reader does. Ends when the registration ends, or when the
/// recipient stops (its queue is then closed, so that no link waits for it).
async fn forward(mut stream: EventStream, graph: GraphHandle, recipient: Recipient<PeerEvent>) {
    let registration = stream.handle();
    while let Some(event) = stream.recv().await {
        let mut message = PeerEvent {
            graph,
            registration,
            event,
        };
        let mut wait = MAILBOX_RETRY_FIRST;
        loop {
            match recipient.try_send(message) {
                Ok(()) => break,
                Err(SendError::Full(again)) => {
                    message = again;
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAILBOX_RETRY_MAX);
                }
                Err(SendError::Closed(_)) => {
                    stream.queue.close();
                    return;
                }
            }
        }
    }
}

/// Room reserved for INCOMING_DATA events of one data type in every registration that
/// takes them ([`Subscribers::try_reserve_data`] and, for a registration that had none at
/// once, [`WaitForRoom::wait_or`]; then [`try_extend`](Self::try_extend) for the rest of a
/// batch). Dropping it unused gives the room back.
pub(crate) struct DataReservation {
    /// The room in the first registration that takes the event, inline: with one
    /// registration (the usual case) a DATA frame allocates nothing here.
    first: Option<(Arc<Subscriber>, DataRoom)>,
    /// The rooms in the others.
    rest: Vec<(Arc<Subscriber>, DataRoom)>,
}

impl Drop for DataReservation {
    fn drop(&mut self) {
        for (subscriber, room) in self.first.take().into_iter().chain(self.rest.drain(..)) {
            subscriber.release(room);
        }
    }
}

impl DataReservation {
    fn new() -> Self {
        DataReservation {
            first: None,
            rest: Vec::new(),
        }
    }

    fn push(&mut self, subscriber: Arc<Subscriber>, room: DataRoom) {
        if self.first.is_none() {
            self.first = Some((subscriber, room));
        } else {
            self.rest.push((subscriber, room));
        }
    }

    /// Adds room for `events` more events of the same data type, `bytes` payload bytes in
    /// all, in every registration this reservation holds room in: all or nothing, and only
    /// if it fits at once (see `Queue::try_extend`). False, changing nothing, otherwise.
    pub(crate) fn try_extend(&mut self, events: usize, bytes: usize) -> bool {
        let mut taken = 0;
        let all = self
            .first
            .iter_mut()
            .chain(self.rest.iter_mut())
            .all(|(subscriber, room)| {
                let fits = subscriber.queue.try_extend(room, events, bytes);
                taken += usize::from(fits);
                fits
            });
        if !all {
            // Give back what the registrations before the full one gave.
            for (subscriber, room) in self.first.iter_mut().chain(self.rest.iter_mut()) {
                if taken == 0 {
                    break;
                }
                taken -= 1;
                room.events -= events;
                room.bytes -= bytes;
                subscriber.release(DataRoom { events, bytes });
            }
        }
        all
    }

    /// Hands `event`, INCOMING_DATA, to every registration the room was reserved in.
    #[cfg(test)]
    pub(crate) fn deliver(self, event: GraphEvent) {
        if let Some(run) = DataRun::of(event) {
            self.deliver_all(run);
        }
    }

    /// Hands `run`'s payloads, in order, to every registration the room was reserved in;
    /// room they do not use (fewer payloads than reserved) is given back.
    pub(crate) fn deliver_all(mut self, run: DataRun) {
        let rest = std::mem::take(&mut self.rest);
        let Some((first, first_room)) = self.first.take() else {
            return;
        };
        // The first registration takes the payloads themselves; the others clones (the
        // payloads are shared, not copied).
        for (subscriber, room) in rest {
            let copy = DataRun {
                payloads: run.payloads.clone(),
                ..run
            };
            subscriber.deliver_data(copy, room);
        }
        first.deliver_data(run, first_room);
    }
}

/// Every registration of one graph. Shared by the graph actor and its connection actors,
/// which publish INCOMING_DATA without going through the graph's mailbox.
pub(crate) struct Subscribers {
    graph: GraphHandle,
    list: RwLock<Vec<Arc<Subscriber>>>,
    /// Events lost, over every registration there has been: the sum of the counts of the
    /// EventsLost events raised or to be raised.
    lost: AtomicU64,
}

impl Subscribers {
    pub(crate) fn new(graph: GraphHandle) -> Self {
        Subscribers {
            graph,
            list: RwLock::new(Vec::new()),
            lost: AtomicU64::new(0),
        }
    }

    /// Adds a queue-backed registration and returns the stream that reads it.
    pub(crate) fn add_stream(&self, filter: EventFilter, limits: QueueLimits) -> EventStream {
        let queue = Arc::new(Queue::new(limits));
        let handle = EventHandle::next();
        self.insert(Subscriber {
            handle,
            filter,
            queue: queue.clone(),
        });
        EventStream { handle, queue }
    }

    /// Adds a registration delivered to `recipient`: a queue with the default limits,
    /// and a task on the current arbiter that hands its events over in order (see
    /// [`forward`]). Called from the graph actor, so inside actix.
    pub(crate) fn add_recipient(
        &self,
        filter: EventFilter,
        recipient: Recipient<PeerEvent>,
    ) -> EventHandle {
        let stream = self.add_stream(filter, QueueLimits::default());
        let handle = stream.handle();
        actix::spawn(forward(stream, self.graph, recipient));
        handle
    }

    fn insert(&self, subscriber: Subscriber) {
        if let Ok(mut list) = self.list.write() {
            list.push(Arc::new(subscriber));
        }
    }

    /// Removes a registration; false if there is none with that handle.
    pub(crate) fn remove(&self, handle: EventHandle) -> bool {
        let Ok(mut list) = self.list.write() else {
            return false;
        };
        let Some(index) = list.iter().position(|s| s.handle == handle) else {
            return false;
        };
        let subscriber = list.swap_remove(index);
        subscriber.close();
        true
    }

    /// Ends every registration (the graph closed).
    pub(crate) fn close_all(&self) {
        let Ok(mut list) = self.list.write() else {
            return;
        };
        for subscriber in list.drain(..) {
            subscriber.close();
        }
    }

    /// True when any registration asks for events of `event_type`.
    pub(crate) fn wants(&self, event_type: EventType) -> bool {
        self.list
            .read()
            .map(|list| list.iter().any(|s| s.filter.wants_type(event_type)))
            .unwrap_or(false)
    }

    /// Delivers `event`, which is not INCOMING_DATA, to every registration whose filter
    /// accepts it; never waits.
    pub(crate) fn publish(&self, event: GraphEvent) {
        let Ok(list) = self.list.read() else {
            return;
        };
        let mut lost = 0;
        for subscriber in list.iter().filter(|s| s.filter.accepts(&event)) {
            if subscriber.deliver(&event) {
                lost += 1;
            }
        }
        if lost > 0 {
            self.lost.fetch_add(lost, Ordering::Relaxed);
        }
    }

    /// Events lost so far by every registration there has been (see
    /// [`GraphEvent::EventsLost`]).
    pub(crate) fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// [`reserve_data`](Self::reserve_data) for `event`, INCOMING_DATA.
    #[cfg(test)]
    pub(crate) async fn reserve_event(&self, event: &GraphEvent) -> DataReservation {
        let data_type = match event {
            GraphEvent::IncomingData { data_type, .. } => *data_type,
            _ => DataType::from_u128(0),
        };
        self.reserve_data(data_type, event.payload_len()).await
    }

    /// [`reserve_data_or`](Self::reserve_data_or) that waits as long as it takes.
    #[cfg(test)]
    pub(crate) async fn reserve_data(&self, data_type: DataType, bytes: usize) -> DataReservation {
        let never = || std::future::pending::<std::convert::Infallible>();
        match self.reserve_data_or(data_type, bytes, never).await {
            Ok(reservation) => reservation,
            Err(never) => match never {},
        }
    }

    /// Waits until every registration that takes INCOMING_DATA of `data_type` has room for
    /// a payload of `bytes`, and reserves that room (see the module doc). Registrations
    /// that end meanwhile are left out; with none, the payload has nowhere to go.
    ///
    /// Unless the future `stop` returns first while it waits: then `Err` with its output,
    /// and the room taken so far is given back. `stop` is called only if some
    /// registration has no room at once, so the common case builds nothing for it. (A
    /// link's reader takes the two steps itself: [`try_reserve_data`](Self::try_reserve_data),
    /// then, boxed, [`WaitForRoom::wait_or`].)
    #[cfg(test)]
    pub(crate) async fn reserve_data_or<F, S>(
        &self,
        data_type: DataType,
        bytes: usize,
        stop: F,
    ) -> Result<DataReservation, S::Output>
    where
        F: FnOnce() -> S,
        S: std::future::Future,
    {
        match self.try_reserve_data(data_type, bytes) {
            Ok(reservation) => Ok(reservation),
            Err(wait) => wait.wait_or(stop).await,
        }
    }

    /// Reserves room for a payload of `bytes` in every registration that takes
    /// INCOMING_DATA of `data_type`, if all have it now; otherwise the room taken so far
    /// and the registrations still to wait for ([`WaitForRoom::wait_or`]). Without an
    /// await, so that a link's reader, which holds the step it is in for as long as the
    /// link lives, keeps no room for the rare wait (it boxes that).
    pub(crate) fn try_reserve_data(
        &self,
        data_type: DataType,
        bytes: usize,
    ) -> Result<DataReservation, WaitForRoom> {
        // Built first, so that room already taken is given back (by its drop) if the link
        // stops while it waits for the rest.
        let mut reservation = DataReservation::new();
        // Those without room now, to wait for once the list's lock is released.
        let mut full = Vec::new();
        if let Ok(list) = self.list.read() {
            for subscriber in list.iter().filter(|s| s.filter.accepts_data(data_type)) {
                match subscriber.try_reserve(bytes) {
                    Ok(Some(room)) => reservation.push(subscriber.clone(), room),
                    Ok(None) => full.push(subscriber.clone()),
                    Err(()) => {}
                }
            }
        }
        if full.is_empty() {
            return Ok(reservation);
        }
        Err(WaitForRoom {
            reservation,
            full,
            bytes,
        })
    }
}

/// A reservation for INCOMING_DATA that some registrations had no room for at once: the
/// room the others gave (handed back if this is dropped) and the registrations to wait for.
pub(crate) struct WaitForRoom {
    reservation: DataReservation,
    full: Vec<Arc<Subscriber>>,
    bytes: usize,
}

impl WaitForRoom {
    /// Waits, registration by registration, for the room still missing; registrations that
    /// end meanwhile are left out. Unless the future `stop` returns first: then `Err` with
    /// its output, and the room taken so far is given back.
    pub(crate) async fn wait_or<F, S>(self, stop: F) -> Result<DataReservation, S::Output>
    where
        F: FnOnce() -> S,
        S: std::future::Future,
    {
        let WaitForRoom {
            mut reservation,
            full,
            bytes,
        } = self;
        let mut stop = std::pin::pin!(stop());
        for subscriber in full {
            let room = {
                let waiting = std::pin::pin!(subscriber.reserve(bytes));
                match futures_util::future::select(waiting, stop.as_mut()).await {
                    Either::Left((room, _)) => room,
                    Either::Right((stopped, _)) => return Err(stopped),
                }
            };
            if let Some(room) = room {
                reservation.push(subscriber, room);
            }
        }
        Ok(reservation)
    }
}

impl Drop for Subscribers {
    /// A graph that goes away without closing (its engine dropped) still ends the streams.
    fn drop(&mut self) {
        self.close_all();
    }
}

#[cfg(test)]
mod tests;
