//! Runs one metric on every system, rotating which system goes first from one repetition to
//! the next, and turns the results into [`Line`]s: the median of the repetitions for
//! throughputs and memory, percentiles over the samples of all repetitions for latencies.
//! Progress goes to stderr; stdout is left to the JSON lines.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::job::{Job, Outcome};
use crate::report::{median, percentile, Better, Line};
use crate::settings::{Metric, Settings, System};

const MIB: f64 = 1024.0 * 1024.0;

async fn run_job(system: System, job: Job, timeout: Duration) -> anyhow::Result<Outcome> {
    match system {
        System::Peergraph => crate::peergraph_side::run(job, timeout).await,
        System::RawQuinn => crate::quinn_side::run(job, timeout).await,
        System::Iroh => crate::iroh_side::run(job, timeout).await,
        System::Libp2p => crate::libp2p_side::run(job, timeout).await,
    }
}

/// Runs `metric` with `settings` and hands each of its lines to `emit` as soon as it is
/// known. A system that fails every repetition prints null; its errors go to stderr.
pub async fn run_metric(metric: Metric, settings: &Settings, emit: &mut dyn FnMut(Line)) {
    let s = settings;
    let timeout = s.run_timeout;
    match metric {
        Metric::BulkThroughput => {
            let count = s.bulk_bytes / s.bulk_chunk;
            let mib = (count * s.bulk_chunk) as f64 / MIB;
            let job = Job::Bulk {
                count,
                len: s.bulk_chunk,
            };
            let values = repeat(metric, s, s.runs, true, async |system| {
                let took = run_job(system, job, timeout).await?.took()?;
                Ok(mib / took.as_secs_f64())
            })
            .await;
            emit(medians(metric, "MiB/s", Better::Higher, &values));
        }
        Metric::SmallMessages => {
            let job = Job::Small {
                count: s.small_count,
                len: s.small_len,
            };
            let values = repeat(metric, s, s.runs, true, async |system| {
                let took = run_job(system, job, timeout).await?.took()?;
                Ok(s.small_count as f64 / took.as_secs_f64())
            })
            .await;
            emit(medians(metric, "msg/s", Better::Higher, &values));
        }
        Metric::OpenCloseCycles => {
            let job = Job::Cycles(s.cycles);
            let values = repeat(metric, s, s.runs, false, async |system| {
                let took = run_job(system, job, timeout).await?.took()?;
                Ok(s.cycles as f64 / took.as_secs_f64())
            })
            .await;
            emit(medians(metric, "cycles/s", Better::Higher, &values));
        }
        Metric::EchoRtt => {
            let job = Job::Echo {
                warmup: (s.echo_samples / 20).max(10),
                samples: s.echo_samples,
                len: s.small_len,
            };
            let values = repeat(metric, s, s.runs, false, async |system| {
                run_job(system, job, timeout).await?.micros()
            })
            .await;
            latencies(metric, &values).into_iter().for_each(emit);
        }
        Metric::CloseLatency => {
            let job = Job::Closes(s.close_samples);
            let values = repeat(metric, s, s.runs, false, async |system| {
                run_job(system, job, timeout).await?.micros()
            })
            .await;
            latencies(metric, &values).into_iter().for_each(emit);
        }
        Metric::IdleMemory => {
            let connections = s.memory_connections;
            let values = repeat(metric, s, s.memory_runs, false, async |system| {
                measure_in_child(system, connections, s.child_timeout).or_else(|error| {
                    eprintln!("[{metric}] {system} {connections}: {error:#}; trying again");
                    measure_in_child(system, connections, s.child_timeout)
                })
            })
            .await;
            let mut line = medians(metric, "KiB/conn", Better::Lower, &values);
            line.metric = if connections.is_multiple_of(1000) {
                format!("{metric}_{}k", connections / 1000)
            } else {
                format!("{metric}_{connections}")
            };
            emit(line);
        }
    }
}

