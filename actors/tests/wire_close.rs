//! The close of `docs/PROTOCOL.md` §3.4 and §6 as a second implementation sees it on the
//! wire: a raw quinn peer that follows the document, against a node. It checks who sends
//! the QUIC CONNECTION_CLOSE with APP_DISCONNECT (each node, once its own FIN is
//! acknowledged, without waiting for the peer's close), and what a STOP_SENDING on the
//! control stream does (nothing until the node next writes, then PROTOCOL_ERROR).

#[macro_use]
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use peergraph::{ConnectionId, ConnectionStatus, DataType, GraphEvent, GraphId, PeerId};
use peergraph_engine::wire::{close_code, Connect, DisconnectReason, Message, PROTOCOL_VERSION};
use peergraph_transport::{bind_endpoint, FrameReader, LinkOptions, NodeIdentity};

/// The raw peer: its endpoint (kept alive), its link, and the two halves of its control
/// stream after CONNECT / WELCOME.
struct RawPeer {
    _endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    send: quinn::SendStream,
    reader: FrameReader,
}

/// Connects a raw peer `alice` to `node` (peer `bob`) as connection `id`, and waits until
/// the node reports it connected.
async fn raw_peer(node: &mut Node, graph: &str, id: u64) -> RawPeer {
    let endpoint = bind_endpoint(
        "127.0.0.1:0".parse().expect("address"),
        &NodeIdentity::generate().expect("identity"),
        &LinkOptions::default(),
        false,
    )
    .expect("endpoint");
    let connection = quic_connect(&endpoint, node.address)
        .await
        .expect("TLS handshake");
    let (mut send, recv) = within!(connection.open_bi()).expect("stream");
    let connect = Message::Connect(Connect {
        version: PROTOCOL_VERSION,
        direct: true,
        connection_id: ConnectionId::new(id).expect("nonzero"),
        graph_id: GraphId::new(graph).expect("graph"),
        source_peer_id: PeerId::new("alice").expect("peer"),
        target_peer_id: PeerId::new("bob").expect("peer"),
        proof: Bytes::new(),
    });
    within!(send.write_all(&connect.to_bytes())).expect("CONNECT");
    let mut reader = FrameReader::new(recv);
    let welcome = next_frame(&mut reader).await;
    assert!(
        matches!(welcome, Ok(Some(Message::Welcome(_)))),
        "{welcome:?}"
    );
    let id = ConnectionId::new(id).expect("nonzero");
    wait_connection(&mut node.events, id, ConnectionStatus::Connected).await;
    RawPeer {
        _endpoint: endpoint,
        connection,
        send,
        reader,
    }
}

fn disconnect() -> Bytes {
    Message::Disconnect(DisconnectReason::AppDisconnect).to_bytes()
}

/// §6 with a raw alice: CONNECT, WELCOME, DATA, alice's DISCONNECT, bob's DISCONNECT and
/// FIN, alice's FIN. alice then only waits: bob closes QUIC with APP_DISCONNECT once alice
/// has acknowledged his FIN and he has read hers.
#[tokio::test]
async fn the_node_answering_a_close_closes_quic_after_both_fins() {
    let mut bob = node("chat", "bob").await;
    let mut alice = raw_peer(&mut bob, "chat", 0x0102_0304_0506_0708).await;
    let id = ConnectionId::new(0x0102_0304_0506_0708).expect("nonzero");
    let data = Message::Data {
        data_type: DataType::from_u128(0xc0ffee),
        payload: Bytes::from_static(b"hello"),
    };
    within!(alice.send.write_all(&data.to_bytes())).expect("DATA");
    wait_for(
        &mut bob.events,
        "hello",
        |event| matches!(event, GraphEvent::IncomingData { data, .. } if data[..] == b"hello"[..]),
    )
    .await;
    within!(alice.send.write_all(&disconnect())).expect("DISCONNECT");
    let answer = next_frame(&mut alice.reader).await;
    assert!(
        matches!(answer, Ok(Some(Message::Disconnect(_)))),
        "{answer:?}"
    );
    let fin = next_frame(&mut alice.reader).await;
    assert!(matches!(fin, Ok(None)), "bob's FIN: {fin:?}");
    alice.send.finish().expect("alice's FIN");
    expect_closed_with(&alice.connection, close_code::APP_DISCONNECT).await;
    wait_connection(&mut bob.events, id, ConnectionStatus::Disconnected).await;
}

/// The mirror image: bob's application closes, the raw alice answers as §3.4 says and
/// never closes QUIC herself. bob's close succeeds, and bob closes QUIC with
/// APP_DISCONNECT once alice has acknowledged his FIN.
#[tokio::test]
async fn the_closing_node_closes_quic_after_both_fins() {
    let mut bob = node("chat", "bob").await;
    let mut alice = raw_peer(&mut bob, "chat", 7).await;
    let id = ConnectionId::new(7).expect("nonzero");
    let graph = bob.graph.clone();
    let close = tokio::spawn(async move { graph.close_direct_connection(id).await });
    let first = next_frame(&mut alice.reader).await;
    assert!(
        matches!(first, Ok(Some(Message::Disconnect(_)))),
        "bob's DISCONNECT: {first:?}"
    );
    within!(alice.send.write_all(&disconnect())).expect("DISCONNECT");
    alice.send.finish().expect("alice's FIN");
    let fin = next_frame(&mut alice.reader).await;
    assert!(matches!(fin, Ok(None)), "bob's FIN: {fin:?}");
    let reply = within!(close).expect("close task");
    assert_eq!(code(reply), Ok(()));
    expect_closed_with(&alice.connection, close_code::APP_DISCONNECT).await;
}

/// A STOP_SENDING on the node's half of the control stream changes nothing until the
/// node next writes on it; that write fails, and the node closes with PROTOCOL_ERROR.
#[tokio::test]
async fn stop_sending_is_a_protocol_error_at_the_next_write() {
    let mut bob = node("chat", "bob").await;
    let mut alice = raw_peer(&mut bob, "chat", 8).await;
    let id = ConnectionId::new(8).expect("nonzero");
    alice.reader.stop(0);
    // Long enough for the STOP_SENDING to arrive on loopback many times over.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        alice.connection.close_reason().is_none(),
        "the node acted on STOP_SENDING before writing"
    );
    within!(bob
        .graph
        .send_data(id, DataType::from_u128(1), Bytes::from_static(b"x")))
    .expect("SendData queues");
    expect_closed_with(&alice.connection, close_code::PROTOCOL_ERROR).await;
    wait_connection(&mut bob.events, id, ConnectionStatus::Disconnected).await;
}
