//! Links that end badly: a peer that stops answering a close, a peer that breaks the
//! protocol, a peer that vanishes. Each ends only its own link, reported once.

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use peergraph::{
    ConnectionId, ConnectionStatus, DataType, GraphEvent, GraphId, GraphOptions, PeerId, ResultCode,
};
use peergraph_engine::graph_core::MAX_LINK_WINDOW;
use peergraph_engine::wire::{close_code, Message, Welcome};
use peergraph_transport::{bind_endpoint, FrameReader, LinkOptions, NodeIdentity};

/// A hand-driven peer on raw quinn: accepts one link, answers CONNECT with WELCOME, and
/// then does only what the test tells it to.
struct RawPeer {
    endpoint: quinn::Endpoint,
    address: SocketAddr,
}

struct RawLink {
    connection: quinn::Connection,
    send: quinn::SendStream,
    reader: FrameReader,
}

impl RawPeer {
    fn new() -> RawPeer {
        let identity = NodeIdentity::generate().expect("identity");
        let endpoint = bind_endpoint(
            "127.0.0.1:0".parse().expect("address"),
            &identity,
            &LinkOptions::default(),
            true,
        )
        .expect("endpoint");
        let address = endpoint.local_addr().expect("address");
        RawPeer { endpoint, address }
    }

    async fn accept_and_welcome(&self, graph_id: &str, peer_id: &str) -> RawLink {
        let link = async {
            let connection = self.endpoint.accept().await?.await.ok()?;
            // As a node with one link does once it has adopted it: the link's share of
            // the receive budget is quinn's full window.
            connection.set_receive_window(quinn::VarInt::from_u64(MAX_LINK_WINDOW).ok()?);
            let (mut send, recv) = connection.accept_bi().await.ok()?;
            let mut reader = FrameReader::new(recv);
            let Ok(Some(Message::Connect(connect))) = reader.read().await else {
                return None;
            };
            let welcome = Message::Welcome(Welcome {
                connection_id: connect.connection_id,
                graph_id: GraphId::new(graph_id).ok()?,
                peer_id: PeerId::new(peer_id).ok()?,
                proof: Bytes::new(),
            });
            send.write_all(&welcome.to_bytes()).await.ok()?;
            Some(RawLink {
                connection,
                send,
                reader,
            })
        };
        tokio::time::timeout(EVENT_TIMEOUT, link)
            .await
            .expect("raw peer timed out")
            .expect("raw peer handshake")
    }
}

/// Opens a direct connection from `node` to a new [`RawPeer`] that calls itself `peer_id`
/// in graph `graph_id`, and waits until `node` reports it CONNECTED.
async fn connect_raw(
    node: &mut Node,
    graph_id: &str,
    peer_id: &str,
) -> (RawPeer, ConnectionId, RawLink) {
    let raw = RawPeer::new();
    let id = node
        .graph
        .open_direct_connection(peer_id, raw.address)
        .await
        .expect("open");
    let link = raw.accept_and_welcome(graph_id, peer_id).await;
    wait_connection(&mut node.events, id, ConnectionStatus::Connected).await;
    (raw, id, link)
}

#[tokio::test]
async fn close_times_out_when_the_peer_never_confirms() {
    let options = GraphOptions::default().with_close_timeout(Duration::from_millis(300));
    let mut alice = node_with("quiet", "alice", options).await;
    let (_raw, id, link) = connect_raw(&mut alice, "quiet", "mute").await;
    assert_eq!(
        alice
            .graph
            .close_direct_connection(id)
            .await
            .map_err(|e| e.code()),
        Err(ResultCode::PEER_E_TIMEOUT)
    );
    // The link is gone either way: the peer hears the CLOSE_TIMEOUT code.
    expect_closed_with(&link.connection, close_code::CLOSE_TIMEOUT).await;
    wait_connection(&mut alice.events, id, ConnectionStatus::Disconnected).await;
    assert_eq!(
        alice
            .graph
            .close_direct_connection(id)
            .await
            .map_err(|e| e.code()),
        Err(ResultCode::PEER_E_CONNECTION_NOT_FOUND)
    );
}

/// How a graph goes away while one of its closes waits for the peer.
#[derive(Clone, Copy, Debug)]
enum GraphGoes {
    Closed,
    ShutDown,
}

