//! Helpers shared by the integration tests: nodes on loopback and waiting for events.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use peergraph::{
    ConnectionId, ConnectionStatus, Engine, EngineConfig, EventRegistration, EventStream,
    EventType, Graph, GraphCounters, GraphEvent, GraphId, GraphOptions, GraphProperties, PeerError,
    PeerId, ResultCode, Version,
};

/// The longest any test waits for one event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Awaits one call, bounded by [`EVENT_TIMEOUT`], so that a call that hangs fails the test
/// instead of stalling it. (Test files that use it declare `#[macro_use] mod common;`.)
#[allow(unused_macros)]
macro_rules! within {
    ($call:expr) => {
        tokio::time::timeout(common::EVENT_TIMEOUT, $call)
            .await
            .unwrap_or_else(|_| panic!("timed out: {}", stringify!($call)))
    };
}

/// A call's outcome reduced to its code: `Ok(())` or `Err(code)`.
pub fn code<T>(result: Result<T, PeerError>) -> Result<(), ResultCode> {
    result.map(drop).map_err(|e| e.code())
}

/// A raw QUIC connection from `endpoint` to `address`: the TLS handshake and nothing more,
/// bounded by [`EVENT_TIMEOUT`].
pub async fn quic_connect(
    endpoint: &quinn::Endpoint,
    address: SocketAddr,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let connecting = endpoint
        .connect(address, peergraph_transport::SERVER_NAME)
        .expect("connect");
    tokio::time::timeout(EVENT_TIMEOUT, connecting)
        .await
        .expect("the handshake ends in time")
}

/// The next frame a raw peer reads from its control stream, bounded by [`EVENT_TIMEOUT`]:
/// `Ok(None)` at the end of the stream.
pub async fn next_frame(
    reader: &mut peergraph_transport::FrameReader,
) -> Result<Option<peergraph_engine::wire::Message>, peergraph_transport::ReadFrameError> {
    tokio::time::timeout(EVENT_TIMEOUT, reader.read())
        .await
        .expect("a frame in time")
}

/// A started engine with one worker thread.
pub fn engine() -> Engine {
    let engine = Engine::with_config(EngineConfig { workers: Some(1) }).expect("engine");
    engine.startup(Version::V1_0).expect("startup");
    engine
}

/// One node of graph `graph_id` on its own engine.
pub struct Node {
    pub engine: Engine,
    pub graph: Graph,
    pub events: EventStream,
    pub address: SocketAddr,
}

/// Every event type the tests watch.
pub fn all_events() -> Vec<EventRegistration> {
    vec![
        EventRegistration::new(EventType::DirectConnection),
        EventRegistration::new(EventType::IncomingData),
        EventRegistration::new(EventType::StatusChanged),
    ]
}

/// A node that listens on 127.0.0.1 and accepts direct connections.
pub async fn node(graph_id: &str, peer_id: &str) -> Node {
    node_with(graph_id, peer_id, GraphOptions::default()).await
}

pub async fn node_with(graph_id: &str, peer_id: &str, options: GraphOptions) -> Node {
    node_at(
        graph_id,
        peer_id,
        options,
        "127.0.0.1:0".parse().expect("address"),
    )
    .await
}

/// A node like [`node_with`]'s, listening at `address`.
pub async fn node_at(
    graph_id: &str,
    peer_id: &str,
    options: GraphOptions,
    address: SocketAddr,
) -> Node {
    let engine = engine();
    let properties = GraphProperties::new(
        GraphId::new(graph_id).expect("graph id"),
        PeerId::new(peer_id).expect("peer id"),
    );
    let graph = engine.create_graph(properties, options).expect("create");
    let events = graph.register_event(all_events()).await.expect("register");
    let address = graph.listen(address).await.expect("listen");
    Node {
        engine,
        graph,
        events,
        address,
    }
}

