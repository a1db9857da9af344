//! The connection actor: one per QUIC link. It owns the `quinn::Connection`, reads frames
//! from the control stream and publishes INCOMING_DATA, runs the writer that drains the
//! outbox, and carries out the close path.
//!
//! ```text
//!  Outbox (SendData) ──▶ writer ──▶ SendStream ══QUIC══▶ peer
//!  peer ══QUIC══▶ RecvStream ──▶ reader (StreamHandler) ──▶ Subscribers (INCOMING_DATA)
//!  graph ──Close──▶ ConnectionActor ──Disconnect──▶ writer
//!  drop of the actor (any reason, panics included) ──▶ EndGuard ──ConnectionEnded──▶ graph
//! ```
//!
//! # The close path
//! 1. `Close` marks the link closing and queues DISCONNECT(APP_DISCONNECT) behind every frame
//!    SendData already accepted; the writer closes the outbox, so later SendData calls get
//!    `PEER_E_CONNECTION_NOT_FOUND`, writes the rest, then DISCONNECT.
//! 2. The peer reads everything up to the DISCONNECT and closes the QUIC connection with
//!    close code APP_DISCONNECT: that is the proof it has all the data. Reply: S_OK.
//! 3. If both sides close at once, each reads the other's DISCONNECT, finishes its stream,
//!    and closes QUIC once it has read the peer's end of stream: both get S_OK.
//! 4. If nothing of that happens within the close timeout, the link is closed with
//!    CLOSE_TIMEOUT and the reply is `PEER_E_TIMEOUT`; a link lost in the middle answers
//!    `PEER_E_CONNECTION_FAILED`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use peergraph_engine::wire::{close_code, DisconnectReason, Message};
use peergraph_engine::{
    ConnectionChange, ConnectionId, ConnectionInfo, ConnectionStatus, GraphEvent, PeerError,
    ResultCode,
};
use peergraph_transport::{DataFrame, FrameReader, ReadFrameError};
use tokio::sync::oneshot;

use crate::events::Subscribers;
use crate::table::{Outbox, OutboxReceiver, Outgoing};

/// Bytes the writer gathers from the outbox into one write, so that many small frames
/// cost one call into quinn.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// DATA frames up to this many bytes (header included) are copied into a shared chunk
/// instead of going to quinn as two chunks of their own (header, payload). quinn's send
/// buffer finds the bytes of every packet it builds by walking its unacknowledged chunks
/// from the front, so a window full of tiny chunks costs time quadratic in their number:
/// with 64-byte messages that walk took a fifth to a half of the engine's CPU time
/// (benches/RESULTS.md). Copying a frame this small costs less than one step of that walk
/// per packet; larger payloads still go without a copy.
const COALESCE_FRAME_BYTES: usize = 8 * 1024;

/// The size of one shared chunk of small frames: a few packets' worth, small enough to
/// come from the allocator's heap rather than its own mapping.
const COALESCE_CHUNK_BYTES: usize = 32 * 1024;

/// The chunks of one write: small frames copied together into shared chunks, large
/// payloads and control frames as they are.
#[derive(Default)]
struct WriteBatch {
    chunks: Vec<Bytes>,
    /// Small frames not yet sealed into `chunks`. Its spare capacity serves the next
    /// batch while the outbox keeps delivering, and is given back when the link goes
    /// quiet, so an idle link holds nothing here.
    small: BytesMut,
}

impl WriteBatch {
    fn push_frame(&mut self, frame: DataFrame) {
        let len = frame.wire_len();
        if len > COALESCE_FRAME_BYTES {
            self.seal();
            frame.push_chunks(&mut self.chunks);
            return;
        }
        if self.small.capacity() - self.small.len() < len {
            self.seal();
            self.small = BytesMut::with_capacity(COALESCE_CHUNK_BYTES);
        }
        frame.copy_into(&mut self.small);
    }

    /// Gives back the spare capacity of the shared chunk (the link has gone quiet).
    fn release(&mut self) {
        self.small = BytesMut::new();
    }

    fn push_control(&mut self, frame: Bytes) {
        self.seal();
        self.chunks.push(frame);
    }

    /// Moves the gathered small frames into `chunks`, keeping their order.
    fn seal(&mut self) {
        if !self.small.is_empty() {
            self.chunks.push(self.small.split().freeze());
        }
    }
}

/// Why a connection actor ended (for logs and the graph's bookkeeping).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// Closed by this node's application.
    LocalClose,
    /// Closed by the peer (DISCONNECT, or QUIC close).
    RemoteClose,
    /// The graph closed (or the engine shut down).
    GraphClosed,
    /// The link failed: idle timeout, transport error, peer vanished.
    Lost(String),
    /// The peer broke the protocol.
    ProtocolError(String),
    /// The actor ended without saying why (it panicked, or its arbiter stopped).
    Aborted,
}

