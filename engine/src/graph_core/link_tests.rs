//! The close of one link (docs/PROTOCOL.md §3.4), without QUIC: each case the actors'
//! tests cover over real QUIC (normal, both sides at once, the peer first, timeout, a
//! link failing, the graph closed or the engine shut down, a panic), and the progress
//! rule of the close timeout.

use std::time::{Duration, Instant};

use super::*;
use crate::wire::{close_code, FrameType, ProtocolError};

const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
const CLOSE_BOUND: Duration = Duration::from_secs(60);

/// Drives a link machine and records its actions.
struct Link {
    machine: LinkMachine,
    start: Instant,
}

impl Link {
    fn new() -> Self {
        Link {
            machine: LinkMachine::new(CLOSE_TIMEOUT, CLOSE_BOUND),
            start: Instant::now(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    fn actions(&mut self) -> Vec<LinkAction> {
        std::iter::from_fn(|| self.machine.poll_action()).collect()
    }

    fn lost(&mut self, loss: LinkLoss) {
        self.machine
            .on_link_lost(loss, Cause::new(std::io::Error::other("link gone")));
    }

    fn finished(&mut self) -> Finished {
        self.machine.finish()
    }
}

/// The machine cut the link for the close timeout and ended.
fn assert_cut_for_timeout(link: &mut Link) {
    assert_eq!(
        link.actions(),
        [
            LinkAction::CloseLink(close_code::CLOSE_TIMEOUT),
            LinkAction::Stop
        ]
    );
}

fn answer_of(finished: &Finished) -> Option<Result<(), ResultCode>> {
    finished
        .answer
        .as_ref()
        .map(|answer| answer.clone().map_err(|error| error.code()))
}

#[test]
fn a_normal_close_sends_disconnect_then_fin_and_answers_s_ok() {
    let mut link = Link::new();
    assert!(
        link.machine.on_frame(link.at(0), FrameType::Data),
        "data flows"
    );
    assert_eq!(link.machine.close(link.at(10)), CloseStart::Started);
    assert_eq!(
        link.actions(),
        [LinkAction::QueueDisconnect { then_finish: false }]
    );
    assert_eq!(
        link.machine.poll_timeout(),
        Some(link.at(10) + CLOSE_TIMEOUT)
    );
    link.machine.disconnect_written(false);
    assert!(
        link.actions().is_empty(),
        "no FIN before the peer's DISCONNECT"
    );
    // The peer's frames sent before its DISCONNECT are still delivered.
    assert!(link.machine.on_frame(link.at(20), FrameType::Data));
    assert!(link.machine.on_data());
    assert!(!link.machine.on_frame(link.at(30), FrameType::Disconnect));
    assert_eq!(link.actions(), [LinkAction::Finish]);
    link.machine.on_peer_finished();
    assert_eq!(link.actions(), [LinkAction::Linger, LinkAction::Stop]);
    assert!(link.machine.is_ended());
    assert_eq!(link.machine.poll_timeout(), None);
    let finished = link.finished();
    assert_eq!(answer_of(&finished), Some(Ok(())));
    assert!(!finished.close_link, "the lingering close keeps the link");
    assert!(matches!(finished.reason, EndReason::LocalClose));
}

#[test]
fn the_peer_fin_may_come_before_our_disconnect_is_written() {
    let mut link = Link::new();
    link.machine.close(link.at(0));
    link.actions();
    link.machine.on_frame(link.at(1), FrameType::Disconnect);
    link.machine.on_peer_finished();
    assert!(
        link.actions().is_empty(),
        "our FIN waits for our DISCONNECT"
    );
    link.machine.disconnect_written(false);
    assert_eq!(
        link.actions(),
        [LinkAction::Finish, LinkAction::Linger, LinkAction::Stop]
    );
    assert_eq!(answer_of(&link.finished()), Some(Ok(())));
}

#[test]
fn both_sides_closing_at_once_follow_the_same_steps() {
    let mut link = Link::new();
    assert_eq!(link.machine.close(link.at(0)), CloseStart::Started);
    // The peer's DISCONNECT crosses ours: no second DISCONNECT is queued.
    link.machine.on_frame(link.at(1), FrameType::Disconnect);
    assert_eq!(
        link.actions(),
        [LinkAction::QueueDisconnect { then_finish: false }]
    );
    link.machine.disconnect_written(false);
    link.machine.on_peer_finished();
    assert_eq!(
        link.actions(),
        [LinkAction::Finish, LinkAction::Linger, LinkAction::Stop]
    );
    let finished = link.finished();
    assert_eq!(answer_of(&finished), Some(Ok(())));
    assert!(matches!(finished.reason, EndReason::LocalClose));
}

#[test]
fn the_peer_closing_first_is_answered_and_a_close_then_gets_not_found_at_the_end() {
    let mut link = Link::new();
    link.machine.on_frame(link.at(0), FrameType::Disconnect);
    assert_eq!(
        link.actions(),
        [LinkAction::QueueDisconnect { then_finish: true }],
        "we have read the peer's DISCONNECT: our FIN may follow ours at once"
    );
    assert!(link.machine.is_closing());
    assert_eq!(
        link.machine.poll_timeout(),
        Some(link.at(0) + CLOSE_TIMEOUT)
    );
    assert_eq!(link.machine.close(link.at(1)), CloseStart::AlreadyClosing);
    assert_eq!(
        link.machine.close(link.at(2)),
        CloseStart::AnswerNow(PeerError::CONNECTION_NOT_FOUND),
        "a second Close is answered at once"
    );
    link.machine.disconnect_written(false);
    link.machine.on_peer_finished();
    assert_eq!(
        link.actions(),
        [LinkAction::Finish, LinkAction::Linger, LinkAction::Stop]
    );
    let finished = link.finished();
    assert_eq!(
        answer_of(&finished),
        Some(Err(ResultCode::PEER_E_CONNECTION_NOT_FOUND))
    );
    assert!(matches!(finished.reason, EndReason::RemoteClose));
}

#[test]
fn the_answer_to_a_peer_that_closes_may_carry_our_fin_in_the_same_write() {
    let mut link = Link::new();
    link.machine.on_frame(link.at(0), FrameType::Disconnect);
    assert_eq!(
        link.actions(),
        [LinkAction::QueueDisconnect { then_finish: true }]
    );
    link.machine.disconnect_written(true);
    assert!(
        link.actions().is_empty(),
        "the FIN went with the DISCONNECT: no second one, and no end before the peer's FIN"
    );
    link.machine.on_peer_finished();
    assert_eq!(link.actions(), [LinkAction::Linger, LinkAction::Stop]);
    let finished = link.finished();
    assert_eq!(answer_of(&finished), None, "no close of ours to answer");
    assert!(!finished.close_link, "the lingering close keeps the link");
    assert!(matches!(finished.reason, EndReason::RemoteClose));
}

#[test]
fn a_close_the_peer_never_confirms_times_out_and_cuts_the_link() {
    let mut link = Link::new();
    link.machine.close(link.at(0));
    link.machine.disconnect_written(false);
    link.actions();
    link.machine.on_timeout(link.at(4_999));
    assert!(link.actions().is_empty(), "an early timer does nothing");
    link.machine.on_timeout(link.at(5_000));
    assert_cut_for_timeout(&mut link);
    let finished = link.finished();
    assert_eq!(answer_of(&finished), Some(Err(ResultCode::PEER_E_TIMEOUT)));
    assert!(matches!(finished.reason, EndReason::CloseTimedOut));
}

#[test]
fn a_close_waits_while_the_peer_makes_progress_and_times_out_after_silence() {
    let mut link = Link::new();
    link.machine.close(link.at(0));
    link.machine.disconnect_written(false);
    link.actions();
    // Progress every 4 s keeps the close going well past one close timeout.
    for second in (4..=20).step_by(4) {
        link.machine.on_progress(link.at(second * 1_000));
        link.machine.on_timeout(link.at(second * 1_000 + 999));
        assert!(link.actions().is_empty(), "progress at {second} s");
    }
    assert_eq!(link.machine.poll_timeout(), Some(link.at(25_000)));
    // Then the peer goes silent: five seconds later the close times out.
    link.machine.on_timeout(link.at(24_999));
    assert!(link.actions().is_empty());
    link.machine.on_timeout(link.at(25_000));
    assert_cut_for_timeout(&mut link);
    assert_eq!(
        answer_of(&link.finished()),
        Some(Err(ResultCode::PEER_E_TIMEOUT))
    );
}

#[test]
fn a_close_that_keeps_progressing_ends_at_its_overall_bound() {
    let mut link = Link::new();
    link.machine.close(link.at(0));
    link.actions();
    let mut ms = 0;
    while ms < 59_000 {
        ms += 1_000;
        link.machine.on_progress(link.at(ms));
    }
    assert_eq!(link.machine.poll_timeout(), Some(link.at(60_000)));
    link.machine.on_timeout(link.at(60_000));
    assert_cut_for_timeout(&mut link);
    assert_eq!(
        answer_of(&link.finished()),
        Some(Err(ResultCode::PEER_E_TIMEOUT))
    );
}

#[test]
fn progress_outside_a_close_moves_nothing() {
    let mut link = Link::new();
    link.machine.on_progress(link.at(10));
    assert_eq!(link.machine.poll_timeout(), None);
    link.machine.close(link.at(100));
    assert_eq!(
        link.machine.poll_timeout(),
        Some(link.at(100) + CLOSE_TIMEOUT)
    );
}

#[test]
fn a_peer_close_that_we_cannot_finish_times_out_too() {
    let mut link = Link::new();
    link.machine.on_frame(link.at(0), FrameType::Disconnect);
    link.actions();
    link.machine.on_timeout(link.at(5_000));
    assert_cut_for_timeout(&mut link);
    assert_eq!(
        answer_of(&link.finished()),
        None,
        "no close of ours to answer"
    );
}

#[test]
fn a_link_that_fails_during_a_close_answers_connection_failed() {
    let mut link = Link::new();
    link.machine.close(link.at(0));
    link.lost(LinkLoss::Failed);
    assert_eq!(
        link.actions(),
        [
            LinkAction::QueueDisconnect { then_finish: false },
            LinkAction::Stop
        ]
    );
    let finished = link.finished();
    assert_eq!(
        answer_of(&finished),
        Some(Err(ResultCode::PEER_E_CONNECTION_FAILED))
    );
    assert!(finished.close_link);
    // The reason set by the close stands; the cause of a loss with no reason is kept.
    assert!(matches!(finished.reason, EndReason::LocalClose));
    let mut idle = Link::new();
    idle.lost(LinkLoss::TimedOut);
    let finished = idle.finished();
    assert!(matches!(&finished.reason, EndReason::Lost(cause) if cause.to_string() == "link gone"));
}

#[test]
fn the_idle_timeout_during_a_close_answers_timeout() {
    let mut link = Link::new();
    link.machine.close(link.at(0));
    link.lost(LinkLoss::TimedOut);
    assert_eq!(
        answer_of(&link.finished()),
        Some(Err(ResultCode::PEER_E_TIMEOUT))
    );
}

#[test]
fn the_peer_closing_quic_after_its_fin_completes_the_close() {
    // The peer sends APP_DISCONNECT only once it has read our FIN.
    let mut link = Link::new();
    link.machine.close(link.at(0));
    link.lost(LinkLoss::PeerDisconnected);
    assert_eq!(answer_of(&link.finished()), Some(Ok(())));
    let mut remote = Link::new();
    remote.lost(LinkLoss::PeerClosed);
    assert!(matches!(remote.finished().reason, EndReason::RemoteClose));
}

#[test]
fn the_first_end_decides_the_answer() {
    // The close succeeds, and the peer's QUIC close is seen in the same turn.
    let mut link = Link::new();
    link.machine.close(link.at(0));
    link.machine.disconnect_written(false);
    link.machine.on_frame(link.at(1), FrameType::Disconnect);
    link.machine.on_peer_finished();
    link.lost(LinkLoss::Failed);
    link.machine.on_timeout(link.at(10_000));
    assert_eq!(
        link.actions(),
        [
            LinkAction::QueueDisconnect { then_finish: false },
            LinkAction::Finish,
            LinkAction::Linger,
            LinkAction::Stop
        ]
    );
    assert_eq!(answer_of(&link.finished()), Some(Ok(())));
}

#[test]
fn closing_the_graph_during_a_close_answers_invalid_graph() {
    // Leave reaches a link whose close is under way.
    let mut link = Link::new();
    link.machine.close(link.at(0));
    link.actions();
    link.machine.leave();
    assert_eq!(
        link.actions(),
        [LinkAction::CloseLink(close_code::LEAVING), LinkAction::Stop]
    );
    let finished = link.finished();
    assert_eq!(
        answer_of(&finished),
        Some(Err(ResultCode::PEER_E_INVALID_GRAPH))
    );
    assert!(matches!(finished.reason, EndReason::GraphClosed));
    // The graph's endpoint is closed under a link whose close has left the table (the
    // last shutdown, or CloseGraph): the same answer.
    let mut link = Link::new();
    link.machine.close(link.at(0));
    link.lost(LinkLoss::LocallyClosed);
    assert_eq!(
        answer_of(&link.finished()),
        Some(Err(ResultCode::PEER_E_INVALID_GRAPH))
    );
}

#[test]
fn a_driver_that_ends_unplanned_answers_connection_failed_and_cuts_the_link() {
    // A panic: the driver is dropped with the close still waiting.
    let mut link = Link::new();
    link.machine.close(link.at(0));
    link.machine.disconnect_written(false);
    let finished = link.finished();
    assert_eq!(
        answer_of(&finished),
        Some(Err(ResultCode::PEER_E_CONNECTION_FAILED))
    );
    assert!(
        finished.close_link,
        "cut, not finished: a FIN would confirm"
    );
    assert!(matches!(finished.reason, EndReason::LocalClose));
    let mut quiet = Link::new();
    let finished = quiet.finished();
    assert_eq!(answer_of(&finished), None);
    assert!(matches!(finished.reason, EndReason::Aborted));
}

#[test]
fn a_disconnect_that_cannot_be_queued_answers_connection_failed() {
    let mut link = Link::new();
    link.machine.close(link.at(0));
    link.machine.disconnect_failed();
    assert_eq!(
        answer_of(&link.finished()),
        Some(Err(ResultCode::PEER_E_CONNECTION_FAILED))
    );
}

#[test]
fn protocol_violations_close_the_link_with_protocol_error() {
    type Provoke = fn(&mut Link);
    let cases: [(&str, Provoke); 6] = [
        ("data after DISCONNECT", |link| {
            link.machine.on_frame(link.at(0), FrameType::Disconnect);
            link.machine.on_frame(link.at(1), FrameType::Data);
        }),
        ("data after DISCONNECT, read without the time", |link| {
            link.machine.on_frame(link.at(0), FrameType::Disconnect);
            assert!(!link.machine.on_data());
        }),
        ("CONNECT on an open link", |link| {
            link.machine.on_frame(link.at(0), FrameType::Connect);
        }),
        ("FIN without DISCONNECT", |link| {
            link.machine.on_peer_finished()
        }),
        ("malformed bytes", |link| {
            link.machine
                .on_malformed(ProtocolError::UnknownFrameType(9))
        }),
        ("a stopped stream", |link| {
            link.machine
                .on_stream_failed(Violation::Write(Cause::new(std::io::Error::other(
                    "stopped",
                ))))
        }),
    ];
    for (what, provoke) in cases {
        let mut link = Link::new();
        link.machine.close(link.at(0));
        provoke(&mut link);
        let actions = link.actions();
        assert!(
            actions.contains(&LinkAction::CloseLink(close_code::PROTOCOL_ERROR)),
            "{what}: {actions:?}"
        );
        assert_eq!(actions.last(), Some(&LinkAction::Stop), "{what}");
        let finished = link.finished();
        assert_eq!(
            answer_of(&finished),
            Some(Err(ResultCode::PEER_E_CONNECTION_FAILED)),
            "{what}"
        );
        assert!(
            matches!(finished.reason, EndReason::ProtocolError(_)),
            "{what}"
        );
    }
}
