//! Malformed traffic from a raw quinn client that completes the TLS handshake with a valid
//! certificate. Each case closes that link with PROTOCOL_ERROR; the graph keeps serving a
//! well-behaved peer at the same time.
//! Also: a peer that reuses the id of a link still closing cannot take its new link down.

#[macro_use]
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use peergraph::{
    ConnectionFlags, ConnectionId, ConnectionStatus, DataType, GraphEvent, GraphId, GraphOptions,
    PeerId, ResultCode,
};
use peergraph_engine::wire::{close_code, Connect, Message, PROTOCOL_VERSION};
use peergraph_transport::{bind_endpoint, FrameReader, LinkOptions, NodeIdentity};

struct Rogue {
    _endpoint: quinn::Endpoint,
    connection: quinn::Connection,
}

async fn rogue(target: &Node) -> Rogue {
    let identity = NodeIdentity::generate().expect("identity");
    let endpoint = bind_endpoint(
        "127.0.0.1:0".parse().expect("address"),
        &identity,
        &LinkOptions::default(),
        false,
    )
    .expect("endpoint");
    let connection = quic_connect(&endpoint, target.address)
        .await
        .expect("TLS handshake with a valid certificate succeeds");
    Rogue {
        _endpoint: endpoint,
        connection,
    }
}

fn connect_frame(graph: &str, target: &str, id: u64) -> Bytes {
    Message::Connect(Connect {
        version: PROTOCOL_VERSION,
        direct: true,
        connection_id: ConnectionId::new(id).expect("nonzero"),
        graph_id: GraphId::new(graph).expect("graph"),
        source_peer_id: PeerId::new("mallory").expect("peer"),
        target_peer_id: PeerId::new(target).expect("peer"),
        proof: Bytes::new(),
    })
    .to_bytes()
}

async fn expect_protocol_error(rogue: &Rogue) {
    expect_closed_with(&rogue.connection, close_code::PROTOCOL_ERROR).await;
}

/// Sends bytes on a fresh control stream, optionally finishing it. Both halves are
/// returned so that neither is stopped by being dropped.
async fn send_raw(
    rogue: &Rogue,
    bytes: &[u8],
    finish: bool,
) -> (quinn::SendStream, quinn::RecvStream) {
    let (mut send, recv) = rogue.connection.open_bi().await.expect("stream");
    send.write_all(bytes).await.expect("write");
    if finish {
        send.finish().expect("finish");
    }
    (send, recv)
}

async fn good_peer_still_served(alice: &Node, bob: &mut Node, id: ConnectionId, n: u8) {
    alice
        .graph
        .send_data(id, DataType::from_u128(9), Bytes::from(vec![n]))
        .await
        .expect("send");
    wait_for(&mut bob.events, "data from the good peer", |e| {
        matches!(e, GraphEvent::IncomingData { connection_id, data, .. }
            if *connection_id == id && data[..] == [n])
    })
    .await;
}

#[tokio::test]
async fn malformed_traffic_closes_only_the_offending_link() {
    let mut alice = node("guarded", "alice").await;
    let mut bob = node("guarded", "bob").await;
    let good = connect(&mut alice, &mut bob, "bob").await;

    let mut garbage = vec![0xde, 0xad, 0xbe, 0xef];
    garbage.extend_from_slice(&[0x5a; 60]);
    let too_long = [0x05, 0xff, 0xff, 0xff, 0xff];
    let mut truncated = connect_frame("guarded", "bob", 1).to_vec();
    truncated.truncate(12);
    let data_first = Message::Data {
        data_type: DataType::from_u128(1),
        payload: Bytes::from_static(b"too early"),
    }
    .to_bytes();
    let cases: [(&str, &[u8], bool); 5] = [
        ("garbage bytes", &garbage, false),
        ("unknown frame type", &[0x7f, 0, 0, 0, 0], false),
        ("frame length past the limit", &too_long, false),
        ("truncated frame, then end of stream", &truncated, true),
        ("DATA before CONNECT", &data_first, false),
    ];
    for (n, (case, bytes, finish)) in cases.into_iter().enumerate() {
        let rogue = rogue(&bob).await;
        let _send = send_raw(&rogue, bytes, finish).await;
        expect_protocol_error(&rogue).await;
        good_peer_still_served(&alice, &mut bob, good, n as u8).await;
        eprintln!("ok: {case}");
    }
}

