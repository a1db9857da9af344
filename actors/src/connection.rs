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
//! Each side of a link ends its control stream the same way: DISCONNECT behind every frame
//! it had accepted, then FIN once it has also read the peer's DISCONNECT. Every step of
//! that is stream data, which QUIC delivers reliably; the QUIC close at the end is only
//! clean-up, and its loss costs nothing.
//! 1. `Close` marks the link closing and queues DISCONNECT(APP_DISCONNECT) behind every frame
//!    SendData already accepted; the writer closes the outbox, so later SendData calls get
//!    `PEER_E_CONNECTION_NOT_FOUND`, writes the rest (every frame whose SendData returned
//!    `Ok`, including one that had taken its place in the outbox just before it closed),
//!    then DISCONNECT.
//! 2. The peer reads everything up to the DISCONNECT, and answers with its own queued frames,
//!    DISCONNECT and FIN. Its FIN is the proof that it has read all of our data.
//! 3. We finish our stream once we have read the peer's DISCONNECT; reading the peer's FIN
//!    ends the close: reply S_OK. If both sides close at once, the same steps apply.
//! 4. A side whose stream is done (FIN sent, peer's FIN read) waits for the peer to
//!    acknowledge its FIN, bounded by the close timeout, and then closes QUIC with
//!    APP_DISCONNECT; the actor itself ends at once, so the DISCONNECTED event and the reply
//!    do not wait for that.
//!
//! The reply goes to the caller when the actor is dropped (the `EndGuard` sends it, after
//! ConnectionEnded), so whatever ends the actor, and in whichever order the link's last
//! events come, the close is answered exactly once, and only once the actor is gone.
//! 5. If the close does not complete within the close timeout, the link is closed with
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
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use crate::events::Subscribers;
use crate::table::{Outbox, OutboxReceiver, Outgoing, QueuedData};

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

/// The largest shared chunk of small frames: a few packets' worth, small enough to come
/// from the allocator's heap rather than its own mapping.
const COALESCE_CHUNK_BYTES: usize = 32 * 1024;

/// The first shared chunk of a burst. Each next one is twice as large, up to
/// [`COALESCE_CHUNK_BYTES`]: a link that sends one small message holds 1 KiB until quinn
/// has it acknowledged, not 32 (with 10,000 such links, 10 MB rather than 320).
const FIRST_CHUNK_BYTES: usize = 1024;

/// The chunks of one write: small frames copied together into shared chunks, large
/// payloads and control frames as they are.
struct WriteBatch {
    chunks: Vec<Bytes>,
    /// Small frames not yet sealed into `chunks`. Its spare capacity serves the next
    /// batch while the outbox keeps delivering, and is given back when the link goes
    /// quiet, so an idle link holds nothing here.
    small: BytesMut,
    /// The capacity of the next shared chunk: doubles while a burst goes on, back to
    /// [`FIRST_CHUNK_BYTES`] when the link goes quiet.
    next_chunk: usize,
}

impl Default for WriteBatch {
    fn default() -> Self {
        WriteBatch {
            chunks: Vec::new(),
            small: BytesMut::new(),
            next_chunk: FIRST_CHUNK_BYTES,
        }
    }
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
            self.small = BytesMut::with_capacity(self.next_chunk.max(len));
            self.next_chunk = (2 * self.next_chunk).min(COALESCE_CHUNK_BYTES);
        }
        frame.copy_into(&mut self.small);
    }

    /// Gives back the spare capacity of the shared chunk (the link has gone quiet).
    fn release(&mut self) {
        self.small = BytesMut::new();
        self.next_chunk = FIRST_CHUNK_BYTES;
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
    /// The QUIC link's `stable_id`: the table entry of this id is removed only if it is
    /// this link's (a peer could reuse the id of a link still closing here).
    pub(crate) link: usize,
}

