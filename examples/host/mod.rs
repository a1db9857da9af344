//! The peer host: one node of a graph, run from the command line and driven by commands on
//! standard input. The `peer_host` example and binary both run [`main`].
//!
//! ```text
//!  stdin ──thread: lines──▶ command loop ──Graph facade──▶ GraphActor ──QUIC──▶ peers
//!                                │ replies                     │ events
//!                                ▼                             ▼
//!                             Output ◀──────── event printer (EventStream)
//!                                │
//!                                ▼
//!                  stdout: aligned text, or one JSON object per line (--json)
//! ```
//!
//! On a terminal the thread is a prompt with line editing and history (`prompt`), and
//! Output prints through it, above the line being typed. The command loop answers one
//! command at a time, in order; the event printer runs beside
//! it, so connections, disconnections and incoming data print as they happen, even while
//! a long `sendfile` runs. `quit`, the end of standard input, SIGINT (Ctrl-C) or SIGTERM
//! stop the host like a daemon: every direct connection is closed with
//! CloseDirectConnection (all at once, within a few seconds), so peers see DISCONNECTED
//! at once and have all the data; then the graph closes, the engine shuts down, and the
//! exit code is 0. At the end of input, connections still opening come up (or fail)
//! first, and a command naming a connection still opening waits for it (at most the
//! connect timeout), so `printf 'open bob ADDR\nsend bob hi\n' | peer_host ...` delivers
//! "hi". A signal that comes while a command runs lets it finish for a second, or answers
//! it as interrupted. Lines over [`MAX_LINE_LEN`] (1 MiB) are skipped as they are read and
//! answered with E_INVALIDARG. Logs carry ANSI colours only when standard error is a
//! terminal.
//!
//! `sendfile` sends a file with its name, size and SHA-256 first; every host checks the
//! files it receives, and one started with `--save-dir DIR` saves them there, whole or not
//! at all (see `transfer`).
//!
//! The record commands (`add`, `update`, `delete`, `get`, `records`, `search`) work on the
//! graph's records: in memory, gone at exit, or with `--db DIR` in a database under DIR
//! that the next run with the same graph, peer and DIR opens again.
//!
//! # Layout
//! - `command`: parsing a line into a command (no I/O).
//! - `execute`: carrying out a command and printing its reply.
//! - `events`: printing the graph's events.
//! - `output`: the two output formats, and the progress bar of `sendfile`.
//! - `json`: the JSON line writer.
//! - `prompt`: the prompt on a terminal (line editing, history), or lines from a pipe.
//! - `transfer`: files, sent by `sendfile` and received (and saved with `--save-dir`),
//!   with their wire format.
//! - `metrics`: `--metrics`, the graph's counters over HTTP, and their `stats` rows.
//! - `address`: HOST:PORT targets and their resolution, and the addresses a ticket lists.
//! - `opening`: the connections still opening, which commands naming them wait for.

mod address;
mod command;
mod events;
mod execute;
mod json;
mod metrics;
mod opening;
mod output;
mod prompt;
mod transfer;

pub use self::transfer::{FILE_ABORT, FILE_HEADER};

