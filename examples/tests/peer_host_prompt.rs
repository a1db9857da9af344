//! `peer_host` on a terminal: the prompt, its history and line editing, events printed
//! around the line being typed, Ctrl-C and Ctrl-D. The host runs in a tmux pane (a real
//! pseudo-terminal) on a tmux server of the test's own; keys go in with `send-keys`, and
//! the screen is read back with `capture-pane`.
//! And `--congestion`, which `info` reports.
//!
//! A terminal sends no event when it changes, so the tests poll the pane, every
//! [`POLL`], each wait bounded by [`PANE_TIMEOUT`]. Without tmux on the machine the tests
//! print a note and pass.

mod common;

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{connection_event, connection_id, Host};

/// The longest wait for the pane to show something.
const PANE_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a wait reads the pane again.
const POLL: Duration = Duration::from_millis(50);

/// The prompt the host shows.
const PROMPT: &str = "peer_host> ";

/// A host running in a pane of a tmux server of its own (killed when dropped).
struct Pane {
    socket: String,
}

impl Pane {
    /// Starts `peer_host` with `args` in a new pane; `None` when tmux is not installed.
    /// When the host exits, the pane shows `exit status N` and the terminal's mode
    /// (`stty -a`), and stays (a bounded while).
    fn start(args: &[&str]) -> Option<Pane> {
        static SERVERS: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "peer_host_prompt_{}_{}",
            std::process::id(),
            SERVERS.fetch_add(1, Ordering::Relaxed)
        );
        let command = format!(
            "RUST_LOG=warn {} {}; echo \"exit status $?\"; stty -a; sleep 120",
            env!("CARGO_BIN_EXE_peer_host"),
            args.join(" ")
        );
        let started = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", "200", "-y", "50", &command])
            .output();
        match started {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                println!("tmux is not installed: the prompt is not tested");
                None
            }
            Err(error) => panic!("cannot run tmux: {error}"),
            Ok(output) => {
                succeeded("tmux new-session", &output);
                Some(Pane { socket })
            }
        }
    }

    /// The host's process id: the child of the pane's shell.
    fn host_pid(&self) -> u32 {
        let output = Command::new("tmux")
            .args(["-L", &self.socket, "display-message", "-p", "-t", "0"])
            .arg("#{pane_pid}")
            .output()
            .expect("run tmux display-message");
        succeeded("tmux display-message", &output);
        let shell = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
            .expect("the pane's shell lists its children");
        children
            .split_whitespace()
            .next()
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("the pane's shell {shell} runs no host"))
    }

    /// Types `keys`, in tmux's key names (`Enter`, `Up`, `C-d`) or as text (`-l`).
    fn keys(&self, keys: &[&str]) {
        let output = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "0"])
            .args(keys)
            .output()
            .expect("run tmux send-keys");
        succeeded("tmux send-keys", &output);
    }

    /// Types `text` literally, then Enter.
    fn line(&self, text: &str) {
        self.keys(&["-l", text]);
        self.keys(&["Enter"]);
    }

    /// The pane's screen, and the lines that scrolled off it.
    fn screen(&self) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-J", "-S", "-"])
            .args(["-t", "0"])
            .output()
            .expect("run tmux capture-pane");
        succeeded("tmux capture-pane", &output);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits (bounded) until the screen satisfies `wanted`, and returns it.
    fn wait(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PANE_TIMEOUT;
        loop {
            let screen = self.screen();
            if wanted(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} on the pane; it shows:\n{screen}"
            );
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

fn succeeded(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what}: {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Lines of `screen` that start with `tag` (a reply's or an event's first column).
fn rows<'a>(screen: &'a str, tag: &str) -> Vec<&'a str> {
    screen
        .lines()
        .filter(|line| line.split_whitespace().next() == Some(tag))
        .collect()
}

/// The lines of `screen` that answer `info` (its first line names the graph).
fn info_replies(screen: &str) -> usize {
    rows(screen, "info")
        .iter()
        .filter(|line| line.contains("graph chat"))
        .count()
}

const ARGS: &[&str] = &[
    "--graph",
    "chat",
    "--peer",
    "carol",
    "--listen",
    "127.0.0.1:0",
    "--accept-direct",
];

#[test]
fn the_prompt_keeps_a_history_and_ctrl_d_ends_the_input() {
    let Some(pane) = Pane::start(ARGS) else {
        return;
    };
    pane.wait("prompt", |screen| screen.contains(PROMPT));
    pane.line("info");
    pane.wait("info reply", |screen| info_replies(screen) == 1);
    // The Up arrow recalls `info`, rather than sending its escape sequence as a line.
    pane.keys(&["Up"]);
    pane.keys(&["Enter"]);
    let screen = pane.wait("second info reply", |screen| info_replies(screen) == 2);
    assert!(
        !screen.contains("unknown command"),
        "an arrow key was taken as a command:\n{screen}"
    );
    assert!(
        screen.contains("congestion "),
        "info names the congestion controller:\n{screen}"
    );
    // Line editing: Backspace mends a typo before Enter.
    pane.keys(&["-l", "enumx"]);
    pane.keys(&["BSpace"]);
    pane.keys(&["Enter"]);
    pane.wait("enum reply", |screen| !rows(screen, "enum").is_empty());
    let screen = pane.screen();
    assert!(!screen.contains("unknown command"), "{screen}");

    // Ctrl-D on an empty line: the end of input, a graceful stop, exit code 0.
    pane.keys(&["C-d"]);
    let screen = pane.wait("exit", |screen| screen.contains("exit status"));
    assert!(screen.contains("end of input"), "{screen}");
    assert!(screen.contains("exit status 0"), "{screen}");
}

