//! Property tests for the frame codec (`peergraph_engine::wire`): every valid message
//! round-trips, frames have the length their header says, a stream cut into chunks anywhere
//! (one byte at a time, inside headers) decodes to the same messages as each frame's last
//! byte arrives, a frame inside one chunk is not copied, arbitrary bytes never panic the
//! decoder and decode only from their canonical encoding (and the same however they are
//! cut), a truncated stream is "mid frame" rather than an error or a message, and a length
//! over its type's limit is refused as soon as the header is in, before any body is held.
//!
//! All of them drive [`FrameDecoder`], the decoder the transport reads with; the fuzz
//! target in `fuzz/` drives it too, with coverage guidance; these run in every `cargo test`.

use bytes::{Bytes, BytesMut};
use peergraph_engine::wire::{
    Connect, DisconnectReason, FrameDecoder, FrameHeader, Message, ProtocolError, RefuseReason,
    Welcome, DATA_PREFIX_LEN, FRAME_HEADER_LEN, MAX_CONTROL_BODY_LEN, MAX_DATA_BODY_LEN,
    MAX_DATA_LEN, MAX_WIRE_STRING_LEN, PROOF_LEN,
};
use peergraph_engine::{ConnectionId, DataType, GraphId, PeerId, MAX_ID_CHARS};
use proptest::prelude::*;
use proptest::sample::Index;

/// The largest DATA payload generated. `MAX_DATA_LEN` (1 MiB) frames would make 256 cases
/// take seconds each in a debug build; the length arithmetic is the same at 8 KiB.
const MAX_TEST_PAYLOAD: usize = 8 * 1024;

/// One character of an id: mostly ASCII, often anything Unicode allows but NUL (which ids
/// reject), sometimes a 4-byte character so that ids reach their 1,024-byte wire maximum.
fn id_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => proptest::char::range('!', '~'),
        2 => any::<char>().prop_filter("ids hold no NUL", |c| *c != '\0'),
        1 => proptest::char::range('\u{10000}', '\u{10FFFF}'),
    ]
}

/// An id of 1 to [`MAX_ID_CHARS`] characters: short ones most of the time, since they are
/// the common case, and the whole range, plus exactly the maximum in 4-byte characters.
fn id_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::collection::vec(id_char(), 1..=16),
        4 => proptest::collection::vec(id_char(), 1..=MAX_ID_CHARS),
        1 => Just(vec!['\u{1F600}'; MAX_ID_CHARS]),
    ]
    .prop_map(|chars| chars.into_iter().collect())
}

fn peer_id() -> impl Strategy<Value = PeerId> {
    id_text().prop_map(|text| PeerId::new(text).expect("generated ids are valid"))
}

fn graph_id() -> impl Strategy<Value = GraphId> {
    id_text().prop_map(|text| GraphId::new(text).expect("generated ids are valid"))
}

fn connection_id() -> impl Strategy<Value = ConnectionId> {
    prop_oneof![Just(1), Just(u64::MAX), 1..=u64::MAX]
        .prop_map(|raw| ConnectionId::new(raw).expect("nonzero"))
}

/// A membership proof: empty or exactly [`PROOF_LEN`] bytes.
fn proof() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        Just(Bytes::new()),
        proptest::collection::vec(any::<u8>(), PROOF_LEN).prop_map(Bytes::from),
    ]
}

fn refuse_reason() -> impl Strategy<Value = RefuseReason> {
    prop_oneof![
        Just(RefuseReason::Busy),
        Just(RefuseReason::AlreadyConnected),
        Just(RefuseReason::DuplicateConnection),
        Just(RefuseReason::DirectConnectionDisallowed),
        Just(RefuseReason::WrongGraph),
        Just(RefuseReason::WrongPeer),
        Just(RefuseReason::UnsupportedVersion),
        Just(RefuseReason::LimitReached),
        Just(RefuseReason::NotAuthorized),
        Just(RefuseReason::KeyMismatch),
    ]
}

