//! The record database of one graph on one node: every rule of the record calls, with the
//! store passed in and time an argument.
//!
//! [`RecordBook`] decides each call's code, builds the write batch that carries it out,
//! and raises RECORD_CHANGED and PROPERTY_CHANGED once the batch is durable. It never
//! waits on the disk: a change comes back as a [`Write`] for the driver to hand to the
//! store, and the driver reports the store's answer with [`RecordBook::written`], which
//! gives the call's reply. Reads go to the store directly.
//!
//! ```text
//!  driver ──add/update/delete/validate_deferred/set_properties/tick(now)──▶ RecordBook
//!         ◀── Write { token, batch } ── (or the call's code)
//!  driver ──store.write(batch)── … durable … ──written(token, result)──▶ RecordBook
//!         ◀── the call's reply; RECORD_CHANGED / PROPERTY_CHANGED to poll
//!  driver ──next_wake()──▶ when to call tick(now): expiry and AUTOREFRESH, without a poll
//! ```
//!
//! Changes in flight: a second call about a record whose change is not yet durable builds
//! on that change (the newest staged copy), so versions follow the calls' order; reads
//! (Get, Enum, Search) see only what is durable. The store applies batches in order, so
//! the events come in the calls' order too.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::event::{GraphEvent, RecordChangeType};
use crate::graph::GraphProperties;
use crate::ids::PeerId;
use crate::record::{
    Due, GraphMetadata, GraphTime, NewRecord, Record, RecordFilter, RecordId, RecordSecurity,
    RecordStore, RecordUpdate, Search, Verdict, WriteOp,
};
use crate::result::{PeerError, ResultCode};

/// How long before its expiration this node renews an AUTOREFRESH record it created: one
/// minute (ours), a quarter of the shortest AUTOREFRESH lifetime, so a renewal has time to
/// reach every node before the old copy would expire.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The most records one [`RecordBook::tick`] expires or renews; the rest are taken at
/// once by the next tick, so one tick's batch stays bounded.
pub const TICK_LIMIT: usize = 256;

/// The most records held for deferred validation. Past it a change the callback defers is
/// refused with `E_OUTOFMEMORY`.
pub const MAX_HELD: usize = 4096;

/// The most writes in flight at once. Past it a change is refused with `E_OUTOFMEMORY`
/// (the store's own queue bound is the same order).
pub const MAX_WRITES_IN_FLIGHT: usize = 1024;

/// How soon a tick looks again at what it found due but could not handle (a record with
/// a write in flight, a renewal the securing callback failed): one second.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Names one write in flight.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct WriteToken(u64);

/// A change for the store: write `batch` atomically, then report the result with
/// [`RecordBook::written`] and this `token`.
#[derive(Debug)]
pub struct Write {
    /// Names the write.
    pub token: WriteToken,
    /// What to write.
    pub batch: Vec<WriteOp>,
}

/// A record's newest state, durable or staged.
#[derive(Clone, Debug)]
enum Copy {
    Live(Record),
    Held(Record),
    Gone,
}

/// A write in flight and what it does once durable.
#[derive(Debug, Default)]
struct Pending {
    /// The records it changes (their staged copies wait for it).
    ids: Vec<RecordId>,
    events: Vec<GraphEvent>,
    held_put: Vec<Record>,
    held_gone: Vec<RecordId>,
    metadata: Option<GraphMetadata>,
    /// Earliest time this write's records need a tick.
    wake: Option<GraphTime>,
    /// When a tick's write fails, the time to look again at what it handled (the wake
    /// that tick set leaves those records out).
    retry: Option<GraphTime>,
}

/// One graph's record database on one node (see the module doc).
pub struct RecordBook {
    store: Arc<dyn RecordStore>,
    peer_id: PeerId,
    /// The properties given at open, for a store that has none.
    given: GraphProperties,
    security: RecordSecurity,
    /// The durable metadata (properties, synchronized).
    metadata: GraphMetadata,
    /// The newest metadata, staged or durable.
    staged_metadata: GraphMetadata,
    /// The held records, durable.
    held: BTreeMap<RecordId, Record>,
    /// Records with writes in flight: the newest staged copy and how many writes.
    staged: HashMap<RecordId, (Copy, usize)>,
    pending: HashMap<WriteToken, Pending>,
    next_token: u64,
    next_wake: Option<GraphTime>,
    shutting_down: bool,
    events: VecDeque<GraphEvent>,
}