/// A close waits for a peer that never confirms, and the graph closes (or the engine shuts
/// down) meanwhile: the connection is gone without the peer's confirmation, so the close
/// answers `PEER_E_INVALID_GRAPH`, as documented, and not S_OK. (The closing connection has
/// left the table, so the graph's Leave never reached it: its link ended with the graph's
/// endpoint, which the connection actor took for a close of its own, S_OK.)
async fn close_cut_short_by_the_graph(goes: GraphGoes) {
    let mut alice = node("cut", "alice").await;
    let (_raw, id, mut link) = connect_raw(&mut alice, "cut", "mute").await;
    let closing = tokio::spawn({
        let graph = alice.graph.clone();
        async move { graph.close_direct_connection(id).await }
    });
    let disconnect = next_frame(&mut link.reader).await;
    assert!(
        matches!(disconnect, Ok(Some(Message::Disconnect(_)))),
        "{disconnect:?}"
    );
    match goes {
        GraphGoes::Closed => within!(alice.graph.close()).expect("close the graph"),
        GraphGoes::ShutDown => within!(alice.engine.shutdown()).expect("shutdown"),
    }
    let answer = within!(closing).expect("the close task");
    assert_eq!(
        answer.map_err(|e| e.code()),
        Err(ResultCode::PEER_E_INVALID_GRAPH),
        "{goes:?}"
    );
    expect_closed_with(&link.connection, close_code::LEAVING).await;
    assert_eq!(alice.engine.connection_actor_count(), 0);
}

#[tokio::test]
async fn a_close_cut_short_by_closing_the_graph_answers_invalid_graph() {
    close_cut_short_by_the_graph(GraphGoes::Closed).await;
}

#[tokio::test]
async fn a_close_cut_short_by_the_last_shutdown_answers_invalid_graph() {
    close_cut_short_by_the_graph(GraphGoes::ShutDown).await;
}

#[tokio::test]
async fn a_protocol_error_ends_only_that_link() {
    let mut alice = node("strict", "alice").await;
    let mut bob = node("strict", "bob").await;
    let healthy = connect(&mut alice, &mut bob, "bob").await;
    let (_raw, bad, mut link) = connect_raw(&mut alice, "strict", "mallory").await;
    // An unknown frame type.
    link.send
        .write_all(&[0x7f, 0, 0, 0, 0])
        .await
        .expect("write garbage");
    expect_closed_with(&link.connection, close_code::PROTOCOL_ERROR).await;
    wait_connection(&mut alice.events, bad, ConnectionStatus::Disconnected).await;
    alice
        .graph
        .send_data(healthy, DataType::from_u128(3), Bytes::from_static(b"fine"))
        .await
        .expect("the healthy link still takes data");
    wait_for(&mut bob.events, "data after the bad link ended", |e| {
        matches!(e, GraphEvent::IncomingData { connection_id, .. } if *connection_id == healthy)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_peer_is_reported_after_the_idle_timeout() {
    let options = GraphOptions::default().with_idle_timeout(Duration::from_secs(1));
    let mut alice = node_with("gone", "alice", options.clone()).await;
    let mut bob = node_with("gone", "bob", options).await;
    let relay = Relay::start(bob.address, Impairment::NONE, 1).await;
    let id = connect_via(&mut alice, &mut bob, "bob", relay.address).await;
    relay.forwarding.store(false, Ordering::Relaxed);
    let started = std::time::Instant::now();
    wait_connection(&mut alice.events, id, ConnectionStatus::Disconnected).await;
    wait_connection(&mut bob.events, id, ConnectionStatus::Disconnected).await;
    // Reported by the idle timeout, not the 20 s test bound (a bound, not a speed test).
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        alice.graph.counters().await.expect("counters").connections,
        0
    );
    assert_eq!(bob.graph.counters().await.expect("counters").connections, 0);
}

#[tokio::test]
async fn a_peer_that_does_not_read_makes_the_sender_wait() {
    let mut alice = node("slow", "alice").await;
    let (_raw, id, _link) = connect_raw(&mut alice, "slow", "sloth").await;
    // The peer never reads: QUIC flow control stops the writer, the outbox fills, and then
    // SendData waits instead of queueing more.
    let chunk = Bytes::from(vec![7u8; 1024 * 1024]);
    let mut accepted = 0usize;
    let blocked = loop {
        assert!(
            accepted < 64 * 1024 * 1024,
            "64 MiB accepted with no reader"
        );
        let send = alice
            .graph
            .send_data(id, DataType::from_u128(4), chunk.clone());
        match tokio::time::timeout(Duration::from_millis(500), send).await {
            Ok(result) => {
                result.expect("send");
                accepted += chunk.len();
            }
            Err(_) => break accepted,
        }
    };
    // Bounded by the peer's stream window, the outbox and one batch in the writer.
    assert!(
        blocked <= 16 * 1024 * 1024,
        "{blocked} bytes accepted before waiting"
    );
    assert!(
        blocked >= peergraph::OUTBOX_BYTES,
        "the outbox itself was usable"
    );
}