#[tokio::test]
async fn a_second_connect_on_a_live_link_is_a_protocol_error() {
    let mut alice = node("twice", "alice").await;
    let mut bob = node("twice", "bob").await;
    let good = connect(&mut alice, &mut bob, "bob").await;
    let rogue = rogue(&bob).await;
    let (mut send, _reader) = established(&rogue, "twice", &mut bob, 77).await;
    let id = ConnectionId::new(77).expect("nonzero");
    send.write_all(&connect_frame("twice", "bob", 78))
        .await
        .expect("second CONNECT");
    expect_protocol_error(&rogue).await;
    wait_connection(&mut bob.events, id, ConnectionStatus::Disconnected).await;
    good_peer_still_served(&alice, &mut bob, good, 1).await;
}

#[tokio::test]
async fn no_stream_beyond_the_control_stream_can_be_opened() {
    let mut alice = node("streams", "alice").await;
    let mut bob = node("streams", "bob").await;
    let good = connect(&mut alice, &mut bob, "bob").await;
    let rogue = rogue(&bob).await;
    let _control = send_raw(&rogue, &connect_frame("streams", "bob", 99), false).await;
    let id = ConnectionId::new(99).expect("nonzero");
    wait_connection(&mut bob.events, id, ConnectionStatus::Connected).await;
    // The node grants one bidirectional stream and no unidirectional ones: QUIC flow
    // control holds further streams back (a peer that ignores it commits a transport error).
    let extra = tokio::time::timeout(Duration::from_millis(300), rogue.connection.open_bi()).await;
    assert!(
        extra.is_err(),
        "a second bidirectional stream was granted: {extra:?}"
    );
    let uni = tokio::time::timeout(Duration::from_millis(300), rogue.connection.open_uni()).await;
    assert!(uni.is_err(), "a unidirectional stream was granted: {uni:?}");
    assert!(
        rogue.connection.close_reason().is_none(),
        "the link itself is fine"
    );
    good_peer_still_served(&alice, &mut bob, good, 2).await;
}

#[tokio::test]
async fn a_silent_link_is_closed_at_the_handshake_timeout() {
    let options =
        peergraph::GraphOptions::default().with_connect_timeout(Duration::from_millis(300));
    let bob = node_with("silent", "bob", options).await;
    let rogue = rogue(&bob).await;
    expect_closed_with(&rogue.connection, close_code::HANDSHAKE_TIMEOUT).await;
    assert_eq!(
        bob.graph
            .counters()
            .await
            .expect("counters")
            .pending_incoming,
        0
    );
}

/// A rogue link that has completed CONNECT/WELCOME: its stream halves and the id.
async fn established(
    rogue: &Rogue,
    graph: &str,
    node: &mut Node,
    id: u64,
) -> (quinn::SendStream, FrameReader) {
    let (mut send, recv) = rogue.connection.open_bi().await.expect("stream");
    send.write_all(&connect_frame(graph, "bob", id))
        .await
        .expect("CONNECT");
    let mut reader = FrameReader::new(recv);
    let welcome = next_frame(&mut reader).await;
    assert!(
        matches!(welcome, Ok(Some(Message::Welcome(_)))),
        "{welcome:?}"
    );
    let id = ConnectionId::new(id).expect("nonzero");
    wait_connection(&mut node.events, id, ConnectionStatus::Connected).await;
    (send, reader)
}

