//! A full disk, for real: a graph's database on an 8 MiB tmpfs, filled through AddRecord
//! until the write fails. The failing call answers `PEER_E_DISK_FULL`; every record
//! acknowledged before stays readable and the graph keeps answering; ExportDatabase to the
//! full file system answers `PEER_E_DISK_FULL` and leaves nothing behind; the database
//! opens again (`S_OK`) on the still full file system with every acknowledged record, and
//! takes records again once space is freed.
//!
//! Mounting needs root (CAP_SYS_ADMIN) on Linux: without it the test prints why it is
//! skipped and returns.

#![cfg(target_os = "linux")]

#[macro_use]
mod common;
#[path = "../../store/tests/common/tmpfs.rs"]
mod tmpfs;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::engine;
use peergraph::{
    Attributes, Engine, Graph, GraphId, GraphOptions, GraphProperties, GraphTime, NewRecord,
    PeerError, PeerId, Record, RecordType, ResultCode,
};
use tmpfs::Tmpfs;

const DATABASE: &str = "main";
const GRAPH: &str = "full";
const PEER: &str = "alice";
/// The file system's size: a few dozen records, filled in well under a second.
const TMPFS_SIZE: &str = "8m";
/// Each record's data: 64 KiB.
const RECORD_DATA: usize = 64 * 1024;
/// The most AddRecord calls before the test gives up on filling the disk (8 MiB holds
/// under 128 such records).
const MAX_RECORDS: usize = 128;
/// A file that takes space from the start and is removed to free it at the end.
const FILLER: usize = 256 * 1024;

/// A call's outcome with the error reduced to its code.
fn rc<T>(result: Result<T, PeerError>) -> Result<T, ResultCode> {
    result.map_err(|error| error.code())
}

fn on_disk(dir: &Path) -> GraphOptions {
    GraphOptions::default().with_database(dir, DATABASE)
}

fn properties() -> GraphProperties {
    GraphProperties::new(
        GraphId::new(GRAPH).expect("graph id"),
        PeerId::new(PEER).expect("peer id"),
    )
}

/// Record `n`: 64 KiB of data that differs from every other record's, living an hour.
fn new_record(n: usize) -> NewRecord {
    let expiration = GraphTime::from_system_time(SystemTime::now() + Duration::from_secs(3600))
        .expect("a representable time");
    NewRecord {
        record_type: RecordType::from_u128(1).expect("a non-nil record type"),
        attributes: Attributes::parse(&format!(
            r#"<attributes><attribute name="n" type="int">{n}</attribute></attributes>"#
        ))
        .expect("valid attributes"),
        expiration,
        autorefresh: false,
        data: (0..RECORD_DATA).map(|i| (i * 7 + n * 13) as u8).collect(),
    }
}

/// Adds records until one AddRecord fails; returns the records acknowledged before and
/// the failing call's code.
async fn fill(graph: &Graph) -> (Vec<Record>, ResultCode) {
    let mut acknowledged = Vec::new();
    for n in 0..MAX_RECORDS {
        match rc(within!(graph.add_record(new_record(n)))) {
            Ok(id) => acknowledged.push(within!(graph.get_record(id)).expect("get")),
            Err(code) => return (acknowledged, code),
        }
    }
    panic!("{MAX_RECORDS} records of {RECORD_DATA} bytes fit in a {TMPFS_SIZE} tmpfs");
}

/// Every record of `expected` reads back from `graph` as it was.
async fn all_readable(graph: &Graph, expected: &[Record], when: &str) {
    for record in expected {
        // Compared whole, but not printed whole: 64 KiB of data each.
        let read = rc(within!(graph.get_record(record.id())));
        assert!(
            read.as_ref() == Ok(record),
            "record {} {when}: {:?}",
            record.id(),
            read.map(|read| read.version())
        );
    }
    assert_eq!(
        within!(graph.enum_records(None, None)).map(|records| records.len()),
        Ok(expected.len()),
        "every acknowledged record and nothing else, {when}"
    );
}

fn open(engine: &Engine, dir: &Path) -> Result<(Graph, ResultCode), ResultCode> {
    rc(engine.open_graph(GRAPH, PEER, on_disk(dir)))
}

#[tokio::test]
async fn a_full_disk_fails_the_write_and_keeps_what_was_acknowledged() {
    let Some(tmpfs) = Tmpfs::or_skip(TMPFS_SIZE) else {
        return;
    };
    let dir = tmpfs.path();
    let filler: PathBuf = dir.join("filler");
    std::fs::write(&filler, vec![0xA5; FILLER]).expect("room for the filler");

    let engine = engine();
    let graph = engine
        .create_graph(properties(), on_disk(dir))
        .expect("create on the tmpfs");
    let (mut acknowledged, code) = fill(&graph).await;
    eprintln!("{} records acknowledged, then {code:?}", acknowledged.len());
    assert!(!acknowledged.is_empty(), "some records fit");
    assert_eq!(code, ResultCode::PEER_E_DISK_FULL, "the failing AddRecord");

    // The graph keeps answering, and what it acknowledged is there.
    all_readable(&graph, &acknowledged, "after the failure").await;
    // The disk is still full: an export fails, and leaves no partial file taking space.
    assert_eq!(
        rc(within!(graph.export_database(dir.join("full.export")))),
        Err(ResultCode::PEER_E_DISK_FULL),
        "an export to the full file system"
    );
    let mut left: Vec<String> = std::fs::read_dir(dir)
        .expect("readable directory")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.contains("export"))
        .collect();
    left.sort();
    assert_eq!(left, Vec::<String>::new(), "what a failed export left");
    within!(graph.close()).expect("close");

    // Opened again on the same, still full, file system: a failed commit did no damage.
    let (graph, code) = open(&engine, dir).expect("opens on the full file system");
    assert_eq!(code, ResultCode::S_OK, "the database was there");
    all_readable(&graph, &acknowledged, "reopened on the full file system").await;
    within!(graph.close()).expect("close");

    // With space freed it takes records again.
    std::fs::remove_file(&filler).expect("remove the filler");
    let (graph, code) = open(&engine, dir).expect("opens once space is freed");
    assert_eq!(code, ResultCode::S_OK);
    let id = within!(graph.add_record(new_record(MAX_RECORDS))).expect("a record fits again");
    acknowledged.push(within!(graph.get_record(id)).expect("get"));
    all_readable(&graph, &acknowledged, "after freeing space").await;
    within!(graph.close()).expect("close");
}
