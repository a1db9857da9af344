//! Runs one metric on both sides, alternating engine and raw quinn (and which goes first),
//! and turns the results into [`Line`]s: the median of the runs for throughputs and
//! memory, percentiles over the samples of all runs for latencies. Progress goes to
//! stderr; stdout is left to the JSON lines.

use std::time::Duration;

use crate::engine_side;
use crate::memory::{measure_in_child, Side};
use crate::raw_side;
use crate::report::{median, percentile, Baseline, Better, Line};
use crate::settings::{Metric, Settings, MANY_PER_CALL};
use crate::zero_rtt::Cycle;

const MIB: f64 = 1024.0 * 1024.0;

/// Runs `metric` with `settings` and hands each of its lines to `emit` as soon as it is
/// known (two for the latency metrics, p50 and p99; one per connection count for
/// `idle_memory`, so a failure at 10k connections keeps the 1k line).
///
/// # Errors
/// When either side fails or passes its deadline.
pub async fn run_metric(
    metric: Metric,
    settings: &Settings,
    emit: &mut dyn FnMut(Line),
) -> anyhow::Result<()> {
    let s = settings;
    let timeout = s.run_timeout;
    match metric {
        Metric::BulkThroughput => {
            let count = s.bulk_bytes / s.bulk_chunk;
            let mib = (count * s.bulk_chunk) as f64 / MIB;
            let engine = async |count: usize| {
                engine_side::with_pair(timeout, async |pair| {
                    pair.transfer(count, s.bulk_chunk).await
                })
                .await
            };
            let raw = async |count: usize| {
                raw_side::with_pair(timeout, async |pair| pair.bulk(count, s.bulk_chunk).await)
                    .await
            };
            let (engine, raw) = alternate(
                metric,
                &Settings {
                    runs: s.bulk_runs,
                    ..s.clone()
                },
                Warmup::Yes,
                async || Ok(mib / engine(count).await?.as_secs_f64()),
                async || Ok(mib / raw(count).await?.as_secs_f64()),
            )
            .await?;
            emit(throughput(metric, "MiB/s", &engine, &raw));
        }
        Metric::SmallMessages => {
            // Raw quinn writes the frames twice per turn: batched as a careful user would
            // (the headline's baseline), and one write each (the naive line).
            let (count, len) = (s.small_count, s.small_len);
            let engine = async |count: usize| {
                engine_side::with_pair(timeout, async |pair| pair.transfer(count, len).await).await
            };
            let raw = async |count: usize| {
                raw_side::with_pair(timeout, async |pair| {
                    let batched = pair.small_messages_batched(count, len).await?;
                    let naive = pair.small_messages(count, len).await?;
                    anyhow::Ok((batched, naive))
                })
                .await
            };
            let rate = |took: Duration| count as f64 / took.as_secs_f64();
            let (engine, raw) = alternate(
                metric,
                s,
                Warmup::Yes,
                async || Ok(rate(engine(count).await?)),
                async || {
                    raw(count)
                        .await
                        .map(|(batched, naive)| (rate(batched), rate(naive)))
                },
            )
            .await?;
            let (batched, naive): (Vec<f64>, Vec<f64>) = raw.into_iter().unzip();
            emit(throughput(metric, "msg/s", &engine, &batched).against(Baseline::RawBatched));
            let mut line =
                throughput(metric, "msg/s", &engine, &naive).against(Baseline::RawUnbatched);
            line.metric = format!("{metric}_naive");
            emit(line);
        }
        Metric::SmallMessagesMany => {
            // Both sides batch in the application: SendDataMany calls of MANY_PER_CALL
            // payloads against raw quinn's 32 KiB writes.
            let (count, len) = (s.many_count, s.small_len);
            let rate = |took: Duration| count as f64 / took.as_secs_f64();
            let (engine, raw) = alternate(
                metric,
                s,
                Warmup::Yes,
                async || {
                    let took = engine_side::with_pair(timeout, async |pair| {
                        pair.transfer_many(count, len, MANY_PER_CALL).await
                    })
                    .await?;
                    Ok(rate(took))
                },
                async || {
                    let took = raw_side::with_pair(timeout, async |pair| {
                        pair.small_messages_batched(count, len).await
                    })
                    .await?;
                    Ok(rate(took))
                },
            )
            .await?;
            emit(throughput(metric, "msg/s", &engine, &raw).against(Baseline::RawBatched));
        }
        Metric::OpenCloseCycles => {
            let cycles = s.cycles;
            let (engine, raw) = alternate(
                metric,
                s,
                Warmup::No,
                async || {
                    let took = engine_side::with_pair(timeout, async |pair| {
                        pair.open_close_cycles(cycles).await
                    })
                    .await?;
                    Ok(cycles as f64 / took.as_secs_f64())
                },
                async || {
                    raw_side::with_pair(timeout, async |pair| {
                        let plain = pair.open_close_cycles(cycles).await?;
                        // On nodes of their own, with resumption on: it fails unless every
                        // cycle resumed and had its 0-RTT data taken, as the engine's do.
                        let (same_steps, _, _) =
                            crate::zero_rtt::measure(Cycle::SameSteps0Rtt, cycles).await?;
                        let rate = |took: Duration| cycles as f64 / took.as_secs_f64();
                        anyhow::Ok((rate(plain), rate(same_steps)))
                    })
                    .await
                },
            )
            .await?;
            // The headline: raw quinn's cycle as a user writes it (connect, close), full
            // handshakes with no tickets (the least work a handshake can be). The second
            // line: raw quinn taking the engine's protocol steps as it takes them on a
            // second link (resumed, CONNECT as 0-RTT data), which shows what the engine
            // itself adds.
            let (plain, same_steps): (Vec<f64>, Vec<f64>) = raw.into_iter().unzip();
            emit(throughput(metric, "cycles/s", &engine, &plain));
            let mut line = throughput(metric, "cycles/s", &engine, &same_steps)
                .against(Baseline::RawSameSteps);
            line.metric = format!("{metric}_same_steps");
            emit(line);
        }
        Metric::CloseLatency => {
            // Raw quinn closes twice per turn: with the same guarantee as the engine's S_OK
            // (the headline's baseline), and with `Connection::close` alone (one way).
            let samples = s.close_samples;
            let (engine, raw) = alternate(
                metric,
                s,
                Warmup::No,
                async || {
                    engine_side::with_pair(timeout, async |pair| {
                        pair.close_latencies(samples).await
                    })
                    .await
                    .map(micros)
                },
                async || {
                    raw_side::with_pair(timeout, async |pair| {
                        let confirmed = pair.confirmed_close_latencies(samples).await?;
                        let one_way = pair.close_latencies(samples).await?;
                        anyhow::Ok((micros(confirmed), micros(one_way)))
                    })
                    .await
                },
            )
            .await?;
            let (confirmed, one_way): (Vec<Vec<f64>>, Vec<Vec<f64>>) = raw.into_iter().unzip();
            for line in latencies(metric, &engine, &confirmed) {
                emit(line.against(Baseline::RawConfirmedClose));
            }
            for mut line in latencies(metric, &engine, &one_way) {
                line.metric = line
                    .metric
                    .replace("close_latency", "close_latency_one_way");
                emit(line.against(Baseline::RawOneWayClose));
            }
        }
        Metric::EchoRtt => {
            let (samples, len) = (s.echo_samples, s.small_len);
            let warmup = (samples / 20).max(10);
            let (engine, raw) = alternate(
                metric,
                s,
                Warmup::No,
                async || {
                    engine_side::with_pair(timeout, async |pair| {
                        pair.echo(warmup, samples, len).await
                    })
                    .await
                    .map(micros)
                },
                async || {
                    raw_side::with_pair(timeout, async |pair| pair.echo(warmup, samples, len).await)
                        .await
                        .map(micros)
                },
            )
            .await?;
            latencies(metric, &engine, &raw).into_iter().for_each(emit);
        }
        Metric::IdleMemory => {
            for &connections in &s.memory_points {
                let runs = if connections >= 10_000 {
                    s.memory_runs_large
                } else {
                    s.memory_runs
                };
                let thousands = u32::try_from(connections.div_ceil(1000)).unwrap_or(u32::MAX);
                let timeout = Duration::from_secs(30) + s.child_timeout_per_thousand * thousands;
                let (engine, raw) = alternate(
                    metric,
                    &Settings { runs, ..s.clone() },
                    Warmup::No,
                    async || measure_with_retry(Side::Engine, connections, timeout),
                    async || measure_with_retry(Side::Raw, connections, timeout),
                )
                .await?;
                let mut line = throughput(metric, "KiB/conn", &engine, &raw);
                line.metric = format!("{metric}_{}", count_name(connections));
                line.better = Better::Lower;
                emit(line);
            }
        }
    }
    Ok(())
}

