//! Endpoint renewal: a graph that has held `renew_endpoints_after` links renews its
//! endpoints once they have all gone, keeps its address, and serves links both ways after.

mod common;

use bytes::Bytes;
use common::*;
use peergraph::{ConnectionStatus, DataType, GraphEvent, GraphOptions};

/// When a wait of this test gives up.
fn deadline() -> std::time::Instant {
    std::time::Instant::now() + EVENT_TIMEOUT
}

/// Sends `text` on `id` from `from` and waits for it at `to`.
async fn exchange(from: &Node, to: &mut Node, id: peergraph::ConnectionId, text: &'static str) {
    let data_type = DataType::from_u128(7);
    from.graph
        .send_data(id, data_type, Bytes::from_static(text.as_bytes()))
        .await
        .expect("send");
    wait_for(&mut to.events, text, |event| {
        matches!(event, GraphEvent::IncomingData { connection_id, data, .. }
            if *connection_id == id && data.as_ref() == text.as_bytes())
    })
    .await;
}

/// Closes `id` from `closer` (S_OK expected) and waits until `other` reports it gone.
async fn close(closer: &Node, other: &mut Node, id: peergraph::ConnectionId) {
    closer
        .graph
        .close_direct_connection(id)
        .await
        .expect("close");
    wait_connection(&mut other.events, id, ConnectionStatus::Disconnected).await;
}

#[tokio::test]
async fn endpoints_are_renewed_after_a_peak_and_keep_serving() {
    let options = GraphOptions::default().with_renew_endpoints_after(3);
    let mut alice = node_with("renew", "alice", options.clone()).await;
    let mut bob = node_with("renew", "bob", options).await;

    // A peak of three links at once, each carrying a message, then all closed.
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(connect(&mut alice, &mut bob, "bob").await);
    }
    for &id in &ids {
        exchange(&alice, &mut bob, id, "before").await;
    }
    for &id in &ids {
        close(&alice, &mut bob, id).await;
    }
    for node in [&alice, &bob] {
        let counters =
            counters_until(node, "renewal", deadline(), |c| c.endpoint_renewals == 1).await;
        assert_eq!(counters.connections, 0);
        assert_eq!(counters.quic_connections, 0);
    }

    // Same address, and links work both ways through the renewed endpoints.
    let own = bob.graph.node_info(None).await.expect("node info");
    assert_eq!(own.addresses, vec![bob.address]);
    let to_bob = connect(&mut alice, &mut bob, "bob").await;
    exchange(&alice, &mut bob, to_bob, "after, alice to bob").await;
    exchange(&bob, &mut alice, to_bob, "after, bob to alice").await;
    let to_alice = connect(&mut bob, &mut alice, "alice").await;
    exchange(&bob, &mut alice, to_alice, "after, on bob's link").await;
    for id in [to_bob, to_alice] {
        close(&bob, &mut alice, id).await;
    }

    // Two links is below the peak of three: no second renewal.
    for node in [&alice, &bob] {
        let counters =
            counters_until(node, "links gone", deadline(), |c| c.quic_connections == 0).await;
        assert_eq!(counters.endpoint_renewals, 1);
    }
}

#[tokio::test]
async fn links_keep_coming_through_while_endpoints_are_renewed() {
    // Renewed whenever the graph goes idle, so that connection attempts meet renewals at
    // every stage: odd rounds connect while the last renewal may still be pending, even
    // rounds once it has happened.
    let options = GraphOptions::default().with_renew_endpoints_after(1);
    let mut alice = node_with("renew", "alice", options.clone()).await;
    let mut bob = node_with("renew", "bob", options).await;
    let mut renewed = 0;
    for round in 0..12 {
        let id = connect(&mut alice, &mut bob, "bob").await;
        exchange(&alice, &mut bob, id, "ping").await;
        exchange(&bob, &mut alice, id, "pong").await;
        close(&alice, &mut bob, id).await;
        if round % 2 == 1 {
            renewed += 1;
            for node in [&alice, &bob] {
                counters_until(node, "renewal", deadline(), |c| {
                    c.endpoint_renewals >= renewed
                })
                .await;
            }
        }
    }
    for node in [&alice, &bob] {
        let counters = node.graph.counters().await.expect("counters");
        assert!(counters.endpoint_renewals >= 6, "{counters:?}");
        assert_eq!(counters.connections, 0);
    }
}
