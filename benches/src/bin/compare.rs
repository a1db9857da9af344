//! `compare`: peergraph against raw quinn, metric by metric, as JSON lines.
//!
//! ```text
//! cargo run --release -p peergraph-benches --bin compare -- [--quick] [--metric NAME]...
//! ```
//!
//! Prints one JSON object per line and metric on stdout, and nothing else there; progress
//! goes to stderr. Exits 1 if any metric failed (its line is then missing), 2 on a usage
//! error.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use peergraph_benches::{child_idle_memory, run_metric, Metric, Settings, Side};

const USAGE: &str = "usage: compare [--quick] [--metric NAME]... [--only engine|raw]
metrics: bulk_throughput small_messages small_messages_many open_close_cycles close_latency echo_rtt idle_memory
--only runs one side (for profiling); the other's values print as null";

enum Mode {
    Compare {
        settings: Settings,
        metrics: Vec<Metric>,
    },
    Child {
        side: Side,
        connections: usize,
        timeout: Duration,
    },
}

fn parse(args: &[String]) -> Result<Mode, String> {
    if let [flag, side, connections, timeout] = args {
        if flag == "--child-idle-memory" {
            let side = Side::parse(side).ok_or(format!("unknown side {side}"))?;
            let connections = connections.parse().map_err(|_| "bad connection count")?;
            let timeout = timeout.parse().map_err(|_| "bad timeout")?;
            return Ok(Mode::Child {
                side,
                connections,
                timeout: Duration::from_secs(timeout),
            });
        }
    }
    let mut quick = false;
    let mut only = None;
    let mut metrics = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--metric" => {
                let name = args.next().ok_or("--metric needs a name")?;
                let metric = Metric::parse(name).ok_or(format!("unknown metric {name}"))?;
                if !metrics.contains(&metric) {
                    metrics.push(metric);
                }
            }
            "--only" => {
                let name = args.next().ok_or("--only needs engine or raw")?;
                only = Some(Side::parse(name).ok_or(format!("unknown side {name}"))?);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if metrics.is_empty() {
        metrics = Metric::ALL.to_vec();
    }
    // Print in the table's order whatever order they were asked in.
    metrics.sort_by_key(|metric| Metric::ALL.iter().position(|m| m == metric));
    let mut settings = if quick {
        Settings::quick()
    } else {
        Settings::full()
    };
    settings.only = only;
    Ok(Mode::Compare { settings, metrics })
}

fn main() -> ExitCode {
    // RUST_LOG=quinn_proto=trace,peergraph=debug shows one cycle's datagrams and steps, with
    // microsecond times, on stderr; nothing is logged without it.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .with_thread_names(true)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match parse(&args) {
        Ok(mode) => mode,
        Err(error) => {
            if !error.is_empty() {
                eprintln!("compare: {error}");
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
            eprintln!("compare: no runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match mode {
        Mode::Child {
            side,
            connections,
            timeout,
        } => match runtime.block_on(child_idle_memory(side, connections, timeout)) {
            Ok(kib) => {
                println!("{kib:.3}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!(
                    "compare: idle_memory {} {connections}: {error:#}",
                    side.name()
                );
                ExitCode::FAILURE
            }
        },
        Mode::Compare { settings, metrics } => {
            let started = Instant::now();
            let mut failed = false;
            for metric in metrics {
                let metric_started = Instant::now();
                eprintln!("[{metric}] starting");
                let mut emit = |line: peergraph_benches::Line| {
                    let mut stdout = std::io::stdout().lock();
                    let _ = writeln!(stdout, "{}", line.to_json());
                    let _ = stdout.flush();
                };
                if let Err(error) = runtime.block_on(run_metric(metric, &settings, &mut emit)) {
                    eprintln!("compare: {metric} failed: {error:#}");
                    failed = true;
                }
                eprintln!(
                    "[{metric}] took {:.1} s",
                    metric_started.elapsed().as_secs_f64()
                );
            }
            eprintln!("compare: done in {:.1} s", started.elapsed().as_secs_f64());
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