impl std::fmt::Debug for RecordBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordBook")
            .field("peer_id", &self.peer_id)
            .field("held", &self.held.len())
            .field("in_flight", &self.pending.len())
            .field("next_wake", &self.next_wake)
            .finish_non_exhaustive()
    }
}

fn not_found() -> PeerError {
    PeerError::new(ResultCode::PEER_E_RECORD_NOT_FOUND)
}

fn access_denied() -> PeerError {
    PeerError::new(ResultCode::E_ACCESSDENIED)
}

impl RecordBook {
    /// The database of `store` for this node, `peer_id`, with `properties` when the store
    /// has none yet (a new database) and the security callbacks.
    ///
    /// # Errors
    /// `E_INVALIDARG` when only one security callback is set; what the store answers when
    /// its metadata or held records cannot be read (`PEER_E_INVALID_DATABASE`, `E_FAIL`).
    pub fn open(
        store: Arc<dyn RecordStore>,
        peer_id: PeerId,
        properties: GraphProperties,
        security: RecordSecurity,
    ) -> Result<Self, PeerError> {
        security.check()?;
        let mut metadata = store.metadata()?;
        if metadata.properties.is_none() {
            metadata.properties = Some(properties.clone());
        }
        let held = store
            .held()?
            .into_iter()
            .map(|record| (record.id(), record))
            .collect();
        let mut book = RecordBook {
            store,
            peer_id,
            given: properties,
            security,
            staged_metadata: metadata.clone(),
            metadata,
            held,
            staged: HashMap::new(),
            pending: HashMap::new(),
            next_token: 0,
            next_wake: None,
            shutting_down: false,
            events: VecDeque::new(),
        };
        book.next_wake = book.compute_wake(None, &[])?;
        Ok(book)
    }

    /// The metadata the graph starts with, to write when the database is new (the
    /// creator's `synchronized`, the properties). A database that has not synchronized
    /// stores no properties: the ones given at open are placeholders (the node does not
    /// know the graph's yet), answered from memory until the first synchronization or
    /// ImportDatabase brings the graph's own.
    pub fn initial_write(&mut self, synchronized: bool) -> Write {
        let mut metadata = self.staged_metadata.clone();
        metadata.synchronized = synchronized;
        metadata.properties = synchronized.then(|| self.properties());
        self.stage_metadata(metadata, Vec::new())
    }

    /// Whether this node's data has synchronized once (a creator has): until then the
    /// record calls that change records answer `PEER_E_GRAPH_NOT_READY`.
    pub fn is_synchronized(&self) -> bool {
        self.staged_metadata.synchronized
    }

    /// The graph's properties as this node knows them.
    pub fn properties(&self) -> GraphProperties {
        self.staged_metadata
            .properties
            .clone()
            .unwrap_or_else(|| self.given.clone())
    }

    /// The next event to raise.
    pub fn poll_event(&mut self) -> Option<GraphEvent> {
        self.events.pop_front()
    }

    /// When [`tick`](Self::tick) next has work: the earliest expiration, or renewal of an
    /// AUTOREFRESH record of this node's. `None` when no record expires.
    pub fn next_wake(&self) -> Option<GraphTime> {
        self.next_wake
    }

    /// How many writes are in flight.
    pub fn writes_in_flight(&self) -> usize {
        self.pending.len()
    }

    /// The graph is closing: changes from now on answer `PEER_E_GRAPH_SHUTTING_DOWN`;
    /// writes in flight still complete.
    pub fn shut_down(&mut self) {
        self.shutting_down = true;
    }

