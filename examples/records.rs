//! # Records and the graph database, end to end
//!
//! One node, alice, keeps the chat lines of graph `chat` as records in a database on disk
//! and walks every record and database call:
//!
//! 1. `Startup`; `Create` with a database directory; `RegisterEvent` (RECORD_CHANGED,
//!    PROPERTY_CHANGED);
//! 2. `AddRecord` of chat lines whose attributes carry the room (`string`), a sequence
//!    number (`int`) and when it was sent (`date`); `UpdateRecord`, `GetRecord`;
//! 3. `EnumRecords` by type and by creator; `SearchRecords` with an `<and>` and a
//!    wildcard; `DeleteRecord`, once as a tombstone and once on this node only;
//! 4. `SetProperties` (a friendly name), answered by PROPERTY_CHANGED;
//! 5. `Close`, and `Open` again: `S_OK`, the records and properties are still there;
//! 6. `ExportDatabase`, `Close`, `Delete` (the database goes), `Open` again:
//!    `PEER_S_GRAPH_DATA_CREATED`, and the node is not ready (`PEER_E_GRAPH_NOT_READY`)
//!    until `ImportDatabase` of the export brings the records back, synchronized;
//! 7. each record call's error codes, one line each, among them a second graph whose
//!    validation callback refuses some records and defers others
//!    (`ValidateDeferredRecords`);
//! 8. a record that lives two seconds, and its RECORD_CHANGED EXPIRED.
//!
//! Every call is printed with the result code it returned (its documented name and HRESULT
//! value) and every event as it arrives. Each step checks its code, its events and its
//! data, and the program exits with an error at the first one that differs, so it doubles
//! as a smoke test of the library. The database lives in a temporary directory that is
//! removed at the end, or in `--dir DIR`, which is kept.
//!
//! Run it from the repository root (it takes about three seconds once built, two of them
//! waiting for the record that expires):
//!
//! ```text
//! cargo run --release --example records
//! cargo run --release --example records -- --dir /tmp/chat-db
//! ```
//!
//! The library's own logs go to stderr: `RUST_LOG=peergraph=debug` shows them.
//! docs/RECORDS.md describes attributes, the search language and the database.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, ensure, Context as _, Result};
use clap::Parser;
use peergraph::{
    code_of, Attributes, DatabaseLocation, Engine, EngineConfig, EventRegistration, EventStream,
    EventType, Graph, GraphEvent, GraphId, GraphOptions, GraphProperties, GraphStatus, GraphTime,
    NewRecord, PeerError, PeerId, Record, RecordChangeType, RecordId, RecordSecurity, RecordType,
    RecordUpdate, ResultCode, Version,
};
use peergraph_examples::transcript::{columns, detail, fails, note, ok, row, section, show};
use tracing_subscriber::EnvFilter;

/// The record type of a chat line. Any GUID will do, as long as every node agrees on it.
const CHAT_LINE: u128 = 0x4c2f_9a61_7d3e_4b08_b5c1_e2a7_90d4_6f13;
/// The record type of a room's topic.
const TOPIC: u128 = 0x91e5_03b7_2c48_4d9a_8f16_5a3d_c7e0_b284;

/// The graph's id.
const GRAPH: &str = "chat";
/// The graph's creator: this node's peer id.
const ALICE: &str = "alice";
/// The database's name (`pwzDatabaseName`).
const DATABASE: &str = "main";

/// The chat lines alice adds: room, sequence number, text.
const LINES: [(&str, i64, &str); 4] = [
    ("lobby", 1, "hello, everyone"),
    ("lobby", 2, "anyone for lunch?"),
    ("garden", 3, "the roses are out"),
    ("lobby", 4, "see you at one"),
];

/// How long the chat lines live: a day.
const LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The search of step 6: lobby-like rooms (a wildcard), from the second line on.
const SEARCH: &str = r#"<peersearch><and><clause attrib="room" type="string">lob*</clause><clause attrib="seq" type="int" compare="greaterorequal">2</clause></and></peersearch>"#;

