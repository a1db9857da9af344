//! The reasons a REFUSE or a DISCONNECT frame carries.

use super::ProtocolError;

/// Why a node refuses a CONNECT. 1 to 4 are the reference's REFUSE reasons; the rest are
/// this protocol's own. `docs/PROTOCOL.md` lists the result code each maps to at the
/// connecting node.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum RefuseReason {
    /// The node has too many connections (never used for direct connections).
    Busy = 1,
    /// A connection between the two nodes already exists.
    AlreadyConnected = 2,
    /// The connection id is already in use at the accepting node.
    DuplicateConnection = 3,
    /// The node does not accept direct connections (it has not registered for
    /// DIRECT_CONNECTION events).
    DirectConnectionDisallowed = 4,
    /// The node is not a member of the graph named in CONNECT.
    WrongGraph = 0x80,
    /// The node is not the peer named in CONNECT.
    WrongPeer = 0x81,
    /// The CONNECT's protocol version is not supported.
    UnsupportedVersion = 0x82,
    /// The node is at its connection limit (per graph or per remote node).
    LimitReached = 0x83,
    /// The connecting node did not prove membership of the graph (wrong or missing
    /// membership proof, or a key that is not on the graph's allowed list).
    NotAuthorized = 0x84,
    /// The connecting node's key is allowed, but for another peer id.
    KeyMismatch = 0x85,
}

impl RefuseReason {
    pub(super) fn from_byte(byte: u8) -> Result<Self, ProtocolError> {
        Ok(match byte {
            1 => RefuseReason::Busy,
            2 => RefuseReason::AlreadyConnected,
            3 => RefuseReason::DuplicateConnection,
            4 => RefuseReason::DirectConnectionDisallowed,
            0x80 => RefuseReason::WrongGraph,
            0x81 => RefuseReason::WrongPeer,
            0x82 => RefuseReason::UnsupportedVersion,
            0x83 => RefuseReason::LimitReached,
            0x84 => RefuseReason::NotAuthorized,
            0x85 => RefuseReason::KeyMismatch,
            other => return Err(ProtocolError::UnknownReason(other)),
        })
    }
}

/// Why a node ends a connection (the reference's DISCONNECT reasons).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum DisconnectReason {
    /// The node is leaving the graph. Defined for completeness: a node that leaves closes
    /// its links with close code LEAVING at once instead of sending this.
    Leaving = 1,
    /// The connection was the least useful one.
    LeastUseful = 2,
    /// The application closed the connection (CloseDirectConnection).
    AppDisconnect = 3,
}

impl DisconnectReason {
    pub(super) fn from_byte(byte: u8) -> Result<Self, ProtocolError> {
        Ok(match byte {
            1 => DisconnectReason::Leaving,
            2 => DisconnectReason::LeastUseful,
            3 => DisconnectReason::AppDisconnect,
            other => return Err(ProtocolError::UnknownReason(other)),
        })
    }
}