/// One `idle_memory` child, tried a second time if the first fails: among ten thousand
/// handshakes on a busy machine one can fail, and the measurement does not depend on
/// which links they are.
fn measure_with_retry(side: Side, connections: usize, timeout: Duration) -> anyhow::Result<f64> {
    measure_in_child(side, connections, timeout).or_else(|error| {
        eprintln!(
            "[idle_memory] {} {connections}: {error:#}; trying again",
            side.name()
        );
        measure_in_child(side, connections, timeout)
    })
}

/// Whether a metric runs each side once, unrecorded, before its repetitions.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Warmup {
    Yes,
    No,
}

/// `settings.runs` repetitions of each side, alternating which goes first, so that
/// neither side always runs on a warmer (or more fragmented) process. A side left out by
/// `settings.only` gets no values (its median is then null).
async fn alternate<E: std::fmt::Debug, R: std::fmt::Debug>(
    metric: Metric,
    settings: &Settings,
    warmup: Warmup,
    mut engine: impl AsyncFnMut() -> anyhow::Result<E>,
    mut raw: impl AsyncFnMut() -> anyhow::Result<R>,
) -> anyhow::Result<(Vec<E>, Vec<R>)> {
    let runs = settings.runs;
    let (run_engine, run_raw) = match settings.only {
        None => (true, true),
        Some(Side::Engine) => (true, false),
        Some(Side::Raw) => (false, true),
    };
    if warmup == Warmup::Yes {
        if run_engine {
            engine().await?;
        }
        if run_raw {
            raw().await?;
        }
    }
    let (mut engines, mut raws) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for run in 0..runs {
        for engine_turn in [run % 2 == 0, run % 2 == 1] {
            if engine_turn && run_engine {
                engines.push(engine().await?);
            } else if !engine_turn && run_raw {
                raws.push(raw().await?);
            }
        }
        eprintln!("[{metric}] run {}/{runs} done", run + 1);
    }
    Ok((engines, raws))
}

