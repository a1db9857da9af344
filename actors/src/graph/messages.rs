//! The messages a [`GraphActor`](crate::GraphActor) answers: one per API call, each
//! replying with the call's value or its documented result code.
//!
//! Every message can also return `PEER_E_NOT_INITIALIZED` (the engine was shut down) and
//! `PEER_E_INVALID_GRAPH` (the graph was closed); the `# Errors` sections list the rest.
//! A message sent to a graph actor that no longer runs fails with actix's
//! `MailboxError`, which [`crate::reply`] turns into `PEER_E_INVALID_GRAPH`.

use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use peergraph_engine::{
    ConnectionFlags, ConnectionId, ConnectionInfo, DataType, EventRegistration, GraphStatus,
    NodeId, NodeInfo, PeerError, PeerId, PeerKey,
};

use tokio::sync::oneshot;

use crate::connection::CloseReply;
use crate::events::{EventHandle, EventStream, PeerEvent, QueueLimits};
use crate::metrics::GraphMetrics;

/// `PeerGraphListen`: accept links at `address` (port 0 picks a free port). Replies with
/// the bound address.
///
/// # Errors
/// `PEER_E_GRAPH_NOT_READY` (an opened graph that has not synchronized),
/// `PEER_E_ALREADY_LISTENING`, `PEER_E_INVALID_ADDRESS` (cannot bind there).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<SocketAddr, PeerError>")]
pub struct Listen {
    /// Where to listen, such as `127.0.0.1:0`.
    pub address: SocketAddr,
}

/// `PeerGraphOpenDirectConnection`: open a direct connection to the node `peer_id` at
/// `address`. Replies at once with the new connection's id; the outcome arrives as a
/// DIRECT_CONNECTION event (CONNECTED, or CONNECTION_FAILED with a reason:
/// `PEER_E_CONNECTION_REFUSED` (the node does not take direct connections, or is at its
/// limit), `PEER_E_CONNECTION_FAILED` (unreachable within the connect timeout),
/// `PEER_E_CONNECTION_NOT_AUTHENTICATED` (the node there is not `peer_id` of this graph, or
/// its key is listed for another peer id, or it presented a key other than
/// `expected_key`), or `PEER_E_NOT_AUTHORIZED` (membership not proved, on either side, or
/// its key is not on this graph's allow-list)).
///
/// # Errors
/// `PEER_E_CONNECT_SELF` (this
/// node's own peer id or listen address), `PEER_E_INVALID_ADDRESS` (port 0, an unspecified
/// or multicast address), `E_FAIL` (no local socket could be bound).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<ConnectionId, PeerError>")]
pub struct OpenDirectConnection {
    /// The remote node's peer id ([`PeerId::new`] answers `E_INVALIDARG` for one that is
    /// empty or over 256 characters).
    pub peer_id: PeerId,
    /// The remote node's address.
    pub address: SocketAddr,
    /// The key the node at `address` must present (a [`Ticket`](crate::Ticket)'s key), or
    /// `None` to take any key the allow-list admits. A node with another key is left
    /// before CONNECT is sent: CONNECTION_FAILED with
    /// `PEER_E_CONNECTION_NOT_AUTHENTICATED` ("node key mismatch: expected ..., the node
    /// presented ...").
    pub expected_key: Option<PeerKey>,
}

/// `PeerGraphSendData`: send `data` of type `data_type` on a connection. Replies S_OK once
/// the data is accepted for sending, waiting while the connection's outbox is full
/// (backpressure). Data accepted before a close is delivered before the DISCONNECT.
///
/// # Errors
/// `E_INVALIDARG` (`data` over [`MAX_DATA_LEN`](crate::MAX_DATA_LEN) bytes),
/// `PEER_E_CONNECTION_NOT_FOUND` (no such connection, or it is closing).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), PeerError>")]
pub struct SendData {
    /// The connection's id.
    pub connection_id: ConnectionId,
    /// The data's type.
    pub data_type: DataType,
    /// The bytes.
    pub data: Bytes,
}

