//! `congestion`: bulk throughput between two peergraph nodes with CUBIC and with BBR, on
//! clean loopback and through a seeded lossy relay, as JSON lines.
//!
//! ```text
//! cargo run --release -p peergraph-benches --bin congestion -- [--quick]
//! ```
//!
//! Prints one JSON object per condition on stdout, and nothing else there; each run's
//! rate goes to stderr as it is known. Exits 1 if a run failed (lines printed until then
//! stay), 2 on a usage error.
//!
//! `{"metric":"congestion","condition":"lossy_1pct","loss":0.01,"delay_ms":10,"mib":2,
//! "unit":"MiB/s","cubic":..,"bbr":..,"ratio_bbr_cubic":..,"cubic_range":[min,max],
//! "bbr_range":[min,max],"runs":3}`: the medians of each controller's runs, the ratio of
//! the medians (above 1 when BBR is faster), and the slowest and fastest run of each.
//!
//! Conditions: `loopback` (a direct link on 127.0.0.1); `relay_0pct` (through the relay,
//! 10 ms each way, no loss); `lossy_1pct` and `lossy_5pct` (the same, dropping 1 % or 5 %
//! of the datagrams each way, seeded: both controllers of a run meet the same dice).
//! Runs of the two controllers alternate (and which goes first), so that other load on
//! the machine slows both alike. `--quick` (3 runs each, about a minute) or the default
//! (4 times the data, 5 runs each, several minutes).

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use peergraph_benches::{run_congestion, CongestionLine, CongestionSettings};

const USAGE: &str = "usage: congestion [--quick]
conditions: loopback relay_0pct lossy_1pct lossy_5pct, each with cubic and bbr";

fn main() -> ExitCode {
    let mut quick = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
            other => {
                eprintln!("congestion: unknown argument {other}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let settings = if quick {
        CongestionSettings::quick()
    } else {
        CongestionSettings::full()
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("congestion: no runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let mut emit = |line: CongestionLine| {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
    };
    let result = runtime.block_on(run_congestion(&settings, &mut emit));
    eprintln!(
        "congestion: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("congestion: failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}
