//! File transfer between hosts: `sendfile` on the sending side, and on the receiving side
//! the check of every file that comes, saved under `--save-dir DIR` when one is given.
//!
//! # Wire format (version 1)
//! A file travels on one direct connection as messages of three data types; messages on
//! one connection arrive in order, so no transfer id is needed, and a connection carries
//! one file at a time (a host runs one command at a time).
//!
//! ```text
//! FILE_HEADER  version (1 byte, 1) | size (u64, big-endian) | SHA-256 (32 bytes)
//!              | name length (u16, big-endian) | name (UTF-8, a base name)
//! FILE_CHUNK   the next bytes of the content, at most MAX_DATA_LEN (1 MiB) each;
//!              the file ends when `size` bytes came
//! FILE_ABORT   version (1 byte, 1) | reason (UTF-8, at most 256 bytes): the sender gave
//!              up before the end (a read error, a signal)
//! ```
//!
//! The sender reads the file twice: once to hash it, so that the header carries the
//! SHA-256 before any chunk, and once to send it, hashing again; a file that changes in
//! between is reported (its receiver finds the hash wrong). A name is refused, by the
//! sender and by the receiver, when it is empty, `.` or `..`, longer than
//! [`MAX_NAME_LEN`] bytes, or holds `/`, `\`, `:` (a drive, as in `C:`), NUL or another
//! control character: a file is only ever written inside the save directory.
//!
//! # Receiving
//! Every header starts a file, and every file ends in exactly one `file_received` event:
//! `complete: true` once `size` bytes came and their SHA-256 is the announced one,
//! `complete: false` (with a `message`) when the header is refused, more bytes come than
//! announced, the hash differs, the sender aborts, the connection closes, or the host
//! stops (quit, end of input, SIGINT, SIGTERM). With `--save-dir DIR` the bytes go, as
//! they come, to a hidden partial file in DIR (`.NAME.PID-N.part`), which becomes NAME
//! only when the hash matched; an existing file is never replaced: the file becomes
//! `NAME (1)`, `NAME (2)`... (before the extension). An incomplete file's partial is
//! removed, so nothing that looks whole is left (a host killed with SIGKILL leaves its
//! `.part` file). Chunks of a file being saved are not printed one by one: a
//! `file_incoming` event says a file began, a progress bar shows on a terminal, and
//! `file_received` says how it ended. Without `--save-dir` the host still checks each
//! file's hash and prints both events (`path` null), and prints each chunk as before.
//! At most [`receive::MAX_INCOMING`] (8) files are received at once; further headers are refused.
//!
//! # Layout
//! - this file: the wire format, and the check of names.
//! - `send`: `sendfile`'s two passes over the file.
//! - `receive`: the files coming in, checked and saved.

mod receive;
mod send;

use peergraph::DataType;
use tokio::sync::watch;

pub(crate) use self::receive::Receiver;
pub(crate) use self::send::{send_file, SendFailure, Sent};

/// The data type of the header that starts a file: its name, size and SHA-256.
pub const FILE_HEADER: DataType = DataType::from_u128(0x8f41_d2a7_3c65_4e19_b0d8_5a2e_c471_9b36);
/// The data type of the message that ends a file early: the sender's reason.
pub const FILE_ABORT: DataType = DataType::from_u128(0x61c3_9e08_f2b4_47d5_8a1f_e63d_0c59_a284);

/// The version of the wire format this host writes and reads.
pub(crate) const VERSION: u8 = 1;

/// The longest file name, in bytes: short enough that the partial file's name (a dot, the
/// name, a counter and `.part`) stays within the 255 bytes most file systems allow.
pub(crate) const MAX_NAME_LEN: usize = 200;

/// The longest reason a FILE_ABORT carries, in bytes.
const MAX_REASON_LEN: usize = 256;

/// What a FILE_HEADER announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// The file's base name, as sent (checked with [`check_name`] before use).
    pub(crate) name: String,
    /// The content's length in bytes.
    pub(crate) size: u64,
    /// The content's SHA-256.
    pub(crate) sha256: [u8; 32],
}

impl Header {
    /// The header as FILE_HEADER's bytes. The name must be at most [`MAX_NAME_LEN`] bytes
    /// ([`check_name`]), so its length fits.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let name = self.name.as_bytes();
        let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
        let mut bytes = Vec::with_capacity(1 + 8 + 32 + 2 + name.len());
        bytes.push(VERSION);
        bytes.extend_from_slice(&self.size.to_be_bytes());
        bytes.extend_from_slice(&self.sha256);
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(&name[..usize::from(len)]);
        bytes
    }

    /// Reads FILE_HEADER's bytes; says what is wrong with malformed ones. The name is not
    /// checked here (see [`check_name`]), so that a refused name still tells the size of
    /// the content to skip.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Header, String> {
        let (&version, rest) = bytes.split_first().ok_or("an empty file header")?;
        if version != VERSION {
            return Err(format!(
                "a file header of version {version} (this host reads version {VERSION})"
            ));
        }
        let short = || format!("a file header of {} bytes is too short", bytes.len());
        let (size, rest) = rest.split_first_chunk::<8>().ok_or_else(short)?;
        let (sha256, rest) = rest.split_first_chunk::<32>().ok_or_else(short)?;
        let (len, name) = rest.split_first_chunk::<2>().ok_or_else(short)?;
        let len = usize::from(u16::from_be_bytes(*len));
        if name.len() != len {
            return Err(format!(
                "a file header announces a name of {len} bytes and holds {}",
                name.len()
            ));
        }
        let name = std::str::from_utf8(name).map_err(|_| "a file name that is not UTF-8")?;
        Ok(Header {
            name: name.to_owned(),
            size: u64::from_be_bytes(*size),
            sha256: *sha256,
        })
    }
}

