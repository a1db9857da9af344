//! The graph's data model: version data, properties, status flags, connection and node
//! information, and the rules that check them.

use std::fmt;
use std::net::SocketAddr;

use crate::ids::{check_text, ConnectionId, GraphId, NodeId, PeerId, PeerKey, MAX_ID_CHARS};
use crate::result::{PeerError, ResultCode};

/// A Peer Graphing API version, as `PEER_VERSION_DATA` carries it (major.minor).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Version {
    /// The major version.
    pub major: u8,
    /// The minor version.
    pub minor: u8,
}

impl Version {
    /// The one version this engine implements: 1.0.
    pub const V1_0: Version = Version { major: 1, minor: 0 };

    /// `major.minor`.
    pub const fn new(major: u8, minor: u8) -> Self {
        Version { major, minor }
    }

    /// The `WORD` form: the major version in the low byte, the minor in the high byte.
    pub const fn to_word(self) -> u16 {
        self.major as u16 | (self.minor as u16) << 8
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// What `startup` returns (`PEER_VERSION_DATA`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VersionData {
    /// The version the caller will be served with.
    pub version: Version,
    /// The highest version this engine supports.
    pub highest_version: Version,
}

/// Negotiates a version: anything from 1.0 up is served as 1.0 (the highest there is),
/// as the Windows API does; anything below 1.0 is refused.
///
/// # Errors
/// `PEER_E_UNSUPPORTED_VERSION` for a version below 1.0.
pub fn negotiate_version(requested: Version) -> Result<VersionData, PeerError> {
    if requested < Version::V1_0 {
        return Err(PeerError::new(ResultCode::PEER_E_UNSUPPORTED_VERSION));
    }
    Ok(VersionData {
        version: Version::V1_0,
        highest_version: Version::V1_0,
    })
}

/// The scope a graph listens in (`PEER_GRAPH_SCOPE`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(u32)]
pub enum Scope {
    /// Any scope.
    #[default]
    Any = 0,
    /// Global addresses.
    Global = 1,
    /// Site-local addresses.
    SiteLocal = 2,
    /// Link-local addresses.
    LinkLocal = 3,
    /// The loopback interface only.
    Loopback = 4,
}

/// The longest comment a graph may carry, in characters.
pub const MAX_COMMENT_CHARS: usize = 512;
/// The default and largest record size (60 MB), used when `max_record_size` is 0.
pub const MAX_RECORD_SIZE: u32 = 60 * 1024 * 1024;
/// The smallest explicit record size limit (1 KiB).
pub const MIN_RECORD_SIZE: u32 = 1024;
/// The default presence lifetime, in seconds.
pub const DEFAULT_PRESENCE_LIFETIME_SECS: u32 = 300;

/// A graph's properties (`PEER_GRAPH_PROPERTIES`), as given to `create`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GraphProperties {
    /// The graph's id, shared by every node.
    pub graph_id: GraphId,
    /// The creating node's peer id (also this node's peer id).
    pub creator_id: PeerId,
    /// A friendly name, at most 256 characters.
    pub friendly_name: String,
    /// A comment, at most 512 characters.
    pub comment: String,
    /// The scope the graph listens in.
    pub scope: Scope,
    /// The largest record, in bytes: 0 for the 60 MB default, else 1 KiB to 60 MB.
    pub max_record_size: u32,
    /// How long a node's presence lives, in seconds (0 for the 300 s default).
    pub presence_lifetime: u32,
    /// The most nodes that publish presence (0 for no limit).
    pub presence_max: u32,
}

impl GraphProperties {
    /// Properties for graph `graph_id` created by peer `creator_id`, everything else default.
    pub fn new(graph_id: GraphId, creator_id: PeerId) -> Self {
        GraphProperties {
            graph_id,
            creator_id,
            friendly_name: String::new(),
            comment: String::new(),
            scope: Scope::Any,
            max_record_size: 0,
            presence_lifetime: 0,
            presence_max: 0,
        }
    }

    /// Sets the friendly name.
    pub fn with_friendly_name(mut self, friendly_name: impl Into<String>) -> Self {
        self.friendly_name = friendly_name.into();
        self
    }

    /// Sets the scope.
    pub fn with_scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// Sets the largest record size.
    pub fn with_max_record_size(mut self, max_record_size: u32) -> Self {
        self.max_record_size = max_record_size;
        self
    }

    /// Checks every field against its documented range.
    ///
    /// # Errors
    /// `E_INVALIDARG` when the friendly name passes 256 characters, the comment 512, or
    /// `max_record_size` is neither 0 nor within 1 KiB..=60 MB.
    pub fn validate(&self) -> Result<(), PeerError> {
        check_text(&self.friendly_name, MAX_ID_CHARS)?;
        check_text(&self.comment, MAX_COMMENT_CHARS)?;
        if self.max_record_size != 0
            && !(MIN_RECORD_SIZE..=MAX_RECORD_SIZE).contains(&self.max_record_size)
        {
            return Err(PeerError::INVALID_ARG);
        }
        Ok(())
    }

    /// The record size limit in force: `max_record_size`, or 60 MB when it is 0.
    pub fn effective_max_record_size(&self) -> u32 {
        if self.max_record_size == 0 {
            MAX_RECORD_SIZE
        } else {
            self.max_record_size
        }
    }
}

/// A graph's status (`PEER_GRAPH_STATUS_FLAGS`): a set of the flags below.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct GraphStatus(pub u32);

