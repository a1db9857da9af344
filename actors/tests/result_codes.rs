//! Every result code the implemented calls return, provoked over loopback QUIC and checked
//! exactly: the lifecycle codes (NOT_INITIALIZED, UNSUPPORTED_VERSION, INVALID_GRAPH,
//! DUPLICATE_GRAPH, GRAPH_DATA_CREATED, GRAPH_NOT_READY), the argument and address codes,
//! the lookup codes (NODE_NOT_FOUND, CONNECTION_NOT_FOUND), and the reasons a
//! DIRECT_CONNECTION CONNECTION_FAILED event gives.

#[macro_use]
mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use peergraph::{
    reply, CloseDirectConnection, CloseGraph, ConnectionChange, ConnectionFlags, ConnectionId,
    ConnectionStatus, DataType, Engine, EngineConfig, EnumConnections, EventHandle,
    EventRegistration, EventStream, EventType, GetStatus, Graph, GraphEvent, GraphHandle, GraphId,
    GraphOptions, GraphProperties, GraphStatus, NodeId, PeerId, QueueLimits, ResultCode, SendData,
    Version, VersionData, MAX_DATA_LEN,
};

const DATA: DataType = DataType::from_u128(0xDA7A);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

fn properties(graph_id: &str, peer_id: &str) -> GraphProperties {
    GraphProperties::new(
        GraphId::new(graph_id).expect("graph id"),
        PeerId::new(peer_id).expect("peer id"),
    )
}

/// Checks that every call on `graph` that takes the graph's own state answers `expected`
/// (the registration named is this graph's). The callers add the calls that differ.
async fn every_graph_call_answers(graph: &Graph, registration: EventHandle, expected: ResultCode) {
    let want: Result<(), ResultCode> = Err(expected);
    assert_eq!(code(within!(graph.listen(loopback()))), want, "listen");
    let somewhere: SocketAddr = "127.0.0.1:9".parse().expect("address");
    assert_eq!(
        code(within!(graph.open_direct_connection("bob", somewhere))),
        want,
        "open_direct_connection"
    );
    assert_eq!(
        code(within!(graph.send_data(
            ConnectionId::new(1).expect("id"),
            DATA,
            Bytes::from_static(b"x")
        ))),
        want,
        "send_data"
    );
    assert_eq!(
        code(within!(
            graph.close_direct_connection(ConnectionId::new(1).expect("id"))
        )),
        want,
        "close_direct_connection"
    );
    assert_eq!(
        code(within!(graph.enum_connections(ConnectionFlags::DIRECT))),
        want,
        "enum_connections"
    );
    assert_eq!(code(within!(graph.node_info(None))), want, "node_info");
    assert_eq!(code(within!(graph.status())), want, "status");
    assert_eq!(code(within!(graph.counters())), want, "counters");
    assert_eq!(
        code(within!(graph.register_event(all_events()))),
        want,
        "register_event"
    );
    assert_eq!(
        code(within!(
            graph.register_event_with(all_events(), QueueLimits::default())
        )),
        want,
        "register_event_with"
    );
    assert_eq!(
        code(within!(graph.unregister_event(registration))),
        want,
        "unregister_event"
    );
}

/// An engine that has not been started.
fn unstarted_engine() -> Engine {
    Engine::with_config(EngineConfig { workers: Some(1) }).expect("engine")
}

/// A graph created on a started engine, with no event registration and no listener.
fn bare_graph(graph_id: &str, peer_id: &str, options: GraphOptions) -> Graph {
    engine()
        .create_graph(properties(graph_id, peer_id), options)
        .expect("create")
}

/// Waits for the first DIRECT_CONNECTION event of connection `id`, whatever its status.
async fn outcome(events: &mut EventStream, id: ConnectionId) -> ConnectionChange {
    match wait_for(
        events,
        &format!("the outcome of {id}"),
        |event| matches!(event, GraphEvent::DirectConnection(change) if change.connection_id == id),
    )
    .await
    {
        GraphEvent::DirectConnection(change) => *change,
        other => unreachable!("wait_for returned {other:?}"),
    }
}

