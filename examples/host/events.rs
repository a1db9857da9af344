//! The event printer: reads the graph's event stream and prints each event as it comes,
//! beside the command loop. It ends when the stream does (the graph closed).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use peergraph::{ConnectionId, ConnectionStatus, EventStream, GraphEvent, RecordChangeType};
use tokio::sync::watch;

use super::json::Object;
use super::opening::Opening;
use super::output::{row, status_names, status_text, with_code, Output};
use super::transfer::{stopped, Receiver};
use super::{FILE_CHUNK, TEXT};

/// Prints every event of `events` until the stream ends.
/// Settles, in `opening`, each connection whose outcome an event reports. Files that come
/// are checked and, with `save_dir`, saved there (see `transfer`); those still coming
/// when `stop` turns true (the host is stopping) or the stream ends are incomplete.
pub(crate) async fn print(
    mut events: EventStream,
    out: Arc<Output>,
    opening: Arc<Opening>,
    save_dir: Option<PathBuf>,
    max_file_size: u64,
    mut stop: watch::Receiver<bool>,
) {
    // Bytes of file chunks received per connection, for the running total.
    let mut received: HashMap<ConnectionId, u64> = HashMap::new();
    let mut files = Receiver::new(save_dir, max_file_size, out.clone());
    let mut stopping = false;
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            () = stopped(&mut stop), if !stopping => {
                stopping = true;
                files.stop("the host is stopping").await;
                continue;
            }
        };
        let Some(event) = event else { break };
        match event {
            GraphEvent::DirectConnection(change) => {
                let id = change.connection_id;
                opening.settle(id);
                let (status, tag) = match change.status {
                    ConnectionStatus::Connected => ("connected", "connected"),
                    ConnectionStatus::Disconnected => ("disconnected", "disconnected"),
                    ConnectionStatus::ConnectionFailed => ("connection_failed", "failed"),
                };
                if change.status != ConnectionStatus::Connected {
                    received.remove(&change.connection_id);
                    files.disconnected(id).await;
                }
                let mut line = Object::new()
                    .str("event", "direct_connection")
                    .str("status", status)
                    .str("connection_id", &id.to_string())
                    .str("peer_id", change.peer_id.as_str());
                if let Some(node_id) = change.node_id {
                    line = line.str("node_id", &node_id.to_string());
                }
                if let Some(reason) = &change.failure_reason {
                    let message = reason.cause().map_or_else(
                        || reason.code().description().to_owned(),
                        |cause| cause.to_string(),
                    );
                    line = with_code(line, reason.code()).str("message", &message);
                }
                out.emit(line, || {
                    let mut text = format!("connection {id}  peer {}", change.peer_id);
                    if let Some(node_id) = change.node_id {
                        text.push_str(&format!("  node {node_id}"));
                    }
                    if let Some(reason) = &change.failure_reason {
                        text.push_str(&format!("  {reason}"));
                    }
                    row(tag, &text)
                });
            }
            GraphEvent::IncomingData {
                connection_id,
                data_type,
                data,
            } => {
                let id = connection_id;
                if files.data(id, data_type, &data).await {
                    continue;
                }
                let bytes = data.len() as u64;
                let line = Object::new()
                    .str("event", "incoming_data")
                    .str("connection_id", &id.to_string())
                    .str("type", &data_type.to_string())
                    .u64("bytes", bytes);
                if data_type == TEXT {
                    let text = String::from_utf8_lossy(&data);
                    out.emit(line.str("kind", "text").str("text", &text), || {
                        row(
                            "received",
                            &format!("connection {id}  {text:?}  ({bytes} bytes)"),
                        )
                    });
                } else if data_type == FILE_CHUNK {
                    let total = received.entry(connection_id).or_default();
                    *total += bytes;
                    let total = *total;
                    out.emit(
                        line.str("kind", "file_chunk").u64("total_bytes", total),
                        || {
                            row(
                                "received",
                                &format!(
                                    "connection {id}  file chunk of {bytes} bytes  \
                                     ({total} bytes so far)"
                                ),
                            )
                        },
                    );
                } else {
                    out.emit(line.str("kind", "other"), || {
                        row(
                            "received",
                            &format!("connection {id}  {bytes} bytes of type {data_type}"),
                        )
                    });
                }
            }
            GraphEvent::StatusChanged { status } => {
                let names = status_names(status);
                out.emit(
                    Object::new()
                        .str("event", "status_changed")
                        .strings("status", names.iter().copied()),
                    || row("status", &status_text(status)),
                );
            }
            GraphEvent::RecordChanged {
                change_type,
                record_id,
                record_type,
            } => {
                let change = match change_type {
                    RecordChangeType::Added => "added",
                    RecordChangeType::Updated => "updated",
                    RecordChangeType::Deleted => "deleted",
                    RecordChangeType::Expired => "expired",
                };
                out.emit(
                    Object::new()
                        .str("event", "record_changed")
                        .str("change", change)
                        .str("record_id", &record_id.to_string())
                        .str("record_type", &record_type.to_string()),
                    || {
                        row(
                            "record",
                            &format!("{change}  {record_id}  type {record_type}"),
                        )
                    },
                );
            }
            GraphEvent::PropertyChanged => {
                out.emit(Object::new().str("event", "property_changed"), || {
                    row("properties", "the graph's properties changed")
                });
            }
            GraphEvent::EventsLost { count } => {
                out.emit(
                    Object::new()
                        .str("event", "events_lost")
                        .u64("count", count),
                    || {
                        row(
                            "events lost",
                            &format!("{count} events dropped: this host fell behind"),
                        )
                    },
                );
            }
        }
    }
    files.stop("the graph closed").await;
}
