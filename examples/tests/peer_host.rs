//! `peer_host` processes driven through their standard input and output in `--json`
//! mode, as a script would: two hosts listen, open, send, sendfile, close, answer bad
//! commands and quit; one host with `--db` adds, searches, gets and deletes records, and
//! finds them again in its next run.

mod common;

use std::time::Duration;

use serde_json::Value;

use common::{connected_pair, connected_pair_with, connection_event, connection_id, Host};

#[test]
fn json_ids_round_trip_and_peer_ids_name_connections() {
    let (mut alice, mut bob, id) = connected_pair();

    // The id exactly as the JSON carried it, through a JSON parser, into the next send:
    // a number above 2^53 would have come back rounded and unknown.
    let reparsed: Value = serde_json::from_str(&format!("{{\"id\":\"{id}\"}}")).expect("JSON");
    let typed = reparsed["id"].as_str().expect("a string");
    alice.send(&format!("send {typed} by id"));
    let sent = alice.reply("send", "S_OK");
    assert_eq!(sent["connection_id"], id.as_str(), "{sent}");
    let data = bob.expect("incoming data", |v| v["event"] == "incoming_data");
    assert_eq!(connection_id(&data), id);
    assert_eq!(data["text"], "by id");

    // `enum` and `stats` print the same form.
    alice.send("enum");
    let listed = alice.reply("enum", "S_OK");
    assert_eq!(connection_id(&listed["connections"][0]), id, "{listed}");
    alice.send("stats");
    let stats = alice.reply("stats", "S_OK");
    assert_eq!(connection_id(&stats["connections"][0]), id, "{stats}");

    // One connection with bob: `bob` names it, at either end by the other's peer id.
    alice.send("send bob by peer id");
    let sent = alice.reply("send", "S_OK");
    assert_eq!(sent["connection_id"], id.as_str(), "{sent}");
    let data = bob.expect("incoming data", |v| v["event"] == "incoming_data");
    assert_eq!(data["text"], "by peer id");
    bob.send("stats alice");
    let stats = bob.reply("stats", "S_OK");
    assert_eq!(connection_id(&stats["connections"][0]), id, "{stats}");

    // A second connection with bob makes `bob` ambiguous: the error names both.
    let bob_address = {
        bob.send("info");
        let info = bob.reply("info", "S_OK");
        info["addresses"][0]
            .as_str()
            .expect("an address")
            .to_owned()
    };
    alice.send(&format!("open bob {bob_address}"));
    let second = connection_id(&alice.reply("open", "S_OK"));
    alice.expect("connected", connection_event("connected", &second));
    alice.send("send bob which one");
    let ambiguous = alice.reply("send", "E_INVALIDARG");
    let mut candidates: Vec<&str> = ambiguous["candidates"]
        .as_array()
        .map(|ids| ids.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    candidates.sort_unstable();
    let mut wanted = vec![id.as_str(), second.as_str()];
    wanted.sort_unstable();
    assert_eq!(candidates, wanted, "{ambiguous}");
    assert!(
        ambiguous["message"]
            .as_str()
            .is_some_and(|m| m.contains(&id) && m.contains(&second)),
        "{ambiguous}"
    );

    // Closing one by id leaves `bob` naming the other.
    alice.send(&format!("close {second}"));
    alice.reply("close", "S_OK");
    alice.expect("disconnected", connection_event("disconnected", &second));
    alice.send("close bob");
    let closed = alice.reply("close", "S_OK");
    assert_eq!(closed["connection_id"], id.as_str(), "{closed}");
    bob.expect("disconnected", connection_event("disconnected", &id));

    alice.quit();
    bob.quit();
}

#[test]
fn two_hosts_open_send_close_and_quit() {
    let mut alice = Host::start("alice");
    let mut bob = Host::start("bob");
    let listening = |v: &Value| v["event"] == "listening";
    let alice_start = alice.expect("listening event", listening);
    let bob_start = bob.expect("listening event", listening);
    assert_eq!(alice_start["peer_id"], "alice");
    assert_eq!(
        bob_start["node_id"].as_str().map(str::len),
        Some(16),
        "{bob_start}"
    );
    let bob_address = bob_start["addr"].as_str().expect("addr").to_owned();

    alice.send(&format!("open bob {bob_address}"));
    let opened = alice.reply("open", "S_OK");
    let id = connection_id(&opened);
    let id = id.as_str();
    alice.expect("connected", connection_event("connected", id));
    let connected = bob.expect("connected", connection_event("connected", id));
    assert_eq!(connected["peer_id"], "alice");
    assert_eq!(connected["node_id"], alice_start["node_id"]);

    alice.send(&format!("send {id} hello"));
    alice.reply("send", "S_OK");
    let data = bob.expect("incoming data", |v| v["event"] == "incoming_data");
    assert_eq!(data["connection_id"], id);
    assert_eq!(data["text"], "hello");
    assert_eq!(data["bytes"], 5);

    // Text that needs escaping survives the trip, and ids are accepted in decimal too.
    let tricky = "quote \" backslash \\ tab \t unicode é";
    let decimal = u64::from_str_radix(&id[2..], 16).expect("hex digits");
    alice.send(&format!("send {decimal} {tricky}"));
    alice.reply("send", "S_OK");
    let data = bob.expect("incoming data", |v| v["event"] == "incoming_data");
    assert_eq!(data["text"], tricky);

    // A file of two and a half chunks arrives whole, chunk by chunk.
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("peer_host_test_{}.bin", std::process::id()));
    let len = peergraph::MAX_DATA_LEN * 5 / 2;
    let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &content).expect("write the test file");
    alice.send(&format!("sendfile {id} {}", path.display()));
    let sent = alice.reply("sendfile", "S_OK");
    let _ = std::fs::remove_file(&path);
    assert_eq!(sent["bytes"], len as u64);
    assert_eq!(sent["chunks"], 3);
    let mut received = 0;
    while received < len as u64 {
        let chunk = bob.expect("file chunk", |v| v["kind"] == "file_chunk");
        assert_eq!(chunk["connection_id"], id);
        let bytes = chunk["bytes"].as_u64().expect("bytes");
        assert!(bytes <= peergraph::MAX_DATA_LEN as u64);
        received += bytes;
        assert_eq!(chunk["total_bytes"], received);
    }
    assert_eq!(received, len as u64);

    // quinn's statistics of the link, for one connection and for all.
    alice.send(&format!("stats {id}"));
    let stats = alice.reply("stats", "S_OK");
    let link = &stats["connections"][0];
    assert_eq!(link["connection_id"], id, "{stats}");
    for field in ["bytes_sent", "bytes_received", "congestion_window"] {
        assert!(
            link[field].as_u64().is_some_and(|n| n > 0),
            "{field}: {stats}"
        );
    }
    assert!(
        link["rtt_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{stats}"
    );
    alice.send("stats");
    let all = alice.reply("stats", "S_OK");
    assert_eq!(
        all["connections"].as_array().map(Vec::len),
        Some(1),
        "{all}"
    );
    alice.send("stats 0");
    alice.reply("stats", "E_INVALIDARG");

    // A bad command or argument is answered, and the host goes on.
    bob.send("close 0xZZ");
    let bad = bob.reply("close", "E_INVALIDARG");
    assert!(
        bad["message"]
            .as_str()
            .is_some_and(|m| m.contains("`0xZZ` is not a connection id")),
        "{bad}"
    );
    // A word that is no id is a peer id; bob has no connection with carol.
    bob.send("close carol");
    let unknown = bob.reply("close", "PEER_E_CONNECTION_NOT_FOUND");
    assert_eq!(unknown["peer_id"], "carol", "{unknown}");
    assert_eq!(unknown["candidates"], Value::Array(Vec::new()), "{unknown}");
    bob.send("frobnicate");
    bob.reply("frobnicate", "E_INVALIDARG");

    bob.send(&format!("close {id}"));
    let closed = bob.reply("close", "S_OK");
    assert_eq!(closed["connection_id"], id);
    assert_eq!(closed["hr"], "0x00000000");
    bob.expect("disconnected", connection_event("disconnected", id));
    alice.expect("disconnected", connection_event("disconnected", id));

    alice.send(&format!("close {id}"));
    let again = alice.reply("close", "PEER_E_CONNECTION_NOT_FOUND");
    assert_eq!(again["hr"], "0x80630103");

    alice.send("enum");
    let listed = alice.reply("enum", "S_OK");
    assert_eq!(listed["connections"], Value::Array(Vec::new()));

    alice.quit();
    bob.quit();
}

