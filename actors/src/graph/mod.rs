//! The graph actor: one per open graph, the driver of that graph's [`GraphCore`]. It owns
//! the graph's QUIC endpoints, runs the handshakes, starts and supervises its connection
//! actors, keeps the index of their handles that other threads read, and publishes the
//! events the core raises. Every decision (admit or refuse, which code, what the table
//! holds, the status) is the core's.
//!
//! ```text
//!  app ──Listen/Open/Send/Close/Enum/Stats/Register──▶ GraphActor ──(reply: code)──▶ app
//!  endpoint.accept() ──Incoming──▶ GraphActor ──handshake──▶ GraphCore::on_connect
//!                                   ──Welcome──▶ ConnectionActor (started here) / REFUSE
//!  OpenDirectConnection ──GraphCore::start_outgoing──▶ connect + CONNECT/WELCOME
//!                        ──GraphCore::outgoing_ended──▶ ConnectionActor / CONNECTION_FAILED
//!  ConnectionActor dropped ──ConnectionEnded──▶ GraphCore::link_ended ──DISCONNECTED──▶ registrations
//! ```
//!
//! A closed graph actor keeps answering `PEER_E_INVALID_GRAPH` (or
//! `PEER_E_NOT_INITIALIZED` after the last shutdown) to whoever still holds its address,
//! and stops when the last address is dropped.
//!
//! # Layout
//! - this file: the actor, its setup, and how it carries out the core's decisions;
//! - `handlers`: the handlers of the API's messages;
//! - `renewal`: the endpoints, the accept stream, and their renewal after a peak;
//! - `messages`: the messages.

mod handlers;
mod messages;
mod record_messages;
mod records;
mod renewal;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use actix::prelude::*;
use peergraph_engine::graph_core::{
    CoreConfig, GraphCore, IncomingConnect, IncomingDecision, OutgoingDecision, WindowShare,
    MAX_LINK_WINDOW,
};
use peergraph_engine::wire::{close_code, Connect, Message as WireMessage};
use peergraph_engine::{
    ConnectionId, ConnectionInfo, DataType, EventType, GraphHandle, GraphProperties, PeerError,
};
use peergraph_transport::{
    membership_proof, verify_membership_proof, Drivers, LinkOptions, NodeIdentity, ProofRole,
    RenewableEndpoint,
};
use std::collections::{HashMap, VecDeque};

pub use self::messages::*;
pub use self::record_messages::*;
use crate::connection::{batch_items, link_tag, ConnectionActor, ConnectionEnded, ConnectionSetup};
use crate::events::Subscribers;
use crate::handshake::{self, Confirmation, Dialer, Link, ZeroRtt};
use crate::lifecycle::EngineState;
use crate::metrics::{LinkTotals, Tally};
use crate::options::GraphOptions;
use crate::outbox::{check_payload, outbox, Outbox, Outgoing, Refused};
use crate::table::{ConnectionEntry, ConnectionTable};

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
    core: GraphCore,
    state: Arc<EngineState>,
    /// Takes the graph out of the engine's handle table when it closes.
    forget: Option<Box<dyn FnOnce() + Send>>,
    identity: NodeIdentity,
    options: GraphOptions,
    listener: Option<RenewableEndpoint>,
    /// The stream of the listener's incoming connections, replaced when it is renewed.
    accepting: Option<SpawnHandle>,
    client_v4: Option<quinn::Endpoint>,
    client_v6: Option<quinn::Endpoint>,
    /// How links go out (with the graph's TLS tickets), made on the first open.
    dialer: Option<Dialer>,
    /// The handles of the core's connections, for other threads (see `table`).
    table: Arc<ConnectionTable>,
    /// The futures of the outgoing attempts under way, to abandon them on close.
    attempts: HashMap<ConnectionId, SpawnHandle>,
    /// The most links (connections and handshakes) at once since the endpoints were made
    /// or last renewed (see [`GraphOptions::renew_endpoints_after`]).
    link_peak: usize,
    /// Whether a renewal waits for the endpoints' last QUIC connections to go.
    renewal_waiting: bool,
    /// How many times the endpoints were renewed.
    renewals: u64,
    subscribers: Arc<Subscribers>,
    live_actors: Arc<AtomicUsize>,
    /// Each link's share of the receive budget.
    windows: WindowShare,
    /// The record database.
    records: records::Records,
    /// The totals [`GetMetrics`] reports.
    tally: Tally,
}

