//! Identifiers: connection ids, graph handles, node ids, peer and graph ids, data types.
//!
//! Each is a newtype so that one kind of id cannot be passed where another is expected.
//! Constructors reject what the reference calls invalid (a zero connection id, an empty or
//! over-long peer id), so a value of these types is always usable.

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

use crate::result::{PeerError, ResultCode};

/// The longest graph id, peer id or friendly name, in characters (the reference's 256).
pub const MAX_ID_CHARS: usize = 256;

/// A direct (or later, neighbor) connection's 64-bit id. Never zero: zero means
/// "no connection" in the API, and calls given zero return `E_INVALIDARG`.
///
/// Both ends of a direct connection report the same id: the opening node chooses it at
/// random and the accepting node adopts it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(NonZeroU64);

impl ConnectionId {
    /// The id for `raw`, or `E_INVALIDARG` for zero.
    ///
    /// # Errors
    /// `E_INVALIDARG` when `raw` is 0.
    pub fn new(raw: u64) -> Result<Self, PeerError> {
        NonZeroU64::new(raw)
            .map(ConnectionId)
            .ok_or(PeerError::INVALID_ARG)
    }

    /// The raw 64-bit value.
    pub const fn get(self) -> u64 {
        self.0.get()
    }
}

impl From<ConnectionId> for u64 {
    fn from(id: ConnectionId) -> u64 {
        id.get()
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({:#018x})", self.get())
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#018x}", self.get())
    }
}

/// The handle of an open graph (the API's `HGRAPH`). Any thread may use it; once the graph
/// is closed every call with it returns `PEER_E_INVALID_GRAPH`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct GraphHandle(NonZeroU64);

impl GraphHandle {
    /// A handle from its raw value; `None` for zero.
    pub fn new(raw: u64) -> Option<Self> {
        NonZeroU64::new(raw).map(GraphHandle)
    }

    /// The raw value.
    pub const fn get(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for GraphHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "graph#{}", self.get())
    }
}

/// A node's 64-bit id: the first eight bytes (big-endian) of the SHA-256 digest of the
/// node's public key, so that it is bound to the key every link verifies.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

impl NodeId {
    /// The raw value.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({:016x})", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A node's key fingerprint: the SHA-256 digest of its public key (SubjectPublicKeyInfo
/// DER). The node id is its first eight bytes; the whole digest is what allow-lists pin.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub [u8; 32]);

impl PeerKey {
    /// The node id bound to this key: the digest's first eight bytes, big-endian.
    pub fn node_id(&self) -> NodeId {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        NodeId(u64::from_be_bytes(first))
    }
}

impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerKey({self})")
    }
}

impl FromStr for PeerKey {
    type Err = PeerError;

    /// Parses 64 hex digits.
    fn from_str(text: &str) -> Result<Self, PeerError> {
        if text.len() != 64 || !text.is_ascii() {
            return Err(PeerError::INVALID_ARG);
        }
        let mut key = [0u8; 32];
        for (index, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16)
                .map_err(|_| PeerError::INVALID_ARG)?;
        }
        Ok(PeerKey(key))
    }
}

/// Checks an id or name: at most `max_chars` characters, and (when `required`) not empty.
fn checked_text(text: &str, max_chars: usize, required: bool) -> Result<(), PeerError> {
    if (required && text.is_empty()) || text.chars().count() > max_chars || text.contains('\0') {
        return Err(PeerError::INVALID_ARG);
    }
    Ok(())
}

/// Checks optional text (a friendly name, a comment) against its documented length.
///
/// # Errors
/// `E_INVALIDARG` when `text` has more than `max_chars` characters or a NUL.
pub fn check_text(text: &str, max_chars: usize) -> Result<(), PeerError> {
    checked_text(text, max_chars, false)
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The id for `text`.
            ///
            /// # Errors
            /// `E_INVALIDARG` when `text` is empty, longer than [`MAX_ID_CHARS`] characters,
            /// or holds a NUL.
            pub fn new(text: impl Into<String>) -> Result<Self, PeerError> {
                let text = text.into();
                checked_text(&text, MAX_ID_CHARS, true)?;
                Ok($name(text))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = PeerError;
            fn from_str(text: &str) -> Result<Self, PeerError> {
                $name::new(text)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = PeerError;
            fn try_from(text: &str) -> Result<Self, PeerError> {
                $name::new(text)
            }
        }
    };
}

text_id! {
    /// A peer id: the application-chosen name of a node in a graph (1 to 256 characters).
    PeerId
}

text_id! {
    /// A graph id: the name every node of one graph shares (1 to 256 characters).
    GraphId
}

/// The type of a piece of application data: a GUID, written in the usual
/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` form (bytes in that written order).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct DataType(pub [u8; 16]);

impl DataType {
    /// The type whose 128 bits, read big-endian, are `value`.
    pub const fn from_u128(value: u128) -> Self {
        DataType(value.to_be_bytes())
    }

    /// The 128 bits, big-endian.
    pub const fn as_u128(self) -> u128 {
        u128::from_be_bytes(self.0)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15]
        )
    }
}

impl fmt::Debug for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataType({self})")
    }
}

impl FromStr for DataType {
    type Err = PeerError;

    /// Parses the 36-character GUID form, with or without surrounding braces.
    fn from_str(text: &str) -> Result<Self, PeerError> {
        let text = text.trim_start_matches('{').trim_end_matches('}');
        let dashes = [8, 13, 18, 23];
        if text.len() != 36
            || dashes.iter().any(|&i| text.as_bytes()[i] != b'-')
            || text.chars().filter(|&c| c == '-').count() != 4
        {
            return Err(PeerError::new(ResultCode::E_INVALIDARG));
        }
        let hex: String = text.chars().filter(|&c| c != '-').collect();
        u128::from_str_radix(&hex, 16)
            .map(DataType::from_u128)
            .map_err(|_| PeerError::INVALID_ARG)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_id_rejects_zero() {
        assert_eq!(ConnectionId::new(0), Err(PeerError::INVALID_ARG));
        assert_eq!(ConnectionId::new(7).map(ConnectionId::get), Ok(7));
    }

    #[test]
    fn text_ids_check_length() {
        assert!(PeerId::new("").is_err());
        assert!(PeerId::new("a".repeat(256)).is_ok());
        assert!(PeerId::new("a".repeat(257)).is_err());
        assert!(
            GraphId::new("é".repeat(256)).is_ok(),
            "characters, not bytes"
        );
        assert!(GraphId::new("a\0b").is_err());
        assert!(check_text("", 10).is_ok());
        assert!(check_text(&"x".repeat(11), 10).is_err());
    }

    #[test]
    fn peer_key_round_trips_and_gives_the_node_id() {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
        bytes[31] = 0xff;
        let key = PeerKey(bytes);
        assert_eq!(key.node_id(), NodeId(0x0102_0304_0506_0708));
        assert_eq!(key.to_string().parse::<PeerKey>(), Ok(key));
        assert!("abc".parse::<PeerKey>().is_err());
    }

    #[test]
    fn data_type_round_trips_through_text() {
        let data_type = DataType::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let text = data_type.to_string();
        assert_eq!(text, "01234567-89ab-cdef-0011-223344556677");
        assert_eq!(text.parse::<DataType>(), Ok(data_type));
        assert_eq!(format!("{{{text}}}").parse::<DataType>(), Ok(data_type));
        assert!("0123456789ab-cdef-0011-223344556677-"
            .parse::<DataType>()
            .is_err());
        assert!("not a guid".parse::<DataType>().is_err());
    }
}
