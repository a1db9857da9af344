//! SQLite's side, set up as a careful application would: one file in WAL mode with
//! `synchronous=FULL` (every commit is on disk before it is answered), one table with a
//! column per record field and one per queried attribute, each of those indexed, and
//! group commit by a writer thread.
//!
//! The writer thread takes the first write queued, then whatever else is queued at that
//! moment up to [`MAX_GROUP`] (the store's `MAX_GROUP_BATCHES`), writes them in one
//! transaction, commits, and only then answers each caller. Searches and reads run on a
//! second connection on the caller's thread (WAL lets it read while the writer writes).

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context as _};
use peergraph_engine::{GraphTime, RecordFlags};
use rusqlite::{params, Connection, OptionalExtension as _, TransactionBehavior};
use tokio::sync::oneshot;

use crate::records::content::{id_bytes, Query, RecordContent};
use crate::records::{Db, Side, CREATOR, RECORD_TYPE};

/// The most writes in one transaction, as the engine's store groups at most 256 batches.
pub const MAX_GROUP: usize = 256;
/// The database file's name in its directory.
const FILE: &str = "records.sqlite";
/// How long a connection waits for a lock before failing (a checkpoint can hold one).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE records (
    id BLOB PRIMARY KEY NOT NULL,
    record_type BLOB NOT NULL,
    version INTEGER NOT NULL,
    flags INTEGER NOT NULL,
    creator TEXT NOT NULL,
    modified_by TEXT NOT NULL,
    creation_time INTEGER NOT NULL,
    expiration_time INTEGER NOT NULL,
    last_modified_time INTEGER NOT NULL,
    attributes TEXT NOT NULL,
    security_data BLOB NOT NULL,
    data BLOB NOT NULL,
    name TEXT,
    level INTEGER,
    seen INTEGER
);
CREATE INDEX records_name ON records (name);
CREATE INDEX records_level ON records (level);
CREATE INDEX records_seen ON records (seen);
";

const INSERT: &str = "INSERT INTO records (id, record_type, version, flags, creator, \
     modified_by, creation_time, expiration_time, last_modified_time, attributes, \
     security_data, data, name, level, seen) \
     VALUES (?1, ?2, 1, 0, ?3, ?3, ?4, ?5, ?4, ?6, x'', ?7, ?8, ?9, ?10)";

/// An update as `UpdateRecord` makes it: new payload, one more version, modified now by
/// this peer, security data cleared; only a live record.
const UPDATE: &str = "UPDATE records SET data = ?2, version = version + 1, modified_by = ?3, \
     last_modified_time = ?4, security_data = x'' \
     WHERE id = ?1 AND expiration_time > ?4 AND (flags & ?5) = 0";

/// The three clauses on the indexed columns, live records only, every field returned.
const SEARCH: &str = "SELECT id, record_type, version, flags, creator, modified_by, \
     creation_time, expiration_time, last_modified_time, attributes, security_data, data \
     FROM records WHERE name = ?1 AND level >= ?2 AND seen < ?3 \
     AND expiration_time > ?4 AND (flags & ?5) = 0";

const GET: &str = "SELECT version FROM records WHERE id = ?1";

/// SQLite as the baseline.
pub struct SqliteSide;

impl Side for SqliteSide {
    type Db = SqliteDb;

    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn create(&self, directory: &Path) -> anyhow::Result<SqliteDb> {
        std::fs::create_dir_all(directory)?;
        let path = directory.join(FILE);
        if path.exists() {
            bail!("{} exists already", path.display());
        }
        let writer = connect(&path)?;
        writer.execute_batch(SCHEMA)?;
        SqliteDb::start(&path, writer)
    }

    async fn reopen(&self, directory: &Path) -> anyhow::Result<SqliteDb> {
        let path = directory.join(FILE);
        if !path.exists() {
            bail!("no database at {}", path.display());
        }
        let writer = connect(&path)?;
        SqliteDb::start(&path, writer)
    }
}

/// Opens the database in `directory` and checks every page of it (`PRAGMA
/// integrity_check`), as the engine's open does (redb's page checksums): what SQLite
/// costs with the same promise that damage is found at open. Returns the milliseconds.
pub fn verified_open_ms(directory: &Path) -> anyhow::Result<f64> {
    let start = std::time::Instant::now();
    let connection = connect(&directory.join(FILE))?;
    let verdict: String = connection.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    if verdict != "ok" {
        bail!("integrity_check answered {verdict}");
    }
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// Opens `path` read-write (creating it) in WAL mode with `synchronous=FULL`.
fn connect(path: &Path) -> anyhow::Result<Connection> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("journal mode is {mode}, not wal");
    }
    connection.execute_batch("PRAGMA synchronous = FULL")?;
    let synchronous: i64 = connection.query_row("PRAGMA synchronous", [], |row| row.get(0))?;
    if synchronous != 2 {
        bail!("synchronous is {synchronous}, not FULL (2)");
    }
    Ok(connection)
}

/// One change a caller queues.
enum Change {
    Add(Box<NewRow>),
    Update {
        id: [u8; 16],
        data: Vec<u8>,
        now: i64,
    },
}

/// The columns of a new row.
struct NewRow {
    id: [u8; 16],
    now: i64,
    expiration: i64,
    content: RecordContent,
}

/// A queued change and who to answer.
struct Job {
    change: Change,
    done: oneshot::Sender<Result<(), String>>,
}

/// An open SQLite database: the writer thread's queue, and the connection reads use.
pub struct SqliteDb {
    queue: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    reader: Connection,
}

