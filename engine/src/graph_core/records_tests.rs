//! Every rule of the record book, on a [`MemoryStore`]: each call's code, the writes it
//! builds, the events raised once (and only once) a write is durable, the security
//! callbacks and deferred validation, expiry and AUTOREFRESH by the wake time, the
//! properties, and a book opened again on the same store.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use super::{RecordBook, Write, MAX_WRITES_IN_FLIGHT, REFRESH_MARGIN, RETRY_AFTER, TICK_LIMIT};
use crate::event::{GraphEvent, RecordChangeType};
use crate::graph::{GraphProperties, Scope, MAX_RECORD_SIZE};
use crate::ids::GraphId;
use crate::record::model_tests::{new_record, peer, record_type, MINUTE};
use crate::record::{
    AttributeValue, Attributes, GraphMetadata, GraphTime, MemoryStore, NewRecord, Record,
    RecordFilter, RecordId, RecordSecurity, RecordStore, RecordUpdate, Search, WriteOp,
    AUTOREFRESH_MIN_LIFETIME,
};
use crate::result::{code_of, PeerError, ResultCode};

/// The graph time the tests start at.
const NOW: GraphTime = GraphTime::from_ticks(1_000 * MINUTE);

/// `minutes` after [`NOW`].
fn at(minutes: u64) -> GraphTime {
    GraphTime::from_ticks(NOW.ticks() + minutes * MINUTE)
}

/// One tick before `time`.
fn just_before(time: GraphTime) -> GraphTime {
    GraphTime::from_ticks(time.ticks() - 1)
}

fn id(value: u128) -> RecordId {
    RecordId::from_u128(value).expect("non-nil")
}

fn properties() -> GraphProperties {
    GraphProperties::new(
        GraphId::new("graph").expect("valid graph id"),
        peer("alice"),
    )
}

fn synchronized_metadata(properties: GraphProperties) -> GraphMetadata {
    GraphMetadata {
        synchronized: true,
        last_connected: None,
        properties: Some(properties),
    }
}

/// What `add` should build: `new` created by `creator` at `now` under id `n`.
fn created(new: NewRecord, n: u128, creator: &str, now: GraphTime) -> Record {
    Record::create(new, id(n), peer(creator), now, MAX_RECORD_SIZE).expect("valid record")
}

fn with_nick(expiration: GraphTime, nick: &str) -> NewRecord {
    NewRecord {
        attributes: Attributes::new()
            .with("nick", AttributeValue::String(nick.into()))
            .expect("valid attribute"),
        ..new_record(expiration)
    }
}

fn refreshing(expiration: GraphTime) -> NewRecord {
    NewRecord {
        autorefresh: true,
        ..new_record(expiration)
    }
}

fn changed(change_type: RecordChangeType, record: &Record) -> GraphEvent {
    GraphEvent::RecordChanged {
        change_type,
        record_id: record.id(),
        record_type: record.record_type(),
    }
}

fn added(record: &Record) -> GraphEvent {
    changed(RecordChangeType::Added, record)
}

fn not_ready() -> ResultCode {
    ResultCode::PEER_E_GRAPH_NOT_READY
}

/// What the validation callback answers.
const ACCEPT: u8 = 0;
const DEFER: u8 = 1;
const REJECT: u8 = 2;

/// The state the security callbacks read, switched by the tests.
#[derive(Default)]
struct Switch {
    verdict: AtomicU8,
    secure_fails: AtomicBool,
    /// What the validation callback was asked: id, change, version.
    seen: Mutex<Vec<(RecordId, RecordChangeType, u32)>>,
}

impl Switch {
    fn set(&self, verdict: u8) {
        self.verdict.store(verdict, Ordering::SeqCst);
    }

    fn seen(&self) -> Vec<(RecordId, RecordChangeType, u32)> {
        std::mem::take(&mut *self.seen.lock().expect("no callback panicked"))
    }
}

/// The security data the securing callback attaches: "sig" and the version.
fn signature(record: &Record) -> Vec<u8> {
    let mut signature = b"sig".to_vec();
    signature.extend_from_slice(&record.version().to_be_bytes());
    signature
}

fn signed(record: Record) -> Record {
    let data = signature(&record);
    record
        .with_security_data(data, MAX_RECORD_SIZE)
        .expect("fits")
}

fn security(switch: &Arc<Switch>) -> RecordSecurity {
    let validating = Arc::clone(switch);
    let securing = Arc::clone(switch);
    RecordSecurity {
        validate_record: Some(Arc::new(move |record: &Record, change| {
            validating.seen.lock().expect("no callback panicked").push((
                record.id(),
                change,
                record.version(),
            ));
            match validating.verdict.load(Ordering::SeqCst) {
                ACCEPT => Ok(()),
                DEFER => Err(PeerError::new(ResultCode::PEER_E_DEFERRED_VALIDATION)),
                _ => Err(PeerError::new(ResultCode::PEER_E_INVALID_RECORD)),
            }
        })),
        secure_record: Some(Arc::new(move |record: &Record| {
            if securing.secure_fails.load(Ordering::SeqCst) {
                Err(PeerError::new(ResultCode::PEER_E_NOT_AUTHORIZED))
            } else {
                Ok(signature(record))
            }
        })),
    }
}

/// One node's book and its store.
struct Node {
    store: Arc<MemoryStore>,
    book: RecordBook,
}

impl Node {
    /// A book for `me` on `store`.
    fn open(
        store: &Arc<MemoryStore>,
        me: &str,
        properties: GraphProperties,
        security: RecordSecurity,
    ) -> Node {
        let book = RecordBook::open(store.clone(), peer(me), properties, security)
            .expect("the store opens");
        Node {
            store: Arc::clone(store),
            book,
        }
    }

    /// The creator's book on a new store, synchronized.
    fn creator(properties: GraphProperties, security: RecordSecurity) -> Node {
        let mut node = Node::open(&Arc::new(MemoryStore::new()), "alice", properties, security);
        let write = node.book.initial_write(true);
        assert_eq!(node.commit(write), Ok(()));
        node
    }

    fn new() -> Node {
        Node::creator(properties(), RecordSecurity::default())
    }

    /// Writes `write` to the store and reports it durable: the call's reply.
    fn commit(&mut self, write: Write) -> Result<(), PeerError> {
        self.store
            .write_and_wait(write.batch)
            .expect("the memory store writes at once");
        self.book.written(write.token, Ok(()))
    }

    /// Reports `write` failed with `code` without writing it: the call's reply.
    fn fail(&mut self, write: Write, code: ResultCode) -> Result<(), PeerError> {
        self.book.written(write.token, Err(PeerError::new(code)))
    }

