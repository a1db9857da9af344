//! The host's commands: one per line of standard input, parsed here into [`Command`]s
//! with no I/O, so that every malformed line gets an exact message.

use std::path::PathBuf;

use peergraph::{AttributeType, ConnectionId, PeerId, RecordId, RecordType, Ticket};

use super::address::Target;

/// How long an `add`ed record lives unless `--ttl` says otherwise: an hour.
pub(crate) const DEFAULT_TTL_SECS: u32 = 3600;

/// What the host understands, with a one-line summary each (the `help` command prints it).
pub(crate) const USAGE: &[(&str, &str)] = &[
    (
        "open PEER_ID ADDR",
        "open a direct connection to peer PEER_ID listening at ADDR (HOST:PORT)",
    ),
    (
        "open TICKET",
        "open a direct connection to the node of a ticket (see info); its key must match",
    ),
    (
        "send CONNECTION TEXT",
        "send the rest of the line as one text message",
    ),
    (
        "sendfile CONNECTION PATH",
        "send a file (name, size, SHA-256, then 1 MiB chunks)",
    ),
    ("close CONNECTION", "close a direct connection"),
    ("enum", "list the direct connections"),
    (
        "info",
        "this node: graph, peer id, node id, addresses, status, ticket",
    ),
    (
        "stats [CONNECTION]",
        "bytes sent/received, RTT, congestion window, losses",
    ),
    (
        "add [TYPE] [--ttl SECS] [--attr NAME=TYPE:VALUE]... TEXT",
        "add a record (default type: note; ttl 3600 s)",
    ),
    ("update RECORD_ID TEXT", "replace a record's text"),
    (
        "delete RECORD_ID [--local]",
        "delete a record (--local: this node's copy only)",
    ),
    ("get RECORD_ID", "one record: attributes, text, times"),
    ("records [TYPE]", "list the records, or those of one type"),
    ("search XML", "the records a <peersearch> document matches"),
    ("help", "this list"),
    ("quit", "close the graph and exit (so does end of input)"),
];

/// One parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// `open PEER_ID ADDR`: ADDR is an IP socket address or a host name and port.
    Open { peer_id: String, target: Target },
    /// `open TICKET`: the peer id, key and addresses a ticket holds.
    OpenTicket { ticket: Box<Ticket> },
    /// `send CONNECTION TEXT`: TEXT is the rest of the line, inner spaces included.
    Send {
        connection: ConnectionRef,
        text: String,
    },
    /// `sendfile CONNECTION PATH`: PATH is the rest of the line.
    SendFile {
        connection: ConnectionRef,
        path: PathBuf,
    },
    /// `close CONNECTION`.
    Close { connection: ConnectionRef },
    /// `enum`.
    Enum,
    /// `info`.
    Info,
    /// `stats`, or `stats CONNECTION` for one connection.
    Stats { connection: Option<ConnectionRef> },
    /// `add [TYPE] [--ttl SECS] [--attr NAME=TYPE:VALUE]... TEXT`: TEXT is the rest of
    /// the line after the options.
    Add {
        record_type: Option<RecordType>,
        ttl_secs: u32,
        attributes: Vec<AttributeArg>,
        text: String,
    },
    /// `update RECORD_ID TEXT`.
    Update { record_id: RecordId, text: String },
    /// `delete RECORD_ID [--local]`.
    Delete {
        record_id: RecordId,
        local_only: bool,
    },
    /// `get RECORD_ID`.
    Get { record_id: RecordId },
    /// `records [TYPE]`.
    Records { record_type: Option<RecordType> },
    /// `search XML`: XML is the rest of the line.
    Search { criteria: String },
    /// `help`.
    Help,
    /// `quit`.
    Quit,
}

/// The CONNECTION argument of `send`, `sendfile`, `close` and `stats`: a connection id,
/// or the peer id of the one open connection with that peer (resolved when the command
/// runs, against the connections open then).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ConnectionRef {
    /// A connection id, in the library's text form (`0x` and 16 hex digits) or decimal.
    Id(ConnectionId),
    /// A peer id: the connection is the only open one with this peer.
    Peer(PeerId),
}

