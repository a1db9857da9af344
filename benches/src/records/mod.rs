//! The harness behind the `records` binary: peergraph's graph database against SQLite in
//! the same process, with the same records, the same callers and the same searches.
//!
//! Callers are futures polled together on the binary's thread (a current-thread tokio
//! runtime): each has one write in flight, waits for its answer (given only once the
//! write is durable), then writes the next record, until the count is reached. Each side
//! does its own work on threads of its own (the engine's workers and store writer;
//! SQLite's writer thread).
//!
//! # Layout
//! - `settings`: [`RecordsSettings`], the sizes of a quick or a full run.
//! - `content`: the records and searches both sides get.
//! - `line`: [`RecordsLine`], the JSON line a metric prints.
//! - `engine_side`: peergraph.
//! - `sqlite_side`: SQLite (WAL, `synchronous=FULL`, group commit by a writer thread).

mod content;
mod engine_side;
mod line;
mod settings;
mod sqlite_side;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

pub use self::line::RecordsLine;
pub use self::settings::RecordsSettings;

use self::content::{payload, Content};
use self::engine_side::EngineSide;
use self::sqlite_side::SqliteSide;
use crate::report::{median, percentile, Better};

/// The graph both sides' records belong to.
pub(crate) const GRAPH: &str = "bench";
/// The peer that adds and updates every record.
pub(crate) const CREATOR: &str = "alice";
/// The record type of every record (a GUID).
pub(crate) const RECORD_TYPE: u128 = 0x7265_636f_7264_7362_656e_6368_0000_0001;

/// One side of the comparison: how to make and reopen its database.
pub(crate) trait Side {
    /// Its open database.
    type Db: Db;
    /// `engine` or `sqlite`, for progress lines.
    fn name(&self) -> &'static str;
    /// A new, empty database in `directory`.
    async fn create(&self, directory: &Path) -> anyhow::Result<Self::Db>;
    /// The database [`Side::create`] made in `directory`, closed since.
    async fn reopen(&self, directory: &Path) -> anyhow::Result<Self::Db>;
}

/// An open database of one side; every call may be in flight with others.
pub(crate) trait Db {
    /// A record's id.
    type Id;
    /// Adds record `index` and answers once it is durable.
    async fn add(&self, index: usize, content: content::RecordContent) -> anyhow::Result<Self::Id>;
    /// Replaces the payload of record `id` and answers once that is durable.
    async fn update(&self, id: &Self::Id, data: Vec<u8>) -> anyhow::Result<()>;
    /// Runs `query` and returns how many live records it found (each read whole).
    async fn search(&self, query: &content::Query) -> anyhow::Result<usize>;
    /// Whether record `id` is there (a point read).
    async fn get(&self, id: &Self::Id) -> anyhow::Result<bool>;
    /// Closes the database; every answered write is on disk.
    async fn close(self) -> anyhow::Result<()>;
}

/// What one repetition of one side measured.
struct Session {
    /// Records added per second.
    add: f64,
    /// Records updated per second.
    update: f64,
    /// Milliseconds each timed search took.
    search_ms: Vec<f64>,
    /// How many records each timed search found (both sides must agree).
    found: Vec<usize>,
}