/// Sent to the graph exactly once per connection actor, when it is dropped.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub(crate) struct ConnectionEnded {
    pub(crate) info: ConnectionInfo,
    pub(crate) reason: EndReason,
}

/// Reports the end of a connection when the actor is dropped, whatever the cause: a
/// normal stop, a panic unwinding through a handler, or the arbiter shutting down. This is
/// the supervision actix does not give us (it does not catch panics).
struct EndGuard {
    info: ConnectionInfo,
    connection: quinn::Connection,
    graph: Recipient<ConnectionEnded>,
    ended: Option<oneshot::Sender<()>>,
    live_actors: Arc<AtomicUsize>,
    reason: EndReason,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        if self.connection.close_reason().is_none() {
            self.connection.close(
                close_code::INTERNAL_ERROR.into(),
                b"connection handler ended",
            );
        }
        self.live_actors.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(connection_id = %self.info.connection_id, reason = ?self.reason, "connection ended");
        // One message per connection: bounded by the number of connections, so do_send
        // cannot be driven by a peer to grow the graph's mailbox.
        self.graph.do_send(ConnectionEnded {
            info: self.info.clone(),
            reason: self.reason.clone(),
        });
        if let Some(ended) = self.ended.take() {
            let _ = ended.send(());
        }
    }
}

/// What a connection actor needs to run: the link after a successful handshake.
pub(crate) struct LinkParts {
    pub(crate) connection: quinn::Connection,
    pub(crate) send: quinn::SendStream,
    pub(crate) reader: FrameReader,
}

/// Everything a connection actor is started with.
pub(crate) struct ConnectionSetup {
    pub(crate) info: ConnectionInfo,
    pub(crate) link: LinkParts,
    pub(crate) outbox: Outbox,
    pub(crate) outbox_receiver: OutboxReceiver,
    pub(crate) graph: Recipient<ConnectionEnded>,
    pub(crate) subscribers: Arc<Subscribers>,
    pub(crate) close_timeout: Duration,
    pub(crate) live_actors: Arc<AtomicUsize>,
    pub(crate) ended: oneshot::Sender<()>,
}

/// The actor of one QUIC link. Started by its graph; applications reach it only through
/// the graph's messages.
pub struct ConnectionActor {
    id: ConnectionId,
    connection: quinn::Connection,
    start: Option<(quinn::SendStream, FrameReader, OutboxReceiver)>,
    subscribers: Arc<Subscribers>,
    close_timeout: Duration,
    outbox: Outbox,
    closing: bool,
    finish_stream: Option<oneshot::Sender<()>>,
    peer_disconnected: bool,
    close_reply: Option<oneshot::Sender<Result<(), PeerError>>>,
    guard: EndGuard,
}

impl ConnectionActor {
    pub(crate) fn new(setup: ConnectionSetup) -> Self {
        setup.live_actors.fetch_add(1, Ordering::Relaxed);
        let LinkParts {
            connection,
            send,
            reader,
        } = setup.link;
        ConnectionActor {
            id: setup.info.connection_id,
            connection: connection.clone(),
            start: Some((send, reader, setup.outbox_receiver)),
            subscribers: setup.subscribers,
            close_timeout: setup.close_timeout,
            outbox: setup.outbox,
            closing: false,
            finish_stream: None,
            peer_disconnected: false,
            close_reply: None,
            guard: EndGuard {
                info: setup.info,
                connection,
                graph: setup.graph,
                ended: Some(setup.ended),
                live_actors: setup.live_actors,
                reason: EndReason::Aborted,
            },
        }
    }

    /// Ends the actor: answers a pending close with `outcome` (its future then stops the
    /// actor), or stops at once when no close is pending.
    fn end(&mut self, outcome: Result<(), PeerError>, ctx: &mut Context<Self>) {
        match self.close_reply.take() {
            Some(reply) => {
                let _ = reply.send(outcome);
            }
            None => ctx.stop(),
        }
    }

    fn protocol_error(&mut self, what: String, ctx: &mut Context<Self>) {
        tracing::debug!(connection_id = %self.id, %what, "protocol error");
        self.connection
            .close(close_code::PROTOCOL_ERROR.into(), b"protocol error");
        self.guard.reason = EndReason::ProtocolError(what);
        self.end(
            Err(PeerError::new(ResultCode::PEER_E_CONNECTION_FAILED)),
            ctx,
        );
    }

