//! The graph actor: one per open graph. It owns the graph's QUIC endpoint, accepts or
//! refuses incoming links, opens outgoing ones, owns the connection table, publishes events,
//! and supervises its connection actors.
//!
//! ```text
//!  app ──Listen/Open/Send/Close/Enum/Stats/Register──▶ GraphActor ──(reply: code)──▶ app
//!  endpoint.accept() ──Incoming──▶ GraphActor ──handshake──▶ ConnectionActor (started here)
//!  OpenDirectConnection ──spawned connect + CONNECT/WELCOME──▶ ConnectionActor
//!  ConnectionActor dropped ──ConnectionEnded──▶ GraphActor ──DISCONNECTED──▶ registrations
//! ```
//!
//! A closed graph actor keeps answering `PEER_E_INVALID_GRAPH` (or
//! `PEER_E_NOT_INITIALIZED` after the last shutdown) to whoever still holds its address,
//! and stops when the last address is dropped.

mod messages;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use peergraph_engine::wire::{
    Connect, Message as WireMessage, RefuseReason, Welcome, PROTOCOL_VERSION,
};
use peergraph_engine::{
    ConnectionFlags, ConnectionId, ConnectionInfo, ConnectionStatus, EventFilter, EventType,
    GraphEvent, GraphHandle, GraphProperties, GraphStatus, NodeId, NodeInfo, PeerError, PeerId,
    PeerKey, ResultCode,
};
use peergraph_transport::{
    bind_endpoint, membership_proof, random_nonzero_u64, verify_membership_proof, LinkOptions,
    NodeIdentity, ProofRole, RenewableEndpoint,
};
use tokio::sync::oneshot;

pub use self::messages::*;
use crate::connection::{
    connection_event, Close, ConnectionActor, ConnectionEnded, ConnectionSetup, Leave,
};
use crate::engine::EngineShared;
use crate::events::Subscribers;
use crate::handshake::{self, Link};
use crate::table::{check_payload, outbox, outbox_of, ConnectionEntry, ConnectionTable};
use crate::GraphOptions;

/// The default most incoming handshakes (TLS + CONNECT) one graph runs at once; more are
/// refused at the QUIC level, so a flood of half-open links costs a bounded amount.
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 128;

/// How long closing a graph waits for its endpoint to go idle, so that peers receive the
/// LEAVING close code rather than timing out.
const ENDPOINT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Hash tables never give back room by themselves: after 10,000 connections had come and
/// gone, the connection table still held about 3 MB per graph. So a table that has emptied
/// to a quarter of its peak (or of its capacity) is shrunk to fit, as long as that peak is
/// above this many entries. A shrink costs time in proportion to the peak and needs three
/// quarters of it removed first, so removals stay O(1) amortised.
const ROOM_KEPT: usize = 64;

/// The actor of one open graph. Created by [`Engine::create_graph`](crate::Engine::create_graph)
/// or [`Engine::open_graph`](crate::Engine::open_graph); reach it with
/// [`Graph::addr`](crate::Graph::addr) and send it the messages of this module.
///
/// Each message replies `Result<_, PeerError>` with the call's documented codes (see each
/// message's `# Errors`); [`reply`](crate::reply) folds actix's `MailboxError` (the actor
/// no longer runs) into `PEER_E_INVALID_GRAPH`. Events come as [`PeerEvent`](crate::PeerEvent)
/// messages to an actor registered with [`RegisterEventRecipient`], or as an
/// [`EventStream`](crate::EventStream) from [`RegisterEvent`]. `examples/embedded_actor.rs`
/// shows an application actor doing all of it.
///
/// # Examples
///
/// Inside an actix `System` the engine runs the graph actor on the current arbiter:
///
/// ```
/// use peergraph::{
///     reply, CloseGraph, Engine, GetStatus, GraphId, GraphOptions, GraphProperties,
///     GraphStatus, Listen, PeerId, Version,
/// };
///
/// #[actix::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let engine = Engine::new()?; // no threads of its own inside a System
///     engine.startup(Version::V1_0)?;
///     let properties = GraphProperties::new(GraphId::new("chat")?, PeerId::new("alice")?);
///     let graph = engine.create_graph(properties, GraphOptions::default())?.addr();
///
///     let address = reply(graph.send(Listen { address: "127.0.0.1:0".parse()? }).await)?;
///     println!("listening at {address}");
///     let status = reply(graph.send(GetStatus).await)?;
///     assert!(status.contains(GraphStatus::LISTENING));
///
///     reply(graph.send(CloseGraph).await)?;
///     engine.shutdown().await?;
///     Ok(())
/// }
/// ```
pub struct GraphActor {
    handle: GraphHandle,
    shared: Arc<EngineShared>,
    properties: GraphProperties,
    identity: NodeIdentity,
    options: GraphOptions,
    closed: bool,
    synchronized: bool,
    listener: Option<RenewableEndpoint>,
    /// The stream of the listener's incoming connections, replaced when it is renewed.
    accepting: Option<SpawnHandle>,
    client_v4: Option<quinn::Endpoint>,
    client_v6: Option<quinn::Endpoint>,
    table: Arc<ConnectionTable>,
    pending_outgoing: HashMap<ConnectionId, SpawnHandle>,
    pending_incoming: usize,
    /// Live connection actors per remote node, for the per-node limit (kept here so that
    /// judging a CONNECT does not scan the table).
    per_node: HashMap<NodeId, usize>,
    /// The most connections the table has held since it was last shrunk (see [`ROOM_KEPT`]).
    table_peak: usize,
    /// The most links (connections and handshakes) at once since the endpoints were made
    /// or last renewed (see [`GraphOptions::renew_endpoints_after`]).
    link_peak: usize,
    /// Whether a renewal waits for the endpoints' last QUIC connections to go.
    renewal_waiting: bool,
    /// How many times the endpoints were renewed.
    renewals: u64,
    subscribers: Arc<Subscribers>,
    status: GraphStatus,
    live_actors: Arc<AtomicUsize>,
}

