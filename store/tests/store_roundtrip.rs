//! The redb store keeps what it is given, across reopen, and indexes it.

mod common;

use std::sync::mpsc;
use std::sync::Arc;

use common::{database_id, peer, record};
use peergraph_engine::{
    GraphId, GraphMetadata, GraphProperties, GraphTime, RecordFilter, RecordId, RecordStore,
    RecordType, RecordUpdate, ResultCode, WriteOp, MAX_RECORD_SIZE,
};
use peergraph_store::{DatabaseId, Opened, RedbStore};

fn ids(store: &RedbStore, filter: RecordFilter) -> Vec<u128> {
    store
        .records(&filter)
        .expect("readable")
        .iter()
        .map(|r| r.id().as_uuid().as_u128())
        .collect()
}

#[test]
fn round_trip_and_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let id = database_id("main");
    let records = vec![
        record(1, 10, "alice", 10),
        record(2, 10, "bob", 0),
        record(3, 20, "alice", 5000),
    ];
    let metadata = GraphMetadata {
        synchronized: true,
        last_connected: Some(GraphTime::from_ticks(99)),
        properties: Some(GraphProperties::new(
            GraphId::new("graph").expect("valid"),
            peer("alice"),
        )),
    };
    {
        let (store, opened) = RedbStore::open(dir.path(), &id).expect("created");
        assert_eq!(opened, Opened::Created);
        assert_eq!(opened.code(), ResultCode::PEER_S_GRAPH_DATA_CREATED);
        assert_eq!(store.metadata(), Ok(GraphMetadata::default()));
        let mut batch: Vec<WriteOp> = records.iter().cloned().map(WriteOp::Put).collect();
        batch.push(WriteOp::SetMetadata(metadata.clone()));
        store.write_and_wait(batch).expect("durable");
        assert_eq!(store.get(records[2].id()), Ok(Some(records[2].clone())));
    }
    let (store, opened) = RedbStore::open(dir.path(), &id).expect("reopened");
    assert_eq!(opened, Opened::Existed);
    assert_eq!(opened.code(), ResultCode::S_OK);
    for record in &records {
        assert_eq!(store.get(record.id()), Ok(Some(record.clone())));
    }
    assert_eq!(
        store.get(RecordId::from_u128(99).expect("non-nil")),
        Ok(None)
    );
    assert_eq!(store.metadata(), Ok(metadata));
    assert_eq!(ids(&store, RecordFilter::all()), vec![1, 2, 3]);
    assert_eq!(
        ids(
            &store,
            RecordFilter::of_type(RecordType::from_u128(10).expect("non-nil"))
        ),
        vec![1, 2]
    );
    assert_eq!(
        ids(&store, RecordFilter::by_creator(peer("alice"))),
        vec![1, 3]
    );
    assert_eq!(
        ids(&store, RecordFilter::by_creator(peer("carol"))),
        Vec::<u128>::new()
    );
    let both = RecordFilter {
        record_type: Some(RecordType::from_u128(10).expect("non-nil")),
        creator: Some(peer("bob")),
    };
    assert_eq!(ids(&store, both), vec![2]);
}

#[test]
fn replace_tombstone_and_erase_keep_the_indexes_right() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = RedbStore::open(dir.path(), &database_id("main")).expect("created");
    let original = record(1, 10, "alice", 10);
    store
        .write_and_wait(vec![WriteOp::Put(original.clone())])
        .expect("durable");
    let updated = original
        .updated(
            RecordUpdate {
                data: Some(b"new".to_vec()),
                ..RecordUpdate::default()
            },
            peer("bob"),
            GraphTime::from_ticks(original.creation_time().ticks() + 1),
            MAX_RECORD_SIZE,
        )
        .expect("valid update");
    store
        .write_and_wait(vec![WriteOp::Put(updated.clone())])
        .expect("durable");
    assert_eq!(store.get(original.id()), Ok(Some(updated.clone())));
    assert_eq!(
        ids(&store, RecordFilter::by_creator(peer("alice"))),
        vec![1],
        "one entry, not two"
    );
    let tombstone = updated
        .deleted(peer("bob"), updated.last_modified_time())
        .expect("live");
    store
        .write_and_wait(vec![WriteOp::Put(tombstone.clone())])
        .expect("durable");
    assert_eq!(store.records(&RecordFilter::all()), Ok(vec![tombstone]));
    store
        .write_and_wait(vec![WriteOp::Erase(original.id())])
        .expect("durable");
    assert_eq!(store.get(original.id()), Ok(None));
    assert_eq!(
        ids(&store, RecordFilter::of_type(original.record_type())),
        Vec::<u128>::new()
    );
    assert_eq!(
        ids(&store, RecordFilter::by_creator(peer("alice"))),
        Vec::<u128>::new()
    );
}

