//! Who may connect: graph secrets proved per link, allow-lists of keys, connection limits.

mod common;

use bytes::Bytes;
use common::*;
use peergraph::{
    ConnectionId, ConnectionStatus, DataType, GraphEvent, GraphId, GraphOptions, GraphSecret,
    NodeIdentity, PeerId, ResultCode,
};
use peergraph_engine::wire::{Connect, Message, RefuseReason, PROTOCOL_VERSION};
use peergraph_transport::{bind_endpoint, membership_proof, FrameReader, LinkOptions, ProofRole};

fn secret(text: &str) -> GraphSecret {
    GraphSecret::new(text.as_bytes().to_vec()).expect("long enough")
}

/// Opens from `from` to `to` and returns the CONNECTION_FAILED reason (its code; the
/// cause is checked where it matters).
async fn refused(from: &mut Node, to: &Node, to_peer: &str) -> ResultCode {
    refusal(from, to, to_peer).await.code()
}

/// Opens from `from` to `to` and returns the CONNECTION_FAILED reason with its cause.
async fn refusal(from: &mut Node, to: &Node, to_peer: &str) -> peergraph::PeerError {
    let id = from
        .graph
        .open_direct_connection(to_peer, to.address)
        .await
        .expect("open");
    let event = wait_connection(&mut from.events, id, ConnectionStatus::ConnectionFailed).await;
    match event {
        GraphEvent::DirectConnection(change) => change.failure_reason.expect("a reason"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn nodes_that_share_the_secret_connect() {
    let options = GraphOptions::default().with_secret(secret("correct horse battery"));
    let mut alice = node_with("club", "alice", options.clone()).await;
    let mut bob = node_with("club", "bob", options).await;
    let id = connect(&mut alice, &mut bob, "bob").await;
    alice
        .graph
        .send_data(id, DataType::from_u128(1), Bytes::from_static(b"member"))
        .await
        .expect("send");
    wait_for(&mut bob.events, "data", |e| {
        matches!(e, GraphEvent::IncomingData { .. })
    })
    .await;
}

#[tokio::test]
async fn a_node_without_the_secret_is_refused_and_sees_no_data() {
    let members = GraphOptions::default().with_secret(secret("correct horse battery"));
    let mut bob = node_with("club", "bob", members.clone()).await;
    let mut outsider = node("club", "eve").await;
    assert_eq!(
        refused(&mut outsider, &bob, "bob").await,
        ResultCode::PEER_E_NOT_AUTHORIZED
    );
    let mut guesser = node_with(
        "club",
        "mallory",
        GraphOptions::default().with_secret(secret("wrong horse battery")),
    )
    .await;
    let wrong_secret = refusal(&mut guesser, &bob, "bob").await;
    assert_eq!(wrong_secret.code(), ResultCode::PEER_E_NOT_AUTHORIZED);
    assert!(
        wrong_secret.to_string().contains("secrets differ"),
        "the reason says why: {wrong_secret}"
    );
    // A member connecting to a node that does not know the secret refuses it in turn.
    let mut member = node_with("club", "carol", members).await;
    assert_eq!(
        refused(&mut member, &outsider, "eve").await,
        ResultCode::PEER_E_NOT_AUTHORIZED
    );
    // Bob never reported a connection from the refused nodes.
    assert!(bob
        .graph
        .enum_connections(peergraph::ConnectionFlags::DIRECT)
        .await
        .expect("enum")
        .is_empty());
    while let Some(event) = bob.events.try_recv() {
        assert!(
            !matches!(
                event,
                GraphEvent::DirectConnection(_) | GraphEvent::IncomingData { .. }
            ),
            "bob saw {event:?}"
        );
    }
}

#[tokio::test]
async fn a_proof_from_one_link_is_refused_on_another() {
    let shared = secret("correct horse battery");
    let bob = node_with(
        "club",
        "bob",
        GraphOptions::default().with_secret(shared.clone()),
    )
    .await;
    let identity = NodeIdentity::generate().expect("identity");
    let endpoint = bind_endpoint(
        "127.0.0.1:0".parse().expect("address"),
        &identity,
        &LinkOptions::default(),
        false,
    )
    .expect("endpoint");
    let id = ConnectionId::new(4242).expect("nonzero");
    let handshake = |proof: Bytes| Connect {
        version: PROTOCOL_VERSION,
        direct: true,
        connection_id: id,
        graph_id: GraphId::new("club").expect("graph"),
        source_peer_id: PeerId::new("replayer").expect("peer"),
        target_peer_id: PeerId::new("bob").expect("peer"),
        proof,
    };
    // A valid proof, computed on a first link (as an eavesdropper might learn it)...
    let first = quic_connect(&endpoint, bob.address).await.expect("TLS");
    let proof = membership_proof(&first, &shared, ProofRole::Connect, id).expect("proof");
    first.close(0u32.into(), b"");
    // ...is worthless on a second link: it is bound to the first link's TLS session.
    let second = quic_connect(&endpoint, bob.address).await.expect("TLS");
    let (mut send, recv) = second.open_bi().await.expect("stream");
    send.write_all(&Message::Connect(handshake(proof)).to_bytes())
        .await
        .expect("CONNECT");
    let answer = next_frame(&mut FrameReader::new(recv)).await;
    assert!(
        matches!(
            answer,
            Ok(Some(Message::Refuse(RefuseReason::NotAuthorized)))
        ),
        "{answer:?}"
    );
}

#[tokio::test]
async fn the_allow_list_admits_listed_keys_for_their_peer_id_only() {
    let alice_identity = NodeIdentity::generate().expect("identity");
    let bob_identity = NodeIdentity::generate().expect("identity");
    let peer = |name: &str| PeerId::new(name).expect("peer");
    let bob_options = GraphOptions::default()
        .with_identity(bob_identity.clone())
        .with_allowed_peer(alice_identity.peer_key(), peer("alice"));
    let mut bob = node_with("vault", "bob", bob_options).await;
    // Listed key, right peer id: admitted.
    let alice_options = GraphOptions::default()
        .with_identity(alice_identity.clone())
        .with_allowed_peer(bob_identity.peer_key(), peer("bob"));
    let mut alice = node_with("vault", "alice", alice_options).await;
    connect(&mut alice, &mut bob, "bob").await;
    // An unlisted key, even claiming to be alice: not authorized.
    let mut impostor = node("vault", "alice-too").await;
    assert_eq!(
        refused(&mut impostor, &bob, "bob").await,
        ResultCode::PEER_E_NOT_AUTHORIZED
    );
    // Alice's key under another peer id: the key does not match the claim.
    let mut masked = node_with(
        "vault",
        "not-alice",
        GraphOptions::default().with_identity(alice_identity),
    )
    .await;
    assert_eq!(
        refused(&mut masked, &bob, "bob").await,
        ResultCode::PEER_E_CONNECTION_NOT_AUTHENTICATED
    );
    // The connecting side checks too: a "bob" with another key is not the bob alice lists.
    let mut fake_bob = node("vault", "bob").await;
    assert_eq!(
        refused(&mut alice, &fake_bob, "bob").await,
        ResultCode::PEER_E_NOT_AUTHORIZED
    );
    assert!(fake_bob
        .events
        .try_recv()
        .is_none_or(|e| !matches!(e, GraphEvent::IncomingData { .. })));
}

#[tokio::test]
async fn connections_over_the_limits_are_refused_and_the_others_keep_working() {
    let limited = GraphOptions::default().with_connection_limits(3, 2);
    let mut bob = node_with("busy", "bob", limited).await;
    let mut alice = node("busy", "alice").await;
    let first = connect(&mut alice, &mut bob, "bob").await;
    connect(&mut alice, &mut bob, "bob").await;
    assert_eq!(
        refused(&mut alice, &bob, "bob").await,
        ResultCode::PEER_E_CONNECTION_REFUSED,
        "a third link from the same node"
    );
    let mut carol = node("busy", "carol").await;
    connect(&mut carol, &mut bob, "bob").await;
    let mut dave = node("busy", "dave").await;
    assert_eq!(
        refused(&mut dave, &bob, "bob").await,
        ResultCode::PEER_E_CONNECTION_REFUSED,
        "a fourth link to the graph"
    );
    alice
        .graph
        .send_data(first, DataType::from_u128(1), Bytes::from_static(b"ok"))
        .await
        .expect("send");
    wait_for(
        &mut bob.events,
        "data on an existing link",
        |e| matches!(e, GraphEvent::IncomingData { connection_id, .. } if *connection_id == first),
    )
    .await;
}

#[tokio::test]
async fn half_open_handshakes_are_bounded() {
    let options = GraphOptions {
        max_pending_handshakes: 2,
        ..GraphOptions::default()
    };
    let mut bob = node_with("halfopen", "bob", options).await;
    let mut alice = node("halfopen", "alice").await;
    let existing = connect(&mut alice, &mut bob, "bob").await;
    // Two links that finish TLS and then say nothing hold both handshake slots.
    let identity = NodeIdentity::generate().expect("identity");
    let rogue = bind_endpoint(
        "127.0.0.1:0".parse().expect("address"),
        &identity,
        &LinkOptions::default(),
        false,
    )
    .expect("endpoint");
    let mut silent = Vec::new();
    for _ in 0..2 {
        let connection = quic_connect(&rogue, bob.address)
            .await
            .expect("TLS completes");
        silent.push(connection);
    }
    let counters = bob.graph.counters().await.expect("counters");
    assert_eq!(counters.pending_incoming, 2);
    // A third link is refused at once, and so is a real node's connection.
    let third = quic_connect(&rogue, bob.address).await;
    assert!(third.is_err(), "a third half-open link was accepted");
    let mut carol = node("halfopen", "carol").await;
    assert_eq!(
        refused(&mut carol, &bob, "bob").await,
        ResultCode::PEER_E_CONNECTION_REFUSED
    );
    // The existing connection keeps working meanwhile.
    alice
        .graph
        .send_data(
            existing,
            DataType::from_u128(1),
            Bytes::from_static(b"still"),
        )
        .await
        .expect("send");
    wait_for(&mut bob.events, "data on the existing link", |e| {
        matches!(e, GraphEvent::IncomingData { connection_id, .. } if *connection_id == existing)
    })
    .await;
    // Once the silent links go away, the slots are free again.
    for connection in &silent {
        connection.close(0u32.into(), b"bye");
    }
    let counters = bob.graph.clone();
    eventually_async(|| {
        let graph = counters.clone();
        async move {
            graph
                .counters()
                .await
                .map(|c| c.pending_incoming == 0)
                .unwrap_or(false)
        }
    })
    .await;
    connect(&mut carol, &mut bob, "bob").await;
}

/// Polls an async condition until true, bounded by `EVENT_TIMEOUT`.
async fn eventually_async<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