/// What the engine gives a new graph actor.
pub(crate) struct GraphSetup {
    pub(crate) handle: GraphHandle,
    pub(crate) shared: Arc<EngineShared>,
    pub(crate) properties: GraphProperties,
    pub(crate) identity: NodeIdentity,
    pub(crate) options: GraphOptions,
    pub(crate) synchronized: bool,
    pub(crate) table: Arc<ConnectionTable>,
}

impl GraphActor {
    pub(crate) fn new(setup: GraphSetup) -> Self {
        let status = if setup.synchronized {
            GraphStatus::SYNCHRONIZED
        } else {
            GraphStatus::default()
        };
        GraphActor {
            handle: setup.handle,
            live_actors: setup.shared.live_connection_actors.clone(),
            shared: setup.shared,
            properties: setup.properties,
            identity: setup.identity,
            options: setup.options,
            closed: false,
            synchronized: setup.synchronized,
            listener: None,
            accepting: None,
            client_v4: None,
            client_v6: None,
            table: setup.table,
            pending_outgoing: HashMap::new(),
            pending_incoming: 0,
            per_node: HashMap::new(),
            table_peak: 0,
            link_peak: 0,
            renewal_waiting: false,
            renewals: 0,
            subscribers: Arc::new(Subscribers::new(setup.handle)),
            status,
        }
    }

    /// `PEER_E_NOT_INITIALIZED` after the last shutdown, `PEER_E_INVALID_GRAPH` once closed.
    fn ready(&self) -> Result<(), PeerError> {
        if !self.shared.is_initialized() {
            Err(PeerError::NOT_INITIALIZED)
        } else if self.closed {
            Err(PeerError::INVALID_GRAPH)
        } else {
            Ok(())
        }
    }

    fn peer_id(&self) -> &PeerId {
        &self.properties.creator_id
    }

    fn link_options(&self) -> LinkOptions {
        LinkOptions {
            idle_timeout: self.options.idle_timeout,
            congestion: self.options.congestion,
        }
    }

    fn listen_addresses(&self) -> Vec<SocketAddr> {
        self.listener
            .iter()
            .filter_map(|listener| listener.local_addr().ok())
            .collect()
    }

    /// Recomputes the status flags and publishes STATUS_CHANGED when they changed.
    fn refresh_status(&mut self) {
        let mut status = GraphStatus::default();
        status.set(GraphStatus::LISTENING, self.listener.is_some());
        status.set(GraphStatus::HAS_CONNECTIONS, !self.table.is_empty());
        status.set(GraphStatus::SYNCHRONIZED, self.synchronized);
        if status != self.status {
            self.status = status;
            self.subscribers
                .publish(GraphEvent::StatusChanged { status });
        }
    }

    /// Called after connections left the table: gives back its room once it is down to a
    /// quarter of its peak (see [`ROOM_KEPT`]).
    fn table_shrunk(&mut self) {
        let len = self.table.len();
        if self.table_peak > ROOM_KEPT && len <= self.table_peak / 4 {
            self.table.shrink_to_fit();
            self.table_peak = len;
        }
    }

