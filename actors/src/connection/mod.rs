//! The connection actor: one per QUIC link, the driver of that link's
//! [`LinkMachine`]. It owns the `quinn::Connection`, reads frames from the control stream
//! and publishes INCOMING_DATA, runs the writer that drains the outbox, and carries out
//! what the machine decides: queue DISCONNECT, send FIN, close the link with a code,
//! linger after a completed close, stop. The close sequence itself is docs/PROTOCOL.md
//! §3.4; its rules, and the answer each end gives a close, are the machine's.
//!
//! ```text
//!  Outbox (SendData) ──▶ writer ──▶ SendStream ══QUIC══▶ peer
//!  peer ══QUIC══▶ RecvStream ──▶ reader (StreamHandler) ──▶ LinkMachine ──▶ Subscribers
//!  graph ──Close/Leave──▶ ConnectionActor ──▶ LinkMachine ──actions──▶ ConnectionActor
//!  close timer (now) ──▶ LinkMachine
//!  drop of the actor (any reason, panics included) ──▶ EndGuard ──ConnectionEnded──▶ graph
//! ```
//!
//! The answer of a close goes to the caller when the actor is dropped (the `EndGuard`
//! sends it, after ConnectionEnded), so whatever ends the actor, and in whichever order
//! the link's last events come, the close is answered exactly once, and only once the
//! actor is gone.

mod writer;

#[cfg(test)]
pub(crate) mod close_tests;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context as TaskContext, Poll};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use peergraph_engine::graph_core::{
    Cause, CloseStart, EndReason, LinkAction, LinkLoss, LinkMachine, Violation,
};
use peergraph_engine::wire::{close_code, DisconnectReason, Message, DATA_HEADER_LEN};
use peergraph_engine::{code_of, ConnectionId, ConnectionInfo, DataType, PeerError, ResultCode};
use peergraph_transport::{FrameReader, ReadFrameError};
use tokio::sync::oneshot;
use tokio::time::Instant;

pub(crate) use self::writer::{batch_items, is_small, lone_frame_chunks, Gathered};
use self::writer::{AfterDisconnect, Writer};
use crate::events::{DataReservation, DataRun, Subscribers};
use crate::outbox::{Outbox, OutboxReceiver};

/// Sent to the graph exactly once per connection actor, when it is dropped.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub(crate) struct ConnectionEnded {
    pub(crate) info: ConnectionInfo,
    pub(crate) reason: EndReason,
    /// The QUIC link's `stable_id`: the table entry of this id is removed only if it is
    /// this link's (a peer could reuse the id of a link still closing here).
    pub(crate) link: u64,
    /// The code the close under way is answered with, if one was asked for.
    pub(crate) close_answer: Option<ResultCode>,
    /// UDP bytes sent and received on the link until now (quinn's statistics).
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
}

/// The tag of a QUIC link in the graph core's table: its `stable_id`.
pub(crate) fn link_tag(connection: &quinn::Connection) -> u64 {
    connection.stable_id() as u64
}

/// Where the answer of a [`Close`] goes.
pub(crate) type CloseReply = oneshot::Sender<Result<(), PeerError>>;

