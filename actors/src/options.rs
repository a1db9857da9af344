//! The settings of a graph ([`GraphOptions`]), who may join it ([`Membership`]), and the
//! defaults with the reasons for their values.

use std::path::PathBuf;
use std::time::Duration;

use peergraph_engine::graph_core::{Admission, AllowList, Limits};
use peergraph_engine::{PeerError, PeerId, PeerKey, RecordSecurity};
use peergraph_transport::{
    Congestion, GraphSecret, NodeIdentity, DEFAULT_IDLE_TIMEOUT, MAX_IDLE_TIMEOUT, MIN_IDLE_TIMEOUT,
};

/// The default bound on making a connection (QUIC + TLS + CONNECT/WELCOME): past it the
/// attempt ends with CONNECTION_FAILED (PEER_E_CONNECTION_FAILED).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default bound on the QUIC and TLS part of an incoming handshake: a connection that
/// has not completed TLS (so has not proved it holds a key) this long after it arrived is
/// dropped, and its slot freed; CONNECT must then come within the rest of
/// [`GraphOptions::connect_timeout`]. TLS takes two round trips; 3 s leaves room for a
/// 300 ms path and one lost flight (quinn's first probe timeout is about 1 s), while a
/// stranger holding a slot without a certificate costs the node 3 s of it, not 10 s.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
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

/// The default most incoming handshakes from one source at once (an IPv4 address, or an
/// IPv6 /64): 8 lets a host behind one address (a NAT, a test running many nodes) open a
/// few links at once, while a single address can hold at most 1/16 of the default 128
/// slots.
pub const DEFAULT_MAX_PENDING_HANDSHAKES_PER_SOURCE: usize = 8;

/// The divisor of the default Retry threshold ([`GraphOptions::retry_threshold`]): once a
/// quarter of the handshake slots are taken, a source must prove its address (a QUIC Retry,
/// one round trip more) before it gets a slot. Below that a node under no load answers at
/// once; above it a spoofed flood can hold at most that quarter, for the
/// [TLS handshake timeout](DEFAULT_TLS_HANDSHAKE_TIMEOUT) each.
pub const RETRY_THRESHOLD_DIVISOR: usize = 4;

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
    /// How long an incoming connection may take to complete its QUIC and TLS handshake
    /// (at most [`connect_timeout`](Self::connect_timeout)); CONNECT must then come within
    /// the rest of the connect timeout. Bounds what a peer that has not proved a key can
    /// hold. Zero is out of range (`E_INVALIDARG`).
    pub tls_handshake_timeout: Duration,
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
    /// The most incoming handshakes in progress at once; more are refused at the QUIC level
    /// (the connecting node sees PEER_E_CONNECTION_REFUSED). Zero is out of range
    /// (`E_INVALIDARG`).
    pub max_pending_handshakes: usize,
    /// The most incoming handshakes in progress at once from one source (an IPv4 address,
    /// or an IPv6 /64 prefix); more from it are refused at the QUIC level
    /// (PEER_E_CONNECTION_REFUSED), so that one address cannot take every slot. A node
    /// that expects one host to open more connections to it at once than this (a test
    /// harness, a gateway in front of many peers) raises it. Zero is out of range
    /// (`E_INVALIDARG`).
    pub max_pending_handshakes_per_source: usize,
    /// From how many incoming handshakes in progress a connection whose source address is
    /// not yet validated is answered with a QUIC Retry instead of a slot (the client
    /// comes back with a token, one round trip later; a spoofed source never does).
    /// `None` (the default) is a quarter of
    /// [`max_pending_handshakes`](Self::max_pending_handshakes)
    /// ([`RETRY_THRESHOLD_DIVISOR`]); `Some(0)` validates every address; a value at or
    /// above `max_pending_handshakes` never does.
    pub retry_threshold: Option<usize>,
    /// What all the graph's links together may hold for an application that does not
    /// read: each link's QUIC receive window is `receive_budget / links`, rounded down to
    /// a power of two, between 16 KiB and quinn's 1.25 MB. An application that stops
    /// reading holds at most this, plus its registrations' queues, plus what each link read
    /// and waits to hand over (one DATA frame, or the small frames of one packet). At least
    /// 16 KiB.
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
    /// Where the graph's record database lives on disk: `None` (the default) keeps
    /// records in memory only, gone when the graph closes.
    pub database: Option<DatabaseLocation>,
    /// The security callbacks records pass (both or neither: `E_INVALIDARG` otherwise).
    pub security: RecordSecurity,
    /// Whether links resume TLS sessions and send CONNECT as 0-RTT data (on by default).
    /// The node's server hands out single-use tickets, and its client keeps them per
    /// address and pinned key; a second link to a node then takes one round trip fewer
    /// and no certificate signature. The accepting node admits such a link only once its
    /// handshake completes, so a replayed first flight admits nothing, and judges it on the
    /// key of the session's first, full handshake against the allow-list as it is now.
    /// A graph with a secret resumes but sends no CONNECT before the handshake completes.
    /// `docs/SECURITY.md` has the details; off, every link is a full handshake.
    pub zero_rtt: bool,
}

