//! [`RedbStore`]: one graph database file, opened, checked, read, and written through
//! the writer thread.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use peergraph_engine::{
    Due, GraphMetadata, GraphTime, IndexScan, PeerError, Record, RecordFilter, RecordId,
    RecordStore, ResultCode, WriteCompletion, WriteOp,
};
use redb::{Database, ReadableTable};

use crate::error::{damaged, guarded, StoreError};
use crate::export::ImportedChange;
use crate::handle::Handle;
use crate::id::{DatabaseId, EXTENSION};
use crate::schema::{
    decode_metadata, due_key, open_table, split_due_key, BY_ATTRIBUTE, BY_CREATOR, BY_EXPIRY,
    BY_TYPE, DUE_KEY_LEN, HELD, KEY_DATABASE_NAME, KEY_FORMAT, KEY_GRAPH_ID, KEY_METADATA,
    KEY_PEER_ID, META, RECORDS, REFRESH_BY_EXPIRY, STORE_FORMAT_VERSION,
};
use crate::writer::{self, Job, WRITE_QUEUE_BOUND};

/// Whether [`RedbStore::open`] found the database or made it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Opened {
    /// The database existed (`S_OK`).
    Existed,
    /// The database was created now (`PEER_S_GRAPH_DATA_CREATED`).
    Created,
}

impl Opened {
    /// The success code `Open` returns for this outcome.
    pub fn code(self) -> ResultCode {
        match self {
            Opened::Existed => ResultCode::S_OK,
            Opened::Created => ResultCode::PEER_S_GRAPH_DATA_CREATED,
        }
    }
}

/// A graph database in one redb file, implementing the engine's [`RecordStore`].
///
/// Reads run on the caller's thread against the last committed state; writes go to a
/// writer thread of the store's own that commits them in groups (see the `writer` module)
/// and completes each batch only once it is durable. After an I/O failure (a commit on a
/// full disk) the store opens the file again before answering, so the failed call reports
/// its code and later calls see the last commit (see the `handle` module). Dropping the
/// store finishes the queued writes, then closes the file.
pub struct RedbStore {
    database: Arc<Handle>,
    queue: Option<SyncSender<Job>>,
    writer: Option<JoinHandle<()>>,
    path: PathBuf,
    id: DatabaseId,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

impl RedbStore {
    /// Opens the database `id` under `directory`, creating it (and the directory) when it
    /// does not exist (`Open`).
    ///
    /// The whole file is checked at open (every page checksum, the format version, and
    /// that it belongs to `id`), so a damaged file is reported here rather than at some
    /// later read. A file is created under a temporary name and renamed into place once
    /// initialized, so a crash while creating never leaves a half-made database.
    ///
    /// # Errors
    /// - `PEER_E_INVALID_DATABASE`: the file is damaged (truncated, changed), of another
    ///   format version, or of another graph, peer or name.
    /// - `PEER_E_GRAPH_IN_USE`: another handle has it open.
    /// - `PEER_E_DATABASE_ACCESSDENIED`: the file or directory may not be read or written.
    /// - `PEER_E_DISK_FULL`: no space to create it.
    /// - `PEER_E_DBINITIALIZATION_FAILED`: any other I/O failure.
    pub fn open(directory: &Path, id: &DatabaseId) -> Result<(RedbStore, Opened), StoreError> {
        let path = id.file_path(directory);
        if path.exists() {
            let database = guarded(|| open_existing(&path, id))?;
            Ok((
                RedbStore::start(database, path, id.clone()),
                Opened::Existed,
            ))
        } else {
            let database = guarded(|| create_new(directory, &path, id))?;
            Ok((
                RedbStore::start(database, path, id.clone()),
                Opened::Created,
            ))
        }
    }

    /// Creates the database `id` under `directory` (`Create`).
    ///
    /// # Errors
    /// `PEER_E_DATABASE_ALREADY_PRESENT` when it exists; otherwise as [`RedbStore::open`].
    pub fn create(directory: &Path, id: &DatabaseId) -> Result<RedbStore, StoreError> {
        let path = id.file_path(directory);
        if path.exists() {
            return Err(StoreError::new(ResultCode::PEER_E_DATABASE_ALREADY_PRESENT));
        }
        let database = guarded(|| create_new(directory, &path, id))?;
        Ok(RedbStore::start(database, path, id.clone()))
    }

