//! TLS resumption and 0-RTT between nodes (`GraphOptions::zero_rtt`, on by default): a
//! second link to a node sends CONNECT in its first flight and is admitted once its
//! handshake completes; a node that lost its sessions refuses the 0-RTT data and the link
//! still opens; a replayed first flight admits nothing, whether its ticket was used or
//! not; a pinned key that does not match is still checked before any CONNECT is sent, and
//! so is the allow-list; a node that fails the checks loses its tickets; a graph with a
//! secret sends no CONNECT early.

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{connect_via, node_with, wait_connection, wait_for, Node, EVENT_TIMEOUT};
use peergraph::{
    ConnectionFlags, ConnectionId, ConnectionStatus, DataType, GraphEvent, GraphMetrics,
    GraphOptions, GraphSecret, NodeIdentity, PeerKey, ResultCode,
};

/// Options for a node with a short TLS timeout, so that a handshake that never completes
/// (a replay) ends within the test.
fn options() -> GraphOptions {
    GraphOptions::default().with_tls_handshake_timeout(Duration::from_millis(500))
}

/// Sends one payload from `from` on `id` and waits until `to` has it.
async fn round(from: &mut Node, to: &mut Node, id: ConnectionId, payload: &'static [u8]) {
    from.graph
        .send_data(id, DataType::from_u128(0x0127), payload)
        .await
        .expect("send");
    wait_for(
        &mut to.events,
        "the payload",
        |event| matches!(event, GraphEvent::IncomingData { data, .. } if &data[..] == payload),
    )
    .await;
}

/// Opens a link from `from` to `to` at `address`, exchanges a payload each way and closes
/// it (S_OK: the other side read everything), waiting until both sides saw it go.
async fn link_and_close(from: &mut Node, to: &mut Node, address: SocketAddr) -> ConnectionId {
    let id = connect_via(from, to, "bob", address).await;
    round(from, to, id, b"ping").await;
    round(to, from, id, b"pong").await;
    within!(from.graph.close_direct_connection(id)).expect("close");
    wait_connection(&mut to.events, id, ConnectionStatus::Disconnected).await;
    id
}

/// Waits for CONNECTION_FAILED for `id` on `node` and returns its code.
async fn failure_of(node: &mut Node, id: ConnectionId) -> Option<ResultCode> {
    let failed = wait_connection(&mut node.events, id, ConnectionStatus::ConnectionFailed).await;
    match failed {
        GraphEvent::DirectConnection(change) => change.failure_reason.map(|error| error.code()),
        _ => None,
    }
}

async fn metrics(node: &Node) -> GraphMetrics {
    node.graph.metrics().await.expect("metrics")
}

