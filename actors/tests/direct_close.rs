//! The close path: CloseDirectConnection and every code it returns.

mod common;

use bytes::Bytes;
use common::*;
use peergraph::{ConnectionId, ConnectionStatus, DataType, GraphEvent, ResultCode};

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
    // Id 0 is no connection: the id's constructor answers E_INVALIDARG, so no close
    // can be asked for it.
    assert_eq!(
        ConnectionId::new(0).map_err(|e| e.code()),
        Err(ResultCode::E_INVALIDARG)
    );
}

/// Deterministic bytes for transfer tests.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

#[tokio::test]
async fn a_64_mib_transfer_closed_right_after_the_last_send_arrives_intact() {
    const CHUNK: usize = 1024 * 1024;
    const CHUNKS: usize = 64;
    let mut alice = node("bulk", "alice").await;
    let mut bob = node("bulk", "bob").await;
    let id = connect(&mut alice, &mut bob, "bob").await;
    // A dedicated registration big enough for the whole transfer, read concurrently.
    let mut data_events = bob
        .graph
        .register_event_with(
            vec![peergraph::EventRegistration::new(
                peergraph::EventType::IncomingData,
            )],
            peergraph::QueueLimits {
                events: 4096,
                bytes: 128 * 1024 * 1024,
            },
        )
        .await
        .expect("register");
    let receiver = tokio::spawn(async move {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        let mut received = 0usize;
        while received < CHUNK * CHUNKS {
            match tokio::time::timeout(EVENT_TIMEOUT, data_events.recv()).await {
                Ok(Some(GraphEvent::IncomingData { data, .. })) => {
                    received += data.len();
                    context.update(&data);
                }
                Ok(Some(other)) => panic!("unexpected event {other:?}"),
                Ok(None) => break,
                Err(_) => panic!("timed out after {received} bytes"),
            }
        }
        (received, context.finish())
    });
    let mut expected = ring::digest::Context::new(&ring::digest::SHA256);
    for index in 0..CHUNKS {
        let chunk = Bytes::from(pattern(index as u64 + 1, CHUNK));
        expected.update(&chunk);
        alice
            .graph
            .send_data(id, DataType::from_u128(1), chunk)
            .await
            .expect("send");
    }
    assert_eq!(alice.graph.close_direct_connection(id).await, Ok(()));
    let (received, digest) = receiver.await.expect("receiver");
    assert_eq!(received, CHUNK * CHUNKS);
    assert_eq!(digest.as_ref(), expected.finish().as_ref());
    wait_connection(&mut bob.events, id, ConnectionStatus::Disconnected).await;
}

#[tokio::test]
async fn a_thousand_open_close_cycles_leave_nothing_behind() {
    let mut alice = node("cycles", "alice").await;
    let mut bob = node("cycles", "bob").await;
    for cycle in 0..1000 {
        let id = connect(&mut alice, &mut bob, "bob").await;
        let closer = if cycle % 2 == 0 { &alice } else { &bob };
        assert_eq!(
            closer.graph.close_direct_connection(id).await,
            Ok(()),
            "cycle {cycle}"
        );
        wait_connection(&mut alice.events, id, ConnectionStatus::Disconnected).await;
        wait_connection(&mut bob.events, id, ConnectionStatus::Disconnected).await;
    }
    for node in [&alice, &bob] {
        let counters = node.graph.counters().await.expect("counters");
        assert_eq!(counters.connections, 0);
        assert_eq!(counters.pending_outgoing, 0);
        let engine = node.engine.clone();
        eventually("connection actors gone", || {
            engine.connection_actor_count() == 0
        })
        .await;
    }
}

