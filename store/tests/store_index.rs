//! Held records and the time indexes: `held` keeps deferred records apart from the graph,
//! and `due` answers from the indexes exactly what the engine's default (a visit of every
//! record, as the MemoryStore answers) would, across replace, erase, tombstones, reopen
//! and import.

mod common;

use common::{database_id, peer, TEN_MINUTES};
use peergraph_engine::{
    AttributeValue, Attributes, Due, GraphTime, MemoryStore, NewRecord, PeerId, Record,
    RecordFilter, RecordId, RecordStore, RecordType, RecordUpdate, WriteOp, MAX_RECORD_SIZE,
};
use peergraph_store::RedbStore;

/// One minute in graph-time ticks.
const MINUTE: u64 = TEN_MINUTES / 10;
/// When every test record is created (and changed): minute 10.
const NOW: u64 = TEN_MINUTES;

fn at(minutes: u64) -> GraphTime {
    GraphTime::from_ticks(minutes * MINUTE)
}

fn record_id(n: u128) -> RecordId {
    RecordId::from_u128(n).expect("non-nil")
}

/// Record `n` by `creator`, expiring at minute `expires`, AUTOREFRESH when `autorefresh`.
fn timed(n: u128, creator: &str, expires: u64, autorefresh: bool) -> Record {
    let new = NewRecord {
        record_type: RecordType::from_u128(7).expect("non-nil"),
        attributes: Attributes::new()
            .with("n", AttributeValue::Int(n as i64))
            .expect("valid"),
        expiration: at(expires),
        autorefresh,
        data: vec![n as u8; 8],
    };
    Record::create(
        new,
        record_id(n),
        peer(creator),
        GraphTime::from_ticks(NOW),
        MAX_RECORD_SIZE,
    )
    .expect("valid record")
}

/// `record` with its expiration moved to minute `expires`.
fn extended(record: &Record, expires: u64) -> Record {
    record
        .updated(
            RecordUpdate {
                expiration: Some(at(expires)),
                ..RecordUpdate::default()
            },
            record.creator_id().clone(),
            GraphTime::from_ticks(NOW + 1),
            MAX_RECORD_SIZE,
        )
        .expect("valid update")
}

fn tombstone(record: &Record) -> Record {
    record
        .deleted(record.creator_id().clone(), GraphTime::from_ticks(NOW + 2))
        .expect("live")
}

/// Every `due` question worth asking of `records`: each index (the creators present and
/// one absent), `until` at, just before and just after each expiration and at the ends,
/// and limits 0, 1, 2, 3 and none.
fn questions(records: &[Record]) -> Vec<(Option<PeerId>, GraphTime, usize)> {
    let mut creators: Vec<Option<PeerId>> = vec![None, Some(peer("nobody"))];
    let mut times = vec![GraphTime::ZERO, GraphTime::MAX];
    for record in records {
        let creator = Some(record.creator_id().clone());
        if !creators.contains(&creator) {
            creators.push(creator);
        }
        let ticks = record.expiration_time().ticks();
        times.extend([ticks - 1, ticks, ticks + 1].map(GraphTime::from_ticks));
    }
    let mut questions = Vec::new();
    for creator in &creators {
        for &until in &times {
            for limit in [0, 1, 2, 3, usize::MAX] {
                questions.push((creator.clone(), until, limit));
            }
        }
    }
    questions
}

fn index(creator: &Option<PeerId>) -> Due<'_> {
    match creator {
        None => Due::Expiry,
        Some(creator) => Due::Refresh { creator },
    }
}

/// `store` answers every `due` question as the reference does.
fn assert_same_due(store: &RedbStore, reference: &MemoryStore) {
    let records = reference.records(&RecordFilter::all()).expect("readable");
    for (creator, until, limit) in questions(&records) {
        let index = index(&creator);
        assert_eq!(
            store.due(index, until, limit),
            reference.due(index, until, limit),
            "{index:?} until {} limit {limit}",
            until.ticks()
        );
    }
}

