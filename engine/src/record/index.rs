//! The attribute index: how a store keys records by their attribute values so that a
//! search reads only the records one of its clauses can match, and how a [`Search`] is
//! planned into scans of that index.
//!
//! An index key is the attribute's name, a 0 byte, the value's type tag, and the value
//! in a form whose byte order is the value's order:
//!
//! ```text
//! name (UTF-8, never holds 0) | 0x00 | tag: 1 string, 2 date, 3 int | value
//! string: UTF-8 (byte order is Unicode scalar order; XML text never holds 0)
//! date:   u64 ticks, big-endian
//! int:    i64 with its sign bit flipped, big-endian
//! ```
//!
//! A plan ([`Search::index_scans`]) is a list of half-open key ranges whose records are
//! a superset of the matches: the store reads the records in them and the search is
//! evaluated on each, so a plan only has to never miss a match. Reserved attributes
//! (`peercreatorid`, ...) are not in the index: a search that needs one for every match
//! is planned as `None`, a full scan.

use crate::record::attributes::{is_reserved_attribute, AttributeValue};
use crate::record::pattern::PatternToken;
use crate::record::search::{Clause, ClauseValue, Compare, Criterion, Search};

const TAG_STRING: u8 = 1;
const TAG_DATE: u8 = 2;
const TAG_INT: u8 = 3;

/// A half-open range of index keys: `start <= key < end`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct IndexScan {
    /// The first key in the range.
    pub start: Vec<u8>,
    /// The first key past the range.
    pub end: Vec<u8>,
}

/// The index key of attribute `name` with `value`.
pub fn attribute_key(name: &str, value: &AttributeValue) -> Vec<u8> {
    let (tag, bytes) = match value {
        AttributeValue::String(text) => (TAG_STRING, text.as_bytes().to_vec()),
        AttributeValue::Date(time) => (TAG_DATE, time.ticks().to_be_bytes().to_vec()),
        AttributeValue::Int(number) => (TAG_INT, int_bytes(*number).to_vec()),
    };
    let mut key = prefix(name, tag);
    key.extend_from_slice(&bytes);
    key
}

fn int_bytes(number: i64) -> [u8; 8] {
    ((number as u64) ^ (1 << 63)).to_be_bytes()
}

fn prefix(name: &str, tag: u8) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 2 + 8);
    key.extend_from_slice(name.as_bytes());
    key.push(0);
    key.push(tag);
    key
}

fn joined(base: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut key = base.to_vec();
    key.extend_from_slice(tail);
    key
}

/// How much of the database a scan reads, for choosing among an `and`'s clauses:
/// lower is narrower.
fn width(scans: &[IndexScan], compare: Compare, exact: bool) -> u8 {
    if scans.len() > 1 {
        return 4;
    }
    match (compare, exact) {
        (Compare::Equal, true) => 0,
        (Compare::Equal, false) => 1,
        (Compare::NotEqual, _) => 3,
        _ => 2,
    }
}

/// The scan of one clause and its width; `None` for a reserved attribute.
fn clause_scan(clause: &Clause) -> Option<(Vec<IndexScan>, u8)> {
    if is_reserved_attribute(&clause.attribute) {
        return None;
    }
    let (tag, value): (u8, Option<Vec<u8>>) = match &clause.value {
        ClauseValue::String(pattern) => (TAG_STRING, pattern.literal().map(String::into_bytes)),
        ClauseValue::Date(time) => (TAG_DATE, Some(time.ticks().to_be_bytes().to_vec())),
        ClauseValue::Int(number) => (TAG_INT, Some(int_bytes(*number).to_vec())),
    };
    let base = prefix(&clause.attribute, tag);
    let end_of_type = prefix(&clause.attribute, tag + 1);
    let whole = IndexScan {
        start: base.clone(),
        end: end_of_type.clone(),
    };
    let Some(value) = value else {
        // A string pattern with wildcards: the literal run before the first wildcard
        // bounds the matches (UTF-8 never holds 0xFF, so prefix + 0xFF ends the run).
        let ClauseValue::String(pattern) = &clause.value else {
            return None;
        };
        if clause.compare != Compare::Equal {
            return Some((vec![whole], 3));
        }
        let literal: String = pattern
            .tokens()
            .iter()
            .map_while(|token| match token {
                PatternToken::Literal(c) => Some(*c),
                _ => None,
            })
            .collect();
        if literal.is_empty() {
            return Some((vec![whole], 3));
        }
        let start = joined(&base, literal.as_bytes());
        let end = joined(&start, &[0xFF]);
        return Some((vec![IndexScan { start, end }], 1));
    };
    let at = joined(&base, &value);
    // The smallest key greater than `at` alone: `at` followed by a 0 byte.
    let after = joined(&at, &[0]);
    let scan = match clause.compare {
        Compare::Equal => IndexScan {
            start: at,
            end: after,
        },
        Compare::NotEqual => whole,
        Compare::Less => IndexScan {
            start: base,
            end: at,
        },
        Compare::LessOrEqual => IndexScan {
            start: base,
            end: after,
        },
        Compare::Greater => IndexScan {
            start: after,
            end: end_of_type,
        },
        Compare::GreaterOrEqual => IndexScan {
            start: at,
            end: end_of_type,
        },
    };
    let scans = vec![scan];
    let width = width(&scans, clause.compare, true);
    Some((scans, width))
}