/// The longest wait for the events of one step. They come within milliseconds of the
/// reply; the bound only turns a hang into a failed step.
const EVENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the record of the last step lives.
const SHORT_LIFE: Duration = Duration::from_secs(2);

/// Width of the transcript's first column: which graph a call is made on.
const WHO_WIDTH: usize = 7;
/// Width of the second column: the call made, or the event received.
const CALL_WIDTH: usize = 48;

/// Records and the graph database, walked call by call.
#[derive(Parser, Debug)]
#[command(name = "records")]
struct Args {
    /// Keep the database in DIR (created when missing, kept afterwards) instead of a
    /// temporary directory removed at the end. A database a previous run left there is
    /// deleted first.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    columns(WHO_WIDTH, CALL_WIDTH);
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    // The temporary directory, when there is one, is removed when `_temp` drops, on
    // success and on a failed step alike.
    let (dir, _temp) = match args.dir {
        Some(dir) => (dir, None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("peergraph-records-")
                .tempdir()
                .context("cannot make a temporary directory")?;
            (temp.path().to_owned(), Some(temp))
        }
    };
    println!("peergraph: alice keeps the chat's records in a database, and loses none");
    println!("database directory: {}", dir.display());
    let ids = Ids {
        chat: RecordType::from_u128(CHAT_LINE)?,
        topic: RecordType::from_u128(TOPIC)?,
    };
    let location = DatabaseLocation {
        directory: dir.clone(),
        name: DATABASE.to_owned(),
    };

    section("1. Startup, Create with a database, RegisterEvent");
    let engine = Engine::with_config(EngineConfig { workers: Some(1) })
        .context("cannot start the engine's worker thread")?;
    let version = ok(ALICE, "Startup(1.0)", engine.startup(Version::V1_0))?;
    detail(&format!("version {}", version.version));
    let options = GraphOptions::default().with_database(&dir, DATABASE);
    let left = engine.delete_graph(GRAPH, ALICE, &location);
    if code_of(&left) != ResultCode::PEER_E_DATABASE_NOT_PRESENT {
        show(GRAPH, "Delete (what a previous run left)", &left);
        left.context("cannot delete the database a previous run left")?;
    }
    let properties = GraphProperties::new(GraphId::new(GRAPH)?, PeerId::new(ALICE)?);
    let graph = ok(
        GRAPH,
        &format!("Create(\"{GRAPH}\", \"{ALICE}\", db \"{DATABASE}\")"),
        engine.create_graph(properties, options.clone()),
    )?;
    detail(&format!("handle {}", graph.handle()));
    let mut chat = Session::register(GRAPH, graph).await?;

    section("2. AddRecord: four chat lines and a topic");
    let mut line_ids = Vec::new();
    for (room, seq, text) in LINES {
        let record = chat_line(ids.chat, room, seq, text)?;
        let id = ok(
            GRAPH,
            &format!("AddRecord(CHAT_LINE, {room} #{seq})"),
            chat.graph.add_record(record).await,
        )?;
        chat.expect_record(RecordChangeType::Added, id).await?;
        line_ids.push(id);
    }
    let topic = NewRecord {
        record_type: ids.topic,
        attributes: Attributes::parse(
            r#"<attributes><attribute name="room" type="string">lobby</attribute></attributes>"#,
        )?,
        expiration: expires_in(LIFETIME)?,
        autorefresh: false,
        data: b"lunch plans".to_vec(),
    };
    let topic_id = ok(
        GRAPH,
        "AddRecord(TOPIC, lobby)",
        chat.graph.add_record(topic).await,
    )?;
    chat.expect_record(RecordChangeType::Added, topic_id)
        .await?;