    fn events(&mut self) -> Vec<GraphEvent> {
        std::iter::from_fn(|| self.book.poll_event()).collect()
    }

    /// Adds `new` under id `n` at `now` and writes it: the durable record.
    fn add(&mut self, now: GraphTime, new: NewRecord, n: u128) -> Record {
        let (record_id, write) = self.book.add(now, new, id(n)).expect("add is accepted");
        assert_eq!(record_id, id(n));
        assert_eq!(self.commit(write), Ok(()));
        self.stored(n).expect("the record is stored")
    }

    fn tick(&mut self, now: GraphTime) -> Option<Write> {
        self.book.tick(now).expect("the store is readable")
    }

    /// The store's copy of record `n`, tombstone or not.
    fn stored(&self, n: u128) -> Option<Record> {
        self.store.get(id(n)).expect("the store is readable")
    }

    fn held(&self) -> Vec<Record> {
        self.store.held().expect("the store is readable")
    }

    fn get(&self, now: GraphTime, n: u128) -> Result<Record, ResultCode> {
        self.book.get(now, id(n)).map_err(|error| error.code())
    }

    fn enumerate(&self, now: GraphTime, filter: &RecordFilter) -> Vec<Record> {
        self.book
            .enumerate(now, filter)
            .expect("the store is readable")
    }
}

// --- synchronization --------------------------------------------------------------

#[test]
fn changes_wait_for_synchronization() {
    let store = Arc::new(MemoryStore::new());
    let mut node = Node::open(&store, "alice", properties(), RecordSecurity::default());
    assert!(!node.book.is_synchronized());
    assert_eq!(node.book.properties(), properties(), "the given properties");
    assert_eq!(node.book.next_wake(), None);

    let write = node.book.initial_write(false);
    assert_eq!(
        write.batch,
        vec![WriteOp::SetMetadata(GraphMetadata {
            synchronized: false,
            last_connected: None,
            properties: None,
        })],
        "an opener does not know the graph's properties yet: none are stored"
    );
    assert_eq!(node.commit(write), Ok(()));
    assert!(!node.book.is_synchronized());
    assert_eq!(node.book.properties(), properties(), "still the given ones");
    assert_eq!(node.events(), vec![]);

    let new = new_record(at(10));
    assert_eq!(
        code_of(&node.book.add(NOW, new.clone(), id(1))),
        not_ready()
    );
    let update = RecordUpdate::default();
    assert_eq!(code_of(&node.book.update(NOW, id(1), update)), not_ready());
    assert_eq!(code_of(&node.book.delete(NOW, id(1), false)), not_ready());
    assert_eq!(code_of(&node.book.delete(NOW, id(1), true)), not_ready());
    assert_eq!(
        code_of(&node.book.validate_deferred(NOW, &[id(1)])),
        not_ready()
    );
    let named = properties().with_friendly_name("named");
    assert_eq!(code_of(&node.book.set_properties(named)), not_ready());
    assert_eq!(node.book.writes_in_flight(), 0);

    let write = node.book.initial_write(true);
    assert_eq!(
        write.batch,
        vec![WriteOp::SetMetadata(synchronized_metadata(properties()))]
    );
    assert_eq!(node.commit(write), Ok(()));
    assert!(node.book.is_synchronized());
    assert_eq!(store.metadata(), Ok(synchronized_metadata(properties())));
    let record = node.add(NOW, new.clone(), 1);
    assert_eq!(record, created(new, 1, "alice", NOW));
    assert_eq!(node.events(), vec![added(&record)]);
}

// --- add --------------------------------------------------------------------------

#[test]
fn add_answers_once_written_and_raises_added() {
    let mut node = Node::new();
    let new = new_record(at(10));
    let expected = created(new.clone(), 1, "alice", NOW);
    let (record_id, write) = node.book.add(NOW, new, id(1)).expect("accepted");
    assert_eq!(record_id, id(1));
    assert_eq!(write.batch, vec![WriteOp::Put(expected.clone())]);
    assert_eq!(node.book.writes_in_flight(), 1);
    assert_eq!(node.events(), vec![], "nothing before the write is durable");
    assert_eq!(
        node.get(NOW, 1),
        Err(ResultCode::PEER_E_RECORD_NOT_FOUND),
        "reads see only what is durable"
    );
    assert_eq!(node.book.next_wake(), None);

    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(node.book.writes_in_flight(), 0);
    assert_eq!(
        node.events(),
        vec![GraphEvent::RecordChanged {
            change_type: RecordChangeType::Added,
            record_id: id(1),
            record_type: record_type(7),
        }]
    );
    let got = node.get(NOW, 1).expect("readable");
    assert_eq!(got, expected);
    assert_eq!(got.encode(), expected.encode(), "byte for byte");
    assert_eq!(got.version(), 1);
    assert_eq!(got.creator_id(), &peer("alice"));
    assert_eq!(got.modified_by_id(), &peer("alice"));
    assert_eq!(got.creation_time(), NOW);
    assert_eq!(got.last_modified_time(), NOW);
    assert_eq!(got.expiration_time(), at(10));
    assert_eq!(got.data(), b"hello");
    assert_eq!(node.book.next_wake(), Some(at(10)));
}

#[test]
fn a_failed_add_raises_nothing_and_stores_nothing() {
    let mut node = Node::new();
    let new = new_record(at(10));
    let (_, write) = node.book.add(NOW, new.clone(), id(1)).expect("accepted");
    assert_eq!(
        node.fail(write, ResultCode::PEER_E_DISK_FULL),
        Err(PeerError::new(ResultCode::PEER_E_DISK_FULL)),
        "the store's code is the call's reply"
    );
    assert_eq!(node.events(), vec![]);
    assert_eq!(node.get(NOW, 1), Err(ResultCode::PEER_E_RECORD_NOT_FOUND));
    assert_eq!(node.stored(1), None);
    assert_eq!(node.book.writes_in_flight(), 0);
    assert_eq!(node.book.next_wake(), None);

    let record = node.add(NOW, new, 1);
    assert_eq!(node.events(), vec![added(&record)], "the id is free again");
}