use std::io::{self, BufRead, IsTerminal as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Parser;
use peergraph::{
    Congestion, DataType, Engine, EngineConfig, EventRegistration, EventType, Graph, GraphId,
    GraphOptions, GraphProperties, GraphSecret, NodeIdentity, PeerError, PeerId, PeerKey,
    RecordType, ResultCode, Ticket, Version, MIN_SECRET_LEN,
};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tracing_subscriber::EnvFilter;

use self::address::{ticket_addresses, Target};
use self::command::Command;
use self::execute::{Host, NodeFacts};
use self::json::Object;
use self::opening::Opening;
use self::output::{row, with_code, Output};

/// The data type of a `send` message: UTF-8 text.
pub const TEXT: DataType = DataType::from_u128(0x5d0c_7e4a_91b3_4f28_a6e0_3c1d_8b27_f940);
/// The data type of each chunk of a `sendfile` (after a [`FILE_HEADER`]).
pub const FILE_CHUNK: DataType = DataType::from_u128(0x2b94_e1c6_07fd_4a3e_9c58_d7a0_16e3_b25f);

/// The record type `add` gives a record unless told otherwise: a "note" (its GUID; the
/// text output shows it as `note`).
pub const NOTE: u128 = 0x3e8a_5f21_c94d_4b70_a1d6_2f0b_78e3_95c4;

/// The largest file `--save-dir` takes unless `--max-file-size` says otherwise: 4 GiB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 4 << 30;

/// The database name the host keeps its records under, in the `--db` directory.
pub const DATABASE: &str = "main";

/// The record type of [`NOTE`].
pub fn note_type() -> RecordType {
    RecordType::from_u128(NOTE).expect("NOTE is a GUID that is not nil")
}

/// Lines read from standard input but not yet run. A small bound: while a command runs
/// (a long `sendfile`), a script writing more lines waits on its pipe instead of growing
/// the host's memory.
const LINE_QUEUE: usize = 64;

/// How long the host waits, after closing the graph, for the event printer to print the
/// events that were already queued.
const EVENT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the host waits, when it stops, for its direct connections to close
/// gracefully (CloseDirectConnection on each, all at once); the graph's close then ends
/// whatever is left.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a command that was running when a signal came may still take to finish
/// before the host answers it as interrupted.
const COMMAND_GRACE: Duration = Duration::from_secs(1);

/// The longest command line, in bytes (newline excluded): 1 MiB. A longer line is
/// skipped as it is read, never held whole in memory, and answered with E_INVALIDARG.
pub const MAX_LINE_LEN: usize = 1 << 20;

const AFTER_HELP: &str = "\
Commands, one per line on standard input, each answered with one reply:
  open PEER_ID ADDR            open a direct connection to peer PEER_ID listening at ADDR
                               (127.0.0.1:4000, [::1]:4000, or a name: localhost:4000);
                               the reply gives the connection id, the outcome follows as a
                               connected or connection failed event
  open TICKET                  open a direct connection to the node of TICKET (the string
                               `info` prints): its peer id, at its addresses in turn, and
                               only if the node there has the ticket's key (another key:
                               PEER_E_CONNECTION_NOT_AUTHENTICATED, node key mismatch)
  send CONNECTION TEXT         send the rest of the line as one text message
  sendfile CONNECTION PATH     send a file: a header with its name (PATH's base name), size
                               and SHA-256, then chunks of at most 1 MiB (MAX_DATA_LEN).
                               The reply gives the bytes, chunks and SHA-256 sent; a signal
                               or a closed link ends it early, answered with an error and
                               the bytes sent. The receiver checks the hash and, started
                               with --save-dir DIR, saves the file there (see below)
  close CONNECTION             close a direct connection (both ends see disconnected)
  enum                         list the direct connections
  info                         this node: graph id, peer id, node id, addresses, status,
                               congestion controller and its ticket
  stats [CONNECTION]           per connection: bytes sent and received, round-trip time,
                               congestion window and lost packets (quinn's statistics);
                               without CONNECTION also the graph's counters, the same
                               as --metrics serves: links open and opened, bytes, closes
                               by result code, links ended by why, events lost,
                               handshakes refused by reason

Record commands (the graph's records: in memory, or kept in a database with --db DIR):
  add [TYPE] [--ttl SECS] [--attr NAME=TYPE:VALUE]... TEXT
                               add a record whose data is TEXT (the rest of the line after
                               the options; `--` ends them). TYPE is a GUID, by default the
                               type of notes; it lives SECS seconds (default 3600); each
                               --attr adds an attribute of type string, int or date, such
                               as room=string:lobby, seq=int:3,
                               sent=date:2024-05-01T12:00:00Z (one word each). The reply
                               gives the record id (a GUID)
  update RECORD_ID TEXT        replace a record's data with TEXT
  delete RECORD_ID [--local]   delete a record (a tombstone that lives until the record
                               would have expired); --local erases this node's copy only
  get RECORD_ID                one record: type, version, creator, times, attributes, text
  records [TYPE]               list the records, or those of one type
  search XML                   the records matching a <peersearch> document, such as
                               <peersearch><clause attrib=\"room\" type=\"string\">lob*</clause></peersearch>
                               (the grammar is in docs/RECORDS.md)
  help                         list the commands
  quit                         close every connection and the graph, and exit (code 0);
                               so do end of input, SIGINT (Ctrl-C) and SIGTERM. At end
                               of input, commands already read finish first, and
                               connections still opening come up before they close

On a terminal (standard input and output both terminals, without --json) the host shows
a prompt, `peer_host> `, with line editing (arrows, Home, End, Ctrl-A, Ctrl-E, Ctrl-W)
and a history of the last 1000 lines in memory (Up and Down; nothing is written to
disk). The prompt comes back once a command is answered, so sendfile's progress bar has
the screen to itself; events print above the line being typed. Ctrl-C at the prompt
stops the host as SIGINT does (to clear the line, Ctrl-U); Ctrl-D on an empty line ends
the input. Piped or redirected input is read line by line with no prompt.

A line is at most 1 MiB (1048576 bytes); a longer one is skipped without being read into
memory and answered with E_INVALIDARG, and the host goes on. A command naming a
connection that is still opening (open bob ADDR, then send bob hi) waits for it to come
up, at most the connect timeout (10 s).

Connection ids are printed as the library prints them: 0x and 16 hex digits, such as
0x8b3e5a1f0c2d4e69 (node ids: 16 hex digits). CONNECTION is a connection id in that
form, or in decimal (as older hosts printed it), or the peer id of the connection when
exactly one direct connection with that peer is open (send bob hi); with none or several
the reply is an error naming the candidates. A peer id made of decimal digits only, or
starting with 0x, is read as a connection id. Record ids and types are GUIDs. A reply
carries the call's result code (S_OK, or a documented error such as PEER_E_CONNECTION_NOT_FOUND); a
bad command or argument is answered with E_INVALIDARG and what is wrong, and the host
goes on. Events (connected, disconnected, connection failed with its reason, incoming
data, record changed, property changed) are printed as they happen.

With --json every line on standard output is one JSON object: events have an \"event\"
field, replies a \"reply\" field naming the command, \"hr\" (the HRESULT, such as
\"0x00000000\") and \"name\" (such as \"S_OK\"), and errors a \"message\". Every id
is a JSON string in the text form above: \"connection_id\" (such as
\"0x8b3e5a1f0c2d4e69\", which the next command takes as it is), \"node_id\", record ids
and types; a CONNECTION naming no or several connections is answered with a
\"candidates\" array of connection ids. Counts and sizes are numbers. `get` answers with a \"record\" object, `records` and
`search` with a \"records\" array of them. Logs go to standard error; RUST_LOG sets their level
(such as RUST_LOG=peergraph=debug; default warn), in colour only when standard error is a
terminal.

Files: a host prints file_incoming when a file begins and one file_received when it
ends, with \"file_name\", \"path\" (null unless saved), \"bytes\" received, \"size\",
\"sha256\" (null unless checked) and \"complete\" (false with a \"message\" when the
header was refused, the hash differs, the sender gave up, the link closed or this host
stopped). With --save-dir DIR the bytes go, as they come, to a hidden DIR/.NAME.PID-N.part,
named NAME only once the hash matched; an existing NAME is never replaced (NAME (1)...
instead); names with a directory, `..`, a drive or control characters are refused; an
incomplete file leaves nothing in DIR. A file over --max-file-size (4 GiB by default)
is refused before a byte of it is written. The chunks of a saved file are not printed one by
one: a progress bar shows on a terminal. Without --save-dir files are checked, not kept,
and each chunk prints with the running total. At most 8 files come in at once.

A ticket (pg1 and base32, printed by `info`) holds a node's peer id, its key (the SHA-256
digest of its public key; the node id is its first 8 bytes) and the addresses it listens
at; for a node listening at 0.0.0.0 or [::], the address this machine reaches others
from, then loopback. A name in ADDR or --listen is resolved when used, IPv4 first, at
most 5 s; one that does not resolve is answered with PEER_E_INVALID_ADDRESS and the
resolver's message. When ADDR or a ticket gives several addresses, each but the last is
waited for (at most the connect timeout) and the next tried if no connection came of it.

Example, in two terminals:
  peer_host --graph chat --peer bob --listen 127.0.0.1:0 --accept-direct --save-dir inbox
  peer_host --graph chat --peer alice --listen 127.0.0.1:0 --accept-direct
then in bob's: info (copy the ticket line); in alice's: open TICKET_OF_BOB, send bob hello,
sendfile bob FILE (bob finds it in inbox/), close bob. Without a ticket: open bob
ADDR_BOB_PRINTED.

Only known nodes: start bob with --allow-peer TICKET_OF_ALICE (run alice with --key FILE
so her key, and so her ticket, stays the same from run to run); other keys are refused
with PEER_E_NOT_AUTHORIZED.

Metrics for Prometheus:
  peer_host --graph chat --peer bob --listen 127.0.0.1:0 --metrics 127.0.0.1:9464
then: curl http://127.0.0.1:9464/metrics. The OpenMetrics text format (Content-Type
application/openmetrics-text; version=1.0.0), names prefixed peergraph_:
  peergraph_connections{kind}                     gauge: direct connections open now
  peergraph_pending_connections{direction}        gauge: outgoing attempts, incoming
                                                  handshakes under way
  peergraph_connections_opened_total{kind,direction}   connections opened, in and out
  peergraph_connect_failures_total                outgoing attempts that failed
  peergraph_bytes_total{direction}                UDP bytes sent/received, all links
  peergraph_closes_total{code}                    this node's closes by result code
                                                  (S_OK, PEER_E_TIMEOUT, ...)
  peergraph_links_ended_total{reason}             links ended: local_close,
                                                  remote_close, lost, close_timed_out, ...
  peergraph_events_lost_total                     events lost by a slow reader
  peergraph_handshakes_refused_total{reason}      incoming handshakes refused:
                                                  not_authorized, wrong_graph,
                                                  limit_reached, too_many_handshakes, ...
  peergraph_handshakes_retried_total, peergraph_handshakes_failed_total
  peergraph_connections_opened_early_total, peergraph_early_rejected_total,
  peergraph_early_unconfirmed_total (0-RTT: opened with it, refused by the peer, replays)
