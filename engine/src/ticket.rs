//! Tickets: one string that tells another node how to reach this one and whom it will
//! find there: the peer id, the key (so the node id), and the addresses it listens at.
//!
//! A ticket is what one node hands another out of band (a chat message, a config file):
//! the receiving node opens a direct connection to one of the addresses and, because the
//! ticket carries the key, refuses a node there that presents another key; an allow-list
//! built from tickets pins which keys may connect.
//!
//! # Text form
//!
//! `pg1` (the format's name and version 1), then the body in lowercase base32 (RFC 4648
//! alphabet, no padding; upper case is read too). The body, in bytes:
//!
//! ```text
//! key (32)  peer id length (u16 BE)  peer id (UTF-8)  address count (u8)
//! per address: family (4 or 6)  IP (4 or 16)  port (u16 BE)
//! checksum (4): the first bytes of SHA-256 over everything before it
//! ```
//!
//! The key is the node's [`PeerKey`], the SHA-256 digest of its public key: the whole
//! digest, not the 64-bit [`NodeId`] taken from it, because a ticket pins identity and
//! 64 bits are too few to pin against a node that searches for a key to match. The
//! checksum catches a ticket damaged in copying before its key is trusted for anything.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use crate::ids::{NodeId, PeerId, PeerKey, MAX_ID_CHARS};
use crate::result::{PeerError, ResultCode};

/// The text every ticket of this format starts with: `pg` and the version, 1.
pub const TICKET_PREFIX: &str = "pg1";

/// The most addresses a ticket lists: enough for a node's interfaces in both families,
/// few enough that trying them in turn stays short.
pub const MAX_TICKET_ADDRESSES: usize = 8;

/// The longest peer id in bytes: [`MAX_ID_CHARS`] characters of up to 4 UTF-8 bytes.
const MAX_PEER_ID_BYTES: usize = MAX_ID_CHARS * 4;
/// Bytes of the checksum at the end of the body.
const CHECKSUM_LEN: usize = 4;
/// Bytes of one address at most: family, IPv6, port.
const MAX_ADDRESS_LEN: usize = 1 + 16 + 2;
/// The shortest body: key, peer id length and one byte of id, count, checksum.
const MIN_BODY_LEN: usize = 32 + 2 + 1 + 1 + CHECKSUM_LEN;
/// The longest body.
const MAX_BODY_LEN: usize =
    32 + 2 + MAX_PEER_ID_BYTES + 1 + MAX_TICKET_ADDRESSES * MAX_ADDRESS_LEN + CHECKSUM_LEN;

/// The longest ticket text, in characters: the prefix and the longest body in base32.
/// Longer text is refused before any decoding.
pub const MAX_TICKET_CHARS: usize = TICKET_PREFIX.len() + (MAX_BODY_LEN * 8).div_ceil(5);

/// The base32 alphabet of RFC 4648, lower case.
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// How a node can be reached and who it is: peer id, key and addresses.
///
/// ```
/// use peergraph_engine::{PeerId, PeerKey, Ticket};
///
/// let key = PeerKey([7; 32]);
/// let ticket = Ticket::new(PeerId::new("bob")?, key, vec!["127.0.0.1:4000".parse()?])?;
/// let text = ticket.to_string();
/// assert!(text.starts_with("pg1"));
/// let read: Ticket = text.parse()?;
/// assert_eq!(read, ticket);
/// assert_eq!(read.node_id(), key.node_id());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ticket {
    peer_id: PeerId,
    key: PeerKey,
    addresses: Vec<SocketAddr>,
}

impl Ticket {
    /// A ticket for the node `peer_id` with `key`, reachable at `addresses` (in the order
    /// to try them; none for a node that only connects out, whose ticket still serves an
    /// allow-list).
    ///
    /// # Errors
    /// `E_INVALIDARG` (with a [`TicketError`] as the cause) for more than
    /// [`MAX_TICKET_ADDRESSES`] addresses, or an address no node can be reached at (port
    /// 0, an unspecified or multicast IP).
    pub fn new(
        peer_id: PeerId,
        key: PeerKey,
        addresses: Vec<SocketAddr>,
    ) -> Result<Self, PeerError> {
        if addresses.len() > MAX_TICKET_ADDRESSES {
            return Err(TicketError::TooManyAddresses(addresses.len()).into());
        }
        if let Some(bad) = addresses.iter().find(|address| !reachable(address)) {
            return Err(TicketError::Unreachable(*bad).into());
        }
        Ok(Ticket {
            peer_id,
            key,
            addresses,
        })
    }

