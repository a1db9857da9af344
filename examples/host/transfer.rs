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
//! At most [`MAX_INCOMING`] files are received at once; further headers are refused.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use indicatif::{HumanBytes, ProgressBar};
use peergraph::{ConnectionId, DataType, Graph, ResultCode, MAX_DATA_LEN};
use ring::digest;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};
use tokio::sync::watch;

use super::json::Object;
use super::output::{row, BarToken, Output};
use super::FILE_CHUNK;

/// The data type of the header that starts a file: its name, size and SHA-256.
pub const FILE_HEADER: DataType = DataType::from_u128(0x8f41_d2a7_3c65_4e19_b0d8_5a2e_c471_9b36);
/// The data type of the message that ends a file early: the sender's reason.
pub const FILE_ABORT: DataType = DataType::from_u128(0x61c3_9e08_f2b4_47d5_8a1f_e63d_0c59_a284);

/// The version of the wire format this host writes and reads.
const VERSION: u8 = 1;

/// The longest file name, in bytes: short enough that the partial file's name (a dot, the
/// name, a counter and `.part`) stays within the 255 bytes most file systems allow.
pub(crate) const MAX_NAME_LEN: usize = 200;

/// The longest reason a FILE_ABORT carries, in bytes.
const MAX_REASON_LEN: usize = 256;

/// The most files a host receives at once, over all its connections: each holds an open
/// file and a partial on disk.
pub(crate) const MAX_INCOMING: usize = 8;

/// How many `NAME (N)` names a received file tries when NAME is taken.
const MAX_RENAMES: u32 = 100;

/// How long a sender that stops early waits to queue its FILE_ABORT: the link may be
/// full, and the host is usually stopping.
const ABORT_TIMEOUT: Duration = Duration::from_millis(500);

/// How the progress bar of `sendfile` looks: bytes done and total, rate, time left.
const SEND_TEMPLATE: &str = "{bar:32} {bytes}/{total_bytes}  {binary_bytes_per_sec}  {eta} left";

