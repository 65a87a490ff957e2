//! Output for a person: results on stdout (a closed pipe, as in
//! `sshjit list | head`, is not an error) and diagnostics on stderr. Never
//! used on the login path, whose only channel is syslog.

use std::io::{self, Write};

use crate::exit;

/// Writes a command's result; returns the exit status.
pub fn print(text: &str) -> u8 {
    match io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => exit::OK,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => exit::OK,
        Err(_) => exit::INTERNAL,
    }
}

/// Writes a diagnostic for a person at a terminal.
pub fn eprint(text: &str) {
    let _ = io::stderr().lock().write_all(text.as_bytes());
}
