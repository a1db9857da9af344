//! Helpers shared by the integration tests: nodes on loopback and waiting for events.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use peergraph::{
    ConnectionId, ConnectionStatus, Engine, EngineConfig, EventRegistration, EventStream,
    EventType, Graph, GraphEvent, GraphId, GraphOptions, GraphProperties, PeerId, Version,
};

/// The longest any test waits for one event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

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
    let engine = engine();
    let properties = GraphProperties::new(
        GraphId::new(graph_id).expect("graph id"),
        PeerId::new(peer_id).expect("peer id"),
    );
    let graph = engine.create_graph(properties, options).expect("create");
    let events = graph.register_event(all_events()).await.expect("register");
    let address = graph
        .listen("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("listen");
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
    let id = from
        .graph
        .open_direct_connection(to_peer, to.address)
        .await
        .expect("open");
    wait_connection(&mut from.events, id, ConnectionStatus::Connected).await;
    wait_connection(&mut to.events, id, ConnectionStatus::Connected).await;
    id
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
