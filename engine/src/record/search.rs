//! The search language of `SearchRecords`: XML criteria parsed into a [`Search`] that
//! matches records.
//!
//! ```xml
//! <peersearch>
//!   <and>
//!     <clause attrib="peercreatorid" type="string">al*</clause>
//!     <or>
//!       <clause attrib="level" type="int" compare="greaterorequal">3</clause>
//!       <clause attrib="nick" type="string" compare="notequal">b\*b</clause>
//!     </or>
//!   </and>
//! </peersearch>
//! ```
//!
//! The root `<peersearch>` holds exactly one `<and>`, `<or>` or `<clause>`; `<and>` and
//! `<or>` nest and are never empty. A clause names an attribute (`attrib`), its `type`
//! (`string`, `date` or `int`) and optionally `compare` (`equal`, the default,
//! `notequal`, `less`, `greater`, `lessorequal`, `greaterorequal`). String values may use
//! the wildcards `*` and `?` and the escapes `\*`, `\?`, `\\`.
//!
//! Choices of ours where the reference is silent:
//! - A clause matches only records that have the attribute with the clause's type;
//!   `notequal` too (a record without the attribute matches no clause about it).
//! - Strings compare by Unicode scalar values, case-sensitively; ordering compares take
//!   no wildcards (refused), since "less than a pattern" has no single meaning.
//! - A reserved attribute named with the wrong type is refused: it could never match.
//! - Elements take only the attributes above; anything else is refused, so a misspelt
//!   `compare` is an error rather than a silent `equal`. The root may declare XML
//!   namespaces (`xmlns`, `xmlns:dt`, as Windows samples do), which are ignored.

use std::cmp::Ordering;

use crate::record::attributes::{AttributeType, AttributeValue, MAX_ATTRIBUTE_NAME_CHARS};
use crate::record::model::Record;
use crate::record::pattern::Pattern;
use crate::record::time::GraphTime;
use crate::record::xml::{self, Element, Limits};
use crate::result::{PeerError, ResultCode};

/// The largest search text, in bytes: 64 KiB. Criteria are a short expression typed or
/// built by an application; the bound keeps a hostile one from costing more than that.
pub const MAX_SEARCH_BYTES: usize = 64 * 1024;
/// The deepest nesting, `<peersearch>` at 1: 32 levels of `and`/`or` is beyond any
/// real query and bounds the evaluator's recursion.
pub const MAX_SEARCH_DEPTH: usize = 32;
/// The most elements in a search: 1,024 clauses and groups bound the work per record.
pub const MAX_SEARCH_ELEMENTS: usize = 1024;

/// How a clause compares a record's value with its own.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Compare {
    /// `equal` (the default): for strings, the pattern matches.
    Equal,
    /// `notequal`: for strings, the pattern does not match.
    NotEqual,
    /// `less`: the record's value is less than the clause's.
    Less,
    /// `greater`.
    Greater,
    /// `lessorequal`.
    LessOrEqual,
    /// `greaterorequal`.
    GreaterOrEqual,
}

impl Compare {
    /// The operator for its XML name (exact, lowercase).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "equal" => Some(Compare::Equal),
            "notequal" => Some(Compare::NotEqual),
            "less" => Some(Compare::Less),
            "greater" => Some(Compare::Greater),
            "lessorequal" => Some(Compare::LessOrEqual),
            "greaterorequal" => Some(Compare::GreaterOrEqual),
            _ => None,
        }
    }

    /// True when `ordering` (record value against clause value) satisfies the operator.
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Compare::Equal => ordering == Ordering::Equal,
            Compare::NotEqual => ordering != Ordering::Equal,
            Compare::Less => ordering == Ordering::Less,
            Compare::Greater => ordering == Ordering::Greater,
            Compare::LessOrEqual => ordering != Ordering::Greater,
            Compare::GreaterOrEqual => ordering != Ordering::Less,
        }
    }
}

/// A clause's value, typed.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum ClauseValue {
    /// A `string` pattern.
    String(Pattern),
    /// A `date`.
    Date(GraphTime),
    /// An `int`.
    Int(i64),
}

