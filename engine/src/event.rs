//! Events a graph reports (`PEER_GRAPH_EVENT_DATA`) and the registrations that select them.

use bytes::Bytes;

use crate::graph::GraphStatus;
use crate::ids::{ConnectionId, DataType, NodeId, PeerId};
use crate::record::{RecordId, RecordType};
use crate::result::PeerError;

/// The documented event types (`PEER_GRAPH_EVENT_TYPE`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u32)]
pub enum EventType {
    /// The graph's status flags changed.
    StatusChanged = 1,
    /// A graph property changed.
    PropertyChanged = 2,
    /// A record was added, updated, deleted or expired.
    RecordChanged = 3,
    /// A direct connection was made, failed, or ended.
    DirectConnection = 4,
    /// A neighbor connection was made, failed, or ended.
    NeighborConnection = 5,
    /// Application data arrived.
    IncomingData = 6,
    /// The graph needs a new neighbor connection.
    ConnectionRequired = 7,
    /// A node's presence changed.
    NodeChanged = 8,
    /// The node synchronized with the graph.
    Synchronized = 9,
}

impl EventType {
    /// The type for its documented number.
    ///
    /// # Errors
    /// `E_INVALIDARG` for a number outside 1..=9.
    pub fn from_value(value: u32) -> Result<Self, PeerError> {
        Ok(match value {
            1 => EventType::StatusChanged,
            2 => EventType::PropertyChanged,
            3 => EventType::RecordChanged,
            4 => EventType::DirectConnection,
            5 => EventType::NeighborConnection,
            6 => EventType::IncomingData,
            7 => EventType::ConnectionRequired,
            8 => EventType::NodeChanged,
            9 => EventType::Synchronized,
            _ => return Err(PeerError::INVALID_ARG),
        })
    }
}

/// The state a connection event reports (`PEER_CONNECTION_STATUS`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u32)]
pub enum ConnectionStatus {
    /// The connection is up.
    Connected = 1,
    /// The connection ended.
    Disconnected = 2,
    /// The connection could not be made.
    ConnectionFailed = 3,
}

/// What happened to a record (`PEER_RECORD_CHANGE_TYPE`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u32)]
pub enum RecordChangeType {
    /// The record was added.
    Added = 1,
    /// The record was updated (by a call, or renewed by AUTOREFRESH).
    Updated = 2,
    /// The record was deleted.
    Deleted = 3,
    /// The record reached its expiration time and left the database.
    Expired = 4,
}

/// A change in a connection (`PEER_EVENT_CONNECTION_CHANGE_DATA`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ConnectionChange {
    /// CONNECTED, DISCONNECTED or CONNECTION_FAILED.
    pub status: ConnectionStatus,
    /// The connection's id (the same on both ends of a direct connection).
    pub connection_id: ConnectionId,
    /// The remote node's id, once its key is known: `None` for an attempt that failed
    /// before the node was reached.
    pub node_id: Option<NodeId>,
    /// The remote peer's id.
    pub peer_id: PeerId,
    /// For CONNECTION_FAILED: why, as a code (PEER_E_CONNECTION_REFUSED,
    /// PEER_E_CONNECTION_FAILED, PEER_E_CONNECTION_NOT_AUTHENTICATED,
    /// PEER_E_NOT_AUTHORIZED) with its cause ("peer id mismatch: asked for bob, the node
    /// presented carol", "no answer within 10s", ...); otherwise `None`.
    pub failure_reason: Option<PeerError>,
}

/// Something that happened in a graph, delivered to the registrations that asked for it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum GraphEvent {
    /// STATUS_CHANGED: the graph's status is now `status`.
    StatusChanged {
        /// The new status flags.
        status: GraphStatus,
    },
    /// PROPERTY_CHANGED: the graph's properties changed (read them with GetProperties).
    PropertyChanged,
    /// RECORD_CHANGED (`PEER_EVENT_RECORD_CHANGE_DATA`): a record changed, by a call of
    /// this node or (later) by a neighbor. Raised once the change is durable.
    RecordChanged {
        /// ADDED, UPDATED, DELETED or EXPIRED.
        change_type: RecordChangeType,
        /// The record's id.
        record_id: RecordId,
        /// The record's type.
        record_type: RecordType,
    },
    /// DIRECT_CONNECTION: a direct connection changed. Boxed: it is the largest event and
    /// the rarest on a busy link, and every event is as large as the largest variant, so
    /// inline it would make each INCOMING_DATA event 88 bytes to build and move instead of
    /// 64.
    DirectConnection(Box<ConnectionChange>),
    /// INCOMING_DATA (`PEER_EVENT_INCOMING_DATA`): application data arrived.
    IncomingData {
        /// The connection it arrived on.
        connection_id: ConnectionId,
        /// The type the sender gave it.
        data_type: DataType,
        /// The bytes.
        data: Bytes,
    },
    /// Not a documented event: this registration's queue was full and `count` events
    /// were dropped just before the next one. Delivered once per loss, in order.
    EventsLost {
        /// How many events were dropped.
        count: u64,
    },
}