/// Reports the end of a connection when the actor is dropped, whatever the cause: a
/// normal stop, a panic unwinding through a handler, or the arbiter shutting down. This is
/// the supervision actix does not give us (it does not catch panics). It holds the link's
/// machine, which knows the answer of a close under way and why the link ended.
struct EndGuard {
    info: ConnectionInfo,
    connection: quinn::Connection,
    graph: Recipient<ConnectionEnded>,
    machine: LinkMachine,
    /// The reply of a `Close` under way. It is sent last in the drop, so that whoever
    /// waits for it finds the actor gone and counted out.
    reply: Option<CloseReply>,
    live_actors: Arc<AtomicUsize>,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        let finished = self.machine.finish();
        if finished.close_link && self.connection.close_reason().is_none() {
            self.connection.close(
                close_code::INTERNAL_ERROR.into(),
                b"connection handler ended",
            );
        }
        self.live_actors.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(connection_id = %self.info.connection_id, reason = %finished.reason, "connection ended");
        let reply = self.reply.take().map(|reply| {
            let answer = finished
                .answer
                .unwrap_or(Err(PeerError::new(ResultCode::PEER_E_CONNECTION_FAILED)));
            (reply, answer)
        });
        let stats = self.connection.stats();
        // One message per connection: bounded by the number of connections, so do_send
        // cannot be driven by a peer to grow the graph's mailbox. It goes before the
        // caller's answer: whatever the caller asks the graph next, from any thread, finds
        // the link's end handled.
        self.graph.do_send(ConnectionEnded {
            info: self.info.clone(),
            reason: finished.reason,
            link: link_tag(&self.connection),
            close_answer: reply.as_ref().map(|(_, answer)| code_of(answer)),
            bytes_sent: stats.udp_tx.bytes,
            bytes_received: stats.udp_rx.bytes,
        });
        if let Some((reply, answer)) = reply {
            let _ = reply.send(answer);
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
    pub(crate) close_bound: Duration,
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
    /// What `started` takes; boxed, so that the actor does not keep its room for life.
    start: Option<Box<(quinn::SendStream, FrameReader, OutboxReceiver)>>,
    subscribers: Arc<Subscribers>,
    outbox: Outbox,
    /// Our DISCONNECT is written and the stream is back (from the writer, or from the
    /// outbox when the DISCONNECT went straight into the lent stream): the actor finishes
    /// it when the machine says so.
    after_disconnect: Option<quinn::SendStream>,
    /// The machine asked for our FIN in this turn: it is sent at the turn's end (see
    /// [`finish_later`](Self::finish_later)).
    finish_due: bool,
    /// Our FIN is sent; kept to wait for the peer's acknowledgement of it.
    finished_send: Option<quinn::SendStream>,
    /// The progress probe of a close, and the close timer; `None` until a close arms the
    /// timer (boxed: most links never close with a deadline, and an idle link keeps only
    /// the pointer).
    probe: Option<Box<Probe>>,
}

/// A close's progress probe, which reads the link's counters every [`probe_interval`] and
/// tells the machine when the peer made progress (see [`ProgressMark`]), and the close
/// timer.
struct Probe {
    /// When the close timer is armed to fire: the machine's deadline, or the probe's
    /// next reading if that comes first.
    armed: Option<std::time::Instant>,
    /// When it reads the counters next.
    at: std::time::Instant,
    /// Its [`probe_interval`].
    every: Duration,
    /// What they said at its last reading; `None` before the first, which takes the
    /// baseline (a close that ends within one interval, as most do, never reads them).
    last: Option<ProgressMark>,
}

/// How often a close reads the link's counters for progress: an eighth of the close
/// timeout, so a live peer is seen well before it, and between 10 and 250 ms.
fn probe_interval(close_timeout: Duration) -> Duration {
    (close_timeout / 8).clamp(Duration::from_millis(10), Duration::from_millis(250))
}

/// The counters of a QUIC link that show the peer making progress with a close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ProgressMark {
    /// ACK frames from the peer.
    acks: u64,
    /// STREAM frames we sent (new data and retransmissions).
    stream_sent: u64,
    /// MAX_DATA and MAX_STREAM_DATA frames from the peer: its application took data and
    /// its window opened.
    window: u64,
    /// STREAM frames from the peer.
    stream_received: u64,
}

impl ProgressMark {
    fn of(stats: &quinn::ConnectionStats) -> Self {
        ProgressMark {
            acks: stats.frame_rx.acks,
            stream_sent: stats.frame_tx.stream,
            window: stats.frame_rx.max_data + stats.frame_rx.max_stream_data,
            stream_received: stats.frame_rx.stream,
        }
    }

