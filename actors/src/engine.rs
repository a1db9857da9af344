//! The engine: startup and shutdown with a reference count, the handle table that turns a
//! [`GraphHandle`] into a graph actor's address from any thread, the arbiters the actors run
//! on, and the async facade ([`Graph`]) for applications outside actix.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use actix::prelude::*;
use actix_rt::{Arbiter, ArbiterHandle, System};
use bytes::Bytes;
use dashmap::DashMap;
use peergraph_engine::{
    negotiate_version, wire::RefuseReason, ConnectionFlags, ConnectionId, ConnectionInfo, DataType,
    EventRegistration, GraphHandle, GraphId, GraphProperties, GraphStatus, NodeInfo, PeerError,
    PeerId, PeerKey, ResultCode, Version, VersionData,
};
use peergraph_transport::{
    Congestion, GraphSecret, NodeIdentity, DEFAULT_IDLE_TIMEOUT, MAX_IDLE_TIMEOUT, MIN_IDLE_TIMEOUT,
};

use crate::events::{EventHandle, EventStream, QueueLimits};
use crate::graph::{
    outbox_for_send, CloseGraph, ConnectionStats, EnumConnections, GetConnectionStats, GetCounters,
    GetNodeInfo, GetStatus, GraphActor, GraphCounters, GraphSetup, Listen, OpenDirectConnection,
    RegisterEvent, Release, StartClose, UnregisterEvent, DEFAULT_MAX_PENDING_HANDSHAKES,
};
use crate::table::ConnectionTable;

/// The default bound on making a connection (QUIC + TLS + CONNECT/WELCOME): past it the
/// attempt ends with CONNECTION_FAILED (PEER_E_CONNECTION_FAILED).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default bound on CloseDirectConnection waiting for the peer: past it the link is
/// cut and the reply is PEER_E_TIMEOUT.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The default most connections one graph holds.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
/// The default most connections one graph holds with a single remote node.
pub const DEFAULT_MAX_CONNECTIONS_PER_NODE: usize = 16_384;

/// The default of [`GraphOptions::renew_endpoints_after`]: a graph that has held 1,024
/// links renews its endpoints once they have all gone. quinn keeps about 0.5 KiB per
/// connection of an endpoint's peak, so below this there is little to give back.
pub const DEFAULT_RENEW_ENDPOINTS_AFTER: usize = 1024;

/// Who may connect to a graph, and whom it may connect to.
///
/// With a secret, both sides of every link prove they know it, bound to that link's TLS
/// session (see `peergraph_transport::membership_proof`). With an allow-list, the
/// verified key of the other side must be listed, for the peer id it claims.
#[derive(Clone, Debug, Default)]
pub struct Membership {
    /// The graph's shared secret, if any.
    pub secret: Option<GraphSecret>,
    /// The allowed keys and the peer id each may use; `None` allows every key.
    pub allowed: Option<Arc<HashMap<PeerKey, PeerId>>>,
}

impl Membership {
    /// Why a node with `key` claiming `peer_id` may not be linked with, or `None` if it
    /// may: NotAuthorized for a key off the list, KeyMismatch for a listed key used with
    /// another peer id.
    pub(crate) fn check_key(&self, key: &PeerKey, peer_id: &PeerId) -> Option<RefuseReason> {
        let allowed = self.allowed.as_ref()?;
        match allowed.get(key) {
            None => Some(RefuseReason::NotAuthorized),
            Some(listed) if listed != peer_id => Some(RefuseReason::KeyMismatch),
            Some(_) => None,
        }
    }
}

