//! Feeds the input, as text, to `Attributes::parse`. It must never panic, and whatever it
//! accepts must round-trip through the canonical XML: `to_xml` parses back to the same
//! attributes and is a fixed point.

#![no_main]

use libfuzzer_sys::fuzz_target;
use peergraph_engine::Attributes;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(attributes) = Attributes::parse(text) {
        let canonical = attributes.to_xml();
        let again = Attributes::parse(&canonical).expect("canonical XML parses");
        assert_eq!(again, attributes, "canonical XML changes the attributes");
        assert_eq!(again.to_xml(), canonical, "canonical XML is not a fixed point");
    }
});
