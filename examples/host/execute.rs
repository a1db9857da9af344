//! Carrying out the host's commands: each one calls the graph through the async facade and
//! prints exactly one reply with the call's result code.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use indicatif::HumanBytes;
use peergraph::{
    AttributeType, AttributeValue, Attributes, ConnectionFlags, ConnectionId, ConnectionInfo,
    ConnectionStats, Graph, GraphTime, NewRecord, PeerError, PeerKey, Record, RecordId, RecordType,
    RecordUpdate, ResultCode, Ticket, DEFAULT_CONNECT_TIMEOUT,
};
use tokio::sync::watch;

use super::address::{ticket_addresses, Target};
use super::command::{AttributeArg, BadCommand, Command, ConnectionRef, USAGE};
use super::json::Object;
use super::metrics;
use super::opening::Opening;
use super::output::{reply, row, status_names, status_text, with_code, Output};
use super::transfer::{self, SendFailure, Sent};
use super::{note_type, TEXT};

/// Runs commands against one graph.
pub(crate) struct Host {
    graph: Graph,
    node: NodeFacts,
    out: Arc<Output>,
    opening: Arc<Opening>,
    /// Turns true when the host starts stopping: a running `sendfile` gives up.
    stop: watch::Receiver<bool>,
}

/// What `info` says about this node beyond what the graph answers.
pub(crate) struct NodeFacts {
    /// The graph id, as given (`--graph`).
    pub(crate) graph_id: String,
    /// Whether DIRECT_CONNECTION is registered for (`--accept-direct`).
    pub(crate) accept_direct: bool,
    /// The links' congestion controller (`--congestion`).
    pub(crate) congestion: &'static str,
    /// This node's key, for its ticket.
    pub(crate) key: PeerKey,
}

/// How long a command naming a connection that is still opening waits for it: the
/// library's connect timeout (the host does not change it), and a margin for the event.
const OPEN_WAIT: Duration = Duration::from_secs(DEFAULT_CONNECT_TIMEOUT.as_secs() + 1);

/// A failed command: the result code, and what to say beyond the code's description.
struct Failure {
    code: ResultCode,
    message: String,
}

impl From<PeerError> for Failure {
    /// The error's code, and its cause when it has one (the OS error, the size limit, what
    /// the resolver said), else the code's description.
    fn from(error: PeerError) -> Self {
        Failure::with_cause(&error)
    }
}

impl Failure {
    /// The error's code, and its cause when it has one (such as what the resolver said).
    fn with_cause(error: &PeerError) -> Self {
        let description = error.code().description();
        Failure {
            code: error.code(),
            message: error
                .cause()
                .map_or_else(|| description.to_owned(), |cause| cause.to_string()),
        }
    }

    fn invalid(message: String) -> Self {
        Failure {
            code: ResultCode::E_INVALIDARG,
            message,
        }
    }
}

impl Host {
    pub(crate) fn new(
        graph: Graph,
        node: NodeFacts,
        out: Arc<Output>,
        opening: Arc<Opening>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Host {
            graph,
            node,
            out,
            opening,
            stop,
        }
    }

    /// Waits (each at most [`OPEN_WAIT`]) until every connection being opened is up or
    /// has failed: at the end of input, so that the graph closes them gracefully.
    pub(crate) async fn settle_opening(&self) {
        for id in self.opening.ids(None) {
            self.wait_opened(id).await;
        }
    }

    /// Waits until connection `id` is no longer being opened (see [`Opening::wait`]).
    async fn wait_opened(&self, id: ConnectionId) {
        let graph = &self.graph;
        self.opening
            .wait(
                id,
                || async move { graph.connection_stats(id).await.is_ok() },
            )
            .await;
    }

