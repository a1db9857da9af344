//! Tests of the record model's rules, and record builders the other record tests share.

use super::*;
use crate::graph::MAX_RECORD_SIZE;

pub(crate) const MINUTE: u64 = 60 * 10_000_000;

pub(crate) fn peer(name: &str) -> PeerId {
    PeerId::new(name).expect("valid peer id")
}

pub(crate) fn record_type(value: u128) -> RecordType {
    RecordType::from_u128(value).expect("non-nil")
}

pub(crate) fn new_record(expiration: GraphTime) -> NewRecord {
    NewRecord {
        record_type: record_type(7),
        attributes: Attributes::new()
            .with("nick", AttributeValue::String("alice".into()))
            .expect("valid"),
        expiration,
        autorefresh: false,
        data: b"hello".to_vec(),
    }
}

pub(crate) fn sample(id: u128, now: u64) -> Record {
    Record::create(
        new_record(GraphTime::from_ticks(now + 10 * MINUTE)),
        RecordId::from_u128(id).expect("non-nil"),
        peer("alice"),
        GraphTime::from_ticks(now),
        MAX_RECORD_SIZE,
    )
    .expect("valid record")
}

#[test]
fn create_sets_the_engine_fields() {
    let record = sample(1, 1000);
    assert_eq!(record.version(), 1);
    assert_eq!(record.creator_id(), &peer("alice"));
    assert_eq!(record.modified_by_id(), &peer("alice"));
    assert_eq!(record.creation_time(), GraphTime::from_ticks(1000));
    assert_eq!(record.last_modified_time(), GraphTime::from_ticks(1000));
    assert_eq!(record.flags(), RecordFlags::NONE);
    assert_eq!(record.data(), b"hello");
    assert!(!record.is_deleted());
    assert!(!record.is_expired(GraphTime::from_ticks(1000)));
    assert!(record.is_expired(GraphTime::from_ticks(1000 + 10 * MINUTE)));
}

#[test]
fn create_checks_expiration_and_size() {
    let now = GraphTime::from_ticks(100 * MINUTE);
    let id = RecordId::from_u128(1).expect("non-nil");
    let create = |new: NewRecord, limit| Record::create(new, id, peer("a"), now, limit);
    assert_eq!(
        create(new_record(now), MAX_RECORD_SIZE),
        Err(PeerError::INVALID_ARG)
    );
    let mut short_refresh = new_record(GraphTime::from_ticks(103 * MINUTE));
    short_refresh.autorefresh = true;
    assert_eq!(
        create(short_refresh.clone(), MAX_RECORD_SIZE),
        Err(PeerError::INVALID_ARG)
    );
    short_refresh.expiration = GraphTime::from_ticks(104 * MINUTE);
    let refreshing = create(short_refresh, MAX_RECORD_SIZE).expect("4 minutes is enough");
    assert!(refreshing.flags().contains(RecordFlags::AUTOREFRESH));
    let mut big = new_record(GraphTime::from_ticks(200 * MINUTE));
    big.data = vec![0; 2048];
    assert_eq!(
        create(big, 2048).map_err(|error| error.code()),
        Err(ResultCode::PEER_E_MAX_RECORD_SIZE_EXCEEDED)
    );
}

#[test]
fn update_bumps_the_version_and_only_grows_expiration() {
    let record = sample(1, 1000)
        .with_security_data(vec![9], MAX_RECORD_SIZE)
        .expect("fits");
    let later = GraphTime::from_ticks(2000);
    let update = RecordUpdate {
        data: Some(b"bye".to_vec()),
        expiration: Some(GraphTime::from_ticks(1000 + 20 * MINUTE)),
        ..RecordUpdate::default()
    };
    let updated = record
        .updated(update, peer("bob"), later, MAX_RECORD_SIZE)
        .expect("valid");
    assert_eq!(updated.version(), 2);
    assert_eq!(updated.modified_by_id(), &peer("bob"));
    assert_eq!(updated.creator_id(), &peer("alice"));
    assert_eq!(updated.last_modified_time(), later);
    assert_eq!(updated.data(), b"bye");
    assert_eq!(updated.attributes(), record.attributes());
    assert!(
        updated.security_data().is_empty(),
        "the new version is secured anew"
    );
    let shrink = RecordUpdate {
        expiration: Some(GraphTime::from_ticks(1000 + 5 * MINUTE)),
        ..RecordUpdate::default()
    };
    assert_eq!(
        updated.updated(shrink, peer("bob"), later, MAX_RECORD_SIZE),
        Err(PeerError::INVALID_ARG)
    );
    let stepped_back = updated
        .updated(
            RecordUpdate::default(),
            peer("bob"),
            GraphTime::from_ticks(1500),
            MAX_RECORD_SIZE,
        )
        .expect("valid");
    assert_eq!(
        stepped_back.last_modified_time(),
        later,
        "times never go backwards"
    );
    let expired = GraphTime::from_ticks(1000 + 20 * MINUTE);
    assert_eq!(
        updated
            .updated(
                RecordUpdate::default(),
                peer("bob"),
                expired,
                MAX_RECORD_SIZE
            )
            .map_err(|error| error.code()),
        Err(ResultCode::PEER_E_RECORD_NOT_FOUND)
    );
}