    section("3. UpdateRecord, GetRecord");
    let edited = "anyone for lunch? at one";
    let update = RecordUpdate {
        data: Some(edited.as_bytes().to_vec()),
        ..RecordUpdate::default()
    };
    ok(
        GRAPH,
        "UpdateRecord(#2, new text)",
        chat.graph.update_record(line_ids[1], update).await,
    )?;
    chat.expect_record(RecordChangeType::Updated, line_ids[1])
        .await?;
    let record = ok(
        GRAPH,
        "GetRecord(#2)",
        chat.graph.get_record(line_ids[1]).await,
    )?;
    detail(&describe(&record));
    detail(&format!(
        "creator {}  created {}  modified {}",
        record.creator_id(),
        record.creation_time(),
        record.last_modified_time()
    ));
    detail(&format!("attributes {}", record.attributes().to_xml()));
    ensure!(
        record.version() == 2 && record.data() == edited.as_bytes(),
        "GetRecord(#2): version {} and data {:?}; expected version 2 and the new text",
        record.version(),
        String::from_utf8_lossy(record.data())
    );

    section("4. EnumRecords by type and by creator");
    let lines = ok(
        GRAPH,
        "EnumRecords(type CHAT_LINE)",
        chat.graph.enum_records(Some(ids.chat), None).await,
    )?;
    list(&lines);
    same_records("EnumRecords(type CHAT_LINE)", &lines, &line_ids)?;
    let mine = ok(
        GRAPH,
        &format!("EnumRecords(creator \"{ALICE}\")"),
        chat.graph
            .enum_records(None, Some(PeerId::new(ALICE)?))
            .await,
    )?;
    detail(&format!(
        "{} records (the chat lines and the topic)",
        mine.len()
    ));
    ensure!(
        mine.len() == 5,
        "EnumRecords(creator): {} records",
        mine.len()
    );
    let theirs = ok(
        GRAPH,
        "EnumRecords(creator \"bob\")",
        chat.graph
            .enum_records(None, Some(PeerId::new("bob")?))
            .await,
    )?;
    detail(&format!("{} records", theirs.len()));
    ensure!(theirs.is_empty(), "bob created none");

    section("5. SearchRecords: room lob* and seq >= 2");
    detail(SEARCH);
    let found = ok(
        GRAPH,
        "SearchRecords(<and> room, seq)",
        chat.graph.search_records(SEARCH).await,
    )?;
    list(&found);
    same_records("SearchRecords", &found, &[line_ids[1], line_ids[3]])?;

    section("6. DeleteRecord: a tombstone, and this node's copy only");
    ok(
        GRAPH,
        "DeleteRecord(#4, local_only false)",
        chat.graph.delete_record(line_ids[3], false).await,
    )?;
    chat.expect_record(RecordChangeType::Deleted, line_ids[3])
        .await?;
    ok(
        GRAPH,
        "DeleteRecord(topic, local_only true)",
        chat.graph.delete_record(topic_id, true).await,
    )?;
    chat.expect_record(RecordChangeType::Deleted, topic_id)
        .await?;
    note("#4 stays as a tombstone until it expires, so that the deletion reaches every");
    note("node; the topic's local deletion leaves no tombstone (a neighbor may bring it back).");
    let kept: Vec<RecordId> = line_ids[..3].to_vec();
    let left = ok(
        GRAPH,
        "EnumRecords(all)",
        chat.graph.enum_records(None, None).await,
    )?;
    same_records("EnumRecords(all)", &left, &kept)?;
    detail(&format!("{} records left", left.len()));

    section("7. SetProperties: a friendly name");
    let mut properties = ok(GRAPH, "GetProperties()", chat.graph.properties().await)?;
    properties.friendly_name = "Lunch at one".to_owned();
    ok(
        GRAPH,
        "SetProperties(friendly name \"Lunch at one\")",
        chat.graph.set_properties(properties).await,
    )?;
    chat.expect("PROPERTY_CHANGED", |event| {
        matches!(event, GraphEvent::PropertyChanged)
    })
    .await?;

    section("8. Close, and Open again: the records are on disk");
    chat.close().await?;
    let graph = open(
        &engine,
        &options,
        ResultCode::S_OK,
        "the database existed: its records, properties and synchronized state",
    )?;
    let chat = Session::register(GRAPH, graph).await?;
    let properties = ok(GRAPH, "GetProperties()", chat.graph.properties().await)?;
    detail(&format!("friendly name {:?}", properties.friendly_name));
    ensure!(
        properties.friendly_name == "Lunch at one",
        "the friendly name did not survive"
    );
    let found = ok(
        GRAPH,
        "EnumRecords(all)",
        chat.graph.enum_records(None, None).await,
    )?;
    list(&found);
    same_records("EnumRecords after Open", &found, &kept)?;