/// Settings of one graph.
#[derive(Clone, Debug)]
pub struct GraphOptions {
    /// The node's identity; `None` generates a fresh key pair and certificate.
    pub identity: Option<NodeIdentity>,
    /// How long a silent link lives (keep-alives go at a third of it). From 100 ms to one
    /// day.
    pub idle_timeout: Duration,
    /// How long making a connection may take.
    pub connect_timeout: Duration,
    /// How long a close waits for the peer.
    pub close_timeout: Duration,
    /// The congestion controller of the graph's links.
    pub congestion: Congestion,
    /// Who may connect.
    pub membership: Membership,
    /// The most connections the graph holds: further incoming links are refused (the
    /// connecting node sees PEER_E_CONNECTION_REFUSED). Outgoing links are the
    /// application's own choice and are not counted against it.
    pub max_connections: usize,
    /// The most connections with one remote node: further incoming links from it are
    /// refused.
    pub max_connections_per_node: usize,
    /// The most incoming handshakes in progress at once; more are refused at the QUIC level.
    pub max_pending_handshakes: usize,
    /// When the graph has held at least this many links at once (connections and
    /// handshakes) since its endpoints were made, and then every link has gone, the
    /// endpoints are renewed: the listening one on the same socket, so its address does not
    /// change; client-only ones are bound anew on first use. This gives back the memory
    /// quinn keeps at the size of an endpoint's peak (about 0.5 KiB a connection, never
    /// shrunk). A connection attempt arriving at that instant is answered when the client
    /// sends it again, a probe timeout (about a second) later. `usize::MAX` never renews;
    /// 0 is out of range (`E_INVALIDARG`).
    pub renew_endpoints_after: usize,
}

impl Default for GraphOptions {
    fn default() -> Self {
        GraphOptions {
            identity: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            congestion: Congestion::default(),
            membership: Membership::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_node: DEFAULT_MAX_CONNECTIONS_PER_NODE,
            max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
            renew_endpoints_after: DEFAULT_RENEW_ENDPOINTS_AFTER,
        }
    }
}

impl GraphOptions {
    /// Uses `identity` for the node.
    pub fn with_identity(mut self, identity: NodeIdentity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Sets the idle timeout.
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// Sets the connect timeout.
    pub fn with_connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    /// Sets the close timeout.
    pub fn with_close_timeout(mut self, close_timeout: Duration) -> Self {
        self.close_timeout = close_timeout;
        self
    }

    /// Sets the congestion controller.
    pub fn with_congestion(mut self, congestion: Congestion) -> Self {
        self.congestion = congestion;
        self
    }

    /// Requires every link to prove knowledge of `secret`.
    pub fn with_secret(mut self, secret: GraphSecret) -> Self {
        self.membership.secret = Some(secret);
        self
    }

    /// Allows the node with key `key`, as peer `peer_id` (the first call turns the
    /// allow-list on: unlisted keys are refused).
    pub fn with_allowed_peer(mut self, key: PeerKey, peer_id: PeerId) -> Self {
        let mut allowed = self
            .membership
            .allowed
            .as_deref()
            .cloned()
            .unwrap_or_default();
        allowed.insert(key, peer_id);
        self.membership.allowed = Some(Arc::new(allowed));
        self
    }

    /// Sets the connection limits: per graph and per remote node.
    pub fn with_connection_limits(mut self, per_graph: usize, per_node: usize) -> Self {
        self.max_connections = per_graph;
        self.max_connections_per_node = per_node;
        self
    }

    /// Sets how many links the graph must have held before its endpoints are renewed once
    /// idle (see [`GraphOptions::renew_endpoints_after`]).
    pub fn with_renew_endpoints_after(mut self, links: usize) -> Self {
        self.renew_endpoints_after = links;
        self
    }

    fn validate(&self) -> Result<(), PeerError> {
        let positive = |d: Duration| !d.is_zero();
        if self.idle_timeout < MIN_IDLE_TIMEOUT
            || self.idle_timeout > MAX_IDLE_TIMEOUT
            || !positive(self.connect_timeout)
            || !positive(self.close_timeout)
            || self.max_connections == 0
            || self.max_connections_per_node == 0
            || self.max_pending_handshakes == 0
            || self.renew_endpoints_after == 0
        {
            return Err(PeerError::INVALID_ARG);
        }
        Ok(())
    }
}

/// What the engine keeps of an open graph: its actor and its connection table.
#[derive(Clone)]
pub(crate) struct GraphEntry {
    pub(crate) addr: Addr<GraphActor>,
    pub(crate) table: Arc<ConnectionTable>,
}

/// State shared by the engine and its graph actors.
pub(crate) struct EngineShared {
    startups: Mutex<u32>,
    initialized: std::sync::atomic::AtomicBool,
    graphs: DashMap<GraphHandle, GraphEntry>,
    graph_ids: DashMap<GraphId, GraphHandle>,
    pub(crate) live_connection_actors: Arc<AtomicUsize>,
}

impl EngineShared {
    pub(crate) fn is_initialized(&self) -> bool {
        self.initialized.load(Ordering::Acquire)
    }