/// One `<clause>`: attribute, operator, value.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Clause {
    /// The attribute's name (a reserved one or the application's).
    pub attribute: String,
    /// The operator.
    pub compare: Compare,
    /// The value, which also gives the type.
    pub value: ClauseValue,
}

impl Clause {
    /// True when `record` has the attribute with this type and it compares as asked.
    pub fn matches(&self, record: &Record) -> bool {
        let Some(value) = record.attribute(&self.attribute) else {
            return false;
        };
        match (&self.value, value.as_ref()) {
            (ClauseValue::String(pattern), AttributeValue::String(text)) => match self.compare {
                Compare::Equal => pattern.matches(text),
                Compare::NotEqual => !pattern.matches(text),
                ordering => pattern
                    .compare(text)
                    .is_some_and(|found| ordering.holds(found)),
            },
            (ClauseValue::Date(wanted), AttributeValue::Date(found)) => {
                self.compare.holds(found.cmp(wanted))
            }
            (ClauseValue::Int(wanted), AttributeValue::Int(found)) => {
                self.compare.holds(found.cmp(wanted))
            }
            _ => false,
        }
    }
}

/// A node of the criteria: a group or a clause.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Criterion {
    /// Every one must match (never empty).
    And(Vec<Criterion>),
    /// At least one must match (never empty).
    Or(Vec<Criterion>),
    /// One clause.
    Clause(Clause),
}

impl Criterion {
    /// True when `record` satisfies this node.
    pub fn matches(&self, record: &Record) -> bool {
        match self {
            Criterion::And(all) => all.iter().all(|c| c.matches(record)),
            Criterion::Or(any) => any.iter().any(|c| c.matches(record)),
            Criterion::Clause(clause) => clause.matches(record),
        }
    }
}

/// Parsed `SearchRecords` criteria.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Search {
    root: Criterion,
}

fn invalid() -> PeerError {
    PeerError::new(ResultCode::PEER_E_INVALID_SEARCH)
}

impl Search {
    /// Parses criteria XML (see the module docs).
    ///
    /// # Errors
    /// `PEER_E_INVALID_SEARCH` when the text is not well-formed XML or passes
    /// [`MAX_SEARCH_BYTES`], [`MAX_SEARCH_DEPTH`] or [`MAX_SEARCH_ELEMENTS`]; when the
    /// root is not `<peersearch>` with exactly one child; for an empty `<and>`/`<or>`, an
    /// unknown element, an unknown or missing attribute, an unknown `type` or `compare`,
    /// an empty or over-long `attrib`, non-blank text where only elements belong, a
    /// child inside a clause, a value that is not of the clause's type, a bad escape, a
    /// wildcard in an ordering compare, or a reserved attribute with the wrong type.
    pub fn parse(text: &str) -> Result<Self, PeerError> {
        let limits = Limits {
            max_bytes: MAX_SEARCH_BYTES,
            max_depth: MAX_SEARCH_DEPTH,
            max_elements: MAX_SEARCH_ELEMENTS,
        };
        let root = xml::parse(text, limits).map_err(|_| invalid())?;
        if root.name != "peersearch"
            || root.children.len() != 1
            || !root.only_namespace_attributes()
            || !root.text_is_blank()
        {
            return Err(invalid());
        }
        let only = &root.children[0];
        Ok(Search {
            root: criterion(only)?,
        })
    }

    /// The criteria's root node.
    pub fn root(&self) -> &Criterion {
        &self.root
    }

    /// True when `record` matches. Tombstones and expired records are the caller's to
    /// leave out; this looks at attributes only.
    pub fn matches(&self, record: &Record) -> bool {
        self.root.matches(record)
    }
}

/// Checks a group (`and`, `or`): no attributes, blank text, children. Returns the first
/// child.
fn group_child(element: &Element) -> Result<&Element, PeerError> {
    if !element.attributes.is_empty() || !element.text_is_blank() {
        return Err(invalid());
    }
    element.children.first().ok_or_else(invalid)
}

fn criterion(element: &Element) -> Result<Criterion, PeerError> {
    match element.name.as_str() {
        "and" | "or" => {
            group_child(element)?;
            let children = element
                .children
                .iter()
                .map(criterion)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if element.name == "and" {
                Criterion::And(children)
            } else {
                Criterion::Or(children)
            })
        }
        "clause" => clause(element).map(Criterion::Clause),
        _ => Err(invalid()),
    }
}

