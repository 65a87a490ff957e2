//! Output for a person: results on stdout (a closed pipe, as in
//! `sshjit list | head`, is not an error) and diagnostics on stderr. Never
//! used on the login path, whose only channel is syslog.
//!
//! Everything printed here is made safe for a terminal and a spreadsheet
//! first ([`safe`]): policy strings, trail records and above all forged
//! syslog lines (`report --logins`) reach this point, and an escape
//! sequence, a bell or a bidi override in them must not act on the
//! screen of whoever reads the output.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};

use crate::exit;

/// Writes a command's result; returns the exit status.
pub fn print(text: &str) -> u8 {
    match io::stdout().lock().write_all(safe(text).as_bytes()) {
        Ok(()) => exit::OK,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => exit::OK,
        Err(_) => exit::INTERNAL,
    }
}

/// Writes a diagnostic for a person at a terminal.
pub fn eprint(text: &str) {
    let _ = io::stderr().lock().write_all(safe(text).as_bytes());
}

/// Whether `c` must not reach a terminal raw: C0 controls (but tab and
/// newline), DEL, C1 controls, and the invisible format characters that
/// reorder or hide text (bidi embeddings, overrides, isolates and marks,
/// zero-width characters, line and paragraph separators, tags).
fn dangerous(c: char) -> bool {
    match c {
        '\n' | '\t' => false,
        c => c.is_control() || sshjit_policy::text::is_invisible_format(c),
    }
}

/// `text` with every dangerous character written as a JSON escape
/// (`\u001b`, `\u202e`; surrogate pairs beyond the BMP): visible on a
/// terminal, inert in a spreadsheet cell, and inside JSON output the very
/// same string once decoded (JSON has no such character outside strings).
/// A CR right before a LF stays (CSV rows end in CRLF).
pub fn safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(dangerous) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if !dangerous(c) || (c == '\r' && chars.peek() == Some(&'\n')) {
            out.push(c);
            continue;
        }
        let mut units = [0u16; 2];
        for u in c.encode_utf16(&mut units) {
            let _ = write!(out, "\\u{u:04x}");
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::safe;

    #[test]
    fn dangerous_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(safe("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(safe("a,b\r\n"), "a,b\r\n");
        assert_eq!(safe("\u{1b}[31m\u{7}x\r"), "\\u001b[31m\\u0007x\\u000d");
        assert_eq!(safe("\u{9b}\u{7f}"), "\\u009b\\u007f");
        assert_eq!(safe("é \u{202e}cod.exe"), "é \\u202ecod.exe");
        assert_eq!(safe("\u{e0041}"), "\\udb40\\udc41");
        // Inside JSON the escaped text decodes to the very same string.
        let v = serde_json::json!({"reason": "a\u{202e}b\u{7f}\u{85}\u{e0041}"});
        let printed = safe(&v.to_string()).into_owned();
        assert!(printed.is_ascii(), "{printed}");
        let back: serde_json::Value = serde_json::from_str(&printed).unwrap();
        assert_eq!(back, v);
    }
}