Totals count from the graph's start. Only GET (and HEAD) of /metrics is served: other
paths get 404, other methods 405; one request per connection, at most 8 at once.

Records that outlive the host:
  peer_host --graph notes --peer alice --db ./notes-db
then: add --attr room=string:lobby lunch at one, records, quit; run it again with the same
--graph, --peer and --db, and `records` lists the note again.";

/// A peergraph node on the command line: creates (or opens) a graph, listens, and obeys
/// commands read from standard input, printing replies and events as they happen.
#[derive(Parser, Debug)]
#[command(
    name = "peer_host",
    version,
    after_help = "Commands on standard input: open, send, sendfile, close, enum, info, stats, \
                  add, update, delete, get, records, search, help, quit. --help explains \
                  them, and the output formats.",
    after_long_help = AFTER_HELP
)]
struct Args {
    /// The graph's id (1 to 256 characters); every node of a graph uses the same one.
    #[arg(long, value_name = "ID")]
    graph: String,

    /// This node's peer id (1 to 256 characters): the name other nodes give to `open`.
    #[arg(long, value_name = "ID")]
    peer: String,

    /// Open an existing graph (PeerGraphOpen) instead of creating it (PeerGraphCreate).
    ///
    /// A graph opened without a database, or with a new one, has not synchronized with
    /// the graph yet, so it cannot listen nor change records: with --listen the host
    /// prints PEER_E_GRAPH_NOT_READY and goes on without listening. It can still open
    /// direct connections to nodes that listen. A database that has synchronized once
    /// (one this peer created) opens ready.
    #[arg(long)]
    open: bool,