fn clause(element: &Element) -> Result<Clause, PeerError> {
    if !element.children.is_empty()
        || element
            .attributes
            .iter()
            .any(|(key, _)| !matches!(key.as_str(), "attrib" | "type" | "compare"))
    {
        return Err(invalid());
    }
    let attribute = element.attribute("attrib").ok_or_else(invalid)?;
    if attribute.is_empty() || attribute.chars().count() > MAX_ATTRIBUTE_NAME_CHARS {
        return Err(invalid());
    }
    let kind = element
        .attribute("type")
        .and_then(AttributeType::from_name)
        .ok_or_else(invalid)?;
    let compare = match element.attribute("compare") {
        None => Compare::Equal,
        Some(name) => Compare::from_name(name).ok_or_else(invalid)?,
    };
    if reserved_type(attribute).is_some_and(|reserved| reserved != kind) {
        return Err(invalid());
    }
    let value = match AttributeValue::parse(kind, &element.text).ok_or_else(invalid)? {
        AttributeValue::String(text) => {
            let pattern = Pattern::parse(&text).ok_or_else(invalid)?;
            let ordering = !matches!(compare, Compare::Equal | Compare::NotEqual);
            if ordering && pattern.has_wildcards() {
                return Err(invalid());
            }
            ClauseValue::String(pattern)
        }
        AttributeValue::Date(time) => ClauseValue::Date(time),
        AttributeValue::Int(value) => ClauseValue::Int(value),
    };
    Ok(Clause {
        attribute: attribute.to_owned(),
        compare,
        value,
    })
}

