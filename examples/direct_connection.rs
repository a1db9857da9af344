//! # A direct connection, end to end: GraphChat's "whisper"
//!
//! Two nodes of the graph `chat`, alice and bob, each on its own [`Engine`], run in one
//! process on loopback and walk the path the GraphChat sample takes for a private message:
//!
//! 1. `Startup`, `Create`, `RegisterEvent` (DIRECT_CONNECTION, INCOMING_DATA,
//!    STATUS_CHANGED), `Listen`, `GetNodeInfo(0)` on both nodes;
//! 2. alice `OpenDirectConnection` to bob; both see DIRECT_CONNECTION CONNECTED;
//! 3. alice `SendData` three times; bob reads each INCOMING_DATA, finds the sender with
//!    `EnumConnections(DIRECT)`, and `CloseDirectConnection`s it; alice sees
//!    DIRECT_CONNECTION DISCONNECTED with the same connection id;
//! 4. the error codes of `CloseDirectConnection`: the same id again
//!    (`PEER_E_CONNECTION_NOT_FOUND`), id 0 (`E_INVALIDARG`), a closed graph
//!    (`PEER_E_INVALID_GRAPH`) and a shut-down engine (`PEER_E_NOT_INITIALIZED`).
//!
//! Every call is printed with the result code it returned (its documented name and HRESULT
//! value) and every event as it arrives. Each step checks its code, its events and its
//! data, and the program exits with an error at the first one that differs, so it doubles
//! as a smoke test of the library.
//!
//! Run it from the repository root (it takes well under a second once built):
//!
//! ```text
//! cargo run --release --example direct_connection
//! ```
//!
//! The library's own logs go to stderr: `RUST_LOG=peergraph=debug` shows them.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use bytes::Bytes;
use peergraph::{
    ConnectionFlags, ConnectionId, ConnectionStatus, DataType, Engine, EngineConfig,
    EventRegistration, EventStream, EventType, Graph, GraphEvent, GraphId, GraphOptions,
    GraphProperties, GraphStatus, NodeInfo, PeerId, ResultCode, Version,
};
use peergraph_examples::transcript::{columns, detail, fails, note, ok, row, section};
use tracing_subscriber::EnvFilter;

/// The data type of a whisper. Any GUID will do, as long as sender and receiver agree on
/// it; a receiver can register for INCOMING_DATA of this type only.
const WHISPER: DataType = DataType::from_u128(0x7a3c_51e2_0b9d_4f6a_8e21_c4d5_96f0_3b17);

/// What alice whispers to bob.
const WHISPERS: [&str; 3] = ["psst, bob", "it's alice", "lunch at one?"];

/// The longest wait for the events of one step. On loopback they come within
/// milliseconds; the bound only turns a hang into a failed step.
const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Width of the transcript's first column: who acts.
const WHO_WIDTH: usize = 7;
/// Width of the second column: the call made, or the event received.
const CALL_WIDTH: usize = 46;

/// The graph's status while it listens with no connection (a creator is synchronized).
const IDLE: GraphStatus = GraphStatus(GraphStatus::LISTENING.0 | GraphStatus::SYNCHRONIZED.0);
/// The graph's status while it listens and has a connection.
const BUSY: GraphStatus = GraphStatus(IDLE.0 | GraphStatus::HAS_CONNECTIONS.0);