    /// Keep the graph's records in a database under DIR (created when missing).
    ///
    /// The database belongs to the graph id and peer id: the next run with the same
    /// --graph, --peer and --db opens it again (PeerGraphOpen answers S_OK) and finds the
    /// records. Without --open the host creates the graph, or opens it when its database
    /// already exists; the code of the call is printed at start. Without --db records
    /// live in memory, gone at exit.
    #[arg(long, value_name = "DIR")]
    db: Option<PathBuf>,

    /// Listen for connections at ADDR, such as 127.0.0.1:0 (port 0 picks a free port) or
    /// localhost:4000.
    ///
    /// A host name is resolved at start (IPv4 first; the first address is bound, and one
    /// that does not resolve stops the host with PEER_E_INVALID_ADDRESS). The address
    /// actually bound is printed at start. Without --listen the node only makes outgoing
    /// connections.
    #[arg(long, value_name = "ADDR")]
    listen: Option<Target>,

    /// Load the node's key and certificate from FILE, or create them there.
    ///
    /// The file is PEM (certificate, then PKCS#8 private key), created readable by its
    /// owner only. The node id is derived from the key, so the same file gives the same
    /// node id every run; without --key each run has a new key and node id.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,

    /// Accept direct connections (register for DIRECT_CONNECTION events).
    ///
    /// Without it incoming direct connections are refused (the other node sees
    /// PEER_E_CONNECTION_REFUSED), and the outcome of this node's own `open` is not
    /// reported either: as in the Peer Graphing API, DIRECT_CONNECTION events are what a
    /// node registers for to take part in direct connections.
    #[arg(long)]
    accept_direct: bool,

    /// Require graph membership by the secret in FILE.
    ///
    /// The secret is the file's bytes less any trailing newline, at least 16 bytes.
    /// Every link proves knowledge of it without sending it; nodes without it, or with
    /// another, are refused (PEER_E_NOT_AUTHORIZED). All nodes of the graph use the same
    /// secret.
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,

    /// Admit only the nodes of the TICKETs (repeatable): their keys, each as its peer id.
    ///
    /// Every link, incoming and outgoing, must be with a listed key under its listed peer
    /// id: another key is refused (the connecting node sees PEER_E_NOT_AUTHORIZED; the
    /// refusing node logs it at info level, RUST_LOG=peergraph=info), a listed key under
    /// another peer id too (PEER_E_CONNECTION_NOT_AUTHENTICATED), and this node's own
    /// `open` reaches only listed nodes. Only the ticket's peer id and key count here,
    /// not its addresses. A node's key stays the same between runs with --key.
    #[arg(long = "allow-peer", value_name = "TICKET")]
    allow_peer: Vec<Ticket>,

    /// Close a link after SECS seconds without traffic (1 to 86400; default 10).
    ///
    /// Keep-alives go out at a third of it, so an idle but healthy link stays up; a peer
    /// that vanishes is reported DISCONNECTED after about this long.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    idle_timeout: Option<u64>,

    /// Ask a QUIC Retry of a connecting address once N incoming handshakes are running
    /// (default 32, a quarter of the 128 handshake slots; 0: of every address).
    ///
    /// A Retry makes the client prove it receives at its address, one round trip more,
    /// before it may take a handshake slot: spoofed floods then hold no slot. 0 suits a
    /// node under such a flood; a number at or above 128 never asks.
    #[arg(long, value_name = "N")]
    retry_threshold: Option<usize>,

    /// The congestion controller of the graph's links: bbr (the default) or cubic.
    ///
    /// Measured by bulk transfers between two nodes on one machine (benches/RESULTS.md,
    /// "Congestion controller"; `cargo run --release -p peergraph-benches --bin
    /// congestion`), BBR's throughput over CUBIC's: even on clean loopback (1.01), a
    /// little lower through a relay adding 10 ms each way (0.91), 11 to 16 times higher
    /// when the relay also drops 1 % of the datagrams, 21 times with 5 %. Random loss (Wi-Fi,
    /// mobile, long paths) costs CUBIC far more than clean links cost BBR, hence bbr.
    /// cubic is quinn's and the library's default: gentler with other traffic sharing a
    /// congested link (through the relay's queue BBR put 16 to 37 % more bytes on the
    /// wire than it delivered, CUBIC 3 to 6 %), and quinn calls its BBR experimental.
    #[arg(long, value_enum, value_name = "CC", default_value_t = CongestionChoice::DEFAULT)]
    congestion: CongestionChoice,

    /// Save the files peers send (sendfile) in DIR (created when missing).
    ///
    /// A file is written as it comes to a hidden partial file in DIR (.NAME.PID-N.part),
    /// and named NAME only once all its bytes came and their SHA-256 is the one its
    /// header announced; an existing file is never replaced (NAME (1), NAME (2)...
    /// instead). A name with a directory, `..`, a drive (`C:`) or a control character is
    /// refused, so nothing is written outside DIR. A file that does not arrive whole
    /// (closed link, sender stopped, hash wrong, this host stopping) leaves nothing in
    /// DIR. Each file ends in one file_received event with its path, bytes, sha256 and
    /// whether it is complete. Without --save-dir files are checked, not kept.
    #[arg(long, value_name = "DIR")]
    save_dir: Option<PathBuf>,

