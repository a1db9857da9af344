//! The binary form of a record: what the store writes, what an export holds, what the
//! conflict order hashes, and what [`Record::check_size`] measures.
//!
//! Big-endian throughout, versioned by its first byte:
//!
//! ```text
//! format        u8   RECORD_FORMAT_VERSION (1)
//! record type   16   GUID bytes in written order
//! record id     16
//! version       u32
//! flags         u32
//! creator id    u16 byte length + UTF-8
//! modified by   u16 byte length + UTF-8
//! creation      u64  graph time
//! expiration    u64
//! last modified u64
//! attributes    u32 byte length + canonical attribute XML
//! security data u32 byte length + bytes
//! data          u32 byte length + bytes
//! ```

use bytes::{Buf, BufMut};

use crate::graph::MAX_RECORD_SIZE;
use crate::ids::PeerId;
use crate::record::attributes::Attributes;
use crate::record::id::{RecordId, RecordType};
use crate::record::model::{Record, RecordFlags, RecordParts};
use crate::record::time::GraphTime;
use crate::result::{PeerError, ResultCode};

/// The version of the layout above. A reader refuses any other, so a later layout is a
/// new number and a conversion, never a silent misreading.
pub const RECORD_FORMAT_VERSION: u8 = 1;
/// Bytes of the fixed-size fields and the length prefixes.
const FIXED_LEN: usize = 1 + 16 + 16 + 4 + 4 + 2 + 2 + 8 * 3 + 4 * 3;

impl Record {
    /// The record's size in its binary form: the size `max_record_size` limits.
    pub fn encoded_len(&self) -> usize {
        let parts = self.parts();
        FIXED_LEN
            + parts.creator_id.as_str().len()
            + parts.modified_by_id.as_str().len()
            + parts.attributes.to_xml().len()
            + parts.security_data.len()
            + parts.data.len()
    }

    /// The binary form (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let parts = self.parts();
        let attributes = parts.attributes.to_xml();
        let mut out = Vec::with_capacity(self.encoded_len());
        out.put_u8(RECORD_FORMAT_VERSION);
        out.put_slice(&parts.record_type.to_bytes());
        out.put_slice(&parts.id.to_bytes());
        out.put_u32(parts.version);
        out.put_u32(parts.flags.bits());
        put_short(&mut out, parts.creator_id.as_str().as_bytes());
        put_short(&mut out, parts.modified_by_id.as_str().as_bytes());
        out.put_u64(parts.creation_time.ticks());
        out.put_u64(parts.expiration_time.ticks());
        out.put_u64(parts.last_modified_time.ticks());
        put_long(&mut out, attributes.as_bytes());
        put_long(&mut out, &parts.security_data);
        put_long(&mut out, &parts.data);
        out
    }

    /// A record from its binary form, checked as [`Record::from_parts`] checks.
    ///
    /// # Errors
    /// `PEER_E_INVALID_RECORD` when `bytes` is longer than the largest record, has another
    /// format version, is cut short or has bytes left over, holds a nil GUID, an invalid
    /// peer id, unknown flags or invalid attributes, or breaks a record invariant.
    pub fn decode(mut bytes: &[u8]) -> Result<Record, PeerError> {
        if bytes.len() > MAX_RECORD_SIZE as usize || bytes.len() < FIXED_LEN {
            return Err(invalid());
        }
        if bytes.get_u8() != RECORD_FORMAT_VERSION {
            return Err(invalid());
        }
        let record_type = RecordType::from_bytes(take_guid(&mut bytes)).map_err(|_| invalid())?;
        let id = RecordId::from_bytes(take_guid(&mut bytes)).map_err(|_| invalid())?;
        let version = bytes.get_u32();
        let flags = RecordFlags::from_bits(bytes.get_u32()).map_err(|_| invalid())?;
        let creator_id = take_peer_id(&mut bytes)?;
        let modified_by_id = take_peer_id(&mut bytes)?;
        let times = take_array::<24>(&mut bytes)?;
        let time = |index: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&times[index * 8..index * 8 + 8]);
            GraphTime::from_ticks(u64::from_be_bytes(word))
        };
        let attributes = std::str::from_utf8(take_long(&mut bytes)?).map_err(|_| invalid())?;
        let attributes = Attributes::parse(attributes).map_err(|_| invalid())?;
        let security_data = take_long(&mut bytes)?.to_vec();
        let data = take_long(&mut bytes)?.to_vec();
        if !bytes.is_empty() {
            return Err(invalid());
        }
        Record::from_parts(RecordParts {
            record_type,
            id,
            version,
            flags,
            creator_id,
            modified_by_id,
            attributes,
            creation_time: time(0),
            expiration_time: time(1),
            last_modified_time: time(2),
            security_data,
            data,
        })
    }
}

