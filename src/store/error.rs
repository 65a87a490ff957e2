//! Why the store wrote nothing (or could not finish): one enum, each
//! variant a kind of failure with the message an admin acts on.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::trail::LineError;
use crate::fs::secure::FileError;
use sshjit_policy::PolicyError;

/// Why nothing was written.
#[derive(Debug)]
pub enum StoreError {
    /// The policy path is a symlink to a missing file (the path as given).
    DanglingSymlink(PathBuf),
    /// The policy path names no file (`/`, `..`).
    NoFileName(PathBuf),
    /// There is no policy at the path: editing commands never create one
    /// (`sshjit init` does).
    NoPolicy(PathBuf),
    /// `sshjit init` found something at the path already.
    Exists(PathBuf),
    /// `sshjit init`: a policy's file name ends in `.json`.
    NotJsonName(PathBuf),
    /// `sshjit init`: a trail is there without its policy.
    OrphanTrail(PathBuf),
    /// `sshjit init --policy PATH`: the directory is not there (only the
    /// configured location gets its directories made).
    NoDirectory(PathBuf),
    /// The lock file may not be opened: the usual cause is a missing sudo.
    LockDenied(PathBuf),
    /// Another edit held the lock for longer than `limit`.
    LockTimeout { path: PathBuf, limit: Duration },
    /// The existing policy (or its directory) fails the helper's checks.
    Insecure(FileError),
    /// The existing policy does not validate.
    Invalid { path: PathBuf, error: PolicyError },
    /// The changed document would not validate.
    Result(PolicyError),
    /// The serial is at its maximum.
    SerialExhausted,
    /// One of the trail's last records is not a good record.
    TrailDamaged { path: PathBuf, error: LineError },
    /// The trail's last two records do not chain.
    TrailUnchained { path: PathBuf },
    /// The trail's head does not match the policy in a way an edit may
    /// not mend on its own.
    TrailMismatch { path: PathBuf, explanation: String },
    /// Reading or writing failed.
    Io { what: String, error: io::Error },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::DanglingSymlink(path) => write!(
                f,
                "{} is a symlink to a missing file: point it at the policy or remove it",
                path.display()
            ),
            StoreError::NoFileName(path) => write!(f, "{} names no file", path.display()),
            StoreError::NoPolicy(path) => write!(
                f,
                "there is no policy at {}: editing commands never create one; create it with `sshjit init` (or check --policy and the config's source)",
                path.display()
            ),
            StoreError::Exists(path) => write!(
                f,
                "{} already exists: `sshjit init` creates a new policy only where there is nothing",
                path.display()
            ),
            StoreError::NotJsonName(path) => write!(
                f,
                "{}: a policy's file name must end in .json",
                path.display()
            ),
            StoreError::NoDirectory(dir) => write!(
                f,
                "{} is not a directory: sshjit init makes missing directories only for the configured policy location (the config's source)",
                dir.display()
            ),
            StoreError::OrphanTrail(path) => write!(
                f,
                "the trail {} exists but its policy does not: restore the policy from a backup, or move the trail aside to start anew",
                path.display()
            ),
            StoreError::LockDenied(path) => write!(
                f,
                "cannot open {}: permission denied; changing the policy needs its owner's rights (run with sudo)",
                path.display()
            ),
            StoreError::LockTimeout { path, limit } => write!(
                f,
                "locking {}: another edit has held the lock for over {}s",
                path.display(),
                limit.as_secs()
            ),
            StoreError::Insecure(e) => e.fmt(f),
            StoreError::Invalid { path, error } => write!(
                f,
                "the policy {} is invalid ({error}); fix or restore it first (`sshjit check` shows where)",
                path.display()
            ),
            StoreError::Result(e) => write!(f, "the changed policy would not validate: {e}"),
            StoreError::SerialExhausted => {
                f.write_str("the policy's serial cannot grow any further")
            }
            StoreError::TrailDamaged { path, error } => write!(
                f,
                "the end of the trail {} is damaged ({error}); nothing was changed. Run `sshjit audit verify` for details",
                path.display()
            ),
            StoreError::TrailUnchained { path } => write!(
                f,
                "the last two records of the trail {} do not chain; nothing was changed. Run `sshjit audit verify` for details",
                path.display()
            ),
            StoreError::TrailMismatch { path, explanation } => write!(
                f,
                "the trail {} does not match the policy: {explanation}. Nothing was changed. \
                 Check what happened (`sshjit audit verify`), then record the policy as it is with \
                 `sshjit audit repair --reason TEXT`",
                path.display()
            ),
            StoreError::Io { what, error } => write!(f, "{what}: {error}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// True for failures of the machine rather than refusals.
    pub fn is_internal(&self) -> bool {
        matches!(self, StoreError::Io { .. } | StoreError::LockTimeout { .. })
    }
}

/// Maps an I/O error to `StoreError::Io` saying what was being done.
pub fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let what = what.into();
    move |error| StoreError::Io { what, error }
}
