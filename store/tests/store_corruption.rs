//! A damaged database file is reported with PEER_E_INVALID_DATABASE, never a panic and
//! never records that differ from what was written.

mod common;

use std::fs;
use std::path::Path;

use common::{database_id, peer, record};
use peergraph_engine::{GraphId, Record, RecordFilter, RecordStore, ResultCode, WriteOp};
use peergraph_store::{DatabaseId, RedbStore};

/// Writes 200 records of ~1 KiB in a few batches and returns them.
fn populate(dir: &Path) -> Vec<Record> {
    let records: Vec<Record> = (1..=200)
        .map(|n| record(n, 10 + n % 3, "alice", 1000))
        .collect();
    let (store, _) = RedbStore::open(dir, &database_id("main")).expect("created");
    for chunk in records.chunks(50) {
        store
            .write_and_wait(chunk.iter().cloned().map(WriteOp::Put).collect())
            .expect("durable");
    }
    records
}

/// Opens the damaged file: either PEER_E_INVALID_DATABASE, or a store whose every record
/// is one that was written, unchanged.
fn open_damaged(dir: &Path, written: &[Record]) -> Option<ResultCode> {
    match RedbStore::open(dir, &database_id("main")) {
        Err(error) => Some(error.code()),
        Ok((store, _)) => {
            if let Ok(found) = store.records(&RecordFilter::all()) {
                for record in &found {
                    assert!(
                        written.contains(record),
                        "a record changed without an error"
                    );
                }
            }
            None
        }
    }
}

#[test]
fn truncated_files_are_invalid_databases() {
    let dir = tempfile::tempdir().expect("temp dir");
    let written = populate(dir.path());
    let path = database_id("main").file_path(dir.path());
    let original = fs::read(&path).expect("readable");
    for keep in [
        0,
        1,
        100,
        512,
        4096,
        original.len() / 3,
        original.len() / 2,
        original.len() - 4096,
    ] {
        fs::write(&path, &original[..keep]).expect("writable");
        assert_eq!(
            open_damaged(dir.path(), &written),
            Some(ResultCode::PEER_E_INVALID_DATABASE),
            "truncated to {keep} of {} bytes",
            original.len()
        );
    }
    fs::write(&path, &original).expect("writable");
    assert_eq!(
        open_damaged(dir.path(), &written),
        None,
        "the intact file opens"
    );
}

#[test]
fn flipped_bytes_are_detected_or_harmless() {
    let dir = tempfile::tempdir().expect("temp dir");
    let written = populate(dir.path());
    let path = database_id("main").file_path(dir.path());
    let original = fs::read(&path).expect("readable");
    let mut detected = 0;
    // Offsets spread over the whole file, header included.
    let step = (original.len() / 97).max(1);
    for offset in (0..original.len())
        .step_by(step)
        .chain([0, 1, 8, 16, 64, 300])
    {
        let mut damaged = original.clone();
        damaged[offset] ^= 0x5a;
        fs::write(&path, &damaged).expect("writable");
        if open_damaged(dir.path(), &written) == Some(ResultCode::PEER_E_INVALID_DATABASE) {
            detected += 1;
        }
    }
    eprintln!("{detected} of the flips were reported");
    assert!(detected > 0, "some flips hit live pages and are reported");
}

#[test]
fn foreign_files_are_invalid_databases() {
    let dir = tempfile::tempdir().expect("temp dir");
    let id = database_id("main");
    let path = id.file_path(dir.path());
    fs::write(&path, b"this is not a database").expect("writable");
    assert_eq!(
        open_damaged(dir.path(), &[]),
        Some(ResultCode::PEER_E_INVALID_DATABASE)
    );
    fs::write(&path, vec![0u8; 1 << 16]).expect("writable");
    assert_eq!(
        open_damaged(dir.path(), &[]),
        Some(ResultCode::PEER_E_INVALID_DATABASE)
    );
    // Another database's file in this one's place: another identity.
    fs::remove_file(&path).expect("removable");
    let other =
        DatabaseId::new(GraphId::new("graph").expect("valid"), peer("bob"), "main").expect("valid");
    drop(RedbStore::open(dir.path(), &other).expect("created"));
    fs::rename(other.file_path(dir.path()), &path).expect("renamable");
    assert_eq!(
        open_damaged(dir.path(), &[]),
        Some(ResultCode::PEER_E_INVALID_DATABASE)
    );
}
