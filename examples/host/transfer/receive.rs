//! The receiving side: each connection's file in progress, hashed as it comes and, with a
//! save directory, written to a partial file that is named only once the hash matched.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use indicatif::{HumanBytes, ProgressBar};
use peergraph::{ConnectionId, DataType};
use ring::digest;
use tokio::io::AsyncWriteExt as _;

use super::{check_name, decode_abort, hex, printable, Header, FILE_ABORT, FILE_HEADER};
use crate::host::json::Object;
use crate::host::output::{row, BarToken, Output};
use crate::host::FILE_CHUNK;

/// The most files a host receives at once, over all its connections: each holds an open
/// file and a partial on disk.
pub(crate) const MAX_INCOMING: usize = 8;

/// How many `NAME (N)` names a received file tries when NAME is taken.
const MAX_RENAMES: u32 = 100;

/// How the progress bar of a file being received looks: its name first.
const RECEIVE_TEMPLATE: &str =
    "{msg} {bar:32} {bytes}/{total_bytes}  {binary_bytes_per_sec}  {eta} left";

/// Numbers the partial files this process creates, so their names never collide.
static PARTIALS: AtomicU64 = AtomicU64::new(0);

/// The receiving side: the files coming in on each connection, checked and, with a save
/// directory, written there. Owned by the event printer, which hands it every file
/// message and every closed connection.
pub(crate) struct Receiver {
    save_dir: Option<PathBuf>,
    /// The largest file saved (`--max-file-size`); a header announcing more is refused.
    max_file_size: u64,
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

impl Receiver {
    /// Receives files, saving them in `save_dir` when there is one, if they are at most
    /// `max_file_size` bytes.
    pub(crate) fn new(save_dir: Option<PathBuf>, max_file_size: u64, out: Arc<Output>) -> Self {
        Receiver {
            save_dir,
            max_file_size,
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
        } else if self.save_dir.is_some() && header.size > self.max_file_size {
            Some(format!(
                "the file is {} bytes, over this host's --max-file-size of {} bytes",
                header.size, self.max_file_size
            ))
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
            let name = report.name.map_or("a file".to_owned(), printable);
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
    use crate::host::transfer::encode_abort;

    #[test]
    fn numbered_names_keep_the_extension() {
        assert_eq!(numbered("report.pdf", 0), "report.pdf");
        assert_eq!(numbered("report.pdf", 2), "report (2).pdf");
        assert_eq!(numbered("archive.tar.gz", 1), "archive.tar (1).gz");
        assert_eq!(numbered(".bashrc", 1), ".bashrc (1)");
        assert_eq!(numbered("README", 3), "README (3)");
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
        let out = Arc::new(Output::captured());
        let mut receiver = Receiver::new(Some(dir.clone()), 64, out.clone());
        let id = ConnectionId::new(7).expect("not zero");
        let entries = |path: &Path| std::fs::read_dir(path).expect("read a directory").count();
        // The one file_received printed since the last call: incomplete with a message
        // holding `why`, or complete when `why` is empty.
        let ended = |why: &str| {
            let lines = out.take_lines();
            let ended: Vec<_> = lines
                .iter()
                .filter(|line| line["event"] == "file_received")
                .collect();
            assert_eq!(ended.len(), 1, "{lines:?}");
            let line = ended[0].clone();
            assert_eq!(line["complete"], why.is_empty(), "{line}");
            if !why.is_empty() {
                assert!(
                    line["message"].as_str().is_some_and(|m| m.contains(why)),
                    "{line}"
                );
                assert!(line["path"].is_null() && line["sha256"].is_null(), "{line}");
            }
            line
        };

        for name in [
            "../escaped",
            "/tmp/escaped",
            "..",
            "C:escaped",
            "sub\\escaped",
        ] {
            let header = header_for(name, b"evil");
            assert!(receiver.data(id, FILE_HEADER, &header).await);
            // The refused file's bytes are dropped quietly, and create nothing.
            assert!(receiver.data(id, FILE_CHUNK, b"evil").await);
            assert!(receiver.files.is_empty(), "{name}");
            ended(if name == ".." {
                "not a file"
            } else {
                "only a base name"
            });
        }
        assert_eq!(entries(&dir), 0);
        assert_eq!(entries(parent.path()), 1, "only the save directory");

        // A file over the size bound is refused before anything is written, and its bytes
        // are dropped quietly.
        let big = [7u8; 65];
        assert!(
            receiver
                .data(id, FILE_HEADER, &header_for("big.bin", &big))
                .await
        );
        assert_eq!(entries(&dir), 0);
        assert!(receiver.data(id, FILE_CHUNK, &big).await);
        assert!(receiver.files.is_empty());
        ended("--max-file-size of 64 bytes");
        assert_eq!(entries(&dir), 0);

        // A malformed header: the chunks after it are stray, printed as before.
        assert!(receiver.data(id, FILE_HEADER, &[1, 2, 3]).await);
        ended("too short");
        assert!(!receiver.data(id, FILE_CHUNK, b"stray").await);

        // The bytes of another content: the hash differs, and nothing is kept.
        let header = header_for("a.txt", b"right");
        assert!(receiver.data(id, FILE_HEADER, &header).await);
        assert_eq!(entries(&dir), 1, "the partial file");
        assert!(receiver.data(id, FILE_CHUNK, b"wrong").await);
        ended("SHA-256");
        assert_eq!(entries(&dir), 0);

        // More bytes than announced: nothing is kept.
        let header = header_for("b.txt", b"abc");
        assert!(receiver.data(id, FILE_HEADER, &header).await);
        assert!(receiver.data(id, FILE_CHUNK, b"abcd").await);
        ended("more bytes");
        assert_eq!(entries(&dir), 0);

        // The sender gives up half-way: nothing is kept.
        let header = header_for("c.txt", b"abcdef");
        assert!(receiver.data(id, FILE_HEADER, &header).await);
        assert!(receiver.data(id, FILE_CHUNK, b"abc").await);
        let abort = encode_abort("read error");
        assert!(receiver.data(id, FILE_ABORT, &abort).await);
        assert_eq!(ended("read error")["bytes"], 3);
        assert_eq!(entries(&dir), 0);

        // A good file in two chunks is saved whole, under its name.
        let header = header_for("d.txt", b"hello world");
        assert!(receiver.data(id, FILE_HEADER, &header).await);
        assert!(receiver.data(id, FILE_CHUNK, b"hello ").await);
        assert!(receiver.data(id, FILE_CHUNK, b"world").await);
        let saved = ended("");
        assert_eq!(saved["path"], dir.join("d.txt").display().to_string());
        assert_eq!(saved["bytes"], 11);
        assert_eq!(
            std::fs::read(dir.join("d.txt")).expect("the saved file"),
            b"hello world"
        );
        assert_eq!(entries(&dir), 1);

        // A file cut by the link's end, or by the host stopping, leaves nothing.
        let header = header_for("e.txt", b"abcdef");
        assert!(receiver.data(id, FILE_HEADER, &header).await);
        assert!(receiver.data(id, FILE_CHUNK, b"abc").await);
        receiver.disconnected(id).await;
        ended("closed");
        let header = header_for("f.txt", b"abcdef");
        assert!(receiver.data(id, FILE_HEADER, &header).await);
        assert!(receiver.data(id, FILE_CHUNK, b"abc").await);
        receiver.stop("stopping").await;
        ended("stopping");
        assert!(
            receiver.data(id, FILE_CHUNK, b"def").await,
            "dropped quietly"
        );
        assert!(receiver.data(id, FILE_HEADER, &header).await);
        ended("stopping");
        assert_eq!(entries(&dir), 1);
        assert_eq!(entries(parent.path()), 1);
    }
}