/// The type of a reserved attribute (exact, lowercase name), `None` for other names.
fn reserved_type(name: &str) -> Option<AttributeType> {
    match name {
        "peercreatorid" | "peerlastmodifiedby" | "peerrecordid" | "peerrecordtype" => {
            Some(AttributeType::String)
        }
        "peerlastmodificationtime" | "peercreationtime" => Some(AttributeType::Date),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::MAX_RECORD_SIZE;
    use crate::record::attributes::Attributes;
    use crate::record::id::RecordId;
    use crate::record::model::tests::{new_record, peer, MINUTE};

    /// A record by alice, created at 2024-05-01T12:00:00Z, with nick, level and joined.
    fn record(nick: &str, level: i64) -> Record {
        let created = GraphTime::parse_date("2024-05-01T12:00:00Z").expect("valid");
        let mut new = new_record(GraphTime::from_ticks(created.ticks() + 10 * MINUTE));
        new.attributes = Attributes::new()
            .with("nick", AttributeValue::String(nick.into()))
            .and_then(|a| a.with("level", AttributeValue::Int(level)))
            .and_then(|a| {
                a.with(
                    "joined",
                    AttributeValue::Date(
                        GraphTime::parse_date("2020-01-01T00:00:00Z").expect("valid"),
                    ),
                )
            })
            .expect("valid");
        Record::create(
            new,
            RecordId::from_u128(0xabc).expect("non-nil"),
            peer("alice"),
            created,
            MAX_RECORD_SIZE,
        )
        .expect("valid")
    }

    fn clause(attrib: &str, kind: &str, compare: &str, value: &str) -> String {
        let compare = if compare.is_empty() {
            String::new()
        } else {
            format!(" compare=\"{compare}\"")
        };
        format!("<clause attrib=\"{attrib}\" type=\"{kind}\"{compare}>{value}</clause>")
    }

    fn search(body: &str) -> Search {
        Search::parse(&format!("<peersearch>{body}</peersearch>")).expect("valid search")
    }

    fn finds(body: &str, record: &Record) -> bool {
        search(body).matches(record)
    }

    #[test]
    fn string_clauses_with_wildcards_and_escapes() {
        let bob = record("bob", 3);
        assert!(finds(&clause("nick", "string", "", "bob"), &bob));
        assert!(finds(&clause("nick", "string", "equal", "b*"), &bob));
        assert!(finds(&clause("nick", "string", "", "?o?"), &bob));
        assert!(
            !finds(&clause("nick", "string", "", "Bob"), &bob),
            "case-sensitive"
        );
        assert!(finds(&clause("nick", "string", "notequal", "al*"), &bob));
        assert!(!finds(&clause("nick", "string", "notequal", "*"), &bob));
        let starred = record("b*b", 3);
        assert!(finds(&clause("nick", "string", "", r"b\*b"), &starred));
        assert!(!finds(&clause("nick", "string", "", r"b\*b"), &bob));
        assert!(finds(&clause("nick", "string", "less", "c"), &bob));
        assert!(finds(&clause("nick", "string", "greater", "a"), &bob));
        assert!(finds(&clause("nick", "string", "lessorequal", "bob"), &bob));
        assert!(!finds(
            &clause("nick", "string", "greaterorequal", "boc"),
            &bob
        ));
        assert!(finds(&clause("nick", "string", "greater", r"b\*"), &bob));
    }

    #[test]
    fn int_and_date_clauses() {
        let bob = record("bob", 3);
        assert!(finds(&clause("level", "int", "", " 3 "), &bob));
        assert!(finds(&clause("level", "int", "greater", "2"), &bob));
        assert!(!finds(&clause("level", "int", "less", "3"), &bob));
        assert!(finds(&clause("level", "int", "lessorequal", "3"), &bob));
        assert!(finds(
            &clause("level", "int", "greaterorequal", "-10"),
            &bob
        ));
        assert!(finds(&clause("level", "int", "notequal", "4"), &bob));
        assert!(finds(
            &clause("joined", "date", "less", "2021-01-01T00:00:00Z"),
            &bob
        ));
        assert!(finds(
            &clause("joined", "date", "", "2020-01-01T01:00:00+01:00"),
            &bob
        ));
        assert!(finds(
            &clause(
                "peercreationtime",
                "date",
                "greaterorequal",
                "2024-05-01T12:00:00Z"
            ),
            &bob
        ));
    }

    #[test]
    fn reserved_attributes_are_searchable() {
        let bob = record("bob", 3);
        assert!(finds(&clause("peercreatorid", "string", "", "alice"), &bob));
        assert!(finds(
            &clause("peerlastmodifiedby", "string", "", "al*"),
            &bob
        ));
        assert!(finds(
            &clause("peerrecordid", "string", "", "*-000000000abc"),
            &bob
        ));
        assert!(finds(&clause("peerrecordtype", "string", "", "*7"), &bob));
        assert!(finds(
            &clause(
                "peerlastmodificationtime",
                "date",
                "",
                "2024-05-01T12:00:00Z"
            ),
            &bob
        ));
    }

    #[test]
    fn missing_or_mistyped_attributes_match_nothing() {
        let bob = record("bob", 3);
        assert!(!finds(&clause("missing", "string", "", "*"), &bob));
        assert!(!finds(&clause("missing", "string", "notequal", "x"), &bob));
        assert!(!finds(&clause("level", "string", "", "3"), &bob));
        assert!(!finds(&clause("nick", "int", "notequal", "3"), &bob));
    }

    #[test]
    fn and_or_nest() {
        let bob = record("bob", 3);
        let alice = record("alice", 7);
        let body = format!(
            "<and>{}<or>{}{}</or></and>",
            clause("peercreatorid", "string", "", "alice"),
            clause("level", "int", "greater", "5"),
            clause("nick", "string", "", "b*"),
        );
        assert!(finds(&body, &bob));
        assert!(finds(&body, &alice));
        let neither = record("carol", 1);
        assert!(!finds(&body, &neither));
        let single = format!(
            "<or><and>{}</and></or>",
            clause("nick", "string", "", "bob")
        );
        assert!(finds(&single, &bob));
        assert!(!finds(&single, &alice));
        let parsed = search(&format!("<and>{}</and>", clause("level", "int", "", "1")));
        assert!(matches!(parsed.root(), Criterion::And(children) if children.len() == 1));
        let with_space = Search::parse(&format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
             <peersearch xmlns:dt=\"urn:schemas-microsoft-com:datatypes\">\n  <and>\n    {}\n  </and>\n</peersearch>\n",
            clause("nick", "string", "", "bob")
        ))
        .expect("whitespace between elements is fine");
        assert!(with_space.matches(&bob));
    }

    #[test]
    fn each_invalid_construct_is_refused() {
        let ok = clause("nick", "string", "", "bob");
        let cases: Vec<String> =
            vec![
            String::new(),
            "not xml".into(),
            "<peersearch/>".into(),
            format!("<search>{ok}</search>"),
            format!("<peersearch>{ok}{ok}</peersearch>"),
            format!("<peersearch x=\"1\">{ok}</peersearch>"),
            format!("<peersearch>text{ok}</peersearch>"),
            "<peersearch><and/></peersearch>".into(),
            "<peersearch><or></or></peersearch>".into(),
            format!("<peersearch><not>{ok}</not></peersearch>"),
            format!("<peersearch><and x=\"1\">{ok}</and></peersearch>"),
            format!("<peersearch><and>text{ok}</and></peersearch>"),
            format!("<peersearch><and>{ok}<bogus/></and></peersearch>"),
            "<peersearch><clause type=\"string\">x</clause></peersearch>".into(),
            "<peersearch><clause attrib=\"a\">x</clause></peersearch>".into(),
            format!("<peersearch>{}</peersearch>", clause("", "string", "", "x")),
            format!(
                "<peersearch>{}</peersearch>",
                clause(&"a".repeat(MAX_ATTRIBUTE_NAME_CHARS + 1), "string", "", "x")
            ),
            format!("<peersearch>{}</peersearch>", clause("a", "float", "", "1")),
            format!("<peersearch>{}</peersearch>", clause("a", "int", "like", "1")),
            format!("<peersearch>{}</peersearch>", clause("a", "int", "Equal", "1")),
            "<peersearch><clause attrib=\"a\" type=\"int\" comp=\"equal\">1</clause></peersearch>"
                .into(),
            "<peersearch><clause attrib=\"a\" type=\"int\"><x/></clause></peersearch>".into(),
            format!("<peersearch>{}</peersearch>", clause("a", "int", "", "one")),
            format!("<peersearch>{}</peersearch>", clause("a", "date", "", "today")),
            format!("<peersearch>{}</peersearch>", clause("a", "string", "", r"a\n")),
            format!("<peersearch>{}</peersearch>", clause("a", "string", "", r"a\")),
            format!("<peersearch>{}</peersearch>", clause("a", "string", "less", "a*")),
            format!("<peersearch>{}</peersearch>", clause("a", "string", "greater", "?")),
            format!(
                "<peersearch>{}</peersearch>",
                clause("peercreationtime", "string", "", "x")
            ),
            format!("<peersearch>{}</peersearch>", clause("peercreatorid", "int", "", "1")),
            format!("<peersearch>{ok}</peersearch><peersearch/>"),
            format!("<!DOCTYPE x><peersearch>{ok}</peersearch>"),
        ];
        for case in &cases {
            assert_eq!(
                Search::parse(case).map_err(|error| error.code()),
                Err(ResultCode::PEER_E_INVALID_SEARCH),
                "{case}"
            );
        }
    }

    #[test]
    fn bounds_are_refused() {
        let invalid = Err(ResultCode::PEER_E_INVALID_SEARCH);
        let leaf = clause("a", "int", "", "1");
        let deep = format!(
            "<peersearch>{}{leaf}{}</peersearch>",
            "<and>".repeat(MAX_SEARCH_DEPTH),
            "</and>".repeat(MAX_SEARCH_DEPTH)
        );
        assert_eq!(Search::parse(&deep).map_err(|error| error.code()), invalid);
        let deepest = format!(
            "<peersearch>{}{leaf}{}</peersearch>",
            "<and>".repeat(MAX_SEARCH_DEPTH - 2),
            "</and>".repeat(MAX_SEARCH_DEPTH - 2)
        );
        assert!(Search::parse(&deepest).is_ok());
        let wide = format!(
            "<peersearch><or>{}</or></peersearch>",
            leaf.repeat(MAX_SEARCH_ELEMENTS)
        );
        assert_eq!(Search::parse(&wide).map_err(|error| error.code()), invalid);
        let big = format!(
            "<peersearch>{}</peersearch>",
            clause("a", "string", "", &"x".repeat(MAX_SEARCH_BYTES))
        );
        assert_eq!(Search::parse(&big).map_err(|error| error.code()), invalid);
    }
}