    /// Closes every open direct connection with CloseDirectConnection, all at once and
    /// within `limit`, so that the peers see DISCONNECTED at once and have all the data.
    /// Answers how many closed in time.
    pub(crate) async fn close_all(&self, limit: Duration) -> usize {
        let connections = match self.graph.enum_connections(ConnectionFlags::DIRECT).await {
            Ok(connections) => connections,
            Err(error) => {
                tracing::warn!(%error, "listing the connections to close");
                return 0;
            }
        };
        let mut closing = tokio::task::JoinSet::new();
        for info in connections {
            let graph = self.graph.clone();
            let id = info.connection_id;
            closing.spawn(async move { (id, graph.close_direct_connection(id).await) });
        }
        let mut closed = 0;
        let all = async {
            while let Some(done) = closing.join_next().await {
                match done {
                    Ok((_, Ok(()))) => closed += 1,
                    Ok((id, Err(error))) => tracing::debug!(%id, %error, "closing at exit"),
                    Err(error) => tracing::warn!(%error, "closing at exit"),
                }
            }
        };
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!("some connections did not close in time; the graph closes them");
        }
        closed
    }

    /// Answers a line longer than `max` bytes, which was skipped unread.
    pub(crate) fn line_too_long(&self, command: &str, bytes: u64, max: usize) {
        let line = reply(command)
            .u64("bytes", bytes)
            .u64("max_bytes", max as u64);
        self.fail(
            command,
            line,
            Failure::invalid(format!(
                "a line of {bytes} bytes is longer than the limit of {max} bytes; skipped"
            )),
        );
    }

    /// Answers for a command that a signal cut short.
    pub(crate) fn interrupted(&self, command: &str) {
        self.fail(
            command,
            reply(command),
            Failure {
                code: ResultCode::E_FAIL,
                message: "interrupted by a signal before it finished; the host is stopping"
                    .to_owned(),
            },
        );
    }

    /// Runs one command and prints its reply.
    pub(crate) async fn execute(&self, command: Command) {
        match command {
            Command::Open { peer_id, target } => self.open(&peer_id, &target).await,
            Command::OpenTicket { ticket } => self.open_ticket(&ticket).await,
            Command::Send { connection, text } => {
                if let Some(id) = self.resolve("send", &connection).await {
                    self.send(id, text).await;
                }
            }
            Command::SendFile { connection, path } => {
                if let Some(id) = self.resolve("sendfile", &connection).await {
                    self.send_file(id, &path).await;
                }
            }
            Command::Close { connection } => {
                if let Some(id) = self.resolve("close", &connection).await {
                    self.close(id).await;
                }
            }
            Command::Enum => self.enumerate().await,
            Command::Info => self.info().await,
            Command::Stats { connection: None } => self.stats(None).await,
            Command::Stats {
                connection: Some(connection),
            } => {
                if let Some(id) = self.resolve("stats", &connection).await {
                    self.stats(Some(id)).await;
                }
            }
            Command::Add {
                record_type,
                ttl_secs,
                attributes,
                text,
            } => self.add(record_type, ttl_secs, &attributes, text).await,
            Command::Update { record_id, text } => self.update(record_id, text).await,
            Command::Delete {
                record_id,
                local_only,
            } => self.delete(record_id, local_only).await,
            Command::Get { record_id } => self.get(record_id).await,
            Command::Records { record_type } => self.records(record_type).await,
            Command::Search { criteria } => self.search(&criteria).await,
            Command::Help => self.help(),
            // The command loop handles quit itself: it is the end of the session.
            Command::Quit => {}
        }
    }

    /// Answers a line that is not a valid command.
    pub(crate) fn bad_command(&self, bad: &BadCommand) {
        self.fail(
            &bad.command,
            reply(&bad.command),
            Failure::invalid(bad.message.clone()),
        );
    }

    /// The connection a CONNECTION argument names: the id as given, or the one open
    /// direct connection with the given peer. When there is none, or more than one, prints
    /// the failed reply of `command` (with the candidates' ids) and answers `None`.
    async fn resolve(&self, command: &str, connection: &ConnectionRef) -> Option<ConnectionId> {
        let peer_id = match connection {
            ConnectionRef::Id(id) => {
                self.wait_opened(*id).await;
                return Some(*id);
            }
            ConnectionRef::Peer(peer_id) => peer_id,
        };
        for id in self.opening.ids(Some(peer_id.as_str())) {
            self.wait_opened(id).await;
        }
        let line = reply(command).str("peer_id", peer_id.as_str());
        let connections = match self.graph.enum_connections(ConnectionFlags::DIRECT).await {
            Ok(connections) => connections,
            Err(error) => {
                self.fail(command, line, error.into());
                return None;
            }
        };
        let candidates: Vec<ConnectionId> = connections
            .iter()
            .filter(|info| info.peer_id == *peer_id)
            .map(|info| info.connection_id)
            .collect();
        match candidates.as_slice() {
            [id] => return Some(*id),
            [] => {
                let failure = Failure {
                    code: ResultCode::PEER_E_CONNECTION_NOT_FOUND,
                    message: format!(
                        "no open direct connection with peer `{peer_id}` (and `{peer_id}` is \
                         not a connection id); see `enum`"
                    ),
                };
                self.fail(command, line.strings("candidates", []), failure);
            }
            many => {
                let ids: Vec<String> = many.iter().map(ToString::to_string).collect();
                let failure = Failure::invalid(format!(
                    "{} open direct connections with peer `{peer_id}`: {}; give the \
                     connection id",
                    many.len(),
                    ids.join(", ")
                ));
                let line = line.strings("candidates", ids.iter().map(String::as_str));
                self.fail(command, line, failure);
            }
        }
        None
    }

    /// Prints a failed reply: the code, its name, and the message.
    fn fail(&self, command: &str, line: Object, failure: Failure) {
        let Failure { code, message } = failure;
        self.out
            .emit(with_code(line, code).str("message", &message), || {
                row(command, &format!("{code}: {message}"))
            });
    }

    /// Prints a successful reply: `line` with S_OK, or the human `text` after S_OK.
    fn succeed(&self, command: &str, line: Object, text: impl FnOnce() -> String) {
        self.out.emit(with_code(line, ResultCode::S_OK), || {
            row(command, &format!("S_OK  {}", text()))
        });
    }

    /// `open PEER_ID ADDR`: ADDR resolved (a host name), then [`Host::open_at`].
    async fn open(&self, peer_id: &str, target: &Target) {
        let mut line = reply("open").str("peer_id", peer_id);
        if let Target::Name { .. } = target {
            line = line.str("target", &target.to_string());
        }
        match target.resolve().await {
            Ok(addresses) => self.open_at(peer_id, &addresses, None, line).await,
            Err(error) => self.fail("open", line, error.into()),
        }
    }

    /// `open TICKET`: the ticket's addresses in turn, each pinned to its key.
    async fn open_ticket(&self, ticket: &Ticket) {
        let peer_id = ticket.peer_id().as_str();
        let line = reply("open")
            .str("peer_id", peer_id)
            .str("node_id", &ticket.node_id().to_string());
        if ticket.addresses().is_empty() {
            let failure = Failure::invalid(format!(
                "the ticket of {peer_id} lists no address: that node does not listen (it \
                 can open to this one, or serve in --allow-peer)"
            ));
            return self.fail("open", line, failure);
        }
        self.open_at(peer_id, ticket.addresses(), Some(*ticket.key()), line)
            .await;
    }

    /// Opens a direct connection to `peer_id` at the first of `addresses` where one comes
    /// up, in order: each address but the last is waited for (at most the connect
    /// timeout) and, when no connection comes of it, the next is tried; the last is
    /// answered at once, its outcome following as an event. With `key`, the node must
    /// present that key (PEER_E_CONNECTION_NOT_AUTHENTICATED otherwise).
    async fn open_at(
        &self,
        peer_id: &str,
        addresses: &[SocketAddr],
        key: Option<PeerKey>,
        line: Object,
    ) {
        let Some((last, earlier)) = addresses.split_last() else {
            return self.fail("open", line, Failure::invalid("no address".to_owned()));
        };
        for &address in earlier {
            let outcome = match self.start_open(peer_id, address, key).await {
                Ok(id) => {
                    self.opening.add(id, peer_id, OPEN_WAIT);
                    self.wait_opened(id).await;
                    if self.graph.connection_stats(id).await.is_ok() {
                        let line = line
                            .str("addr", &address.to_string())
                            .str("connection_id", &id.to_string());
                        return self.succeed("open", line, || {
                            format!("connection {id} to {peer_id} at {address} is up")
                        });
                    }
                    format!("connection {id} did not come up")
                }
                Err(error) => error.to_string(),
            };
            self.out
                .note(&format!("{address}: {outcome}; trying the next address"));
        }
        let address = *last;
        let line = line.str("addr", &address.to_string());
        match self.start_open(peer_id, address, key).await {
            Ok(id) => {
                self.opening.add(id, peer_id, OPEN_WAIT);
                self.succeed("open", line.str("connection_id", &id.to_string()), || {
                    let outcome = if self.node.accept_direct {
                        "the outcome follows as an event"
                    } else {
                        "its outcome is not reported without --accept-direct; see `enum`"
                    };
                    format!("connection {id} to {peer_id} at {address}; {outcome}")
                });
            }
            Err(error) => self.fail("open", line, error.into()),
        }
    }

    /// PeerGraphOpenDirectConnection, pinned to `key` when given.
    async fn start_open(
        &self,
        peer_id: &str,
        address: SocketAddr,
        key: Option<PeerKey>,
    ) -> Result<ConnectionId, PeerError> {
        match key {
            Some(key) => {
                self.graph
                    .open_direct_connection_pinned(peer_id, address, key)
                    .await
            }
            None => self.graph.open_direct_connection(peer_id, address).await,
        }
    }

    async fn send(&self, connection_id: ConnectionId, text: String) {
        let bytes = text.len() as u64;
        let line = reply("send")
            .str("connection_id", &connection_id.to_string())
            .u64("bytes", bytes);
        match self
            .graph
            .send_data(connection_id, TEXT, Bytes::from(text))
            .await
        {
            Ok(()) => self.succeed("send", line, || {
                format!("{bytes} bytes of text queued on connection {connection_id}")
            }),
            Err(error) => self.fail("send", line, error.into()),
        }
    }

    async fn send_file(&self, connection_id: ConnectionId, path: &Path) {
        let line = reply("sendfile")
            .str("connection_id", &connection_id.to_string())
            .str("path", &path.display().to_string());
        // Check the connection first, so that a wrong id is reported before any reading,
        // and an empty file is not "sent" on a connection that does not exist.
        if let Err(error) = self.graph.connection_stats(connection_id).await {
            return self.fail("sendfile", line, error.into());
        }
        let started = Instant::now();
        let outcome =
            transfer::send_file(&self.graph, connection_id, path, &self.out, &self.stop).await;
        let elapsed = started.elapsed();
        match outcome {
            Ok(Sent {
                name,
                bytes,
                chunks,
                sha256,
            }) => {
                let line = line
                    .str("file_name", &name)
                    .u64("bytes", bytes)
                    .u64("chunks", chunks)
                    .str("sha256", &sha256)
                    .f64("seconds", elapsed.as_secs_f64(), 3);
                self.succeed("sendfile", line, || {
                    format!(
                        "{name}  {} ({bytes} bytes) in {chunks} chunks on connection \
                         {connection_id}, {:.2} s, {}/s, SHA-256 {sha256}",
                        HumanBytes(bytes),
                        elapsed.as_secs_f64(),
                        HumanBytes(rate(bytes, elapsed))
                    )
                });
            }
            Err(SendFailure {
                code,
                mut message,
                bytes,
            }) => {
                if bytes > 0 {
                    message = format!("{message} (after {bytes} bytes)");
                }
                let failure = Failure { code, message };
                self.fail("sendfile", line.u64("bytes", bytes), failure);
            }
        }
    }

    async fn close(&self, connection_id: ConnectionId) {
        let line = reply("close").str("connection_id", &connection_id.to_string());
        match self.graph.close_direct_connection(connection_id).await {
            Ok(()) => self.succeed("close", line, || {
                format!("connection {connection_id} closed; the peer had all the data")
            }),
            Err(error) => self.fail("close", line, error.into()),
        }
    }

    async fn enumerate(&self) {
        match self.graph.enum_connections(ConnectionFlags::DIRECT).await {
            Ok(connections) => {
                let line = reply("enum").objects(
                    "connections",
                    connections.iter().map(|info| {
                        Object::new()
                            .str("connection_id", &info.connection_id.to_string())
                            .str("peer_id", info.peer_id.as_str())
                            .str("node_id", &info.node_id.to_string())
                            .str("addr", &info.address.to_string())
                    }),
                );
                self.succeed("enum", line, || {
                    let mut text = count(connections.len(), "direct connection");
                    if !connections.is_empty() {
                        text.push_str(&format!(
                            "\n{}",
                            row(
                                "",
                                &format!("{:<22}{:<16}{:<18}address", "connection", "peer", "node")
                            )
                        ));
                    }
                    for info in &connections {
                        text.push_str(&format!("\n{}", connection_row(info)));
                    }
                    text
                });
            }
            Err(error) => self.fail("enum", reply("enum"), error.into()),
        }
    }

    async fn info(&self) {
        let info = match self.graph.node_info(None).await {
            Ok(info) => info,
            Err(error) => return self.fail("info", reply("info"), error.into()),
        };
        let status = match self.graph.status().await {
            Ok(status) => status,
            Err(error) => return self.fail("info", reply("info"), error.into()),
        };
        let connections = match self.graph.counters().await {
            Ok(counters) => counters.connections as u64,
            Err(error) => return self.fail("info", reply("info"), error.into()),
        };
        let ticket = match Ticket::new(
            info.peer_id.clone(),
            self.node.key,
            ticket_addresses(&info.addresses),
        ) {
            Ok(ticket) => ticket.to_string(),
            Err(error) => return self.fail("info", reply("info"), error.into()),
        };
        let addresses: Vec<String> = info.addresses.iter().map(ToString::to_string).collect();
        let names = status_names(status);
        let line = reply("info")
            .str("graph_id", &self.node.graph_id)
            .str("peer_id", info.peer_id.as_str())
            .str("node_id", &info.node_id.to_string())
            .str("ticket", &ticket)
            .strings("addresses", addresses.iter().map(String::as_str))
            .strings("status", names.iter().copied())
            .bool("accept_direct", self.node.accept_direct)
            .str("congestion", self.node.congestion)
            .u64("connections", connections);
        self.succeed("info", line, || {
            let addresses = if addresses.is_empty() {
                "not listening".to_owned()
            } else {
                addresses.join(", ")
            };
            let direct = if self.node.accept_direct {
                "accepted"
            } else {
                "refused"
            };
            format!(
                "graph {}  peer {}  node {}  {addresses}\n{}\n{}",
                self.node.graph_id,
                info.peer_id,
                info.node_id,
                row(
                    "",
                    &format!(
                        "status {}; {}; direct connections {direct}; congestion {}",
                        status_text(status),
                        count(connections as usize, "connection"),
                        self.node.congestion
                    )
                ),
                row("", &format!("ticket {ticket}"))
            )
        });
    }

    async fn stats(&self, only: Option<ConnectionId>) {
        let ids: Vec<ConnectionId> = match only {
            Some(id) => vec![id],
            None => match self.graph.enum_connections(ConnectionFlags::DIRECT).await {
                Ok(connections) => connections.iter().map(|info| info.connection_id).collect(),
                Err(error) => return self.fail("stats", reply("stats"), error.into()),
            },
        };
        let mut all = Vec::new();
        for id in ids {
            match self.graph.connection_stats(id).await {
                Ok(stats) => all.push(stats),
                // Listed a moment ago, gone now: it closed in between.
                Err(error) if only.is_none() && error == PeerError::CONNECTION_NOT_FOUND => {}
                Err(error) => {
                    let line = reply("stats").str("connection_id", &id.to_string());
                    return self.fail("stats", line, error.into());
                }
            }
        }
        // Without a connection, the graph's counters too: the same as --metrics serves.
        let graph_metrics = match only {
            Some(_) => None,
            None => match self.graph.metrics().await {
                Ok(graph_metrics) => Some(graph_metrics),
                Err(error) => return self.fail("stats", reply("stats"), error.into()),
            },
        };
        let mut line = reply("stats").objects(
            "connections",
            all.iter().map(|stats| {
                Object::new()
                    .str("connection_id", &stats.connection_id.to_string())
                    .u64("bytes_sent", stats.bytes_sent)
                    .u64("bytes_received", stats.bytes_received)
                    .f64("rtt_ms", millis(stats.rtt), 3)
                    .u64("congestion_window", stats.congestion_window)
                    .u64("lost_packets", stats.lost_packets)
            }),
        );
        if let Some(graph_metrics) = &graph_metrics {
            line = line.object("metrics", metrics::json(graph_metrics));
        }
        self.succeed("stats", line, || {
            let mut text = count(all.len(), "connection");
            if !all.is_empty() {
                text.push_str(&format!(
                    "\n{}",
                    row(
                        "",
                        &format!(
                            "{:<22}{:>12}{:>12}{:>11}{:>12}{:>7}",
                            "connection", "sent", "received", "rtt", "cwnd", "lost"
                        )
                    )
                ));
            }
            for stats in &all {
                text.push_str(&format!("\n{}", stats_row(stats)));
            }
            if let Some(graph_metrics) = &graph_metrics {
                text.push_str(&format!("\n{}", metrics::text(graph_metrics)));
            }
            text
        });
    }

    async fn add(
        &self,
        record_type: Option<RecordType>,
        ttl_secs: u32,
        attributes: &[AttributeArg],
        text: String,
    ) {
        let record_type = record_type.unwrap_or_else(note_type);
        let line = reply("add").str("record_type", &record_type.to_string());
        let record = match new_record(record_type, ttl_secs, attributes, text) {
            Ok(record) => record,
            Err(failure) => return self.fail("add", line, failure),
        };
        let expires = record.expiration;
        match self.graph.add_record(record).await {
            Ok(id) => {
                let line = line
                    .str("record_id", &id.to_string())
                    .str("expires", &expires.to_string());
                self.succeed("add", line, || {
                    format!(
                        "record {id}  type {}  expires {expires}",
                        type_name(record_type)
                    )
                });
            }
            Err(error) => self.fail("add", line, error.into()),
        }
    }

    async fn update(&self, record_id: RecordId, text: String) {
        let line = reply("update").str("record_id", &record_id.to_string());
        let update = RecordUpdate {
            data: Some(text.into_bytes()),
            ..RecordUpdate::default()
        };
        match self.graph.update_record(record_id, update).await {
            Ok(()) => self.succeed("update", line, || {
                format!("record {record_id} has the new text")
            }),
            Err(error) => self.fail("update", line, error.into()),
        }
    }

    async fn delete(&self, record_id: RecordId, local_only: bool) {
        let line = reply("delete")
            .str("record_id", &record_id.to_string())
            .bool("local_only", local_only);
        match self.graph.delete_record(record_id, local_only).await {
            Ok(()) => self.succeed("delete", line, || {
                if local_only {
                    format!("record {record_id} erased from this node only")
                } else {
                    format!("record {record_id} deleted (a tombstone until it expires)")
                }
            }),
            Err(error) => self.fail("delete", line, error.into()),
        }
    }

    async fn get(&self, record_id: RecordId) {
        let line = reply("get").str("record_id", &record_id.to_string());
        match self.graph.get_record(record_id).await {
            Ok(record) => {
                let line = line.object("record", record_object(&record));
                self.succeed("get", line, || record_text(&record));
            }
            Err(error) => self.fail("get", line, error.into()),
        }
    }

    async fn records(&self, record_type: Option<RecordType>) {
        let mut line = reply("records");
        if let Some(kind) = record_type {
            line = line.str("record_type", &kind.to_string());
        }
        match self.graph.enum_records(record_type, None).await {
            Ok(records) => self.list("records", line, &records),
            Err(error) => self.fail("records", line, error.into()),
        }
    }

    async fn search(&self, criteria: &str) {
        match self.graph.search_records(criteria).await {
            Ok(records) => self.list("search", reply("search"), &records),
            Err(error) => self.fail("search", reply("search"), error.into()),
        }
    }

    /// The successful reply of `records` and `search`: a count, then a line or two per
    /// record.
    fn list(&self, command: &str, line: Object, records: &[Record]) {
        let line = line.objects("records", records.iter().map(record_object));
        self.succeed(command, line, || {
            let mut text = count(records.len(), "record");
            for record in records {
                text.push_str(&format!(
                    "\n{}",
                    row(
                        "",
                        &format!(
                            "{}  v{}  {}  by {}  {:?}",
                            record.id(),
                            record.version(),
                            type_name(record.record_type()),
                            record.creator_id(),
                            String::from_utf8_lossy(record.data())
                        )
                    )
                ));
                if !record.attributes().is_empty() {
                    text.push_str(&format!(
                        "\n{}",
                        row("", &format!("  {}", attributes_text(record.attributes())))
                    ));
                }
            }
            text
        });
    }

    fn help(&self) {
        let line = reply("help").strings("commands", USAGE.iter().map(|(form, _)| *form));
        self.succeed("help", line, || {
            let mut text = String::from(
                "commands (CONNECTION: a connection id as printed, such as 0x8b3e5a1f0c2d4e69, \
                 or the peer id of the only connection with that peer)",
            );
            for (form, summary) in USAGE {
                // A form too long for its column gets a line of its own.
                if form.len() < 30 {
                    text.push_str(&format!("\n{}", row("", &format!("{form:<30}{summary}"))));
                } else {
                    text.push_str(&format!("\n{}", row("", form)));
                    text.push_str(&format!("\n{}", row("", &format!("{:<30}{summary}", ""))));
                }
            }
            text
        });
    }
}