impl SqliteDb {
    fn start(path: &Path, writer: Connection) -> anyhow::Result<SqliteDb> {
        let reader = connect(path)?;
        let (queue, jobs) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_groups(writer, &jobs))?;
        Ok(SqliteDb {
            queue: Some(queue),
            writer: Some(writer),
            reader,
        })
    }

    /// Queues `change` and waits until its group is committed.
    async fn submit(&self, change: Change) -> anyhow::Result<()> {
        let (done, answer) = oneshot::channel();
        self.queue
            .as_ref()
            .ok_or(anyhow!("sqlite writer stopped"))?
            .send(Job { change, done })
            .map_err(|_| anyhow!("sqlite writer stopped"))?;
        answer
            .await
            .context("sqlite writer dropped a write")?
            .map_err(|error| anyhow!("sqlite: {error}"))
    }
}

impl Db for SqliteDb {
    type Id = [u8; 16];

    async fn add(&self, index: usize, content: RecordContent) -> anyhow::Result<[u8; 16]> {
        let id = id_bytes(index as u64);
        let row = NewRow {
            id,
            now: now()?,
            expiration: ticks(content.expiration)?,
            content,
        };
        self.submit(Change::Add(Box::new(row))).await?;
        Ok(id)
    }

    async fn update(&self, id: &[u8; 16], data: Vec<u8>) -> anyhow::Result<()> {
        let change = Change::Update {
            id: *id,
            data,
            now: now()?,
        };
        self.submit(change).await
    }

    async fn search(&self, query: &Query) -> anyhow::Result<usize> {
        let mut statement = self.reader.prepare_cached(SEARCH)?;
        let rows = statement.query_map(
            params![
                query.name,
                query.min_level,
                ticks(query.seen_before)?,
                now()?,
                RecordFlags::DELETED.bits(),
            ],
            |row| {
                Ok(Found {
                    id: row.get(0)?,
                    record_type: row.get(1)?,
                    version: row.get(2)?,
                    flags: row.get(3)?,
                    creator: row.get(4)?,
                    modified_by: row.get(5)?,
                    creation_time: row.get(6)?,
                    expiration_time: row.get(7)?,
                    last_modified_time: row.get(8)?,
                    attributes: row.get(9)?,
                    security_data: row.get(10)?,
                    data: row.get(11)?,
                })
            },
        )?;
        let found = rows.collect::<Result<Vec<Found>, _>>()?;
        Ok(std::hint::black_box(found).len())
    }

    async fn get(&self, id: &[u8; 16]) -> anyhow::Result<bool> {
        let version: Option<i64> = self
            .reader
            .prepare_cached(GET)?
            .query_row([&id[..]], |row| row.get(0))
            .optional()?;
        Ok(version.is_some())
    }

    async fn close(mut self) -> anyhow::Result<()> {
        // Closing the queue lets the writer finish and close its connection.
        self.queue.take();
        if let Some(writer) = self.writer.take() {
            writer
                .join()
                .map_err(|_| anyhow!("sqlite writer panicked"))?;
        }
        self.reader
            .close()
            .map_err(|(_, error)| anyhow!("sqlite close: {error}"))
    }
}

/// A found record, read whole as an application reading results would.
#[expect(
    dead_code,
    reason = "the fields are read from SQLite to match what the engine returns; nothing looks at them"
)]
struct Found {
    id: Vec<u8>,
    record_type: Vec<u8>,
    version: i64,
    flags: i64,
    creator: String,
    modified_by: String,
    creation_time: i64,
    expiration_time: i64,
    last_modified_time: i64,
    attributes: String,
    security_data: Vec<u8>,
    data: Vec<u8>,
}

/// Runs until every sender is gone and the queue is drained.
fn write_groups(mut connection: Connection, jobs: &mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let result = commit(&mut connection, &group).map_err(|error| format!("{error:#}"));
        for job in group {
            let _ = job.done.send(result.clone());
        }
    }
}

/// Writes `group` in one transaction and commits it (durably: WAL, `synchronous=FULL`).
fn commit(connection: &mut Connection, group: &[Job]) -> anyhow::Result<()> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for job in group {
        match &job.change {
            Change::Add(row) => {
                let content = &row.content;
                transaction.prepare_cached(INSERT)?.execute(params![
                    &row.id[..],
                    &RECORD_TYPE.to_le_bytes()[..],
                    CREATOR,
                    row.now,
                    row.expiration,
                    content.attributes_xml,
                    content.data,
                    content.name,
                    content.level,
                    ticks(content.seen)?,
                ])?;
            }
            Change::Update { id, data, now } => {
                let changed = transaction.prepare_cached(UPDATE)?.execute(params![
                    &id[..],
                    data,
                    CREATOR,
                    now,
                    RecordFlags::DELETED.bits(),
                ])?;
                if changed != 1 {
                    bail!("no live record to update");
                }
            }
        }
    }
    transaction.commit()?;
    Ok(())
}

/// Graph time now, as SQLite's side stores it.
fn now() -> anyhow::Result<i64> {
    let now = GraphTime::from_system_time(SystemTime::now())
        .map_err(|error| anyhow!("no graph time: {error}"))?;
    ticks(now)
}

/// A graph time as an SQLite integer (ticks; every date up to 30828 fits).
fn ticks(time: GraphTime) -> anyhow::Result<i64> {
    i64::try_from(time.ticks()).context("graph time past i64")
}
