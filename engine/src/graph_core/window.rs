//! One receive budget for all of a graph's links: the data its links may hold for an
//! application that does not read (in their QUIC flow-control windows) is shared out
//! among them, so a stalled application costs the budget, not links × window.

/// quinn's default stream receive window (1.25 MB): a link never gets more than it would
/// without a budget, so a graph with few links runs as fast as raw quinn.
pub const MAX_LINK_WINDOW: u64 = 1_250_000;

/// The smallest window a link gets however many share the budget: 16 KiB, more than a
/// dozen full packets, so every link keeps making progress.
pub const MIN_LINK_WINDOW: u64 = 16 * 1024;

/// Shares a receive budget out among links, and says when the links' windows must be
/// set again.
///
/// Each link's window is `budget / links` rounded down to a power of two, between
/// [`MIN_LINK_WINDOW`] and [`MAX_LINK_WINDOW`] (the largest window when the share is at
/// least that). Rounding down keeps `links × window` within the budget (as long as
/// `budget / MIN_LINK_WINDOW` links or fewer share it), and setting every link's window
/// happens only when the rounded share changes: a graph that grows to n links sets
/// windows O(n log n) times in all, not O(n²).
#[derive(Clone, Copy, Debug)]
pub struct WindowShare {
    budget: u64,
    applied: u64,
}

impl WindowShare {
    /// Shares `budget` bytes; with no link yet, a link gets the share of one.
    pub fn new(budget: u64) -> Self {
        WindowShare {
            budget,
            applied: Self::share(budget, 1),
        }
    }

    /// Each of `links` links' window under `budget` (see the type's doc).
    pub fn share(budget: u64, links: usize) -> u64 {
        let links = u64::try_from(links.max(1)).unwrap_or(u64::MAX);
        let exact = budget / links;
        if exact >= MAX_LINK_WINDOW {
            return MAX_LINK_WINDOW;
        }
        let rounded = match exact.checked_ilog2() {
            Some(power) => 1u64 << power,
            None => 0,
        };
        rounded.max(MIN_LINK_WINDOW)
    }

    /// The window a link gets now.
    pub fn window(&self) -> u64 {
        self.applied
    }

    /// The graph now has `links` links: the window to set on all of them, if the share
    /// changed since it was last set.
    pub fn links_changed(&mut self, links: usize) -> Option<u64> {
        let share = Self::share(self.budget, links);
        (share != self.applied).then(|| {
            self.applied = share;
            share
        })
    }
}
