//! The record (`PEER_RECORD`) and the rules of its life: creation, update, deletion as a
//! tombstone, expiry, automatic refresh, and which copy wins when two meet.
//!
//! A [`Record`] is always consistent: the engine-set fields (id, version, creator,
//! modifier, times) are set only here, so a value of the type can be stored and flooded
//! as it is. Records from elsewhere (a neighbor, the disk) come in through
//! [`Record::from_parts`] or [`Record::decode`], which check the same invariants.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::time::Duration;

use crate::ids::PeerId;
use crate::record::attributes::{AttributeValue, Attributes};
use crate::record::id::{RecordId, RecordType};
use crate::record::time::GraphTime;
use crate::result::{PeerError, ResultCode};

/// The shortest lifetime of an AUTOREFRESH record: 4 minutes, the reference's minimum,
/// so that renewals stay rare next to the record's life.
pub const AUTOREFRESH_MIN_LIFETIME: Duration = Duration::from_secs(4 * 60);

/// A record's flags (`PEER_RECORD_FLAGS`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct RecordFlags(u32);

impl RecordFlags {
    /// No flags.
    pub const NONE: RecordFlags = RecordFlags(0);
    /// The engine renews the record before it expires.
    pub const AUTOREFRESH: RecordFlags = RecordFlags(0x1);
    /// The record was deleted: a tombstone kept until it expires.
    pub const DELETED: RecordFlags = RecordFlags(0x2);
    /// Every defined flag.
    pub const ALL: RecordFlags = RecordFlags(0x3);

    /// The flags for `bits`.
    ///
    /// # Errors
    /// `E_INVALIDARG` for bits beyond AUTOREFRESH | DELETED.
    pub fn from_bits(bits: u32) -> Result<Self, PeerError> {
        if bits & !Self::ALL.0 != 0 {
            return Err(PeerError::INVALID_ARG);
        }
        Ok(RecordFlags(bits))
    }

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// True when every flag of `other` is set.
    pub const fn contains(self, other: RecordFlags) -> bool {
        self.0 & other.0 == other.0
    }

    const fn with(self, other: RecordFlags) -> Self {
        RecordFlags(self.0 | other.0)
    }
}

/// What an application gives `AddRecord`: everything the engine does not set itself.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NewRecord {
    /// The record's type.
    pub record_type: RecordType,
    /// Its attributes (parse XML with [`Attributes::parse`]).
    pub attributes: Attributes,
    /// When it expires, in graph time.
    pub expiration: GraphTime,
    /// Whether the engine renews it before it expires.
    pub autorefresh: bool,
    /// The application's payload.
    pub data: Vec<u8>,
}

/// What `UpdateRecord` may change; `None` keeps the current value.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct RecordUpdate {
    /// New attributes.
    pub attributes: Option<Attributes>,
    /// A new payload.
    pub data: Option<Vec<u8>>,
    /// A new expiration, no earlier than the current one.
    pub expiration: Option<GraphTime>,
}

/// Every field of a record, unchecked: what a decoder or a test assembles before
/// [`Record::from_parts`] checks it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RecordParts {
    /// The record's type.
    pub record_type: RecordType,
    /// The record's id.
    pub id: RecordId,
    /// The version: 1 when added, one more at every change.
    pub version: u32,
    /// AUTOREFRESH and DELETED.
    pub flags: RecordFlags,
    /// The peer that added it.
    pub creator_id: PeerId,
    /// The peer that changed it last.
    pub modified_by_id: PeerId,
    /// Its attributes.
    pub attributes: Attributes,
    /// When it was added.
    pub creation_time: GraphTime,
    /// When it expires.
    pub expiration_time: GraphTime,
    /// When it last changed.
    pub last_modified_time: GraphTime,
    /// What the graph's security callback attached.
    pub security_data: Vec<u8>,
    /// The application's payload.
    pub data: Vec<u8>,
}

/// A record of a graph's database (`PEER_RECORD`), consistent by construction.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Record {
    parts: RecordParts,
}

fn invalid_record() -> PeerError {
    PeerError::new(ResultCode::PEER_E_INVALID_RECORD)
}