/// Sends DISCONNECT on a rogue link and reads the node's answer to it, its own DISCONNECT.
async fn disconnect_and_hear_back(send: &mut quinn::SendStream, reader: &mut FrameReader) {
    send.write_all(
        &Message::Disconnect(peergraph_engine::wire::DisconnectReason::AppDisconnect).to_bytes(),
    )
    .await
    .expect("DISCONNECT");
    let answer = next_frame(reader).await;
    assert!(
        matches!(answer, Ok(Some(Message::Disconnect(_)))),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_frame_after_disconnect_is_a_protocol_error() {
    let mut alice = node("after", "alice").await;
    let mut bob = node("after", "bob").await;
    let good = connect(&mut alice, &mut bob, "bob").await;
    let rogue = rogue(&bob).await;
    let (mut send, _reader) = established(&rogue, "after", &mut bob, 5).await;
    let mut bytes = Message::Disconnect(peergraph_engine::wire::DisconnectReason::AppDisconnect)
        .to_bytes()
        .to_vec();
    bytes.extend_from_slice(
        &Message::Data {
            data_type: DataType::from_u128(1),
            payload: Bytes::from_static(b"too late"),
        }
        .to_bytes(),
    );
    send.write_all(&bytes).await.expect("DISCONNECT, DATA");
    expect_protocol_error(&rogue).await;
    good_peer_still_served(&alice, &mut bob, good, 3).await;
}

/// The node answers a DISCONNECT with its own DISCONNECT and FIN; a peer that then never
/// finishes its stream is cut off at the close timeout with CLOSE_TIMEOUT.
#[tokio::test]
async fn a_peer_that_never_finishes_after_disconnect_is_cut_off() {
    let options = peergraph::GraphOptions::default().with_close_timeout(Duration::from_millis(300));
    let mut bob = node_with("unfinished", "bob", options).await;
    let rogue = rogue(&bob).await;
    let (mut send, mut reader) = established(&rogue, "unfinished", &mut bob, 6).await;
    disconnect_and_hear_back(&mut send, &mut reader).await;
    let end = next_frame(&mut reader).await;
    assert!(matches!(end, Ok(None)), "FIN after DISCONNECT: {end:?}");
    expect_closed_with(&rogue.connection, close_code::CLOSE_TIMEOUT).await;
    let id = ConnectionId::new(6).expect("nonzero");
    wait_connection(&mut bob.events, id, ConnectionStatus::Disconnected).await;
}

/// The peer is closing a link (its DISCONNECT is read and answered) but never finishes its
/// stream, and this node's application closes the link meanwhile: the close answers
/// `PEER_E_CONNECTION_NOT_FOUND`, and like every close only once the connection actor is
/// gone, counted out and its DISCONNECTED on its way. (It used to answer at once, with the
/// actor still counted for up to the close timeout.)
#[tokio::test]
async fn closing_a_link_the_peer_is_closing_answers_once_the_actor_is_gone() {
    let options = GraphOptions::default().with_close_timeout(Duration::from_millis(500));
    let mut bob = node_with("peer-closing", "bob", options).await;
    let rogue = rogue(&bob).await;
    let (mut send, mut reader) = established(&rogue, "peer-closing", &mut bob, 7).await;
    // bob's answer comes: its actor has read our DISCONNECT and is closing the link.
    disconnect_and_hear_back(&mut send, &mut reader).await;
    let id = ConnectionId::new(7).expect("nonzero");
    assert_eq!(
        code(within!(bob.graph.close_direct_connection(id))),
        Err(ResultCode::PEER_E_CONNECTION_NOT_FOUND)
    );
    assert_eq!(bob.engine.connection_actor_count(), 0);
    wait_connection(&mut bob.events, id, ConnectionStatus::Disconnected).await;
    expect_closed_with(&rogue.connection, close_code::CLOSE_TIMEOUT).await;
}

/// A peer opens a second link under the id of one this node is still closing (the id left
/// the table when the close began). When the first link ends, by its close timeout, the
/// second link keeps its place in the table and keeps working.
#[tokio::test]
async fn an_id_reused_while_its_link_closes_does_not_take_the_new_link_down() {
    const ID: u64 = 0x5eed;
    let options = GraphOptions::default().with_close_timeout(Duration::from_millis(500));
    let mut bob = node_with("reuse", "bob", options).await;
    let first = rogue(&bob).await;
    let (_first_send, mut first_reader) = established(&first, "reuse", &mut bob, ID).await;
    // bob closes; the rogue reads the DISCONNECT and never answers.
    let closing = tokio::spawn({
        let graph = bob.graph.clone();
        async move {
            graph
                .close_direct_connection(ConnectionId::new(ID).expect("nonzero"))
                .await
        }
    });
    let disconnect = next_frame(&mut first_reader).await;
    assert!(
        matches!(disconnect, Ok(Some(Message::Disconnect(_)))),
        "{disconnect:?}"
    );
    let second = rogue(&bob).await;
    let (_second_send, mut second_reader) = established(&second, "reuse", &mut bob, ID).await;
    assert_eq!(
        closing
            .await
            .expect("close task")
            .map_err(|error| error.code()),
        Err(ResultCode::PEER_E_TIMEOUT)
    );
    let id = ConnectionId::new(ID).expect("nonzero");
    wait_connection(&mut bob.events, id, ConnectionStatus::Disconnected).await;
    let listed = bob
        .graph
        .enum_connections(ConnectionFlags::DIRECT)
        .await
        .expect("enum");
    assert_eq!(
        listed
            .iter()
            .map(|info| info.connection_id)
            .collect::<Vec<_>>(),
        vec![id],
        "the second link left the table with the first"
    );
    bob.graph
        .send_data(
            id,
            DataType::from_u128(3),
            Bytes::from_static(b"still here"),
        )
        .await
        .expect("send on the second link");
    let data = next_frame(&mut second_reader).await;
    assert!(
        matches!(&data, Ok(Some(Message::Data { payload, .. })) if payload[..] == b"still here"[..]),
        "{data:?}"
    );
}