/// Runs every metric and hands each line to `emit` as soon as it is known: the write
/// and search lines after their repetitions, the open line last.
///
/// # Errors
/// When either side fails, passes [`RecordsSettings::phase_timeout`], or the two sides
/// find different records.
pub async fn run_records(
    settings: &RecordsSettings,
    emit: &mut dyn FnMut(RecordsLine),
) -> anyhow::Result<()> {
    let root = tempfile::Builder::new()
        .prefix("peergraph-records-")
        .tempdir_in(&settings.directory)
        .with_context(|| format!("no directory under {}", settings.directory.display()))?;
    eprintln!("[records] databases under {}", root.path().display());
    let content = Content::new()?;
    let engine = EngineSide::start()?;
    let sqlite = SqliteSide;

    let (mut engines, mut sqlites) = (Vec::new(), Vec::new());
    for run in 0..settings.runs {
        for engine_turn in [run % 2 == 0, run % 2 == 1] {
            let directory = root.path().join(format!("run-{run}-{engine_turn}"));
            if engine_turn {
                engines.push(session(&engine, &directory, settings, &content).await?);
            } else {
                sqlites.push(session(&sqlite, &directory, settings, &content).await?);
            }
            std::fs::remove_dir_all(&directory)?;
        }
        eprintln!("[records] run {}/{} done", run + 1, settings.runs);
    }
    let found: Vec<&Vec<usize>> = engines.iter().chain(&sqlites).map(|s| &s.found).collect();
    if found.windows(2).any(|pair| pair[0] != pair[1]) {
        bail!("the sides found different records: {found:?}");
    }
    let runs = settings.runs;
    let throughput = |metric: &str, of: fn(&Session) -> f64| {
        let engine: Vec<f64> = engines.iter().map(of).collect();
        let sqlite: Vec<f64> = sqlites.iter().map(of).collect();
        eprintln!("[{metric}] engine {engine:.1?} sqlite {sqlite:.1?} (records/s)");
        RecordsLine {
            metric: metric.to_owned(),
            unit: "records/s",
            engine: median(&engine),
            sqlite: median(&sqlite),
            better: Better::Higher,
            runs,
        }
    };
    emit(throughput("add_record_durable", |s| s.add));
    emit(throughput("update_record_durable", |s| s.update));
    let engine_ms: Vec<f64> = engines.iter().flat_map(|s| s.search_ms.clone()).collect();
    let sqlite_ms: Vec<f64> = sqlites.iter().flat_map(|s| s.search_ms.clone()).collect();
    let per_query = found.first().map_or(0.0, |found| {
        found.iter().sum::<usize>() as f64 / found.len().max(1) as f64
    });
    eprintln!(
        "[search_records] {} records, {per_query:.1} found per search on average",
        settings.search_records
    );
    for p in [50.0, 99.0] {
        emit(RecordsLine {
            metric: format!("search_records_p{p}"),
            unit: "ms",
            engine: percentile(&engine_ms, p),
            sqlite: percentile(&sqlite_ms, p),
            better: Better::Lower,
            runs,
        });
    }

    for line in open_times(&engine, &sqlite, root.path(), settings, &content).await? {
        emit(line);
    }
    engine.stop().await
}