/// How the progress bar of a file being received looks: its name first.
const RECEIVE_TEMPLATE: &str =
    "{msg} {bar:32} {bytes}/{total_bytes}  {binary_bytes_per_sec}  {eta} left";

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
fn encode_abort(reason: &str) -> Vec<u8> {
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
fn decode_abort(bytes: &[u8]) -> String {
    match bytes.split_first() {
        Some((&VERSION, reason)) => {
            let reason = &reason[..reason.len().min(MAX_REASON_LEN)];
            String::from_utf8_lossy(reason).into_owned()
        }
        _ => "the sender gave up (a malformed abort message)".to_owned(),
    }
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

/// A `sendfile` that went through.
pub(crate) struct Sent {
    /// The name the receiver was given.
    pub(crate) name: String,
    /// The file's bytes, all sent.
    pub(crate) bytes: u64,
    /// The FILE_CHUNK messages sent.
    pub(crate) chunks: u64,
    /// The content's SHA-256, in hex.
    pub(crate) sha256: String,
}

/// A `sendfile` that did not: its code, what went wrong, and the bytes sent before.
pub(crate) struct SendFailure {
    pub(crate) code: ResultCode,
    pub(crate) message: String,
    pub(crate) bytes: u64,
}

impl SendFailure {
    fn new(code: ResultCode, message: String) -> Self {
        SendFailure {
            code,
            message,
            bytes: 0,
        }
    }
}

/// Sends the regular file at `path` on `connection_id`: a FILE_HEADER, then its content
/// in FILE_CHUNKs of at most [`MAX_DATA_LEN`] bytes, waiting while the connection's
/// outbox is full. Gives up, with a FILE_ABORT when the link is still up, when reading
/// fails or `stop` turns true (the host got a signal).
///
/// # Errors
/// E_INVALIDARG for a path that cannot be opened, is not a regular file or has a name
/// [`check_name`] refuses; E_FAIL for a read error, a file that changed while it was
/// sent, or a signal; the codes of `send_data` (such as PEER_E_CONNECTION_NOT_FOUND when
/// the link closed).
pub(crate) async fn send_file(
    graph: &Graph,
    connection_id: ConnectionId,
    path: &Path,
    out: &Output,
    stop: &watch::Receiver<bool>,
) -> Result<Sent, SendFailure> {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| {
            SendFailure::new(
                ResultCode::E_INVALIDARG,
                format!("{} has no file name in UTF-8", path.display()),
            )
        })?
        .to_owned();
    check_name(&name).map_err(|message| SendFailure::new(ResultCode::E_INVALIDARG, message))?;
    let cannot = |error: io::Error| {
        SendFailure::new(
            ResultCode::E_INVALIDARG,
            format!("cannot open {}: {error}", path.display()),
        )
    };
    let mut file = tokio::fs::File::open(path).await.map_err(cannot)?;
    let metadata = file.metadata().await.map_err(cannot)?;
    if !metadata.is_file() {
        return Err(SendFailure::new(
            ResultCode::E_INVALIDARG,
            format!("{} is not a regular file", path.display()),
        ));
    }
    let size = metadata.len();
    let interrupted = || {
        SendFailure::new(
            ResultCode::E_FAIL,
            "interrupted by a signal before it finished; the host is stopping".to_owned(),
        )
    };
    let read_failed = |error: io::Error| {
        SendFailure::new(
            ResultCode::E_FAIL,
            format!("reading {}: {error}", path.display()),
        )
    };

    // First pass: the hash the header carries.
    let mut hasher = digest::Context::new(&digest::SHA256);
    let mut buffer = Vec::with_capacity(MAX_DATA_LEN);
    let mut hashed = 0u64;
    loop {
        if *stop.borrow() {
            return Err(interrupted());
        }
        let read = read_chunk(&mut file, &mut buffer, size - hashed)
            .await
            .map_err(read_failed)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer);
        hashed += read as u64;
    }
    if hashed != size {
        return Err(SendFailure::new(
            ResultCode::E_FAIL,
            format!(
                "{} shrank from {size} to {hashed} bytes while it was read",
                path.display()
            ),
        ));
    }
    let sha256: [u8; 32] =
        hasher.finish().as_ref().try_into().map_err(|_| {
            SendFailure::new(ResultCode::E_FAIL, "a SHA-256 not of 32 bytes".into())
        })?;
    file.rewind().await.map_err(read_failed)?;

    let header = Header {
        name: name.clone(),
        size,
        sha256,
    };
    graph
        .send_data(connection_id, FILE_HEADER, Bytes::from(header.encode()))
        .await
        .map_err(|error| SendFailure::new(error.code(), error.code().description().to_owned()))?;

    // Second pass: the chunks, hashed again.
    let bar = out.bar(size, SEND_TEMPLATE);
    let sent = stream(
        graph,
        connection_id,
        &mut file,
        size,
        bar.as_ref().map(|(_, bar)| bar),
        stop,
    )
    .await;
    if let Some((token, _)) = bar {
        out.hide_bar(token);
    }
    let (again, chunks) = match sent {
        Ok(sent) => sent,
        Err((bytes, failure, link_up)) => {
            if link_up {
                let reason = format!("the sender stopped: {}", failure.message);
                let abort = graph.send_data(
                    connection_id,
                    FILE_ABORT,
                    Bytes::from(encode_abort(&reason)),
                );
                if !matches!(tokio::time::timeout(ABORT_TIMEOUT, abort).await, Ok(Ok(()))) {
                    tracing::debug!(%connection_id, "the abort of a file was not queued");
                }
            }
            return Err(SendFailure { bytes, ..failure });
        }
    };
    // A file that grew is sent to its announced size; one that changed is sent whole,
    // and its receiver finds the hash wrong.
    let grew = read_chunk(&mut file, &mut buffer, 1)
        .await
        .is_ok_and(|read| read > 0);
    if grew || again != sha256 {
        return Err(SendFailure {
            bytes: size,
            ..SendFailure::new(
                ResultCode::E_FAIL,
                format!(
                    "{} changed while it was sent; the receiver finds its hash wrong",
                    path.display()
                ),
            )
        });
    }
    Ok(Sent {
        name,
        bytes: size,
        chunks,
        sha256: hex(&sha256),
    })
}

