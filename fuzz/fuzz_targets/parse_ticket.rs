//! Feeds the input, as text, to `Ticket::from_str`. It must never panic, and whatever it
//! accepts must round-trip: the ticket's text form parses back to the same ticket and is
//! a fixed point (lower case, one text per ticket).

#![no_main]

use libfuzzer_sys::fuzz_target;
use peergraph_engine::Ticket;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ticket) = text.parse::<Ticket>() {
        let canonical = ticket.to_string();
        let again: Ticket = canonical.parse().expect("a ticket's text parses");
        assert_eq!(again, ticket, "the text form changes the ticket");
        assert_eq!(again.to_string(), canonical, "the text form is not a fixed point");
        assert_eq!(canonical, text.to_ascii_lowercase(), "two texts for one ticket");
    }
});