    section("9. ExportDatabase, Delete, Open: a new, empty database");
    let export = dir.join("chat.export");
    let exported = ok(
        GRAPH,
        "ExportDatabase(chat.export)",
        chat.graph.export_database(&export).await,
    )?;
    detail(&format!(
        "{exported} records (the tombstone of #4 too) in {}",
        export.display()
    ));
    fails(
        GRAPH,
        "Delete(\"chat\", \"alice\") while open",
        engine.delete_graph(GRAPH, ALICE, &location),
        ResultCode::PEER_E_GRAPH_IN_USE,
    )?;
    chat.close().await?;
    ok(
        GRAPH,
        &format!("Delete(\"{GRAPH}\", \"{ALICE}\", db \"{DATABASE}\")"),
        engine.delete_graph(GRAPH, ALICE, &location),
    )?;
    let graph = open(
        &engine,
        &options,
        ResultCode::PEER_S_GRAPH_DATA_CREATED,
        "no database: made now, empty, and not synchronized",
    )?;
    let mut chat = Session::register(GRAPH, graph).await?;
    let status = ok(GRAPH, "GetStatus()", chat.graph.status().await)?;
    detail(&format!("status {}: not synchronized", status_text(status)));
    ensure!(!status.contains(GraphStatus::SYNCHRONIZED), "{status:?}");
    let none = ok(
        GRAPH,
        "EnumRecords(all)",
        chat.graph.enum_records(None, None).await,
    )?;
    detail(&format!("{} records", none.len()));
    ensure!(
        none.is_empty(),
        "a new database holds {} records",
        none.len()
    );
    fails(
        GRAPH,
        "AddRecord(CHAT_LINE, lobby #5)",
        chat.graph
            .add_record(chat_line(ids.chat, "lobby", 5, "anyone?")?)
            .await,
        ResultCode::PEER_E_GRAPH_NOT_READY,
    )?;

    section("10. ImportDatabase: the records come back, synchronized");
    let taken = ok(
        GRAPH,
        "ImportDatabase(chat.export)",
        chat.graph.import_database(&export).await,
    )?;
    detail(&format!("{taken} records taken"));
    let back = chat.graph.enum_records(None, None).await;
    for record in back.iter().flatten() {
        chat.expect_record(RecordChangeType::Added, record.id())
            .await?;
    }
    let status = ok(GRAPH, "GetStatus()", chat.graph.status().await)?;
    detail(&format!("status {}", status_text(status)));
    ensure!(status.contains(GraphStatus::SYNCHRONIZED), "{status:?}");
    let back = ok(
        GRAPH,
        "EnumRecords(all)",
        chat.graph.enum_records(None, None).await,
    )?;
    list(&back);
    same_records("EnumRecords after ImportDatabase", &back, &kept)?;

    section("11. What the record calls return otherwise");
    errors(&mut chat, &engine, &ids, &location, &export).await?;
    guarded(&engine, ids.chat).await?;

    section("12. A record that lives two seconds");
    let short = NewRecord {
        expiration: expires_in(SHORT_LIFE)?,
        ..chat_line(ids.chat, "lobby", 6, "this message will self-destruct")?
    };
    let id = ok(
        GRAPH,
        "AddRecord(CHAT_LINE, expires in 2 s)",
        chat.graph.add_record(short).await,
    )?;
    chat.expect_record(RecordChangeType::Added, id).await?;
    chat.expect_record(RecordChangeType::Expired, id).await?;
    fails(
        GRAPH,
        "GetRecord(expired)",
        chat.graph.get_record(id).await,
        ResultCode::PEER_E_RECORD_NOT_FOUND,
    )?;

    section("13. Close, Shutdown");
    chat.close().await?;
    ok(ALICE, "Shutdown()", engine.shutdown().await)?;

