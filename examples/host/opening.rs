//! The direct connections this host has asked to open whose outcome is not known yet, so
//! that a command naming one (by id, or by its peer id) waits for it instead of failing,
//! and the end of standard input waits for them before closing the graph.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use peergraph::ConnectionId;
use tokio::sync::Notify;

/// How often a waiter asks the graph whether the connection is up. The event printer
/// wakes waiters at once on DIRECT_CONNECTION events; polling covers hosts run without
/// `--accept-direct`, which get no such events.
const POLL: Duration = Duration::from_millis(50);

/// Connections being opened: id → (peer id, when to stop waiting for it).
#[derive(Default)]
pub(crate) struct Opening {
    pending: Mutex<HashMap<ConnectionId, (String, Instant)>>,
    settled: Notify,
}

impl Opening {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, (String, Instant)>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that connection `id` to `peer_id` is being opened, for at most `wait`.
    pub(crate) fn add(&self, id: ConnectionId, peer_id: &str, wait: Duration) {
        self.pending()
            .insert(id, (peer_id.to_owned(), Instant::now() + wait));
    }

    /// The outcome of connection `id` is known (connected, failed, or given up on).
    pub(crate) fn settle(&self, id: ConnectionId) {
        if self.pending().remove(&id).is_some() {
            self.settled.notify_waiters();
        }
    }

    /// The connections still opening: all of them, or those to `peer_id`.
    pub(crate) fn ids(&self, peer_id: Option<&str>) -> Vec<ConnectionId> {
        self.pending()
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
            let Some(deadline) = self.pending().get(&id).map(|(_, deadline)| *deadline) else {
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