fn invalid() -> PeerError {
    PeerError::new(ResultCode::PEER_E_INVALID_RECORD)
}

fn put_short(out: &mut Vec<u8>, bytes: &[u8]) {
    // Peer ids are at most 256 characters of at most 4 bytes: well under u16::MAX.
    out.put_u16(bytes.len() as u16);
    out.put_slice(bytes);
}

fn put_long(out: &mut Vec<u8>, bytes: &[u8]) {
    // A record is at most 60 MB (the size check runs before anything is stored or sent),
    // so every field length fits a u32.
    out.put_u32(bytes.len() as u32);
    out.put_slice(bytes);
}

fn take_array<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], PeerError> {
    if bytes.len() < N {
        return Err(invalid());
    }
    let mut array = [0u8; N];
    bytes.copy_to_slice(&mut array);
    Ok(array)
}

fn take_guid(bytes: &mut &[u8]) -> [u8; 16] {
    // The caller checked FIXED_LEN, which covers both GUIDs.
    let mut guid = [0u8; 16];
    bytes.copy_to_slice(&mut guid);
    guid
}

fn take_slice<'a>(bytes: &mut &'a [u8], len: usize) -> Result<&'a [u8], PeerError> {
    if bytes.len() < len {
        return Err(invalid());
    }
    let (head, tail) = bytes.split_at(len);
    *bytes = tail;
    Ok(head)
}

fn take_peer_id(bytes: &mut &[u8]) -> Result<PeerId, PeerError> {
    let len = u16::from_be_bytes(take_array::<2>(bytes)?) as usize;
    let text = std::str::from_utf8(take_slice(bytes, len)?).map_err(|_| invalid())?;
    PeerId::new(text).map_err(|_| invalid())
}

fn take_long<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8], PeerError> {
    let len = u32::from_be_bytes(take_array::<4>(bytes)?) as usize;
    take_slice(bytes, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::model::tests::sample;

    #[test]
    fn round_trips_and_measures() {
        let record = sample(5, 1000)
            .with_security_data(vec![1, 2, 3], MAX_RECORD_SIZE)
            .expect("fits");
        let bytes = record.encode();
        assert_eq!(bytes.len(), record.encoded_len());
        assert_eq!(bytes[0], RECORD_FORMAT_VERSION);
        assert_eq!(Record::decode(&bytes), Ok(record));
    }

    #[test]
    fn refuses_damaged_bytes_without_panicking() {
        let bytes = sample(5, 1000).encode();
        let invalid = Err(ResultCode::PEER_E_INVALID_RECORD);
        for len in 0..bytes.len() {
            assert_eq!(
                Record::decode(&bytes[..len]).map_err(|error| error.code()),
                invalid,
                "{len}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Record::decode(&longer).map_err(|error| error.code()),
            invalid
        );
        let mut other_format = bytes.clone();
        other_format[0] = 2;
        assert_eq!(
            Record::decode(&other_format).map_err(|error| error.code()),
            invalid
        );
        let mut nil_type = bytes.clone();
        nil_type[1..17].fill(0);
        assert_eq!(
            Record::decode(&nil_type).map_err(|error| error.code()),
            invalid
        );
        // Every single-byte change either decodes to a valid record or is refused.
        for index in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[index] ^= 0xff;
            let _ = Record::decode(&flipped);
        }
    }
}
