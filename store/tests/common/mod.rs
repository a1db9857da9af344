//! Helpers shared by the store's integration tests.

#![allow(dead_code)]

use peergraph_engine::{
    AttributeValue, Attributes, GraphId, GraphTime, NewRecord, PeerId, Record, RecordId,
    RecordType, MAX_RECORD_SIZE,
};
use peergraph_store::DatabaseId;

/// Ten minutes in graph-time ticks.
pub const TEN_MINUTES: u64 = 10 * 60 * 10_000_000;

pub fn peer(name: &str) -> PeerId {
    PeerId::new(name).expect("valid peer id")
}

pub fn database_id(name: &str) -> DatabaseId {
    DatabaseId::new(GraphId::new("graph").expect("valid"), peer("alice"), name)
        .expect("valid database id")
}

/// Record `id` of type `kind` created by `creator`, with `size` bytes of data.
pub fn record(id: u128, kind: u128, creator: &str, size: usize) -> Record {
    let new = NewRecord {
        record_type: RecordType::from_u128(kind).expect("non-nil"),
        attributes: Attributes::new()
            .with("n", AttributeValue::Int(id as i64))
            .expect("valid"),
        expiration: GraphTime::from_ticks(2 * TEN_MINUTES),
        autorefresh: false,
        data: vec![(id % 251) as u8; size],
    };
    Record::create(
        new,
        RecordId::from_u128(id).expect("non-nil"),
        peer(creator),
        GraphTime::from_ticks(TEN_MINUTES),
        MAX_RECORD_SIZE,
    )
    .expect("valid record")
}
