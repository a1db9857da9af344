//! The harness of the `peer_host` process tests: a host run as a child process in
//! `--json` mode, read line by line with timeouts, killed when dropped.

#![allow(dead_code)] // each test file uses its own part of the harness

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The longest wait for one expected line. On loopback everything comes within
/// milliseconds; the bound turns a hang into a failure that names what was missing.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(30);

/// One running peer host. Dropping it kills the process if it still runs, so a failing
/// test leaves nothing behind.
pub struct Host {
    pub name: &'static str,
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// Lines read but not yet wanted by any `expect`. Events print as they happen, beside
    /// the replies, so the order of the two is not fixed: a close's DISCONNECTED event can
    /// come before or after the close's reply.
    unclaimed: Vec<Value>,
    /// Every line read so far, for failure messages.
    transcript: Vec<String>,
}

impl Host {
    /// A host of graph `chat` that listens on loopback and accepts direct connections.
    pub fn start(name: &'static str) -> Host {
        Host::start_with(name, &[])
    }

    /// A host as [`Host::start`] makes it, with `more` arguments.
    pub fn start_with(name: &'static str, more: &[&str]) -> Host {
        let mut args = vec![
            "--graph",
            "chat",
            "--peer",
            name,
            "--listen",
            "127.0.0.1:0",
            "--accept-direct",
            "--json",
        ];
        args.extend_from_slice(more);
        Host::spawn(name, &args)
    }

    /// A host run with `args`.
    pub fn spawn(name: &'static str, args: &[&str]) -> Host {
        let mut child = Command::new(env!("CARGO_BIN_EXE_peer_host"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn peer_host");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stdin = child.stdin.take();
        // A reader thread turns the blocking pipe into a channel that can be read with a
        // timeout; it ends when the process closes its output.
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Host {
            name,
            child,
            stdin,
            lines,
            unclaimed: Vec::new(),
            transcript: Vec::new(),
        }
    }

    pub fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{command}").expect("write a command");
        stdin.flush().expect("flush");
    }

    /// The first line not yet claimed that satisfies `wanted`, waiting for it if needed;
    /// others are kept for later calls. Every line must be one JSON object.
    pub fn expect(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        self.expect_within(LINE_TIMEOUT, what, wanted)
    }

    /// As [`Host::expect`], waiting at most `limit`.
    pub fn expect_within(
        &mut self,
        limit: Duration,
        what: &str,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(index) = self.unclaimed.iter().position(&wanted) {
            return self.unclaimed.remove(index);
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(error) => panic!(
                    "{}: no {what} ({error:?}); its output so far:\n{}",
                    self.name,
                    self.transcript.join("\n")
                ),
            };
            self.transcript.push(line.clone());
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|error| panic!("{}: not JSON ({error}): {line}", self.name));
            assert!(value.is_object(), "{}: not an object: {line}", self.name);
            if wanted(&value) {
                return value;
            }
            self.unclaimed.push(value);
        }
    }

    /// The lines read so far that no `expect` claimed yet.
    pub fn unclaimed(&self) -> &[Value] {
        &self.unclaimed
    }

    /// The reply to `command`; checks that it carries `name` and its hr.
    pub fn reply(&mut self, command: &str, name: &str) -> Value {
        let reply = self.expect(&format!("reply to {command}"), |v| v["reply"] == command);
        assert_eq!(reply["name"], name, "{}: {reply}", self.name);
        let hr = reply["hr"].as_str().expect("hr is a string");
        assert!(
            hr.len() == 10 && hr.starts_with("0x"),
            "{}: hr {hr}",
            self.name
        );
        reply
    }

    /// Sends `quit` and waits (bounded) for the process to exit with status 0.
    pub fn quit(&mut self) {
        self.send("quit");
        self.reply("quit", "S_OK");
        self.exits_ok("quit");
    }

    /// Waits (bounded) for the process to exit with status 0 with no more output, after
    /// `what`.
    pub fn exits_ok(&mut self, what: &str) {
        self.stdin.take();
        // The reader thread hangs up when the process closes its output, at exit.
        match self.lines.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => panic!("{}: a line after {what}: {line}", self.name),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("{}: still running after {what}", self.name)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "{}: exit status {status}", self.name);
    }

    /// Sends the process `signal` (such as `-TERM`) with kill(1).
    pub fn signal(&mut self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal}: {status}");
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn connection_event<'a>(status: &'a str, id: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |v| v["event"] == "direct_connection" && v["status"] == status && v["connection_id"] == id
}

/// The `connection_id` of a reply or event: a JSON string in the library's text form,
/// `0x` and 16 hex digits (a JSON number would lose digits in jq or JavaScript).
pub fn connection_id(value: &Value) -> String {
    let id = value["connection_id"]
        .as_str()
        .unwrap_or_else(|| panic!("connection_id is not a string: {value}"));
    assert!(
        id.len() == 18 && id.starts_with("0x") && id[2..].bytes().all(|b| b.is_ascii_hexdigit()),
        "connection_id {id}"
    );
    id.to_owned()
}

/// Alice opens a connection to bob; answers the two hosts and the connection's id, once
/// both ends saw it connected.
pub fn connected_pair() -> (Host, Host, String) {
    connected_pair_with(&[], &[])
}

/// [`connected_pair`] with more arguments for each host.
pub fn connected_pair_with(alice_args: &[&str], bob_args: &[&str]) -> (Host, Host, String) {
    let mut alice = Host::start_with("alice", alice_args);
    let mut bob = Host::start_with("bob", bob_args);
    let listening = |v: &Value| v["event"] == "listening";
    alice.expect("listening event", listening);
    let bob_start = bob.expect("listening event", listening);
    let bob_address = bob_start["addr"].as_str().expect("addr").to_owned();
    alice.send(&format!("open bob {bob_address}"));
    let id = connection_id(&alice.reply("open", "S_OK"));
    alice.expect("connected", connection_event("connected", &id));
    bob.expect("connected", connection_event("connected", &id));
    (alice, bob, id)
}