#[tokio::test]
async fn of_a_hundred_concurrent_closes_exactly_one_succeeds() {
    let mut alice = node("race", "alice").await;
    let mut bob = node("race", "bob").await;
    let id = connect(&mut alice, &mut bob, "bob").await;
    let closes = (0..100).map(|_| {
        let graph = alice.graph.clone();
        tokio::spawn(async move { graph.close_direct_connection(id).await })
    });
    let results = futures_util::future::join_all(closes).await;
    let codes: Vec<ResultCode> = results
        .into_iter()
        .map(|joined| peergraph::code_of(&joined.expect("task")))
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == ResultCode::S_OK).count(), 1);
    assert_eq!(
        codes
            .iter()
            .filter(|c| **c == ResultCode::PEER_E_CONNECTION_NOT_FOUND)
            .count(),
        99
    );
    wait_connection(&mut bob.events, id, ConnectionStatus::Disconnected).await;
}

#[tokio::test]
async fn a_panicking_connection_actor_is_reported_once_and_others_keep_working() {
    let mut alice = node("panic", "alice").await;
    let mut bob = node("panic", "bob").await;
    let doomed = connect(&mut alice, &mut bob, "bob").await;
    let healthy = connect(&mut alice, &mut bob, "bob").await;
    alice
        .graph
        .connection_actor(doomed)
        .expect("actor of a live connection")
        .do_send(peergraph::InjectPanic);
    wait_connection(&mut alice.events, doomed, ConnectionStatus::Disconnected).await;
    wait_connection(&mut bob.events, doomed, ConnectionStatus::Disconnected).await;
    // The other connection still carries data both ways.
    let data_type = DataType::from_u128(2);
    alice
        .graph
        .send_data(healthy, data_type, Bytes::from_static(b"still here"))
        .await
        .expect("send on the healthy connection");
    wait_for(&mut bob.events, "data on the healthy connection", |e| {
        matches!(e, GraphEvent::IncomingData { connection_id, data, .. }
            if *connection_id == healthy && &data[..] == b"still here")
    })
    .await;
    // Close the healthy one; until its DISCONNECTED, no second report of the doomed one.
    assert_eq!(alice.graph.close_direct_connection(healthy).await, Ok(()));
    let mut doomed_reports = 0;
    wait_for(&mut alice.events, "healthy connection's end", |e| {
        if let GraphEvent::DirectConnection(change) = e {
            if change.connection_id == doomed {
                doomed_reports += 1;
            }
            return change.connection_id == healthy
                && change.status == ConnectionStatus::Disconnected;
        }
        false
    })
    .await;
    assert_eq!(
        doomed_reports, 0,
        "the panicked connection was reported exactly once"
    );
    assert_eq!(
        alice
            .graph
            .close_direct_connection(doomed)
            .await
            .map_err(|e| e.code()),
        Err(ResultCode::PEER_E_CONNECTION_NOT_FOUND)
    );
    let engine = alice.engine.clone();
    eventually("connection actors gone", || {
        engine.connection_actor_count() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_under_load_either_delivers_a_send_or_refuses_it() {
    close_under_load(Sender::Closer).await;
}

/// The mirror case: the peer's senders are busy when we close. The peer answers our
/// DISCONNECT only after writing everything it had accepted, so that arrives too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_closed_under_load_delivers_what_it_had_accepted() {
    close_under_load(Sender::Peer).await;
}

/// Which side of the link runs the senders while alice closes it.
#[derive(Clone, Copy, PartialEq)]
enum Sender {
    Closer,
    Peer,
}

async fn close_under_load(side: Sender) {
    const SENDERS: u32 = 4;
    const MAX_PER_SENDER: u32 = 20_000;
    let mut alice = node("load", "alice").await;
    let mut bob = node("load", "bob").await;
    let id = connect(&mut alice, &mut bob, "bob").await;
    let (sending, receiving) = match side {
        Sender::Closer => (&alice, &mut bob),
        Sender::Peer => (&bob, &mut alice),
    };
    let mut delivered = receiving
        .graph
        .register_event_with(
            common::all_events(),
            peergraph::QueueLimits {
                events: 100_000,
                bytes: 256 * 1024 * 1024,
            },
        )
        .await
        .expect("register");
    let data_type = DataType::from_u128(6);
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let graph = sending.graph.clone();
            tokio::spawn(async move {
                let mut accepted = Vec::new();
                for seq in 0..MAX_PER_SENDER {
                    let mut payload = vec![0u8; 1024];
                    payload[..4].copy_from_slice(&sender.to_be_bytes());
                    payload[4..8].copy_from_slice(&seq.to_be_bytes());
                    match graph.send_data(id, data_type, payload).await {
                        Ok(()) => accepted.push((sender, seq)),
                        Err(error) => {
                            assert_eq!(error.code(), ResultCode::PEER_E_CONNECTION_NOT_FOUND);
                            break;
                        }
                    }
                }
                accepted
            })
        })
        .collect();
    // Close once data is flowing, while every sender is still busy.
    wait_for(&mut receiving.events, "the first data", |e| {
        matches!(e, GraphEvent::IncomingData { .. })
    })
    .await;
    let close = alice.graph.close_direct_connection(id).await;
    let mut accepted = std::collections::BTreeSet::new();
    for sender in senders {
        accepted.extend(sender.await.expect("sender"));
    }
    assert_eq!(close, Ok(()));
    // Every accepted send arrived, and nothing else did.
    let mut received = std::collections::BTreeSet::new();
    loop {
        let event = tokio::time::timeout(EVENT_TIMEOUT, delivered.recv())
            .await
            .expect("events in time")
            .expect("stream open");
        match event {
            GraphEvent::IncomingData { data, .. } => {
                let sender = u32::from_be_bytes(data[..4].try_into().expect("4 bytes"));
                let seq = u32::from_be_bytes(data[4..8].try_into().expect("4 bytes"));
                received.insert((sender, seq));
            }
            GraphEvent::DirectConnection(change)
                if change.status == ConnectionStatus::Disconnected =>
            {
                break
            }
            GraphEvent::EventsLost { count } => panic!("{count} events lost"),
            _ => {}
        }
    }
    let missing: Vec<_> = accepted.difference(&received).collect();
    assert!(
        missing.is_empty(),
        "accepted but not delivered: {missing:?}"
    );
    assert!(
        received.is_subset(&accepted),
        "delivered without being accepted"
    );
    assert!(
        accepted.len() < (SENDERS * MAX_PER_SENDER) as usize,
        "the close cut the senders short"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_closing_at_once_lose_nothing() {
    const MESSAGES: usize = 200;
    for round in 0..20 {
        let mut alice = node("both", "alice").await;
        let mut bob = node("both", "bob").await;
        let id = connect(&mut alice, &mut bob, "bob").await;
        let data_type = DataType::from_u128(8);
        for n in 0..MESSAGES {
            let payload = Bytes::from(n.to_be_bytes().to_vec());
            alice
                .graph
                .send_data(id, data_type, payload.clone())
                .await
                .expect("send");
            bob.graph
                .send_data(id, data_type, payload)
                .await
                .expect("send");
        }
        let (a, b) = tokio::join!(
            alice.graph.close_direct_connection(id),
            bob.graph.close_direct_connection(id)
        );
        let codes = [peergraph::code_of(&a), peergraph::code_of(&b)];
        for code in codes {
            assert!(
                code == ResultCode::S_OK || code == ResultCode::PEER_E_CONNECTION_NOT_FOUND,
                "round {round}: {codes:?}"
            );
        }
        assert!(
            codes.contains(&ResultCode::S_OK),
            "round {round}: {codes:?}"
        );
        // Each side had every byte it sent read by the other: the one that got S_OK, and
        // the one that found the close already under way, which wrote what it had
        // accepted before its own DISCONNECT.
        for receiver in [&mut bob, &mut alice] {
            let mut count = 0;
            wait_for(
                &mut receiver.events,
                "the end of the connection",
                |e| match e {
                    GraphEvent::IncomingData { .. } => {
                        count += 1;
                        false
                    }
                    GraphEvent::DirectConnection(c) => c.status == ConnectionStatus::Disconnected,
                    _ => false,
                },
            )
            .await;
            assert_eq!(count, MESSAGES, "round {round}");
        }
    }
}
