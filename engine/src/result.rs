//! The documented result codes (HRESULTs) and the error type that carries them.
//!
//! Every code lives in one table, written once in the `result_codes!` invocation below:
//! name, value and description in one row. `Debug` prints the name, `Display` prints the
//! name and the hex value, and [`ResultCode::description`] gives the documented meaning.

use std::fmt;

/// A Peer Graphing result code: an HRESULT with its documented value.
///
/// Success codes have the high bit clear ([`ResultCode::is_success`]); errors have it set.
/// Calls that fail return a [`PeerError`] that carries one of these codes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResultCode(u32);

macro_rules! result_codes {
    ($($(#[$doc:meta])* $name:ident = $value:literal, $description:literal;)*) => {
        impl ResultCode {
            $(
                $(#[$doc])*
                #[doc = concat!("\n\nValue `", stringify!($value), "`: ", $description, ".")]
                pub const $name: ResultCode = ResultCode($value);
            )*

            /// Every code in the table, in the order it is written.
            pub const ALL: &'static [ResultCode] = &[$(ResultCode::$name),*];

            /// The documented name, such as `PEER_E_CONNECTION_NOT_FOUND`, or `None` for a
            /// value outside the table.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }

            /// What the code means, as the reference describes it.
            pub fn description(self) -> &'static str {
                match self.0 {
                    $($value => $description,)*
                    _ => "unknown result code",
                }
            }
        }
    };
}

result_codes! {
    /// The call succeeded.
    S_OK = 0x0000_0000, "the call succeeded";
    /// Open created new local graph data rather than finding it.
    PEER_S_GRAPH_DATA_CREATED = 0x0063_0001, "the graph's local data did not exist and was created";
    /// No more event data is waiting.
    PEER_S_NO_EVENT_DATA = 0x0063_0002, "no more event data is waiting";
    /// A parameter is not valid.
    E_INVALIDARG = 0x8007_0057, "a parameter is not valid";
    /// Not enough memory (or a bounded resource is exhausted).
    E_OUTOFMEMORY = 0x8007_000E, "not enough memory to complete the call";
    /// Access is denied.
    E_ACCESSDENIED = 0x8007_0005, "access is denied";
    /// An unspecified failure.
    E_FAIL = 0x8000_4005, "an unspecified failure";
    /// `startup` was not called, or the last `shutdown` already ran.
    PEER_E_NOT_INITIALIZED = 0x8063_0002, "the engine was not started (startup was not called)";
    /// The graph handle is not valid (never issued, or the graph was closed).
    PEER_E_INVALID_GRAPH = 0x8063_0010, "the graph handle is not valid";
    /// A graph with that id is already open.
    PEER_E_DUPLICATE_GRAPH = 0x8063_0012, "a graph with that id already exists";
    /// The node has not synchronized with the graph yet.
    PEER_E_GRAPH_NOT_READY = 0x8063_0013, "the graph is not ready: the node has not synchronized yet";
    /// The graph is shutting down.
    PEER_E_GRAPH_SHUTTING_DOWN = 0x8063_0014, "the graph is shutting down";
    /// The graph's database is in use.
    PEER_E_GRAPH_IN_USE = 0x8063_0015, "the graph is in use";
    /// The graph's database is not valid.
    PEER_E_INVALID_DATABASE = 0x8063_0016, "the graph database is not valid";
    /// Access to the graph's database was denied.
    PEER_E_DATABASE_ACCESSDENIED = 0x8063_0302, "access to the graph database was denied";
    /// The graph's database could not be initialized.
    PEER_E_DBINITIALIZATION_FAILED = 0x8063_0303, "the graph database could not be initialized";
    /// A database for that graph, peer and name already exists.
    PEER_E_DATABASE_ALREADY_PRESENT = 0x8063_0305, "the graph database already exists";
    /// No database for that graph, peer and name exists.
    PEER_E_DATABASE_NOT_PRESENT = 0x8063_0306, "the graph database does not exist";
    /// No connection with that id exists.
    PEER_E_CONNECTION_NOT_FOUND = 0x8063_0103, "no connection with that id exists";
    /// A node tried to connect to itself.
    PEER_E_CONNECT_SELF = 0x8063_0106, "a node cannot connect to itself";
    /// The graph is already listening.
    PEER_E_ALREADY_LISTENING = 0x8063_0107, "the graph is already listening";
    /// No node with that id is known.
    PEER_E_NODE_NOT_FOUND = 0x8063_0108, "no node with that id is known";
    /// The connection could not be made (unreachable, or lost while being made).
    PEER_E_CONNECTION_FAILED = 0x8063_0109, "the connection failed";
    /// The remote node could not be authenticated as the expected peer of the graph.
    PEER_E_CONNECTION_NOT_AUTHENTICATED = 0x8063_010A, "the connection could not be authenticated";
    /// The remote node refused the connection.
    PEER_E_CONNECTION_REFUSED = 0x8063_010B, "the remote node refused the connection";
    /// No record with that id exists.
    PEER_E_RECORD_NOT_FOUND = 0x8063_0301, "no record with that id exists";
    /// The record is larger than the graph allows.
    PEER_E_MAX_RECORD_SIZE_EXCEEDED = 0x8063_0304, "the record is larger than the graph allows";
    /// The search criteria are not valid.
    PEER_E_INVALID_SEARCH = 0x8063_0601, "the search criteria are not valid";
    /// The record attributes are not valid.
    PEER_E_INVALID_ATTRIBUTES = 0x8063_0602, "the record attributes are not valid";
    /// The record is not valid.
    PEER_E_INVALID_RECORD = 0x8063_2010, "the record is not valid";
    /// The caller is not authorized.
    PEER_E_NOT_AUTHORIZED = 0x8063_2020, "the caller is not authorized";
    /// Record validation was deferred.
    PEER_E_DEFERRED_VALIDATION = 0x8063_2030, "record validation was deferred";
    /// The requested version is not supported.
    PEER_E_UNSUPPORTED_VERSION = 0x8063_2090, "the requested version is not supported";
    /// An enumeration has no more items.
    PEER_E_NO_MORE = 0x8063_4003, "there are no more items";
    /// The operation did not complete in its time limit.
    PEER_E_TIMEOUT = 0x8063_7005, "the operation timed out";
    /// The address is not valid.
    PEER_E_INVALID_ADDRESS = 0x8063_7007, "the address is not valid";
    /// The object already exists.
    PEER_E_ALREADY_EXISTS = 0x8007_00B7, "the object already exists";
    /// The object was not found.
    PEER_E_NOT_FOUND = 0x8007_0490, "the object was not found";
    /// The disk is full.
    PEER_E_DISK_FULL = 0x8007_0070, "there is not enough space on the disk";
}

impl ResultCode {
    /// The HRESULT value, exactly as the reference documents it.
    pub const fn value(self) -> u32 {
        self.0
    }

    /// A code from its raw HRESULT value; values outside the table are kept as they are
    /// and print as `UNKNOWN`.
    pub const fn from_value(value: u32) -> Self {
        ResultCode(value)
    }

    /// True for success codes (S_OK and the PEER_S_ codes).
    pub const fn is_success(self) -> bool {
        self.0 & 0x8000_0000 == 0
    }
}

impl fmt::Debug for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "ResultCode({:#010X})", self.0),
        }
    }
}

