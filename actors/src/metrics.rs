//! A graph's cumulative counters, for monitoring: [`GraphMetrics`], what
//! [`GetMetrics`](crate::GetMetrics) and [`Graph::metrics`](crate::Graph::metrics) answer.
//!
//! The graph actor keeps them as plain integers in a [`Tally`] and adds to them where it
//! already decides what happens (a link adopted, a link ended, a CONNECT refused), so the
//! hot paths pay one increment and the data path nothing. Every breakdown is keyed by a
//! fixed enum, never by anything a peer sends, so the counters stay bounded.

use peergraph_engine::graph_core::EndReason;
use peergraph_engine::wire::RefuseReason;
use peergraph_engine::ResultCode;

/// The codes a [`CloseDirectConnection`](crate::CloseDirectConnection) of a live link can
/// answer, in the order [`GraphMetrics::closes`] lists them.
pub const CLOSE_CODES: [ResultCode; 5] = [
    ResultCode::S_OK,
    ResultCode::PEER_E_TIMEOUT,
    ResultCode::PEER_E_CONNECTION_FAILED,
    ResultCode::PEER_E_CONNECTION_NOT_FOUND,
    ResultCode::PEER_E_INVALID_GRAPH,
];

/// Where [`CLOSE_CODES`] has `PEER_E_CONNECTION_FAILED`.
const CLOSE_FAILED: usize = 2;

/// Why a link ended, as [`GraphMetrics::links_ended`] counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkEnd {
    /// This node's application closed it (CloseDirectConnection).
    LocalClose,
    /// The peer closed it (DISCONNECT, or its QUIC close).
    RemoteClose,
    /// The graph closed, or the engine shut down.
    GraphClosed,
    /// A close did not complete within the close timeout.
    CloseTimedOut,
    /// The link failed: idle timeout, transport error, the peer vanished.
    Lost,
    /// The peer broke the protocol.
    ProtocolError,
    /// The link's connection actor ended without saying why (it panicked).
    Aborted,
}

impl LinkEnd {
    /// Every kind, in the order [`GraphMetrics::links_ended`] lists them.
    pub const ALL: [LinkEnd; 7] = [
        LinkEnd::LocalClose,
        LinkEnd::RemoteClose,
        LinkEnd::GraphClosed,
        LinkEnd::CloseTimedOut,
        LinkEnd::Lost,
        LinkEnd::ProtocolError,
        LinkEnd::Aborted,
    ];

