//! Record attributes: typed name/value pairs, written as XML, that searches match on.
//!
//! The format is the reference's:
//!
//! ```xml
//! <attributes>
//!   <attribute name="nick" type="string">alice</attribute>
//!   <attribute name="joined" type="date">2024-05-01T12:00:00Z</attribute>
//!   <attribute name="level" type="int">3</attribute>
//! </attributes>
//! ```
//!
//! An empty string stands for no attributes. Names are case-sensitive and unique in a
//! record; the reserved names ([`RESERVED_ATTRIBUTE_NAMES`]) belong to the engine in any
//! letter case. `int` values are signed 64-bit decimals and `date` values take the form
//! [`GraphTime::parse_date`] reads; both may be surrounded by whitespace. `string` values
//! are kept exactly.

use std::fmt;

use quick_xml::escape::escape;

use crate::record::time::GraphTime;
use crate::record::xml::{self, Element, Limits};
use crate::result::{PeerError, ResultCode};

/// The largest attribute XML, in bytes: 64 KiB. Attributes are parsed and kept in memory
/// for every record and read by every search, so they stay small; bulk belongs in the
/// record's data.
pub const MAX_ATTRIBUTES_BYTES: usize = 64 * 1024;
/// The most attributes on one record: 256, far more than a search needs, and small
/// enough that matching a record stays cheap.
pub const MAX_ATTRIBUTES: usize = 256;
/// The longest attribute name, in characters (the same bound as ids).
pub const MAX_ATTRIBUTE_NAME_CHARS: usize = 256;
/// The format's depth: `<attributes>` holding `<attribute>`s. The reader refuses anything
/// deeper while it reads, so nesting costs nothing.
pub const ATTRIBUTES_DEPTH: usize = 2;

/// Names the engine fills in on every record, searchable but never set by applications:
/// the creator, the last modifier, the last modification time, the record id, the record
/// type and the creation time.
pub const RESERVED_ATTRIBUTE_NAMES: [&str; 6] = [
    "peercreatorid",
    "peerlastmodifiedby",
    "peerlastmodificationtime",
    "peerrecordid",
    "peerrecordtype",
    "peercreationtime",
];

/// True when `name` is reserved, in any letter case.
pub fn is_reserved_attribute(name: &str) -> bool {
    RESERVED_ATTRIBUTE_NAMES
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(name))
}

/// The type of an attribute or a search clause.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum AttributeType {
    /// Text, compared by Unicode scalar values; searches may use wildcards.
    String,
    /// A point in graph time.
    Date,
    /// A signed 64-bit integer.
    Int,
}

impl AttributeType {
    /// The name the XML uses: `string`, `date` or `int`.
    pub const fn name(self) -> &'static str {
        match self {
            AttributeType::String => "string",
            AttributeType::Date => "date",
            AttributeType::Int => "int",
        }
    }

    /// The type for its XML name (exact, lowercase).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "string" => Some(AttributeType::String),
            "date" => Some(AttributeType::Date),
            "int" => Some(AttributeType::Int),
            _ => None,
        }
    }
}

/// A typed attribute value.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum AttributeValue {
    /// A `string` value.
    String(String),
    /// A `date` value.
    Date(GraphTime),
    /// An `int` value.
    Int(i64),
}

impl AttributeValue {
    /// The value's type.
    pub const fn kind(&self) -> AttributeType {
        match self {
            AttributeValue::String(_) => AttributeType::String,
            AttributeValue::Date(_) => AttributeType::Date,
            AttributeValue::Int(_) => AttributeType::Int,
        }
    }

    /// Reads the text of a value of type `kind`; `None` when it is not one.
    pub fn parse(kind: AttributeType, text: &str) -> Option<Self> {
        let trimmed = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
        match kind {
            AttributeType::String => Some(AttributeValue::String(text.to_owned())),
            AttributeType::Date => GraphTime::parse_date(trimmed).map(AttributeValue::Date),
            AttributeType::Int => trimmed.parse().ok().map(AttributeValue::Int),
        }
    }
}

