//! peergraph's side, through the public API only: an [`Engine`] with worker threads of its
//! own, a graph created with a database on disk ([`GraphOptions::with_database`]: one
//! redb file, writes group-committed and answered once durable), and the facade's record
//! calls ([`Graph::add_record`], [`Graph::update_record`], [`Graph::search_records`],
//! [`Graph::get_record`]), each a message to the graph actor.
//!
//! The graph's node identity is made once and passed in, as an application that keeps
//! its identity does, so that reopening a graph does not include making a key pair.

use std::path::Path;

use anyhow::{anyhow, bail};
use peergraph::{
    Attributes, Engine, Graph, GraphId, GraphOptions, GraphProperties, NewRecord, NodeIdentity,
    PeerError, PeerId, RecordId, RecordType, RecordUpdate, ResultCode, Version,
};

use crate::records::content::{Query, RecordContent};
use crate::records::{Db, Side, CREATOR, GRAPH, RECORD_TYPE};

/// The database's name under its directory.
const DATABASE: &str = "main";

fn peer(error: PeerError) -> anyhow::Error {
    anyhow!("peergraph: {error}")
}

/// peergraph: one started engine whose graphs are made and reopened.
pub struct EngineSide {
    engine: Engine,
    identity: NodeIdentity,
    record_type: RecordType,
}

impl EngineSide {
    /// Starts an engine (`PeerGraphStartup`).
    ///
    /// # Errors
    /// When the engine, its workers or the identity cannot be made.
    pub fn start() -> anyhow::Result<EngineSide> {
        let engine = Engine::new()?;
        engine.startup(Version::V1_0).map_err(peer)?;
        Ok(EngineSide {
            engine,
            identity: NodeIdentity::generate()?,
            record_type: RecordType::from_u128(RECORD_TYPE).map_err(peer)?,
        })
    }

    /// Shuts the engine down (`PeerGraphShutdown`).
    ///
    /// # Errors
    /// When the engine refuses.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.engine.shutdown().await.map_err(peer)
    }

    fn options(&self, directory: &Path) -> GraphOptions {
        GraphOptions::default()
            .with_identity(self.identity.clone())
            .with_database(directory, DATABASE)
    }

    fn db(&self, graph: Graph) -> EngineDb {
        EngineDb {
            graph,
            record_type: self.record_type,
        }
    }
}

impl Side for EngineSide {
    type Db = EngineDb;

    fn name(&self) -> &'static str {
        "engine"
    }

    async fn create(&self, directory: &Path) -> anyhow::Result<EngineDb> {
        let properties = GraphProperties::new(
            GraphId::new(GRAPH).map_err(peer)?,
            PeerId::new(CREATOR).map_err(peer)?,
        );
        let graph = self
            .engine
            .create_graph(properties, self.options(directory))
            .map_err(peer)?;
        Ok(self.db(graph))
    }

    async fn reopen(&self, directory: &Path) -> anyhow::Result<EngineDb> {
        let (graph, code) = self
            .engine
            .open_graph(GRAPH, CREATOR, self.options(directory))
            .map_err(peer)?;
        if code != ResultCode::S_OK {
            bail!("open_graph answered {code:?}, not S_OK: the database was not there");
        }
        Ok(self.db(graph))
    }
}

/// One open graph.
pub struct EngineDb {
    graph: Graph,
    record_type: RecordType,
}

impl Db for EngineDb {
    type Id = RecordId;

    async fn add(&self, _index: usize, content: RecordContent) -> anyhow::Result<RecordId> {
        let record = NewRecord {
            record_type: self.record_type,
            attributes: Attributes::parse(&content.attributes_xml).map_err(peer)?,
            expiration: content.expiration,
            autorefresh: false,
            data: content.data,
        };
        self.graph.add_record(record).await.map_err(peer)
    }

    async fn update(&self, id: &RecordId, data: Vec<u8>) -> anyhow::Result<()> {
        let update = RecordUpdate {
            data: Some(data),
            ..RecordUpdate::default()
        };
        self.graph.update_record(*id, update).await.map_err(peer)
    }

    async fn search(&self, query: &Query) -> anyhow::Result<usize> {
        let found = self
            .graph
            .search_records(&query.to_xml())
            .await
            .map_err(peer)?;
        Ok(std::hint::black_box(found).len())
    }

    async fn get(&self, id: &RecordId) -> anyhow::Result<bool> {
        match self.graph.get_record(*id).await {
            Ok(record) => Ok(std::hint::black_box(record).id() == *id),
            Err(error) if error.code() == ResultCode::PEER_E_RECORD_NOT_FOUND => Ok(false),
            Err(error) => Err(peer(error)),
        }
    }

    async fn close(self) -> anyhow::Result<()> {
        // CloseGraph answers once the database is closed.
        self.graph.close().await.map_err(peer)
    }
}