    /// Whether `now` shows progress since `self`: the peer opened its window or sent
    /// stream data, or acknowledged packets while our data was still moving. ACKs alone
    /// are not progress: a peer whose application stopped reading still acknowledges
    /// keep-alives and blocked notices.
    fn progressed_to(&self, now: &ProgressMark) -> bool {
        now.window > self.window
            || now.stream_received > self.stream_received
            || (now.acks > self.acks && now.stream_sent > self.stream_sent)
    }
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
            start: Some(Box::new((send, reader, setup.outbox_receiver))),
            subscribers: setup.subscribers,
            outbox: setup.outbox,
            after_disconnect: None,
            finish_due: false,
            finished_send: None,
            probe: None,
            guard: EndGuard {
                info: setup.info,
                connection,
                graph: setup.graph,
                machine: LinkMachine::new(setup.close_timeout, setup.close_bound),
                reply: None,
                live_actors: setup.live_actors,
            },
        }
    }

    fn machine(&mut self) -> &mut LinkMachine {
        &mut self.guard.machine
    }

    /// The time the machine is given: tokio's clock, which tests may pause.
    fn now() -> std::time::Instant {
        Instant::now().into_std()
    }

    /// Carries out what the machine decided, then arms its timer.
    fn drive(&mut self, ctx: &mut Context<Self>) {
        while let Some(action) = self.machine().poll_action() {
            match action {
                LinkAction::QueueDisconnect { then_finish } => self.queue_disconnect(then_finish),
                LinkAction::Finish => self.finish_later(ctx),
                LinkAction::CloseLink(code) => {
                    self.connection.close(code.into(), close_reason(code));
                }
                LinkAction::Linger => self.linger(),
                LinkAction::Stop => ctx.stop(),
            }
        }
        self.arm_timer(ctx);
    }

    /// Arms the close timer for the machine's deadline, or for the progress probe's next
    /// reading if that comes first (the probe starts with the close), unless it is armed
    /// for that time or earlier: one timer for both, and a timer that fires before a
    /// deadline that has moved later does nothing but arm the next one.
    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        let Some(deadline) = self.guard.machine.poll_timeout() else {
            return;
        };
        let now = Self::now();
        let close_timeout = self.guard.machine.close_timeout();
        let probe = self.probe.get_or_insert_with(|| {
            let every = probe_interval(close_timeout);
            Box::new(Probe {
                armed: None,
                at: now + every,
                every,
                last: None,
            })
        });
        let due = deadline.min(probe.at);
        if probe.armed.is_some_and(|armed| armed <= due) {
            return;
        }
        probe.armed = Some(due);
        ctx.run_later(due.saturating_duration_since(now), |act, ctx| {
            if let Some(probe) = act.probe.as_mut() {
                probe.armed = None;
            }
            act.on_timer(ctx);
        });
    }

    /// The close timer fired: the probe reads the link's counters if its time has come,
    /// and the machine checks its deadline.
    fn on_timer(&mut self, ctx: &mut Context<Self>) {
        let now = Self::now();
        let mut progressed = false;
        if let Some(probe) = self.probe.as_mut().filter(|probe| probe.at <= now) {
            let mark = ProgressMark::of(&self.connection.stats());
            progressed = probe
                .last
                .replace(mark)
                .is_some_and(|last| last.progressed_to(&mark));
            probe.at = now + probe.every;
        }
        if progressed {
            self.machine().on_progress(now);
        }
        self.machine().on_timeout(now);
        self.drive(ctx);
    }

    /// Sends our FIN at the end of this turn of the actor, not at once: the peer's
    /// DISCONNECT and FIN mostly come together, and then the close completes in the same
    /// turn, its answer goes to the caller, and the FIN goes with the lingering close
    /// ([`linger`](Self::linger)). Sent at once, it would wake the link's driver ahead of
    /// the caller, whose answer would wait behind the packet.
    fn finish_later(&mut self, ctx: &mut Context<Self>) {
        if self.after_disconnect.is_none() || std::mem::replace(&mut self.finish_due, true) {
            return;
        }
        ctx.spawn(fut::ready(()).map(|(), act: &mut Self, _| act.finish_now()));
    }

    /// Sends our FIN if the machine asked for it and it is not sent yet.
    fn finish_now(&mut self) {
        if !std::mem::take(&mut self.finish_due) {
            return;
        }
        if let Some(mut send) = self.after_disconnect.take() {
            // Finishing fails only if the stream was reset or stopped, which the reader
            // or the connection reports.
            let _ = send.finish();
            self.finished_send = Some(send);
        }
    }

    /// Queues our DISCONNECT behind every frame SendData accepted (the graph may have
    /// queued it already, as the close started); the outbox refuses every SendData from
    /// here on. With `then_finish`, the writer ends the stream in the same write.
    fn queue_disconnect(&mut self, then_finish: bool) {
        if self
            .outbox
            .disconnect(DisconnectReason::AppDisconnect, then_finish)
            .is_err()
        {
            // Only a writer that has ended with no DISCONNECT queued refuses it.
            self.machine().disconnect_failed();
            return;
        }
        // Written into the stream the waiting writer lent (by the graph as the close
        // started, or just now): the stream comes back here at once, not through a turn of
        // the writer's task and a message, which would run while the DISCONNECT is on its
        // way and the peer's thread waits for this one to yield.
        if let Some((send, finished)) = self.outbox.take_written_disconnect() {
            self.disconnect_written(AfterDisconnect { send, finished });
        }
    }

    /// Our DISCONNECT is written, and the stream is back: kept to be finished when the
    /// machine says so, or, finished already, to wait for the peer's acknowledgement.
    fn disconnect_written(&mut self, AfterDisconnect { send, finished }: AfterDisconnect) {
        match finished {
            true => self.finished_send = Some(send),
            false => self.after_disconnect = Some(send),
        }
        self.machine().disconnect_written(finished);
    }

    /// The close succeeded: the QUIC close waits (in a task of its own, bounded) until the
    /// peer has acknowledged our FIN, so that the peer can finish its close the same way
    /// even if our QUIC close is lost.
    fn linger(&mut self) {
        let connection = self.connection.clone();
        let linger = self.guard.machine.close_timeout();
        // A FIN asked for in this turn goes from here, after the caller's answer.
        let unfinished = match std::mem::take(&mut self.finish_due) {
            true => self.after_disconnect.take(),
            false => None,
        };
        let send = self.finished_send.take();
        actix::spawn(async move {
            // The task is spawned while the actor still runs, before the close's answer
            // goes (at the actor's drop): it yields once, so that the caller's task, woken
            // by the answer, runs before it, and the FIN after both.
            tokio::task::yield_now().await;
            let send = match unfinished {
                Some(mut send) => {
                    let _ = send.finish();
                    Some(send)
                }
                None => send,
            };
            if let Some(send) = send {
                let _ = tokio::time::timeout(linger, send.stopped()).await;
            }
            connection.close(close_code::APP_DISCONNECT.into(), b"disconnect");
        });
    }

    fn connection_lost(&mut self, error: quinn::ConnectionError, ctx: &mut Context<Self>) {
        use quinn::ConnectionError as E;
        let loss = match &error {
            E::ApplicationClosed(close)
                if close.error_code == close_code::APP_DISCONNECT.into() =>
            {
                LinkLoss::PeerDisconnected
            }
            E::ApplicationClosed(_) => LinkLoss::PeerClosed,
            E::LocallyClosed => LinkLoss::LocallyClosed,
            E::TimedOut => LinkLoss::TimedOut,
            _ => LinkLoss::Failed,
        };
        self.machine().on_link_lost(loss, Cause::new(error));
        self.drive(ctx);
    }

    /// DATA frames read in one go, with the room reserved for them in the registrations
    /// that take them: handed to the application, up to the first the machine says breaks
    /// the protocol (the room of the rest goes back).
    fn on_data(&mut self, mut run: DataRun, room: DataReservation, ctx: &mut Context<Self>) {
        let allowed = run
            .payloads
            .iter()
            .take_while(|_| self.guard.machine.on_data())
            .count();
        run.payloads.truncate(allowed);
        room.deliver_all(run);
        self.drive(ctx);
    }
}

