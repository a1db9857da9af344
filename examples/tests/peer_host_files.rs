//! File transfer between two `peer_host` processes, in `--json` mode: `sendfile` to a
//! host started with `--save-dir`, the SHA-256 checked independently, names never
//! replaced, and transfers cut short (the sender stopped by SIGTERM or killed, the link
//! closed by the receiver, the receiver stopped) ending with `complete: false` and
//! nothing that looks whole in the directory.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use common::{connected_pair_with, connection_event, Host};

/// The size of a file that cannot cross loopback in the moment a test takes to react to
/// its first event: 256 MiB, sparse, so that making it costs nothing.
const BIG: u64 = 256 << 20;

/// The SHA-256 of `bytes` in lowercase hex, computed here, apart from the host.
fn sha256(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `len` pseudo-random bytes (xorshift), the same for the same `seed`.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// A sparse file of `len` zero bytes at `path`.
fn sparse_file(path: &Path, len: u64) {
    let file = fs::File::create(path).expect("create the big file");
    file.set_len(len).expect("size the big file");
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read the save directory")
        .map(|entry| {
            entry
                .expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fn file_received(v: &Value) -> bool {
    v["event"] == "file_received"
}

/// A receiver saving in a new directory, a sender, the connection, and a 256 MiB file
/// whose sending has begun (the receiver printed `file_incoming`).
struct BigTransfer {
    alice: Host,
    bob: Host,
    id: String,
    save: TempDir,
    _source: TempDir,
}

fn big_transfer(alice_args: &[&str], bob_args: &[&str]) -> BigTransfer {
    let save = TempDir::new().expect("a save directory");
    let source = TempDir::new().expect("a source directory");
    let path = source.path().join("big.bin");
    sparse_file(&path, BIG);
    let save_dir = save.path().to_str().expect("a UTF-8 path").to_owned();
    let mut bob_all = vec!["--save-dir", save_dir.as_str()];
    bob_all.extend_from_slice(bob_args);
    let (mut alice, mut bob, id) = connected_pair_with(alice_args, &bob_all);
    alice.send(&format!("sendfile {id} {}", path.display()));
    let incoming = bob.expect("file_incoming", |v| v["event"] == "file_incoming");
    assert_eq!(incoming["connection_id"], id, "{incoming}");
    assert_eq!(incoming["file_name"], "big.bin", "{incoming}");
    assert_eq!(incoming["size"], BIG, "{incoming}");
    assert_eq!(incoming["saving"], true, "{incoming}");
    BigTransfer {
        alice,
        bob,
        id,
        save,
        _source: source,
    }
}

/// The receiver's `file_received` for a cut transfer: incomplete, fewer bytes than the
/// file, a reason, no path or hash; and nothing left in the save directory.
fn assert_incomplete(bob: &mut Host, save: &Path, id: &str) -> Value {
    let received = bob.expect("file_received", file_received);
    assert_eq!(received["connection_id"], id, "{received}");
    assert_eq!(received["complete"], false, "{received}");
    assert_eq!(received["file_name"], "big.bin", "{received}");
    assert_eq!(received["size"], BIG, "{received}");
    assert!(received["path"].is_null(), "{received}");
    assert!(received["sha256"].is_null(), "{received}");
    assert!(received["message"].is_string(), "{received}");
    let bytes = received["bytes"].as_u64().expect("bytes");
    assert!(bytes < BIG, "{received}");
    assert_eq!(names_in(save), Vec::<String>::new(), "files left behind");
    received
}

/// The sender's reply to a `sendfile` cut short: an error, and the bytes sent before.
fn assert_cut_short(alice: &mut Host) -> Value {
    let reply = alice.expect("reply to sendfile", |v| v["reply"] == "sendfile");
    assert_ne!(reply["name"], "S_OK", "{reply}");
    assert!(reply["message"].is_string(), "{reply}");
    let bytes = reply["bytes"].as_u64().expect("bytes sent");
    assert!(bytes < BIG, "{reply}");
    reply
}

#[test]
fn a_file_is_saved_whole_with_its_hash_checked_and_never_replaces_one() {
    let save = TempDir::new().expect("a save directory");
    let source = TempDir::new().expect("a source directory");
    let save_dir = save.path().to_str().expect("a UTF-8 path");
    let (mut alice, mut bob, id) = connected_pair_with(&[], &["--save-dir", save_dir]);

    // Five and a bit MiB of pseudo-random bytes: six chunks.
    let content = random_bytes((5 << 20) + 12_345, 0x9e37_79b9_7f4a_7c15);
    let expected = sha256(&content);
    let path = source.path().join("data.bin");
    fs::write(&path, &content).expect("write the file to send");

    alice.send(&format!("sendfile {id} {}", path.display()));
    let sent = alice.reply("sendfile", "S_OK");
    assert_eq!(sent["bytes"], content.len() as u64, "{sent}");
    assert_eq!(sent["chunks"], 6, "{sent}");
    assert_eq!(sent["file_name"], "data.bin", "{sent}");
    assert_eq!(sent["sha256"], expected.as_str(), "{sent}");

    let incoming = bob.expect("file_incoming", |v| v["event"] == "file_incoming");
    assert_eq!(incoming["sha256"], expected.as_str(), "{incoming}");
    let received = bob.expect("file_received", file_received);
    assert_eq!(received["connection_id"], id, "{received}");
    assert_eq!(received["complete"], true, "{received}");
    assert_eq!(received["bytes"], content.len() as u64, "{received}");
    assert_eq!(received["sha256"], expected.as_str(), "{received}");
    assert!(received.get("message").is_none(), "{received}");
    let saved = PathBuf::from(received["path"].as_str().expect("a path"));
    let canonical = fs::canonicalize(save.path()).expect("the save directory's path");
    assert_eq!(saved, canonical.join("data.bin"));
    assert!(fs::read(&saved).expect("read the saved file") == content);

    // The same name again is saved beside the first, which stays as it was.
    let other = random_bytes(1000, 7);
    fs::write(&path, &other).expect("write the second file");
    alice.send(&format!("sendfile {id} {}", path.display()));
    alice.reply("sendfile", "S_OK");
    let again = bob.expect("file_received", file_received);
    assert_eq!(again["complete"], true, "{again}");
    assert_eq!(again["sha256"], sha256(&other).as_str(), "{again}");
    let second = PathBuf::from(again["path"].as_str().expect("a path"));
    assert_eq!(second, canonical.join("data (1).bin"));
    assert!(fs::read(&second).expect("read the second file") == other);
    assert!(fs::read(&saved).expect("read the first file") == content);

    // An empty file is a file too.
    let empty = source.path().join("empty.txt");
    fs::write(&empty, b"").expect("write an empty file");
    alice.send(&format!("sendfile {id} {}", empty.display()));
    let sent = alice.reply("sendfile", "S_OK");
    assert_eq!(sent["bytes"], 0, "{sent}");
    let received = bob.expect("file_received", file_received);
    assert_eq!(received["complete"], true, "{received}");
    assert_eq!(received["bytes"], 0, "{received}");
    assert_eq!(received["sha256"], sha256(b"").as_str(), "{received}");

    // Chunks of saved files are not printed one by one, and no partial file is left.
    assert_eq!(
        names_in(save.path()),
        ["data (1).bin", "data.bin", "empty.txt"]
    );
    bob.send("enum");
    bob.reply("enum", "S_OK");
    assert!(
        !bob.unclaimed()
            .iter()
            .any(|v| v["event"] == "incoming_data"),
        "chunk lines while saving: {:?}",
        bob.unclaimed()
    );

    // Without --save-dir a file is checked and counted, not kept.
    let back = source.path().join("back.txt");
    fs::write(&back, b"hello alice").expect("write a file for alice");
    bob.send(&format!("sendfile {id} {}", back.display()));
    bob.reply("sendfile", "S_OK");
    let chunk = alice.expect("a file chunk", |v| v["kind"] == "file_chunk");
    assert_eq!(chunk["bytes"], 11, "{chunk}");
    let received = alice.expect("file_received", file_received);
    assert_eq!(received["complete"], true, "{received}");
    assert!(received["path"].is_null(), "{received}");
    assert_eq!(
        received["sha256"],
        sha256(b"hello alice").as_str(),
        "{received}"
    );

    alice.quit();
    bob.quit();
}

#[test]
fn a_sender_stopped_by_sigterm_answers_and_the_receiver_keeps_nothing() {
    let BigTransfer {
        mut alice,
        mut bob,
        id,
        save,
        ..
    } = big_transfer(&[], &[]);
    alice.signal("-TERM");
    let reply = assert_cut_short(&mut alice);
    assert_eq!(reply["name"], "E_FAIL", "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .is_some_and(|m| m.contains("interrupted")),
        "{reply}"
    );
    let stopped = alice.expect("stopped event", |v| v["event"] == "stopped");
    assert_eq!(stopped["reason"], "terminated", "{stopped}");
    alice.exits_ok("SIGTERM");
    assert_incomplete(&mut bob, save.path(), &id);
    bob.quit();
}

#[test]
fn a_link_closed_by_the_receiver_ends_both_sides() {
    let BigTransfer {
        mut alice,
        mut bob,
        id,
        save,
        ..
    } = big_transfer(&[], &[]);
    bob.send(&format!("close {id}"));
    bob.reply("close", "S_OK");
    let received = assert_incomplete(&mut bob, save.path(), &id);
    assert!(
        received["message"]
            .as_str()
            .is_some_and(|m| m.contains("closed")),
        "{received}"
    );
    assert_cut_short(&mut alice);
    alice.quit();
    bob.quit();
}

#[test]
fn a_receiver_stopped_by_sigterm_reports_the_file_incomplete() {
    let BigTransfer {
        mut alice,
        mut bob,
        id,
        save,
        ..
    } = big_transfer(&[], &[]);
    bob.signal("-TERM");
    assert_incomplete(&mut bob, save.path(), &id);
    let stopped = bob.expect("stopped event", |v| v["event"] == "stopped");
    assert_eq!(stopped["reason"], "terminated", "{stopped}");
    bob.exits_ok("SIGTERM");
    assert_cut_short(&mut alice);
    alice.quit();
}

#[test]
fn a_killed_sender_leaves_an_incomplete_file_and_nothing_on_disk() {
    // A short idle timeout: a killed process says nothing, so its peer learns of it
    // when the link goes quiet.
    let BigTransfer {
        mut alice,
        mut bob,
        id,
        save,
        ..
    } = big_transfer(&["--idle-timeout", "1"], &["--idle-timeout", "1"]);
    alice.child.kill().expect("kill the sender");
    let _ = alice.child.wait();
    bob.expect_within(
        Duration::from_secs(10),
        "disconnected after the sender died",
        connection_event("disconnected", &id),
    );
    assert_incomplete(&mut bob, save.path(), &id);
    bob.quit();
}