fn disconnect_reason() -> impl Strategy<Value = DisconnectReason> {
    prop_oneof![
        Just(DisconnectReason::Leaving),
        Just(DisconnectReason::LeastUseful),
        Just(DisconnectReason::AppDisconnect),
    ]
}

fn payload() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..=64),
        1 => proptest::collection::vec(any::<u8>(), 0..=MAX_TEST_PAYLOAD),
    ]
    .prop_map(Bytes::from)
}

/// Any valid message, every variant equally likely.
fn message() -> impl Strategy<Value = Message> {
    let connect = (
        any::<u8>(),
        any::<bool>(),
        connection_id(),
        graph_id(),
        peer_id(),
        peer_id(),
        proof(),
    )
        .prop_map(
            |(version, direct, connection_id, graph_id, source_peer_id, target_peer_id, proof)| {
                Message::Connect(Connect {
                    version,
                    direct,
                    connection_id,
                    graph_id,
                    source_peer_id,
                    target_peer_id,
                    proof,
                })
            },
        );
    let welcome = (connection_id(), graph_id(), peer_id(), proof()).prop_map(
        |(connection_id, graph_id, peer_id, proof)| {
            Message::Welcome(Welcome {
                connection_id,
                graph_id,
                peer_id,
                proof,
            })
        },
    );
    let data = (any::<[u8; 16]>(), payload()).prop_map(|(guid, payload)| Message::Data {
        data_type: DataType(guid),
        payload,
    });
    prop_oneof![
        connect,
        welcome,
        refuse_reason().prop_map(Message::Refuse),
        disconnect_reason().prop_map(Message::Disconnect),
        data,
    ]
}

/// One field of a frame body.
#[derive(Clone, Debug)]
struct Field {
    bytes: Vec<u8>,
    /// For a string's or a proof's contents, the width of the length field just before
    /// it (2 or 1 bytes); 0 for a field with no length of its own.
    length_width: usize,
}

/// A valid message's body cut into its fields, as `docs/PROTOCOL.md` lays them out (a
/// string or a proof is two fields: its length, then its contents). Written here from the
/// layout rather than taken from the encoder, so `fields_match_encoder` checks the encoder
/// against the layout too.
fn fields(message: &Message) -> Vec<Field> {
    fn plain(bytes: &[u8]) -> Field {
        Field {
            bytes: bytes.to_vec(),
            length_width: 0,
        }
    }
    fn prefixed(fields: &mut Vec<Field>, length: &[u8], contents: &[u8]) {
        fields.push(plain(length));
        fields.push(Field {
            bytes: contents.to_vec(),
            length_width: length.len(),
        });
    }
    fn string(fields: &mut Vec<Field>, text: &str) {
        prefixed(fields, &(text.len() as u16).to_be_bytes(), text.as_bytes());
    }
    fn proof(fields: &mut Vec<Field>, proof: &Bytes) {
        prefixed(fields, &[proof.len() as u8], proof);
    }
    let mut fields = Vec::new();
    match message {
        Message::Connect(connect) => {
            fields.push(plain(&[connect.version]));
            fields.push(plain(&[u8::from(connect.direct)]));
            fields.push(plain(&connect.connection_id.get().to_be_bytes()));
            string(&mut fields, connect.graph_id.as_str());
            string(&mut fields, connect.source_peer_id.as_str());
            string(&mut fields, connect.target_peer_id.as_str());
            proof(&mut fields, &connect.proof);
        }
        Message::Welcome(welcome) => {
            fields.push(plain(&welcome.connection_id.get().to_be_bytes()));
            string(&mut fields, welcome.graph_id.as_str());
            string(&mut fields, welcome.peer_id.as_str());
            proof(&mut fields, &welcome.proof);
        }
        Message::Refuse(reason) => fields.push(plain(&[*reason as u8])),
        Message::Disconnect(reason) => fields.push(plain(&[*reason as u8])),
        Message::Data { data_type, payload } => {
            fields.push(plain(&data_type.0));
            fields.push(plain(payload));
        }
    }
    fields
}