/// The chunks of a file whose header went out: answers the SHA-256 of what was sent and
/// the number of chunks, or the bytes sent before a failure, the failure, and whether the
/// link is still up.
async fn stream(
    graph: &Graph,
    connection_id: ConnectionId,
    file: &mut tokio::fs::File,
    size: u64,
    bar: Option<&ProgressBar>,
    stop: &watch::Receiver<bool>,
) -> Result<([u8; 32], u64), (u64, SendFailure, bool)> {
    let mut hasher = digest::Context::new(&digest::SHA256);
    let mut stop = stop.clone();
    let (mut sent, mut chunks) = (0u64, 0u64);
    while sent < size {
        let mut chunk = Vec::with_capacity(MAX_DATA_LEN);
        let read = read_chunk(file, &mut chunk, size - sent)
            .await
            .map_err(|error| {
                let message = format!("reading the file: {error}");
                (sent, SendFailure::new(ResultCode::E_FAIL, message), true)
            })?;
        if read == 0 {
            let message = format!("the file shrank to {sent} bytes while it was sent");
            return Err((sent, SendFailure::new(ResultCode::E_FAIL, message), true));
        }
        hasher.update(&chunk);
        tokio::select! {
            biased;
            () = stopped(&mut stop) => {
                let message =
                    "interrupted by a signal before it finished; the host is stopping";
                return Err((sent, SendFailure::new(ResultCode::E_FAIL, message.into()), true));
            }
            // Waits while the connection's outbox is full: the file is read no faster
            // than the network takes it.
            queued = graph.send_data(connection_id, FILE_CHUNK, Bytes::from(chunk)) => {
                if let Err(error) = queued {
                    let failure =
                        SendFailure::new(error.code(), error.code().description().to_owned());
                    return Err((sent, failure, false));
                }
            }
        }
        sent += read as u64;
        chunks += 1;
        if let Some(bar) = bar {
            bar.set_position(sent);
        }
    }
    let sha256 = hasher.finish().as_ref().try_into().unwrap_or([0; 32]);
    Ok((sha256, chunks))
}

/// Reads the next at most [`MAX_DATA_LEN`] bytes, and at most `left`, into `buffer`
/// (cleared first); answers how many.
async fn read_chunk(
    file: &mut tokio::fs::File,
    buffer: &mut Vec<u8>,
    left: u64,
) -> io::Result<usize> {
    buffer.clear();
    let limit = left.min(MAX_DATA_LEN as u64);
    file.take(limit).read_to_end(buffer).await
}

/// The receiving side: the files coming in on each connection, checked and, with a save
/// directory, written there. Owned by the event printer, which hands it every file
/// message and every closed connection.
pub(crate) struct Receiver {
    save_dir: Option<PathBuf>,
    out: Arc<Output>,
    files: HashMap<ConnectionId, State>,
    /// Set once the host stops: further headers are refused.
    stopping: bool,
}

/// Where a connection is in its current file.
enum State {
    Receiving(Box<Incoming>),
    /// A file that was refused or ended early: `left` more bytes of it are dropped
    /// silently, then chunks are printed as stray ones again.
    Skipping {
        left: u64,
    },
}

/// A file being received.
struct Incoming {
    header: Header,
    received: u64,
    hasher: digest::Context,
    /// The partial file and its path, with a save directory.
    partial: Option<(tokio::fs::File, PathBuf)>,
    bar: Option<(BarToken, ProgressBar)>,
}

/// Numbers the partial files this process creates, so their names never collide.
static PARTIALS: AtomicU64 = AtomicU64::new(0);

impl Receiver {
    /// Receives files, saving them in `save_dir` when there is one.
    pub(crate) fn new(save_dir: Option<PathBuf>, out: Arc<Output>) -> Self {
        Receiver {
            save_dir,
            out,
            files: HashMap::new(),
            stopping: false,
        }
    }

    /// Handles one message of a file (FILE_HEADER, FILE_CHUNK, FILE_ABORT). Answers true
    /// when it printed what there is to print, false when the event printer should print
    /// the message as usual (other types, stray chunks, chunks without a save directory).
    pub(crate) async fn data(
        &mut self,
        id: ConnectionId,
        data_type: DataType,
        data: &[u8],
    ) -> bool {
        if data_type == FILE_HEADER {
            self.header(id, data).await;
            true
        } else if data_type == FILE_ABORT {
            let reason = decode_abort(data);
            match self.files.remove(&id) {
                Some(State::Receiving(incoming)) => self.fail(id, *incoming, &reason, None).await,
                Some(State::Skipping { .. }) | None => {
                    tracing::debug!(%id, reason, "an abort with no file coming");
                }
            }
            true
        } else if data_type == FILE_CHUNK {
            let announced = self.chunk(id, data).await;
            announced && self.save_dir.is_some()
        } else {
            false
        }
    }

