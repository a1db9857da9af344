//! Feeds the input, as text, to `Search::parse`. It must never panic, and a search it
//! accepts is evaluated against a record with attributes of every type (and the reserved
//! ones), which must not panic either.

#![no_main]

use libfuzzer_sys::fuzz_target;
use peergraph_engine::{
    AttributeValue, Attributes, GraphTime, NewRecord, PeerId, Record, RecordId, RecordType,
    Search, MAX_RECORD_SIZE,
};

fn record() -> Option<Record> {
    let attributes = Attributes::new()
        .with("nick", AttributeValue::String("al*ce?\\".into()))
        .and_then(|a| a.with("level", AttributeValue::Int(-3)))
        .and_then(|a| a.with("joined", AttributeValue::Date(GraphTime::from_ticks(1 << 56))))
        .ok()?;
    let new = NewRecord {
        record_type: RecordType::from_u128(7).ok()?,
        attributes,
        expiration: GraphTime::from_ticks(1 << 57),
        autorefresh: false,
        data: Vec::new(),
    };
    Record::create(
        new,
        RecordId::from_u128(9).ok()?,
        PeerId::new("alice").ok()?,
        GraphTime::from_ticks(1 << 56),
        MAX_RECORD_SIZE,
    )
    .ok()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let (Ok(search), Some(record)) = (Search::parse(text), record()) {
        let _ = search.matches(&record);
    }
});
