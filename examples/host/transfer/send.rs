//! The sending side: `sendfile` hashes the file, sends its header, then its chunks.

use std::io;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use indicatif::ProgressBar;
use peergraph::{ConnectionId, Graph, ResultCode, MAX_DATA_LEN};
use ring::digest;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio::sync::watch;

use super::{check_name, encode_abort, hex, stopped, Header, FILE_ABORT, FILE_HEADER};
use crate::host::output::Output;
use crate::host::FILE_CHUNK;

/// How long a sender that stops early waits to queue its FILE_ABORT: the link may be
/// full, and the host is usually stopping.
const ABORT_TIMEOUT: Duration = Duration::from_millis(500);

/// How the progress bar of `sendfile` looks: bytes done and total, rate, time left.
const SEND_TEMPLATE: &str = "{bar:32} {bytes}/{total_bytes}  {binary_bytes_per_sec}  {eta} left";

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
