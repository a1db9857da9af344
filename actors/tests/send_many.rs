//! SendDataMany over real links: every payload arrives as its own INCOMING_DATA, in
//! order, none interleaved with another sender's; a batch with one payload too long
//! sends nothing; and each documented code is provoked (facade and actix message).

mod common;

use bytes::Bytes;
use common::*;
use peergraph::{
    reply, ConnectionId, DataType, EventStream, GraphEvent, ResultCode, SendDataMany, MAX_DATA_LEN,
};

const BATCH: DataType = DataType::from_u128(0xBA7C);
const OTHER: DataType = DataType::from_u128(0x07E5);
/// The other sender's last frame.
const LAST: &[u8] = b"last";

/// Reads INCOMING_DATA until `count` payloads have come (bounded by the event timeout of
/// each wait), as (type, payload) in arrival order.
async fn receive(events: &mut EventStream, count: usize) -> Vec<(DataType, Bytes)> {
    let mut received = Vec::with_capacity(count);
    while received.len() < count {
        if let GraphEvent::IncomingData {
            data_type, data, ..
        } = wait_for(events, "INCOMING_DATA", |event| {
            matches!(event, GraphEvent::IncomingData { .. })
        })
        .await
        {
            received.push((data_type, data));
        }
    }
    received
}

