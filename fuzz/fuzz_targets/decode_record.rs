//! Feeds the input to `Record::decode`, the reader of every stored record. It must never
//! panic, and a record it accepts must survive its own encoding: encoding it and decoding
//! that gives the same record, and the encoding is as long as `encoded_len` says.

#![no_main]

use libfuzzer_sys::fuzz_target;
use peergraph_engine::Record;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::decode(data) {
        let encoded = record.encode();
        assert_eq!(encoded.len(), record.encoded_len());
        assert_eq!(Record::decode(&encoded), Ok(record));
    }
});
