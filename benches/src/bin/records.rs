//! `records`: peergraph's graph database against SQLite, metric by metric, as JSON lines.
//!
//! ```text
//! cargo run --release -p peergraph-benches --bin records -- [--quick] [--dir DIR]
//! ```
//!
//! Prints one JSON object per line and metric on stdout, and nothing else there; progress
//! goes to stderr. Exits 1 if the run failed (lines printed until then stay), 2 on a usage
//! error.
//!
//! Each line has `compare`'s fields with `sqlite` in place of `raw_quinn` and no
//! `baseline` (there is only one):
//! `{"metric":..,"unit":..,"engine":..,"sqlite":..,"ratio":..,"better":..,"runs":..}`.
//! `ratio` is oriented so that **1.0 or more means peergraph did at least as well**:
//! engine / sqlite where `better` is `higher` (throughputs), sqlite / engine where it is
//! `lower` (latencies, open time). (`compare`'s ratio is always engine / raw.)
//!
//! Metrics (both sides in this process, the same records: a 1 KiB payload and three
//! attributes, a string, an int and a date):
//! - `add_record_durable` (records/s): records added by 64 callers, each with one add in
//!   flight, answered only once durable. SQLite: WAL, `synchronous=FULL`, a writer thread
//!   that commits whatever is queued (up to 256) in one transaction, then answers.
//! - `update_record_durable` (records/s): the same records' payloads replaced, the same
//!   way.
//! - `search_records_p50`, `search_records_p99` (ms): a search of three clauses under an
//!   `<and>` (string equal, int greater-or-equal, date less) over 10,000 records, about
//!   25 found and each returned whole; one search at a time. SQLite: the same condition
//!   on one indexed column per attribute.
//! - `open_100k` (ms): reopening a closed database of 100,000 records, to the answer of a
//!   first read. With `--quick` it is `open_10k`, over 10,000 records.
//!
//! `--dir` sets where the databases are made (default: the system's temporary
//! directory); it should be on the disk under test, since a tmpfs makes every fsync free.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use peergraph_benches::{run_records, RecordsLine, RecordsSettings};

const USAGE: &str = "usage: records [--quick] [--dir DIR]
metrics: add_record_durable update_record_durable search_records_p50 search_records_p99 open_100k
--quick is small enough for CI (open_100k becomes open_10k)";

fn parse(args: &[String]) -> Result<RecordsSettings, String> {
    let mut quick = false;
    let mut directory = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--dir" => {
                let dir = args.next().ok_or("--dir needs a directory")?;
                directory = Some(PathBuf::from(dir));
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let mut settings = if quick {
        RecordsSettings::quick()
    } else {
        RecordsSettings::full()
    };
    if let Some(directory) = directory {
        settings.directory = directory;
    }
    Ok(settings)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let settings = match parse(&args) {
        Ok(settings) => settings,
        Err(error) => {
            if !error.is_empty() {
                eprintln!("records: {error}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("records: no runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let mut emit = |line: RecordsLine| {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", line.to_json());
        let _ = stdout.flush();
    };
    let result = runtime.block_on(run_records(&settings, &mut emit));
    eprintln!("records: done in {:.1} s", started.elapsed().as_secs_f64());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("records: failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}