    fn connection_lost(&mut self, error: quinn::ConnectionError, ctx: &mut Context<Self>) {
        use quinn::ConnectionError as E;
        let orderly = matches!(&error, E::ApplicationClosed(close)
            if close.error_code == close_code::APP_DISCONNECT.into());
        let outcome = match &error {
            _ if orderly => Ok(()),
            E::LocallyClosed => Ok(()),
            E::TimedOut => Err(PeerError::new(ResultCode::PEER_E_TIMEOUT)),
            _ => Err(PeerError::new(ResultCode::PEER_E_CONNECTION_FAILED)),
        };
        if self.guard.reason == EndReason::Aborted {
            self.guard.reason = if orderly || matches!(error, E::ApplicationClosed(_)) {
                EndReason::RemoteClose
            } else {
                EndReason::Lost(error.to_string())
            };
        }
        self.end(outcome, ctx);
    }

    fn on_frame(&mut self, message: Message, ctx: &mut Context<Self>) {
        match message {
            Message::Data { data_type, payload } => {
                self.subscribers.publish(GraphEvent::IncomingData {
                    connection_id: self.id,
                    data_type,
                    data: payload,
                });
            }
            Message::Disconnect(_) if self.closing => {
                // Both sides are closing: we now hold all of the peer's data; finishing our
                // stream tells the peer we read everything it sent.
                self.peer_disconnected = true;
                if let Some(finish) = self.finish_stream.take() {
                    let _ = finish.send(());
                }
            }
            Message::Disconnect(_) => {
                // Everything the peer sent came before this frame and has been published:
                // closing the connection now tells the peer it may report S_OK.
                self.connection
                    .close(close_code::APP_DISCONNECT.into(), b"disconnect");
                self.guard.reason = EndReason::RemoteClose;
                ctx.stop();
            }
            other => self.protocol_error(format!("unexpected {:?} frame", other.frame_type()), ctx),
        }
    }
}

impl Actor for ConnectionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some((send, reader, outbox)) = self.start.take() else {
            return;
        };
        let (finish_tx, finish_rx) = oneshot::channel();
        self.finish_stream = Some(finish_tx);
        ctx.add_stream(inbound(reader));
        ctx.spawn(
            run_writer(send, outbox, finish_rx)
                .into_actor(self)
                .map(|result, act, ctx| {
                    if let Err(error) = result {
                        match error {
                            quinn::WriteError::ConnectionLost(error) => {
                                act.connection_lost(error, ctx)
                            }
                            other => act.protocol_error(format!("write failed: {other}"), ctx),
                        }
                    }
                }),
        );
        let connection = self.connection.clone();
        ctx.spawn(
            async move { connection.closed().await }
                .into_actor(self)
                .map(|error, act, ctx| act.connection_lost(error, ctx)),
        );
    }
}

/// One step of the control stream's reader.
enum Inbound {
    Frame(Message),
    Finished,
    Failed(ReadFrameError),
}

fn inbound(reader: FrameReader) -> impl futures_util::Stream<Item = Inbound> {
    futures_util::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        match reader.read().await {
            Ok(Some(message)) => Some((Inbound::Frame(message), Some(reader))),
            Ok(None) => Some((Inbound::Finished, None)),
            Err(error) => Some((Inbound::Failed(error), None)),
        }
    })
}

impl StreamHandler<Inbound> for ConnectionActor {
    fn handle(&mut self, item: Inbound, ctx: &mut Self::Context) {
        match item {
            Inbound::Frame(message) => self.on_frame(message, ctx),
            Inbound::Finished if self.closing && self.peer_disconnected => {
                self.connection
                    .close(close_code::APP_DISCONNECT.into(), b"disconnect");
                self.guard.reason = EndReason::LocalClose;
                self.end(Ok(()), ctx);
            }
            Inbound::Finished => {
                self.protocol_error("stream finished without DISCONNECT".into(), ctx)
            }
            Inbound::Failed(ReadFrameError::Protocol(error)) => {
                self.protocol_error(error.to_string(), ctx)
            }
            Inbound::Failed(ReadFrameError::Stream(quinn::ReadError::ConnectionLost(error))) => {
                self.connection_lost(error, ctx)
            }
            Inbound::Failed(ReadFrameError::Stream(error)) => {
                self.protocol_error(format!("control stream failed: {error}"), ctx)
            }
        }
    }

    /// The reader ending is handled by its last item; it must not stop the actor by itself.
    fn finished(&mut self, _ctx: &mut Self::Context) {}
}