#[test]
fn add_checks_the_lifetime() {
    let mut node = Node::new();
    for expiration in [NOW, just_before(NOW)] {
        assert_eq!(
            code_of(&node.book.add(NOW, new_record(expiration), id(1))),
            ResultCode::E_INVALIDARG
        );
    }
    let four_minutes = NOW.saturating_add(AUTOREFRESH_MIN_LIFETIME);
    assert_eq!(
        code_of(
            &node
                .book
                .add(NOW, refreshing(just_before(four_minutes)), id(1))
        ),
        ResultCode::E_INVALIDARG,
        "AUTOREFRESH lives at least four minutes"
    );
    assert_eq!(node.book.writes_in_flight(), 0);
    let record = node.add(NOW, refreshing(four_minutes), 1);
    assert_eq!(record.expiration_time(), at(4));
    let record = node.add(NOW, new_record(GraphTime::from_ticks(NOW.ticks() + 1)), 2);
    assert_eq!(record.expiration_time().ticks(), NOW.ticks() + 1);
}

#[test]
fn add_checks_the_graphs_record_size() {
    let mut node = Node::creator(
        properties().with_max_record_size(1024),
        RecordSecurity::default(),
    );
    let big = NewRecord {
        data: vec![0; 1024],
        ..new_record(at(10))
    };
    assert_eq!(
        code_of(&node.book.add(NOW, big, id(1))),
        ResultCode::PEER_E_MAX_RECORD_SIZE_EXCEEDED
    );
    assert_eq!(node.book.writes_in_flight(), 0);
    let record = node.add(NOW, new_record(at(10)), 1);
    assert!(record.encoded_len() <= 1024);
}

#[test]
fn changes_end_when_the_graph_shuts_down_but_writes_in_flight_complete() {
    let mut node = Node::new();
    let live = node.add(NOW, new_record(at(10)), 1);
    node.events();
    let (_, write) = node.book.add(NOW, new_record(at(10)), id(2)).expect("ok");
    node.book.shut_down();
    let shutting_down = ResultCode::PEER_E_GRAPH_SHUTTING_DOWN;
    assert_eq!(
        code_of(&node.book.add(NOW, new_record(at(10)), id(3))),
        shutting_down
    );
    let update = RecordUpdate::default();
    assert_eq!(
        code_of(&node.book.update(NOW, live.id(), update)),
        shutting_down
    );
    assert_eq!(
        code_of(&node.book.delete(NOW, live.id(), false)),
        shutting_down
    );
    assert_eq!(
        code_of(&node.book.validate_deferred(NOW, &[live.id()])),
        shutting_down
    );
    let named = properties().with_friendly_name("named");
    assert_eq!(code_of(&node.book.set_properties(named)), shutting_down);

    assert_eq!(node.commit(write), Ok(()));
    let second = node.stored(2).expect("written");
    assert_eq!(node.events(), vec![added(&second)]);
}

#[test]
fn add_refuses_past_the_writes_in_flight() {
    let mut node = Node::new();
    let mut writes = Vec::new();
    for n in 1..=MAX_WRITES_IN_FLIGHT as u128 {
        let (_, write) = node.book.add(NOW, new_record(at(10)), id(n)).expect("room");
        writes.push(write);
    }
    assert_eq!(node.book.writes_in_flight(), MAX_WRITES_IN_FLIGHT);
    let next = MAX_WRITES_IN_FLIGHT as u128 + 1;
    assert_eq!(
        code_of(&node.book.add(NOW, new_record(at(10)), id(next))),
        ResultCode::E_OUTOFMEMORY
    );
    assert_eq!(
        code_of(&node.book.update(NOW, id(1), RecordUpdate::default())),
        ResultCode::E_OUTOFMEMORY
    );
    assert_eq!(
        code_of(&node.book.delete(NOW, id(1), false)),
        ResultCode::E_OUTOFMEMORY
    );

    let first = writes.remove(0);
    assert_eq!(node.commit(first), Ok(()));
    assert_eq!(node.book.writes_in_flight(), MAX_WRITES_IN_FLIGHT - 1);
    let (_, write) = node
        .book
        .add(NOW, new_record(at(10)), id(next))
        .expect("one write has completed");
    writes.push(write);
    for write in writes {
        assert_eq!(node.commit(write), Ok(()));
    }
    assert_eq!(node.events().len(), MAX_WRITES_IN_FLIGHT + 1);
    assert_eq!(node.book.writes_in_flight(), 0);
}

#[test]
fn add_refuses_an_id_in_use() {
    let mut node = Node::new();
    node.add(NOW, new_record(at(10)), 1);
    let exists = ResultCode::PEER_E_ALREADY_EXISTS;
    assert_eq!(
        code_of(&node.book.add(NOW, new_record(at(20)), id(1))),
        exists,
        "durable"
    );
    let (_, write) = node.book.add(NOW, new_record(at(10)), id(2)).expect("ok");
    assert_eq!(
        code_of(&node.book.add(NOW, new_record(at(20)), id(2))),
        exists,
        "in flight"
    );
    assert_eq!(node.commit(write), Ok(()));
    let write = node.book.delete(NOW, id(2), false).expect("live");
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(
        code_of(&node.book.add(NOW, new_record(at(20)), id(2))),
        exists,
        "a tombstone keeps its id"
    );
    assert_eq!(node.book.writes_in_flight(), 0);
}

// --- update -----------------------------------------------------------------------

#[test]
fn update_grows_the_version_and_raises_updated() {
    let mut node = Node::new();
    let record = node.add(NOW, new_record(at(10)), 1);
    node.events();
    let update = RecordUpdate {
        data: Some(b"bye".to_vec()),
        expiration: Some(at(20)),
        ..RecordUpdate::default()
    };
    let expected = record
        .updated(update.clone(), peer("alice"), at(1), MAX_RECORD_SIZE)
        .expect("valid");
    let write = node.book.update(at(1), id(1), update).expect("accepted");
    assert_eq!(write.batch, vec![WriteOp::Put(expected.clone())]);
    assert_eq!(node.events(), vec![]);
    assert_eq!(node.get(at(1), 1), Ok(record.clone()), "still version 1");

    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(
        node.events(),
        vec![changed(RecordChangeType::Updated, &record)]
    );
    let got = node.get(at(1), 1).expect("readable");
    assert_eq!(got, expected);
    assert_eq!(got.version(), 2);
    assert_eq!(got.data(), b"bye");
    assert_eq!(got.attributes(), record.attributes());
    assert_eq!(got.expiration_time(), at(20));
    assert_eq!(got.last_modified_time(), at(1));
    assert_eq!(got.creation_time(), NOW);
    assert_eq!(
        node.book.next_wake(),
        Some(at(10)),
        "the wake only moves earlier"
    );
}