/// Opens a direct connection from `from` and expects it to fail with `reason`, whose
/// cause says `says`.
async fn expect_failure(
    from: &mut Node,
    peer_id: &str,
    address: SocketAddr,
    reason: ResultCode,
    says: &str,
) {
    let id = within!(from.graph.open_direct_connection(peer_id, address)).expect("open");
    let change = outcome(&mut from.events, id).await;
    assert_eq!(
        change,
        ConnectionChange {
            status: ConnectionStatus::ConnectionFailed,
            connection_id: id,
            node_id: None,
            peer_id: PeerId::new(peer_id).expect("peer id"),
            failure_reason: Some(peergraph::PeerError::new(reason)),
        }
    );
    let shown = change.failure_reason.expect("a reason").to_string();
    assert!(
        shown.contains(says),
        "the reason says why ({says}): {shown}"
    );
    let counters = within!(from.graph.counters()).expect("counters");
    assert_eq!(
        counters.connections, 0,
        "a failed attempt leaves no connection"
    );
    assert_eq!(counters.pending_outgoing, 0, "nor a pending attempt");
}

/// Reads a stream until it ends (bounded); panics if it does not end.
async fn expect_end(events: &mut EventStream) {
    within!(async { while let Some(_queued) = events.recv().await {} });
}

// --- PEER_E_NOT_INITIALIZED ---------------------------------------------------------------

#[tokio::test]
async fn not_initialized_before_startup() {
    let engine = unstarted_engine();
    assert!(!engine.is_initialized());
    assert_eq!(
        code(engine.create_graph(properties("g", "alice"), GraphOptions::default())),
        Err(ResultCode::PEER_E_NOT_INITIALIZED)
    );
    assert_eq!(
        code(engine.open_graph("g", "alice", GraphOptions::default())),
        Err(ResultCode::PEER_E_NOT_INITIALIZED)
    );
    let handle = GraphHandle::new(1).expect("nonzero");
    assert_eq!(
        code(engine.graph(handle)),
        Err(ResultCode::PEER_E_NOT_INITIALIZED)
    );
    assert_eq!(
        code(within!(engine.shutdown())),
        Err(ResultCode::PEER_E_NOT_INITIALIZED),
        "shutdown without startup"
    );
    assert_eq!(engine.graph_count(), 0);
}

#[tokio::test]
async fn not_initialized_on_every_call_after_the_last_shutdown() {
    let mut alice = node("lifecycle", "alice").await;
    let registration = alice.events.handle();
    let handle = alice.graph.handle();
    within!(alice.engine.shutdown()).expect("shutdown");
    assert!(!alice.engine.is_initialized());

    const NI: Result<(), ResultCode> = Err(ResultCode::PEER_E_NOT_INITIALIZED);
    let graph = &alice.graph;
    every_graph_call_answers(graph, registration, ResultCode::PEER_E_NOT_INITIALIZED).await;
    assert_eq!(code(within!(graph.close())), NI, "close");
    // The actix path answers the same.
    assert_eq!(
        code(reply(within!(graph.addr().send(GetStatus)))),
        NI,
        "GetStatus message"
    );
    assert_eq!(code(alice.engine.graph(handle)), NI, "engine.graph");
    assert_eq!(
        code(
            alice
                .engine
                .create_graph(properties("other", "alice"), GraphOptions::default())
        ),
        NI,
        "create_graph"
    );
    assert_eq!(
        code(within!(alice.engine.shutdown())),
        NI,
        "second shutdown"
    );
    // The last shutdown ended the registration.
    expect_end(&mut alice.events).await;
}

