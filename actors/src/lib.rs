//! peergraph: the Peer Graphing model (graphs of peers, direct connections, application
//! data, events, with the Windows Peer Graphing API's documented result codes) on QUIC,
//! built as actix actors.
//!
//! A graph is an actor ([`GraphActor`]) that supervises one connection actor per QUIC
//! link. Every API call is a message (see the `graph` messages: [`Listen`],
//! [`OpenDirectConnection`], [`SendData`], [`CloseDirectConnection`], ...) whose reply is
//! the documented result code. Applications outside actix use the async facade:
//! [`Engine`] and [`Graph`].
//!
//! ```no_run
//! use peergraph::{Engine, GraphId, GraphOptions, GraphProperties, PeerId, Version};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::new()?;
//! engine.startup(Version::V1_0)?;
//! let properties = GraphProperties::new(GraphId::new("chat")?, PeerId::new("alice")?);
//! let graph = engine.create_graph(properties, GraphOptions::default())?;
//! let address = graph.listen("127.0.0.1:0".parse()?).await?;
//! println!("listening at {address}");
//! graph.close().await?;
//! engine.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! The rules (admission, the connection table's invariants, status, each link's close)
//! live in the engine crate's `graph_core`, with no I/O; the actors here drive it.
//! - `options`: [`GraphOptions`], [`Membership`], and the defaults.
//! - `lifecycle`: the startup count and what the engine shares with its graphs.
//! - `registry`: the handle table of open graphs.
//! - `engine`: [`Engine`] (startup/shutdown, graph creation, worker arbiters).
//! - `facade`: [`Graph`], the async calls, and [`reply`].
//! - `graph`: [`GraphActor`], driver of a graph core; its handlers, endpoints and renewal,
//!   and its messages.
//! - `connection`: the connection actor, driver of a link's close machine, and its writer.
//! - `outbox`: the bounded outbox SendData writes into.
//! - `table`: the index of a graph's link handles that other threads read.
//! - `handshake`: CONNECT / WELCOME / REFUSE on a new link.
//! - `events`: registrations, [`EventStream`], [`PeerEvent`].
//! - `metrics`: [`GraphMetrics`], the graph's counters for monitoring.
//!
//! # What is exported
//! What an application calls or receives: the engine and the facade, [`GraphActor`] and
//! its messages (actix applications send them), event streams and [`PeerEvent`], the
//! options, and the engine crate's ids, results, events and graph types. Not exported: the
//! connection actor (applications reach links through the graph's messages; it is public
//! only with the `fault-injection` feature, for tests that make it panic), the wire codec
//! (only [`ALPN`] and [`MAX_DATA_LEN`] concern an application; a second implementation
//! uses `peergraph-engine`'s `wire`), and the graph core (`peergraph-engine`'s
//! `graph_core`, for simulators and other drivers).

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod connection;
mod database;
mod engine;
mod events;
mod facade;
mod graph;
mod handshake;
mod lifecycle;
mod metrics;
mod options;
mod outbox;
mod records;
mod registry;
mod table;

/// The connection actor and its panic hook, for tests that reach a link's actor
/// (`Graph::connection_actor`); applications reach links through the graph's messages,
/// so neither is exported otherwise.
#[cfg(feature = "fault-injection")]
pub use crate::connection::{ConnectionActor, InjectPanic};
pub use crate::engine::{Engine, EngineConfig};
pub use crate::events::{
    EventHandle, EventStream, PeerEvent, QueueLimits, DEFAULT_QUEUE_BYTES, DEFAULT_QUEUE_EVENTS,
};
pub use crate::facade::{reply, Graph};
pub use crate::graph::{
    AddRecord, CloseDirectConnection, CloseGraph, ConnectionStats, DeleteRecord, EnumConnections,
    EnumRecords, ExportDatabase, GetConnectionStats, GetCounters, GetMetrics, GetNodeInfo,
    GetProperties, GetRecord, GetStatus, GraphActor, GraphCounters, ImportDatabase, Listen,
    OpenDirectConnection, RegisterEvent, RegisterEventRecipient, SearchRecords, SendData,
    SendDataMany, SetProperties, UnregisterEvent, UpdateRecord, ValidateDeferredRecords,
};
pub use crate::metrics::{GraphMetrics, LinkEnd, Refusal, CLOSE_CODES};
pub use crate::options::{
    DatabaseLocation, GraphOptions, Membership, DEFAULT_CLOSE_BOUND, DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_NODE,
    DEFAULT_MAX_PENDING_HANDSHAKES, DEFAULT_MAX_PENDING_HANDSHAKES_PER_SOURCE,
    DEFAULT_RECEIVE_BUDGET, DEFAULT_RENEW_ENDPOINTS_AFTER, DEFAULT_TLS_HANDSHAKE_TIMEOUT,
    RETRY_THRESHOLD_DIVISOR,
};
pub use crate::outbox::{OUTBOX_BYTES, OUTBOX_FRAMES};
pub use peergraph_engine::graph_core::AllowList;

pub use peergraph_engine::wire::{ALPN, MAX_DATA_LEN};
pub use peergraph_engine::{
    code_of, ConnectionChange, ConnectionFlags, ConnectionId, ConnectionInfo, ConnectionStatus,
    DataType, EventRegistration, EventType, GraphEvent, GraphHandle, GraphId, GraphProperties,
    GraphStatus, NodeId, NodeInfo, PeerError, PeerId, PeerKey, PeerResult, ResultCode, Scope,
    Ticket, TicketError, Version, VersionData, MAX_TICKET_ADDRESSES, MAX_TICKET_CHARS,
    TICKET_PREFIX,
};
/// The record model the record calls take and return.
pub use peergraph_engine::{
    AttributeType, AttributeValue, Attributes, GraphTime, NewRecord, Record, RecordChangeType,
    RecordFlags, RecordId, RecordSecurity, RecordType, RecordUpdate, SecureRecord, ValidateRecord,
};
pub use peergraph_transport::{
    Congestion, GraphSecret, IdentityError, NodeIdentity, DEFAULT_IDLE_TIMEOUT, MIN_SECRET_LEN,
};