/// Where a graph's database file is: one file per (graph id, peer id, database name)
/// under `directory` (created when missing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseLocation {
    /// The directory the application chose.
    pub directory: PathBuf,
    /// The database name (`pwzDatabaseName`): 1 to 256 characters.
    pub name: String,
}

impl Default for GraphOptions {
    fn default() -> Self {
        GraphOptions {
            identity: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            close_bound: DEFAULT_CLOSE_BOUND,
            congestion: Congestion::default(),
            membership: Membership::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_node: DEFAULT_MAX_CONNECTIONS_PER_NODE,
            max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
            max_pending_handshakes_per_source: DEFAULT_MAX_PENDING_HANDSHAKES_PER_SOURCE,
            retry_threshold: None,
            receive_budget: DEFAULT_RECEIVE_BUDGET,
            renew_endpoints_after: DEFAULT_RENEW_ENDPOINTS_AFTER,
            database: None,
            security: RecordSecurity::default(),
            zero_rtt: true,
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

    /// Sets the bounds on incoming handshakes in progress: in all, and from one source.
    pub fn with_handshake_limits(mut self, in_all: usize, per_source: usize) -> Self {
        self.max_pending_handshakes = in_all;
        self.max_pending_handshakes_per_source = per_source;
        self
    }

    /// Sets how many incoming handshakes may run before an unvalidated address gets a
    /// QUIC Retry (see [`GraphOptions::retry_threshold`]).
    pub fn with_retry_threshold(mut self, handshakes: usize) -> Self {
        self.retry_threshold = Some(handshakes);
        self
    }

    /// Sets the bound on the QUIC and TLS part of an incoming handshake (see
    /// [`GraphOptions::tls_handshake_timeout`]).
    pub fn with_tls_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.tls_handshake_timeout = timeout;
        self
    }

    /// Keeps the graph's records in the database `name` under `directory` (see
    /// [`GraphOptions::database`]).
    pub fn with_database(mut self, directory: impl Into<PathBuf>, name: impl Into<String>) -> Self {
        self.database = Some(DatabaseLocation {
            directory: directory.into(),
            name: name.into(),
        });
        self
    }

    /// Sets the security callbacks (see [`RecordSecurity`]).
    pub fn with_security(mut self, security: RecordSecurity) -> Self {
        self.security = security;
        self
    }

    /// Turns TLS resumption and 0-RTT on or off (see [`GraphOptions::zero_rtt`]).
    pub fn with_zero_rtt(mut self, zero_rtt: bool) -> Self {
        self.zero_rtt = zero_rtt;
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
            || !positive(self.tls_handshake_timeout)
            || !positive(self.close_timeout)
            || self.close_bound < self.close_timeout
            || self.max_connections == 0
            || self.max_connections_per_node == 0
            || self.max_pending_handshakes == 0
            || self.max_pending_handshakes_per_source == 0
            || self.receive_budget < peergraph_engine::graph_core::MIN_LINK_WINDOW
            || self.renew_endpoints_after == 0
        {
            return Err(PeerError::INVALID_ARG);
        }
        self.security.check()?;
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
            max_pending_handshakes_per_source: self.max_pending_handshakes_per_source,
            retry_threshold: self
                .retry_threshold
                .unwrap_or(self.max_pending_handshakes / RETRY_THRESHOLD_DIVISOR),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_threshold_defaults_to_a_quarter_of_the_slots() {
        let options = GraphOptions::default();
        assert_eq!(
            options.limits().retry_threshold,
            DEFAULT_MAX_PENDING_HANDSHAKES / RETRY_THRESHOLD_DIVISOR
        );
        let options = options.with_handshake_limits(16, 4);
        let limits = options.limits();
        assert_eq!(
            (
                limits.max_pending_handshakes,
                limits.max_pending_handshakes_per_source,
                limits.retry_threshold
            ),
            (16, 4, 4),
            "a quarter of the slots set"
        );
        assert_eq!(options.with_retry_threshold(0).limits().retry_threshold, 0);
    }

    #[test]
    fn handshake_bounds_out_of_range_are_invalid() {
        assert!(GraphOptions::default().validate().is_ok());
        let invalid = [
            GraphOptions::default().with_handshake_limits(0, 8),
            GraphOptions::default().with_handshake_limits(128, 0),
            GraphOptions::default().with_tls_handshake_timeout(Duration::ZERO),
        ];
        for options in invalid {
            assert_eq!(
                options.validate(),
                Err(PeerError::INVALID_ARG),
                "{options:?}"
            );
        }
        // Any threshold is valid: 0 validates every address, a large one none.
        assert!(GraphOptions::default()
            .with_retry_threshold(usize::MAX)
            .validate()
            .is_ok());
    }
}
