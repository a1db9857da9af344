//! What a run measures and how much: the systems, the metrics and the sizes of a quick
//! (`--quick`) or a full run. The sizes are those of `compare` (benches/src/settings.rs)
//! except where four systems in one run would take too long (see [`Settings::full`]).

use std::fmt;
use std::time::Duration;

/// One column of the table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum System {
    /// peergraph through its public async facade.
    Peergraph,
    /// quinn 0.11 with peergraph's TLS and transport settings, one bidirectional stream.
    RawQuinn,
    /// iroh, direct addresses only, one bidirectional stream.
    Iroh,
    /// rust-libp2p over QUIC, one negotiated stream per connection.
    Libp2p,
}

impl System {
    /// Every system, in the order of the JSON fields.
    pub const ALL: [System; 4] = [
        System::Peergraph,
        System::RawQuinn,
        System::Iroh,
        System::Libp2p,
    ];

    /// The JSON field and the name `--system` takes.
    pub fn name(self) -> &'static str {
        match self {
            System::Peergraph => "peergraph",
            System::RawQuinn => "raw_quinn",
            System::Iroh => "iroh",
            System::Libp2p => "libp2p",
        }
    }

    /// The system named `name`.
    pub fn parse(name: &str) -> Option<System> {
        System::ALL.into_iter().find(|system| system.name() == name)
    }

    /// Its column in [`System::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One or two rows of the table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Metric {
    /// 64 KiB writes (peergraph: SendData) on one stream, until the peer read them all.
    BulkThroughput,
    /// 64-byte messages, one send call each, until the peer read them all.
    SmallMessages,
    /// Connect, handshake, open the stream, close (the system's strongest close) until the
    /// peer saw the close.
    OpenCloseCycles,
    /// A 64-byte message and its echo (p50 and p99).
    EchoRtt,
    /// Resident memory per open connection with its stream, both ends counted.
    IdleMemory,
    /// The system's strongest close, from its start until the closer has its guarantee and
    /// the peer saw the close (p50 and p99).
    CloseLatency,
}

impl Metric {
    /// Every metric, in the order a run prints them.
    pub const ALL: [Metric; 6] = [
        Metric::BulkThroughput,
        Metric::SmallMessages,
        Metric::OpenCloseCycles,
        Metric::EchoRtt,
        Metric::IdleMemory,
        Metric::CloseLatency,
    ];

    /// The name `--metric` takes and its lines start with.
    pub fn name(self) -> &'static str {
        match self {
            Metric::BulkThroughput => "bulk_throughput",
            Metric::SmallMessages => "small_messages",
            Metric::OpenCloseCycles => "open_close_cycles",
            Metric::EchoRtt => "echo_rtt",
            Metric::IdleMemory => "idle_memory",
            Metric::CloseLatency => "close_latency",
        }
    }

    /// The metric named `name`, or the one a printed line's name (`echo_rtt_p99`) comes from.
    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|metric| {
            name == metric.name()
                || name
                    .strip_prefix(metric.name())
                    .is_some_and(|rest| rest.starts_with('_'))
        })
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The sizes of one run. Every loop is bounded by a count from here and by a deadline.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The systems run (all unless `--system` names some); the others print null.
    pub systems: Vec<System>,
    /// Repetitions of each system for each metric but idle memory.
    pub runs: usize,
    /// Bytes sent by `bulk_throughput`.
    pub bulk_bytes: usize,
    /// Bytes of one bulk write.
    pub bulk_chunk: usize,
    /// Messages sent by `small_messages`.
    pub small_count: usize,
    /// Payload bytes of one small message and of one echo.
    pub small_len: usize,
    /// Cycles of `open_close_cycles`.
    pub cycles: usize,
    /// Closes timed by `close_latency`.
    pub close_samples: usize,
    /// Round trips timed by `echo_rtt` (after a warm-up of a twentieth as many).
    pub echo_samples: usize,
    /// Connections `idle_memory` holds open.
    pub memory_connections: usize,
    /// Repetitions of each system of `idle_memory` (one child process each).
    pub memory_runs: usize,
    /// The longest one repetition of one system may take.
    pub run_timeout: Duration,
    /// The longest one `idle_memory` child may take.
    pub child_timeout: Duration,
}

impl Settings {
    /// `--quick`: about two minutes on a 2-core machine.
    pub fn quick() -> Settings {
        Settings {
            systems: System::ALL.to_vec(),
            runs: 3,
            bulk_bytes: 64 * 1024 * 1024,
            bulk_chunk: 64 * 1024,
            small_count: 20_000,
            small_len: 64,
            cycles: 50,
            close_samples: 100,
            echo_samples: 2_000,
            memory_connections: 1_000,
            memory_runs: 1,
            run_timeout: Duration::from_secs(60),
            child_timeout: Duration::from_secs(60),
        }
    }

    /// A full run: `compare`'s sizes and its nine repetitions, except bulk (64 MiB, nine
    /// repetitions, where `compare` sends 256 MiB fifteen times) and idle memory (1,000
    /// connections only), so that four systems fit in about ten minutes.
    pub fn full() -> Settings {
        Settings {
            systems: System::ALL.to_vec(),
            runs: 9,
            bulk_bytes: 64 * 1024 * 1024,
            bulk_chunk: 64 * 1024,
            small_count: 200_000,
            small_len: 64,
            cycles: 300,
            close_samples: 500,
            echo_samples: 10_000,
            memory_connections: 1_000,
            memory_runs: 3,
            run_timeout: Duration::from_secs(120),
            child_timeout: Duration::from_secs(90),
        }
    }
}
