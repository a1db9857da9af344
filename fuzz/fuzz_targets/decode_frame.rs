//! Drives `FrameDecoder`, the decoder the transport reads with, over the input cut into
//! chunks at places the input itself chooses:
//!
//! ```text
//! +---------+------------------------+=====================================+
//! | n       | n chunk lengths        | the stream                          |
//! | 1 byte  | 1 byte each: len - 1   | fed in chunks of those lengths,     |
//! | (% 16)  | (1 to 256 bytes)       | repeated; all in one chunk if n = 0 |
//! +---------+------------------------+=====================================+
//! ```
//!
//! After each chunk, messages are taken until the decoder wants more bytes (`Ok(None)`) or
//! rejects them (`Err`). It must never panic, and:
//!
//! - every message round-trips: its encoding is exactly the bytes it was decoded from (the
//!   encoding is canonical), and decoding that encoding gives the same message back, with
//!   nothing left over;
//! - `Ok(None)` takes no bytes: everything not yet in a message is still held;
//! - an error is returned again by the next call, and nothing is held after it;
//! - how the stream is cut changes nothing: the messages, the error and the bytes held at
//!   the end are those of the whole stream pushed as one chunk.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use peergraph_engine::wire::{FrameDecoder, Message, ProtocolError};

/// Most chunk lengths the input may choose (more give the fuzzer nothing new).
const MAX_LENGTHS: u8 = 16;

fuzz_target!(|data: &[u8]| {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(count % MAX_LENGTHS).min(rest.len());
    let (lengths, stream) = rest.split_at(count);
    let stream = Bytes::copy_from_slice(stream);

    let whole = feed(&stream, std::slice::from_ref(&stream));
    if lengths.is_empty() {
        return;
    }
    let mut chunks = Vec::new();
    let mut start = 0;
    for length in lengths.iter().cycle() {
        if start == stream.len() {
            break;
        }
        let end = (start + usize::from(*length) + 1).min(stream.len());
        chunks.push(stream.slice(start..end));
        start = end;
    }
    assert_eq!(
        feed(&stream, &chunks),
        whole,
        "cutting the stream changed what it decodes to"
    );
});

/// What the decoder made of a stream: the messages, the error it stopped at, and the bytes
/// it still held at the end.
#[derive(Debug, PartialEq)]
struct Outcome {
    messages: Vec<Message>,
    error: Option<ProtocolError>,
    held: usize,
}

/// Feeds `chunks` (of `stream`, in order), taking every message after each push, and checks
/// every step.
fn feed(stream: &Bytes, chunks: &[Bytes]) -> Outcome {
    let mut decoder = FrameDecoder::new();
    let mut messages = Vec::new();
    let mut pushed = 0;
    let mut offset = 0;
    for chunk in chunks {
        pushed += chunk.len();
        decoder.push(chunk.clone());
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => {
                    let taken = pushed - decoder.buffered_len();
                    let encoded = message.to_bytes();
                    assert_eq!(
                        &encoded[..],
                        &stream[offset..taken],
                        "re-encoding {message:?} does not give the bytes it was decoded from"
                    );
                    let mut again = FrameDecoder::new();
                    again.push(encoded);
                    assert_eq!(again.next_message().as_ref(), Ok(&Some(message.clone())));
                    assert!(
                        !again.is_mid_frame(),
                        "decode left bytes of its own encoding"
                    );
                    offset = taken;
                    messages.push(message);
                }
                Ok(None) => {
                    assert_eq!(
                        decoder.buffered_len(),
                        pushed - offset,
                        "Ok(None) took bytes"
                    );
                    break;
                }
                Err(error) => {
                    assert_eq!(decoder.next_message(), Err(error.clone()));
                    assert!(!decoder.is_mid_frame(), "bytes held after an error");
                    return Outcome {
                        messages,
                        error: Some(error),
                        held: 0,
                    };
                }
            }
        }
    }
    Outcome {
        messages,
        error: None,
        held: decoder.buffered_len(),
    }
}
