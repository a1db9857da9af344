//! Event registrations: bounded per-registration queues, the [`EventStream`] an application
//! reads, and delivery to an actix [`Recipient`].
//!
//! ```text
//!  graph actor / connection actors ──publish──▶ Subscribers ──▶ queue ──▶ EventStream
//!                                                         └──▶ try_send ──▶ Recipient
//! ```
//!
//! # Data pushes back; other events are kept
//! INCOMING_DATA is never dropped. A link that reads a DATA frame first reserves room for
//! it in every registration that takes it (an event slot and its payload bytes in a
//! queue; one of the messages in flight to a recipient) and reads nothing more until it
//! has that room. So a full registration stops the links that feed it, QUIC flow control
//! holds their senders, SendData waits once their outboxes are full, and a peer's
//! DISCONNECT is read only after every byte before it was handed to the application: a
//! close's S_OK means the application has every byte. With several registrations the
//! slowest reader sets the pace of every link whose data it takes.
//!
//! The other events (status, connection changes) never wait: a queue keeps up to
//! `QueueLimits::events` of them unread beside its data, and only past that (thousands of
//! links coming and going while the application reads nothing) loses one, counts it, and
//! delivers one [`GraphEvent::EventsLost`] with the count as soon as it has read what was
//! queued. A recipient gets them with `try_send`, and an EventsLost the same way when its
//! mailbox was full. A subscriber that stops reading therefore costs at most its queue's
//! bounds.

use std::collections::VecDeque;
use std::fmt;
use std::num::NonZeroU64;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};

use actix::prelude::*;
use futures_util::task::AtomicWaker;
use futures_util::Stream;
use peergraph_engine::{EventFilter, EventType, GraphEvent, GraphHandle};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

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

/// The room for events a registration's queue always keeps. A `VecDeque` never gives room
/// back by itself: a queue that once held 10,000 events kept about 1 MB after they were
/// read. So once the reader has read it down to a quarter of its room, the queue shrinks
/// to twice what it holds. The check costs two comparisons per read; a shrink moves at
/// most a quarter of the room and needs the queue to halve again before the next one, so
/// reads stay O(1) amortised.
const QUEUE_ROOM_KEPT: usize = 256;

struct QueueState {
    /// The events, each INCOMING_DATA one with the payload bytes it holds.
    events: VecDeque<(GraphEvent, Option<usize>)>,
    /// Events other than INCOMING_DATA held.
    others: usize,
    /// INCOMING_DATA events held or reserved.
    data_events: usize,
    /// INCOMING_DATA payload bytes held or reserved.
    data_bytes: usize,
    /// Links waiting for room.
    waiting: usize,
    /// Events lost since the reader last heard of a loss.
    lost: u64,
    closed: bool,
}

/// The room one INCOMING_DATA event holds in a queue until it is read: its payload bytes
/// (and one event slot).
#[derive(Clone, Copy, Debug)]
struct DataRoom {
    bytes: usize,
}

