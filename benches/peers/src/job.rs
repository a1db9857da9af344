//! What one repetition asks of a system, and what it gives back: the interface between the
//! harness and each system's side.

use std::time::Duration;

/// Outgoing connections `idle_memory` keeps in their handshake at once: below the
/// accepting graph's `DEFAULT_MAX_PENDING_HANDSHAKES`, so none is refused. It is above
/// the default bound per source address (8), so the benchmark's nodes, which trust the one
/// host they share, raise that bound to it (`peergraph_side::bench_options`).
pub const OPEN_WINDOW: usize = 64;

/// One repetition's work for one system, on a fresh pair of nodes.
#[derive(Clone, Copy, Debug)]
pub enum Job {
    /// `count` writes of `len` bytes on one stream; the time until the peer read them all.
    Bulk {
        /// Writes.
        count: usize,
        /// Bytes each.
        len: usize,
    },
    /// `count` messages of `len` payload bytes, one send call each; the time until the peer
    /// read them all.
    Small {
        /// Messages.
        count: usize,
        /// Payload bytes each.
        len: usize,
    },
    /// Open and close cycles; the time of all of them.
    Cycles(usize),
    /// Links made (untimed) and closed (timed); one duration per close.
    Closes(usize),
    /// Round trips of a `len`-byte message after `warmup` untimed ones.
    Echo {
        /// Untimed round trips first.
        warmup: usize,
        /// Timed round trips.
        samples: usize,
        /// Payload bytes.
        len: usize,
    },
}

/// What a [`Job`] gives back.
#[derive(Debug)]
pub enum Outcome {
    /// How long the whole job took.
    Took(Duration),
    /// One duration per timed event.
    Samples(Vec<Duration>),
}

impl Outcome {
    pub(crate) fn took(self) -> anyhow::Result<Duration> {
        match self {
            Outcome::Took(took) => Ok(took),
            Outcome::Samples(_) => anyhow::bail!("expected one duration"),
        }
    }

    pub(crate) fn micros(self) -> anyhow::Result<Vec<f64>> {
        match self {
            Outcome::Samples(samples) => {
                Ok(samples.iter().map(|d| d.as_secs_f64() * 1e6).collect())
            }
            Outcome::Took(_) => anyhow::bail!("expected samples"),
        }
    }
}