/// One `--attr NAME=TYPE:VALUE` of `add`, as typed: the value is checked against its
/// type when the record is built, so that a bad one is answered as the API answers bad
/// attribute XML (`PEER_E_INVALID_ATTRIBUTES`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AttributeArg {
    pub(crate) name: String,
    pub(crate) kind: AttributeType,
    pub(crate) value: String,
}

/// A line that is not a valid command: the word it started with (the reply's name) and
/// what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BadCommand {
    pub(crate) command: String,
    pub(crate) message: String,
}

/// Parses one line. `Ok(None)` for a line with nothing to do: blank, or a comment
/// starting with `#`.
pub(crate) fn parse(line: &str) -> Result<Option<Command>, BadCommand> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (word, rest) = split_word(line);
    let bad = |message: String| BadCommand {
        command: word.to_owned(),
        message,
    };
    let usage = |message: &str| {
        let form = USAGE
            .iter()
            .find(|(form, _)| form.split(' ').next() == Some(word))
            .map_or(word, |(form, _)| form);
        bad(format!("{message}; usage: {form}"))
    };
    let no_more = |rest: &str| {
        if rest.is_empty() {
            Ok(())
        } else {
            Err(usage(&format!("unexpected `{rest}`")))
        }
    };
    let command = match word {
        "open" => {
            let (peer_id, rest) = split_word(rest);
            let (address, rest) = split_word(rest);
            if peer_id.is_empty() {
                return Err(usage("missing argument"));
            }
            no_more(rest)?;
            if address.is_empty() {
                // One argument: a ticket.
                let ticket = peer_id.parse::<Ticket>().map_err(|error| {
                    bad(format!(
                        "`{}` is not a ticket: {error}; usage: open PEER_ID ADDR, or open \
                         TICKET",
                        abridged(peer_id)
                    ))
                })?;
                Command::OpenTicket {
                    ticket: Box::new(ticket),
                }
            } else {
                Command::Open {
                    peer_id: peer_id.to_owned(),
                    target: address.parse().map_err(bad)?,
                }
            }
        }
        "send" | "sendfile" => {
            let (id, rest) = split_word(rest);
            if id.is_empty() || rest.is_empty() {
                return Err(usage("missing argument"));
            }
            let connection = connection(id).map_err(bad)?;
            if word == "send" {
                Command::Send {
                    connection,
                    text: rest.to_owned(),
                }
            } else {
                Command::SendFile {
                    connection,
                    path: PathBuf::from(rest),
                }
            }
        }
        "close" => {
            let (id, rest) = split_word(rest);
            if id.is_empty() {
                return Err(usage("missing argument"));
            }
            no_more(rest)?;
            Command::Close {
                connection: connection(id).map_err(bad)?,
            }
        }
        "stats" => {
            let (id, rest) = split_word(rest);
            no_more(rest)?;
            let connection = if id.is_empty() {
                None
            } else {
                Some(connection(id).map_err(bad)?)
            };
            Command::Stats { connection }
        }
        "add" => add(rest).map_err(|message| usage(&message))?,
        "update" => {
            let (id, text) = split_word(rest);
            if id.is_empty() || text.is_empty() {
                return Err(usage("missing argument"));
            }
            Command::Update {
                record_id: record_id(id).map_err(bad)?,
                text: text.to_owned(),
            }
        }
        "delete" => {
            let (id, rest) = split_word(rest);
            if id.is_empty() {
                return Err(usage("missing argument"));
            }
            let (flag, rest) = split_word(rest);
            no_more(rest)?;
            let local_only = match flag {
                "" => false,
                "--local" => true,
                other => return Err(usage(&format!("unexpected `{other}`"))),
            };
            Command::Delete {
                record_id: record_id(id).map_err(bad)?,
                local_only,
            }
        }
        "get" => {
            let (id, rest) = split_word(rest);
            if id.is_empty() {
                return Err(usage("missing argument"));
            }
            no_more(rest)?;
            Command::Get {
                record_id: record_id(id).map_err(bad)?,
            }
        }
        "records" => {
            let (kind, rest) = split_word(rest);
            no_more(rest)?;
            let record_type = if kind.is_empty() {
                None
            } else {
                Some(record_type(kind).map_err(bad)?)
            };
            Command::Records { record_type }
        }
        "search" => {
            if rest.is_empty() {
                return Err(usage("missing argument"));
            }
            Command::Search {
                criteria: rest.to_owned(),
            }
        }
        "enum" | "info" | "help" | "quit" => {
            no_more(rest)?;
            match word {
                "enum" => Command::Enum,
                "info" => Command::Info,
                "help" => Command::Help,
                _ => Command::Quit,
            }
        }
        _ => {
            let mut words: Vec<&str> = USAGE
                .iter()
                .filter_map(|(form, _)| form.split(' ').next())
                .collect();
            words.dedup();
            return Err(bad(format!(
                "unknown command `{word}`; commands: {}",
                words.join(", ")
            )));
        }
    };
    Ok(Some(command))
}

