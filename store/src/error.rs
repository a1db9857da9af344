//! The store's error: a documented result code and the storage failure behind it.

use std::io;

use peergraph_engine::{PeerError, ResultCode};
use thiserror::Error;

/// A store call that failed: the result code the API reports, and the cause.
///
/// `Display` shows the code; [`std::error::Error::source`] gives the redb or I/O error
/// behind it, so "disk full" is never reduced to a bare code in a log.
#[derive(Debug, Error)]
#[error("{}", PeerError::new(*.code))]
pub struct StoreError {
    code: ResultCode,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    /// The redb handle failed for I/O and refuses every later call (see `handle`).
    reopen: bool,
}

impl StoreError {
    /// An error with `code` and no further cause.
    pub fn new(code: ResultCode) -> Self {
        StoreError {
            code,
            source: None,
            reopen: false,
        }
    }

    /// An error with `code`, caused by `source`.
    pub fn with_source(
        code: ResultCode,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        StoreError {
            code,
            source: Some(source.into()),
            reopen: false,
        }
    }

    /// The documented result code.
    pub fn code(&self) -> ResultCode {
        self.code
    }

    /// The error as the engine's [`PeerError`] (the code alone; `PeerError::from` keeps
    /// the cause too).
    pub fn peer_error(&self) -> PeerError {
        PeerError::new(self.code)
    }

    /// A redb failure while opening, with the code it stands for there: a damaged file is
    /// `PEER_E_INVALID_DATABASE`, a file another handle holds `PEER_E_GRAPH_IN_USE`, a
    /// refused file `PEER_E_DATABASE_ACCESSDENIED`, a full disk `PEER_E_DISK_FULL`, and
    /// any other I/O failure `PEER_E_DBINITIALIZATION_FAILED`.
    pub(crate) fn opening(error: impl Into<redb::Error>) -> Self {
        let error = error.into();
        let code = match &error {
            redb::Error::Io(io) => match io_code(io) {
                ResultCode::E_FAIL => ResultCode::PEER_E_DBINITIALIZATION_FAILED,
                code => code,
            },
            other => code_of(other),
        };
        StoreError::with_source(code, error)
    }

    /// A redb failure while reading or writing an open database. An I/O failure (a full
    /// disk among them) leaves redb's handle refusing every later call with `PreviousIo`:
    /// such an error [needs the handle opened again](StoreError::needs_reopen).
    pub(crate) fn storage(error: impl Into<redb::Error>) -> Self {
        let error = error.into();
        let reopen = matches!(error, redb::Error::Io(_) | redb::Error::PreviousIo);
        StoreError {
            reopen,
            ..StoreError::with_source(code_of(&error), error)
        }
    }

    /// The handle could not be opened again after an I/O failure: `code`, and another
    /// attempt is due.
    pub(crate) fn unopened(code: ResultCode) -> Self {
        StoreError {
            reopen: true,
            ..StoreError::new(code)
        }
    }

    /// True when the redb handle that answered this must be opened again.
    pub(crate) fn needs_reopen(&self) -> bool {
        self.reopen
    }

    /// An I/O failure outside redb (the directory, a rename).
    pub(crate) fn io(error: io::Error) -> Self {
        let code = match io_code(&error) {
            ResultCode::E_FAIL => ResultCode::PEER_E_DBINITIALIZATION_FAILED,
            code => code,
        };
        StoreError::with_source(code, error)
    }
}

impl StoreError {
    /// An I/O failure on a file the caller named (an export): a full disk, a refused
    /// file, a missing file, or a plain failure.
    pub(crate) fn file(error: io::Error) -> Self {
        let code = match io_code(&error) {
            ResultCode::PEER_E_DATABASE_ACCESSDENIED => ResultCode::E_ACCESSDENIED,
            _ if error.kind() == io::ErrorKind::NotFound => ResultCode::PEER_E_NOT_FOUND,
            code => code,
        };
        StoreError::with_source(code, error)
    }
}

/// The code, with the storage failure behind it as the [`PeerError`]'s cause.
impl From<StoreError> for PeerError {
    fn from(error: StoreError) -> PeerError {
        match error.source {
            Some(source) => PeerError::with_cause(error.code, source),
            None => PeerError::new(error.code),
        }
    }
}

