//! The async facade: [`Graph`], one open graph's calls as `async` methods for applications
//! outside actix, each sending the graph actor its message; and [`reply`], which folds an
//! actor that no longer runs into `PEER_E_INVALID_GRAPH`.

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use peergraph_engine::{
    ConnectionFlags, ConnectionId, ConnectionInfo, DataType, EventRegistration, GraphHandle,
    GraphStatus, NodeId, NodeInfo, PeerError, PeerId, PeerKey,
};
use tokio::sync::oneshot;

use crate::events::{EventHandle, EventStream, QueueLimits};
use crate::graph::{
    send_many_now, send_now, CloseGraph, ConnectionStats, EnumConnections, GetConnectionStats,
    GetCounters, GetMetrics, GetNodeInfo, GetStatus, GraphActor, GraphCounters, Listen,
    OpenDirectConnection, RegisterEvent, StartClose, UnregisterEvent,
};
use crate::lifecycle::EngineState;
use crate::metrics::GraphMetrics;
use crate::registry::GraphEntry;

/// Turns the outcome of `addr.send(message).await` into the call's result: a graph actor
/// that no longer runs stands for a closed graph, `PEER_E_INVALID_GRAPH`.
///
/// # Errors
/// The message's own error, or `PEER_E_INVALID_GRAPH`.
pub fn reply<T>(sent: Result<Result<T, PeerError>, MailboxError>) -> Result<T, PeerError> {
    sent.unwrap_or(Err(PeerError::INVALID_GRAPH))
}

/// An open graph, for applications that do not run inside actix: each method sends the
/// graph actor its message and awaits the reply. Cheap to clone; usable from any thread
/// and any async runtime.
///
/// Every method can return `PEER_E_NOT_INITIALIZED` (engine shut down) and
/// `PEER_E_INVALID_GRAPH` (graph closed), besides the codes its `# Errors` lists.
#[derive(Clone)]
pub struct Graph {
    handle: GraphHandle,
    state: Arc<EngineState>,
    entry: GraphEntry,
    /// Keeps the engine's worker threads running while the graph is in use, as a clone
    /// of the [`Engine`](crate::Engine) would.
    _engine: Arc<dyn Any + Send + Sync>,
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field("handle", &self.handle)
            .finish()
    }
}

impl Graph {
    pub(crate) fn new(
        handle: GraphHandle,
        state: Arc<EngineState>,
        entry: GraphEntry,
        engine: Arc<dyn Any + Send + Sync>,
    ) -> Self {
        Graph {
            handle,
            state,
            entry,
            _engine: engine,
        }
    }

    /// The graph's handle (`HGRAPH`).
    pub fn handle(&self) -> GraphHandle {
        self.handle
    }

    /// The graph actor's address, for actix applications.
    pub fn addr(&self) -> Addr<GraphActor> {
        self.entry.addr.clone()
    }

    fn check(&self) -> Result<&GraphEntry, PeerError> {
        if !self.state.is_initialized() {
            return Err(PeerError::NOT_INITIALIZED);
        }
        if !self.entry.is_open() {
            return Err(PeerError::INVALID_GRAPH);
        }
        Ok(&self.entry)
    }

    pub(crate) async fn call<M>(&self, message: M) -> Result<M::Result, PeerError>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        GraphActor: Handler<M>,
    {
        let entry = self.check()?;
        entry
            .addr
            .send(message)
            .await
            .map_err(|_| PeerError::INVALID_GRAPH)
    }