    /// The largest file --save-dir takes, in bytes (default 4294967296, 4 GiB).
    ///
    /// A file whose header announces more is refused before a byte of it is written: one
    /// file_received with complete false and the reason, and its chunks are dropped. Each
    /// file is also bounded by the disk: a write that fails (disk full) ends the file
    /// incomplete and removes its partial file.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_FILE_SIZE)]
    max_file_size: u64,

    /// Serve the graph's counters at http://ADDR/metrics, such as 127.0.0.1:9464 (port 0
    /// picks a free port), for Prometheus.
    ///
    /// The OpenMetrics text format: links open and opened by kind and direction, bytes,
    /// closes by result code, links ended by why, events lost, handshakes refused by
    /// reason (all named peergraph_...; --help lists them). The address actually bound
    /// is printed at start. `stats` shows the same counters.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,

    /// Print one JSON object per line on standard output, for scripts.
    #[arg(long)]
    json: bool,
}

/// The congestion controllers `--congestion` offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum CongestionChoice {
    /// CUBIC: backs off on every loss, as TCP does.
    Cubic,
    /// BBR: paces at the bandwidth and round-trip time it measures, so random loss does
    /// not slow it down.
    Bbr,
}

impl CongestionChoice {
    /// The host's default, chosen from measurements (benches/RESULTS.md, "Congestion
    /// controller").
    const DEFAULT: CongestionChoice = CongestionChoice::Bbr;

    /// The library's controller.
    fn congestion(self) -> Congestion {
        match self {
            CongestionChoice::Cubic => Congestion::Cubic,
            CongestionChoice::Bbr => Congestion::Bbr,
        }
    }

    /// Its name, as `--congestion` takes it and `info` prints it.
    fn name(self) -> &'static str {
        match self {
            CongestionChoice::Cubic => "cubic",
            CongestionChoice::Bbr => "bbr",
        }
    }
}

