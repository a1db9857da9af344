//! Opening a graph's record database: on disk in a [`RedbStore`] when the options name a
//! location, in memory otherwise; and what `Create`, `Open` and `Delete` answer.

use std::sync::Arc;

use peergraph_engine::graph_core::RecordBook;
use peergraph_engine::{
    GraphId, GraphProperties, MemoryStore, PeerError, PeerId, RecordStore, ResultCode,
};
use peergraph_store::{DatabaseId, Opened, RedbStore};

use crate::options::{DatabaseLocation, GraphOptions};

/// A graph's database, open.
pub(crate) struct Database {
    /// The records' rules over the store.
    pub(crate) book: RecordBook,
    /// The store the book writes to.
    pub(crate) store: Arc<dyn RecordStore>,
    /// The file, for export and import; `None` in memory.
    pub(crate) file: Option<Arc<RedbStore>>,
    /// S_OK when the database existed, `PEER_S_GRAPH_DATA_CREATED` when it was made now.
    pub(crate) code: ResultCode,
}

impl Database {
    /// Opens (`create` false) or creates the database of `properties`' graph and peer.
    /// A new database gets its first metadata durably before this returns: a creator's
    /// counts as synchronized, an opener's does not.
    pub(crate) fn open(
        properties: &GraphProperties,
        options: &GraphOptions,
        create: bool,
    ) -> Result<Database, PeerError> {
        let (store, file, new): (Arc<dyn RecordStore>, _, bool) = match &options.database {
            Some(location) => {
                let id = database_id(&properties.graph_id, &properties.creator_id, location)?;
                let (file, opened) = if create {
                    (
                        RedbStore::create(&location.directory, &id)?,
                        Opened::Created,
                    )
                } else {
                    RedbStore::open(&location.directory, &id)?
                };
                let file = Arc::new(file);
                (file.clone(), Some(file), matches!(opened, Opened::Created))
            }
            None => (Arc::new(MemoryStore::new()), None, true),
        };
        let mut book = RecordBook::open(
            store.clone(),
            properties.creator_id.clone(),
            properties.clone(),
            options.security.clone(),
        )?;
        if new {
            let write = book.initial_write(create);
            let result = store.write_and_wait(write.batch);
            book.written(write.token, result)?;
        }
        let code = if new {
            ResultCode::PEER_S_GRAPH_DATA_CREATED
        } else {
            ResultCode::S_OK
        };
        Ok(Database {
            book,
            store,
            file,
            code,
        })
    }
}

/// The store's id of a graph's database at `location`.
///
/// # Errors
/// `E_INVALIDARG` for a database name that is empty or over 256 characters.
pub(crate) fn database_id(
    graph_id: &GraphId,
    peer_id: &PeerId,
    location: &DatabaseLocation,
) -> Result<DatabaseId, PeerError> {
    DatabaseId::new(graph_id.clone(), peer_id.clone(), &location.name)
}
