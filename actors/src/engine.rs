//! The engine: startup and shutdown with a reference count, graph creation, and the
//! arbiters the actors run on. The handle table is `registry`; the async facade
//! ([`Graph`]) is `facade`.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use actix::prelude::*;
use actix_rt::{Arbiter, ArbiterHandle, System};
use peergraph_engine::{
    negotiate_version, GraphHandle, GraphId, GraphProperties, PeerError, PeerId, ResultCode,
    Version, VersionData,
};
use peergraph_store::RedbStore;
use peergraph_transport::NodeIdentity;

use crate::database::{database_id, Database};
use crate::facade::Graph;
use crate::graph::{GraphActor, GraphSetup, Release};
use crate::lifecycle::EngineState;
use crate::options::{DatabaseLocation, GraphOptions};
use crate::registry::{GraphEntry, Registry};
use crate::table::ConnectionTable;

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
    state: Arc<EngineState>,
    registry: Arc<Registry>,
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
            .field("initialized", &self.inner.state.is_initialized())
            .field("graphs", &self.inner.registry.len())
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
                state: Arc::new(EngineState::default()),
                registry: Arc::new(Registry::default()),
                arbiters,
                next_arbiter: AtomicUsize::new(0),
                next_handle: AtomicU64::new(1),
                owned,
                _extra_arbiters: extra,
            }),
        })
    }

    fn state(&self) -> &EngineState {
        &self.inner.state
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
        self.state().start()?;
        Ok(data)
    }

    /// `PeerGraphShutdown`: undoes one startup. The last one closes every graph (their
    /// connections end, their registrations end) before it returns; after it every call
    /// returns `PEER_E_NOT_INITIALIZED` until the next startup.
    ///
    /// # Errors
    /// `PEER_E_NOT_INITIALIZED` when the engine is not started.
    pub async fn shutdown(&self) -> Result<(), PeerError> {
        if !self.state().stop()? {
            return Ok(());
        }
        for addr in self.inner.registry.drain() {
            let _ = addr.send(Release).await;
        }
        Ok(())
    }

    /// True between startup and the last shutdown.
    pub fn is_initialized(&self) -> bool {
        self.state().is_initialized()
    }

    /// How many connection actors are alive across all graphs of this engine.
    pub fn connection_actor_count(&self) -> usize {
        self.state().connection_actors()
    }

    /// How many graphs are open.
    pub fn graph_count(&self) -> usize {
        self.inner.registry.len()
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
    /// With [`GraphOptions::with_database`] the records live in a new database file there
    /// (its first metadata durable before this returns); without, in memory.
    ///
    /// # Errors
    /// - `PEER_E_NOT_INITIALIZED`; `E_INVALIDARG` (a property or option out of range, or
    ///   only one security callback); `PEER_E_DUPLICATE_GRAPH` (a graph with that id is
    ///   open in this engine); `E_FAIL` (no identity could be generated).
    /// - `PEER_E_DATABASE_ALREADY_PRESENT` (the database exists: open it with
    ///   [`open_graph`](Engine::open_graph), or delete it with
    ///   [`delete_graph`](Engine::delete_graph)); `PEER_E_DATABASE_ACCESSDENIED`,
    ///   `PEER_E_DISK_FULL`, `PEER_E_DBINITIALIZATION_FAILED` (it cannot be made).
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
            .map(|(graph, _)| graph)
    }

    /// `PeerGraphOpen`: opens graph `graph_id` as `peer_id` with the database the options
    /// name ([`GraphOptions::with_database`]; without one the records live in memory).
    /// Replies with the graph and `S_OK` when the database existed, or
    /// `PEER_S_GRAPH_DATA_CREATED` when it was made now.
    ///
    /// A database that has synchronized once (a creator's has) opens synchronized: the
    /// graph may listen and change records at once. A new one is not: Listen and the
    /// record changes answer `PEER_E_GRAPH_NOT_READY` until synchronization with a
    /// neighbor (a later release) or an ImportDatabase of a synchronized export. Direct
    /// connections can be opened from it either way.
    ///
    /// # Errors
    /// - `PEER_E_NOT_INITIALIZED`; `E_INVALIDARG` (an id, the database name or an option
    ///   out of range, or only one security callback); `PEER_E_DUPLICATE_GRAPH` (open in
    ///   this engine); `E_FAIL` (no identity could be generated).
    /// - `PEER_E_INVALID_DATABASE` (the file is damaged, cut short, or another graph's);
    ///   `PEER_E_GRAPH_IN_USE` (another process or engine has it open);
    ///   `PEER_E_DATABASE_ACCESSDENIED`, `PEER_E_DISK_FULL`,
    ///   `PEER_E_DBINITIALIZATION_FAILED` (it cannot be read or made).
    pub fn open_graph(
        &self,
        graph_id: &str,
        peer_id: &str,
        options: GraphOptions,
    ) -> Result<(Graph, ResultCode), PeerError> {
        self.check_initialized()?;
        let properties = GraphProperties::new(GraphId::new(graph_id)?, PeerId::new(peer_id)?);
        self.start_graph(properties, options, false)
    }

    /// `PeerGraphDelete`: removes the database `location` names for graph `graph_id` and
    /// peer `peer_id`. The graph must be closed.
    ///
    /// # Errors
    /// `PEER_E_NOT_INITIALIZED`; `E_INVALIDARG` (an id or the name out of range);
    /// `PEER_E_GRAPH_IN_USE` (the graph is open, here or in another process);
    /// `PEER_E_DATABASE_NOT_PRESENT` (there is no such database);
    /// `PEER_E_DATABASE_ACCESSDENIED`, `PEER_E_DBINITIALIZATION_FAILED` (it could not be
    /// removed).
    pub fn delete_graph(
        &self,
        graph_id: &str,
        peer_id: &str,
        location: &DatabaseLocation,
    ) -> Result<(), PeerError> {
        self.check_initialized()?;
        let graph_id = GraphId::new(graph_id)?;
        let id = database_id(&graph_id, &PeerId::new(peer_id)?, location)?;
        if self.inner.registry.holds(&graph_id) {
            return Err(PeerError::new(ResultCode::PEER_E_GRAPH_IN_USE));
        }
        RedbStore::delete(&location.directory, &id)?;
        Ok(())
    }

    fn start_graph(
        &self,
        properties: GraphProperties,
        options: GraphOptions,
        create: bool,
    ) -> Result<(Graph, ResultCode), PeerError> {
        self.check_initialized()?;
        properties.validate()?;
        options.validate()?;
        let raw = self.inner.next_handle.fetch_add(1, Ordering::Relaxed);
        let handle = GraphHandle::new(raw).ok_or(PeerError::new(ResultCode::E_FAIL))?;
        let registry = self.inner.registry.clone();
        registry.reserve(&properties.graph_id, handle)?;
        let database = match Database::open(&properties, &options, create) {
            Ok(database) => database,
            Err(error) => {
                registry.forget(handle, &properties.graph_id);
                return Err(error);
            }
        };
        let code = database.code;
        let identity = match options.identity.clone() {
            Some(identity) => identity,
            None => NodeIdentity::generate().map_err(|_| {
                registry.forget(handle, &properties.graph_id);
                PeerError::new(ResultCode::E_FAIL)
            })?,
        };
        let table = Arc::new(ConnectionTable::default());
        let setup = GraphSetup {
            handle,
            state: self.inner.state.clone(),
            forget: Box::new({
                let registry = registry.clone();
                let graph_id = properties.graph_id.clone();
                move || registry.forget(handle, &graph_id)
            }),
            properties,
            identity,
            options,
            database,
            table: table.clone(),
        };
        let index = self.inner.next_arbiter.fetch_add(1, Ordering::Relaxed);
        let arbiter = &self.inner.arbiters[index % self.inner.arbiters.len()];
        let addr = GraphActor::start_in_arbiter(arbiter, move |_| GraphActor::new(setup));
        let entry = GraphEntry::new(addr, table);
        registry.insert(handle, entry.clone());
        Ok((self.facade(handle, entry), code))
    }

    /// The open graph with `handle`, from any thread.
    ///
    /// # Errors
    /// `PEER_E_NOT_INITIALIZED`, `PEER_E_INVALID_GRAPH`.
    pub fn graph(&self, handle: GraphHandle) -> Result<Graph, PeerError> {
        self.check_initialized()?;
        let entry = self
            .inner
            .registry
            .get(handle)
            .ok_or(PeerError::INVALID_GRAPH)?;
        Ok(self.facade(handle, entry))
    }

    fn facade(&self, handle: GraphHandle, entry: GraphEntry) -> Graph {
        Graph::new(handle, self.inner.state.clone(), entry, self.inner.clone())
    }
}