    /// Removes a closed graph from the handle table and frees its graph id.
    pub(crate) fn forget_graph(&self, handle: GraphHandle, graph_id: &GraphId) {
        self.graphs.remove(&handle);
        self.graph_ids
            .remove_if(graph_id, |_, owner| *owner == handle);
    }
}

#[cfg(test)]
impl EngineShared {
    /// Engine state for a graph actor started by a unit test: started, with no graphs.
    pub(crate) fn started() -> Arc<Self> {
        let shared = EngineShared {
            startups: Mutex::new(1),
            initialized: Default::default(),
            graphs: DashMap::new(),
            graph_ids: DashMap::new(),
            live_connection_actors: Arc::new(AtomicUsize::new(0)),
        };
        shared.initialized.store(true, Ordering::Release);
        Arc::new(shared)
    }
}

/// How many worker threads an engine outside actix starts by default: one per core.
fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Settings of an engine.
#[derive(Clone, Debug, Default)]
pub struct EngineConfig {
    /// Worker arbiters the graph actors are spread over. Outside an actix `System` the
    /// default is one thread per core; inside one, the default is the current arbiter
    /// (no extra threads), and a larger number adds arbiters to that system.
    pub workers: Option<usize>,
}

struct OwnedWorker {
    system: System,
    thread: Option<JoinHandle<()>>,
}

struct EngineInner {
    shared: Arc<EngineShared>,
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: AtomicUsize,
    next_handle: AtomicU64,
    owned: Vec<OwnedWorker>,
    _extra_arbiters: Vec<Arbiter>,
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        for worker in &mut self.owned {
            worker.system.stop();
            if let Some(thread) = worker.thread.take() {
                if thread.thread().id() != std::thread::current().id() {
                    let _ = thread.join();
                }
            }
        }
    }
}