/// The record `add` makes: `attributes` checked against their types, living `ttl_secs`.
fn new_record(
    record_type: RecordType,
    ttl_secs: u32,
    attributes: &[AttributeArg],
    text: String,
) -> Result<NewRecord, Failure> {
    let mut checked = Attributes::new();
    for AttributeArg { name, kind, value } in attributes {
        let invalid = |message: String| Failure {
            code: ResultCode::PEER_E_INVALID_ATTRIBUTES,
            message,
        };
        let typed = AttributeValue::parse(*kind, value)
            .ok_or_else(|| invalid(format!("`{value}` is not {}", a_value_of(*kind))))?;
        checked = checked.with(name.as_str(), typed).map_err(|error| {
            invalid(format!(
                "attribute `{name}`: {} (a reserved or repeated name?)",
                error.code().description()
            ))
        })?;
    }
    let expiration = SystemTime::now()
        .checked_add(Duration::from_secs(u64::from(ttl_secs)))
        .ok_or_else(|| Failure::invalid(format!("--ttl {ttl_secs} is too far away")))
        .and_then(|at| GraphTime::from_system_time(at).map_err(Failure::from))?;
    Ok(NewRecord {
        record_type,
        attributes: checked,
        expiration,
        autorefresh: false,
        data: text.into_bytes(),
    })
}