/// The reason phrase sent with each close code.
fn close_reason(code: u32) -> &'static [u8] {
    match code {
        close_code::LEAVING => b"leaving",
        close_code::PROTOCOL_ERROR => b"protocol error",
        close_code::CLOSE_TIMEOUT => b"close timed out",
        close_code::APP_DISCONNECT => b"disconnect",
        _ => b"closed",
    }
}

impl Actor for ConnectionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some(start) = self.start.take() else {
            return;
        };
        let (send, reader, outbox) = *start;
        let (connection, subscribers) = (self.connection.clone(), self.subscribers.clone());
        ctx.add_stream(inbound(reader, connection, subscribers, self.id));
        // The writer is a task of its own, not a future of this actor's context: actix
        // polls every future and stream of a context on each wake-up, so a frame queued
        // for the writer would also poll the reader (a lock of the link), and a frame
        // read would poll the writer. It reports its end here; if the actor is gone by
        // then, the report goes nowhere, and the link is already closed (see `guard`).
        // For the same reason the link's end is watched by the reader, not by a future of
        // this context, until the reader ends (see `inbound`).
        actix::spawn(Writer::new(send, outbox, ctx.address().downgrade()).run());
    }
}

impl ConnectionActor {
    /// Watches the link's end from this actor's context, once the reader, which saw it
    /// until then, has ended.
    fn watch_link(&mut self, ctx: &mut Context<Self>) {
        let connection = self.connection.clone();
        ctx.spawn(
            async move { connection.closed().await }
                .into_actor(self)
                .map(|error, act, ctx| act.connection_lost(error, ctx)),
        );
    }
}

