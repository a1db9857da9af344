//! The graph database interface ([`RecordStore`]) and the in-memory store the tests and
//! the simulator use.
//!
//! A store keeps one node's copy of one graph: records (tombstones included) and the
//! graph's metadata. It applies no record rules (the core decides which copy wins and when
//! a tombstone goes); it only keeps what it is told, durably where it can. Writes are
//! asynchronous: [`RecordStore::write`] takes a batch and a completion that runs once the
//! batch is durable (or failed), possibly on another thread, so a driver never blocks on a
//! disk flush. A batch is atomic: after a crash it is there whole or not at all.

use std::collections::BTreeMap;
use std::sync::{mpsc, Mutex, PoisonError};

use crate::graph::GraphProperties;
use crate::ids::PeerId;
use crate::record::id::{RecordId, RecordType};
use crate::record::index::IndexScan;
use crate::record::model::{Record, RecordFlags};
use crate::record::search::Search;
use crate::record::time::GraphTime;
use crate::result::{PeerError, ResultCode};

/// What a store keeps about its graph besides records.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct GraphMetadata {
    /// The node has completed a synchronization once (a creator counts as synchronized):
    /// until then record calls answer `PEER_E_GRAPH_NOT_READY`.
    pub synchronized: bool,
    /// The graph time the node was last connected to the graph, where a rejoin's
    /// time-based synchronization starts; `None` before the first connection.
    pub last_connected: Option<GraphTime>,
    /// The graph's properties as this node last knew them.
    pub properties: Option<GraphProperties>,
}

/// One change of a write batch.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum WriteOp {
    /// Stores the record, replacing any copy with its id (a tombstone is put like any
    /// other record).
    Put(Record),
    /// Erases the record with this id, if any (an expired record or tombstone).
    Erase(RecordId),
    /// Replaces the graph metadata.
    SetMetadata(GraphMetadata),
    /// Keeps a record whose validation was deferred (`PEER_E_DEFERRED_VALIDATION`) apart
    /// from the database, replacing any held copy with its id: it is not read by
    /// [`RecordStore::get`] or [`RecordStore::visit`] until it is validated.
    Hold(Record),
    /// Forgets the held record with this id, if any (validated or dropped).
    Release(RecordId),
}

/// Which time index [`RecordStore::due`] reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Due<'a> {
    /// Every record and tombstone, by expiration time.
    Expiry,
    /// The live AUTOREFRESH records `creator` created, by expiration time: the ones this
    /// node renews.
    Refresh {
        /// The creator whose records are wanted (this node's peer id).
        creator: &'a PeerId,
    },
}

impl Due<'_> {
    /// True when `record` belongs in this index.
    pub fn admits(&self, record: &Record) -> bool {
        match self {
            Due::Expiry => true,
            Due::Refresh { creator } => {
                record.flags().contains(RecordFlags::AUTOREFRESH)
                    && !record.is_deleted()
                    && record.creator_id() == *creator
            }
        }
    }
}

/// Which records an enumeration visits; `None` fields do not filter.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct RecordFilter {
    /// Only records of this type.
    pub record_type: Option<RecordType>,
    /// Only records this peer created.
    pub creator: Option<PeerId>,
}

impl RecordFilter {
    /// Every record.
    pub fn all() -> Self {
        RecordFilter::default()
    }

    /// Records of `record_type`.
    pub fn of_type(record_type: RecordType) -> Self {
        RecordFilter {
            record_type: Some(record_type),
            creator: None,
        }
    }

    /// Records `creator` created.
    pub fn by_creator(creator: PeerId) -> Self {
        RecordFilter {
            record_type: None,
            creator: Some(creator),
        }
    }

    /// True when `record` passes the filter.
    pub fn admits(&self, record: &Record) -> bool {
        self.record_type.is_none_or(|t| record.record_type() == t)
            && self
                .creator
                .as_ref()
                .is_none_or(|creator| record.creator_id() == creator)
    }
}

/// What runs when a write batch is durable (`Ok`) or has failed (the code).
pub type WriteCompletion = Box<dyn FnOnce(Result<(), PeerError>) + Send + 'static>;

