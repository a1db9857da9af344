//! The export file: a whole graph database in one versioned, checksummed file, for
//! `ExportDatabase` / `ImportDatabase`, backups, and moving between store formats.
//!
//! Big-endian throughout:
//!
//! ```text
//! magic          16 bytes  "peergraph-export"
//! format         u8        EXPORT_FORMAT_VERSION (1)
//! graph id       u16 byte length + UTF-8
//! peer id        u16 byte length + UTF-8
//! database name  u16 byte length + UTF-8 (informative: an import may go to another name)
//! metadata       u32 byte length + the store's metadata encoding
//! records        for each: u32 byte length (never 0) + the record's binary form
//! end            u32 0
//! checksum       32 bytes  SHA-256 of every byte above
//! ```
//!
//! An export carries the records (tombstones included) and the graph metadata, nothing
//! else. Held records (`WriteOp::Hold`, whose validation was deferred) are not exported:
//! they are not yet part of the graph, and the node holding them gets them again by
//! synchronizing. The time indexes are not exported either: an import puts each record
//! it takes through the store's write path, which indexes it.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use peergraph_engine::{
    GraphMetadata, Record, RecordChangeType, RecordId, RecordType, WriteOp, MAX_RECORD_SIZE,
};
use redb::{Database, ReadableTable};
use ring::digest::{Context, SHA256};

use crate::error::{damaged, StoreError};
use crate::id::DatabaseId;
use crate::schema::{decode_metadata, encode_metadata, open_table, KEY_METADATA, META, RECORDS};
use crate::writer::apply;

/// The version of the layout above; an import refuses any other.
pub const EXPORT_FORMAT_VERSION: u8 = 1;
const MAGIC: &[u8; 16] = b"peergraph-export";
/// The longest string field, in bytes: 256 characters of at most 4 bytes.
const MAX_STRING_BYTES: usize = 1024;
/// The longest metadata encoding: its strings (at most 1,024 + 1,024 + 1,024 + 2,048
/// bytes) and fixed fields fit well within 8 KiB.
const MAX_METADATA_BYTES: usize = 8 * 1024;

/// Writes the export of `database` to `path`. A failed export removes what it wrote, so
/// that an export that filled the disk does not keep it full.
pub(crate) fn export(database: &Database, id: &DatabaseId, path: &Path) -> Result<u64, StoreError> {
    let temporary = path.with_extension("export-new");
    let written = write_export(database, id, path, &temporary);
    if written.is_err() {
        // Nothing to remove when the file could not be made at all.
        let _ = fs::remove_file(&temporary);
    }
    written
}

/// Writes the export under `temporary`, then renames it to `path`.
fn write_export(
    database: &Database,
    id: &DatabaseId,
    path: &Path,
    temporary: &Path,
) -> Result<u64, StoreError> {
    let file = File::create(temporary).map_err(StoreError::file)?;
    let mut out = Hashing::new(BufWriter::new(file));
    let transaction = database.begin_read().map_err(StoreError::storage)?;
    let meta = open_table(transaction.open_table(META))?.ok_or_else(damaged)?;
    let metadata = match meta.get(KEY_METADATA).map_err(StoreError::storage)? {
        Some(bytes) => bytes.value().to_vec(),
        None => encode_metadata(&GraphMetadata::default()),
    };
    out.put(MAGIC)?;
    out.put(&[EXPORT_FORMAT_VERSION])?;
    for text in [id.graph_id.as_str(), id.peer_id.as_str(), id.name.as_str()] {
        // Ids and names are at most 256 characters: well under u16::MAX bytes.
        out.put(&(text.len() as u16).to_be_bytes())?;
        out.put(text.as_bytes())?;
    }
    out.put(&(metadata.len() as u32).to_be_bytes())?;
    out.put(&metadata)?;
    let mut count = 0u64;
    if let Some(records) = open_table(transaction.open_table(RECORDS))? {
        for entry in records.iter().map_err(StoreError::storage)? {
            let (_, bytes) = entry.map_err(StoreError::storage)?;
            let bytes = bytes.value();
            // Check before copying, so an export never carries damage further.
            Record::decode(bytes).map_err(|_| damaged())?;
            // A record is at most 60 MB, so its length fits a u32.
            out.put(&(bytes.len() as u32).to_be_bytes())?;
            out.put(bytes)?;
            count += 1;
        }
    }
    out.put(&0u32.to_be_bytes())?;
    let (mut writer, digest) = out.finish();
    writer.write_all(&digest).map_err(StoreError::file)?;
    let file = writer
        .into_inner()
        .map_err(|error| StoreError::file(error.into_error()))?;
    file.sync_all().map_err(StoreError::file)?;
    fs::rename(temporary, path).map_err(StoreError::file)?;
    Ok(count)
}

/// What an import changed in one record: RECORD_CHANGED's fields.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ImportedChange {
    /// ADDED (new, or live again over a tombstone), UPDATED (a live copy replaced) or
    /// DELETED (a tombstone over a live copy).
    pub change_type: RecordChangeType,
    /// The record's id.
    pub record_id: RecordId,
    /// The record's type.
    pub record_type: RecordType,
}

/// What a taken copy changes for the application, given the stored one: `None` when a
/// tombstone replaces nothing live.
fn change_of(record: &Record, stored: Option<&Record>) -> Option<RecordChangeType> {
    let was_live = stored.is_some_and(|stored| !stored.is_deleted());
    match (record.is_deleted(), was_live) {
        (false, false) => Some(RecordChangeType::Added),
        (false, true) => Some(RecordChangeType::Updated),
        (true, true) => Some(RecordChangeType::Deleted),
        (true, false) => None,
    }
}