#[test]
fn an_update_in_flight_is_built_on() {
    let mut node = Node::new();
    let record = node.add(NOW, new_record(at(10)), 1);
    node.events();
    let first = RecordUpdate {
        data: Some(b"one".to_vec()),
        ..RecordUpdate::default()
    };
    let second = RecordUpdate {
        expiration: Some(at(20)),
        ..RecordUpdate::default()
    };
    let version2 = record
        .updated(first.clone(), peer("alice"), at(1), MAX_RECORD_SIZE)
        .expect("valid");
    let version3 = version2
        .updated(second.clone(), peer("alice"), at(2), MAX_RECORD_SIZE)
        .expect("valid");
    let write1 = node.book.update(at(1), id(1), first).expect("accepted");
    let write2 = node.book.update(at(2), id(1), second).expect("accepted");
    assert_eq!(write2.batch, vec![WriteOp::Put(version3.clone())]);
    assert_eq!(version3.version(), 3);
    assert_eq!(version3.data(), b"one");
    assert_eq!(version3.expiration_time(), at(20));
    assert_eq!(node.get(at(2), 1), Ok(record));

    assert_eq!(node.commit(write1), Ok(()));
    assert_eq!(node.get(at(2), 1), Ok(version2));
    assert_eq!(node.commit(write2), Ok(()));
    assert_eq!(node.get(at(2), 1), Ok(version3.clone()));
    let updated = changed(RecordChangeType::Updated, &version3);
    assert_eq!(node.events(), vec![updated.clone(), updated]);

    let delete = node.book.delete(at(3), id(1), false).expect("live");
    assert_eq!(
        code_of(&node.book.update(at(3), id(1), RecordUpdate::default())),
        ResultCode::PEER_E_RECORD_NOT_FOUND,
        "a deletion in flight counts"
    );
    assert_eq!(node.commit(delete), Ok(()));
}

#[test]
fn update_finds_only_live_records() {
    let mut node = Node::new();
    let not_found = ResultCode::PEER_E_RECORD_NOT_FOUND;
    let update = RecordUpdate {
        data: Some(b"bye".to_vec()),
        ..RecordUpdate::default()
    };
    assert_eq!(
        code_of(&node.book.update(NOW, id(1), update.clone())),
        not_found,
        "unknown"
    );
    node.add(NOW, new_record(at(10)), 1);
    node.add(NOW, new_record(at(10)), 2);
    let write = node.book.delete(NOW, id(2), false).expect("live");
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(
        code_of(&node.book.update(at(1), id(2), update.clone())),
        not_found,
        "deleted"
    );
    assert_eq!(
        code_of(&node.book.update(at(10), id(1), update.clone())),
        not_found,
        "expired"
    );
    let earlier = RecordUpdate {
        expiration: Some(at(9)),
        ..RecordUpdate::default()
    };
    assert_eq!(
        code_of(&node.book.update(at(1), id(1), earlier)),
        ResultCode::E_INVALIDARG,
        "the expiration moves backwards"
    );
    let past = RecordUpdate {
        expiration: Some(at(1)),
        ..RecordUpdate::default()
    };
    assert_eq!(
        code_of(&node.book.update(at(1), id(1), past)),
        ResultCode::E_INVALIDARG,
        "the expiration is not after now"
    );
    assert_eq!(node.book.writes_in_flight(), 0);
    let kept = RecordUpdate {
        expiration: Some(at(10)),
        ..update
    };
    let write = node
        .book
        .update(at(1), id(1), kept)
        .expect("the same expiration");
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(node.stored(1).map(|record| record.version()), Some(2));
}

// --- delete -----------------------------------------------------------------------

#[test]
fn delete_leaves_a_tombstone_and_raises_deleted() {
    let mut node = Node::new();
    let record = node.add(NOW, new_record(at(10)), 1);
    node.events();
    let tombstone = record.deleted(peer("alice"), at(1)).expect("live");
    let write = node.book.delete(at(1), id(1), false).expect("live");
    assert_eq!(write.batch, vec![WriteOp::Put(tombstone.clone())]);
    assert_eq!(node.events(), vec![]);
    assert_eq!(node.get(at(1), 1), Ok(record.clone()));

    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(
        node.events(),
        vec![changed(RecordChangeType::Deleted, &record)]
    );
    assert_eq!(node.get(at(1), 1), Err(ResultCode::PEER_E_RECORD_NOT_FOUND));
    let stored = node.stored(1).expect("the tombstone is kept");
    assert_eq!(stored, tombstone);
    assert!(stored.is_deleted());
    assert_eq!(stored.version(), 2);
    assert_eq!(stored.expiration_time(), at(10));
    assert!(stored.data().is_empty());
    assert!(stored.attributes().is_empty());
    assert_eq!(node.enumerate(at(1), &RecordFilter::all()), vec![]);

    assert_eq!(
        code_of(&node.book.delete(at(2), id(1), false)),
        ResultCode::PEER_E_RECORD_NOT_FOUND,
        "deleted twice"
    );
    assert_eq!(
        code_of(&node.book.delete(at(2), id(1), true)),
        ResultCode::PEER_E_RECORD_NOT_FOUND
    );
    assert_eq!(
        code_of(&node.book.delete(at(2), id(2), false)),
        ResultCode::PEER_E_RECORD_NOT_FOUND,
        "unknown"
    );
    assert_eq!(node.book.writes_in_flight(), 0);
}

#[test]
fn delete_local_only_erases_the_copy() {
    let mut node = Node::new();
    let record = node.add(NOW, new_record(at(10)), 1);
    node.events();
    let write = node.book.delete(at(1), id(1), true).expect("live");
    assert_eq!(write.batch, vec![WriteOp::Erase(id(1))]);
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(
        node.events(),
        vec![changed(RecordChangeType::Deleted, &record)]
    );
    assert_eq!(node.stored(1), None);
    assert_eq!(node.get(at(1), 1), Err(ResultCode::PEER_E_RECORD_NOT_FOUND));
    assert_eq!(
        code_of(&node.book.delete(at(2), id(1), true)),
        ResultCode::PEER_E_RECORD_NOT_FOUND
    );
}

#[test]
fn delete_of_an_expired_record_is_not_found() {
    let mut node = Node::new();
    node.add(NOW, new_record(at(10)), 1);
    assert_eq!(
        code_of(&node.book.delete(at(10), id(1), false)),
        ResultCode::PEER_E_RECORD_NOT_FOUND
    );
    assert_eq!(node.book.writes_in_flight(), 0);
}

// --- enumerate and search ---------------------------------------------------------