/// "a string", "an int", "a date": what a value of `kind` is called in a message.
fn a_value_of(kind: AttributeType) -> &'static str {
    match kind {
        AttributeType::String => "a string",
        AttributeType::Int => "an int",
        AttributeType::Date => "a date such as 2024-05-01T12:00:00Z",
    }
}

/// A record type as the text output shows it: `note` for the default type, else the GUID.
fn type_name(record_type: RecordType) -> String {
    if record_type == note_type() {
        "note".to_owned()
    } else {
        record_type.to_string()
    }
}

/// A record as a JSON object: ids as strings, times as `date` text, the data as text.
fn record_object(record: &Record) -> Object {
    Object::new()
        .str("record_id", &record.id().to_string())
        .str("record_type", &record.record_type().to_string())
        .u64("version", u64::from(record.version()))
        .str("creator_id", record.creator_id().as_str())
        .str("modified_by_id", record.modified_by_id().as_str())
        .str("created", &record.creation_time().to_string())
        .str("modified", &record.last_modified_time().to_string())
        .str("expires", &record.expiration_time().to_string())
        .objects(
            "attributes",
            record.attributes().iter().map(|(name, value)| {
                Object::new()
                    .str("name", name)
                    .str("type", value.kind().name())
                    .str("value", &value.to_string())
            }),
        )
        .u64("bytes", record.data().len() as u64)
        .str("text", &String::from_utf8_lossy(record.data()))
}