/// Reports the end of a connection when the actor is dropped, whatever the cause: a
/// normal stop, a panic unwinding through a handler, or the arbiter shutting down. This is
/// the supervision actix does not give us (it does not catch panics).
struct EndGuard {
    info: ConnectionInfo,
    connection: quinn::Connection,
    graph: Recipient<ConnectionEnded>,
    /// The reply of a `Close` under way, and its outcome once known. It is sent last in
    /// the drop, so that whoever waits for it finds the actor gone and counted out.
    close: Option<(CloseReply, Option<Result<(), PeerError>>)>,
    live_actors: Arc<AtomicUsize>,
    reason: EndReason,
    /// The close completed and a task of its own closes the link once the peer has
    /// acknowledged our FIN: the drop must not cut it short.
    handed_off: bool,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        if !self.handed_off && self.connection.close_reason().is_none() {
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
            link: self.connection.stable_id(),
        });
        if let Some((reply, outcome)) = self.close.take() {
            // No outcome: the actor ended in a way no step of the close foresaw (it
            // panicked, or its arbiter stopped): the peer's confirmation never came.
            let _ = reply
                .send(outcome.unwrap_or(Err(PeerError::new(ResultCode::PEER_E_CONNECTION_FAILED))));
        }
    }
}

/// Where the answer of a [`Close`] goes.
pub(crate) type CloseReply = oneshot::Sender<Result<(), PeerError>>;

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
}