    println!("\nEvery call returned the code the reference documents for it.");
    Ok(())
}

/// The record types of the demonstration (a [`RecordType`] is made at run time: a nil
/// GUID is refused).
struct Ids {
    chat: RecordType,
    topic: RecordType,
}

/// The error codes of the record calls on the chat graph: argument, attribute, search and
/// not-found errors, and the database calls' in-use and invalid-file errors.
async fn errors(
    chat: &mut Session,
    engine: &Engine,
    ids: &Ids,
    location: &DatabaseLocation,
    export: &Path,
) -> Result<()> {
    note("An expiration that is not in the future.");
    let stale = NewRecord {
        expiration: GraphTime::from_system_time(SystemTime::now() - Duration::from_secs(60))?,
        ..chat_line(ids.chat, "lobby", 7, "yesterday's news")?
    };
    fails(
        GRAPH,
        "AddRecord(expired a minute ago)",
        chat.graph.add_record(stale).await,
        ResultCode::E_INVALIDARG,
    )?;

    note("Attribute XML is checked before any call: a reserved name, a mistyped value.");
    fails(
        GRAPH,
        "Attributes::parse(peercreatorid)",
        Attributes::parse(
            r#"<attributes><attribute name="peercreatorid" type="string">mallory</attribute></attributes>"#,
        ),
        ResultCode::PEER_E_INVALID_ATTRIBUTES,
    )?;
    fails(
        GRAPH,
        "Attributes::parse(seq int \"two\")",
        Attributes::parse(
            r#"<attributes><attribute name="seq" type="int">two</attribute></attributes>"#,
        ),
        ResultCode::PEER_E_INVALID_ATTRIBUTES,
    )?;

    note("A record id no record has.");
    let unknown = RecordId::from_u128(0x0bad_0bad_0bad_4bad_8bad_0bad_0bad_0bad)?;
    fails(
        GRAPH,
        "GetRecord(unknown)",
        chat.graph.get_record(unknown).await,
        ResultCode::PEER_E_RECORD_NOT_FOUND,
    )?;
    let update = RecordUpdate {
        data: Some(b"?".to_vec()),
        ..RecordUpdate::default()
    };
    fails(
        GRAPH,
        "UpdateRecord(unknown)",
        chat.graph.update_record(unknown, update).await,
        ResultCode::PEER_E_RECORD_NOT_FOUND,
    )?;
    fails(
        GRAPH,
        "DeleteRecord(unknown)",
        chat.graph.delete_record(unknown, false).await,
        ResultCode::PEER_E_RECORD_NOT_FOUND,
    )?;

    note("Search criteria that are not valid: an unknown operator, an ordering wildcard.");
    fails(
        GRAPH,
        "SearchRecords(compare=\"about\")",
        chat.graph
            .search_records(
                r#"<peersearch><clause attrib="seq" type="int" compare="about">2</clause></peersearch>"#,
            )
            .await,
        ResultCode::PEER_E_INVALID_SEARCH,
    )?;
    fails(
        GRAPH,
        "SearchRecords(room less than lob*)",
        chat.graph
            .search_records(
                r#"<peersearch><clause attrib="room" type="string" compare="less">lob*</clause></peersearch>"#,
            )
            .await,
        ResultCode::PEER_E_INVALID_SEARCH,
    )?;

    note("ImportDatabase of a file that is not there, and of a damaged export.");
    fails(
        GRAPH,
        "ImportDatabase(missing.export)",
        chat.graph
            .import_database(export.with_file_name("missing.export"))
            .await,
        ResultCode::PEER_E_NOT_FOUND,
    )?;
    let damaged = export.with_file_name("damaged.export");
    let mut bytes = std::fs::read(export).context("reading the export")?;
    let middle = bytes.len() / 2;
    let byte = bytes.get_mut(middle).context("the export file is empty")?;
    *byte ^= 0x5a;
    std::fs::write(&damaged, &bytes).context("writing the damaged copy")?;
    detail(&format!(
        "damaged.export: byte {middle} of {} changed",
        bytes.len()
    ));
    fails(
        GRAPH,
        "ImportDatabase(damaged.export)",
        chat.graph.import_database(&damaged).await,
        ResultCode::PEER_E_INVALID_DATABASE,
    )?;

    note("An open graph's database cannot be deleted, nor imported into after Listen.");
    fails(
        GRAPH,
        "Delete(\"chat\", \"alice\") while open",
        engine.delete_graph(GRAPH, ALICE, location),
        ResultCode::PEER_E_GRAPH_IN_USE,
    )?;
    let any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let bound = ok(
        GRAPH,
        &format!("Listen({any_port})"),
        chat.graph.listen(any_port).await,
    )?;
    detail(&format!("bound {bound}"));
    fails(
        GRAPH,
        "ImportDatabase(chat.export)",
        chat.graph.import_database(export).await,
        ResultCode::PEER_E_GRAPH_IN_USE,
    )?;
    Ok(())
}