#[tokio::main]
async fn main() -> Result<()> {
    columns(WHO_WIDTH, CALL_WIDTH);
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    println!("peergraph: alice whispers to bob over a direct connection (GraphChat)");

    section("1. Startup");
    let alice_engine = startup("alice")?;
    let bob_engine = startup("bob")?;

    section("2. Create the graph \"chat\"");
    let alice_graph = create(&alice_engine, "alice")?;
    let bob_graph = create(&bob_engine, "bob")?;

    section("3. Register for events");
    let mut alice = Node::register("alice", alice_engine, alice_graph).await?;
    let mut bob = Node::register("bob", bob_engine, bob_graph).await?;

    section("4. Listen on loopback");
    alice.listen().await?;
    bob.listen().await?;

    section("5. GetNodeInfo(0): who is who");
    let alice_node = alice.node_info().await?.node_id;
    let bob_address = *bob
        .node_info()
        .await?
        .addresses
        .first()
        .context("bob: GetNodeInfo lists no address though he listens")?;

    section("6. alice opens a direct connection to bob");
    let id = ok(
        alice.name,
        &format!("OpenDirectConnection(\"bob\", {bob_address})"),
        alice.graph.open_direct_connection("bob", bob_address).await,
    )?;
    detail(&format!(
        "connection id {id} (usable once CONNECTED arrives)"
    ));
    alice
        .expect(vec![
            Want::connection(id, ConnectionStatus::Connected),
            Want::status(BUSY),
        ])
        .await?;
    bob.expect(vec![
        Want::connection(id, ConnectionStatus::Connected),
        Want::status(BUSY),
    ])
    .await?;

    section("7. alice whispers; bob reads");
    detail(&format!("data type (GUID) {WHISPER}"));
    for text in WHISPERS {
        ok(
            alice.name,
            &format!("SendData(id, WHISPER, {text:?})"),
            alice
                .graph
                .send_data(id, WHISPER, Bytes::from_static(text.as_bytes()))
                .await,
        )?;
    }
    let received = bob
        .expect(WHISPERS.iter().map(|_| Want::data(id)).collect())
        .await?;
    for (event, sent) in received.iter().zip(WHISPERS) {
        let GraphEvent::IncomingData {
            data_type, data, ..
        } = event
        else {
            bail!("bob: expected INCOMING_DATA, got {event:?}");
        };
        ensure!(
            *data_type == WHISPER && data.as_ref() == sent.as_bytes(),
            "bob: received {data:?} of type {data_type}, expected {sent:?} of type {WHISPER}"
        );
    }

    section("8. bob finds the sender and closes the connection");
    let connections = ok(
        bob.name,
        "EnumConnections(DIRECT)",
        bob.graph.enum_connections(ConnectionFlags::DIRECT).await,
    )?;
    for info in &connections {
        detail(&format!(
            "id {}  peer {}  node {}  address {}",
            info.connection_id, info.peer_id, info.node_id, info.address
        ));
    }
    let sender = connections
        .iter()
        .find(|info| info.connection_id == id)
        .context("bob: EnumConnections does not list the connection the whispers came on")?;
    ensure!(
        sender.peer_id.as_str() == "alice" && sender.node_id == alice_node,
        "bob: the sender is {} (node {}), expected alice (node {alice_node})",
        sender.peer_id,
        sender.node_id
    );
    detail(&format!(
        "the whispers came from {} (node {}, GetNodeInfo agrees)",
        sender.peer_id, sender.node_id
    ));
    ok(
        bob.name,
        &format!("CloseDirectConnection({id})"),
        bob.graph.close_direct_connection(id).await,
    )?;
    bob.expect(vec![
        Want::status(IDLE),
        Want::connection(id, ConnectionStatus::Disconnected),
    ])
    .await?;
    alice
        .expect(vec![
            Want::connection(id, ConnectionStatus::Disconnected),
            Want::status(IDLE),
        ])
        .await?;
    detail(&format!(
        "alice was told DISCONNECTED for {id}, the id she opened"
    ));

    section("9. What CloseDirectConnection returns otherwise");
    note("The same id again: that connection no longer exists.");
    fails(
        bob.name,
        &format!("CloseDirectConnection({id})"),
        bob.graph.close_direct_connection(id).await,
        ResultCode::PEER_E_CONNECTION_NOT_FOUND,
    )?;
    note("Id 0 means \"no connection\": no ConnectionId holds it, so no call can take it.");
    fails(
        bob.name,
        "ConnectionId::new(0)",
        ConnectionId::new(0),
        ResultCode::E_INVALIDARG,
    )?;
    note("bob closes his graph; his Graph value still holds the old handle.");
    ok(bob.name, "Close(graph)", bob.graph.close().await)?;
    bob.expect_end("the graph closed").await?;
    fails(
        bob.name,
        &format!("CloseDirectConnection({id})"),
        bob.graph.close_direct_connection(id).await,
        ResultCode::PEER_E_INVALID_GRAPH,
    )?;
    note("alice shuts her engine down; her Graph value outlives it.");
    ok(alice.name, "Shutdown()", alice.engine.shutdown().await)?;
    alice.expect_end("the engine shut down").await?;
    fails(
        alice.name,
        &format!("CloseDirectConnection({id})"),
        alice.graph.close_direct_connection(id).await,
        ResultCode::PEER_E_NOT_INITIALIZED,
    )?;

    section("10. Shutdown");
    ok(bob.name, "Shutdown()", bob.engine.shutdown().await)?;

    println!("\nEvery call returned the code the reference documents for it.");
    Ok(())
}