/// Runs the peer host with the process's arguments; the exit code is 0 after `quit`, the
/// end of input, SIGINT or SIGTERM, 1 when the host cannot start.
pub fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .init();
    let out = Arc::new(Output::new(args.json));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("peer_host: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, out.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let code = error
                .downcast_ref::<PeerError>()
                .map_or(ResultCode::E_FAIL, |error| error.code());
            if out.is_json() {
                let line = Object::new().str("event", "fatal");
                out.emit(
                    with_code(line, code).str("message", &format!("{error:#}")),
                    String::new,
                );
            }
            eprintln!("peer_host: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Why the command loop ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Quit,
    EndOfInput,
    /// SIGINT (Ctrl-C).
    Interrupted,
    /// SIGTERM.
    Terminated,
}

async fn run(args: Args, out: Arc<Output>) -> Result<()> {
    let (options, key) = graph_options(&args, &out)?;
    // An absolute save directory, so that the paths file_received prints name the files
    // wherever a script runs.
    let save_dir = match &args.save_dir {
        None => None,
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("--save-dir {}: cannot create it", dir.display()))?;
            Some(
                std::fs::canonicalize(dir)
                    .with_context(|| format!("--save-dir {}", dir.display()))?,
            )
        }
    };
    // One worker thread: the host runs a single graph, and its actor lives on one arbiter.
    let engine = Engine::with_config(EngineConfig { workers: Some(1) })
        .context("cannot start the engine's worker thread")?;
    engine
        .startup(Version::V1_0)
        .context("PeerGraphStartup failed")?;

    let graph = start_graph(&engine, &args, options, &out)?;

    // INCOMING_DATA, STATUS_CHANGED, RECORD_CHANGED and PROPERTY_CHANGED always;
    // DIRECT_CONNECTION only when asked, because registering for it is what makes the
    // node accept direct connections.
    let mut registrations = vec![
        EventRegistration::new(EventType::IncomingData),
        EventRegistration::new(EventType::StatusChanged),
        EventRegistration::new(EventType::RecordChanged),
        EventRegistration::new(EventType::PropertyChanged),
    ];
    if args.accept_direct {
        registrations.push(EventRegistration::new(EventType::DirectConnection));
    }
    // Registered before listening, so that no connection comes in unregistered (it would
    // be refused); events queue in the stream until the printer starts below.
    let events = graph
        .register_event(registrations)
        .await
        .context("PeerGraphRegisterEvent failed")?;

    let listening = match &args.listen {
        None => None,
        Some(target) => {
            let address = *target
                .resolve()
                .await
                .with_context(|| format!("--listen {target}"))?
                .first()
                .context("no address to listen at")?;
            listen(&graph, address, &out).await?
        }
    };
    let me = graph
        .node_info(None)
        .await
        .context("PeerGraphGetNodeInfo failed")?;
    let node_id = me.node_id.to_string();
    let ticket = Ticket::new(me.peer_id.clone(), key, ticket_addresses(&me.addresses))
        .context("cannot make this node's ticket")?
        .to_string();
    let start = match listening {
        Some(address) => Object::new()
            .str("event", "listening")
            .str("addr", &address.to_string()),
        None => Object::new().str("event", "started"),
    };
    out.emit(
        start
            .str("graph_id", &args.graph)
            .str("peer_id", &args.peer)
            .str("node_id", &node_id)
            .str("ticket", &ticket)
            .bool("accept_direct", args.accept_direct),
        || {
            let place = listening.map_or("not listening".to_owned(), |a| a.to_string());
            let tag = if listening.is_some() {
                "listening"
            } else {
                "started"
            };
            let first = row(
                tag,
                &format!(
                    "{place}  graph {}  peer {}  node {node_id}",
                    args.graph, args.peer
                ),
            );
            format!("{first}\n{}", row("ticket", &ticket))
        },
    );
    if args.accept_direct {
        out.note("direct connections are accepted; type `help` for the commands");
    } else {
        out.note(
            "direct connections are refused (start with --accept-direct to take them); \
             type `help` for the commands",
        );
    }

    let metrics_server = match args.metrics {
        None => None,
        Some(address) => Some(serve_metrics(address, &graph, &out).await?),
    };

    let opening = Arc::new(Opening::default());
    // Turns true when the host starts stopping: a running sendfile gives up, and files
    // still coming in are incomplete.
    let (stopping, stop) = watch::channel(false);
    let printer = tokio::spawn(events::print(
        events,
        out.clone(),
        opening.clone(),
        save_dir,
        args.max_file_size,
        stop.clone(),
    ));

    let node = NodeFacts {
        graph_id: args.graph.clone(),
        accept_direct: args.accept_direct,
        congestion: args.congestion.name(),
        key,
    };
    let host = Host::new(graph.clone(), node, out.clone(), opening, stop);
    let mut signals = Signals::new();
    let prompted = prompt::wanted(out.is_json())
        .then(|| prompt::Lines::prompt(out.clone()))
        .and_then(|prompted| {
            // A terminal the line editor does not support still takes plain lines.
            prompted
                .inspect_err(|error| tracing::info!("no prompt: {error:#}"))
                .ok()
        });
    let mut lines = match prompted {
        Some(lines) => lines,
        None => prompt::Lines::piped(stdin_lines()?),
    };
    let stop = loop {
        // Every line read before was answered: the prompt may show again.
        lines.answered();
        let line = tokio::select! {
            line = lines.recv() => line,
            stop = signals.recv() => break stop,
        };
        let line = match line {
            None => break Stop::EndOfInput,
            Some(Input::Interrupted) => break Stop::Interrupted,
            Some(Input::Line(line)) => line,
            Some(Input::TooLong { bytes, command }) => {
                host.line_too_long(&command, bytes, MAX_LINE_LEN);
                continue;
            }
        };
        match command::parse(&line) {
            Ok(None) => {}
            Ok(Some(Command::Quit)) => break Stop::Quit,
            Ok(Some(command)) => {
                tracing::debug!(?command, "running");
                let running = host.execute(command);
                tokio::pin!(running);
                tokio::select! {
                    () = &mut running => {}
                    stop = signals.recv() => {
                        // Every command is answered: let it finish for a moment (a
                        // sendfile gives up at once, with the bytes sent), or say it was
                        // cut short.
                        stopping.send_replace(true);
                        if tokio::time::timeout(COMMAND_GRACE, &mut running).await.is_err() {
                            let word = line.split_whitespace().next().unwrap_or_default();
                            host.interrupted(word);
                        }
                        break stop;
                    }
                }
            }
            Err(bad) => host.bad_command(&bad),
        }
    };
    lines.close();
    stopping.send_replace(true);
    out.clear_bar();

    // At the end of input, what is pending finishes first: connections still opening
    // come up (or fail), so that the closes below reach them.
    if stop == Stop::EndOfInput {
        host.settle_opening().await;
    }
    // Every link closes gracefully (the peers see DISCONNECTED at once, with all the
    // data), bounded in time.
    let links = host.close_all(CLOSE_TIMEOUT).await;
    tracing::debug!(links, "direct connections closed");
    if let Some(server) = metrics_server {
        server.abort();
    }

    // PeerGraphClose ends every connection with LEAVING (peers report DISCONNECTED) and
    // ends the event stream; then PeerGraphShutdown.
    let closed = graph.close().await;
    tracing::debug!("graph closed");
    if let Err(error) = engine.shutdown().await {
        tracing::warn!(%error, "shutdown");
    }
    tracing::debug!("engine shut down");
    if tokio::time::timeout(EVENT_DRAIN_TIMEOUT, printer)
        .await
        .is_err()
    {
        tracing::warn!("the event stream did not end after the graph closed");
    }
    let code = peergraph::code_of(&closed);
    match stop {
        Stop::Quit => out.emit(with_code(output::reply("quit"), code), || {
            row("quit", &format!("{code}  graph closed"))
        }),
        Stop::EndOfInput | Stop::Interrupted | Stop::Terminated => {
            let reason = match stop {
                Stop::EndOfInput => "end of input",
                Stop::Terminated => "terminated",
                _ => "interrupted",
            };
            let line = Object::new().str("event", "stopped").str("reason", reason);
            out.emit(with_code(line, code), || {
                row("stopped", &format!("{reason}: {code}  graph closed"))
            });
        }
    }
    Ok(())
}

/// Binds `address` and serves the graph's counters there; prints the address bound.
async fn serve_metrics(
    address: SocketAddr,
    graph: &Graph,
    out: &Output,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot serve metrics at {address}"))?;
    let bound = listener
        .local_addr()
        .with_context(|| format!("cannot read the metrics address bound at {address}"))?;
    let url = format!("http://{bound}{}", metrics::PATH);
    out.emit(
        Object::new()
            .str("event", "metrics")
            .str("addr", &bound.to_string())
            .str("url", &url),
        || row("metrics", &format!("{url}  (OpenMetrics text)")),
    );
    Ok(tokio::spawn(metrics::serve(listener, graph.clone())))
}