/// Waits (bounded) for the first event matching `pred`, skipping others.
pub async fn wait_for(
    events: &mut EventStream,
    what: &str,
    mut pred: impl FnMut(&GraphEvent) -> bool,
) -> GraphEvent {
    let found = tokio::time::timeout(EVENT_TIMEOUT, async {
        while let Some(event) = events.recv().await {
            if pred(&event) {
                return Some(event);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(event)) => event,
        Ok(None) => panic!("event stream ended while waiting for {what}"),
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Waits for a DIRECT_CONNECTION event with `status` for `id`.
pub async fn wait_connection(
    events: &mut EventStream,
    id: ConnectionId,
    status: ConnectionStatus,
) -> GraphEvent {
    wait_for(events, &format!("{status:?} for {id}"), |event| {
        matches!(event, GraphEvent::DirectConnection(change)
            if change.connection_id == id && change.status == status)
    })
    .await
}

/// Opens a direct connection from `from` to `to` and waits until both sides report it.
pub async fn connect(from: &mut Node, to: &mut Node, to_peer: &str) -> ConnectionId {
    let address = to.address;
    connect_via(from, to, to_peer, address).await
}

/// Like [`connect`], but dials `address` (a relay in front of `to`) instead of `to`'s own.
pub async fn connect_via(
    from: &mut Node,
    to: &mut Node,
    to_peer: &str,
    address: SocketAddr,
) -> ConnectionId {
    let id = from
        .graph
        .open_direct_connection(to_peer, address)
        .await
        .expect("open");
    wait_connection(&mut from.events, id, ConnectionStatus::Connected).await;
    wait_connection(&mut to.events, id, ConnectionStatus::Connected).await;
    id
}

/// Waits (bounded) until `connection` is closed by the other side and checks that it was
/// closed with the application close `code` (one of `peergraph_engine::wire::close_code`).
pub async fn expect_closed_with(connection: &quinn::Connection, code: u32) {
    let closed = tokio::time::timeout(EVENT_TIMEOUT, connection.closed())
        .await
        .expect("the link is closed in time");
    assert!(
        matches!(&closed, quinn::ConnectionError::ApplicationClosed(close)
            if close.error_code == code.into()),
        "expected close code {code:#x}, closed with {closed:?}"
    );
}

/// Polls `node`'s counters until `done` holds (quinn emits no event when it frees a link),
/// bounded by `deadline`, and returns them.
pub async fn counters_until(
    node: &Node,
    what: &str,
    deadline: std::time::Instant,
    mut done: impl FnMut(&GraphCounters) -> bool,
) -> GraphCounters {
    loop {
        let counters = node.graph.counters().await.expect("counters");
        if done(&counters) {
            return counters;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out: {what} ({counters:?})"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls `condition` until true, bounded by `EVENT_TIMEOUT` (for counters that have no
/// event of their own).
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How a [`Relay`] mistreats datagrams, each way.
#[derive(Clone, Copy, Debug)]
pub struct Impairment {
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// Probability that a datagram is sent twice.
    pub duplicate: f64,
    /// Probability that a datagram is held back an extra `delay / 2` (and so reordered).
    pub reorder: f64,
    /// Delay added to every datagram.
    pub delay: Duration,
}

impl Impairment {
    /// A perfect link.
    pub const NONE: Impairment = Impairment {
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        delay: Duration::ZERO,
    };
}

/// Datagrams a [`Relay`] holds back at once, each way; past it, a datagram is dropped, as
/// a router with a full queue drops it.
pub const RELAY_QUEUE: usize = 8192;

/// A seeded, lossy UDP relay between one client and one server address, written for the
/// tests (the kernel here has no netem, and this needs no privileges). It can also stop
/// forwarding altogether, to partition the two sides. Delayed datagrams wait in a queue of
/// at most [`RELAY_QUEUE`] each way.
pub struct Relay {
    /// Where clients send to reach the server.
    pub address: SocketAddr,
    /// Cleared to drop everything (a partition); set to forward again.
    pub forwarding: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct Dice(u64);

impl Dice {
    fn roll(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Relay {
    /// A relay to `server` that treats traffic per `impairment`, seeded with `seed`.
    pub async fn start(server: SocketAddr, impairment: Impairment, seed: u64) -> Relay {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let front = Arc::new(
            tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("relay socket"),
        );
        let back = Arc::new(
            tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("relay socket"),
        );
        let address = front.local_addr().expect("relay address");
        let forwarding = Arc::new(AtomicBool::new(true));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let dice = Arc::new(Mutex::new(Dice(seed | 1)));
        let mut tasks = Vec::new();
        for upstream in [true, false] {
            let (from, to) = if upstream {
                (front.clone(), back.clone())
            } else {
                (back.clone(), front.clone())
            };
            let (forwarding, client, dice) = (forwarding.clone(), client.clone(), dice.clone());
            let queue = Arc::new(tokio::sync::Semaphore::new(RELAY_QUEUE));
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok((len, sender)) = from.recv_from(&mut buf).await {
                    let target = if upstream {
                        *client.lock().expect("lock") = Some(sender);
                        Some(server)
                    } else {
                        *client.lock().expect("lock")
                    };
                    let Some(target) = target else { continue };
                    if !forwarding.load(Ordering::Relaxed) {
                        continue;
                    }
                    let (drop, copies, extra) = {
                        let mut dice = dice.lock().expect("lock");
                        let drop = dice.roll() < impairment.loss;
                        let copies = if dice.roll() < impairment.duplicate {
                            2
                        } else {
                            1
                        };
                        let extra = dice.roll() < impairment.reorder;
                        (drop, copies, extra)
                    };
                    if drop {
                        continue;
                    }
                    let delay = impairment.delay
                        + if extra {
                            impairment.delay / 2
                        } else {
                            Duration::ZERO
                        };
                    let datagram = buf[..len].to_vec();
                    let to = to.clone();
                    if delay.is_zero() {
                        for _ in 0..copies {
                            let _ = to.send_to(&datagram, target).await;
                        }
                    } else if let Ok(place) = queue.clone().try_acquire_owned() {
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            for _ in 0..copies {
                                let _ = to.send_to(&datagram, target).await;
                            }
                            std::mem::drop(place);
                        });
                    }
                }
            }));
        }
        Relay {
            address,
            forwarding,
            tasks,
        }
    }
}