fn not_found() -> PeerError {
    PeerError::new(ResultCode::PEER_E_RECORD_NOT_FOUND)
}

impl Record {
    /// A new record (`AddRecord`): version 1, created and last modified `now` by
    /// `creator`, with the id the engine drew.
    ///
    /// # Errors
    /// - `E_INVALIDARG` when the expiration is not after `now`, or the record is
    ///   AUTOREFRESH and lives less than [`AUTOREFRESH_MIN_LIFETIME`].
    /// - `PEER_E_MAX_RECORD_SIZE_EXCEEDED` when its encoded size passes
    ///   `max_record_size` (the graph's effective limit).
    pub fn create(
        new: NewRecord,
        id: RecordId,
        creator: PeerId,
        now: GraphTime,
        max_record_size: u32,
    ) -> Result<Self, PeerError> {
        check_lifetime(now, new.expiration, new.autorefresh)?;
        let flags = if new.autorefresh {
            RecordFlags::AUTOREFRESH
        } else {
            RecordFlags::NONE
        };
        let record = Record {
            parts: RecordParts {
                record_type: new.record_type,
                id,
                version: 1,
                flags,
                modified_by_id: creator.clone(),
                creator_id: creator,
                attributes: new.attributes,
                creation_time: now,
                expiration_time: new.expiration,
                last_modified_time: now,
                security_data: Vec::new(),
                data: new.data,
            },
        };
        record.check_size(max_record_size)?;
        Ok(record)
    }

    /// A record from its fields, checked (a record a neighbor sent or the disk held).
    ///
    /// # Errors
    /// `PEER_E_INVALID_RECORD` when the version is 0, the creation time is after the last
    /// modification or not before the expiration, or a tombstone still carries
    /// attributes, data or security data.
    pub fn from_parts(parts: RecordParts) -> Result<Self, PeerError> {
        let tombstone_empty = !parts.flags.contains(RecordFlags::DELETED)
            || (parts.attributes.is_empty()
                && parts.data.is_empty()
                && parts.security_data.is_empty());
        if parts.version == 0
            || parts.creation_time > parts.last_modified_time
            || parts.creation_time >= parts.expiration_time
            || !tombstone_empty
        {
            return Err(invalid_record());
        }
        Ok(Record { parts })
    }

    /// The fields.
    pub fn parts(&self) -> &RecordParts {
        &self.parts
    }

    /// The fields, by value.
    pub fn into_parts(self) -> RecordParts {
        self.parts
    }

    /// The record's type.
    pub fn record_type(&self) -> RecordType {
        self.parts.record_type
    }

    /// The record's id.
    pub fn id(&self) -> RecordId {
        self.parts.id
    }

    /// The version: 1 when added, one more at every change.
    pub fn version(&self) -> u32 {
        self.parts.version
    }

    /// The flags.
    pub fn flags(&self) -> RecordFlags {
        self.parts.flags
    }

    /// The peer that added the record.
    pub fn creator_id(&self) -> &PeerId {
        &self.parts.creator_id
    }

    /// The peer that changed the record last.
    pub fn modified_by_id(&self) -> &PeerId {
        &self.parts.modified_by_id
    }

    /// The attributes.
    pub fn attributes(&self) -> &Attributes {
        &self.parts.attributes
    }

    /// When the record was added.
    pub fn creation_time(&self) -> GraphTime {
        self.parts.creation_time
    }

    /// When the record expires.
    pub fn expiration_time(&self) -> GraphTime {
        self.parts.expiration_time
    }

    /// When the record last changed.
    pub fn last_modified_time(&self) -> GraphTime {
        self.parts.last_modified_time
    }

    /// The security callback's data.
    pub fn security_data(&self) -> &[u8] {
        &self.parts.security_data
    }

    /// The application's payload.
    pub fn data(&self) -> &[u8] {
        &self.parts.data
    }

    /// True for a tombstone (a deleted record kept until it expires).
    pub fn is_deleted(&self) -> bool {
        self.parts.flags.contains(RecordFlags::DELETED)
    }