    /// A short snake_case name, such as `remote_close` (a metric label's value).
    pub fn label(self) -> &'static str {
        match self {
            LinkEnd::LocalClose => "local_close",
            LinkEnd::RemoteClose => "remote_close",
            LinkEnd::GraphClosed => "graph_closed",
            LinkEnd::CloseTimedOut => "close_timed_out",
            LinkEnd::Lost => "lost",
            LinkEnd::ProtocolError => "protocol_error",
            LinkEnd::Aborted => "aborted",
        }
    }

    fn of(reason: &EndReason) -> Self {
        match reason {
            EndReason::LocalClose => LinkEnd::LocalClose,
            EndReason::RemoteClose => LinkEnd::RemoteClose,
            EndReason::GraphClosed => LinkEnd::GraphClosed,
            EndReason::CloseTimedOut => LinkEnd::CloseTimedOut,
            EndReason::Lost(_) => LinkEnd::Lost,
            EndReason::ProtocolError(_) => LinkEnd::ProtocolError,
            EndReason::Aborted => LinkEnd::Aborted,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Why this node refused an incoming handshake, as [`GraphMetrics::refused`] counts it:
/// the reason of the REFUSE it answered a CONNECT with, or
/// [`TooManyHandshakes`](Refusal::TooManyHandshakes) for a QUIC connection refused before
/// any CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Too many connections (REFUSE BUSY; never sent for direct connections).
    Busy,
    /// A connection between the two nodes already exists.
    AlreadyConnected,
    /// The CONNECT's connection id is in use here.
    DuplicateConnection,
    /// This node does not take direct connections (it has not registered for
    /// DIRECT_CONNECTION events).
    DirectConnectionDisallowed,
    /// The CONNECT named another graph.
    WrongGraph,
    /// The CONNECT named another peer id.
    WrongPeer,
    /// The CONNECT's protocol version is not supported.
    UnsupportedVersion,
    /// The graph, or the connecting node, is at its connection limit.
    LimitReached,
    /// The connecting node did not prove membership (no or another secret, a key not
    /// allowed).
    NotAuthorized,
    /// The connecting node's key is allowed for another peer id.
    KeyMismatch,
    /// Refused at QUIC level, before any CONNECT: the graph had its most pending
    /// handshakes, in all or from that source (a flood's signature).
    TooManyHandshakes,
}

impl Refusal {
    /// Every reason, in the order [`GraphMetrics::refused`] lists them.
    pub const ALL: [Refusal; 11] = [
        Refusal::Busy,
        Refusal::AlreadyConnected,
        Refusal::DuplicateConnection,
        Refusal::DirectConnectionDisallowed,
        Refusal::WrongGraph,
        Refusal::WrongPeer,
        Refusal::UnsupportedVersion,
        Refusal::LimitReached,
        Refusal::NotAuthorized,
        Refusal::KeyMismatch,
        Refusal::TooManyHandshakes,
    ];

    /// A short snake_case name, such as `not_authorized` (a metric label's value).
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Busy => "busy",
            Refusal::AlreadyConnected => "already_connected",
            Refusal::DuplicateConnection => "duplicate_connection",
            Refusal::DirectConnectionDisallowed => "direct_connection_disallowed",
            Refusal::WrongGraph => "wrong_graph",
            Refusal::WrongPeer => "wrong_peer",
            Refusal::UnsupportedVersion => "unsupported_version",
            Refusal::LimitReached => "limit_reached",
            Refusal::NotAuthorized => "not_authorized",
            Refusal::KeyMismatch => "key_mismatch",
            Refusal::TooManyHandshakes => "too_many_handshakes",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl From<RefuseReason> for Refusal {
    fn from(reason: RefuseReason) -> Self {
        match reason {
            RefuseReason::Busy => Refusal::Busy,
            RefuseReason::AlreadyConnected => Refusal::AlreadyConnected,
            RefuseReason::DuplicateConnection => Refusal::DuplicateConnection,
            RefuseReason::DirectConnectionDisallowed => Refusal::DirectConnectionDisallowed,
            RefuseReason::WrongGraph => Refusal::WrongGraph,
            RefuseReason::WrongPeer => Refusal::WrongPeer,
            RefuseReason::UnsupportedVersion => Refusal::UnsupportedVersion,
            RefuseReason::LimitReached => Refusal::LimitReached,
            RefuseReason::NotAuthorized => Refusal::NotAuthorized,
            RefuseReason::KeyMismatch => Refusal::KeyMismatch,
        }
    }
}

/// A graph's counters: what it holds now, and totals since it was created or opened.
///
/// Only direct connections exist so far (neighbor connections are not implemented), so
/// every link counted here is a direct connection. Totals only grow while the graph is
/// open; they start at zero each time a graph is created or opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphMetrics {
    /// Direct connections open now (in the table).
    pub direct_connections: u64,
    /// Outgoing connections being made now.
    pub pending_outgoing: u64,
    /// Incoming handshakes in progress now.
    pub pending_incoming: u64,
    /// Direct connections other nodes opened to this one (handshake completed).
    pub opened_incoming: u64,
    /// Direct connections this node opened (handshake completed).
    pub opened_outgoing: u64,
    /// This node's OpenDirectConnection attempts that failed (CONNECTION_FAILED raised:
    /// refused, unreachable, not authenticated or not authorized).
    pub outgoing_failed: u64,
    /// Bytes sent in UDP datagrams on the graph's links, ended links included. As in
    /// [`ConnectionStats`](crate::ConnectionStats), they include QUIC and TLS overhead and
    /// retransmissions.
    pub bytes_sent: u64,
    /// Bytes received in UDP datagrams on the graph's links, ended links included.
    pub bytes_received: u64,
    /// The closes of live links by this node's CloseDirectConnection, by the code each
    /// was answered with, one entry for each of [`CLOSE_CODES`] in that order (zeros
    /// included). A close answered at once (no link with that id, or its close already
    /// under way: `PEER_E_CONNECTION_NOT_FOUND`) closed nothing and is not counted; one
    /// that finds the peer closing first is counted with that code.
    pub closes: Vec<(ResultCode, u64)>,
    /// The links that ended, whoever ended them, by why: one entry for each of
    /// [`LinkEnd::ALL`] in that order.
    pub links_ended: Vec<(LinkEnd, u64)>,
    /// Events the graph's registrations lost because their readers fell behind: the sum
    /// of the counts of the EventsLost events raised (or still to be raised).
    pub events_lost: u64,
    /// Incoming handshakes refused, by reason: one entry for each of [`Refusal::ALL`] in
    /// that order.
    pub refused: Vec<(Refusal, u64)>,
    /// Incoming QUIC connections asked to prove their address (a stateless Retry) because
    /// many handshakes were running.
    pub handshakes_retried: u64,
    /// Incoming handshakes that ended without a CONNECT: TLS failed, the peer sent
    /// something else, or the connect timeout passed.
    pub handshakes_failed: u64,
    /// Of the links opened (either way), those whose CONNECT came as 0-RTT data on a
    /// resumed handshake (see [`GraphOptions::zero_rtt`](crate::GraphOptions::zero_rtt)).
    pub opened_early: u64,
    /// This node's outgoing attempts whose 0-RTT CONNECT the other node refused (it no
    /// longer had the session, or is another node): CONNECT went again once the handshake
    /// completed and the checks passed. Counted whatever the attempt's outcome.
    pub early_rejected: u64,
    /// Incoming links whose CONNECT came as 0-RTT data (welcomed at once, or held until the
    /// handshake completes) and whose handshake then did not complete within the TLS
    /// timeout: never admitted, no CONNECTED raised. A replayed first flight whose ticket
    /// was not used yet ends here (one whose ticket was used finds no session, and counts
    /// in `handshakes_failed`).
    pub early_unconfirmed: u64,
}

impl GraphMetrics {
    /// How many closes were answered with `code` (0 for a code not in [`CLOSE_CODES`]).
    pub fn closes_with(&self, code: ResultCode) -> u64 {
        count_of(&self.closes, code)
    }

    /// How many links ended for `end`.
    pub fn ended(&self, end: LinkEnd) -> u64 {
        count_of(&self.links_ended, end)
    }

    /// How many incoming handshakes were refused for `reason`.
    pub fn refused_for(&self, reason: Refusal) -> u64 {
        count_of(&self.refused, reason)
    }
}

fn count_of<K: PartialEq>(counts: &[(K, u64)], key: K) -> u64 {
    counts
        .iter()
        .find(|(each, _)| *each == key)
        .map_or(0, |(_, count)| *count)
}

/// The totals a graph actor keeps: integers it adds to in its own handlers.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) opened_incoming: u64,
    pub(crate) opened_outgoing: u64,
    pub(crate) outgoing_failed: u64,
    pub(crate) handshakes_retried: u64,
    pub(crate) handshakes_failed: u64,
    pub(crate) opened_early: u64,
    pub(crate) early_unconfirmed: u64,
    /// UDP bytes of the links that have ended, as quinn counted them at their end.
    ended_sent: u64,
    ended_received: u64,
    /// The byte totals last reported: a link's last bytes (its close, sent after its
    /// count was taken) could otherwise make a total dip, and a counter never goes down.
    reported_sent: u64,
    reported_received: u64,
    closes: [u64; CLOSE_CODES.len()],
    links_ended: [u64; LinkEnd::ALL.len()],
    refused: [u64; Refusal::ALL.len()],
}

