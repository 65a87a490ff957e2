//! The policy file an edit works on and the files beside it (trail, lock,
//! temp file), each opened with the helper's checks.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::error::{StoreError, io_error};
use super::trail::{Sha256Hex, sha256_hex, trail_path};
use crate::fs::secure::{self as secure, FileError};
use sshjit_policy::MAX_DOCUMENT_BYTES;

/// The policy's mode: readable by the helper's account, writable by its owner only.
pub const POLICY_MODE: u32 = 0o644;
/// The trail's mode: it holds the history of every key and reason.
pub const TRAIL_MODE: u32 = 0o640;

/// The policy file an admin command works on, and the files beside it.
#[derive(Clone, Debug)]
pub struct PolicyFile {
    /// The file itself, symlinks resolved: an edit replaces the file, never
    /// a symlink to it.
    pub policy: PathBuf,
}

impl PolicyFile {
    /// Resolves the path given on the command line or in the config.
    pub fn resolve(path: &Path) -> Result<PolicyFile, StoreError> {
        let io_err = io_error(format!("resolving {}", path.display()));
        let absolute = match std::path::absolute(path) {
            Ok(a) => a,
            Err(e) => return Err(io_err(e)),
        };
        let policy = match fs::symlink_metadata(&absolute) {
            Ok(_) => match fs::canonicalize(&absolute) {
                Ok(p) => p,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(StoreError::DanglingSymlink(path.to_owned()));
                }
                Err(e) => return Err(io_err(e)),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let name = absolute
                    .file_name()
                    .ok_or_else(|| StoreError::NoFileName(path.to_owned()))?;
                match absolute.parent().map(fs::canonicalize) {
                    Some(Ok(dir)) => dir.join(name),
                    _ => absolute.clone(),
                }
            }
            Err(e) => return Err(io_err(e)),
        };
        Ok(PolicyFile { policy })
    }

    /// Refuses a policy that is not there: editing commands never create
    /// one (`sshjit init` does), nor anything beside it (lock, trail,
    /// directories).
    pub fn require_existing(&self) -> Result<(), StoreError> {
        match fs::symlink_metadata(&self.policy) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::NoPolicy(self.policy.clone()))
            }
            Err(e) => Err(io_error(format!("looking at {}", self.policy.display()))(e)),
        }
    }

    pub fn trail(&self) -> PathBuf {
        trail_path(&self.policy)
    }

    pub fn dir(&self) -> &Path {
        self.policy.parent().unwrap_or(Path::new("/"))
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.policy.file_name().unwrap_or_default().to_owned();
        name.push(suffix);
        self.policy.with_file_name(name)
    }

    pub fn lock_path(&self) -> PathBuf {
        self.sibling(".lock")
    }

    /// The edit's temp file, with a fixed name: what an interrupted edit
    /// left there is the evidence `temp_sha` reads.
    pub fn tmp_path(&self) -> PathBuf {
        // Where the login path looks for an edit's next version.
        crate::index::pending_policy(&self.policy)
    }
}

/// Reads the policy as the helper would (same ownership and permission
/// checks); `None` when there is none (only `sshjit init` goes on then).
pub fn read_policy(target: &PolicyFile) -> Result<Option<Vec<u8>>, StoreError> {
    match secure::read_secure(&target.policy, MAX_DOCUMENT_BYTES) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(FileError::NotFound(_)) => {
            secure::check_directory(target.dir()).map_err(StoreError::Insecure)?;
            Ok(None)
        }
        Err(e) => Err(StoreError::Insecure(e)),
    }
}

/// Opens the trail for reading and appending, after the same checks as the
/// policy; `None` when there is none yet.
pub fn open_trail(path: &Path) -> Result<Option<File>, StoreError> {
    open_trail_as(path, true)
}

/// Opens the trail for reading only (an auditor need not be able to write it).
pub fn read_trail(path: &Path) -> Result<Option<File>, StoreError> {
    open_trail_as(path, false)
}

fn open_trail_as(path: &Path, append: bool) -> Result<Option<File>, StoreError> {
    let opened = OpenOptions::new()
        .read(true)
        .append(append)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path);
    let f = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(format!("opening {}", path.display()))(e)),
    };
    secure::check_open_file(path, &f).map_err(StoreError::Insecure)?;
    Ok(Some(f))
}

/// The document an interrupted edit left in the temp file, by hash.
pub fn temp_sha(target: &PolicyFile) -> Result<Option<Sha256Hex>, StoreError> {
    let path = target.tmp_path();
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path);
    // Missing, a symlink or something odd: not ours, so it proves nothing.
    let Ok(f) = opened else {
        return Ok(None);
    };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    f.take(MAX_DOCUMENT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(format!("reading {}", path.display())))?;
    Ok(Some(sha256_hex(&bytes)))
}