/// Payload `i` of a batch: its index in its first bytes, a length that walks through
/// empty, small, just over the writer's gathering size and large.
fn payload(i: usize) -> Bytes {
    let len = match i % 50 {
        0 => 0,
        7 => 8 * 1024 + 1,
        23 => 100_000,
        n => 4 + n * 3,
    };
    let mut bytes = vec![(i % 251) as u8; len];
    if len >= 4 {
        bytes[..4].copy_from_slice(&(i as u32).to_be_bytes());
    }
    Bytes::from(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_arrives_whole_in_order_and_no_other_send_comes_between() {
    let mut alice = node("many", "alice").await;
    let mut bob = node("many", "bob").await;
    let id = connect(&mut alice, &mut bob, "bob").await;

    // More than the outbox holds (about 8 MiB against 2 MiB), so the batch waits for room
    // several times, while this task keeps sending on the same link until it is done.
    const COUNT: usize = 4_000;
    let batch: Vec<Bytes> = (0..COUNT).map(payload).collect();
    let sending = {
        let graph = alice.graph.clone();
        let batch = batch.clone();
        tokio::spawn(async move { graph.send_data_many(id, BATCH, batch).await })
    };
    // bob reads all along (an application that stops reading holds the link back), until
    // the last frame alice sends.
    let send = async {
        let mut others = 0u32;
        while !sending.is_finished() && others < 100_000 {
            alice
                .graph
                .send_data(id, OTHER, Bytes::copy_from_slice(&others.to_be_bytes()))
                .await
                .expect("send_data");
            others += 1;
            tokio::task::yield_now().await;
        }
        sending.await.expect("task").expect("send_data_many");
        alice
            .graph
            .send_data(id, OTHER, Bytes::from_static(LAST))
            .await
            .expect("last");
        others
    };
    let receive = async {
        let mut received = Vec::new();
        loop {
            let mut next = receive(&mut bob.events, 1).await;
            let (data_type, data) = next.pop().expect("one");
            if data_type == OTHER && data == LAST {
                return received;
            }
            received.push((data_type, data));
        }
    };
    let (others, received) = tokio::join!(send, receive);
    assert!(
        others >= 1,
        "a SendData was made while the batch was under way"
    );
    assert_eq!(received.len(), COUNT + others as usize);
    let positions: Vec<usize> = received
        .iter()
        .enumerate()
        .filter(|(_, (data_type, _))| *data_type == BATCH)
        .map(|(at, _)| at)
        .collect();
    assert_eq!(positions.len(), COUNT);
    assert_eq!(
        positions.last().expect("batch") - positions[0] + 1,
        COUNT,
        "no other frame between the batch's first and last"
    );
    let from_batch: Vec<Bytes> = received
        .iter()
        .filter(|(data_type, _)| *data_type == BATCH)
        .map(|(_, data)| data.clone())
        .collect();
    assert!(from_batch == batch, "every payload, whole and in order");
    let from_other: Vec<Bytes> = received
        .iter()
        .filter(|(data_type, _)| *data_type == OTHER)
        .map(|(_, data)| data.clone())
        .collect();
    let expected: Vec<Bytes> = (0..others)
        .map(|i| Bytes::copy_from_slice(&i.to_be_bytes()))
        .collect();
    assert!(from_other == expected, "the other sender's frames in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_one_payload_too_long_sends_none_and_unknown_links_are_not_found() {
    let mut alice = node("many-codes", "alice").await;
    let mut bob = node("many-codes", "bob").await;
    let id = connect(&mut alice, &mut bob, "bob").await;

    let too_long = vec![
        Bytes::from_static(b"first"),
        Bytes::from(vec![0u8; MAX_DATA_LEN + 1]),
    ];
    // E_INVALIDARG comes first, whatever the id, as for SendData.
    for connection_id in [id, ConnectionId::new(0x5eed).expect("id")] {
        assert_eq!(
            code(
                alice
                    .graph
                    .send_data_many(connection_id, BATCH, too_long.clone())
                    .await
            ),
            Err(ResultCode::E_INVALIDARG)
        );
    }
    let unknown = ConnectionId::new(0x5eed).expect("id");
    assert_eq!(
        code(
            alice
                .graph
                .send_data_many(unknown, BATCH, [&b"x"[..]])
                .await
        ),
        Err(ResultCode::PEER_E_CONNECTION_NOT_FOUND)
    );
    // The same through the graph actor's message.
    let addr = alice.graph.addr();
    let message = |connection_id, data: Vec<Bytes>| SendDataMany {
        connection_id,
        data_type: BATCH,
        data,
    };
    assert_eq!(
        code(reply(addr.send(message(id, too_long.clone())).await)),
        Err(ResultCode::E_INVALIDARG)
    );
    assert_eq!(
        code(reply(
            addr.send(message(unknown, vec![Bytes::from_static(b"x")]))
                .await
        )),
        Err(ResultCode::PEER_E_CONNECTION_NOT_FOUND)
    );
    // Nothing of the refused batches went out: bob's first data is what comes next.
    reply(
        addr.send(message(id, vec![Bytes::from_static(b"after")]))
            .await,
    )
    .expect("send by message");
    alice
        .graph
        .send_data_many(id, BATCH, Vec::<Bytes>::new())
        .await
        .expect("an empty batch on a live link");
    let received = receive(&mut bob.events, 1).await;
    assert_eq!(received[0].1, Bytes::from_static(b"after"));

    // Once the link is closed, its id is not found.
    alice
        .graph
        .close_direct_connection(id)
        .await
        .expect("close");
    assert_eq!(
        code(alice.graph.send_data_many(id, BATCH, [&b"late"[..]]).await),
        Err(ResultCode::PEER_E_CONNECTION_NOT_FOUND)
    );
}

/// Through the graph actor's mailbox, messages keep their order: a SendData sent after a
/// SendDataMany comes after every payload of it, and a close sent after it waits for
/// them, even when both are in the mailbox at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_data_many_message_is_not_overtaken_by_the_next_message() {
    let mut alice = node("many-order", "alice").await;
    let mut bob = node("many-order", "bob").await;
    let id = connect(&mut alice, &mut bob, "bob").await;
    let addr = alice.graph.addr();
    for round in 0..5u8 {
        let many = addr.send(SendDataMany {
            connection_id: id,
            data_type: BATCH,
            data: vec![Bytes::from(vec![round; 10]), Bytes::from(vec![round; 20])],
        });
        let one = addr.send(peergraph::SendData {
            connection_id: id,
            data_type: OTHER,
            data: Bytes::from(vec![round; 5]),
        });
        let (many, one) = tokio::join!(many, one);
        reply(many).expect("SendDataMany");
        reply(one).expect("SendData");
        let received = receive(&mut bob.events, 3).await;
        let lens: Vec<usize> = received.iter().map(|(_, data)| data.len()).collect();
        assert_eq!(lens, [10, 20, 5], "round {round}");
    }
    let batch: Vec<Bytes> = (0..100).map(|i| Bytes::from(vec![i as u8; 64])).collect();
    let many = addr.send(SendDataMany {
        connection_id: id,
        data_type: BATCH,
        data: batch.clone(),
    });
    let close = addr.send(peergraph::CloseDirectConnection { connection_id: id });
    let (many, close) = tokio::join!(many, close);
    reply(many).expect("SendDataMany before the close");
    reply(close).expect("close");
    let received = receive(&mut bob.events, batch.len()).await;
    assert!(received.iter().map(|(_, data)| data.clone()).eq(batch));
}