/// What the engine gives a new graph actor.
pub(crate) struct GraphSetup {
    pub(crate) handle: GraphHandle,
    pub(crate) state: Arc<EngineState>,
    pub(crate) forget: Box<dyn FnOnce() + Send>,
    pub(crate) properties: GraphProperties,
    pub(crate) identity: NodeIdentity,
    pub(crate) options: GraphOptions,
    pub(crate) database: crate::database::Database,
    pub(crate) table: Arc<ConnectionTable>,
}

impl GraphActor {
    pub(crate) fn new(setup: GraphSetup) -> Self {
        let core = GraphCore::new(CoreConfig {
            graph_id: setup.properties.graph_id,
            peer_id: setup.properties.creator_id,
            node_id: setup.identity.node_id(),
            admission: setup.options.membership.admission(),
            limits: setup.options.limits(),
            synchronized: setup.database.book.is_synchronized(),
        });
        let windows = WindowShare::new(setup.options.receive_budget);
        GraphActor {
            core,
            live_actors: setup.state.live_connection_actors.clone(),
            state: setup.state,
            forget: Some(setup.forget),
            identity: setup.identity,
            options: setup.options,
            listener: None,
            accepting: None,
            client_v4: None,
            client_v6: None,
            dialer: None,
            table: setup.table,
            attempts: HashMap::new(),
            link_peak: 0,
            renewal_waiting: false,
            renewals: 0,
            subscribers: Arc::new(Subscribers::new(setup.handle)),
            windows,
            records: records::Records::new(setup.database),
            tally: Tally::default(),
        }
    }

    /// `PEER_E_NOT_INITIALIZED` after the last shutdown, `PEER_E_INVALID_GRAPH` once closed.
    fn ready(&self) -> Result<(), PeerError> {
        self.core.check_ready(self.state.is_initialized())
    }

    fn link_options(&self) -> LinkOptions {
        LinkOptions {
            idle_timeout: self.options.idle_timeout,
            congestion: self.options.congestion,
            // The graph's actors, and so every call into its endpoint, run on its arbiter.
            drivers: Drivers::Local,
            zero_rtt: self.options.zero_rtt,
        }
    }

    /// How the graph's links go out: made on the first open and kept, with its tickets,
    /// for the graph's life (renewed endpoints keep it).
    ///
    /// # Errors
    /// `E_FAIL` if the client's TLS configuration cannot be made from the identity.
    fn dialer(&mut self) -> Result<Dialer, PeerError> {
        if let Some(dialer) = &self.dialer {
            return Ok(dialer.clone());
        }
        let dialer = Dialer::new(
            &self.identity,
            &self.link_options(),
            &self.options.membership,
        )
        .map_err(|error| {
            PeerError::with_cause(peergraph_engine::ResultCode::E_FAIL, error.to_string())
        })?;
        self.dialer = Some(dialer.clone());
        Ok(dialer)
    }

    fn listen_addresses(&self) -> Vec<SocketAddr> {
        self.listener
            .iter()
            .filter_map(|listener| listener.local_addr().ok())
            .collect()
    }

    /// Publishes the events the core raised.
    pub(crate) fn publish_events(&mut self) {
        while let Some(event) = self.core.poll_event() {
            self.subscribers.publish(event);
        }
    }