/// What a graph knows about a link at its end.
pub(crate) struct LinkTotals<'a> {
    pub(crate) reason: &'a EndReason,
    /// The answer of a close under way, if one was asked for.
    pub(crate) close_answer: Option<ResultCode>,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
}

/// What the graph holds now, beside the totals.
pub(crate) struct Current {
    pub(crate) direct_connections: usize,
    pub(crate) pending_outgoing: usize,
    pub(crate) pending_incoming: usize,
    /// UDP bytes sent and received so far on the links open now.
    pub(crate) live_sent: u64,
    pub(crate) live_received: u64,
    pub(crate) events_lost: u64,
    /// Outgoing attempts whose 0-RTT data was refused (the graph's dialer counts them).
    pub(crate) early_rejected: u64,
}

impl Tally {
    /// A link ended.
    pub(crate) fn link_ended(&mut self, link: LinkTotals<'_>) {
        self.links_ended[LinkEnd::of(link.reason).index()] += 1;
        if let Some(code) = link.close_answer {
            // The link machine answers only the codes in the list; anything else is a
            // failure of the close.
            let index = CLOSE_CODES
                .iter()
                .position(|each| *each == code)
                .unwrap_or(CLOSE_FAILED);
            self.closes[index] += 1;
        }
        self.ended_sent = self.ended_sent.saturating_add(link.bytes_sent);
        self.ended_received = self.ended_received.saturating_add(link.bytes_received);
    }

    /// An incoming handshake was refused.
    pub(crate) fn refused(&mut self, reason: Refusal) {
        self.refused[reason.index()] += 1;
    }