fn throughput(metric: Metric, unit: &'static str, engine: &[f64], raw: &[f64]) -> Line {
    eprintln!("[{metric}] engine {engine:.1?} raw {raw:.1?} ({unit})");
    Line {
        metric: metric.name().to_owned(),
        unit,
        engine: median(engine),
        raw_quinn: median(raw),
        baseline: Baseline::Raw,
        better: Better::Higher,
        runs: engine.len().max(raw.len()),
    }
}

fn micros(durations: Vec<Duration>) -> Vec<f64> {
    durations
        .into_iter()
        .map(|d| d.as_secs_f64() * 1e6)
        .collect()
}

/// p50 and p99 lines over the samples of all runs together. A run's own p99 rests on its
/// few slowest samples, and on a shared virtual machine whole runs land in a slow or a
/// fast mode; pooled, the p99 of nine runs rests on nine times as many samples. Each
/// run's own percentiles still go to stderr.
fn latencies(metric: Metric, engine: &[Vec<f64>], raw: &[Vec<f64>]) -> Vec<Line> {
    [50.0, 99.0]
        .into_iter()
        .map(|p| {
            let per_run = |runs: &[Vec<f64>]| -> Vec<f64> {
                runs.iter().map(|samples| percentile(samples, p)).collect()
            };
            eprintln!(
                "[{metric}] p{p} per run: engine {:.1?} raw {:.1?} (us)",
                per_run(engine),
                per_run(raw)
            );
            Line {
                metric: format!("{metric}_p{p}"),
                unit: "us",
                engine: percentile(&engine.concat(), p),
                raw_quinn: percentile(&raw.concat(), p),
                baseline: Baseline::Raw,
                better: Better::Lower,
                runs: engine.len().max(raw.len()),
            }
        })
        .collect()
}

/// `1k`, `10k`, or the plain number when it is not whole thousands.
fn count_name(connections: usize) -> String {
    if connections % 1000 == 0 {
        format!("{}k", connections / 1000)
    } else {
        connections.to_string()
    }
}