/// The code a redb error stands for on an open database.
fn code_of(error: &redb::Error) -> ResultCode {
    match error {
        redb::Error::Io(io) => io_code(io),
        redb::Error::DatabaseAlreadyOpen => ResultCode::PEER_E_GRAPH_IN_USE,
        redb::Error::ValueTooLarge(_) => ResultCode::PEER_E_MAX_RECORD_SIZE_EXCEEDED,
        redb::Error::Corrupted(_)
        | redb::Error::UpgradeRequired(_)
        | redb::Error::RepairAborted
        | redb::Error::TableTypeMismatch { .. }
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TableIsNotMultimap(_)
        | redb::Error::TypeDefinitionChanged { .. } => ResultCode::PEER_E_INVALID_DATABASE,
        _ => ResultCode::E_FAIL,
    }
}

/// The code an I/O error stands for: a full disk, a refused file, a file that is not what
/// it should be (redb reports a bad magic number as invalid data, a short file as an
/// unexpected end), or a plain failure.
fn io_code(error: &io::Error) -> ResultCode {
    /// ENOSPC on Linux and macOS, for errors that arrive without the portable kind.
    const ENOSPC: i32 = 28;
    match error.kind() {
        io::ErrorKind::StorageFull => ResultCode::PEER_E_DISK_FULL,
        io::ErrorKind::PermissionDenied => ResultCode::PEER_E_DATABASE_ACCESSDENIED,
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
            ResultCode::PEER_E_INVALID_DATABASE
        }
        _ if error.raw_os_error() == Some(ENOSPC) => ResultCode::PEER_E_DISK_FULL,
        _ => ResultCode::E_FAIL,
    }
}

/// `PEER_E_INVALID_DATABASE`: the file does not hold what a graph database holds.
pub(crate) fn damaged() -> StoreError {
    StoreError::new(ResultCode::PEER_E_INVALID_DATABASE)
}

/// Runs `work`, turning a panic inside redb (a damaged file can drive a library into
/// one) into `PEER_E_INVALID_DATABASE`, so that a bad file never takes the process down.
pub(crate) fn guarded<T>(work: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|_| Err(damaged()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_cause() {
        let full = io::Error::from_raw_os_error(28);
        assert_eq!(StoreError::io(full).code(), ResultCode::PEER_E_DISK_FULL);
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        assert_eq!(
            StoreError::opening(redb::Error::Io(denied)).code(),
            ResultCode::PEER_E_DATABASE_ACCESSDENIED
        );
        let other = io::Error::from(io::ErrorKind::Other);
        assert_eq!(
            StoreError::opening(redb::Error::Io(other)).code(),
            ResultCode::PEER_E_DBINITIALIZATION_FAILED
        );
        let short = redb::Error::Io(io::Error::from(io::ErrorKind::UnexpectedEof));
        assert_eq!(
            StoreError::opening(short).code(),
            ResultCode::PEER_E_INVALID_DATABASE
        );
        let corrupted = StoreError::storage(redb::Error::Corrupted("x".into()));
        assert_eq!(corrupted.code(), ResultCode::PEER_E_INVALID_DATABASE);
        assert!(std::error::Error::source(&corrupted).is_some());
        assert_eq!(
            corrupted.to_string(),
            "PEER_E_INVALID_DATABASE (0x80630016): the graph database is not valid"
        );
        assert_eq!(
            StoreError::storage(redb::Error::DatabaseAlreadyOpen).code(),
            ResultCode::PEER_E_GRAPH_IN_USE
        );
    }

    #[test]
    fn only_redb_io_failures_need_the_handle_opened_again() {
        let full = StoreError::storage(redb::Error::Io(io::Error::from_raw_os_error(28)));
        assert_eq!(full.code(), ResultCode::PEER_E_DISK_FULL);
        assert!(full.needs_reopen());
        let previous = StoreError::storage(redb::Error::PreviousIo);
        assert_eq!(previous.code(), ResultCode::E_FAIL);
        assert!(previous.needs_reopen());
        assert!(!StoreError::storage(redb::Error::Corrupted("x".into())).needs_reopen());
        // A full disk under an export file is the file's failure, not the database's.
        assert!(!StoreError::file(io::Error::from_raw_os_error(28)).needs_reopen());
    }
}
