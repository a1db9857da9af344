//! A small, bounded element tree read with quick-xml, shared by the attribute and search
//! parsers.
//!
//! Both formats are a few kinds of element with attributes and text, so each parser walks
//! this tree instead of a stream of events. The reader enforces the size, depth and
//! element-count limits it is given while it reads, so a hostile document costs at most
//! those bounds. DOCTYPE declarations and processing instructions are refused (no entity
//! definitions, no external references); only the five predefined entities and character
//! references are resolved.

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

/// How large a document may be, how deep and how many elements it may hold.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// The most bytes of text.
    pub(crate) max_bytes: usize,
    /// The deepest nesting; the root is at depth 1.
    pub(crate) max_depth: usize,
    /// The most elements, the root included.
    pub(crate) max_elements: usize,
}

/// One element: its name, attributes (in document order) and the text directly inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) attributes: Vec<(String, String)>,
    /// The concatenated text and CDATA directly inside the element, entities resolved.
    pub(crate) text: String,
    pub(crate) children: Vec<Element>,
}

impl Element {
    /// The value of attribute `name`, if present.
    pub(crate) fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// True when every attribute is a namespace declaration (`xmlns`, `xmlns:*`), which
    /// the formats allow on their root and ignore (samples written for the Windows API
    /// declare the `dt` data-types namespace there).
    pub(crate) fn only_namespace_attributes(&self) -> bool {
        self.attributes
            .iter()
            .all(|(key, _)| key == "xmlns" || key.starts_with("xmlns:"))
    }

    /// True when the element's own text is only whitespace (the XML kind).
    pub(crate) fn text_is_blank(&self) -> bool {
        self.text
            .chars()
            .all(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
    }
}

/// Why a document was refused. The parsers map every case to their own result code; the
/// variants exist for tests and diagnostics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum XmlError {
    /// Larger than `max_bytes`.
    TooLarge,
    /// Nested deeper than `max_depth`.
    TooDeep,
    /// More than `max_elements` elements.
    TooManyElements,
    /// Not well-formed, or a construct this reader refuses (DOCTYPE, processing
    /// instructions, unknown entities, a second root, text outside the root).
    Malformed,
}

/// Reads `text` into its root element, within `limits`.
pub(crate) fn parse(text: &str, limits: Limits) -> Result<Element, XmlError> {
    if text.len() > limits.max_bytes {
        return Err(XmlError::TooLarge);
    }
    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.check_comments = true;
    config.allow_unmatched_ends = false;
    config.expand_empty_elements = false;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    loop {
        let event = reader.read_event().map_err(|_| XmlError::Malformed)?;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(XmlError::Malformed);
            }
            Event::Start(start) => {
                elements += 1;
                if elements > limits.max_elements {
                    return Err(XmlError::TooManyElements);
                }
                if stack.len() + 1 > limits.max_depth {
                    return Err(XmlError::TooDeep);
                }
                stack.push(element(&start)?);
            }
            Event::Empty(start) => {
                elements += 1;
                if elements > limits.max_elements {
                    return Err(XmlError::TooManyElements);
                }
                if stack.len() + 1 > limits.max_depth {
                    return Err(XmlError::TooDeep);
                }
                let done = element(&start)?;
                close(&mut stack, &mut root, done);
            }
            Event::End(_) => {
                // check_end_names made sure the name matches the open element.
                let done = stack.pop().ok_or(XmlError::Malformed)?;
                close(&mut stack, &mut root, done);
            }
            Event::Text(content) => {
                let content = content.xml10_content().map_err(|_| XmlError::Malformed)?;
                push_text(&mut stack, &content)?;
            }
            Event::CData(content) => {
                let content = content.decode().map_err(|_| XmlError::Malformed)?;
                push_text(&mut stack, &content)?;
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = reference.decode().map_err(|_| XmlError::Malformed)?;
                        resolve_predefined_entity(&name)
                            .ok_or(XmlError::Malformed)?
                            .to_string()
                    }
                    Err(_) => return Err(XmlError::Malformed),
                };
                push_text(&mut stack, &resolved)?;
            }
            Event::Comment(_) | Event::Decl(_) => {}
            Event::PI(_) | Event::DocType(_) => return Err(XmlError::Malformed),
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed);
    }
    root.ok_or(XmlError::Malformed)
}

/// Attaches a finished element to its parent, or makes it the root.
fn close(stack: &mut [Element], root: &mut Option<Element>, done: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(done),
        None => *root = Some(done),
    }
}

/// Adds text to the open element; outside the root only whitespace may appear.
fn push_text(stack: &mut [Element], text: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(open) => {
            open.text.push_str(text);
            Ok(())
        }
        None if text.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) => Ok(()),
        None => Err(XmlError::Malformed),
    }
}

/// An element with its name and unescaped attributes, no content yet.
fn element(start: &BytesStart<'_>) -> Result<Element, XmlError> {
    let name = std::str::from_utf8(start.name().as_ref())
        .map_err(|_| XmlError::Malformed)?
        .to_owned();
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        // with_checks (the default) refuses duplicate and malformed attributes.
        let attribute = attribute.map_err(|_| XmlError::Malformed)?;
        let key = std::str::from_utf8(attribute.key.as_ref())
            .map_err(|_| XmlError::Malformed)?
            .to_owned();
        let value = attribute
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|_| XmlError::Malformed)?
            .into_owned();
        attributes.push((key, value));
    }
    Ok(Element {
        name,
        attributes,
        text: String::new(),
        children: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bytes: 1024,
        max_depth: 3,
        max_elements: 5,
    };

    #[test]
    fn reads_a_tree_with_entities_and_cdata() {
        let root = parse(
            "<?xml version=\"1.0\"?><!-- c --><a x=\"1 &amp; 2\"><b>t &lt;&#65;&#x42;<![CDATA[<c>]]></b><b/></a>\n",
            LIMITS,
        )
        .expect("well-formed");
        assert_eq!(root.name, "a");
        assert_eq!(root.attribute("x"), Some("1 & 2"));
        assert_eq!(root.children.len(), 2);
        assert_eq!(root.children[0].text, "t <AB<c>");
        assert!(root.text_is_blank());
    }

    #[test]
    fn refuses_what_is_not_well_formed_or_too_big() {
        let cases: &[(&str, XmlError)] = &[
            ("", XmlError::Malformed),
            ("<a>", XmlError::Malformed),
            ("<a></b>", XmlError::Malformed),
            ("<a/><b/>", XmlError::Malformed),
            ("text<a/>", XmlError::Malformed),
            ("<a/>text", XmlError::Malformed),
            ("<a x='1' x='2'/>", XmlError::Malformed),
            ("<a>&custom;</a>", XmlError::Malformed),
            (
                "<!DOCTYPE a [<!ENTITY e 'x'>]><a>&e;</a>",
                XmlError::Malformed,
            ),
            ("<?pi x?><a/>", XmlError::Malformed),
            ("<a>&#0;</a>", XmlError::Malformed),
            ("<a><b><c><d/></c></b></a>", XmlError::TooDeep),
            ("<a><b/><b/><b/><b/><b/></a>", XmlError::TooManyElements),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text, LIMITS).as_ref().err(), Some(expected), "{text}");
        }
        let long = format!("<a>{}</a>", "x".repeat(1024));
        assert_eq!(parse(&long, LIMITS), Err(XmlError::TooLarge));
    }
}