/// Listens at `address`, and answers the bound address; `None` (after saying why) for a
/// graph that cannot listen yet.
async fn listen(graph: &Graph, address: SocketAddr, out: &Output) -> Result<Option<SocketAddr>> {
    match graph.listen(address).await {
        Ok(bound) => Ok(Some(bound)),
        Err(error) if error.code() == ResultCode::PEER_E_GRAPH_NOT_READY => {
            let message = "an opened graph cannot listen until it has synchronized with \
                           the graph; going on without listening (it can still open \
                           direct connections)";
            let line = Object::new()
                .str("event", "listen_failed")
                .str("addr", &address.to_string());
            out.emit(
                with_code(line, error.code()).str("message", message),
                || row("not listening", &format!("{}: {message}", error.code())),
            );
            Ok(None)
        }
        Err(error) => Err(error).with_context(|| format!("cannot listen at {address}")),
    }
}

/// Creates the graph, or opens it (`--open`, or `--db` naming a database that already
/// exists), and prints how: the call's code and, with `--db`, where the records are.
fn start_graph(engine: &Engine, args: &Args, options: GraphOptions, out: &Output) -> Result<Graph> {
    let report = |event: &str, code: ResultCode, how: &str| {
        let mut line = Object::new()
            .str("event", event)
            .str("graph_id", &args.graph);
        if let Some(dir) = &args.db {
            line = line
                .str("db", &dir.display().to_string())
                .str("database", DATABASE);
        }
        out.emit(with_code(line, code), || {
            let mut text = format!("graph {}: {code}", args.graph);
            if let Some(dir) = &args.db {
                text.push_str(&format!("  database {} ({how})", dir.display()));
            }
            let tag = if event == "graph_opened" {
                "opened"
            } else {
                "created"
            };
            row(tag, &text)
        });
    };
    let open = |options: GraphOptions| -> Result<Graph> {
        let (graph, code) = engine
            .open_graph(&args.graph, &args.peer, options)
            .with_context(|| format!("cannot open graph {} as {}", args.graph, args.peer))?;
        let how = if code == ResultCode::S_OK {
            "found"
        } else {
            "new"
        };
        report("graph_opened", code, how);
        Ok(graph)
    };
    if args.open {
        return open(options);
    }
    let properties = GraphProperties::new(
        GraphId::new(args.graph.as_str()).context("--graph must be 1 to 256 characters")?,
        PeerId::new(args.peer.as_str()).context("--peer must be 1 to 256 characters")?,
    );
    match engine.create_graph(properties, options.clone()) {
        Ok(graph) => {
            if args.db.is_some() {
                report("graph_created", ResultCode::S_OK, "new");
            }
            Ok(graph)
        }
        // The database of an earlier run: open it, records and all.
        Err(error)
            if args.db.is_some() && error.code() == ResultCode::PEER_E_DATABASE_ALREADY_PRESENT =>
        {
            open(options)
        }
        Err(error) => Err(error).with_context(|| format!("cannot create graph {}", args.graph)),
    }
}

/// The graph's options from the command line: identity, secret, allow-list, idle
/// timeout, Retry threshold, congestion controller, database; and the node's key, for its ticket (a key made here when there is
/// no --key, so that the host knows it).
fn graph_options(args: &Args, out: &Output) -> Result<(GraphOptions, PeerKey)> {
    let mut options = GraphOptions::default().with_congestion(args.congestion.congestion());
    let key;
    if let Some(path) = &args.key {
        let created = !path.exists();
        let identity = NodeIdentity::load_or_generate(path)
            .with_context(|| format!("--key {}", path.display()))?;
        let line = Object::new()
            .str("event", "identity")
            .str("key_file", &path.display().to_string())
            .bool("created", created)
            .str("node_id", &identity.node_id().to_string());
        out.emit(line, || {
            let how = if created { "created" } else { "loaded" };
            row(
                "key",
                &format!("{} ({how})  node {}", path.display(), identity.node_id()),
            )
        });
        key = identity.peer_key();
        options = options.with_identity(identity);
    } else {
        let identity = NodeIdentity::generate().context("cannot make a key for this node")?;
        key = identity.peer_key();
        options = options.with_identity(identity);
    }
    if let Some(path) = &args.secret_file {
        options = options.with_secret(read_secret(path)?);
    }
    for ticket in &args.allow_peer {
        options = options.with_allowed_peer(*ticket.key(), ticket.peer_id().clone());
    }
    if !args.allow_peer.is_empty() {
        let line = Object::new().str("event", "allow_list").objects(
            "allowed",
            args.allow_peer.iter().map(|ticket| {
                Object::new()
                    .str("peer_id", ticket.peer_id().as_str())
                    .str("node_id", &ticket.node_id().to_string())
            }),
        );
        out.emit(line, || {
            let listed: Vec<String> = args
                .allow_peer
                .iter()
                .map(|ticket| format!("{} (node {})", ticket.peer_id(), ticket.node_id()))
                .collect();
            row(
                "allow-list",
                &format!("only these nodes may connect: {}", listed.join(", ")),
            )
        });
    }
    if let Some(seconds) = args.idle_timeout {
        options = options.with_idle_timeout(Duration::from_secs(seconds));
    }
    if let Some(handshakes) = args.retry_threshold {
        options = options.with_retry_threshold(handshakes);
    }
    if let Some(dir) = &args.db {
        options = options.with_database(dir, DATABASE);
    }
    Ok((options, key))
}

