//! The direct connections this host has asked to open whose outcome is not known yet, so
//! that a command naming one (by id, or by its peer id) waits for it instead of failing,
//! and the end of standard input waits for them before closing the graph.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use peergraph::ConnectionId;
use tokio::sync::Notify;

/// How often a waiter asks the graph whether the connection is up. The event printer
/// wakes waiters at once on DIRECT_CONNECTION events; polling covers hosts run without
/// `--accept-direct`, which get no such events.
const POLL: Duration = Duration::from_millis(50);

/// How many outcomes are remembered for connections not (yet) noted as opening: the
/// event printer can see a connection's outcome before the command loop notes it.
const EARLY: usize = 64;

/// Connections being opened: id → (peer id, when to stop waiting for it).
#[derive(Default)]
pub(crate) struct Opening {
    state: Mutex<State>,
    settled: Notify,
}

#[derive(Default)]
struct State {
    pending: HashMap<ConnectionId, (String, Instant)>,
    /// The last [`EARLY`] ids settled while not pending.
    early: VecDeque<ConnectionId>,
}

impl Opening {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that connection `id` to `peer_id` is being opened, for at most `wait`,
    /// unless its outcome came already.
    pub(crate) fn add(&self, id: ConnectionId, peer_id: &str, wait: Duration) {
        let mut state = self.state();
        if let Some(at) = state.early.iter().position(|early| *early == id) {
            state.early.remove(at);
            return;
        }
        state
            .pending
            .insert(id, (peer_id.to_owned(), Instant::now() + wait));
    }

    /// The outcome of connection `id` is known (connected, failed, or given up on).
    pub(crate) fn settle(&self, id: ConnectionId) {
        let mut state = self.state();
        if state.pending.remove(&id).is_some() {
            drop(state);
            self.settled.notify_waiters();
        } else {
            if state.early.len() == EARLY {
                state.early.pop_front();
            }
            state.early.push_back(id);
        }
    }

    /// The connections still opening: all of them, or those to `peer_id`.
    pub(crate) fn ids(&self, peer_id: Option<&str>) -> Vec<ConnectionId> {
        self.state()
            .pending
            .iter()
            .filter(|(_, (peer, _))| peer_id.is_none_or(|wanted| wanted == peer))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Waits until connection `id` is no longer opening: `is_up` answers true, an event
    /// settles it, or its deadline passes. Returns at once for a connection not opening.
    pub(crate) async fn wait<F, Fut>(&self, id: ConnectionId, is_up: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        // Bounded by the deadline: every round sleeps at most POLL or ends.
        loop {
            let notified = self.settled.notified();
            let deadline = self.state().pending.get(&id).map(|(_, deadline)| *deadline);
            let Some(deadline) = deadline else {
                return;
            };
            let now = Instant::now();
            if now >= deadline || is_up().await {
                self.settle(id);
                return;
            }
            let _ = tokio::time::timeout(POLL.min(deadline - now), notified).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use peergraph::ConnectionId;

    use super::Opening;

    #[test]
    fn an_outcome_before_the_open_reply_settles_the_connection() {
        let (early, late) = match (ConnectionId::new(7), ConnectionId::new(8)) {
            (Ok(early), Ok(late)) => (early, late),
            _ => panic!("connection ids"),
        };
        let opening = Opening::default();
        opening.settle(early);
        opening.add(early, "bob", Duration::from_secs(10));
        opening.add(late, "bob", Duration::from_secs(10));
        assert_eq!(opening.ids(Some("bob")), vec![late]);
        assert!(opening.ids(Some("carol")).is_empty());
        opening.settle(late);
        assert!(opening.ids(None).is_empty());
    }
}
