//! Records and the graph database: the record model and its rules, attributes, graph
//! time, the search language, and the store interface with an in-memory store.
//!
//! - `id`: [`RecordId`], [`RecordType`].
//! - `time`: [`GraphTime`].
//! - `attributes`: [`Attributes`] and their XML.
//! - `model`: [`Record`], its life (create, update, delete, refresh, expiry) and the
//!   conflict order; `codec`: its versioned binary form.
//! - `search`: [`Search`], the `SearchRecords` language, and its evaluator; `pattern`:
//!   string wildcards.
//! - `index`: the attribute index's keys ([`attribute_key`]) and search plans
//!   ([`IndexScan`]).
//! - `store`: the [`RecordStore`] interface and [`MemoryStore`].
//! - `security`: [`RecordSecurity`], the validate and secure callbacks.
//! - `xml`: the bounded element tree the attribute and search parsers share.

mod attributes;
mod codec;
mod id;
mod index;
mod model;
mod pattern;
mod search;
mod security;
mod store;
mod time;
mod xml;

pub use self::attributes::{
    is_reserved_attribute, AttributeType, AttributeValue, Attributes, ATTRIBUTES_DEPTH,
    MAX_ATTRIBUTES, MAX_ATTRIBUTES_BYTES, MAX_ATTRIBUTE_NAME_CHARS, RESERVED_ATTRIBUTE_NAMES,
};
pub use self::codec::RECORD_FORMAT_VERSION;
pub use self::id::{RecordId, RecordType};
pub use self::index::{attribute_key, IndexScan};
pub use self::model::{
    conflict_order, NewRecord, Record, RecordFlags, RecordParts, RecordUpdate,
    AUTOREFRESH_MIN_LIFETIME,
};
pub use self::pattern::{Pattern, PatternToken};
pub use self::search::{
    Clause, ClauseValue, Compare, Criterion, Search, MAX_SEARCH_BYTES, MAX_SEARCH_DEPTH,
    MAX_SEARCH_ELEMENTS,
};
pub use self::security::{RecordSecurity, SecureRecord, ValidateRecord, Verdict};
pub use self::store::{
    Due, GraphMetadata, MemoryStore, RecordFilter, RecordStore, WriteCompletion, WriteOp,
};
pub use self::time::GraphTime;

/// The record builders the record tests share, for the tests elsewhere in the crate.
#[cfg(test)]
pub(crate) use self::model::tests as model_tests;
