//! The close path: CloseDirectConnection and every code it returns.

mod common;

use bytes::Bytes;
use common::*;
use peergraph::{ConnectionStatus, DataType, GraphEvent, ResultCode};

#[tokio::test]
async fn whisper_then_close() {
    let mut alice = node("chat", "alice").await;
    let mut bob = node("chat", "bob").await;
    let id = connect(&mut alice, &mut bob, "bob").await;
    let data_type = DataType::from_u128(0xC0FFEE);
    alice
        .graph
        .send_data(id, data_type, Bytes::from_static(b"psst"))
        .await
        .expect("send");
    let event = wait_for(&mut bob.events, "data", |e| {
        matches!(e, GraphEvent::IncomingData { .. })
    })
    .await;
    assert_eq!(
        event,
        GraphEvent::IncomingData {
            connection_id: id,
            data_type,
            data: Bytes::from_static(b"psst")
        }
    );
    bob.graph.close_direct_connection(id).await.expect("close");
    wait_connection(&mut alice.events, id, ConnectionStatus::Disconnected).await;
    wait_connection(&mut bob.events, id, ConnectionStatus::Disconnected).await;
    assert_eq!(
        bob.graph
            .close_direct_connection(id)
            .await
            .map_err(|e| e.code()),
        Err(ResultCode::PEER_E_CONNECTION_NOT_FOUND)
    );
    assert_eq!(
        bob.graph
            .close_direct_connection(0u64)
            .await
            .map_err(|e| e.code()),
        Err(ResultCode::E_INVALIDARG)
    );
}