/// The peergraph engine (the API's process-wide state, as a value): reference-counted
/// [`startup`](Engine::startup) and [`shutdown`](Engine::shutdown), graph creation, and the
/// handle table. Cheap to clone; the worker threads it owns stop when the last clone is
/// dropped.
///
/// Two ways in, one set of actors: actix applications send the messages of
/// [`GraphActor`] (such as [`CloseDirectConnection`](crate::CloseDirectConnection)) to
/// [`Graph::addr`]; other applications call the async methods of [`Graph`], which send
/// the same messages.
///
/// Outside an actix `System` the engine starts worker threads of its own (one per core by
/// default, see [`EngineConfig`]); inside one it runs its actors on the current arbiter.
///
/// # Examples
///
/// The life of an engine: start, create a graph, close it, shut down.
///
/// ```
/// use peergraph::{Engine, GraphId, GraphOptions, GraphProperties, PeerId, Version};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let engine = Engine::new()?;
/// engine.startup(Version::V1_0)?; // PeerGraphStartup
/// let properties = GraphProperties::new(GraphId::new("chat")?, PeerId::new("alice")?);
/// let graph = engine.create_graph(properties, GraphOptions::default())?; // PeerGraphCreate
/// assert_eq!(engine.graph_count(), 1);
/// graph.close().await?; // PeerGraphClose
/// engine.shutdown().await?; // PeerGraphShutdown
/// assert!(!engine.is_initialized());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("initialized", &self.inner.shared.is_initialized())
            .field("graphs", &self.inner.shared.graphs.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine with default settings (not started: call [`Engine::startup`]).
    ///
    /// # Errors
    /// When a worker thread cannot be spawned.
    pub fn new() -> io::Result<Engine> {
        Engine::with_config(EngineConfig::default())
    }

    /// An engine with `config`.
    ///
    /// # Errors
    /// When a worker thread cannot be spawned.
    pub fn with_config(config: EngineConfig) -> io::Result<Engine> {
        let mut arbiters = Vec::new();
        let mut owned = Vec::new();
        let mut extra = Vec::new();
        if let Some(current) = Arbiter::try_current().filter(|_| System::try_current().is_some()) {
            arbiters.push(current);
            for _ in 1..config.workers.unwrap_or(1).max(1) {
                let arbiter = Arbiter::new();
                arbiters.push(arbiter.handle());
                extra.push(arbiter);
            }
        } else {
            for index in 0..config.workers.unwrap_or_else(default_workers).max(1) {
                let (ready_tx, ready_rx) = std::sync::mpsc::channel();
                let thread = std::thread::Builder::new()
                    .name(format!("peergraph-worker-{index}"))
                    .spawn(move || {
                        let runner = System::new();
                        let _ = ready_tx.send((System::current(), Arbiter::current()));
                        let _ = runner.run();
                    })?;
                let (system, arbiter) = ready_rx
                    .recv()
                    .map_err(|_| io::Error::other("worker thread did not start"))?;
                arbiters.push(arbiter);
                owned.push(OwnedWorker {
                    system,
                    thread: Some(thread),
                });
            }
        }
        Ok(Engine {
            inner: Arc::new(EngineInner {
                shared: Arc::new(EngineShared {
                    startups: Mutex::new(0),
                    initialized: Default::default(),
                    graphs: DashMap::new(),
                    graph_ids: DashMap::new(),
                    live_connection_actors: Arc::new(AtomicUsize::new(0)),
                }),
                arbiters,
                next_arbiter: AtomicUsize::new(0),
                next_handle: AtomicU64::new(1),
                owned,
                _extra_arbiters: extra,
            }),
        })
    }

    fn shared(&self) -> &EngineShared {
        &self.inner.shared
    }

    /// `PeerGraphStartup`: starts (or counts one more start of) the engine. Every startup
    /// needs its [`shutdown`](Engine::shutdown); the last one closes every graph.
    ///
    /// # Errors
    /// `PEER_E_UNSUPPORTED_VERSION` for a version below 1.0.
    ///
    /// # Examples
    ///
    /// ```
    /// use peergraph::{Engine, Version};
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = Engine::new()?;
    /// let served = engine.startup(Version { major: 2, minor: 0 })?;
    /// assert_eq!(served.version, Version::V1_0); // later versions are served as 1.0
    /// engine.startup(Version::V1_0)?; // counted: two startups, two shutdowns
    /// engine.shutdown().await?;
    /// assert!(engine.is_initialized());
    /// engine.shutdown().await?;
    /// assert!(!engine.is_initialized());
    /// # Ok(())
    /// # }
    /// ```
    pub fn startup(&self, version: Version) -> Result<VersionData, PeerError> {
        let data = negotiate_version(version)?;
        let mut startups = self
            .shared()
            .startups
            .lock()
            .map_err(|_| PeerError::new(ResultCode::E_FAIL))?;
        *startups += 1;
        self.shared().initialized.store(true, Ordering::Release);
        Ok(data)
    }

    /// `PeerGraphShutdown`: undoes one startup. The last one closes every graph (their
    /// connections end, their registrations end) before it returns; after it every call
    /// returns `PEER_E_NOT_INITIALIZED` until the next startup.
    ///
    /// # Errors
    /// `PEER_E_NOT_INITIALIZED` when the engine is not started.
    pub async fn shutdown(&self) -> Result<(), PeerError> {
        {
            let mut startups = self
                .shared()
                .startups
                .lock()
                .map_err(|_| PeerError::new(ResultCode::E_FAIL))?;
            if *startups == 0 {
                return Err(PeerError::NOT_INITIALIZED);
            }
            *startups -= 1;
            if *startups > 0 {
                return Ok(());
            }
            self.shared().initialized.store(false, Ordering::Release);
        }
        let graphs: Vec<Addr<GraphActor>> = self
            .shared()
            .graphs
            .iter()
            .map(|entry| entry.addr.clone())
            .collect();
        for addr in graphs {
            let _ = addr.send(Release).await;
        }
        self.shared().graphs.clear();
        self.shared().graph_ids.clear();
        Ok(())
    }

    /// True between startup and the last shutdown.
    pub fn is_initialized(&self) -> bool {
        self.shared().is_initialized()
    }

    /// How many connection actors are alive across all graphs of this engine.
    pub fn connection_actor_count(&self) -> usize {
        self.shared().live_connection_actors.load(Ordering::Relaxed)
    }

    /// How many graphs are open.
    pub fn graph_count(&self) -> usize {
        self.shared().graphs.len()
    }

    fn check_initialized(&self) -> Result<(), PeerError> {
        if self.is_initialized() {
            Ok(())
        } else {
            Err(PeerError::NOT_INITIALIZED)
        }
    }

    /// `PeerGraphCreate`: a new graph, with this node as its creator (so it counts as
    /// synchronized and may listen at once).
    ///
    /// # Errors
    /// `PEER_E_NOT_INITIALIZED`; `E_INVALIDARG` (a property or option out of range);
    /// `PEER_E_DUPLICATE_GRAPH` (a graph with that id is open in this engine); `E_FAIL`
    /// (no identity could be generated).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use peergraph::{Engine, GraphId, GraphOptions, GraphProperties, PeerId, ResultCode, Version};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = Engine::new()?;
    /// engine.startup(Version::V1_0)?;
    /// let properties = GraphProperties::new(GraphId::new("chat")?, PeerId::new("alice")?);
    /// let options = GraphOptions::default().with_idle_timeout(Duration::from_secs(30));
    /// let graph = engine.create_graph(properties.clone(), options)?;
    ///
    /// // One engine holds a graph id once.
    /// let again = engine.create_graph(properties, GraphOptions::default());
    /// assert_eq!(again.unwrap_err().code(), ResultCode::PEER_E_DUPLICATE_GRAPH);
    /// # drop(graph);
    /// # Ok(())
    /// # }
    /// ```
    pub fn create_graph(
        &self,
        properties: GraphProperties,
        options: GraphOptions,
    ) -> Result<Graph, PeerError> {
        self.start_graph(properties, options, true)
    }

    /// `PeerGraphOpen`: joins graph `graph_id` as `peer_id`. There is no local database
    /// yet, so the data is always new: the reply's code is `PEER_S_GRAPH_DATA_CREATED`, and
    /// the node is not synchronized (Listen returns `PEER_E_GRAPH_NOT_READY` until neighbor
    /// connections and synchronization arrive in a later release). Direct connections
    /// can be opened from it.
    ///
    /// # Errors
    /// `PEER_E_NOT_INITIALIZED`; `E_INVALIDARG` (an id out of range);
    /// `PEER_E_DUPLICATE_GRAPH`; `E_FAIL`.
    pub fn open_graph(
        &self,
        graph_id: &str,
        peer_id: &str,
        options: GraphOptions,
    ) -> Result<(Graph, ResultCode), PeerError> {
        self.check_initialized()?;
        let properties = GraphProperties::new(GraphId::new(graph_id)?, PeerId::new(peer_id)?);
        let graph = self.start_graph(properties, options, false)?;
        Ok((graph, ResultCode::PEER_S_GRAPH_DATA_CREATED))
    }

    fn start_graph(
        &self,
        properties: GraphProperties,
        options: GraphOptions,
        synchronized: bool,
    ) -> Result<Graph, PeerError> {
        self.check_initialized()?;
        properties.validate()?;
        options.validate()?;
        let raw = self.inner.next_handle.fetch_add(1, Ordering::Relaxed);
        let handle = GraphHandle::new(raw).ok_or(PeerError::new(ResultCode::E_FAIL))?;
        match self.shared().graph_ids.entry(properties.graph_id.clone()) {
            dashmap::Entry::Occupied(_) => {
                return Err(PeerError::new(ResultCode::PEER_E_DUPLICATE_GRAPH))
            }
            dashmap::Entry::Vacant(vacant) => {
                vacant.insert(handle);
            }
        }
        let identity = match options.identity.clone() {
            Some(identity) => identity,
            None => NodeIdentity::generate().map_err(|_| {
                self.shared().graph_ids.remove(&properties.graph_id);
                PeerError::new(ResultCode::E_FAIL)
            })?,
        };
        let table = Arc::new(ConnectionTable::new());
        let setup = GraphSetup {
            handle,
            shared: self.inner.shared.clone(),
            properties,
            identity,
            options,
            synchronized,
            table: table.clone(),
        };
        let index = self.inner.next_arbiter.fetch_add(1, Ordering::Relaxed);
        let arbiter = &self.inner.arbiters[index % self.inner.arbiters.len()];
        let addr = GraphActor::start_in_arbiter(arbiter, move |_| GraphActor::new(setup));
        let entry = GraphEntry { addr, table };
        self.shared().graphs.insert(handle, entry.clone());
        Ok(Graph {
            handle,
            engine: self.clone(),
            entry,
        })
    }

    /// The open graph with `handle`, from any thread.
    ///
    /// # Errors
    /// `PEER_E_NOT_INITIALIZED`, `PEER_E_INVALID_GRAPH`.
    pub fn graph(&self, handle: GraphHandle) -> Result<Graph, PeerError> {
        self.check_initialized()?;
        let entry = self
            .shared()
            .graphs
            .get(&handle)
            .map(|entry| entry.clone())
            .ok_or(PeerError::INVALID_GRAPH)?;
        Ok(Graph {
            handle,
            engine: self.clone(),
            entry,
        })
    }
}

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
    engine: Engine,
    entry: GraphEntry,
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Graph")
            .field("handle", &self.handle)
            .finish()
    }
}

