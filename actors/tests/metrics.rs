//! The graph's metrics over loopback QUIC: links opened and ended, bytes, closes by result
//! code, handshakes refused by reason, events lost by a reader that does not read.

#[macro_use]
mod common;

use common::*;
use peergraph::{
    ConnectionStatus, DataType, EventRegistration, EventType, GraphEvent, GraphOptions,
    GraphSecret, LinkEnd, QueueLimits, Refusal, ResultCode, CLOSE_CODES,
};

const TEXT: DataType = DataType::from_u128(0x6d65_7472_6963_7300_0000_0000_0000_0001);

fn secret(text: &str) -> GraphSecret {
    GraphSecret::new(text.as_bytes().to_vec()).expect("long enough")
}

/// alice opens a link to bob, sends, and closes it: each side counts its direction, the
/// bytes, and how the link ended; alice counts her close's S_OK.
#[tokio::test]
async fn a_link_is_counted_from_open_to_close() {
    let mut alice = node("metrics", "alice").await;
    let mut bob = node("metrics", "bob").await;
    let fresh = within!(alice.graph.metrics()).expect("metrics");
    assert_eq!(fresh.opened_outgoing, 0);
    assert_eq!(fresh.closes.len(), CLOSE_CODES.len());
    assert!(fresh.closes.iter().all(|(_, count)| *count == 0));

    let id = connect(&mut alice, &mut bob, "bob").await;
    within!(alice.graph.send_data(id, TEXT, b"hello, bob".to_vec())).expect("send");
    wait_for(&mut bob.events, "the data", |event| {
        matches!(event, GraphEvent::IncomingData { .. })
    })
    .await;
    let open = within!(alice.graph.metrics()).expect("metrics");
    assert_eq!(open.direct_connections, 1);
    assert_eq!(open.opened_outgoing, 1);
    assert_eq!(open.opened_incoming, 0);
    assert!(open.bytes_sent > 0 && open.bytes_received > 0, "{open:?}");
    let bob_open = within!(bob.graph.metrics()).expect("metrics");
    assert_eq!(bob_open.direct_connections, 1);
    assert_eq!(bob_open.opened_incoming, 1);
    assert_eq!(bob_open.opened_outgoing, 0);

    within!(alice.graph.close_direct_connection(id)).expect("close");
    wait_connection(&mut bob.events, id, ConnectionStatus::Disconnected).await;

    // The link's end reached alice's graph before the close's answer came.
    let closed = within!(alice.graph.metrics()).expect("metrics");
    assert_eq!(closed.direct_connections, 0);
    assert_eq!(closed.closes_with(ResultCode::S_OK), 1);
    assert_eq!(closed.closes_with(ResultCode::PEER_E_TIMEOUT), 0);
    assert_eq!(closed.ended(LinkEnd::LocalClose), 1);
    assert_eq!(closed.ended(LinkEnd::RemoteClose), 0);
    assert!(
        closed.bytes_sent >= open.bytes_sent && closed.bytes_received >= open.bytes_received,
        "the ended link's bytes stay counted: {open:?} then {closed:?}"
    );
    let bob_closed = within!(bob.graph.metrics()).expect("metrics");
    assert_eq!(bob_closed.direct_connections, 0);
    assert_eq!(bob_closed.ended(LinkEnd::RemoteClose), 1);
    assert!(bob_closed.closes.iter().all(|(_, count)| *count == 0));
    assert!(bob_closed.bytes_received >= bob_open.bytes_received);
    assert!(bob_closed.bytes_received > 0);

    alice.graph.close().await.expect("close alice");
    assert_eq!(
        code(alice.graph.metrics().await),
        Err(ResultCode::PEER_E_INVALID_GRAPH)
    );
    bob.graph.close().await.expect("close bob");
}

/// A CONNECT naming another peer, and one without the graph's secret, are refused and
/// counted by reason at the refusing node; the connecting node counts a failed attempt.
#[tokio::test]
async fn refused_handshakes_are_counted_by_reason() {
    let members = GraphOptions::default().with_secret(secret("correct horse battery"));
    let mut alice = node_with("guarded", "alice", members.clone()).await;
    let bob = node_with("guarded", "bob", members).await;
    let mut guesser = node_with(
        "guarded",
        "guesser",
        GraphOptions::default().with_secret(secret("wrong horse battery")),
    )
    .await;

    let id = within!(alice.graph.open_direct_connection("carol", bob.address)).expect("open");
    wait_connection(&mut alice.events, id, ConnectionStatus::ConnectionFailed).await;
    let id = within!(guesser.graph.open_direct_connection("bob", bob.address)).expect("open");
    wait_connection(&mut guesser.events, id, ConnectionStatus::ConnectionFailed).await;

    let metrics = within!(bob.graph.metrics()).expect("metrics");
    assert_eq!(metrics.refused_for(Refusal::WrongPeer), 1, "{metrics:?}");
    assert_eq!(
        metrics.refused_for(Refusal::NotAuthorized),
        1,
        "{metrics:?}"
    );
    assert_eq!(metrics.refused_for(Refusal::TooManyHandshakes), 0);
    assert_eq!(metrics.refused.len(), Refusal::ALL.len());
    assert_eq!(metrics.opened_incoming, 0);
    let failed = within!(alice.graph.metrics()).expect("metrics");
    assert_eq!((failed.outgoing_failed, failed.opened_outgoing), (1, 0));
    let failed = within!(guesser.graph.metrics()).expect("metrics");
    assert_eq!(failed.outgoing_failed, 1);
}

/// A registration that takes one event and is never read loses the next: the graph counts
/// what its EventsLost reports.
#[tokio::test]
async fn events_a_reader_loses_are_counted() {
    let mut alice = node("lossy", "alice").await;
    let mut bob = node("lossy", "bob").await;
    let mut unread = within!(bob.graph.register_event_with(
        vec![EventRegistration::new(EventType::DirectConnection)],
        QueueLimits {
            events: 1,
            bytes: 1 << 20,
        },
    ))
    .expect("register");
    assert_eq!(
        within!(bob.graph.metrics()).expect("metrics").events_lost,
        0
    );

    let id = connect(&mut alice, &mut bob, "bob").await;
    within!(alice.graph.close_direct_connection(id)).expect("close");
    wait_connection(&mut bob.events, id, ConnectionStatus::Disconnected).await;

    // CONNECTED filled the queue; DISCONNECTED was lost.
    let metrics = within!(bob.graph.metrics()).expect("metrics");
    assert_eq!(metrics.events_lost, 1);
    assert!(matches!(
        unread.try_recv(),
        Some(GraphEvent::DirectConnection(change)) if change.status == ConnectionStatus::Connected
    ));
    assert_eq!(unread.try_recv(), Some(GraphEvent::EventsLost { count: 1 }));
    assert_eq!(
        within!(alice.graph.metrics()).expect("metrics").events_lost,
        0
    );
}