impl fmt::Display for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:08X})", self.name().unwrap_or("UNKNOWN"), self.0)
    }
}

/// What caused an error, kept beside its code: an OS error, a limit, a mismatch.
pub type Cause = std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>;

/// A failed call: the documented error code it returned and, where one is known, its
/// cause.
///
/// The code is what callers match on ([`PeerError::code`]); two errors are equal when
/// their codes are. The cause says why in words a person can act on ("address already in
/// use", "peer id mismatch: asked for bob, the node presented carol") and is the error's
/// [`source`](std::error::Error::source).
///
/// `Display` shows the code's name and hex value, its description, then the cause: for
/// example `PEER_E_INVALID_ADDRESS (0x80637007): the address is not valid: Address
/// already in use (os error 98)`.
#[derive(Clone)]
pub struct PeerError {
    code: ResultCode,
    cause: Option<Cause>,
}

impl PeerError {
    /// An error carrying `code`.
    ///
    /// # Panics
    /// Never; a success code is accepted but reported as `E_FAIL` because an error must
    /// carry an error code.
    pub const fn new(code: ResultCode) -> Self {
        if code.is_success() {
            PeerError {
                code: ResultCode::E_FAIL,
                cause: None,
            }
        } else {
            PeerError { code, cause: None }
        }
    }