    /// The graph's endpoints: the listening one and the client-only ones it has bound.
    fn endpoints(&self) -> Vec<quinn::Endpoint> {
        [
            self.listener.as_ref().map(RenewableEndpoint::endpoint),
            self.client_v4.as_ref(),
            self.client_v6.as_ref(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    /// QUIC connections the graph's endpoints hold, closing and draining ones included.
    fn quic_connections(&self) -> usize {
        // Called on every new link (see `note_links`), so it does not collect `endpoints()`.
        [
            self.listener.as_ref().map(RenewableEndpoint::endpoint),
            self.client_v4.as_ref(),
            self.client_v6.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(quinn::Endpoint::open_connections)
        .sum()
    }

    /// No connection and no handshake.
    fn is_idle(&self) -> bool {
        self.table.is_empty() && self.pending_outgoing.is_empty() && self.pending_incoming == 0
    }

    /// Called when a link or handshake starts: keeps [`GraphActor::link_peak`].
    fn note_links(&mut self) {
        let links = self.table.len() + self.pending_outgoing.len() + self.pending_incoming;
        // quinn's own count also holds links still draining or being refused: its tables
        // grow to whichever is more.
        self.link_peak = self.link_peak.max(links).max(self.quic_connections());
    }

    /// Called when a link or handshake has gone: once the graph is idle after a peak of
    /// [`GraphOptions::renew_endpoints_after`] links, waits (bounded by the idle and close
    /// timeouts) for quinn to free the last QUIC connections, then renews the endpoints.
    fn renew_when_idle(&mut self, ctx: &mut Context<Self>) {
        if self.closed
            || self.renewal_waiting
            || self.link_peak < self.options.renew_endpoints_after
            || !self.is_idle()
        {
            return;
        }
        self.renewal_waiting = true;
        let endpoints = self.endpoints();
        let bound = self.options.idle_timeout + self.options.close_timeout;
        ctx.spawn(
            async move {
                let all_idle = async {
                    for endpoint in &endpoints {
                        endpoint.wait_idle().await;
                    }
                };
                let _ = tokio::time::timeout(bound, all_idle).await;
            }
            .into_actor(self)
            .map(|(), act, ctx| act.renewal_wait_ended(ctx)),
        );
    }

    /// The end of a renewal's wait: renews the endpoints, or waits again if the graph is
    /// idle but quinn still holds a connection. A link that started and ended during the
    /// wait could not arm a wait of its own (there is one at a time), and quinn may still
    /// hold it, perhaps on a client endpoint bound meanwhile that the wait did not cover.
    /// The new wait covers the endpoints as they are now; each wait ends once they hold no
    /// connection, or after its bound, so this does not spin.
    fn renewal_wait_ended(&mut self, ctx: &mut Context<Self>) {
        self.renewal_waiting = false;
        if self.is_idle() && self.quic_connections() > 0 {
            self.renew_when_idle(ctx);
        } else {
            self.renew_endpoints(ctx);
        }
    }

    /// Renews the endpoints if the graph is still idle and quinn holds no connection: the
    /// client-only ones are dropped (bound again on next use), the listening one is renewed
    /// on its socket and its accept stream moved to the new endpoint.
    fn renew_endpoints(&mut self, ctx: &mut Context<Self>) {
        if self.closed || !self.is_idle() || self.quic_connections() > 0 {
            // Tried again when the graph is next idle: the peak is kept.
            return;
        }
        if let Some(listener) = &mut self.listener {
            match listener.renew() {
                Ok(old) => {
                    if let Some(accepting) = self.accepting.take() {
                        ctx.cancel_future(accepting);
                    }
                    drop(old);
                    self.renewals += 1;
                    self.accepting =
                        Some(accept_from(listener.endpoint().clone(), self.renewals, ctx));
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot renew the listening endpoint");
                    return;
                }
            }
        } else {
            self.renewals += 1;
        }
        self.client_v4 = None;
        self.client_v6 = None;
        self.link_peak = 0;
        tracing::debug!(renewals = self.renewals, "endpoints renewed");
    }

    fn unused_connection_id(&self) -> ConnectionId {
        loop {
            if let Ok(id) = ConnectionId::new(random_nonzero_u64()) {
                if !self.table.contains_key(&id) && !self.pending_outgoing.contains_key(&id) {
                    return id;
                }
            }
        }
    }

    /// The endpoint to connect to `address` from: the listening one when the address
    /// family matches, else a client-only endpoint bound on first use.
    fn endpoint_for(&mut self, address: &SocketAddr) -> Result<quinn::Endpoint, PeerError> {
        if let Some(listener) = &self.listener {
            if listener
                .local_addr()
                .map(|local| local.is_ipv4() == address.is_ipv4())
                .unwrap_or(false)
            {
                return Ok(listener.endpoint().clone());
            }
        }
        let link_options = self.link_options();
        let (slot, bind) = if address.is_ipv4() {
            (
                &mut self.client_v4,
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            )
        } else {
            (
                &mut self.client_v6,
                SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
            )
        };
        if let Some(endpoint) = slot {
            return Ok(endpoint.clone());
        }
        let endpoint = bind_endpoint(bind, &self.identity, &link_options, false)
            .map_err(|_| PeerError::new(ResultCode::E_FAIL))?;
        *slot = Some(endpoint.clone());
        Ok(endpoint)
    }

    fn is_own_address(&self, address: &SocketAddr) -> bool {
        self.listen_addresses().iter().any(|local| {
            local.port() == address.port()
                && (local.ip() == address.ip()
                    || (local.ip().is_unspecified() && address.ip().is_loopback()))
        })
    }

    /// Starts the connection actor of a link that passed its handshake, enters it in the
    /// table and publishes CONNECTED.
    fn adopt(
        &mut self,
        link: Link,
        connection_id: ConnectionId,
        peer_id: PeerId,
        welcome: Option<Welcome>,
        ctx: &mut Context<Self>,
    ) {
        let info = ConnectionInfo {
            flags: ConnectionFlags::DIRECT,
            connection_id,
            node_id: link.node_id(),
            peer_key: link.peer_key,
            peer_id,
            address: link.address,
        };
        let (outbox, outbox_receiver) = outbox();
        if let Some(welcome) = welcome {
            // The outbox is new and empty, so the WELCOME is queued first, before any data.
            let _ = outbox.control(WireMessage::Welcome(welcome).to_bytes());
        }
        let connection = link.parts.connection.clone();
        let setup = ConnectionSetup {
            info: info.clone(),
            link: link.parts,
            outbox: outbox.clone(),
            outbox_receiver,
            graph: ctx.address().recipient(),
            subscribers: self.subscribers.clone(),
            close_timeout: self.options.close_timeout,
            live_actors: self.live_actors.clone(),
        };
        let actor = ConnectionActor::new(setup).start();
        *self.per_node.entry(info.node_id).or_default() += 1;
        self.table.insert(
            connection_id,
            ConnectionEntry {
                info: info.clone(),
                outbox,
                actor,
                connection,
            },
        );
        self.table_peak = self.table_peak.max(self.table.len());
        self.note_links();
        self.subscribers
            .publish(connection_event(ConnectionStatus::Connected, &info, None));
        self.refresh_status();
    }

    /// Decides what to answer a CONNECT on an accepted link, in the order
    /// `docs/PROTOCOL.md` gives: identity and membership before anything about this node's
    /// state is revealed.
    fn judge(&self, link: &Link, connect: &Connect) -> Result<(), RefuseReason> {
        let membership = &self.options.membership;
        if connect.version != PROTOCOL_VERSION {
            return Err(RefuseReason::UnsupportedVersion);
        }
        if connect.graph_id != self.properties.graph_id {
            return Err(RefuseReason::WrongGraph);
        }
        if &connect.target_peer_id != self.peer_id() {
            return Err(RefuseReason::WrongPeer);
        }
        if let Some(reason) = membership.check_key(&link.peer_key, &connect.source_peer_id) {
            return Err(reason);
        }
        if let Some(secret) = &membership.secret {
            if !verify_membership_proof(
                &link.parts.connection,
                secret,
                ProofRole::Connect,
                connect.connection_id,
                &connect.proof,
            ) {
                return Err(RefuseReason::NotAuthorized);
            }
        }
        if !connect.direct {
            // Neighbor connections come with records and flooding; until then a node has
            // no room for neighbors.
            return Err(RefuseReason::Busy);
        }
        if !self.subscribers.wants(EventType::DirectConnection) {
            return Err(RefuseReason::DirectConnectionDisallowed);
        }
        let with_node = self.per_node.get(&link.node_id()).copied().unwrap_or(0);
        if self.table.len() + self.pending_outgoing.len() >= self.options.max_connections
            || with_node >= self.options.max_connections_per_node
        {
            return Err(RefuseReason::LimitReached);
        }
        if self.table.contains_key(&connect.connection_id)
            || self.pending_outgoing.contains_key(&connect.connection_id)
        {
            return Err(RefuseReason::DuplicateConnection);
        }
        Ok(())
    }

    fn on_accepted(&mut self, accepted: Option<(Link, Connect)>, ctx: &mut Context<Self>) {
        let Some((link, connect)) = accepted else {
            return;
        };
        if self.closed {
            link.parts.connection.close(
                peergraph_engine::wire::close_code::LEAVING.into(),
                b"leaving",
            );
            return;
        }
        match self.judge(&link, &connect) {
            Ok(()) => {
                let proof = match &self.options.membership.secret {
                    Some(secret) => membership_proof(
                        &link.parts.connection,
                        secret,
                        ProofRole::Welcome,
                        connect.connection_id,
                    )
                    .unwrap_or_default(),
                    None => bytes::Bytes::new(),
                };
                let welcome = Welcome {
                    connection_id: connect.connection_id,
                    graph_id: self.properties.graph_id.clone(),
                    peer_id: self.peer_id().clone(),
                    proof,
                };
                self.adopt(
                    link,
                    connect.connection_id,
                    connect.source_peer_id,
                    Some(welcome),
                    ctx,
                );
            }
            Err(reason) => {
                tracing::debug!(?reason, peer = %connect.source_peer_id, "refusing connection");
                ctx.spawn(handshake::refuse(link, reason).into_actor(self));
            }
        }
    }

    /// Closes everything: connections, pending handshakes, registrations, endpoints.
    /// Returns the endpoints, to be drained by the caller.
    fn release(&mut self, ctx: &mut Context<Self>) -> Vec<quinn::Endpoint> {
        if self.closed {
            return Vec::new();
        }
        self.closed = true;
        self.shared
            .forget_graph(self.handle, &self.properties.graph_id);
        for (_, spawned) in self.pending_outgoing.drain() {
            ctx.cancel_future(spawned);
        }
        let ids: Vec<ConnectionId> = self.table.iter().map(|entry| *entry.key()).collect();
        for id in ids {
            if let Some((_, entry)) = self.table.remove(&id) {
                entry.actor.do_send(Leave);
            }
        }
        self.subscribers.close_all();
        let endpoints = self.endpoints();
        self.listener = None;
        self.client_v4 = None;
        self.client_v6 = None;
        for endpoint in &endpoints {
            endpoint.close(
                peergraph_engine::wire::close_code::LEAVING.into(),
                b"leaving",
            );
        }
        endpoints
    }
}

impl Actor for GraphActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Lifecycle calls are few; application data never passes through this mailbox
        // (SendData goes to the connection's outbox), so a generous bound suffices.
        ctx.set_mailbox_capacity(1024);
    }
}

impl StreamHandler<Accepted> for GraphActor {
    fn handle(&mut self, accepted: Accepted, ctx: &mut Self::Context) {
        let Accepted {
            generation,
            incoming,
        } = accepted;
        if generation != self.renewals {
            // From an endpoint renewed since (actix may still deliver an item of a stream
            // it has been told to cancel): that endpoint no longer reads, so a handshake
            // on it would hang. Dropped without an answer, the attempt is sent again by
            // the client and the current endpoint takes it.
            incoming.ignore();
            return;
        }
        if self.closed || self.pending_incoming >= self.options.max_pending_handshakes {
            incoming.refuse();
            return;
        }
        self.pending_incoming += 1;
        self.note_links();
        let timeout = self.options.connect_timeout;
        ctx.spawn(handshake::accept(incoming, timeout).into_actor(self).map(
            |accepted, act, ctx| {
                act.pending_incoming -= 1;
                act.on_accepted(accepted, ctx);
                act.renew_when_idle(ctx);
            },
        ));
    }

    fn finished(&mut self, _ctx: &mut Self::Context) {}
}

impl Handler<Listen> for GraphActor {
    type Result = Result<SocketAddr, PeerError>;

    fn handle(&mut self, message: Listen, ctx: &mut Self::Context) -> Self::Result {
        self.ready()?;
        if !self.synchronized {
            return Err(PeerError::new(ResultCode::PEER_E_GRAPH_NOT_READY));
        }
        if self.listener.is_some() {
            return Err(PeerError::new(ResultCode::PEER_E_ALREADY_LISTENING));
        }
        let listener =
            RenewableEndpoint::bind(message.address, &self.identity, &self.link_options(), true)
                .map_err(|error| {
                    tracing::debug!(%error, address = %message.address, "cannot listen");
                    PeerError::new(ResultCode::PEER_E_INVALID_ADDRESS)
                })?;
        let local = listener
            .local_addr()
            .map_err(|_| PeerError::new(ResultCode::PEER_E_INVALID_ADDRESS))?;
        self.accepting = Some(accept_from(listener.endpoint().clone(), self.renewals, ctx));
        self.listener = Some(listener);
        self.refresh_status();
        Ok(local)
    }
}

impl Handler<OpenDirectConnection> for GraphActor {
    type Result = Result<ConnectionId, PeerError>;

    fn handle(&mut self, message: OpenDirectConnection, ctx: &mut Self::Context) -> Self::Result {
        self.ready()?;
        let peer_id = PeerId::new(message.peer_id)?;
        let address = message.address;
        if &peer_id == self.peer_id() || self.is_own_address(&address) {
            return Err(PeerError::new(ResultCode::PEER_E_CONNECT_SELF));
        }
        if address.port() == 0 || address.ip().is_unspecified() || address.ip().is_multicast() {
            return Err(PeerError::new(ResultCode::PEER_E_INVALID_ADDRESS));
        }
        let endpoint = self.endpoint_for(&address)?;
        let connection_id = self.unused_connection_id();
        let request = Connect {
            version: PROTOCOL_VERSION,
            direct: true,
            connection_id,
            graph_id: self.properties.graph_id.clone(),
            source_peer_id: self.peer_id().clone(),
            target_peer_id: peer_id.clone(),
            proof: bytes::Bytes::new(),
        };
        let membership = self.options.membership.clone();
        let timeout = self.options.connect_timeout;
        let handshake = handshake::connect(endpoint, address, request, membership, timeout);
        self.start_outgoing(connection_id, peer_id, address, handshake, ctx);
        Ok(connection_id)
    }
}

impl GraphActor {
    /// Runs an outgoing attempt's `handshake` in the actor's context, as a pending outgoing
    /// link under `connection_id`; its outcome publishes CONNECTED or CONNECTION_FAILED.
    fn start_outgoing(
        &mut self,
        connection_id: ConnectionId,
        peer_id: PeerId,
        address: SocketAddr,
        handshake: impl std::future::Future<Output = Result<Link, PeerError>> + 'static,
        ctx: &mut Context<Self>,
    ) {
        let spawned = ctx.spawn(handshake.into_actor(self).map(move |result, act, ctx| {
            act.pending_outgoing.remove(&connection_id);
            shrink_if_sparse(&mut act.pending_outgoing);
            if act.closed {
                // The graph closed as the handshake ended: `release` cancelled this future,
                // but actix still polls a cancelled future that is ready in the same turn.
                // Nothing is adopted on a closed graph.
                if let Ok(link) = result {
                    link.parts.connection.close(
                        peergraph_engine::wire::close_code::LEAVING.into(),
                        b"leaving",
                    );
                }
                return;
            }
            match result {
                Ok(link) => act.adopt(link, connection_id, peer_id, None, ctx),
                Err(error) => {
                    let info = ConnectionInfo {
                        flags: ConnectionFlags::DIRECT,
                        connection_id,
                        node_id: NodeId(0),
                        peer_key: PeerKey([0; 32]),
                        peer_id,
                        address,
                    };
                    act.subscribers.publish(connection_event(
                        ConnectionStatus::ConnectionFailed,
                        &info,
                        Some(error.code()),
                    ));
                    act.renew_when_idle(ctx);
                }
            }
        }));
        self.pending_outgoing.insert(connection_id, spawned);
        self.note_links();
    }
}

impl Handler<SendData> for GraphActor {
    type Result = ResponseFuture<Result<(), PeerError>>;

    fn handle(&mut self, message: SendData, _ctx: &mut Self::Context) -> Self::Result {
        let outbox = self
            .ready()
            .and_then(|()| outbox_for_send(&self.table, message.connection_id, &message.data));
        Box::pin(async move { outbox?.send_data(message.data_type, message.data).await })
    }
}

impl GraphActor {
    /// Starts the close of direct connection `raw_id` (DESIGN.md, the close path): answers
    /// at once where the documented codes say so, otherwise takes the entry out of the
    /// table (a second close of the id now finds nothing) and hands the close to the
    /// connection actor, which answers on the returned channel once it is gone.
    fn start_close(&mut self, raw_id: u64) -> Result<CloseAnswer, PeerError> {
        self.ready()?;
        let id = ConnectionId::new(raw_id)?;
        let (_, entry) = self
            .table
            .remove(&id)
            .ok_or(PeerError::CONNECTION_NOT_FOUND)?;
        // The status (HAS_CONNECTIONS) is refreshed when the connection actor has ended,
        // right after its DISCONNECTED event, in the same order the remote side sees.
        self.table_shrunk();
        let (reply, answer) = oneshot::channel();
        // One Close per entry taken out: bounded by the table, like ConnectionEnded.
        entry.actor.do_send(Close { reply });
        Ok(CloseAnswer(answer))
    }
}

/// Where the answer of a close started by [`GraphActor::start_close`] comes.
pub(crate) struct CloseAnswer(oneshot::Receiver<Result<(), PeerError>>);

impl CloseAnswer {
    /// The close's answer. A close whose reply was dropped unanswered found the actor gone
    /// (the peer closed or the link failed between the lookup and the Close): the
    /// connection was gone already.
    pub(crate) async fn outcome(self) -> Result<(), PeerError> {
        self.0.await.unwrap_or(Err(PeerError::CONNECTION_NOT_FOUND))
    }
}

/// The facade's way to close: the same as [`CloseDirectConnection`], but the reply is the
/// channel the connection actor answers on, so that the answer goes straight to the
/// caller instead of through a task of the graph's.
#[derive(Message)]
#[rtype(result = "Result<CloseAnswer, PeerError>")]
pub(crate) struct StartClose {
    pub(crate) connection_id: u64,
}

impl Handler<StartClose> for GraphActor {
    type Result = Result<CloseAnswer, PeerError>;

    fn handle(&mut self, message: StartClose, _ctx: &mut Self::Context) -> Self::Result {
        self.start_close(message.connection_id)
    }
}

impl Handler<CloseDirectConnection> for GraphActor {
    type Result = ResponseFuture<Result<(), PeerError>>;

    fn handle(&mut self, message: CloseDirectConnection, _ctx: &mut Self::Context) -> Self::Result {
        let started = self.start_close(message.connection_id);
        Box::pin(async move { started?.outcome().await })
    }
}

impl Handler<EnumConnections> for GraphActor {
    type Result = Result<Vec<ConnectionInfo>, PeerError>;

    fn handle(&mut self, message: EnumConnections, _ctx: &mut Self::Context) -> Self::Result {
        self.ready()?;
        message.flags.validate()?;
        if !message.flags.intersects(ConnectionFlags::DIRECT) {
            return Ok(Vec::new());
        }
        let mut infos: Vec<ConnectionInfo> =
            self.table.iter().map(|entry| entry.info.clone()).collect();
        infos.sort_by_key(|info| info.connection_id);
        Ok(infos)
    }
}

impl Handler<GetNodeInfo> for GraphActor {
    type Result = Result<NodeInfo, PeerError>;

    fn handle(&mut self, message: GetNodeInfo, _ctx: &mut Self::Context) -> Self::Result {
        self.ready()?;
        let own = self.identity.node_id();
        if message.node_id == 0 || message.node_id == own.get() {
            return Ok(NodeInfo {
                node_id: own,
                peer_id: self.peer_id().clone(),
                addresses: self.listen_addresses(),
                attributes: String::new(),
            });
        }
        self.table
            .iter()
            .find(|entry| entry.info.node_id.get() == message.node_id)
            .map(|entry| NodeInfo {
                node_id: entry.info.node_id,
                peer_id: entry.info.peer_id.clone(),
                addresses: vec![entry.info.address],
                attributes: String::new(),
            })
            .ok_or(PeerError::new(ResultCode::PEER_E_NODE_NOT_FOUND))
    }
}

impl Handler<GetStatus> for GraphActor {
    type Result = Result<GraphStatus, PeerError>;

    fn handle(&mut self, _: GetStatus, _ctx: &mut Self::Context) -> Self::Result {
        self.ready()?;
        Ok(self.status)
    }
}

impl Handler<GetCounters> for GraphActor {
    type Result = Result<GraphCounters, PeerError>;

    fn handle(&mut self, _: GetCounters, _ctx: &mut Self::Context) -> Self::Result {
        self.ready()?;
        Ok(GraphCounters {
            connections: self.table.len(),
            pending_outgoing: self.pending_outgoing.len(),
            pending_incoming: self.pending_incoming,
            quic_connections: self.quic_connections(),
            endpoint_renewals: self.renewals,
        })
    }
}

impl Handler<GetConnectionStats> for GraphActor {
    type Result = Result<ConnectionStats, PeerError>;

    fn handle(&mut self, message: GetConnectionStats, _ctx: &mut Self::Context) -> Self::Result {
        self.ready()?;
        let id = ConnectionId::new(message.connection_id)?;
        // Clone the link out of the table before asking quinn, so no table lock is held
        // while quinn takes its own connection lock.
        let connection = self
            .table
            .get(&id)
            .map(|entry| entry.connection.clone())
            .ok_or(PeerError::CONNECTION_NOT_FOUND)?;
        Ok(ConnectionStats::from_quinn(id, &connection.stats()))
    }
}

impl Handler<RegisterEvent> for GraphActor {
    type Result = Result<crate::EventStream, PeerError>;

    fn handle(&mut self, message: RegisterEvent, _ctx: &mut Self::Context) -> Self::Result {
        self.ready()?;
        if message.limits.events == 0 || message.limits.bytes == 0 {
            return Err(PeerError::INVALID_ARG);
        }
        let filter = EventFilter::new(message.registrations)?;
        Ok(self.subscribers.add_stream(filter, message.limits))
    }
}

impl Handler<RegisterEventRecipient> for GraphActor {
    type Result = Result<crate::EventHandle, PeerError>;

    fn handle(
        &mut self,
        message: RegisterEventRecipient,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        self.ready()?;
        let filter = EventFilter::new(message.registrations)?;
        Ok(self.subscribers.add_recipient(filter, message.recipient))
    }
}

impl Handler<UnregisterEvent> for GraphActor {
    type Result = Result<(), PeerError>;

    fn handle(&mut self, message: UnregisterEvent, _ctx: &mut Self::Context) -> Self::Result {
        self.ready()?;
        if self.subscribers.remove(message.handle) {
            Ok(())
        } else {
            Err(PeerError::INVALID_ARG)
        }
    }
}

impl Handler<CloseGraph> for GraphActor {
    type Result = ResponseFuture<Result<(), PeerError>>;

    fn handle(&mut self, _: CloseGraph, ctx: &mut Self::Context) -> Self::Result {
        if let Err(error) = self.ready() {
            return Box::pin(async move { Err(error) });
        }
        let endpoints = self.release(ctx);
        Box::pin(drain(endpoints))
    }
}

/// Closes the graph whatever the engine's state (used by the last shutdown).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub(crate) struct Release;

impl Handler<Release> for GraphActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Release, ctx: &mut Self::Context) -> Self::Result {
        let endpoints = self.release(ctx);
        Box::pin(async move {
            let _ = drain(endpoints).await;
        })
    }
}

