//! The index of a graph's connections that other threads read: by id, each link's outbox,
//! actor and QUIC connection.
//!
//! The graph actor is its only writer, and changes it exactly as its graph core's
//! connection table changes (the core holds the rules; this holds the handles). Readers
//! (the async facade, and the graph's own SendData handler) look an entry up, clone its
//! [`Outbox`], drop the reference, and queue the frame straight to the connection's
//! writer: the hot path never waits in the graph's mailbox.

use actix::Addr;
use dashmap::DashMap;
use peergraph_engine::{ConnectionId, PeerError};

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

/// A graph's connections by id.
pub(crate) type ConnectionTable = DashMap<ConnectionId, ConnectionEntry>;

/// Looks up the outbox of connection `id`, without holding the table's lock afterwards.
///
/// # Errors
/// `PEER_E_CONNECTION_NOT_FOUND` when there is no such connection.
pub(crate) fn outbox_of(table: &ConnectionTable, id: ConnectionId) -> Result<Outbox, PeerError> {
    table
        .get(&id)
        .map(|entry| entry.outbox.clone())
        .ok_or(PeerError::CONNECTION_NOT_FOUND)
}
