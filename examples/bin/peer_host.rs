//! The peer host as a binary target, for the process test (`tests/peer_host.rs`), which
//! finds it through `CARGO_BIN_EXE_peer_host`. People run the `peer_host` example, the same
//! program: `cargo run --release --example peer_host -- --help`.

fn main() -> std::process::ExitCode {
    peergraph_examples::host::main()
}