/// A record as the text output of `get`: several aligned lines.
fn record_text(record: &Record) -> String {
    let lines = [
        format!(
            "record {}  version {}  type {}",
            record.id(),
            record.version(),
            type_name(record.record_type())
        ),
        format!(
            "creator {}  modified by {}",
            record.creator_id(),
            record.modified_by_id()
        ),
        format!(
            "created {}  modified {}",
            record.creation_time(),
            record.last_modified_time()
        ),
        format!("expires {}", record.expiration_time()),
        format!("attributes {}", attributes_text(record.attributes())),
        format!(
            "text {:?} ({} bytes)",
            String::from_utf8_lossy(record.data()),
            record.data().len()
        ),
    ];
    let mut text = String::new();
    for (index, line) in lines.iter().enumerate() {
        if index == 0 {
            text.push_str(line);
        } else {
            text.push_str(&format!("\n{}", row("", line)));
        }
    }
    text
}

/// Attributes as `room=string:lobby seq=int:2`, the form `add --attr` takes; `none`.
fn attributes_text(attributes: &Attributes) -> String {
    if attributes.is_empty() {
        return "none".to_owned();
    }
    attributes
        .iter()
        .map(|(name, value)| format!("{name}={}:{value}", value.kind().name()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn connection_row(info: &ConnectionInfo) -> String {
    row(
        "",
        &format!(
            "{:<22}{:<16}{:<18}{}",
            info.connection_id.to_string(),
            info.peer_id.as_str(),
            info.node_id.to_string(),
            info.address
        ),
    )
}

fn stats_row(stats: &ConnectionStats) -> String {
    row(
        "",
        &format!(
            "{:<22}{:>12}{:>12}{:>11}{:>12}{:>7}",
            stats.connection_id.to_string(),
            HumanBytes(stats.bytes_sent).to_string(),
            HumanBytes(stats.bytes_received).to_string(),
            format!("{:.3} ms", millis(stats.rtt)),
            HumanBytes(stats.congestion_window).to_string(),
            stats.lost_packets
        ),
    )
}

/// `n` things, with the plural when needed.
fn count(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Bytes per second, for the summary of a transfer.
fn rate(bytes: u64, elapsed: Duration) -> u64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        (bytes as f64 / seconds) as u64
    } else {
        0
    }
}