#[tokio::test]
async fn startup_is_reference_counted_and_the_last_shutdown_closes_the_graphs() {
    let mut alice = node("refcount", "alice").await;
    let mut bob = node("refcount", "bob").await;
    let data = alice.engine.startup(Version::V1_0).expect("second startup");
    assert_eq!(data.version, Version::V1_0);
    let id = connect(&mut alice, &mut bob, "bob").await;

    within!(alice.engine.shutdown()).expect("first shutdown");
    assert!(
        alice.engine.is_initialized(),
        "one startup is still counted"
    );
    assert_eq!(alice.engine.graph_count(), 1);
    let status = within!(alice.graph.status()).expect("status after one shutdown");
    assert!(status.contains(GraphStatus::HAS_CONNECTIONS));
    within!(alice
        .graph
        .send_data(id, DATA, Bytes::from_static(b"still here")))
    .expect("send");
    wait_for(&mut bob.events, "data after the first shutdown", |event| {
        matches!(event, GraphEvent::IncomingData { connection_id, .. } if *connection_id == id)
    })
    .await;

    within!(alice.engine.shutdown()).expect("second shutdown");
    assert!(!alice.engine.is_initialized());
    assert_eq!(alice.engine.graph_count(), 0, "the graphs are closed");
    wait_connection(&mut bob.events, id, ConnectionStatus::Disconnected).await;
    expect_end(&mut alice.events).await;
    assert_eq!(
        code(within!(alice.engine.shutdown())),
        Err(ResultCode::PEER_E_NOT_INITIALIZED)
    );

    // After a new startup the old handle stays invalid, and its graph id is free again.
    alice.engine.startup(Version::V1_0).expect("startup again");
    assert_eq!(
        code(within!(alice.graph.status())),
        Err(ResultCode::PEER_E_INVALID_GRAPH)
    );
    assert_eq!(
        code(alice.engine.graph(alice.graph.handle())),
        Err(ResultCode::PEER_E_INVALID_GRAPH)
    );
    let again = alice
        .engine
        .create_graph(properties("refcount", "alice"), GraphOptions::default())
        .expect("the graph id is free after the last shutdown");
    within!(again.close()).expect("close");
}

// --- PEER_E_UNSUPPORTED_VERSION -----------------------------------------------------------

#[tokio::test]
async fn unsupported_version() {
    let engine = unstarted_engine();
    assert_eq!(
        code(engine.startup(Version::new(0, 9))),
        Err(ResultCode::PEER_E_UNSUPPORTED_VERSION)
    );
    assert!(!engine.is_initialized(), "a refused startup is not counted");
    assert_eq!(
        code(within!(engine.shutdown())),
        Err(ResultCode::PEER_E_NOT_INITIALIZED)
    );
    let one = VersionData {
        version: Version::V1_0,
        highest_version: Version::V1_0,
    };
    assert_eq!(
        engine.startup(Version::new(2, 0)),
        Ok(one),
        "2.0 is served as 1.0"
    );
    assert_eq!(engine.startup(Version::V1_0), Ok(one));
    within!(engine.shutdown()).expect("shutdown 1 of 2");
    assert!(engine.is_initialized());
    within!(engine.shutdown()).expect("shutdown 2 of 2");
    assert!(!engine.is_initialized());
}

// --- PEER_E_INVALID_GRAPH -----------------------------------------------------------------

#[tokio::test]
async fn invalid_graph_on_every_call_after_close() {
    let mut alice = node("closing", "alice").await;
    let registration = alice.events.handle();
    let handle = alice.graph.handle();
    let same = alice
        .engine
        .graph(handle)
        .expect("the handle names an open graph");
    assert_eq!(same.handle(), handle);
    within!(same.status()).expect("and works from the table");
    within!(alice.graph.close()).expect("close");
    assert!(alice.engine.is_initialized());
    assert_eq!(alice.engine.graph_count(), 0);

    const IG: Result<(), ResultCode> = Err(ResultCode::PEER_E_INVALID_GRAPH);
    let graph = &alice.graph;
    every_graph_call_answers(graph, registration, ResultCode::PEER_E_INVALID_GRAPH).await;
    assert_eq!(code(within!(graph.close())), IG, "close twice");
    assert_eq!(code(alice.engine.graph(handle)), IG, "engine.graph");

    // The actix path: the actor still runs (this Graph holds its address) and answers
    // INVALID_GRAPH itself.
    let addr = graph.addr();
    assert_eq!(
        code(reply(within!(addr.send(CloseDirectConnection {
            connection_id: ConnectionId::new(1).expect("id")
        })))),
        IG,
        "CloseDirectConnection message"
    );
    assert_eq!(
        code(reply(within!(addr.send(SendData {
            connection_id: ConnectionId::new(1).expect("id"),
            data_type: DATA,
            data: Bytes::from_static(b"x"),
        })))),
        IG,
        "SendData message"
    );
    assert_eq!(
        code(reply(within!(addr.send(GetStatus)))),
        IG,
        "GetStatus message"
    );
    assert_eq!(
        code(reply(within!(addr.send(CloseGraph)))),
        IG,
        "CloseGraph message"
    );
    expect_end(&mut alice.events).await;
}

