//! A small JSON writer for the host's `--json` lines: flat objects of strings, numbers,
//! booleans and arrays, with text escaped as RFC 8259 requires. Hand-written so that the
//! examples need no serialization framework for a few dozen distinct lines.

use std::fmt::Write as _;

/// One JSON object, built field by field in the order the fields are added.
#[derive(Clone, Debug)]
pub(crate) struct Object {
    text: String,
}

impl Object {
    /// An empty object.
    pub(crate) fn new() -> Self {
        Object {
            text: String::from("{"),
        }
    }

    fn key(&mut self, key: &str) {
        if self.text.len() > 1 {
            self.text.push(',');
        }
        push_string(&mut self.text, key);
        self.text.push(':');
    }

    /// Adds a string field.
    pub(crate) fn str(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        push_string(&mut self.text, value);
        self
    }

    /// Adds an unsigned integer field.
    pub(crate) fn u64(mut self, key: &str, value: u64) -> Self {
        self.key(key);
        let _ = write!(self.text, "{value}");
        self
    }

    /// Adds a number field with `decimals` digits after the point (`null` if not finite:
    /// JSON has no NaN or infinity).
    pub(crate) fn f64(mut self, key: &str, value: f64, decimals: usize) -> Self {
        self.key(key);
        if value.is_finite() {
            let _ = write!(self.text, "{value:.decimals$}");
        } else {
            self.text.push_str("null");
        }
        self
    }

    /// Adds a string field, or `null` when there is no value.
    pub(crate) fn opt_str(mut self, key: &str, value: Option<&str>) -> Self {
        match value {
            Some(value) => self.str(key, value),
            None => {
                self.key(key);
                self.text.push_str("null");
                self
            }
        }
    }

    /// Adds a boolean field.
    pub(crate) fn bool(mut self, key: &str, value: bool) -> Self {
        self.key(key);
        self.text.push_str(if value { "true" } else { "false" });
        self
    }

    /// Adds an array of strings.
    pub(crate) fn strings<'a>(
        mut self,
        key: &str,
        values: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        self.key(key);
        self.text.push('[');
        for (index, value) in values.into_iter().enumerate() {
            if index > 0 {
                self.text.push(',');
            }
            push_string(&mut self.text, value);
        }
        self.text.push(']');
        self
    }

    /// Adds an object.
    pub(crate) fn object(mut self, key: &str, value: Object) -> Self {
        self.key(key);
        self.text.push_str(&value.finish());
        self
    }

    /// Adds an array of objects.
    pub(crate) fn objects(mut self, key: &str, values: impl IntoIterator<Item = Object>) -> Self {
        self.key(key);
        self.text.push('[');
        for (index, value) in values.into_iter().enumerate() {
            if index > 0 {
                self.text.push(',');
            }
            self.text.push_str(&value.finish());
        }
        self.text.push(']');
        self
    }

    /// The object's text.
    pub(crate) fn finish(mut self) -> String {
        self.text.push('}');
        self.text
    }
}

/// Appends `value` as a JSON string: quoted, with `"` and `\` escaped and every control
/// character (U+0000 to U+001F) written as an escape. Everything else is copied as UTF-8,
/// which JSON allows.
pub(crate) fn push_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_json_requires() {
        let mut out = String::new();
        push_string(&mut out, "a\"b\\c\nd\re\tf\u{0}\u{1f}\u{8}\u{c}é😀\u{7f}");
        assert_eq!(
            out,
            "\"a\\\"b\\\\c\\nd\\re\\tf\\u0000\\u001f\\b\\fé😀\u{7f}\""
        );
    }

    #[test]
    fn every_string_round_trips_through_a_json_parser() {
        let samples = [
            String::new(),
            "hello".to_owned(),
            "quote \" backslash \\ slash /".to_owned(),
            (0u32..0x80).filter_map(char::from_u32).collect::<String>(),
            "\u{2028}\u{2029}\u{feff}ü€𝄞".to_owned(),
        ];
        for sample in samples {
            let line = Object::new().str("text", &sample).finish();
            let parsed: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
            assert_eq!(parsed["text"].as_str(), Some(sample.as_str()), "{line}");
        }
    }

    #[test]
    fn objects_and_arrays_are_well_formed() {
        let line = Object::new()
            .str("reply", "stats")
            .u64("n", u64::MAX)
            .f64("rtt_ms", 1.23456, 3)
            .f64("bad", f64::NAN, 3)
            .bool("ok", true)
            .strings("status", ["LISTENING", "SYNCHRONIZED"])
            .objects("connections", [Object::new().u64("id", 7), Object::new()])
            .object("record", Object::new().str("text", "hi"))
            .finish();
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(parsed["n"].as_u64(), Some(u64::MAX));
        assert_eq!(parsed["rtt_ms"].as_f64(), Some(1.235));
        assert!(parsed["bad"].is_null());
        assert_eq!(parsed["status"][1], "SYNCHRONIZED");
        assert_eq!(parsed["connections"][0]["id"], 7);
        assert_eq!(parsed["record"]["text"], "hi");
        assert_eq!(Object::new().finish(), "{}");
    }
}
