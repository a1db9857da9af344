//! A full disk, for real, against [`RedbStore`] directly: a database on a small tmpfs,
//! written in batches (several in flight, so that some commit as one group) until a
//! completion reports the failure. Every failure is `PEER_E_DISK_FULL`; every batch
//! completed before stays readable from the same store; the store reopens the file after
//! the failure and keeps answering; the file opens again afterwards.

#![cfg(target_os = "linux")]

mod common;
#[path = "common/tmpfs.rs"]
mod tmpfs;

use std::sync::mpsc;

use common::{database_id, record};
use peergraph_engine::{Record, RecordFilter, RecordStore, ResultCode, WriteOp};
use peergraph_store::{Opened, RedbStore};
use tmpfs::Tmpfs;

/// Each record's data: 64 KiB.
const RECORD_DATA: usize = 64 * 1024;
/// Batches in flight at once.
const IN_FLIGHT: usize = 4;
/// The most rounds before the test gives up on filling the disk (8 MiB holds well under
/// 128 records of 64 KiB).
const MAX_ROUNDS: usize = 32;

/// Writes `records` as one batch each, all in flight at once; the result of each.
fn write_all(store: &RedbStore, records: &[Record]) -> Vec<Result<(), ResultCode>> {
    let receivers: Vec<_> = records
        .iter()
        .map(|record| {
            let (sender, receiver) = mpsc::sync_channel(1);
            store.write(
                vec![WriteOp::Put(record.clone())],
                Box::new(move |result| {
                    let _ = sender.send(result);
                }),
            );
            receiver
        })
        .collect();
    receivers
        .into_iter()
        .map(|receiver| {
            receiver
                .recv()
                .expect("every completion runs")
                .map_err(|error| error.code())
        })
        .collect()
}

/// Every record of `completed` reads back from `store` as it was, and nothing else is
/// there.
fn readable(store: &RedbStore, completed: &[Record], when: &str) {
    for record in completed {
        assert!(
            store.get(record.id()) == Ok(Some(record.clone())),
            "record {} {when}",
            record.id()
        );
    }
    assert_eq!(
        store.records(&RecordFilter::all()).map(|all| all.len()),
        Ok(completed.len()),
        "every completed record and nothing else, {when}"
    );
}

#[test]
fn a_full_disk_fails_the_batch_and_keeps_what_was_completed() {
    let Some(tmpfs) = Tmpfs::or_skip("8m") else {
        return;
    };
    let id = database_id("main");
    let (store, _) = RedbStore::open(tmpfs.path(), &id).expect("created on the tmpfs");
    let mut completed: Vec<Record> = Vec::new();
    let mut failures = Vec::new();
    for round in 0..MAX_ROUNDS {
        let records: Vec<Record> = (0..IN_FLIGHT)
            .map(|n| record((round * IN_FLIGHT + n + 1) as u128, 1, "alice", RECORD_DATA))
            .collect();
        let results = write_all(&store, &records);
        for (record, result) in records.into_iter().zip(results) {
            match result {
                Ok(()) => completed.push(record),
                Err(code) => failures.push(code),
            }
        }
        if !failures.is_empty() {
            break;
        }
    }
    eprintln!("{} batches completed, then {failures:?}", completed.len());
    assert!(!completed.is_empty(), "some batches fit");
    assert!(
        !failures.is_empty(),
        "the disk filled within {MAX_ROUNDS} rounds"
    );
    assert!(
        failures
            .iter()
            .all(|code| *code == ResultCode::PEER_E_DISK_FULL),
        "every failed batch: {failures:?}"
    );
    readable(&store, &completed, "after the failure");
    // A single batch may still fit where a group did not: write one at a time until one
    // fails as well, which must also be for a full disk.
    let mut last = None;
    for n in 0..MAX_ROUNDS {
        let more = record((1_000 + n) as u128, 1, "alice", RECORD_DATA);
        match write_all(&store, std::slice::from_ref(&more)).remove(0) {
            Ok(()) => completed.push(more),
            Err(code) => {
                last = Some(code);
                break;
            }
        }
    }
    assert_eq!(
        last,
        Some(ResultCode::PEER_E_DISK_FULL),
        "one batch at a time"
    );
    readable(&store, &completed, "after failing one batch at a time");
    // The file opens again, on the same full file system.
    drop(store);
    let (store, opened) = RedbStore::open(tmpfs.path(), &id).expect("reopens on the full disk");
    assert_eq!(opened, Opened::Existed);
    readable(&store, &completed, "reopened");
}