#[test]
fn concurrent_writers_are_group_committed_and_all_acknowledged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = RedbStore::open(dir.path(), &database_id("main")).expect("created");
    let store = Arc::new(store);
    let (done_sender, done) = mpsc::channel();
    let threads: Vec<_> = (0..4u128)
        .map(|thread| {
            let store = Arc::clone(&store);
            let done_sender = done_sender.clone();
            std::thread::spawn(move || {
                for n in 0..100u128 {
                    let id = thread * 1000 + n + 1;
                    let sender = done_sender.clone();
                    store.write(
                        vec![WriteOp::Put(record(id, 10, "alice", 100))],
                        Box::new(move |result| {
                            let _ = sender.send((id, result));
                        }),
                    );
                }
            })
        })
        .collect();
    drop(done_sender);
    for thread in threads {
        thread.join().expect("writer thread");
    }
    let results: Vec<_> = done.iter().collect();
    assert_eq!(results.len(), 400, "every batch is completed exactly once");
    for (id, result) in &results {
        assert_eq!(*result, Ok(()), "record {id}");
        assert!(store
            .get(RecordId::from_u128(*id).expect("non-nil"))
            .expect("readable")
            .is_some());
    }
    assert_eq!(
        store.records(&RecordFilter::all()).expect("readable").len(),
        400
    );
}

#[test]
fn queued_writes_finish_when_the_store_is_dropped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let id = database_id("main");
    let (sender, done) = mpsc::channel();
    {
        let (store, _) = RedbStore::open(dir.path(), &id).expect("created");
        for n in 1..=50u128 {
            let sender = sender.clone();
            store.write(
                vec![WriteOp::Put(record(n, 10, "alice", 10))],
                Box::new(move |result| {
                    let _ = sender.send(result);
                }),
            );
        }
    }
    drop(sender);
    assert_eq!(done.iter().filter(Result::is_ok).count(), 50);
    let (store, _) = RedbStore::open(dir.path(), &id).expect("reopened");
    assert_eq!(
        store.records(&RecordFilter::all()).expect("readable").len(),
        50
    );
}

#[test]
fn create_open_and_delete_codes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let id = database_id("main");
    let code = |result: Result<(), peergraph_store::StoreError>| result.err().map(|e| e.code());
    assert_eq!(
        code(RedbStore::delete(dir.path(), &id)),
        Some(ResultCode::PEER_E_DATABASE_NOT_PRESENT)
    );
    let store = RedbStore::create(dir.path(), &id).expect("created");
    assert_eq!(
        code(RedbStore::create(dir.path(), &id).map(drop)),
        Some(ResultCode::PEER_E_DATABASE_ALREADY_PRESENT)
    );
    assert_eq!(
        code(RedbStore::open(dir.path(), &id).map(drop)),
        Some(ResultCode::PEER_E_GRAPH_IN_USE)
    );
    assert_eq!(
        code(RedbStore::delete(dir.path(), &id)),
        Some(ResultCode::PEER_E_GRAPH_IN_USE)
    );
    drop(store);
    assert_eq!(code(RedbStore::delete(dir.path(), &id)), None);
    assert!(!id.file_path(dir.path()).exists());
    let (_, opened) = RedbStore::open(dir.path(), &id).expect("created again");
    assert_eq!(opened, Opened::Created);
}

#[test]
fn each_database_has_its_own_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let other_peer =
        DatabaseId::new(GraphId::new("graph").expect("valid"), peer("bob"), "main").expect("valid");
    let paths = [
        database_id("main").file_path(dir.path()),
        database_id("other").file_path(dir.path()),
        other_peer.file_path(dir.path()),
    ];
    assert_ne!(paths[0], paths[1]);
    assert_ne!(paths[0], paths[2]);
    let (a, _) = RedbStore::open(dir.path(), &database_id("main")).expect("created");
    let (b, _) = RedbStore::open(dir.path(), &other_peer).expect("created");
    a.write_and_wait(vec![WriteOp::Put(record(1, 10, "alice", 1))])
        .expect("durable");
    assert_eq!(b.records(&RecordFilter::all()), Ok(vec![]));
    assert_eq!(
        DatabaseId::new(GraphId::new("g").expect("valid"), peer("a"), "").map(drop),
        Err(peergraph_engine::PeerError::INVALID_ARG)
    );
}

#[test]
fn a_panicking_completion_does_not_stop_the_writer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = RedbStore::open(dir.path(), &database_id("main")).expect("created");
    store.write(
        vec![WriteOp::Put(record(1, 10, "alice", 1))],
        Box::new(|_| panic!("a careless completion")),
    );
    store
        .write_and_wait(vec![WriteOp::Put(record(2, 10, "alice", 1))])
        .expect("the writer still runs");
    assert_eq!(ids(&store, RecordFilter::all()), vec![1, 2]);
}
