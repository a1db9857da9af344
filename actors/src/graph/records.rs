//! The graph actor as the driver of its [`RecordBook`]: the record calls' handlers, the
//! writes handed to the store off the actor's thread, the wake timer that expires and
//! renews records without a poll, and the database's close.
//!
//! ```text
//!  AddRecord/Update/Delete/... ──▶ RecordBook ──Write──▶ store.write (writer thread)
//!  completion ──oneshot──▶ this actor ──RecordBook::written──▶ reply + RECORD_CHANGED
//!  RecordBook::next_wake ──run_later──▶ RecordBook::tick(now) ──Write──▶ store.write
//!  CloseGraph ──▶ shut_down, wait for writes in flight ──▶ drop the store (file closed)
//! ```

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use peergraph_engine::graph_core::{RecordBook, Write, RETRY_AFTER};
use peergraph_engine::{
    GraphProperties, GraphStatus, GraphTime, PeerError, Record, RecordFilter, RecordId, ResultCode,
    Search,
};
use peergraph_store::{RedbStore, StoreError};
use peergraph_transport::random_nonzero_u64;
use tokio::sync::oneshot;

use super::{
    AddRecord, DeleteRecord, EnumRecords, ExportDatabase, GetProperties, GetRecord, GraphActor,
    ImportDatabase, SearchRecords, SetProperties, UpdateRecord, ValidateDeferredRecords,
};

/// The longest the wake timer sleeps at once: an hour. A later wake is armed again then,
/// so the wall clock's steps are caught within the hour.
const MAX_WAKE_DELAY: Duration = Duration::from_secs(3600);

/// The graph's time now (graph time is the wall clock in FILETIME units until neighbors
/// bring their own).
fn graph_now() -> Result<GraphTime, PeerError> {
    GraphTime::from_system_time(SystemTime::now())
}

/// A new record's id: time-ordered, so the store appends it (see
/// [`RecordId::from_time_and_random`]).
fn new_record_id(now: GraphTime) -> RecordId {
    let mut random = [0; 10];
    random[..8].copy_from_slice(&random_nonzero_u64().to_le_bytes());
    random[8..].copy_from_slice(&random_nonzero_u64().to_le_bytes()[..2]);
    RecordId::from_time_and_random(now, random)
}

type Reply<T> = ResponseActFuture<GraphActor, Result<T, PeerError>>;

fn answer<T: 'static>(result: Result<T, PeerError>) -> Reply<T> {
    Box::pin(fut::ready(result))
}

/// The database's state in the actor.
pub(crate) struct Records {
    /// The rules; `None` once the database is closed.
    pub(crate) book: Option<RecordBook>,
    /// The store the book writes to.
    pub(crate) store: Option<std::sync::Arc<dyn peergraph_engine::RecordStore>>,
    /// The file, for export and import; `None` in memory.
    pub(crate) file: Option<std::sync::Arc<RedbStore>>,
    /// The armed wake: its graph time and timer.
    wake: Option<(GraphTime, SpawnHandle)>,
    /// No wake before this (after the store failed a tick).
    not_before: Option<GraphTime>,
    /// Who waits for the database to close.
    closed: Vec<oneshot::Sender<()>>,
}

impl Records {
    pub(crate) fn new(database: crate::database::Database) -> Self {
        Records {
            book: Some(database.book),
            store: Some(database.store),
            file: database.file,
            wake: None,
            not_before: None,
            closed: Vec::new(),
        }
    }
}

impl GraphActor {
    /// The record book, for a read (`change` false) or a change.
    ///
    /// # Errors
    /// `PEER_E_NOT_INITIALIZED`; `PEER_E_GRAPH_SHUTTING_DOWN` for a change while a closed
    /// graph finishes its writes; `PEER_E_INVALID_GRAPH` otherwise once closed.
    fn book(&mut self, change: bool) -> Result<&mut RecordBook, PeerError> {
        if !self.state.is_initialized() {
            return Err(PeerError::NOT_INITIALIZED);
        }
        let closed = self.core.is_closed();
        match self.records.book.as_mut() {
            Some(_) if closed && change => {
                Err(PeerError::new(ResultCode::PEER_E_GRAPH_SHUTTING_DOWN))
            }
            Some(book) if !closed => Ok(book),
            _ => Err(PeerError::INVALID_GRAPH),
        }
    }

    /// Hands `write` to the store; the future resolves, on this actor, to the reply of
    /// the call that made it, once the store has answered.
    fn submit(&mut self, write: Write) -> impl ActorFuture<Self, Output = Result<(), PeerError>> {
        let (sender, receiver) = oneshot::channel();
        match &self.records.store {
            Some(store) => store.write(
                write.batch,
                Box::new(move |result| {
                    // The actor waits below; if it is gone nobody needs the answer.
                    let _ = sender.send(result);
                }),
            ),
            None => {
                let _ = sender.send(Err(PeerError::new(ResultCode::PEER_E_GRAPH_SHUTTING_DOWN)));
            }
        }
        let token = write.token;
        async move {
            receiver
                .await
                .unwrap_or(Err(PeerError::new(ResultCode::E_FAIL)))
        }
        .into_actor(self)
        .map(move |result, act, ctx| {
            let result = match act.records.book.as_mut() {
                Some(book) => book.written(token, result),
                None => result,
            };
            act.after_records(ctx);
            result
        })
    }

