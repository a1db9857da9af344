//! `idle_memory`: resident memory per open connection, measured as `compare` measures it
//! (benches/src/memory.rs). Each measurement runs in a child process (this binary, re-run
//! with `--child-idle-memory`), so that memory the allocator kept from earlier runs cannot
//! hide the cost of the next. The child makes both nodes of one system, makes and closes one
//! warm-up link (so that what all links share is in the baseline), waits [`SETTLE`], reads
//! `VmRSS`, opens the links with their stream open at both ends and a task at each end
//! waiting to read from it, waits [`SETTLE`] again and reads `VmRSS` again. Both ends are in
//! the one process, so both are counted. The allocator is the system allocator (glibc).

use std::fs;
use std::future::Future;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::settings::System;

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

/// The child's work for `system`: KiB per link.
///
/// # Errors
/// When a link cannot be made within `timeout`.
pub async fn child_idle_memory(
    system: System,
    connections: usize,
    timeout: Duration,
) -> anyhow::Result<f64> {
    match system {
        System::Peergraph => crate::peergraph_side::idle_memory(connections, timeout).await,
        System::RawQuinn => crate::quinn_side::idle_memory(connections, timeout).await,
        System::Iroh => crate::iroh_side::idle_memory(connections, timeout).await,
        System::Libp2p => crate::libp2p_side::idle_memory(connections, timeout).await,
    }
}

/// Runs one `idle_memory` measurement in a child process and returns its KiB per link. The
/// child is killed if it is not done within `timeout` and a little more.
///
/// # Errors
/// When the child cannot be started, fails, times out or prints no number.
pub fn measure_in_child(
    system: System,
    connections: usize,
    timeout: Duration,
) -> anyhow::Result<f64> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args([
            "--child-idle-memory",
            system.name(),
            &connections.to_string(),
            &timeout.as_secs().to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let deadline = Instant::now() + timeout + Duration::from_secs(10);
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("idle_memory child ({system}, {connections}) timed out");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "idle_memory child ({system}, {connections}) failed: {}",
            output.status
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("idle_memory child printed {text:?}"))
}
