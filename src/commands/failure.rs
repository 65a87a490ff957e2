//! The one error type of the commands: a kind, which decides the exit
//! status, and the message for the person at the terminal.

use std::fmt;

use crate::exit;
use crate::store::StoreError;
use crate::term;

/// What kind of failure, and so which exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// A bad command line or argument: exit 2.
    Usage,
    /// Refused or denied (the policy, the trail, the change): exit 1.
    Refused,
    /// The machine failed (I/O, a lock held too long): exit 3.
    Internal,
}

impl FailureKind {
    /// The exit status (`crate::exit`).
    pub fn status(self) -> u8 {
        match self {
            FailureKind::Usage => exit::USAGE,
            FailureKind::Refused => exit::DENIED,
            FailureKind::Internal => exit::INTERNAL,
        }
    }
}

/// A command that did not succeed.
#[derive(Debug)]
pub struct Failure {
    pub kind: FailureKind,
    /// What to tell the admin (printed after `error: `).
    pub message: String,
    /// Lines printed after the message, as they are (`audit verify`: the
    /// other problems and the last good record).
    pub detail: Vec<String>,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            detail: Vec::new(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(FailureKind::Usage, message)
    }

    pub fn refused(message: impl Into<String>) -> Self {
        Failure::new(FailureKind::Refused, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Failure::new(FailureKind::Internal, message)
    }

    /// The exit status.
    pub fn status(&self) -> u8 {
        self.kind.status()
    }

    /// Prints the failure on stderr and returns the exit status.
    pub fn report(&self) -> u8 {
        term::eprint(&self.to_string());
        self.status()
    }
}

/// The text `report` prints: `error: MESSAGE` and the detail lines, each
/// ending in a newline.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        for line in &self.detail {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        let kind = if e.is_internal() {
            FailureKind::Internal
        } else if matches!(e, StoreError::NotJsonName(_)) {
            FailureKind::Usage
        } else {
            FailureKind::Refused
        };
        Failure::new(kind, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    #[test]
    fn a_failure_prints_its_message_then_its_detail_lines() {
        let mut f = Failure::refused("first");
        assert_eq!(f.to_string(), "error: first\n");
        f.detail = vec!["error: second".into(), "3 good records before that".into()];
        assert_eq!(
            f.to_string(),
            "error: first\nerror: second\n3 good records before that\n"
        );
        assert_eq!(f.status(), exit::DENIED);
    }

    #[test]
    fn store_errors_are_refusals_unless_the_machine_failed() {
        let refused = Failure::from(StoreError::DanglingSymlink(PathBuf::from("p")));
        assert_eq!(refused.kind, FailureKind::Refused);
        let timeout = Failure::from(StoreError::LockTimeout {
            path: PathBuf::from("/e/policy.json.lock"),
            limit: Duration::from_secs(60),
        });
        assert_eq!(timeout.status(), exit::INTERNAL);
        assert_eq!(
            timeout.message,
            "locking /e/policy.json.lock: another edit has held the lock for over 60s"
        );
        assert_eq!(Failure::usage("x").status(), exit::USAGE);
    }
}