    /// Submits a change and answers its caller with `value` once it is durable.
    fn change<T: Unpin + 'static>(&mut self, staged: Result<(T, Write), PeerError>) -> Reply<T> {
        match staged {
            Ok((value, write)) => Box::pin(
                self.submit(write)
                    .map(move |result, _, _| result.map(|()| value)),
            ),
            Err(error) => answer(Err(error)),
        }
    }

    /// After the book moved: publishes its events, arms the wake, and closes the database
    /// once a closed graph's last write is done.
    pub(crate) fn after_records(&mut self, ctx: &mut Context<Self>) {
        let Some(book) = self.records.book.as_mut() else {
            return;
        };
        while let Some(event) = book.poll_event() {
            self.subscribers.publish(event);
        }
        if self.core.is_closed() {
            if book.writes_in_flight() == 0 {
                self.close_database(ctx);
            }
            return;
        }
        self.arm_wake(ctx);
    }

    fn arm_wake(&mut self, ctx: &mut Context<Self>) {
        let Some(book) = self.records.book.as_ref() else {
            return;
        };
        let Some(mut wake) = book.next_wake() else {
            return;
        };
        if let Some(not_before) = self.records.not_before {
            wake = wake.max(not_before);
        }
        if let Some((armed, handle)) = self.records.wake {
            if armed <= wake {
                return;
            }
            ctx.cancel_future(handle);
        }
        let now = graph_now().unwrap_or(wake);
        let delay = wake.saturating_since(now).min(MAX_WAKE_DELAY);
        let handle = ctx.run_later(delay, |act, ctx| {
            act.records.wake = None;
            act.tick_records(ctx);
        });
        self.records.wake = Some((wake, handle));
    }

    /// The wake fired: expires and renews what is due.
    fn tick_records(&mut self, ctx: &mut Context<Self>) {
        let Ok(now) = graph_now() else {
            return;
        };
        let Ok(book) = self.book(true) else {
            return;
        };
        match book.tick(now) {
            Ok(write) => {
                self.records.not_before = None;
                if let Some(write) = write {
                    let done = self.submit(write).map(|result, _, _| {
                        if let Err(error) = result {
                            tracing::warn!(%error, "expiring or renewing records failed");
                        }
                    });
                    ctx.spawn(done);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "the record store could not be read for expiry");
                self.records.not_before = Some(now.saturating_add(RETRY_AFTER));
            }
        }
        self.after_records(ctx);
    }

    /// Begins closing the database with the graph: changes answer
    /// `PEER_E_GRAPH_SHUTTING_DOWN` from now on. Returns what resolves once the writes in
    /// flight are durable and the file is closed.
    pub(crate) fn shut_down_records(&mut self, ctx: &mut Context<Self>) -> oneshot::Receiver<()> {
        let (sender, receiver) = oneshot::channel();
        self.records.closed.push(sender);
        match self.records.book.as_mut() {
            Some(book) => {
                book.shut_down();
                if book.writes_in_flight() == 0 {
                    self.close_database(ctx);
                }
            }
            None => self.close_database(ctx),
        }
        receiver
    }

    fn close_database(&mut self, ctx: &mut Context<Self>) {
        if let Some((_, handle)) = self.records.wake.take() {
            ctx.cancel_future(handle);
        }
        self.records.book = None;
        self.records.store = None;
        // The last reference: the store's writer has nothing left and the file closes.
        self.records.file = None;
        for waiter in self.records.closed.drain(..) {
            let _ = waiter.send(());
        }
    }
}

impl Handler<AddRecord> for GraphActor {
    type Result = Reply<RecordId>;

    fn handle(&mut self, message: AddRecord, _ctx: &mut Self::Context) -> Self::Result {
        let staged = graph_now().and_then(|now| {
            let book = self.book(true)?;
            let mut result = book.add(now, message.record.clone(), new_record_id(now));
            // 122 random bits met an id in use: draw again (bounded).
            for _ in 0..3 {
                match &result {
                    Err(error) if error.code() == ResultCode::PEER_E_ALREADY_EXISTS => {
                        result = book.add(now, message.record.clone(), new_record_id(now));
                    }
                    _ => break,
                }
            }
            result
        });
        self.change(staged)
    }
}

impl Handler<UpdateRecord> for GraphActor {
    type Result = Reply<()>;

    fn handle(&mut self, message: UpdateRecord, _ctx: &mut Self::Context) -> Self::Result {
        let staged = graph_now().and_then(|now| {
            let book = self.book(true)?;
            book.update(now, message.record_id, message.update)
                .map(|write| ((), write))
        });
        self.change(staged)
    }
}

impl Handler<DeleteRecord> for GraphActor {
    type Result = Reply<()>;