/// Parses the arguments of `add`: an optional record type (a first word that is a GUID),
/// then options, then the text (the rest of the line; `--` ends the options, for a text
/// that starts with `--`).
fn add(mut rest: &str) -> Result<Command, String> {
    let mut record_type = None;
    let (first, after) = split_word(rest);
    if let Ok(kind) = first.parse::<RecordType>() {
        record_type = Some(kind);
        rest = after;
    }
    let mut ttl_secs = DEFAULT_TTL_SECS;
    let mut attributes = Vec::new();
    // Each turn takes at least one word off `rest`, so there are at most as many turns
    // as the line has words.
    while rest.starts_with("--") {
        let (option, after) = split_word(rest);
        let (value, after_value) = split_word(after);
        if option != "--" && value.is_empty() {
            return Err(format!("`{option}` needs a value"));
        }
        match option {
            "--" => {
                rest = after;
                break;
            }
            "--ttl" => {
                ttl_secs = value.parse().map_err(|_| {
                    format!("`{value}` is not a number of seconds (0 to {})", u32::MAX)
                })?;
            }
            "--attr" => attributes.push(attribute(value)?),
            other => {
                return Err(format!(
                    "unknown option `{other}` (put `--` before a text that starts with --)"
                ))
            }
        }
        rest = after_value;
    }
    if rest.is_empty() {
        return Err("missing TEXT".to_owned());
    }
    Ok(Command::Add {
        record_type,
        ttl_secs,
        attributes,
        text: rest.to_owned(),
    })
}

/// Parses `NAME=TYPE:VALUE`, such as `room=string:lobby` or `seq=int:3`.
fn attribute(text: &str) -> Result<AttributeArg, String> {
    let malformed = || {
        format!(
            "`{text}` is not NAME=TYPE:VALUE, such as room=string:lobby, seq=int:3 or \
             sent=date:2024-05-01T12:00:00Z"
        )
    };
    let (name, typed) = text.split_once('=').ok_or_else(malformed)?;
    let (kind, value) = typed.split_once(':').ok_or_else(malformed)?;
    if name.is_empty() {
        return Err(malformed());
    }
    let kind = AttributeType::from_name(kind)
        .ok_or_else(|| format!("`{kind}` is not an attribute type: string, int or date"))?;
    Ok(AttributeArg {
        name: name.to_owned(),
        kind,
        value: value.to_owned(),
    })
}

/// Parses a record id: a GUID, as the host prints it.
pub(crate) fn record_id(text: &str) -> Result<RecordId, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a record id: use the GUID the host printed"))
}

/// Parses a record type: a GUID.
pub(crate) fn record_type(text: &str) -> Result<RecordType, String> {
    text.parse().map_err(|_| {
        format!(
            "`{text}` is not a record type: a GUID such as 1f0c2a6e-8d41-4b7a-9e35-60c2d8f1a947"
        )
    })
}

