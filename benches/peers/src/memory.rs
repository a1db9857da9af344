//! `idle_memory`: resident memory per open connection, measured as `compare` measures it
//! (benches/src/memory.rs). Each measurement runs in a child process (this binary, re-run
//! with `--child-idle-memory`), so that memory the allocator kept from earlier runs cannot
//! hide the cost of the next. The child makes both nodes of one system, makes and closes one
//! warm-up link (so that what all links share is in the baseline), waits [`SETTLE`], reads
//! `VmRSS`, opens the links with their stream open at both ends and a task at each end
//! waiting to read from it, waits [`SETTLE`] again and reads `VmRSS` again. Both ends are in
//! the one process, so both are counted. The allocator is the system allocator (glibc).
//!
//! This file holds the reading each system's side takes ([`per_link`]); the harness starts
//! the child and reads its answer (`harness::measure_in_child`).

use std::fs;
use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;

/// How long the links sit idle before memory is read: long enough for the handshakes'
/// buffers to be released and a round of acknowledgements to pass, shorter than any
/// system's keep-alive interval.
const SETTLE: Duration = Duration::from_secs(1);

/// This process's resident set size in KiB (`VmRSS` in `/proc/self/status`).
///
/// # Errors
/// When the file cannot be read or has no `VmRSS` line (not Linux).
pub fn resident_kib() -> anyhow::Result<u64> {
    let status = fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/self/status")
}

/// Waits [`SETTLE`], reads the resident set, runs `open` (which opens `connections` links
/// and returns once both ends hold them all), waits again and returns the growth per link
/// in KiB.
///
/// # Errors
/// When `open` fails or memory cannot be read.
pub async fn per_link(
    connections: usize,
    open: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<f64> {
    tokio::time::sleep(SETTLE).await;
    let before = resident_kib()?;
    open.await?;
    tokio::time::sleep(SETTLE).await;
    let after = resident_kib()?;
    Ok(after.saturating_sub(before) as f64 / connections as f64)
}