    fn handle(&mut self, message: DeleteRecord, _ctx: &mut Self::Context) -> Self::Result {
        let staged = graph_now().and_then(|now| {
            let book = self.book(true)?;
            book.delete(now, message.record_id, message.local_only)
                .map(|write| ((), write))
        });
        self.change(staged)
    }
}

impl Handler<GetRecord> for GraphActor {
    type Result = Result<Record, PeerError>;

    fn handle(&mut self, message: GetRecord, _ctx: &mut Self::Context) -> Self::Result {
        let now = graph_now()?;
        self.book(false)?.get(now, message.record_id)
    }
}

impl Handler<EnumRecords> for GraphActor {
    type Result = Result<Vec<Record>, PeerError>;

    fn handle(&mut self, message: EnumRecords, _ctx: &mut Self::Context) -> Self::Result {
        let now = graph_now()?;
        let filter = RecordFilter {
            record_type: message.record_type,
            creator: message.creator,
        };
        self.book(false)?.enumerate(now, &filter)
    }
}

impl Handler<SearchRecords> for GraphActor {
    type Result = Result<Vec<Record>, PeerError>;

    fn handle(&mut self, message: SearchRecords, _ctx: &mut Self::Context) -> Self::Result {
        let now = graph_now()?;
        let book = self.book(false)?;
        let search = Search::parse(&message.criteria)?;
        book.search(now, &search)
    }
}

impl Handler<ValidateDeferredRecords> for GraphActor {
    type Result = Reply<()>;

    fn handle(
        &mut self,
        message: ValidateDeferredRecords,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        let staged = graph_now().and_then(|now| {
            let book = self.book(true)?;
            book.validate_deferred(now, &message.record_ids)
        });
        match staged {
            Ok(Some(write)) => self.change(Ok(((), write))),
            Ok(None) => answer(Ok(())),
            Err(error) => answer(Err(error)),
        }
    }
}

impl Handler<GetProperties> for GraphActor {
    type Result = Result<GraphProperties, PeerError>;

    fn handle(&mut self, _: GetProperties, _ctx: &mut Self::Context) -> Self::Result {
        Ok(self.book(false)?.properties())
    }
}

impl Handler<SetProperties> for GraphActor {
    type Result = Reply<()>;

    fn handle(&mut self, message: SetProperties, _ctx: &mut Self::Context) -> Self::Result {
        let staged = self
            .book(true)
            .and_then(|book| book.set_properties(message.properties))
            .map(|write| ((), write));
        self.change(staged)
    }
}

impl GraphActor {
    /// The database file, for export and import.
    ///
    /// # Errors
    /// As [`GraphActor::book`]; `PEER_E_DATABASE_NOT_PRESENT` for a graph in memory.
    fn database_file(&mut self) -> Result<std::sync::Arc<RedbStore>, PeerError> {
        self.book(false)?;
        self.records
            .file
            .clone()
            .ok_or(PeerError::new(ResultCode::PEER_E_DATABASE_NOT_PRESENT))
    }
}

/// Runs a file operation of the store on a blocking thread, off the actor's.
async fn blocking<T: Send + 'static>(
    file: std::sync::Arc<RedbStore>,
    path: PathBuf,
    work: fn(&RedbStore, &std::path::Path) -> Result<T, StoreError>,
) -> Result<T, PeerError> {
    actix_rt::task::spawn_blocking(move || work(&file, &path).map_err(PeerError::from))
        .await
        .unwrap_or(Err(PeerError::new(ResultCode::E_FAIL)))
}

impl Handler<ExportDatabase> for GraphActor {
    type Result = ResponseFuture<Result<u64, PeerError>>;

    fn handle(&mut self, message: ExportDatabase, _ctx: &mut Self::Context) -> Self::Result {
        match self.database_file() {
            Ok(file) => Box::pin(blocking(file, message.path, RedbStore::export)),
            Err(error) => Box::pin(async move { Err(error) }),
        }
    }
}

impl Handler<ImportDatabase> for GraphActor {
    type Result = Reply<u64>;

    fn handle(&mut self, message: ImportDatabase, _ctx: &mut Self::Context) -> Self::Result {
        let file = match self.database_file() {
            Ok(file) => file,
            Err(error) => return answer(Err(error)),
        };
        let status = self.core.status();
        if status.contains(GraphStatus::LISTENING)
            || status.contains(GraphStatus::HAS_CONNECTIONS)
            || self.core.outgoing_count() > 0
        {
            return answer(Err(PeerError::new(ResultCode::PEER_E_GRAPH_IN_USE)));
        }
        Box::pin(
            blocking(file, message.path, RedbStore::import_changes)
                .into_actor(self)
                .map(|result, act, ctx| {
                    let (taken, changes) = result?;
                    if let Some(book) = act.records.book.as_mut() {
                        book.reload()?;
                        book.changed_outside(changes.into_iter().map(|change| {
                            (change.change_type, change.record_id, change.record_type)
                        }));
                        let synchronized = book.is_synchronized();
                        act.core.set_synchronized(synchronized);
                        act.publish_events();
                    }
                    act.after_records(ctx);
                    Ok(taken)
                }),
        )
    }
}
