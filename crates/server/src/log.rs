//! The server's own log: one structured line per event (`key=value`,
//! values escaped as the helper's lines are) on stderr, which systemd's
//! journal keeps. Answers to hosts are counted in the metrics, not logged
//! one by one; refusals, changes, logins and faults are logged.

use std::io::Write;

use sshjit::log::Line;

/// Writes one line: `sshjit-server: event=KIND k=v ...`.
pub fn event(kind: &str, fields: &[(&str, &str)]) {
    let mut line = Line::new();
    line.field("event", kind);
    for (k, v) in fields {
        line.field(k, v);
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "sshjit-server: {}", line.as_str());
}