/// The body the fields make.
fn body(fields: &[Field]) -> Vec<u8> {
    fields
        .iter()
        .flat_map(|field| field.bytes.iter().copied())
        .collect()
}

/// What every decoded message must satisfy beyond what its types enforce: a proof is empty
/// or [`PROOF_LEN`] bytes, a payload at most [`MAX_DATA_LEN`].
fn obeys_limits(message: &Message) -> bool {
    let proof_ok = |proof: &Bytes| proof.is_empty() || proof.len() == PROOF_LEN;
    match message {
        Message::Connect(connect) => proof_ok(&connect.proof),
        Message::Welcome(welcome) => proof_ok(&welcome.proof),
        Message::Data { payload, .. } => payload.len() <= MAX_DATA_LEN,
        Message::Refuse(_) | Message::Disconnect(_) => true,
    }
}

/// A frame of type `frame_type` around `body`, its header stating the body's real length.
fn frame(frame_type: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![frame_type];
    bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
    bytes.extend_from_slice(body);
    bytes
}

/// How one field of a valid frame is spoiled.
#[derive(Clone, Debug)]
enum Spoil {
    /// The field's bytes replaced by as many random ones.
    Scramble(Vec<u8>),
    /// One byte of the field set to a value.
    Poke(Index, u8),
    /// The field replaced by 0 to 4 random bytes (shorter or longer).
    Replace(Vec<u8>),
    /// Random bytes inserted after the field.
    Insert(Vec<u8>),
    /// A string's or a proof's contents replaced, and its length field set to match: the
    /// length checks (proof sizes, id lengths, UTF-8, NUL) are reached with a consistent
    /// body.
    Resize(Index, Vec<u8>),
}

/// Contents for [`Spoil::Resize`]: random bytes (mostly invalid UTF-8, or a proof of the
/// wrong size), and ids that break one rule each.
fn resized_contents() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..=40),
        1 => Just(Vec::new()),
        1 => Just(b"nul\0inside".to_vec()),
        1 => Just("a".repeat(MAX_ID_CHARS + 1).into_bytes()),
        1 => Just("\u{e9}".repeat(MAX_ID_CHARS + 1).into_bytes()),
        1 => Just("a".repeat(MAX_WIRE_STRING_LEN + 1).into_bytes()),
    ]
}

fn spoil() -> impl Strategy<Value = Spoil> {
    let small = prop_oneof![any::<u8>(), 0u8..=8];
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 64).prop_map(Spoil::Scramble),
        1 => (any::<Index>(), small).prop_map(|(at, byte)| Spoil::Poke(at, byte)),
        1 => proptest::collection::vec(any::<u8>(), 0..=4).prop_map(Spoil::Replace),
        1 => proptest::collection::vec(any::<u8>(), 1..=3).prop_map(Spoil::Insert),
        3 => (any::<Index>(), resized_contents())
            .prop_map(|(which, contents)| Spoil::Resize(which, contents)),
    ]
}

/// A valid frame with exactly one field spoiled, and a header that states the new body's
/// length (so the decoder reads the body instead of stopping at the header). Each field's
/// checks are reached with everything else valid: a lenient check shows up as a message
/// whose encoding is not the bytes read, or that breaks a limit.
fn spoiled_frame() -> impl Strategy<Value = Vec<u8>> {
    (message(), any::<Index>(), spoil()).prop_map(|(message, which, spoil)| {
        let mut fields = fields(&message);
        let which = which.index(fields.len());
        let field = &mut fields[which].bytes;
        match spoil {
            Spoil::Scramble(random) => {
                for (byte, random) in field.iter_mut().zip(random.iter().cycle()) {
                    *byte = *random;
                }
            }
            Spoil::Poke(at, value) => {
                if !field.is_empty() {
                    let at = at.index(field.len());
                    field[at] = value;
                }
            }
            Spoil::Replace(bytes) => *field = bytes,
            Spoil::Insert(bytes) => field.extend_from_slice(&bytes),
            Spoil::Resize(which, mut contents) => {
                let prefixed: Vec<usize> = (0..fields.len())
                    .filter(|&index| fields[index].length_width > 0)
                    .collect();
                if !prefixed.is_empty() {
                    let at = prefixed[which.index(prefixed.len())];
                    if fields[at].length_width == 1 {
                        contents.truncate(usize::from(u8::MAX));
                        fields[at - 1].bytes = vec![contents.len() as u8];
                    } else {
                        fields[at - 1].bytes = (contents.len() as u16).to_be_bytes().to_vec();
                    }
                    fields[at].bytes = contents;
                }
            }
        }
        frame(message.frame_type() as u8, &body(&fields))
    })
}