/// SendData for many payloads of one type at once, in order: what [`SendData`] does for
/// each, in one call. The frames of a run of small payloads are encoded together into a
/// few large writes by the caller, so a burst costs little more than its bytes; an
/// application with many messages ready sends them with one call instead of one each. Not
/// in the Win32 API. Replies S_OK once every payload is accepted for sending, waiting while
/// the connection's outbox is full; the peer receives each as its own INCOMING_DATA, in
/// order, and no frame of another SendData comes between them. The graph actor encodes
/// the frames and queues what fits while it handles the message, so a SendData or a close
/// sent after this message comes after the batch. A batch can go in part (see
/// [`Graph::send_data_many`](crate::Graph::send_data_many)).
///
/// # Errors
/// `E_INVALIDARG` (a payload over [`MAX_DATA_LEN`](crate::MAX_DATA_LEN) bytes: none is
/// sent), `PEER_E_CONNECTION_NOT_FOUND` (no such connection, or it is closing; if it began
/// closing while the call waited for room, the payloads accepted before that are
/// delivered before the DISCONNECT, the rest are not).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), PeerError>")]
pub struct SendDataMany {
    /// The connection's id.
    pub connection_id: ConnectionId,
    /// The type of every payload.
    pub data_type: DataType,
    /// The payloads, in the order the peer receives them.
    pub data: Vec<Bytes>,
}

/// `PeerGraphCloseDirectConnection`: close a direct connection. The connection's writer
/// flushes every byte SendData accepted, then DISCONNECT (APP_DISCONNECT); the peer
/// answers, after what it had accepted, with its own DISCONNECT and end of stream, which
/// shows it has read everything; only then the reply comes (docs/PROTOCOL.md §3.4). The
/// remote node reports DIRECT_CONNECTION DISCONNECTED with the same id; so does this node.
///
/// Replies S_OK when the peer had everything. Of concurrent closes of one id exactly one
/// gets S_OK (or a timeout) and the others `PEER_E_CONNECTION_NOT_FOUND`.
///
/// # Errors
/// `PEER_E_CONNECTION_NOT_FOUND` (no direct connection with that
/// id, or the peer is already closing it), `PEER_E_TIMEOUT` (the peer did not confirm
/// within the close timeout, or went silent for the link's idle timeout first: the
/// connection is gone, but the peer may not have all the data), `PEER_E_CONNECTION_FAILED` (the link, or its connection actor, failed during
/// the close), `PEER_E_INVALID_GRAPH` (the graph is closed, or closed while
/// this close was under way: the connection is gone), `PEER_E_NOT_INITIALIZED` (after the
/// last Shutdown).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<(), PeerError>")]
pub struct CloseDirectConnection {
    /// The connection's id.
    pub connection_id: ConnectionId,
}

/// `PeerGraphEnumConnections`: the graph's connections of the kinds in `flags`.
///
/// # Errors
/// `E_INVALIDARG` (flags 0 or unknown bits).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<Vec<ConnectionInfo>, PeerError>")]
pub struct EnumConnections {
    /// NEIGHBOR, DIRECT, or both.
    pub flags: ConnectionFlags,
}

/// `PeerGraphGetNodeInfo`: a node's information; `None` (the API's 0) or this node's id
/// for this node, or the id of a node this node has a connection with.
///
/// # Errors
/// `PEER_E_NODE_NOT_FOUND`.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<NodeInfo, PeerError>")]
pub struct GetNodeInfo {
    /// The node id; `None` for this node.
    pub node_id: Option<NodeId>,
}

/// `PeerGraphGetStatus`: the graph's status flags.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<GraphStatus, PeerError>")]
pub struct GetStatus;

/// `PeerGraphRegisterEvent`: receive the events `registrations` select as an
/// [`EventStream`], through a queue bounded by `limits`.
///
/// # Errors
/// `E_INVALIDARG` (no registrations, or a zero limit).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<EventStream, PeerError>")]
pub struct RegisterEvent {
    /// Which events.
    pub registrations: Vec<EventRegistration>,
    /// The queue's bounds.
    pub limits: QueueLimits,
}

impl RegisterEvent {
    /// A registration for `registrations` with the default queue bounds.
    pub fn new(registrations: Vec<EventRegistration>) -> Self {
        RegisterEvent {
            registrations,
            limits: QueueLimits::default(),
        }
    }
}

/// `PeerGraphRegisterEvent` for actix applications: deliver the selected events as
/// [`PeerEvent`] messages to `recipient`, in order. The registration queues them with the
/// default [`QueueLimits`]; a recipient that falls behind fills its mailbox, then that
/// queue, and then holds back the links whose data it takes (nothing is lost; other events
/// past the queue's bound are counted in one EventsLost).
///
/// # Errors
/// `E_INVALIDARG` (no registrations).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<EventHandle, PeerError>")]
pub struct RegisterEventRecipient {
    /// Which events.
    pub registrations: Vec<EventRegistration>,
    /// Who receives them.
    pub recipient: Recipient<PeerEvent>,
}

/// `PeerGraphUnregisterEvent`: end a registration; its stream ends after what is queued.
///
/// # Errors
/// `E_INVALIDARG` (no registration with that handle in this graph).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<(), PeerError>")]
pub struct UnregisterEvent {
    /// The registration's handle.
    pub handle: EventHandle,
}

