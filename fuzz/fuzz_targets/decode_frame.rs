//! Feeds the input to `Message::decode` as a stream: frames are decoded one after another
//! until the decoder wants more bytes (`Ok(None)`) or rejects them (`Err`). It must never
//! panic, and every message it returns must round-trip: its encoding is exactly the bytes
//! it was decoded from (the encoding is canonical), and decoding that encoding gives the
//! same message back.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use peergraph_engine::wire::Message;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut offset = 0;
    loop {
        let before = buf.len();
        match Message::decode(&mut buf) {
            Ok(Some(message)) => {
                let consumed = before - buf.len();
                let encoded = message.to_bytes();
                assert_eq!(
                    &encoded[..],
                    &data[offset..offset + consumed],
                    "re-encoding {message:?} does not give the bytes it was decoded from"
                );
                let mut again = BytesMut::from(&encoded[..]);
                assert_eq!(Message::decode(&mut again), Ok(Some(message)));
                assert!(again.is_empty(), "decode left bytes of its own encoding");
                offset += consumed;
            }
            Ok(None) => {
                assert_eq!(&buf[..], &data[offset..], "Ok(None) consumed bytes");
                break;
            }
            Err(_) => break,
        }
    }
});
