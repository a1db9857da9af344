//! Events over loopback QUIC: STATUS_CHANGED and GetStatus, the INCOMING_DATA data-type
//! filter, unregistering, bounded queues and EventsLost, delivery to an actix Recipient,
//! and EnumConnections on both ends of a direct connection.

#[macro_use]
mod common;

use actix::prelude::*;
use bytes::Bytes;
use common::*;
use peergraph::{
    reply, ConnectionFlags, ConnectionInfo, ConnectionStatus, DataType, EventRegistration,
    EventStream, EventType, GraphEvent, GraphId, GraphOptions, GraphProperties, GraphStatus,
    NodeIdentity, PeerEvent, PeerId, QueueLimits, RegisterEventRecipient, ResultCode,
    UnregisterEvent,
};
use tokio::sync::mpsc;

const TYPE_A: DataType = DataType::from_u128(0xA);
const TYPE_B: DataType = DataType::from_u128(0xB);

/// The next event of a stream, bounded; `None` once the stream has ended.
async fn next(events: &mut EventStream) -> Option<GraphEvent> {
    within!(events.recv())
}

fn status(event: Option<GraphEvent>) -> GraphStatus {
    match event {
        Some(GraphEvent::StatusChanged { status }) => status,
        other => panic!("expected STATUS_CHANGED, got {other:?}"),
    }
}

fn data(connection_id: peergraph::ConnectionId, data_type: DataType, text: &str) -> GraphEvent {
    GraphEvent::IncomingData {
        connection_id,
        data_type,
        data: Bytes::copy_from_slice(text.as_bytes()),
    }
}

/// Like `common::node`, with a second registration for STATUS_CHANGED alone, made before
/// the node listens so that it sees every status change.
async fn watched_node(graph_id: &str, peer_id: &str) -> (Node, EventStream) {
    let engine = engine();
    let properties = GraphProperties::new(
        GraphId::new(graph_id).expect("graph id"),
        PeerId::new(peer_id).expect("peer id"),
    );
    let graph = engine
        .create_graph(properties, GraphOptions::default())
        .expect("create");
    let events = within!(graph.register_event(all_events())).expect("register");
    let statuses =
        within!(graph.register_event(vec![EventRegistration::new(EventType::StatusChanged)]))
            .expect("register");
    assert_eq!(
        within!(graph.status()),
        Ok(GraphStatus::SYNCHRONIZED),
        "a created graph is synchronized and does nothing else yet"
    );
    let address = within!(graph.listen("127.0.0.1:0".parse().expect("address"))).expect("listen");
    (
        Node {
            engine,
            graph,
            events,
            address,
        },
        statuses,
    )
}

#[tokio::test]
async fn status_changed_follows_listen_and_connections() {
    let listening = GraphStatus(GraphStatus::SYNCHRONIZED.0 | GraphStatus::LISTENING.0);
    let connected = GraphStatus(listening.0 | GraphStatus::HAS_CONNECTIONS.0);
    let (mut alice, mut alice_statuses) = watched_node("status", "alice").await;
    let (mut bob, mut bob_statuses) = watched_node("status", "bob").await;
    for (node, statuses) in [(&alice, &mut alice_statuses), (&bob, &mut bob_statuses)] {
        assert_eq!(status(next(statuses).await), listening);
        assert_eq!(within!(node.graph.status()), Ok(listening));
    }

    let id = connect(&mut alice, &mut bob, "bob").await;
    for (node, statuses) in [(&alice, &mut alice_statuses), (&bob, &mut bob_statuses)] {
        assert_eq!(status(next(statuses).await), connected);
        assert_eq!(within!(node.graph.status()), Ok(connected));
    }

    within!(alice.graph.close_direct_connection(id)).expect("close");
    wait_connection(&mut alice.events, id, ConnectionStatus::Disconnected).await;
    wait_connection(&mut bob.events, id, ConnectionStatus::Disconnected).await;
    for (node, statuses) in [(&alice, &mut alice_statuses), (&bob, &mut bob_statuses)] {
        assert_eq!(status(next(statuses).await), listening);
        assert_eq!(within!(node.graph.status()), Ok(listening));
        assert_eq!(statuses.try_recv(), None, "one event per change, no more");
    }

    // Closing the graph ends its registrations.
    within!(alice.graph.close()).expect("close");
    assert_eq!(next(&mut alice_statuses).await, None);
}

