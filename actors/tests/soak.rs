//! Soak tests: many connections at once, and many cycles. Ignored by default; run by name,
//! in release mode, for example
//! `cargo test --release -p peergraph --test soak -- --ignored --nocapture`.
//! Each is bounded in count and in time and stops by itself.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures_util::future::join_all;
use peergraph::{ConnectionId, ConnectionStatus, DataType, GraphEvent, QueueLimits};

/// Resident memory of this process, in KiB (from /proc/self/status).
fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// Waits until `count` events matching `pred` have arrived.
async fn count_events(
    events: &mut peergraph::EventStream,
    count: usize,
    deadline: Instant,
    mut pred: impl FnMut(&GraphEvent) -> bool,
) {
    let mut seen = 0;
    while seen < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, events.recv())
            .await
            .unwrap_or_else(|_| panic!("only {seen} of {count} events in time"))
            .expect("stream open");
        assert!(
            !matches!(event, GraphEvent::EventsLost { .. }),
            "events lost"
        );
        if pred(&event) {
            seen += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak test: run by name"]
async fn soak_ten_thousand_concurrent_connections() {
    const CONNECTIONS: usize = 10_000;
    const BATCH: usize = 100;
    let deadline = Instant::now() + Duration::from_secs(600);
    // A capacity test, not a latency test: give handshakes time on a loaded machine.
    let options = peergraph::GraphOptions::default().with_connect_timeout(Duration::from_secs(60));
    let alice = node_with("soak", "alice", options.clone()).await;
    let bob = node_with("soak", "bob", options).await;
    let limits = QueueLimits {
        events: 4 * CONNECTIONS,
        bytes: 64 * 1024 * 1024,
    };
    let mut alice_events = alice
        .graph
        .register_event_with(all_events(), limits)
        .await
        .expect("register");
    let mut bob_events = bob
        .graph
        .register_event_with(all_events(), limits)
        .await
        .expect("register");
    // The nodes' own registrations are not read here: end them, so that they hold nothing.
    alice
        .graph
        .unregister_event(alice.events.handle())
        .await
        .expect("unregister");
    bob.graph
        .unregister_event(bob.events.handle())
        .await
        .expect("unregister");
    let start_rss = resident_kib();
    let mut after = Vec::new();
    let mut peak_rss = start_rss;
    // Two rounds: the second shows whether memory freed by the first is reused (no growth),
    // which is what "comes back" means under glibc's allocator, which keeps freed pages.
    for round in 1..=2 {
        let started = Instant::now();
        let mut ids: Vec<ConnectionId> = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS / BATCH {
            let opens = (0..BATCH).map(|_| alice.graph.open_direct_connection("bob", bob.address));
            for id in join_all(opens).await {
                ids.push(id.expect("open"));
            }
            let connected = |e: &GraphEvent| match e {
                GraphEvent::DirectConnection(c) => {
                    assert_ne!(c.status, ConnectionStatus::ConnectionFailed, "{c:?}");
                    c.status == ConnectionStatus::Connected
                }
                _ => false,
            };
            count_events(&mut alice_events, BATCH, deadline, connected).await;
            count_events(&mut bob_events, BATCH, deadline, connected).await;
        }
        let up_rss = resident_kib();
        peak_rss = peak_rss.max(up_rss);
        eprintln!(
            "round {round}: {CONNECTIONS} connections up in {:?}; RSS {up_rss} KiB ({} KiB per connection, both ends)",
            started.elapsed(),
            up_rss.saturating_sub(start_rss) / CONNECTIONS as u64
        );
        for id in &ids {
            alice
                .graph
                .send_data(*id, DataType::from_u128(1), Bytes::from_static(b"hello"))
                .await
                .expect("send");
        }
        count_events(&mut bob_events, CONNECTIONS, deadline, |e| {
            matches!(e, GraphEvent::IncomingData { .. })
        })
        .await;
        for batch in ids.chunks(BATCH) {
            let closes = batch
                .iter()
                .map(|id| alice.graph.close_direct_connection(*id));
            for result in join_all(closes).await {
                assert_eq!(result, Ok(()));
            }
        }
        let disconnected = |e: &GraphEvent| {
            matches!(e, GraphEvent::DirectConnection(c)
                if c.status == ConnectionStatus::Disconnected)
        };
        count_events(&mut bob_events, CONNECTIONS, deadline, disconnected).await;
        assert_eq!(
            alice.graph.counters().await.expect("counters").connections,
            0
        );
        assert_eq!(bob.graph.counters().await.expect("counters").connections, 0);
        let (a, b) = (alice.engine.clone(), bob.engine.clone());
        eventually("actors gone", || {
            a.connection_actor_count() == 0 && b.connection_actor_count() == 0
        })
        .await;
        let end_rss = resident_kib();
        eprintln!(
            "round {round}: all closed after {:?}; RSS {start_rss} KiB at start, {up_rss} KiB with the connections up, {end_rss} KiB after",
            started.elapsed()
        );
        after.push(end_rss);
    }
    assert!(
        after[1] <= after[0] + after[0] / 10,
        "resident memory grew from round to round: {start_rss} -> {} -> {} KiB (peak {peak_rss})",
        after[0],
        after[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak test: run by name"]
async fn soak_hundred_thousand_open_close_cycles() {
    let cycles_wanted: usize = std::env::var("PEERGRAPH_SOAK_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let budget = Duration::from_secs(600);
    let mut alice = node("cycles", "alice").await;
    let mut bob = node("cycles", "bob").await;
    let started = Instant::now();
    let mut baseline = None;
    let mut cycles = 0;
    while cycles < cycles_wanted && started.elapsed() < budget {
        let id = connect(&mut alice, &mut bob, "bob").await;
        assert_eq!(alice.graph.close_direct_connection(id).await, Ok(()));
        wait_connection(&mut bob.events, id, ConnectionStatus::Disconnected).await;
        wait_connection(&mut alice.events, id, ConnectionStatus::Disconnected).await;
        cycles += 1;
        if cycles == 1_000 {
            baseline = Some((resident_kib(), open_fds()));
        }
        if cycles % 10_000 == 0 {
            eprintln!("{cycles} cycles, RSS {} KiB", resident_kib());
        }
    }
    let (a, b) = (alice.engine.clone(), bob.engine.clone());
    eventually("actors gone", || {
        a.connection_actor_count() == 0 && b.connection_actor_count() == 0
    })
    .await;
    let (rss, fds) = (resident_kib(), open_fds());
    let (base_rss, base_fds) = baseline.expect("at least 1,000 cycles ran");
    eprintln!(
        "{cycles} cycles in {:?}; RSS {base_rss} KiB after 1,000 -> {rss} KiB; fds {base_fds} -> {fds}",
        started.elapsed()
    );
    assert_eq!(
        alice.graph.counters().await.expect("counters").connections,
        0
    );
    assert_eq!(bob.graph.counters().await.expect("counters").connections, 0);
    assert!(
        fds <= base_fds,
        "file descriptors grew: {base_fds} -> {fds}"
    );
    assert!(
        rss <= base_rss + base_rss / 10,
        "resident memory grew: {base_rss} -> {rss} KiB"
    );
}
