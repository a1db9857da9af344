//! `peer_host --metrics`: the graph's counters scraped over HTTP in the OpenMetrics text
//! format, the same numbers in `stats`, and the HTTP side's answers to bad requests.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{connection_event, connection_id, Host};
use serde_json::Value;

/// The longest one HTTP exchange with the host may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The most bytes of an answer read: the whole exposition is a few KiB.
const MAX_ANSWER: u64 = 1 << 20;

/// An HTTP answer: its status code, its head, its body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// Sends `request` (a whole request head) to `address` and reads the answer until the
/// host closes the connection, bounded in time and size.
fn http(address: SocketAddr, request: &str) -> Answer {
    let mut stream = TcpStream::connect_timeout(&address, HTTP_TIMEOUT).expect("connect");
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    stream
        .set_write_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream
        .take(MAX_ANSWER)
        .read_to_string(&mut answer)
        .expect("read the answer");
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no blank line after the head: {answer:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status: {head:?}"));
    Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn get(address: SocketAddr, path: &str) -> Answer {
    http(
        address,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nAccept: */*\r\n\r\n"),
    )
}

/// The value of the sample named exactly `series` (name and labels) in an exposition.
fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().expect("an integer value"))
        })
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// bob serves metrics; alice (same secret) opens a link, sends, and bob closes it;
/// mallory (another secret) is refused. The scrape and `stats` show the same counts.
#[test]
fn the_counters_are_scraped_and_match_stats() {
    let dir = tempfile::tempdir().expect("temp dir");
    let shared = dir.path().join("shared.secret");
    let other = dir.path().join("other.secret");
    std::fs::write(&shared, "correct horse battery staple\n").expect("write");
    std::fs::write(&other, "wrong horse battery staple\n").expect("write");
    let shared = shared.to_str().expect("UTF-8 path");
    let other = other.to_str().expect("UTF-8 path");

    let mut bob = Host::start_with(
        "bob",
        &["--secret-file", shared, "--metrics", "127.0.0.1:0"],
    );
    let mut alice = Host::start_with("alice", &["--secret-file", shared]);
    let mut mallory = Host::start_with("mallory", &["--secret-file", other]);
    let listening = |v: &Value| v["event"] == "listening";
    let bob_address = bob.expect("listening", listening)["addr"]
        .as_str()
        .expect("addr")
        .to_owned();
    let served = bob.expect("metrics address", |v| v["event"] == "metrics");
    let metrics: SocketAddr = served["addr"]
        .as_str()
        .expect("addr")
        .parse()
        .expect("a socket address");
    assert_eq!(served["url"], format!("http://{metrics}/metrics"));
    alice.expect("listening", listening);
    mallory.expect("listening", listening);

    // Before anything: zeros, in the OpenMetrics format.
    let fresh = get(metrics, "/metrics");
    assert_eq!(fresh.status, 200, "{}", fresh.head);
    assert!(
        fresh.head.lines().any(|line| line
            == "Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{}",
        fresh.head
    );
    assert!(fresh.body.ends_with("# EOF\n"));
    assert_eq!(
        sample(
            &fresh.body,
            "peergraph_connections_opened_total{kind=\"direct\",direction=\"incoming\"}"
        ),
        0
    );

    alice.send(&format!("open bob {bob_address}"));
    let id = connection_id(&alice.reply("open", "S_OK"));
    alice.expect("connected", connection_event("connected", &id));
    bob.expect("connected", connection_event("connected", &id));
    let open = get(metrics, "/metrics");
    assert_eq!(
        sample(&open.body, "peergraph_connections{kind=\"direct\"}"),
        1
    );
    alice.send(&format!("send {id} hello, bob"));
    alice.reply("send", "S_OK");
    bob.expect("the text", |v| v["event"] == "incoming_data");
    bob.send(&format!("close {id}"));
    bob.reply("close", "S_OK");
    alice.expect("disconnected", connection_event("disconnected", &id));

    mallory.send(&format!("open bob {bob_address}"));
    let refused = connection_id(&mallory.reply("open", "S_OK"));
    mallory.expect(
        "connection failed",
        connection_event("connection_failed", &refused),
    );

    let scraped = get(metrics, "/metrics");
    assert_eq!(scraped.status, 200);
    let text = &scraped.body;
    for (series, value) in [
        ("peergraph_connections{kind=\"direct\"}", 0),
        (
            "peergraph_connections_opened_total{kind=\"direct\",direction=\"incoming\"}",
            1,
        ),
        (
            "peergraph_connections_opened_total{kind=\"direct\",direction=\"outgoing\"}",
            0,
        ),
        ("peergraph_closes_total{code=\"S_OK\"}", 1),
        ("peergraph_closes_total{code=\"PEER_E_TIMEOUT\"}", 0),
        ("peergraph_links_ended_total{reason=\"local_close\"}", 1),
        ("peergraph_links_ended_total{reason=\"remote_close\"}", 0),
        (
            "peergraph_handshakes_refused_total{reason=\"not_authorized\"}",
            1,
        ),
        (
            "peergraph_handshakes_refused_total{reason=\"wrong_peer\"}",
            0,
        ),
        ("peergraph_events_lost_total", 0),
    ] {
        assert_eq!(sample(text, series), value, "{series} in:\n{text}");
    }
    let sent = sample(text, "peergraph_bytes_total{direction=\"sent\"}");
    let received = sample(text, "peergraph_bytes_total{direction=\"received\"}");
    assert!(sent > 0 && received > 0, "{text}");
    assert!(text.contains("# HELP peergraph_closes "));
    assert!(text.contains("# TYPE peergraph_handshakes_refused counter"));

    // `stats` shows the same counters.
    bob.send("stats");
    let stats = bob.reply("stats", "S_OK");
    let counters = &stats["metrics"];
    assert_eq!(counters["direct_connections"], 0, "{stats}");
    assert_eq!(counters["opened_incoming"], 1, "{stats}");
    assert_eq!(counters["closes"]["S_OK"], 1, "{stats}");
    assert_eq!(counters["links_ended"]["local_close"], 1, "{stats}");
    assert_eq!(
        counters["handshakes_refused"]["not_authorized"], 1,
        "{stats}"
    );
    assert_eq!(counters["bytes_sent"], sent, "{stats}");
    assert_eq!(counters["bytes_received"], received, "{stats}");
    assert_eq!(counters["events_lost"], 0, "{stats}");

    // alice closed nothing: her link ended by bob's close.
    alice.send("stats");
    let alice_stats = alice.reply("stats", "S_OK");
    assert_eq!(
        alice_stats["metrics"]["opened_outgoing"], 1,
        "{alice_stats}"
    );
    assert_eq!(
        alice_stats["metrics"]["links_ended"]["remote_close"], 1,
        "{alice_stats}"
    );
    assert!(
        alice_stats["metrics"]["closes"]
            .as_object()
            .is_some_and(|closes| closes.is_empty()),
        "{alice_stats}"
    );

    bob.quit();
    alice.quit();
    mallory.quit();
}

/// Another path, another method, and a request that is not HTTP are answered 404, 405
/// and 400; a head over the bound is answered 431; the host serves the next scrape and
/// goes on answering commands.
#[test]
fn bad_requests_are_answered_and_the_host_goes_on() {
    let mut host = Host::start_with("carol", &["--metrics", "127.0.0.1:0"]);
    let served = host.expect("metrics address", |v| v["event"] == "metrics");
    let metrics: SocketAddr = served["addr"]
        .as_str()
        .expect("addr")
        .parse()
        .expect("a socket address");

    let missing = get(metrics, "/");
    assert_eq!(missing.status, 404, "{}", missing.head);
    assert!(
        missing.head.contains("Connection: close"),
        "{}",
        missing.head
    );
    let posted = http(
        metrics,
        "POST /metrics HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(posted.status, 405, "{}", posted.head);
    assert!(posted.head.contains("Allow: GET, HEAD"), "{}", posted.head);
    let garbage = http(metrics, "hello there\r\n\r\n");
    assert_eq!(garbage.status, 400, "{}", garbage.head);
    let huge = http(
        metrics,
        &format!(
            "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(16 * 1024)
        ),
    );
    assert_eq!(huge.status, 431, "{}", huge.head);
    let head = http(metrics, "HEAD /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(head.status, 200, "{}", head.head);
    assert!(head.body.is_empty());

    let scraped = get(metrics, "/metrics?x=1");
    assert_eq!(scraped.status, 200, "{}", scraped.head);
    assert_eq!(
        sample(&scraped.body, "peergraph_connections{kind=\"direct\"}"),
        0
    );
    host.send("stats");
    let stats = host.reply("stats", "S_OK");
    assert_eq!(stats["metrics"]["opened_incoming"], 0, "{stats}");
    host.quit();
}
