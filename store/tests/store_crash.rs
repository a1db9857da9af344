//! A writer killed with SIGKILL loses nothing it acknowledged.
//!
//! The test runs its own binary again as the child (`crash_child`, which does nothing
//! unless `PEERGRAPH_CRASH_DIR` is set). The child writes records as fast as the store
//! takes them and prints `ack <id>` once each write's completion reports it durable. The
//! parent kills it with SIGKILL after a number of acknowledgements, in the middle of the
//! next group commits, then reopens the database: every acknowledged record must be
//! there, intact. Five rounds, each continuing where the last left off.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use common::{database_id, record};
use peergraph_engine::{RecordFilter, RecordId, RecordStore, WriteOp};
use peergraph_store::RedbStore;

const DIR_VARIABLE: &str = "PEERGRAPH_CRASH_DIR";
const FIRST_ID_VARIABLE: &str = "PEERGRAPH_CRASH_FIRST_ID";
/// Writes the child keeps in flight: enough that a kill lands during group commits.
const IN_FLIGHT: usize = 32;
/// The most records one child writes, so that a child the parent fails to kill still
/// stops by itself.
const MAX_CHILD_RECORDS: u128 = 100_000;

#[test]
fn crash_child() {
    let (Ok(dir), Ok(first)) = (
        std::env::var(DIR_VARIABLE),
        std::env::var(FIRST_ID_VARIABLE),
    ) else {
        return;
    };
    let first: u128 = first.parse().expect("a number");
    let (store, _) = RedbStore::open(Path::new(&dir), &database_id("main")).expect("opened");
    let (finished, finishes) = mpsc::channel::<()>();
    let mut in_flight = 0;
    for id in first..first + MAX_CHILD_RECORDS {
        if in_flight == IN_FLIGHT {
            finishes.recv().expect("completions arrive");
            in_flight -= 1;
        }
        in_flight += 1;
        let finished = finished.clone();
        store.write(
            vec![WriteOp::Put(record(id, 10, "alice", 200))],
            Box::new(move |result| {
                if result.is_ok() {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "ack {id}");
                    let _ = out.flush();
                }
                let _ = finished.send(());
            }),
        );
    }
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut acknowledged = BTreeSet::new();
    let mut next_id = 1u128;
    for round in 0..5u32 {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(DIR_VARIABLE, dir.path())
            .env(FIRST_ID_VARIABLE, next_id.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("child started");
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let kill_after = 40 + 53 * round as usize;
        let mut acks_this_round = 0;
        while acks_this_round < kill_after {
            let Some(line) = lines.next() else { break };
            if let Some(id) = line.expect("utf-8").strip_prefix("ack ") {
                acknowledged.insert(id.parse::<u128>().expect("an id"));
                acks_this_round += 1;
            }
        }
        // SIGKILL: no destructor, no flush, mid-commit.
        child.kill().expect("killed");
        for line in lines {
            if let Some(id) = line.expect("utf-8").strip_prefix("ack ") {
                acknowledged.insert(id.parse::<u128>().expect("an id"));
            }
        }
        child.wait().expect("reaped");
        assert!(
            acks_this_round >= kill_after,
            "round {round}: the child stopped early"
        );

        let (store, _) = RedbStore::open(dir.path(), &database_id("main")).expect("reopens");
        for &id in &acknowledged {
            let found = store
                .get(RecordId::from_u128(id).expect("non-nil"))
                .expect("readable");
            assert_eq!(
                found,
                Some(record(id, 10, "alice", 200)),
                "round {round}: record {id}"
            );
        }
        let stored = store.records(&RecordFilter::all()).expect("readable");
        next_id = stored
            .iter()
            .map(|r| r.id().as_uuid().as_u128())
            .max()
            .unwrap_or(0)
            .max(acknowledged.last().copied().unwrap_or(0))
            + 1;
    }
    assert!(acknowledged.len() >= 5 * 40);
}