// --- E_INVALIDARG -------------------------------------------------------------------------

#[test]
fn invalid_ids() {
    const IA: Result<(), ResultCode> = Err(ResultCode::E_INVALIDARG);
    let long = "x".repeat(257);
    assert_eq!(code(GraphId::new("")), IA);
    assert_eq!(code(GraphId::new(long.as_str())), IA);
    assert_eq!(code(GraphId::new("x".repeat(256))), Ok(()));
    assert_eq!(code(PeerId::new("")), IA);
    assert_eq!(code(PeerId::new(long.as_str())), IA);
    assert_eq!(code(PeerId::new("x".repeat(256))), Ok(()));
    assert_eq!(code(ConnectionId::new(0)), IA);
}

#[tokio::test]
async fn invalid_graph_properties_and_options() {
    const IA: Result<(), ResultCode> = Err(ResultCode::E_INVALIDARG);
    let engine = engine();
    let long = "x".repeat(257);
    let create = |properties: GraphProperties, options: GraphOptions| {
        code(engine.create_graph(properties, options))
    };
    let defaults = GraphOptions::default;

    assert_eq!(
        create(
            properties("props", "alice").with_friendly_name(long.as_str()),
            defaults()
        ),
        IA,
        "friendly name of 257 characters"
    );
    assert_eq!(
        create(
            properties("props", "alice").with_max_record_size(1023),
            defaults()
        ),
        IA,
        "max_record_size 1023"
    );
    assert_eq!(
        create(
            properties("props", "alice").with_max_record_size(60 * 1024 * 1024 + 1),
            defaults()
        ),
        IA,
        "max_record_size over 60 MB"
    );
    assert_eq!(
        create(
            properties("props", "alice"),
            defaults().with_close_timeout(Duration::ZERO)
        ),
        IA,
        "zero close timeout"
    );
    assert_eq!(
        create(
            properties("props", "alice"),
            defaults().with_connect_timeout(Duration::ZERO)
        ),
        IA,
        "zero connect timeout"
    );
    assert_eq!(
        create(
            properties("props", "alice"),
            defaults().with_idle_timeout(Duration::from_millis(99))
        ),
        IA,
        "idle timeout below 100 ms"
    );
    assert_eq!(
        create(
            properties("props", "alice"),
            defaults().with_connection_limits(0, 1)
        ),
        IA,
        "no connections allowed"
    );
    assert_eq!(
        create(
            properties("props", "alice"),
            defaults().with_connection_limits(1, 0)
        ),
        IA,
        "no connections per node allowed"
    );
    let mut no_handshakes = defaults();
    no_handshakes.max_pending_handshakes = 0;
    assert_eq!(
        create(properties("props", "alice"), no_handshakes),
        IA,
        "no handshakes allowed"
    );
    assert_eq!(
        create(
            properties("props", "alice"),
            defaults().with_handshake_limits(128, 0)
        ),
        IA,
        "no handshakes per source allowed"
    );
    assert_eq!(
        create(
            properties("props", "alice"),
            defaults().with_tls_handshake_timeout(Duration::ZERO)
        ),
        IA,
        "zero TLS handshake timeout"
    );
    assert_eq!(
        create(
            properties("props", "alice"),
            defaults().with_renew_endpoints_after(0)
        ),
        IA,
        "endpoints renewed after a peak of no links"
    );
    assert_eq!(
        code(engine.open_graph("", "alice", defaults())),
        IA,
        "open with an empty graph id"
    );
    assert_eq!(
        code(engine.open_graph("props", &long, defaults())),
        IA,
        "open with a 257-character peer id"
    );
    assert_eq!(
        engine.graph_count(),
        0,
        "no refused call left a graph behind"
    );

    // The limits themselves are accepted, and no refused call reserved the graph id.
    let graph = engine
        .create_graph(
            properties("props", "alice")
                .with_friendly_name("x".repeat(256))
                .with_max_record_size(1024),
            defaults()
                .with_idle_timeout(Duration::from_millis(100))
                .with_connect_timeout(Duration::from_millis(1))
                .with_close_timeout(Duration::from_millis(1)),
        )
        .expect("the limits are valid");
    within!(graph.close()).expect("close");
}