/// One repetition on `side`, in a new database in `directory`: adds
/// [`RecordsSettings::write_records`] (timed), updates each once (timed), adds more up to
/// [`RecordsSettings::search_records`] (untimed), then times the searches.
async fn session<S: Side>(
    side: &S,
    directory: &Path,
    settings: &RecordsSettings,
    content: &Content,
) -> anyhow::Result<Session> {
    let timeout = settings.phase_timeout;
    let name = side.name();
    let db = side.create(directory).await?;
    let count = settings.write_records;
    let (ids, took) = phase(timeout, name, "add", async {
        concurrently(settings.callers, count, |i| db.add(i, content.record(i))).await
    })
    .await?;
    let add = count as f64 / took.as_secs_f64();
    let ((), took) = phase(timeout, name, "update", async {
        let (_, took) = concurrently(settings.callers, count, |i| {
            db.update(&ids[i], payload(i, 2))
        })
        .await?;
        Ok(((), took))
    })
    .await?;
    let update = count as f64 / took.as_secs_f64();
    let more = settings.search_records.saturating_sub(count);
    phase(timeout, name, "fill", async {
        concurrently(settings.callers, more, |i| {
            db.add(count + i, content.record(count + i))
        })
        .await
    })
    .await?;
    let (search_ms, found) = phase(timeout, name, "search", async {
        for q in 0..settings.search_warmup {
            db.search(&content.query(q)).await?;
        }
        let (mut times, mut found) = (Vec::new(), Vec::new());
        for q in 0..settings.searches {
            let query = content.query(q);
            let start = Instant::now();
            found.push(db.search(&query).await?);
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        Ok((times, found))
    })
    .await?;
    db.close().await?;
    eprintln!(
        "[records] {name}: add {add:.0}/s, update {update:.0}/s, search p50 {:.2} ms",
        percentile(&search_ms, 50.0)
    );
    Ok(Session {
        add,
        update,
        search_ms,
        found,
    })
}

/// The `open_*` line: each side's database filled with
/// [`RecordsSettings::open_records`] records and closed, then reopened
/// [`RecordsSettings::open_runs`] times, alternating which side goes first. A reopen is
/// timed from the call that opens the database to the answer of its first read (one
/// record by id).
async fn open_times(
    engine: &EngineSide,
    sqlite: &SqliteSide,
    root: &Path,
    settings: &RecordsSettings,
    content: &Content,
) -> anyhow::Result<Vec<RecordsLine>> {
    let count = settings.open_records;
    let engine_dir = root.join("open-engine");
    let sqlite_dir = root.join("open-sqlite");
    let (engine_id, engine_found) = fill(engine, &engine_dir, settings, content).await?;
    let (sqlite_id, sqlite_found) = fill(sqlite, &sqlite_dir, settings, content).await?;
    if engine_found != sqlite_found {
        bail!("search 0 over {count} records: engine found {engine_found}, sqlite {sqlite_found}");
    }
    let (mut engine_ms, mut sqlite_ms, mut checked_ms) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..settings.open_runs {
        for engine_turn in [run % 2 == 0, run % 2 == 1] {
            if engine_turn {
                engine_ms.push(reopen(engine, &engine_dir, settings, &engine_id).await?);
            } else {
                sqlite_ms.push(reopen(sqlite, &sqlite_dir, settings, &sqlite_id).await?);
                checked_ms.push(sqlite_side::verified_open_ms(&sqlite_dir)?);
            }
        }
    }
    let metric = format!("open_{}", count_name(count));
    eprintln!(
        "[{metric}] engine {engine_ms:.1?} sqlite {sqlite_ms:.1?} sqlite+integrity_check {checked_ms:.1?} (ms)"
    );
    let line = |metric: String, sqlite: &[f64]| RecordsLine {
        metric,
        unit: "ms",
        engine: median(&engine_ms),
        sqlite: median(sqlite),
        better: Better::Lower,
        runs: settings.open_runs,
    };
    // The engine checks every page at open (a damaged file answers
    // PEER_E_INVALID_DATABASE there); SQLite opens without looking. The second line gives
    // SQLite the same promise with PRAGMA integrity_check.
    Ok(vec![
        line(metric.clone(), &sqlite_ms),
        line(format!("{metric}_checked"), &checked_ms),
    ])
}

/// Makes a database of [`RecordsSettings::open_records`] records in `directory` and
/// closes it; returns the id of the record a reopen reads, and how many records search 0
/// finds (both sides must agree).
async fn fill<S: Side>(
    side: &S,
    directory: &Path,
    settings: &RecordsSettings,
    content: &Content,
) -> anyhow::Result<(<S::Db as Db>::Id, usize)> {
    let name = side.name();
    let count = settings.open_records;
    let db = side.create(directory).await?;
    let (mut ids, took) = phase(settings.phase_timeout, name, "fill for open", async {
        concurrently(settings.callers, count, |i| db.add(i, content.record(i))).await
    })
    .await?;
    let found = db.search(&content.query(0)).await?;
    db.close().await?;
    eprintln!(
        "[records] {name}: {count} records added at {:.0}/s for open; search 0 finds {found}",
        count as f64 / took.as_secs_f64()
    );
    let id = ids.pop().ok_or(anyhow!("no record to read after open"))?;
    Ok((id, found))
}

/// Reopens the database in `directory`, reads record `id`, and closes it again; returns
/// the milliseconds from the open call to the read's answer.
async fn reopen<S: Side>(
    side: &S,
    directory: &Path,
    settings: &RecordsSettings,
    id: &<S::Db as Db>::Id,
) -> anyhow::Result<f64> {
    let (db, took) = phase(settings.phase_timeout, side.name(), "reopen", async {
        let start = Instant::now();
        let db = side.reopen(directory).await?;
        if !db.get(id).await? {
            bail!("record missing after reopen");
        }
        Ok((db, start.elapsed()))
    })
    .await?;
    db.close().await?;
    Ok(took.as_secs_f64() * 1e3)
}

/// Runs `work` within `timeout`, naming the side and phase in its error.
async fn phase<T>(
    timeout: Duration,
    side: &str,
    phase: &str,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| anyhow!("{side} {phase}: not done within {timeout:?}"))?
        .with_context(|| format!("{side} {phase}"))
}