/// Hands the incoming connections of `endpoint` to the graph actor, as a stream.
/// Each incoming connection is tagged with `generation`, the renewal count when the stream
/// started, so that one from a renewed endpoint is told apart.
fn accept_from(
    endpoint: quinn::Endpoint,
    generation: u64,
    ctx: &mut Context<GraphActor>,
) -> SpawnHandle {
    ctx.add_stream(futures_util::stream::unfold(
        endpoint,
        move |endpoint| async move {
            let incoming = endpoint.accept().await?;
            Some((
                Accepted {
                    generation,
                    incoming,
                },
                endpoint,
            ))
        },
    ))
}

/// An incoming connection from the accept stream of endpoint generation `generation`.
struct Accepted {
    generation: u64,
    incoming: quinn::Incoming,
}

/// Waits (bounded) until closed endpoints are idle, so peers hear the close code.
async fn drain(endpoints: Vec<quinn::Endpoint>) -> Result<(), PeerError> {
    for endpoint in endpoints {
        let _ = tokio::time::timeout(ENDPOINT_DRAIN_TIMEOUT, endpoint.wait_idle()).await;
    }
    Ok(())
}

impl Handler<ConnectionEnded> for GraphActor {
    type Result = ();

    fn handle(&mut self, message: ConnectionEnded, ctx: &mut Self::Context) {
        let id = message.info.connection_id;
        tracing::debug!(connection_id = %id, reason = ?message.reason, "connection actor ended");
        if let Some(count) = self.per_node.get_mut(&message.info.node_id) {
            *count -= 1;
            if *count == 0 {
                self.per_node.remove(&message.info.node_id);
                shrink_if_sparse(&mut self.per_node);
            }
        }
        if self.closed {
            return;
        }
        // A close took the entry out already; and an entry under this id that is another
        // link's (its peer reused the id of this one while it was closing) stays.
        if self
            .table
            .remove_if(&id, |_, entry| entry.connection.stable_id() == message.link)
            .is_some()
        {
            self.table_shrunk();
        }
        self.subscribers.publish(connection_event(
            ConnectionStatus::Disconnected,
            &message.info,
            None,
        ));
        self.refresh_status();
        self.renew_when_idle(ctx);
    }
}