/// A host of graph `notes` whose records live in the database under `dir`.
fn notes_host(dir: &std::path::Path) -> Host {
    let dir = dir
        .to_str()
        .expect("the temporary directory's path is UTF-8");
    Host::spawn(
        "alice",
        &["--graph", "notes", "--peer", "alice", "--db", dir, "--json"],
    )
}

/// The ids of a `records` or `search` reply's records.
fn record_ids(reply: &Value) -> Vec<String> {
    reply["records"]
        .as_array()
        .unwrap_or_else(|| panic!("no records array: {reply}"))
        .iter()
        .map(|record| {
            record["record_id"]
                .as_str()
                .unwrap_or_else(|| panic!("a record id is not a string: {reply}"))
                .to_owned()
        })
        .collect()
}

#[test]
fn records_outlive_the_host_with_db() {
    let dir = tempfile::tempdir().expect("a temporary directory");

    // First run: a new database.
    let mut alice = notes_host(dir.path());
    let created = alice.expect("graph_created", |v| v["event"] == "graph_created");
    assert_eq!(created["name"], "S_OK", "{created}");
    assert_eq!(created["database"], "main", "{created}");
    alice.expect("started", |v| v["event"] == "started");

    alice.send("add --attr room=string:lobby --attr seq=int:1 lunch at one");
    let added = alice.reply("add", "S_OK");
    let kept = added["record_id"]
        .as_str()
        .expect("id as a string")
        .to_owned();
    assert_eq!(kept.len(), 36, "a GUID: {added}");
    let event = alice.expect("record added", |v| {
        v["event"] == "record_changed" && v["record_id"] == kept.as_str()
    });
    assert_eq!(event["change"], "added");

    alice.send("add --ttl 600 -- --a note that goes");
    let added = alice.reply("add", "S_OK");
    let gone = added["record_id"].as_str().expect("id").to_owned();

    alice.send(
        r#"search <peersearch><and><clause attrib="room" type="string">lob*</clause><clause attrib="seq" type="int" compare="greaterorequal">1</clause></and></peersearch>"#,
    );
    let found = alice.reply("search", "S_OK");
    assert_eq!(record_ids(&found), vec![kept.clone()], "{found}");

    alice.send(&format!("get {kept}"));
    let got = alice.reply("get", "S_OK");
    let record = &got["record"];
    assert_eq!(record["text"], "lunch at one", "{got}");
    assert_eq!(record["version"], 1, "{got}");
    assert_eq!(record["creator_id"], "alice", "{got}");
    assert_eq!(record["attributes"][0]["name"], "room", "{got}");
    assert_eq!(record["attributes"][1]["value"], "1", "{got}");

    alice.send(&format!("get {gone}"));
    assert_eq!(
        alice.reply("get", "S_OK")["record"]["text"],
        "--a note that goes"
    );
    alice.send(&format!("delete {gone}"));
    alice.reply("delete", "S_OK");
    alice.expect("record deleted", |v| {
        v["event"] == "record_changed"
            && v["change"] == "deleted"
            && v["record_id"] == gone.as_str()
    });

    // The call's codes come through: attributes, search, unknown records.
    alice.send("add --attr peercreatorid=string:mallory hi");
    alice.reply("add", "PEER_E_INVALID_ATTRIBUTES");
    alice.send("add --attr seq=int:two hi");
    alice.reply("add", "PEER_E_INVALID_ATTRIBUTES");
    alice.send("search <peersearch><clause attrib=\"seq\" type=\"int\" compare=\"about\">1</clause></peersearch>");
    alice.reply("search", "PEER_E_INVALID_SEARCH");
    alice.send(&format!("delete {gone}"));
    alice.reply("delete", "PEER_E_RECORD_NOT_FOUND");
    alice.send("get nonsense");
    alice.reply("get", "E_INVALIDARG");
    alice.quit();

    // Second run, same graph, peer and database: opened, the note is still there and the
    // deleted one is not.
    let mut alice = notes_host(dir.path());
    let opened = alice.expect("graph_opened", |v| v["event"] == "graph_opened");
    assert_eq!(opened["name"], "S_OK", "{opened}");
    alice.expect("started", |v| v["event"] == "started");
    alice.send("records");
    let listed = alice.reply("records", "S_OK");
    assert_eq!(record_ids(&listed), vec![kept.clone()], "{listed}");
    assert_eq!(listed["records"][0]["text"], "lunch at one", "{listed}");
    alice.send(&format!("get {gone}"));
    alice.reply("get", "PEER_E_RECORD_NOT_FOUND");
    alice.send(&format!("update {kept} lunch at half past one"));
    alice.reply("update", "S_OK");
    alice.send(&format!("get {kept}"));
    let got = alice.reply("get", "S_OK");
    assert_eq!(got["record"]["version"], 2, "{got}");
    alice.quit();
}

