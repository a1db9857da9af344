//! Tickets, key pinning and host names, end to end with `peer_host` processes in `--json`
//! mode: `info` prints a ticket, `open TICKET` connects and refuses a node whose key
//! differs, `--allow-peer TICKET` admits only the listed keys, and `localhost:PORT`
//! resolves.

mod common;

use common::*;
use peergraph::{NodeIdentity, PeerId, Ticket};
use serde_json::Value;

fn listening(value: &Value) -> bool {
    value["event"] == "listening"
}

/// A JSON string field, or a failure naming it.
fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field}: {value}"))
}

/// The connections `enum` lists.
fn connections(host: &mut Host) -> Vec<Value> {
    host.send("enum");
    let reply = host.reply("enum", "S_OK");
    reply["connections"]
        .as_array()
        .expect("a connections array")
        .clone()
}

#[test]
fn info_prints_a_ticket_that_open_connects_with() {
    let mut alice = Host::start("alice");
    let mut bob = Host::start("bob");
    alice.expect("listening event", listening);
    let bob_start = bob.expect("listening event", listening);
    bob.send("info");
    let info = bob.reply("info", "S_OK");
    let ticket = text(&info, "ticket").to_owned();
    assert!(ticket.starts_with("pg1"), "{ticket}");
    // The ticket at start and the one of `info` are the same.
    assert_eq!(text(&bob_start, "ticket"), ticket);
    let parsed: Ticket = ticket.parse().expect("the ticket parses");
    assert_eq!(parsed.peer_id().as_str(), "bob");
    assert_eq!(parsed.node_id().to_string(), text(&info, "node_id"));
    let bob_address = text(&bob_start, "addr");
    assert_eq!(
        parsed
            .addresses()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec![bob_address.to_owned()]
    );

    alice.send(&format!("open {ticket}"));
    let reply = alice.reply("open", "S_OK");
    assert_eq!(reply["peer_id"], "bob");
    assert_eq!(reply["node_id"], info["node_id"]);
    let id = connection_id(&reply);
    let connected = alice.expect("connected", connection_event("connected", &id));
    assert_eq!(connected["node_id"], info["node_id"]);
    bob.expect("connected", connection_event("connected", &id));
    alice.send("send bob hello by ticket");
    alice.reply("send", "S_OK");
    let received = bob.expect("the text", |v| v["event"] == "incoming_data");
    assert_eq!(received["text"], "hello by ticket");

    // A damaged ticket is answered, not tried.
    let mut damaged = ticket.clone().into_bytes();
    let last = damaged.len() - 2;
    damaged[last] = if damaged[last] == b'a' { b'b' } else { b'a' };
    let damaged = String::from_utf8(damaged).expect("ascii");
    alice.send(&format!("open {damaged}"));
    let refused = alice.reply("open", "E_INVALIDARG");
    assert!(
        text(&refused, "message").contains("is not a ticket"),
        "{refused}"
    );
    alice.quit();
    bob.quit();
}

#[test]
fn a_ticket_whose_key_is_not_the_nodes_is_refused() {
    let mut alice = Host::start("alice");
    let mut bob = Host::start("bob");
    alice.expect("listening event", listening);
    let bob_start = bob.expect("listening event", listening);
    let bob_node = text(&bob_start, "node_id").to_owned();
    // Carol's key, with bob's peer id and address: whoever answers there is not carol.
    let carol_key = NodeIdentity::generate().expect("identity").peer_key();
    let forged = Ticket::new(
        PeerId::new("bob").expect("peer id"),
        carol_key,
        vec![text(&bob_start, "addr").parse().expect("address")],
    )
    .expect("ticket");
    alice.send(&format!("open {forged}"));
    let id = connection_id(&alice.reply("open", "S_OK"));
    let failed = alice.expect(
        "connection failed",
        connection_event("connection_failed", &id),
    );
    assert_eq!(
        failed["name"], "PEER_E_CONNECTION_NOT_AUTHENTICATED",
        "{failed}"
    );
    let message = text(&failed, "message");
    assert!(message.contains("node key mismatch"), "{message}");
    assert!(
        message.contains(&carol_key.node_id().to_string()),
        "{message}"
    );
    assert!(message.contains(&bob_node), "{message}");
    // Alice left before CONNECT: bob never had a connection.
    assert!(connections(&mut bob).is_empty());
    assert!(connections(&mut alice).is_empty());
    alice.quit();
    bob.quit();
}