    /// Starts the connection actor of a link the core adopted (`info`), enters its handles
    /// in the index and publishes what the core raised (CONNECTED, the status). `welcome`
    /// is the answer to send first, on an incoming link.
    fn run_link(
        &mut self,
        mut link: Link,
        info: ConnectionInfo,
        welcome: Option<bytes::Bytes>,
        ctx: &mut Context<Self>,
    ) {
        let (outbox, outbox_receiver) = outbox();
        if welcome.is_some() {
            self.tally.opened_incoming += 1;
        } else {
            self.tally.opened_outgoing += 1;
        }
        if let Some(welcome) = welcome {
            // WELCOME goes into the stream here, on the accept path, rather than through
            // the new actor's writer: the connecting node waits for it, and this saves the
            // actor's start and a turn of its writer on the way. What does not fit at once
            // (a peer that gave no window) is queued in the new, empty outbox, so it still
            // goes first, before any data.
            let rest = write_now(&mut link.parts.send, welcome);
            if !rest.is_empty() {
                let _ = outbox.control(rest);
            }
        }
        let connection = link.parts.connection.clone();
        let connection_id = info.connection_id;
        let setup = ConnectionSetup {
            info,
            link: link.parts,
            outbox: outbox.clone(),
            outbox_receiver,
            graph: ctx.address().recipient(),
            subscribers: self.subscribers.clone(),
            close_timeout: self.options.close_timeout,
            close_bound: self.options.close_bound,
            live_actors: self.live_actors.clone(),
        };
        let actor = ConnectionActor::new(setup).start();
        self.share_windows(self.table.len() + 1);
        connection.set_receive_window(window_of(self.windows.window()));
        self.table.insert(
            connection_id,
            ConnectionEntry {
                outbox,
                actor,
                connection,
            },
        );
        self.note_links();
        self.publish_events();
    }

    /// The graph now has `links` links: sets every link's receive window again if its
    /// share of the budget changed (see `WindowShare`).
    fn share_windows(&mut self, links: usize) {
        if let Some(window) = self.windows.links_changed(links) {
            let window = window_of(window);
            for entry in self.table.iter() {
                entry.connection.set_receive_window(window);
            }
        }
    }

    /// An incoming handshake from `source` ended, with a CONNECT or without. A CONNECT
    /// that came before the handshake completed (0-RTT data) is answered now, and its link
    /// admitted only once the handshake completes (`confirm_early`), or, past its source's
    /// cap of such links, judged only once the handshake completes
    /// (`accept_when_confirmed`); until then it keeps its handshake slot.
    fn on_accepted(
        &mut self,
        source: IpAddr,
        accepted: Option<(Link, Connect)>,
        ctx: &mut Context<Self>,
    ) {
        let Some((mut link, connect)) = accepted else {
            self.core.incoming_ended(source);
            self.tally.handshakes_failed += 1;
            return;
        };
        let incoming = IncomingConnect {
            connect: &connect,
            peer_key: link.peer_key,
            accepts_direct: self.subscribers.wants(EventType::DirectConnection),
        };
        let tag = link_tag(&link.parts.connection);
        let confirmation = match link.confirmation.take() {
            // Its source has as many welcomed links out of its count as it may: this
            // CONNECT is judged once the handshake completes (see `can_welcome_early`).
            Some(confirmation) if !self.core.can_welcome_early(source) => {
                return self.accept_when_confirmed(source, link, connect, confirmation, ctx);
            }
            confirmation => confirmation,
        };
        let decision = match confirmation {
            Some(_) => self
                .core
                .on_early_connect(incoming, tag, link.address, source),
            None => {
                let connection = link.parts.connection.clone();
                let secret = self.options.membership.secret.clone();
                let verify = |connect: &Connect| {
                    secret.as_ref().is_some_and(|secret| {
                        verify_membership_proof(
                            &connection,
                            secret,
                            ProofRole::Connect,
                            connect.connection_id,
                            &connect.proof,
                        )
                    })
                };
                self.core.on_connect(incoming, tag, link.address, verify)
            }
        };
        let (decision, confirmation) = match (decision, confirmation) {
            (IncomingDecision::Welcome { info, welcome }, Some(confirmation)) => {
                // WELCOME goes now, as 0.5-RTT data: only the session's holder reads it.
                let frame = WireMessage::Welcome(welcome).to_bytes();
                let rest = write_now(&mut link.parts.send, frame);
                self.confirm_early(source, link, info, rest, confirmation, ctx);
                return;
            }
            pair => pair,
        };
        drop(confirmation);
        self.core.incoming_ended(source);
        match decision {
            IncomingDecision::Welcome { info, mut welcome } => {
                if let Some(secret) = &self.options.membership.secret {
                    welcome.proof = membership_proof(
                        &link.parts.connection,
                        secret,
                        ProofRole::Welcome,
                        welcome.connection_id,
                    )
                    .unwrap_or_default();
                }
                let frame = WireMessage::Welcome(welcome).to_bytes();
                if link.zero_rtt == ZeroRtt::Accepted {
                    // Its CONNECT came as 0-RTT data: read as the handshake completed, or
                    // held until it did (`accept_when_confirmed`).
                    self.tally.opened_early += 1;
                }
                self.run_link(link, info, Some(frame), ctx);
            }
            IncomingDecision::Refuse(reason) => {
                self.tally.refused(reason.into());
                tracing::info!(
                    ?reason,
                    peer = %connect.source_peer_id,
                    key = %link.peer_key,
                    address = %link.address,
                    "refusing a connection"
                );
                ctx.spawn(handshake::refuse(link, reason).into_actor(self));
            }
            IncomingDecision::Leave => leave(&link.parts.connection),
        }
    }