/// Parses a CONNECTION argument. `0x` (or `0X`) and hex digits is a connection id in the
/// library's text form, the one the host prints; a word of decimal digits is a connection
/// id too (the form older hosts printed); anything else is a peer id. 0 is no connection
/// id (the API answers it with `E_INVALIDARG`; so does the host).
pub(crate) fn connection(text: &str) -> Result<ConnectionRef, String> {
    let not_an_id = || {
        format!(
            "`{text}` is not a connection id: use the id the host printed (0x and hex \
             digits), its decimal value, or the peer id of the connection"
        )
    };
    let parsed = if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if text.bytes().all(|byte| byte.is_ascii_digit()) {
        text.parse().ok()
    } else {
        return PeerId::new(text)
            .map(ConnectionRef::Peer)
            .map_err(|_| not_an_id());
    };
    parsed
        .and_then(|raw| ConnectionId::new(raw).ok())
        .map(ConnectionRef::Id)
        .ok_or_else(not_an_id)
}

/// `text` as a message quotes it: at most 24 characters, then an ellipsis.
fn abridged(text: &str) -> String {
    match text.char_indices().nth(24) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// The first whitespace-separated word of `text` and the rest, trimmed at the start.
fn split_word(text: &str) -> (&str, &str) {
    match text.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim_start()),
        None => (text, ""),
    }
}

#[cfg(test)]
mod tests {
    fn id(raw: u64) -> ConnectionRef {
        ConnectionRef::Id(ConnectionId::new(raw).expect("id"))
    }

    use super::*;