/// One node of the demonstration after it has registered for events.
struct Node {
    /// The name the transcript shows (also the node's peer id).
    name: &'static str,
    engine: Engine,
    graph: Graph,
    events: EventStream,
}

/// Starts an engine of one worker thread: `PeerGraphStartup`.
fn startup(name: &str) -> Result<Engine> {
    let engine = Engine::with_config(EngineConfig { workers: Some(1) })
        .with_context(|| format!("{name}: cannot start the engine's worker thread"))?;
    let version = ok(name, "Startup(1.0)", engine.startup(Version::V1_0))?;
    detail(&format!(
        "version {}, highest version {}",
        version.version, version.highest_version
    ));
    Ok(engine)
}

/// Creates graph `chat` with `name` as its creator: `PeerGraphCreate`.
fn create(engine: &Engine, name: &str) -> Result<Graph> {
    let properties = GraphProperties::new(GraphId::new("chat")?, PeerId::new(name)?);
    let graph = ok(
        name,
        &format!("Create(\"chat\", creator \"{name}\")"),
        engine.create_graph(properties, GraphOptions::default()),
    )?;
    detail(&format!("handle {}", graph.handle()));
    Ok(graph)
}

impl Node {
    /// Registers for the events GraphChat's whisper needs: `PeerGraphRegisterEvent`.
    async fn register(name: &'static str, engine: Engine, graph: Graph) -> Result<Node> {
        let registrations = vec![
            EventRegistration::new(EventType::DirectConnection),
            EventRegistration::new(EventType::IncomingData),
            EventRegistration::new(EventType::StatusChanged),
        ];
        let events = ok(
            name,
            "RegisterEvent(3 event types)",
            graph.register_event(registrations).await,
        )?;
        detail(&format!(
            "DIRECT_CONNECTION, INCOMING_DATA, STATUS_CHANGED: event handle {}",
            events.handle().get()
        ));
        Ok(Node {
            name,
            engine,
            graph,
            events,
        })
    }

    /// Listens on a free loopback port: `PeerGraphListen`.
    async fn listen(&mut self) -> Result<()> {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        let address = ok(
            self.name,
            &format!("Listen({any_port})"),
            self.graph.listen(any_port).await,
        )?;
        detail(&format!("bound {address}"));
        self.expect(vec![Want::status(IDLE)]).await?;
        Ok(())
    }

    /// Prints this node's information and returns it: `PeerGraphGetNodeInfo`.
    async fn node_info(&self) -> Result<NodeInfo> {
        let info = ok(
            self.name,
            "GetNodeInfo(0)",
            self.graph.node_info(None).await,
        )?;
        let addresses: Vec<String> = info.addresses.iter().map(ToString::to_string).collect();
        detail(&format!(
            "peer {}  node {}  addresses [{}]",
            info.peer_id,
            info.node_id,
            addresses.join(", ")
        ));
        ensure!(
            info.peer_id.as_str() == self.name,
            "{}: GetNodeInfo reports peer {}",
            self.name,
            info.peer_id
        );
        Ok(info)
    }

    /// Waits until every event of `wants` has arrived, in any order, and returns them in
    /// the order of `wants`. Prints each event as it arrives, wanted or not.
    async fn expect(&mut self, wants: Vec<Want>) -> Result<Vec<GraphEvent>> {
        let name = self.name;
        let mut found: Vec<Option<GraphEvent>> = wants.iter().map(|_| None).collect();
        let events = &mut self.events;
        let waited = tokio::time::timeout(EVENT_TIMEOUT, async {
            while found.iter().any(Option::is_none) {
                let event = events.recv().await?;
                print_event(name, &event);
                let slot = wants
                    .iter()
                    .zip(found.iter_mut())
                    .find(|(want, slot)| slot.is_none() && (want.matches)(&event));
                if let Some((_, slot)) = slot {
                    *slot = Some(event);
                }
            }
            Some(())
        })
        .await;
        let missing = || -> Vec<&str> {
            wants
                .iter()
                .zip(&found)
                .filter(|(_, slot)| slot.is_none())
                .map(|(want, _)| want.what.as_str())
                .collect()
        };
        match waited {
            Ok(Some(())) => Ok(found.into_iter().flatten().collect()),
            Ok(None) => bail!(
                "{name}: the event stream ended while waiting for {:?}",
                missing()
            ),
            Err(_) => bail!("{name}: no {:?} within {EVENT_TIMEOUT:?}", missing()),
        }
    }

