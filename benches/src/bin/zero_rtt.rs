//! `zero_rtt`: what TLS session resumption and 0-RTT do to open+close cycles, on raw
//! quinn with peergraph's TLS and transport settings (see the library's `zero_rtt`
//! module for the four cycles).
//!
//! ```text
//! cargo run --release -p peergraph-benches --bin zero_rtt -- [--runs N] [--cycles N]
//! ```
//!
//! Each run measures the four cycles once (their order turning from run to run), each
//! on a fresh pair of endpoints, `--cycles` cycles after an untimed one. Prints one JSON
//! line per cycle with its median rate (cycles/s) over the runs and every run's rate,
//! then one line of ratios. Exits 1 if a run failed, 2 on a usage error.

use std::process::ExitCode;

use peergraph_benches::{measure_zero_rtt, Cycle};

const USAGE: &str = "usage: zero_rtt [--runs N] [--cycles N]";

fn number(value: Option<&String>, what: &str) -> Result<usize, String> {
    value
        .and_then(|value| value.parse().ok())
        .filter(|&n| n > 0)
        .ok_or(format!("{what} needs a positive number"))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut runs, mut cycles) = (5, 200);
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let parsed = match arg.as_str() {
            "--runs" => number(rest.next(), "--runs").map(|n| runs = n),
            "--cycles" => number(rest.next(), "--cycles").map(|n| cycles = n),
            _ => Err(format!("unknown argument {arg}")),
        };
        if let Err(error) = parsed {
            eprintln!("{error}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("zero_rtt: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let mut rates = vec![Vec::new(); Cycle::ALL.len()];
        for run in 0..runs {
            for turn in 0..Cycle::ALL.len() {
                let index = (turn + run) % Cycle::ALL.len();
                let cycle = Cycle::ALL[index];
                let (took, resumed, accepted) = measure_zero_rtt(cycle, cycles).await?;
                let rate = cycles as f64 / took.as_secs_f64();
                eprintln!(
                    "[zero_rtt] run {} {}: {rate:.1} cycles/s ({resumed} resumed, {accepted} with 0-RTT accepted)",
                    run + 1,
                    cycle.name()
                );
                rates[index].push(rate);
            }
        }
        anyhow::Ok(rates)
    });
    let rates = match outcome {
        Ok(rates) => rates,
        Err(error) => {
            eprintln!("zero_rtt: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let medians: Vec<f64> = rates.iter().map(|rates| median(rates)).collect();
    for ((cycle, rates), median) in Cycle::ALL.iter().zip(&rates).zip(&medians) {
        let all: Vec<String> = rates.iter().map(|rate| format!("{rate:.1}")).collect();
        println!(
            "{{\"cycle\":\"{}\",\"unit\":\"cycles/s\",\"median\":{median:.1},\"runs\":[{}]}}",
            cycle.name(),
            all.join(",")
        );
    }
    let [bare, bare_resumed, same_steps, same_steps_0rtt] = medians[..] else {
        unreachable!("four cycles");
    };
    println!(
        "{{\"same_steps_over_bare\":{:.2},\"same_steps_0rtt_over_bare\":{:.2},\"same_steps_0rtt_over_bare_resumed\":{:.2},\"bare_resumed_over_bare\":{:.2}}}",
        same_steps / bare,
        same_steps_0rtt / bare,
        same_steps_0rtt / bare_resumed,
        bare_resumed / bare
    );
    ExitCode::SUCCESS
}
