//! peergraph, raw quinn, iroh and rust-libp2p side by side, metric by metric, as JSON lines.
//!
//! ```text
//! cargo run --release --manifest-path benches/peers/Cargo.toml -- [--quick]
//!     [--metric NAME]... [--system NAME]...
//! ```
//!
//! Prints one JSON object per line and metric on stdout, with one field per system, and
//! nothing else there; progress goes to stderr. Exits 1 if any value is missing (a system
//! failed; its field is then null), 2 on a usage error. See README.md beside Cargo.toml.

mod frames;
mod harness;
mod iroh_side;
mod job;
mod libp2p_side;
mod memory;
mod peergraph_side;
mod quinn_side;
mod report;
// The same runtime thread as the main benchmarks' (one file, two workspaces).
#[path = "../../src/runtime.rs"]
mod runtime;
mod settings;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::settings::{Metric, Settings, System};

const USAGE: &str = "usage: peergraph-peers-bench [--quick] [--metric NAME]... [--system NAME]...
metrics: bulk_throughput small_messages open_close_cycles echo_rtt idle_memory close_latency
systems: peergraph raw_quinn iroh libp2p (the ones not named print null)";

enum Mode {
    Compare {
        settings: Settings,
        metrics: Vec<Metric>,
    },
    Child {
        system: System,
        connections: usize,
        timeout: Duration,
    },
}

fn parse(args: &[String]) -> Result<Mode, String> {
    if let [flag, system, connections, timeout] = args {
        if flag == "--child-idle-memory" {
            let system = System::parse(system).ok_or(format!("unknown system {system}"))?;
            let connections = connections.parse().map_err(|_| "bad connection count")?;
            let timeout = timeout.parse().map_err(|_| "bad timeout")?;
            return Ok(Mode::Child {
                system,
                connections,
                timeout: Duration::from_secs(timeout),
            });
        }
    }
    let mut quick = false;
    let mut metrics = Vec::new();
    let mut systems = Vec::new();
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
            "--system" => {
                let name = args.next().ok_or("--system needs a name")?;
                let system = System::parse(name).ok_or(format!("unknown system {name}"))?;
                if !systems.contains(&system) {
                    systems.push(system);
                }
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if metrics.is_empty() {
        metrics = Metric::ALL.to_vec();
    }
    metrics.sort_by_key(|metric| Metric::ALL.iter().position(|m| m == metric));
    let mut settings = if quick {
        Settings::quick()
    } else {
        Settings::full()
    };
    if !systems.is_empty() {
        systems.sort_by_key(|system| system.index());
        settings.systems = systems;
    }
    Ok(Mode::Compare { settings, metrics })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match parse(&args) {
        Ok(mode) => mode,
        Err(error) => {
            if !error.is_empty() {
                eprintln!("peers: {error}");
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
            eprintln!("peers: no runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match mode {
        Mode::Child {
            system,
            connections,
            timeout,
        } => match runtime.block_on(harness::child_idle_memory(system, connections, timeout)) {
            Ok(kib) => {
                println!("{kib:.3}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("peers: idle_memory {system} {connections}: {error:#}");
                ExitCode::FAILURE
            }
        },
        Mode::Compare { settings, metrics } => {
            let started = Instant::now();
            let mut missing = false;
            for metric in metrics {
                let metric_started = Instant::now();
                eprintln!("[{metric}] starting");
                let mut emit = |line: report::Line| {
                    missing |= settings
                        .systems
                        .iter()
                        .any(|system| line.values[system.index()].is_none());
                    let mut stdout = std::io::stdout().lock();
                    let _ = writeln!(stdout, "{}", line.to_json());
                    let _ = stdout.flush();
                };
                runtime.block_on(harness::run_metric(metric, &settings, &mut emit));
                eprintln!(
                    "[{metric}] took {:.1} s",
                    metric_started.elapsed().as_secs_f64()
                );
            }
            eprintln!("peers: done in {:.1} s", started.elapsed().as_secs_f64());
            if missing {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