impl GraphEvent {
    /// The documented type of this event; `None` for [`GraphEvent::EventsLost`], which is
    /// delivered to every registration that lost events.
    pub fn event_type(&self) -> Option<EventType> {
        match self {
            GraphEvent::StatusChanged { .. } => Some(EventType::StatusChanged),
            GraphEvent::PropertyChanged => Some(EventType::PropertyChanged),
            GraphEvent::RecordChanged { .. } => Some(EventType::RecordChanged),
            GraphEvent::DirectConnection(_) => Some(EventType::DirectConnection),
            GraphEvent::IncomingData { .. } => Some(EventType::IncomingData),
            GraphEvent::EventsLost { .. } => None,
        }
    }

    /// How many bytes of payload the event holds (for queue accounting).
    pub fn payload_len(&self) -> usize {
        match self {
            GraphEvent::IncomingData { data, .. } => data.len(),
            _ => 0,
        }
    }
}

/// One entry of a registration (`PEER_GRAPH_EVENT_REGISTRATION`): an event type and, for
/// INCOMING_DATA, an optional data type to filter on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EventRegistration {
    /// The event type wanted.
    pub event_type: EventType,
    /// For INCOMING_DATA: only data of this type. Ignored for other types.
    pub data_type: Option<DataType>,
}

impl EventRegistration {
    /// A registration for every event of `event_type`.
    pub const fn new(event_type: EventType) -> Self {
        EventRegistration {
            event_type,
            data_type: None,
        }
    }

    /// A registration for INCOMING_DATA of one data type only.
    pub const fn incoming_data(data_type: DataType) -> Self {
        EventRegistration {
            event_type: EventType::IncomingData,
            data_type: Some(data_type),
        }
    }
}

/// A set of registrations: decides which events one subscriber receives.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct EventFilter {
    registrations: Vec<EventRegistration>,
}

impl EventFilter {
    /// A filter for `registrations`.
    ///
    /// # Errors
    /// `E_INVALIDARG` when `registrations` is empty.
    pub fn new(registrations: Vec<EventRegistration>) -> Result<Self, PeerError> {
        if registrations.is_empty() {
            return Err(PeerError::INVALID_ARG);
        }
        Ok(EventFilter { registrations })
    }

    /// The registrations.
    pub fn registrations(&self) -> &[EventRegistration] {
        &self.registrations
    }

    /// True when the filter asks for events of `event_type` at all.
    pub fn wants_type(&self, event_type: EventType) -> bool {
        self.registrations
            .iter()
            .any(|registration| registration.event_type == event_type)
    }

    /// True when INCOMING_DATA of `data_type` passes the filter: what
    /// [`accepts`](Self::accepts) answers for such an event, without one.
    pub fn accepts_data(&self, data_type: DataType) -> bool {
        self.registrations.iter().any(|registration| {
            registration.event_type == EventType::IncomingData
                && registration
                    .data_type
                    .is_none_or(|wanted| wanted == data_type)
        })
    }

    /// True when `event` passes the filter.
    pub fn accepts(&self, event: &GraphEvent) -> bool {
        let Some(event_type) = event.event_type() else {
            return true;
        };
        self.registrations.iter().any(|registration| {
            registration.event_type == event_type
                && match (event, registration.data_type) {
                    (GraphEvent::IncomingData { data_type, .. }, Some(wanted)) => {
                        *data_type == wanted
                    }
                    _ => true,
                }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(data_type: DataType) -> GraphEvent {
        GraphEvent::IncomingData {
            connection_id: ConnectionId::new(1).expect("nonzero"),
            data_type,
            data: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn event_types_have_documented_values() {
        for value in 1..=9 {
            assert_eq!(EventType::from_value(value).map(|t| t as u32), Ok(value));
        }
        assert!(EventType::from_value(0).is_err());
        assert!(EventType::from_value(10).is_err());
        assert_eq!(ConnectionStatus::Disconnected as u32, 2);
    }

    #[test]
    fn filter_honours_data_type() {
        let wanted = DataType::from_u128(1);
        let filter =
            EventFilter::new(vec![EventRegistration::incoming_data(wanted)]).expect("not empty");
        assert!(filter.accepts(&data(wanted)));
        assert!(!filter.accepts(&data(DataType::from_u128(2))));
        assert!(!filter.accepts(&GraphEvent::StatusChanged {
            status: GraphStatus::LISTENING
        }));
        assert!(filter.accepts(&GraphEvent::EventsLost { count: 1 }));
        assert!(EventFilter::new(Vec::new()).is_err());
    }

    /// Every event is as large as the largest variant, and INCOMING_DATA events are built
    /// and moved once per message: the rare, large connection change is boxed so that
    /// they stay at 64 bytes.
    #[test]
    fn an_event_takes_64_bytes() {
        assert!(std::mem::size_of::<GraphEvent>() <= 64);
    }
}
