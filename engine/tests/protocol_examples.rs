//! The example exchange of `docs/PROTOCOL.md` §6, pinned: each frame the document shows is
//! encoded here with the real encoder and must equal the bytes written in this file, and
//! the same bytes, in the same 16-bytes-a-line hex layout, must appear in the document. A
//! change to the codec or to the document that makes them disagree fails here.

use bytes::Bytes;
use peergraph_engine::wire::{
    close_code, Connect, DisconnectReason, Message, RefuseReason, Welcome, PROTOCOL_VERSION,
};
use peergraph_engine::{ConnectionId, DataType, GraphId, PeerId};

/// The document the bytes must appear in.
const PROTOCOL_MD: &str = include_str!("../../docs/PROTOCOL.md");

/// The connection id of the example (real nodes pick it at random).
const CONNECTION_ID: u64 = 0x0102_0304_0506_0708;

/// alice's CONNECT: version 1, direct, graph `chat`, source `alice`, target `bob`, no proof.
const CONNECT_HEX: &str = "\
01 00 00 00 1d 01 01 01 02 03 04 05 06 07 08 00
04 63 68 61 74 00 05 61 6c 69 63 65 00 03 62 6f
62 00";

/// bob's WELCOME: graph `chat`, peer `bob`, no proof.
const WELCOME_HEX: &str = "\
02 00 00 00 14 01 02 03 04 05 06 07 08 00 04 63
68 61 74 00 03 62 6f 62 00";

/// alice's DATA: type 00000000-0000-0000-0000-000000c0ffee, payload `hello`.
const DATA_HEX: &str = "\
05 00 00 00 15 00 00 00 00 00 00 00 00 00 00 00
00 00 c0 ff ee 68 65 6c 6c 6f";

/// DISCONNECT(APP_DISCONNECT), sent by alice and answered with the same bytes by bob.
const DISCONNECT_HEX: &str = "04 00 00 00 01 03";

/// REFUSE(DIRECT_CONNECTION_DISALLOWED), the refusal variant of the example.
const REFUSE_HEX: &str = "03 00 00 00 01 04";

/// Everything alice writes on the control stream before her FIN: CONNECT, DATA, DISCONNECT.
const ALICE_STREAM_HEX: &str = "\
01 00 00 00 1d 01 01 01 02 03 04 05 06 07 08 00
04 63 68 61 74 00 05 61 6c 69 63 65 00 03 62 6f
62 00 05 00 00 00 15 00 00 00 00 00 00 00 00 00
00 00 00 00 c0 ff ee 68 65 6c 6c 6f 04 00 00 00
01 03";

/// Everything bob writes on the control stream before his FIN: WELCOME, DISCONNECT.
const BOB_STREAM_HEX: &str = "\
02 00 00 00 14 01 02 03 04 05 06 07 08 00 04 63
68 61 74 00 03 62 6f 62 00 04 00 00 00 01 03";

/// The QUIC CONNECTION_CLOSE frame (RFC 9000 §19.19) that ends the link: type 0x1d
/// (application close), error code APP_DISCONNECT, reason phrase length 10, `disconnect`.
const CONNECTION_CLOSE_HEX: &str = "1d 01 0a 64 69 73 63 6f 6e 6e 65 63 74";

/// Bytes as the document writes them: two hex digits each, separated by spaces, 16 to a
/// line.
fn hex_block(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|line| {
            line.iter()
                .map(|byte| format!("{byte:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn connection_id() -> ConnectionId {
    ConnectionId::new(CONNECTION_ID).expect("nonzero")
}

fn connect() -> Message {
    Message::Connect(Connect {
        version: PROTOCOL_VERSION,
        direct: true,
        connection_id: connection_id(),
        graph_id: GraphId::new("chat").expect("graph id"),
        source_peer_id: PeerId::new("alice").expect("peer id"),
        target_peer_id: PeerId::new("bob").expect("peer id"),
        proof: Bytes::new(),
    })
}

fn welcome() -> Message {
    Message::Welcome(Welcome {
        connection_id: connection_id(),
        graph_id: GraphId::new("chat").expect("graph id"),
        peer_id: PeerId::new("bob").expect("peer id"),
        proof: Bytes::new(),
    })
}

fn data() -> Message {
    Message::Data {
        data_type: DataType::from_u128(0xc0ffee),
        payload: Bytes::from_static(b"hello"),
    }
}

fn disconnect() -> Message {
    Message::Disconnect(DisconnectReason::AppDisconnect)
}

/// Asserts that `message` encodes to `expected`, decodes back from it, and that `expected`
/// is in the document.
fn pinned(what: &str, message: &Message, expected: &str) {
    let bytes = message.to_bytes();
    assert_eq!(hex_block(&bytes), expected, "{what}: the encoder's bytes");
    let mut decoder = peergraph_engine::wire::FrameDecoder::new();
    decoder.push(bytes);
    assert_eq!(
        decoder.next_message().expect("decodes"),
        Some(message.clone()),
        "{what}: decodes back"
    );
    assert!(!decoder.is_mid_frame(), "{what}: the frame is used up");
    in_document(what, expected);
}

fn in_document(what: &str, expected: &str) {
    assert!(
        PROTOCOL_MD.contains(expected),
        "{what}: docs/PROTOCOL.md does not show these bytes:\n{expected}"
    );
}

#[test]
fn connect_is_the_documented_bytes() {
    pinned("CONNECT", &connect(), CONNECT_HEX);
}

#[test]
fn welcome_is_the_documented_bytes() {
    pinned("WELCOME", &welcome(), WELCOME_HEX);
}

#[test]
fn data_is_the_documented_bytes() {
    pinned("DATA", &data(), DATA_HEX);
}

#[test]
fn disconnect_is_the_documented_bytes() {
    pinned("DISCONNECT", &disconnect(), DISCONNECT_HEX);
}

#[test]
fn refuse_is_the_documented_bytes() {
    pinned(
        "REFUSE",
        &Message::Refuse(RefuseReason::DirectConnectionDisallowed),
        REFUSE_HEX,
    );
}

#[test]
fn each_direction_of_the_control_stream_is_the_documented_bytes() {
    let alice: Vec<u8> = [connect(), data(), disconnect()]
        .iter()
        .flat_map(|message| message.to_bytes().to_vec())
        .collect();
    assert_eq!(alice.len(), 34 + 26 + 6);
    assert_eq!(hex_block(&alice), ALICE_STREAM_HEX);
    in_document("alice's side of stream 0", ALICE_STREAM_HEX);

    let bob: Vec<u8> = [welcome(), disconnect()]
        .iter()
        .flat_map(|message| message.to_bytes().to_vec())
        .collect();
    assert_eq!(bob.len(), 25 + 6);
    assert_eq!(hex_block(&bob), BOB_STREAM_HEX);
    in_document("bob's side of stream 0", BOB_STREAM_HEX);
}

#[test]
fn the_connection_close_frame_is_the_documented_bytes() {
    let reason = b"disconnect";
    let mut frame = vec![0x1d];
    // Each of these varints is below 64, so it takes one byte (RFC 9000 §16).
    let code = u8::try_from(close_code::APP_DISCONNECT).expect("below 64");
    assert!(code < 64);
    frame.push(code);
    frame.push(u8::try_from(reason.len()).expect("below 64"));
    frame.extend_from_slice(reason);
    assert_eq!(hex_block(&frame), CONNECTION_CLOSE_HEX);
    in_document("CONNECTION_CLOSE", CONNECTION_CLOSE_HEX);
}