    #[test]
    fn parses_every_command() {
        assert_eq!(
            parse("open bob 127.0.0.1:5000"),
            Ok(Some(Command::Open {
                peer_id: "bob".into(),
                target: Target::Socket("127.0.0.1:5000".parse().expect("address")),
            }))
        );
        assert_eq!(
            parse("open bob localhost:5000"),
            Ok(Some(Command::Open {
                peer_id: "bob".into(),
                target: Target::Name {
                    host: "localhost".into(),
                    port: 5000
                },
            }))
        );
        let ticket = Ticket::new(
            PeerId::new("bob").expect("peer id"),
            peergraph::PeerKey([3; 32]),
            vec!["127.0.0.1:5000".parse().expect("address")],
        )
        .expect("ticket");
        assert_eq!(
            parse(&format!("open {ticket}")),
            Ok(Some(Command::OpenTicket {
                ticket: Box::new(ticket)
            }))
        );
        assert_eq!(
            parse("  send 7   hello,  world  "),
            Ok(Some(Command::Send {
                connection: id(7),
                text: "hello,  world".into()
            }))
        );
        assert_eq!(
            parse("send bob hi there"),
            Ok(Some(Command::Send {
                connection: ConnectionRef::Peer(PeerId::new("bob").expect("peer id")),
                text: "hi there".into()
            }))
        );
        assert_eq!(
            parse("send 0x8b3e5a1f0c2d4e69 hi"),
            Ok(Some(Command::Send {
                connection: id(0x8b3e_5a1f_0c2d_4e69),
                text: "hi".into()
            }))
        );
        assert_eq!(
            parse("sendfile 0x1F /tmp/a file.bin"),
            Ok(Some(Command::SendFile {
                connection: id(31),
                path: "/tmp/a file.bin".into()
            }))
        );
        assert_eq!(
            parse("close 18446744073709551615"),
            Ok(Some(Command::Close {
                connection: id(u64::MAX)
            }))
        );
        assert_eq!(
            parse("stats"),
            Ok(Some(Command::Stats { connection: None }))
        );
        assert_eq!(
            parse("stats 9"),
            Ok(Some(Command::Stats {
                connection: Some(id(9))
            }))
        );
        assert_eq!(parse("enum"), Ok(Some(Command::Enum)));
        let record = "0b7c6a52-3f1e-4d29-8a64-c15e9f20d7b3";
        let record_id: RecordId = record.parse().expect("record id");
        assert_eq!(
            parse("add hello,  world"),
            Ok(Some(Command::Add {
                record_type: None,
                ttl_secs: DEFAULT_TTL_SECS,
                attributes: Vec::new(),
                text: "hello,  world".into(),
            }))
        );
        assert_eq!(
            parse(&format!(
                "add {record} --ttl 60 --attr room=string:lobby --attr seq=int:2 -- --hi"
            )),
            Ok(Some(Command::Add {
                record_type: Some(record.parse().expect("record type")),
                ttl_secs: 60,
                attributes: vec![
                    AttributeArg {
                        name: "room".into(),
                        kind: AttributeType::String,
                        value: "lobby".into(),
                    },
                    AttributeArg {
                        name: "seq".into(),
                        kind: AttributeType::Int,
                        value: "2".into(),
                    },
                ],
                text: "--hi".into(),
            }))
        );
        assert_eq!(
            parse(&format!("update {record} new text")),
            Ok(Some(Command::Update {
                record_id,
                text: "new text".into()
            }))
        );
        assert_eq!(
            parse(&format!("delete {record} --local")),
            Ok(Some(Command::Delete {
                record_id,
                local_only: true
            }))
        );
        assert_eq!(
            parse(&format!("delete {record}")),
            Ok(Some(Command::Delete {
                record_id,
                local_only: false
            }))
        );
        assert_eq!(
            parse(&format!("get {record}")),
            Ok(Some(Command::Get { record_id }))
        );
        assert_eq!(
            parse("records"),
            Ok(Some(Command::Records { record_type: None }))
        );
        assert_eq!(
            parse("search <peersearch/>"),
            Ok(Some(Command::Search {
                criteria: "<peersearch/>".into()
            }))
        );
        assert_eq!(parse("info"), Ok(Some(Command::Info)));
        assert_eq!(parse("help"), Ok(Some(Command::Help)));
        assert_eq!(parse("quit\r"), Ok(Some(Command::Quit)));
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("   # a comment"), Ok(None));
    }

    #[test]
    fn explains_what_is_wrong() {
        let message = |line: &str| parse(line).expect_err(line).message;
        let id_text = ConnectionId::new(u64::MAX).expect("id").to_string();
        assert_eq!(
            parse(&format!("close {id_text}")),
            Ok(Some(Command::Close {
                connection: id(u64::MAX)
            }))
        );
        assert!(message("close 0x").contains("`0x` is not a connection id"));
        assert!(message("close 0xZZ").contains("not a connection id"));
        assert!(message("close 0X0").contains("not a connection id"));
        assert!(message("stats 0").contains("not a connection id"));
        assert!(message("close 99999999999999999999").contains("not a connection id"));
        assert!(message("close").contains("usage: close CONNECTION"));
        assert!(message("close 1 2").contains("unexpected `2`"));
        assert!(message("send 7").contains("usage: send CONNECTION TEXT"));
        assert!(message("open").contains("usage: open PEER_ID ADDR"));
        let not_a_ticket = message("open bob");
        assert!(
            not_a_ticket.contains("`bob` is not a ticket"),
            "{not_a_ticket}"
        );
        assert!(not_a_ticket.contains("usage: open PEER_ID ADDR, or open TICKET"));
        let long = message(&format!("open pg1{}", "a".repeat(100)));
        assert!(long.contains("damaged") && long.contains("…"), "{long}");
        assert!(message("open pg2aaaa").contains("version 2 is not supported"));
        assert!(message("open bob localhost").contains("is not an address"));
        assert!(message("open bob 127.0.0.1:5000 extra").contains("unexpected `extra`"));
        assert!(message("enum now").contains("unexpected `now`"));
        assert!(message("add").contains("missing TEXT"));
        assert!(message("add --ttl 5").contains("missing TEXT"));
        assert!(message("add --ttl").contains("`--ttl` needs a value"));
        assert!(message("add --ttl soon hi").contains("`soon` is not a number"));
        assert!(message("add --attr room hi").contains("is not NAME=TYPE:VALUE"));
        assert!(message("add --attr room=float:1 hi").contains("`float` is not an attribute"));
        assert!(message("add --color red hi").contains("unknown option `--color`"));
        assert!(message("get 42").contains("`42` is not a record id"));
        assert!(message("delete 42").contains("not a record id"));
        assert!(message("records note").contains("not a record type"));
        assert!(message("search").contains("usage: search XML"));
        let unknown = parse("frobnicate 1").expect_err("unknown");
        assert_eq!(unknown.command, "frobnicate");
        assert!(unknown.message.contains("unknown command `frobnicate`"));
        assert!(unknown.message.contains("sendfile"));
    }
}