/// The actor of one QUIC link. Started by its graph; applications reach it only through
/// the graph's messages.
pub struct ConnectionActor {
    /// First, so that it drops first: on an end nothing planned (a panic, the arbiter
    /// stopping), it closes the link before the streams below drop. quinn finishes a send
    /// stream that is dropped, and a FIN sent before we have read the peer's DISCONNECT
    /// would tell the peer we had read everything.
    guard: EndGuard,
    id: ConnectionId,
    connection: quinn::Connection,
    start: Option<(quinn::SendStream, FrameReader, OutboxReceiver)>,
    subscribers: Arc<Subscribers>,
    close_timeout: Duration,
    outbox: Outbox,
    /// Our DISCONNECT is queued (we close, or we answer the peer's).
    closing: bool,
    /// We have read the peer's DISCONNECT.
    peer_disconnected: bool,
    /// We have read the peer's FIN (after its DISCONNECT).
    peer_finished: bool,
    /// The writer has written our DISCONNECT and handed the stream back: the actor
    /// finishes it once it has read the peer's DISCONNECT.
    after_disconnect: Option<quinn::SendStream>,
    /// Our FIN is sent; kept to wait for the peer's acknowledgement of it.
    finished_send: Option<quinn::SendStream>,
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
            peer_disconnected: false,
            peer_finished: false,
            after_disconnect: None,
            finished_send: None,
            guard: EndGuard {
                info: setup.info,
                connection,
                graph: setup.graph,
                close: None,
                live_actors: setup.live_actors,
                reason: EndReason::Aborted,
                handed_off: false,
            },
        }
    }

    /// Ends the actor with `outcome` as the answer of a close under way. The first end
    /// decides it: the reader and the link often end in the same turn, and the later one
    /// (the link closed after the close succeeded) must not change it. The answer is sent
    /// when the actor is dropped (see [`EndGuard`]).
    fn end(&mut self, outcome: Result<(), PeerError>, ctx: &mut Context<Self>) {
        if let Some((_, decided @ None)) = &mut self.guard.close {
            *decided = Some(outcome);
        }
        ctx.stop();
    }

    /// Bounds a close, ours or the peer's, by the close timeout: past it the link is cut
    /// with CLOSE_TIMEOUT, and a close of ours answers `PEER_E_TIMEOUT`.
    fn bound_close(&self, ctx: &mut Context<Self>) {
        ctx.run_later(self.close_timeout, |act, ctx| {
            act.connection
                .close(close_code::CLOSE_TIMEOUT.into(), b"close timed out");
            act.guard.reason = EndReason::Lost("close timed out".into());
            act.end(Err(PeerError::new(ResultCode::PEER_E_TIMEOUT)), ctx);
        });
    }

    /// Queues our DISCONNECT behind every frame SendData accepted (the writer closes the
    /// outbox when it takes it). The outbox may be full: then this waits for room.
    fn queue_disconnect(&mut self, ctx: &mut Context<Self>) {
        const REASON: DisconnectReason = DisconnectReason::AppDisconnect;
        // At once if there is room: the writer then runs in this same turn of the actor.
        match self.outbox.try_disconnect(REASON) {
            Ok(true) => return,
            Ok(false) => {}
            Err(_) => {
                return self.end(
                    Err(PeerError::new(ResultCode::PEER_E_CONNECTION_FAILED)),
                    ctx,
                )
            }
        }
        let outbox = self.outbox.clone();
        ctx.spawn(
            async move { outbox.disconnect(REASON).await }
                .into_actor(self)
                .map(|queued, act, ctx| {
                    // Only a writer that has ended drops the outbox's receiver.
                    if queued.is_err() {
                        act.end(
                            Err(PeerError::new(ResultCode::PEER_E_CONNECTION_FAILED)),
                            ctx,
                        );
                    }
                }),
        );
    }

    /// Sends our FIN once our DISCONNECT is written and the peer's is read: the FIN tells
    /// the peer that we have read all it sent.
    fn try_finish(&mut self, ctx: &mut Context<Self>) {
        if !self.peer_disconnected {
            return;
        }
        let Some(mut send) = self.after_disconnect.take() else {
            return;
        };
        // Finishing fails only if the stream was reset or stopped, which the reader or
        // the connection reports.
        let _ = send.finish();
        self.finished_send = Some(send);
        self.try_complete_close(ctx);
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
            // The actor closes its link itself only once it has decided the answer (Leave,
            // the close timeout, a protocol error), so a local close it did not decide is
            // the graph's: closing the graph, or the last shutdown, closes its endpoints
            // (LEAVING), and a connection whose close is under way has left the table, so
            // no Leave reaches it. The connection is gone without the peer's confirmation.
            E::LocallyClosed => Err(PeerError::INVALID_GRAPH),
            E::TimedOut => Err(PeerError::new(ResultCode::PEER_E_TIMEOUT)),
            _ => Err(PeerError::new(ResultCode::PEER_E_CONNECTION_FAILED)),
        };
        if self.guard.reason == EndReason::Aborted {
            self.guard.reason = if orderly || matches!(error, E::ApplicationClosed(_)) {
                EndReason::RemoteClose
            } else if matches!(error, E::LocallyClosed) {
                EndReason::GraphClosed
            } else {
                EndReason::Lost(error.to_string())
            };
        }
        self.end(outcome, ctx);
    }

    fn on_frame(&mut self, message: Message, ctx: &mut Context<Self>) {
        match message {
            _ if self.peer_disconnected => self.protocol_error(
                format!("{:?} frame after DISCONNECT", message.frame_type()),
                ctx,
            ),
            Message::Data { data_type, payload } => {
                self.subscribers.publish(GraphEvent::IncomingData {
                    connection_id: self.id,
                    data_type,
                    data: payload,
                });
            }
            Message::Disconnect(_) => self.on_peer_disconnect(ctx),
            other => self.protocol_error(format!("unexpected {:?} frame", other.frame_type()), ctx),
        }
    }

    /// The peer's DISCONNECT: everything it sent came before it and has been published.
    fn on_peer_disconnect(&mut self, ctx: &mut Context<Self>) {
        self.peer_disconnected = true;
        if !self.closing {
            // The peer closes: answer with what we had accepted, then our own DISCONNECT,
            // bounded by the close timeout like a close of our own.
            self.closing = true;
            self.guard.reason = EndReason::RemoteClose;
            self.queue_disconnect(ctx);
            self.bound_close(ctx);
        }
        self.try_finish(ctx);
    }

    /// Ends the close once both streams are done: our FIN is sent and the peer's is read.
    /// Each side then holds all the other sent, so the close has succeeded; the QUIC close
    /// waits (in a task of its own, bounded) until the peer has acknowledged our FIN, so
    /// that the peer can finish its close the same way even if our QUIC close is lost.
    fn try_complete_close(&mut self, ctx: &mut Context<Self>) {
        if !self.peer_finished {
            return;
        }
        let Some(send) = self.finished_send.take() else {
            return;
        };
        let connection = self.connection.clone();
        let linger = self.close_timeout;
        actix::spawn(async move {
            let _ = tokio::time::timeout(linger, send.stopped()).await;
            connection.close(close_code::APP_DISCONNECT.into(), b"disconnect");
        });
        self.guard.handed_off = true;
        self.end(Ok(()), ctx);
    }
}