#[tokio::test]
async fn idle_timeout_beyond_quic_range_is_an_invalid_argument() {
    let engine = engine();
    let created = engine.create_graph(
        properties("idle", "alice"),
        GraphOptions::default().with_idle_timeout(Duration::MAX),
    );
    if let Ok(graph) = &created {
        // What the bug leads to: the option is only refused when an endpoint is built.
        let somewhere: SocketAddr = "127.0.0.1:9".parse().expect("address");
        let opened = code(within!(graph.open_direct_connection("bob", somewhere)));
        let listened = code(within!(graph.listen(loopback())));
        within!(graph.close()).expect("close");
        panic!(
            "create_graph accepted an idle timeout QUIC cannot carry; \
             open_direct_connection: {opened:?}, listen: {listened:?}"
        );
    }
    assert_eq!(code(created), Err(ResultCode::E_INVALIDARG));
}

#[tokio::test]
async fn invalid_connection_arguments() {
    const IA: Result<(), ResultCode> = Err(ResultCode::E_INVALIDARG);
    let mut alice = node("args", "alice").await;
    let mut bob = node("args", "bob").await;
    let id = connect(&mut alice, &mut bob, "bob").await;

    // Id 0 is no connection: no ConnectionId holds it, so no call can be given it.
    assert_eq!(
        ConnectionId::new(0).map(|_| ()).map_err(|e| e.code()),
        IA,
        "id 0"
    );
    let oversize = Bytes::from(vec![7u8; MAX_DATA_LEN + 1]);
    assert_eq!(
        code(within!(alice.graph.send_data(id, DATA, oversize.clone()))),
        IA,
        "payload of MAX_DATA_LEN + 1 bytes"
    );
    assert_eq!(
        code(reply(within!(alice.graph.addr().send(SendData {
            connection_id: id,
            data_type: DATA,
            data: oversize,
        })))),
        IA,
        "oversize payload through the SendData message"
    );
    let long = "x".repeat(257);
    assert_eq!(
        code(within!(alice
            .graph
            .open_direct_connection(&long, bob.address))),
        IA,
        "open with a 257-character peer id"
    );
    assert_eq!(
        code(within!(alice.graph.open_direct_connection("", bob.address))),
        IA,
        "open with an empty peer id"
    );
    for flags in [ConnectionFlags(0), ConnectionFlags(4)] {
        assert_eq!(
            code(within!(alice.graph.enum_connections(flags))),
            IA,
            "enum_connections({flags:?})"
        );
        assert_eq!(
            code(reply(within!(alice
                .graph
                .addr()
                .send(EnumConnections { flags })))),
            IA,
            "EnumConnections({flags:?}) message"
        );
    }

    // The connection is unharmed, and a payload of exactly MAX_DATA_LEN goes through.
    let largest = Bytes::from(vec![9u8; MAX_DATA_LEN]);
    within!(alice.graph.send_data(id, DATA, largest.clone())).expect("MAX_DATA_LEN bytes");
    let event = wait_for(&mut bob.events, "the largest payload", |event| {
        matches!(event, GraphEvent::IncomingData { .. })
    })
    .await;
    assert_eq!(
        event,
        GraphEvent::IncomingData {
            connection_id: id,
            data_type: DATA,
            data: largest,
        }
    );
}

#[tokio::test]
async fn invalid_event_registrations() {
    const IA: Result<(), ResultCode> = Err(ResultCode::E_INVALIDARG);
    let alice = node("registrations", "alice").await;
    let bob = node("registrations", "bob").await;
    assert_eq!(
        code(within!(alice.graph.register_event(Vec::new()))),
        IA,
        "no registrations"
    );
    let status = vec![EventRegistration::new(EventType::StatusChanged)];
    for limits in [
        QueueLimits {
            events: 0,
            bytes: 1024,
        },
        QueueLimits {
            events: 16,
            bytes: 0,
        },
    ] {
        assert_eq!(
            code(within!(alice
                .graph
                .register_event_with(status.clone(), limits))),
            IA,
            "{limits:?}"
        );
    }
    let stream = within!(alice.graph.register_event(status)).expect("register");
    within!(alice.graph.unregister_event(stream.handle())).expect("unregister");
    assert_eq!(
        code(within!(alice.graph.unregister_event(stream.handle()))),
        IA,
        "unregister twice"
    );
    assert_eq!(
        code(within!(alice.graph.unregister_event(bob.events.handle()))),
        IA,
        "another graph's registration"
    );
    within!(bob.graph.unregister_event(bob.events.handle())).expect("its own graph may");
}