/// Polls `node`'s metrics until `done` holds (a handshake that fails raises no event),
/// bounded by [`EVENT_TIMEOUT`].
async fn metrics_until(
    node: &Node,
    what: &str,
    mut done: impl FnMut(&GraphMetrics) -> bool,
) -> GraphMetrics {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let metrics = metrics(node).await;
        if done(&metrics) {
            return metrics;
        }
        assert!(Instant::now() < deadline, "timed out: {what} ({metrics:?})");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `node`'s endpoints hold no QUIC connection (their last one drained).
async fn no_quic_connections(node: &Node) {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    common::counters_until(node, "no QUIC connections", deadline, |counters| {
        counters.quic_connections == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_link_sends_connect_as_0rtt_and_is_admitted_once_the_handshake_completes() {
    let identity = NodeIdentity::generate().expect("identity");
    let bob_key = identity.peer_key();
    let mut bob = node_with("zero-rtt", "bob", options().with_identity(identity)).await;
    let alice_identity = NodeIdentity::generate().expect("identity");
    let alice_key = alice_identity.peer_key();
    let alice_options = options().with_identity(alice_identity);
    let mut alice = node_with("zero-rtt", "alice", alice_options).await;
    let address = bob.address;

    link_and_close(&mut alice, &mut bob, address).await;
    let (first_alice, first_bob) = (metrics(&alice).await, metrics(&bob).await);
    assert_eq!((first_alice.opened_early, first_bob.opened_early), (0, 0));

    link_and_close(&mut alice, &mut bob, address).await;
    let (alice_metrics, bob_metrics) = (metrics(&alice).await, metrics(&bob).await);
    assert_eq!(alice_metrics.opened_outgoing, 2, "{alice_metrics:?}");
    assert_eq!(alice_metrics.opened_early, 1, "{alice_metrics:?}");
    assert_eq!(alice_metrics.early_rejected, 0, "{alice_metrics:?}");
    assert_eq!(bob_metrics.opened_incoming, 2, "{bob_metrics:?}");
    assert_eq!(bob_metrics.opened_early, 1, "{bob_metrics:?}");
    assert_eq!(bob_metrics.early_unconfirmed, 0, "{bob_metrics:?}");

    // The resumed link reports the key of the session's full handshake: bob's.
    let id = connect_via(&mut alice, &mut bob, "bob", address).await;
    let connections = alice
        .graph
        .enum_connections(ConnectionFlags::DIRECT)
        .await
        .expect("enum");
    let info = connections
        .iter()
        .find(|info| info.connection_id == id)
        .expect("the link");
    assert_eq!(info.peer_key, bob_key, "the resumed link's key");
    let bob_side = bob
        .graph
        .enum_connections(ConnectionFlags::DIRECT)
        .await
        .expect("enum");
    assert_eq!(
        bob_side
            .iter()
            .find(|info| info.connection_id == id)
            .map(|info| info.peer_key),
        Some(alice_key),
        "bob's view of the resumed link's key"
    );
    assert_eq!(metrics(&alice).await.opened_early, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_sessions_refuses_the_0rtt_data_and_the_link_still_opens() {
    let identity = NodeIdentity::generate().expect("identity");
    let mut bob = node_with("zero-rtt", "bob", options().with_identity(identity.clone())).await;
    let mut alice = node_with("zero-rtt", "alice", options()).await;
    let address = bob.address;
    link_and_close(&mut alice, &mut bob, address).await;

    // Bob restarts on the same address with the same key: his sessions are gone, alice's
    // ticket is not.
    within!(bob.graph.close()).expect("close bob");
    drop(bob);
    let mut bob = common::node_at(
        "zero-rtt",
        "bob",
        options().with_identity(identity),
        address,
    )
    .await;

    link_and_close(&mut alice, &mut bob, address).await;
    let (alice_metrics, bob_metrics) = (metrics(&alice).await, metrics(&bob).await);
    assert_eq!(alice_metrics.early_rejected, 1, "{alice_metrics:?}");
    assert_eq!(alice_metrics.opened_early, 0, "{alice_metrics:?}");
    assert_eq!(alice_metrics.opened_outgoing, 2, "{alice_metrics:?}");
    assert_eq!(bob_metrics.opened_incoming, 1, "{bob_metrics:?}");
    assert_eq!(bob_metrics.opened_early, 0, "{bob_metrics:?}");

    // The full handshake gave alice a new ticket: the next link is early again.
    link_and_close(&mut alice, &mut bob, address).await;
    assert_eq!(metrics(&alice).await.opened_early, 1);
    assert_eq!(metrics(&bob).await.opened_early, 1);
}

/// Datagrams with the time each arrived.
type Recorded = Arc<Mutex<Vec<(Instant, Vec<u8>)>>>;

/// A UDP relay in front of a node that can record the first flight of the next link (the
/// client's datagrams up to the node's first answer, and at most [`FLIGHT`] after the
/// first: later ones are retransmissions, or the close of a link that got no answer) and
/// black-hole a link.
struct Tap {
    address: SocketAddr,
    server: SocketAddr,
    recording: Arc<AtomicBool>,
    forwarding: Arc<AtomicBool>,
    flight: Recorded,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Tap {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Tap {
    async fn start(server: SocketAddr) -> Tap {
        let front = Arc::new(
            tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind"),
        );
        let back = Arc::new(
            tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind"),
        );
        let address = front.local_addr().expect("address");
        let recording = Arc::new(AtomicBool::new(false));
        let forwarding = Arc::new(AtomicBool::new(true));
        let flight: Recorded = Arc::default();
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let upstream = {
            let (front, back) = (front.clone(), back.clone());
            let (recording, forwarding, flight, client) = (
                recording.clone(),
                forwarding.clone(),
                flight.clone(),
                client.clone(),
            );
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok((len, sender)) = front.recv_from(&mut buf).await {
                    *client.lock().expect("lock") = Some(sender);
                    if recording.load(Ordering::SeqCst) {
                        let arrived = Instant::now();
                        flight
                            .lock()
                            .expect("lock")
                            .push((arrived, buf[..len].to_vec()));
                    }
                    if forwarding.load(Ordering::SeqCst) {
                        let _ = back.send_to(&buf[..len], server).await;
                    }
                }
            })
        };
        let downstream = {
            let (recording, client) = (recording.clone(), client.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(len) = back.recv(&mut buf).await {
                    // The node answered: the client's first flight is over.
                    recording.store(false, Ordering::SeqCst);
                    let target = *client.lock().expect("lock");
                    if let Some(target) = target {
                        let _ = front.send_to(&buf[..len], target).await;
                    }
                }
            })
        };
        Tap {
            address,
            server,
            recording,
            forwarding,
            flight,
            tasks: vec![upstream, downstream],
        }
    }

    /// Records the next link's first flight (cleared first).
    fn record(&self) {
        self.flight.lock().expect("lock").clear();
        self.recording.store(true, Ordering::SeqCst);
    }

    /// The first flight recorded, recording stopped.
    fn flight(&self) -> Vec<Vec<u8>> {
        self.recording.store(false, Ordering::SeqCst);
        let flight = self.flight.lock().expect("lock");
        let Some((first, _)) = flight.first() else {
            return Vec::new();
        };
        let first = *first;
        flight
            .iter()
            .take_while(|(arrived, _)| arrived.duration_since(first) < FLIGHT)
            .map(|(_, datagram)| datagram.clone())
            .collect()
    }

    /// Sends `flight` to the node from a socket of its own, as an attacker who captured it
    /// would, and keeps the socket open (answers to it go unread).
    async fn replay(&self, flight: &[Vec<u8>]) -> tokio::net::UdpSocket {
        let attacker = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        for datagram in flight {
            attacker
                .send_to(datagram, self.server)
                .await
                .expect("replay");
        }
        attacker
    }
}

/// No CONNECTED for any link but `known` reached `node` so far.
fn assert_no_other_link(node: &mut Node, known: &[ConnectionId]) {
    while let Some(event) = node.events.try_recv() {
        if let GraphEvent::DirectConnection(change) = &event {
            assert!(
                change.status != ConnectionStatus::Connected
                    || known.contains(&change.connection_id),
                "a replay was admitted: {change:?}"
            );
        }
    }
}

/// How long after its first datagram a client's first flight may still send: a client
/// sends its first flight at once, and retransmits only after a probe timeout (a third of
/// a second at least, before any round trip is measured).
const FLIGHT: Duration = Duration::from_millis(100);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_first_flight_whose_ticket_was_used_finds_no_session() {
    let mut bob = node_with("zero-rtt", "bob", options()).await;
    let mut alice = node_with("zero-rtt", "alice", options()).await;
    let tap = Tap::start(bob.address).await;
    let first = link_and_close(&mut alice, &mut bob, tap.address).await;

    // Nothing of the first link may pass the tap while it records.
    no_quic_connections(&alice).await;
    no_quic_connections(&bob).await;
    tap.record();
    let second = link_and_close(&mut alice, &mut bob, tap.address).await;
    let flight = tap.flight();
    assert!(!flight.is_empty(), "the first flight was recorded");
    let before = metrics(&bob).await;
    assert_eq!(before.opened_early, 1, "{before:?}");

    // Once bob has forgotten the link, the flight comes again from elsewhere.
    no_quic_connections(&bob).await;
    let _attacker = tap.replay(&flight).await;
    let after = metrics_until(&bob, "the replay's handshake failed", |metrics| {
        metrics.handshakes_failed > before.handshakes_failed
    })
    .await;
    assert_eq!(after.opened_incoming, before.opened_incoming, "{after:?}");
    assert_eq!(after.opened_early, before.opened_early, "{after:?}");
    assert_eq!(after.early_unconfirmed, 0, "the replay resumed: {after:?}");
    assert_no_other_link(&mut bob, &[first, second]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_first_flight_is_answered_but_never_admitted() {
    let mut bob = node_with("zero-rtt", "bob", options()).await;
    let mut alice = node_with(
        "zero-rtt",
        "alice",
        options().with_connect_timeout(Duration::from_millis(700)),
    )
    .await;
    let tap = Tap::start(bob.address).await;
    let first = link_and_close(&mut alice, &mut bob, tap.address).await;

    // Alice's next first flight is captured and never reaches bob: her open fails, and
    // bob still holds the session her ticket names.
    no_quic_connections(&alice).await;
    no_quic_connections(&bob).await;
    tap.forwarding.store(false, Ordering::SeqCst);
    tap.record();
    let lost = within!(alice.graph.open_direct_connection("bob", tap.address)).expect("open");
    let failed = wait_connection(&mut alice.events, lost, ConnectionStatus::ConnectionFailed).await;
    assert!(matches!(failed, GraphEvent::DirectConnection(_)));
    let flight = tap.flight();
    assert!(!flight.is_empty(), "the first flight was recorded");
    let before = metrics(&bob).await;

    // Replayed: bob resumes the session, reads the CONNECT and answers it, but the
    // handshake never completes, so nothing is admitted.
    let _attacker = tap.replay(&flight).await;
    let after = metrics_until(&bob, "the replay was dropped", |metrics| {
        metrics.early_unconfirmed > before.early_unconfirmed
    })
    .await;
    assert_eq!(after.early_unconfirmed, 1, "{after:?}");
    assert_eq!(after.opened_incoming, before.opened_incoming, "{after:?}");
    assert_eq!(after.opened_early, 0, "{after:?}");
    let counters = bob.graph.counters().await.expect("counters");
    assert_eq!(counters.connections, 0, "{counters:?}");
    assert_no_other_link(&mut bob, &[first]);

    // Replayed again: the ticket is single-use, so there is no session left to resume.
    no_quic_connections(&bob).await;
    let _attacker = tap.replay(&flight).await;
    let again = metrics_until(&bob, "the second replay failed", |metrics| {
        metrics.handshakes_failed > after.handshakes_failed
    })
    .await;
    assert_eq!(
        again.early_unconfirmed, 1,
        "the session resumed twice: {again:?}"
    );
    assert_eq!(again.opened_incoming, before.opened_incoming, "{again:?}");
    assert_no_other_link(&mut bob, &[first]);

    // Alice's lost attempt used her ticket: her next link is a full handshake, which
    // brings her one, and the one after it is early again.
    tap.forwarding.store(true, Ordering::SeqCst);
    link_and_close(&mut alice, &mut bob, tap.address).await;
    assert_eq!(metrics(&alice).await.opened_early, 0);
    link_and_close(&mut alice, &mut bob, tap.address).await;
    assert_eq!(metrics(&alice).await.opened_early, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_key_that_does_not_match_gets_no_connect() {
    let identity = NodeIdentity::generate().expect("identity");
    let key = identity.peer_key();
    let mut bob = node_with("zero-rtt", "bob", options().with_identity(identity)).await;
    let mut alice = node_with("zero-rtt", "alice", options()).await;
    let address = bob.address;
    link_and_close(&mut alice, &mut bob, address).await;
    let before = metrics(&bob).await;

    // Alice holds a ticket for bob's plain address; pinned to another key she dials under
    // another ticket name, holds none there, and checks the key before CONNECT.
    let other: PeerKey = NodeIdentity::generate().expect("identity").peer_key();
    let id = within!(alice
        .graph
        .open_direct_connection_pinned("bob", address, other))
    .expect("open");
    assert_eq!(
        failure_of(&mut alice, id).await,
        Some(ResultCode::PEER_E_CONNECTION_NOT_AUTHENTICATED)
    );
    // Bob saw a handshake and no CONNECT.
    let after = metrics_until(&bob, "bob saw the handshake end", |metrics| {
        metrics.handshakes_failed > before.handshakes_failed
    })
    .await;
    assert_eq!(after.opened_incoming, before.opened_incoming, "{after:?}");
    assert_eq!(after.opened_early, 0, "{after:?}");

    // Pinned to bob's own key, the ticket made under the plain address is not used either
    // (tickets are kept per address and pinned key), but the link opens and gives one.
    for round in 0..2 {
        let id = within!(alice
            .graph
            .open_direct_connection_pinned("bob", address, key))
        .expect("open");
        wait_connection(&mut alice.events, id, ConnectionStatus::Connected).await;
        wait_connection(&mut bob.events, id, ConnectionStatus::Connected).await;
        within!(alice.graph.close_direct_connection(id)).expect("close");
        wait_connection(&mut bob.events, id, ConnectionStatus::Disconnected).await;
        assert_eq!(metrics(&alice).await.opened_early, round, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_with_a_secret_sends_no_connect_early() {
    let secret = GraphSecret::new(b"a secret long enough for the graph".to_vec()).expect("secret");
    let with_secret = || options().with_secret(secret.clone());
    let mut bob = node_with("zero-rtt", "bob", with_secret()).await;
    let mut alice = node_with("zero-rtt", "alice", with_secret()).await;
    let address = bob.address;
    for _ in 0..3 {
        link_and_close(&mut alice, &mut bob, address).await;
    }
    let (alice_metrics, bob_metrics) = (metrics(&alice).await, metrics(&bob).await);
    assert_eq!(alice_metrics.opened_outgoing, 3, "{alice_metrics:?}");
    assert_eq!(alice_metrics.opened_early, 0, "{alice_metrics:?}");
    assert_eq!(bob_metrics.opened_early, 0, "{bob_metrics:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_zero_rtt_off_every_link_is_a_full_handshake() {
    let off = || options().with_zero_rtt(false);
    let mut bob = node_with("zero-rtt", "bob", off()).await;
    let mut alice = node_with("zero-rtt", "alice", options()).await;
    let address = bob.address;
    for _ in 0..3 {
        link_and_close(&mut alice, &mut bob, address).await;
    }
    assert_eq!(metrics(&alice).await.opened_early, 0);
    assert_eq!(metrics(&bob).await.opened_early, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_fails_the_allow_list_gets_no_connect_and_its_tickets_are_forgotten() {
    // Alice admits only bob's first key.
    let first = NodeIdentity::generate().expect("identity");
    let alice_options = options().with_allowed_peer(first.peer_key(), "bob".parse().expect("id"));
    let mut alice = node_with("zero-rtt", "alice", alice_options).await;
    let mut bob = node_with("zero-rtt", "bob", options().with_identity(first)).await;
    let address = bob.address;
    link_and_close(&mut alice, &mut bob, address).await;
    within!(bob.graph.close()).expect("close bob");
    drop(bob);

    // Another node takes the address. Alice's tickets name the first key, which passes
    // her checks, so CONNECT goes as 0-RTT data: only the first key's node could read it,
    // and this one refuses it. The full handshake then shows a key alice does not admit.
    let mut other = common::node_at("zero-rtt", "bob", options(), address).await;
    for attempt in 0..2 {
        let id = within!(alice.graph.open_direct_connection("bob", address)).expect("open");
        assert_eq!(
            failure_of(&mut alice, id).await,
            Some(ResultCode::PEER_E_NOT_AUTHORIZED),
            "attempt {attempt}"
        );
        // The tickets went with the first failure: the second attempt offers none.
        assert_eq!(metrics(&alice).await.early_rejected, 1, "attempt {attempt}");
    }
    let seen = metrics_until(
        &other,
        "the other node saw both handshakes end",
        |metrics| metrics.handshakes_failed >= 2,
    )
    .await;
    assert_eq!(seen.opened_incoming, 0, "{seen:?}");
    assert_no_other_link(&mut other, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_goes_early_only_to_a_node_the_allow_list_admits_for_that_peer_id() {
    // Alice's allow-list says this key is "bob"; its node calls itself "carol".
    let identity = NodeIdentity::generate().expect("identity");
    let alice_options =
        options().with_allowed_peer(identity.peer_key(), "bob".parse().expect("id"));
    let mut alice = node_with("zero-rtt", "alice", alice_options).await;
    let mut carol = node_with("zero-rtt", "carol", options().with_identity(identity)).await;
    let address = carol.address;

    // As "bob" it passes alice's checks, and refuses: it is not bob. Alice now holds
    // tickets for the address.
    let id = within!(alice.graph.open_direct_connection("bob", address)).expect("open");
    assert_eq!(
        failure_of(&mut alice, id).await,
        Some(ResultCode::PEER_E_CONNECTION_NOT_AUTHENTICATED)
    );
    let before = metrics_until(&carol, "carol refused", |metrics| {
        metrics.refused.iter().map(|(_, count)| count).sum::<u64>() == 1
    })
    .await;

    // As "carol" the key fails alice's allow-list: no CONNECT may go, early or not.
    let id = within!(alice.graph.open_direct_connection("carol", address)).expect("open");
    assert_eq!(
        failure_of(&mut alice, id).await,
        Some(ResultCode::PEER_E_CONNECTION_NOT_AUTHENTICATED)
    );
    let after = metrics_until(&carol, "carol saw the handshake end", |metrics| {
        metrics.handshakes_failed > before.handshakes_failed
    })
    .await;
    assert_eq!(after.opened_incoming, 0, "{after:?}");
    assert_eq!(after.early_unconfirmed, 0, "{after:?}");
    assert_eq!(
        after.refused.iter().map(|(_, count)| count).sum::<u64>(),
        1,
        "a second CONNECT reached carol: {after:?}"
    );
    assert_eq!(metrics(&alice).await.opened_early, 0);
    assert_no_other_link(&mut carol, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_endpoint_drops_its_sessions_and_the_next_link_falls_back() {
    // Bob renews his endpoint as soon as a link has come and gone.
    let renewing = options().with_renew_endpoints_after(1);
    let mut bob = node_with("zero-rtt", "bob", renewing).await;
    let mut alice = node_with("zero-rtt", "alice", options()).await;
    let address = bob.address;
    link_and_close(&mut alice, &mut bob, address).await;
    let deadline = Instant::now() + EVENT_TIMEOUT;
    common::counters_until(&bob, "bob renewed his endpoint", deadline, |counters| {
        counters.endpoint_renewals >= 1
    })
    .await;

    // Alice's ticket names a session bob no longer has.
    link_and_close(&mut alice, &mut bob, address).await;
    let alice_metrics = metrics(&alice).await;
    assert_eq!(alice_metrics.early_rejected, 1, "{alice_metrics:?}");
    assert_eq!(alice_metrics.opened_early, 0, "{alice_metrics:?}");
    assert_eq!(alice_metrics.opened_outgoing, 2, "{alice_metrics:?}");
}

/// A node that keeps as many links in their handshake as the other node allows one source
/// (8 by default), counting one done at its CONNECTED, is never refused: with 0-RTT it
/// reports CONNECTED half a round trip before the other node has its Finished, and a
/// welcomed link no longer counts against its source there (it still counts in the graph's
/// total until its handshake completes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_of_the_per_source_bound_is_never_refused_with_0rtt() {
    const LINKS: usize = 300;
    let window = peergraph::DEFAULT_MAX_PENDING_HANDSHAKES_PER_SOURCE;
    let mut bob = node_with("zero-rtt", "bob", options()).await;
    let mut alice = node_with("zero-rtt", "alice", options()).await;
    let address = bob.address;
    // The first link brings a ticket; each resumed handshake brings the next.
    link_and_close(&mut alice, &mut bob, address).await;
    let (mut opened, mut connected) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while connected < LINKS {
        assert!(
            Instant::now() < deadline,
            "{connected} of {LINKS} links in 60 s"
        );
        while opened < LINKS && opened - connected < window {
            alice
                .graph
                .open_direct_connection("bob", address)
                .await
                .expect("open");
            opened += 1;
        }
        let event = within!(alice.events.recv()).expect("events");
        if let GraphEvent::DirectConnection(change) = event {
            match change.status {
                ConnectionStatus::Connected => connected += 1,
                ConnectionStatus::ConnectionFailed => panic!(
                    "refused after {connected} of {LINKS}: {:?}",
                    change.failure_reason
                ),
                ConnectionStatus::Disconnected => {}
            }
        }
    }
    let alice_metrics = metrics(&alice).await;
    assert!(alice_metrics.opened_early > 0, "{alice_metrics:?}");
}
