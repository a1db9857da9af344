//! The writer thread: group commit.
//!
//! Callers queue a batch with its completion; the thread takes the first batch waiting
//! and every batch queued behind it (up to [`MAX_GROUP_BATCHES`] batches or
//! [`MAX_GROUP_BYTES`] bytes), writes them all in one redb transaction with immediate
//! durability, and only then runs every completion. One fsync pays for the whole group.
//! The writer never waits for more: the batches that arrive while a commit is under way
//! queue up and make the next group, so the group grows with the load by itself and a
//! lone write is committed at once (waiting a window for company cost every group that
//! long, and measured four times fewer durable adds per second).
//! When a group's transaction fails, each batch is retried alone, so one bad batch fails
//! only its own caller. Completions run on the writer thread: they should hand the result
//! on (a channel, a message to an actor) and return, not block or do long work.
//!
//! ```text
//! caller --write(batch, done)--> [bounded queue] --> writer thread
//!                                                    | take what is queued (<= batches, bytes)
//!                                                    | one transaction, commit (fsync)
//! caller <------------------- done(Ok | code) -------+
//! ```

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;

use peergraph_engine::{attribute_key, Due, PeerError, Record, WriteCompletion, WriteOp};
use redb::{MultimapTable, Table, WriteTransaction};

use crate::error::{damaged, StoreError};
use crate::handle::Handle;
use crate::schema::{
    due_key, encode_metadata, BY_ATTRIBUTE, BY_CREATOR, BY_EXPIRY, BY_TYPE, DUE_KEY_LEN, HELD,
    KEY_METADATA, META, RECORDS, REFRESH_BY_EXPIRY,
};

/// Batches that may wait for the writer: 1,024. Past it a write fails at once with
/// `E_OUTOFMEMORY` instead of queueing without bound; the caller (the graph) is the one
/// that can slow down.
pub const WRITE_QUEUE_BOUND: usize = 1024;
/// The most batches in one commit: 256, so that one commit's completions stay few.
pub const MAX_GROUP_BATCHES: usize = 256;
/// The most record bytes in one commit: 64 MiB, one largest record (60 MB) and then
/// some, so that a transaction's dirty pages stay bounded.
pub const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;

/// One queued batch and who to tell.
pub(crate) struct Job {
    pub(crate) batch: Vec<WriteOp>,
    pub(crate) done: WriteCompletion,
}

impl Job {
    fn bytes(&self) -> usize {
        self.batch
            .iter()
            .map(|op| match op {
                WriteOp::Put(record) | WriteOp::Hold(record) => record.encoded_len(),
                WriteOp::Erase(_) | WriteOp::SetMetadata(_) | WriteOp::Release(_) => 0,
            })
            .sum()
    }
}

/// Runs until every sender is gone and the queue is drained.
pub(crate) fn run(database: Arc<Handle>, queue: Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut bytes = first.bytes();
        let mut group = vec![first];
        while group.len() < MAX_GROUP_BATCHES && bytes < MAX_GROUP_BYTES {
            match queue.try_recv() {
                Ok(job) => {
                    bytes += job.bytes();
                    group.push(job);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        commit_group(&database, group);
    }
}

/// Commits `group` in one transaction. When that fails for one batch's sake (a value too
/// large), each batch is retried alone; when it fails for I/O (a full disk), the handle
/// has been opened again and every batch fails with the code, since retrying each on a
/// disk without room would open the file again once per batch.
fn commit_group(database: &Handle, group: Vec<Job>) {
    let result = commit(database, group.iter().map(|job| job.batch.as_slice()));
    match result {
        Ok(()) => group.into_iter().for_each(|job| complete(job.done, Ok(()))),
        Err(error) if group.len() > 1 && !error.needs_reopen() => {
            for job in group {
                let result = commit(database, std::iter::once(job.batch.as_slice()));
                complete(job.done, result.map_err(PeerError::from));
            }
        }
        Err(error) => group.into_iter().for_each(|job| {
            complete(job.done, Err(error.peer_error()));
        }),
    }
}

/// Runs a caller's completion. A completion that panics must not stop the writer that
/// every other caller of this store depends on, so its panic ends here.
fn complete(done: WriteCompletion, result: Result<(), PeerError>) {
    let _ = catch_unwind(AssertUnwindSafe(move || done(result)));
}

/// Writes `batches` in one durable transaction.
fn commit<'a>(
    database: &Handle,
    batches: impl Iterator<Item = &'a [WriteOp]>,
) -> Result<(), StoreError> {
    database.with(|database| {
        let transaction = database.begin_write().map_err(StoreError::storage)?;
        apply(&transaction, batches)?;
        transaction.commit().map_err(StoreError::storage)
    })
}

/// Applies `batches` in `transaction`, keeping every index in step with `records`.
pub(crate) fn apply<'a>(
    transaction: &WriteTransaction,
    batches: impl Iterator<Item = &'a [WriteOp]>,
) -> Result<(), StoreError> {
    let mut tables = Tables::open(transaction)?;
    let mut held = transaction.open_table(HELD).map_err(StoreError::storage)?;
    let mut meta = transaction.open_table(META).map_err(StoreError::storage)?;
    for op in batches.flatten() {
        match op {
            WriteOp::Put(record) => tables.put(record)?,
            WriteOp::Erase(id) => tables.erase(&id.to_bytes())?,
            WriteOp::SetMetadata(metadata) => {
                meta.insert(KEY_METADATA, encode_metadata(metadata).as_slice())
                    .map_err(StoreError::storage)?;
            }
            WriteOp::Hold(record) => {
                held.insert(&record.id().to_bytes(), record.encode().as_slice())
                    .map_err(StoreError::storage)?;
            }
            WriteOp::Release(id) => {
                held.remove(&id.to_bytes()).map_err(StoreError::storage)?;
            }
        }
    }
    Ok(())
}