/// Drains the outbox into the send stream, batching frames; on `Disconnect`, closes the
/// outbox, writes what it still held, then DISCONNECT, and finishes the stream once told to.
async fn run_writer(
    mut send: quinn::SendStream,
    mut outbox: OutboxReceiver,
    mut finish: oneshot::Receiver<()>,
) -> Result<(), quinn::WriteError> {
    // Both grow on first use and keep their size: an idle link allocates neither.
    let mut batch = WriteBatch::default();
    let mut permits = Vec::new();
    loop {
        let Some(first) = outbox.frames.recv().await else {
            return Ok(());
        };
        let mut disconnect = None;
        let mut batched = 0;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Outgoing::Data(frame, permit) => {
                    batched += frame.wire_len();
                    batch.push_frame(frame);
                    permits.push(permit);
                }
                Outgoing::Control(frame) => {
                    batched += frame.len();
                    batch.push_control(frame);
                }
                Outgoing::Disconnect(reason) => {
                    // From here on SendData is refused; what is already queued still goes.
                    outbox.frames.close();
                    outbox.budget.close();
                    disconnect = Some(reason);
                }
            }
            if disconnect.is_some() || batched < WRITE_BATCH_BYTES {
                next = outbox.frames.try_recv().ok();
            }
        }
        if let Some(reason) = disconnect {
            batch.push_control(Message::Disconnect(reason).to_bytes());
        }
        batch.seal();
        send.write_all_chunks(&mut batch.chunks).await?;
        batch.chunks.clear();
        permits.clear();
        if outbox.frames.is_empty() {
            batch.release();
        }
        if disconnect.is_some() {
            if (&mut finish).await.is_ok() {
                let _ = send.finish();
            }
            // Keep the stream open until the actor ends: dropping it would finish it early.
            std::future::pending::<()>().await;
        }
    }
}

/// Closes the link (the close path in the module doc). Replies S_OK, `PEER_E_TIMEOUT` or
/// `PEER_E_CONNECTION_FAILED`; a second `Close` gets `PEER_E_CONNECTION_NOT_FOUND`.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), PeerError>")]
pub(crate) struct Close;

impl Handler<Close> for ConnectionActor {
    type Result = ResponseActFuture<Self, Result<(), PeerError>>;

    fn handle(&mut self, _: Close, _ctx: &mut Self::Context) -> Self::Result {
        if self.closing {
            return Box::pin(fut::ready(Err(PeerError::CONNECTION_NOT_FOUND)));
        }
        self.closing = true;
        self.guard.reason = EndReason::LocalClose;
        let (reply, outcome) = oneshot::channel();
        self.close_reply = Some(reply);
        let outbox = self.outbox.clone();
        let close_timeout = self.close_timeout;
        Box::pin(
            async move {
                tokio::time::timeout(close_timeout, async move {
                    outbox
                        .disconnect(DisconnectReason::AppDisconnect)
                        .await
                        .map_err(|_| PeerError::new(ResultCode::PEER_E_CONNECTION_FAILED))?;
                    outcome
                        .await
                        .unwrap_or(Err(PeerError::new(ResultCode::PEER_E_CONNECTION_FAILED)))
                })
                .await
            }
            .into_actor(self)
            .map(|result, act, ctx| {
                let outcome = result.unwrap_or_else(|_elapsed| {
                    act.connection
                        .close(close_code::CLOSE_TIMEOUT.into(), b"close timed out");
                    Err(PeerError::new(ResultCode::PEER_E_TIMEOUT))
                });
                ctx.stop();
                outcome
            }),
        )
    }
}

/// Ends the link at once because the node leaves the graph (graph closed, engine shut
/// down): QUIC close with code LEAVING, no waiting.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub(crate) struct Leave;

impl Handler<Leave> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, _: Leave, ctx: &mut Self::Context) {
        self.connection
            .close(close_code::LEAVING.into(), b"leaving");
        self.guard.reason = EndReason::GraphClosed;
        self.end(
            Err(PeerError::new(ResultCode::PEER_E_GRAPH_SHUTTING_DOWN)),
            ctx,
        );
        ctx.stop();
    }
}

/// Fault injection for tests: makes the connection actor panic inside a handler, to show
/// that the graph reports the connection as ended and keeps serving the others.
#[cfg(feature = "fault-injection")]
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct InjectPanic;

#[cfg(feature = "fault-injection")]
impl Handler<InjectPanic> for ConnectionActor {
    type Result = ();

    #[allow(clippy::panic)]
    fn handle(&mut self, _: InjectPanic, _ctx: &mut Self::Context) {
        panic!("fault injection: connection actor {} panics", self.id);
    }
}

/// The event a connection change publishes.
pub(crate) fn connection_event(
    status: ConnectionStatus,
    info: &ConnectionInfo,
    failure_reason: Option<ResultCode>,
) -> GraphEvent {
    GraphEvent::DirectConnection(ConnectionChange {
        status,
        connection_id: info.connection_id,
        node_id: info.node_id,
        peer_id: info.peer_id.clone(),
        failure_reason,
    })
}