    /// Ends the file coming on a connection that closed.
    pub(crate) async fn disconnected(&mut self, id: ConnectionId) {
        if let Some(State::Receiving(incoming)) = self.files.remove(&id) {
            let message = "the connection closed before the end of the file";
            self.fail(id, *incoming, message, None).await;
        }
    }

    /// Ends every file coming in, because the host is stopping (`reason`); later headers
    /// are refused, and the rest of each file is dropped silently.
    pub(crate) async fn stop(&mut self, reason: &str) {
        self.stopping = true;
        let ids: Vec<ConnectionId> = self.files.keys().copied().collect();
        for id in ids {
            if let Some(State::Receiving(incoming)) = self.files.remove(&id) {
                let left = incoming.header.size - incoming.received;
                self.fail(id, *incoming, reason, Some(left)).await;
            }
        }
    }

    async fn header(&mut self, id: ConnectionId, data: &[u8]) {
        if let Some(State::Receiving(previous)) = self.files.remove(&id) {
            let message = "a new file began before this one ended";
            self.fail(id, *previous, message, None).await;
        }
        let header = match Header::decode(data) {
            Ok(header) => header,
            Err(message) => {
                // The size is unknown: what follows is printed as stray chunks.
                self.report(id, &Report::refused(None, 0, &message));
                return;
            }
        };
        let refusal = if self.stopping {
            Some("the host is stopping".to_owned())
        } else if let Err(message) = check_name(&header.name) {
            Some(message)
        } else if self.receiving() >= MAX_INCOMING {
            Some(format!(
                "{MAX_INCOMING} files are being received already; try again later"
            ))
        } else {
            None
        };
        if let Some(message) = refusal {
            self.refuse(id, &header, &message);
            return;
        }
        let partial = match &self.save_dir {
            None => None,
            Some(dir) => match create_partial(dir, &header.name).await {
                Ok(partial) => Some(partial),
                Err(message) => {
                    self.refuse(id, &header, &message);
                    return;
                }
            },
        };
        let bar = partial.as_ref().and_then(|_| {
            let bar = self.out.bar(header.size, RECEIVE_TEMPLATE)?;
            bar.1.set_message(header.name.clone());
            Some(bar)
        });
        let line = Object::new()
            .str("event", "file_incoming")
            .str("connection_id", &id.to_string())
            .str("file_name", &header.name)
            .u64("size", header.size)
            .str("sha256", &hex(&header.sha256))
            .bool("saving", partial.is_some());
        self.out.emit(line, || {
            let place = match &self.save_dir {
                Some(dir) => format!("saving in {}", dir.display()),
                None => "checked, not saved (no --save-dir)".to_owned(),
            };
            row(
                "file incoming",
                &format!(
                    "{}  {} ({} bytes) on connection {id}; {place}",
                    header.name,
                    HumanBytes(header.size),
                    header.size
                ),
            )
        });
        let incoming = Incoming {
            header,
            received: 0,
            hasher: digest::Context::new(&digest::SHA256),
            partial,
            bar,
        };
        if incoming.header.size == 0 {
            self.finish(id, incoming).await;
        } else {
            self.files.insert(id, State::Receiving(Box::new(incoming)));
        }
    }

    /// A chunk: answers true when it belongs to an announced file (being received or
    /// skipped).
    async fn chunk(&mut self, id: ConnectionId, data: &[u8]) -> bool {
        let len = data.len() as u64;
        match self.files.remove(&id) {
            None => false,
            Some(State::Skipping { left }) => {
                if left > len {
                    self.files.insert(id, State::Skipping { left: left - len });
                }
                true
            }
            Some(State::Receiving(mut incoming)) => {
                let left = incoming.header.size - incoming.received;
                if len > left {
                    let message = format!(
                        "more bytes came than the header announced ({})",
                        incoming.header.size
                    );
                    self.fail(id, *incoming, &message, None).await;
                    return true;
                }
                incoming.hasher.update(data);
                if let Some((file, path)) = &mut incoming.partial {
                    if let Err(error) = file.write_all(data).await {
                        let message = format!("writing {}: {error}", path.display());
                        self.fail(id, *incoming, &message, Some(left - len)).await;
                        return true;
                    }
                }
                incoming.received += len;
                if let Some((_, bar)) = &incoming.bar {
                    bar.set_position(incoming.received);
                }
                if incoming.received == incoming.header.size {
                    self.finish(id, *incoming).await;
                } else {
                    self.files.insert(id, State::Receiving(incoming));
                }
                true
            }
        }
    }