// --- PEER_E_DUPLICATE_GRAPH ---------------------------------------------------------------

#[tokio::test]
async fn duplicate_graph() {
    let engine = engine();
    let first = engine
        .create_graph(properties("dup", "alice"), GraphOptions::default())
        .expect("create");
    assert_eq!(
        code(engine.create_graph(properties("dup", "alice"), GraphOptions::default())),
        Err(ResultCode::PEER_E_DUPLICATE_GRAPH)
    );
    assert_eq!(
        code(engine.create_graph(properties("dup", "bob"), GraphOptions::default())),
        Err(ResultCode::PEER_E_DUPLICATE_GRAPH),
        "the graph id decides, not the peer id"
    );
    assert_eq!(
        code(engine.open_graph("dup", "carol", GraphOptions::default())),
        Err(ResultCode::PEER_E_DUPLICATE_GRAPH)
    );
    assert_eq!(engine.graph_count(), 1);
    within!(first.status()).expect("the first graph is unharmed");

    within!(first.close()).expect("close");
    let second = engine
        .create_graph(properties("dup", "alice"), GraphOptions::default())
        .expect("the id is free once the first graph is closed");
    assert_ne!(second.handle(), first.handle(), "a new handle");
    assert_eq!(
        code(within!(first.status())),
        Err(ResultCode::PEER_E_INVALID_GRAPH),
        "the old handle stays invalid"
    );
    within!(second.status()).expect("the new graph works");
    within!(second.close()).expect("close");
}

// --- PEER_S_GRAPH_DATA_CREATED, PEER_E_GRAPH_NOT_READY ------------------------------------

#[tokio::test]
async fn opened_graph_data_is_created_and_not_ready_to_listen() {
    let mut bob = node("opened", "bob").await;
    let engine = engine();
    let (graph, created) = engine
        .open_graph("opened", "alice", GraphOptions::default())
        .expect("open");
    assert_eq!(created, ResultCode::PEER_S_GRAPH_DATA_CREATED);
    assert!(created.is_success());
    assert_eq!(
        code(within!(graph.listen(loopback()))),
        Err(ResultCode::PEER_E_GRAPH_NOT_READY)
    );
    assert_eq!(
        within!(graph.status()),
        Ok(GraphStatus::default()),
        "neither synchronized nor listening"
    );
    let own = within!(graph.node_info(None)).expect("node info");
    assert_eq!(own.peer_id.as_str(), "alice");
    assert!(
        own.addresses.is_empty(),
        "not listening: {:?}",
        own.addresses
    );

    // An opened graph can still open direct connections.
    let mut events = within!(graph.register_event(all_events())).expect("register");
    let id = within!(graph.open_direct_connection("bob", bob.address)).expect("open");
    let change = outcome(&mut events, id).await;
    assert_eq!(change.status, ConnectionStatus::Connected, "{change:?}");
    wait_connection(&mut bob.events, id, ConnectionStatus::Connected).await;
    within!(graph.close()).expect("close");
}

// --- PEER_E_ALREADY_LISTENING -------------------------------------------------------------

#[tokio::test]
async fn already_listening() {
    let alice = node("listen", "alice").await;
    assert_eq!(
        code(within!(alice.graph.listen(loopback()))),
        Err(ResultCode::PEER_E_ALREADY_LISTENING)
    );
    let own = within!(alice.graph.node_info(None)).expect("node info");
    assert_eq!(
        own.addresses,
        vec![alice.address],
        "the first listener stays"
    );
}

// --- PEER_E_INVALID_ADDRESS ---------------------------------------------------------------

