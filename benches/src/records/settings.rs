//! The sizes of a `records` run: quick (`--quick`, for CI) or full (what
//! `benches/RESULTS.md` reports).

use std::path::PathBuf;
use std::time::Duration;

/// The sizes of one run. Every loop of the harness is bounded by a count from here, and
/// every phase of one side by [`RecordsSettings::phase_timeout`].
#[derive(Clone, Debug)]
pub struct RecordsSettings {
    /// True for `--quick`.
    pub quick: bool,
    /// Where the databases are made (a fresh directory under it, removed at the end).
    /// It should be on the disk being measured: on a tmpfs an fsync costs nothing.
    pub directory: PathBuf,
    /// Callers with a write in flight at once (each waits for its answer, then writes
    /// the next record).
    pub callers: usize,
    /// Repetitions of each side of the write and search metrics, alternating which side
    /// goes first; each repetition starts from an empty database.
    pub runs: usize,
    /// Records added (timed) and then updated (timed) in each repetition.
    pub write_records: usize,
    /// Records the database holds while the searches are timed (the added ones and
    /// more, added untimed).
    pub search_records: usize,
    /// Searches timed per repetition, after [`RecordsSettings::search_warmup`] untimed.
    pub searches: usize,
    /// Searches run untimed before the timed ones in each repetition.
    pub search_warmup: usize,
    /// Records the database holds when `open_*` reopens it.
    pub open_records: usize,
    /// Reopens timed per side, alternating which side goes first.
    pub open_runs: usize,
    /// The longest one phase of one side (adding, updating, searching, filling, one
    /// reopen) may take before the run fails.
    pub phase_timeout: Duration,
}

impl RecordsSettings {
    /// The sizes of `records --quick`: well under 30 s on a 2-core machine. The open
    /// metric reopens 10,000 records instead of 100,000 (its line is `open_10k`).
    pub fn quick() -> RecordsSettings {
        RecordsSettings {
            quick: true,
            directory: std::env::temp_dir(),
            callers: 64,
            runs: 1,
            write_records: 2_000,
            search_records: 10_000,
            searches: 100,
            search_warmup: 10,
            open_records: 10_000,
            open_runs: 3,
            phase_timeout: Duration::from_secs(60),
        }
    }

    /// The sizes `benches/RESULTS.md` reports.
    pub fn full() -> RecordsSettings {
        RecordsSettings {
            quick: false,
            directory: std::env::temp_dir(),
            callers: 64,
            runs: 5,
            write_records: 10_000,
            search_records: 10_000,
            searches: 200,
            search_warmup: 10,
            open_records: 100_000,
            open_runs: 7,
            phase_timeout: Duration::from_secs(300),
        }
    }
}