impl Graph {
    /// The graph's handle (`HGRAPH`).
    pub fn handle(&self) -> GraphHandle {
        self.handle
    }

    /// The graph actor's address, for actix applications.
    pub fn addr(&self) -> Addr<GraphActor> {
        self.entry.addr.clone()
    }

    fn check(&self) -> Result<&GraphEntry, PeerError> {
        self.engine.check_initialized()?;
        if !self.engine.shared().graphs.contains_key(&self.handle) {
            return Err(PeerError::INVALID_GRAPH);
        }
        Ok(&self.entry)
    }

    async fn call<M>(&self, message: M) -> Result<M::Result, PeerError>
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
    /// assert_eq!(graph.node_info(0).await?.addresses, vec![address]);
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
        self.call(OpenDirectConnection {
            peer_id: peer_id.to_owned(),
            address,
        })
        .await?
    }

    /// `PeerGraphSendData`: sends data of type `data_type` on a connection (see
    /// [`crate::SendData`]). Returns once the data is queued, waiting while the
    /// connection's outbox is full; the peer receives it as INCOMING_DATA. Goes straight
    /// to the connection's outbox, not through the graph actor's mailbox.
    ///
    /// # Errors
    /// `E_INVALIDARG` (id 0, payload over [`crate::MAX_DATA_LEN`]),
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
        connection_id: impl Into<u64>,
        data_type: DataType,
        data: impl Into<Bytes>,
    ) -> Result<(), PeerError> {
        let entry = self.check()?;
        let data = data.into();
        let outbox = outbox_for_send(&entry.table, connection_id.into(), &data)?;
        outbox.send_data(data_type, data).await
    }

    /// `PeerGraphCloseDirectConnection`: closes a direct connection (see
    /// [`CloseDirectConnection`](crate::CloseDirectConnection)). Returns once the peer has
    /// read everything sent before the close; both nodes then report DIRECT_CONNECTION
    /// DISCONNECTED with the id.
    ///
    /// # Errors
    /// `E_INVALIDARG` (id 0), `PEER_E_CONNECTION_NOT_FOUND` (no such direct connection,
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
        connection_id: impl Into<u64>,
    ) -> Result<(), PeerError> {
        // The answer comes straight from the connection actor (see `StartClose`).
        self.call(StartClose {
            connection_id: connection_id.into(),
        })
        .await??
        .outcome()
        .await
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

    /// A node's information; 0 for this node (see [`GetNodeInfo`]).
    ///
    /// # Errors
    /// `PEER_E_NODE_NOT_FOUND`.
    pub async fn node_info(&self, node_id: u64) -> Result<NodeInfo, PeerError> {
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
    /// let none = alice.connection_stats(0u64).await;
    /// assert_eq!(none.unwrap_err().code(), ResultCode::E_INVALIDARG);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connection_stats(
        &self,
        connection_id: impl Into<u64>,
    ) -> Result<ConnectionStats, PeerError> {
        self.call(GetConnectionStats {
            connection_id: connection_id.into(),
        })
        .await?
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