/// Gives a map's room back once it holds at most a quarter of its capacity (see
/// [`ROOM_KEPT`]). `capacity` and `len` are O(1), so this is cheap to call on every removal.
fn shrink_if_sparse<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > ROOM_KEPT && map.len() <= map.capacity() / 4 {
        map.shrink_to_fit();
    }
}

/// Validates a payload and finds a connection's outbox: shared by the facade's fast path.
pub(crate) fn outbox_for_send(
    table: &ConnectionTable,
    connection_id: u64,
    data: &bytes::Bytes,
) -> Result<crate::table::Outbox, PeerError> {
    // Arguments first, as the Win32 API does: an oversized payload is E_INVALIDARG
    // whatever the id.
    check_payload(data)?;
    outbox_of(table, connection_id)
}

#[cfg(test)]
mod open_tests {
    use super::*;
    use crate::connection::close_tests::{hold, quic_pair, system, within};
    use crate::connection::LinkParts;
    use peergraph_engine::{EventRegistration, GraphId};
    use peergraph_transport::FrameReader;
    use std::sync::atomic::Ordering;

    /// Starts an outgoing attempt whose handshake ends with what comes on `outcome`, as
    /// `OpenDirectConnection` does with a real handshake.
    struct OpenWith {
        outcome: oneshot::Receiver<Result<Link, PeerError>>,
    }