struct Queue {
    limits: QueueLimits,
    state: Mutex<QueueState>,
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
                waiting: 0,
                lost: 0,
                closed: false,
            }),
            waker: AtomicWaker::new(),
            room_freed: Notify::new(),
        }
    }

    /// Room for an INCOMING_DATA event of `bytes` payload bytes if there is some now and
    /// no link waits before this one. A payload larger than the whole byte budget takes
    /// all of it. `Err(())` once the queue is closed.
    fn try_reserve(&self, bytes: usize, queued: bool) -> Result<Option<DataRoom>, ()> {
        let Ok(mut state) = self.state.lock() else {
            return Err(());
        };
        if state.closed {
            return Err(());
        }
        let bytes = bytes.min(self.limits.bytes);
        let room = state.data_events < self.limits.events
            && state.data_bytes + bytes <= self.limits.bytes
            && (queued || state.waiting == 0);
        if !room {
            return Ok(None);
        }
        state.data_events += 1;
        state.data_bytes += bytes;
        Ok(Some(DataRoom { bytes }))
    }

    /// Waits for room for an INCOMING_DATA event of `bytes` payload bytes; `None` once
    /// the queue is closed.
    async fn reserve(&self, bytes: usize) -> Option<DataRoom> {
        if let Ok(mut state) = self.state.lock() {
            state.waiting += 1;
        }
        let room = loop {
            let freed = self.room_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.try_reserve(bytes, true) {
                Ok(Some(room)) => break Some(room),
                Ok(None) => freed.await,
                Err(()) => break None,
            }
        };
        if let Ok(mut state) = self.state.lock() {
            state.waiting -= 1;
        }
        room
    }

    /// Gives back room that was reserved and not used.
    fn release(&self, room: DataRoom) {
        let wake = {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            state.data_events -= 1;
            state.data_bytes -= room.bytes;
            state.waiting > 0
        };
        if wake {
            self.room_freed.notify_waiters();
        }
    }

    /// Queues an INCOMING_DATA event in the room reserved for it.
    fn push_data(&self, event: GraphEvent, room: DataRoom) {
        {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            if state.closed {
                return;
            }
            Self::report_loss(&mut state);
            state.events.push_back((event, Some(room.bytes)));
        }
        self.waker.wake();
    }

    /// Queues an event other than INCOMING_DATA, or counts it lost past the bound.
    fn push_other(&self, event: GraphEvent) {
        {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            if state.closed {
                return;
            }
            if state.others >= self.limits.events {
                state.lost += 1;
                return;
            }
            Self::report_loss(&mut state);
            state.others += 1;
            state.events.push_back((event, None));
        }
        self.waker.wake();
    }

    /// Puts a pending loss report in the queue, before the next event.
    fn report_loss(state: &mut QueueState) {
        if state.lost > 0 {
            let count = std::mem::take(&mut state.lost);
            state
                .events
                .push_back((GraphEvent::EventsLost { count }, None));
            state.others += 1;
        }
    }

    fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
        }
        // Links waiting for room go on (their data has nowhere to go).
        self.room_freed.notify_waiters();
        self.waker.wake();
    }

    fn pop(&self) -> Poll<Option<GraphEvent>> {
        let Ok(mut state) = self.state.lock() else {
            return Poll::Ready(None);
        };
        match state.events.pop_front() {
            Some((event, room)) => {
                let mut wake = false;
                match room {
                    Some(bytes) => {
                        state.data_events -= 1;
                        state.data_bytes -= bytes;
                        wake = state.waiting > 0;
                    }
                    None => state.others -= 1,
                }
                let (len, room) = (state.events.len(), state.events.capacity());
                if room > QUEUE_ROOM_KEPT && len <= room / 4 {
                    state.events.shrink_to((2 * len).max(QUEUE_ROOM_KEPT));
                }
                drop(state);
                if wake {
                    self.room_freed.notify_waiters();
                }
                Poll::Ready(Some(event))
            }
            // The reader caught up with a queue that overflowed: tell it now, not only
            // when the next event happens to come.
            None if state.lost > 0 => Poll::Ready(Some(GraphEvent::EventsLost {
                count: std::mem::take(&mut state.lost),
            })),
            None if state.closed => Poll::Ready(None),
            None => Poll::Pending,
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

enum Sink {
    Queue(Arc<Queue>),
    Recipient {
        recipient: Recipient<PeerEvent>,
        lost: AtomicU64,
        /// INCOMING_DATA messages that may be in flight to the recipient at once.
        in_flight: Arc<Semaphore>,
    },
}

struct Subscriber {
    handle: EventHandle,
    filter: EventFilter,
    sink: Sink,
}

/// Room one INCOMING_DATA event holds in one registration until it is read (a queue) or
/// handled (a recipient).
enum Room {
    Queue(DataRoom),
    Recipient(OwnedSemaphorePermit),
}

impl Subscriber {
    /// Ends the registration: a stream ends after what is queued, and links waiting for
    /// room in it go on.
    fn close(&self) {
        match &self.sink {
            Sink::Queue(queue) => queue.close(),
            Sink::Recipient { in_flight, .. } => in_flight.close(),
        }
    }

    fn message(&self, graph: GraphHandle, event: GraphEvent) -> PeerEvent {
        PeerEvent {
            graph,
            registration: self.handle,
            event,
        }
    }

    /// Room for an INCOMING_DATA event of `bytes` payload bytes if there is some now;
    /// `Err(())` once the registration has ended.
    fn try_reserve(&self, bytes: usize) -> Result<Option<Room>, ()> {
        match &self.sink {
            Sink::Queue(queue) => Ok(queue.try_reserve(bytes, false)?.map(Room::Queue)),
            Sink::Recipient { in_flight, .. } => match in_flight.clone().try_acquire_owned() {
                Ok(permit) => Ok(Some(Room::Recipient(permit))),
                Err(tokio::sync::TryAcquireError::NoPermits) => Ok(None),
                Err(tokio::sync::TryAcquireError::Closed) => Err(()),
            },
        }
    }

    /// Gives back room reserved and not used.
    fn release(&self, room: Room) {
        if let (Sink::Queue(queue), Room::Queue(room)) = (&self.sink, room) {
            queue.release(room);
        }
    }

    /// Waits for room for an INCOMING_DATA event of `bytes` payload bytes; `None` once
    /// the registration has ended.
    async fn reserve(&self, bytes: usize) -> Option<Room> {
        match &self.sink {
            Sink::Queue(queue) => queue.reserve(bytes).await.map(Room::Queue),
            Sink::Recipient { in_flight, .. } => in_flight
                .clone()
                .acquire_owned()
                .await
                .ok()
                .map(Room::Recipient),
        }
    }

    /// Hands an INCOMING_DATA event over in the room reserved for it. A recipient's
    /// message goes with `send`, which waits for mailbox room; the room is held until the
    /// recipient has handled it.
    fn deliver_data(&self, graph: GraphHandle, event: GraphEvent, room: Room) {
        match (&self.sink, room) {
            (Sink::Queue(queue), Room::Queue(room)) => queue.push_data(event, room),
            (Sink::Recipient { recipient, .. }, Room::Recipient(permit)) => {
                let sent = recipient.send(self.message(graph, event));
                actix::spawn(async move {
                    let _ = sent.await;
                    drop(permit);
                });
            }
            // A room is reserved in the sink it is delivered to.
            _ => {}
        }
    }

    /// Delivers an event other than INCOMING_DATA; never waits.
    fn deliver(&self, graph: GraphHandle, event: &GraphEvent) {
        match &self.sink {
            Sink::Queue(queue) => queue.push_other(event.clone()),
            Sink::Recipient {
                recipient, lost, ..
            } => {
                let missed = lost.load(Ordering::Relaxed);
                if missed > 0 {
                    if recipient
                        .try_send(self.message(graph, GraphEvent::EventsLost { count: missed }))
                        .is_err()
                    {
                        lost.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    lost.fetch_sub(missed, Ordering::Relaxed);
                }
                if recipient
                    .try_send(self.message(graph, event.clone()))
                    .is_err()
                {
                    lost.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Room reserved for one INCOMING_DATA event in every registration that takes it
/// ([`Subscribers::reserve_data`]). Dropping it unused gives the room back.
pub(crate) struct DataReservation {
    graph: GraphHandle,
    rooms: Vec<(Arc<Subscriber>, Room)>,
}

impl Drop for DataReservation {
    fn drop(&mut self) {
        for (subscriber, room) in self.rooms.drain(..) {
            subscriber.release(room);
        }
    }
}

impl DataReservation {
    /// Hands `event` to every registration the room was reserved in.
    pub(crate) fn deliver(mut self, event: GraphEvent) {
        let graph = self.graph;
        let mut rooms = std::mem::take(&mut self.rooms);
        // The last registration takes the event itself; the others a clone (the payload
        // is shared, not copied).
        if let Some((last, last_room)) = rooms.pop() {
            for (subscriber, room) in rooms {
                subscriber.deliver_data(graph, event.clone(), room);
            }
            last.deliver_data(graph, event, last_room);
        }
    }
}

/// Every registration of one graph. Shared by the graph actor and its connection actors,
/// which publish INCOMING_DATA without going through the graph's mailbox.
pub(crate) struct Subscribers {
    graph: GraphHandle,
    list: RwLock<Vec<Arc<Subscriber>>>,
}

impl Subscribers {
    pub(crate) fn new(graph: GraphHandle) -> Self {
        Subscribers {
            graph,
            list: RwLock::new(Vec::new()),
        }
    }

    /// Adds a queue-backed registration and returns the stream that reads it.
    pub(crate) fn add_stream(&self, filter: EventFilter, limits: QueueLimits) -> EventStream {
        let queue = Arc::new(Queue::new(limits));
        let handle = EventHandle::next();
        self.insert(Subscriber {
            handle,
            filter,
            sink: Sink::Queue(queue.clone()),
        });
        EventStream { handle, queue }
    }

    /// Adds a registration delivered to `recipient`.
    pub(crate) fn add_recipient(
        &self,
        filter: EventFilter,
        recipient: Recipient<PeerEvent>,
    ) -> EventHandle {
        let handle = EventHandle::next();
        self.insert(Subscriber {
            handle,
            filter,
            sink: Sink::Recipient {
                recipient,
                lost: AtomicU64::new(0),
                in_flight: Arc::new(Semaphore::new(DEFAULT_QUEUE_EVENTS)),
            },
        });
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
        for subscriber in list.iter().filter(|s| s.filter.accepts(&event)) {
            subscriber.deliver(self.graph, &event);
        }
    }

    /// Waits until every registration that takes `event` (INCOMING_DATA) has room for it,
    /// and reserves that room (see the module doc). Registrations that end meanwhile are
    /// left out; with none, the event has nowhere to go.
    pub(crate) async fn reserve_data(&self, event: &GraphEvent) -> DataReservation {
        let bytes = event.payload_len();
        let mut rooms = Vec::new();
        // Those without room now, to wait for once the list's lock is released.
        let mut full = Vec::new();
        if let Ok(list) = self.list.read() {
            for subscriber in list.iter().filter(|s| s.filter.accepts(event)) {
                match subscriber.try_reserve(bytes) {
                    Ok(Some(room)) => rooms.push((subscriber.clone(), room)),
                    Ok(None) => full.push(subscriber.clone()),
                    Err(()) => {}
                }
            }
        }
        for subscriber in full {
            if let Some(room) = subscriber.reserve(bytes).await {
                rooms.push((subscriber, room));
            }
        }
        DataReservation {
            graph: self.graph,
            rooms,
        }
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