    /// True once `now` has reached the expiration time.
    pub fn is_expired(&self, now: GraphTime) -> bool {
        now >= self.parts.expiration_time
    }

    /// True for a live AUTOREFRESH record whose remaining life at `now` is under
    /// `margin`: the engine should renew it with [`Record::refreshed`].
    pub fn needs_refresh(&self, now: GraphTime, margin: Duration) -> bool {
        self.parts.flags.contains(RecordFlags::AUTOREFRESH)
            && !self.is_deleted()
            && self.parts.expiration_time.saturating_since(now) < margin
    }

    /// Sets the security data (the secure-record callback's output, before flooding).
    /// Leaves the version alone: it is part of the same change.
    ///
    /// # Errors
    /// `PEER_E_INVALID_RECORD` for a tombstone, which carries no security data;
    /// `PEER_E_MAX_RECORD_SIZE_EXCEEDED` when the record would pass `max_record_size`.
    pub fn with_security_data(
        mut self,
        security_data: Vec<u8>,
        max_record_size: u32,
    ) -> Result<Self, PeerError> {
        if self.is_deleted() && !security_data.is_empty() {
            return Err(invalid_record());
        }
        self.parts.security_data = security_data;
        self.check_size(max_record_size)?;
        Ok(self)
    }

    /// The record after `UpdateRecord`: the changed fields, one more version, modified
    /// `now` by `by`. The security data is cleared; the callback secures the new version.
    ///
    /// # Errors
    /// - `PEER_E_RECORD_NOT_FOUND` when the record is deleted or expired at `now`.
    /// - `E_INVALIDARG` when the new expiration is earlier than the current one or not
    ///   after `now`, or the version cannot grow any more.
    /// - `PEER_E_MAX_RECORD_SIZE_EXCEEDED` when the result passes `max_record_size`.
    pub fn updated(
        &self,
        update: RecordUpdate,
        by: PeerId,
        now: GraphTime,
        max_record_size: u32,
    ) -> Result<Self, PeerError> {
        if self.is_deleted() || self.is_expired(now) {
            return Err(not_found());
        }
        let mut parts = self.next_version(by, now)?;
        if let Some(expiration) = update.expiration {
            if expiration < self.parts.expiration_time {
                return Err(PeerError::INVALID_ARG);
            }
            parts.expiration_time = expiration;
        }
        if let Some(attributes) = update.attributes {
            parts.attributes = attributes;
        }
        if let Some(data) = update.data {
            parts.data = data;
        }
        parts.security_data.clear();
        let record = Record { parts };
        record.check_size(max_record_size)?;
        Ok(record)
    }

    /// The tombstone `DeleteRecord` leaves: DELETED, one more version, modified `now` by
    /// `by`, with attributes, data and security data dropped so that a deleted payload
    /// stops spreading (ours). It keeps the expiration and lives until then, so that the
    /// deletion reaches every node before the record could come back from one that missed
    /// it.
    ///
    /// # Errors
    /// - `PEER_E_RECORD_NOT_FOUND` when it is already deleted or expired at `now`.
    /// - `E_INVALIDARG` when the version cannot grow any more.
    pub fn deleted(&self, by: PeerId, now: GraphTime) -> Result<Self, PeerError> {
        if self.is_deleted() || self.is_expired(now) {
            return Err(not_found());
        }
        let mut parts = self.next_version(by, now)?;
        parts.flags = parts.flags.with(RecordFlags::DELETED);
        parts.attributes = Attributes::new();
        parts.data.clear();
        parts.security_data.clear();
        Ok(Record { parts })
    }

    /// The AUTOREFRESH renewal: the same lifetime again from `now` (the expiration grows
    /// by the time since the last change), one more version, modified by `by`.
    ///
    /// # Errors
    /// - `PEER_E_RECORD_NOT_FOUND` when it is deleted or expired at `now`.
    /// - `E_INVALIDARG` when it is not AUTOREFRESH or the version cannot grow any more.
    pub fn refreshed(&self, by: PeerId, now: GraphTime) -> Result<Self, PeerError> {
        if !self.parts.flags.contains(RecordFlags::AUTOREFRESH) {
            return Err(PeerError::INVALID_ARG);
        }
        if self.is_deleted() || self.is_expired(now) {
            return Err(not_found());
        }
        let lifetime = self
            .parts
            .expiration_time
            .saturating_since(self.parts.last_modified_time);
        let mut parts = self.next_version(by, now)?;
        parts.expiration_time = now.saturating_add(lifetime).max(self.parts.expiration_time);
        parts.security_data.clear();
        Ok(Record { parts })
    }

