//! `--metrics ADDR`: the graph's counters ([`GraphMetrics`]) served over HTTP in the
//! OpenMetrics text format (what Prometheus scrapes), and the same counters for `stats`.
//!
//! ```text
//!  scraper ──GET /metrics──▶ TcpListener ──task (bounded)──▶ Graph::metrics
//!                                   ◀── 200, OpenMetrics text (prometheus-client) ──┘
//! ```
//!
//! Each scrape asks the graph for its counters and encodes them in a new registry of the
//! Prometheus project's client: the graph keeps plain integers, and nothing here holds
//! state between scrapes. The HTTP side is the least a scraper needs: one request per
//! connection, a head of at most [`MAX_REQUEST_HEAD`] bytes read within
//! [`REQUEST_TIMEOUT`], at most [`MAX_SCRAPES`] connections at once, `Connection: close`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use peergraph::{Graph, GraphMetrics};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::json::Object;
use super::output::row;

/// The path the counters are served at.
pub(crate) const PATH: &str = "/metrics";

/// The most bytes of a request's head (request line and headers) read: a scraper's GET
/// is a few hundred bytes; anything larger is answered 431 and closed.
pub(crate) const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// How long one HTTP connection may take, from accept to the last byte of the answer: a
/// scraper on a stalled link (or a client that never sends) holds a slot no longer.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The most HTTP connections served at once; more wait in the kernel's accept queue.
/// Scrapers are few (one Prometheus, a curl by hand); the bound keeps a flood of
/// connections from growing the host's tasks.
pub(crate) const MAX_SCRAPES: usize = 8;

/// The most bytes of an oversized request read and dropped after its 431, so that the
/// client reads the answer before the connection closes (see `drain`).
const MAX_DRAIN: usize = 64 * 1024;

/// How long the server pauses after `accept` fails (out of file descriptors, say), so
/// that a persistent error does not spin a core.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The content type of the OpenMetrics text format that `prometheus_client`'s `encode`
/// writes (it ends with `# EOF`).
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One label: its name and value.
type Label = [(&'static str, &'static str); 1];

/// The counters in the OpenMetrics text format, every name prefixed `peergraph_`.
pub(crate) fn encode_metrics(metrics: &GraphMetrics) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("peergraph");

    let connections = Family::<Label, Gauge>::default();
    set(
        &connections,
        [("kind", "direct")],
        metrics.direct_connections,
    );
    registry.register(
        "connections",
        "Connections open now, by kind (neighbor connections are not implemented)",
        connections,
    );

    let pending = Family::<Label, Gauge>::default();
    set(
        &pending,
        [("direction", "outgoing")],
        metrics.pending_outgoing,
    );
    set(
        &pending,
        [("direction", "incoming")],
        metrics.pending_incoming,
    );
    registry.register(
        "pending_connections",
        "Connections being made now: outgoing attempts and incoming handshakes",
        pending,
    );

    let opened = Family::<[(&'static str, &'static str); 2], Counter>::default();
    for (direction, count) in [
        ("incoming", metrics.opened_incoming),
        ("outgoing", metrics.opened_outgoing),
    ] {
        opened
            .get_or_create(&[("kind", "direct"), ("direction", direction)])
            .inc_by(count);
    }
    registry.register(
        "connections_opened",
        "Connections opened since the graph opened, by kind and direction",
        opened,
    );

    register_counter(
        &mut registry,
        "connect_failures",
        "Outgoing connection attempts that failed (refused, unreachable, not authorized)",
        metrics.outgoing_failed,
    );

    let bytes = Family::<Label, Counter>::default();
    add(&bytes, [("direction", "sent")], metrics.bytes_sent);
    add(&bytes, [("direction", "received")], metrics.bytes_received);
    registry.register(
        "bytes",
        "UDP payload bytes on the graph's links, ended ones included (QUIC and TLS overhead \
         and retransmissions included)",
        bytes,
    );

    let closes = Family::<Label, Counter>::default();
    for (code, count) in &metrics.closes {
        add(
            &closes,
            [("code", code.name().unwrap_or("UNKNOWN"))],
            *count,
        );
    }
    registry.register(
        "closes",
        "Direct connections closed by this node (CloseDirectConnection), by the result code \
         of the close",
        closes,
    );

    let ended = Family::<Label, Counter>::default();
    for (end, count) in &metrics.links_ended {
        add(&ended, [("reason", end.label())], *count);
    }
    registry.register(
        "links_ended",
        "Links that ended, whoever ended them, by why",
        ended,
    );

    register_counter(
        &mut registry,
        "events_lost",
        "Events lost by event registrations whose readers fell behind",
        metrics.events_lost,
    );

    let refused = Family::<Label, Counter>::default();
    for (reason, count) in &metrics.refused {
        add(&refused, [("reason", reason.label())], *count);
    }
    registry.register(
        "handshakes_refused",
        "Incoming handshakes this node refused, by reason",
        refused,
    );

    register_counter(
        &mut registry,
        "handshakes_retried",
        "Incoming QUIC connections asked to prove their address (stateless retry) under load",
        metrics.handshakes_retried,
    );
    register_counter(
        &mut registry,
        "handshakes_failed",
        "Incoming handshakes that ended without a CONNECT (TLS failed, bad first frame, \
         timeout)",
        metrics.handshakes_failed,
    );
    register_counter(
        &mut registry,
        "connections_opened_early",
        "Connections opened whose CONNECT came as 0-RTT data on a resumed handshake",
        metrics.opened_early,
    );
    register_counter(
        &mut registry,
        "early_rejected",
        "Outgoing connections whose 0-RTT CONNECT the other node refused (sent again)",
        metrics.early_rejected,
    );
    register_counter(
        &mut registry,
        "early_unconfirmed",
        "Incoming connections welcomed on a 0-RTT CONNECT whose handshake never completed \
         (a replayed first flight)",
        metrics.early_unconfirmed,
    );

    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}

