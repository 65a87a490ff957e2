//! Files the helper writes for itself: `state_dir` (highest accepted
//! serial) and `cache_dir` (last good document). Both directories belong
//! to the helper's unprivileged account, so the rules differ from the
//! policy's: the directory may be owned by that account, files are 0600,
//! written atomically (temp file, fsync, rename, fsync of the directory)
//! and serialised with a lock file where order matters.

use std::fmt;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::fs::secure as file;
use crate::fs::{atomic, lock};
use crate::system;

/// A checked private directory.
#[derive(Clone, Debug)]
pub struct PrivateDir {
    pub path: PathBuf,
    /// The directory's owner: the helper's account (or root).
    owner: u32,
}

/// Why a private file could not be used.
#[derive(Debug)]
pub struct PrivateError {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for PrivateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for PrivateError {}

fn err(path: &Path, message: impl Into<String>) -> PrivateError {
    PrivateError {
        path: path.to_owned(),
        message: message.into(),
    }
}

impl PrivateDir {
    /// Checks `path`: an existing directory, not writable by group or
    /// others, owned by us or root (root, running the admin commands, also
    /// accepts the helper account's directory), in directories that only
    /// root or we can change.
    pub fn open(path: &Path, key: &str) -> Result<Self, PrivateError> {
        let me = system::euid();
        let meta = fs::symlink_metadata(path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                err(
                    path,
                    format!(
                        "{key} does not exist (fix: install -d -o <helper account> -m 0700 {})",
                        path.display()
                    ),
                )
            } else {
                err(path, e.to_string())
            }
        })?;
        if !meta.is_dir() {
            return Err(err(
                path,
                format!("{key} is not a directory (symlinks are refused)"),
            ));
        }
        if meta.uid() != me && meta.uid() != 0 && me != 0 {
            return Err(err(
                path,
                format!(
                    "{key} is owned by uid {}, not by this account (uid {me}) or root (fix: chown {me} {})",
                    meta.uid(),
                    path.display()
                ),
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(err(
                path,
                format!(
                    "{key} is writable by group or others (fix: chmod 0700 {})",
                    path.display()
                ),
            ));
        }
        if let Some(parent) = path.parent() {
            file::check_ancestors(parent, me).map_err(|e| err(path, e.to_string()))?;
        }
        Ok(PrivateDir {
            path: path.to_owned(),
            owner: meta.uid(),
        })
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Reads `name` (at most `limit` bytes) with its metadata; `None` when absent.
    pub fn read(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Option<(Vec<u8>, Metadata)>, PrivateError> {
        let path = self.join(name);
        let f = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(&path, e.to_string())),
        };
        let meta = f.metadata().map_err(|e| err(&path, e.to_string()))?;
        self.check_file(&path, &meta)?;
        if meta.len() > limit as u64 {
            return Err(err(&path, format!("larger than {limit} bytes")));
        }
        let mut buf = Vec::new();
        f.take(limit as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| err(&path, e.to_string()))?;
        if buf.len() > limit {
            return Err(err(&path, format!("larger than {limit} bytes")));
        }
        Ok(Some((buf, meta)))
    }

    fn check_file(&self, path: &Path, meta: &Metadata) -> Result<(), PrivateError> {
        if !meta.file_type().is_file() {
            return Err(err(path, "not a regular file"));
        }
        let me = system::euid();
        if ![me, self.owner, 0].contains(&meta.uid()) {
            return Err(err(path, format!("owned by uid {}", meta.uid())));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(err(path, "writable by group or others"));
        }
        Ok(())
    }

    /// Replaces `name` atomically with a 0600 file holding `bytes`.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<(), PrivateError> {
        let path = self.join(name);
        atomic::write(&path, bytes, atomic::Options::mode(0o600))
            .map_err(|e| err(&path, format!("cannot write: {e}")))
    }

    /// Marks `name` as confirmed now (its mtime), without rewriting it.
    pub fn touch(&self, name: &str) -> Result<(), PrivateError> {
        let path = self.join(name);
        let f = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| err(&path, e.to_string()))?;
        f.set_modified(SystemTime::now())
            .map_err(|e| err(&path, e.to_string()))
    }

    /// Takes the exclusive lock `name` (created 0600 if needed), waiting
    /// at most until `deadline`. Released when the returned file is dropped.
    pub fn lock(&self, name: &str, deadline: Instant) -> Result<File, PrivateError> {
        let path = self.join(name);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| err(&path, format!("cannot open the lock: {e}")))?;
        let meta = f.metadata().map_err(|e| err(&path, e.to_string()))?;
        self.check_file(&path, &meta)?;
        lock::wait(&f, lock::Kind::Exclusive, deadline, None).map_err(|e| match e {
            lock::LockError::Timeout { .. } => {
                err(&path, "lock still held by another sshjit at the deadline")
            }
            lock::LockError::Io(e) => err(&path, e.to_string()),
        })?;
        Ok(f)
    }
}

/// Seconds since the file was last written or confirmed; `None` when its
/// time is in the future (the clock moved back: its age is unknown).
pub fn age(meta: &Metadata) -> Option<Duration> {
    let modified = meta.modified().ok()?;
    SystemTime::now().duration_since(modified).ok().or_else(|| {
        // A few milliseconds of skew between the file system and the clock.
        modified
            .duration_since(SystemTime::now())
            .ok()
            .filter(|d| *d < Duration::from_secs(1))
            .map(|_| Duration::ZERO)
    })
}
