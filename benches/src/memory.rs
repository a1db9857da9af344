//! `idle_memory`: resident memory per open connection. Each measurement runs in a child
//! process (this binary, re-run with `--child-idle-memory`), so that memory the allocator
//! kept from earlier runs cannot hide the cost of the next.

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::engine_side::{self, OPEN_WINDOW};
use crate::raw_side;

/// How long the links sit idle before memory is read: long enough for the handshakes'
/// buffers to be released and a round of acknowledgements to pass, shorter than the
/// keep-alive interval.
const SETTLE: Duration = Duration::from_secs(1);

/// Which side a child measures.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    /// peergraph engines.
    Engine,
    /// Raw quinn endpoints.
    Raw,
}

impl Side {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Side::Engine => "engine",
            Side::Raw => "raw",
        }
    }

    /// The side named `name`.
    pub fn parse(name: &str) -> Option<Side> {
        [Side::Engine, Side::Raw]
            .into_iter()
            .find(|side| side.name() == name)
    }
}

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

/// The child's work: two nodes of `side`, one warm-up link made and closed, then
/// `connections` links opened and left idle. Returns the growth of resident memory per
/// link in KiB (both ends are in this process, so both are counted).
///
/// # Errors
/// When a link cannot be made within `timeout`.
pub async fn child_idle_memory(
    side: Side,
    connections: usize,
    timeout: Duration,
) -> anyhow::Result<f64> {
    let per_link =
        |before: u64, after: u64| after.saturating_sub(before) as f64 / connections as f64;
    match side {
        Side::Engine => {
            engine_side::with_pair(timeout, async |pair| {
                // One link made and closed first, so that what every link shares (the
                // client side of the endpoint, TLS session state) is in the baseline.
                pair.close_latencies(1).await?;
                tokio::time::sleep(SETTLE).await;
                let before = resident_kib()?;
                pair.open_many(connections).await?;
                tokio::time::sleep(SETTLE).await;
                Ok(per_link(before, resident_kib()?))
            })
            .await
        }
        Side::Raw => {
            raw_side::with_pair(timeout, async |pair| {
                pair.close_latencies(1).await?;
                tokio::time::sleep(SETTLE).await;
                let before = resident_kib()?;
                pair.open_many(connections, OPEN_WINDOW).await?;
                tokio::time::sleep(SETTLE).await;
                Ok(per_link(before, resident_kib()?))
            })
            .await
        }
    }
}

/// Runs one `idle_memory` measurement in a child process and returns its KiB per link.
/// The child is killed if it is not done within `timeout`.
///
/// # Errors
/// When the child cannot be started, fails, times out or prints no number.
pub(crate) fn measure_in_child(
    side: Side,
    connections: usize,
    timeout: Duration,
) -> anyhow::Result<f64> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args([
            "--child-idle-memory",
            side.name(),
            &connections.to_string(),
            &timeout.as_secs().to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    // The child gets its own deadline; this one is the backstop for a child that hangs.
    let deadline = Instant::now() + timeout + Duration::from_secs(10);
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "idle_memory child ({}, {connections}) timed out",
                side.name()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "idle_memory child ({}, {connections}) failed: {}",
            side.name(),
            output.status
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("idle_memory child printed {text:?}"))
}