    /// All the bytes came: checks the hash, then gives the partial its name.
    async fn finish(&mut self, id: ConnectionId, mut incoming: Incoming) {
        let hasher = std::mem::replace(&mut incoming.hasher, digest::Context::new(&digest::SHA256));
        let sha256 = hasher.finish();
        if sha256.as_ref() != incoming.header.sha256 {
            let message = format!(
                "the SHA-256 of the bytes received is {}, not the announced {}",
                hex(sha256.as_ref()),
                hex(&incoming.header.sha256)
            );
            return self.fail(id, incoming, &message, None).await;
        }
        let mut path = None;
        if let Some((mut file, partial)) = incoming.partial.take() {
            let written = async {
                file.flush().await?;
                file.sync_all().await
            }
            .await;
            drop(file);
            let placed = match written {
                Ok(()) => place(&partial, &incoming.header.name).await,
                Err(error) => Err(format!("writing {}: {error}", partial.display())),
            };
            match placed {
                Ok(placed) => path = Some(placed),
                Err(message) => {
                    incoming.partial = None;
                    remove_partial(&partial).await;
                    return self.fail(id, incoming, &message, None).await;
                }
            }
        }
        if let Some((token, _)) = incoming.bar.take() {
            self.out.hide_bar(token);
        }
        let header = &incoming.header;
        self.report(
            id,
            &Report {
                name: Some(&header.name),
                path: path.as_deref(),
                bytes: incoming.received,
                size: Some(header.size),
                sha256: Some(&hex(&header.sha256)),
                message: None,
            },
        );
    }

    /// Ends `incoming` as incomplete: removes its partial and prints why. With
    /// `skip`, that many more bytes of it are dropped silently.
    async fn fail(
        &mut self,
        id: ConnectionId,
        incoming: Incoming,
        message: &str,
        skip: Option<u64>,
    ) {
        let Incoming {
            header,
            received,
            partial,
            bar,
            ..
        } = incoming;
        if let Some((token, _)) = bar {
            self.out.hide_bar(token);
        }
        if let Some((file, path)) = partial {
            drop(file);
            remove_partial(&path).await;
        }
        if let Some(left) = skip.filter(|left| *left > 0) {
            self.files.insert(id, State::Skipping { left });
        }
        self.report(id, &Report::refused(Some(&header), received, message));
    }

    /// Refuses a well-formed header: its content is dropped silently.
    fn refuse(&mut self, id: ConnectionId, header: &Header, message: &str) {
        if header.size > 0 {
            self.files.insert(id, State::Skipping { left: header.size });
        }
        self.report(id, &Report::refused(Some(header), 0, message));
    }

    fn receiving(&self) -> usize {
        self.files
            .values()
            .filter(|state| matches!(state, State::Receiving(_)))
            .count()
    }

    /// Prints the `file_received` event.
    fn report(&self, id: ConnectionId, report: &Report<'_>) {
        let complete = report.message.is_none();
        let path = report.path.map(|path| path.display().to_string());
        let mut line = Object::new()
            .str("event", "file_received")
            .str("connection_id", &id.to_string())
            .opt_str("file_name", report.name)
            .opt_str("path", path.as_deref())
            .u64("bytes", report.bytes);
        if let Some(size) = report.size {
            line = line.u64("size", size);
        }
        line = line
            .opt_str("sha256", report.sha256)
            .bool("complete", complete);
        if let Some(message) = report.message {
            line = line.str("message", message);
        }
        self.out.emit(line, || {
            let name = report.name.unwrap_or("a file");
            let text = match (report.message, &path) {
                (None, Some(path)) => format!(
                    "{name}  {} on connection {id}, SHA-256 checked; saved as {path}",
                    HumanBytes(report.bytes)
                ),
                (None, None) => format!(
                    "{name}  {} on connection {id}, SHA-256 checked; not saved \
                     (start with --save-dir DIR to keep files)",
                    HumanBytes(report.bytes)
                ),
                (Some(message), _) => format!(
                    "{name}  incomplete, {} of {} on connection {id}: {message}; nothing kept",
                    HumanBytes(report.bytes),
                    report
                        .size
                        .map_or("an unknown size".to_owned(), |size| HumanBytes(size)
                            .to_string())
                ),
            };
            row("file received", &text)
        });
    }
}