/// Bytes for the decoder to chew on: pure noise; noise behind a plausible header (a known
/// or nearly known type and a length that matches what follows, so bodies get parsed); a
/// valid frame with a few bytes overwritten anywhere (header included); and a valid frame
/// with one field spoiled.
fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
    let noise = proptest::collection::vec(any::<u8>(), 0..=256);
    let framed = (0u8..=6, proptest::collection::vec(any::<u8>(), 0..=256))
        .prop_map(|(frame_type, body)| frame(frame_type, &body));
    let mutated = (
        message(),
        proptest::collection::vec((any::<Index>(), any::<u8>()), 1..=4),
    )
        .prop_map(|(message, edits)| {
            let mut bytes = message.to_bytes().to_vec();
            for (index, byte) in edits {
                let at = index.index(bytes.len());
                bytes[at] = byte;
            }
            bytes
        });
    prop_oneof![
        1 => noise,
        1 => framed,
        1 => mutated,
        3 => spoiled_frame(),
    ]
}

/// How a test stream is cut into the chunks the decoder is fed.
#[derive(Clone, Debug)]
enum Chunking {
    /// All of it in one chunk.
    Whole,
    /// One byte a chunk.
    Bytes,
    /// Chunks of these lengths (1 to 64), repeated to the end.
    Sizes(Vec<usize>),
    /// Cuts at these places (two at one place push an empty chunk).
    Anywhere(Vec<Index>),
    /// A cut this many bytes (1 to 4) into every frame, inside its header, and cuts at
    /// these places.
    InHeaders(usize, Vec<Index>),
}

fn chunking() -> impl Strategy<Value = Chunking> {
    prop_oneof![
        1 => Just(Chunking::Whole),
        1 => Just(Chunking::Bytes),
        2 => proptest::collection::vec(1usize..=64, 1..=8).prop_map(Chunking::Sizes),
        2 => proptest::collection::vec(any::<Index>(), 0..=12).prop_map(Chunking::Anywhere),
        2 => (1..FRAME_HEADER_LEN, proptest::collection::vec(any::<Index>(), 0..=4))
            .prop_map(|(offset, cuts)| Chunking::InHeaders(offset, cuts)),
    ]
}

/// `stream` cut as `chunking` says, as slices of it (so a payload that shares a chunk's
/// buffer points into `stream`). `frame_starts` are where frames begin.
fn chunks(stream: &Bytes, frame_starts: &[usize], chunking: &Chunking) -> Vec<Bytes> {
    let len = stream.len();
    let mut cuts: Vec<usize> = match chunking {
        Chunking::Whole => Vec::new(),
        Chunking::Bytes => (1..len).collect(),
        Chunking::Sizes(sizes) => sizes
            .iter()
            .cycle()
            .scan(0, |at, size| {
                *at += size;
                Some(*at)
            })
            .take_while(|&at| at < len)
            .collect(),
        Chunking::Anywhere(cuts) => cuts.iter().map(|cut| cut.index(len + 1)).collect(),
        Chunking::InHeaders(offset, cuts) => frame_starts
            .iter()
            .map(|start| (start + offset).min(len))
            .chain(cuts.iter().map(|cut| cut.index(len + 1)))
            .collect(),
    };
    cuts.push(0);
    cuts.push(len);
    cuts.sort_unstable();
    cuts.windows(2)
        .map(|pair| stream.slice(pair[0]..pair[1]))
        .collect()
}

