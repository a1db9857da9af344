//! The harness behind the `compare` binary: every metric runs once through peergraph's
//! public API and once on raw quinn with the same transport settings, in the same process,
//! alternating the two, and reports the median of the repetitions as one JSON line.
//!
//! Both sides get the same shape of machine: two nodes on loopback, each driven by a
//! current-thread tokio runtime on its own thread (peergraph: one worker arbiter per
//! engine; raw quinn: one [`RuntimeThread`] per endpoint), the same [`NodeIdentity`]-based
//! mutual TLS (ring, self-signed ECDSA P-256 certificates, TLS 1.3) and the same
//! [`transport_config`](peergraph_transport::transport_config).
//!
//! # Layout
//! - `settings`: [`Metric`] names and the sizes of a quick or a full run ([`Settings`]).
//! - `report`: medians, percentiles and the JSON [`Line`] a metric prints.
//! - `runtime`: [`RuntimeThread`], a current-thread tokio runtime on its own thread.
//! - `engine_side`: two peergraph engines and each metric through the public API.
//! - `raw_side`: two raw quinn endpoints and each metric on plain streams.
//! - `memory`: resident memory and the child process that `idle_memory` runs in.
//! - `compare`: runs a metric on both sides, alternating, and makes its lines.
//! - `congestion`: the harness of the `congestion` binary, CUBIC against BBR on loopback
//!   and through a lossy relay ([`run_congestion`]).
//! - `relay`: a seeded lossy UDP [`Relay`].
//! - `records`: the harness of the `records` binary, peergraph's graph database against
//!   SQLite ([`run_records`]).
//! - `zero_rtt`: the harness of the `zero_rtt` binary, raw quinn's open+close cycles with
//!   and without TLS resumption and 0-RTT ([`measure_zero_rtt`]).
//!
//! [`NodeIdentity`]: peergraph_transport::NodeIdentity

mod compare;
mod congestion;
mod engine_side;
mod memory;
mod raw_side;
mod records;
mod relay;
mod report;
mod runtime;
mod settings;
mod zero_rtt;

pub use crate::compare::run_metric;
pub use crate::congestion::{run_congestion, Condition, CongestionLine, CongestionSettings};
pub use crate::memory::{child_idle_memory, resident_kib, Side};
pub use crate::records::{run_records, RecordsLine, RecordsSettings};
pub use crate::relay::{Impairment, Relay, QUEUE_DATAGRAMS};
pub use crate::report::{median, percentile, Baseline, Better, Line};
pub use crate::runtime::RuntimeThread;
pub use crate::settings::{Metric, Settings};
pub use crate::zero_rtt::{measure as measure_zero_rtt, Cycle};