/// The writer's end: the stream handed back after our DISCONNECT, `None` when every
/// sender of the outbox is gone, or the error that stopped it.
#[derive(Message)]
#[rtype(result = "()")]
struct WriterEnded(Result<Option<AfterDisconnect>, quinn::WriteError>);

impl Handler<WriterEnded> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, WriterEnded(ended): WriterEnded, ctx: &mut Self::Context) {
        match ended {
            Ok(Some(after)) => {
                self.disconnect_written(after);
                self.drive(ctx);
            }
            Ok(None) => {}
            Err(quinn::WriteError::ConnectionLost(error)) => self.connection_lost(error, ctx),
            Err(other) => {
                self.machine()
                    .on_stream_failed(Violation::Write(Cause::new(other)));
                self.drive(ctx);
            }
        }
    }
}

/// The reader's steps as the connection actor gets them: DATA is delivered here, inside
/// the poll of the reader, without a trip through the actor's handler and its link
/// machine, until the first other frame; from then on every step goes to the handler,
/// whose link machine judges it (DATA after the peer's DISCONNECT breaks the
/// protocol, `LinkMachine::on_data`).
struct DeliverData<S> {
    /// Boxed so that this stays `Unpin` without a projection.
    steps: Pin<Box<S>>,
    /// No frame but DATA has come yet.
    only_data: bool,
}