/// The records and their indexes, open in one write transaction.
struct Tables<'t> {
    records: Table<'t, &'static [u8; 16], &'static [u8]>,
    by_type: MultimapTable<'t, &'static [u8; 16], &'static [u8; 16]>,
    by_creator: MultimapTable<'t, &'static str, &'static [u8; 16]>,
    by_expiry: Table<'t, &'static [u8; DUE_KEY_LEN], ()>,
    refresh_by_expiry: Table<'t, &'static [u8; DUE_KEY_LEN], &'static str>,
    by_attribute: MultimapTable<'t, &'static [u8], &'static [u8; 16]>,
}

impl<'t> Tables<'t> {
    fn open(transaction: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(Tables {
            records: transaction
                .open_table(RECORDS)
                .map_err(StoreError::storage)?,
            by_type: transaction
                .open_multimap_table(BY_TYPE)
                .map_err(StoreError::storage)?,
            by_creator: transaction
                .open_multimap_table(BY_CREATOR)
                .map_err(StoreError::storage)?,
            by_expiry: transaction
                .open_table(BY_EXPIRY)
                .map_err(StoreError::storage)?,
            refresh_by_expiry: transaction
                .open_table(REFRESH_BY_EXPIRY)
                .map_err(StoreError::storage)?,
            by_attribute: transaction
                .open_multimap_table(BY_ATTRIBUTE)
                .map_err(StoreError::storage)?,
        })
    }

    /// Stores `record` in place of any copy with its id, and indexes it. Only the index
    /// entries that differ from the old copy's are touched: an update that keeps the type,
    /// creator, expiration and attributes rewrites the record alone, not five trees.
    fn put(&mut self, record: &Record) -> Result<(), StoreError> {
        let id = record.id().to_bytes();
        let old = self
            .records
            .insert(&id, record.encode().as_slice())
            .map_err(StoreError::storage)?
            .map(|old| Record::decode(old.value()).map_err(|_| damaged()))
            .transpose()?;
        let new = Entries::of(record);
        match old.map(|old| Entries::of(&old)) {
            Some(old) => self.change(&id, &old, &new),
            None => self.index(&id, &new, true),
        }
    }

    /// Removes the record with `id` and its index entries, if it is there.
    fn erase(&mut self, id: &[u8; 16]) -> Result<(), StoreError> {
        let old = self
            .records
            .remove(id)
            .map_err(StoreError::storage)?
            .map(|old| Record::decode(old.value()).map_err(|_| damaged()))
            .transpose()?;
        match old {
            Some(old) => self.index(id, &Entries::of(&old), false),
            None => Ok(()),
        }
    }

