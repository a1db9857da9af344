//! The transcript the demonstrations print: who called, the call, and the code it
//! returned, in three columns, with headings, narration and detail lines between. Shared
//! by `direct_connection` and `records`, which check every code as they print it.

use std::sync::OnceLock;

use anyhow::{bail, Context as _, Result};
use peergraph::{code_of, PeerResult, ResultCode};

/// The widths of the first two columns, set once by [`columns`].
static COLUMNS: OnceLock<(usize, usize)> = OnceLock::new();

/// Sets the widths of the "who" and "call" columns (the first call wins; the default is
/// 7 and 46).
pub fn columns(who: usize, call: usize) {
    let _ = COLUMNS.set((who, call));
}

fn widths() -> (usize, usize) {
    *COLUMNS.get_or_init(|| (7, 46))
}

/// One line of the transcript, in three columns.
pub fn row(who: &str, call: &str, result: &str) {
    let (who_width, call_width) = widths();
    println!("{who:<who_width$} {call:<call_width$} {result}");
}

/// A line of detail, indented under the call it belongs to.
pub fn detail(text: &str) {
    let (who_width, _) = widths();
    println!("{:<who_width$}   {text}", "");
}

/// A line of narration between calls.
pub fn note(text: &str) {
    println!("{text}");
}

/// A step's heading.
pub fn section(title: &str) {
    println!(
        "\n== {title} {}",
        "=".repeat(70usize.saturating_sub(title.len()))
    );
}

/// Prints a call and what it returned: the result code, and under it the code's
/// description when the call failed.
pub fn show<T>(who: &str, call: &str, result: &PeerResult<T>) {
    let code = code_of(result);
    row(who, call, &code.to_string());
    if result.is_err() {
        row("", "", code.description());
    }
}

/// Prints a call that should succeed, and returns its value, or fails the demonstration.
///
/// # Errors
/// The call's error, with who made the call.
pub fn ok<T>(who: &str, call: &str, result: PeerResult<T>) -> Result<T> {
    show(who, call, &result);
    result.with_context(|| format!("{who}: {call} failed; expected S_OK"))
}

/// Prints a call that should fail with `expected`, or fails the demonstration.
///
/// # Errors
/// When the call returned another code.
pub fn fails<T>(who: &str, call: &str, result: PeerResult<T>, expected: ResultCode) -> Result<()> {
    show(who, call, &result);
    let got = code_of(&result);
    if got != expected {
        bail!("{who}: {call} returned {got}; expected {expected}");
    }
    Ok(())
}