/// `messages` encoded back to back, and where each frame starts and ends.
fn encode_all(messages: &[Message]) -> (Bytes, Vec<usize>, Vec<usize>) {
    let mut stream = BytesMut::new();
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    for message in messages {
        starts.push(stream.len());
        message.encode(&mut stream);
        ends.push(stream.len());
    }
    (stream.freeze(), starts, ends)
}

/// What a decoder made of a stream: the messages, the error it stopped at, and the bytes
/// it still held at the end.
#[derive(Debug, PartialEq)]
struct Outcome {
    messages: Vec<Message>,
    error: Option<ProtocolError>,
    held: usize,
}

/// Feeds `chunks` (of `stream`, in order) to a decoder, taking every message after each
/// push, and checks each step: every message is the canonical encoding of exactly the bytes
/// it came from and within the limits, `Ok(None)` leaves every byte not yet in a message
/// held, an error is returned again by the next call and leaves nothing held.
fn feed(stream: &Bytes, chunks: &[Bytes]) -> Result<Outcome, TestCaseError> {
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
                    prop_assert!(obeys_limits(&message), "{:?} breaks a limit", message);
                    let taken = pushed - decoder.buffered_len();
                    prop_assert_eq!(
                        &message.to_bytes()[..],
                        &stream[offset..taken],
                        "{:?} is not the canonical encoding of what was read",
                        message
                    );
                    offset = taken;
                    messages.push(message);
                }
                Ok(None) => {
                    prop_assert_eq!(decoder.buffered_len(), pushed - offset);
                    prop_assert_eq!(decoder.is_mid_frame(), pushed > offset);
                    break;
                }
                Err(error) => {
                    prop_assert_eq!(decoder.next_message(), Err(error.clone()));
                    prop_assert_eq!(decoder.buffered_len(), 0);
                    return Ok(Outcome {
                        messages,
                        error: Some(error),
                        held: 0,
                    });
                }
            }
        }
    }
    Ok(Outcome {
        messages,
        error: None,
        held: decoder.buffered_len(),
    })
}

/// The largest body a frame of type byte `frame_type` (1 to 5) may have.
fn max_body_len(frame_type: u8) -> usize {
    if frame_type == 0x05 {
        MAX_DATA_BODY_LEN
    } else {
        MAX_CONTROL_BODY_LEN
    }
}