impl Actor for ConnectionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some((send, reader, outbox)) = self.start.take() else {
            return;
        };
        ctx.add_stream(inbound(reader));
        ctx.spawn(
            run_writer(send, outbox)
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok(Some(send)) => {
                        act.after_disconnect = Some(send);
                        act.try_finish(ctx);
                    }
                    Ok(None) => {}
                    Err(quinn::WriteError::ConnectionLost(error)) => {
                        act.connection_lost(error, ctx)
                    }
                    Err(other) => act.protocol_error(format!("write failed: {other}"), ctx),
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
            Inbound::Finished if self.peer_disconnected => {
                self.peer_finished = true;
                self.try_complete_close(ctx);
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

/// What one turn of the writer gathered from the outbox.
#[derive(Debug, PartialEq)]
enum Gathered {
    /// Frames to write; the link goes on.
    Frames,
    /// Frames to write, then DISCONNECT with this reason: the outbox is closed and every
    /// frame a SendData was told is queued is in the batch.
    Disconnect(DisconnectReason),
    /// Every sender is gone and nothing is queued.
    Ended,
}

/// Waits for the next frame in the outbox, then gathers into `batch` what else is queued,
/// up to [`WRITE_BATCH_BYTES`], keeping each DATA frame's budget permit in `permits` until
/// the write.
///
/// On `Disconnect` it closes the outbox, so that later SendData calls are refused, and
/// then gathers everything still queued, however much: a SendData that had already taken
/// its slot in the channel when the outbox closed still puts its frame there and is told
/// `Ok`, so its frame must be written before DISCONNECT. `try_recv` cannot see such a
/// frame yet (it answers `Empty`); `recv` waits for it and ends only once the channel is
/// empty with no slot still taken.
async fn gather(
    outbox: &mut OutboxReceiver,
    batch: &mut WriteBatch,
    permits: &mut Vec<OwnedSemaphorePermit>,
) -> Gathered {
    let Some(first) = outbox.frames.recv().await else {
        return Gathered::Ended;
    };
    let mut disconnect = None;
    let mut batched = 0;
    let mut next = Some(first);
    while let Some(item) = next.take() {
        match item {
            Outgoing::Data(queued) => {
                let QueuedData { frame, permit } = *queued;
                batched += frame.wire_len();
                batch.push_frame(frame);
                permits.push(permit);
            }
            Outgoing::Control(frame) => {
                batched += frame.len();
                batch.push_control(*frame);
            }
            // A second DISCONNECT can only have taken its slot before the first closed
            // the outbox; the first one's reason stands.
            Outgoing::Disconnect(_) if disconnect.is_some() => {}
            Outgoing::Disconnect(reason) => {
                outbox.frames.close();
                outbox.budget.close();
                disconnect = Some(reason);
            }
        }
        next = if disconnect.is_some() {
            outbox.frames.recv().await
        } else if batched < WRITE_BATCH_BYTES {
            outbox.frames.try_recv().ok()
        } else {
            None
        };
    }
    match disconnect {
        Some(reason) => Gathered::Disconnect(reason),
        None => Gathered::Frames,
    }
}

/// Drains the outbox into the send stream, batching frames; on `Disconnect`, closes the
/// outbox, writes what it still held, then DISCONNECT, and returns the stream: the actor
/// finishes it once it has read the peer's DISCONNECT, and then waits for the peer to
/// acknowledge the FIN.
async fn run_writer(
    mut send: quinn::SendStream,
    mut outbox: OutboxReceiver,
) -> Result<Option<quinn::SendStream>, quinn::WriteError> {
    // Both grow on first use and keep their size: an idle link allocates neither.
    let mut batch = WriteBatch::default();
    let mut permits = Vec::new();
    loop {
        let gathered = gather(&mut outbox, &mut batch, &mut permits).await;
        let disconnect = match gathered {
            Gathered::Ended => return Ok(None),
            Gathered::Frames => false,
            Gathered::Disconnect(reason) => {
                batch.push_control(Message::Disconnect(reason).to_bytes());
                true
            }
        };
        batch.seal();
        send.write_all_chunks(&mut batch.chunks).await?;
        batch.chunks.clear();
        permits.clear();
        if outbox.frames.is_empty() {
            batch.release();
        }
        if disconnect {
            return Ok(Some(send));
        }
    }
}

/// Closes the link (the close path in the module doc). `reply` gets S_OK,
/// `PEER_E_TIMEOUT`, `PEER_E_CONNECTION_FAILED` or, when the graph closes meanwhile,
/// `PEER_E_INVALID_GRAPH`, once the actor is gone; a link already closing (the peer closed
/// it first) answers `PEER_E_CONNECTION_NOT_FOUND`, also once the actor is gone. A `Close`
/// that finds the actor gone is dropped with its `reply`, which the caller reads as
/// NOT_FOUND too.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub(crate) struct Close {
    pub(crate) reply: CloseReply,
}

impl Handler<Close> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, Close { reply }: Close, ctx: &mut Self::Context) {
        if self.closing {
            // The peer closed first: the answer is NOT_FOUND, but like every close's it
            // comes once the actor is gone (counted out, its DISCONNECTED on its way), so
            // the caller does not see the connection it was told is not there.
            match &self.guard.close {
                None => {
                    self.guard.close = Some((reply, Some(Err(PeerError::CONNECTION_NOT_FOUND))));
                }
                // Only one Close reaches an actor (the graph takes the entry out first).
                Some(_) => {
                    let _ = reply.send(Err(PeerError::CONNECTION_NOT_FOUND));
                }
            }
            return;
        }
        self.closing = true;
        self.guard.reason = EndReason::LocalClose;
        self.guard.close = Some((reply, None));
        self.queue_disconnect(ctx);
        self.bound_close(ctx);
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
        // Stops the actor, or leaves that to a pending close's future, which must first
        // pass this answer (or the one it already has) on.
        // A close under way is answered as a call on the closed graph would be: the
        // connection is gone, without the peer's confirmation.
        self.end(Err(PeerError::new(ResultCode::PEER_E_INVALID_GRAPH)), ctx);
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

#[cfg(test)]
mod tests {
    use super::*;
    use peergraph_engine::DataType;

