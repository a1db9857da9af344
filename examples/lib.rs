//! Code shared by the peergraph examples.
//!
//! # Layout
//! - [`host`]: the command-line peer host, run by the `peer_host` example (and by the
//!   `peer_host` binary that the process test drives).
//! - [`transcript`]: the three-column transcript the demonstrations print.
//! - `web` (with the `web` feature): the web gateway's routes, served by the
//!   `web_gateway` example.

pub mod host;
pub mod transcript;
#[cfg(feature = "web")]
pub mod web;