fn set(family: &Family<Label, Gauge>, label: Label, value: u64) {
    family
        .get_or_create(&label)
        .set(i64::try_from(value).unwrap_or(i64::MAX));
}

fn add(family: &Family<Label, Counter>, label: Label, value: u64) {
    family.get_or_create(&label).inc_by(value);
}

fn register_counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let counter = Counter::<u64>::default();
    counter.inc_by(value);
    registry.register(name, help, counter);
}

/// The counters as a JSON object, under the metric names without the prefix and suffix.
/// Every breakdown is an object of its non-zero entries.
pub(crate) fn json(metrics: &GraphMetrics) -> Object {
    let closes = metrics
        .closes
        .iter()
        .filter(|(_, count)| *count > 0)
        .fold(Object::new(), |object, (code, count)| {
            object.u64(code.name().unwrap_or("UNKNOWN"), *count)
        });
    let ended = metrics
        .links_ended
        .iter()
        .filter(|(_, count)| *count > 0)
        .fold(Object::new(), |object, (end, count)| {
            object.u64(end.label(), *count)
        });
    let refused = metrics
        .refused
        .iter()
        .filter(|(_, count)| *count > 0)
        .fold(Object::new(), |object, (reason, count)| {
            object.u64(reason.label(), *count)
        });
    Object::new()
        .u64("direct_connections", metrics.direct_connections)
        .u64("pending_outgoing", metrics.pending_outgoing)
        .u64("pending_incoming", metrics.pending_incoming)
        .u64("opened_incoming", metrics.opened_incoming)
        .u64("opened_outgoing", metrics.opened_outgoing)
        .u64("connect_failures", metrics.outgoing_failed)
        .u64("bytes_sent", metrics.bytes_sent)
        .u64("bytes_received", metrics.bytes_received)
        .object("closes", closes)
        .object("links_ended", ended)
        .u64("events_lost", metrics.events_lost)
        .object("handshakes_refused", refused)
        .u64("handshakes_retried", metrics.handshakes_retried)
        .u64("handshakes_failed", metrics.handshakes_failed)
        .u64("opened_early", metrics.opened_early)
        .u64("early_rejected", metrics.early_rejected)
        .u64("early_unconfirmed", metrics.early_unconfirmed)
}