#[test]
fn allow_peer_admits_the_listed_ticket_and_refuses_other_keys() {
    let mut alice = Host::start("alice");
    let alice_ticket = text(&alice.expect("listening event", listening), "ticket").to_owned();
    let mut bob = Host::start_with("bob", &["--allow-peer", &alice_ticket]);
    let allowed = bob.expect("the allow-list", |v| v["event"] == "allow_list");
    assert_eq!(allowed["allowed"][0]["peer_id"], "alice");
    let bob_start = bob.expect("listening event", listening);
    let bob_ticket = text(&bob_start, "ticket").to_owned();
    let bob_address = text(&bob_start, "addr").to_owned();

    alice.send(&format!("open {bob_ticket}"));
    let id = connection_id(&alice.reply("open", "S_OK"));
    alice.expect("connected", connection_event("connected", &id));
    bob.expect("connected", connection_event("connected", &id));

    let mut carol = Host::start("carol");
    carol.expect("listening event", listening);
    carol.send(&format!("open bob {bob_address}"));
    let refused_id = connection_id(&carol.reply("open", "S_OK"));
    let failed = carol.expect(
        "connection failed",
        connection_event("connection_failed", &refused_id),
    );
    assert_eq!(failed["name"], "PEER_E_NOT_AUTHORIZED", "{failed}");
    assert!(text(&failed, "message").contains("allow-list"), "{failed}");
    // Bob holds alice's connection only.
    let listed = connections(&mut bob);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["peer_id"], "alice");
    carol.quit();
    alice.quit();
    bob.quit();
}

#[test]
fn host_names_resolve_and_a_bad_one_says_why() {
    let mut bob = Host::spawn(
        "bob",
        &[
            "--graph",
            "chat",
            "--peer",
            "bob",
            "--listen",
            "localhost:0",
            "--accept-direct",
            "--json",
        ],
    );
    let bob_start = bob.expect("listening event", listening);
    let bob_address: std::net::SocketAddr = text(&bob_start, "addr").parse().expect("address");
    assert!(bob_address.ip().is_loopback(), "{bob_address}");
    let mut alice = Host::start("alice");
    alice.expect("listening event", listening);

    alice.send(&format!("open bob localhost:{}", bob_address.port()));
    let reply = alice.reply("open", "S_OK");
    assert_eq!(reply["target"], format!("localhost:{}", bob_address.port()));
    let id = connection_id(&reply);
    alice.expect("connected", connection_event("connected", &id));
    bob.expect("connected", connection_event("connected", &id));

    // `.invalid` never resolves (RFC 2606).
    alice.send("open bob nowhere.invalid:4000");
    let refused = alice.reply("open", "PEER_E_INVALID_ADDRESS");
    assert!(
        text(&refused, "message").contains("cannot resolve nowhere.invalid"),
        "{refused}"
    );
    // The failed open left the first connection alone.
    assert_eq!(connections(&mut alice).len(), 1);
    alice.quit();
    bob.quit();
}

#[test]
fn a_listen_name_that_does_not_resolve_stops_the_host() {
    let mut host = Host::spawn(
        "nowhere",
        &[
            "--graph",
            "chat",
            "--peer",
            "nowhere",
            "--listen",
            "nowhere.invalid:0",
            "--json",
        ],
    );
    let fatal = host.expect("fatal", |v| v["event"] == "fatal");
    assert_eq!(fatal["name"], "PEER_E_INVALID_ADDRESS", "{fatal}");
    assert!(
        text(&fatal, "message").contains("nowhere.invalid"),
        "{fatal}"
    );
    host.stdin.take();
    let status = host.child.wait().expect("wait");
    assert!(!status.success());
}

#[test]
fn open_tries_a_tickets_addresses_in_turn_until_the_key_matches() {
    let mut alice = Host::start("alice");
    let mut bob = Host::start("bob");
    let mut carol = Host::start("carol");
    alice.expect("listening event", listening);
    let bob_ticket: Ticket = text(&bob.expect("listening event", listening), "ticket")
        .parse()
        .expect("bob's ticket");
    let carol_start = carol.expect("listening event", listening);
    let carol_address = text(&carol_start, "addr").parse().expect("address");
    // Bob's ticket, with carol's address first: carol answers there with her key.
    let mut addresses = vec![carol_address];
    addresses.extend_from_slice(bob_ticket.addresses());
    let ticket =
        Ticket::new(bob_ticket.peer_id().clone(), *bob_ticket.key(), addresses).expect("ticket");
    alice.send(&format!("open {ticket}"));
    let mismatch = alice.expect("the first address refused", |v| {
        v["event"] == "direct_connection" && v["status"] == "connection_failed"
    });
    assert_eq!(mismatch["name"], "PEER_E_CONNECTION_NOT_AUTHENTICATED");
    assert!(text(&mismatch, "message").contains("node key mismatch"));
    let reply = alice.reply("open", "S_OK");
    assert_eq!(reply["addr"], bob_ticket.addresses()[0].to_string());
    let id = connection_id(&reply);
    alice.expect("connected", connection_event("connected", &id));
    bob.expect("connected", connection_event("connected", &id));
    assert!(connections(&mut carol).is_empty());
    for host in [&mut alice, &mut bob, &mut carol] {
        host.quit();
    }
}