    fn frame(len: usize) -> DataFrame {
        DataFrame::new(DataType::from_u128(7), Bytes::from(vec![len as u8; len]))
    }

    /// The bytes a batch would write, in order.
    fn written(batch: &mut WriteBatch) -> Vec<u8> {
        batch.seal();
        let bytes = batch.chunks.concat();
        batch.chunks.clear();
        bytes
    }

    fn expected(frames: &[DataFrame]) -> Vec<u8> {
        let mut buf = BytesMut::new();
        for frame in frames {
            frame.copy_into(&mut buf);
        }
        buf.to_vec()
    }

    #[test]
    fn a_lone_small_frame_takes_a_small_chunk() {
        let mut batch = WriteBatch::default();
        batch.push_frame(frame(5));
        assert_eq!(batch.small.capacity(), FIRST_CHUNK_BYTES);
        assert_eq!(written(&mut batch), expected(&[frame(5)]));
    }

    #[test]
    fn chunks_double_during_a_burst_and_start_small_again_after_it() {
        let mut batch = WriteBatch::default();
        let frames: Vec<DataFrame> = (0..2_000).map(|i| frame(20 + i % 300)).collect();
        let mut capacities = Vec::new();
        for f in &frames {
            let before = batch.small.capacity() - batch.small.len();
            batch.push_frame(f.clone());
            if before < f.wire_len() {
                capacities.push(batch.small.capacity());
            }
        }
        assert_eq!(capacities[0], FIRST_CHUNK_BYTES);
        assert!(capacities
            .windows(2)
            .all(|w| w[1] == (2 * w[0]).min(COALESCE_CHUNK_BYTES)));
        assert_eq!(*capacities.last().expect("chunks"), COALESCE_CHUNK_BYTES);
        assert_eq!(written(&mut batch), expected(&frames));
        batch.release();
        batch.push_frame(frame(5));
        assert_eq!(batch.small.capacity(), FIRST_CHUNK_BYTES);
    }

