//! Code shared by the peergraph examples.
//!
//! # Layout
//! - [`host`]: the command-line peer host, run by the `peer_host` example (and by the
//!   `peer_host` binary that the process test drives).
//! - [`transcript`]: the three-column transcript the demonstrations print.

pub mod host;
pub mod transcript;