    /// An error carrying `code`, caused by `cause`.
    pub fn with_cause(
        code: ResultCode,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        PeerError::new(code).because(cause)
    }

    /// This error with `cause` as its cause (replacing any other).
    pub fn because(
        mut self,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.cause = Some(Cause::from(cause.into()));
        self
    }

    /// The documented result code.
    pub const fn code(&self) -> ResultCode {
        self.code
    }

    /// What caused the error, when known.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.cause.as_deref()
    }

    /// `E_INVALIDARG`.
    pub const INVALID_ARG: PeerError = PeerError::new(ResultCode::E_INVALIDARG);
    /// `PEER_E_NOT_INITIALIZED`.
    pub const NOT_INITIALIZED: PeerError = PeerError::new(ResultCode::PEER_E_NOT_INITIALIZED);
    /// `PEER_E_INVALID_GRAPH`.
    pub const INVALID_GRAPH: PeerError = PeerError::new(ResultCode::PEER_E_INVALID_GRAPH);
    /// `PEER_E_CONNECTION_NOT_FOUND`.
    pub const CONNECTION_NOT_FOUND: PeerError =
        PeerError::new(ResultCode::PEER_E_CONNECTION_NOT_FOUND);
}

impl PartialEq for PeerError {
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code
    }
}

impl Eq for PeerError {}

impl std::hash::Hash for PeerError {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.code.hash(state);
    }
}

impl From<ResultCode> for PeerError {
    fn from(code: ResultCode) -> Self {
        PeerError::new(code)
    }
}

impl fmt::Debug for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Some(cause) => write!(f, "PeerError({}, cause: {cause:?})", self.code),
            None => write!(f, "PeerError({})", self.code),
        }
    }
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.code.description())?;
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PeerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|cause| cause as &(dyn std::error::Error + 'static))
    }
}

/// The result of a peergraph call: a value, or the documented error code.
pub type PeerResult<T> = Result<T, PeerError>;

