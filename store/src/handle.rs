//! The store's redb handle, opened again after an I/O failure.
//!
//! Once a read or write of redb's file fails (a commit on a full disk answers ENOSPC),
//! redb refuses every later read and write on that handle with `PreviousIo`, including
//! reads of data committed long before; the file itself is intact (the failed commit
//! never reached the header). So the store drops the handle and opens the file again,
//! which runs redb's repair, and answers from the new handle. The call that failed still
//! reports its own code (`PEER_E_DISK_FULL`); the calls after it see the last commit.

use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use peergraph_engine::ResultCode;
use redb::Database;

use crate::error::{guarded, StoreError};

/// One redb handle, shared by the callers' reads, the writer thread, export and import.
pub(crate) struct Handle {
    path: PathBuf,
    slot: RwLock<Slot>,
}

struct Slot {
    /// The open handle, or the code of the last attempt to open it again.
    database: Result<Database, ResultCode>,
    /// How many times it was opened again: a caller that saw a failure reopens only the
    /// handle it saw, not one another caller has reopened since.
    generation: u64,
}

impl Handle {
    pub(crate) fn new(database: Database, path: &Path) -> Handle {
        Handle {
            path: path.to_owned(),
            slot: RwLock::new(Slot {
                database: Ok(database),
                generation: 0,
            }),
        }
    }

    /// Runs `work` on the handle. Other calls run alongside; opening again waits for them.
    /// When `work` fails for I/O (or the handle could not be opened again), the handle is
    /// opened again before this returns its error.
    pub(crate) fn with<T>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (result, generation) = {
            let slot = self.read();
            let result = match &slot.database {
                Ok(database) => guarded(|| work(database)),
                Err(code) => Err(StoreError::unopened(*code)),
            };
            (result, slot.generation)
        };
        if result.as_ref().is_err_and(StoreError::needs_reopen) {
            self.reopen(generation);
        }
        result
    }

    fn read(&self) -> RwLockReadGuard<'_, Slot> {
        self.slot.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops the handle of `generation` and opens the file again, once every call using
    /// it has ended (each holds the lock for as long as its transactions live, so the old
    /// handle's file lock is released here).
    fn reopen(&self, generation: u64) {
        let mut slot = self.slot.write().unwrap_or_else(PoisonError::into_inner);
        if slot.generation != generation {
            return;
        }
        slot.generation += 1;
        slot.database = Err(ResultCode::E_FAIL);
        slot.database = guarded(|| {
            Database::builder()
                .open(&self.path)
                .map_err(StoreError::storage)
        })
        .map_err(|error| error.code());
    }
}