/// The counters as text rows; breakdowns list their non-zero entries, or "none".
pub(crate) fn text(metrics: &GraphMetrics) -> String {
    fn listed<'a>(entries: impl Iterator<Item = (&'a str, u64)>) -> String {
        let listed: Vec<String> = entries
            .filter(|(_, count)| *count > 0)
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        if listed.is_empty() {
            "none".to_owned()
        } else {
            listed.join(", ")
        }
    }
    let rows = [
        (
            "links",
            format!(
                "{} direct open, {} opening out, {} handshaking in; opened {} in, {} out; \
                 {} connect failures",
                metrics.direct_connections,
                metrics.pending_outgoing,
                metrics.pending_incoming,
                metrics.opened_incoming,
                metrics.opened_outgoing,
                metrics.outgoing_failed
            ),
        ),
        (
            "bytes",
            format!(
                "{} sent, {} received (UDP, all links)",
                metrics.bytes_sent, metrics.bytes_received
            ),
        ),
        (
            "closes",
            listed(
                metrics
                    .closes
                    .iter()
                    .map(|(code, count)| (code.name().unwrap_or("UNKNOWN"), *count)),
            ),
        ),
        (
            "ended",
            listed(
                metrics
                    .links_ended
                    .iter()
                    .map(|(end, count)| (end.label(), *count)),
            ),
        ),
        ("events lost", metrics.events_lost.to_string()),
        (
            "refused",
            listed(
                metrics
                    .refused
                    .iter()
                    .map(|(reason, count)| (reason.label(), *count)),
            ),
        ),
        (
            "handshakes",
            format!(
                "{} retried, {} failed; {} opened with 0-RTT, {} 0-RTT refused, {} 0-RTT \
                 never completed",
                metrics.handshakes_retried,
                metrics.handshakes_failed,
                metrics.opened_early,
                metrics.early_rejected,
                metrics.early_unconfirmed
            ),
        ),
    ];
    let mut text = String::new();
    for (index, (tag, value)) in rows.iter().enumerate() {
        if index > 0 {
            text.push('\n');
        }
        text.push_str(&row(tag, value));
    }
    text
}

/// Serves the graph's counters at [`PATH`] on `listener` until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, graph: Graph) {
    let slots = Arc::new(Semaphore::new(MAX_SCRAPES));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "metrics: cannot accept a connection");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let graph = graph.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &graph))
                .await
                .is_err()
            {
                tracing::debug!("metrics: a request timed out");
            }
        });
    }
}

/// What a request asked for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    /// GET (or HEAD, without the body) of the metrics.
    Metrics { head_only: bool },
    /// Another path: 404.
    NotFound,
    /// Another method: 405.
    MethodNotAllowed,
    /// Not an HTTP request line: 400.
    Bad,
}

/// Reads a request's line from its head (what came before the blank line).
fn parse(head: &[u8]) -> Request {
    let Ok(head) = std::str::from_utf8(head) else {
        return Request::Bad;
    };
    let line = head.lines().next().unwrap_or_default();
    let mut words = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Request::Bad;
    };
    if !version.starts_with("HTTP/1.") || target.is_empty() {
        return Request::Bad;
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Request::MethodNotAllowed,
    };
    let path = target.split('?').next().unwrap_or_default();
    if path == PATH {
        Request::Metrics { head_only }
    } else {
        Request::NotFound
    }
}