#[tokio::test]
async fn invalid_address() {
    let graph = bare_graph("addresses", "alice", GraphOptions::default());
    for address in ["127.0.0.1:0", "0.0.0.0:4000", "[::]:4000", "224.0.0.1:4000"] {
        let address: SocketAddr = address.parse().expect("address");
        assert_eq!(
            code(within!(graph.open_direct_connection("bob", address))),
            Err(ResultCode::PEER_E_INVALID_ADDRESS),
            "open to {address}"
        );
    }
    let held = UdpSocket::bind(loopback()).expect("bind");
    let taken = held.local_addr().expect("local address");
    let refused = within!(graph.listen(taken)).expect_err("the port is taken");
    assert_eq!(
        refused.code(),
        ResultCode::PEER_E_INVALID_ADDRESS,
        "listen on {taken}, already bound"
    );
    let shown = refused.to_string();
    assert!(
        shown.contains("Address already in use") && shown.contains(&taken.to_string()),
        "the error says why: {shown}"
    );
    assert_eq!(
        within!(graph.status()),
        Ok(GraphStatus::SYNCHRONIZED),
        "a failed listen leaves the graph not listening"
    );
    let address = within!(graph.listen(loopback())).expect("listen elsewhere");
    assert_ne!(address, taken);
    let counters = within!(graph.counters()).expect("counters");
    assert_eq!(counters.pending_outgoing, 0, "no refused open was started");
    within!(graph.close()).expect("close");
}

// --- PEER_E_CONNECT_SELF ------------------------------------------------------------------

#[tokio::test]
async fn connect_self() {
    let alice = node("self", "alice").await;
    let bob = node("self", "bob").await;
    assert_eq!(
        code(within!(alice
            .graph
            .open_direct_connection("alice", bob.address))),
        Err(ResultCode::PEER_E_CONNECT_SELF),
        "own peer id"
    );
    assert_eq!(
        code(within!(alice
            .graph
            .open_direct_connection("bob", alice.address))),
        Err(ResultCode::PEER_E_CONNECT_SELF),
        "own listen address"
    );
    let counters = within!(alice.graph.counters()).expect("counters");
    assert_eq!((counters.connections, counters.pending_outgoing), (0, 0));
}

// --- PEER_E_NODE_NOT_FOUND ----------------------------------------------------------------

#[tokio::test]
async fn node_not_found_and_node_info() {
    let mut alice = node("nodes", "alice").await;
    let mut bob = node("nodes", "bob").await;
    assert_eq!(
        code(within!(alice.graph.node_info(Some(NodeId(12345))))),
        Err(ResultCode::PEER_E_NODE_NOT_FOUND)
    );
    let own = within!(alice.graph.node_info(None)).expect("own node");
    assert_eq!(own.peer_id.as_str(), "alice");
    assert_eq!(own.addresses, vec![alice.address]);
    assert_ne!(own.node_id, NodeId(0));
    assert_eq!(
        within!(alice.graph.node_info(Some(own.node_id))),
        Ok(own.clone()),
        "own node id means this node too"
    );
    let bob_node = within!(bob.graph.node_info(None))
        .expect("bob's node")
        .node_id;
    assert_eq!(
        code(within!(alice.graph.node_info(Some(bob_node)))),
        Err(ResultCode::PEER_E_NODE_NOT_FOUND),
        "bob is not known before a connection"
    );

    let id = connect(&mut alice, &mut bob, "bob").await;
    let remote = within!(alice.graph.node_info(Some(bob_node))).expect("bob from alice");
    assert_eq!(remote.node_id, bob_node);
    assert_eq!(remote.peer_id.as_str(), "bob");
    assert_eq!(remote.addresses, vec![bob.address]);
    let remote = within!(bob.graph.node_info(Some(own.node_id))).expect("alice from bob");
    assert_eq!(remote.node_id, own.node_id);
    assert_eq!(remote.peer_id.as_str(), "alice");
    assert_eq!(remote.addresses, vec![alice.address]);

    within!(alice.graph.close_direct_connection(id)).expect("close");
    wait_connection(&mut alice.events, id, ConnectionStatus::Disconnected).await;
    wait_connection(&mut bob.events, id, ConnectionStatus::Disconnected).await;
    assert_eq!(
        code(within!(alice.graph.node_info(Some(bob_node)))),
        Err(ResultCode::PEER_E_NODE_NOT_FOUND),
        "forgotten once the connection is gone"
    );
    assert_eq!(
        code(within!(bob.graph.node_info(Some(own.node_id)))),
        Err(ResultCode::PEER_E_NODE_NOT_FOUND)
    );
}

// --- PEER_E_CONNECTION_NOT_FOUND ----------------------------------------------------------