    /// Waits (bounded by the TLS timeout) for the handshake of a link whose CONNECT came
    /// as 0-RTT data, then judges the CONNECT as one sent after the handshake; a handshake
    /// that does not complete ends the link unanswered. Until then the handshake counts
    /// against its source, as any other under way.
    fn accept_when_confirmed(
        &mut self,
        source: IpAddr,
        link: Link,
        connect: Connect,
        confirmation: Confirmation,
        ctx: &mut Context<Self>,
    ) {
        let completed = handshake_completed(&link, confirmation);
        ctx.spawn(completed.into_actor(self).map(move |completed, act, ctx| {
            if completed {
                // `link.confirmation` is taken: this is the path of a confirmed CONNECT.
                act.on_accepted(source, Some((link, connect)), ctx);
            } else {
                act.early_unconfirmed(source, &link);
            }
            act.renew_when_idle(ctx);
        }));
    }

    /// The handshake of a link whose CONNECT came as 0-RTT data did not complete: its slot
    /// is freed and the link closed, unadmitted.
    fn early_unconfirmed(&mut self, source: IpAddr, link: &Link) {
        self.core.incoming_ended(source);
        if !self.core.is_closed() {
            self.tally.early_unconfirmed += 1;
        }
        link.parts
            .connection
            .close(close_code::HANDSHAKE_TIMEOUT.into(), b"handshake timeout");
    }

    /// Waits (bounded by the TLS timeout) for the handshake of a link welcomed on a CONNECT
    /// sent as 0-RTT data, then runs it (CONNECTED) or drops it unadmitted. `welcome_rest`
    /// is what of WELCOME did not fit into the stream at once.
    fn confirm_early(
        &mut self,
        source: IpAddr,
        link: Link,
        info: ConnectionInfo,
        welcome_rest: bytes::Bytes,
        confirmation: Confirmation,
        ctx: &mut Context<Self>,
    ) {
        let completed = handshake_completed(&link, confirmation);
        ctx.spawn(completed.into_actor(self).map(move |completed, act, ctx| {
            let tag = link_tag(&link.parts.connection);
            // The core counts the handshake back against its source here, and the slot
            // is then freed (`on_early_connect`: in this order).
            if !completed {
                act.core.early_failed(info.connection_id, tag);
                act.early_unconfirmed(source, &link);
            } else if let Some(info) = act.core.early_confirmed(info.connection_id, tag) {
                act.core.incoming_ended(source);
                act.tally.opened_early += 1;
                act.run_link(link, info, Some(welcome_rest), ctx);
            } else {
                act.core.incoming_ended(source);
                leave(&link.parts.connection);
            }
            act.renew_when_idle(ctx);
        }));
    }