    /// Waits until the registration's stream ends (the graph closed or the engine shut
    /// down: `why`), printing any event still queued.
    async fn expect_end(&mut self, why: &str) -> Result<()> {
        let name = self.name;
        let events = &mut self.events;
        tokio::time::timeout(EVENT_TIMEOUT, async {
            while let Some(event) = events.recv().await {
                print_event(name, &event);
            }
        })
        .await
        .with_context(|| format!("{name}: the event stream did not end"))?;
        row(name, "<- (end of event stream)", why);
        Ok(())
    }
}

/// An event a step waits for: its description, for the failure message, and a test.
struct Want {
    what: String,
    matches: Box<dyn Fn(&GraphEvent) -> bool>,
}

impl Want {
    /// DIRECT_CONNECTION with `status` for connection `id`.
    fn connection(id: ConnectionId, status: ConnectionStatus) -> Want {
        Want {
            what: format!("DIRECT_CONNECTION {} {id}", status_name(status)),
            matches: Box::new(move |event| {
                matches!(event, GraphEvent::DirectConnection(change)
                    if change.connection_id == id && change.status == status)
            }),
        }
    }

    /// STATUS_CHANGED to exactly `status`.
    fn status(status: GraphStatus) -> Want {
        Want {
            what: format!("STATUS_CHANGED {status:?}"),
            matches: Box::new(move |event| {
                matches!(event, GraphEvent::StatusChanged { status: now }
                    if *now == status)
            }),
        }
    }

    /// INCOMING_DATA on connection `id`.
    fn data(id: ConnectionId) -> Want {
        Want {
            what: format!("INCOMING_DATA on {id}"),
            matches: Box::new(move |event| {
                matches!(event, GraphEvent::IncomingData { connection_id, .. }
                    if *connection_id == id)
            }),
        }
    }
}

/// The documented name of a connection status.
fn status_name(status: ConnectionStatus) -> &'static str {
    match status {
        ConnectionStatus::Connected => "CONNECTED",
        ConnectionStatus::Disconnected => "DISCONNECTED",
        ConnectionStatus::ConnectionFailed => "CONNECTION_FAILED",
    }
}

/// Prints an event received by `who`: its type and status in the call column, its data
/// in the result column.
fn print_event(who: &str, event: &GraphEvent) {
    match event {
        GraphEvent::StatusChanged { status } => {
            row(who, "<- STATUS_CHANGED", &format!("{status:?}"));
        }
        GraphEvent::PropertyChanged => row(who, "<- PROPERTY_CHANGED", ""),
        GraphEvent::RecordChanged {
            change_type,
            record_id,
            ..
        } => row(
            who,
            &format!("<- RECORD_CHANGED {change_type:?}"),
            &record_id.to_string(),
        ),
        GraphEvent::DirectConnection(change) => {
            let mut data = format!("id {}  peer {}", change.connection_id, change.peer_id);
            if let Some(node_id) = change.node_id {
                data.push_str(&format!("  node {node_id}"));
            }
            if let Some(reason) = &change.failure_reason {
                data.push_str(&format!("  reason {reason}"));
            }
            row(
                who,
                &format!("<- DIRECT_CONNECTION {}", status_name(change.status)),
                &data,
            );
        }
        GraphEvent::IncomingData {
            connection_id,
            data_type,
            data,
        } => {
            let kind = if *data_type == WHISPER {
                "WHISPER".to_owned()
            } else {
                data_type.to_string()
            };
            row(
                who,
                "<- INCOMING_DATA",
                &format!(
                    "{:?}  ({} bytes of {kind} on {connection_id})",
                    String::from_utf8_lossy(data),
                    data.len()
                ),
            );
        }
        GraphEvent::EventsLost { count } => {
            row(who, "<- (events lost)", &format!("{count} dropped"));
        }
    }
}