#[tokio::test]
async fn status_changes_once_for_several_connections() {
    let listening = GraphStatus(GraphStatus::SYNCHRONIZED.0 | GraphStatus::LISTENING.0);
    let connected = GraphStatus(listening.0 | GraphStatus::HAS_CONNECTIONS.0);
    let (mut alice, mut statuses) = watched_node("several", "alice").await;
    let mut bob = node("several", "bob").await;
    let mut carol = node("several", "carol").await;
    assert_eq!(status(next(&mut statuses).await), listening);

    let to_bob = connect(&mut alice, &mut bob, "bob").await;
    assert_eq!(status(next(&mut statuses).await), connected);
    let to_carol = connect(&mut alice, &mut carol, "carol").await;
    // GetStatus goes through the graph actor's mailbox after the handler that published
    // CONNECTED, so any status event of that handler is queued by the time it answers.
    assert_eq!(within!(alice.graph.status()), Ok(connected));
    assert_eq!(
        statuses.try_recv(),
        None,
        "a second connection changes nothing"
    );

    within!(alice.graph.close_direct_connection(to_bob)).expect("close");
    wait_connection(&mut alice.events, to_bob, ConnectionStatus::Disconnected).await;
    assert_eq!(within!(alice.graph.status()), Ok(connected));
    assert_eq!(statuses.try_recv(), None, "one connection is left");

    // The last one ends from the far side.
    within!(carol.graph.close_direct_connection(to_carol)).expect("close");
    wait_connection(&mut alice.events, to_carol, ConnectionStatus::Disconnected).await;
    assert_eq!(status(next(&mut statuses).await), listening);
    assert_eq!(within!(alice.graph.status()), Ok(listening));
}

#[tokio::test]
async fn incoming_data_is_filtered_by_data_type() {
    let mut alice = node("filter", "alice").await;
    let mut bob = node("filter", "bob").await;
    let id = connect(&mut alice, &mut bob, "bob").await;
    let mut only_a = within!(bob
        .graph
        .register_event(vec![EventRegistration::incoming_data(TYPE_A)]))
    .expect("register");
    let mut connections_only = within!(bob
        .graph
        .register_event(vec![EventRegistration::new(EventType::DirectConnection)]))
    .expect("register");

    let fence = DataType::from_u128(0xFE);
    let sent = [
        (TYPE_B, "b1"),
        (TYPE_A, "a"),
        (TYPE_B, "b2"),
        (fence, "fence"),
    ];
    for (data_type, text) in sent {
        within!(alice
            .graph
            .send_data(id, data_type, text.as_bytes().to_vec()))
        .expect("send");
    }
    // The unfiltered registration sees all of them, in order.
    for (data_type, text) in sent {
        let event = wait_for(&mut bob.events, text, |event| {
            matches!(event, GraphEvent::IncomingData { .. })
        })
        .await;
        assert_eq!(event, data(id, data_type, text));
    }
    // Frames are published in order, so now that the fence has been seen, every
    // registration has been offered the three before it.
    assert_eq!(next(&mut only_a).await, Some(data(id, TYPE_A, "a")));
    assert_eq!(only_a.try_recv(), None, "no type B data");
    assert_eq!(connections_only.try_recv(), None, "no data at all");
}

#[tokio::test]
async fn unregister_ends_the_stream_after_the_queued_events() {
    let mut alice = node("unregister", "alice").await;
    let mut bob = node("unregister", "bob").await;
    let id = connect(&mut alice, &mut bob, "bob").await;
    let mut extra = within!(bob
        .graph
        .register_event(vec![EventRegistration::new(EventType::IncomingData)]))
    .expect("register");
    for text in ["one", "two", "three"] {
        within!(alice.graph.send_data(id, TYPE_A, text.as_bytes().to_vec())).expect("send");
    }
    wait_for(&mut bob.events, "the third message", |event| {
        *event == data(id, TYPE_A, "three")
    })
    .await;

    within!(bob.graph.unregister_event(extra.handle())).expect("unregister");
    for text in ["one", "two", "three"] {
        assert_eq!(next(&mut extra).await, Some(data(id, TYPE_A, text)));
    }
    assert_eq!(next(&mut extra).await, None, "the stream ends");

    // Nothing more reaches it, and its handle is gone.
    within!(alice.graph.send_data(id, TYPE_A, b"four".to_vec())).expect("send");
    wait_for(&mut bob.events, "the fourth message", |event| {
        *event == data(id, TYPE_A, "four")
    })
    .await;
    assert_eq!(next(&mut extra).await, None);
    assert_eq!(
        code(within!(bob.graph.unregister_event(extra.handle()))),
        Err(ResultCode::E_INVALIDARG)
    );
}