    fn check_change(&self) -> Result<(), PeerError> {
        if self.shutting_down {
            return Err(PeerError::new(ResultCode::PEER_E_GRAPH_SHUTTING_DOWN));
        }
        if !self.is_synchronized() {
            return Err(PeerError::new(ResultCode::PEER_E_GRAPH_NOT_READY));
        }
        if self.pending.len() >= MAX_WRITES_IN_FLIGHT {
            return Err(PeerError::new(ResultCode::E_OUTOFMEMORY));
        }
        Ok(())
    }

    fn max_record_size(&self) -> u32 {
        self.properties().effective_max_record_size()
    }

    /// The newest copy of `id`: staged, held, or durable.
    fn current(&self, id: RecordId) -> Result<Copy, PeerError> {
        if let Some((copy, _)) = self.staged.get(&id) {
            return Ok(copy.clone());
        }
        if let Some(record) = self.held.get(&id) {
            return Ok(Copy::Held(record.clone()));
        }
        Ok(match self.store.get(id)? {
            Some(record) => Copy::Live(record),
            None => Copy::Gone,
        })
    }

    /// Secures `record` with the callback's security data.
    fn secure(&self, record: Record) -> Result<Record, PeerError> {
        if !self.security.is_set() {
            return Ok(record);
        }
        let data = self.security.secure(&record)?;
        record.with_security_data(data, self.max_record_size())
    }

    /// `AddRecord`: a new record with id `id` (drawn by the driver), created `now`.
    /// Returns the id and the write; the reply is S_OK once [`written`](Self::written)
    /// reports it durable.
    ///
    /// # Errors
    /// - `PEER_E_GRAPH_NOT_READY`: the node has not synchronized.
    /// - `PEER_E_GRAPH_SHUTTING_DOWN`: the graph is closing.
    /// - `E_OUTOFMEMORY`: too many writes in flight, or too many records held.
    /// - `E_INVALIDARG`: the expiration is not after `now`, or an AUTOREFRESH record lives
    ///   under four minutes.
    /// - `PEER_E_MAX_RECORD_SIZE_EXCEEDED`: over the graph's record size.
    /// - `E_ACCESSDENIED`: the validation callback refused it.
    /// - the securing callback's error.
    pub fn add(
        &mut self,
        now: GraphTime,
        new: NewRecord,
        id: RecordId,
    ) -> Result<(RecordId, Write), PeerError> {
        self.check_change()?;
        if !matches!(self.current(id)?, Copy::Gone) {
            // A random 122-bit id met an existing one: the driver draws again.
            return Err(PeerError::new(ResultCode::PEER_E_ALREADY_EXISTS));
        }
        let record = Record::create(new, id, self.peer_id.clone(), now, self.max_record_size())?;
        let record = self.secure(record)?;
        let write = self.judge_and_stage(record, RecordChangeType::Added)?;
        Ok((id, write))
    }

    /// `UpdateRecord`: changes attributes, data or expiration of record `id`.
    ///
    /// # Errors
    /// - `PEER_E_GRAPH_NOT_READY`, `PEER_E_GRAPH_SHUTTING_DOWN`, `E_OUTOFMEMORY` as
    ///   [`add`](Self::add).
    /// - `PEER_E_RECORD_NOT_FOUND`: no such record, or it is deleted, expired or held.
    /// - `E_INVALIDARG`: the expiration moves backwards or is not after `now`.
    /// - `PEER_E_MAX_RECORD_SIZE_EXCEEDED`, `E_ACCESSDENIED`, the securing callback's
    ///   error, as [`add`](Self::add).
    pub fn update(
        &mut self,
        now: GraphTime,
        id: RecordId,
        update: RecordUpdate,
    ) -> Result<Write, PeerError> {
        self.check_change()?;
        if update
            .expiration
            .is_some_and(|expiration| expiration <= now)
        {
            return Err(PeerError::INVALID_ARG);
        }
        let Copy::Live(current) = self.current(id)? else {
            return Err(not_found());
        };
        let record = current.updated(update, self.peer_id.clone(), now, self.max_record_size())?;
        let record = self.secure(record)?;
        self.judge_and_stage(record, RecordChangeType::Updated)
    }

