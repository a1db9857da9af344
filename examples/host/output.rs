//! Everything the host prints on standard output: one line per event or reply, either as
//! aligned text for people or as one JSON object per line (`--json`), and the progress bar
//! of a running `sendfile` or of a file being received, which other lines are printed
//! around. One bar shows at a time: a transfer that starts while another's bar shows goes
//! without one. While the prompt is shown on a terminal, lines go through the line
//! editor, which prints them above the line being typed.

use std::io::{self, IsTerminal as _, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use peergraph::{GraphStatus, ResultCode};
use rustyline::ExternalPrinter;

use super::json::Object;

/// Width of the first column of a human-readable line: the command a reply answers or
/// the event that happened ("not listening" is the longest). A space follows it.
const TAG_WIDTH: usize = 13;

/// The host's standard output. Shared by the command loop and the event printer; each
/// line is written whole, so lines from the two never mix.
pub(crate) struct Output {
    json: bool,
    /// The bar on the screen, with the token its owner hides it by.
    bar: Mutex<Option<(BarToken, ProgressBar)>>,
    next_token: AtomicU64,
    /// Where lines go instead of standard output, in unit tests that read them back.
    captured: Option<Mutex<Vec<String>>>,
    /// The line editor's printer, while the prompt runs: it clears the line being typed,
    /// prints, and draws the prompt and the line again.
    printer: Mutex<Option<Box<dyn ExternalPrinter + Send>>>,
}

/// Names the progress bar [`Output::bar`] put on the screen, so that its owner
/// removes its own bar and no other.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct BarToken(u64);

impl Output {
    /// Output as JSON lines (`json`) or as text.
    pub(crate) fn new(json: bool) -> Self {
        Output {
            json,
            bar: Mutex::new(None),
            next_token: AtomicU64::new(0),
            captured: None,
            printer: Mutex::new(None),
        }
    }

    /// JSON output kept in memory, for unit tests: [`Output::take_lines`] reads it.
    #[cfg(test)]
    pub(crate) fn captured() -> Self {
        Output {
            captured: Some(Mutex::new(Vec::new())),
            ..Output::new(true)
        }
    }

    /// The lines printed since the last call, each parsed as JSON (captured output only).
    #[cfg(test)]
    pub(crate) fn take_lines(&self) -> Vec<serde_json::Value> {
        let lines = self.captured.as_ref().map_or_else(Vec::new, |lines| {
            std::mem::take(&mut *lines.lock().unwrap_or_else(PoisonError::into_inner))
        });
        lines
            .iter()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }

    /// True in `--json` mode.
    pub(crate) fn is_json(&self) -> bool {
        self.json
    }

    /// Prints one line: `json` in `--json` mode, else the text `human` makes.
    pub(crate) fn emit(&self, json: Object, human: impl FnOnce() -> String) {
        if self.json {
            self.print(&json.finish());
        } else {
            self.print(&human());
        }
    }

    /// Prints a human-only line (nothing in `--json` mode).
    pub(crate) fn note(&self, text: &str) {
        if !self.json {
            self.print(&row("", text));
        }
    }

    fn print(&self, line: &str) {
        if let Some(lines) = &self.captured {
            let mut lines = lines.lock().unwrap_or_else(PoisonError::into_inner);
            lines.push(line.to_owned());
            return;
        }
        let bar = self
            .bar
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(_, bar)| bar.clone());
        let mut printer = self.printer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut write = || match printer.as_mut() {
            Some(printer) => {
                // Outside the prompt (while a command runs) the printer writes straight
                // to the terminal, so the line carries its own newline.
                if let Err(error) = printer.print(format!("{line}\n")) {
                    tracing::debug!(%error, "the prompt's printer failed; printing directly");
                    write_line(line);
                }
            }
            None => write_line(line),
        };
        match bar {
            // Clears the bar, prints, and draws the bar again below the line.
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }

    /// Prints every line through `printer` until [`Output::detach_printer`].
    pub(crate) fn attach_printer(&self, printer: Box<dyn ExternalPrinter + Send>) {
        *self.printer.lock().unwrap_or_else(PoisonError::into_inner) = Some(printer);
    }

    /// Prints lines directly again: the prompt is gone.
    pub(crate) fn detach_printer(&self) {
        self.printer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// A progress bar of `len` bytes drawn with `template`, shown until
    /// [`Output::hide_bar`] with its token or [`Output::clear_bar`]; lines printed
    /// meanwhile go above it. `None` when no bar is wanted: in `--json` mode, when
    /// standard output is not a terminal, or while another bar shows.
    pub(crate) fn bar(&self, len: u64, template: &str) -> Option<(BarToken, ProgressBar)> {
        if self.json || !io::stdout().is_terminal() {
            return None;
        }
        let mut slot = self.bar.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_some() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stdout());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        let token = BarToken(self.next_token.fetch_add(1, Ordering::Relaxed));
        *slot = Some((token, bar.clone()));
        Some((token, bar))
    }

    /// Removes the bar `token` names from the screen, if it still shows.
    pub(crate) fn hide_bar(&self, token: BarToken) {
        let mut slot = self.bar.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|(shown, _)| *shown == token) {
            if let Some((_, bar)) = slot.take() {
                bar.finish_and_clear();
            }
        }
    }

    /// Removes whatever progress bar shows from the screen.
    pub(crate) fn clear_bar(&self) {
        if let Some((_, bar)) = self
            .bar
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            bar.finish_and_clear();
        }
    }
}

/// Writes one line to standard output. A reader that went away (a closed pipe) is not
/// the host's failure: the line is dropped, and the host goes on until its input ends.
fn write_line(line: &str) {
    let mut stdout = io::stdout().lock();
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
}

/// A line of text in two columns: `tag`, then `text`.
pub(crate) fn row(tag: &str, text: &str) -> String {
    format!("{tag:<TAG_WIDTH$} {text}")
}

/// The start of a reply to `command`; [`with_code`] ends it.
pub(crate) fn reply(command: &str) -> Object {
    Object::new().str("reply", command)
}

/// Adds a result code as `"hr"` (its HRESULT in hex) and `"name"`.
pub(crate) fn with_code(object: Object, code: ResultCode) -> Object {
    object
        .str("hr", &hex(code))
        .str("name", code.name().unwrap_or("UNKNOWN"))
}

/// A code's HRESULT as the reference writes it: `0x80630103`.
pub(crate) fn hex(code: ResultCode) -> String {
    format!("0x{:08X}", code.value())
}

/// The flags set in `status`, as text: `LISTENING | SYNCHRONIZED`, or `none`.
pub(crate) fn status_text(status: GraphStatus) -> String {
    let names = status_names(status);
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(" | ")
    }
}

/// The names of the flags set in `status`, such as `["LISTENING", "SYNCHRONIZED"]`.
pub(crate) fn status_names(status: GraphStatus) -> Vec<&'static str> {
    [
        (GraphStatus::LISTENING, "LISTENING"),
        (GraphStatus::HAS_CONNECTIONS, "HAS_CONNECTIONS"),
        (GraphStatus::SYNCHRONIZED, "SYNCHRONIZED"),
    ]
    .into_iter()
    .filter(|(flag, _)| status.contains(*flag))
    .map(|(_, name)| name)
    .collect()
}