    /// Removes the database `id` under `directory` (`Delete`).
    ///
    /// # Errors
    /// - `PEER_E_DATABASE_NOT_PRESENT`: there is no such database.
    /// - `PEER_E_GRAPH_IN_USE`: it is open.
    /// - `PEER_E_DATABASE_ACCESSDENIED`, `PEER_E_DBINITIALIZATION_FAILED`: the file could
    ///   not be removed.
    pub fn delete(directory: &Path, id: &DatabaseId) -> Result<(), StoreError> {
        let path = id.file_path(directory);
        if !path.exists() {
            return Err(StoreError::new(ResultCode::PEER_E_DATABASE_NOT_PRESENT));
        }
        // Opening takes redb's file lock: it fails while any handle holds the file.
        match guarded(|| Database::open(&path).map_err(StoreError::opening)) {
            Err(error) if error.code() == ResultCode::PEER_E_GRAPH_IN_USE => return Err(error),
            // A damaged file may still be deleted; dropping an opened one releases it.
            Ok(_) | Err(_) => {}
        }
        fs::remove_file(&path).map_err(StoreError::io)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database this store holds.
    pub fn id(&self) -> &DatabaseId {
        &self.id
    }

    /// Writes the whole database (records, tombstones and metadata, from one consistent
    /// snapshot; not the held records, which are not part of the graph yet) to `path` in
    /// peergraph's export format (`ExportDatabase`); see the `export` module for the
    /// layout. The file is written under a temporary name and renamed into place once
    /// synced. Returns how many records it holds.
    ///
    /// # Errors
    /// - `PEER_E_DISK_FULL`, `E_ACCESSDENIED`: the file could not be written;
    ///   `PEER_E_NOT_FOUND`: its directory does not exist.
    /// - `PEER_E_INVALID_DATABASE`: a stored record or the metadata is damaged.
    /// - `E_FAIL`: any other I/O or storage failure.
    pub fn export(&self, path: &Path) -> Result<u64, StoreError> {
        self.database
            .with(|database| crate::export::export(database, &self.id, path))
    }

    /// Merges an export file into this database (`ImportDatabase`): each record is kept
    /// when it is new here or wins the conflict order over the stored copy; the metadata
    /// becomes synchronized when either side was, and takes the file's properties when
    /// this database has none (ours). All or nothing: a file that fails any check changes
    /// nothing. Returns how many records were taken. The graph must not be listening or
    /// connected (the caller's rule, `PEER_E_GRAPH_IN_USE`).
    ///
    /// # Errors
    /// - `PEER_E_INVALID_DATABASE`: the file is not an export, of another format version,
    ///   of another graph id or peer id, damaged or cut short (its SHA-256 does not match).
    /// - `PEER_E_NOT_FOUND`: there is no such file; `E_ACCESSDENIED`: it may not be read.
    /// - `PEER_E_DISK_FULL`, `E_FAIL`: the database could not be written.
    pub fn import(&self, path: &Path) -> Result<u64, StoreError> {
        self.import_changes(path).map(|(taken, _)| taken)
    }

    /// [`RedbStore::import`], also returning what each taken record changed for the
    /// application (ADDED, UPDATED or DELETED), in the file's order: what the graph raises
    /// as RECORD_CHANGED once the import is durable.
    ///
    /// # Errors
    /// As [`RedbStore::import`].
    pub fn import_changes(&self, path: &Path) -> Result<(u64, Vec<ImportedChange>), StoreError> {
        self.database
            .with(|database| crate::export::import(database, &self.id, path))
    }

    fn start(database: Database, path: PathBuf, id: DatabaseId) -> RedbStore {
        let database = Arc::new(Handle::new(database, &path));
        let (queue, receiver) = mpsc::sync_channel(WRITE_QUEUE_BOUND);
        let for_writer = Arc::clone(&database);
        let writer = std::thread::Builder::new()
            .name("peergraph-store".into())
            .spawn(move || writer::run(for_writer, receiver))
            .ok();
        RedbStore {
            database,
            // Without a writer thread, writes answer E_FAIL (see `write`).
            queue: writer.as_ref().map(|_| queue),
            writer,
            path,
            id,
        }
    }

    fn read<T>(
        &self,
        read: impl FnOnce(&redb::ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, PeerError> {
        self.database
            .with(|database| {
                let transaction = database.begin_read().map_err(StoreError::storage)?;
                read(&transaction)
            })
            .map_err(PeerError::from)
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and stop.
        self.queue.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl RecordStore for RedbStore {
    fn write(&self, batch: Vec<WriteOp>, done: WriteCompletion) {
        let Some(queue) = &self.queue else {
            return done(Err(PeerError::new(ResultCode::E_FAIL)));
        };
        match queue.try_send(Job { batch, done }) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => {
                (job.done)(Err(PeerError::new(ResultCode::E_OUTOFMEMORY)))
            }
            Err(TrySendError::Disconnected(job)) => {
                (job.done)(Err(PeerError::new(ResultCode::PEER_E_GRAPH_SHUTTING_DOWN)));
            }
        }
    }

    fn get(&self, id: RecordId) -> Result<Option<Record>, PeerError> {
        self.read(|transaction| {
            let Some(records) = open_table(transaction.open_table(RECORDS))? else {
                return Ok(None);
            };
            match records.get(&id.to_bytes()).map_err(StoreError::storage)? {
                Some(bytes) => decode(bytes.value()).map(Some),
                None => Ok(None),
            }
        })
    }

    fn get_many(&self, ids: &[RecordId]) -> Result<Vec<Record>, PeerError> {
        self.read(|transaction| {
            let Some(records) = open_table(transaction.open_table(RECORDS))? else {
                return Ok(Vec::new());
            };
            let mut found = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(bytes) = records.get(&id.to_bytes()).map_err(StoreError::storage)? {
                    found.push(decode(bytes.value())?);
                }
            }
            Ok(found)
        })
    }

    fn visit(
        &self,
        filter: &RecordFilter,
        visit: &mut dyn FnMut(&Record) -> bool,
    ) -> Result<(), PeerError> {
        self.read(|transaction| {
            let Some(records) = open_table(transaction.open_table(RECORDS))? else {
                return Ok(());
            };
            let mut ids: Option<Vec<[u8; 16]>> = None;
            if let Some(record_type) = filter.record_type {
                if let Some(index) = open_table(transaction.open_multimap_table(BY_TYPE))? {
                    ids = Some(collect(index.get(&record_type.to_bytes()))?);
                } else {
                    return Ok(());
                }
            } else if let Some(creator) = &filter.creator {
                if let Some(index) = open_table(transaction.open_multimap_table(BY_CREATOR))? {
                    ids = Some(collect(index.get(creator.as_str()))?);
                } else {
                    return Ok(());
                }
            }
            match ids {
                Some(ids) => {
                    for id in ids {
                        let bytes = records.get(&id).map_err(StoreError::storage)?;
                        // An index entry without its record is damage, not absence.
                        let record = decode(bytes.ok_or_else(damaged)?.value())?;
                        if filter.admits(&record) && !visit(&record) {
                            break;
                        }
                    }
                }
                None => {
                    for entry in records.iter().map_err(StoreError::storage)? {
                        let (_, bytes) = entry.map_err(StoreError::storage)?;
                        let record = decode(bytes.value())?;
                        if !visit(&record) {
                            break;
                        }
                    }
                }
            }
            Ok(())
        })
    }

    fn metadata(&self) -> Result<GraphMetadata, PeerError> {
        self.read(|transaction| {
            let Some(meta) = open_table(transaction.open_table(META))? else {
                return Err(damaged());
            };
            match meta.get(KEY_METADATA).map_err(StoreError::storage)? {
                Some(bytes) => decode_metadata(bytes.value()),
                None => Ok(GraphMetadata::default()),
            }
        })
    }

    fn held(&self) -> Result<Vec<Record>, PeerError> {
        self.read(|transaction| {
            let Some(held) = open_table(transaction.open_table(HELD))? else {
                return Ok(Vec::new());
            };
            let mut records = Vec::new();
            for entry in held.iter().map_err(StoreError::storage)? {
                let (_, bytes) = entry.map_err(StoreError::storage)?;
                records.push(decode(bytes.value())?);
            }
            Ok(records)
        })
    }

    /// Reads the attribute index (`records_by_attribute`) over each scan's key range.
    fn scan_index(&self, scans: &[IndexScan]) -> Result<Option<Vec<RecordId>>, PeerError> {
        self.read(|transaction| {
            let Some(index) = open_table(transaction.open_multimap_table(BY_ATTRIBUTE))? else {
                return Ok(None);
            };
            let mut ids = std::collections::BTreeSet::new();
            for scan in scans {
                if scan.start >= scan.end {
                    continue;
                }
                let range = index
                    .range::<&[u8]>(scan.start.as_slice()..scan.end.as_slice())
                    .map_err(StoreError::storage)?;
                for entry in range {
                    let (_, values) = entry.map_err(StoreError::storage)?;
                    for value in values {
                        ids.insert(*value.map_err(StoreError::storage)?.value());
                    }
                }
            }
            let ids = ids
                .into_iter()
                .map(|id| RecordId::from_bytes(id).map_err(|_| damaged()))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(ids))
        })
    }

    /// Reads the time index (`records_by_expiry`, or `refresh_by_expiry` skipping other
    /// creators' entries) from its start up to `until`, instead of visiting every record.
    fn due(
        &self,
        index: Due<'_>,
        until: GraphTime,
        limit: usize,
    ) -> Result<Vec<(GraphTime, RecordId)>, PeerError> {
        self.read(|transaction| {
            let mut due = Vec::new();
            if limit == 0 {
                return Ok(due);
            }
            let Some(records) = open_table(transaction.open_table(RECORDS))? else {
                return Ok(due);
            };
            let last = due_key(until, &[u8::MAX; 16]);
            let mut take = |key: &[u8; DUE_KEY_LEN]| -> Result<bool, StoreError> {
                let (expiration, id) = split_due_key(key);
                // An index entry without its record is damage, not absence.
                if records.get(&id).map_err(StoreError::storage)?.is_none() {
                    return Err(damaged());
                }
                due.push((expiration, RecordId::from_bytes(id).map_err(|_| damaged())?));
                Ok(due.len() < limit)
            };
            match index {
                Due::Expiry => {
                    let Some(table) = open_table(transaction.open_table(BY_EXPIRY))? else {
                        return Ok(due);
                    };
                    for entry in table
                        .range::<&[u8; DUE_KEY_LEN]>(..=&last)
                        .map_err(StoreError::storage)?
                    {
                        let (key, _) = entry.map_err(StoreError::storage)?;
                        if !take(key.value())? {
                            break;
                        }
                    }
                }
                Due::Refresh { creator } => {
                    let Some(table) = open_table(transaction.open_table(REFRESH_BY_EXPIRY))? else {
                        return Ok(due);
                    };
                    for entry in table
                        .range::<&[u8; DUE_KEY_LEN]>(..=&last)
                        .map_err(StoreError::storage)?
                    {
                        let (key, value) = entry.map_err(StoreError::storage)?;
                        if value.value() == creator.as_str() && !take(key.value())? {
                            break;
                        }
                    }
                }
            }
            Ok(due)
        })
    }
}

fn decode(bytes: &[u8]) -> Result<Record, StoreError> {
    Record::decode(bytes).map_err(|_| damaged())
}

fn collect(
    values: Result<redb::MultimapValue<'static, &'static [u8; 16]>, redb::StorageError>,
) -> Result<Vec<[u8; 16]>, StoreError> {
    let mut ids = Vec::new();
    for value in values.map_err(StoreError::storage)? {
        ids.push(*value.map_err(StoreError::storage)?.value());
    }
    Ok(ids)
}

/// Opens an existing file and checks it whole.
fn open_existing(path: &Path, id: &DatabaseId) -> Result<Database, StoreError> {
    let mut database = Database::builder()
        .open(path)
        .map_err(StoreError::opening)?;
    database.check_integrity().map_err(StoreError::opening)?;
    let transaction = database.begin_read().map_err(StoreError::storage)?;
    let meta = open_table(transaction.open_table(META))?.ok_or_else(damaged)?;
    let value = |key: &str| -> Result<Vec<u8>, StoreError> {
        let value = meta.get(key).map_err(StoreError::storage)?;
        Ok(value.ok_or_else(damaged)?.value().to_vec())
    };
    let belongs = value(KEY_FORMAT)? == [STORE_FORMAT_VERSION]
        && value(KEY_GRAPH_ID)? == id.graph_id.as_str().as_bytes()
        && value(KEY_PEER_ID)? == id.peer_id.as_str().as_bytes()
        && value(KEY_DATABASE_NAME)? == id.name.as_bytes();
    if !belongs {
        return Err(damaged());
    }
    drop(meta);
    drop(transaction);
    Ok(database)
}

/// Creates the file under a temporary name, writes its identity, and renames it into
/// place.
fn create_new(directory: &Path, path: &Path, id: &DatabaseId) -> Result<Database, StoreError> {
    fs::create_dir_all(directory).map_err(StoreError::io)?;
    let temporary = path.with_extension(format!("{EXTENSION}-new"));
    // A leftover from a crash while creating is never a database: start it over.
    match fs::remove_file(&temporary) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(StoreError::io(error)),
    }
    {
        let database = Database::builder()
            .create_with_file_format_v3(true)
            .create(&temporary)
            .map_err(StoreError::opening)?;
        let transaction = database.begin_write().map_err(StoreError::storage)?;
        {
            let mut meta = transaction.open_table(META).map_err(StoreError::storage)?;
            let entries: [(&str, &[u8]); 4] = [
                (KEY_FORMAT, &[STORE_FORMAT_VERSION]),
                (KEY_GRAPH_ID, id.graph_id.as_str().as_bytes()),
                (KEY_PEER_ID, id.peer_id.as_str().as_bytes()),
                (KEY_DATABASE_NAME, id.name.as_bytes()),
            ];
            for (key, value) in entries {
                meta.insert(key, value).map_err(StoreError::storage)?;
            }
            transaction
                .open_table(RECORDS)
                .map_err(StoreError::storage)?;
            transaction
                .open_multimap_table(BY_TYPE)
                .map_err(StoreError::storage)?;
            transaction
                .open_multimap_table(BY_CREATOR)
                .map_err(StoreError::storage)?;
            transaction
                .open_table(BY_EXPIRY)
                .map_err(StoreError::storage)?;
            transaction
                .open_table(REFRESH_BY_EXPIRY)
                .map_err(StoreError::storage)?;
            transaction.open_table(HELD).map_err(StoreError::storage)?;
            transaction
                .open_multimap_table(BY_ATTRIBUTE)
                .map_err(StoreError::storage)?;
        }
        transaction.commit().map_err(StoreError::storage)?;
    }
    fs::rename(&temporary, path).map_err(StoreError::io)?;
    // The rename is durable once the directory is synced.
    fs::File::open(directory)
        .and_then(|dir| dir.sync_all())
        .map_err(StoreError::io)?;
    Database::builder().open(path).map_err(StoreError::opening)
}

#[cfg(test)]
mod tests {
    use peergraph_engine::{Attributes, GraphId, NewRecord, PeerId, RecordType, MAX_RECORD_SIZE};