/// Each system's values, in [`System::ALL`] order; `None` for a system not run or failed.
type PerSystem<T> = [Option<Vec<T>>; 4];

/// `runs` repetitions of each of `settings.systems` (after one unrecorded repetition each
/// when `warmup`), the order rotated by one system every repetition so that none always
/// runs first or on a warmer process. A repetition that fails is logged and left out; a
/// system that fails twice in a row is given up for this metric.
async fn repeat<T: std::fmt::Debug>(
    metric: Metric,
    settings: &Settings,
    runs: usize,
    warmup: bool,
    mut measure: impl AsyncFnMut(System) -> anyhow::Result<T>,
) -> PerSystem<T> {
    let systems = &settings.systems;
    let mut values: PerSystem<T> = Default::default();
    let mut failures = [0usize; 4];
    for system in systems {
        values[system.index()] = Some(Vec::with_capacity(runs));
    }
    let rounds = usize::from(warmup) + runs;
    for round in 0..rounds {
        let recorded = !warmup || round > 0;
        for offset in 0..systems.len() {
            let system = systems[(round + offset) % systems.len()];
            if values[system.index()].is_none() {
                continue;
            }
            match measure(system).await {
                Ok(value) => {
                    failures[system.index()] = 0;
                    if recorded {
                        if let Some(list) = values[system.index()].as_mut() {
                            list.push(value);
                        }
                    }
                }
                Err(error) => {
                    eprintln!("[{metric}] {system} failed: {error:#}");
                    failures[system.index()] += 1;
                    if failures[system.index()] >= 2 {
                        eprintln!("[{metric}] {system}: given up after two failures in a row");
                        values[system.index()] = None;
                    }
                }
            }
        }
        if recorded {
            let run = round + 1 - usize::from(warmup);
            eprintln!("[{metric}] run {run}/{runs} done");
        }
    }
    for value in &mut values {
        if value.as_ref().is_some_and(Vec::is_empty) {
            *value = None;
        }
    }
    values
}

fn runs_of<T>(values: &PerSystem<T>) -> usize {
    values.iter().flatten().map(Vec::len).max().unwrap_or(0)
}

fn medians(metric: Metric, unit: &'static str, better: Better, values: &PerSystem<f64>) -> Line {
    for system in System::ALL {
        if let Some(list) = &values[system.index()] {
            eprintln!("[{metric}] {system} {list:.1?} ({unit})");
        }
    }
    Line {
        metric: metric.name().to_owned(),
        unit,
        values: values.each_ref().map(|v| v.as_deref().map(median)),
        better,
        runs: runs_of(values),
    }
}

/// p50 and p99 lines over the samples of all repetitions together (as `compare` does: a
/// repetition's own p99 rests on its few slowest samples). Each repetition's own
/// percentiles go to stderr.
fn latencies(metric: Metric, values: &PerSystem<Vec<f64>>) -> Vec<Line> {
    for system in System::ALL {
        if let Some(runs) = &values[system.index()] {
            let all = runs.concat();
            let slow = all.iter().filter(|&&us| us >= 10_000.0).count();
            eprintln!(
                "[{metric}] {system} pooled p90 {:.1} p95 {:.1} max {:.1} us, {slow} of {} at 10 ms or more",
                percentile(&all, 90.0),
                percentile(&all, 95.0),
                percentile(&all, 100.0),
                all.len()
            );
        }
    }
    [50.0, 99.0]
        .into_iter()
        .map(|p| {
            for system in System::ALL {
                if let Some(runs) = &values[system.index()] {
                    let per_run: Vec<f64> = runs.iter().map(|s| percentile(s, p)).collect();
                    eprintln!("[{metric}] {system} p{p} per run {per_run:.1?} (us)");
                }
            }
            Line {
                metric: format!("{metric}_p{p}"),
                unit: "us",
                values: values
                    .each_ref()
                    .map(|v| v.as_ref().map(|runs| percentile(&runs.concat(), p))),
                better: Better::Lower,
                runs: runs_of(values),
            }
        })
        .collect()
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