impl<S: futures_util::Stream<Item = Inbound>> futures_util::Stream for DeliverData<S> {
    type Item = Inbound;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Inbound>> {
        for _ in 0..DELIVERIES_BEFORE_YIELD {
            match ready!(self.steps.as_mut().poll_next(cx)) {
                Some(Inbound::Data { run, room }) if self.only_data => {
                    room.deliver_all(run);
                }
                Some(Inbound::Data { run, room }) => {
                    return Poll::Ready(Some(Inbound::Data { run, room }));
                }
                Some(step) => {
                    self.only_data = false;
                    return Poll::Ready(Some(step));
                }
                None => return Poll::Ready(None),
            }
        }
        // As actix does for a stream's items: a link whose frames keep coming lets the
        // thread's other tasks run every so often.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// How many batches of DATA the reader delivers in a row before it lets the thread's
/// other tasks run: actix's own bound on the items of a stream handled in one go.
const DELIVERIES_BEFORE_YIELD: u32 = 16;

/// One step of the control stream's reader.
enum Inbound {
    /// DATA frames of one data type, read in one go, as one run of payloads, with room
    /// for them in every registration that takes them.
    Data {
        run: DataRun,
        room: DataReservation,
    },
    /// Any other frame.
    Frame(Message),
    Finished,
    Failed(ReadFrameError),
}

/// The most DATA frames the reader hands over in one step, and the most payload bytes in
/// one step (past which it closes the step after the frame that passed them). A step's
/// frames are already received (in the chunks quinn holds), so these bound how much one
/// step delivers at once, not what the link holds.
const BATCH_FRAMES: usize = 256;
const BATCH_BYTES: usize = 64 * 1024;

/// The least bytes a chunk from quinn holds when it was a full packet's stream data (a
/// QUIC packet carries at least 1,200 bytes, less its headers).
const FULL_PACKET_CHUNK: usize = 1_000;

/// The reader's state between steps.
struct ReadState {
    reader: FrameReader,
    /// The link, watched for its end while the reader waits for room.
    connection: quinn::Connection,
    subscribers: Arc<Subscribers>,
    /// Frames already decoded that the last step could not take: a frame of another type
    /// than its DATA, or DATA that did not find room at once. At most [`BATCH_FRAMES`].
    held: VecDeque<Message>,
}

impl ReadState {
    /// The next frame: a held one, or one read from the stream (waiting for it).
    async fn next(&mut self) -> Result<Option<Message>, ReadFrameError> {
        // Not a match on `pop_front`: the value matched on would live across the read's
        // wait, and take a frame's room in every idle link's step.
        if let Some(message) = self.held.pop_front() {
            return Ok(Some(message));
        }
        self.reader.read().await
    }

    /// The next frame if one is held or already received, without waiting. A protocol
    /// error stops here; the next [`next`](Self::next) reports it (the decoder repeats it).
    fn next_ready(&mut self) -> Option<Message> {
        match self.held.pop_front() {
            Some(message) => Some(message),
            None => self.reader.read_buffered().ok().flatten(),
        }
    }

    /// After a DATA frame of `data_type` whose room is in `room`: the DATA frames of that
    /// type right behind it that are already received, as far as room for them is free at
    /// once (all of them or none), with the first as one run. Whatever else was decoded is
    /// held for the next step.
    fn gather(
        &mut self,
        connection_id: ConnectionId,
        data_type: DataType,
        first: Bytes,
        room: &mut DataReservation,
    ) -> DataRun {
        let first_len = first.len();
        // Room for as many frames of the first one's size as are buffered or, when they
        // came in a full packet (more are likely in quinn already), as a whole step of
        // that size takes: one allocation for a run of small messages rather than a
        // vector grown packet by packet. What is not used is given back below.
        let frame_len = DATA_HEADER_LEN + first_len;
        let likely = if self.reader.last_chunk_len() >= FULL_PACKET_CHUNK {
            BATCH_BYTES / frame_len + 1
        } else {
            self.reader.buffered_len() / frame_len + 1
        };
        let mut payloads = Vec::with_capacity(likely.min(BATCH_FRAMES));
        payloads.push(first);
        // Payload bytes after the first, and the total; then how many payloads have room
        // (the first came with its own) and the bytes after the first among them.
        let (mut bytes, mut total) = (0, first_len);
        let (mut covered, mut covered_bytes) = (1, 0);
        while payloads.len() < BATCH_FRAMES && total < BATCH_BYTES {
            // The common case first: the DATA of this type whole in the chunk at hand, in
            // one call.
            if self.held.is_empty() {
                let taken = self.reader.read_buffered_run(
                    data_type,
                    &mut payloads,
                    BATCH_FRAMES,
                    BATCH_BYTES - total,
                );
                bytes += taken;
                total += taken;
                if payloads.len() == BATCH_FRAMES || total >= BATCH_BYTES {
                    break;
                }
            }
            // Then whatever comes next: a held frame, one that spans chunks, another.
            let payload = match self.next_ready() {
                Some(Message::Data {
                    data_type: next_type,
                    payload,
                }) if next_type == data_type => payload,
                Some(other) => {
                    self.held.push_front(other);
                    break;
                }
                // The next packet's frames, if quinn has them already. Only after a
                // full packet's worth: after a shorter one (a lone message, the end of
                // a burst) the next packet is rarely in yet, and asking quinn would
                // cost a lock for nothing. And only once the registrations have room
                // for every payload taken so far: a slow application stops the link
                // with at most one chunk's frames held here, as before, and quinn's
                // flow control holds the rest at the sender.
                None if self.reader.last_chunk_len() >= FULL_PACKET_CHUNK => {
                    let more = payloads.len() - covered;
                    if more > 0 && !room.try_extend(more, bytes - covered_bytes) {
                        break;
                    }
                    (covered, covered_bytes) = (payloads.len(), bytes);
                    if !self.reader.read_ready() {
                        break;
                    }
                    // Room for as many frames as at the start.
                    let more = self.reader.buffered_len() / frame_len;
                    payloads.reserve((more + 1).min(BATCH_FRAMES - payloads.len()));
                    continue;
                }
                None => break,
            };
            bytes += payload.len();
            total += payload.len();
            payloads.push(payload);
        }
        let more = payloads.len() - covered;
        if more > 0 && !room.try_extend(more, bytes - covered_bytes) {
            // No room for them at once: they wait, in order, for the next step.
            for payload in payloads.drain(covered..).rev() {
                self.held.push_front(Message::Data { data_type, payload });
            }
        }
        // The run waits in the registrations' queues until it is read, outside their byte
        // budget: it keeps no more room than its payloads need.
        if payloads.capacity() > 2 * payloads.len() {
            payloads.shrink_to_fit();
        }
        DataRun {
            connection_id,
            data_type,
            payloads,
        }
    }
}

/// Reads the control stream. After a DATA frame it waits for room for it in the
/// registrations that take it before it reads on: a full registration stops the link, and
/// QUIC flow control holds the sender (see `events`). The DATA frames of the same type
/// already received behind it (in the chunk at hand, then in the chunks quinn holds) go in
/// the same step if there is room for them at once: the packets of small messages that
/// came in since the last step cost one reservation and one wake of the application, not
/// one per message or per packet. Until the first frame other than DATA, the steps of DATA
/// are delivered by the reader itself ([`DeliverData`]): the actor's handler runs only for
/// the rest.
///
/// The link's end comes to the actor through the reader as long as it reads: a read
/// reports it (`ReadError::ConnectionLost`), and while it waits for room, the one time it
/// does not read, it watches the link
/// ([`WaitForRoom::wait_or`](crate::events::WaitForRoom::wait_or)). The actor watches the
/// link itself only once the reader has ended.
fn inbound(
    reader: FrameReader,
    connection: quinn::Connection,
    subscribers: Arc<Subscribers>,
    connection_id: ConnectionId,
) -> DeliverData<impl futures_util::Stream<Item = Inbound>> {
    // Boxed: the stream keeps a slot for the state between steps beside the step's
    // future, which holds it during a step, so inline the state would take its room twice
    // on every idle link. It goes into each step's future and comes back out of it, so a
    // frame costs no reference count.
    let state = Box::new(ReadState {
        reader,
        connection,
        subscribers,
        held: VecDeque::new(),
    });
    let steps = futures_util::stream::unfold(Some(state), move |state| async move {
        let mut state = state?;
        // Bound here, not matched on across the wait below: a value matched on lives to
        // the match's end, and would take its room in every link's step.
        let (data_type, payload) = match state.next().await {
            Ok(Some(Message::Data { data_type, payload })) => (data_type, payload),
            Ok(Some(message)) => return Some((Inbound::Frame(message), Some(state))),
            Ok(None) => return Some((Inbound::Finished, None)),
            Err(error) => return Some((Inbound::Failed(error), None)),
        };
        // The wait for room is rare, and boxed: inline, it would make this step, which an
        // idle link holds while it waits for a frame, several times larger.
        let room = match state.subscribers.try_reserve_data(data_type, payload.len()) {
            Ok(room) => Ok(room),
            Err(wait) => Box::pin(wait.wait_or(|| state.connection.closed())).await,
        };
        let mut room = match room {
            Ok(room) => room,
            Err(error) => {
                let lost = quinn::ReadError::ConnectionLost(error);
                return Some((Inbound::Failed(ReadFrameError::Stream(lost)), None));
            }
        };
        let run = state.gather(connection_id, data_type, payload, &mut room);
        Some((Inbound::Data { run, room }, Some(state)))
    });
    DeliverData {
        steps: Box::pin(steps),
        only_data: true,
    }
}

impl StreamHandler<Inbound> for ConnectionActor {
    fn handle(&mut self, item: Inbound, ctx: &mut Self::Context) {
        // The reader's last step: from now on the link's end is watched here.
        let reader_ended = matches!(item, Inbound::Finished | Inbound::Failed(_));
        match item {
            Inbound::Data { run, room } => return self.on_data(run, room, ctx),
            Inbound::Frame(message) => {
                let now = Self::now();
                // Only DISCONNECT is acted on; anything else here breaks the protocol.
                self.machine().on_frame(now, message.frame_type());
            }
            Inbound::Finished => self.machine().on_peer_finished(),
            Inbound::Failed(ReadFrameError::Protocol(error)) => self.machine().on_malformed(error),
            Inbound::Failed(ReadFrameError::Stream(quinn::ReadError::ConnectionLost(error))) => {
                return self.connection_lost(error, ctx)
            }
            Inbound::Failed(ReadFrameError::Stream(error)) => self
                .machine()
                .on_stream_failed(Violation::Read(Cause::new(error))),
        }
        if reader_ended {
            self.watch_link(ctx);
        }
        self.drive(ctx);
    }

    /// The reader ending is handled by its last item; it must not stop the actor by itself.
    fn finished(&mut self, _ctx: &mut Self::Context) {}
}

/// Closes the link (docs/PROTOCOL.md §3.4). `reply` gets S_OK, `PEER_E_TIMEOUT`,
/// `PEER_E_CONNECTION_FAILED` or, when the graph closes meanwhile, `PEER_E_INVALID_GRAPH`,
/// once the actor is gone; a link already closing (the peer closed it first) answers
/// `PEER_E_CONNECTION_NOT_FOUND`, also once the actor is gone. A `Close` that finds the
/// actor gone is dropped with its `reply`, which the caller reads as NOT_FOUND too.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub(crate) struct Close {
    pub(crate) reply: CloseReply,
}

impl Handler<Close> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, Close { reply }: Close, ctx: &mut Self::Context) {
        let now = Self::now();
        match self.machine().close(now) {
            CloseStart::Started | CloseStart::AlreadyClosing => self.guard.reply = Some(reply),
            CloseStart::AnswerNow(error) => {
                let _ = reply.send(Err(error));
            }
        }
        self.drive(ctx);
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
        self.machine().leave();
        self.drive(ctx);
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