/// Calls `call(i)` for every `i` below `count`, from `callers` callers each with one call
/// in flight; returns the results in index order and how long it all took.
async fn concurrently<T, F, Fut>(
    callers: usize,
    count: usize,
    call: F,
) -> anyhow::Result<(Vec<T>, Duration)>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let next = Cell::new(0);
    let results: RefCell<Vec<Option<T>>> = RefCell::new((0..count).map(|_| None).collect());
    let caller = async || -> anyhow::Result<()> {
        // Each turn takes an index; every index is taken once, so `count` turns suffice.
        for _ in 0..count {
            let i = next.get();
            if i >= count {
                break;
            }
            next.set(i + 1);
            let value = call(i).await?;
            results.borrow_mut()[i] = Some(value);
        }
        Ok(())
    };
    let start = Instant::now();
    futures_util::future::try_join_all((0..callers.clamp(1, count.max(1))).map(|_| caller()))
        .await?;
    let took = start.elapsed();
    let results = results
        .into_inner()
        .into_iter()
        .collect::<Option<Vec<T>>>()
        .ok_or(anyhow!("a call left no result"))?;
    Ok((results, took))
}

/// `100k`, `10k`, or the plain number when it is not whole thousands.
fn count_name(count: usize) -> String {
    if count % 1000 == 0 {
        format!("{}k", count / 1000)
    } else {
        count.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(directory: &Path) -> RecordsSettings {
        RecordsSettings {
            directory: directory.to_owned(),
            callers: 8,
            runs: 1,
            write_records: 40,
            search_records: 300,
            searches: 5,
            search_warmup: 1,
            open_records: 50,
            open_runs: 1,
            ..RecordsSettings::quick()
        }
    }

    #[tokio::test]
    async fn callers_share_the_work_and_results_keep_their_index() {
        let in_flight = Cell::new(0);
        let most = Cell::new(0);
        let (results, _) = concurrently(3, 10, |i| {
            let (in_flight, most) = (&in_flight, &most);
            async move {
                in_flight.set(in_flight.get() + 1);
                most.set(most.get().max(in_flight.get()));
                tokio::task::yield_now().await;
                in_flight.set(in_flight.get() - 1);
                Ok(i * 2)
            }
        })
        .await
        .expect("calls");
        assert_eq!(results, (0..10).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(most.get(), 3);
        let (none, _) = concurrently(3, 0, |i| async move { Ok(i) })
            .await
            .expect("no calls");
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn both_sides_store_reopen_and_find_the_same_records() {
        let root = tempfile::tempdir().expect("temporary directory");
        let settings = tiny(root.path());
        let content = Content::new().expect("content");
        let engine = EngineSide::start().expect("engine");
        let engine_run = session(&engine, &root.path().join("e"), &settings, &content)
            .await
            .expect("engine session");
        let sqlite_run = session(&SqliteSide, &root.path().join("s"), &settings, &content)
            .await
            .expect("sqlite session");
        assert_eq!(engine_run.found, sqlite_run.found);
        assert!(engine_run.found.iter().any(|&found| found > 0));
        let lines = open_times(&engine, &SqliteSide, root.path(), &settings, &content)
            .await
            .expect("open");
        let metrics: Vec<&str> = lines.iter().map(|line| line.metric.as_str()).collect();
        assert_eq!(metrics, ["open_50", "open_50_checked"]);
        engine.stop().await.expect("shutdown");
    }
}
