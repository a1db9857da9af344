//! What both sides store and look for: the same records (a 1 KiB payload and three
//! attributes) and the same three-clause searches, made from an index so that every run
//! and both sides see the same content.
//!
//! Record `i` has
//! - `name` (string): `user-NNN`, one of [`NAMES`] values;
//! - `level` (int): spread over 0 to 999;
//! - `seen` (date): one of 10,000 seconds after 2026-01-01T00:00:00Z;
//! - a payload of [`DATA_LEN`] pseudo-random bytes (another for each version).
//!
//! Search `q` asks for one name, `level >= 500` and `seen` before the middle of the
//! range: about a quarter of that name's records, 25 of 10,000.

use std::time::{Duration, SystemTime};

use anyhow::anyhow;
use peergraph_engine::GraphTime;

/// Bytes of every record's payload.
pub const DATA_LEN: usize = 1024;
/// Distinct values of the `name` attribute.
pub const NAMES: usize = 100;
/// Distinct values of `seen`, one second apart.
const SEEN_SPREAD: u64 = 10_000;
/// 100 ns ticks in a second.
const TICKS_PER_SECOND: u64 = 10_000_000;
/// How long the records live: long enough that none expires during a run.
const LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// The fields of record `i` as an application has them before it calls either store.
#[derive(Clone, Debug)]
pub struct RecordContent {
    /// The `name` attribute.
    pub name: String,
    /// The `level` attribute.
    pub level: i64,
    /// The `seen` attribute.
    pub seen: GraphTime,
    /// The three attributes as peergraph's attribute XML (SQLite keeps it too).
    pub attributes_xml: String,
    /// The payload.
    pub data: Vec<u8>,
    /// When it expires.
    pub expiration: GraphTime,
}

/// One three-clause search.
#[derive(Clone, Debug)]
pub struct Query {
    /// `name` equals this.
    pub name: String,
    /// `level` is at least this.
    pub min_level: i64,
    /// `seen` is before this.
    pub seen_before: GraphTime,
}

impl Query {
    /// The search as peergraph's search XML.
    pub fn to_xml(&self) -> String {
        format!(
            "<peersearch><and>\
             <clause attrib=\"name\" type=\"string\" compare=\"equal\">{}</clause>\
             <clause attrib=\"level\" type=\"int\" compare=\"greaterorequal\">{}</clause>\
             <clause attrib=\"seen\" type=\"date\" compare=\"less\">{}</clause>\
             </and></peersearch>",
            self.name, self.min_level, self.seen_before
        )
    }
}

/// The generator of every record and search of a run, and the times they carry.
#[derive(Clone, Debug)]
pub struct Content {
    /// 2026-01-01T00:00:00Z, where `seen` values start.
    seen_base: GraphTime,
    /// When every record expires.
    expiration: GraphTime,
}

impl Content {
    /// The content of a run that starts now.
    ///
    /// # Errors
    /// When the clock is outside graph time's range.
    pub fn new() -> anyhow::Result<Content> {
        let seen_base =
            GraphTime::parse_date("2026-01-01T00:00:00Z").ok_or(anyhow!("bad base date"))?;
        let expiration = GraphTime::from_system_time(SystemTime::now() + LIFETIME)
            .map_err(|error| anyhow!("no graph time: {error}"))?;
        Ok(Content {
            seen_base,
            expiration,
        })
    }

    /// Record `i`, version 1.
    pub fn record(&self, i: usize) -> RecordContent {
        let name = format!("user-{:03}", i % NAMES);
        let level = (i.wrapping_mul(7919) % 1000) as i64;
        let seen = self.seen(i.wrapping_mul(37) as u64 % SEEN_SPREAD);
        let attributes_xml = format!(
            "<attributes>\
             <attribute name=\"name\" type=\"string\">{name}</attribute>\
             <attribute name=\"level\" type=\"int\">{level}</attribute>\
             <attribute name=\"seen\" type=\"date\">{seen}</attribute>\
             </attributes>"
        );
        RecordContent {
            name,
            level,
            seen,
            attributes_xml,
            data: payload(i, 1),
            expiration: self.expiration,
        }
    }

    /// Search `q`.
    pub fn query(&self, q: usize) -> Query {
        Query {
            name: format!("user-{:03}", q.wrapping_mul(37) % NAMES),
            min_level: 500,
            seen_before: self.seen(SEEN_SPREAD / 2),
        }
    }

    fn seen(&self, seconds: u64) -> GraphTime {
        GraphTime::from_ticks(self.seen_base.ticks() + seconds * TICKS_PER_SECOND)
    }
}

/// The payload of record `i` at `version`: [`DATA_LEN`] bytes of a xorshift stream, so
/// that no layer can compress it away.
pub fn payload(i: usize, version: u32) -> Vec<u8> {
    // Never 0, where xorshift would stay.
    let mut state = splitmix(((i as u64) << 16) ^ u64::from(version)) | 1;
    let mut data = Vec::with_capacity(DATA_LEN);
    while data.len() < DATA_LEN {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(DATA_LEN);
    data
}

/// 16 bytes derived from `seed`: the ids SQLite's side gives its records (peergraph's
/// side draws its own).
pub fn id_bytes(seed: u64) -> [u8; 16] {
    let high = splitmix(seed);
    let low = splitmix(high ^ seed);
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(&high.to_le_bytes());
    bytes[8..].copy_from_slice(&low.to_le_bytes());
    bytes
}

/// SplitMix64's step: a well-mixed 64-bit value from any seed.
fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use peergraph_engine::{Attributes, Search};

    #[test]
    fn records_and_searches_parse() {
        let content = Content::new().expect("content");
        let record = content.record(12_345);
        let attributes = Attributes::parse(&record.attributes_xml).expect("attributes");
        assert_eq!(attributes.len(), 3);
        assert_eq!(record.data.len(), DATA_LEN);
        assert_ne!(record.data, payload(12_345, 2));
        Search::parse(&content.query(3).to_xml()).expect("search");
    }
}