/// The result code a call's outcome stands for: `S_OK` for success, the error's code
/// otherwise.
pub fn code_of<T>(result: &PeerResult<T>) -> ResultCode {
    match result {
        Ok(_) => ResultCode::S_OK,
        Err(error) => error.code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_shown_and_kept_but_the_code_decides_equality() {
        let io = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let error = PeerError::with_cause(ResultCode::PEER_E_INVALID_ADDRESS, io);
        assert_eq!(error.code(), ResultCode::PEER_E_INVALID_ADDRESS);
        assert_eq!(error, PeerError::new(ResultCode::PEER_E_INVALID_ADDRESS));
        let shown = error.to_string();
        assert!(
            shown.starts_with("PEER_E_INVALID_ADDRESS (0x80637007): the address is not valid: "),
            "{shown}"
        );
        assert!(shown.contains("address in use"), "{shown}");
        let source = std::error::Error::source(&error).expect("the cause is the source");
        assert!(source.to_string().contains("address in use"));
        assert!(std::error::Error::source(&PeerError::INVALID_ARG).is_none());
        let text = PeerError::INVALID_ARG.because("name over 256 characters");
        assert_eq!(
            text.to_string(),
            "E_INVALIDARG (0x80070057): a parameter is not valid: name over 256 characters"
        );
    }

    #[test]
    fn values_match_the_reference() {
        let expected: &[(&str, u32)] = &[
            ("S_OK", 0x0000_0000),
            ("PEER_S_GRAPH_DATA_CREATED", 0x0063_0001),
            ("PEER_S_NO_EVENT_DATA", 0x0063_0002),
            ("E_INVALIDARG", 0x8007_0057),
            ("E_OUTOFMEMORY", 0x8007_000E),
            ("E_ACCESSDENIED", 0x8007_0005),
            ("E_FAIL", 0x8000_4005),
            ("PEER_E_NOT_INITIALIZED", 0x8063_0002),
            ("PEER_E_INVALID_GRAPH", 0x8063_0010),
            ("PEER_E_DUPLICATE_GRAPH", 0x8063_0012),
            ("PEER_E_GRAPH_NOT_READY", 0x8063_0013),
            ("PEER_E_GRAPH_SHUTTING_DOWN", 0x8063_0014),
            ("PEER_E_GRAPH_IN_USE", 0x8063_0015),
            ("PEER_E_INVALID_DATABASE", 0x8063_0016),
            ("PEER_E_DATABASE_ACCESSDENIED", 0x8063_0302),
            ("PEER_E_DBINITIALIZATION_FAILED", 0x8063_0303),
            ("PEER_E_DATABASE_ALREADY_PRESENT", 0x8063_0305),
            ("PEER_E_DATABASE_NOT_PRESENT", 0x8063_0306),
            ("PEER_E_CONNECTION_NOT_FOUND", 0x8063_0103),
            ("PEER_E_CONNECT_SELF", 0x8063_0106),
            ("PEER_E_ALREADY_LISTENING", 0x8063_0107),
            ("PEER_E_NODE_NOT_FOUND", 0x8063_0108),
            ("PEER_E_CONNECTION_FAILED", 0x8063_0109),
            ("PEER_E_CONNECTION_NOT_AUTHENTICATED", 0x8063_010A),
            ("PEER_E_CONNECTION_REFUSED", 0x8063_010B),
            ("PEER_E_RECORD_NOT_FOUND", 0x8063_0301),
            ("PEER_E_MAX_RECORD_SIZE_EXCEEDED", 0x8063_0304),
            ("PEER_E_INVALID_SEARCH", 0x8063_0601),
            ("PEER_E_INVALID_ATTRIBUTES", 0x8063_0602),
            ("PEER_E_INVALID_RECORD", 0x8063_2010),
            ("PEER_E_NOT_AUTHORIZED", 0x8063_2020),
            ("PEER_E_DEFERRED_VALIDATION", 0x8063_2030),
            ("PEER_E_UNSUPPORTED_VERSION", 0x8063_2090),
            ("PEER_E_NO_MORE", 0x8063_4003),
            ("PEER_E_TIMEOUT", 0x8063_7005),
            ("PEER_E_INVALID_ADDRESS", 0x8063_7007),
            ("PEER_E_ALREADY_EXISTS", 0x8007_00B7),
            ("PEER_E_NOT_FOUND", 0x8007_0490),
            ("PEER_E_DISK_FULL", 0x8007_0070),
        ];
        assert_eq!(ResultCode::ALL.len(), expected.len());
        for (code, (name, value)) in ResultCode::ALL.iter().zip(expected) {
            assert_eq!(code.name(), Some(*name));
            assert_eq!(code.value(), *value, "{name}");
        }
        assert_eq!(ResultCode::PEER_E_CONNECTION_NOT_FOUND.value(), 0x8063_0103);
        assert_eq!(ResultCode::E_INVALIDARG.value(), 0x8007_0057);
        assert_eq!(ResultCode::PEER_E_INVALID_GRAPH.value(), 0x8063_0010);
        assert_eq!(ResultCode::PEER_E_NOT_INITIALIZED.value(), 0x8063_0002);
    }

    #[test]
    fn success_and_error_are_told_apart() {
        assert!(ResultCode::S_OK.is_success());
        assert!(ResultCode::PEER_S_GRAPH_DATA_CREATED.is_success());
        assert!(!ResultCode::PEER_E_TIMEOUT.is_success());
        assert_eq!(
            PeerError::new(ResultCode::S_OK).code(),
            ResultCode::E_FAIL,
            "an error never carries a success code"
        );
    }

    #[test]
    fn display_shows_name_and_hex_value() {
        let error = PeerError::CONNECTION_NOT_FOUND;
        assert_eq!(
            error.to_string(),
            "PEER_E_CONNECTION_NOT_FOUND (0x80630103): no connection with that id exists"
        );
        assert_eq!(ResultCode::S_OK.to_string(), "S_OK (0x00000000)");
        assert_eq!(format!("{:?}", ResultCode::E_INVALIDARG), "E_INVALIDARG");
        assert_eq!(
            ResultCode::from_value(0x1234).to_string(),
            "UNKNOWN (0x00001234)"
        );
    }
}