fn plan(criterion: &Criterion) -> Option<(Vec<IndexScan>, u8)> {
    match criterion {
        Criterion::Clause(clause) => clause_scan(clause),
        // Every match matches each child: the narrowest child's scans cover them all.
        Criterion::And(all) => all.iter().filter_map(plan).min_by_key(|(_, width)| *width),
        // A match matches some child: every child must be covered.
        Criterion::Or(any) => {
            let mut scans = Vec::new();
            for child in any {
                scans.extend(plan(child)?.0);
            }
            Some((scans, 4))
        }
    }
}

impl Search {
    /// The ranges of the attribute index that hold every record this search can match,
    /// or `None` when only a full scan is sure to find them all (see the module doc).
    pub fn index_scans(&self) -> Option<Vec<IndexScan>> {
        plan(self.root()).map(|(scans, _)| scans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::time::GraphTime;

    fn keys_in(scans: &[IndexScan], keys: &[Vec<u8>]) -> Vec<usize> {
        keys.iter()
            .enumerate()
            .filter(|(_, key)| {
                scans
                    .iter()
                    .any(|scan| scan.start <= **key && **key < scan.end)
            })
            .map(|(i, _)| i)
            .collect()
    }

    fn search(clause: &str) -> Search {
        Search::parse(&format!("<peersearch>{clause}</peersearch>")).expect("valid")
    }

    #[test]
    fn order_of_keys_is_the_order_of_values() {
        let ints = [-5i64, -1, 0, 1, 7, i64::MAX, i64::MIN];
        let mut sorted = ints;
        sorted.sort_unstable();
        let mut by_key = ints;
        by_key.sort_by_key(|n| attribute_key("n", &AttributeValue::Int(*n)));
        assert_eq!(by_key, sorted);
        let a = attribute_key("s", &AttributeValue::String("ab".into()));
        let b = attribute_key("s", &AttributeValue::String("abc".into()));
        let c = attribute_key("s", &AttributeValue::String("b".into()));
        assert!(a < b && b < c);
    }

    #[test]
    fn scans_cover_exactly_what_each_compare_needs() {
        let keys: Vec<Vec<u8>> = ["a", "ab", "abc", "b", "lob", "lobby", "lobz"]
            .iter()
            .map(|s| attribute_key("room", &AttributeValue::String((*s).into())))
            .collect();
        let clause = |compare: &str, value: &str| {
            search(&format!(
                "<clause attrib=\"room\" type=\"string\" compare=\"{compare}\">{value}</clause>"
            ))
            .index_scans()
            .expect("indexable")
        };
        assert_eq!(keys_in(&clause("equal", "ab"), &keys), vec![1]);
        assert_eq!(keys_in(&clause("equal", "lob*"), &keys), vec![4, 5, 6]);
        assert_eq!(keys_in(&clause("equal", "*b"), &keys).len(), keys.len());
        assert_eq!(keys_in(&clause("less", "ab"), &keys), vec![0]);
        assert_eq!(keys_in(&clause("lessorequal", "ab"), &keys), vec![0, 1]);
        assert_eq!(keys_in(&clause("greater", "lobby"), &keys), vec![6]);
        assert_eq!(
            keys_in(&clause("greaterorequal", "lobby"), &keys),
            vec![5, 6]
        );
        assert_eq!(keys_in(&clause("notequal", "ab"), &keys).len(), keys.len());
        let int = attribute_key("room", &AttributeValue::Int(3));
        assert!(
            keys_in(&clause("equal", "ab"), &[int]).is_empty(),
            "another type is out"
        );
    }

    #[test]
    fn and_takes_the_narrowest_and_or_needs_every_child() {
        let and = search(
            "<and><clause attrib=\"n\" type=\"int\" compare=\"greater\">1</clause>\
             <clause attrib=\"room\" type=\"string\">lobby</clause></and>",
        );
        let expected = attribute_key("room", &AttributeValue::String("lobby".into()));
        let scans = and.index_scans().expect("indexable");
        assert_eq!(scans.len(), 1);
        assert_eq!(scans[0].start, expected);
        let or = search(
            "<or><clause attrib=\"room\" type=\"string\">a</clause>\
             <clause attrib=\"peercreatorid\" type=\"string\">bob</clause></or>",
        );
        assert_eq!(
            or.index_scans(),
            None,
            "a reserved attribute needs a full scan"
        );
    }

    #[test]
    fn dates_scan_by_time() {
        let keys: Vec<Vec<u8>> = [1u64, 5, 9]
            .iter()
            .map(|t| attribute_key("sent", &AttributeValue::Date(GraphTime::from_ticks(*t))))
            .collect();
        let before = Search::parse(
            "<peersearch><clause attrib=\"sent\" type=\"date\" compare=\"less\">\
             1601-01-01T00:00:00.0000005Z</clause></peersearch>",
        )
        .expect("valid")
        .index_scans()
        .expect("indexable");
        assert_eq!(keys_in(&before, &keys), vec![0]);
    }
}