#[tokio::test]
async fn connection_not_found() {
    let alice = node("unknown", "alice").await;
    assert_eq!(
        code(within!(alice.graph.send_data(
            ConnectionId::new(12345).expect("id"),
            DATA,
            Bytes::from_static(b"x")
        ))),
        Err(ResultCode::PEER_E_CONNECTION_NOT_FOUND)
    );
    assert_eq!(
        code(within!(alice.graph.close_direct_connection(
            ConnectionId::new(12345).expect("id")
        ))),
        Err(ResultCode::PEER_E_CONNECTION_NOT_FOUND)
    );
    assert_eq!(
        code(reply(within!(alice.graph.addr().send(SendData {
            connection_id: ConnectionId::new(12345).expect("id"),
            data_type: DATA,
            data: Bytes::from_static(b"x"),
        })))),
        Err(ResultCode::PEER_E_CONNECTION_NOT_FOUND),
        "SendData message"
    );
}

// --- DIRECT_CONNECTION CONNECTION_FAILED reasons ------------------------------------------

#[tokio::test]
async fn refused_when_the_remote_node_has_not_registered_for_direct_connections() {
    let mut alice = node("refusal", "alice").await;
    let bob = bare_graph("refusal", "bob", GraphOptions::default());
    let bob_address = within!(bob.listen(loopback())).expect("listen");

    expect_failure(
        &mut alice,
        "bob",
        bob_address,
        ResultCode::PEER_E_CONNECTION_REFUSED,
        "takes no direct connections",
    )
    .await;

    // Other registrations do not make a node accept direct connections.
    let mut bob_events = within!(bob.register_event(vec![
        EventRegistration::new(EventType::IncomingData),
        EventRegistration::new(EventType::StatusChanged),
    ]))
    .expect("register");
    expect_failure(
        &mut alice,
        "bob",
        bob_address,
        ResultCode::PEER_E_CONNECTION_REFUSED,
        "takes no direct connections",
    )
    .await;
    assert_eq!(
        within!(bob.enum_connections(ConnectionFlags::DIRECT)),
        Ok(Vec::new())
    );
    assert_eq!(bob_events.try_recv(), None, "bob saw nothing of it");

    // Registering for DIRECT_CONNECTION is what lets the connection in.
    let mut direct =
        within!(bob.register_event(vec![EventRegistration::new(EventType::DirectConnection)]))
            .expect("register");
    let id = within!(alice.graph.open_direct_connection("bob", bob_address)).expect("open");
    assert_eq!(
        outcome(&mut alice.events, id).await.status,
        ConnectionStatus::Connected
    );
    wait_connection(&mut direct, id, ConnectionStatus::Connected).await;
    within!(bob.close()).expect("close");
}

#[tokio::test]
async fn failed_when_the_remote_node_is_unreachable() {
    // A socket that is bound (so no ICMP error comes back) but never answers.
    let silent = UdpSocket::bind(loopback()).expect("bind");
    let address = silent.local_addr().expect("local address");
    let options = GraphOptions::default().with_connect_timeout(Duration::from_millis(500));
    let mut alice = node_with("unreachable", "alice", options).await;
    expect_failure(
        &mut alice,
        "bob",
        address,
        ResultCode::PEER_E_CONNECTION_FAILED,
        "no answer within 500ms",
    )
    .await;
    drop(silent);
}

#[tokio::test]
async fn not_authenticated_when_the_node_there_is_another_peer() {
    let mut alice = node("identity", "alice").await;
    let bob = node("identity", "bob").await;
    expect_failure(
        &mut alice,
        "carol",
        bob.address,
        ResultCode::PEER_E_CONNECTION_NOT_AUTHENTICATED,
        "peer id mismatch: the node there is not carol",
    )
    .await;
    assert_eq!(
        within!(bob.graph.enum_connections(ConnectionFlags::DIRECT)),
        Ok(Vec::new())
    );
}

#[tokio::test]
async fn not_authenticated_when_the_node_there_is_in_another_graph() {
    let mut alice = node("identity-a", "alice").await;
    let bob = node("identity-b", "bob").await;
    expect_failure(
        &mut alice,
        "bob",
        bob.address,
        ResultCode::PEER_E_CONNECTION_NOT_AUTHENTICATED,
        "graph id differs: the node is not in graph identity-a",
    )
    .await;
    assert_eq!(
        within!(bob.graph.enum_connections(ConnectionFlags::DIRECT)),
        Ok(Vec::new())
    );
}
