//! Rollback protection for signed documents: `state_dir/serial` holds the
//! highest serial this host ever accepted; a lower one is refused, so a
//! replayed older (validly signed) document cannot bring back a revoked
//! grant. Many helpers run at once: raising takes `state_dir/serial.lock`
//! and re-reads under it, so the stored value never goes down.

use std::fmt;
use std::path::Path;
use std::time::Instant;

use super::private::{PrivateDir, PrivateError};

const SERIAL_FILE: &str = "serial";
const LOCK_FILE: &str = "serial.lock";

/// What the check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialCheck {
    /// Equal to the highest accepted so far.
    Same,
    /// Higher: recorded (or, for a read-only caller, would be).
    Raised { from: Option<u64> },
}

#[derive(Debug)]
pub enum RollbackError {
    State(PrivateError),
    /// The stored value is not a serial.
    Corrupt(String),
    Rollback {
        serial: u64,
        highest: u64,
    },
}

impl fmt::Display for RollbackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RollbackError::State(e) => write!(f, "state_dir: {e}"),
            RollbackError::Corrupt(m) => write!(f, "state_dir: {m}"),
            RollbackError::Rollback { serial, highest } => write!(
                f,
                "rollback refused: serial {serial} is lower than {highest}, the highest this host has accepted (publish the current policy with a serial of at least {highest}; see README, rollback protection)"
            ),
        }
    }
}

impl std::error::Error for RollbackError {}

/// The highest serial accepted so far, if any.
pub fn highest(state: &PrivateDir) -> Result<Option<u64>, RollbackError> {
    let Some((bytes, _)) = state.read(SERIAL_FILE, 64).map_err(RollbackError::State)? else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&bytes).unwrap_or("");
    let digits = text.strip_suffix('\n').unwrap_or(text);
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RollbackError::Corrupt(format!(
            "{} does not hold a serial (fix: write the highest serial you published, e.g. `echo 42 > {0}`)",
            state.join(SERIAL_FILE).display()
        )));
    }
    digits.parse().map(Some).map_err(|_| {
        RollbackError::Corrupt(format!(
            "{}: serial out of range",
            state.join(SERIAL_FILE).display()
        ))
    })
}

/// Refuses `serial` below the stored one; with `persist`, records a higher
/// one before returning (a document is only used once its serial is safe).
pub fn check(
    state_dir: &Path,
    serial: u64,
    persist: bool,
    deadline: Instant,
) -> Result<SerialCheck, RollbackError> {
    let state = PrivateDir::open(state_dir, "state_dir").map_err(RollbackError::State)?;
    // Fast path without the lock: the common case is "same serial again".
    let seen = highest(&state)?;
    match seen {
        Some(h) if serial < h => return Err(RollbackError::Rollback { serial, highest: h }),
        Some(h) if serial == h => return Ok(SerialCheck::Same),
        _ => {}
    }
    if !persist {
        return Ok(SerialCheck::Raised { from: seen });
    }
    let _lock = state
        .lock(LOCK_FILE, deadline)
        .map_err(RollbackError::State)?;
    let current = highest(&state)?;
    match current {
        Some(h) if serial < h => Err(RollbackError::Rollback { serial, highest: h }),
        Some(h) if serial == h => Ok(SerialCheck::Same),
        _ => {
            state
                .write(SERIAL_FILE, format!("{serial}\n").as_bytes())
                .map_err(RollbackError::State)?;
            Ok(SerialCheck::Raised { from: current })
        }
    }
}
