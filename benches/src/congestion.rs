//! The harness of the `congestion` binary: bulk throughput between two peergraph nodes
//! with CUBIC and with BBR, on clean loopback and through a seeded lossy [`Relay`], runs
//! of the two controllers interleaved (and which goes first alternating), so that a
//! machine busy with other work slows both alike. One [`CongestionLine`] per condition:
//! the median of each controller's runs, their spread, and the ratio BBR / CUBIC.

use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use peergraph::Congestion;

use crate::engine_side::{bench_options, EnginePair};
use crate::relay::{Impairment, Relay};
use crate::report::median;

const MIB: f64 = 1024.0 * 1024.0;

/// A network the two nodes talk through.
#[derive(Clone, Copy, Debug)]
pub struct Condition {
    /// Its name in the JSON line, such as `lossy_1pct`.
    pub name: &'static str,
    /// The relay's treatment; `None` for a direct link on loopback.
    pub relay: Option<Impairment>,
    /// Bytes one run sends: less through the relay, where CUBIC is slow.
    pub bytes: usize,
}

/// The sizes of a run of the benchmark.
#[derive(Clone, Debug)]
pub struct CongestionSettings {
    /// The conditions, in order.
    pub conditions: Vec<Condition>,
    /// Runs of each controller per condition.
    pub runs: usize,
    /// Payload bytes of one SendData.
    pub chunk: usize,
    /// The longest one run may take.
    pub run_timeout: Duration,
}

/// The one-way delay of every relayed condition: 10 ms, a 20 ms round trip, as between
/// two cities; loss on a link with no delay costs almost nothing to recover.
const RELAY_DELAY: Duration = Duration::from_millis(10);

fn relayed(name: &'static str, loss: f64, bytes: usize) -> Condition {
    Condition {
        name,
        relay: Some(Impairment {
            loss,
            delay: RELAY_DELAY,
        }),
        bytes,
    }
}

impl CongestionSettings {
    /// About a minute on an idle two-core machine: 3 runs of each controller.
    pub fn quick() -> Self {
        CongestionSettings {
            conditions: vec![
                Condition {
                    name: "loopback",
                    relay: None,
                    bytes: 32 << 20,
                },
                relayed("relay_0pct", 0.0, 4 << 20),
                relayed("lossy_1pct", 0.01, 2 << 20),
                relayed("lossy_5pct", 0.05, 1 << 20),
            ],
            runs: 3,
            chunk: 64 * 1024,
            run_timeout: Duration::from_secs(60),
        }
    }

    /// Four times the data and 5 runs of each controller: several minutes.
    pub fn full() -> Self {
        let mut settings = CongestionSettings::quick();
        for condition in &mut settings.conditions {
            condition.bytes *= 4;
        }
        settings.runs = 5;
        settings.run_timeout = Duration::from_secs(180);
        settings
    }
}

/// One condition's result, printed as one JSON object.
#[derive(Clone, Debug, PartialEq)]
pub struct CongestionLine {
    /// The condition's name.
    pub condition: &'static str,
    /// The relay's loss probability (0 on loopback).
    pub loss: f64,
    /// The relay's one-way delay in milliseconds (0 on loopback).
    pub delay_ms: u64,
    /// MiB each run sent.
    pub mib: f64,
    /// CUBIC's runs, in MiB/s, in the order run.
    pub cubic: Vec<f64>,
    /// BBR's runs, in MiB/s, in the order run.
    pub bbr: Vec<f64>,
}

impl CongestionLine {
    /// The ratio of the medians, BBR / CUBIC: above 1 when BBR is faster.
    pub fn ratio(&self) -> f64 {
        median(&self.bbr) / median(&self.cubic)
    }
}

impl fmt::Display for CongestionLine {
    /// `{"metric":"congestion","condition":"lossy_1pct",...}`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let spread = |runs: &[f64]| {
            let min = runs.iter().copied().fold(f64::INFINITY, f64::min);
            let max = runs.iter().copied().fold(0.0, f64::max);
            format!("[{min:.2},{max:.2}]")
        };
        write!(
            f,
            r#"{{"metric":"congestion","condition":"{}","loss":{},"delay_ms":{},"mib":{:.0},"unit":"MiB/s","cubic":{:.2},"bbr":{:.2},"ratio_bbr_cubic":{:.2},"cubic_range":{},"bbr_range":{},"runs":{}}}"#,
            self.condition,
            self.loss,
            self.delay_ms,
            self.mib,
            median(&self.cubic),
            median(&self.bbr),
            self.ratio(),
            spread(&self.cubic),
            spread(&self.bbr),
            self.cubic.len(),
        )
    }
}

/// Runs every condition of `settings` and hands each line to `emit` when it is known.
///
/// # Errors
/// When a run fails or passes its deadline.
pub async fn run_congestion(
    settings: &CongestionSettings,
    emit: &mut dyn FnMut(CongestionLine),
) -> anyhow::Result<()> {
    for (index, condition) in settings.conditions.iter().enumerate() {
        let mut line = CongestionLine {
            condition: condition.name,
            loss: condition.relay.map_or(0.0, |relay| relay.loss),
            delay_ms: condition
                .relay
                .map_or(0, |relay| relay.delay.as_millis() as u64),
            mib: condition.bytes as f64 / MIB,
            cubic: Vec::with_capacity(settings.runs),
            bbr: Vec::with_capacity(settings.runs),
        };
        for run in 0..settings.runs {
            // The same seed for both controllers of a run: the same dice.
            let seed = 0x5EED_0000 + (index * 100 + run) as u64;
            let order = if run % 2 == 0 {
                [Congestion::Cubic, Congestion::Bbr]
            } else {
                [Congestion::Bbr, Congestion::Cubic]
            };
            for congestion in order {
                let rate = throughput(settings, condition, congestion, seed)
                    .await
                    .with_context(|| format!("{} {congestion:?} run {run}", condition.name))?;
                eprintln!(
                    "congestion: {} {congestion:?} run {run}: {rate:.2} MiB/s",
                    condition.name
                );
                match congestion {
                    Congestion::Bbr => line.bbr.push(rate),
                    _ => line.cubic.push(rate),
                }
            }
        }
        emit(line);
    }
    Ok(())
}

/// One run: a fresh pair with `congestion`, through a relay seeded with `seed` when the
/// condition has one, sending the condition's bytes; MiB/s from the first SendData to
/// the last byte read.
async fn throughput(
    settings: &CongestionSettings,
    condition: &Condition,
    congestion: Congestion,
    seed: u64,
) -> anyhow::Result<f64> {
    let count = condition.bytes / settings.chunk;
    let mib = (count * settings.chunk) as f64 / MIB;
    let mut pair = EnginePair::start_with(bench_options().with_congestion(congestion)).await?;
    // Kept until the pair has stopped, so that the links close through it.
    let mut relay = None;
    let outcome = async {
        if let Some(impairment) = condition.relay {
            let started = Relay::start(pair.bob_address(), impairment, seed).await?;
            pair.dial_through(started.address());
            relay = Some(started);
        }
        let took = tokio::time::timeout(settings.run_timeout, pair.transfer(count, settings.chunk))
            .await
            .context("the run timed out")??;
        anyhow::Ok(mib / took.as_secs_f64())
    }
    .await;
    pair.stop().await;
    drop(relay);
    outcome
}