impl fmt::Display for AttributeValue {
    /// The text form [`AttributeValue::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttributeValue::String(text) => f.write_str(text),
            AttributeValue::Date(time) => write!(f, "{time}"),
            AttributeValue::Int(value) => write!(f, "{value}"),
        }
    }
}

/// A record's attributes, checked: unique, unreserved, well-typed, within the bounds.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct Attributes {
    entries: Vec<(String, AttributeValue)>,
}

fn invalid() -> PeerError {
    PeerError::new(ResultCode::PEER_E_INVALID_ATTRIBUTES)
}

impl Attributes {
    /// No attributes.
    pub const fn new() -> Self {
        Attributes {
            entries: Vec::new(),
        }
    }

    /// Parses attribute XML (see the module docs); the empty string gives no attributes.
    ///
    /// # Errors
    /// `PEER_E_INVALID_ATTRIBUTES` when the XML is not well-formed, is larger than
    /// [`MAX_ATTRIBUTES_BYTES`], does not follow the format (another root or child
    /// element, text between attributes, a missing or unknown `name`/`type`, a child
    /// inside an `<attribute>`), holds a value that is not of its type, a reserved or
    /// repeated name, a name longer than [`MAX_ATTRIBUTE_NAME_CHARS`] or more than
    /// [`MAX_ATTRIBUTES`] attributes.
    pub fn parse(text: &str) -> Result<Self, PeerError> {
        if text.is_empty() {
            return Ok(Attributes::new());
        }
        let limits = Limits {
            max_bytes: MAX_ATTRIBUTES_BYTES,
            max_depth: ATTRIBUTES_DEPTH,
            max_elements: MAX_ATTRIBUTES + 1,
        };
        let root = xml::parse(text, limits).map_err(|_| invalid())?;
        if root.name != "attributes" || !root.only_namespace_attributes() || !root.text_is_blank() {
            return Err(invalid());
        }
        let mut attributes = Attributes::new();
        for child in &root.children {
            let (name, value) = attribute(child)?;
            attributes.insert(name, value)?;
        }
        Ok(attributes)
    }

    /// These attributes with `name` set to `value`.
    ///
    /// # Errors
    /// `PEER_E_INVALID_ATTRIBUTES` when `name` is empty, reserved, already present or
    /// longer than [`MAX_ATTRIBUTE_NAME_CHARS`], when the name or a string value holds a
    /// character XML cannot carry, when a date is after [`GraphTime::MAX_DATE`], when
    /// there would be more than [`MAX_ATTRIBUTES`], or when the XML would pass
    /// [`MAX_ATTRIBUTES_BYTES`].
    pub fn with(
        mut self,
        name: impl Into<String>,
        value: AttributeValue,
    ) -> Result<Self, PeerError> {
        self.insert(name.into(), value)?;
        if self.to_xml().len() > MAX_ATTRIBUTES_BYTES {
            return Err(invalid());
        }
        Ok(self)
    }

    fn insert(&mut self, name: String, value: AttributeValue) -> Result<(), PeerError> {
        let text_ok = match &value {
            AttributeValue::String(text) => is_xml_text(text),
            AttributeValue::Date(time) => *time <= GraphTime::MAX_DATE,
            AttributeValue::Int(_) => true,
        };
        if !text_ok
            || !is_xml_text(&name)
            || name.is_empty()
            || name.chars().count() > MAX_ATTRIBUTE_NAME_CHARS
            || is_reserved_attribute(&name)
            || self.get(&name).is_some()
            || self.entries.len() >= MAX_ATTRIBUTES
        {
            return Err(invalid());
        }
        self.entries.push((name, value));
        Ok(())
    }

    /// The value of attribute `name` (case-sensitive).
    pub fn get(&self, name: &str) -> Option<&AttributeValue> {
        self.entries
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// The attributes in the order they were written.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &AttributeValue)> {
        self.entries
            .iter()
            .map(|(name, value)| (name.as_str(), value))
    }