    /// Runs an outgoing attempt's `handshake` in the actor's context under the id the
    /// core gave it; the core decides what its outcome becomes.
    fn start_outgoing(
        &mut self,
        connection_id: ConnectionId,
        handshake: impl std::future::Future<Output = Result<Link, PeerError>> + 'static,
        ctx: &mut Context<Self>,
    ) {
        let spawned = ctx.spawn(handshake.into_actor(self).map(move |result, act, ctx| {
            act.attempts.remove(&connection_id);
            let outcome = match &result {
                Ok(link) => Ok((link.peer_key, link_tag(&link.parts.connection))),
                Err(error) => Err(error.clone()),
            };
            // The graph may have closed as the handshake ended: `release` cancelled this
            // future, but actix still polls a cancelled future that is ready in the same
            // turn. The core adopts nothing on a closed graph.
            match (act.core.outgoing_ended(connection_id, outcome), result) {
                (OutgoingDecision::Adopt(info), Ok(link)) => {
                    if link.zero_rtt == ZeroRtt::Accepted {
                        act.tally.opened_early += 1;
                    }
                    act.run_link(link, info, None, ctx);
                }
                (OutgoingDecision::Leave, Ok(link)) => leave(&link.parts.connection),
                (decision, _) => {
                    if decision == OutgoingDecision::Failed {
                        act.tally.outgoing_failed += 1;
                    }
                    act.publish_events();
                    act.renew_when_idle(ctx);
                }
            }
        }));
        self.attempts.insert(connection_id, spawned);
        self.note_links();
    }

    /// Closes everything: connections, pending handshakes, registrations, endpoints.
    /// Returns the endpoints, to be drained by the caller.
    fn release(&mut self, ctx: &mut Context<Self>) -> Vec<quinn::Endpoint> {
        if self.core.is_closed() {
            return Vec::new();
        }
        let released = self.core.release();
        if let Some(forget) = self.forget.take() {
            forget();
        }
        for (_, spawned) in self.attempts.drain() {
            ctx.cancel_future(spawned);
        }
        for entry in released.connections {
            if let Some((_, entry)) = self.table.remove(&entry.info.connection_id) {
                entry.actor.do_send(crate::connection::Leave);
            }
        }
        self.subscribers.close_all();
        let endpoints = self.endpoints();
        self.listener = None;
        self.client_v4 = None;
        self.client_v6 = None;
        for endpoint in &endpoints {
            endpoint.close(close_code::LEAVING.into(), b"leaving");
        }
        endpoints
    }
}

/// Writes as much of `frame` into `send` as quinn takes without waiting, and returns the
/// rest (empty when all of it went). A stream that fails here returns nothing: its
/// connection actor reads the failure from the link.
fn write_now(send: &mut quinn::SendStream, frame: bytes::Bytes) -> bytes::Bytes {
    use futures_util::FutureExt;
    match send.write(&frame).now_or_never() {
        Some(Ok(written)) => frame.slice(written..),
        Some(Err(_)) => bytes::Bytes::new(),
        None => frame,
    }
}

/// A link's connection window in quinn's type. A share as large as the stream window
/// leaves the connection unlimited, as quinn's default is: the one stream's window bounds
/// it, and a link with the budget to itself runs exactly as a raw quinn link.
fn window_of(bytes: u64) -> quinn::VarInt {
    if bytes >= MAX_LINK_WINDOW {
        return quinn::VarInt::MAX;
    }
    quinn::VarInt::from_u64(bytes).unwrap_or(quinn::VarInt::MAX)
}

/// Closes a link that arrived as the graph closed.
fn leave(connection: &quinn::Connection) {
    connection.close(close_code::LEAVING.into(), b"leaving");
}

