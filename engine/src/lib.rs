//! The core of peergraph, with no I/O: identifiers, the documented result codes, events,
//! the wire messages and their codec, and the rules that check a graph's data.
//!
//! Nothing here touches a socket, a clock or a runtime, so all of it is tested in
//! isolation and reused unchanged by the transport and actor crates.
//!
//! # Layout
//! - `result`: the result code table ([`ResultCode`]) and the error type ([`PeerError`]).
//! - `ids`: [`ConnectionId`], [`GraphHandle`], [`NodeId`], [`PeerId`], [`GraphId`],
//!   [`DataType`].
//! - `graph`: version data, [`GraphProperties`], [`GraphStatus`], [`ConnectionInfo`],
//!   [`NodeInfo`].
//! - `event`: [`GraphEvent`] and the registrations that select events.
//! - [`wire`]: frames, their encoder and their one decoder ([`wire::FrameDecoder`]),
//!   reasons, close codes and size limits.
//! - [`graph_core`]: the rules of a graph and its links, as state machines driven with
//!   inputs and time: admission, the connection table, status and events
//!   ([`GraphCore`]), and each link's close ([`LinkMachine`]).
//! - `record`: records and the graph database: [`Record`] and its rules, [`Attributes`],
//!   [`GraphTime`], the search language, and the store interface.
//! - `ticket`: [`Ticket`], one string with a node's peer id, key and addresses.

mod event;
mod graph;
pub mod graph_core;
mod ids;
mod record;
mod result;
mod ticket;
pub mod wire;

pub use crate::event::{
    ConnectionChange, ConnectionStatus, EventFilter, EventRegistration, EventType, GraphEvent,
    RecordChangeType,
};
pub use crate::graph::{
    negotiate_version, ConnectionFlags, ConnectionInfo, GraphProperties, GraphStatus, NodeInfo,
    Scope, Version, VersionData, DEFAULT_PRESENCE_LIFETIME_SECS, MAX_COMMENT_CHARS,
    MAX_RECORD_SIZE, MIN_RECORD_SIZE,
};
pub use crate::graph_core::{GraphCore, LinkMachine};
pub use crate::ids::{
    check_text, ConnectionId, DataType, GraphHandle, GraphId, NodeId, PeerId, PeerKey, MAX_ID_CHARS,
};
pub use crate::record::{
    attribute_key, conflict_order, is_reserved_attribute, AttributeType, AttributeValue,
    Attributes, Clause, ClauseValue, Compare, Criterion, Due, GraphMetadata, GraphTime, IndexScan,
    MemoryStore, NewRecord, Pattern, PatternToken, Record, RecordFilter, RecordFlags, RecordId,
    RecordParts, RecordSecurity, RecordStore, RecordType, RecordUpdate, Search, SecureRecord,
    ValidateRecord, Verdict, WriteCompletion, WriteOp, ATTRIBUTES_DEPTH, AUTOREFRESH_MIN_LIFETIME,
    MAX_ATTRIBUTES, MAX_ATTRIBUTES_BYTES, MAX_ATTRIBUTE_NAME_CHARS, MAX_SEARCH_BYTES,
    MAX_SEARCH_DEPTH, MAX_SEARCH_ELEMENTS, RECORD_FORMAT_VERSION, RESERVED_ATTRIBUTE_NAMES,
};
pub use crate::result::{code_of, PeerError, PeerResult, ResultCode};
pub use crate::ticket::{
    Ticket, TicketError, MAX_TICKET_ADDRESSES, MAX_TICKET_CHARS, TICKET_PREFIX,
};