#[test]
fn delete_leaves_a_tombstone_until_expiry() {
    let record = sample(1, 1000);
    let tombstone = record
        .deleted(peer("bob"), GraphTime::from_ticks(2000))
        .expect("live");
    assert!(tombstone.is_deleted());
    assert_eq!(tombstone.version(), 2);
    assert_eq!(tombstone.expiration_time(), record.expiration_time());
    assert!(tombstone.data().is_empty() && tombstone.attributes().is_empty());
    assert!(tombstone.supersedes(&record));
    let not_found = Err(ResultCode::PEER_E_RECORD_NOT_FOUND);
    assert_eq!(
        tombstone
            .deleted(peer("bob"), GraphTime::from_ticks(3000))
            .map_err(|error| error.code()),
        not_found
    );
    assert_eq!(
        tombstone
            .updated(
                RecordUpdate::default(),
                peer("bob"),
                GraphTime::from_ticks(3000),
                MAX_RECORD_SIZE
            )
            .map_err(|error| error.code()),
        not_found
    );
    assert_eq!(
        tombstone
            .clone()
            .with_security_data(vec![1], MAX_RECORD_SIZE)
            .map_err(|error| error.code()),
        Err(ResultCode::PEER_E_INVALID_RECORD)
    );
}

#[test]
fn refresh_renews_the_lifetime() {
    let mut new = new_record(GraphTime::from_ticks(10 * MINUTE));
    new.autorefresh = true;
    let id = RecordId::from_u128(3).expect("non-nil");
    let record =
        Record::create(new, id, peer("a"), GraphTime::ZERO, MAX_RECORD_SIZE).expect("valid");
    let margin = Duration::from_secs(60);
    assert!(!record.needs_refresh(GraphTime::from_ticks(8 * MINUTE), margin));
    assert!(record.needs_refresh(GraphTime::from_ticks(9 * MINUTE + 1), margin));
    let refreshed = record
        .refreshed(peer("a"), GraphTime::from_ticks(9 * MINUTE))
        .expect("live");
    assert_eq!(
        refreshed.expiration_time(),
        GraphTime::from_ticks(19 * MINUTE)
    );
    assert_eq!(refreshed.version(), 2);
    assert_eq!(
        sample(1, 0).refreshed(peer("a"), GraphTime::ZERO),
        Err(PeerError::INVALID_ARG)
    );
}

#[test]
fn conflict_order_is_total_and_version_first() {
    let base = sample(1, 1000);
    let newer = base
        .updated(
            RecordUpdate::default(),
            peer("alice"),
            GraphTime::from_ticks(1500),
            MAX_RECORD_SIZE,
        )
        .expect("valid");
    assert!(newer.supersedes(&base));
    assert!(!base.supersedes(&newer));
    // Two concurrent version-2 edits: the later modification wins, then the modifier.
    let by_bob = base
        .updated(
            RecordUpdate::default(),
            peer("bob"),
            GraphTime::from_ticks(1500),
            MAX_RECORD_SIZE,
        )
        .expect("valid");
    assert!(
        by_bob.supersedes(&newer),
        "\"bob\" > \"alice\" at equal time"
    );
    let later = base
        .updated(
            RecordUpdate::default(),
            peer("alice"),
            GraphTime::from_ticks(1600),
            MAX_RECORD_SIZE,
        )
        .expect("valid");
    assert!(later.supersedes(&by_bob));
    // Same version, time and modifier, different content: the hash decides, the same
    // way whichever side asks.
    let other_data = base
        .updated(
            RecordUpdate {
                data: Some(b"x".to_vec()),
                ..RecordUpdate::default()
            },
            peer("alice"),
            GraphTime::from_ticks(1500),
            MAX_RECORD_SIZE,
        )
        .expect("valid");
    assert_ne!(conflict_order(&newer, &other_data), Ordering::Equal);
    assert_eq!(
        conflict_order(&newer, &other_data),
        conflict_order(&other_data, &newer).reverse()
    );
    assert_eq!(conflict_order(&newer, &newer.clone()), Ordering::Equal);
}

#[test]
fn from_parts_checks_invariants() {
    let good = sample(1, 1000).into_parts();
    let invalid = Err(ResultCode::PEER_E_INVALID_RECORD);
    let check = |parts: RecordParts| {
        Record::from_parts(parts)
            .map(|_| ())
            .map_err(|error| error.code())
    };
    assert_eq!(check(good.clone()), Ok(()));
    assert_eq!(
        check(RecordParts {
            version: 0,
            ..good.clone()
        }),
        invalid
    );
    assert_eq!(
        check(RecordParts {
            creation_time: GraphTime::from_ticks(1001),
            ..good.clone()
        }),
        invalid
    );
    assert_eq!(
        check(RecordParts {
            expiration_time: GraphTime::from_ticks(1000),
            ..good.clone()
        }),
        invalid
    );
    assert_eq!(
        check(RecordParts {
            flags: RecordFlags::DELETED,
            ..good
        }),
        invalid
    );
}

#[test]
fn reserved_attributes_read_the_fields() {
    let record = sample(0x42, 1000);
    let value = |name: &str| record.attribute(name).map(Cow::into_owned);
    assert_eq!(
        value("peercreatorid"),
        Some(AttributeValue::String("alice".into()))
    );
    assert_eq!(
        value("peerlastmodifiedby"),
        Some(AttributeValue::String("alice".into()))
    );
    assert_eq!(
        value("peerrecordid"),
        Some(AttributeValue::String(
            "00000000-0000-0000-0000-000000000042".into()
        ))
    );
    assert_eq!(
        value("peerrecordtype"),
        Some(AttributeValue::String(
            "00000000-0000-0000-0000-000000000007".into()
        ))
    );
    assert_eq!(
        value("peercreationtime"),
        Some(AttributeValue::Date(GraphTime::from_ticks(1000)))
    );
    assert_eq!(
        value("peerlastmodificationtime"),
        Some(AttributeValue::Date(GraphTime::from_ticks(1000)))
    );
    assert_eq!(value("nick"), Some(AttributeValue::String("alice".into())));
    assert_eq!(value("missing"), None);
}
