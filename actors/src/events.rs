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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    /// The events, each INCOMING_DATA one with the room it holds until it is read.
    events: VecDeque<(GraphEvent, Option<DataRoom>)>,
    /// Events other than INCOMING_DATA held.
    others: usize,
    /// Events lost since the reader last heard of a loss.
    lost: u64,
    closed: bool,
}

/// The room one INCOMING_DATA event holds in a queue: an event slot and its bytes.
struct DataRoom {
    _slot: OwnedSemaphorePermit,
    _bytes: Option<OwnedSemaphorePermit>,
}

struct Queue {
    limits: QueueLimits,
    state: Mutex<QueueState>,
    waker: AtomicWaker,
    /// Free INCOMING_DATA event slots ([`QueueLimits::events`]).
    data_slots: Arc<Semaphore>,
    /// Free INCOMING_DATA payload bytes ([`QueueLimits::bytes`]).
    data_bytes: Arc<Semaphore>,
}

impl Queue {
    fn new(limits: QueueLimits) -> Self {
        Queue {
            limits,
            state: Mutex::new(QueueState {
                events: VecDeque::new(),
                others: 0,
                lost: 0,
                closed: false,
            }),
            waker: AtomicWaker::new(),
            data_slots: Arc::new(Semaphore::new(limits.events.min(Semaphore::MAX_PERMITS))),
            data_bytes: Arc::new(Semaphore::new(limits.bytes.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Waits for room for an INCOMING_DATA event of `bytes` payload bytes. A payload larger
    /// than the whole byte budget takes all of it. `None` once the queue is closed.
    async fn reserve(&self, bytes: usize) -> Option<DataRoom> {
        let slot = self.data_slots.clone().acquire_owned().await.ok()?;
        let wanted = bytes.min(self.limits.bytes);
        let bytes = match u32::try_from(wanted) {
            Ok(0) => None,
            Ok(n) => Some(self.data_bytes.clone().acquire_many_owned(n).await.ok()?),
            // Over 4 GiB: more than any payload (MAX_DATA_LEN is 1 MiB).
            Err(_) => return None,
        };
        Some(DataRoom {
            _slot: slot,
            _bytes: bytes,
        })
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
            state.events.push_back((event, Some(room)));
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
        }
    }

    fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
        }
        // Links waiting for room go on (their data has nowhere to go).
        self.data_slots.close();
        self.data_bytes.close();
        self.waker.wake();
    }

    fn pop(&self) -> Poll<Option<GraphEvent>> {
        let Ok(mut state) = self.state.lock() else {
            return Poll::Ready(None);
        };
        match state.events.pop_front() {
            Some((event, room)) => {
                if room.is_none() && !matches!(event, GraphEvent::EventsLost { .. }) {
                    state.others -= 1;
                }
                // Dropping the room lets a waiting link go on.
                drop(room);
                let (len, room) = (state.events.len(), state.events.capacity());
                if room > QUEUE_ROOM_KEPT && len <= room / 4 {
                    state.events.shrink_to((2 * len).max(QUEUE_ROOM_KEPT));
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

impl DataReservation {
    /// Hands `event` to every registration the room was reserved in.
    pub(crate) fn deliver(self, event: GraphEvent) {
        let graph = self.graph;
        let mut rooms = self.rooms;
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
        let takers: Vec<Arc<Subscriber>> = match self.list.read() {
            Ok(list) => list
                .iter()
                .filter(|s| s.filter.accepts(event))
                .cloned()
                .collect(),
            Err(_) => Vec::new(),
        };
        let bytes = event.payload_len();
        let mut rooms = Vec::with_capacity(takers.len());
        for subscriber in takers {
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
mod tests {
    use super::*;
    use peergraph_engine::{EventRegistration, GraphStatus};

    fn status(n: u32) -> GraphEvent {
        GraphEvent::StatusChanged {
            status: GraphStatus(n),
        }
    }

    /// Subscribers of graph 1 and one registration for STATUS_CHANGED that queues at most
    /// `events` events.
    fn status_stream(events: usize) -> (Subscribers, EventStream) {
        let subscribers = Subscribers::new(GraphHandle::new(1).expect("nonzero"));
        let filter =
            EventFilter::new(vec![EventRegistration::new(EventType::StatusChanged)]).expect("ok");
        let stream = subscribers.add_stream(
            filter,
            QueueLimits {
                events,
                bytes: 1024,
            },
        );
        (subscribers, stream)
    }

    #[test]
    fn a_full_queue_drops_and_reports_the_count() {
        let (subscribers, mut stream) = status_stream(2);
        for n in 0..5 {
            subscribers.publish(status(n));
        }
        assert_eq!(stream.try_recv(), Some(status(0)));
        assert_eq!(stream.try_recv(), Some(status(1)));
        assert_eq!(stream.try_recv(), Some(GraphEvent::EventsLost { count: 3 }));
        assert_eq!(stream.try_recv(), None);
        for n in 10..13 {
            subscribers.publish(status(n));
        }
        subscribers.publish(status(13));
        assert_eq!(stream.try_recv(), Some(status(10)));
        subscribers.publish(status(14));
        assert_eq!(stream.try_recv(), Some(status(11)));
        assert_eq!(stream.try_recv(), Some(GraphEvent::EventsLost { count: 2 }));
        assert_eq!(
            stream.try_recv(),
            Some(status(14)),
            "a loss is reported in order"
        );
        assert!(subscribers.remove(stream.handle()));
        assert!(!subscribers.remove(stream.handle()));
    }

    #[test]
    fn a_queue_read_down_gives_back_its_room() {
        let (subscribers, mut stream) = status_stream(10_000);
        let room =
            |stream: &EventStream| stream.queue.state.lock().expect("lock").events.capacity();
        for n in 0..10_000 {
            subscribers.publish(status(n));
        }
        assert!(room(&stream) >= 10_000);
        for n in 0..9_000 {
            assert_eq!(
                stream.try_recv(),
                Some(status(n)),
                "order kept while shrinking"
            );
        }
        assert!(room(&stream) <= 4 * 1_000, "room {}", room(&stream));
        for n in 9_000..10_000 {
            assert_eq!(stream.try_recv(), Some(status(n)));
        }
        assert_eq!(stream.try_recv(), None);
        assert!(room(&stream) <= QUEUE_ROOM_KEPT, "room {}", room(&stream));
    }

    fn data(n: u8, len: usize) -> GraphEvent {
        GraphEvent::IncomingData {
            connection_id: peergraph_engine::ConnectionId::new(1).expect("id"),
            data_type: peergraph_engine::DataType::from_u128(1),
            data: bytes::Bytes::from(vec![n; len]),
        }
    }

    fn data_stream(limits: QueueLimits) -> (Subscribers, EventStream) {
        let subscribers = Subscribers::new(GraphHandle::new(1).expect("nonzero"));
        let filter =
            EventFilter::new(vec![EventRegistration::new(EventType::IncomingData)]).expect("ok");
        let stream = subscribers.add_stream(filter, limits);
        (subscribers, stream)
    }

    /// A full queue makes the link wait instead of losing data: the reservation completes
    /// once the reader has read, and nothing is lost.
    #[tokio::test]
    async fn data_waits_for_room_and_is_never_lost() {
        use futures_util::FutureExt;
        let (subscribers, mut stream) = data_stream(QueueLimits {
            events: 2,
            bytes: 1024,
        });
        for n in 0..2 {
            let event = data(n, 10);
            let room = subscribers
                .reserve_data(&event)
                .now_or_never()
                .expect("room for two");
            room.deliver(event);
        }
        let third = data(2, 10);
        let mut waiting = Box::pin(subscribers.reserve_data(&third));
        assert!((&mut waiting).now_or_never().is_none(), "the third waits");
        assert_eq!(stream.try_recv(), Some(data(0, 10)));
        let room = waiting.now_or_never().expect("room once one is read");
        room.deliver(third);
        assert_eq!(stream.try_recv(), Some(data(1, 10)));
        assert_eq!(stream.try_recv(), Some(data(2, 10)));
        assert_eq!(stream.try_recv(), None);
    }

    /// The byte budget holds links back too, and a payload larger than the whole budget
    /// still passes alone.
    #[tokio::test]
    async fn the_byte_budget_holds_data_back_and_a_huge_payload_passes_alone() {
        use futures_util::FutureExt;
        let (subscribers, mut stream) = data_stream(QueueLimits {
            events: 100,
            bytes: 100,
        });
        let first = data(0, 80);
        subscribers
            .reserve_data(&first)
            .now_or_never()
            .expect("room")
            .deliver(first);
        let huge = data(1, 1000);
        let mut waiting = Box::pin(subscribers.reserve_data(&huge));
        assert!(
            (&mut waiting).now_or_never().is_none(),
            "needs the whole budget"
        );
        assert_eq!(stream.try_recv(), Some(data(0, 80)));
        waiting
            .now_or_never()
            .expect("alone it passes")
            .deliver(huge.clone());
        assert_eq!(stream.try_recv(), Some(huge));
    }

    /// A registration that ends lets a waiting link go on; its data has nowhere to go.
    #[tokio::test]
    async fn an_ended_registration_releases_waiting_links() {
        use futures_util::FutureExt;
        let (subscribers, stream) = data_stream(QueueLimits {
            events: 1,
            bytes: 1024,
        });
        let first = data(0, 1);
        subscribers
            .reserve_data(&first)
            .now_or_never()
            .expect("room")
            .deliver(first);
        let second = data(1, 1);
        let mut waiting = Box::pin(subscribers.reserve_data(&second));
        assert!((&mut waiting).now_or_never().is_none());
        assert!(subscribers.remove(stream.handle()));
        assert!(waiting.now_or_never().is_some(), "released");
    }

    /// Other events are kept beside a queue full of data, up to their own bound.
    #[tokio::test]
    async fn other_events_are_kept_beside_full_data() {
        use futures_util::FutureExt;
        let subscribers = Subscribers::new(GraphHandle::new(1).expect("nonzero"));
        let filter = EventFilter::new(vec![
            EventRegistration::new(EventType::IncomingData),
            EventRegistration::new(EventType::StatusChanged),
        ])
        .expect("ok");
        let mut stream = subscribers.add_stream(
            filter,
            QueueLimits {
                events: 1,
                bytes: 1024,
            },
        );
        let first = data(0, 1);
        subscribers
            .reserve_data(&first)
            .now_or_never()
            .expect("room")
            .deliver(first);
        subscribers.publish(status(1));
        subscribers.publish(status(2));
        assert_eq!(stream.try_recv(), Some(data(0, 1)));
        assert_eq!(stream.try_recv(), Some(status(1)));
        assert_eq!(stream.try_recv(), Some(GraphEvent::EventsLost { count: 1 }));
        assert_eq!(stream.try_recv(), None);
    }
}
