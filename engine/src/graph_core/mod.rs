//! The graph core: every rule of one graph and its links, with no I/O.
//!
//! As `quinn-proto` holds the whole of QUIC while `quinn` only moves bytes and timers,
//! [`GraphCore`] holds what a graph decides, and the actors only carry it out:
//! - admission of a handshake before it starts (a QUIC Retry under load, the bounds on
//!   half-open handshakes in all and per source: [`GraphCore::incoming_started`]);
//! - admission of a link ([`admission`](self) rules: version, graph, peer, allow-list,
//!   membership proof, neighbor or direct, limits, duplicate ids, and the code an outgoing
//!   attempt ends with);
//! - the connection table and its invariants (links per remote node, outgoing attempts and
//!   incoming handshakes under way, in all and per source address, the peak that decides
//!   when the table gives its room back);
//! - the graph's status and the events its changes raise;
//! - per link, the [`LinkMachine`]: what the control stream may carry and the close of
//!   docs/PROTOCOL.md §3.4, with time passed in.
//!
//! One [`GraphCore`] per graph is the entry point the mesh, flooding and synchronization
//! extend; one [`LinkMachine`] per link is driven by that link's own driver, as
//! `quinn-proto` has one `Connection` per connection beside its `Endpoint`, so that a
//! link's frames never wait behind the graph. Events to raise are polled with
//! [`GraphCore::poll_event`] after each call; a call raises at most two (a connection
//! change and the status it leads to), so the queue stays small when the driver drains it
//! after every call.
//!
//! ```text
//!  driver ──check_open/start_outgoing/outgoing_ended──▶ GraphCore ──▶ Connect / Adopt / Failed
//!  driver ──incoming_started(source, validated)──────▶ GraphCore ──▶ Accept / Retry / Refuse
//!  driver ──on_connect/incoming_ended(source)────────▶ GraphCore ──▶ Welcome / Refuse / Leave
//!  driver ──start_close/link_ended/release───────────▶ GraphCore ──▶ table changes
//!  GraphCore ──poll_event──▶ driver ──▶ registrations
//!  link driver ──frames, FIN, loss, timer(now)──▶ LinkMachine ──poll_action──▶ link driver
//! ```

mod admission;
mod link;
mod links;
mod records;
mod window;

#[cfg(test)]
mod link_tests;
#[cfg(test)]
mod records_tests;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

pub use self::admission::{
    judge_answer, refusal_code, refusal_error, Admission, AllowList, Answer, HandshakeAdmission,
    HandshakeFailure, IncomingConnect,
};
pub use self::link::{
    Cause, CloseStart, EndReason, Finished, LinkAction, LinkLoss, LinkMachine, Violation,
};
use self::links::Attempt;
pub use self::links::{LinkEntry, Peak, Source, ROOM_KEPT};
pub use self::records::{
    RecordBook, Write, WriteToken, MAX_HELD, MAX_WRITES_IN_FLIGHT, REFRESH_MARGIN, RETRY_AFTER,
    TICK_LIMIT,
};
pub use self::window::{WindowShare, MAX_LINK_WINDOW, MIN_LINK_WINDOW};

use self::admission::Judge;
use self::links::{shrink_if_sparse, Links};
use crate::event::{ConnectionChange, ConnectionStatus, GraphEvent};
use crate::graph::{ConnectionFlags, ConnectionInfo, GraphStatus, NodeInfo};
use crate::ids::{ConnectionId, GraphId, NodeId, PeerId, PeerKey};
use crate::result::{PeerError, ResultCode};
use crate::wire::{Connect, RefuseReason, Welcome, PROTOCOL_VERSION};

