//! The record and database calls end to end through the public API, with the database in
//! a temporary directory: every documented code of AddRecord, UpdateRecord, DeleteRecord,
//! GetRecord, EnumRecords, SearchRecords, ValidateDeferredRecords, Get/SetProperties,
//! ExportDatabase, ImportDatabase, and of Create, Open and Delete on a database, with the
//! RECORD_CHANGED and PROPERTY_CHANGED events they raise.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{engine, EVENT_TIMEOUT};
use peergraph::{
    reply, AddRecord, Attributes, CloseGraph, Engine, EventRegistration, EventStream, EventType,
    Graph, GraphEvent, GraphId, GraphOptions, GraphProperties, GraphStatus, GraphTime, NewRecord,
    PeerError, PeerId, Record, RecordChangeType, RecordId, RecordSecurity, RecordType,
    RecordUpdate, ResultCode,
};

const DATABASE: &str = "main";

/// A call's outcome with the error reduced to its code.
fn rc<T>(result: Result<T, PeerError>) -> Result<T, ResultCode> {
    result.map_err(|error| error.code())
}

fn kind(n: u128) -> RecordType {
    RecordType::from_u128(n).expect("a non-nil record type")
}

fn properties(graph_id: &str, peer_id: &str) -> GraphProperties {
    GraphProperties::new(
        GraphId::new(graph_id).expect("graph id"),
        PeerId::new(peer_id).expect("peer id"),
    )
}

fn on_disk(dir: &Path) -> GraphOptions {
    GraphOptions::default().with_database(dir, DATABASE)
}

/// The graph time `seconds` from now (negative: in the past).
fn in_seconds(seconds: i64) -> GraphTime {
    let now = SystemTime::now();
    let at = if seconds >= 0 {
        now + Duration::from_secs(seconds.unsigned_abs())
    } else {
        now - Duration::from_secs(seconds.unsigned_abs())
    };
    GraphTime::from_system_time(at).expect("a representable time")
}

fn attributes(xml: &str) -> Attributes {
    Attributes::parse(xml).expect("valid attributes")
}

/// A record of type `record_type` living an hour, with `room` as a string attribute.
fn new_record(record_type: u128, room: &str, data: &[u8]) -> NewRecord {
    NewRecord {
        record_type: kind(record_type),
        attributes: attributes(&format!(
            r#"<attributes><attribute name="room" type="string">{room}</attribute><attribute name="n" type="int">{}</attribute></attributes>"#,
            data.len()
        )),
        expiration: in_seconds(3600),
        autorefresh: false,
        data: data.to_vec(),
    }
}

fn changed(change_type: RecordChangeType, record_id: RecordId, record_type: u128) -> GraphEvent {
    GraphEvent::RecordChanged {
        change_type,
        record_id,
        record_type: kind(record_type),
    }
}

/// Registers for RECORD_CHANGED and PROPERTY_CHANGED.
async fn watch(graph: &Graph) -> EventStream {
    within!(graph.register_event(vec![
        EventRegistration::new(EventType::RecordChanged),
        EventRegistration::new(EventType::PropertyChanged),
    ]))
    .expect("register")
}

/// The next event, bounded by [`EVENT_TIMEOUT`].
async fn next_event(events: &mut EventStream) -> GraphEvent {
    tokio::time::timeout(EVENT_TIMEOUT, events.recv())
        .await
        .expect("an event in time")
        .expect("the event stream is open")
}

fn create(engine: &Engine, graph_id: &str, peer_id: &str, options: GraphOptions) -> Graph {
    engine
        .create_graph(properties(graph_id, peer_id), options)
        .expect("create")
}

fn open(
    engine: &Engine,
    graph_id: &str,
    peer_id: &str,
    options: GraphOptions,
) -> (Graph, ResultCode) {
    engine.open_graph(graph_id, peer_id, options).expect("open")
}

async fn close(graph: &Graph) {
    within!(graph.close()).expect("close");
}

/// The one database file under `dir`.
fn database_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("readable directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.is_file())
        .collect();
    assert_eq!(files.len(), 1, "one database file in {dir:?}: {files:?}");
    files.into_iter().next().expect("one file")
}

const ACCEPT: u8 = 0;
const REJECT: u8 = 1;
const DEFER: u8 = 2;
const FAIL_SECURING: u8 = 3;

/// Security callbacks whose verdict `mode` selects; the security data is the record's
/// data length, big-endian.
fn security(mode: Arc<AtomicU8>) -> RecordSecurity {
    let verdict = mode.clone();
    RecordSecurity {
        validate_record: Some(Arc::new(move |_record, _change| {
            match verdict.load(Ordering::SeqCst) {
                REJECT => Err(PeerError::new(ResultCode::PEER_E_INVALID_RECORD)),
                DEFER => Err(PeerError::new(ResultCode::PEER_E_DEFERRED_VALIDATION)),
                _ => Ok(()),
            }
        })),
        secure_record: Some(Arc::new(move |record| {
            if mode.load(Ordering::SeqCst) == FAIL_SECURING {
                Err(PeerError::new(ResultCode::PEER_E_NOT_AUTHORIZED))
            } else {
                Ok((record.data().len() as u32).to_be_bytes().to_vec())
            }
        })),
    }
}

