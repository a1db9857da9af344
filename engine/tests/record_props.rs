//! Property tests for records: the binary form round-trips and is as long as it says,
//! attributes round-trip through their canonical XML, dates through their text, the
//! conflict order is a total order, and string patterns agree with a plain recursive
//! matcher.

use std::cmp::Ordering;

use peergraph_engine::{
    conflict_order, AttributeValue, Attributes, GraphTime, Pattern, PeerId, Record, RecordFlags,
    RecordId, RecordParts, RecordType,
};
use proptest::prelude::*;

fn peer_id() -> impl Strategy<Value = PeerId> {
    "[a-zA-Z0-9é\u{1F600}]{1,16}".prop_map(|text| PeerId::new(text).expect("valid"))
}

fn attribute_value() -> impl Strategy<Value = AttributeValue> {
    prop_oneof![
        "[ -~\t\r\né<>&\"']{0,24}".prop_map(AttributeValue::String),
        any::<i64>().prop_map(AttributeValue::Int),
        (0..=GraphTime::MAX_DATE.ticks())
            .prop_map(|t| AttributeValue::Date(GraphTime::from_ticks(t))),
    ]
}

fn attributes() -> impl Strategy<Value = Attributes> {
    proptest::collection::vec(("[a-z<&\"][a-z0-9 ]{0,8}", attribute_value()), 0..6).prop_map(
        |entries| {
            entries
                .into_iter()
                .fold(Attributes::new(), |attributes, (name, value)| {
                    // Repeated or reserved names are refused; keep the rest.
                    attributes.clone().with(name, value).unwrap_or(attributes)
                })
        },
    )
}

prop_compose! {
    fn record()(
        kind in 1..=u128::MAX,
        id in 1..=u128::MAX,
        version in 1..=u32::MAX,
        autorefresh in any::<bool>(),
        deleted in any::<bool>(),
        creator_id in peer_id(),
        modified_by_id in peer_id(),
        attributes in attributes(),
        creation in 0..u64::MAX / 4,
        since_creation in 0..u64::MAX / 4,
        lifetime in 1..u64::MAX / 4,
        security_data in proptest::collection::vec(any::<u8>(), 0..32),
        data in proptest::collection::vec(any::<u8>(), 0..256),
    ) -> Record {
        let flags = RecordFlags::from_bits(u32::from(autorefresh) | (u32::from(deleted) << 1))
            .expect("known flags");
        let (attributes, security_data, data) = if deleted {
            (Attributes::new(), Vec::new(), Vec::new())
        } else {
            (attributes, security_data, data)
        };
        Record::from_parts(RecordParts {
            record_type: RecordType::from_u128(kind).expect("non-nil"),
            id: RecordId::from_u128(id).expect("non-nil"),
            version,
            flags,
            creator_id,
            modified_by_id,
            attributes,
            creation_time: GraphTime::from_ticks(creation),
            expiration_time: GraphTime::from_ticks(creation + lifetime),
            last_modified_time: GraphTime::from_ticks(creation + since_creation),
            security_data,
            data,
        })
        .expect("consistent record")
    }
}

/// A plain recursive matcher over the same tokens: the specification `Pattern::matches`
/// must agree with.
fn reference_match(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|skip| reference_match(rest, &text[skip..])),
        Some(('?', rest)) => !text.is_empty() && reference_match(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && reference_match(rest, &text[1..]),
    }
}

proptest! {
    #[test]
    fn records_round_trip_through_their_binary_form(record in record()) {
        let bytes = record.encode();
        prop_assert_eq!(bytes.len(), record.encoded_len());
        prop_assert_eq!(Record::decode(&bytes), Ok(record));
    }

    #[test]
    fn attributes_round_trip_through_canonical_xml(attributes in attributes()) {
        let xml = attributes.to_xml();
        prop_assert_eq!(Attributes::parse(&xml), Ok(attributes));
    }

    #[test]
    fn dates_round_trip_through_text(ticks in 0..=GraphTime::MAX_DATE.ticks()) {
        let time = GraphTime::from_ticks(ticks);
        prop_assert_eq!(GraphTime::parse_date(&time.to_string()), Some(time));
    }

    #[test]
    fn conflict_order_is_a_total_order(a in record(), b in record(), c in record()) {
        prop_assert_eq!(conflict_order(&a, &b), conflict_order(&b, &a).reverse());
        prop_assert_eq!(conflict_order(&a, &a.clone()), Ordering::Equal);
        if conflict_order(&a, &b) != Ordering::Greater && conflict_order(&b, &c) != Ordering::Greater {
            prop_assert_ne!(conflict_order(&a, &c), Ordering::Greater);
        }
        if a.version() > b.version() {
            prop_assert!(a.supersedes(&b), "a higher version always wins");
        }
    }

    #[test]
    fn patterns_agree_with_the_reference_matcher(
        pattern in "[ab*?]{0,8}",
        text in "[ab]{0,10}",
    ) {
        let parsed = Pattern::parse(&pattern).expect("no backslashes");
        let pattern: Vec<char> = pattern.chars().collect();
        let text_chars: Vec<char> = text.chars().collect();
        prop_assert_eq!(parsed.matches(&text), reference_match(&pattern, &text_chars));
    }

    #[test]
    fn escaped_text_matches_only_itself(text in "[a*?\\\\]{0,8}", other in "[a*?\\\\]{0,8}") {
        let escaped: String = text
            .chars()
            .flat_map(|c| match c {
                '*' | '?' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let pattern = Pattern::parse(&escaped).expect("valid escapes");
        prop_assert!(!pattern.has_wildcards());
        prop_assert!(pattern.matches(&text));
        prop_assert_eq!(pattern.matches(&other), other == text);
    }
}