impl Actor for GraphActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Lifecycle calls are few; application data never passes through this mailbox
        // (SendData goes to the connection's outbox), so a generous bound suffices.
        ctx.set_mailbox_capacity(1024);
    }
}

impl Handler<ConnectionEnded> for GraphActor {
    type Result = ();

    fn handle(&mut self, message: ConnectionEnded, ctx: &mut Self::Context) {
        let id = message.info.connection_id;
        tracing::debug!(connection_id = %id, reason = %message.reason, "connection actor ended");
        let closed = self.core.is_closed();
        self.tally.link_ended(LinkTotals {
            reason: &message.reason,
            close_answer: message.close_answer,
            bytes_sent: message.bytes_sent,
            bytes_received: message.bytes_received,
        });
        let ended = self.core.link_ended(&message.info, message.link);
        if ended.removed {
            self.table.remove(&id);
        }
        if ended.shrink {
            self.table.shrink_to_fit();
        }
        self.share_windows(self.table.len());
        if closed {
            return;
        }
        self.publish_events();
        self.renew_when_idle(ctx);
    }
}

/// Whether the handshake of `link`, whose CONNECT came as 0-RTT data, completes by the
/// confirmation's deadline with the link still open.
fn handshake_completed(
    link: &Link,
    confirmation: Confirmation,
) -> impl std::future::Future<Output = bool> + 'static {
    let connection = link.parts.connection.clone();
    let Confirmation { completed, by } = confirmation;
    async move {
        tokio::time::timeout_at(by, completed).await.is_ok() && connection.close_reason().is_none()
    }
}

/// SendData up to the point where it would wait, shared by the facade and the graph's
/// handler: validates the payload, finds the connection, and queues the frame at once if
/// its outbox has room, under the table's read lock (so the common case clones nothing).
/// `Ok(None)` when it is queued; `Ok(Some(..))` with the outbox and the payload when the
/// caller must wait for room ([`Outbox::send_data`]).
///
/// # Errors
/// `E_INVALIDARG` for a payload over [`MAX_DATA_LEN`](crate::MAX_DATA_LEN) (arguments
/// first, as the Win32 API does, whatever the id), then `PEER_E_CONNECTION_NOT_FOUND`.
pub(crate) fn send_now(
    table: &ConnectionTable,
    connection_id: ConnectionId,
    data_type: DataType,
    data: bytes::Bytes,
) -> Result<Option<(Outbox, bytes::Bytes)>, PeerError> {
    check_payload(&data)?;
    let entry = table
        .get(&connection_id)
        .ok_or(PeerError::CONNECTION_NOT_FOUND)?;
    match entry.outbox.try_send_data(data_type, data) {
        Ok(()) => Ok(None),
        Err(Refused::Full(data)) => Ok(Some((entry.outbox.clone(), data))),
        Err(Refused::Gone) => Err(PeerError::CONNECTION_NOT_FOUND),
    }
}

/// SendDataMany up to the point where it would wait, shared by the facade and the graph's
/// handler: checks and encodes every payload for the connection's outbox (outside the
/// table's lock; none is sent if one is too long), then finds the connection.
///
/// # Errors
/// `E_INVALIDARG` for a payload over [`MAX_DATA_LEN`](crate::MAX_DATA_LEN) (arguments
/// first, whatever the id), then `PEER_E_CONNECTION_NOT_FOUND`.
pub(crate) fn send_many_now<I>(
    table: &ConnectionTable,
    connection_id: ConnectionId,
    data_type: DataType,
    payloads: I,
) -> Result<(Outbox, VecDeque<Outgoing>), PeerError>
where
    I: IntoIterator,
    I::Item: Into<bytes::Bytes>,
{
    let items = batch_items(data_type, payloads)?;
    let outbox = table
        .get(&connection_id)
        .ok_or(PeerError::CONNECTION_NOT_FOUND)?
        .outbox
        .clone();
    Ok((outbox, items))
}
