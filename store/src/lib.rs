//! peergraph's graph database on disk: the engine's [`RecordStore`] in one redb file per
//! (graph id, peer id, database name), with writes group-committed on a thread of the
//! store's own.
//!
//! ```no_run
//! use peergraph_engine::{GraphId, PeerId, RecordStore, RecordFilter};
//! use peergraph_store::{DatabaseId, RedbStore};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let id = DatabaseId::new(GraphId::new("chat")?, PeerId::new("alice")?, "main")?;
//! let (store, opened) = RedbStore::open(std::path::Path::new("/var/lib/app/graphs"), &id)?;
//! println!("{:?}: {} records", opened.code(), store.records(&RecordFilter::all())?.len());
//! # Ok(())
//! # }
//! ```
//!
//! redb is pinned to major 2 (2.6 writes redb's v3 file format, which later majors read)
//! because majors 3 and up need a newer Rust than the workspace's `rust-version`. The
//! layout of the file is in `schema`; a change of it bumps [`STORE_FORMAT_VERSION`].
//!
//! A damaged file is reported at open as `PEER_E_INVALID_DATABASE`: the store checks
//! every page checksum, its format version and the identity the file belongs to. redb
//! asserts on some damage (a truncated file) instead of returning an error; the store
//! catches that panic at its boundary and reports the same code, so the build must keep
//! the default `panic = "unwind"` (the default hook still prints the assertion).
//!
//! # Layout
//! - `database`: [`RedbStore`] (open, create, delete, reads), [`DatabaseId`], [`Opened`].
//! - `export`: the export file format, `ExportDatabase` and `ImportDatabase`.
//! - `writer`: the group-commit thread and its bounds.
//! - `handle`: the redb handle, opened again after an I/O failure (a full disk).
//! - `schema`: tables, format version, metadata encoding.
//! - `error`: [`StoreError`], a result code with its cause.

mod database;
mod error;
mod export;
mod handle;
mod id;
mod schema;
mod writer;

pub use peergraph_engine::RecordStore;

pub use crate::database::{Opened, RedbStore};
pub use crate::error::StoreError;
pub use crate::export::{ImportedChange, EXPORT_FORMAT_VERSION};
pub use crate::id::DatabaseId;
pub use crate::schema::STORE_FORMAT_VERSION;
pub use crate::writer::{MAX_GROUP_BATCHES, MAX_GROUP_BYTES, WRITE_QUEUE_BOUND};