#[tokio::test]
async fn a_closed_database_opens_with_its_records_byte_for_byte() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine();
    let graph = create(&engine, "persist", "alice", on_disk(dir.path()));
    assert_eq!(
        within!(graph.status()),
        Ok(GraphStatus::SYNCHRONIZED),
        "a created graph is synchronized"
    );
    let mut written = Vec::new();
    for (n, room) in ["lobby", "kitchen", "attic"].into_iter().enumerate() {
        let data: Vec<u8> = (0..(100 * n + 7)).map(|i| (i * 31 + n) as u8).collect();
        let id = within!(graph.add_record(new_record(1 + n as u128, room, &data))).expect("add");
        written.push(within!(graph.get_record(id)).expect("get"));
    }
    written.sort_by_key(Record::id);
    close(&graph).await;

    let (graph, code) = open(&engine, "persist", "alice", on_disk(dir.path()));
    assert_eq!(code, ResultCode::S_OK, "the database existed");
    for record in &written {
        assert_eq!(
            within!(graph.get_record(record.id())).as_ref(),
            Ok(record),
            "the same record, every field"
        );
    }
    assert_eq!(within!(graph.enum_records(None, None)), Ok(written.clone()));
    // Its database has synchronized (it was created here): it may listen and change.
    within!(graph.listen("127.0.0.1:0".parse().expect("address"))).expect("listen");
    within!(graph.add_record(new_record(1, "cellar", b"more"))).expect("add after open");
    close(&graph).await;

    // Create on a database that exists.
    assert_eq!(
        rc(engine.create_graph(properties("persist", "alice"), on_disk(dir.path()))).map(drop),
        Err(ResultCode::PEER_E_DATABASE_ALREADY_PRESENT)
    );
}

#[tokio::test]
async fn a_new_database_is_not_ready_until_synchronized() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine();
    let (graph, code) = open(&engine, "fresh", "bob", on_disk(dir.path()));
    assert_eq!(code, ResultCode::PEER_S_GRAPH_DATA_CREATED);
    assert_eq!(within!(graph.status()), Ok(GraphStatus(0)));
    let unknown = RecordId::from_u128(42).expect("non-nil");
    let not_ready = Err(ResultCode::PEER_E_GRAPH_NOT_READY);
    assert_eq!(
        rc(within!(graph.add_record(new_record(1, "lobby", b"x")))).map(drop),
        not_ready
    );
    assert_eq!(
        rc(within!(
            graph.update_record(unknown, RecordUpdate::default())
        )),
        not_ready
    );
    assert_eq!(rc(within!(graph.delete_record(unknown, false))), not_ready);
    assert_eq!(
        rc(within!(graph.validate_deferred_records(vec![unknown]))),
        not_ready
    );
    let renamed = within!(graph.properties())
        .expect("properties")
        .with_friendly_name("renamed");
    assert_eq!(rc(within!(graph.set_properties(renamed))), not_ready);
    assert_eq!(
        rc(within!(
            graph.listen("127.0.0.1:0".parse().expect("address"))
        ))
        .map(drop),
        not_ready
    );
    // Reads answer.
    assert_eq!(
        rc(within!(graph.get_record(unknown))).map(drop),
        Err(ResultCode::PEER_E_RECORD_NOT_FOUND)
    );
    assert_eq!(within!(graph.enum_records(None, None)), Ok(Vec::new()));
    close(&graph).await;
    // Still not synchronized when opened again.
    let (graph, code) = open(&engine, "fresh", "bob", on_disk(dir.path()));
    assert_eq!(code, ResultCode::S_OK);
    assert_eq!(
        rc(within!(graph.add_record(new_record(1, "lobby", b"x")))).map(drop),
        not_ready
    );
    close(&graph).await;

    // A created graph (in memory here) may listen at once.
    let created = create(&engine, "made", "bob", GraphOptions::default());
    within!(created.listen("127.0.0.1:0".parse().expect("address"))).expect("listen");
    close(&created).await;
}

#[tokio::test]
async fn one_security_callback_alone_is_an_invalid_argument() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine();
    let both = security(Arc::new(AtomicU8::new(ACCEPT)));
    let halves = [
        RecordSecurity {
            secure_record: None,
            ..both.clone()
        },
        RecordSecurity {
            validate_record: None,
            ..both
        },
    ];
    for half in halves {
        assert_eq!(
            rc(engine.create_graph(
                properties("half", "alice"),
                on_disk(dir.path()).with_security(half.clone())
            ))
            .map(drop),
            Err(ResultCode::E_INVALIDARG)
        );
        assert_eq!(
            rc(engine.open_graph("half", "alice", on_disk(dir.path()).with_security(half)))
                .map(drop),
            Err(ResultCode::E_INVALIDARG)
        );
    }
    // Nothing was made, and the graph id is free.
    assert_eq!(engine.graph_count(), 0);
    assert_eq!(
        std::fs::read_dir(dir.path())
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
}