/// Writes `batch` to both stores.
fn write_both(store: &RedbStore, reference: &MemoryStore, batch: Vec<WriteOp>) {
    reference.write_and_wait(batch.clone()).expect("written");
    store.write_and_wait(batch).expect("durable");
}

fn due_ids(store: &RedbStore, index: Due<'_>, until: GraphTime) -> Vec<u128> {
    store
        .due(index, until, usize::MAX)
        .expect("readable")
        .into_iter()
        .map(|(_, id)| id.as_uuid().as_u128())
        .collect()
}

#[test]
fn due_matches_the_default_through_changes_reopen_and_import() {
    let dir = tempfile::tempdir().expect("temp dir");
    let id = database_id("main");
    let reference = MemoryStore::new();
    let alice = peer("alice");
    let bob = peer("bob");
    let records = [
        timed(1, "alice", 30, true),
        timed(2, "alice", 20, false),
        timed(3, "bob", 30, true),
        timed(4, "alice", 25, true),
        timed(5, "alice", 40, true),
        timed(6, "carol", 25, true),
        timed(7, "alice", 30, true),
    ];
    {
        let (store, _) = RedbStore::open(dir.path(), &id).expect("created");
        write_both(
            &store,
            &reference,
            records.iter().cloned().map(WriteOp::Put).collect(),
        );
        assert_same_due(&store, &reference);
        assert_eq!(
            due_ids(&store, Due::Expiry, GraphTime::MAX),
            vec![2, 4, 6, 1, 3, 7, 5],
            "earliest first, ties in id order"
        );
        assert_eq!(
            due_ids(&store, Due::Refresh { creator: &alice }, GraphTime::MAX),
            vec![4, 1, 7, 5],
            "alice's AUTOREFRESH records only"
        );
        assert_eq!(
            due_ids(&store, Due::Refresh { creator: &alice }, at(30)),
            vec![4, 1, 7],
            "until is inclusive"
        );
        assert_eq!(
            due_ids(
                &store,
                Due::Refresh { creator: &alice },
                GraphTime::from_ticks(30 * MINUTE - 1)
            ),
            vec![4]
        );
        assert_eq!(
            store.due(Due::Refresh { creator: &bob }, GraphTime::MAX, 1),
            Ok(vec![(at(30), record_id(3))]),
            "the next one"
        );

        // A replacement with a later expiration leaves no entry at the old time.
        write_both(
            &store,
            &reference,
            vec![WriteOp::Put(extended(&records[3], 50))],
        );
        assert_eq!(
            due_ids(&store, Due::Refresh { creator: &alice }, GraphTime::MAX),
            vec![1, 7, 5, 4]
        );
        assert_same_due(&store, &reference);

        // An erased record leaves both indexes; a tombstone leaves Refresh only.
        write_both(
            &store,
            &reference,
            vec![
                WriteOp::Erase(records[1].id()),
                WriteOp::Erase(records[0].id()),
                WriteOp::Put(tombstone(&records[4])),
                WriteOp::Erase(record_id(99)),
            ],
        );
        assert_eq!(
            due_ids(&store, Due::Expiry, GraphTime::MAX),
            vec![6, 3, 7, 5, 4]
        );
        assert_eq!(
            due_ids(&store, Due::Refresh { creator: &alice }, GraphTime::MAX),
            vec![7, 4],
            "a tombstone is not renewed"
        );
        assert_same_due(&store, &reference);

        // A tombstone erased later leaves the expiry index too.
        write_both(&store, &reference, vec![WriteOp::Erase(records[4].id())]);
        assert_same_due(&store, &reference);
    }

    let (store, _) = RedbStore::open(dir.path(), &id).expect("reopened");
    assert_same_due(&store, &reference);
    assert_eq!(
        due_ids(&store, Due::Expiry, GraphTime::MAX),
        vec![6, 3, 7, 4],
        "the indexes survive reopen"
    );

    let file = dir.path().join("backup.export");
    assert_eq!(store.export(&file).expect("exported"), 4);
    let (restored, _) = RedbStore::open(dir.path(), &database_id("restored")).expect("created");
    // What the target held before the import is replaced where the file's copy wins.
    let reference_restored = MemoryStore::new();
    write_both(
        &restored,
        &reference_restored,
        vec![
            WriteOp::Put(records[2].clone()),
            WriteOp::Put(timed(8, "alice", 15, true)),
        ],
    );
    assert_eq!(restored.import(&file).expect("imported"), 3);
    reference_restored
        .write_and_wait(
            reference
                .records(&RecordFilter::all())
                .expect("readable")
                .into_iter()
                .map(WriteOp::Put)
                .collect(),
        )
        .expect("written");
    assert_same_due(&restored, &reference_restored);
    assert_eq!(
        due_ids(&restored, Due::Refresh { creator: &alice }, GraphTime::MAX),
        vec![8, 7, 4],
        "imported records are indexed"
    );
}