/// Checks that `name` is a plain file name that stays inside the directory it is joined
/// to: not empty, `.` or `..`, at most [`MAX_NAME_LEN`] bytes, and without `/`, `\`, `:`
/// (drives such as `C:`, and Windows' alternate streams), NUL or control characters.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an empty file name".to_owned());
    }
    if name == "." || name == ".." {
        return Err(format!("the file name `{name}` is not a file"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "a file name of {} bytes is longer than {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|&c| matches!(c, '/' | '\\' | ':') || c.is_control())
    {
        return Err(format!(
            "the file name {name:?} holds {bad:?}: only a base name, without a directory \
             or drive, is accepted"
        ));
    }
    Ok(())
}

/// A FILE_ABORT's bytes with `reason`, cut to [`MAX_REASON_LEN`] bytes.
pub(crate) fn encode_abort(reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut bytes = Vec::with_capacity(1 + end);
    bytes.push(VERSION);
    bytes.extend_from_slice(&reason.as_bytes()[..end]);
    bytes
}

/// The reason a FILE_ABORT gives (malformed bytes give a reason that says so).
pub(crate) fn decode_abort(bytes: &[u8]) -> String {
    match bytes.split_first() {
        Some((&VERSION, reason)) => {
            let reason = &reason[..reason.len().min(MAX_REASON_LEN)];
            printable(&String::from_utf8_lossy(reason))
        }
        _ => "the sender gave up (a malformed abort message)".to_owned(),
    }
}

/// `text` from a peer, with its control characters escaped (`\u{1b}`), so that printing
/// it cannot drive the terminal.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A SHA-256 as lowercase hex.
pub(crate) fn hex(sha256: &[u8]) -> String {
    sha256.iter().map(|b| format!("{b:02x}")).collect()
}

/// Answers when the host starts stopping; never if the flag's sender is gone.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stopping| *stopping).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let header = Header {
            name: "report é.pdf".to_owned(),
            size: 12_345_678_901,
            sha256: [7; 32],
        };
        assert_eq!(Header::decode(&header.encode()), Ok(header));
    }

    #[test]
    fn malformed_headers_are_refused_with_a_reason() {
        let good = Header {
            name: "a.txt".to_owned(),
            size: 3,
            sha256: [1; 32],
        }
        .encode();
        assert!(Header::decode(&[]).is_err());
        let mut other_version = good.clone();
        other_version[0] = 2;
        assert!(Header::decode(&other_version).is_err_and(|message| message.contains("version 2")));
        // Every truncation, and a byte too many, is refused without a panic.
        for len in 0..good.len() {
            assert!(Header::decode(&good[..len]).is_err(), "{len} bytes");
        }
        let mut long = good.clone();
        long.push(b'x');
        assert!(Header::decode(&long).is_err());
        let mut not_utf8 = good;
        let last = not_utf8.len() - 1;
        not_utf8[last] = 0xff;
        assert!(Header::decode(&not_utf8).is_err_and(|message| message.contains("UTF-8")));
    }

    #[test]
    fn names_that_leave_the_directory_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "../etc/passwd",
            "..\\boot.ini",
            "/etc/passwd",
            "dir/file",
            "C:",
            "C:evil.txt",
            "c:\\windows\\x",
            "file.txt:stream",
            "nul\0byte",
            "line\nbreak",
            "bell\u{7}",
            "delete\u{7f}",
            "next\u{85}line",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(check_name(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
        for good in [
            "report.pdf",
            "..hidden",
            "a..b",
            ".bashrc",
            "naïve café.txt",
            "spaces and (brackets).tar.gz",
        ] {
            assert_eq!(check_name(good), Ok(()), "{good:?}");
        }
        assert_eq!(check_name(&"é".repeat(MAX_NAME_LEN / 2)), Ok(()));
    }

    #[test]
    fn aborts_round_trip_and_are_bounded() {
        assert_eq!(decode_abort(&encode_abort("disk full")), "disk full");
        let long = "é".repeat(MAX_REASON_LEN);
        let encoded = encode_abort(&long);
        assert!(encoded.len() <= 1 + MAX_REASON_LEN);
        assert!(decode_abort(&encoded).chars().all(|c| c == 'é'));
        assert!(decode_abort(&[9, b'x']).contains("malformed"));
        assert!(decode_abort(&[]).contains("malformed"));
    }

    #[test]
    fn text_from_peers_cannot_drive_the_terminal() {
        assert_eq!(printable("clear\u{1b}[2J\r\n"), "clear\\u{1b}[2J\\r\\n");
        assert_eq!(printable("naïve café"), "naïve café");
        assert_eq!(decode_abort(&[1, 0x1b, b'x']), "\\u{1b}x");
    }

    #[test]
    fn hex_is_lowercase_and_whole() {
        assert_eq!(hex(&[0x00, 0xab, 0x0f]), "00ab0f");
    }
}