/// The next INCOMING_DATA event, passing over the others.
async fn next_data(events: &mut EventStream) -> Option<GraphEvent> {
    loop {
        match next(events).await {
            Some(event @ GraphEvent::IncomingData { .. }) => return Some(event),
            Some(GraphEvent::EventsLost { count }) => panic!("{count} events lost"),
            Some(_) => {}
            None => return None,
        }
    }
}

/// A full registration holds its links back instead of losing their data: the link stops
/// reading, and every message arrives, in order, once the application reads. The other
/// registration, which takes the same data, sees the later messages (and a fence of
/// another type) only after the limited one made room.
#[tokio::test]
async fn a_full_queue_holds_the_link_back_and_loses_nothing() {
    const SENT: usize = 50;
    const LIMIT: usize = 4;
    let mut alice = node("held", "alice").await;
    let mut bob = node("held", "bob").await;
    let id = connect(&mut alice, &mut bob, "bob").await;
    let mut limited = within!(bob.graph.register_event_with(
        vec![EventRegistration::incoming_data(TYPE_A)],
        QueueLimits {
            events: LIMIT,
            bytes: 1 << 20,
        },
    ))
    .expect("register");

    for n in 0..SENT {
        within!(alice
            .graph
            .send_data(id, TYPE_A, n.to_string().into_bytes()))
        .expect("send");
    }
    within!(alice.graph.send_data(id, TYPE_B, b"fence".to_vec())).expect("send");
    // The unlimited registration gets the messages the limited one had room for, and
    // then nothing: the link waits.
    for n in 0..LIMIT {
        assert_eq!(
            next_data(&mut bob.events).await,
            Some(data(id, TYPE_A, &n.to_string()))
        );
    }
    // The limited registration, read now, has every message in order and no loss.
    for n in 0..SENT {
        assert_eq!(
            next(&mut limited).await,
            Some(data(id, TYPE_A, &n.to_string())),
            "in order, nothing lost"
        );
    }
    for n in LIMIT..SENT {
        assert_eq!(
            next_data(&mut bob.events).await,
            Some(data(id, TYPE_A, &n.to_string()))
        );
    }
    assert_eq!(
        next_data(&mut bob.events).await,
        Some(data(id, TYPE_B, "fence"))
    );
    assert_eq!(limited.try_recv(), None);
}

/// alice sends 5,000 messages of 14 bytes, more than bob's queue holds, then closes; bob's
/// application reads only once alice has sent them all. Every SendData and the close
/// answer S_OK, and bob has all 5,000 in order: the close's S_OK means the application
/// has every byte (it used to get 4,095 and one EventsLost of 905).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reader_gets_every_message_and_the_close_waits_for_it() {
    const SENT: usize = 5_000;
    let mut alice = node("late", "alice").await;
    let mut bob = node("late", "bob").await;
    let id = connect(&mut alice, &mut bob, "bob").await;
    let (sent_all, all_sent) = tokio::sync::oneshot::channel();
    let sender = {
        let graph = alice.graph.clone();
        tokio::spawn(async move {
            for n in 0..SENT {
                graph
                    .send_data(id, TYPE_A, format!("message {n:06}").into_bytes())
                    .await?;
            }
            let _ = sent_all.send(());
            graph.close_direct_connection(id).await
        })
    };
    within!(all_sent).expect("every SendData answered");
    let mut received = 0;
    while received < SENT {
        match next(&mut bob.events).await {
            Some(GraphEvent::IncomingData { data, .. }) => {
                assert_eq!(
                    data,
                    format!("message {received:06}").into_bytes(),
                    "in order"
                );
                received += 1;
            }
            Some(GraphEvent::EventsLost { count }) => panic!("{count} events lost"),
            Some(_) => {}
            None => panic!("the stream ended after {received} messages"),
        }
    }
    assert_eq!(
        within!(sender).expect("sender"),
        Ok(()),
        "the close answers S_OK"
    );
    wait_connection(&mut bob.events, id, ConnectionStatus::Disconnected).await;
}

