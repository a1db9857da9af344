//! The security callbacks (`PEER_SECURITY_INTERFACE`): the application's say over which
//! records enter its database, and the security data a record carries.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::event::RecordChangeType;
use crate::record::model::Record;
use crate::result::{PeerError, ResultCode};

/// `pfnValidateRecord`: judges a record about to enter the database (added, updated or
/// deleted). `Ok(())` takes it; `Err` with `PEER_E_DEFERRED_VALIDATION` holds it until
/// `ValidateDeferredRecords`; any other error drops it (`PEER_E_INVALID_RECORD` is the
/// documented answer).
pub type ValidateRecord =
    Arc<dyn Fn(&Record, RecordChangeType) -> Result<(), PeerError> + Send + Sync>;

/// `pfnSecureRecord`: the security data to attach to a record before it is stored and
/// flooded (a signature, say). An error fails the call that changed the record.
pub type SecureRecord = Arc<dyn Fn(&Record) -> Result<Vec<u8>, PeerError> + Send + Sync>;

/// A graph's security callbacks: both or neither.
///
/// ```
/// use std::sync::Arc;
/// use peergraph_engine::{PeerError, RecordSecurity, ResultCode};
///
/// let security = RecordSecurity {
///     validate_record: Some(Arc::new(|record, _change| {
///         if record.data().starts_with(b"spam") {
///             Err(PeerError::new(ResultCode::PEER_E_INVALID_RECORD))
///         } else {
///             Ok(())
///         }
///     })),
///     secure_record: Some(Arc::new(|record| Ok(record.data().len().to_be_bytes().to_vec()))),
/// };
/// assert!(security.check().is_ok());
/// let half = RecordSecurity { secure_record: None, ..security };
/// assert_eq!(half.check().unwrap_err().code(), ResultCode::E_INVALIDARG);
/// ```
#[derive(Clone, Default)]
pub struct RecordSecurity {
    /// The validation callback.
    pub validate_record: Option<ValidateRecord>,
    /// The securing callback.
    pub secure_record: Option<SecureRecord>,
}

impl fmt::Debug for RecordSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordSecurity")
            .field("validate_record", &self.validate_record.is_some())
            .field("secure_record", &self.secure_record.is_some())
            .finish()
    }
}

/// What the validation callback decided.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// The record may enter (or no callback is set).
    Accept,
    /// Held until `ValidateDeferredRecords`.
    Defer,
    /// Dropped: the call that made it answers `E_ACCESSDENIED`.
    Reject,
}

impl RecordSecurity {
    /// Checks that both callbacks or neither are set.
    ///
    /// # Errors
    /// `E_INVALIDARG` when only one is.
    pub fn check(&self) -> Result<(), PeerError> {
        if self.validate_record.is_some() != self.secure_record.is_some() {
            return Err(PeerError::INVALID_ARG);
        }
        Ok(())
    }

    /// True when callbacks are set.
    pub fn is_set(&self) -> bool {
        self.validate_record.is_some()
    }

    /// Runs the validation callback. A callback that panics rejects the record.
    pub fn validate(&self, record: &Record, change: RecordChangeType) -> Verdict {
        let Some(validate) = &self.validate_record else {
            return Verdict::Accept;
        };
        match catch_unwind(AssertUnwindSafe(|| validate(record, change))) {
            Ok(Ok(())) => Verdict::Accept,
            Ok(Err(error)) if error.code() == ResultCode::PEER_E_DEFERRED_VALIDATION => {
                Verdict::Defer
            }
            Ok(Err(_)) | Err(_) => Verdict::Reject,
        }
    }

    /// Runs the securing callback: the security data for `record` (empty without one).
    ///
    /// # Errors
    /// The callback's error; `E_FAIL` when it panics.
    pub fn secure(&self, record: &Record) -> Result<Vec<u8>, PeerError> {
        let Some(secure) = &self.secure_record else {
            return Ok(Vec::new());
        };
        catch_unwind(AssertUnwindSafe(|| secure(record)))
            .unwrap_or(Err(PeerError::new(ResultCode::E_FAIL)))
    }
}