#[test]
fn enumerate_and_search_leave_out_deleted_and_expired() {
    let mut node = Node::new();
    let bobs = created(with_nick(at(10), "bea"), 5, "bob", NOW);
    node.store
        .write_and_wait(vec![WriteOp::Put(bobs.clone())])
        .expect("written");
    let first = node.add(NOW, with_nick(at(10), "ann"), 1);
    let other_type = NewRecord {
        record_type: record_type(8),
        ..with_nick(at(10), "ben")
    };
    let second = node.add(NOW, other_type, 2);
    node.add(NOW, with_nick(at(10), "bud"), 3);
    let write = node.book.delete(NOW, id(3), false).expect("live");
    assert_eq!(node.commit(write), Ok(()));
    let short = node.add(NOW, with_nick(at(5), "bix"), 4);

    assert_eq!(
        node.enumerate(NOW, &RecordFilter::all()),
        vec![first.clone(), second.clone(), short.clone(), bobs.clone()]
    );
    let later = at(5);
    assert_eq!(
        node.enumerate(later, &RecordFilter::all()),
        vec![first.clone(), second.clone(), bobs.clone()]
    );
    assert_eq!(
        node.enumerate(later, &RecordFilter::of_type(record_type(7))),
        vec![first.clone(), bobs.clone()]
    );
    assert_eq!(
        node.enumerate(later, &RecordFilter::by_creator(peer("alice"))),
        vec![first.clone(), second.clone()]
    );
    assert_eq!(
        node.enumerate(later, &RecordFilter::by_creator(peer("bob"))),
        vec![bobs.clone()]
    );
    assert_eq!(node.enumerate(at(10), &RecordFilter::all()), vec![]);

    let search = |text: &str| Search::parse(text).expect("valid search");
    let nick_b =
        search("<peersearch><clause attrib=\"nick\" type=\"string\">b*</clause></peersearch>");
    assert_eq!(
        node.book.search(NOW, &nick_b),
        Ok(vec![second.clone(), short, bobs.clone()])
    );
    assert_eq!(
        node.book.search(later, &nick_b),
        Ok(vec![second, bobs.clone()])
    );
    let by_bob = search(
        "<peersearch><clause attrib=\"peercreatorid\" type=\"string\">bob</clause></peersearch>",
    );
    assert_eq!(node.book.search(later, &by_bob), Ok(vec![bobs]));
    let deleted_nick =
        search("<peersearch><clause attrib=\"nick\" type=\"string\">bud</clause></peersearch>");
    assert_eq!(node.book.search(NOW, &deleted_nick), Ok(vec![]));
}

// --- security ---------------------------------------------------------------------

#[test]
fn open_needs_both_callbacks_or_neither() {
    let switch = Arc::new(Switch::default());
    let store: Arc<dyn RecordStore> = Arc::new(MemoryStore::new());
    let half = RecordSecurity {
        secure_record: None,
        ..security(&switch)
    };
    let opened = RecordBook::open(Arc::clone(&store), peer("alice"), properties(), half);
    assert_eq!(code_of(&opened), ResultCode::E_INVALIDARG);
    let half = RecordSecurity {
        validate_record: None,
        ..security(&switch)
    };
    let opened = RecordBook::open(store, peer("alice"), properties(), half);
    assert_eq!(code_of(&opened), ResultCode::E_INVALIDARG);
}

#[test]
fn a_rejecting_callback_denies_add_update_and_delete() {
    let switch = Arc::new(Switch::default());
    let mut node = Node::creator(properties(), security(&switch));
    let record = node.add(NOW, new_record(at(10)), 1);
    node.events();
    assert_eq!(switch.seen(), vec![(id(1), RecordChangeType::Added, 1)]);

    switch.set(REJECT);
    let denied = ResultCode::E_ACCESSDENIED;
    assert_eq!(
        code_of(&node.book.add(NOW, new_record(at(10)), id(2))),
        denied
    );
    let update = RecordUpdate {
        data: Some(b"bye".to_vec()),
        ..RecordUpdate::default()
    };
    assert_eq!(code_of(&node.book.update(at(1), id(1), update)), denied);
    assert_eq!(code_of(&node.book.delete(at(1), id(1), false)), denied);
    assert_eq!(code_of(&node.book.delete(at(1), id(1), true)), denied);
    assert_eq!(
        switch.seen(),
        vec![
            (id(2), RecordChangeType::Added, 1),
            (id(1), RecordChangeType::Updated, 2),
            (id(1), RecordChangeType::Deleted, 2),
            (id(1), RecordChangeType::Deleted, 2),
        ]
    );
    assert_eq!(node.book.writes_in_flight(), 0);
    assert_eq!(node.events(), vec![]);
    assert_eq!(node.get(at(1), 1), Ok(record));
    assert_eq!(node.stored(2), None);
}

#[test]
fn the_securing_callbacks_data_is_stored() {
    let switch = Arc::new(Switch::default());
    let mut node = Node::creator(properties(), security(&switch));
    let new = new_record(at(10));
    let expected = signed(created(new.clone(), 1, "alice", NOW));
    let (_, write) = node.book.add(NOW, new, id(1)).expect("accepted");
    assert_eq!(write.batch, vec![WriteOp::Put(expected.clone())]);
    assert_eq!(node.commit(write), Ok(()));
    let got = node.get(NOW, 1).expect("readable");
    assert_eq!(got, expected);
    assert_eq!(got.security_data(), b"sig\0\0\0\x01");

    let write = node
        .book
        .update(at(1), id(1), RecordUpdate::default())
        .expect("accepted");
    assert_eq!(node.commit(write), Ok(()));
    let got = node.get(at(1), 1).expect("readable");
    assert_eq!(
        got.security_data(),
        b"sig\0\0\0\x02",
        "the new version is secured"
    );

    let write = node.book.delete(at(2), id(1), false).expect("accepted");
    assert_eq!(node.commit(write), Ok(()));
    let tombstone = node.stored(1).expect("kept");
    assert!(
        tombstone.security_data().is_empty(),
        "a tombstone carries none"
    );
}

#[test]
fn the_securing_callbacks_error_is_the_calls() {
    let switch = Arc::new(Switch::default());
    let mut node = Node::creator(properties(), security(&switch));
    let record = node.add(NOW, new_record(at(10)), 1);
    switch.seen();
    switch.secure_fails.store(true, Ordering::SeqCst);
    let refused = ResultCode::PEER_E_NOT_AUTHORIZED;
    assert_eq!(
        code_of(&node.book.add(NOW, new_record(at(10)), id(2))),
        refused
    );
    assert_eq!(
        code_of(&node.book.update(at(1), id(1), RecordUpdate::default())),
        refused
    );
    assert_eq!(switch.seen(), vec![], "securing comes before validation");
    assert_eq!(node.book.writes_in_flight(), 0);
    assert_eq!(node.get(at(1), 1), Ok(record));
}

