//! Where the command loop's lines come from: standard input read line by line (a pipe, a
//! file, or `--json`), or, when standard input and standard output are both terminals,
//! a prompt with line editing and history.
//!
//! ```text
//!  thread "prompt": readline("peer_host> ") ──Input──▶ command loop ──▶ Host::execute
//!        ▲                                                 │
//!        └──────────────── turn: the reply is printed ◀────┘
//! ```
//!
//! The prompt comes back once the command is answered, as in a shell: a long `sendfile`
//! draws its progress bar with no prompt below it. Lines printed while the prompt is
//! shown (events) go through the line editor's printer, above the line being typed.
//! Ctrl-C at the prompt stops the host as SIGINT does (gracefully, exit code 0): the host
//! is a daemon, and its Ctrl-C means stop; Ctrl-U clears the line instead. Ctrl-D on an
//! empty line is the end of input. History lives in memory only, [`HISTORY_LEN`] lines.

use std::io::{self, IsTerminal as _, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as sync_mpsc, Arc};

use anyhow::{Context as _, Result};
use nix::sys::termios::{self, SetArg, Termios};
use rustyline::config::Config;
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;
use tokio::sync::mpsc;

use super::output::Output;
use super::{Input, MAX_LINE_LEN};

/// The prompt.
pub const PROMPT: &str = "peer_host> ";

/// How many lines the prompt's history keeps (in memory; none is written to disk).
pub const HISTORY_LEN: usize = 1000;

/// True when the host reads its commands at a prompt: text output, and both standard
/// input and standard output are terminals.
pub(crate) fn wanted(json: bool) -> bool {
    !json && io::stdin().is_terminal() && io::stdout().is_terminal()
}

/// The command loop's source of lines.
pub(crate) struct Lines {
    receiver: mpsc::Receiver<Input>,
    prompt: Option<Prompt>,
    /// A line was handed out and not yet answered.
    unanswered: bool,
}

/// The parts of a running prompt the command loop holds.
struct Prompt {
    /// One message per answered line: the prompt may come back.
    turn: sync_mpsc::SyncSender<()>,
    /// True while the line editor has the terminal in raw mode, waiting for a line.
    showing: Arc<AtomicBool>,
    /// The terminal's mode before the prompt, put back if the host stops while the
    /// prompt is shown (the line editor would restore it only when its line ends).
    saved: Option<Termios>,
    out: Arc<Output>,
}

impl Lines {
    /// Lines read from standard input by `receiver`'s sender, without a prompt.
    pub(crate) fn piped(receiver: mpsc::Receiver<Input>) -> Self {
        Lines {
            receiver,
            prompt: None,
            unanswered: false,
        }
    }

    /// Lines typed at the prompt, on a thread of its own; `out` prints through the line
    /// editor until [`Lines::close`].
    pub(crate) fn prompt(out: Arc<Output>) -> Result<Self> {
        let config = Config::builder()
            .max_history_size(HISTORY_LEN)
            .context("the prompt's history size")?
            .auto_add_history(false)
            .build();
        let mut editor = DefaultEditor::with_config(config).context("cannot start the prompt")?;
        // Fails on a terminal the editor does not support (TERM=dumb): no prompt then.
        let printer = editor
            .create_external_printer()
            .context("cannot print around the prompt")?;
        let saved = termios::tcgetattr(io::stdin()).ok();
        // One line at a time: the prompt waits for the command loop to take each.
        let (sender, receiver) = mpsc::channel(1);
        let (turn, turns) = sync_mpsc::sync_channel(1);
        let showing = Arc::new(AtomicBool::new(false));
        let flag = showing.clone();
        std::thread::Builder::new()
            .name("prompt".into())
            .spawn(move || read_lines(editor, &sender, &turns, &flag))
            .context("cannot start the thread of the prompt")?;
        out.attach_printer(Box::new(printer));
        Ok(Lines {
            receiver,
            prompt: Some(Prompt {
                turn,
                showing,
                saved,
                out,
            }),
            unanswered: false,
        })
    }

    /// The next line; `None` at the end of input.
    pub(crate) async fn recv(&mut self) -> Option<Input> {
        let input = self.receiver.recv().await;
        self.unanswered = input.is_some();
        input
    }

    /// Tells the prompt that the last line was answered (if there was one), so that it
    /// shows again.
    pub(crate) fn answered(&mut self) {
        if let (Some(prompt), true) = (&self.prompt, self.unanswered) {
            // The prompt waits for exactly this one turn: the channel has room.
            let _ = prompt.turn.try_send(());
        }
        self.unanswered = false;
    }

    /// Ends the prompt: later lines are printed directly, and a terminal left in raw
    /// mode by a prompt still shown (the host stopped on a signal) is put back as it was.
    pub(crate) fn close(&mut self) {
        let Some(prompt) = self.prompt.take() else {
            return;
        };
        prompt.out.detach_printer();
        if prompt.showing.load(Ordering::SeqCst) {
            if let Some(saved) = &prompt.saved {
                if let Err(error) = termios::tcsetattr(io::stdin(), SetArg::TCSANOW, saved) {
                    tracing::warn!(%error, "cannot restore the terminal's mode");
                }
            }
            // The next line starts below the abandoned prompt.
            let mut stdout = io::stdout().lock();
            let _ = stdout.write_all(b"\n").and_then(|()| stdout.flush());
        }
        self.receiver.close();
    }
}

/// The prompt's thread: reads a line, hands it over, waits for its answer, and again,
/// until the end of input (Ctrl-D), Ctrl-C, or the command loop's end.
fn read_lines(
    mut editor: DefaultEditor,
    sender: &mpsc::Sender<Input>,
    turns: &sync_mpsc::Receiver<()>,
    showing: &AtomicBool,
) {
    loop {
        showing.store(true, Ordering::SeqCst);
        let read = editor.readline(PROMPT);
        showing.store(false, Ordering::SeqCst);
        let input = match read {
            Ok(line) => typed(&mut editor, line),
            Err(ReadlineError::Interrupted) => Input::Interrupted,
            Err(ReadlineError::Eof) => break,
            Err(error) => {
                tracing::warn!(%error, "reading the prompt");
                break;
            }
        };
        let last = matches!(input, Input::Interrupted);
        if sender.blocking_send(input).is_err() || last || turns.recv().is_err() {
            break;
        }
    }
}

/// A line typed at the prompt, as the command loop takes it: refused if longer than
/// [`MAX_LINE_LEN`] (like a line on a pipe), and kept in the history otherwise.
fn typed(editor: &mut DefaultEditor, line: String) -> Input {
    if line.len() > MAX_LINE_LEN {
        let command = line
            .split_whitespace()
            .next()
            .unwrap_or("line")
            .chars()
            .take(64)
            .collect();
        return Input::TooLong {
            bytes: line.len() as u64,
            command,
        };
    }
    if !line.trim().is_empty() {
        if let Err(error) = editor.add_history_entry(line.as_str()) {
            tracing::debug!(%error, "the prompt's history");
        }
    }
    Input::Line(line)
}