    /// The node's peer id.
    pub fn peer_id(&self) -> &PeerId {
        &self.peer_id
    }

    /// The node's key: the digest a link's TLS handshake must show.
    pub fn key(&self) -> &PeerKey {
        &self.key
    }

    /// The node id bound to the key.
    pub fn node_id(&self) -> NodeId {
        self.key.node_id()
    }

    /// Where the node listens, in the order to try.
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }

    /// The body: the fields, then the checksum.
    fn to_bytes(&self) -> Vec<u8> {
        let id = self.peer_id.as_str().as_bytes();
        let mut body = Vec::with_capacity(39 + id.len() + self.addresses.len() * MAX_ADDRESS_LEN);
        body.extend_from_slice(&self.key.0);
        // PeerId holds at most MAX_ID_CHARS characters, so at most 1,024 bytes.
        body.extend_from_slice(&(id.len() as u16).to_be_bytes());
        body.extend_from_slice(id);
        // Ticket::new holds at most MAX_TICKET_ADDRESSES.
        body.push(self.addresses.len() as u8);
        for address in &self.addresses {
            match address.ip() {
                IpAddr::V4(ip) => {
                    body.push(4);
                    body.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    body.push(6);
                    body.extend_from_slice(&ip.octets());
                }
            }
            body.extend_from_slice(&address.port().to_be_bytes());
        }
        let checksum = checksum(&body);
        body.extend_from_slice(&checksum);
        body
    }

    /// Reads a body: checksum first, then each field.
    fn from_bytes(body: &[u8]) -> Result<Self, TicketError> {
        if body.len() < MIN_BODY_LEN {
            return Err(TicketError::Truncated);
        }
        let (fields, sum) = body.split_at(body.len() - CHECKSUM_LEN);
        if checksum(fields) != sum {
            return Err(TicketError::Checksum);
        }
        let mut reader = Reader(fields);
        let mut key = [0u8; 32];
        key.copy_from_slice(reader.take(32)?);
        let id_len = usize::from(u16::from_be_bytes(reader.array()?));
        if id_len > MAX_PEER_ID_BYTES {
            return Err(TicketError::PeerId(format!(
                "{id_len} bytes, more than {MAX_PEER_ID_BYTES}"
            )));
        }
        let id = std::str::from_utf8(reader.take(id_len)?)
            .map_err(|_| TicketError::PeerId("not UTF-8".to_owned()))?;
        let peer_id = PeerId::new(id).map_err(|_| {
            TicketError::PeerId(format!(
                "`{}` is empty, over {MAX_ID_CHARS} characters or holds a NUL",
                id.escape_debug()
            ))
        })?;
        let count = usize::from(reader.array::<1>()?[0]);
        if count > MAX_TICKET_ADDRESSES {
            return Err(TicketError::TooManyAddresses(count));
        }
        let mut addresses = Vec::with_capacity(count);
        for _ in 0..count {
            let ip = match reader.array::<1>()?[0] {
                4 => IpAddr::V4(Ipv4Addr::from(reader.array::<4>()?)),
                6 => IpAddr::V6(Ipv6Addr::from(reader.array::<16>()?)),
                other => return Err(TicketError::Family(other)),
            };
            let address = SocketAddr::new(ip, u16::from_be_bytes(reader.array()?));
            if !reachable(&address) {
                return Err(TicketError::Unreachable(address));
            }
            addresses.push(address);
        }
        if !reader.0.is_empty() {
            return Err(TicketError::Trailing(reader.0.len()));
        }
        Ok(Ticket {
            peer_id,
            key: PeerKey(key),
            addresses,
        })
    }
}

/// Whether a node could listen at `address`: a port, and an IP one can send to.
fn reachable(address: &SocketAddr) -> bool {
    address.port() != 0 && !address.ip().is_unspecified() && !address.ip().is_multicast()
}