impl GraphStatus {
    /// The graph listens for incoming connections.
    pub const LISTENING: GraphStatus = GraphStatus(0x1);
    /// The graph has at least one connection.
    pub const HAS_CONNECTIONS: GraphStatus = GraphStatus(0x2);
    /// The node has synchronized with the graph (a creator always has).
    pub const SYNCHRONIZED: GraphStatus = GraphStatus(0x4);

    /// True when every flag of `other` is set.
    pub const fn contains(self, other: GraphStatus) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets or clears the flags of `other`.
    pub fn set(&mut self, other: GraphStatus, on: bool) {
        if on {
            self.0 |= other.0;
        } else {
            self.0 &= !other.0;
        }
    }
}

impl fmt::Debug for GraphStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (GraphStatus::LISTENING, "LISTENING"),
            (GraphStatus::HAS_CONNECTIONS, "HAS_CONNECTIONS"),
            (GraphStatus::SYNCHRONIZED, "SYNCHRONIZED"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(flag, _)| self.contains(*flag))
            .map(|(_, name)| *name)
            .collect();
        if set.is_empty() {
            f.write_str("0")
        } else {
            f.write_str(&set.join(" | "))
        }
    }
}

/// Which connections an enumeration covers (`PEER_CONNECTION_FLAGS`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ConnectionFlags(pub u32);

impl ConnectionFlags {
    /// Neighbor connections (part of the graph mesh).
    pub const NEIGHBOR: ConnectionFlags = ConnectionFlags(0x1);
    /// Direct connections (private point-to-point links).
    pub const DIRECT: ConnectionFlags = ConnectionFlags(0x2);
    /// Both kinds.
    pub const ALL: ConnectionFlags = ConnectionFlags(0x3);

    /// True when any flag of `other` is set.
    pub const fn intersects(self, other: ConnectionFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Checks an enumeration's flags: at least one known flag and no unknown bits.
    ///
    /// # Errors
    /// `E_INVALIDARG` for 0 or for bits beyond NEIGHBOR | DIRECT.
    pub fn validate(self) -> Result<(), PeerError> {
        if self.0 == 0 || self.0 & !Self::ALL.0 != 0 {
            return Err(PeerError::INVALID_ARG);
        }
        Ok(())
    }
}

impl fmt::Debug for ConnectionFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0x1 => f.write_str("NEIGHBOR"),
            0x2 => f.write_str("DIRECT"),
            0x3 => f.write_str("NEIGHBOR | DIRECT"),
            other => write!(f, "ConnectionFlags({other:#x})"),
        }
    }
}

/// One connection, as `EnumConnections` reports it (`PEER_CONNECTION_INFO`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ConnectionInfo {
    /// NEIGHBOR or DIRECT.
    pub flags: ConnectionFlags,
    /// The connection's id.
    pub connection_id: ConnectionId,
    /// The remote node's id (bound to its verified key).
    pub node_id: NodeId,
    /// The remote node's verified key fingerprint.
    pub peer_key: PeerKey,
    /// The remote node's peer id.
    pub peer_id: PeerId,
    /// The remote node's address.
    pub address: SocketAddr,
}

/// A node, as `GetNodeInfo` reports it (`PEER_NODE_INFO`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NodeInfo {
    /// The node's id.
    pub node_id: NodeId,
    /// The node's peer id.
    pub peer_id: PeerId,
    /// The addresses the node listens on (empty when it does not listen).
    pub addresses: Vec<SocketAddr>,
    /// The node's attributes string.
    pub attributes: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn properties() -> GraphProperties {
        GraphProperties::new(
            GraphId::new("graph").expect("valid"),
            PeerId::new("alice").expect("valid"),
        )
    }

    #[test]
    fn version_negotiation() {
        let data = negotiate_version(Version::V1_0).expect("1.0 is supported");
        assert_eq!(data.version, Version::V1_0);
        assert_eq!(data.highest_version, Version::V1_0);
        assert_eq!(
            negotiate_version(Version::new(2, 0)).map(|d| d.version),
            Ok(Version::V1_0)
        );
        assert_eq!(
            negotiate_version(Version::new(0, 9)).map_err(|e| e.code()),
            Err(ResultCode::PEER_E_UNSUPPORTED_VERSION)
        );
        assert_eq!(Version::V1_0.to_word(), 0x0001);
    }

    #[test]
    fn properties_are_checked() {
        assert!(properties().validate().is_ok());
        assert!(properties()
            .with_friendly_name("x".repeat(257))
            .validate()
            .is_err());
        let mut long_comment = properties();
        long_comment.comment = "c".repeat(513);
        assert!(long_comment.validate().is_err());
        assert!(properties().with_max_record_size(1023).validate().is_err());
        assert!(properties().with_max_record_size(1024).validate().is_ok());
        assert!(properties()
            .with_max_record_size(MAX_RECORD_SIZE + 1)
            .validate()
            .is_err());
        assert_eq!(properties().effective_max_record_size(), MAX_RECORD_SIZE);
    }

    #[test]
    fn connection_flags_are_checked() {
        assert!(ConnectionFlags::DIRECT.validate().is_ok());
        assert!(ConnectionFlags::ALL.validate().is_ok());
        assert!(ConnectionFlags(0).validate().is_err());
        assert!(ConnectionFlags(0x4).validate().is_err());
    }

    #[test]
    fn status_flags() {
        let mut status = GraphStatus::SYNCHRONIZED;
        status.set(GraphStatus::LISTENING, true);
        assert!(status.contains(GraphStatus::LISTENING));
        assert_eq!(format!("{status:?}"), "LISTENING | SYNCHRONIZED");
        status.set(GraphStatus::LISTENING, false);
        assert_eq!(status, GraphStatus::SYNCHRONIZED);
    }
}