    use super::*;

    /// A time index entry whose record is gone is damage, for either index.
    #[test]
    fn an_index_entry_without_its_record_is_damage() {
        let dir = tempfile::tempdir().expect("temp dir");
        let alice = PeerId::new("alice").expect("valid");
        let id = DatabaseId::new(GraphId::new("graph").expect("valid"), alice.clone(), "main")
            .expect("valid");
        let record = Record::create(
            NewRecord {
                record_type: RecordType::from_u128(7).expect("non-nil"),
                attributes: Attributes::new(),
                expiration: GraphTime::from_ticks(6_000_000_000),
                autorefresh: true,
                data: Vec::new(),
            },
            RecordId::from_u128(1).expect("non-nil"),
            alice.clone(),
            GraphTime::ZERO,
            MAX_RECORD_SIZE,
        )
        .expect("valid record");
        let (store, _) = RedbStore::open(dir.path(), &id).expect("created");
        store
            .write_and_wait(vec![WriteOp::Put(record.clone())])
            .expect("durable");
        let indexed = Ok(vec![(record.expiration_time(), record.id())]);
        assert_eq!(store.due(Due::Expiry, GraphTime::MAX, 1), indexed);
        assert_eq!(
            store.due(Due::Refresh { creator: &alice }, GraphTime::MAX, 1),
            indexed
        );
        {
            store
                .database
                .with(|database| {
                    let transaction = database.begin_write().expect("writable");
                    transaction
                        .open_table(RECORDS)
                        .expect("table")
                        .remove(&record.id().to_bytes())
                        .expect("removed");
                    transaction.commit().expect("committed");
                    Ok(())
                })
                .expect("removed");
        }
        for index in [Due::Expiry, Due::Refresh { creator: &alice }] {
            assert_eq!(
                store.due(index, GraphTime::MAX, 1).map_err(|e| e.code()),
                Err(ResultCode::PEER_E_INVALID_DATABASE),
                "{index:?}"
            );
        }
        assert_eq!(
            store.due(Due::Expiry, GraphTime::ZERO, 1),
            Ok(vec![]),
            "an entry past `until` is not read"
        );
    }
}