/// The bounds on one graph's links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most connections the graph holds: further incoming links are refused. Outgoing
    /// links are the application's own choice and are not refused, but they count.
    pub max_connections: usize,
    /// The most links with one remote node: further incoming links from it are refused.
    pub max_connections_per_node: usize,
    /// The most incoming handshakes at once: more are refused before they start.
    pub max_pending_handshakes: usize,
    /// The most incoming handshakes at once from one [`Source`]: more from it are refused,
    /// so that one address cannot take every slot.
    pub max_pending_handshakes_per_source: usize,
    /// From this many incoming handshakes under way, a connection whose source address is
    /// not validated gets a QUIC Retry instead of a slot: under load, only a client that
    /// proves it receives at its address may spend one. 0 validates every address; a
    /// value at or above `max_pending_handshakes` never does.
    pub retry_threshold: usize,
}

/// What a graph core starts with.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// The graph's id.
    pub graph_id: GraphId,
    /// This node's peer id in the graph.
    pub peer_id: PeerId,
    /// This node's id (from its key).
    pub node_id: NodeId,
    /// Who may be linked with.
    pub admission: Admission,
    /// The bounds on links.
    pub limits: Limits,
    /// Whether the node's data has synchronized (it may listen).
    pub synchronized: bool,
}

/// What became of an incoming CONNECT.
#[derive(Debug, PartialEq, Eq)]
pub enum IncomingDecision {
    /// Accepted: the connection is in the table. Send `welcome` (with the membership proof
    /// filled in when the graph requires one) and run the link.
    Welcome {
        /// The new connection.
        info: ConnectionInfo,
        /// The answer to send, its proof empty.
        welcome: Welcome,
    },
    /// Refused: send REFUSE with this reason, then close the link with REFUSED.
    Refuse(RefuseReason),
    /// The graph closed while the handshake ran: close the link with LEAVING.
    Leave,
}

/// What became of an outgoing attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum OutgoingDecision {
    /// The connection is in the table: run the link.
    Adopt(ConnectionInfo),
    /// The attempt failed; CONNECTION_FAILED was raised.
    Failed,
    /// The graph closed as the handshake ended: close the link with LEAVING.
    Leave,
}

/// A connection whose close has started: it has left the table.
#[derive(Debug, PartialEq, Eq)]
pub struct ClosingLink {
    /// The link's entry as it was.
    pub entry: LinkEntry,
    /// The table was shrunk: shrink the driver's index of it too.
    pub shrink: bool,
}

/// What [`GraphCore::link_ended`] changed in the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkEnded {
    /// The link was still in the table (it ended without a close of ours) and has left
    /// it: remove it from the driver's index too.
    pub removed: bool,
    /// The table was shrunk: shrink the driver's index of it too.
    pub shrink: bool,
}

/// What a closed graph's driver has left to end.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// The connections that were in the table: each leaves at once (LEAVING).
    pub connections: Vec<LinkEntry>,
    /// The outgoing attempts under way: each is abandoned.
    pub outgoing: Vec<ConnectionId>,
}

/// The rules of one graph (see the module doc).
#[derive(Debug)]
pub struct GraphCore {
    config: CoreConfig,
    closed: bool,
    listening: bool,
    synchronized: bool,
    status: GraphStatus,
    links: Links,
    events: VecDeque<GraphEvent>,
}

