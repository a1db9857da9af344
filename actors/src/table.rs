//! The index of a graph's connections that other threads read: by id, each link's outbox,
//! actor and QUIC connection.
//!
//! The graph actor is its only writer, and changes it exactly as its graph core's
//! connection table changes (the core holds the rules; this holds the handles). Readers
//! (the async facade, and the graph's own SendData handler) look an entry up and queue the
//! frame straight into the connection's outbox, cloning the [`Outbox`] to wait outside the
//! table's lock only when it is full: the hot path never waits in the graph's mailbox.

use actix::Addr;
use dashmap::DashMap;
use peergraph_engine::ConnectionId;

use crate::connection::ConnectionActor;
use crate::outbox::Outbox;

/// One live connection in the table.
pub(crate) struct ConnectionEntry {
    pub(crate) outbox: Outbox,
    pub(crate) actor: Addr<ConnectionActor>,
    /// The link itself, for [`GetConnectionStats`](crate::GetConnectionStats). A clone:
    /// the connection actor owns the link and decides when it closes.
    pub(crate) connection: quinn::Connection,
}

/// A graph's connections by id, hashed with foldhash: every SendData looks its connection
/// up here, and the default SipHash took 2.5% of a small-message sender's samples.
/// foldhash is keyed per table with a random seed too, so ids chosen by peers (the
/// CONNECT's) do not let them pick colliding keys.
pub(crate) type ConnectionTable =
    DashMap<ConnectionId, ConnectionEntry, foldhash::fast::RandomState>;