    /// How many attributes there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The canonical XML: the empty string for no attributes, otherwise one
    /// `<attributes>` element with the attributes in order, escaped. [`Attributes::parse`]
    /// reads it back to an equal value.
    pub fn to_xml(&self) -> String {
        if self.entries.is_empty() {
            return String::new();
        }
        let mut xml = String::from("<attributes>");
        for (name, value) in &self.entries {
            xml.push_str("<attribute name=\"");
            xml.push_str(&escape_text(name));
            xml.push_str("\" type=\"");
            xml.push_str(value.kind().name());
            xml.push_str("\">");
            xml.push_str(&escape_text(&value.to_string()));
            xml.push_str("</attribute>");
        }
        xml.push_str("</attributes>");
        xml
    }
}

/// True when every character of `text` may appear in an XML 1.0 document.
fn is_xml_text(text: &str) -> bool {
    text.chars().all(|c| {
        matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
            || c >= '\u{10000}'
    })
}

/// Escapes markup characters, and carriage returns and tabs too, so that line-end and
/// attribute-value normalization leave the text as it was.
fn escape_text(text: &str) -> String {
    escape(text)
        .replace('\r', "&#13;")
        .replace('\t', "&#9;")
        .replace('\n', "&#10;")
}

/// One `<attribute>` element's name and value.
fn attribute(element: &Element) -> Result<(String, AttributeValue), PeerError> {
    if element.name != "attribute" || !element.children.is_empty() {
        return Err(invalid());
    }
    let mut name = None;
    let mut kind = None;
    for (key, value) in &element.attributes {
        match key.as_str() {
            "name" => name = Some(value.clone()),
            "type" => kind = Some(AttributeType::from_name(value).ok_or_else(invalid)?),
            _ => return Err(invalid()),
        }
    }
    let (name, kind) = name.zip(kind).ok_or_else(invalid)?;
    let value = AttributeValue::parse(kind, &element.text).ok_or_else(invalid)?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> Option<ResultCode> {
        Attributes::parse(text).err().map(|error| error.code())
    }

    #[test]
    fn parses_each_type() {
        let attributes = Attributes::parse(
            "<attributes>\n <attribute name=\"nick\" type=\"string\"> a &amp; b </attribute>\n \
             <attribute name=\"level\" type=\"int\"> -42 </attribute>\
             <attribute name=\"joined\" type=\"date\">2024-05-01T12:00:00Z</attribute></attributes>",
        )
        .expect("valid");
        assert_eq!(attributes.len(), 3);
        assert_eq!(
            attributes.get("nick"),
            Some(&AttributeValue::String(" a & b ".into()))
        );
        assert_eq!(attributes.get("level"), Some(&AttributeValue::Int(-42)));
        assert_eq!(
            attributes.get("joined"),
            GraphTime::parse_date("2024-05-01T12:00:00Z")
                .map(AttributeValue::Date)
                .as_ref()
        );
        assert_eq!(attributes.get("Nick"), None, "names are case-sensitive");
        assert_eq!(Attributes::parse(&attributes.to_xml()), Ok(attributes));
    }

    #[test]
    fn empty_forms_mean_no_attributes() {
        assert_eq!(Attributes::parse(""), Ok(Attributes::new()));
        assert_eq!(Attributes::parse("<attributes/>"), Ok(Attributes::new()));
        assert_eq!(
            Attributes::parse("<attributes> </attributes>"),
            Ok(Attributes::new())
        );
        assert_eq!(
            Attributes::parse(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
                 <attributes xmlns:dt=\"urn:schemas-microsoft-com:datatypes\"/>"
            ),
            Ok(Attributes::new())
        );
        assert_eq!(Attributes::new().to_xml(), "");
    }

    #[test]
    fn refuses_bad_input_with_invalid_attributes() {
        let invalid = Some(ResultCode::PEER_E_INVALID_ATTRIBUTES);
        for text in [
            "<attributes>",
            "not xml",
            "<attrs/>",
            "<attributes x=\"1\"/>",
            "<attributes>text</attributes>",
            "<attributes><attribute name=\"a\">x</attribute></attributes>",
            "<attributes><attribute type=\"int\">1</attribute></attributes>",
            "<attributes><attribute name=\"a\" type=\"float\">1</attribute></attributes>",
            "<attributes><attribute name=\"a\" type=\"String\">1</attribute></attributes>",
            "<attributes><attribute name=\"a\" type=\"int\">1.5</attribute></attributes>",
            "<attributes><attribute name=\"a\" type=\"int\">99999999999999999999</attribute></attributes>",
            "<attributes><attribute name=\"a\" type=\"date\">yesterday</attribute></attributes>",
            "<attributes><attribute name=\"a\" type=\"int\" extra=\"1\">1</attribute></attributes>",
            "<attributes><attribute name=\"\" type=\"int\">1</attribute></attributes>",
            "<attributes><attribute name=\"a\" type=\"string\"><b/></attribute></attributes>",
            "<attributes><other name=\"a\" type=\"string\"/></attributes>",
            "<attributes><attribute name=\"a\" type=\"int\">1</attribute>\
             <attribute name=\"a\" type=\"int\">2</attribute></attributes>",
            "<attributes><attribute name=\"peercreatorid\" type=\"string\">x</attribute></attributes>",
            "<attributes><attribute name=\"PeerRecordId\" type=\"string\">x</attribute></attributes>",
        ] {
            assert_eq!(code(text), invalid, "{text}");
        }
    }

    #[test]
    fn bounds_hold() {
        let invalid = Some(ResultCode::PEER_E_INVALID_ATTRIBUTES);
        let many: String = (0..=MAX_ATTRIBUTES)
            .map(|i| format!("<attribute name=\"a{i}\" type=\"int\">{i}</attribute>"))
            .collect();
        assert_eq!(code(&format!("<attributes>{many}</attributes>")), invalid);
        let long_name = "n".repeat(MAX_ATTRIBUTE_NAME_CHARS + 1);
        assert_eq!(
            code(&format!(
                "<attributes><attribute name=\"{long_name}\" type=\"int\">1</attribute></attributes>"
            )),
            invalid
        );
        let big = "x".repeat(MAX_ATTRIBUTES_BYTES);
        assert_eq!(
            code(&format!(
                "<attributes><attribute name=\"a\" type=\"string\">{big}</attribute></attributes>"
            )),
            invalid
        );
        assert!(Attributes::new()
            .with("a", AttributeValue::String(big))
            .is_err());
    }

    #[test]
    fn builder_checks_names() {
        let attributes = Attributes::new()
            .with("a<&\"", AttributeValue::String("<v>".into()))
            .and_then(|a| a.with("b", AttributeValue::Int(7)))
            .expect("valid");
        assert_eq!(
            Attributes::parse(&attributes.to_xml()),
            Ok(attributes.clone())
        );
        assert!(attributes
            .clone()
            .with("b", AttributeValue::Int(1))
            .is_err());
        assert!(attributes
            .clone()
            .with("PEERCREATIONTIME", AttributeValue::Int(1))
            .is_err());
        assert!(attributes
            .clone()
            .with("nul", AttributeValue::String("\0".into()))
            .is_err());
        assert!(attributes
            .clone()
            .with("late", AttributeValue::Date(GraphTime::MAX))
            .is_err());
        assert!(attributes
            .clone()
            .with("last", AttributeValue::Date(GraphTime::MAX_DATE))
            .is_ok());
        let spaced = Attributes::new()
            .with("line\tend", AttributeValue::String("a\r\nb\tc\n".into()))
            .expect("valid");
        assert_eq!(Attributes::parse(&spaced.to_xml()), Ok(spaced));
    }
}
