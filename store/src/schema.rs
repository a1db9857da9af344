//! The database file's layout: its tables, its format version, and the encoding of the
//! graph metadata.
//!
//! | table | key | value |
//! |---|---|---|
//! | `records` | record id (16 bytes) | the record's binary form (the engine's `Record::encode`) |
//! | `records_by_type` (multimap) | record type (16 bytes) | record ids |
//! | `records_by_creator` (multimap) | creator peer id | record ids |
//! | `records_by_expiry` | `due_key`: expiration ticks (u64 big-endian), record id | nothing (`()`) |
//! | `refresh_by_expiry` | `due_key` | creator peer id |
//! | `records_by_attribute` (multimap) | the engine's `attribute_key`: name, 0, type tag, value in byte order | record ids |
//! | `held` | record id (16 bytes) | the held record's binary form |
//! | `meta` | a name below | bytes |
//!
//! `records_by_expiry` holds one entry per record of `records`, tombstones included: the
//! engine's `Due::Expiry`. `refresh_by_expiry` holds one entry per live (not DELETED)
//! AUTOREFRESH record of `records`, valued by its creator, so that `Due::Refresh` for one
//! creator filters without decoding records: the engine's `Due::Refresh`. Both sort by
//! expiration time, then by id, the order `RecordStore::due` answers in. `held` keeps the
//! records whose validation was deferred (`WriteOp::Hold`), apart from `records` and
//! from every index. `records_by_attribute` holds one entry per application attribute of
//! each record in `records` (tombstones have none), so that `SearchRecords` reads only
//! the records in the ranges its plan names (`RecordStore::scan_index`).
//!
//! `meta` holds `format` ([`STORE_FORMAT_VERSION`], one byte), the identity the file
//! belongs to (`graph_id`, `peer_id`, `database_name`, UTF-8) and `metadata` (the graph
//! metadata, encoded below).

use peergraph_engine::{
    GraphId, GraphMetadata, GraphProperties, GraphTime, PeerId, ResultCode, Scope,
};
use redb::{MultimapTableDefinition, TableDefinition};

use crate::error::StoreError;

/// The layout version this crate writes and reads: 2, with the held records and the time
/// indexes. Another value is refused with `PEER_E_INVALID_DATABASE`; a new layout comes
/// with a conversion (version 1, without them, was never released, so none reads it).
pub const STORE_FORMAT_VERSION: u8 = 2;

pub(crate) const RECORDS: TableDefinition<'_, &[u8; 16], &[u8]> = TableDefinition::new("records");
pub(crate) const BY_TYPE: MultimapTableDefinition<'_, &[u8; 16], &[u8; 16]> =
    MultimapTableDefinition::new("records_by_type");
pub(crate) const BY_CREATOR: MultimapTableDefinition<'_, &str, &[u8; 16]> =
    MultimapTableDefinition::new("records_by_creator");
pub(crate) const BY_EXPIRY: TableDefinition<'_, &[u8; DUE_KEY_LEN], ()> =
    TableDefinition::new("records_by_expiry");
pub(crate) const REFRESH_BY_EXPIRY: TableDefinition<'_, &[u8; DUE_KEY_LEN], &str> =
    TableDefinition::new("refresh_by_expiry");
pub(crate) const BY_ATTRIBUTE: MultimapTableDefinition<'_, &[u8], &[u8; 16]> =
    MultimapTableDefinition::new("records_by_attribute");
pub(crate) const HELD: TableDefinition<'_, &[u8; 16], &[u8]> = TableDefinition::new("held");
pub(crate) const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");

/// The length of a time index key: 8 bytes of ticks and 16 of record id.
pub(crate) const DUE_KEY_LEN: usize = 24;

/// The key of a record in the time indexes: its expiration ticks big-endian, then its id,
/// so that byte order is expiration order, then id order.
pub(crate) fn due_key(expiration: GraphTime, id: &[u8; 16]) -> [u8; DUE_KEY_LEN] {
    let mut key = [0u8; DUE_KEY_LEN];
    key[..8].copy_from_slice(&expiration.ticks().to_be_bytes());
    key[8..].copy_from_slice(id);
    key
}

/// The expiration time and record id a time index key holds.
pub(crate) fn split_due_key(key: &[u8; DUE_KEY_LEN]) -> (GraphTime, [u8; 16]) {
    let mut ticks = [0u8; 8];
    ticks.copy_from_slice(&key[..8]);
    let mut id = [0u8; 16];
    id.copy_from_slice(&key[8..]);
    (GraphTime::from_ticks(u64::from_be_bytes(ticks)), id)
}

pub(crate) const KEY_FORMAT: &str = "format";
pub(crate) const KEY_GRAPH_ID: &str = "graph_id";
pub(crate) const KEY_PEER_ID: &str = "peer_id";
pub(crate) const KEY_DATABASE_NAME: &str = "database_name";
pub(crate) const KEY_METADATA: &str = "metadata";

/// The version byte that starts the metadata encoding.
const METADATA_VERSION: u8 = 1;

fn damaged() -> StoreError {
    StoreError::new(ResultCode::PEER_E_INVALID_DATABASE)
}

