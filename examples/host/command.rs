//! The host's commands: one per line of standard input, parsed here into [`Command`]s
//! with no I/O, so that every malformed line gets an exact message.

use std::net::SocketAddr;
use std::path::PathBuf;

use peergraph::ConnectionId;

/// What the host understands, with a one-line summary each (the `help` command prints it).
pub(crate) const USAGE: &[(&str, &str)] = &[
    (
        "open PEER_ID ADDR",
        "open a direct connection to peer PEER_ID listening at ADDR",
    ),
    (
        "send CONNECTION_ID TEXT",
        "send the rest of the line as one text message",
    ),
    (
        "sendfile CONNECTION_ID PATH",
        "send a file in chunks of at most 1 MiB (MAX_DATA_LEN)",
    ),
    ("close CONNECTION_ID", "close a direct connection"),
    ("enum", "list the direct connections"),
    (
        "info",
        "this node: graph, peer id, node id, addresses, status",
    ),
    (
        "stats [CONNECTION_ID]",
        "bytes sent/received, RTT, congestion window, losses",
    ),
    ("help", "this list"),
    ("quit", "close the graph and exit (so does end of input)"),
];

/// One parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// `open PEER_ID ADDR`.
    Open {
        peer_id: String,
        address: SocketAddr,
    },
    /// `send CONNECTION_ID TEXT`: TEXT is the rest of the line, inner spaces included.
    Send {
        connection_id: ConnectionId,
        text: String,
    },
    /// `sendfile CONNECTION_ID PATH`: PATH is the rest of the line.
    SendFile {
        connection_id: ConnectionId,
        path: PathBuf,
    },
    /// `close CONNECTION_ID`.
    Close { connection_id: ConnectionId },
    /// `enum`.
    Enum,
    /// `info`.
    Info,
    /// `stats`, or `stats CONNECTION_ID` for one connection.
    Stats { connection_id: Option<ConnectionId> },
    /// `help`.
    Help,
    /// `quit`.
    Quit,
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
            if peer_id.is_empty() || address.is_empty() {
                return Err(usage("missing argument"));
            }
            no_more(rest)?;
            let address = address.parse().map_err(|_| {
                bad(format!(
                    "`{address}` is not a socket address such as 127.0.0.1:5000 or [::1]:5000"
                ))
            })?;
            Command::Open {
                peer_id: peer_id.to_owned(),
                address,
            }
        }
        "send" | "sendfile" => {
            let (id, rest) = split_word(rest);
            if id.is_empty() || rest.is_empty() {
                return Err(usage("missing argument"));
            }
            let connection_id = connection_id(id).map_err(bad)?;
            if word == "send" {
                Command::Send {
                    connection_id,
                    text: rest.to_owned(),
                }
            } else {
                Command::SendFile {
                    connection_id,
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
                connection_id: connection_id(id).map_err(bad)?,
            }
        }
        "stats" => {
            let (id, rest) = split_word(rest);
            no_more(rest)?;
            let connection_id = if id.is_empty() {
                None
            } else {
                Some(connection_id(id).map_err(bad)?)
            };
            Command::Stats { connection_id }
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
            return Err(bad(format!(
                "unknown command `{word}`; commands: {}",
                USAGE
                    .iter()
                    .filter_map(|(form, _)| form.split(' ').next())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    Ok(Some(command))
}

/// Parses a connection id: decimal (the form the host prints) or hexadecimal with `0x`.
/// 0 is no connection id (the API answers it with `E_INVALIDARG`; so does the host).
pub(crate) fn connection_id(text: &str) -> Result<ConnectionId, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    };
    parsed.and_then(|raw| ConnectionId::new(raw).ok()).ok_or_else(|| {
        format!("`{text}` is not a connection id: use the decimal number the host printed, or 0x followed by hex digits")
    })
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
    fn id(raw: u64) -> ConnectionId {
        ConnectionId::new(raw).expect("id")
    }

    use super::*;

    #[test]
    fn parses_every_command() {
        assert_eq!(
            parse("open bob 127.0.0.1:5000"),
            Ok(Some(Command::Open {
                peer_id: "bob".into(),
                address: "127.0.0.1:5000".parse().expect("address"),
            }))
        );
        assert_eq!(
            parse("  send 7   hello,  world  "),
            Ok(Some(Command::Send {
                connection_id: id(7),
                text: "hello,  world".into()
            }))
        );
        assert_eq!(
            parse("sendfile 0x1F /tmp/a file.bin"),
            Ok(Some(Command::SendFile {
                connection_id: id(31),
                path: "/tmp/a file.bin".into()
            }))
        );
        assert_eq!(
            parse("close 18446744073709551615"),
            Ok(Some(Command::Close {
                connection_id: ConnectionId::new(u64::MAX).expect("id")
            }))
        );
        assert_eq!(
            parse("stats"),
            Ok(Some(Command::Stats {
                connection_id: None
            }))
        );
        assert_eq!(
            parse("stats 9"),
            Ok(Some(Command::Stats {
                connection_id: Some(id(9))
            }))
        );
        assert_eq!(parse("enum"), Ok(Some(Command::Enum)));
        assert_eq!(parse("info"), Ok(Some(Command::Info)));
        assert_eq!(parse("help"), Ok(Some(Command::Help)));
        assert_eq!(parse("quit\r"), Ok(Some(Command::Quit)));
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("   # a comment"), Ok(None));
    }

    #[test]
    fn explains_what_is_wrong() {
        let message = |line: &str| parse(line).expect_err(line).message;
        assert!(message("close abc").contains("`abc` is not a connection id"));
        assert!(message("close 0xZZ").contains("not a connection id"));
        assert!(message("close -1").contains("not a connection id"));
        assert!(message("close 0X0").contains("not a connection id"));
        assert!(message("stats 0").contains("not a connection id"));
        assert!(message("close 99999999999999999999").contains("not a connection id"));
        assert!(message("close").contains("usage: close CONNECTION_ID"));
        assert!(message("close 1 2").contains("unexpected `2`"));
        assert!(message("send 7").contains("usage: send CONNECTION_ID TEXT"));
        assert!(message("open bob").contains("usage: open PEER_ID ADDR"));
        assert!(message("open bob localhost").contains("not a socket address"));
        assert!(message("enum now").contains("unexpected `now`"));
        let unknown = parse("frobnicate 1").expect_err("unknown");
        assert_eq!(unknown.command, "frobnicate");
        assert!(unknown.message.contains("unknown command `frobnicate`"));
        assert!(unknown.message.contains("sendfile"));
    }
}