impl GraphCore {
    /// A graph that is open, not listening, and has no links.
    pub fn new(config: CoreConfig) -> Self {
        let synchronized = config.synchronized;
        let mut status = GraphStatus::default();
        status.set(GraphStatus::SYNCHRONIZED, synchronized);
        GraphCore {
            config,
            closed: false,
            listening: false,
            synchronized,
            status,
            links: Links::default(),
            events: VecDeque::new(),
        }
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> &PeerId {
        &self.config.peer_id
    }

    /// The graph's id.
    pub fn graph_id(&self) -> &GraphId {
        &self.config.graph_id
    }

    /// Whether [`release`](Self::release) has run.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The next event to raise.
    pub fn poll_event(&mut self) -> Option<GraphEvent> {
        self.events.pop_front()
    }

    /// Whether a call may run: `engine_started` is false after the last shutdown.
    ///
    /// # Errors
    /// `PEER_E_NOT_INITIALIZED` after the last shutdown, `PEER_E_INVALID_GRAPH` once the
    /// graph is closed.
    pub fn check_ready(&self, engine_started: bool) -> Result<(), PeerError> {
        if !engine_started {
            Err(PeerError::NOT_INITIALIZED)
        } else if self.closed {
            Err(PeerError::INVALID_GRAPH)
        } else {
            Ok(())
        }
    }

    /// The status flags.
    pub fn status(&self) -> GraphStatus {
        self.status
    }

    /// Recomputes the status flags and raises STATUS_CHANGED when they changed.
    fn refresh_status(&mut self) {
        let mut status = GraphStatus::default();
        status.set(GraphStatus::LISTENING, self.listening);
        status.set(
            GraphStatus::HAS_CONNECTIONS,
            !self.links.connections.is_empty(),
        );
        status.set(GraphStatus::SYNCHRONIZED, self.synchronized);
        if status != self.status {
            self.status = status;
            self.events.push_back(GraphEvent::StatusChanged { status });
        }
    }

    /// The node's data has synchronized (or, with `false`, counts as not synchronized any
    /// more); STATUS_CHANGED follows a change.
    pub fn set_synchronized(&mut self, synchronized: bool) {
        self.synchronized = synchronized;
        self.refresh_status();
    }

    /// Whether the graph may start listening.
    ///
    /// # Errors
    /// `PEER_E_GRAPH_NOT_READY` before the node has synchronized,
    /// `PEER_E_ALREADY_LISTENING` when it listens already.
    pub fn check_listen(&self) -> Result<(), PeerError> {
        if !self.synchronized {
            return Err(PeerError::new(ResultCode::PEER_E_GRAPH_NOT_READY));
        }
        if self.listening {
            return Err(PeerError::new(ResultCode::PEER_E_ALREADY_LISTENING));
        }
        Ok(())
    }

    /// The graph listens now.
    pub fn listening_started(&mut self) {
        self.listening = true;
        self.refresh_status();
    }

    /// Whether a direct connection to `peer_id` at `address` may be attempted;
    /// `own_addresses` are the addresses this node listens on.
    ///
    /// # Errors
    /// `PEER_E_CONNECT_SELF` for this node's own peer id or listening address,
    /// `PEER_E_INVALID_ADDRESS` for port 0 or an unspecified or multicast address.
    pub fn check_open(
        &self,
        peer_id: &PeerId,
        address: &SocketAddr,
        own_addresses: &[SocketAddr],
    ) -> Result<(), PeerError> {
        let own_address = own_addresses.iter().any(|local| {
            local.port() == address.port()
                && (local.ip() == address.ip()
                    || (local.ip().is_unspecified() && address.ip().is_loopback()))
        });
        if peer_id == self.peer_id() || own_address {
            return Err(PeerError::new(ResultCode::PEER_E_CONNECT_SELF));
        }
        if address.port() == 0 || address.ip().is_unspecified() || address.ip().is_multicast() {
            return Err(PeerError::new(ResultCode::PEER_E_INVALID_ADDRESS));
        }
        Ok(())
    }

    /// Starts an outgoing attempt to `peer_id` at `address` under a connection id drawn
    /// from `random` (retried until unused), and returns the CONNECT to send (its proof
    /// empty: the driver fills it in when the graph requires one).
    pub fn start_outgoing(
        &mut self,
        peer_id: PeerId,
        address: SocketAddr,
        mut random: impl FnMut() -> u64,
    ) -> Connect {
        let connection_id = loop {
            if let Ok(id) = ConnectionId::new(random()) {
                if !self.links.is_taken(&id) {
                    break id;
                }
            }
        };
        let request = Connect {
            version: PROTOCOL_VERSION,
            direct: true,
            connection_id,
            graph_id: self.config.graph_id.clone(),
            source_peer_id: self.config.peer_id.clone(),
            target_peer_id: peer_id.clone(),
            proof: bytes::Bytes::new(),
        };
        self.links
            .outgoing
            .insert(connection_id, Attempt { peer_id, address });
        request
    }

    /// An outgoing attempt ended: with the reached node's key and the driver's tag of the
    /// link, or with the code of its failure.
    pub fn outgoing_ended(
        &mut self,
        connection_id: ConnectionId,
        outcome: Result<(PeerKey, u64), PeerError>,
    ) -> OutgoingDecision {
        let pending = self.links.outgoing.remove(&connection_id);
        shrink_if_sparse(&mut self.links.outgoing);
        let Some(attempt) = pending.filter(|_| !self.closed) else {
            // The graph closed as the handshake ended (a driver may still see the outcome
            // of an attempt it abandoned): nothing is adopted on a closed graph.
            return match outcome {
                Ok(_) => OutgoingDecision::Leave,
                Err(_) => OutgoingDecision::Failed,
            };
        };
        match outcome {
            Ok((peer_key, tag)) => {
                let info = ConnectionInfo {
                    flags: ConnectionFlags::DIRECT,
                    connection_id,
                    node_id: peer_key.node_id(),
                    peer_key,
                    peer_id: attempt.peer_id,
                    address: attempt.address,
                };
                self.adopt(info.clone(), tag);
                OutgoingDecision::Adopt(info)
            }
            Err(code) => {
                self.events
                    .push_back(GraphEvent::DirectConnection(Box::new(ConnectionChange {
                        status: ConnectionStatus::ConnectionFailed,
                        connection_id,
                        node_id: None,
                        peer_id: attempt.peer_id,
                        failure_reason: Some(code),
                    })));
                OutgoingDecision::Failed
            }
        }
    }

    /// An incoming QUIC connection from `source` wants a handshake slot; `validated` says
    /// whether its address is proven (it came back with a Retry token). The rules, in
    /// order:
    /// 1. the graph is closed: [`Refuse`](HandshakeAdmission::Refuse);
    /// 2. [`Limits::retry_threshold`] handshakes run and the address is not validated:
    ///    [`Retry`](HandshakeAdmission::Retry), which costs no slot;
    /// 3. [`Limits::max_pending_handshakes_per_source`] run from its [`Source`]: `Refuse`;
    /// 4. [`Limits::max_pending_handshakes`] run: `Refuse`;
    /// 5. else [`Accept`](HandshakeAdmission::Accept): the slot is counted until
    ///    [`incoming_ended`](Self::incoming_ended) with the same `source` (against the
    ///    source, only until its link is welcomed on a 0-RTT CONNECT, within a bound: see
    ///    [`on_early_connect`](Self::on_early_connect)).
    #[must_use]
    pub fn incoming_started(&mut self, source: IpAddr, validated: bool) -> HandshakeAdmission {
        let limits = &self.config.limits;
        let source = Source::of(source);
        if self.closed {
            HandshakeAdmission::Refuse
        } else if !validated && self.links.incoming >= limits.retry_threshold {
            HandshakeAdmission::Retry
        } else if self.links.incoming_from(&source) >= limits.max_pending_handshakes_per_source
            || self.links.incoming >= limits.max_pending_handshakes
        {
            HandshakeAdmission::Refuse
        } else {
            self.links.incoming_started(source);
            HandshakeAdmission::Accept
        }
    }

    /// An incoming handshake from `source` that was accepted ended (whether or not it
    /// brought a CONNECT): its slot is free again.
    pub fn incoming_ended(&mut self, source: IpAddr) {
        self.links.incoming_ended(&Source::of(source));
    }

    /// Sources with incoming handshakes under way (the per-source map's entries).
    pub fn incoming_sources(&self) -> usize {
        self.links.incoming_per_source.len()
    }

    /// Decides an incoming CONNECT on a link tagged `tag` from `address`. `verify_proof`
    /// checks the CONNECT's membership proof against the link; it is asked only when the
    /// graph requires a proof and every earlier check passed (docs/PROTOCOL.md §3.3).
    pub fn on_connect(
        &mut self,
        incoming: IncomingConnect<'_>,
        tag: u64,
        address: SocketAddr,
        verify_proof: impl FnOnce(&Connect) -> bool,
    ) -> IncomingDecision {
        // A link welcomed under this id from the same key whose handshake has not completed
        // gives way: this one's has. (A replayed first flight that got here before the
        // original would otherwise hold the id until its TLS deadline, and the original,
        // falling back to a full handshake, would be refused as a duplicate.)
        let id = incoming.connect.connection_id;
        if let Some(waiting) = self.links.welcomed.get(&id) {
            if waiting.info.peer_key == incoming.peer_key {
                let waiting_tag = waiting.tag;
                self.early_failed(id, waiting_tag);
            }
        }
        let decision = self.judge_connect(&incoming, address, verify_proof);
        if let IncomingDecision::Welcome { info, .. } = &decision {
            self.adopt(info.clone(), tag);
        }
        decision
    }

    /// Decides a CONNECT that came as 0-RTT data, on a resumed link whose TLS handshake has
    /// not completed yet: judged as [`on_connect`](Self::on_connect) judges (on the key the
    /// resumed session carries, against the allow-list as it is now), but a welcomed
    /// connection only holds its place (its id, and a slot under the graph's and the
    /// node's limits) until [`early_confirmed`](Self::early_confirmed) enters it and raises
    /// CONNECTED, or [`early_failed`](Self::early_failed) drops it. 0-RTT data can be
    /// replayed; a replay never completes the handshake, so it admits nothing.
    ///
    /// A welcomed link's handshake stops counting against its source's bound
    /// ([`Limits::max_pending_handshakes_per_source`]) and keeps counting in the graph's
    /// ([`Limits::max_pending_handshakes`]): its node reports CONNECTED half a round trip
    /// before this node has its Finished. At most that bound of a source's welcomed links
    /// are out of its count at once, so one source holds at most twice the bound; past it
    /// the driver does not call this, but holds the CONNECT until the handshake completes
    /// ([`can_welcome_early`](Self::can_welcome_early)).
    /// `source` is the address its handshake was counted under
    /// ([`incoming_started`](Self::incoming_started)).
    /// [`early_confirmed`](Self::early_confirmed) and [`early_failed`](Self::early_failed)
    /// count it back against its source, so call them before
    /// [`incoming_ended`](Self::incoming_ended) for the same handshake.
    ///
    /// A graph that requires a membership proof refuses it (NOT_AUTHORIZED): the proof is
    /// bound to the completed handshake, so such a graph takes CONNECT only after it.
    pub fn on_early_connect(
        &mut self,
        incoming: IncomingConnect<'_>,
        tag: u64,
        address: SocketAddr,
        source: IpAddr,
    ) -> IncomingDecision {
        let decision = self.judge_connect(&incoming, address, |_| false);
        if let IncomingDecision::Welcome { info, .. } = &decision {
            let entry = LinkEntry {
                info: info.clone(),
                tag,
            };
            let most = self.config.limits.max_pending_handshakes_per_source;
            self.links.welcome(entry, Source::of(source), most);
        }
        decision
    }

    /// Whether a CONNECT sent as 0-RTT data from `source` can be answered before its
    /// handshake completes ([`on_early_connect`](Self::on_early_connect)): fewer than
    /// [`Limits::max_pending_handshakes_per_source`] of that source's welcomed links are out
    /// of its count. When not, the driver holds the CONNECT until the handshake completes
    /// and judges it then with [`on_connect`](Self::on_connect), as if it had come after:
    /// its node gets WELCOME, and reports CONNECTED, only once this node has its Finished.
    /// A node that paces its opens by CONNECTED then never has more handshakes counted
    /// here than it has links it has not heard CONNECTED for, however slowly this node
    /// confirms them; refusing instead would turn this node's lag into the other node's
    /// failures.
    pub fn can_welcome_early(&self, source: IpAddr) -> bool {
        let most = self.config.limits.max_pending_handshakes_per_source;
        self.links.released_out(&Source::of(source)) < most
    }

    /// The handshake of a link welcomed by [`on_early_connect`](Self::on_early_connect)
    /// completed: the connection enters the table, CONNECTED is raised, and its entry is
    /// returned for the driver to run the link. `None` when the graph closed meanwhile (the
    /// driver closes the link with LEAVING) or no such link waits.
    pub fn early_confirmed(&mut self, id: ConnectionId, tag: u64) -> Option<ConnectionInfo> {
        let entry = self.links.take_welcomed(&id, tag)?;
        // Counted with its node when welcomed; `adopt` counts it again.
        self.links.node_link_ended(&entry.info.node_id);
        if self.closed {
            return None;
        }
        self.adopt(entry.info.clone(), tag);
        Some(entry.info)
    }

    /// The handshake of a link welcomed by [`on_early_connect`](Self::on_early_connect)
    /// failed or ran out of time: its place is freed, and nothing is raised (no CONNECTED
    /// was).
    pub fn early_failed(&mut self, id: ConnectionId, tag: u64) {
        if let Some(entry) = self.links.take_welcomed(&id, tag) {
            self.links.node_link_ended(&entry.info.node_id);
        }
    }

    /// Links welcomed on a CONNECT sent as 0-RTT data whose handshake has not completed.
    pub fn early_links(&self) -> usize {
        self.links.welcomed.len()
    }

    /// The judgement of a CONNECT, and the entry and WELCOME of an accepted one.
    fn judge_connect(
        &self,
        incoming: &IncomingConnect<'_>,
        address: SocketAddr,
        verify_proof: impl FnOnce(&Connect) -> bool,
    ) -> IncomingDecision {
        if self.closed {
            return IncomingDecision::Leave;
        }
        let connect = incoming.connect;
        let node_id = incoming.peer_key.node_id();
        let judge = Judge {
            graph_id: &self.config.graph_id,
            peer_id: &self.config.peer_id,
            admission: &self.config.admission,
            graph_full: self.links.connections.len()
                + self.links.outgoing.len()
                + self.links.welcomed.len()
                >= self.config.limits.max_connections,
            node_full: self.links.with_node(&node_id)
                >= self.config.limits.max_connections_per_node,
            id_taken: self.links.is_taken(&connect.connection_id),
        };
        if let Err(reason) = judge.decide(incoming, verify_proof) {
            return IncomingDecision::Refuse(reason);
        }
        let info = ConnectionInfo {
            flags: ConnectionFlags::DIRECT,
            connection_id: connect.connection_id,
            node_id,
            peer_key: incoming.peer_key,
            peer_id: connect.source_peer_id.clone(),
            address,
        };
        let welcome = Welcome {
            connection_id: connect.connection_id,
            graph_id: self.config.graph_id.clone(),
            peer_id: self.config.peer_id.clone(),
            proof: bytes::Bytes::new(),
        };
        IncomingDecision::Welcome { info, welcome }
    }

    /// Enters a connection whose handshake succeeded and raises CONNECTED.
    fn adopt(&mut self, info: ConnectionInfo, tag: u64) {
        self.events
            .push_back(connection_event(ConnectionStatus::Connected, &info, None));
        self.links.insert(LinkEntry { info, tag });
        self.refresh_status();
    }

    /// Starts the close of connection `id`: it leaves the table at once, so a second close
    /// of the id finds nothing. The status (HAS_CONNECTIONS) is refreshed when the link
    /// has ended ([`link_ended`](Self::link_ended)), right after its DISCONNECTED, in the
    /// order the remote side sees.
    ///
    /// # Errors
    /// `PEER_E_CONNECTION_NOT_FOUND` when no connection has that id.
    pub fn start_close(&mut self, id: ConnectionId) -> Result<ClosingLink, PeerError> {
        let (entry, shrink) = self
            .links
            .take(&id)
            .ok_or(PeerError::CONNECTION_NOT_FOUND)?;
        Ok(ClosingLink { entry, shrink })
    }

    /// A link has ended (its driver is gone): raises DISCONNECTED while the graph is open.
    /// The entry under the id leaves the table only if it is this link's (`tag`): a peer
    /// may reuse the id of a link still closing here for a new one.
    pub fn link_ended(&mut self, info: &ConnectionInfo, tag: u64) -> LinkEnded {
        self.links.node_link_ended(&info.node_id);
        if self.closed {
            return LinkEnded::default();
        }
        let ours = self
            .links
            .connections
            .get(&info.connection_id)
            .is_some_and(|entry| entry.tag == tag);
        let mut ended = LinkEnded::default();
        if ours {
            if let Some((_, shrink)) = self.links.take(&info.connection_id) {
                ended = LinkEnded {
                    removed: true,
                    shrink,
                };
            }
        }
        self.events
            .push_back(connection_event(ConnectionStatus::Disconnected, info, None));
        self.refresh_status();
        ended
    }

    /// Closes the graph: every call from now on answers `PEER_E_INVALID_GRAPH`, and the
    /// driver ends what is returned.
    pub fn release(&mut self) -> Released {
        if self.closed {
            return Released::default();
        }
        self.closed = true;
        self.listening = false;
        let mut connections: Vec<LinkEntry> = self
            .links
            .connections
            .drain()
            .map(|(_, entry)| entry)
            .collect();
        connections.sort_by_key(|entry| entry.info.connection_id);
        let outgoing = self.links.outgoing.drain().map(|(id, _)| id).collect();
        self.events.clear();
        Released {
            connections,
            outgoing,
        }
    }

    /// The connections of the kinds in `flags`, by id.
    ///
    /// # Errors
    /// `E_INVALIDARG` for flags outside NEIGHBOR and DIRECT, or none.
    pub fn enum_connections(
        &self,
        flags: ConnectionFlags,
    ) -> Result<Vec<ConnectionInfo>, PeerError> {
        flags.validate()?;
        if !flags.intersects(ConnectionFlags::DIRECT) {
            return Ok(Vec::new());
        }
        let mut infos: Vec<ConnectionInfo> = self
            .links
            .connections
            .values()
            .map(|entry| entry.info.clone())
            .collect();
        infos.sort_by_key(|info| info.connection_id);
        Ok(infos)
    }

    /// What is known of node `node_id` (`None`: this node), which listens on
    /// `own_addresses`.
    ///
    /// # Errors
    /// `PEER_E_NODE_NOT_FOUND` for a node this one has no connection with.
    pub fn node_info(
        &self,
        node_id: Option<NodeId>,
        own_addresses: Vec<SocketAddr>,
    ) -> Result<NodeInfo, PeerError> {
        let own = self.config.node_id;
        if node_id.is_none_or(|node_id| node_id == own) {
            return Ok(NodeInfo {
                node_id: own,
                peer_id: self.config.peer_id.clone(),
                addresses: own_addresses,
                attributes: String::new(),
            });
        }
        self.links
            .connections
            .values()
            .find(|entry| Some(entry.info.node_id) == node_id)
            .map(|entry| NodeInfo {
                node_id: entry.info.node_id,
                peer_id: entry.info.peer_id.clone(),
                addresses: vec![entry.info.address],
                attributes: String::new(),
            })
            .ok_or(PeerError::new(ResultCode::PEER_E_NODE_NOT_FOUND))
    }

    /// The connection `id`, if it is in the table.
    pub fn connection(&self, id: &ConnectionId) -> Option<&LinkEntry> {
        self.links.connections.get(id)
    }

    /// Connections in the table.
    pub fn connection_count(&self) -> usize {
        self.links.connections.len()
    }

    /// Outgoing attempts under way.
    pub fn outgoing_count(&self) -> usize {
        self.links.outgoing.len()
    }

    /// Incoming handshakes under way.
    pub fn incoming_count(&self) -> usize {
        self.links.incoming
    }

    /// Connections and handshakes.
    pub fn link_count(&self) -> usize {
        self.links.count()
    }

    /// No connection and no handshake.
    pub fn is_idle(&self) -> bool {
        self.links.is_idle()
    }
}

/// The event a connection change raises.
pub fn connection_event(
    status: ConnectionStatus,
    info: &ConnectionInfo,
    failure_reason: Option<PeerError>,
) -> GraphEvent {
    GraphEvent::DirectConnection(Box::new(ConnectionChange {
        status,
        connection_id: info.connection_id,
        node_id: Some(info.node_id),
        peer_id: info.peer_id.clone(),
        failure_reason,
    }))
}