#[test]
fn a_deferred_add_is_held_until_validated() {
    let switch = Arc::new(Switch::default());
    let mut node = Node::creator(properties(), security(&switch));
    switch.set(DEFER);
    let new = new_record(at(10));
    let expected = signed(created(new.clone(), 1, "alice", NOW));
    let (_, write) = node.book.add(NOW, new, id(1)).expect("held");
    assert_eq!(write.batch, vec![WriteOp::Hold(expected.clone())]);
    assert_eq!(node.commit(write), Ok(()), "a held add succeeds");
    assert_eq!(node.events(), vec![], "no event while held");
    assert_eq!(node.get(NOW, 1), Err(ResultCode::PEER_E_RECORD_NOT_FOUND));
    assert_eq!(node.stored(1), None);
    assert_eq!(node.held(), vec![expected.clone()]);
    assert_eq!(node.enumerate(NOW, &RecordFilter::all()), vec![]);
    assert_eq!(
        node.book.next_wake(),
        Some(at(10)),
        "a held record expires too"
    );
    let not_found = ResultCode::PEER_E_RECORD_NOT_FOUND;
    assert_eq!(
        code_of(&node.book.update(NOW, id(1), RecordUpdate::default())),
        not_found
    );
    assert_eq!(code_of(&node.book.delete(NOW, id(1), false)), not_found);
    assert_eq!(
        code_of(&node.book.add(NOW, new_record(at(10)), id(1))),
        ResultCode::PEER_E_ALREADY_EXISTS
    );
    switch.seen();

    assert_eq!(
        node.book
            .validate_deferred(at(1), &[id(1)])
            .map(|write| write.is_none()),
        Ok(true),
        "deferred again: nothing changes"
    );
    assert_eq!(switch.seen(), vec![(id(1), RecordChangeType::Added, 1)]);
    assert_eq!(
        code_of(&node.book.validate_deferred(at(1), &[])),
        ResultCode::E_INVALIDARG
    );

    switch.set(ACCEPT);
    let write = node
        .book
        .validate_deferred(at(1), &[id(1), id(9)])
        .expect("valid")
        .expect("the record is taken");
    assert_eq!(
        write.batch,
        vec![WriteOp::Release(id(1)), WriteOp::Put(expected.clone())]
    );
    assert_eq!(node.events(), vec![]);
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(node.events(), vec![added(&expected)]);
    assert_eq!(node.get(at(1), 1), Ok(expected));
    assert_eq!(node.held(), vec![]);
    assert_eq!(
        node.book
            .validate_deferred(at(1), &[id(1)])
            .map(|write| write.is_none()),
        Ok(true),
        "no longer held"
    );
}

#[test]
fn a_deferred_record_rejected_later_is_dropped() {
    let switch = Arc::new(Switch::default());
    let mut node = Node::creator(properties(), security(&switch));
    switch.set(DEFER);
    let (_, write) = node.book.add(NOW, new_record(at(10)), id(1)).expect("held");
    assert_eq!(node.commit(write), Ok(()));
    switch.set(REJECT);
    let write = node
        .book
        .validate_deferred(at(1), &[id(1)])
        .expect("valid")
        .expect("the record is dropped");
    assert_eq!(write.batch, vec![WriteOp::Release(id(1))]);
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(node.events(), vec![]);
    assert_eq!(node.held(), vec![]);
    assert_eq!(node.stored(1), None);
    assert_eq!(node.get(at(1), 1), Err(ResultCode::PEER_E_RECORD_NOT_FOUND));
    switch.set(ACCEPT);
    let record = node.add(at(1), new_record(at(10)), 1);
    assert_eq!(node.events(), vec![added(&record)], "the id is free again");
}

#[test]
fn a_deferred_update_replaces_the_live_copy_until_validated() {
    let switch = Arc::new(Switch::default());
    let mut node = Node::creator(properties(), security(&switch));
    let record = node.add(NOW, new_record(at(10)), 1);
    node.events();
    switch.set(DEFER);
    let update = RecordUpdate {
        data: Some(b"two".to_vec()),
        ..RecordUpdate::default()
    };
    let version2 = signed(
        record
            .updated(update.clone(), peer("alice"), at(1), MAX_RECORD_SIZE)
            .expect("valid"),
    );
    let write = node.book.update(at(1), id(1), update).expect("held");
    assert_eq!(
        write.batch,
        vec![WriteOp::Hold(version2.clone()), WriteOp::Erase(id(1))]
    );
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(node.events(), vec![]);
    assert_eq!(node.get(at(1), 1), Err(ResultCode::PEER_E_RECORD_NOT_FOUND));
    assert_eq!(node.held(), vec![version2.clone()]);
    switch.seen();

    switch.set(ACCEPT);
    let write = node
        .book
        .validate_deferred(at(2), &[id(1)])
        .expect("valid")
        .expect("taken");
    assert_eq!(switch.seen(), vec![(id(1), RecordChangeType::Updated, 2)]);
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(
        node.events(),
        vec![changed(RecordChangeType::Updated, &version2)]
    );
    assert_eq!(node.get(at(2), 1), Ok(version2));
}

// --- tick: expiry and AUTOREFRESH -------------------------------------------------

#[test]
fn the_wake_is_the_earliest_expiration() {
    let mut node = Node::new();
    assert_eq!(node.book.next_wake(), None);
    node.add(NOW, new_record(at(10)), 1);
    assert_eq!(node.book.next_wake(), Some(at(10)));
    node.add(NOW, new_record(at(5)), 2);
    assert_eq!(node.book.next_wake(), Some(at(5)));
    node.add(NOW, new_record(at(20)), 3);
    assert_eq!(node.book.next_wake(), Some(at(5)));
    let (_, write) = node.book.add(NOW, new_record(at(2)), id(4)).expect("ok");
    assert_eq!(
        node.book.next_wake(),
        Some(at(5)),
        "not before it is durable"
    );
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(node.book.next_wake(), Some(at(2)));
}

