//! Record ids and record types: GUIDs that are never nil.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::record::time::GraphTime;
use crate::result::PeerError;

macro_rules! guid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// The id for `guid`.
            ///
            /// # Errors
            /// `E_INVALIDARG` when `guid` is the nil GUID.
            pub fn new(guid: Uuid) -> Result<Self, PeerError> {
                if guid.is_nil() {
                    return Err(PeerError::INVALID_ARG);
                }
                Ok($name(guid))
            }

            /// The id whose 128 bits, read big-endian (the written order), are `value`.
            ///
            /// # Errors
            /// `E_INVALIDARG` when `value` is 0.
            pub fn from_u128(value: u128) -> Result<Self, PeerError> {
                $name::new(Uuid::from_u128(value))
            }

            /// The id from its 16 bytes in written order.
            ///
            /// # Errors
            /// `E_INVALIDARG` when every byte is 0.
            pub fn from_bytes(bytes: [u8; 16]) -> Result<Self, PeerError> {
                $name::new(Uuid::from_bytes(bytes))
            }

            /// The GUID.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            /// The 16 bytes in written order.
            pub const fn to_bytes(self) -> [u8; 16] {
                *self.0.as_bytes()
            }
        }

        impl fmt::Display for $name {
            /// The lowercase hyphenated form, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = PeerError;

            /// Parses a GUID in any form the `uuid` crate reads (hyphenated, braced,
            /// simple, URN).
            fn from_str(text: &str) -> Result<Self, PeerError> {
                let guid = Uuid::parse_str(text).map_err(|_| PeerError::INVALID_ARG)?;
                $name::new(guid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

guid_id! {
    /// A record's id: a GUID the engine chooses when the record is added, never nil.
    RecordId
}

guid_id! {
    /// A record's type: a GUID the application chooses, never nil. Search, enumeration,
    /// event filters and synchronization order all go by type.
    RecordType
}

impl RecordId {
    /// A time-ordered (version 7) record id: the creation time's Unix milliseconds, then
    /// 74 random bits from `random`. Ids a node draws as it adds records sort by when they
    /// were added, so each new record lands at the end of the store's id-ordered trees
    /// instead of in a random page (fewer pages rewritten per commit); the time they show
    /// is the record's creation time, which the record carries anyway. A time before 1970
    /// counts as 1970.
    pub fn from_time_and_random(now: GraphTime, random: [u8; 10]) -> Self {
        const UNIX_EPOCH_TICKS: u64 = 11_644_473_600 * 10_000_000;
        let millis = now.ticks().saturating_sub(UNIX_EPOCH_TICKS) / 10_000;
        RecordId(uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
    }

    /// A random (version 4) record id from 16 random bytes. The core reads no entropy
    /// itself; the driver passes the bytes in. The version and variant bits make the
    /// result non-nil whatever the bytes are.
    pub fn from_random_bytes(bytes: [u8; 16]) -> Self {
        RecordId(uuid::Builder::from_random_bytes(bytes).into_uuid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nil_is_rejected() {
        assert_eq!(RecordId::new(Uuid::nil()), Err(PeerError::INVALID_ARG));
        assert_eq!(RecordType::from_u128(0), Err(PeerError::INVALID_ARG));
        assert_eq!(
            "00000000-0000-0000-0000-000000000000".parse::<RecordType>(),
            Err(PeerError::INVALID_ARG)
        );
        assert!(RecordId::from_bytes([0; 16]).is_err());
    }

    #[test]
    fn text_round_trips() {
        let id = RecordType::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677).expect("valid");
        assert_eq!(id.to_string(), "01234567-89ab-cdef-0011-223344556677");
        assert_eq!(id.to_string().parse::<RecordType>(), Ok(id));
        assert_eq!(
            "{01234567-89AB-CDEF-0011-223344556677}".parse::<RecordType>(),
            Ok(id)
        );
        assert_eq!(RecordType::from_bytes(id.to_bytes()), Ok(id));
        assert!("not a guid".parse::<RecordId>().is_err());
    }

    #[test]
    fn time_ordered_ids_sort_by_time_and_are_never_nil() {
        let at = |seconds: u64| GraphTime::from_ticks((11_644_473_600 + seconds) * 10_000_000);
        let early = RecordId::from_time_and_random(at(1_000), [0xff; 10]);
        let late = RecordId::from_time_and_random(at(1_001), [0; 10]);
        assert!(early < late);
        assert_eq!(late.as_uuid().get_version_num(), 7);
        let before_1970 = RecordId::from_time_and_random(GraphTime::ZERO, [0; 10]);
        assert!(!before_1970.as_uuid().is_nil());
    }

    #[test]
    fn random_ids_are_never_nil() {
        let id = RecordId::from_random_bytes([0; 16]);
        assert!(!id.as_uuid().is_nil());
        assert_eq!(id.as_uuid().get_version_num(), 4);
    }
}