/// The fields of one `file_received` event. `message` is set exactly when the file is
/// incomplete; `sha256` only when the hash was checked.
struct Report<'a> {
    name: Option<&'a str>,
    path: Option<&'a Path>,
    bytes: u64,
    size: Option<u64>,
    sha256: Option<&'a str>,
    message: Option<&'a str>,
}

impl<'a> Report<'a> {
    fn refused(header: Option<&'a Header>, bytes: u64, message: &'a str) -> Self {
        Report {
            name: header.map(|header| header.name.as_str()),
            path: None,
            bytes,
            size: header.map(|header| header.size),
            sha256: None,
            message: Some(message),
        }
    }
}

/// Creates the partial file of `name` in `dir`: a new hidden file whose name ends in
/// `.part`, never an existing one (nor the target of a symbolic link).
async fn create_partial(dir: &Path, name: &str) -> Result<(tokio::fs::File, PathBuf), String> {
    let number = PARTIALS.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(".{name}.{}-{number}.part", std::process::id()));
    match tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .await
    {
        Ok(file) => Ok((file, path)),
        Err(error) => Err(format!("cannot create {}: {error}", path.display())),
    }
}

async fn remove_partial(path: &Path) {
    if let Err(error) = tokio::fs::remove_file(path).await {
        tracing::warn!(path = %path.display(), %error, "cannot remove a partial file");
    }
}