    /// `DeleteRecord`: marks record `id` deleted (a tombstone that floods and lives until
    /// the record's expiration), or with `local_only` erases this node's copy alone (it
    /// may come back at the next synchronization).
    ///
    /// # Errors
    /// - `PEER_E_GRAPH_NOT_READY`, `PEER_E_GRAPH_SHUTTING_DOWN`, `E_OUTOFMEMORY` as
    ///   [`add`](Self::add).
    /// - `PEER_E_RECORD_NOT_FOUND`: no such record, or it is already deleted, expired or
    ///   held.
    /// - `E_ACCESSDENIED`: the validation callback refused the deletion.
    pub fn delete(
        &mut self,
        now: GraphTime,
        id: RecordId,
        local_only: bool,
    ) -> Result<Write, PeerError> {
        self.check_change()?;
        let Copy::Live(current) = self.current(id)? else {
            return Err(not_found());
        };
        let tombstone = current.deleted(self.peer_id.clone(), now)?;
        if self
            .security
            .validate(&tombstone, RecordChangeType::Deleted)
            != Verdict::Accept
        {
            return Err(access_denied());
        }
        let event = changed(RecordChangeType::Deleted, &current);
        let mut pending = Pending {
            events: vec![event],
            ..Pending::default()
        };
        let op = if local_only {
            self.stage(id, Copy::Gone, &mut pending);
            WriteOp::Erase(id)
        } else {
            pending.wake = Some(tombstone.expiration_time());
            self.stage(id, Copy::Live(tombstone.clone()), &mut pending);
            WriteOp::Put(tombstone)
        };
        Ok(self.push(vec![op], pending))
    }

    /// Runs the validation callback on a new copy and stages what it decides: the record
    /// goes in (ADDED/UPDATED once durable), is held (no event until validated), or is
    /// refused.
    fn judge_and_stage(
        &mut self,
        record: Record,
        change: RecordChangeType,
    ) -> Result<Write, PeerError> {
        let id = record.id();
        let mut pending = Pending::default();
        match self.security.validate(&record, change) {
            Verdict::Accept => {
                pending.events.push(changed(change, &record));
                pending.wake = Some(self.wake_of(&record));
                self.stage(id, Copy::Live(record.clone()), &mut pending);
                Ok(self.push(vec![WriteOp::Put(record)], pending))
            }
            Verdict::Defer => {
                if self.held.len() >= MAX_HELD {
                    return Err(PeerError::new(ResultCode::E_OUTOFMEMORY));
                }
                let mut batch = vec![WriteOp::Hold(record.clone())];
                if change != RecordChangeType::Added {
                    // The held version replaces the live one until it is validated.
                    batch.push(WriteOp::Erase(id));
                }
                pending.wake = Some(record.expiration_time());
                pending.held_put.push(record.clone());
                self.stage(id, Copy::Held(record), &mut pending);
                Ok(self.push(batch, pending))
            }
            Verdict::Reject => Err(access_denied()),
        }
    }

    /// `GetRecord`: the record `id`, durable, neither deleted nor expired at `now`.
    ///
    /// # Errors
    /// `PEER_E_RECORD_NOT_FOUND`; `PEER_E_INVALID_DATABASE` or `E_FAIL` from the store.
    pub fn get(&self, now: GraphTime, id: RecordId) -> Result<Record, PeerError> {
        match self.store.get(id)? {
            Some(record) if !record.is_deleted() && !record.is_expired(now) => Ok(record),
            _ => Err(not_found()),
        }
    }

    /// `EnumRecords`: the durable live records `filter` admits, in id order.
    ///
    /// # Errors
    /// `PEER_E_INVALID_DATABASE` or `E_FAIL` from the store.
    pub fn enumerate(
        &self,
        now: GraphTime,
        filter: &RecordFilter,
    ) -> Result<Vec<Record>, PeerError> {
        self.store.live_records(filter, None, now)
    }

    /// `SearchRecords`: the durable live records matching `search`, in id order.
    ///
    /// # Errors
    /// `PEER_E_INVALID_DATABASE` or `E_FAIL` from the store.
    pub fn search(&self, now: GraphTime, search: &Search) -> Result<Vec<Record>, PeerError> {
        self.store
            .live_records(&RecordFilter::all(), Some(search), now)
    }