/// A second graph, in memory, whose validation callback refuses records that start with
/// "spam" and defers those that start with "later" until it is told to take them; and
/// whose records may be at most 4 KiB.
async fn guarded(engine: &Engine, chat_type: RecordType) -> Result<()> {
    const WHO: &str = "guarded";
    let take_later = Arc::new(AtomicBool::new(false));
    let taking = take_later.clone();
    let security = RecordSecurity {
        validate_record: Some(Arc::new(
            move |record: &Record, _change: RecordChangeType| {
                if record.data().starts_with(b"spam") {
                    Err(PeerError::new(ResultCode::PEER_E_INVALID_RECORD))
                } else if record.data().starts_with(b"later") && !taking.load(Ordering::SeqCst) {
                    Err(PeerError::new(ResultCode::PEER_E_DEFERRED_VALIDATION))
                } else {
                    Ok(())
                }
            },
        )),
        // The security data a record carries (a signature, in a real application): here
        // only its length, to show where it goes.
        secure_record: Some(Arc::new(|record: &Record| {
            Ok((record.data().len() as u32).to_be_bytes().to_vec())
        })),
    };
    let properties =
        GraphProperties::new(GraphId::new(WHO)?, PeerId::new(ALICE)?).with_max_record_size(4096);
    let graph = ok(
        WHO,
        "Create(\"guarded\", max 4 KiB, callbacks)",
        engine.create_graph(properties, GraphOptions::default().with_security(security)),
    )?;
    let mut guarded = Session::register(WHO, graph).await?;

    note("A record over the graph's max_record_size.");
    let big = NewRecord {
        data: vec![b'x'; 8192],
        ..chat_line(chat_type, "lobby", 1, "")?
    };
    fails(
        WHO,
        "AddRecord(8 KiB of data)",
        guarded.graph.add_record(big).await,
        ResultCode::PEER_E_MAX_RECORD_SIZE_EXCEEDED,
    )?;

    note("The validation callback refuses it.");
    fails(
        WHO,
        "AddRecord(\"spam, spam, spam\")",
        guarded
            .graph
            .add_record(chat_line(chat_type, "lobby", 2, "spam, spam, spam")?)
            .await,
        ResultCode::E_ACCESSDENIED,
    )?;

    note("The validation callback defers it: held, with no event, invisible until");
    note("ValidateDeferredRecords finds the callback willing.");
    let held = ok(
        WHO,
        "AddRecord(\"later: minutes of the meeting\")",
        guarded
            .graph
            .add_record(chat_line(
                chat_type,
                "lobby",
                3,
                "later: minutes of the meeting",
            )?)
            .await,
    )?;
    detail(&format!("{held} (held)"));
    fails(
        WHO,
        "GetRecord(held)",
        guarded.graph.get_record(held).await,
        ResultCode::PEER_E_RECORD_NOT_FOUND,
    )?;
    fails(
        WHO,
        "ValidateDeferredRecords([])",
        guarded.graph.validate_deferred_records(Vec::new()).await,
        ResultCode::E_INVALIDARG,
    )?;
    take_later.store(true, Ordering::SeqCst);
    detail("the application is now ready to judge \"later\" records");
    ok(
        WHO,
        "ValidateDeferredRecords([held])",
        guarded.graph.validate_deferred_records(vec![held]).await,
    )?;
    guarded.expect_record(RecordChangeType::Added, held).await?;
    let record = ok(WHO, "GetRecord(held)", guarded.graph.get_record(held).await)?;
    detail(&format!(
        "{}  security data {:02x?}",
        describe(&record),
        record.security_data()
    ));
    guarded.close().await
}

