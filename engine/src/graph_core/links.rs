//! The connection table of one graph and its invariants: connections by id, the live links
//! per remote node (for the per-node limit), the outgoing attempts and incoming handshakes
//! under way (in all and per source), and the peak that decides when the table gives its
//! room back.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::graph::ConnectionInfo;
use crate::ids::{ConnectionId, NodeId, PeerId};

/// Hash tables never give back room by themselves: after 10,000 connections had come and
/// gone, a graph's tables still held about 3 MB. So a table that has emptied to a quarter
/// of its peak (or of its capacity) is shrunk to fit, as long as that peak is above this
/// many entries. A shrink costs time in proportion to the peak and needs three quarters of
/// it removed first, so removals stay O(1) amortised.
pub const ROOM_KEPT: usize = 64;

/// One connection in the table: what `EnumConnections` reports, and the driver's tag of
/// the link it runs on (a peer may reuse the id of a link that is still closing here, so
/// an end is matched by tag as well as by id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkEntry {
    /// The connection as the application sees it.
    pub info: ConnectionInfo,
    /// The driver's id of the link (for QUIC, the connection's stable id).
    pub tag: u64,
}

/// Tracks the most entries a table has held since it was last shrunk, and says when to
/// shrink it (see [`ROOM_KEPT`]). The driver applies the same answer to its own index of
/// the table, so both give their room back together.
#[derive(Clone, Copy, Debug, Default)]
pub struct Peak {
    peak: usize,
}

impl Peak {
    /// Notes that the table now holds `len` entries.
    pub fn grew(&mut self, len: usize) {
        self.peak = self.peak.max(len);
    }

    /// Called after entries were removed, leaving `len`: true when the table should be
    /// shrunk to fit now (it is down to a quarter of a peak above [`ROOM_KEPT`]).
    pub fn shrunk(&mut self, len: usize) -> bool {
        if self.peak > ROOM_KEPT && len <= self.peak / 4 {
            self.peak = len;
            true
        } else {
            false
        }
    }
}

/// Gives a map's room back once it holds at most a quarter of its capacity (see
/// [`ROOM_KEPT`]). `capacity` and `len` are O(1), so this is cheap on every removal.
pub(crate) fn shrink_if_sparse<K: Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > ROOM_KEPT && map.len() <= map.capacity() / 4 {
        map.shrink_to_fit();
    }
}