    impl Message for OpenWith {
        type Result = ConnectionId;
    }

    impl Handler<OpenWith> for GraphActor {
        type Result = MessageResult<OpenWith>;

        fn handle(&mut self, message: OpenWith, ctx: &mut Self::Context) -> Self::Result {
            let connection_id = self.unused_connection_id();
            let peer_id = PeerId::new("bob").expect("peer id");
            let address = SocketAddr::from(([127, 0, 0, 1], 9));
            let handshake = async move {
                message
                    .outcome
                    .await
                    .unwrap_or(Err(PeerError::new(ResultCode::PEER_E_CONNECTION_FAILED)))
            };
            self.start_outgoing(connection_id, peer_id, address, handshake, ctx);
            MessageResult(connection_id)
        }
    }

    /// A QUIC link to a raw peer, as an outgoing handshake hands it over, and the peer's
    /// side of it.
    async fn raw_link() -> (Link, quinn::Connection, [quinn::Endpoint; 2]) {
        let (local, peer, address, endpoints) = quic_pair().await;
        let (send, recv) = within("open", local.open_bi()).await.expect("open");
        let link = Link {
            parts: LinkParts {
                connection: local,
                send,
                reader: FrameReader::new(recv),
            },
            peer_key: PeerKey([7; 32]),
            address,
        };
        (link, peer, endpoints)
    }