    /// The fields of the next version: version + 1, modified by `by` at `now` (or at the
    /// last change when graph time stepped back, so times never go backwards).
    fn next_version(&self, by: PeerId, now: GraphTime) -> Result<RecordParts, PeerError> {
        let mut parts = self.parts.clone();
        parts.version = parts.version.checked_add(1).ok_or(PeerError::INVALID_ARG)?;
        parts.modified_by_id = by;
        parts.last_modified_time = now.max(parts.last_modified_time);
        Ok(parts)
    }

    /// Checks the encoded size against the graph's limit.
    ///
    /// # Errors
    /// `PEER_E_MAX_RECORD_SIZE_EXCEEDED` when [`Record::encoded_len`] passes
    /// `max_record_size`.
    pub fn check_size(&self, max_record_size: u32) -> Result<(), PeerError> {
        if self.encoded_len() > max_record_size as usize {
            return Err(PeerError::new(ResultCode::PEER_E_MAX_RECORD_SIZE_EXCEEDED));
        }
        Ok(())
    }

    /// The value a search sees for attribute `name`: a reserved name (exact, lowercase)
    /// gives the engine-set field, any other name the application's attribute.
    pub fn attribute(&self, name: &str) -> Option<Cow<'_, AttributeValue>> {
        let parts = &self.parts;
        let reserved = match name {
            "peercreatorid" => AttributeValue::String(parts.creator_id.as_str().to_owned()),
            "peerlastmodifiedby" => {
                AttributeValue::String(parts.modified_by_id.as_str().to_owned())
            }
            "peerlastmodificationtime" => AttributeValue::Date(parts.last_modified_time),
            "peerrecordid" => AttributeValue::String(parts.id.to_string()),
            "peerrecordtype" => AttributeValue::String(parts.record_type.to_string()),
            "peercreationtime" => AttributeValue::Date(parts.creation_time),
            _ => return parts.attributes.get(name).map(Cow::Borrowed),
        };
        Some(Cow::Owned(reserved))
    }

    /// True when this copy wins over `other` in the conflict order.
    pub fn supersedes(&self, other: &Record) -> bool {
        conflict_order(self, other) == Ordering::Greater
    }
}

/// The conflict order (ours): when two copies of a record meet, the greater one wins.
/// Higher version first, then later last-modified time, then the greater modifier peer id,
/// then the greater SHA-256 of the encoded record, then the greater encoding. Every node
/// computes the same total order, so every node keeps the same copy; copies equal in it
/// are identical.
pub fn conflict_order(a: &Record, b: &Record) -> Ordering {
    let key = |record: &Record| {
        (
            record.parts.version,
            record.parts.last_modified_time,
            record.parts.modified_by_id.clone(),
        )
    };
    key(a).cmp(&key(b)).then_with(|| {
        let (a, b) = (a.encode(), b.encode());
        let digest = |bytes: &[u8]| ring::digest::digest(&ring::digest::SHA256, bytes);
        digest(&a)
            .as_ref()
            .cmp(digest(&b).as_ref())
            .then_with(|| a.cmp(&b))
    })
}

/// Checks an expiration given by the application.
fn check_lifetime(
    now: GraphTime,
    expiration: GraphTime,
    autorefresh: bool,
) -> Result<(), PeerError> {
    if expiration <= now
        || (autorefresh && expiration.saturating_since(now) < AUTOREFRESH_MIN_LIFETIME)
    {
        return Err(PeerError::INVALID_ARG);
    }
    Ok(())
}

#[cfg(test)]
#[path = "model_tests.rs"]
pub(crate) mod tests;