proptest! {
    /// (a) encode then decode gives the same message and takes exactly the encoded bytes:
    /// what follows the frame (here, the start of another) is still held. A frame inside
    /// one chunk is not copied: a DATA payload points into the chunk.
    #[test]
    fn encode_then_decode_round_trips(
        message in message(),
        after in proptest::collection::vec(any::<u8>(), 0..=8),
    ) {
        let mut buf = BytesMut::new();
        message.encode(&mut buf);
        buf.extend_from_slice(&after);
        let chunk = buf.freeze();
        let mut decoder = FrameDecoder::new();
        decoder.push(chunk.clone());
        let decoded = decoder.next_message();
        if let Ok(Some(Message::Data { payload, .. })) = &decoded {
            if !payload.is_empty() {
                prop_assert!(chunk.as_ptr_range().contains(&payload.as_ptr()));
            }
        }
        prop_assert_eq!(decoded, Ok(Some(message)));
        prop_assert_eq!(decoder.buffered_len(), after.len());
    }

    /// (b) a frame is its header plus the body length the header states, that length is
    /// within its type's limit, and the header names the message's type.
    #[test]
    fn encoded_length_matches_header(message in message()) {
        let bytes = message.to_bytes();
        let mut header = [0u8; FRAME_HEADER_LEN];
        header.copy_from_slice(&bytes[..FRAME_HEADER_LEN]);
        let header = FrameHeader::parse(header).expect("an encoded header parses");
        prop_assert_eq!(header.frame_type, message.frame_type());
        prop_assert_eq!(bytes.len(), FRAME_HEADER_LEN + header.body_len);
        prop_assert_eq!(bytes.len(), header.frame_len());
        prop_assert!(header.body_len <= header.frame_type.max_body_len());
        if let Message::Data { payload, .. } = &message {
            prop_assert_eq!(header.body_len, DATA_PREFIX_LEN + payload.len());
        }
        let mut appended = BytesMut::from(&b"prefix"[..]);
        message.encode(&mut appended);
        prop_assert_eq!(&appended[b"prefix".len()..], &bytes[..]);
    }

    /// (c) a sequence of messages encoded back to back and cut into chunks anywhere (one
    /// byte at a time, inside every header, empty chunks) decodes to exactly the messages
    /// in order: each comes out once its last byte is pushed, not before, and the decoder
    /// holds only the bytes of the frame not yet whole. A DATA payload shares the chunks'
    /// buffer exactly when its frame lies inside one chunk; otherwise it was copied once.
    #[test]
    fn split_stream_decodes_to_the_same_messages(
        messages in proptest::collection::vec(message(), 0..=6),
        chunking in chunking(),
    ) {
        let (stream, starts, ends) = encode_all(&messages);
        let chunks = chunks(&stream, &starts, &chunking);
        let mut decoder = FrameDecoder::new();
        let mut received = Vec::new();
        let mut pushed = 0;
        for chunk in &chunks {
            pushed += chunk.len();
            decoder.push(chunk.clone());
            while let Some(message) = decoder.next_message().expect("a valid stream") {
                received.push(message);
            }
            let whole = ends.iter().filter(|&&end| end <= pushed).count();
            prop_assert_eq!(received.len(), whole, "after {} bytes", pushed);
            let boundary = if whole == 0 { 0 } else { ends[whole - 1] };
            prop_assert_eq!(decoder.buffered_len(), pushed - boundary);
        }
        prop_assert!(!decoder.is_mid_frame());

        let mut chunk_ranges = Vec::new();
        let mut at = 0;
        for chunk in &chunks {
            chunk_ranges.push(at..at + chunk.len());
            at += chunk.len();
        }
        let shared = stream.as_ptr_range();
        for (index, message) in received.iter().enumerate() {
            if let Message::Data { payload, .. } = message {
                if payload.is_empty() {
                    continue;
                }
                let in_one_chunk = chunk_ranges
                    .iter()
                    .any(|range| range.start <= starts[index] && ends[index] <= range.end);
                prop_assert_eq!(
                    shared.contains(&payload.as_ptr()),
                    in_one_chunk,
                    "frame {} of {:?}",
                    index,
                    chunking
                );
            }
        }
        prop_assert_eq!(received, messages);
    }

    /// The layout written out in [`fields`] is the encoder's.
    #[test]
    fn fields_match_encoder(message in message()) {
        let bytes = message.to_bytes();
        let laid_out = frame(message.frame_type() as u8, &body(&fields(&message)));
        prop_assert_eq!(&bytes[..], &laid_out[..]);
    }

    /// (d) arbitrary bytes, cut into chunks anywhere, never panic the decoder; every message
    /// it returns was encoded canonically: re-encoding it gives exactly the bytes it took.
    /// `Ok(None)` takes nothing. How the bytes are cut changes nothing: the messages, the
    /// error and the bytes held at the end are those of the bytes in one chunk. Each case
    /// checks several inputs, since a lenient check shows up only when the one field it
    /// guards is spoiled and the rest is valid.
    #[test]
    fn arbitrary_bytes_decode_only_canonically(
        inputs in proptest::collection::vec((wire_bytes(), chunking()), 1..=16),
    ) {
        for (bytes, chunking) in inputs {
            let stream = Bytes::from(bytes);
            let whole = feed(&stream, std::slice::from_ref(&stream))?;
            let cut = feed(&stream, &chunks(&stream, &[0], &chunking))?;
            prop_assert_eq!(cut, whole, "cut as {:?}", chunking);
        }
    }

    /// (e) every strict prefix of a valid frame is "not yet a frame": `Ok(None)`, with every
    /// byte held, never an error and never a message.
    #[test]
    fn truncated_frame_is_incomplete(message in message()) {
        let bytes = message.to_bytes();
        for cut in 0..bytes.len() {
            let mut decoder = FrameDecoder::new();
            decoder.push(bytes.slice(..cut));
            prop_assert_eq!(decoder.next_message(), Ok(None), "cut at {}", cut);
            prop_assert_eq!(decoder.buffered_len(), cut);
            prop_assert_eq!(decoder.is_mid_frame(), cut > 0);
        }
    }

    /// (f) a stream that ends inside a frame, cut into chunks anywhere, gives the messages
    /// before that frame and then `Ok(None)` with the decoder "mid frame", holding exactly
    /// the bytes of the frame that came.
    #[test]
    fn truncated_stream_is_mid_frame(
        messages in proptest::collection::vec(message(), 1..=6),
        which in any::<Index>(),
        inside in any::<Index>(),
        chunking in chunking(),
    ) {
        let (stream, starts, ends) = encode_all(&messages);
        let last = which.index(messages.len());
        // Every frame is at least 6 bytes long: a cut 1 to len - 1 bytes into it.
        let cut = starts[last] + 1 + inside.index(ends[last] - starts[last] - 1);
        let truncated = stream.slice(..cut);
        let mut decoder = FrameDecoder::new();
        let mut received = Vec::new();
        for chunk in chunks(&truncated, &starts, &chunking) {
            decoder.push(chunk);
            while let Some(message) = decoder.next_message().expect("a valid stream") {
                received.push(message);
            }
        }
        prop_assert_eq!(&received[..], &messages[..last]);
        prop_assert_eq!(decoder.next_message(), Ok(None));
        prop_assert!(decoder.is_mid_frame());
        prop_assert_eq!(decoder.buffered_len(), cut - starts[last]);
    }

    /// (g) a header whose length is over its type's limit is refused by the call after the
    /// push that completes it, however the header is cut, even when body bytes came in the
    /// same chunk; before that no more than the header's bytes are held, and after it
    /// nothing is: the announced body is never waited for nor buffered.
    #[test]
    fn oversized_length_is_refused_at_the_header(
        frame_type in 1u8..=5,
        excess in any::<u32>(),
        header_cuts in proptest::collection::vec(1..FRAME_HEADER_LEN, 0..=4),
        body in proptest::collection::vec(any::<u8>(), 0..=64),
        with_header in any::<Index>(),
    ) {
        let max = max_body_len(frame_type);
        let room = u64::from(u32::MAX) - max as u64;
        let len = max as u64 + 1 + u64::from(excess) % room;
        let mut bytes = vec![frame_type];
        bytes.extend_from_slice(&(len as u32).to_be_bytes());
        bytes.extend_from_slice(&body);
        let bytes = Bytes::from(bytes);

        let mut cuts = header_cuts;
        cuts.sort_unstable();
        cuts.dedup();
        let completing_end = FRAME_HEADER_LEN + with_header.index(body.len() + 1);
        let mut decoder = FrameDecoder::new();
        let mut start = 0;
        for cut in cuts {
            decoder.push(bytes.slice(start..cut));
            prop_assert_eq!(decoder.next_message(), Ok(None));
            prop_assert_eq!(decoder.buffered_len(), cut);
            start = cut;
        }
        decoder.push(bytes.slice(start..completing_end));
        let refused = Err(ProtocolError::FrameTooLong { len: len as usize, max });
        prop_assert_eq!(decoder.next_message(), refused.clone());
        prop_assert!(!decoder.is_mid_frame());
        decoder.push(bytes.slice(completing_end..));
        prop_assert_eq!(decoder.next_message(), refused);
        prop_assert_eq!(decoder.buffered_len(), 0);
    }
}