#[test]
fn sigterm_closes_every_link_at_once_and_exits_0() {
    // An idle timeout far above the wait below: bob can only see the disconnection that
    // quickly if alice closes the link on SIGTERM.
    let idle = ["--idle-timeout", "30"];
    let (mut alice, mut bob, id) = connected_pair_with(&idle, &idle);

    alice.signal("-TERM");
    bob.expect_within(
        Duration::from_secs(5),
        "disconnected within 5 s of SIGTERM",
        connection_event("disconnected", &id),
    );
    let stopped = alice.expect("stopped event", |v| v["event"] == "stopped");
    assert_eq!(stopped["reason"], "terminated", "{stopped}");
    assert_eq!(stopped["name"], "S_OK", "{stopped}");
    alice.exits_ok("SIGTERM");
    bob.quit();
}

#[test]
fn piped_open_then_send_delivers_before_exit() {
    let mut bob = Host::start("bob");
    let bob_start = bob.expect("listening event", |v| v["event"] == "listening");
    let bob_address = bob_start["addr"].as_str().expect("addr").to_owned();

    // The whole script at once, then the end of input: `send bob` names a connection
    // that is still opening, and must wait for it.
    let mut alice = Host::start("alice");
    alice.send(&format!("open bob {bob_address}\nsend bob hi"));
    alice.stdin.take();
    alice.reply("open", "S_OK");
    alice.reply("send", "S_OK");
    let stopped = alice.expect("stopped event", |v| v["event"] == "stopped");
    assert_eq!(stopped["reason"], "end of input", "{stopped}");
    alice.exits_ok("the end of input");

    let got = bob.expect("incoming data", |v| v["event"] == "incoming_data");
    assert_eq!(got["text"], "hi", "{got}");
    bob.expect("disconnected", |v| {
        v["event"] == "direct_connection" && v["status"] == "disconnected"
    });
    bob.quit();
}

#[test]
fn an_over_long_line_is_refused_and_the_host_goes_on() {
    let mut alice = Host::start("alice");
    alice.expect("listening event", |v| v["event"] == "listening");
    // 2 MiB, over the 1 MiB bound: skipped as it is read.
    let long = format!("send bob {}", "x".repeat(2 << 20));
    alice.send(&long);
    let refused = alice.reply("send", "E_INVALIDARG");
    assert_eq!(refused["max_bytes"], 1 << 20, "{refused}");
    assert_eq!(refused["bytes"], long.len() + 1, "{refused}");

    // The next line is a command of its own, and `info` names the graph.
    alice.send("info");
    let info = alice.reply("info", "S_OK");
    assert_eq!(info["graph_id"], "chat", "{info}");
    assert_eq!(info["peer_id"], "alice", "{info}");
    alice.quit();
}