    /// `PeerGraphListen`: listens at `address` (see [`Listen`]); port 0 picks a free
    /// port. Returns the bound address.
    ///
    /// # Errors
    /// `PEER_E_GRAPH_NOT_READY` (an opened graph, not synchronized yet),
    /// `PEER_E_ALREADY_LISTENING`, `PEER_E_INVALID_ADDRESS` (cannot bind there).
    ///
    /// # Examples
    ///
    /// ```
    /// use peergraph::{Engine, GraphId, GraphOptions, GraphProperties, PeerId, ResultCode, Version};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = Engine::new()?;
    /// engine.startup(Version::V1_0)?;
    /// let properties = GraphProperties::new(GraphId::new("chat")?, PeerId::new("alice")?);
    /// let graph = engine.create_graph(properties, GraphOptions::default())?;
    /// let address = graph.listen("127.0.0.1:0".parse()?).await?;
    /// assert_ne!(address.port(), 0);
    /// // The node's information lists it.
    /// assert_eq!(graph.node_info(None).await?.addresses, vec![address]);
    ///
    /// let again = graph.listen("127.0.0.1:0".parse()?).await;
    /// assert_eq!(again.unwrap_err().code(), ResultCode::PEER_E_ALREADY_LISTENING);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn listen(&self, address: SocketAddr) -> Result<SocketAddr, PeerError> {
        self.call(Listen { address }).await?
    }

    /// `PeerGraphOpenDirectConnection`: opens a direct connection to node `peer_id` at
    /// `address` (see [`OpenDirectConnection`]). The id comes back at once; the outcome
    /// arrives as a DIRECT_CONNECTION event, CONNECTED or CONNECTION_FAILED with a reason.
    /// Both nodes must be registered for DIRECT_CONNECTION: a node that is not refuses
    /// direct connections.
    ///
    /// # Errors
    /// `E_INVALIDARG` (peer id empty or too long), `PEER_E_CONNECT_SELF`,
    /// `PEER_E_INVALID_ADDRESS` (port 0, an unspecified or multicast address), `E_FAIL`
    /// (no local socket).
    ///
    /// # Examples
    ///
    /// Two nodes of graph `chat`, each on its own engine, in one process:
    ///
    /// ```
    /// use peergraph::{
    ///     ConnectionStatus, Engine, EventRegistration, EventType, GraphEvent, GraphId,
    ///     GraphOptions, GraphProperties, PeerId, Version,
    /// };
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut nodes = Vec::new();
    /// for peer in ["alice", "bob"] {
    ///     let engine = Engine::new()?;
    ///     engine.startup(Version::V1_0)?;
    ///     let properties = GraphProperties::new(GraphId::new("chat")?, PeerId::new(peer)?);
    ///     let graph = engine.create_graph(properties, GraphOptions::default())?;
    ///     let events = graph
    ///         .register_event(vec![EventRegistration::new(EventType::DirectConnection)])
    ///         .await?;
    ///     nodes.push((engine, graph, events));
    /// }
    /// let (_, bob, _) = &nodes[1];
    /// let bob_address = bob.listen("127.0.0.1:0".parse()?).await?;
    ///
    /// let (_, alice, alice_events) = &mut nodes[0];
    /// let id = alice.open_direct_connection("bob", bob_address).await?;
    /// match alice_events.recv().await {
    ///     Some(GraphEvent::DirectConnection(change)) if change.connection_id == id => {
    ///         assert_eq!(change.status, ConnectionStatus::Connected);
    ///         assert_eq!(change.peer_id.as_str(), "bob");
    ///     }
    ///     other => panic!("unexpected {other:?}"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn open_direct_connection(
        &self,
        peer_id: &str,
        address: SocketAddr,
    ) -> Result<ConnectionId, PeerError> {
        let peer_id = PeerId::new(peer_id)?;
        self.call(OpenDirectConnection {
            peer_id,
            address,
            expected_key: None,
        })
        .await?
    }

    /// Opens a direct connection to node `peer_id` at `address`, as
    /// [`open_direct_connection`](Graph::open_direct_connection), and requires the node
    /// there to present `key` (from its [`Ticket`](crate::Ticket)): a node with another
    /// key is left before CONNECT is sent, and the outcome is CONNECTION_FAILED with
    /// `PEER_E_CONNECTION_NOT_AUTHENTICATED` and the cause "node key mismatch: expected
    /// ..., the node presented ...".
    ///
    /// # Errors
    /// As [`open_direct_connection`](Graph::open_direct_connection).
    ///
    /// # Examples
    ///
    /// ```
    /// use peergraph::{
    ///     ConnectionStatus, Engine, EventRegistration, EventType, GraphEvent, GraphId,
    ///     GraphOptions, GraphProperties, NodeIdentity, PeerId, Ticket, Version,
    /// };
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Each node on its own engine (one engine holds one graph of an id).
    /// let node = |peer: &str, options: GraphOptions| -> Result<_, Box<dyn std::error::Error>> {
    ///     let engine = Engine::new()?;
    ///     engine.startup(Version::V1_0)?;
    ///     let properties = GraphProperties::new(GraphId::new("chat")?, PeerId::new(peer)?);
    ///     let graph = engine.create_graph(properties, options)?;
    ///     Ok((engine, graph))
    /// };
    /// let direct = || vec![EventRegistration::new(EventType::DirectConnection)];
    /// // Bob knows his key because he made his identity.
    /// let identity = NodeIdentity::generate()?;
    /// let key = identity.peer_key();
    /// let (_bob_engine, bob) = node("bob", GraphOptions::default().with_identity(identity))?;
    /// let _bob_events = bob.register_event(direct()).await?;
    /// let address = bob.listen("127.0.0.1:0".parse()?).await?;
    /// // He hands out his ticket; alice reads it and opens to the key it names.
    /// let ticket = Ticket::new(PeerId::new("bob")?, key, vec![address])?.to_string();
    /// let ticket: Ticket = ticket.parse()?;
    ///
    /// let (_alice_engine, alice) = node("alice", GraphOptions::default())?;
    /// let mut events = alice.register_event(direct()).await?;
    /// let id = alice
    ///     .open_direct_connection_pinned(
    ///         ticket.peer_id().as_str(),
    ///         ticket.addresses()[0],
    ///         *ticket.key(),
    ///     )
    ///     .await?;
    /// match events.recv().await {
    ///     Some(GraphEvent::DirectConnection(change)) if change.connection_id == id => {
    ///         assert_eq!(change.status, ConnectionStatus::Connected);
    ///         assert_eq!(change.node_id, Some(ticket.node_id()));
    ///     }
    ///     other => panic!("unexpected {other:?}"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn open_direct_connection_pinned(
        &self,
        peer_id: &str,
        address: SocketAddr,
        key: PeerKey,
    ) -> Result<ConnectionId, PeerError> {
        let peer_id = PeerId::new(peer_id)?;
        self.call(OpenDirectConnection {
            peer_id,
            address,
            expected_key: Some(key),
        })
        .await?
    }

    /// `PeerGraphSendData`: sends data of type `data_type` on a connection (see
    /// [`crate::SendData`]). Returns once the data is queued, waiting while the
    /// connection's outbox is full; the peer receives it as INCOMING_DATA. Goes straight
    /// to the connection's outbox, not through the graph actor's mailbox.
    ///
    /// # Errors
    /// `E_INVALIDARG` (payload over [`crate::MAX_DATA_LEN`]),
    /// `PEER_E_CONNECTION_NOT_FOUND` (no such connection, or it is closing).
    ///
    /// # Examples
    ///
    /// alice sends to bob on connection `id` (made as in
    /// [`open_direct_connection`](Graph::open_direct_connection)):
    ///
    /// ```
    /// # use peergraph::*;
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = |peer: &str| -> Result<(Engine, Graph), Box<dyn std::error::Error>> {
    /// #     let engine = Engine::with_config(EngineConfig { workers: Some(1) })?;
    /// #     engine.startup(Version::V1_0)?;
    /// #     let properties = GraphProperties::new(GraphId::new("chat")?, PeerId::new(peer)?);
    /// #     let graph = engine.create_graph(properties, GraphOptions::default())?;
    /// #     Ok((engine, graph))
    /// # };
    /// # let ((_alice_engine, alice), (_bob_engine, bob)) = (node("alice")?, node("bob")?);
    /// # let wanted = vec![
    /// #     EventRegistration::new(EventType::DirectConnection),
    /// #     EventRegistration::new(EventType::IncomingData),
    /// # ];
    /// # let mut alice_events = alice.register_event(wanted.clone()).await?;
    /// # let mut bob_events = bob.register_event(wanted).await?;
    /// # let bob_address = bob.listen("127.0.0.1:0".parse()?).await?;
    /// # let id = alice.open_direct_connection("bob", bob_address).await?;
    /// # for events in [&mut alice_events, &mut bob_events] {
    /// #     while !matches!(events.recv().await, Some(GraphEvent::DirectConnection(change))
    /// #         if change.status == ConnectionStatus::Connected) {}
    /// # }
    /// const CHAT: DataType = DataType::from_u128(0xC0FFEE);
    ///
    /// alice.send_data(id, CHAT, &b"hello"[..]).await?;
    /// loop {
    ///     if let Some(GraphEvent::IncomingData { connection_id, data_type, data }) =
    ///         bob_events.recv().await
    ///     {
    ///         assert_eq!((connection_id, data_type), (id, CHAT));
    ///         assert_eq!(&data[..], b"hello");
    ///         break;
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_data(
        &self,
        connection_id: ConnectionId,
        data_type: DataType,
        data: impl Into<Bytes>,
    ) -> Result<(), PeerError> {
        let table = &self.check()?.table;
        let wait = match send_now(table, connection_id, data_type, data.into())? {
            None => return Ok(()),
            // Boxed: the wait for room is the rare path, and inline its future would make
            // every call's future five times larger, to be built and moved on each call.
            // And nothing else is held across the wait, for the same reason.
            Some((outbox, data)) => {
                Box::pin(async move { outbox.send_data(data_type, data).await })
            }
        };
        wait.await
    }

    /// SendData for many payloads of one type at once (see [`crate::SendDataMany`]): the peer
    /// receives each as its own INCOMING_DATA, in order, with no frame of another call
    /// between them. Returns once every payload is queued, waiting while the connection's
    /// outbox is full. A run of small payloads costs one encoding into a few large writes
    /// instead of a call each: for an application with many messages ready, several times
    /// fewer instructions per message than [`send_data`](Graph::send_data) in a loop.
    ///
    /// Unlike one SendData, a batch can go in part: when the call waits for room and the
    /// connection begins closing, or the call's future is dropped (a timeout around it),
    /// the payloads already queued are delivered and the rest are not, and the call does
    /// not say how many went. The small payloads are copied into their frames before the
    /// call waits for room, so a call holds about their size once more until it returns:
    /// give it what is ready (the benchmark sends 512 messages of 64 bytes a call), not a
    /// whole stream at once.
    ///
    /// # Errors
    /// `E_INVALIDARG` (a payload over [`crate::MAX_DATA_LEN`]: none is sent),
    /// `PEER_E_CONNECTION_NOT_FOUND` (no such connection, or it is closing; if it began
    /// closing while the call waited for room, the payloads queued before that are
    /// delivered before the DISCONNECT, the rest are not).
    ///
    /// # Examples
    ///
    /// alice sends three lines to bob on connection `id` in one call (made as in
    /// [`open_direct_connection`](Graph::open_direct_connection)); bob reads them in order:
    ///
    /// ```
    /// # use peergraph::*;
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = |peer: &str| -> Result<(Engine, Graph), Box<dyn std::error::Error>> {
    /// #     let engine = Engine::with_config(EngineConfig { workers: Some(1) })?;
    /// #     engine.startup(Version::V1_0)?;
    /// #     let properties = GraphProperties::new(GraphId::new("chat")?, PeerId::new(peer)?);
    /// #     let graph = engine.create_graph(properties, GraphOptions::default())?;
    /// #     Ok((engine, graph))
    /// # };
    /// # let ((_alice_engine, alice), (_bob_engine, bob)) = (node("alice")?, node("bob")?);
    /// # let wanted = vec![
    /// #     EventRegistration::new(EventType::DirectConnection),
    /// #     EventRegistration::new(EventType::IncomingData),
    /// # ];
    /// # let mut alice_events = alice.register_event(wanted.clone()).await?;
    /// # let mut bob_events = bob.register_event(wanted).await?;
    /// # let bob_address = bob.listen("127.0.0.1:0".parse()?).await?;
    /// # let id = alice.open_direct_connection("bob", bob_address).await?;
    /// # for events in [&mut alice_events, &mut bob_events] {
    /// #     while !matches!(events.recv().await, Some(GraphEvent::DirectConnection(change))
    /// #         if change.status == ConnectionStatus::Connected) {}
    /// # }
    /// const CHAT: DataType = DataType::from_u128(0xC0FFEE);
    ///
    /// alice.send_data_many(id, CHAT, [&b"one"[..], b"two", b"three"]).await?;
    /// let mut lines = Vec::new();
    /// while lines.len() < 3 {
    ///     if let Some(GraphEvent::IncomingData { data, .. }) = bob_events.recv().await {
    ///         lines.push(data);
    ///     }
    /// }
    /// assert_eq!(lines, [&b"one"[..], b"two", b"three"]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_data_many<I>(
        &self,
        connection_id: ConnectionId,
        data_type: DataType,
        payloads: I,
    ) -> Result<(), PeerError>
    where
        I: IntoIterator,
        I::Item: Into<Bytes>,
    {
        let entry = self.check()?;
        let (outbox, items) = send_many_now(&entry.table, connection_id, data_type, payloads)?;
        outbox.send_all(items).await
    }

    /// `PeerGraphCloseDirectConnection`: closes a direct connection (see
    /// [`CloseDirectConnection`](crate::CloseDirectConnection)). Returns once the peer has
    /// read everything sent before the close; both nodes then report DIRECT_CONNECTION
    /// DISCONNECTED with the id.
    ///
    /// # Errors
    /// `PEER_E_CONNECTION_NOT_FOUND` (no such direct connection,
    /// another close of it came first, or the peer is already closing it: what this node
    /// had accepted is still delivered), `PEER_E_TIMEOUT` (the peer did not confirm within
    /// the close timeout, or went silent for the link's idle timeout first; the connection
    /// is gone), `PEER_E_CONNECTION_FAILED` (the link, or its connection actor, failed
    /// during the close), `PEER_E_INVALID_GRAPH` (the graph is closed, or closed while this
    /// close was under way: the connection is gone), `PEER_E_NOT_INITIALIZED` (after the
    /// last Shutdown).
    ///
    /// # Examples
    ///
    /// bob closes connection `id` (made as in
    /// [`open_direct_connection`](Graph::open_direct_connection)); alice is told:
    ///
    /// ```
    /// # use peergraph::*;
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = |peer: &str| -> Result<(Engine, Graph), Box<dyn std::error::Error>> {
    /// #     let engine = Engine::with_config(EngineConfig { workers: Some(1) })?;
    /// #     engine.startup(Version::V1_0)?;
    /// #     let properties = GraphProperties::new(GraphId::new("chat")?, PeerId::new(peer)?);
    /// #     let graph = engine.create_graph(properties, GraphOptions::default())?;
    /// #     Ok((engine, graph))
    /// # };
    /// # let ((_alice_engine, alice), (_bob_engine, bob)) = (node("alice")?, node("bob")?);
    /// # let wanted = vec![
    /// #     EventRegistration::new(EventType::DirectConnection),
    /// #     EventRegistration::new(EventType::IncomingData),
    /// # ];
    /// # let mut alice_events = alice.register_event(wanted.clone()).await?;
    /// # let mut bob_events = bob.register_event(wanted).await?;
    /// # let bob_address = bob.listen("127.0.0.1:0".parse()?).await?;
    /// # let id = alice.open_direct_connection("bob", bob_address).await?;
    /// # for events in [&mut alice_events, &mut bob_events] {
    /// #     while !matches!(events.recv().await, Some(GraphEvent::DirectConnection(change))
    /// #         if change.status == ConnectionStatus::Connected) {}
    /// # }
    /// bob.close_direct_connection(id).await?;
    /// loop {
    ///     if let Some(GraphEvent::DirectConnection(change)) = alice_events.recv().await {
    ///         assert_eq!(change.connection_id, id);
    ///         assert_eq!(change.status, ConnectionStatus::Disconnected);
    ///         break;
    ///     }
    /// }
    /// // The id is gone now.
    /// let again = bob.close_direct_connection(id).await;
    /// assert_eq!(again.unwrap_err().code(), ResultCode::PEER_E_CONNECTION_NOT_FOUND);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn close_direct_connection(
        &self,
        connection_id: ConnectionId,
    ) -> Result<(), PeerError> {
        // The answer comes straight from whoever gives it (see `StartClose`): the caller's
        // task is woken once, when it comes.
        let entry = self.check()?;
        let (reply, answer) = oneshot::channel();
        let message = StartClose {
            connection_id,
            reply,
        };
        match entry.addr.try_send(message) {
            Ok(()) => {}
            Err(SendError::Full(message)) => {
                entry
                    .addr
                    .send(message)
                    .await
                    .map_err(|_| PeerError::INVALID_GRAPH)?;
            }
            Err(SendError::Closed(_)) => return Err(PeerError::INVALID_GRAPH),
        }
        match answer.await {
            Ok(answer) => answer,
            // Dropped unanswered: the engine shut down or the graph closed or stopped with
            // the message in its mailbox, or the connection actor was gone when its Close
            // came (the connection was gone already).
            Err(_) => Err(match self.check() {
                Err(error) => error,
                Ok(entry) if !entry.addr.connected() => PeerError::INVALID_GRAPH,
                Ok(_) => PeerError::CONNECTION_NOT_FOUND,
            }),
        }
    }

    /// The connections of the kinds in `flags` (see [`EnumConnections`]).
    ///
    /// # Errors
    /// `E_INVALIDARG`.
    pub async fn enum_connections(
        &self,
        flags: ConnectionFlags,
    ) -> Result<Vec<ConnectionInfo>, PeerError> {
        self.call(EnumConnections { flags }).await?
    }

    /// A node's information; `None` for this node (see [`GetNodeInfo`]).
    ///
    /// # Errors
    /// `PEER_E_NODE_NOT_FOUND`.
    pub async fn node_info(&self, node_id: Option<NodeId>) -> Result<NodeInfo, PeerError> {
        self.call(GetNodeInfo { node_id }).await?
    }

    /// The graph's status flags.
    ///
    /// # Errors
    /// Only the common codes.
    pub async fn status(&self) -> Result<GraphStatus, PeerError> {
        self.call(GetStatus).await?
    }

    /// The graph's counters.
    ///
    /// # Errors
    /// Only the common codes.
    pub async fn counters(&self) -> Result<GraphCounters, PeerError> {
        self.call(GetCounters).await?
    }

    /// The graph's metrics (see [`GraphMetrics`]): direct connections open now, and
    /// totals since the graph was created or opened: connections opened by direction,
    /// UDP bytes sent and received (ended links included), closes by their result code,
    /// links ended by why, events lost by registrations that fell behind, and incoming
    /// handshakes refused by reason. Cheap: a few integers, and quinn's statistics of each
    /// open link.
    ///
    /// # Errors
    /// Only the common codes: `PEER_E_INVALID_GRAPH` once the graph is closed,
    /// `PEER_E_NOT_INITIALIZED` after the last shutdown.
    pub async fn metrics(&self) -> Result<GraphMetrics, PeerError> {
        self.call(GetMetrics).await?
    }

    /// The transport statistics of one connection (see [`GetConnectionStats`]): bytes
    /// sent and received, round-trip time, congestion window, lost packets. For every
    /// connection, call [`Graph::enum_connections`] and then this for each id.
    ///
    /// # Errors
    /// `E_INVALIDARG` (id 0), `PEER_E_CONNECTION_NOT_FOUND`.
    ///
    /// # Examples
    ///
    /// The statistics of every direct connection of alice:
    ///
    /// ```
    /// # use peergraph::*;
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let node = |peer: &str| -> Result<(Engine, Graph), Box<dyn std::error::Error>> {
    /// #     let engine = Engine::with_config(EngineConfig { workers: Some(1) })?;
    /// #     engine.startup(Version::V1_0)?;
    /// #     let properties = GraphProperties::new(GraphId::new("chat")?, PeerId::new(peer)?);
    /// #     let graph = engine.create_graph(properties, GraphOptions::default())?;
    /// #     Ok((engine, graph))
    /// # };
    /// # let ((_alice_engine, alice), (_bob_engine, bob)) = (node("alice")?, node("bob")?);
    /// # let wanted = vec![
    /// #     EventRegistration::new(EventType::DirectConnection),
    /// #     EventRegistration::new(EventType::IncomingData),
    /// # ];
    /// # let mut alice_events = alice.register_event(wanted.clone()).await?;
    /// # let mut bob_events = bob.register_event(wanted).await?;
    /// # let bob_address = bob.listen("127.0.0.1:0".parse()?).await?;
    /// # let id = alice.open_direct_connection("bob", bob_address).await?;
    /// # for events in [&mut alice_events, &mut bob_events] {
    /// #     while !matches!(events.recv().await, Some(GraphEvent::DirectConnection(change))
    /// #         if change.status == ConnectionStatus::Connected) {}
    /// # }
    /// alice.send_data(id, DataType::from_u128(1), vec![0u8; 10_000]).await?;
    /// for info in alice.enum_connections(ConnectionFlags::DIRECT).await? {
    ///     let stats = alice.connection_stats(info.connection_id).await?;
    ///     println!(
    ///         "{}: sent {} B, received {} B, rtt {:?}, cwnd {} B, lost {}",
    ///         info.peer_id, stats.bytes_sent, stats.bytes_received, stats.rtt,
    ///         stats.congestion_window, stats.lost_packets
    ///     );
    ///     assert!(stats.bytes_sent > 0 && stats.bytes_received > 0);
    ///     assert!(!stats.rtt.is_zero() && stats.congestion_window > 0);
    /// }
    /// let gone = alice.connection_stats(ConnectionId::new(12345)?).await;
    /// assert_eq!(gone.unwrap_err().code(), ResultCode::PEER_E_CONNECTION_NOT_FOUND);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connection_stats(
        &self,
        connection_id: ConnectionId,
    ) -> Result<ConnectionStats, PeerError> {
        self.call(GetConnectionStats { connection_id }).await?
    }

    /// `PeerGraphRegisterEvent`: registers for the events `registrations` select, read
    /// from the returned stream (default queue bounds, see [`QueueLimits`]). Registering
    /// for DIRECT_CONNECTION is what lets the node accept direct connections. The stream
    /// ends when the graph closes or the registration is ended with
    /// [`unregister_event`](Graph::unregister_event).
    ///
    /// # Errors
    /// `E_INVALIDARG` (no registrations).
    ///
    /// # Examples
    ///
    /// ```
    /// use peergraph::{
    ///     Engine, EventRegistration, EventType, GraphEvent, GraphId, GraphOptions,
    ///     GraphProperties, GraphStatus, PeerId, Version,
    /// };
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = Engine::new()?;
    /// engine.startup(Version::V1_0)?;
    /// let properties = GraphProperties::new(GraphId::new("chat")?, PeerId::new("alice")?);
    /// let graph = engine.create_graph(properties, GraphOptions::default())?;
    /// let mut events = graph
    ///     .register_event(vec![EventRegistration::new(EventType::StatusChanged)])
    ///     .await?;
    ///
    /// graph.listen("127.0.0.1:0".parse()?).await?;
    /// let Some(GraphEvent::StatusChanged { status }) = events.recv().await else {
    ///     panic!("expected STATUS_CHANGED");
    /// };
    /// assert!(status.contains(GraphStatus::LISTENING));
    ///
    /// graph.close().await?;
    /// assert_eq!(events.recv().await, None); // the registration ended with the graph
    /// # Ok(())
    /// # }
    /// ```
    pub async fn register_event(
        &self,
        registrations: Vec<EventRegistration>,
    ) -> Result<EventStream, PeerError> {
        self.register_event_with(registrations, QueueLimits::default())
            .await
    }

    /// Registers for events with explicit queue bounds.
    ///
    /// # Errors
    /// `E_INVALIDARG` (no registrations, or a zero bound).
    pub async fn register_event_with(
        &self,
        registrations: Vec<EventRegistration>,
        limits: QueueLimits,
    ) -> Result<EventStream, PeerError> {
        self.call(RegisterEvent {
            registrations,
            limits,
        })
        .await?
    }

    /// Ends a registration.
    ///
    /// # Errors
    /// `E_INVALIDARG` (unknown handle).
    pub async fn unregister_event(&self, handle: EventHandle) -> Result<(), PeerError> {
        self.call(UnregisterEvent { handle }).await?
    }

    /// Closes the graph (see [`CloseGraph`]).
    ///
    /// # Errors
    /// Only the common codes.
    pub async fn close(&self) -> Result<(), PeerError> {
        self.call(CloseGraph).await?
    }

    /// The connection actor of a live connection, for fault-injection tests.
    #[cfg(feature = "fault-injection")]
    pub fn connection_actor(
        &self,
        connection_id: ConnectionId,
    ) -> Option<Addr<crate::connection::ConnectionActor>> {
        self.entry
            .table
            .get(&connection_id)
            .map(|entry| entry.actor.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::Graph;

    /// The size of what `call` returns, for a closure given a graph; the closure is never
    /// called, so no graph is needed.
    fn returned_size<'a, F, R>(_call: F) -> usize
    where
        F: FnOnce(&'a Graph) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// SendData's future is built and moved on every message: it holds its arguments and
    /// a box for the rare wait for room, nothing more (it was 168 bytes when the
    /// fast path's result was held across that wait, and every move was a call to
    /// `memcpy`).
    #[test]
    fn send_data_future_stays_small() {
        let size = returned_size(|graph| {
            graph.send_data(
                peergraph_engine::ConnectionId::new(1).expect("nonzero"),
                peergraph_engine::DataType::from_u128(1),
                bytes::Bytes::new(),
            )
        });
        assert!(size <= 96, "SendData's future takes {size} bytes");
    }
}