/// A graph and the events registered on it.
struct Session {
    /// The name the transcript shows.
    who: &'static str,
    graph: Graph,
    events: EventStream,
}

impl Session {
    /// Registers for RECORD_CHANGED and PROPERTY_CHANGED: `PeerGraphRegisterEvent`.
    async fn register(who: &'static str, graph: Graph) -> Result<Session> {
        let registrations = vec![
            EventRegistration::new(EventType::RecordChanged),
            EventRegistration::new(EventType::PropertyChanged),
        ];
        let events = ok(
            who,
            "RegisterEvent(RECORD_CHANGED, PROPERTY_CHANGED)",
            graph.register_event(registrations).await,
        )?;
        Ok(Session { who, graph, events })
    }

    /// Waits for the event `matches` accepts, printing every event that arrives.
    async fn expect(
        &mut self,
        what: &str,
        matches: impl Fn(&GraphEvent) -> bool,
    ) -> Result<GraphEvent> {
        let who = self.who;
        let events = &mut self.events;
        let waited = tokio::time::timeout(EVENT_TIMEOUT, async {
            // Bounded by the timeout around it, and ends with the stream.
            while let Some(event) = events.recv().await {
                print_event(who, &event);
                if matches(&event) {
                    return Some(event);
                }
            }
            None
        })
        .await;
        match waited {
            Ok(Some(event)) => Ok(event),
            Ok(None) => bail!("{who}: the event stream ended while waiting for {what}"),
            Err(_) => bail!("{who}: no {what} within {EVENT_TIMEOUT:?}"),
        }
    }

    /// Waits for RECORD_CHANGED of `change` for record `id`.
    async fn expect_record(&mut self, change: RecordChangeType, id: RecordId) -> Result<()> {
        let what = format!("RECORD_CHANGED {} {id}", change_name(change));
        self.expect(&what, |event| {
            matches!(event, GraphEvent::RecordChanged { change_type, record_id, .. }
                if *change_type == change && *record_id == id)
        })
        .await
        .map(|_| ())
    }

    /// `PeerGraphClose`, then waits until the event stream ends, printing any event
    /// still queued.
    async fn close(mut self) -> Result<()> {
        let who = self.who;
        ok(who, "Close(graph)", self.graph.close().await)?;
        let events = &mut self.events;
        tokio::time::timeout(EVENT_TIMEOUT, async {
            while let Some(event) = events.recv().await {
                print_event(who, &event);
            }
        })
        .await
        .with_context(|| format!("{who}: the event stream did not end"))?;
        row(who, "<- (end of event stream)", "the graph closed");
        Ok(())
    }
}

/// `PeerGraphOpen` of graph `chat` as alice with the database of `options`: prints the
/// success code it returned (`S_OK` or `PEER_S_GRAPH_DATA_CREATED`) and checks that it is
/// `expected`.
fn open(
    engine: &Engine,
    options: &GraphOptions,
    expected: ResultCode,
    meaning: &str,
) -> Result<Graph> {
    let call = format!("Open(\"{GRAPH}\", \"{ALICE}\", db \"{DATABASE}\")");
    let result = engine.open_graph(GRAPH, ALICE, options.clone());
    let (graph, code) = match result {
        Ok(opened) => opened,
        Err(error) => {
            show(GRAPH, &call, &Err::<(), _>(error.clone()));
            bail!(
                "{GRAPH}: {call} failed with {}; expected {expected}",
                error.code()
            );
        }
    };
    row(GRAPH, &call, &code.to_string());
    detail(meaning);
    ensure!(
        code == expected,
        "{GRAPH}: {call} returned {code}; expected {expected}"
    );
    Ok(graph)
}