    #[test]
    fn large_and_control_frames_keep_their_place() {
        let mut batch = WriteBatch::default();
        let big = frame(COALESCE_FRAME_BYTES + 1);
        batch.push_frame(frame(10));
        batch.push_frame(big.clone());
        batch.push_control(Bytes::from_static(b"control"));
        batch.push_frame(frame(11));
        let mut want = expected(&[frame(10), big]);
        want.extend_from_slice(b"control");
        want.extend(expected(&[frame(11)]));
        assert_eq!(written(&mut batch), want);
    }

    /// The race behind a lost SendData: a sender has passed every check and taken its
    /// place in the channel when the close comes. Its call returns `Ok`, so the writer must
    /// wait for the frame and write it before DISCONNECT (it used to end the batch at the
    /// first empty `try_recv` and lose it).
    #[tokio::test]
    async fn a_send_that_took_its_place_before_the_close_is_written_before_disconnect() {
        use futures_util::FutureExt;
        let (outbox, mut receiver) = crate::table::outbox();
        let late = DataFrame::new(DataType::from_u128(7), Bytes::from_static(b"late"));
        let slot = outbox
            .slot(DataType::from_u128(7), Bytes::from_static(b"late"))
            .await
            .expect("a place in the outbox");
        outbox
            .disconnect(DisconnectReason::AppDisconnect)
            .await
            .expect("disconnect queued");
        let mut batch = WriteBatch::default();
        let mut permits = Vec::new();
        let mut gathering = Box::pin(gather(&mut receiver, &mut batch, &mut permits));
        assert!(
            (&mut gathering).now_or_never().is_none(),
            "the writer must wait for the frame whose place is taken"
        );
        // The outbox is closed: a SendData from now on is refused.
        assert_eq!(
            outbox
                .send_data(DataType::from_u128(7), Bytes::from_static(b"refused"))
                .await,
            Err(PeerError::CONNECTION_NOT_FOUND)
        );
        slot.queue();
        assert_eq!(
            gathering.await,
            Gathered::Disconnect(DisconnectReason::AppDisconnect)
        );
        assert_eq!(permits.len(), 1);
        assert_eq!(written(&mut batch), expected(&[late]));
    }
}

/// The close path on a live QUIC link: a connection actor on an arbiter of its own, whose
/// thread a test can hold still, and a hand-driven peer on raw quinn.
#[cfg(test)]
pub(crate) mod close_tests {
    use super::*;
    use actix_rt::ArbiterHandle;
    use peergraph_engine::{ConnectionFlags, DataType, GraphHandle, NodeId, PeerId, PeerKey};
    use peergraph_transport::{bind_endpoint, LinkOptions, NodeIdentity, SERVER_NAME};
    use std::future::Future;

    /// The bound on every wait of these tests.
    pub(crate) const BOUND: Duration = Duration::from_secs(10);

    pub(crate) async fn within<F: Future>(what: &str, future: F) -> F::Output {
        tokio::time::timeout(BOUND, future)
            .await
            .unwrap_or_else(|_| panic!("{what}: not within {BOUND:?}"))
    }

    /// Stands for the graph: tells when ConnectionEnded comes, and does nothing else.
    struct NoGraph(Option<oneshot::Sender<()>>);

    impl Actor for NoGraph {
        type Context = Context<Self>;
    }

    impl Handler<ConnectionEnded> for NoGraph {
        type Result = ();

        fn handle(&mut self, _: ConnectionEnded, _: &mut Self::Context) {
            if let Some(ended) = self.0.take() {
                let _ = ended.send(());
            }
        }
    }