    /// A graph actor on `arbiter`, on an engine that is started; its table and its count
    /// of live connection actors.
    fn start_graph(
        arbiter: &actix_rt::ArbiterHandle,
        options: GraphOptions,
    ) -> (Addr<GraphActor>, Arc<ConnectionTable>, Arc<AtomicUsize>) {
        let shared = EngineShared::started();
        let live = shared.live_connection_actors.clone();
        let table = Arc::new(ConnectionTable::new());
        let setup = GraphSetup {
            handle: GraphHandle::new(1).expect("handle"),
            shared,
            properties: GraphProperties::new(
                GraphId::new("g").expect("graph id"),
                PeerId::new("alice").expect("peer id"),
            ),
            identity: NodeIdentity::generate().expect("identity"),
            options,
            synchronized: true,
            table: table.clone(),
        };
        let graph = GraphActor::start_in_arbiter(arbiter, move |_| GraphActor::new(setup));
        (graph, table, live)
    }

    /// Ends a renewal's wait with the graph idle after a peak, and `client` (holding a
    /// QUIC connection the wait did not cover) as its IPv4 client endpoint: the state a
    /// link that started and ended during the wait, on an endpoint bound meanwhile, leaves.
    struct EndRenewalWait {
        client: quinn::Endpoint,
    }

