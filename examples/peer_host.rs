//! # A peer host on the command line
//!
//! One node of a graph, run from a terminal or a script: it creates (or opens) the graph,
//! listens, and obeys commands typed on standard input (`open`, `send`, `sendfile`,
//! `close`, `enum`, `info`, `stats`, the record commands `add`, `update`, `delete`, `get`,
//! `records`, `search`, and `quit`), printing each reply with its result code and every
//! event (connected, disconnected, connection failed, incoming data, record changed) as it
//! happens. `--json` prints one JSON object per line instead, for scripts; `--db DIR` keeps
//! the graph's records in a database that the next run opens again. `quit`, the end of
//! input, SIGINT and SIGTERM close every connection gracefully (peers see DISCONNECTED at
//! once), then the graph, and exit 0; piped input finishes before the host exits.
//!
//! Two nodes in two terminals, from the repository root:
//!
//! ```text
//! cargo run --release --example peer_host -- --graph chat --peer bob --listen 127.0.0.1:0 --accept-direct
//! cargo run --release --example peer_host -- --graph chat --peer alice --listen 127.0.0.1:0 --accept-direct
//! ```
//!
//! then, in alice's terminal, with the address bob printed and the connection id the
//! `open` reply gives (the library's form, `0x` and 16 hex digits; decimal is taken too),
//! or bob's peer id while alice has a single connection with him:
//!
//! ```text
//! open bob 127.0.0.1:PORT
//! send ID hello
//! sendfile bob Cargo.lock
//! close ID
//! quit
//! ```
//!
//! With `--json` every id is a JSON string (`"connection_id":"0x71f3a9f0fefc397c"`), so
//! that scripts in jq or JavaScript hand the next command the id unrounded.
//!
//! `--help` explains every option and command. The program itself is the `host` module
//! of this package's library (`examples/host/`): `mod.rs` starts the node and runs the
//! command loop beside the event printer, `execute.rs` carries out the commands through
//! the async facade ([`peergraph::Graph`]), `events.rs` prints the event stream.

fn main() -> std::process::ExitCode {
    peergraph_examples::host::main()
}