/// An actor that forwards the events it receives to the test.
struct Collector {
    events: mpsc::Sender<PeerEvent>,
}

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<PeerEvent> for Collector {
    type Result = ();

    fn handle(&mut self, event: PeerEvent, _ctx: &mut Self::Context) {
        let _ = self.events.try_send(event);
    }
}

#[actix_rt::test]
async fn an_actix_recipient_receives_peer_events() {
    let mut alice = node("recipient", "alice").await;
    let mut bob = node("recipient", "bob").await;
    let (sender, mut received) = mpsc::channel(16);
    let collector = Collector { events: sender }.start();
    let addr = bob.graph.addr();

    assert_eq!(
        code(reply(within!(addr.send(RegisterEventRecipient {
            registrations: Vec::new(),
            recipient: collector.clone().recipient(),
        })))),
        Err(ResultCode::E_INVALIDARG),
        "no registrations"
    );
    let registration = reply(within!(addr.send(RegisterEventRecipient {
        registrations: vec![EventRegistration::new(EventType::IncomingData)],
        recipient: collector.recipient(),
    })))
    .expect("register");

    let id = connect(&mut alice, &mut bob, "bob").await;
    within!(alice.graph.send_data(id, TYPE_A, b"hello actor".to_vec())).expect("send");
    let event = within!(received.recv()).expect("collector alive");
    assert_eq!(event.graph, bob.graph.handle());
    assert_eq!(event.registration, registration);
    assert_eq!(event.event, data(id, TYPE_A, "hello actor"));
    assert!(
        received.try_recv().is_err(),
        "only INCOMING_DATA was asked for: {:?}",
        received.try_recv()
    );

    reply(within!(addr.send(UnregisterEvent {
        handle: registration
    })))
    .expect("unregister");
    assert_eq!(
        code(reply(within!(addr.send(UnregisterEvent {
            handle: registration
        })))),
        Err(ResultCode::E_INVALIDARG)
    );
}

#[tokio::test]
async fn enum_connections_lists_the_direct_connection_on_both_sides() {
    let alice_key = NodeIdentity::generate().expect("identity");
    let bob_key = NodeIdentity::generate().expect("identity");
    let with = |identity: &NodeIdentity| GraphOptions::default().with_identity(identity.clone());
    let mut alice = node_with("enum", "alice", with(&alice_key)).await;
    let mut bob = node_with("enum", "bob", with(&bob_key)).await;
    for graph in [&alice.graph, &bob.graph] {
        assert_eq!(
            within!(graph.enum_connections(ConnectionFlags::DIRECT)),
            Ok(Vec::new())
        );
    }
    let alice_node = within!(alice.graph.node_info(None))
        .expect("node info")
        .node_id;
    let bob_node = within!(bob.graph.node_info(None))
        .expect("node info")
        .node_id;
    assert_eq!(alice_node, alice_key.peer_key().node_id());
    assert_eq!(bob_node, bob_key.peer_key().node_id());

    let id = within!(alice.graph.open_direct_connection("bob", bob.address)).expect("open");
    // The CONNECTED events name the remote node, as its own node_info(None) does.
    for (events, remote_node, remote_peer) in [
        (&mut alice.events, bob_node, "bob"),
        (&mut bob.events, alice_node, "alice"),
    ] {
        match wait_connection(events, id, ConnectionStatus::Connected).await {
            GraphEvent::DirectConnection(change) => {
                assert_eq!(change.node_id, Some(remote_node));
                assert_eq!(change.peer_id.as_str(), remote_peer);
                assert_eq!(change.failure_reason, None);
            }
            other => unreachable!("{other:?}"),
        }
    }

    let from_alice = ConnectionInfo {
        flags: ConnectionFlags::DIRECT,
        connection_id: id,
        node_id: bob_node,
        peer_key: bob_key.peer_key(),
        peer_id: PeerId::new("bob").expect("peer id"),
        address: bob.address,
    };
    let from_bob = ConnectionInfo {
        flags: ConnectionFlags::DIRECT,
        connection_id: id,
        node_id: alice_node,
        peer_key: alice_key.peer_key(),
        peer_id: PeerId::new("alice").expect("peer id"),
        address: alice.address,
    };
    for (graph, expected) in [(&alice.graph, &from_alice), (&bob.graph, &from_bob)] {
        assert_eq!(
            within!(graph.enum_connections(ConnectionFlags::DIRECT)),
            Ok(vec![expected.clone()])
        );
        assert_eq!(
            within!(graph.enum_connections(ConnectionFlags::ALL)),
            Ok(vec![expected.clone()])
        );
        assert_eq!(
            within!(graph.enum_connections(ConnectionFlags::NEIGHBOR)),
            Ok(Vec::new()),
            "a direct connection is not a neighbor"
        );
    }

    within!(bob.graph.close_direct_connection(id)).expect("close");
    wait_connection(&mut alice.events, id, ConnectionStatus::Disconnected).await;
    wait_connection(&mut bob.events, id, ConnectionStatus::Disconnected).await;
    for graph in [&alice.graph, &bob.graph] {
        assert_eq!(
            within!(graph.enum_connections(ConnectionFlags::DIRECT)),
            Ok(Vec::new())
        );
    }
}

