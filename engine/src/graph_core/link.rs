//! One link's state machine: what its control stream may carry, and the close of
//! docs/PROTOCOL.md §3.4 (what to send when, when to answer, with which code).
//!
//! The driver feeds it what happened on the link (a frame read, the peer's FIN, our
//! DISCONNECT written, the peer acknowledging or taking more of our data, the link lost,
//! the close timer) with the time, and carries out the
//! actions it polls: queue DISCONNECT, send FIN, close the link with a code, hand the
//! link to a lingering close, stop. It keeps the answer of a close under way, which the
//! driver sends when it is gone ([`LinkMachine::finish`]), so whatever ends a link, a close
//! is answered exactly once.
//!
//! # The close timeout measures silence, not length
//! A close waits for the peer as long as the peer makes progress: it times out after
//! `close_timeout` without any ([`LinkMachine::on_progress`]: the peer acknowledged new
//! data, opened its flow-control window, or sent stream data), and in any case after
//! `close_bound` from its start. So a slow but live link (a lossy radio, a reader that
//! takes a while) gets S_OK with every byte, and `PEER_E_TIMEOUT` means the peer stopped
//! answering, or took longer than the bound.

use std::collections::VecDeque;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::result::{PeerError, ResultCode};
use crate::wire::{close_code, FrameType, ProtocolError};

/// The error behind an end, as the driver's stack reported it (a QUIC connection or
/// stream error, say). Cheap to clone.
#[derive(Clone)]
pub struct Cause(Arc<dyn StdError + Send + Sync>);