#[test]
fn held_records_are_kept_apart_across_reopen_and_not_exported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let id = database_id("main");
    let stored = timed(1, "alice", 30, true);
    let first = timed(2, "bob", 30, true);
    let replaced = extended(&first, 45);
    let released = timed(3, "bob", 20, false);
    // A held copy of a stored record's id does not touch the stored one.
    let shadow = extended(&stored, 60);
    {
        let (store, _) = RedbStore::open(dir.path(), &id).expect("created");
        assert_eq!(store.held(), Ok(vec![]));
        store
            .write_and_wait(vec![
                WriteOp::Put(stored.clone()),
                WriteOp::Hold(released.clone()),
                WriteOp::Hold(first.clone()),
                WriteOp::Hold(shadow.clone()),
            ])
            .expect("durable");
        assert_eq!(
            store.held(),
            Ok(vec![shadow.clone(), first.clone(), released.clone()]),
            "in id order"
        );
        store
            .write_and_wait(vec![
                WriteOp::Hold(replaced.clone()),
                WriteOp::Release(released.id()),
                WriteOp::Release(record_id(99)),
            ])
            .expect("durable");
        assert_eq!(store.held(), Ok(vec![shadow.clone(), replaced.clone()]));
    }

    let (store, _) = RedbStore::open(dir.path(), &id).expect("reopened");
    assert_eq!(store.held(), Ok(vec![shadow.clone(), replaced.clone()]));
    assert_eq!(store.get(stored.id()), Ok(Some(stored.clone())));
    assert_eq!(store.get(first.id()), Ok(None), "held is not read by get");
    assert_eq!(
        store.records(&RecordFilter::all()),
        Ok(vec![stored.clone()])
    );
    assert_eq!(
        store.records(&RecordFilter::by_creator(peer("bob"))),
        Ok(vec![]),
        "nor by visit, through an index or not"
    );
    assert_eq!(
        store.due(Due::Expiry, GraphTime::MAX, usize::MAX),
        Ok(vec![(stored.expiration_time(), stored.id())]),
        "nor indexed"
    );
    assert_eq!(
        store.due(
            Due::Refresh {
                creator: &peer("bob")
            },
            GraphTime::MAX,
            usize::MAX
        ),
        Ok(vec![])
    );

    // Validated: released from hold and put in the graph, in one batch.
    store
        .write_and_wait(vec![
            WriteOp::Release(replaced.id()),
            WriteOp::Put(replaced.clone()),
        ])
        .expect("durable");
    assert_eq!(store.held(), Ok(vec![shadow.clone()]));
    assert_eq!(store.get(replaced.id()), Ok(Some(replaced.clone())));

    let file = dir.path().join("backup.export");
    assert_eq!(
        store.export(&file).expect("exported"),
        2,
        "held records are not exported"
    );
    let (restored, _) = RedbStore::open(dir.path(), &database_id("restored")).expect("created");
    assert_eq!(restored.import(&file).expect("imported"), 2);
    assert_eq!(restored.held(), Ok(vec![]));
    assert_eq!(restored.get(stored.id()), Ok(Some(stored)));
}
