//! Where the shell's input comes from: `-c` arguments, a stream (a pipe, a
//! file, a FIFO), or a terminal with line editing.
//!
//! - A stream is read line by line and every item runs as soon as it is
//!   complete, with no prompt, so a FIFO can drive a long-lived session.
//! - At a terminal, rustyline edits lines and keeps a history in
//!   `$ENTIDB_HISTORY` or `~/.entidb_history`. The prompt is `entidb> `,
//!   and `   ...> ` while a statement waits for its `;`. Ctrl-C at the
//!   prompt drops the pending statement; while a statement runs it cancels
//!   the statement (see `driver.rs`); Ctrl-D exits.

use super::driver::{Shell, Stop};
use super::input::{Item, Splitter};
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;
use std::io::BufRead;
use std::path::PathBuf;

/// The prompt of a new statement.
pub const PROMPT: &str = "entidb> ";
/// The prompt while a statement is incomplete.
pub const CONTINUATION: &str = "   ...> ";

/// Runs the items of `reader` as they arrive.
pub fn run_stream(shell: &mut Shell, reader: impl BufRead) -> Result<(), Stop> {
    let mut splitter = Splitter::new();
    for line in reader.lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                shell.report(
                    &super::failure::Failure::Other(format!("cannot read input: {e}")),
                    "",
                );
                break;
            }
        };
        for item in splitter.push_line(&line) {
            shell.execute(&item)?;
        }
    }
    match splitter.finish() {
        Some(item) => shell.execute(&item),
        None => Ok(()),
    }
}

/// Runs each `-c` argument: a dot-command, or statements.
pub fn run_commands(shell: &mut Shell, commands: &[String]) -> Result<(), Stop> {
    for command in commands {
        if command.trim_start().starts_with('.') {
            shell.execute(&Item::Dot(command.trim().to_string()))?;
            continue;
        }
        let mut splitter = Splitter::new();
        for line in command.lines() {
            for item in splitter.push_line(line) {
                shell.execute(&item)?;
            }
        }
        if let Some(item) = splitter.finish() {
            shell.execute(&item)?;
        }
    }
    Ok(())
}

fn history_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ENTIDB_HISTORY") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".entidb_history"))
}

/// The interactive shell.
pub fn run_terminal(shell: &mut Shell, banner: &str) -> Result<(), Stop> {
    let mut editor = match DefaultEditor::new() {
        Ok(e) => e,
        // No usable terminal after all: read it as a stream.
        Err(_) => return run_stream(shell, std::io::stdin().lock()),
    };
    let history = history_path();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    eprintln!("{banner}");
    let mut splitter = Splitter::new();
    let result = loop {
        let prompt = if splitter.pending() {
            CONTINUATION
        } else {
            PROMPT
        };
        match editor.readline(prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                let mut stop = None;
                for item in splitter.push_line(&line) {
                    if let Err(s) = shell.execute(&item) {
                        stop = Some(s);
                        break;
                    }
                }
                match stop {
                    Some(Stop::Quit | Stop::BrokenPipe) => break Ok(()),
                    Some(s) => break Err(s),
                    None => {}
                }
            }
            Err(ReadlineError::Interrupted) => splitter.clear(),
            Err(ReadlineError::Eof) => break Ok(()),
            Err(e) => {
                eprintln!("error: {e}");
                break Ok(());
            }
        }
    };
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    result
}