/// A chat line: its attributes (room, sequence number, when it was sent) as attribute
/// XML, the text as data, living a day.
fn chat_line(record_type: RecordType, room: &str, seq: i64, text: &str) -> Result<NewRecord> {
    let sent = GraphTime::from_system_time(SystemTime::now())?;
    let xml = format!(
        "<attributes>\
           <attribute name=\"room\" type=\"string\">{room}</attribute>\
           <attribute name=\"seq\" type=\"int\">{seq}</attribute>\
           <attribute name=\"sent\" type=\"date\">{sent}</attribute>\
         </attributes>"
    );
    Ok(NewRecord {
        record_type,
        attributes: Attributes::parse(&xml)?,
        expiration: expires_in(LIFETIME)?,
        autorefresh: false,
        data: text.as_bytes().to_vec(),
    })
}

/// The graph time `life` from now.
fn expires_in(life: Duration) -> Result<GraphTime> {
    Ok(GraphTime::from_system_time(SystemTime::now() + life)?)
}

/// A record on one line: id, version, room and sequence number, text.
fn describe(record: &Record) -> String {
    let attribute = |name: &str| {
        record
            .attributes()
            .get(name)
            .map_or_else(|| "-".to_owned(), ToString::to_string)
    };
    format!(
        "{}  v{}  {} #{}  {:?}",
        record.id(),
        record.version(),
        attribute("room"),
        attribute("seq"),
        String::from_utf8_lossy(record.data())
    )
}

/// Prints records, one a line.
fn list(records: &[Record]) {
    detail(&format!("{} records", records.len()));
    for record in records {
        detail(&format!("  {}", describe(record)));
    }
}

/// Checks that `records` are exactly the records `ids`, in any order.
fn same_records(call: &str, records: &[Record], ids: &[RecordId]) -> Result<()> {
    let mut got: Vec<RecordId> = records.iter().map(Record::id).collect();
    let mut want = ids.to_vec();
    got.sort_unstable_by_key(|id| id.to_bytes());
    want.sort_unstable_by_key(|id| id.to_bytes());
    ensure!(got == want, "{call}: records {got:?}; expected {want:?}");
    Ok(())
}

/// The flags set in `status`, such as `SYNCHRONIZED`, or `none`.
fn status_text(status: GraphStatus) -> String {
    let names: Vec<&str> = [
        (GraphStatus::LISTENING, "LISTENING"),
        (GraphStatus::HAS_CONNECTIONS, "HAS_CONNECTIONS"),
        (GraphStatus::SYNCHRONIZED, "SYNCHRONIZED"),
    ]
    .into_iter()
    .filter(|(flag, _)| status.contains(*flag))
    .map(|(_, name)| name)
    .collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(" | ")
    }
}

/// The documented name of a record change.
fn change_name(change: RecordChangeType) -> &'static str {
    match change {
        RecordChangeType::Added => "ADDED",
        RecordChangeType::Updated => "UPDATED",
        RecordChangeType::Deleted => "DELETED",
        RecordChangeType::Expired => "EXPIRED",
    }
}

/// Prints an event received on graph `who`: its type in the call column, its data in
/// the result column.
fn print_event(who: &str, event: &GraphEvent) {
    match event {
        GraphEvent::RecordChanged {
            change_type,
            record_id,
            ..
        } => row(
            who,
            &format!("<- RECORD_CHANGED {}", change_name(*change_type)),
            &record_id.to_string(),
        ),
        GraphEvent::PropertyChanged => row(who, "<- PROPERTY_CHANGED", ""),
        GraphEvent::StatusChanged { status } => {
            row(who, "<- STATUS_CHANGED", &format!("{status:?}"));
        }
        GraphEvent::EventsLost { count } => {
            row(who, "<- (events lost)", &format!("{count} dropped"));
        }
        other => row(who, "<- (other event)", &format!("{other:?}")),
    }
}
