//! Opening a direct connection pinned to a key (a ticket's): the node must present that
//! key, or the attempt ends before CONNECT with PEER_E_CONNECTION_NOT_AUTHENTICATED.

mod common;

use bytes::Bytes;
use common::*;
use peergraph::{
    ConnectionFlags, ConnectionStatus, DataType, GraphEvent, GraphOptions, NodeIdentity, PeerId,
    ResultCode, Ticket,
};

/// A node of graph `pins` with an identity whose key the test knows.
async fn keyed(peer: &str) -> (Node, NodeIdentity) {
    let identity = NodeIdentity::generate().expect("identity");
    let options = GraphOptions::default().with_identity(identity.clone());
    (node_with("pins", peer, options).await, identity)
}

#[tokio::test]
async fn a_pinned_open_reaches_the_node_with_that_key() {
    let mut alice = node("pins", "alice").await;
    let (mut bob, bob_identity) = keyed("bob").await;
    // The key goes through a ticket's text and back, as a user would pass it.
    let ticket = Ticket::new(
        PeerId::new("bob").expect("peer id"),
        bob_identity.peer_key(),
        vec![bob.address],
    )
    .expect("ticket");
    let ticket: Ticket = ticket.to_string().parse().expect("parse");
    let id = alice
        .graph
        .open_direct_connection_pinned("bob", ticket.addresses()[0], *ticket.key())
        .await
        .expect("open");
    let connected = wait_connection(&mut alice.events, id, ConnectionStatus::Connected).await;
    match connected {
        GraphEvent::DirectConnection(change) => {
            assert_eq!(change.node_id, Some(ticket.node_id()));
        }
        other => panic!("{other:?}"),
    }
    wait_connection(&mut bob.events, id, ConnectionStatus::Connected).await;
    alice
        .graph
        .send_data(id, DataType::from_u128(1), Bytes::from_static(b"pinned"))
        .await
        .expect("send");
    wait_for(
        &mut bob.events,
        "data",
        |e| matches!(e, GraphEvent::IncomingData { connection_id, .. } if *connection_id == id),
    )
    .await;
}

#[tokio::test]
async fn a_node_with_another_key_is_left_before_connect() {
    let mut alice = node("pins", "alice").await;
    let (mut bob, _) = keyed("bob").await;
    // Carol's key, at bob's address: someone else answers there.
    let carol_key = NodeIdentity::generate().expect("identity").peer_key();
    let id = alice
        .graph
        .open_direct_connection_pinned("bob", bob.address, carol_key)
        .await
        .expect("open");
    let failed = wait_connection(&mut alice.events, id, ConnectionStatus::ConnectionFailed).await;
    let GraphEvent::DirectConnection(change) = failed else {
        panic!("{failed:?}");
    };
    let reason = change.failure_reason.expect("a reason");
    assert_eq!(
        reason.code(),
        ResultCode::PEER_E_CONNECTION_NOT_AUTHENTICATED
    );
    let cause = reason.to_string();
    assert!(cause.contains("node key mismatch"), "{cause}");
    assert!(cause.contains(&format!("expected {carol_key}")), "{cause}");
    // Bob never saw a CONNECT, so never a connection; alice holds none either.
    assert!(bob
        .graph
        .enum_connections(ConnectionFlags::DIRECT)
        .await
        .expect("enum")
        .is_empty());
    assert!(alice
        .graph
        .enum_connections(ConnectionFlags::DIRECT)
        .await
        .expect("enum")
        .is_empty());
    while let Some(event) = bob.events.try_recv() {
        assert!(
            !matches!(event, GraphEvent::DirectConnection(_)),
            "bob saw {event:?}"
        );
    }
}

#[tokio::test]
async fn an_allow_list_off_the_key_explains_itself_on_both_sides() {
    let (alice, alice_identity) = keyed("alice").await;
    let carol_identity = NodeIdentity::generate().expect("identity");
    // Bob admits carol only.
    let bob_options = GraphOptions::default().with_allowed_peer(
        carol_identity.peer_key(),
        PeerId::new("carol").expect("peer"),
    );
    let bob = node_with("pins", "bob", bob_options).await;
    let mut alice = alice;
    let id = alice
        .graph
        .open_direct_connection("bob", bob.address)
        .await
        .expect("open");
    let failed = wait_connection(&mut alice.events, id, ConnectionStatus::ConnectionFailed).await;
    let GraphEvent::DirectConnection(change) = failed else {
        panic!("{failed:?}");
    };
    let reason = change.failure_reason.expect("a reason");
    assert_eq!(reason.code(), ResultCode::PEER_E_NOT_AUTHORIZED);
    assert!(reason.to_string().contains("allow-list"), "{reason}");
    // Carol lists alice's key only; bob (another key) is not hers to connect to.
    let carol_options = GraphOptions::default()
        .with_identity(carol_identity)
        .with_allowed_peer(
            alice_identity.peer_key(),
            PeerId::new("alice").expect("peer"),
        );
    let mut carol = node_with("pins", "carol", carol_options).await;
    let id = carol
        .graph
        .open_direct_connection("bob", bob.address)
        .await
        .expect("open");
    let failed = wait_connection(&mut carol.events, id, ConnectionStatus::ConnectionFailed).await;
    let GraphEvent::DirectConnection(change) = failed else {
        panic!("{failed:?}");
    };
    let reason = change.failure_reason.expect("a reason");
    assert_eq!(reason.code(), ResultCode::PEER_E_NOT_AUTHORIZED);
    assert!(
        reason.to_string().contains("node key not allowed"),
        "{reason}"
    );
}
