//! [`DatabaseId`]: which graph database, and the file it lives in.

use std::path::{Path, PathBuf};

use peergraph_engine::{check_text, GraphId, PeerError, PeerId, MAX_ID_CHARS};

/// The file name extension of a database file.
pub(crate) const EXTENSION: &str = "pgdb";

/// Which database: the graph, the local peer, and the application's database name.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct DatabaseId {
    pub(crate) graph_id: GraphId,
    pub(crate) peer_id: PeerId,
    pub(crate) name: String,
}

impl DatabaseId {
    /// The database of `peer_id` in `graph_id` called `name`.
    ///
    /// # Errors
    /// `E_INVALIDARG` when `name` is empty, longer than 256 characters or holds a NUL.
    pub fn new(graph_id: GraphId, peer_id: PeerId, name: &str) -> Result<Self, PeerError> {
        if name.is_empty() {
            return Err(PeerError::INVALID_ARG);
        }
        check_text(name, MAX_ID_CHARS)?;
        Ok(DatabaseId {
            graph_id,
            peer_id,
            name: name.to_owned(),
        })
    }

    /// The graph.
    pub fn graph_id(&self) -> &GraphId {
        &self.graph_id
    }

    /// The local peer.
    pub fn peer_id(&self) -> &PeerId {
        &self.peer_id
    }

    /// The application's name for the database.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file this database lives in under `directory`: the SHA-256 of the three names
    /// (each length-prefixed, so no two triples collide by concatenation) in hex, so that
    /// any id makes a short, portable file name.
    pub fn file_path(&self, directory: &Path) -> PathBuf {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [self.graph_id.as_str(), self.peer_id.as_str(), &self.name] {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part.as_bytes());
        }
        let name: String = context
            .finish()
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        directory.join(format!("{name}.{EXTENSION}"))
    }
}
