//! Event registrations: bounded per-registration queues, the [`EventStream`] an application
//! reads, and delivery to an actix [`Recipient`].
//!
//! ```text
//!  graph actor / connection actors ──publish──▶ Subscribers ──▶ queue ──▶ EventStream
//!                                                         └──▶ try_send ──▶ Recipient
//! ```
//!
//! Publishing never waits: a registration whose queue (or mailbox) is full loses the event,
//! counts it, and receives one [`GraphEvent::EventsLost`] with the count as soon as it has
//! read what was queued (a recipient: before its next event). A subscriber that stops
//! reading therefore costs at most its queue's bounds.

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
    /// The most events held.
    pub events: usize,
    /// The most INCOMING_DATA payload bytes held.
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
    events: VecDeque<GraphEvent>,
    bytes: usize,
    lost: u64,
    closed: bool,
}

struct Queue {
    limits: QueueLimits,
    state: Mutex<QueueState>,
    waker: AtomicWaker,
}

impl Queue {
    fn push(&self, event: GraphEvent) {
        {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            if state.closed {
                return;
            }
            let bytes = event.payload_len();
            if state.events.len() >= self.limits.events || state.bytes + bytes > self.limits.bytes {
                state.lost += 1;
                return;
            }
            if state.lost > 0 {
                let count = std::mem::take(&mut state.lost);
                state.events.push_back(GraphEvent::EventsLost { count });
            }
            state.bytes += bytes;
            state.events.push_back(event);
        }
        self.waker.wake();
    }

    fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
        }
        self.waker.wake();
    }

    fn pop(&self) -> Poll<Option<GraphEvent>> {
        let Ok(mut state) = self.state.lock() else {
            return Poll::Ready(None);
        };
        match state.events.pop_front() {
            Some(event) => {
                state.bytes -= event.payload_len();
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
    },
}

struct Subscriber {
    handle: EventHandle,
    filter: EventFilter,
    sink: Sink,
}

impl Subscriber {
    fn deliver(&self, graph: GraphHandle, event: &GraphEvent) {
        match &self.sink {
            Sink::Queue(queue) => queue.push(event.clone()),
            Sink::Recipient { recipient, lost } => {
                let message = |event: GraphEvent| PeerEvent {
                    graph,
                    registration: self.handle,
                    event,
                };
                let missed = lost.load(Ordering::Relaxed);
                if missed > 0 {
                    if recipient
                        .try_send(message(GraphEvent::EventsLost { count: missed }))
                        .is_err()
                    {
                        lost.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    lost.fetch_sub(missed, Ordering::Relaxed);
                }
                if recipient.try_send(message(event.clone())).is_err() {
                    lost.fetch_add(1, Ordering::Relaxed);
                }
            }
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
        let queue = Arc::new(Queue {
            limits,
            state: Mutex::new(QueueState {
                events: VecDeque::new(),
                bytes: 0,
                lost: 0,
                closed: false,
            }),
            waker: AtomicWaker::new(),
        });
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
        if let Sink::Queue(queue) = &subscriber.sink {
            queue.close();
        }
        true
    }

    /// Ends every registration (the graph closed).
    pub(crate) fn close_all(&self) {
        let Ok(mut list) = self.list.write() else {
            return;
        };
        for subscriber in list.drain(..) {
            if let Sink::Queue(queue) = &subscriber.sink {
                queue.close();
            }
        }
    }

    /// True when any registration asks for events of `event_type`.
    pub(crate) fn wants(&self, event_type: EventType) -> bool {
        self.list
            .read()
            .map(|list| list.iter().any(|s| s.filter.wants_type(event_type)))
            .unwrap_or(false)
    }

    /// Delivers `event` to every registration whose filter accepts it; never waits.
    pub(crate) fn publish(&self, event: GraphEvent) {
        let Ok(list) = self.list.read() else {
            return;
        };
        for subscriber in list.iter().filter(|s| s.filter.accepts(&event)) {
            subscriber.deliver(self.graph, &event);
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
}