/// Encodes graph metadata: version byte, synchronized flag, an optional last-connected
/// time (flag + u64) and optional properties (flag + fields, strings as u16 length and
/// UTF-8), big-endian.
pub(crate) fn encode_metadata(metadata: &GraphMetadata) -> Vec<u8> {
    let mut out = vec![METADATA_VERSION, u8::from(metadata.synchronized)];
    match metadata.last_connected {
        Some(time) => {
            out.push(1);
            out.extend_from_slice(&time.ticks().to_be_bytes());
        }
        None => out.push(0),
    }
    match &metadata.properties {
        Some(properties) => {
            out.push(1);
            for text in [
                properties.graph_id.as_str(),
                properties.creator_id.as_str(),
                &properties.friendly_name,
                &properties.comment,
            ] {
                // Ids and names are at most 256 characters, comments 512: well under u16.
                out.extend_from_slice(&(text.len() as u16).to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
            for number in [
                properties.scope as u32,
                properties.max_record_size,
                properties.presence_lifetime,
                properties.presence_max,
            ] {
                out.extend_from_slice(&number.to_be_bytes());
            }
        }
        None => out.push(0),
    }
    out
}

/// Reads what [`encode_metadata`] wrote.
pub(crate) fn decode_metadata(mut bytes: &[u8]) -> Result<GraphMetadata, StoreError> {
    let bytes = &mut bytes;
    if take::<1>(bytes)? != [METADATA_VERSION] {
        return Err(damaged());
    }
    let synchronized = flag(bytes)?;
    let last_connected = if flag(bytes)? {
        Some(GraphTime::from_ticks(u64::from_be_bytes(take::<8>(bytes)?)))
    } else {
        None
    };
    let properties = if flag(bytes)? {
        let graph_id = GraphId::new(text(bytes)?).map_err(|_| damaged())?;
        let creator_id = PeerId::new(text(bytes)?).map_err(|_| damaged())?;
        let friendly_name = text(bytes)?;
        let comment = text(bytes)?;
        let scope = match u32::from_be_bytes(take::<4>(bytes)?) {
            0 => Scope::Any,
            1 => Scope::Global,
            2 => Scope::SiteLocal,
            3 => Scope::LinkLocal,
            4 => Scope::Loopback,
            _ => return Err(damaged()),
        };
        let mut properties = GraphProperties::new(graph_id, creator_id)
            .with_friendly_name(friendly_name)
            .with_scope(scope)
            .with_max_record_size(u32::from_be_bytes(take::<4>(bytes)?));
        properties.comment = comment;
        properties.presence_lifetime = u32::from_be_bytes(take::<4>(bytes)?);
        properties.presence_max = u32::from_be_bytes(take::<4>(bytes)?);
        properties.validate().map_err(|_| damaged())?;
        Some(properties)
    } else {
        None
    };
    if !bytes.is_empty() {
        return Err(damaged());
    }
    Ok(GraphMetadata {
        synchronized,
        last_connected,
        properties,
    })
}

fn take<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], StoreError> {
    let head = bytes.get(..N).ok_or_else(damaged)?;
    let mut array = [0u8; N];
    array.copy_from_slice(head);
    *bytes = &bytes[N..];
    Ok(array)
}

fn flag(bytes: &mut &[u8]) -> Result<bool, StoreError> {
    match take::<1>(bytes)? {
        [0] => Ok(false),
        [1] => Ok(true),
        _ => Err(damaged()),
    }
}

fn text(bytes: &mut &[u8]) -> Result<String, StoreError> {
    let len = u16::from_be_bytes(take::<2>(bytes)?) as usize;
    let head = bytes.get(..len).ok_or_else(damaged)?;
    let text = std::str::from_utf8(head).map_err(|_| damaged())?.to_owned();
    *bytes = &bytes[len..];
    Ok(text)
}

/// A table that may not exist yet in a fresh file: `None` then.
pub(crate) fn open_table<T>(table: Result<T, redb::TableError>) -> Result<Option<T>, StoreError> {
    match table {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(error) => Err(StoreError::storage(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips() {
        let mut properties = GraphProperties::new(
            GraphId::new("graph").expect("valid"),
            PeerId::new("alice").expect("valid"),
        )
        .with_friendly_name("Chat")
        .with_scope(Scope::LinkLocal)
        .with_max_record_size(4096);
        properties.comment = "a comment".into();
        properties.presence_lifetime = 60;
        properties.presence_max = 7;
        for metadata in [
            GraphMetadata::default(),
            GraphMetadata {
                synchronized: true,
                last_connected: Some(GraphTime::from_ticks(123)),
                properties: Some(properties),
            },
        ] {
            let bytes = encode_metadata(&metadata);
            assert_eq!(decode_metadata(&bytes).expect("valid"), metadata);
            for len in 0..bytes.len() {
                assert_eq!(
                    decode_metadata(&bytes[..len]).map_err(|e| e.code()).err(),
                    Some(ResultCode::PEER_E_INVALID_DATABASE)
                );
            }
        }
    }
}