/// Merges the export at `path` into `database`, all or nothing; returns what each taken
/// record changed (`taken` counts tombstones that replaced nothing live too).
pub(crate) fn import(
    database: &Database,
    id: &DatabaseId,
    path: &Path,
) -> Result<(u64, Vec<ImportedChange>), StoreError> {
    let file = File::open(path).map_err(StoreError::file)?;
    let mut input = Hashing::new(BufReader::new(file));
    if input.take::<16>()? != *MAGIC || input.take::<1>()? != [EXPORT_FORMAT_VERSION] {
        return Err(damaged());
    }
    let graph_id = input.string()?;
    let peer_id = input.string()?;
    let _name = input.string()?;
    if graph_id != id.graph_id.as_str() || peer_id != id.peer_id.as_str() {
        return Err(damaged());
    }
    let imported = decode_metadata(&input.bytes(MAX_METADATA_BYTES)?)?;
    // redb runs one write transaction at a time: the writer thread waits for this one.
    let transaction = database.begin_write().map_err(StoreError::storage)?;
    let mut taken = 0u64;
    let mut changes = Vec::new();
    loop {
        let bytes = input.bytes(MAX_RECORD_SIZE as usize)?;
        if bytes.is_empty() {
            break;
        }
        let record = Record::decode(&bytes).map_err(|_| damaged())?;
        let stored = {
            let records = transaction
                .open_table(RECORDS)
                .map_err(StoreError::storage)?;
            let stored = records
                .get(&record.id().to_bytes())
                .map_err(StoreError::storage)?;
            match stored {
                Some(bytes) => Some(Record::decode(bytes.value()).map_err(|_| damaged())?),
                None => None,
            }
        };
        if stored
            .as_ref()
            .is_none_or(|stored| record.supersedes(stored))
        {
            if let Some(change_type) = change_of(&record, stored.as_ref()) {
                changes.push(ImportedChange {
                    change_type,
                    record_id: record.id(),
                    record_type: record.record_type(),
                });
            }
            apply(
                &transaction,
                std::iter::once([WriteOp::Put(record)].as_slice()),
            )?;
            taken += 1;
        }
    }
    let (mut reader, digest) = input.finish();
    let mut checksum = [0u8; 32];
    reader.read_exact(&mut checksum).map_err(StoreError::file)?;
    let mut rest = [0u8; 1];
    let at_end = reader.read(&mut rest).map_err(StoreError::file)? == 0;
    if checksum != digest || !at_end {
        // Dropping the transaction aborts it: nothing of the file is kept.
        return Err(damaged());
    }
    let current = {
        let meta = transaction.open_table(META).map_err(StoreError::storage)?;
        let current = meta.get(KEY_METADATA).map_err(StoreError::storage)?;
        match current {
            Some(bytes) => decode_metadata(bytes.value())?,
            None => GraphMetadata::default(),
        }
    };
    let merged = GraphMetadata {
        synchronized: current.synchronized || imported.synchronized,
        last_connected: current.last_connected.max(imported.last_connected),
        properties: current.properties.or(imported.properties),
    };
    apply(
        &transaction,
        std::iter::once([WriteOp::SetMetadata(merged)].as_slice()),
    )?;
    transaction.commit().map_err(StoreError::storage)?;
    Ok((taken, changes))
}

/// A reader or writer that hashes every byte it passes.
struct Hashing<T> {
    inner: T,
    digest: Context,
}

impl<T> Hashing<T> {
    fn new(inner: T) -> Self {
        Hashing {
            inner,
            digest: Context::new(&SHA256),
        }
    }

    /// The inner reader or writer and the SHA-256 of everything so far.
    fn finish(self) -> (T, [u8; 32]) {
        let mut digest = [0u8; 32];
        digest.copy_from_slice(self.digest.finish().as_ref());
        (self.inner, digest)
    }
}

impl<W: Write> Hashing<W> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.digest.update(bytes);
        self.inner.write_all(bytes).map_err(StoreError::file)
    }
}

impl<R: Read> Hashing<R> {
    fn fill(&mut self, buffer: &mut [u8]) -> Result<(), StoreError> {
        self.inner
            .read_exact(buffer)
            .map_err(|error| match error.kind() {
                // A file cut short is a damaged export, not a failed read.
                io::ErrorKind::UnexpectedEof => damaged(),
                _ => StoreError::file(error),
            })?;
        self.digest.update(buffer);
        Ok(())
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut array = [0u8; N];
        self.fill(&mut array)?;
        Ok(array)
    }

    /// A u32-length-prefixed field of at most `max` bytes.
    fn bytes(&mut self, max: usize) -> Result<Vec<u8>, StoreError> {
        let len = u32::from_be_bytes(self.take::<4>()?) as usize;
        if len > max {
            return Err(damaged());
        }
        let mut bytes = vec![0u8; len];
        self.fill(&mut bytes)?;
        Ok(bytes)
    }

    /// A u16-length-prefixed UTF-8 string.
    fn string(&mut self) -> Result<String, StoreError> {
        let len = u16::from_be_bytes(self.take::<2>()?) as usize;
        if len > MAX_STRING_BYTES {
            return Err(damaged());
        }
        let mut bytes = vec![0u8; len];
        self.fill(&mut bytes)?;
        String::from_utf8(bytes).map_err(|_| damaged())
    }
}
