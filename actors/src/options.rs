//! The settings of a graph ([`GraphOptions`]), who may join it ([`Membership`]), and the
//! defaults with the reasons for their values.

use std::time::Duration;

use peergraph_engine::graph_core::{Admission, AllowList, Limits};
use peergraph_engine::{PeerError, PeerId, PeerKey};
use peergraph_transport::{
    Congestion, GraphSecret, NodeIdentity, DEFAULT_IDLE_TIMEOUT, MAX_IDLE_TIMEOUT, MIN_IDLE_TIMEOUT,
};

/// The default bound on making a connection (QUIC + TLS + CONNECT/WELCOME): past it the
/// attempt ends with CONNECTION_FAILED (PEER_E_CONNECTION_FAILED).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default time CloseDirectConnection waits for a peer that makes no progress (takes
/// and acknowledges none of the data still on its way, sends nothing): past it the link
/// is cut and the reply is PEER_E_TIMEOUT. A peer that keeps making progress is waited
/// for up to [`DEFAULT_CLOSE_BOUND`].
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The default overall bound on a close, however much progress the peer makes: 60 s, a
/// minute for the data a close still flushes (at most the 2 MiB outbox plus quinn's send
/// buffer) on a slow link.
pub const DEFAULT_CLOSE_BOUND: Duration = Duration::from_secs(60);

/// The default receive budget of a graph: 256 MiB for what all its links together may
/// hold for an application that does not read. Each link's QUIC receive window is its
/// share: quinn's 1.25 MB with up to 214 links, 16 KiB each at 16,384 links (see
/// [`GraphOptions::receive_budget`]).
pub const DEFAULT_RECEIVE_BUDGET: u64 = 256 * 1024 * 1024;

/// The default most connections one graph holds.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;
/// The default most connections one graph holds with a single remote node.
pub const DEFAULT_MAX_CONNECTIONS_PER_NODE: usize = 16_384;

/// The default of [`GraphOptions::renew_endpoints_after`]: a graph that has held 1,024
/// links renews its endpoints once they have all gone. quinn keeps about 0.5 KiB per
/// connection of an endpoint's peak, so below this there is little to give back.
pub const DEFAULT_RENEW_ENDPOINTS_AFTER: usize = 1024;

/// The default most incoming handshakes (TLS + CONNECT) one graph runs at once; more are
/// refused at the QUIC level, so a flood of half-open links costs a bounded amount.
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 128;

/// Who may connect to a graph, and whom it may connect to.
///
/// With a secret, both sides of every link prove they know it, bound to that link's TLS
/// session (see `peergraph_transport::membership_proof`). With an allow-list, the
/// verified key of the other side must be listed, for the peer id it claims.
#[derive(Clone, Debug, Default)]
pub struct Membership {
    /// The graph's shared secret, if any.
    pub secret: Option<GraphSecret>,
    /// The allowed keys and the peer id each may use; `None` allows every key.
    pub allowed: Option<AllowList>,
}

impl Membership {
    /// The admission rules these settings give the graph core.
    pub(crate) fn admission(&self) -> Admission {
        Admission {
            proof_required: self.secret.is_some(),
            allowed: self.allowed.clone(),
        }
    }
}

/// Settings of one graph.
#[derive(Clone, Debug)]
pub struct GraphOptions {
    /// The node's identity; `None` generates a fresh key pair and certificate.
    pub identity: Option<NodeIdentity>,
    /// How long a silent link lives (keep-alives go at a third of it). From 100 ms to one
    /// day.
    pub idle_timeout: Duration,
    /// How long making a connection may take.
    pub connect_timeout: Duration,
    /// How long a close waits for a peer that makes no progress (see
    /// [`DEFAULT_CLOSE_TIMEOUT`]).
    pub close_timeout: Duration,
    /// How long a close waits at most, progress or not; at least `close_timeout`.
    pub close_bound: Duration,
    /// The congestion controller of the graph's links.
    pub congestion: Congestion,
    /// Who may connect.
    pub membership: Membership,
    /// The most connections the graph holds: further incoming links are refused (the
    /// connecting node sees PEER_E_CONNECTION_REFUSED). Outgoing links are the
    /// application's own choice and are not counted against it.
    pub max_connections: usize,
    /// The most connections with one remote node: further incoming links from it are
    /// refused.
    pub max_connections_per_node: usize,
    /// The most incoming handshakes in progress at once; more are refused at the QUIC level.
    pub max_pending_handshakes: usize,
    /// What all the graph's links together may hold for an application that does not
    /// read: each link's QUIC receive window is `receive_budget / links`, rounded down to
    /// a power of two, between 16 KiB and quinn's 1.25 MB. An application that stops
    /// reading holds at most this, plus its registrations' queues, plus one DATA frame per
    /// link (the one the link read and waits to hand over). At least 16 KiB.
    pub receive_budget: u64,
    /// When the graph has held at least this many links at once (connections and
    /// handshakes) since its endpoints were made, and then every link has gone, the
    /// endpoints are renewed: the listening one on the same socket, so its address does not
    /// change; client-only ones are bound anew on first use. This gives back the memory
    /// quinn keeps at the size of an endpoint's peak (about 0.5 KiB a connection, never
    /// shrunk). A connection attempt arriving at that instant is answered when the client
    /// sends it again, a probe timeout (about a second) later. `usize::MAX` never renews;
    /// 0 is out of range (`E_INVALIDARG`).
    pub renew_endpoints_after: usize,
}