impl Cause {
    /// Wraps `error`.
    pub fn new(error: impl StdError + Send + Sync + 'static) -> Self {
        Cause(Arc::new(error))
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl StdError for Cause {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

/// How a peer broke the protocol on a link.
#[derive(Clone, Debug, Error)]
pub enum Violation {
    /// A frame came after the peer's DISCONNECT.
    #[error("{0:?} frame after DISCONNECT")]
    FrameAfterDisconnect(FrameType),
    /// A frame that has no place on an open link (CONNECT, WELCOME or REFUSE).
    #[error("unexpected {0:?} frame")]
    UnexpectedFrame(FrameType),
    /// The control stream ended without DISCONNECT.
    #[error("stream finished without DISCONNECT")]
    FinishedWithoutDisconnect,
    /// The bytes were not a valid frame.
    #[error("malformed frame")]
    Malformed(#[source] ProtocolError),
    /// Reading the control stream failed (it was reset, say).
    #[error("control stream failed")]
    Read(#[source] Cause),
    /// Writing the control stream failed (the peer stopped it, say).
    #[error("write failed")]
    Write(#[source] Cause),
}

/// Why a link ended.
#[derive(Clone, Debug, Error)]
pub enum EndReason {
    /// Closed by this node's application.
    #[error("closed by this node")]
    LocalClose,
    /// Closed by the peer (DISCONNECT, or its QUIC close).
    #[error("closed by the peer")]
    RemoteClose,
    /// The graph closed (or the engine shut down).
    #[error("the graph closed")]
    GraphClosed,
    /// A close did not complete within the close timeout.
    #[error("the close timed out")]
    CloseTimedOut,
    /// The link failed: idle timeout, transport error, peer vanished.
    #[error("the link was lost")]
    Lost(#[source] Cause),
    /// The peer broke the protocol.
    #[error("the peer broke the protocol")]
    ProtocolError(#[source] Violation),
    /// The link's driver ended without saying why (it panicked, or its thread stopped).
    #[error("the connection handler ended")]
    Aborted,
}

/// How the link itself ended, as the driver's stack reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkLoss {
    /// The peer closed the link with APP_DISCONNECT: the orderly end of a close.
    PeerDisconnected,
    /// The peer closed the link with another application code (LEAVING, say).
    PeerClosed,
    /// This node closed the link, and not by a decision of this machine: its graph
    /// closed the endpoint (graph closed, or the last shutdown).
    LocallyClosed,
    /// The idle timeout passed without a packet from the peer.
    TimedOut,
    /// Anything else: a transport error, a reset.
    Failed,
}

/// What a link's driver does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkAction {
    /// Queue DISCONNECT(APP_DISCONNECT) behind every frame already accepted; report
    /// [`LinkMachine::disconnect_written`] once it is written, or
    /// [`LinkMachine::disconnect_failed`] if it cannot be queued. With `then_finish` the
    /// peer's DISCONNECT is read already, so our FIN may go with our DISCONNECT, in the
    /// same write (the peer that closes gets both in one packet); the driver says whether
    /// it did.
    QueueDisconnect {
        /// The FIN may follow the DISCONNECT at once.
        then_finish: bool,
    },
    /// Finish our side of the control stream (send FIN): we have read all the peer sent.
    Finish,
    /// Close the link now with this QUIC application close code.
    CloseLink(u32),
    /// The close succeeded: close the link with APP_DISCONNECT once the peer has
    /// acknowledged our FIN, bounded by [`LinkMachine::close_timeout`], independently of
    /// the link's driver, which ends at once.
    Linger,
    /// End the link's driver.
    Stop,
}

/// A `Close` call's answer, as the machine keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Call {
    /// No close of ours was asked for.
    #[default]
    None,
    /// A close of ours waits for its outcome.
    Waiting,
    /// A close's answer is decided; it goes out when the link's driver is gone.
    Decided(Result<(), PeerError>),
}

/// What [`LinkMachine::close`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseStart {
    /// The close is under way; its answer comes from [`LinkMachine::finish`].
    Started,
    /// The link is closing already (the peer closed first): the answer,
    /// `PEER_E_CONNECTION_NOT_FOUND`, also comes from [`LinkMachine::finish`], once the
    /// driver is gone, so the caller never sees a connection it was told is not there.
    AlreadyClosing,
    /// A close was already asked for: answer this one with the error now.
    AnswerNow(PeerError),
}

/// What the driver does when it is gone, whatever ended it.
#[derive(Debug)]
pub struct Finished {
    /// Close the link with INTERNAL_ERROR if it is still open: nothing planned ended the
    /// driver (a lingering close, handed off, keeps the link).
    pub close_link: bool,
    /// The answer of a close under way, if one was asked for.
    pub answer: Option<Result<(), PeerError>>,
    /// Why the link ended.
    pub reason: EndReason,
}

/// The state machine of one link (docs/PROTOCOL.md §3.4).
#[derive(Debug)]
pub struct LinkMachine {
    close_timeout: Duration,
    close_bound: Duration,
    /// Our DISCONNECT is queued (we close, or we answer the peer's).
    closing: bool,
    /// We have read the peer's DISCONNECT.
    peer_disconnected: bool,
    /// Our DISCONNECT is written; FIN may follow once the peer's DISCONNECT is read.
    disconnect_written: bool,
    /// Our FIN is sent.
    fin_sent: bool,
    /// We have read the peer's FIN (after its DISCONNECT).
    peer_finished: bool,
    /// The close completed and a lingering close keeps the link until the peer
    /// acknowledged our FIN.
    handed_off: bool,
    ended: bool,
    /// What only a link's end uses: `None` until a close starts, an action is due or the
    /// end's reason is known. Boxed, so that an open link, which holds its machine for
    /// life, does not keep its room (112 bytes) inline.
    ending: Option<Box<Ending>>,
}

/// The part of a [`LinkMachine`] that only a link's end uses.
#[derive(Debug, Default)]
struct Ending {
    /// When the close started.
    closing_since: Option<Instant>,
    /// When the peer last made progress during the close.
    last_progress: Option<Instant>,
    call: Call,
    reason: Option<EndReason>,
    actions: VecDeque<LinkAction>,
}

impl LinkMachine {
    /// A new open link whose closes time out after `close_timeout` without progress, and
    /// after `close_bound` in any case (see the module doc).
    pub fn new(close_timeout: Duration, close_bound: Duration) -> Self {
        LinkMachine {
            close_timeout,
            close_bound,
            closing: false,
            peer_disconnected: false,
            disconnect_written: false,
            fin_sent: false,
            peer_finished: false,
            handed_off: false,
            ended: false,
            ending: None,
        }
    }

    /// The part only a link's end uses, made on first use.
    fn ending(&mut self) -> &mut Ending {
        self.ending.get_or_insert_default()
    }

    /// Queues `action` for the driver.
    fn act(&mut self, action: LinkAction) {
        self.ending().actions.push_back(action);
    }

    /// Sets the end's reason (the last one set is reported).
    fn set_reason(&mut self, reason: EndReason) {
        self.ending().reason = Some(reason);
    }

    /// How long a close waits without progress, and a lingering close's wait.
    pub fn close_timeout(&self) -> Duration {
        self.close_timeout
    }

    /// The next action to carry out.
    pub fn poll_action(&mut self) -> Option<LinkAction> {
        self.ending.as_mut()?.actions.pop_front()
    }

    /// When [`on_timeout`](Self::on_timeout) must be called, if a close is under way: the
    /// earlier of `close_timeout` after the last progress and `close_bound` after the
    /// close started. It moves later as the peer makes progress.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        let ending = self.ending.as_ref()?;
        let since = ending.closing_since?;
        let last = ending.last_progress.unwrap_or(since);
        Some((last + self.close_timeout).min(since + self.close_bound))
    }

    /// The peer made progress during a close: it acknowledged new data, opened its window,
    /// or sent stream data. Moves the close timeout ([`poll_timeout`](Self::poll_timeout)).
    pub fn on_progress(&mut self, now: Instant) {
        if self.closing && !self.ended {
            self.ending().last_progress = Some(now);
        }
    }

    /// Whether the machine has decided the link's end (the driver stops).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Whether our DISCONNECT is queued or written.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// The application closes the link (CloseDirectConnection).
    pub fn close(&mut self, now: Instant) -> CloseStart {
        if self.closing {
            let ending = self.ending();
            return match ending.call {
                Call::None => {
                    ending.call = Call::Decided(Err(PeerError::CONNECTION_NOT_FOUND));
                    CloseStart::AlreadyClosing
                }
                Call::Waiting | Call::Decided(_) => {
                    CloseStart::AnswerNow(PeerError::CONNECTION_NOT_FOUND)
                }
            };
        }
        self.set_reason(EndReason::LocalClose);
        self.ending().call = Call::Waiting;
        self.start_closing(now);
        CloseStart::Started
    }

    /// A DATA frame was read: true when it is to be delivered, false (a protocol error)
    /// after the peer's DISCONNECT. The same as [`on_frame`](Self::on_frame) with
    /// [`FrameType::Data`], without the time: DATA moves no deadline, so the reader of a
    /// busy link does not read the clock once per frame.
    pub fn on_data(&mut self) -> bool {
        if self.peer_disconnected {
            self.protocol_error(Violation::FrameAfterDisconnect(FrameType::Data));
            return false;
        }
        true
    }

    /// A frame of `frame_type` was read. True when it is application data to deliver;
    /// DISCONNECT is handled here, anything else breaks the protocol.
    pub fn on_frame(&mut self, now: Instant, frame_type: FrameType) -> bool {
        if frame_type == FrameType::Data {
            return self.on_data();
        }
        if self.peer_disconnected {
            self.protocol_error(Violation::FrameAfterDisconnect(frame_type));
            return false;
        }
        match frame_type {
            FrameType::Disconnect => {
                self.on_peer_disconnect(now);
                false
            }
            other => {
                self.protocol_error(Violation::UnexpectedFrame(other));
                false
            }
        }
    }

    /// The peer's DISCONNECT: everything it sent came before it and has been delivered.
    fn on_peer_disconnect(&mut self, now: Instant) {
        self.peer_disconnected = true;
        if !self.closing {
            // The peer closes: answer with what we had accepted, then our own
            // DISCONNECT, bounded by the close timeout like a close of our own.
            self.set_reason(EndReason::RemoteClose);
            self.start_closing(now);
        }
        self.try_finish();
    }

    fn start_closing(&mut self, now: Instant) {
        self.closing = true;
        let then_finish = self.peer_disconnected;
        let ending = self.ending();
        ending.closing_since = Some(now);
        ending.last_progress = Some(now);
        ending
            .actions
            .push_back(LinkAction::QueueDisconnect { then_finish });
    }

    /// The peer finished its side of the control stream.
    pub fn on_peer_finished(&mut self) {
        if !self.peer_disconnected {
            return self.protocol_error(Violation::FinishedWithoutDisconnect);
        }
        self.peer_finished = true;
        self.try_complete();
    }

    /// Reading the control stream failed with malformed bytes.
    pub fn on_malformed(&mut self, error: ProtocolError) {
        self.protocol_error(Violation::Malformed(error));
    }

    /// Reading or writing the control stream failed (not because the link was lost:
    /// that is [`on_link_lost`](Self::on_link_lost)).
    pub fn on_stream_failed(&mut self, violation: Violation) {
        self.protocol_error(violation);
    }

    /// Our DISCONNECT, and everything queued before it, is written; `finished` when our
    /// FIN went with it, which only a [`LinkAction::QueueDisconnect`] with `then_finish`
    /// allows (the peer's DISCONNECT is read).
    pub fn disconnect_written(&mut self, finished: bool) {
        debug_assert!(
            !finished || self.peer_disconnected,
            "a FIN went before the peer's DISCONNECT was read"
        );
        self.disconnect_written = true;
        if finished && !self.fin_sent {
            self.fin_sent = true;
            return self.try_complete();
        }
        self.try_finish();
    }

    /// Our DISCONNECT could not be queued: the link's writer is gone.
    pub fn disconnect_failed(&mut self) {
        self.end(Err(PeerError::new(ResultCode::PEER_E_CONNECTION_FAILED)));
    }

    /// Sends our FIN once our DISCONNECT is written and the peer's is read: the FIN tells
    /// the peer that we have read all it sent.
    fn try_finish(&mut self) {
        if self.peer_disconnected && self.disconnect_written && !self.fin_sent {
            self.fin_sent = true;
            self.act(LinkAction::Finish);
            self.try_complete();
        }
    }

    /// Ends the close once both streams are done: our FIN is sent and the peer's is read.
    /// Each side then holds all the other sent, so the close has succeeded.
    fn try_complete(&mut self) {
        if self.peer_finished && self.fin_sent && !self.handed_off {
            self.handed_off = true;
            self.act(LinkAction::Linger);
            self.end(Ok(()));
        }
    }

    /// The link ended (`cause` is the stack's error, kept as the end's source).
    pub fn on_link_lost(&mut self, loss: LinkLoss, cause: Cause) {
        let outcome = match loss {
            LinkLoss::PeerDisconnected => Ok(()),
            // The machine closes its link itself only once it has decided the answer
            // (Leave, the close timeout, a protocol error), so a local close it did not
            // decide is the graph's: closing the graph, or the last shutdown, closes its
            // endpoints, and a connection whose close is under way has left the table,
            // so no Leave reaches it. The link is gone without the peer's confirmation.
            LinkLoss::LocallyClosed => Err(PeerError::INVALID_GRAPH),
            LinkLoss::TimedOut => Err(PeerError::new(ResultCode::PEER_E_TIMEOUT)),
            LinkLoss::PeerClosed | LinkLoss::Failed => {
                Err(PeerError::new(ResultCode::PEER_E_CONNECTION_FAILED))
            }
        };
        let ending = self.ending();
        if ending.reason.is_none() {
            ending.reason = Some(match loss {
                LinkLoss::PeerDisconnected | LinkLoss::PeerClosed => EndReason::RemoteClose,
                LinkLoss::LocallyClosed => EndReason::GraphClosed,
                LinkLoss::TimedOut | LinkLoss::Failed => EndReason::Lost(cause),
            });
        }
        self.end(outcome);
    }

    /// The node leaves the graph (graph closed, engine shut down): close at once with
    /// LEAVING. A close under way is answered as a call on the closed graph would be.
    pub fn leave(&mut self) {
        self.act(LinkAction::CloseLink(close_code::LEAVING));
        self.set_reason(EndReason::GraphClosed);
        self.end(Err(PeerError::INVALID_GRAPH));
    }

    /// The close timer: past the deadline the link is cut with CLOSE_TIMEOUT and a close
    /// of ours answers `PEER_E_TIMEOUT`. Early calls (the deadline moved) do nothing.
    pub fn on_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_none_or(|deadline| now < deadline) {
            return;
        }
        self.act(LinkAction::CloseLink(close_code::CLOSE_TIMEOUT));
        self.set_reason(EndReason::CloseTimedOut);
        self.end(Err(PeerError::new(ResultCode::PEER_E_TIMEOUT)));
    }

    fn protocol_error(&mut self, violation: Violation) {
        self.act(LinkAction::CloseLink(close_code::PROTOCOL_ERROR));
        self.set_reason(EndReason::ProtocolError(violation));
        self.end(Err(PeerError::new(ResultCode::PEER_E_CONNECTION_FAILED)));
    }

    /// Ends the link with `outcome` as the answer of a close under way. The first end
    /// decides it: the reader and the link often end in the same turn, and the later one
    /// (the link closed after the close succeeded) must not change it.
    fn end(&mut self, outcome: Result<(), PeerError>) {
        let ending = self.ending();
        if ending.call == Call::Waiting {
            ending.call = Call::Decided(outcome);
        }
        if !self.ended {
            self.ended = true;
            self.act(LinkAction::Stop);
        }
    }

    /// The driver is gone, for whatever reason: what to do last. A close that no step
    /// foresaw the end of (the driver panicked, or its thread stopped) answers
    /// `PEER_E_CONNECTION_FAILED`: the peer's confirmation never came.
    pub fn finish(&mut self) -> Finished {
        let (call, reason) = match self.ending.as_mut() {
            Some(ending) => (std::mem::take(&mut ending.call), ending.reason.take()),
            None => (Call::None, None),
        };
        let answer = match call {
            Call::None => None,
            Call::Waiting => Some(Err(PeerError::new(ResultCode::PEER_E_CONNECTION_FAILED))),
            Call::Decided(answer) => Some(answer),
        };
        Finished {
            close_link: !self.handed_off,
            answer,
            reason: reason.unwrap_or(EndReason::Aborted),
        }
    }
}