/// One node's graph database.
///
/// Reads see every batch whose completion has run; whether they see a batch still in
/// flight is up to the store.
pub trait RecordStore: Send + Sync {
    /// Applies `batch` atomically and runs `done` once it is durable or has failed.
    /// `done` may run on another thread, or before `write` returns.
    ///
    /// `done` receives:
    /// - `E_OUTOFMEMORY` when the store's bounded queue of writes is full (retry later);
    /// - `PEER_E_DISK_FULL` when the disk is full;
    /// - `PEER_E_INVALID_DATABASE` when the database was found damaged;
    /// - `PEER_E_GRAPH_SHUTTING_DOWN` when the store is closing;
    /// - `E_FAIL` for any other storage failure.
    fn write(&self, batch: Vec<WriteOp>, done: WriteCompletion);

    /// The record with `id`, tombstone or not.
    ///
    /// # Errors
    /// `PEER_E_INVALID_DATABASE` when the stored copy is damaged; `E_FAIL` when the
    /// storage cannot be read.
    fn get(&self, id: RecordId) -> Result<Option<Record>, PeerError>;

    /// The records with these ids that are stored, in the order of `ids`, read together
    /// (one snapshot where the store has them).
    ///
    /// # Errors
    /// As [`RecordStore::get`].
    fn get_many(&self, ids: &[RecordId]) -> Result<Vec<Record>, PeerError> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(record) = self.get(*id)? {
                found.push(record);
            }
        }
        Ok(found)
    }

    /// Calls `visit` with each record `filter` admits, tombstones included, in id order,
    /// until `visit` returns `false`.
    ///
    /// # Errors
    /// `PEER_E_INVALID_DATABASE` when a stored record is damaged; `E_FAIL` when the
    /// storage cannot be read.
    fn visit(
        &self,
        filter: &RecordFilter,
        visit: &mut dyn FnMut(&Record) -> bool,
    ) -> Result<(), PeerError>;

    /// The graph metadata (the default when none was written).
    ///
    /// # Errors
    /// `PEER_E_INVALID_DATABASE` when it is damaged; `E_FAIL` when the storage cannot be
    /// read.
    fn metadata(&self) -> Result<GraphMetadata, PeerError>;

    /// The records kept apart by [`WriteOp::Hold`], in id order.
    ///
    /// # Errors
    /// As [`RecordStore::visit`].
    fn held(&self) -> Result<Vec<Record>, PeerError>;

    /// Up to `limit` entries of `index` whose expiration time is at or before `until`,
    /// earliest first (ties in id order): what expires, or what this node renews, by then.
    /// `due(index, GraphTime::MAX, 1)` is the next one.
    ///
    /// The default visits every record; a store with a time index overrides it.
    ///
    /// # Errors
    /// As [`RecordStore::visit`].
    fn due(
        &self,
        index: Due<'_>,
        until: GraphTime,
        limit: usize,
    ) -> Result<Vec<(GraphTime, RecordId)>, PeerError> {
        let mut due = Vec::new();
        self.visit(&RecordFilter::all(), &mut |record| {
            if index.admits(record) && record.expiration_time() <= until {
                due.push((record.expiration_time(), record.id()));
            }
            true
        })?;
        due.sort_unstable();
        due.truncate(limit);
        Ok(due)
    }

    /// Writes `batch` and waits until it is durable.
    ///
    /// # Errors
    /// What [`RecordStore::write`] passes to its completion; `E_FAIL` when the store
    /// dropped the completion without running it.
    fn write_and_wait(&self, batch: Vec<WriteOp>) -> Result<(), PeerError> {
        let (sender, receiver) = mpsc::sync_channel(1);
        self.write(
            batch,
            Box::new(move |result| {
                // The receiver waits below; if it is gone there is nobody to tell.
                let _ = sender.send(result);
            }),
        );
        receiver
            .recv()
            .unwrap_or(Err(PeerError::new(ResultCode::E_FAIL)))
    }

    /// The ids of the records with an attribute index key in any of `scans` (see
    /// [`attribute_key`](crate::record::attribute_key)), each once, in id order; `None`
    /// when the store keeps no attribute index (the default), so the caller scans every
    /// record instead.
    ///
    /// # Errors
    /// As [`RecordStore::visit`].
    fn scan_index(&self, scans: &[IndexScan]) -> Result<Option<Vec<RecordId>>, PeerError> {
        let _ = scans;
        Ok(None)
    }

    /// What `EnumRecords` and `SearchRecords` return: the records `filter` admits that are
    /// neither deleted nor expired at `now` and, when `search` is given, match it; in id
    /// order. A search is planned onto the attribute index when the store has one
    /// ([`Search::index_scans`], [`RecordStore::scan_index`]), so only the records one of
    /// its clauses can match are read.
    ///
    /// # Errors
    /// As [`RecordStore::visit`].
    fn live_records(
        &self,
        filter: &RecordFilter,
        search: Option<&Search>,
        now: GraphTime,
    ) -> Result<Vec<Record>, PeerError> {
        if let Some(search) = search {
            if let Some(scans) = search.index_scans() {
                if let Some(ids) = self.scan_index(&scans)? {
                    // An id read from the index has its record unless a write came
                    // between the two reads; a missing one is skipped.
                    let mut records = self.get_many(&ids)?;
                    records.retain(|record| {
                        !record.is_deleted()
                            && !record.is_expired(now)
                            && filter.admits(record)
                            && search.matches(record)
                    });
                    return Ok(records);
                }
            }
        }
        let mut records = Vec::new();
        self.visit(filter, &mut |record| {
            let live = !record.is_deleted() && !record.is_expired(now);
            if live && search.is_none_or(|search| search.matches(record)) {
                records.push(record.clone());
            }
            true
        })?;
        Ok(records)
    }

    /// Every record `filter` admits, tombstones included, in id order.
    ///
    /// # Errors
    /// As [`RecordStore::visit`].
    fn records(&self, filter: &RecordFilter) -> Result<Vec<Record>, PeerError> {
        let mut records = Vec::new();
        self.visit(filter, &mut |record| {
            records.push(record.clone());
            true
        })?;
        Ok(records)
    }
}