impl Default for GraphOptions {
    fn default() -> Self {
        GraphOptions {
            identity: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            close_bound: DEFAULT_CLOSE_BOUND,
            congestion: Congestion::default(),
            membership: Membership::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_node: DEFAULT_MAX_CONNECTIONS_PER_NODE,
            max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
            receive_budget: DEFAULT_RECEIVE_BUDGET,
            renew_endpoints_after: DEFAULT_RENEW_ENDPOINTS_AFTER,
        }
    }
}

impl GraphOptions {
    /// Uses `identity` for the node.
    pub fn with_identity(mut self, identity: NodeIdentity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Sets the idle timeout.
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// Sets the connect timeout.
    pub fn with_connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    /// Sets the close timeout (time without progress). The overall bound is raised to it
    /// if it was lower.
    pub fn with_close_timeout(mut self, close_timeout: Duration) -> Self {
        self.close_timeout = close_timeout;
        self.close_bound = self.close_bound.max(close_timeout);
        self
    }

    /// Sets the overall bound on a close (at least the close timeout, or `E_INVALIDARG`).
    pub fn with_close_bound(mut self, close_bound: Duration) -> Self {
        self.close_bound = close_bound;
        self
    }

    /// Sets the congestion controller.
    pub fn with_congestion(mut self, congestion: Congestion) -> Self {
        self.congestion = congestion;
        self
    }

    /// Requires every link to prove knowledge of `secret`.
    pub fn with_secret(mut self, secret: GraphSecret) -> Self {
        self.membership.secret = Some(secret);
        self
    }

    /// Allows the node with key `key`, as peer `peer_id` (the first call turns the
    /// allow-list on: unlisted keys are refused).
    pub fn with_allowed_peer(mut self, key: PeerKey, peer_id: PeerId) -> Self {
        let allowed = self.membership.allowed.take().unwrap_or_default();
        self.membership.allowed = Some(allowed.with(key, peer_id));
        self
    }

    /// Sets the receive budget (see [`GraphOptions::receive_budget`]).
    pub fn with_receive_budget(mut self, bytes: u64) -> Self {
        self.receive_budget = bytes;
        self
    }

    /// Sets the connection limits: per graph and per remote node.
    pub fn with_connection_limits(mut self, per_graph: usize, per_node: usize) -> Self {
        self.max_connections = per_graph;
        self.max_connections_per_node = per_node;
        self
    }

    /// Sets how many links the graph must have held before its endpoints are renewed once
    /// idle (see [`GraphOptions::renew_endpoints_after`]).
    pub fn with_renew_endpoints_after(mut self, links: usize) -> Self {
        self.renew_endpoints_after = links;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), PeerError> {
        let positive = |d: Duration| !d.is_zero();
        if self.idle_timeout < MIN_IDLE_TIMEOUT
            || self.idle_timeout > MAX_IDLE_TIMEOUT
            || !positive(self.connect_timeout)
            || !positive(self.close_timeout)
            || self.close_bound < self.close_timeout
            || self.max_connections == 0
            || self.max_connections_per_node == 0
            || self.max_pending_handshakes == 0
            || self.receive_budget < peergraph_engine::graph_core::MIN_LINK_WINDOW
            || self.renew_endpoints_after == 0
        {
            return Err(PeerError::INVALID_ARG);
        }
        Ok(())
    }
}

impl GraphOptions {
    /// The bounds on links these settings give the graph core.
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            max_connections_per_node: self.max_connections_per_node,
            max_pending_handshakes: self.max_pending_handshakes,
        }
    }
}