/// An actor that hands every event to the test and waits until the test has taken it: a
/// recipient as slow as its reader.
struct Relay {
    events: mpsc::Sender<PeerEvent>,
}

impl Actor for Relay {
    type Context = Context<Self>;
}

impl Handler<PeerEvent> for Relay {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, event: PeerEvent, _ctx: &mut Self::Context) -> Self::Result {
        let events = self.events.clone();
        Box::pin(async move {
            let _ = events.send(event).await;
        })
    }
}

/// A recipient that falls far behind still gets every message, in order, with its
/// connection's DISCONNECTED after the data, and the close answers S_OK only once the
/// recipient has the data (its mailbox, then its registration's queue, hold the link back).
#[actix_rt::test]
async fn a_slow_recipient_gets_every_message_in_order() {
    const SENT: usize = 10_000;
    let mut alice = node("slow-actor", "alice").await;
    let mut bob = node("slow-actor", "bob").await;
    let (sender, mut received) = mpsc::channel(1);
    let relay = Relay { events: sender }.start();
    reply(within!(bob.graph.addr().send(RegisterEventRecipient {
        registrations: vec![
            EventRegistration::new(EventType::IncomingData),
            EventRegistration::new(EventType::DirectConnection),
        ],
        recipient: relay.recipient(),
    })))
    .expect("register");
    let id = connect(&mut alice, &mut bob, "bob").await;
    // bob's own stream takes the data too and nobody reads it: it would hold the link
    // back once full (the slowest registration sets the pace), so it goes.
    within!(bob.graph.unregister_event(bob.events.handle())).expect("unregister");
    let sender = {
        let graph = alice.graph.clone();
        actix_rt::spawn(async move {
            for n in 0..SENT {
                graph
                    .send_data(id, TYPE_A, format!("{n:05}").into_bytes())
                    .await?;
            }
            graph.close_direct_connection(id).await
        })
    };
    let mut next = 0;
    loop {
        let event = within!(received.recv()).expect("relay alive").event;
        match event {
            GraphEvent::IncomingData { data, .. } => {
                assert_eq!(data, format!("{next:05}").into_bytes(), "in order");
                next += 1;
            }
            GraphEvent::DirectConnection(change)
                if change.status == ConnectionStatus::Disconnected =>
            {
                break
            }
            GraphEvent::EventsLost { count } => panic!("{count} events lost"),
            _ => {}
        }
    }
    assert_eq!(next, SENT, "every message came before DISCONNECTED");
    assert_eq!(
        within!(sender).expect("sender"),
        Ok(()),
        "the close answers S_OK"
    );
}