/// A [`RecordStore`] in memory: writes are "durable" at once and complete before
/// `write` returns. For tests and the simulator, where a crash keeps the store by keeping
/// the value.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    records: BTreeMap<RecordId, Record>,
    held: BTreeMap<RecordId, Record>,
    metadata: GraphMetadata,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // Every change below is applied whole under the lock and cannot panic midway, so a
        // poisoned lock still guards consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RecordStore for MemoryStore {
    fn write(&self, batch: Vec<WriteOp>, done: WriteCompletion) {
        {
            let mut state = self.state();
            for op in batch {
                match op {
                    WriteOp::Put(record) => {
                        state.records.insert(record.id(), record);
                    }
                    WriteOp::Erase(id) => {
                        state.records.remove(&id);
                    }
                    WriteOp::SetMetadata(metadata) => state.metadata = metadata,
                    WriteOp::Hold(record) => {
                        state.held.insert(record.id(), record);
                    }
                    WriteOp::Release(id) => {
                        state.held.remove(&id);
                    }
                }
            }
        }
        done(Ok(()));
    }

    fn get(&self, id: RecordId) -> Result<Option<Record>, PeerError> {
        Ok(self.state().records.get(&id).cloned())
    }

    fn visit(
        &self,
        filter: &RecordFilter,
        visit: &mut dyn FnMut(&Record) -> bool,
    ) -> Result<(), PeerError> {
        // A snapshot, so that `visit` may call back into the store.
        let records: Vec<Record> = self
            .state()
            .records
            .values()
            .filter(|record| filter.admits(record))
            .cloned()
            .collect();
        for record in &records {
            if !visit(record) {
                break;
            }
        }
        Ok(())
    }

    fn metadata(&self) -> Result<GraphMetadata, PeerError> {
        Ok(self.state().metadata.clone())
    }

    fn held(&self) -> Result<Vec<Record>, PeerError> {
        Ok(self.state().held.values().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::MAX_RECORD_SIZE;
    use crate::ids::GraphId;
    use crate::record::model::tests::{new_record, peer, record_type, sample, MINUTE};

    fn by(creator: &str, id: u128, kind: u128) -> Record {
        let mut new = new_record(GraphTime::from_ticks(10 * MINUTE));
        new.record_type = record_type(kind);
        Record::create(
            new,
            RecordId::from_u128(id).expect("non-nil"),
            peer(creator),
            GraphTime::ZERO,
            MAX_RECORD_SIZE,
        )
        .expect("valid")
    }

    #[test]
    fn puts_gets_replaces_and_erases() {
        let store = MemoryStore::new();
        let record = sample(1, 0);
        store
            .write_and_wait(vec![WriteOp::Put(record.clone())])
            .expect("written");
        assert_eq!(store.get(record.id()), Ok(Some(record.clone())));
        let tombstone = record
            .deleted(peer("bob"), GraphTime::from_ticks(5))
            .expect("live");
        store
            .write_and_wait(vec![WriteOp::Put(tombstone.clone())])
            .expect("written");
        assert_eq!(
            store.get(record.id()),
            Ok(Some(tombstone)),
            "the tombstone is kept"
        );
        store
            .write_and_wait(vec![WriteOp::Erase(record.id())])
            .expect("written");
        assert_eq!(store.get(record.id()), Ok(None));
    }

    #[test]
    fn enumerates_by_type_and_creator() {
        let store = MemoryStore::new();
        let records = [by("alice", 1, 10), by("bob", 2, 10), by("alice", 3, 20)];
        store
            .write_and_wait(records.iter().cloned().map(WriteOp::Put).collect())
            .expect("written");
        let ids = |filter: RecordFilter| -> Vec<u128> {
            store
                .records(&filter)
                .expect("readable")
                .iter()
                .map(|r| r.id().as_uuid().as_u128())
                .collect()
        };
        assert_eq!(ids(RecordFilter::all()), vec![1, 2, 3]);
        assert_eq!(ids(RecordFilter::of_type(record_type(10))), vec![1, 2]);
        assert_eq!(ids(RecordFilter::by_creator(peer("alice"))), vec![1, 3]);
        let both = RecordFilter {
            record_type: Some(record_type(20)),
            creator: Some(peer("alice")),
        };
        assert_eq!(ids(both), vec![3]);
        let mut seen = 0;
        store
            .visit(&RecordFilter::all(), &mut |_| {
                seen += 1;
                seen < 2
            })
            .expect("readable");
        assert_eq!(seen, 2, "visiting stops when asked");
    }

    #[test]
    fn live_records_leave_out_tombstones_expired_and_unmatched() {
        let store = MemoryStore::new();
        let live = by("alice", 1, 10);
        let deleted = by("alice", 2, 10)
            .deleted(peer("alice"), GraphTime::from_ticks(1))
            .expect("live");
        let mut short = new_record(GraphTime::from_ticks(MINUTE));
        short.record_type = record_type(10);
        let short = Record::create(
            short,
            RecordId::from_u128(3).expect("non-nil"),
            peer("bob"),
            GraphTime::ZERO,
            MAX_RECORD_SIZE,
        )
        .expect("valid");
        store
            .write_and_wait(vec![
                WriteOp::Put(live.clone()),
                WriteOp::Put(deleted.clone()),
                WriteOp::Put(short.clone()),
            ])
            .expect("written");
        let now = GraphTime::from_ticks(2 * MINUTE);
        assert_eq!(
            store.live_records(&RecordFilter::all(), None, GraphTime::ZERO),
            Ok(vec![live.clone(), short.clone()])
        );
        assert_eq!(
            store.live_records(&RecordFilter::all(), None, now),
            Ok(vec![live.clone()])
        );
        let search = Search::parse(
            "<peersearch><clause attrib=\"peercreatorid\" type=\"string\">b*</clause></peersearch>",
        )
        .expect("valid");
        assert_eq!(
            store.live_records(&RecordFilter::all(), Some(&search), GraphTime::ZERO),
            Ok(vec![short.clone()])
        );
        let ids = |until: GraphTime| -> Vec<RecordId> {
            store
                .due(Due::Expiry, until, usize::MAX)
                .expect("readable")
                .into_iter()
                .map(|(_, id)| id)
                .collect()
        };
        assert_eq!(ids(GraphTime::ZERO), vec![]);
        assert_eq!(ids(now), vec![short.id()]);
        assert_eq!(
            ids(GraphTime::from_ticks(10 * MINUTE)),
            vec![short.id(), live.id(), deleted.id()],
            "earliest first; a tombstone goes when it expires"
        );
        assert_eq!(
            store.due(Due::Expiry, GraphTime::MAX, 1),
            Ok(vec![(short.expiration_time(), short.id())]),
            "the next one"
        );
    }

    #[test]
    fn keeps_metadata() {
        let store = MemoryStore::new();
        assert_eq!(store.metadata(), Ok(GraphMetadata::default()));
        let metadata = GraphMetadata {
            synchronized: true,
            last_connected: Some(GraphTime::from_ticks(42)),
            properties: Some(GraphProperties::new(
                GraphId::new("graph").expect("valid"),
                peer("alice"),
            )),
        };
        store
            .write_and_wait(vec![WriteOp::SetMetadata(metadata.clone())])
            .expect("written");
        assert_eq!(store.metadata(), Ok(metadata));
    }
}