/// The first [`CHECKSUM_LEN`] bytes of SHA-256 over `bytes`.
fn checksum(bytes: &[u8]) -> [u8; CHECKSUM_LEN] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut sum = [0u8; CHECKSUM_LEN];
    sum.copy_from_slice(&digest.as_ref()[..CHECKSUM_LEN]);
    sum
}

/// Reads fields off the front of a body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], TicketError> {
        if self.0.len() < len {
            return Err(TicketError::Truncated);
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TicketError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }
}

impl fmt::Display for Ticket {
    /// The text form: [`TICKET_PREFIX`] and the body in base32.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(TICKET_PREFIX)?;
        f.write_str(&base32(&self.to_bytes()))
    }
}

impl FromStr for Ticket {
    type Err = TicketError;

    /// Reads the text form, checking everything: length, prefix and version, alphabet,
    /// checksum, each field, and that nothing follows.
    fn from_str(text: &str) -> Result<Self, TicketError> {
        if text.len() > MAX_TICKET_CHARS {
            return Err(TicketError::TooLong(text.len()));
        }
        let Some(rest) = text
            .get(..2)
            .filter(|head| head.eq_ignore_ascii_case("pg"))
            .and_then(|_| text.get(2..))
        else {
            return Err(TicketError::NotATicket);
        };
        // One digit of version: the body's base32 may itself start with a digit.
        let version = rest.chars().next().filter(char::is_ascii_digit);
        let Some(version) = version else {
            return Err(TicketError::NotATicket);
        };
        if rest.get(..1) != Some(&TICKET_PREFIX[2..]) {
            return Err(TicketError::Version(version));
        }
        let body = unbase32(&rest[1..])?;
        Ticket::from_bytes(&body)
    }
}

/// `bytes` in lowercase base32, without padding.
fn base32(bytes: &[u8]) -> String {
    let mut text = String::with_capacity((bytes.len() * 8).div_ceil(5));
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            text.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        text.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    text
}

/// The bytes of base32 `text` (either case, no padding). The unused bits of the last
/// character must be zero, so that each byte string has exactly one text form.
fn unbase32(text: &str) -> Result<Vec<u8>, TicketError> {
    let mut bytes = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for (at, character) in text.char_indices() {
        let value = match character {
            'a'..='z' => character as u32 - 'a' as u32,
            'A'..='Z' => character as u32 - 'A' as u32,
            '2'..='7' => character as u32 - '2' as u32 + 26,
            _ => {
                return Err(TicketError::Character {
                    character,
                    position: TICKET_PREFIX.len() + at,
                })
            }
        };
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            bytes.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    // A whole number of bytes leaves fewer than 5 bits over, all zero.
    if bits >= 5 || buffer != 0 {
        return Err(TicketError::Truncated);
    }
    Ok(bytes)
}

/// Why a text is not a ticket, or a ticket cannot be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// The text does not start with `pg` and a version.
    #[error("a ticket starts with pg1")]
    NotATicket,
    /// Another version of the format (the digit after `pg`).
    #[error("ticket version {0} is not supported (this build reads version 1, pg1...)")]
    Version(char),
    /// Longer than any ticket.
    #[error("a ticket is at most {max} characters; this text has {0}", max = MAX_TICKET_CHARS)]
    TooLong(usize),
    /// A character outside the base32 alphabet.
    #[error("character {character:?} at position {position} is not base32 (a-z, 2-7)")]
    Character {
        /// The character.
        character: char,
        /// Its byte offset in the text.
        position: usize,
    },
    /// The body ends early, or its length is not a whole number of bytes.
    #[error("the ticket is cut short: copy it whole")]
    Truncated,
    /// The checksum does not match the fields.
    #[error("the ticket is damaged (its checksum does not match): copy it whole")]
    Checksum,
    /// The peer id is not one.
    #[error("the ticket's peer id is not valid: {0}")]
    PeerId(String),
    /// More addresses than [`MAX_TICKET_ADDRESSES`].
    #[error("{0} addresses; a ticket holds at most {max}", max = MAX_TICKET_ADDRESSES)]
    TooManyAddresses(usize),
    /// An address family other than 4 or 6.
    #[error("unknown address family {0} (4 or 6)")]
    Family(u8),
    /// An address no node can be reached at.
    #[error("{0} is not an address a node can be reached at (port 0, unspecified or multicast)")]
    Unreachable(SocketAddr),
    /// Bytes after the last address.
    #[error("{0} bytes follow the last address")]
    Trailing(usize),
}