/// Where a request's head ends (just past the blank line), if it has come.
fn head_end(buffer: &[u8]) -> Option<usize> {
    buffer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// Reads one request on `stream` and answers it.
async fn answer(mut stream: TcpStream, graph: &Graph) {
    let mut buffer = vec![0u8; MAX_REQUEST_HEAD];
    let mut filled = 0;
    let request = loop {
        if let Some(end) = head_end(&buffer[..filled]) {
            break parse(&buffer[..end]);
        }
        if filled == buffer.len() {
            let status = "431 Request Header Fields Too Large";
            if respond(&mut stream, status, &[], "request head too large\n")
                .await
                .is_ok()
            {
                drain(&mut stream, &mut buffer).await;
            }
            return;
        }
        match stream.read(&mut buffer[filled..]).await {
            Ok(0) | Err(_) => break Request::Bad,
            Ok(read) => filled += read,
        }
    };
    let result = match request {
        Request::Metrics { head_only } => match graph.metrics().await {
            Ok(metrics) => match encode_metrics(&metrics) {
                Ok(body) => {
                    let body = if head_only { "" } else { body.as_str() };
                    respond(
                        &mut stream,
                        "200 OK",
                        &[("Content-Type", CONTENT_TYPE)],
                        body,
                    )
                    .await
                }
                Err(error) => {
                    let text = format!("cannot encode the metrics: {error}\n");
                    respond(&mut stream, "500 Internal Server Error", &[], &text).await
                }
            },
            Err(error) => {
                let text = format!("the graph's counters are not available: {error}\n");
                respond(&mut stream, "503 Service Unavailable", &[], &text).await
            }
        },
        Request::NotFound => {
            let text = format!("not found: the metrics are at {PATH}\n");
            respond(&mut stream, "404 Not Found", &[], &text).await
        }
        Request::MethodNotAllowed => {
            let text = "only GET and HEAD are served\n";
            respond(
                &mut stream,
                "405 Method Not Allowed",
                &[("Allow", "GET, HEAD")],
                text,
            )
            .await
        }
        Request::Bad => respond(&mut stream, "400 Bad Request", &[], "bad request\n").await,
    };
    if let Err(error) = result {
        tracing::debug!(%error, "metrics: cannot answer a request");
    }
}

/// Reads and drops what the client still sends, up to [`MAX_DRAIN`] bytes, after an
/// answer that did not read the whole request: closing a socket with unread bytes resets
/// the connection, and the client might lose the answer.
async fn drain(stream: &mut TcpStream, buffer: &mut [u8]) {
    let mut drained = 0;
    while drained < MAX_DRAIN {
        match stream.read(buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => drained += read,
        }
    }
}

/// Writes a whole answer and ends the connection. A body without a content type among
/// `headers` is plain text.
async fn respond(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    if !headers.iter().any(|(name, _)| *name == "Content-Type") {
        head.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    }
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    let _ = write!(
        head,
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use peergraph::{LinkEnd, Refusal, ResultCode, CLOSE_CODES};

    fn sample() -> GraphMetrics {
        GraphMetrics {
            direct_connections: 1,
            pending_outgoing: 0,
            pending_incoming: 2,
            opened_incoming: 3,
            opened_outgoing: 4,
            outgoing_failed: 5,
            bytes_sent: 600,
            bytes_received: 700,
            closes: CLOSE_CODES
                .into_iter()
                .map(|code| (code, u64::from(code == ResultCode::S_OK)))
                .collect(),
            links_ended: LinkEnd::ALL
                .into_iter()
                .map(|end| (end, u64::from(end == LinkEnd::RemoteClose) * 2))
                .collect(),
            events_lost: 9,
            refused: Refusal::ALL
                .into_iter()
                .map(|reason| (reason, u64::from(reason == Refusal::NotAuthorized)))
                .collect(),
            handshakes_retried: 0,
            handshakes_failed: 1,
            opened_early: 2,
            early_rejected: 0,
            early_unconfirmed: 0,
        }
    }

    #[test]
    fn the_text_format_names_every_counter_with_its_labels() {
        let text = encode_metrics(&sample()).expect("encodes");
        for line in [
            "# TYPE peergraph_connections gauge",
            "peergraph_connections{kind=\"direct\"} 1",
            "peergraph_pending_connections{direction=\"incoming\"} 2",
            "peergraph_connections_opened_total{kind=\"direct\",direction=\"outgoing\"} 4",
            "peergraph_connect_failures_total 5",
            "peergraph_bytes_total{direction=\"sent\"} 600",
            "peergraph_bytes_total{direction=\"received\"} 700",
            "# TYPE peergraph_closes counter",
            "peergraph_closes_total{code=\"S_OK\"} 1",
            "peergraph_closes_total{code=\"PEER_E_TIMEOUT\"} 0",
            "peergraph_links_ended_total{reason=\"remote_close\"} 2",
            "peergraph_events_lost_total 9",
            "peergraph_handshakes_refused_total{reason=\"not_authorized\"} 1",
            "peergraph_handshakes_refused_total{reason=\"too_many_handshakes\"} 0",
            "peergraph_handshakes_failed_total 1",
        ] {
            assert!(text.lines().any(|each| each == line), "{line} in\n{text}");
        }
        assert!(text.contains("# HELP peergraph_closes "));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn the_json_object_lists_the_non_zero_entries() {
        let line = json(&sample()).finish();
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(parsed["bytes_sent"], 600);
        assert_eq!(parsed["closes"]["S_OK"], 1);
        assert!(parsed["closes"].get("PEER_E_TIMEOUT").is_none());
        assert_eq!(parsed["links_ended"]["remote_close"], 2);
        assert_eq!(parsed["handshakes_refused"]["not_authorized"], 1);
        assert_eq!(parsed["events_lost"], 9);
    }

    #[test]
    fn requests_are_told_apart() {
        let get = |line: &str| parse(format!("{line}\r\nHost: x\r\n\r\n").as_bytes());
        assert_eq!(
            get("GET /metrics HTTP/1.1"),
            Request::Metrics { head_only: false }
        );
        assert_eq!(
            get("GET /metrics?x=1 HTTP/1.0"),
            Request::Metrics { head_only: false }
        );
        assert_eq!(
            get("HEAD /metrics HTTP/1.1"),
            Request::Metrics { head_only: true }
        );
        assert_eq!(get("GET / HTTP/1.1"), Request::NotFound);
        assert_eq!(get("POST /metrics HTTP/1.1"), Request::MethodNotAllowed);
        assert_eq!(get("GET /metrics"), Request::Bad);
        assert_eq!(get("GET /metrics SPDY/3"), Request::Bad);
        assert_eq!(parse(b"\xff\xfe\r\n\r\n"), Request::Bad);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
