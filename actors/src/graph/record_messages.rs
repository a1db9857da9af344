//! The record and database calls a [`GraphActor`](crate::GraphActor) answers.
//!
//! A call that changes records replies only once the change is durable on disk (or in
//! memory, for a graph without a database); its RECORD_CHANGED event follows. Besides the
//! codes each `# Errors` lists, every call can return `PEER_E_NOT_INITIALIZED` and
//! `PEER_E_INVALID_GRAPH`; the calls that change records also `PEER_E_GRAPH_SHUTTING_DOWN`
//! (the graph is closing: writes already made still complete) and `E_OUTOFMEMORY` (too
//! many writes in flight, or the store's queue is full: try again), and, when the write
//! itself fails, `PEER_E_DISK_FULL`, `PEER_E_INVALID_DATABASE` or `E_FAIL`.

use std::path::PathBuf;

use actix::prelude::*;
use peergraph_engine::{
    GraphProperties, NewRecord, PeerError, PeerId, Record, RecordId, RecordType, RecordUpdate,
};

/// `PeerGraphAddRecord`: adds a record. The engine sets its id, version 1, creator and
/// times. Replies with the id once the record is durable; RECORD_CHANGED (ADDED) follows.
/// When the validation callback defers it, the record is held (durably) and gets no
/// event until [`ValidateDeferredRecords`] accepts it.
///
/// # Errors
/// - `PEER_E_GRAPH_NOT_READY`: the node has not synchronized.
/// - `E_INVALIDARG`: the expiration is not in the future, or an AUTOREFRESH record lives
///   under four minutes.
/// - `PEER_E_MAX_RECORD_SIZE_EXCEEDED`: larger than the graph's `max_record_size`.
/// - `E_ACCESSDENIED`: the validation callback refused it; the securing callback's own
///   error when that fails.
/// - (`PEER_E_INVALID_ATTRIBUTES` comes earlier, from [`Attributes::parse`](peergraph_engine::Attributes::parse).)
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<RecordId, PeerError>")]
pub struct AddRecord {
    /// What the application gives: type, attributes, expiration, AUTOREFRESH, data.
    pub record: NewRecord,
}

/// `PeerGraphUpdateRecord`: changes a record's attributes, data or expiration (which may
/// only grow). The version grows by one. Replies once durable; RECORD_CHANGED (UPDATED)
/// follows.
///
/// # Errors
/// - `PEER_E_GRAPH_NOT_READY`.
/// - `PEER_E_RECORD_NOT_FOUND`: no such record, or it is deleted, expired or held.
/// - `E_INVALIDARG`: the new expiration is earlier than the current one or not in the
///   future.
/// - `PEER_E_MAX_RECORD_SIZE_EXCEEDED`, `E_ACCESSDENIED` as [`AddRecord`].
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), PeerError>")]
pub struct UpdateRecord {
    /// The record's id.
    pub record_id: RecordId,
    /// What changes.
    pub update: RecordUpdate,
}

/// `PeerGraphDeleteRecord`: deletes a record. It becomes a tombstone that lives until the
/// record's expiration (so the deletion reaches every node); with `local_only` only this
/// node's copy is erased, and the record may come back at the next synchronization.
/// Replies once durable; RECORD_CHANGED (DELETED) follows.
///
/// # Errors
/// `PEER_E_GRAPH_NOT_READY`; `PEER_E_RECORD_NOT_FOUND` (no such record, or already
/// deleted or expired); `E_ACCESSDENIED` (the validation callback refused it).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<(), PeerError>")]
pub struct DeleteRecord {
    /// The record's id.
    pub record_id: RecordId,
    /// Erase this node's copy only, without a tombstone.
    pub local_only: bool,
}

/// `PeerGraphGetRecord`: one record.
///
/// # Errors
/// `PEER_E_RECORD_NOT_FOUND` (no such record, or it is deleted, expired or held).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<Record, PeerError>")]
pub struct GetRecord {
    /// The record's id.
    pub record_id: RecordId,
}

/// `PeerGraphEnumRecords`: the live records, optionally of one type and/or by one
/// creator, in id order.
///
/// # Errors
/// Only the common codes (and `PEER_E_INVALID_DATABASE` for a damaged record).
#[derive(Message, Debug, Clone, Default)]
#[rtype(result = "Result<Vec<Record>, PeerError>")]
pub struct EnumRecords {
    /// Only records of this type.
    pub record_type: Option<RecordType>,
    /// Only records this peer created.
    pub creator: Option<PeerId>,
}

/// `PeerGraphSearchRecords`: the live records matching `criteria`, a `<peersearch>`
/// document (docs/RECORDS.md gives the grammar), in id order.
///
/// # Errors
/// `PEER_E_INVALID_SEARCH` (the criteria are not valid).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Vec<Record>, PeerError>")]
pub struct SearchRecords {
    /// The search criteria.
    pub criteria: String,
}

/// `PeerGraphValidateDeferredRecords`: runs the validation callback again on held
/// records: accepted ones enter the database (RECORD_CHANGED), refused ones are dropped,
/// deferred ones stay held. Ids that are not held are skipped.
///
/// # Errors
/// `E_INVALIDARG` (no ids); `PEER_E_GRAPH_NOT_READY`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), PeerError>")]
pub struct ValidateDeferredRecords {
    /// The held records to validate again.
    pub record_ids: Vec<RecordId>,
}

/// `PeerGraphGetProperties`: the graph's properties.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<GraphProperties, PeerError>")]
pub struct GetProperties;

/// `PeerGraphSetProperties`: changes the friendly name, comment, max record size,
/// presence lifetime and presence maximum. Replies once durable; PROPERTY_CHANGED
/// follows. Only the graph's creator may; the graph id, creator and scope never change.
///
/// # Errors
/// `E_INVALIDARG` (a field out of range, or a change of graph id, creator or scope);
/// `E_ACCESSDENIED` (this node is not the creator); `PEER_E_GRAPH_NOT_READY`.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), PeerError>")]
pub struct SetProperties {
    /// The new properties.
    pub properties: GraphProperties,
}

/// `PeerGraphExportDatabase`: writes the graph's records and metadata to `path` in
/// peergraph's export format (docs/RECORDS.md), versioned and checksummed. Replies with
/// how many records it holds (tombstones included; held records are not exported).
///
/// # Errors
/// `PEER_E_DATABASE_NOT_PRESENT` (the graph keeps its records in memory);
/// `PEER_E_NOT_FOUND` (the file's directory does not exist); `PEER_E_DISK_FULL`,
/// `E_ACCESSDENIED`, `E_FAIL` (the file could not be written).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<u64, PeerError>")]
pub struct ExportDatabase {
    /// The file to write.
    pub path: PathBuf,
}

/// `PeerGraphImportDatabase`: merges an export of this graph and peer into the database:
/// each record is taken when new or when it wins the conflict order; the database counts
/// as synchronized when the export was. Only before the graph listens or connects.
/// Replies with how many records were taken; RECORD_CHANGED follows for each (ADDED,
/// UPDATED, or DELETED for a tombstone over a live copy).
///
/// # Errors
/// `PEER_E_GRAPH_IN_USE` (the graph has listened or had a connection);
/// `PEER_E_INVALID_DATABASE` (not an export, another graph's or peer's, damaged or cut
/// short); `PEER_E_NOT_FOUND` (no such file); `E_ACCESSDENIED`;
/// `PEER_E_DATABASE_NOT_PRESENT` (the graph keeps its records in memory).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<u64, PeerError>")]
pub struct ImportDatabase {
    /// The export file.
    pub path: PathBuf,
}