    /// `ValidateDeferredRecords`: runs the validation callback again on the held records
    /// `ids` (ids not held are skipped). Accepted ones enter the database (ADDED or
    /// UPDATED), refused ones are dropped, deferred ones stay held. `None` when nothing
    /// changed.
    ///
    /// # Errors
    /// `E_INVALIDARG` for an empty list; `PEER_E_GRAPH_NOT_READY`,
    /// `PEER_E_GRAPH_SHUTTING_DOWN`, `E_OUTOFMEMORY` as [`add`](Self::add).
    pub fn validate_deferred(
        &mut self,
        now: GraphTime,
        ids: &[RecordId],
    ) -> Result<Option<Write>, PeerError> {
        if ids.is_empty() {
            return Err(PeerError::INVALID_ARG);
        }
        self.check_change()?;
        let mut batch = Vec::new();
        let mut pending = Pending::default();
        for &id in ids {
            let Copy::Held(record) = self.current(id)? else {
                continue;
            };
            if record.is_expired(now) {
                batch.push(WriteOp::Release(id));
                pending.held_gone.push(id);
                self.stage(id, Copy::Gone, &mut pending);
                continue;
            }
            let change = if record.version() == 1 {
                RecordChangeType::Added
            } else {
                RecordChangeType::Updated
            };
            match self.security.validate(&record, change) {
                Verdict::Defer => {}
                Verdict::Accept => {
                    batch.push(WriteOp::Release(id));
                    batch.push(WriteOp::Put(record.clone()));
                    pending.held_gone.push(id);
                    pending.events.push(changed(change, &record));
                    pending.wake = earliest(pending.wake, Some(self.wake_of(&record)));
                    self.stage(id, Copy::Live(record), &mut pending);
                }
                Verdict::Reject => {
                    batch.push(WriteOp::Release(id));
                    pending.held_gone.push(id);
                    self.stage(id, Copy::Gone, &mut pending);
                }
            }
        }
        if batch.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.push(batch, pending)))
    }

    /// `SetProperties`: replaces the properties that may change (friendly name, comment,
    /// max record size, presence lifetime and maximum). PROPERTY_CHANGED follows once
    /// durable.
    ///
    /// # Errors
    /// - `E_INVALIDARG`: a field out of range, or a change of the graph id, creator id or
    ///   scope (fixed at Create).
    /// - `E_ACCESSDENIED`: this node is not the graph's creator.
    /// - `PEER_E_GRAPH_NOT_READY`, `PEER_E_GRAPH_SHUTTING_DOWN`, `E_OUTOFMEMORY` as
    ///   [`add`](Self::add).
    pub fn set_properties(&mut self, properties: GraphProperties) -> Result<Write, PeerError> {
        properties.validate()?;
        let current = self.properties();
        if properties.graph_id != current.graph_id
            || properties.creator_id != current.creator_id
            || properties.scope != current.scope
        {
            return Err(PeerError::INVALID_ARG);
        }
        if current.creator_id != self.peer_id {
            return Err(access_denied());
        }
        self.check_change()?;
        let mut metadata = self.staged_metadata.clone();
        metadata.properties = Some(properties);
        Ok(self.stage_metadata(metadata, vec![GraphEvent::PropertyChanged]))
    }

    fn stage_metadata(&mut self, metadata: GraphMetadata, events: Vec<GraphEvent>) -> Write {
        self.staged_metadata = metadata.clone();
        let pending = Pending {
            events,
            metadata: Some(metadata.clone()),
            ..Pending::default()
        };
        self.push(vec![WriteOp::SetMetadata(metadata)], pending)
    }

    /// Expires and renews what is due at `now`: records past their expiration leave the
    /// database (EXPIRED for the live ones, tombstones silently), held records past theirs
    /// are dropped, and this node's AUTOREFRESH records within [`REFRESH_MARGIN`] of
    /// theirs are renewed (UPDATED). `None` when nothing is due. Sets the next wake.
    ///
    /// # Errors
    /// What the store answers when it cannot be read; the wake stays where it was, so
    /// the driver tries again.
    pub fn tick(&mut self, now: GraphTime) -> Result<Option<Write>, PeerError> {
        let mut batch = Vec::new();
        let mut pending = Pending::default();
        let expiring = self.store.due(Due::Expiry, now, TICK_LIMIT)?;
        let mut more = expiring.len() == TICK_LIMIT;
        for (_, id) in expiring {
            if self.staged.contains_key(&id) {
                continue;
            }
            let Copy::Live(record) = self.current(id)? else {
                continue;
            };
            if !record.is_expired(now) {
                continue;
            }
            if !record.is_deleted() {
                pending
                    .events
                    .push(changed(RecordChangeType::Expired, &record));
            }
            batch.push(WriteOp::Erase(id));
            self.stage(id, Copy::Gone, &mut pending);
        }
        let expired_held: Vec<RecordId> = self
            .held
            .values()
            .filter(|record| record.is_expired(now) && !self.staged.contains_key(&record.id()))
            .map(Record::id)
            .collect();
        for id in expired_held {
            batch.push(WriteOp::Release(id));
            pending.held_gone.push(id);
            self.stage(id, Copy::Gone, &mut pending);
        }
        if !self.shutting_down {
            let renewing = self.store.due(
                Due::Refresh {
                    creator: &self.peer_id,
                },
                now.saturating_add(REFRESH_MARGIN),
                TICK_LIMIT,
            )?;
            more |= renewing.len() == TICK_LIMIT;
            for (_, id) in renewing {
                if self.staged.contains_key(&id) {
                    continue;
                }
                let Copy::Live(record) = self.current(id)? else {
                    continue;
                };
                let Ok(renewed) = record.refreshed(self.peer_id.clone(), now) else {
                    continue;
                };
                // A renewal the securing callback fails is left to expire, as the
                // reference does with a record its creator cannot renew.
                let Ok(renewed) = self.secure(renewed) else {
                    continue;
                };
                pending
                    .events
                    .push(changed(RecordChangeType::Updated, &renewed));
                pending.wake = earliest(pending.wake, Some(self.wake_of(&renewed)));
                batch.push(WriteOp::Put(renewed.clone()));
                self.stage(id, Copy::Live(renewed), &mut pending);
            }
        }
        self.next_wake = if more {
            Some(now)
        } else {
            self.compute_wake(Some(now), &pending.ids)?
        };
        if batch.is_empty() {
            return Ok(None);
        }
        pending.retry = Some(now.saturating_add(RETRY_AFTER));
        Ok(Some(self.push(batch, pending)))
    }

    /// The store's answer for write `token`: the reply of the call that made it. On
    /// success its events are raised and what it changed counts as durable.
    pub fn written(
        &mut self,
        token: WriteToken,
        result: Result<(), PeerError>,
    ) -> Result<(), PeerError> {
        let Some(pending) = self.pending.remove(&token) else {
            return result;
        };
        for id in &pending.ids {
            if let Some((_, count)) = self.staged.get_mut(id) {
                *count -= 1;
                if *count == 0 {
                    self.staged.remove(id);
                }
            }
        }
        if result.is_ok() {
            for record in pending.held_put {
                self.held.insert(record.id(), record);
            }
            for id in pending.held_gone {
                self.held.remove(&id);
            }
            if let Some(metadata) = pending.metadata {
                self.metadata = metadata;
            }
            self.events.extend(pending.events);
            self.next_wake = earliest(self.next_wake, pending.wake);
        } else {
            self.next_wake = earliest(self.next_wake, pending.retry);
            if pending.metadata.is_some() && self.pending.values().all(|p| p.metadata.is_none()) {
                // Nothing staged is left to build on: fall back to what is durable.
                self.staged_metadata = self.metadata.clone();
            }
        }
        result
    }

    /// Raises RECORD_CHANGED for records that changed in the store under the book
    /// (ImportDatabase), once that change is durable.
    pub fn changed_outside(
        &mut self,
        changes: impl IntoIterator<Item = (RecordChangeType, RecordId, crate::record::RecordType)>,
    ) {
        self.events.extend(
            changes
                .into_iter()
                .map(
                    |(change_type, record_id, record_type)| GraphEvent::RecordChanged {
                        change_type,
                        record_id,
                        record_type,
                    },
                ),
        );
    }

    /// The store changed under the book (ImportDatabase): reads its metadata and held
    /// records again and recomputes the wake.
    ///
    /// # Errors
    /// What the store answers when it cannot be read.
    pub fn reload(&mut self) -> Result<(), PeerError> {
        let mut metadata = self.store.metadata()?;
        if metadata.properties.is_none() {
            metadata.properties = Some(self.given.clone());
        }
        self.metadata = metadata.clone();
        self.staged_metadata = metadata;
        self.held = self
            .store
            .held()?
            .into_iter()
            .map(|record| (record.id(), record))
            .collect();
        self.next_wake = self.compute_wake(None, &[])?;
        Ok(())
    }

    fn stage(&mut self, id: RecordId, copy: Copy, pending: &mut Pending) {
        let entry = self.staged.entry(id).or_insert((Copy::Gone, 0));
        entry.0 = copy;
        entry.1 += 1;
        pending.ids.push(id);
    }

    fn push(&mut self, batch: Vec<WriteOp>, pending: Pending) -> Write {
        let token = WriteToken(self.next_token);
        self.next_token = self.next_token.wrapping_add(1);
        self.pending.insert(token, pending);
        Write { token, batch }
    }

    /// When `record` needs a tick: at its expiration, or a margin before it for an
    /// AUTOREFRESH record of this node's.
    fn wake_of(&self, record: &Record) -> GraphTime {
        let expiration = record.expiration_time();
        let renewed_here = Due::Refresh {
            creator: &self.peer_id,
        }
        .admits(record);
        if renewed_here {
            GraphTime::from_ticks(expiration.ticks().saturating_sub(margin_ticks()))
        } else {
            expiration
        }
    }

    /// The earliest time anything durable is due, from the store's indexes and the held
    /// records, leaving out `handled` (the records a tick has just expired or renewed:
    /// they are still in the store until its write lands, and that write sets their next
    /// wake, or its failure a retry). When `after` is given, a time at or before it is
    /// put off to [`RETRY_AFTER`] past it: what is still due then is in flight (its
    /// completion sets its own wake) or could not be renewed; a later time stays as it is.
    fn compute_wake(
        &self,
        after: Option<GraphTime>,
        handled: &[RecordId],
    ) -> Result<Option<GraphTime>, PeerError> {
        let handled: HashSet<RecordId> = handled.iter().copied().collect();
        // The first entry of `index` not handled is among its first `handled.len() + 1`.
        let first = |index: Due<'_>| -> Result<Option<GraphTime>, PeerError> {
            Ok(self
                .store
                .due(index, GraphTime::MAX, handled.len() + 1)?
                .into_iter()
                .find(|(_, id)| !handled.contains(id))
                .map(|(time, _)| time))
        };
        let expiry = first(Due::Expiry)?;
        let refresh = first(Due::Refresh {
            creator: &self.peer_id,
        })?
        .map(|time| GraphTime::from_ticks(time.ticks().saturating_sub(margin_ticks())));
        let held = self
            .held
            .values()
            .filter(|record| !handled.contains(&record.id()))
            .map(Record::expiration_time)
            .min();
        let wake = earliest(earliest(expiry, refresh), held);
        Ok(match after {
            Some(now) => wake.map(|wake| {
                if wake <= now {
                    now.saturating_add(RETRY_AFTER)
                } else {
                    wake
                }
            }),
            None => wake,
        })
    }
}

fn margin_ticks() -> u64 {
    GraphTime::ZERO.saturating_add(REFRESH_MARGIN).ticks()
}

fn earliest(a: Option<GraphTime>, b: Option<GraphTime>) -> Option<GraphTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

fn changed(change_type: RecordChangeType, record: &Record) -> GraphEvent {
    GraphEvent::RecordChanged {
        change_type,
        record_id: record.id(),
        record_type: record.record_type(),
    }
}
