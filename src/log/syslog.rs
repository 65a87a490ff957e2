//! A minimal syslog client over the local socket (RFC 3164 framing as glibc
//! writes it, without the timestamp, which the daemon adds on receipt).

use std::io::{self, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// LOG_AUTHPRIV.
const FACILITY_AUTHPRIV: u8 = 10;
/// Longest wait for the syslog daemon to take a line.
const SEND_TIMEOUT: Duration = Duration::from_millis(200);
/// Longest message sent; longer ones are cut (the daemon would cut them anyway).
const MAX_MESSAGE: usize = 4000;

/// syslog severities used by sshjit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Alert = 1,
    Err = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
}

/// Where decision lines go.
#[derive(Clone, Debug)]
pub struct Syslog {
    socket: PathBuf,
}

impl Syslog {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Syslog {
            socket: socket.into(),
        }
    }

    /// Sends one line. When the socket is missing or refuses, the line goes
    /// to stderr instead, so it is never silently lost.
    pub fn log(&self, severity: Severity, message: &str) {
        let message = truncate(message, MAX_MESSAGE);
        let pri = FACILITY_AUTHPRIV * 8 + severity as u8;
        let framed = format!("<{pri}>sshjit[{}]: {message}", std::process::id());
        if send(&self.socket, framed.as_bytes()).is_err() {
            let _ = writeln!(io::stderr().lock(), "sshjit: {message}");
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn send(socket: &Path, framed: &[u8]) -> io::Result<()> {
    let dgram = UnixDatagram::unbound()?;
    // A stuck daemon must not stall a login: bound the wait.
    dgram.set_write_timeout(Some(SEND_TIMEOUT))?;
    match dgram.send_to(framed, socket) {
        Ok(_) => Ok(()),
        // A stream socket (some syslog daemons): glibc then sends the
        // message with its NUL terminator.
        Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => {
            let mut s = UnixStream::connect(socket)?;
            s.set_write_timeout(Some(SEND_TIMEOUT))?;
            s.write_all(framed)?;
            s.write_all(b"\0")
        }
        Err(e) => Err(e),
    }
}