#[test]
fn a_tick_expires_a_record_at_its_expiration() {
    let mut node = Node::new();
    let record = node.add(NOW, new_record(at(10)), 1);
    node.add(NOW, new_record(at(20)), 2);
    node.events();
    assert!(node.tick(just_before(at(10))).is_none(), "not yet");
    assert_eq!(node.book.next_wake(), Some(at(10)));

    let write = node.tick(at(10)).expect("due");
    assert_eq!(write.batch, vec![WriteOp::Erase(id(1))]);
    assert_eq!(node.events(), vec![]);
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(
        node.events(),
        vec![changed(RecordChangeType::Expired, &record)]
    );
    assert_eq!(node.stored(1), None);
    assert_eq!(node.book.next_wake(), Some(at(20)));
    assert!(node.tick(at(10)).is_none(), "nothing left due");
    assert_eq!(node.book.next_wake(), Some(at(20)));

    let write = node.tick(at(20)).expect("due");
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(node.events().len(), 1);
    assert_eq!(node.book.next_wake(), None);
}

#[test]
fn a_tombstone_expires_silently() {
    let mut node = Node::new();
    node.add(NOW, new_record(at(10)), 1);
    let write = node.book.delete(at(1), id(1), false).expect("live");
    assert_eq!(node.commit(write), Ok(()));
    node.events();
    assert_eq!(node.book.next_wake(), Some(at(10)));
    let write = node.tick(at(10)).expect("due");
    assert_eq!(write.batch, vec![WriteOp::Erase(id(1))]);
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(node.events(), vec![]);
    assert_eq!(node.stored(1), None);
    assert_eq!(node.book.next_wake(), None);
}

#[test]
fn a_held_record_expires_silently() {
    let switch = Arc::new(Switch::default());
    let mut node = Node::creator(properties(), security(&switch));
    switch.set(DEFER);
    let (_, write) = node.book.add(NOW, new_record(at(10)), id(1)).expect("held");
    assert_eq!(node.commit(write), Ok(()));
    let write = node.tick(at(10)).expect("due");
    assert_eq!(write.batch, vec![WriteOp::Release(id(1))]);
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(node.events(), vec![]);
    assert_eq!(node.held(), vec![]);
    assert_eq!(node.book.next_wake(), None);
}

#[test]
fn an_autorefresh_record_of_ours_is_renewed_within_the_margin() {
    let mut node = Node::new();
    let record = node.add(NOW, refreshing(at(10)), 1);
    node.events();
    let renew_at = GraphTime::from_ticks(at(10).ticks() - MINUTE);
    assert_eq!(NOW.saturating_add(REFRESH_MARGIN), at(1));
    assert_eq!(node.book.next_wake(), Some(renew_at));
    assert!(node.tick(just_before(renew_at)).is_none(), "not yet");
    assert_eq!(node.book.next_wake(), Some(renew_at));

    let write = node.tick(renew_at).expect("due");
    let renewed = record.refreshed(peer("alice"), renew_at).expect("live");
    assert_eq!(write.batch, vec![WriteOp::Put(renewed.clone())]);
    assert_eq!(renewed.version(), 2);
    assert_eq!(
        renewed.expiration_time(),
        renew_at.saturating_add(at(10).saturating_since(NOW)),
        "the same lifetime again from the renewal"
    );
    assert_eq!(renewed.expiration_time(), at(19));
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(
        node.events(),
        vec![changed(RecordChangeType::Updated, &record)]
    );
    assert_eq!(node.get(renew_at, 1), Ok(renewed));
    assert_eq!(node.book.next_wake(), Some(at(18)));
    assert!(node.tick(at(10)).is_none(), "the old expiration is gone");
    assert_eq!(node.book.next_wake(), Some(at(18)));
}

#[test]
fn a_shutting_down_book_expires_but_does_not_renew() {
    let mut node = Node::new();
    node.add(NOW, refreshing(at(10)), 1);
    node.events();
    node.book.shut_down();
    assert!(node.tick(at(9)).is_none());
    let write = node.tick(at(10)).expect("due");
    assert_eq!(write.batch, vec![WriteOp::Erase(id(1))]);
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(node.events().len(), 1);
}

#[test]
fn an_autorefresh_record_of_another_creator_is_not_renewed() {
    let store = Arc::new(MemoryStore::new());
    let bobs = created(refreshing(at(10)), 1, "bob", NOW);
    store
        .write_and_wait(vec![
            WriteOp::SetMetadata(synchronized_metadata(properties())),
            WriteOp::Put(bobs.clone()),
        ])
        .expect("written");
    let mut node = Node::open(&store, "alice", properties(), RecordSecurity::default());
    assert_eq!(
        node.book.next_wake(),
        Some(at(10)),
        "its expiration, no margin"
    );
    assert!(node.tick(at(9)).is_none());
    assert_eq!(node.book.next_wake(), Some(at(10)));
    let write = node.tick(at(10)).expect("due");
    assert_eq!(write.batch, vec![WriteOp::Erase(id(1))]);
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(
        node.events(),
        vec![changed(RecordChangeType::Expired, &bobs)]
    );
}

#[test]
fn one_tick_expires_at_most_the_tick_limit() {
    let mut node = Node::new();
    let total = TICK_LIMIT + 44;
    for n in 1..=total as u128 {
        node.add(NOW, new_record(at(10)), n);
    }
    node.events();
    let write = node.tick(at(10)).expect("due");
    let first: Vec<WriteOp> = (1..=TICK_LIMIT as u128)
        .map(|n| WriteOp::Erase(id(n)))
        .collect();
    assert_eq!(write.batch, first, "the earliest, in id order");
    assert_eq!(node.book.next_wake(), Some(at(10)), "more is due at once");
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(node.events().len(), TICK_LIMIT);
    assert_eq!(node.book.next_wake(), Some(at(10)));

    let write = node.tick(at(10)).expect("the rest");
    let rest: Vec<WriteOp> = (TICK_LIMIT as u128 + 1..=total as u128)
        .map(|n| WriteOp::Erase(id(n)))
        .collect();
    assert_eq!(write.batch, rest);
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(node.events().len(), total - TICK_LIMIT);
    assert_eq!(node.store.records(&RecordFilter::all()), Ok(vec![]));
    assert_eq!(node.book.next_wake(), None);
}

#[test]
fn a_failed_tick_is_tried_again() {
    let mut node = Node::new();
    let record = node.add(NOW, new_record(at(10)), 1);
    node.events();
    let write = node.tick(at(10)).expect("due");
    assert_eq!(
        node.fail(write, ResultCode::E_FAIL),
        Err(PeerError::new(ResultCode::E_FAIL))
    );
    assert_eq!(node.events(), vec![]);
    let retry = at(10).saturating_add(RETRY_AFTER);
    assert_eq!(node.book.next_wake(), Some(retry));
    let write = node.tick(retry).expect("still due");
    assert_eq!(write.batch, vec![WriteOp::Erase(id(1))]);
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(
        node.events(),
        vec![changed(RecordChangeType::Expired, &record)]
    );
    assert_eq!(node.book.next_wake(), None);
}