#[test]
fn ctrl_c_at_the_prompt_stops_the_host_like_sigint() {
    let Some(pane) = Pane::start(ARGS) else {
        return;
    };
    pane.wait("prompt", |screen| screen.contains(PROMPT));
    pane.keys(&["-l", "half a line"]);
    pane.keys(&["C-c"]);
    let screen = pane.wait("exit", |screen| screen.contains("exit status"));
    assert!(screen.contains("stopped"), "{screen}");
    assert!(screen.contains("interrupted"), "{screen}");
    assert!(screen.contains("exit status 0"), "{screen}");
    // The half line was not run.
    assert!(!screen.contains("unknown command"), "{screen}");
}

#[test]
fn events_print_above_the_line_being_typed() {
    let Some(pane) = Pane::start(ARGS) else {
        return;
    };
    let screen = pane.wait("listening address", |screen| {
        screen.contains(PROMPT) && !rows(screen, "listening").is_empty()
    });
    let listening = rows(&screen, "listening")[0];
    let address = listening
        .split_whitespace()
        .nth(1)
        .expect("the address follows the tag")
        .to_owned();

    // A line half typed when a peer connects.
    pane.keys(&["-l", "inf"]);
    pane.wait("typed text", |screen| screen.contains("peer_host> inf"));
    let mut alice = Host::start("alice");
    alice.send(&format!("open carol {address}"));
    let id = connection_id(&alice.reply("open", "S_OK"));
    alice.expect("connected", connection_event("connected", &id));
    let screen = pane.wait("connected event", |screen| {
        !rows(screen, "connected").is_empty()
    });
    // The event is printed above the prompt, which is drawn again with the half line.
    let last = screen
        .lines()
        .rfind(|line| !line.trim().is_empty())
        .expect("a non-empty line");
    assert_eq!(last.trim_end(), "peer_host> inf", "{screen}");
    pane.keys(&["-l", "o"]);
    pane.keys(&["Enter"]);
    pane.wait("info reply", |screen| info_replies(screen) == 1);

    alice.quit();
    pane.wait("disconnected", |screen| {
        !rows(screen, "disconnected").is_empty()
    });
    pane.line("quit");
    let screen = pane.wait("exit", |screen| screen.contains("exit status"));
    assert!(screen.contains("exit status 0"), "{screen}");
}

#[test]
fn a_signal_at_the_prompt_leaves_the_terminal_as_it_was() {
    let Some(pane) = Pane::start(ARGS) else {
        return;
    };
    pane.wait("prompt", |screen| screen.contains(PROMPT));
    pane.keys(&["-l", "half"]);
    pane.wait("typed text", |screen| screen.contains("peer_host> half"));
    // The line editor holds the terminal in raw mode while the prompt is shown.
    let status = Command::new("kill")
        .args(["-TERM", &pane.host_pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill: {status}");
    let screen = pane.wait("terminal mode", |screen| screen.contains("icanon"));
    assert!(screen.contains("terminated"), "{screen}");
    assert!(screen.contains("exit status 0"), "{screen}");
    // Canonical mode and echo are back for the shell.
    let words: Vec<&str> = screen.split_whitespace().collect();
    assert!(words.contains(&"icanon"), "{screen}");
    assert!(words.contains(&"echo"), "{screen}");
    assert!(!words.contains(&"-icanon"), "{screen}");
}

#[test]
fn sendfile_at_the_prompt_is_answered_before_the_prompt_comes_back() {
    let Some(pane) = Pane::start(ARGS) else {
        return;
    };
    let file = tempfile::NamedTempFile::new().expect("temporary file");
    let len = 3 * 1024 * 1024 + 17;
    std::fs::write(file.path(), vec![0x42u8; len]).expect("write the file");
    let mut bob = Host::start("bob");
    let started = bob.expect("listening event", |v| v["event"] == "listening");
    let address = started["addr"].as_str().expect("addr").to_owned();
    pane.wait("prompt", |screen| screen.contains(PROMPT));
    pane.line(&format!("open bob {address}"));
    pane.wait("connected", |screen| !rows(screen, "connected").is_empty());
    pane.line(&format!("sendfile bob {}", file.path().display()));
    let screen = pane.wait("sendfile reply and the prompt", |screen| {
        let last = screen.lines().rfind(|line| !line.trim().is_empty());
        !rows(screen, "sendfile").is_empty() && last.map(str::trim_end) == Some("peer_host>")
    });
    assert!(
        rows(&screen, "sendfile")
            .iter()
            .any(|line| line.contains("S_OK") && line.contains(&format!("({len} bytes)"))),
        "{screen}"
    );
    bob.expect("the whole file", |v| {
        v["event"] == "incoming_data" && v["total_bytes"] == len as u64
    });
    pane.keys(&["C-d"]);
    let screen = pane.wait("exit", |screen| screen.contains("exit status"));
    assert!(screen.contains("exit status 0"), "{screen}");
    bob.quit();
}

#[test]
fn info_names_the_congestion_controller_bbr_unless_told() {
    let mut default = Host::start("alice");
    default.send("info");
    assert_eq!(default.reply("info", "S_OK")["congestion"], "bbr");
    default.quit();
    let mut cubic = Host::start_with("bob", &["--congestion", "cubic"]);
    cubic.send("info");
    assert_eq!(cubic.reply("info", "S_OK")["congestion"], "cubic");
    cubic.quit();
}