/// The graph secret in `path`: its bytes less trailing newlines (`\n` or `\r\n`).
fn read_secret(path: &Path) -> Result<GraphSecret> {
    let mut bytes =
        std::fs::read(path).with_context(|| format!("--secret-file {}", path.display()))?;
    while matches!(bytes.last(), Some(b'\n' | b'\r')) {
        bytes.pop();
    }
    let len = bytes.len();
    GraphSecret::new(bytes).ok_or_else(|| {
        anyhow::Error::new(PeerError::INVALID_ARG).context(format!(
            "--secret-file {}: the secret is {len} bytes; a graph secret needs at least \
             {MIN_SECRET_LEN} (such as 32 random bytes, or a long passphrase)",
            path.display()
        ))
    })
}

/// One line of standard input, as the reading thread hands it over.
enum Input {
    /// A line of at most [`MAX_LINE_LEN`] bytes, newline included.
    Line(String),
    /// A longer line, skipped: its length (newline included) and its first word.
    TooLong { bytes: u64, command: String },
    /// Ctrl-C at the prompt (the terminal is in raw mode, so it is a key, not SIGINT):
    /// the host stops as on SIGINT.
    Interrupted,
}

/// Reads standard input on a thread of its own (a blocking read cannot be cancelled, and
/// must not hold up the runtime's exit) and hands over each line. Bytes that are not
/// UTF-8 become U+FFFD, so such a line is answered as a bad command rather than ending
/// the input.
fn stdin_lines() -> Result<mpsc::Receiver<Input>> {
    let (sender, receiver) = mpsc::channel(LINE_QUEUE);
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut input = io::stdin().lock();
            let mut line = Vec::new();
            loop {
                match read_line(&mut input, &mut line, MAX_LINE_LEN) {
                    Ok(None) => break,
                    Ok(Some(read)) => {
                        if sender.blocking_send(read).is_err() {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "reading standard input");
                        break;
                    }
                }
            }
        })
        .context("cannot start the thread that reads standard input")?;
    Ok(receiver)
}

/// Reads the next line of `input` into `line`, holding at most `max` bytes of it (newline
/// excluded): a longer line is read through to its newline and dropped, its first word
/// kept for the reply. `None` at the end of input.
fn read_line(
    input: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<Input>> {
    line.clear();
    let mut total: u64 = 0;
    let mut command: Option<String> = None;
    // Each round consumes at least one byte, or ends: bounded by the line's length.
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            if total == 0 {
                return Ok(None);
            }
            break;
        }
        let newline = available.iter().position(|&b| b == b'\n');
        let used = newline.map_or(available.len(), |at| at + 1);
        let content = newline.unwrap_or(available.len());
        total += used as u64;
        if command.is_none() {
            if line.len() + content > max {
                let mut head = std::mem::take(line);
                head.extend_from_slice(&available[..content.min(64)]);
                let head = String::from_utf8_lossy(&head).into_owned();
                command = Some(head.split_whitespace().next().unwrap_or("line").to_owned());
            } else {
                line.extend_from_slice(&available[..used]);
            }
        }
        input.consume(used);
        if newline.is_some() {
            break;
        }
    }
    Ok(Some(match command {
        None => Input::Line(String::from_utf8_lossy(line).into_owned()),
        Some(command) => Input::TooLong {
            bytes: total,
            command,
        },
    }))
}

/// SIGINT and SIGTERM, watched from the start of the command loop.
struct Signals {
    interrupt: Option<Signal>,
    terminate: Option<Signal>,
}

impl Signals {
    fn new() -> Self {
        let watch = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "cannot watch {name}");
                None
            }
        };
        Signals {
            interrupt: watch(SignalKind::interrupt(), "SIGINT"),
            terminate: watch(SignalKind::terminate(), "SIGTERM"),
        }
    }

    /// The next signal, as the reason to stop; never, for a signal that cannot be
    /// watched.
    async fn recv(&mut self) -> Stop {
        async fn next(signal: Option<&mut Signal>) {
            if let Some(signal) = signal {
                if signal.recv().await.is_some() {
                    return;
                }
            }
            std::future::pending::<()>().await;
        }
        tokio::select! {
            () = next(self.interrupt.as_mut()) => Stop::Interrupted,
            () = next(self.terminate.as_mut()) => Stop::Terminated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{read_line, Input};

    #[test]
    fn lines_over_the_bound_are_skipped_to_their_newline() {
        let mut input = &b"send bob 0123456789\nsend bob hi\nlast"[..];
        let mut line = Vec::new();
        let mut next = || read_line(&mut input, &mut line, 12).ok().flatten();
        assert!(matches!(
            next(),
            Some(Input::TooLong { bytes: 20, command }) if command == "send"
        ));
        assert!(matches!(next(), Some(Input::Line(text)) if text == "send bob hi\n"));
        assert!(matches!(next(), Some(Input::Line(text)) if text == "last"));
        assert!(next().is_none());
    }
}