/// `PeerGraphClose`: close the graph. Every connection ends (QUIC close code LEAVING),
/// every registration's stream ends, the endpoint closes, and every later call with the
/// handle returns `PEER_E_INVALID_GRAPH`.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<(), PeerError>")]
pub struct CloseGraph;

/// Counters of one graph, for tests and monitoring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GraphCounters {
    /// Connections in the table.
    pub connections: usize,
    /// Outgoing connections still being made.
    pub pending_outgoing: usize,
    /// Incoming handshakes in progress.
    pub pending_incoming: usize,
    /// QUIC connections the graph's endpoints still hold, closed ones included: quinn keeps
    /// a closed connection for three probe timeouts (so that late packets still get the
    /// close) and frees its state only then. Zero once every link has fully gone.
    pub quic_connections: usize,
    /// How many times the graph's endpoints were renewed to give back quinn's memory (see
    /// [`GraphOptions::renew_endpoints_after`](crate::GraphOptions::renew_endpoints_after)).
    pub endpoint_renewals: u64,
}

/// The graph's [`GraphCounters`].
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<GraphCounters, PeerError>")]
pub struct GetCounters;

/// `GraphMetrics`: the graph's [`GraphMetrics`]: links open now and totals since it was
/// created or opened (links opened, bytes, closes by result code, links ended by why,
/// events lost, handshakes refused by reason). [`GetCounters`] stays as it was, for the
/// graph's internals (QUIC connections held, endpoint renewals).
///
/// # Errors
/// Only the common codes: `PEER_E_INVALID_GRAPH` once the graph is closed,
/// `PEER_E_NOT_INITIALIZED` after the last shutdown.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<GraphMetrics, PeerError>")]
pub struct GetMetrics;

/// Transport statistics of one live connection, from its QUIC link (quinn's
/// `Connection::stats`). Not part of the Windows API: for monitoring, such as a peer host's
/// `stats` command. Byte counts are UDP payload bytes, so they include QUIC and TLS
/// overhead and retransmissions, not only application data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionStats {
    /// The connection's id.
    pub connection_id: ConnectionId,
    /// Bytes sent in UDP datagrams on this link.
    pub bytes_sent: u64,
    /// Bytes received in UDP datagrams on this link.
    pub bytes_received: u64,
    /// The current smoothed round-trip time estimate.
    pub rtt: Duration,
    /// The congestion controller's current window, in bytes.
    pub congestion_window: u64,
    /// Packets deemed lost so far.
    pub lost_packets: u64,
}

impl ConnectionStats {
    pub(crate) fn from_quinn(connection_id: ConnectionId, stats: &quinn::ConnectionStats) -> Self {
        ConnectionStats {
            connection_id,
            bytes_sent: stats.udp_tx.bytes,
            bytes_received: stats.udp_rx.bytes,
            rtt: stats.path.rtt,
            congestion_window: stats.path.cwnd,
            lost_packets: stats.path.lost_packets,
        }
    }
}

/// The [`ConnectionStats`] of one connection. For every connection, send
/// [`EnumConnections`] and then this message for each id it lists (a connection may end
/// between the two: its id then answers `PEER_E_CONNECTION_NOT_FOUND`).
///
/// # Errors
/// `PEER_E_CONNECTION_NOT_FOUND` (no connection with that id, or
/// it is closing).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<ConnectionStats, PeerError>")]
pub struct GetConnectionStats {
    /// The connection's id.
    pub connection_id: ConnectionId,
}

/// Where the answer of a close started by `GraphActor::start_close` comes.
pub(crate) struct CloseAnswer(pub(super) oneshot::Receiver<Result<(), PeerError>>);

impl CloseAnswer {
    /// The close's answer. A close whose reply was dropped unanswered found the actor gone
    /// (the peer closed or the link failed between the lookup and the Close): the
    /// connection was gone already.
    pub(crate) async fn outcome(self) -> Result<(), PeerError> {
        self.0.await.unwrap_or(Err(PeerError::CONNECTION_NOT_FOUND))
    }
}

/// The facade's way to close: the same as [`CloseDirectConnection`], but with the channel
/// the answer goes to, whoever gives it: the graph when it answers at once, the
/// connection actor otherwise. So the caller's task is woken once, by the answer, and not
/// also by the graph's handler, while the DISCONNECT is on its way.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StartClose {
    pub(crate) connection_id: ConnectionId,
    pub(crate) reply: CloseReply,
}

/// Closes the graph whatever the engine's state (used by the last shutdown).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub(crate) struct Release;