#[test]
fn a_record_with_a_write_in_flight_waits_for_it() {
    let mut node = Node::new();
    node.add(NOW, new_record(at(10)), 1);
    node.events();
    let update = RecordUpdate {
        data: Some(b"two".to_vec()),
        ..RecordUpdate::default()
    };
    let write = node.book.update(at(9), id(1), update).expect("live");
    assert!(node.tick(at(10)).is_none(), "in flight: left to its write");
    assert_eq!(
        node.book.next_wake(),
        Some(at(10).saturating_add(RETRY_AFTER))
    );
    assert_eq!(node.commit(write), Ok(()));
    node.events();
    let write = node.tick(at(10).saturating_add(RETRY_AFTER)).expect("due");
    assert_eq!(write.batch, vec![WriteOp::Erase(id(1))]);
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(node.events().len(), 1);
}

// --- properties -------------------------------------------------------------------

#[test]
fn set_properties_raises_property_changed_once_written() {
    let mut node = Node::new();
    let mut named = properties().with_friendly_name("Chat");
    named.comment = "a comment".into();
    named.presence_lifetime = 600;
    let write = node.book.set_properties(named.clone()).expect("valid");
    assert_eq!(
        write.batch,
        vec![WriteOp::SetMetadata(synchronized_metadata(named.clone()))]
    );
    assert_eq!(node.events(), vec![]);
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(node.events(), vec![GraphEvent::PropertyChanged]);
    assert_eq!(node.book.properties(), named);
    assert_eq!(node.store.metadata(), Ok(synchronized_metadata(named)));

    let small = properties().with_max_record_size(1024);
    let write = node.book.set_properties(small).expect("valid");
    assert_eq!(node.commit(write), Ok(()));
    let big = NewRecord {
        data: vec![0; 1024],
        ..new_record(at(10))
    };
    assert_eq!(
        code_of(&node.book.add(NOW, big, id(1))),
        ResultCode::PEER_E_MAX_RECORD_SIZE_EXCEEDED,
        "the new size is in force"
    );
}

#[test]
fn a_failed_set_properties_keeps_the_old_ones() {
    let mut node = Node::new();
    let named = properties().with_friendly_name("Chat");
    let write = node.book.set_properties(named).expect("valid");
    assert_eq!(
        node.fail(write, ResultCode::PEER_E_DISK_FULL),
        Err(PeerError::new(ResultCode::PEER_E_DISK_FULL))
    );
    assert_eq!(node.events(), vec![]);
    assert_eq!(node.book.properties(), properties());
    assert!(node.book.is_synchronized());
}

#[test]
fn set_properties_keeps_the_fixed_fields_and_the_ranges() {
    let mut node = Node::new();
    let invalid = ResultCode::E_INVALIDARG;
    let other_graph = GraphProperties {
        graph_id: GraphId::new("other").expect("valid"),
        ..properties()
    };
    assert_eq!(code_of(&node.book.set_properties(other_graph)), invalid);
    let other_creator = GraphProperties {
        creator_id: peer("bob"),
        ..properties()
    };
    assert_eq!(code_of(&node.book.set_properties(other_creator)), invalid);
    let other_scope = properties().with_scope(Scope::LinkLocal);
    assert_eq!(code_of(&node.book.set_properties(other_scope)), invalid);
    let long_name = properties().with_friendly_name("n".repeat(257));
    assert_eq!(code_of(&node.book.set_properties(long_name)), invalid);
    let tiny = properties().with_max_record_size(1023);
    assert_eq!(code_of(&node.book.set_properties(tiny)), invalid);
    assert_eq!(node.book.writes_in_flight(), 0);
    assert_eq!(node.book.properties(), properties());

    let longest = properties().with_friendly_name("n".repeat(256));
    let write = node.book.set_properties(longest.clone()).expect("256 fits");
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(node.book.properties(), longest);
}

#[test]
fn only_the_creator_sets_properties() {
    let store = Arc::new(MemoryStore::new());
    let mut node = Node::open(&store, "bob", properties(), RecordSecurity::default());
    let write = node.book.initial_write(true);
    assert_eq!(node.commit(write), Ok(()));
    let named = properties().with_friendly_name("Chat");
    assert_eq!(
        code_of(&node.book.set_properties(named)),
        ResultCode::E_ACCESSDENIED
    );
    assert_eq!(node.book.writes_in_flight(), 0);
    let record = node.add(NOW, new_record(at(10)), 1);
    assert_eq!(record.creator_id(), &peer("bob"), "bob may still add");
}

// --- reopen -----------------------------------------------------------------------

#[test]
fn a_book_opened_again_reads_the_metadata_and_held_records() {
    let switch = Arc::new(Switch::default());
    let mut node = Node::creator(properties(), security(&switch));
    let named = properties().with_friendly_name("Chat");
    let write = node.book.set_properties(named.clone()).expect("valid");
    assert_eq!(node.commit(write), Ok(()));
    let live = node.add(NOW, new_record(at(20)), 1);
    switch.set(DEFER);
    let (_, write) = node.book.add(NOW, new_record(at(15)), id(2)).expect("held");
    assert_eq!(node.commit(write), Ok(()));
    let held = node.held();
    let store = Arc::clone(&node.store);
    drop(node);

    switch.set(ACCEPT);
    let given = properties().with_friendly_name("given");
    let mut node = Node::open(&store, "alice", given, security(&switch));
    assert!(node.book.is_synchronized());
    assert_eq!(node.book.properties(), named);
    assert_eq!(
        node.book.next_wake(),
        Some(at(15)),
        "the held record's expiration"
    );
    assert_eq!(node.get(NOW, 1), Ok(live));
    assert_eq!(node.get(NOW, 2), Err(ResultCode::PEER_E_RECORD_NOT_FOUND));
    assert_eq!(
        code_of(&node.book.add(NOW, new_record(at(10)), id(2))),
        ResultCode::PEER_E_ALREADY_EXISTS,
        "the held record's id is in use"
    );

    let write = node
        .book
        .validate_deferred(NOW, &[id(2)])
        .expect("valid")
        .expect("taken");
    assert_eq!(node.commit(write), Ok(()));
    assert_eq!(node.events(), vec![added(&held[0])]);
    assert_eq!(node.get(NOW, 2), Ok(held[0].clone()));
    assert_eq!(node.held(), vec![]);
}