impl From<TicketError> for PeerError {
    /// `E_INVALIDARG`, with the ticket error as its cause.
    fn from(error: TicketError) -> Self {
        PeerError::with_cause(ResultCode::E_INVALIDARG, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ticket(peer: &str, addresses: &[&str]) -> Ticket {
        let addresses = addresses
            .iter()
            .map(|a| a.parse().expect("address"))
            .collect();
        Ticket::new(
            PeerId::new(peer).expect("peer id"),
            PeerKey([0xa5; 32]),
            addresses,
        )
        .expect("ticket")
    }

    #[test]
    fn base32_matches_rfc_4648() {
        // RFC 4648 §10, in lower case and without padding.
        for (bytes, text) in [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ] {
            assert_eq!(base32(bytes.as_bytes()), text);
            assert_eq!(unbase32(text).expect(text), bytes.as_bytes());
            assert_eq!(
                unbase32(&text.to_uppercase()).expect(text),
                bytes.as_bytes()
            );
        }
        // Non-zero unused bits, and lengths that are no whole number of bytes.
        assert_eq!(unbase32("mz"), Err(TicketError::Truncated));
        assert_eq!(unbase32("m"), Err(TicketError::Truncated));
        assert_eq!(unbase32("mzx"), Err(TicketError::Truncated));
    }

    #[test]
    fn a_ticket_round_trips_with_both_families_and_no_addresses() {
        for ticket in [
            ticket("bob", &["127.0.0.1:4000", "[2001:db8::1]:65535"]),
            ticket("alice", &[]),
            ticket("élodie 😀", &["10.0.0.1:1"]),
        ] {
            let text = ticket.to_string();
            assert!(text.starts_with(TICKET_PREFIX), "{text}");
            assert!(text.len() <= MAX_TICKET_CHARS);
            assert_eq!(text.parse::<Ticket>(), Ok(ticket.clone()));
            assert_eq!(text.to_uppercase().parse::<Ticket>(), Ok(ticket));
        }
    }

    #[test]
    fn the_longest_ticket_fits_the_bound() {
        let peer = "😀".repeat(MAX_ID_CHARS);
        let addresses = ["[2001:db8::1]:65535"; MAX_TICKET_ADDRESSES];
        let longest = ticket(&peer, &addresses).to_string();
        assert_eq!(longest.len(), MAX_TICKET_CHARS);
        assert!(longest.parse::<Ticket>().is_ok());
    }

    #[test]
    fn malformed_tickets_say_what_is_wrong() {
        let good = ticket("bob", &["127.0.0.1:4000"]).to_string();
        let cases: Vec<(String, TicketError)> = vec![
            (String::new(), TicketError::NotATicket),
            ("bob".into(), TicketError::NotATicket),
            ("pgx".into(), TicketError::NotATicket),
            ("pé".into(), TicketError::NotATicket),
            (format!("pg2{}", &good[3..]), TicketError::Version('2')),
            (
                format!("pg10{}", &good[3..]),
                TicketError::Character {
                    character: '0',
                    position: 3,
                },
            ),
            ("pg1".into(), TicketError::Truncated),
            (good[..good.len() - 8].to_owned(), TicketError::Truncated),
            (
                format!("{}!", &good[..good.len() - 1]),
                TicketError::Character {
                    character: '!',
                    position: good.len() - 1,
                },
            ),
            (
                "a".repeat(MAX_TICKET_CHARS + 1),
                TicketError::TooLong(MAX_TICKET_CHARS + 1),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<Ticket>(), Err(expected), "{text:?}");
        }
        // One character changed: the checksum catches it.
        let mut damaged = good.clone().into_bytes();
        damaged[10] = if damaged[10] == b'a' { b'b' } else { b'a' };
        let damaged = String::from_utf8(damaged).expect("ascii");
        assert_eq!(damaged.parse::<Ticket>(), Err(TicketError::Checksum));
        assert!(TicketError::Checksum.to_string().contains("copy it whole"));
    }

    /// A body with a valid checksum over `fields`, as text.
    fn sealed(fields: &[u8]) -> String {
        let mut body = fields.to_vec();
        body.extend_from_slice(&checksum(fields));
        format!("{TICKET_PREFIX}{}", base32(&body))
    }

    #[test]
    fn bad_fields_under_a_good_checksum_are_refused() {
        let key = [1u8; 32];
        let fields = |id: &[u8], rest: &[u8]| {
            let mut fields = key.to_vec();
            fields.extend_from_slice(&(id.len() as u16).to_be_bytes());
            fields.extend_from_slice(id);
            fields.extend_from_slice(rest);
            fields
        };
        let v4 = |port: u16| {
            let mut a = vec![4, 127, 0, 0, 1];
            a.extend_from_slice(&port.to_be_bytes());
            a
        };
        let cases: Vec<(Vec<u8>, TicketError)> = vec![
            (fields(b"bob", &[9]), TicketError::TooManyAddresses(9)),
            (fields(b"bob", &[1, 5, 0, 0]), TicketError::Family(5)),
            (fields(b"bob", &[1, 4, 127]), TicketError::Truncated),
            (
                fields(b"bob", &[&[1][..], &v4(0)].concat()),
                TicketError::Unreachable("127.0.0.1:0".parse().expect("address")),
            ),
            (
                fields(b"bob", &[&[1][..], &v4(80)[..], &[0]].concat()),
                TicketError::Trailing(1),
            ),
            (
                fields(b"\xff\xfe", &[0]),
                TicketError::PeerId("not UTF-8".into()),
            ),
            (
                fields(b"a\0b", &[0]),
                TicketError::PeerId("`a\\0b` is empty, over 256 characters or holds a NUL".into()),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(sealed(&body).parse::<Ticket>(), Err(expected));
        }
        // A peer id length past the body.
        let mut long = key.to_vec();
        long.extend_from_slice(&[0x00, 0xff, b'x', 0, 0]);
        assert_eq!(sealed(&long).parse::<Ticket>(), Err(TicketError::Truncated));
        let mut huge = key.to_vec();
        huge.extend_from_slice(&[0xff, 0xff, b'x', 0, 0]);
        assert!(matches!(
            sealed(&huge).parse::<Ticket>(),
            Err(TicketError::PeerId(_))
        ));
    }

    #[test]
    fn new_refuses_what_cannot_be_reached() {
        let key = PeerKey([0; 32]);
        let bob = || PeerId::new("bob").expect("peer id");
        for address in ["0.0.0.0:4000", "127.0.0.1:0", "[ff02::1]:4000", "[::]:1"] {
            let error = Ticket::new(bob(), key, vec![address.parse().expect("address")])
                .expect_err(address);
            assert_eq!(error.code(), ResultCode::E_INVALIDARG);
            assert!(error.to_string().contains(address), "{error}");
        }
        let many = vec!["127.0.0.1:1".parse().expect("address"); MAX_TICKET_ADDRESSES + 1];
        assert!(Ticket::new(bob(), key, many).is_err());
    }

    proptest! {
        #[test]
        fn any_ticket_round_trips(
            peer in "[a-zA-Z0-9 ._é😀-]{1,40}",
            key in any::<[u8; 32]>(),
            addresses in prop::collection::vec(
                (any::<IpAddr>(), 1u16..).prop_map(|(ip, port)| SocketAddr::new(ip, port)),
                0..=MAX_TICKET_ADDRESSES,
            ),
        ) {
            let addresses: Vec<SocketAddr> =
                addresses.into_iter().filter(reachable).collect();
            let ticket = Ticket::new(PeerId::new(peer).expect("peer id"), PeerKey(key), addresses)
                .expect("ticket");
            let text = ticket.to_string();
            prop_assert!(text.len() <= MAX_TICKET_CHARS);
            prop_assert_eq!(text.parse::<Ticket>(), Ok(ticket));
        }

        #[test]
        fn any_text_is_read_without_panicking(text in "\\PC{0,200}") {
            let _ = text.parse::<Ticket>();
        }

        #[test]
        fn any_body_is_read_without_panicking(body in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = sealed(&body).parse::<Ticket>();
            let _ = format!("{TICKET_PREFIX}{}", base32(&body)).parse::<Ticket>();
        }
    }
}
