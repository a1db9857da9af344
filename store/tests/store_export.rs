//! ExportDatabase / ImportDatabase: a whole database in one checksummed file, merged back
//! by the conflict order, all or nothing.

mod common;

use std::fs;

use common::{database_id, peer, record};
use peergraph_engine::{
    GraphId, GraphMetadata, GraphProperties, GraphTime, RecordChangeType, RecordFilter, RecordId,
    RecordStore, RecordUpdate, ResultCode, WriteOp, MAX_RECORD_SIZE,
};
use peergraph_store::{DatabaseId, RedbStore};

fn metadata() -> GraphMetadata {
    GraphMetadata {
        synchronized: true,
        last_connected: Some(GraphTime::from_ticks(77)),
        properties: Some(GraphProperties::new(
            GraphId::new("graph").expect("valid"),
            peer("alice"),
        )),
    }
}

#[test]
fn export_then_import_into_a_fresh_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (source, _) = RedbStore::open(dir.path(), &database_id("main")).expect("created");
    let records: Vec<_> = (1..=20)
        .map(|n| record(n, 10 + n % 2, "alice", 300))
        .collect();
    let tombstone = records[0]
        .deleted(peer("bob"), records[0].last_modified_time())
        .expect("live");
    let mut batch: Vec<WriteOp> = records[1..].iter().cloned().map(WriteOp::Put).collect();
    batch.push(WriteOp::Put(tombstone.clone()));
    batch.push(WriteOp::SetMetadata(metadata()));
    source.write_and_wait(batch).expect("durable");
    let file = dir.path().join("backup.export");
    assert_eq!(source.export(&file).expect("exported"), 20);

    let (target, _) = RedbStore::open(dir.path(), &database_id("restored")).expect("created");
    assert_eq!(target.import(&file).expect("imported"), 20);
    assert_eq!(
        target.records(&RecordFilter::all()),
        source.records(&RecordFilter::all())
    );
    assert_eq!(target.get(tombstone.id()), Ok(Some(tombstone)));
    assert_eq!(target.metadata(), Ok(metadata()));
    assert_eq!(
        target.import(&file).expect("again"),
        0,
        "nothing new the second time"
    );
}

#[test]
fn import_keeps_the_winning_copy_of_each_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = [record(1, 10, "alice", 10), record(2, 10, "alice", 10)];
    let newer = |index: usize| {
        base[index]
            .updated(
                RecordUpdate {
                    data: Some(b"newer".to_vec()),
                    ..RecordUpdate::default()
                },
                peer("alice"),
                base[index].last_modified_time(),
                MAX_RECORD_SIZE,
            )
            .expect("valid")
    };
    let (exported, _) = RedbStore::open(dir.path(), &database_id("a")).expect("created");
    exported
        .write_and_wait(vec![WriteOp::Put(newer(0)), WriteOp::Put(base[1].clone())])
        .expect("durable");
    let file = dir.path().join("a.export");
    exported.export(&file).expect("exported");

    let (target, _) = RedbStore::open(dir.path(), &database_id("b")).expect("created");
    target
        .write_and_wait(vec![WriteOp::Put(base[0].clone()), WriteOp::Put(newer(1))])
        .expect("durable");
    assert_eq!(target.import(&file).expect("imported"), 1);
    assert_eq!(
        target.get(base[0].id()),
        Ok(Some(newer(0))),
        "the file's copy wins"
    );
    assert_eq!(
        target.get(base[1].id()),
        Ok(Some(newer(1))),
        "the stored copy wins"
    );
    assert_eq!(target.metadata(), Ok(GraphMetadata::default()));
}

#[test]
fn bad_files_change_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (source, _) = RedbStore::open(dir.path(), &database_id("main")).expect("created");
    source
        .write_and_wait(
            (1..=5)
                .map(|n| WriteOp::Put(record(n, 10, "alice", 100)))
                .collect(),
        )
        .expect("durable");
    let file = dir.path().join("main.export");
    source.export(&file).expect("exported");
    let original = fs::read(&file).expect("readable");

    let (target, _) = RedbStore::open(dir.path(), &database_id("target")).expect("created");
    let invalid = Some(ResultCode::PEER_E_INVALID_DATABASE);
    let import_code = |bytes: &[u8]| {
        fs::write(&file, bytes).expect("writable");
        target.import(&file).err().map(|error| error.code())
    };
    let mut flipped = original.clone();
    let middle = original.len() / 2;
    flipped[middle] ^= 0x01;
    assert_eq!(import_code(&flipped), invalid, "a flipped byte");
    assert_eq!(
        import_code(&original[..original.len() - 1]),
        invalid,
        "cut short"
    );
    assert_eq!(import_code(&original[..middle]), invalid, "cut in half");
    let mut longer = original.clone();
    longer.push(0);
    assert_eq!(import_code(&longer), invalid, "bytes after the checksum");
    assert_eq!(import_code(b"not an export"), invalid);
    assert_eq!(import_code(&[]), invalid);
    assert_eq!(
        target.records(&RecordFilter::all()),
        Ok(vec![]),
        "all or nothing"
    );

    let other_peer =
        DatabaseId::new(GraphId::new("graph").expect("valid"), peer("bob"), "main").expect("valid");
    let (elsewhere, _) = RedbStore::open(dir.path(), &other_peer).expect("created");
    fs::write(&file, &original).expect("writable");
    assert_eq!(
        elsewhere.import(&file).err().map(|error| error.code()),
        invalid,
        "another peer's database"
    );
    assert_eq!(
        target
            .import(&dir.path().join("missing.export"))
            .err()
            .map(|error| error.code()),
        Some(ResultCode::PEER_E_NOT_FOUND)
    );
}

#[test]
fn import_says_what_each_taken_record_changed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let now = GraphTime::from_ticks(common::TEN_MINUTES + 1);
    let [fresh, replaced, deleted, dead] = [1, 2, 3, 4].map(|id| record(id, 10, "alice", 10));
    let newer = replaced
        .updated(
            RecordUpdate {
                data: Some(b"newer".to_vec()),
                ..RecordUpdate::default()
            },
            peer("alice"),
            now,
            MAX_RECORD_SIZE,
        )
        .expect("valid");
    let tombstone = deleted.deleted(peer("alice"), now).expect("live");
    let dead_tombstone = dead.deleted(peer("alice"), now).expect("live");
    let (source, _) = RedbStore::open(dir.path(), &database_id("a")).expect("created");
    source
        .write_and_wait(
            [&fresh, &newer, &tombstone, &dead_tombstone]
                .map(|r| WriteOp::Put(r.clone()))
                .to_vec(),
        )
        .expect("durable");
    let file = dir.path().join("a.export");
    source.export(&file).expect("exported");

    let (target, _) = RedbStore::open(dir.path(), &database_id("b")).expect("created");
    target
        .write_and_wait(vec![
            WriteOp::Put(replaced.clone()),
            WriteOp::Put(deleted.clone()),
        ])
        .expect("durable");
    let (taken, changes) = target.import_changes(&file).expect("imported");
    assert_eq!(taken, 4, "every copy won");
    let seen: Vec<(RecordChangeType, RecordId)> = changes
        .iter()
        .map(|change| (change.change_type, change.record_id))
        .collect();
    assert_eq!(
        seen,
        vec![
            (RecordChangeType::Added, fresh.id()),
            (RecordChangeType::Updated, replaced.id()),
            (RecordChangeType::Deleted, deleted.id()),
        ],
        "a tombstone over nothing live changes nothing the application sees"
    );
    assert!(changes
        .iter()
        .all(|change| change.record_type == fresh.record_type()));
}