    /// An actix system on a thread of its own, and its arbiter.
    pub(crate) fn system() -> (actix_rt::System, ArbiterHandle) {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runner = actix_rt::System::new();
            let _ = ready_tx.send((actix_rt::System::current(), actix_rt::Arbiter::current()));
            let _ = runner.run();
        });
        ready_rx.recv().expect("the actix system starts")
    }

    /// Holds the arbiter's thread still until the returned sender is used or dropped: what
    /// happens to the link meanwhile is all there when the actor next runs.
    pub(crate) async fn hold(arbiter: &ArbiterHandle) -> std::sync::mpsc::Sender<()> {
        let (held_tx, held_rx) = oneshot::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        assert!(arbiter.spawn(async move {
            let _ = held_tx.send(());
            let _ = release_rx.recv_timeout(BOUND);
        }));
        within("the arbiter is held", held_rx)
            .await
            .expect("holder runs");
        release_tx
    }

    struct Live {
        actor: Addr<ConnectionActor>,
        /// The actor's own link, to watch it.
        local: quinn::Connection,
        peer: quinn::Connection,
        peer_send: quinn::SendStream,
        peer_reader: FrameReader,
        ended: oneshot::Receiver<()>,
        _endpoints: [quinn::Endpoint; 2],
    }

    /// A QUIC link over loopback between two fresh endpoints, each with a node identity of
    /// its own: the connecting side's connection, the accepting side's, the accepting
    /// side's address, and both endpoints (to keep them alive).
    pub(crate) async fn quic_pair() -> (
        quinn::Connection,
        quinn::Connection,
        std::net::SocketAddr,
        [quinn::Endpoint; 2],
    ) {
        let options = LinkOptions::default();
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
        let identity = || NodeIdentity::generate().expect("identity");
        let accepting = bind_endpoint(any, &identity(), &options, true).expect("endpoint");
        let connecting = bind_endpoint(any, &identity(), &options, false).expect("endpoint");
        let address = accepting.local_addr().expect("address");
        let attempt = connecting.connect(address, SERVER_NAME).expect("connect");
        let (client, server) = within("the QUIC handshake", async {
            tokio::join!(attempt, async {
                accepting.accept().await.expect("incoming").await
            })
        })
        .await;
        (
            client.expect("connecting side"),
            server.expect("accepting side"),
            address,
            [accepting, connecting],
        )
    }

    /// A connection actor on `arbiter` over a fresh link with a raw peer.
    async fn live_link(arbiter: &ArbiterHandle) -> Live {
        let (peer, local, address, endpoints) = quic_pair().await;
        let (mut peer_send, peer_recv) = within("open", peer.open_bi()).await.expect("open");
        // The stream shows up on the other side with its first bytes.
        let hello = Message::Data {
            data_type: DataType::from_u128(1),
            payload: Bytes::from_static(b"hello"),
        };
        within("write", peer_send.write_all(&hello.to_bytes()))
            .await
            .expect("write");
        let (send, recv) = within("accept", local.accept_bi()).await.expect("accept");
        let (outbox, outbox_receiver) = crate::table::outbox();
        let (ended_tx, ended) = oneshot::channel();
        let graph = NoGraph::start_in_arbiter(arbiter, |_| NoGraph(Some(ended_tx))).recipient();
        let info = ConnectionInfo {
            flags: ConnectionFlags::DIRECT,
            connection_id: ConnectionId::new(7).expect("id"),
            node_id: NodeId(0),
            peer_key: PeerKey([0; 32]),
            peer_id: PeerId::new("peer").expect("peer id"),
            address,
        };
        let setup = ConnectionSetup {
            info,
            link: LinkParts {
                connection: local.clone(),
                send,
                reader: FrameReader::new(recv),
            },
            outbox,
            outbox_receiver,
            graph,
            subscribers: Arc::new(Subscribers::new(GraphHandle::new(1).expect("handle"))),
            close_timeout: BOUND,
            live_actors: Arc::new(AtomicUsize::new(0)),
        };
        let actor =
            ConnectionActor::start_in_arbiter(arbiter, move |_| ConnectionActor::new(setup));
        Live {
            actor,
            local,
            peer,
            peer_send,
            peer_reader: FrameReader::new(peer_recv),
            ended,
            _endpoints: endpoints,
        }
    }

    /// Sends `Close` to the link's actor and waits until the peer has read our DISCONNECT;
    /// returns the task that awaits the close's reply.
    async fn close_under_way(link: &mut Live) -> oneshot::Receiver<Result<(), PeerError>> {
        let (reply, close) = oneshot::channel();
        link.actor.do_send(Close { reply });
        let first = within("our DISCONNECT", link.peer_reader.read()).await;
        assert!(
            matches!(first, Ok(Some(Message::Disconnect(_)))),
            "{first:?}"
        );
        close
    }

    /// The close succeeds, and the peer's QUIC close (APP_DISCONNECT, which it sends only
    /// once it has read our FIN) reaches us before the actor runs again: the actor then
    /// finds the peer's FIN and the closed link in one turn. The first ends the close and
    /// decides its answer, S_OK; the second must neither change it nor lose it. (When the
    /// answer still went through a future of the Close handler, the second stopped the
    /// actor with that future, and the caller got PEER_E_CONNECTION_NOT_FOUND for a close
    /// that had succeeded.)
    #[tokio::test]
    async fn a_close_that_succeeds_as_the_peer_closes_quic_is_answered() {
        let (system, arbiter) = system();
        let mut link = live_link(&arbiter).await;
        let close = close_under_way(&mut link).await;
        let disconnect = Message::Disconnect(DisconnectReason::AppDisconnect).to_bytes();
        within(
            "the peer's DISCONNECT",
            link.peer_send.write_all(&disconnect),
        )
        .await
        .expect("write");
        // Our FIN: the actor has read the peer's DISCONNECT and its writer is done.
        let fin = within("our FIN", link.peer_reader.read()).await;
        assert!(matches!(fin, Ok(None)), "{fin:?}");
        let release = hold(&arbiter).await;
        link.peer_send.finish().expect("finish");
        within(
            "our quinn acknowledges the peer's FIN",
            link.peer_send.stopped(),
        )
        .await
        .expect("stopped");
        link.peer
            .close(close_code::APP_DISCONNECT.into(), b"disconnect");
        within("our quinn sees the close", link.local.closed()).await;
        let _ = release.send(());
        let reply = within("the close's reply", close).await;
        assert_eq!(reply.map_err(|e| e.to_string()), Ok(Ok(())));
        within("the actor ends", link.ended).await.expect("ended");
        system.stop();
    }

    /// The actor panics while a close waits for the peer: the close is still answered,
    /// PEER_E_CONNECTION_FAILED (the peer never confirmed), once the actor is gone.
    #[cfg(feature = "fault-injection")]
    #[tokio::test]
    async fn a_close_cut_short_by_a_panic_is_answered() {
        let (system, arbiter) = system();
        let mut link = live_link(&arbiter).await;
        let close = close_under_way(&mut link).await;
        link.actor.do_send(InjectPanic);
        let reply = within("the close's reply", close).await;
        assert_eq!(
            reply.map_err(|e| e.to_string()),
            Ok(Err(PeerError::new(ResultCode::PEER_E_CONNECTION_FAILED)))
        );
        within("the actor ends", link.ended).await.expect("ended");
        // The link was cut, not finished: a FIN would tell the peer we had read all it sent.
        let after = within("the peer's next read", link.peer_reader.read()).await;
        assert!(
            matches!(
                after,
                Err(ReadFrameError::Stream(quinn::ReadError::ConnectionLost(_)))
            ),
            "{after:?}"
        );
        system.stop();
    }

    /// The graph closes (Leave) while a close waits for the peer: the close is answered
    /// PEER_E_INVALID_GRAPH. (When the answer still went through a future of the Close
    /// handler, Leave stopped the actor with that future, and the caller got
    /// PEER_E_CONNECTION_NOT_FOUND.)
    #[tokio::test]
    async fn a_close_cut_short_by_leave_is_answered() {
        let (system, arbiter) = system();
        let mut link = live_link(&arbiter).await;
        // The close waits for the peer, which never answers.
        let close = close_under_way(&mut link).await;
        within("Leave", link.actor.send(Leave))
            .await
            .expect("Leave handled");
        let reply = within("the close's reply", close).await;
        assert_eq!(
            reply.map_err(|e| e.to_string()),
            Ok(Err(PeerError::new(ResultCode::PEER_E_INVALID_GRAPH)))
        );
        within("the actor ends", link.ended).await.expect("ended");
        within("the peer hears the close", link.peer.closed()).await;
        system.stop();
    }
}
