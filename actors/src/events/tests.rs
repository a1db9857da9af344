//! The queues and reservations of event registrations, without a graph.

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
    let room = |stream: &EventStream| stream.queue.state.lock().expect("lock").events.capacity();
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

/// The run of `payloads` (bytes `n` repeated `len` times, each) as `data` makes them.
fn run(payloads: &[(u8, usize)]) -> DataRun {
    DataRun {
        connection_id: peergraph_engine::ConnectionId::new(1).expect("id"),
        data_type: peergraph_engine::DataType::from_u128(1),
        payloads: payloads
            .iter()
            .map(|&(n, len)| bytes::Bytes::from(vec![n; len]))
            .collect(),
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
            .reserve_event(&event)
            .now_or_never()
            .expect("room for two");
        room.deliver(event);
    }
    let third = data(2, 10);
    let mut waiting = Box::pin(subscribers.reserve_event(&third));
    assert!((&mut waiting).now_or_never().is_none(), "the third waits");
    assert_eq!(stream.try_recv(), Some(data(0, 10)));
    let room = waiting.now_or_never().expect("room once one is read");
    room.deliver(third);
    assert_eq!(stream.try_recv(), Some(data(1, 10)));
    assert_eq!(stream.try_recv(), Some(data(2, 10)));
    assert_eq!(stream.try_recv(), None);
}

/// A wait for room ends when the link's end comes first: the room taken meanwhile in
/// other registrations goes back, and `stop` is built only when a wait is needed.
#[tokio::test]
async fn a_wait_for_room_ends_with_the_link() {
    use futures_util::FutureExt;
    let (subscribers, mut full) = data_stream(QueueLimits {
        events: 1,
        bytes: 1024,
    });
    let filter =
        EventFilter::new(vec![EventRegistration::new(EventType::IncomingData)]).expect("ok");
    let mut roomy = subscribers.add_stream(
        filter,
        QueueLimits {
            events: 8,
            bytes: 1024,
        },
    );
    let data_type = peergraph_engine::DataType::from_u128(1);
    let unused = || -> std::future::Ready<()> { panic!("built with room at once") };
    let room = subscribers
        .reserve_data_or(data_type, 10, unused)
        .now_or_never()
        .expect("room in both")
        .expect("not stopped");
    room.deliver(data(0, 10));
    // `full` has no room now: the second waits until the link ends.
    let (ended, end) = tokio::sync::oneshot::channel::<&str>();
    let mut waiting = Box::pin(subscribers.reserve_data_or(data_type, 10, || end));
    assert!((&mut waiting).now_or_never().is_none(), "it waits");
    ended.send("link lost").expect("waiting");
    let stopped = waiting.now_or_never().expect("ended with the link");
    assert_eq!(stopped.err(), Some(Ok("link lost")));
    // The room it took in `roomy` came back: eight more fit there.
    assert_eq!(full.try_recv(), Some(data(0, 10)));
    assert_eq!(roomy.try_recv(), Some(data(0, 10)));
    for n in 1..=8 {
        let room = subscribers
            .reserve_data_or(data_type, 10, unused)
            .now_or_never()
            .expect("room")
            .expect("not stopped");
        room.deliver(data(n, 10));
        assert_eq!(full.try_recv(), Some(data(n, 10)));
    }
    for n in 1..=8 {
        assert_eq!(roomy.try_recv(), Some(data(n, 10)));
    }
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
        .reserve_event(&first)
        .now_or_never()
        .expect("room")
        .deliver(first);
    let huge = data(1, 1000);
    let mut waiting = Box::pin(subscribers.reserve_event(&huge));
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
        .reserve_event(&first)
        .now_or_never()
        .expect("room")
        .deliver(first);
    let second = data(1, 1);
    let mut waiting = Box::pin(subscribers.reserve_event(&second));
    assert!((&mut waiting).now_or_never().is_none());
    assert!(subscribers.remove(stream.handle()));
    assert!(waiting.now_or_never().is_some(), "released");
}

/// Subscribers of graph 1 and one registration for INCOMING_DATA and STATUS_CHANGED with
/// `limits`.
fn data_and_status_stream(limits: QueueLimits) -> (Subscribers, EventStream) {
    let subscribers = Subscribers::new(GraphHandle::new(1).expect("nonzero"));
    let filter = EventFilter::new(vec![
        EventRegistration::new(EventType::IncomingData),
        EventRegistration::new(EventType::StatusChanged),
    ])
    .expect("ok");
    let stream = subscribers.add_stream(filter, limits);
    (subscribers, stream)
}