    /// The metrics, with what the graph holds `now`.
    pub(crate) fn metrics(&mut self, now: Current) -> GraphMetrics {
        let sent = self.ended_sent.saturating_add(now.live_sent);
        let received = self.ended_received.saturating_add(now.live_received);
        self.reported_sent = self.reported_sent.max(sent);
        self.reported_received = self.reported_received.max(received);
        GraphMetrics {
            direct_connections: now.direct_connections as u64,
            pending_outgoing: now.pending_outgoing as u64,
            pending_incoming: now.pending_incoming as u64,
            opened_incoming: self.opened_incoming,
            opened_outgoing: self.opened_outgoing,
            outgoing_failed: self.outgoing_failed,
            bytes_sent: self.reported_sent,
            bytes_received: self.reported_received,
            closes: CLOSE_CODES.into_iter().zip(self.closes).collect(),
            links_ended: LinkEnd::ALL.into_iter().zip(self.links_ended).collect(),
            events_lost: now.events_lost,
            refused: Refusal::ALL.into_iter().zip(self.refused).collect(),
            handshakes_retried: self.handshakes_retried,
            handshakes_failed: self.handshakes_failed,
            opened_early: self.opened_early,
            early_rejected: now.early_rejected,
            early_unconfirmed: self.early_unconfirmed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now(live_sent: u64) -> Current {
        Current {
            direct_connections: 0,
            pending_outgoing: 0,
            pending_incoming: 0,
            live_sent,
            live_received: 0,
            events_lost: 0,
            early_rejected: 0,
        }
    }

    #[test]
    fn the_indexes_follow_the_lists() {
        for (index, end) in LinkEnd::ALL.into_iter().enumerate() {
            assert_eq!(end.index(), index);
        }
        for (index, reason) in Refusal::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), index);
        }
        assert_eq!(
            CLOSE_CODES[CLOSE_FAILED],
            ResultCode::PEER_E_CONNECTION_FAILED
        );
    }

    #[test]
    fn a_link_end_counts_its_reason_its_close_and_its_bytes() {
        let mut tally = Tally::default();
        tally.link_ended(LinkTotals {
            reason: &EndReason::LocalClose,
            close_answer: Some(ResultCode::S_OK),
            bytes_sent: 100,
            bytes_received: 40,
        });
        tally.link_ended(LinkTotals {
            reason: &EndReason::RemoteClose,
            close_answer: None,
            bytes_sent: 1,
            bytes_received: 2,
        });
        tally.link_ended(LinkTotals {
            reason: &EndReason::CloseTimedOut,
            close_answer: Some(ResultCode::E_FAIL),
            bytes_sent: 0,
            bytes_received: 0,
        });
        let metrics = tally.metrics(now(5));
        assert_eq!(metrics.ended(LinkEnd::LocalClose), 1);
        assert_eq!(metrics.ended(LinkEnd::RemoteClose), 1);
        assert_eq!(metrics.ended(LinkEnd::Lost), 0);
        assert_eq!(metrics.closes_with(ResultCode::S_OK), 1);
        // A code outside the list counts as a failed close.
        assert_eq!(metrics.closes_with(ResultCode::PEER_E_CONNECTION_FAILED), 1);
        assert_eq!(metrics.closes.len(), CLOSE_CODES.len());
        assert_eq!((metrics.bytes_sent, metrics.bytes_received), (106, 42));
    }

    #[test]
    fn byte_totals_never_go_down() {
        let mut tally = Tally::default();
        // A live link had sent 50 bytes; it ends having counted 45 at its end.
        assert_eq!(tally.metrics(now(50)).bytes_sent, 50);
        tally.link_ended(LinkTotals {
            reason: &EndReason::LocalClose,
            close_answer: None,
            bytes_sent: 45,
            bytes_received: 0,
        });
        assert_eq!(tally.metrics(now(0)).bytes_sent, 50);
        assert_eq!(tally.metrics(now(10)).bytes_sent, 55);
    }

    #[test]
    fn refusals_count_by_reason() {
        let mut tally = Tally::default();
        tally.refused(RefuseReason::NotAuthorized.into());
        tally.refused(Refusal::TooManyHandshakes);
        tally.refused(Refusal::TooManyHandshakes);
        let metrics = tally.metrics(now(0));
        assert_eq!(metrics.refused_for(Refusal::NotAuthorized), 1);
        assert_eq!(metrics.refused_for(Refusal::TooManyHandshakes), 2);
        assert_eq!(metrics.refused_for(Refusal::WrongGraph), 0);
        assert_eq!(metrics.refused.len(), Refusal::ALL.len());
    }
}
