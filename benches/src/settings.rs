//! What a run measures and how much: the metric names and the sizes of a quick
//! (`--quick`, for CI and a first look) or a full run.

use std::fmt;
use std::time::Duration;

use crate::memory::Side;

/// One row of the table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Metric {
    /// SendData of 64 KiB payloads on one connection against `write_chunk` on one stream.
    BulkThroughput,
    /// SendData of 64-byte payloads against the same frames written one by one.
    SmallMessages,
    /// The same payloads sent 512 to a SendDataMany call (`MANY_PER_CALL`), against raw quinn
    /// batching them into 32 KiB writes: both sides batching in the application.
    SmallMessagesMany,
    /// Open, wait for CONNECTED, close until S_OK; against connect, close, peer sees it.
    OpenCloseCycles,
    /// CloseDirectConnection to S_OK; against `close()` to the peer's `closed()`.
    CloseLatency,
    /// A 64-byte request and its echo.
    EchoRtt,
    /// Resident memory per open connection, both ends counted.
    IdleMemory,
}

impl Metric {
    /// Every metric, in the order a run prints them.
    pub const ALL: [Metric; 7] = [
        Metric::BulkThroughput,
        Metric::SmallMessages,
        Metric::SmallMessagesMany,
        Metric::OpenCloseCycles,
        Metric::CloseLatency,
        Metric::EchoRtt,
        Metric::IdleMemory,
    ];

    /// The name `--metric` takes and the JSON lines start with.
    pub fn name(self) -> &'static str {
        match self {
            Metric::BulkThroughput => "bulk_throughput",
            Metric::SmallMessages => "small_messages",
            Metric::SmallMessagesMany => "small_messages_many",
            Metric::OpenCloseCycles => "open_close_cycles",
            Metric::CloseLatency => "close_latency",
            Metric::EchoRtt => "echo_rtt",
            Metric::IdleMemory => "idle_memory",
        }
    }

    /// The metric named `name`; a printed line's name (`echo_rtt_p99`,
    /// `idle_memory_10k`) selects the metric it comes from.
    pub fn parse(name: &str) -> Option<Metric> {
        let exact = Metric::ALL.into_iter().find(|metric| name == metric.name());
        exact.or_else(|| {
            Metric::ALL.into_iter().find(|metric| {
                name.strip_prefix(metric.name())
                    .is_some_and(|rest| rest.starts_with('_'))
            })
        })
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Payloads per SendDataMany call in `small_messages_many`: about 35 KiB of 64-byte
/// messages, the size of raw quinn's batched writes it is compared with.
pub const MANY_PER_CALL: usize = 512;

/// The sizes of one run. Every loop of the harness is bounded by a count from here and by
/// a deadline ([`Settings::run_timeout`] or [`Settings::child_timeout_per_thousand`]).
#[derive(Clone, Debug)]
pub struct Settings {
    /// True for `--quick`.
    pub quick: bool,
    /// `--only engine|raw`, for profiling one side: the other side is not run and its
    /// values print as null.
    pub only: Option<Side>,
    /// Repetitions of each side of a metric; the median is reported.
    pub runs: usize,
    /// Repetitions of `bulk_throughput`: more than the others, because loopback UDP drops
    /// packets when a socket buffer overflows and the congestion controller's reaction
    /// moves a single transfer by a fifth either way.
    pub bulk_runs: usize,
    /// Bytes sent by `bulk_throughput`.
    pub bulk_bytes: usize,
    /// Payload bytes of one bulk SendData or write.
    pub bulk_chunk: usize,
    /// Messages sent by `small_messages`.
    pub small_count: usize,
    /// Messages sent by `small_messages_many`: ten times `small_count` in a full run. Both
    /// sides move some 13 million a second there, so 200,000 messages were 15 ms of sending,
    /// ramp-up included, and a run's rate moved by a fifth either way.
    pub many_count: usize,
    /// Payload bytes of one small message (and of one echo).
    pub small_len: usize,
    /// Cycles of `open_close_cycles`.
    pub cycles: usize,
    /// Closes timed by `close_latency`.
    pub close_samples: usize,
    /// Round trips timed by `echo_rtt` (after a warm-up of a twentieth as many).
    pub echo_samples: usize,
    /// Connection counts `idle_memory` measures at.
    pub memory_points: Vec<usize>,
    /// Repetitions of each side of `idle_memory` at 1k connections (one child each).
    pub memory_runs: usize,
    /// Repetitions at 10k connections and more, which cost tens of seconds each.
    pub memory_runs_large: usize,
    /// The longest one side of one repetition may take before the metric fails.
    pub run_timeout: Duration,
    /// The longest one `idle_memory` child may take per thousand connections.
    pub child_timeout_per_thousand: Duration,
}

impl Settings {
    /// The sizes of `compare --quick`: the whole run stays within four minutes on a 2-core
    /// machine (it takes about a minute).
    pub fn quick() -> Settings {
        Settings {
            quick: true,
            only: None,
            runs: 5,
            bulk_runs: 5,
            bulk_bytes: 64 * 1024 * 1024,
            bulk_chunk: 64 * 1024,
            small_count: 20_000,
            many_count: 100_000,
            small_len: 64,
            cycles: 50,
            close_samples: 100,
            echo_samples: 2_000,
            memory_points: vec![1_000],
            memory_runs: 1,
            memory_runs_large: 1,
            run_timeout: Duration::from_secs(30),
            child_timeout_per_thousand: Duration::from_secs(30),
        }
    }

    /// The sizes of the table, with more repetitions and the 10k-connection point
    /// (about four minutes on a 2-core machine). Nine repetitions, because one repetition
    /// on a shared virtual machine can be off by a third either way.
    pub fn full() -> Settings {
        Settings {
            quick: false,
            only: None,
            runs: 9,
            bulk_runs: 15,
            bulk_bytes: 256 * 1024 * 1024,
            bulk_chunk: 64 * 1024,
            small_count: 200_000,
            many_count: 2_000_000,
            small_len: 64,
            cycles: 300,
            close_samples: 500,
            echo_samples: 10_000,
            memory_points: vec![1_000, 10_000],
            memory_runs: 3,
            memory_runs_large: 2,
            run_timeout: Duration::from_secs(120),
            child_timeout_per_thousand: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_line_names_select_their_metric() {
        for metric in Metric::ALL {
            assert_eq!(Metric::parse(metric.name()), Some(metric));
        }
        assert_eq!(Metric::parse("echo_rtt_p99"), Some(Metric::EchoRtt));
        assert_eq!(Metric::parse("idle_memory_10k"), Some(Metric::IdleMemory));
        assert_eq!(
            Metric::parse("small_messages_naive"),
            Some(Metric::SmallMessages)
        );
        assert_eq!(
            Metric::parse("small_messages_many"),
            Some(Metric::SmallMessagesMany)
        );
        assert_eq!(Metric::parse("echo"), None);
        assert_eq!(Metric::parse("bulk_throughputs"), None);
    }
}