/// Gives the checked partial file its name in the same directory: `name`, or the first
/// free `name (N)`; never replaces a file. Answers the path.
async fn place(partial: &Path, name: &str) -> Result<PathBuf, String> {
    let dir = partial.parent().unwrap_or(Path::new("."));
    for number in 0..MAX_RENAMES {
        let candidate = dir.join(numbered(name, number));
        // A hard link fails when the name is taken, where a rename would replace it.
        match tokio::fs::hard_link(partial, &candidate).await {
            Ok(()) => {
                remove_partial(partial).await;
                return Ok(candidate);
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            // A file system without hard links: check, then rename (a race with
            // another writer of the same name is possible there, and only there).
            Err(_) => match tokio::fs::try_exists(&candidate).await {
                Ok(false) => {
                    return match tokio::fs::rename(partial, &candidate).await {
                        Ok(()) => Ok(candidate),
                        Err(error) => Err(format!(
                            "cannot name {} {}: {error}",
                            partial.display(),
                            candidate.display()
                        )),
                    };
                }
                Ok(true) => {}
                Err(error) => {
                    return Err(format!("cannot check {}: {error}", candidate.display()));
                }
            },
        }
    }
    Err(format!(
        "{name} and {} numbered names beside it are all taken",
        MAX_RENAMES - 1
    ))
}

/// `name` for 0, else `name (N)` with N before the extension: `report (2).pdf`.
fn numbered(name: &str, number: u32) -> String {
    if number == 0 {
        return name.to_owned();
    }
    match name.rfind('.') {
        Some(dot) if dot > 0 => format!("{} ({number}){}", &name[..dot], &name[dot..]),
        _ => format!("{name} ({number})"),
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
    fn numbered_names_keep_the_extension() {
        assert_eq!(numbered("report.pdf", 0), "report.pdf");
        assert_eq!(numbered("report.pdf", 2), "report (2).pdf");
        assert_eq!(numbered("archive.tar.gz", 1), "archive.tar (1).gz");
        assert_eq!(numbered(".bashrc", 1), ".bashrc (1)");
        assert_eq!(numbered("README", 3), "README (3)");
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

    /// A header's bytes for `content` under `name`.
    fn header_for(name: &str, content: &[u8]) -> Vec<u8> {
        let sha256 = digest::digest(&digest::SHA256, content);
        Header {
            name: name.to_owned(),
            size: content.len() as u64,
            sha256: sha256.as_ref().try_into().expect("32 bytes"),
        }
        .encode()
    }

    /// What a receiver saving in a new directory, inside a parent of its own, does with
    /// crafted messages: names that would leave the directory write nothing anywhere, a
    /// wrong hash or too many bytes leave nothing, and a good file is saved whole.
    #[tokio::test]
    async fn crafted_files_never_leave_the_directory_nor_look_whole() {
        let parent = tempfile::TempDir::new().expect("a directory");
        let dir = parent.path().join("inbox");
        std::fs::create_dir(&dir).expect("the save directory");
        let out = Arc::new(Output::new(true));
        let mut receiver = Receiver::new(Some(dir.clone()), out);
        let id = ConnectionId::new(7).expect("not zero");
        let entries = |path: &Path| std::fs::read_dir(path).expect("read a directory").count();

        for name in [
            "../escaped",
            "/tmp/escaped",
            "..",
            "C:escaped",
            "sub\\escaped",
        ] {
            assert!(
                receiver
                    .data(id, FILE_HEADER, &header_for(name, b"evil"))
                    .await
            );
            // The refused file's bytes are dropped quietly, and create nothing.
            assert!(receiver.data(id, FILE_CHUNK, b"evil").await);
            assert!(receiver.files.is_empty(), "{name}");
        }
        assert_eq!(entries(&dir), 0);
        assert_eq!(entries(parent.path()), 1, "only the save directory");

        // A malformed header: the chunks after it are stray, printed as before.
        assert!(receiver.data(id, FILE_HEADER, &[1, 2, 3]).await);
        assert!(!receiver.data(id, FILE_CHUNK, b"stray").await);

        // The bytes of another content: the hash differs, and nothing is kept.
        assert!(
            receiver
                .data(id, FILE_HEADER, &header_for("a.txt", b"right"))
                .await
        );
        assert_eq!(entries(&dir), 1, "the partial file");
        assert!(receiver.data(id, FILE_CHUNK, b"wrong").await);
        assert_eq!(entries(&dir), 0);

        // More bytes than announced: nothing is kept.
        assert!(
            receiver
                .data(id, FILE_HEADER, &header_for("b.txt", b"abc"))
                .await
        );
        assert!(receiver.data(id, FILE_CHUNK, b"abcd").await);
        assert_eq!(entries(&dir), 0);

        // The sender gives up half-way: nothing is kept.
        assert!(
            receiver
                .data(id, FILE_HEADER, &header_for("c.txt", b"abcdef"))
                .await
        );
        assert!(receiver.data(id, FILE_CHUNK, b"abc").await);
        assert!(
            receiver
                .data(id, FILE_ABORT, &encode_abort("read error"))
                .await
        );
        assert_eq!(entries(&dir), 0);

        // A good file in two chunks is saved whole, under its name.
        assert!(
            receiver
                .data(id, FILE_HEADER, &header_for("d.txt", b"hello world"))
                .await
        );
        assert!(receiver.data(id, FILE_CHUNK, b"hello ").await);
        assert!(receiver.data(id, FILE_CHUNK, b"world").await);
        assert_eq!(
            std::fs::read(dir.join("d.txt")).expect("the saved file"),
            b"hello world"
        );
        assert_eq!(entries(&dir), 1);

        // A file cut by the link's end, or by the host stopping, leaves nothing.
        assert!(
            receiver
                .data(id, FILE_HEADER, &header_for("e.txt", b"abcdef"))
                .await
        );
        assert!(receiver.data(id, FILE_CHUNK, b"abc").await);
        receiver.disconnected(id).await;
        assert!(
            receiver
                .data(id, FILE_HEADER, &header_for("f.txt", b"abcdef"))
                .await
        );
        assert!(receiver.data(id, FILE_CHUNK, b"abc").await);
        receiver.stop("stopping").await;
        assert!(
            receiver.data(id, FILE_CHUNK, b"def").await,
            "dropped quietly"
        );
        assert_eq!(entries(&dir), 1);
        assert_eq!(entries(parent.path()), 1);
    }

    #[test]
    fn hex_is_lowercase_and_whole() {
        assert_eq!(hex(&[0x00, 0xab, 0x0f]), "00ab0f");
    }
}