/// The source an incoming handshake is counted against for the per-source bound: an IPv4
/// address, or the /64 prefix of an IPv6 one (a host usually holds a whole /64, so counting
/// its addresses one by one would not bound it). An IPv4-mapped IPv6 address counts as the
/// IPv4 address it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    /// The source `address` is counted as.
    pub fn of(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(v4) => Source(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !u128::from(u64::MAX);
                    Source(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

/// An outgoing attempt under way: whom it asked for, where.
#[derive(Debug)]
pub(crate) struct Attempt {
    pub(crate) peer_id: PeerId,
    pub(crate) address: SocketAddr,
}

/// The connection table and its counts.
#[derive(Debug, Default)]
pub(crate) struct Links {
    /// Open connections by id. A connection whose close has started has left it.
    pub(crate) connections: HashMap<ConnectionId, LinkEntry>,
    /// Outgoing attempts under way, by the id they asked for.
    pub(crate) outgoing: HashMap<ConnectionId, Attempt>,
    /// Incoming links welcomed on a CONNECT sent as 0-RTT data, by id, until their
    /// handshake completes. Counted with their node in `per_node`; bounded by the pending
    /// handshakes (each still holds its handshake slot).
    pub(crate) welcomed: HashMap<ConnectionId, LinkEntry>,
    /// The welcomed links whose handshake no longer counts against their source, with the
    /// source (see [`welcome`](Self::welcome)). Bounded by `welcomed`.
    pub(crate) released: HashMap<ConnectionId, Source>,
    /// `released` counted per source, only sources with one or more.
    pub(crate) released_from: HashMap<Source, usize>,
    /// Incoming handshakes under way.
    pub(crate) incoming: usize,
    /// Incoming handshakes under way per source, only sources with one or more: so it
    /// never holds more entries than [`Limits::max_pending_handshakes`](super::Limits).
    pub(crate) incoming_per_source: HashMap<Source, usize>,
    /// Links that have not ended, per remote node, closing ones included (kept here so
    /// that judging a CONNECT does not scan the table).
    pub(crate) per_node: HashMap<NodeId, usize>,
    pub(crate) peak: Peak,
}

impl Links {
    /// Whether `id` is taken by a connection, an outgoing attempt or a welcomed link.
    pub(crate) fn is_taken(&self, id: &ConnectionId) -> bool {
        self.connections.contains_key(id)
            || self.outgoing.contains_key(id)
            || self.welcomed.contains_key(id)
    }

    /// Holds the place of a link welcomed before its handshake completed. Its handshake
    /// leaves the count of its `source` (it stays in the total, `incoming`), unless
    /// `most` of that source's are out already: its CONNECT came on a resumed session, so
    /// the node on the other end holds a ticket this node gave it, and the node reports
    /// CONNECTED, and may start its next link, before its Finished arrives here. Counted
    /// against the source until then, a node pacing its opens by that bound would find it
    /// taken by links it has already been welcomed on. Bounded by `most`, one source holds
    /// at most twice the per-source bound, however many tickets it collected.
    /// [`take_welcomed`](Self::take_welcomed) counts it back in, for the driver's
    /// `incoming_ended` to count out.
    pub(crate) fn welcome(&mut self, entry: LinkEntry, source: Source, most: usize) {
        *self.per_node.entry(entry.info.node_id).or_default() += 1;
        if self.released_out(&source) < most {
            if let Some(count) = self.incoming_per_source.get_mut(&source) {
                *count -= 1;
                if *count == 0 {
                    self.incoming_per_source.remove(&source);
                }
                self.released.insert(entry.info.connection_id, source);
                *self.released_from.entry(source).or_default() += 1;
            }
        }
        self.welcomed.insert(entry.info.connection_id, entry);
    }

    /// Takes welcomed link `id` out, if it is the one tagged `tag` (its count with its node
    /// stays: the caller ends it or hands it on).
    pub(crate) fn take_welcomed(&mut self, id: &ConnectionId, tag: u64) -> Option<LinkEntry> {
        if self.welcomed.get(id)?.tag != tag {
            return None;
        }
        let entry = self.welcomed.remove(id);
        shrink_if_sparse(&mut self.welcomed);
        if let Some(source) = self.released.remove(id) {
            *self.incoming_per_source.entry(source).or_default() += 1;
            shrink_if_sparse(&mut self.released);
            if let Some(out) = self.released_from.get_mut(&source) {
                *out -= 1;
                if *out == 0 {
                    self.released_from.remove(&source);
                    shrink_if_sparse(&mut self.released_from);
                }
            }
        }
        entry
    }

    /// Welcomed links of `source` whose handshake is out of its count.
    pub(crate) fn released_out(&self, source: &Source) -> usize {
        self.released_from.get(source).copied().unwrap_or(0)
    }

    /// Live links with `node`.
    pub(crate) fn with_node(&self, node: &NodeId) -> usize {
        self.per_node.get(node).copied().unwrap_or(0)
    }

    /// Enters a connection whose handshake succeeded.
    pub(crate) fn insert(&mut self, entry: LinkEntry) {
        *self.per_node.entry(entry.info.node_id).or_default() += 1;
        self.connections.insert(entry.info.connection_id, entry);
        self.peak.grew(self.connections.len());
    }

    /// Takes connection `id` out of the table (its close started, or it ended); the
    /// second value says whether the table was shrunk, so the driver shrinks its index.
    pub(crate) fn take(&mut self, id: &ConnectionId) -> Option<(LinkEntry, bool)> {
        let entry = self.connections.remove(id)?;
        let shrink = self.peak.shrunk(self.connections.len());
        if shrink {
            self.connections.shrink_to_fit();
        }
        Some((entry, shrink))
    }

    /// Incoming handshakes under way from `source`.
    pub(crate) fn incoming_from(&self, source: &Source) -> usize {
        self.incoming_per_source.get(source).copied().unwrap_or(0)
    }

    /// Counts in an incoming handshake from `source`.
    pub(crate) fn incoming_started(&mut self, source: Source) {
        self.incoming += 1;
        *self.incoming_per_source.entry(source).or_default() += 1;
    }

    /// Counts out an incoming handshake from `source`; its entry goes at zero, and the
    /// map gives its room back once sparse (a flood from many sources leaves nothing).
    pub(crate) fn incoming_ended(&mut self, source: &Source) {
        self.incoming = self.incoming.saturating_sub(1);
        if let Some(count) = self.incoming_per_source.get_mut(source) {
            *count -= 1;
            if *count == 0 {
                self.incoming_per_source.remove(source);
                shrink_if_sparse(&mut self.incoming_per_source);
            }
        }
    }

    /// Counts out one ended link with `node`.
    pub(crate) fn node_link_ended(&mut self, node: &NodeId) {
        if let Some(count) = self.per_node.get_mut(node) {
            *count -= 1;
            if *count == 0 {
                self.per_node.remove(node);
                shrink_if_sparse(&mut self.per_node);
            }
        }
    }

    /// No connection and no handshake.
    pub(crate) fn is_idle(&self) -> bool {
        self.connections.is_empty()
            && self.outgoing.is_empty()
            && self.welcomed.is_empty()
            && self.incoming == 0
    }

    /// Connections and handshakes (for the endpoint's peak).
    pub(crate) fn count(&self) -> usize {
        self.connections.len() + self.outgoing.len() + self.welcomed.len() + self.incoming
    }
}