    impl Message for EndRenewalWait {
        type Result = ();
    }

    impl Handler<EndRenewalWait> for GraphActor {
        type Result = ();

        fn handle(&mut self, message: EndRenewalWait, ctx: &mut Self::Context) {
            self.link_peak = self.options.renew_endpoints_after;
            self.client_v4 = Some(message.client);
            self.renewal_waiting = true;
            self.renewal_wait_ended(ctx);
        }
    }

    /// A renewal's wait ends while quinn still holds a connection it did not cover. The
    /// renewal used to give up until some later link came and went; now it waits again and
    /// renews once that connection is gone.
    #[tokio::test]
    async fn a_renewal_whose_wait_missed_a_connection_waits_again() {
        let (system, arbiter) = system();
        let options = GraphOptions::default().with_renew_endpoints_after(1);
        let (graph, _table, _live) = start_graph(&arbiter, options);
        let (client, _server, _address, [_accepting, connecting]) = quic_pair().await;
        within(
            "the wait ends",
            graph.send(EndRenewalWait { client: connecting }),
        )
        .await
        .expect("graph runs");
        let counters = || async {
            within("counters", graph.send(GetCounters))
                .await
                .expect("graph runs")
                .expect("counters")
        };
        let before = counters().await;
        assert_eq!(before.quic_connections, 1);
        assert_eq!(
            before.endpoint_renewals, 0,
            "renewed under a live connection"
        );
        client.close(0u32.into(), b"done");
        drop(client);
        within("the renewal", async {
            while counters().await.endpoint_renewals == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert_eq!(counters().await.quic_connections, 0);
        system.stop();
    }

    /// An outgoing handshake completes, and CloseGraph arrives before the graph actor runs
    /// again. The graph closes first and cancels the handshake's future, but actix cancels
    /// lazily: a spawned future that is ready is still polled in that same turn, so its
    /// outcome came through on a closed graph. It adopted the link: a connection actor
    /// started and an entry went into the closed graph's table that nothing ever removes
    /// (ConnectionEnded ignores a closed graph), and the link stayed up. Now the link is
    /// closed with LEAVING, as an incoming one that completes after the close is.
    #[tokio::test]
    async fn an_outgoing_handshake_done_as_the_graph_closes_is_not_adopted() {
        let (system, arbiter) = system();
        let (graph, table, live) = start_graph(&arbiter, GraphOptions::default());
        let mut events = within(
            "register",
            graph.send(RegisterEvent {
                registrations: vec![EventRegistration::new(EventType::DirectConnection)],
                limits: crate::QueueLimits::default(),
            }),
        )
        .await
        .expect("graph runs")
        .expect("registered");
        let (link, peer, _endpoints) = raw_link().await;
        let (outcome_tx, outcome) = oneshot::channel();
        within("open", graph.send(OpenWith { outcome }))
            .await
            .expect("graph runs");
        let counters = within("counters", graph.send(GetCounters))
            .await
            .expect("graph runs")
            .expect("counters");
        assert_eq!(counters.pending_outgoing, 1);

        // While the graph's thread is held: the handshake ends, and CloseGraph is queued.
        let release = hold(&arbiter).await;
        assert!(outcome_tx.send(Ok(link)).is_ok());
        let closed = graph.send(CloseGraph);
        let _ = release.send(());
        within("CloseGraph", closed)
            .await
            .expect("graph runs")
            .expect("closed");

        assert_eq!(within("the stream ends", events.recv()).await, None);
        assert_eq!(table.len(), 0, "a closed graph's table stays empty");
        assert_eq!(
            live.load(Ordering::Relaxed),
            0,
            "no connection actor started"
        );
        let reason = within("the peer hears the close", peer.closed()).await;
        assert!(
            matches!(
                &reason,
                quinn::ConnectionError::ApplicationClosed(close)
                    if close.error_code
                        == quinn::VarInt::from(peergraph_engine::wire::close_code::LEAVING)
            ),
            "{reason:?}"
        );
        system.stop();
    }
}