/// Other events are kept beside a queue full of data, up to their own bound.
#[tokio::test]
async fn other_events_are_kept_beside_full_data() {
    use futures_util::FutureExt;
    let (subscribers, mut stream) = data_and_status_stream(QueueLimits {
        events: 1,
        bytes: 1024,
    });
    let first = data(0, 1);
    subscribers
        .reserve_event(&first)
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

/// A link that stops while it waits for room in one registration gives back the room it
/// had already taken in another (it used to keep it for good, and after enough such links
/// every link feeding that registration waited forever although it was empty).
#[tokio::test]
async fn a_link_that_stops_while_waiting_gives_its_room_back() {
    use futures_util::FutureExt;
    let subscribers = Subscribers::new(GraphHandle::new(1).expect("nonzero"));
    let filter =
        || EventFilter::new(vec![EventRegistration::new(EventType::IncomingData)]).expect("ok");
    let limits = QueueLimits {
        events: 1,
        bytes: 1024,
    };
    let mut a = subscribers.add_stream(filter(), limits);
    let mut b = subscribers.add_stream(filter(), limits);
    let first = data(0, 10);
    subscribers
        .reserve_event(&first)
        .now_or_never()
        .expect("room")
        .deliver(first);
    assert_eq!(a.try_recv(), Some(data(0, 10)));
    let second = data(1, 10);
    let mut waiting = Box::pin(subscribers.reserve_event(&second));
    assert!(
        (&mut waiting).now_or_never().is_none(),
        "room taken in A, waits on B"
    );
    drop(waiting); // the link's reader stops
    assert_eq!(b.try_recv(), Some(data(0, 10)));
    assert_eq!(a.try_recv(), None);
    let third = data(2, 10);
    let room = subscribers
        .reserve_event(&third)
        .now_or_never()
        .expect("both are empty");
    room.deliver(third);
    assert_eq!(a.try_recv(), Some(data(2, 10)));
    assert_eq!(b.try_recv(), Some(data(2, 10)));
}

/// Waiting links are served in order: a payload that needs the whole byte budget is not
/// starved by small ones that come after it.
#[tokio::test]
async fn waiting_links_are_served_in_order_and_a_large_payload_is_not_starved() {
    use futures_util::FutureExt;
    let (subscribers, mut stream) = data_stream(QueueLimits {
        events: 100,
        bytes: 100,
    });
    let first = data(0, 50);
    subscribers
        .reserve_event(&first)
        .now_or_never()
        .expect("room")
        .deliver(first);
    let huge = data(1, 1000);
    let mut waiting = Box::pin(subscribers.reserve_event(&huge));
    assert!(
        (&mut waiting).now_or_never().is_none(),
        "needs the whole budget"
    );
    let small = data(2, 10);
    let mut behind = Box::pin(subscribers.reserve_event(&small));
    assert!(
        (&mut behind).now_or_never().is_none(),
        "a newcomer waits its turn"
    );
    assert_eq!(stream.try_recv(), Some(data(0, 50)));
    waiting
        .now_or_never()
        .expect("the first in line gets the room")
        .deliver(huge.clone());
    assert!(
        (&mut behind).now_or_never().is_none(),
        "the budget is the large one's"
    );
    assert_eq!(stream.try_recv(), Some(huge));
    behind
        .now_or_never()
        .expect("then the next")
        .deliver(small.clone());
    assert_eq!(stream.try_recv(), Some(small));
}

/// The accounting a queue holds for its INCOMING_DATA: events and payload bytes.
fn data_held(stream: &EventStream) -> (usize, usize) {
    let state = stream.queue.state.lock().expect("lock");
    (state.data_events, state.data_bytes)
}

/// A batch takes room for all its events at once or none of them, every registration
/// alike; its events come out in order, each freeing its own share as it is read.
#[tokio::test]
async fn a_batch_takes_room_whole_or_not_at_all() {
    use futures_util::FutureExt;
    let subscribers = Subscribers::new(GraphHandle::new(1).expect("nonzero"));
    let filter =
        || EventFilter::new(vec![EventRegistration::new(EventType::IncomingData)]).expect("ok");
    let mut roomy = subscribers.add_stream(
        filter(),
        QueueLimits {
            events: 100,
            bytes: 1000,
        },
    );
    let mut tight = subscribers.add_stream(
        filter(),
        QueueLimits {
            events: 4,
            bytes: 1000,
        },
    );
    let first = data(0, 10);
    let mut room = subscribers
        .reserve_event(&first)
        .now_or_never()
        .expect("room for one");
    assert!(
        !room.try_extend(4, 40),
        "five do not fit in the tight queue"
    );
    assert_eq!(
        data_held(&roomy),
        (1, 10),
        "the roomy queue gave back its share"
    );
    assert_eq!(data_held(&tight), (1, 10));
    assert!(room.try_extend(3, 30), "four fit in both");
    assert_eq!(data_held(&roomy), (4, 40));
    room.deliver_all(run(&[(0, 10), (1, 10), (2, 10), (3, 10)]));
    for stream in [&mut roomy, &mut tight] {
        let mut got = Vec::new();
        assert_eq!(stream.recv_many(&mut got, 3).await, 3);
        assert_eq!(got, vec![data(0, 10), data(1, 10), data(2, 10)]);
        assert_eq!(data_held(stream), (1, 10));
        assert_eq!(stream.try_recv(), Some(data(3, 10)));
        assert_eq!(data_held(stream), (0, 0));
    }
}

/// Events delivered short of what was reserved (the machine refused the rest) give the
/// rest of the room back, and a link waiting for it goes on.
#[tokio::test]
async fn room_a_batch_does_not_use_goes_back() {
    use futures_util::FutureExt;
    let (subscribers, mut stream) = data_stream(QueueLimits {
        events: 3,
        bytes: 1000,
    });
    let first = data(0, 10);
    let mut room = subscribers
        .reserve_event(&first)
        .now_or_never()
        .expect("room");
    assert!(room.try_extend(2, 20));
    let behind = data(9, 10);
    let mut waiting = Box::pin(subscribers.reserve_event(&behind));
    assert!(
        (&mut waiting).now_or_never().is_none(),
        "the queue is taken"
    );
    room.deliver_all(run(&[(0, 10)]));
    assert_eq!(data_held(&stream), (1, 10), "the unused room is free again");
    let late = waiting.now_or_never().expect("room given back");
    assert_eq!(data_held(&stream), (2, 20));
    late.deliver(behind.clone());
    let mut got = Vec::new();
    assert_eq!(stream.recv_many(&mut got, 10).await, 2);
    assert_eq!(got, vec![first, behind]);
    assert_eq!(data_held(&stream), (0, 0));
}

/// A batch does not pass a link waiting in line for room, even where it would fit.
#[tokio::test]
async fn a_batch_never_passes_a_waiting_link() {
    use futures_util::FutureExt;
    let (subscribers, _stream) = data_stream(QueueLimits {
        events: 10,
        bytes: 100,
    });
    let first = data(0, 50);
    let mut room = subscribers
        .reserve_event(&first)
        .now_or_never()
        .expect("room");
    let big = data(1, 60);
    let mut waiting = Box::pin(subscribers.reserve_event(&big));
    assert!(
        (&mut waiting).now_or_never().is_none(),
        "60 more bytes wait"
    );
    assert!(
        !room.try_extend(1, 10),
        "10 bytes would fit, but a link waits"
    );
    drop(room);
    assert!(waiting.now_or_never().is_some(), "the waiting link goes on");
}

/// `recv_many` reports a loss where `recv` would, and 0 once the registration ended.
#[tokio::test]
async fn recv_many_reports_losses_and_the_end() {
    let (subscribers, mut stream) = status_stream(2);
    for n in 0..4 {
        subscribers.publish(status(n));
    }
    let mut got = Vec::new();
    assert_eq!(stream.recv_many(&mut got, 10).await, 2);
    assert_eq!(stream.recv_many(&mut got, 10).await, 1);
    assert_eq!(
        got,
        vec![status(0), status(1), GraphEvent::EventsLost { count: 2 }]
    );
    assert_eq!(
        stream.recv_many(&mut got, 0).await,
        0,
        "a limit of 0 takes nothing"
    );
    assert!(subscribers.remove(stream.handle()));
    assert_eq!(stream.recv_many(&mut got, 10).await, 0, "ended");
    assert_eq!(got.len(), 3);
}

/// Queues the run of `payloads` (as [`run`] makes them) the way a link's reader does:
/// room for the first, then for the rest at once (which must fit), then one delivery.
fn queue_run(subscribers: &Subscribers, payloads: &[(u8, usize)]) {
    use futures_util::FutureExt;
    let (&(n, len), rest) = payloads.split_first().expect("a payload");
    let mut room = subscribers
        .reserve_event(&data(n, len))
        .now_or_never()
        .expect("room for the first");
    let rest_bytes = rest.iter().map(|&(_, len)| len).sum();
    assert!(room.try_extend(rest.len(), rest_bytes), "room for the rest");
    room.deliver_all(run(payloads));
}

/// Runs of INCOMING_DATA and other events come out in the order they were queued, a run
/// read in part keeps the rest for the next read (by `recv_many` or `try_recv`), and each
/// payload read gives back its own share of the room, a payload larger than the whole
/// budget included.
#[tokio::test]
async fn runs_and_other_events_keep_their_order_and_each_read_frees_its_share() {
    use futures_util::FutureExt;
    let (subscribers, mut stream) = data_and_status_stream(QueueLimits {
        events: 10,
        bytes: 100,
    });
    queue_run(&subscribers, &[(0, 10), (1, 20), (2, 10)]);
    subscribers.publish(status(7));
    assert_eq!(data_held(&stream), (3, 40));
    let huge = subscribers.reserve_event(&data(3, 500)).now_or_never();
    assert!(
        huge.is_none(),
        "a payload over the budget waits for the queue to empty"
    );
    let mut got = Vec::new();
    assert_eq!(stream.recv_many(&mut got, 2).await, 2);
    assert_eq!(got, vec![data(0, 10), data(1, 20)]);
    assert_eq!(
        data_held(&stream),
        (1, 10),
        "each payload read gave back its share"
    );
    assert_eq!(stream.try_recv(), Some(data(2, 10)));
    assert_eq!(stream.try_recv(), Some(status(7)));
    assert_eq!(data_held(&stream), (0, 0));
    subscribers
        .reserve_event(&data(3, 500))
        .now_or_never()
        .expect("room once the queue is empty")
        .deliver(data(3, 500));
    assert_eq!(data_held(&stream), (1, 100), "it holds the whole budget");
    assert_eq!(stream.try_recv(), Some(data(3, 500)));
    assert_eq!(data_held(&stream), (0, 0));
    assert_eq!(stream.try_recv(), None);
}

/// A run read whole by `recv_many` gives back all the room it held in one go: the same
/// shares as read one by one, a payload clipped to the whole budget included.
#[tokio::test]
async fn a_run_read_whole_gives_back_all_its_room() {
    use futures_util::FutureExt;
    let (subscribers, mut stream) = data_stream(QueueLimits {
        events: 10,
        bytes: 100,
    });
    queue_run(&subscribers, &[(0, 10), (1, 20), (2, 30)]);
    assert_eq!(data_held(&stream), (3, 60));
    let mut got = Vec::new();
    assert_eq!(stream.recv_many(&mut got, 3).await, 3);
    assert_eq!(got, vec![data(0, 10), data(1, 20), data(2, 30)]);
    assert_eq!(data_held(&stream), (0, 0));

    let room = subscribers
        .reserve_event(&data(3, 500))
        .now_or_never()
        .expect("room once the queue is empty");
    room.deliver_all(run(&[(3, 500)]));
    assert_eq!(data_held(&stream), (1, 100), "it holds the whole budget");
    got.clear();
    assert_eq!(stream.recv_many(&mut got, 10).await, 1);
    assert_eq!(got, vec![data(3, 500)]);
    assert_eq!(data_held(&stream), (0, 0));
}

/// A reader that catches up with an overflow hears of the loss though the queue is then
/// empty, whichever way it reads; and then finds the queue empty.
#[tokio::test]
async fn a_loss_is_read_once_the_reader_has_caught_up() {
    let (subscribers, mut stream) = status_stream(1);
    for n in 0..3 {
        subscribers.publish(status(n));
    }
    assert_eq!(stream.try_recv(), Some(status(0)));
    assert_eq!(stream.try_recv(), Some(GraphEvent::EventsLost { count: 2 }));
    assert_eq!(stream.try_recv(), None);
    for n in 3..6 {
        subscribers.publish(status(n));
    }
    assert_eq!(stream.recv().await, Some(status(3)));
    let mut got = Vec::new();
    assert_eq!(stream.recv_many(&mut got, 10).await, 1);
    assert_eq!(got, vec![GraphEvent::EventsLost { count: 2 }]);
    assert_eq!(stream.try_recv(), None);
}

/// A reader finds its queue empty without its lock; one that found it empty and waits
/// must still be woken by every event published from another thread, however the two
/// interleave. The publisher sends the next event only once the reader has the last, so
/// each round starts with the reader about to find the queue empty.
#[tokio::test]
async fn a_reader_of_an_empty_queue_is_woken_by_every_event_from_another_thread() {
    const ROUNDS: u32 = 20_000;
    let (subscribers, mut stream) = status_stream(4);
    let (read, reads) = std::sync::mpsc::sync_channel::<u32>(1);
    let publisher = std::thread::spawn(move || {
        for n in 0..ROUNDS {
            subscribers.publish(status(n));
            let got = reads.recv_timeout(Duration::from_secs(10));
            assert_eq!(got, Ok(n), "the reader took event {n}");
        }
        subscribers
    });
    for n in 0..ROUNDS {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.recv()).await;
        assert_eq!(event, Ok(Some(status(n))), "woken for event {n}");
        read.send(n).expect("the publisher waits");
    }
    let subscribers = publisher.join().expect("the publisher ends");
    assert!(subscribers.remove(stream.handle()));
    assert_eq!(stream.recv().await, None, "ended");
}