    /// Inserts (`insert`) or removes every index entry of one record.
    fn index(&mut self, id: &[u8; 16], entries: &Entries, insert: bool) -> Result<(), StoreError> {
        self.type_entry(id, &entries.record_type, insert)?;
        self.creator_entry(id, &entries.creator, insert)?;
        self.due_entries(entries, insert)?;
        for key in &entries.attributes {
            self.attribute_entry(id, key, insert)?;
        }
        Ok(())
    }

    /// Moves a record's index entries from `old`'s to `new`'s, touching only what differs.
    fn change(&mut self, id: &[u8; 16], old: &Entries, new: &Entries) -> Result<(), StoreError> {
        if old.record_type != new.record_type {
            self.type_entry(id, &old.record_type, false)?;
            self.type_entry(id, &new.record_type, true)?;
        }
        if old.creator != new.creator {
            self.creator_entry(id, &old.creator, false)?;
            self.creator_entry(id, &new.creator, true)?;
        }
        if (old.due, &old.refresh) != (new.due, &new.refresh) {
            self.due_entries(old, false)?;
            self.due_entries(new, true)?;
        }
        for key in old.attributes.difference(&new.attributes) {
            self.attribute_entry(id, key, false)?;
        }
        for key in new.attributes.difference(&old.attributes) {
            self.attribute_entry(id, key, true)?;
        }
        Ok(())
    }

    fn type_entry(
        &mut self,
        id: &[u8; 16],
        key: &[u8; 16],
        insert: bool,
    ) -> Result<(), StoreError> {
        if insert {
            self.by_type.insert(key, id).map_err(StoreError::storage)?;
        } else {
            self.by_type.remove(key, id).map_err(StoreError::storage)?;
        }
        Ok(())
    }

    fn creator_entry(
        &mut self,
        id: &[u8; 16],
        creator: &str,
        insert: bool,
    ) -> Result<(), StoreError> {
        if insert {
            self.by_creator
                .insert(creator, id)
                .map_err(StoreError::storage)?;
        } else {
            self.by_creator
                .remove(creator, id)
                .map_err(StoreError::storage)?;
        }
        Ok(())
    }

    fn due_entries(&mut self, entries: &Entries, insert: bool) -> Result<(), StoreError> {
        if insert {
            self.by_expiry
                .insert(&entries.due, ())
                .map_err(StoreError::storage)?;
            if let Some(creator) = &entries.refresh {
                self.refresh_by_expiry
                    .insert(&entries.due, creator.as_str())
                    .map_err(StoreError::storage)?;
            }
        } else {
            self.by_expiry
                .remove(&entries.due)
                .map_err(StoreError::storage)?;
            if entries.refresh.is_some() {
                self.refresh_by_expiry
                    .remove(&entries.due)
                    .map_err(StoreError::storage)?;
            }
        }
        Ok(())
    }

    fn attribute_entry(
        &mut self,
        id: &[u8; 16],
        key: &[u8],
        insert: bool,
    ) -> Result<(), StoreError> {
        if insert {
            self.by_attribute
                .insert(key, id)
                .map_err(StoreError::storage)?;
        } else {
            self.by_attribute
                .remove(key, id)
                .map_err(StoreError::storage)?;
        }
        Ok(())
    }
}

/// The index entries of one record.
struct Entries {
    record_type: [u8; 16],
    creator: String,
    /// Its key in `records_by_expiry` (and in `refresh_by_expiry` when `refresh` is set).
    due: [u8; DUE_KEY_LEN],
    /// The creator, when the record belongs in `refresh_by_expiry`.
    refresh: Option<String>,
    attributes: BTreeSet<Vec<u8>>,
}

impl Entries {
    fn of(record: &Record) -> Entries {
        Entries {
            record_type: record.record_type().to_bytes(),
            creator: record.creator_id().as_str().to_owned(),
            due: due_key(record.expiration_time(), &record.id().to_bytes()),
            refresh: refreshed(record).then(|| record.creator_id().as_str().to_owned()),
            attributes: record
                .attributes()
                .iter()
                .map(|(name, value)| attribute_key(name, value))
                .collect(),
        }
    }
}

/// True when `record` belongs in `refresh_by_expiry`: a live AUTOREFRESH record (of any
/// creator; the index keeps the creator as its value).
fn refreshed(record: &Record) -> bool {
    Due::Refresh {
        creator: record.creator_id(),
    }
    .admits(record)
}