#[tokio::test]
async fn add_record_answers_its_codes() {
    let engine = engine();
    let graph = create(&engine, "add", "alice", GraphOptions::default());
    let mut events = watch(&graph).await;

    let id = within!(graph.add_record(new_record(7, "lobby", b"hello"))).expect("add");
    assert_eq!(
        next_event(&mut events).await,
        changed(RecordChangeType::Added, id, 7)
    );
    let record = within!(graph.get_record(id)).expect("get");
    assert_eq!(
        (
            record.version(),
            record.data(),
            record.creator_id().as_str()
        ),
        (1, &b"hello"[..], "alice")
    );

    let mut past = new_record(7, "lobby", b"old");
    past.expiration = in_seconds(-10);
    assert_eq!(
        rc(within!(graph.add_record(past))).map(drop),
        Err(ResultCode::E_INVALIDARG),
        "an expiration in the past"
    );
    let mut short = new_record(7, "lobby", b"short");
    short.autorefresh = true;
    short.expiration = in_seconds(3 * 60);
    assert_eq!(
        rc(within!(graph.add_record(short.clone()))).map(drop),
        Err(ResultCode::E_INVALIDARG),
        "AUTOREFRESH living under four minutes"
    );
    short.expiration = in_seconds(5 * 60);
    within!(graph.add_record(short)).expect("AUTOREFRESH for five minutes");
    close(&graph).await;

    let limited = engine
        .create_graph(
            properties("limited", "alice").with_max_record_size(1024),
            GraphOptions::default(),
        )
        .expect("create");
    assert_eq!(
        rc(within!(limited.add_record(new_record(
            7,
            "lobby",
            &[0x55; 2048]
        ))))
        .map(drop),
        Err(ResultCode::PEER_E_MAX_RECORD_SIZE_EXCEEDED)
    );
    within!(limited.add_record(new_record(7, "lobby", &[0x55; 100]))).expect("a small one fits");
    close(&limited).await;

    // Attributes are checked before the call.
    for bad in [
        r#"<attributes><attribute name="a" type="string">x</attribute>"#,
        r#"<attributes><attribute name="peercreatorid" type="string">eve</attribute></attributes>"#,
        r#"<attributes><attribute name="PeerRecordId" type="string">x</attribute></attributes>"#,
        r#"<attributes><attribute name="a" type="string"><b>deep</b></attribute></attributes>"#,
        r#"<attributes><attribute name="a" type="int">twelve</attribute></attributes>"#,
    ] {
        assert_eq!(
            rc(Attributes::parse(bad)).map(drop),
            Err(ResultCode::PEER_E_INVALID_ATTRIBUTES),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn the_security_callbacks_refuse_secure_and_defer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine();
    let mode = Arc::new(AtomicU8::new(ACCEPT));
    let graph = create(
        &engine,
        "secure",
        "alice",
        on_disk(dir.path()).with_security(security(mode.clone())),
    );
    let mut events = watch(&graph).await;

    let kept = within!(graph.add_record(new_record(3, "lobby", b"kept"))).expect("add");
    assert_eq!(
        next_event(&mut events).await,
        changed(RecordChangeType::Added, kept, 3)
    );
    assert_eq!(
        within!(graph.get_record(kept))
            .expect("get")
            .security_data(),
        &4u32.to_be_bytes()[..],
        "the securing callback's data is attached"
    );

    mode.store(REJECT, Ordering::SeqCst);
    assert_eq!(
        rc(within!(graph.add_record(new_record(3, "lobby", b"refused")))).map(drop),
        Err(ResultCode::E_ACCESSDENIED)
    );
    let update = RecordUpdate {
        data: Some(b"changed".to_vec()),
        ..RecordUpdate::default()
    };
    assert_eq!(
        rc(within!(graph.update_record(kept, update.clone()))),
        Err(ResultCode::E_ACCESSDENIED)
    );
    assert_eq!(
        rc(within!(graph.delete_record(kept, false))),
        Err(ResultCode::E_ACCESSDENIED)
    );
    mode.store(FAIL_SECURING, Ordering::SeqCst);
    assert_eq!(
        rc(within!(graph.add_record(new_record(
            3,
            "lobby",
            b"unsigned"
        ))))
        .map(drop),
        Err(ResultCode::PEER_E_NOT_AUTHORIZED),
        "the securing callback's own error"
    );
    assert_eq!(
        rc(within!(graph.update_record(kept, update))),
        Err(ResultCode::PEER_E_NOT_AUTHORIZED)
    );

    // Deferred: held durably, no event, unreadable until validated.
    mode.store(DEFER, Ordering::SeqCst);
    let held = within!(graph.add_record(new_record(4, "hall", b"held"))).expect("held");
    assert_eq!(
        rc(within!(graph.get_record(held))).map(drop),
        Err(ResultCode::PEER_E_RECORD_NOT_FOUND)
    );
    assert_eq!(
        within!(graph.enum_records(Some(kind(4)), None)),
        Ok(Vec::new())
    );
    // Still deferred when validated again: nothing changes.
    within!(graph.validate_deferred_records(vec![held])).expect("validate");
    // Events come in the order of the writes: had the held record raised one, it would
    // come before this marker's.
    mode.store(ACCEPT, Ordering::SeqCst);
    let marker = within!(graph.add_record(new_record(5, "hall", b"marker"))).expect("add");
    assert_eq!(
        next_event(&mut events).await,
        changed(RecordChangeType::Added, marker, 5),
        "no event for the held record"
    );
    // Held across a close and an open.
    close(&graph).await;
    let (graph, code) = open(
        &engine,
        "secure",
        "alice",
        on_disk(dir.path()).with_security(security(mode.clone())),
    );
    assert_eq!(code, ResultCode::S_OK);
    let mut events = watch(&graph).await;
    assert_eq!(
        rc(within!(graph.get_record(held))).map(drop),
        Err(ResultCode::PEER_E_RECORD_NOT_FOUND)
    );
    assert_eq!(
        rc(within!(graph.validate_deferred_records(Vec::new()))),
        Err(ResultCode::E_INVALIDARG)
    );
    within!(graph.validate_deferred_records(vec![held, RecordId::from_u128(9).expect("id")]))
        .expect("validate; an id not held is skipped");
    assert_eq!(
        next_event(&mut events).await,
        changed(RecordChangeType::Added, held, 4)
    );
    let record = within!(graph.get_record(held)).expect("readable once accepted");
    assert_eq!(record.data(), b"held");
    close(&graph).await;
}

#[tokio::test]
async fn update_record_answers_its_codes() {
    let engine = engine();
    let graph = create(&engine, "update", "alice", GraphOptions::default());
    let mut events = watch(&graph).await;
    let id = within!(graph.add_record(new_record(2, "lobby", b"one"))).expect("add");
    assert_eq!(
        next_event(&mut events).await,
        changed(RecordChangeType::Added, id, 2)
    );
    let before = within!(graph.get_record(id)).expect("get");
    let later = in_seconds(7200);
    let update = RecordUpdate {
        attributes: Some(attributes(
            r#"<attributes><attribute name="room" type="string">attic</attribute></attributes>"#,
        )),
        data: Some(b"two".to_vec()),
        expiration: Some(later),
    };
    within!(graph.update_record(id, update)).expect("update");
    assert_eq!(
        next_event(&mut events).await,
        changed(RecordChangeType::Updated, id, 2)
    );
    let after = within!(graph.get_record(id)).expect("get");
    assert_eq!(after.version(), 2);
    assert_eq!(after.data(), b"two");
    assert_eq!(after.expiration_time(), later);
    assert_eq!(after.creation_time(), before.creation_time());
    assert_eq!(
        after.attributes(),
        &attributes(
            r#"<attributes><attribute name="room" type="string">attic</attribute></attributes>"#,
        )
    );

    let backwards = RecordUpdate {
        expiration: Some(in_seconds(3600)),
        ..RecordUpdate::default()
    };
    assert_eq!(
        rc(within!(graph.update_record(id, backwards))),
        Err(ResultCode::E_INVALIDARG),
        "the expiration may not move backwards"
    );
    let past = RecordUpdate {
        expiration: Some(in_seconds(-1)),
        ..RecordUpdate::default()
    };
    assert_eq!(
        rc(within!(graph.update_record(id, past))),
        Err(ResultCode::E_INVALIDARG)
    );
    let unknown = RecordId::from_u128(0xdead).expect("non-nil");
    assert_eq!(
        rc(within!(
            graph.update_record(unknown, RecordUpdate::default())
        )),
        Err(ResultCode::PEER_E_RECORD_NOT_FOUND)
    );
    within!(graph.delete_record(id, false)).expect("delete");
    assert_eq!(
        rc(within!(graph.update_record(
            id,
            RecordUpdate {
                data: Some(b"three".to_vec()),
                ..RecordUpdate::default()
            }
        ))),
        Err(ResultCode::PEER_E_RECORD_NOT_FOUND),
        "a deleted record"
    );
    close(&graph).await;

    let limited = engine
        .create_graph(
            properties("update-limited", "alice").with_max_record_size(1024),
            GraphOptions::default(),
        )
        .expect("create");
    let id = within!(limited.add_record(new_record(2, "lobby", b"small"))).expect("add");
    assert_eq!(
        rc(within!(limited.update_record(
            id,
            RecordUpdate {
                data: Some(vec![1; 2048]),
                ..RecordUpdate::default()
            }
        ))),
        Err(ResultCode::PEER_E_MAX_RECORD_SIZE_EXCEEDED)
    );
    close(&limited).await;
}

#[tokio::test]
async fn delete_record_answers_its_codes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine();
    let graph = create(&engine, "delete", "alice", on_disk(dir.path()));
    let mut events = watch(&graph).await;
    let tombstoned = within!(graph.add_record(new_record(6, "a", b"a"))).expect("add");
    let erased = within!(graph.add_record(new_record(6, "b", b"b"))).expect("add");
    for id in [tombstoned, erased] {
        assert_eq!(
            next_event(&mut events).await,
            changed(RecordChangeType::Added, id, 6)
        );
    }
    within!(graph.delete_record(tombstoned, false)).expect("delete");
    assert_eq!(
        next_event(&mut events).await,
        changed(RecordChangeType::Deleted, tombstoned, 6)
    );
    within!(graph.delete_record(erased, true)).expect("delete locally");
    assert_eq!(
        next_event(&mut events).await,
        changed(RecordChangeType::Deleted, erased, 6)
    );
    for id in [tombstoned, erased] {
        assert_eq!(
            rc(within!(graph.get_record(id))).map(drop),
            Err(ResultCode::PEER_E_RECORD_NOT_FOUND)
        );
        for local_only in [false, true] {
            assert_eq!(
                rc(within!(graph.delete_record(id, local_only))),
                Err(ResultCode::PEER_E_RECORD_NOT_FOUND),
                "deleted twice"
            );
        }
    }
    assert_eq!(within!(graph.enum_records(None, None)), Ok(Vec::new()));
    // The tombstone is exported, the locally erased record is not.
    let export = dir.path().join("delete.export");
    assert_eq!(within!(graph.export_database(&export)), Ok(1));
    close(&graph).await;
}

#[tokio::test]
async fn enum_and_search_find_live_records() {
    let engine = engine();
    let graph = create(&engine, "search", "alice", GraphOptions::default());
    let mut ids = Vec::new();
    for (record_type, room) in [
        (1, "lobby"),
        (1, "lobster"),
        (2, "a*b"),
        (2, "axb"),
        (3, r"c\d"),
    ] {
        ids.push(
            within!(graph.add_record(new_record(record_type, room, room.as_bytes()))).expect("add"),
        );
    }
    let found = |records: Vec<Record>| -> Vec<String> {
        let mut rooms: Vec<String> = records
            .iter()
            .map(|record| String::from_utf8(record.data().to_vec()).expect("utf-8"))
            .collect();
        rooms.sort();
        rooms
    };
    let all = within!(graph.enum_records(None, None)).expect("enum");
    let mut sorted = all.clone();
    sorted.sort_by_key(Record::id);
    assert_eq!(all, sorted, "in id order");
    assert_eq!(all.len(), 5);
    assert_eq!(
        found(within!(graph.enum_records(Some(kind(1)), None)).expect("enum")),
        ["lobby", "lobster"]
    );
    assert_eq!(
        found(within!(graph.enum_records(Some(kind(9)), None)).expect("enum")),
        Vec::<String>::new()
    );
    let alice = PeerId::new("alice").expect("peer id");
    assert_eq!(
        within!(graph.enum_records(None, Some(alice.clone())))
            .expect("enum")
            .len(),
        5
    );
    assert_eq!(
        found(within!(graph.enum_records(Some(kind(2)), Some(alice))).expect("enum")),
        ["a*b", "axb"]
    );
    assert_eq!(
        within!(graph.enum_records(None, Some(PeerId::new("bob").expect("peer id")))),
        Ok(Vec::new())
    );

    let search = |clause: &str| format!(r#"<peersearch>{clause}</peersearch>"#);
    let cases: [(&str, &[&str]); 8] = [
        (
            r#"<clause attrib="room" type="string">lob*</clause>"#,
            &["lobby", "lobster"],
        ),
        (
            r#"<clause attrib="room" type="string">lob??</clause>"#,
            &["lobby"],
        ),
        (
            r#"<clause attrib="room" type="string">a*b</clause>"#,
            &["a*b", "axb"],
        ),
        (
            r#"<clause attrib="room" type="string">a\*b</clause>"#,
            &["a*b"],
        ),
        (
            r#"<clause attrib="room" type="string">c\\d</clause>"#,
            &[r"c\d"],
        ),
        (
            r#"<clause attrib="room" type="string" compare="notequal">*o*</clause>"#,
            &["a*b", "axb", r"c\d"],
        ),
        (
            r#"<and><clause attrib="peercreatorid" type="string">alice</clause><clause attrib="n" type="int" compare="greater">5</clause></and>"#,
            &["lobster"],
        ),
        (
            r#"<or><clause attrib="room" type="string">axb</clause><clause attrib="room" type="string">lobby</clause></or>"#,
            &["axb", "lobby"],
        ),
    ];
    for (clause, expected) in cases {
        assert_eq!(
            found(within!(graph.search_records(&search(clause))).expect("search")),
            expected,
            "{clause}"
        );
    }
    for bad in [
        search("<and/>"),
        search("<or></or>"),
        search(r#"<clause attrib="room" type="string" compare="like">a</clause>"#),
        search(r#"<clause attrib="room" type="string">a\x</clause>"#),
        search(r#"<clause attrib="room" type="string">a\</clause>"#),
        search(r#"<clause attrib="room" type="string" compare="less">a*</clause>"#),
        search(r#"<clause attrib="room" type="text">a</clause>"#),
        search(r#"<clause attrib="n" type="int">four</clause>"#),
        r#"<search><clause attrib="room" type="string">a</clause></search>"#.to_owned(),
        "<peersearch>".to_owned(),
        "".to_owned(),
    ] {
        assert_eq!(
            rc(within!(graph.search_records(&bad))).map(drop),
            Err(ResultCode::PEER_E_INVALID_SEARCH),
            "{bad}"
        );
    }
    close(&graph).await;
}

#[tokio::test]
async fn properties_change_and_persist() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine();
    let graph = engine
        .create_graph(
            properties("props", "alice").with_friendly_name("first"),
            on_disk(dir.path()),
        )
        .expect("create");
    let mut events = watch(&graph).await;
    let current = within!(graph.properties()).expect("properties");
    assert_eq!(
        current,
        properties("props", "alice").with_friendly_name("first")
    );

    let mut renamed = current.clone().with_friendly_name("second");
    renamed.comment = "c".repeat(512);
    within!(graph.set_properties(renamed.clone())).expect("set");
    assert_eq!(next_event(&mut events).await, GraphEvent::PropertyChanged);
    assert_eq!(within!(graph.properties()), Ok(renamed.clone()));

    let mut long = renamed.clone();
    long.comment = "c".repeat(513);
    assert_eq!(
        rc(within!(graph.set_properties(long))),
        Err(ResultCode::E_INVALIDARG),
        "a comment over 512 characters"
    );
    let mut moved = renamed.clone();
    moved.graph_id = GraphId::new("elsewhere").expect("graph id");
    assert_eq!(
        rc(within!(graph.set_properties(moved))),
        Err(ResultCode::E_INVALIDARG),
        "the graph id never changes"
    );
    let mut usurped = renamed.clone();
    usurped.creator_id = PeerId::new("mallory").expect("peer id");
    assert_eq!(
        rc(within!(graph.set_properties(usurped))),
        Err(ResultCode::E_INVALIDARG),
        "the creator never changes"
    );
    assert_eq!(
        rc(within!(
            graph.set_properties(renamed.clone().with_max_record_size(10))
        )),
        Err(ResultCode::E_INVALIDARG),
        "a record size under 1 KiB"
    );
    close(&graph).await;

    let (graph, code) = open(&engine, "props", "alice", on_disk(dir.path()));
    assert_eq!(code, ResultCode::S_OK);
    assert_eq!(within!(graph.properties()), Ok(renamed), "persisted");
    close(&graph).await;
}

#[tokio::test]
async fn a_record_expires_without_a_call() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine();
    let graph = create(&engine, "expiry", "alice", on_disk(dir.path()));
    let mut events = watch(&graph).await;
    let mut short = new_record(8, "brief", b"soon gone");
    short.expiration = in_seconds(2);
    let id = within!(graph.add_record(short)).expect("add");
    let kept = within!(graph.add_record(new_record(8, "long", b"stays"))).expect("add");
    assert_eq!(
        next_event(&mut events).await,
        changed(RecordChangeType::Added, id, 8)
    );
    assert_eq!(
        next_event(&mut events).await,
        changed(RecordChangeType::Added, kept, 8)
    );
    let expired = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("EXPIRED within 10 s")
        .expect("the stream is open");
    assert_eq!(expired, changed(RecordChangeType::Expired, id, 8));
    assert_eq!(
        rc(within!(graph.get_record(id))).map(drop),
        Err(ResultCode::PEER_E_RECORD_NOT_FOUND)
    );
    let left: Vec<RecordId> = within!(graph.enum_records(None, None))
        .expect("enum")
        .iter()
        .map(Record::id)
        .collect();
    assert_eq!(left, [kept]);
    close(&graph).await;
}

/// Alice's graph `graph_id` made in `dir` with three records, one of them then deleted;
/// closed. Returns the two live records and the export's path.
async fn exported(engine: &Engine, graph_id: &str, dir: &Path) -> (Vec<Record>, PathBuf) {
    let graph = engine
        .create_graph(
            properties(graph_id, "alice")
                .with_friendly_name("alice's")
                .with_max_record_size(4096),
            on_disk(dir),
        )
        .expect("create");
    let mut live = Vec::new();
    for room in ["one", "two", "three"] {
        let id = within!(graph.add_record(new_record(11, room, room.as_bytes()))).expect("add");
        live.push(within!(graph.get_record(id)).expect("get"));
    }
    let gone = live.remove(1);
    within!(graph.delete_record(gone.id(), false)).expect("delete");
    let path = dir.join(format!("{graph_id}.export"));
    assert_eq!(
        within!(graph.export_database(&path)),
        Ok(3),
        "the live records and the tombstone"
    );
    close(&graph).await;
    live.sort_by_key(Record::id);
    (live, path)
}

#[tokio::test]
async fn export_and_import_answer_their_codes() {
    let engine = engine();
    let source = tempfile::tempdir().expect("temp dir");
    let (live, export) = exported(&engine, "moving", source.path()).await;
    let bytes = std::fs::read(&export).expect("readable export");

    // A fresh database of the same graph and peer, not synchronized.
    let target = tempfile::tempdir().expect("temp dir");
    let (graph, code) = open(&engine, "moving", "alice", on_disk(target.path()));
    assert_eq!(code, ResultCode::PEER_S_GRAPH_DATA_CREATED);
    let scratch = tempfile::tempdir().expect("temp dir");
    let invalid = Err(ResultCode::PEER_E_INVALID_DATABASE);

    // Damaged exports: nothing is taken.
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x10;
    let truncated = &bytes[..bytes.len() - 40];
    let mut extended = bytes.clone();
    extended.push(0);
    for (name, damaged) in [
        ("flipped", &flipped[..]),
        ("truncated", truncated),
        ("extended", &extended[..]),
        ("empty", &[][..]),
        ("text", &b"not an export at all"[..]),
    ] {
        let path = scratch.path().join(name);
        std::fs::write(&path, damaged).expect("writable");
        assert_eq!(rc(within!(graph.import_database(&path))), invalid, "{name}");
    }
    // Another graph's export, and another peer's.
    let other_graph = tempfile::tempdir().expect("temp dir");
    let (_, foreign) = exported(&engine, "other", other_graph.path()).await;
    assert_eq!(
        rc(within!(graph.import_database(&foreign))),
        invalid,
        "another graph"
    );
    // Bob's database of the same graph (on an engine of his own: one engine holds a
    // graph id once).
    let bobs_engine = common::engine();
    let bobs_dir = tempfile::tempdir().expect("temp dir");
    let bob = create(&bobs_engine, "moving", "bob", on_disk(bobs_dir.path()));
    let bobs_export = bobs_dir.path().join("bob.export");
    assert_eq!(within!(bob.export_database(&bobs_export)), Ok(0));
    close(&bob).await;
    assert_eq!(
        rc(within!(graph.import_database(&bobs_export))),
        invalid,
        "another peer's"
    );
    assert_eq!(
        rc(within!(
            graph.import_database(scratch.path().join("missing"))
        )),
        Err(ResultCode::PEER_E_NOT_FOUND)
    );
    assert_eq!(within!(graph.enum_records(None, None)), Ok(Vec::new()));
    assert_eq!(within!(graph.status()), Ok(GraphStatus(0)));

    // The export itself: the records, and the graph becomes synchronized. Each live
    // record taken raises ADDED; the tombstone replaced nothing live and raises nothing.
    let mut events = watch(&graph).await;
    assert_eq!(within!(graph.import_database(&export)), Ok(3));
    assert_eq!(within!(graph.enum_records(None, None)), Ok(live.clone()));
    for record in &live {
        assert_eq!(
            next_event(&mut events).await,
            GraphEvent::RecordChanged {
                change_type: RecordChangeType::Added,
                record_id: record.id(),
                record_type: record.record_type(),
            }
        );
    }
    assert_eq!(within!(graph.status()), Ok(GraphStatus::SYNCHRONIZED));
    assert_eq!(
        within!(graph.properties()),
        Ok(properties("moving", "alice")
            .with_friendly_name("alice's")
            .with_max_record_size(4096)),
        "the graph's properties come with the export"
    );
    within!(graph.add_record(new_record(11, "four", b"four"))).expect("add after import");
    // Importing again takes nothing: every record is already there.
    assert_eq!(within!(graph.import_database(&export)), Ok(0));
    within!(graph.listen("127.0.0.1:0".parse().expect("address"))).expect("listen");
    assert_eq!(
        rc(within!(graph.import_database(&export))),
        Err(ResultCode::PEER_E_GRAPH_IN_USE),
        "after listen"
    );
    close(&graph).await;
    // What was imported is durable.
    let (graph, code) = open(&engine, "moving", "alice", on_disk(target.path()));
    assert_eq!(code, ResultCode::S_OK);
    let reopened = within!(graph.enum_records(None, None)).expect("enum");
    assert_eq!(reopened.len(), 3);
    for record in &live {
        assert!(reopened.contains(record), "{record:?}");
    }
    assert_eq!(
        within!(graph.properties()).map(|p| p.friendly_name),
        Ok("alice's".to_owned())
    );
    close(&graph).await;

    // A graph without a database.
    let memory = create(&engine, "memory", "alice", GraphOptions::default());
    assert_eq!(
        rc(within!(
            memory.export_database(scratch.path().join("memory.export"))
        )),
        Err(ResultCode::PEER_E_DATABASE_NOT_PRESENT)
    );
    assert_eq!(
        rc(within!(memory.import_database(&export))),
        Err(ResultCode::PEER_E_DATABASE_NOT_PRESENT)
    );
    close(&memory).await;
}

/// The file errors of Export and Import: a file that may not be made or read, a path
/// through a regular file.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn export_and_import_report_file_errors() {
    let engine = engine();
    let dir = tempfile::tempdir().expect("temp dir");
    let graph = create(&engine, "files", "alice", on_disk(dir.path()));
    within!(graph.add_record(new_record(1, "lobby", b"x"))).expect("add");
    // sysfs refuses new files even to root.
    assert_eq!(
        rc(within!(graph.export_database("/sys/peergraph-test.export"))),
        Err(ResultCode::E_ACCESSDENIED)
    );
    let plain = dir.path().join("plain");
    std::fs::write(&plain, b"a file").expect("writable");
    assert_eq!(
        rc(within!(
            graph.export_database(plain.join("under-a-file.export"))
        )),
        Err(ResultCode::E_FAIL)
    );
    // A write-only sysctl refuses reading even to root.
    assert_eq!(
        rc(within!(graph.import_database("/proc/sys/vm/compact_memory"))),
        Err(ResultCode::E_ACCESSDENIED)
    );
    close(&graph).await;
}

#[tokio::test]
async fn delete_graph_answers_its_codes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine();
    let location = peergraph::DatabaseLocation {
        directory: dir.path().to_owned(),
        name: DATABASE.to_owned(),
    };
    let graph = create(&engine, "doomed", "alice", on_disk(dir.path()));
    within!(graph.add_record(new_record(1, "lobby", b"x"))).expect("add");
    assert_eq!(
        rc(engine.delete_graph("doomed", "alice", &location)),
        Err(ResultCode::PEER_E_GRAPH_IN_USE),
        "open in this engine"
    );
    // Open in another engine (as another process would hold it): the file is locked.
    let other = common::engine();
    assert_eq!(
        rc(other.delete_graph("doomed", "alice", &location)),
        Err(ResultCode::PEER_E_GRAPH_IN_USE),
        "open elsewhere"
    );
    assert_eq!(
        rc(other.open_graph("doomed", "alice", on_disk(dir.path()))).map(drop),
        Err(ResultCode::PEER_E_GRAPH_IN_USE)
    );
    close(&graph).await;
    assert_eq!(
        rc(engine.delete_graph("doomed", "alice", &location)),
        Ok(())
    );
    assert_eq!(
        rc(engine.delete_graph("doomed", "alice", &location)),
        Err(ResultCode::PEER_E_DATABASE_NOT_PRESENT)
    );
    let (graph, code) = open(&engine, "doomed", "alice", on_disk(dir.path()));
    assert_eq!(code, ResultCode::PEER_S_GRAPH_DATA_CREATED, "made anew");
    assert_eq!(within!(graph.enum_records(None, None)), Ok(Vec::new()));
    close(&graph).await;
    assert_eq!(
        rc(engine.delete_graph("", "alice", &location)),
        Err(ResultCode::E_INVALIDARG)
    );
    let unnamed = peergraph::DatabaseLocation {
        directory: dir.path().to_owned(),
        name: String::new(),
    };
    assert_eq!(
        rc(engine.delete_graph("doomed", "alice", &unnamed)),
        Err(ResultCode::E_INVALIDARG)
    );
}

#[tokio::test]
async fn a_damaged_database_is_an_invalid_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine();
    let graph = create(&engine, "damaged", "alice", on_disk(dir.path()));
    for n in 0..50u8 {
        within!(graph.add_record(new_record(1, "lobby", &[n; 600]))).expect("add");
    }
    close(&graph).await;
    let path = database_file(dir.path());
    let original = std::fs::read(&path).expect("readable");
    for keep in [original.len() / 2, 4096, 100] {
        std::fs::write(&path, &original[..keep]).expect("writable");
        for _ in 0..2 {
            // Twice: a failed open leaves the graph id free.
            assert_eq!(
                rc(engine.open_graph("damaged", "alice", on_disk(dir.path()))).map(drop),
                Err(ResultCode::PEER_E_INVALID_DATABASE),
                "cut to {keep} of {} bytes",
                original.len()
            );
        }
    }
    assert_eq!(engine.graph_count(), 0);
    // A damaged database may be deleted, and made anew.
    let location = peergraph::DatabaseLocation {
        directory: dir.path().to_owned(),
        name: DATABASE.to_owned(),
    };
    assert_eq!(
        rc(engine.delete_graph("damaged", "alice", &location)),
        Ok(())
    );
    let (graph, code) = open(&engine, "damaged", "alice", on_disk(dir.path()));
    assert_eq!(code, ResultCode::PEER_S_GRAPH_DATA_CREATED);
    close(&graph).await;
}

/// A write in flight when the graph closes completes; a change after CloseGraph is
/// refused; the database is closed (and can be opened again) once CloseGraph answers.
#[tokio::test]
async fn close_finishes_writes_in_flight_and_refuses_new_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine();
    let graph = create(&engine, "closing", "alice", on_disk(dir.path()));
    let addr = graph.addr();
    let first = addr.send(AddRecord {
        record: new_record(1, "first", b"durable"),
    });
    let closed = addr.send(CloseGraph);
    let last = addr.send(AddRecord {
        record: new_record(1, "last", b"refused"),
    });
    let id = within!(async { reply(first.await) }).expect("the first add completes");
    let refused = within!(async { reply(last.await) });
    within!(async { reply(closed.await) }).expect("closed");
    let code = rc(refused).map(drop);
    eprintln!("a change after CloseGraph answered {code:?}");
    assert!(
        code == Err(ResultCode::PEER_E_GRAPH_SHUTTING_DOWN)
            || code == Err(ResultCode::PEER_E_INVALID_GRAPH),
        "{code:?}"
    );
    let (graph, code) = open(&engine, "closing", "alice", on_disk(dir.path()));
    assert_eq!(code, ResultCode::S_OK);
    let record = within!(graph.get_record(id)).expect("the first record is there");
    assert_eq!(record.data(), b"durable");
    assert_eq!(
        within!(graph.enum_records(None, None)).map(|r| r.len()),
        Ok(1)
    );
    close(&graph).await;
}

/// The codes every call shares: a closed graph, a shut-down engine.
#[tokio::test]
async fn closed_graphs_and_stopped_engines_answer_the_common_codes() {
    let engine = engine();
    let graph = create(&engine, "common", "alice", GraphOptions::default());
    let id = within!(graph.add_record(new_record(1, "lobby", b"x"))).expect("add");
    close(&graph).await;
    let invalid = Err(ResultCode::PEER_E_INVALID_GRAPH);
    assert_eq!(
        rc(within!(graph.add_record(new_record(1, "lobby", b"x")))).map(drop),
        invalid
    );
    assert_eq!(rc(within!(graph.get_record(id))).map(drop), invalid);
    assert_eq!(
        rc(within!(graph.enum_records(None, None))).map(drop),
        invalid
    );
    assert_eq!(rc(within!(graph.properties())).map(drop), invalid);

    let graph = create(&engine, "common", "alice", GraphOptions::default());
    within!(engine.shutdown()).expect("shutdown");
    let not_initialized = Err(ResultCode::PEER_E_NOT_INITIALIZED);
    assert_eq!(
        rc(within!(graph.add_record(new_record(1, "lobby", b"x")))).map(drop),
        not_initialized
    );
    assert_eq!(rc(within!(graph.get_record(id))).map(drop), not_initialized);
    assert_eq!(
        rc(engine.open_graph("common", "alice", GraphOptions::default())).map(drop),
        not_initialized
    );
}
