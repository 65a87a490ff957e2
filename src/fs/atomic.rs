//! Replacing a file so that a reader sees the old bytes or the new ones,
//! never a mix, and a crash leaves one of the two: a temp file in the same
//! directory, written and fsynced, renamed over the target, then the
//! directory fsynced so the rename itself is durable.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// How the new file is made.
#[derive(Clone, Copy, Debug)]
pub struct Options<'a> {
    /// Its mode, whatever the umask.
    pub mode: u32,
    /// Its owner (fchown), when it must match another file's.
    pub owner: Option<u32>,
    /// The temp file's name: a fixed one for writers that hold a lock
    /// (a temp file left by a crash is then simply replaced); `None` for
    /// a name unique to this process.
    pub temp: Option<&'a Path>,
    /// fsync the file before the rename and the directory after it. Only
    /// derived data that is checked when read (the index) goes without.
    pub durable: bool,
}

impl Options<'_> {
    pub fn mode(mode: u32) -> Self {
        Options {
            mode,
            owner: None,
            temp: None,
            durable: true,
        }
    }
}

/// Why a replacement failed, and how far it got.
#[derive(Debug)]
pub enum AtomicError {
    /// The temp file could not be made or written: the target is untouched.
    Write { path: PathBuf, error: io::Error },
    /// The rename failed: the target is untouched.
    Rename { path: PathBuf, error: io::Error },
    /// The target was replaced but the directory could not be synced: the
    /// change may not survive a crash of the machine.
    DirSync { dir: PathBuf, error: io::Error },
}

impl AtomicError {
    /// True when the target already holds the new bytes.
    pub fn replaced(&self) -> bool {
        matches!(self, AtomicError::DirSync { .. })
    }
}

impl fmt::Display for AtomicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AtomicError::Write { path, error } => write!(f, "writing {}: {error}", path.display()),
            AtomicError::Rename { path, error } => {
                write!(f, "renaming into {}: {error}", path.display())
            }
            AtomicError::DirSync { dir, error } => write!(f, "syncing {}: {error}", dir.display()),
        }
    }
}

impl std::error::Error for AtomicError {}

/// A new version written to its temp file and fsynced, not yet in place.
/// Dropped without `commit`, the temp file is removed.
#[derive(Debug)]
pub struct Pending {
    temp: PathBuf,
    target: PathBuf,
    done: bool,
    durable: bool,
    /// fstat of the temp file as written.
    meta: fs::Metadata,
}

/// The directory a path lives in (`.` for a bare file name).
pub fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to the temp file beside `target` and fsyncs it.
pub fn prepare(target: &Path, bytes: &[u8], options: Options<'_>) -> Result<Pending, AtomicError> {
    let temp = match options.temp {
        Some(t) => t.to_owned(),
        None => {
            let name = target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            dir_of(target).join(format!(".{name}.{}.tmp", std::process::id()))
        }
    };
    let write_err = |error| AtomicError::Write {
        path: temp.clone(),
        error,
    };
    match fs::remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(write_err(e)),
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(options.mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&temp)
        .map_err(write_err)?;
    // The pending value owns the temp file from here: an error removes it.
    let mut pending = Pending {
        temp: temp.clone(),
        target: target.to_owned(),
        done: false,
        durable: options.durable,
        meta: f.metadata().map_err(write_err)?,
    };
    f.set_permissions(fs::Permissions::from_mode(options.mode))
        .and_then(|()| match options.owner {
            Some(uid) => std::os::unix::fs::fchown(&f, Some(uid), None),
            None => Ok(()),
        })
        .and_then(|()| f.write_all(bytes))
        .and_then(|()| {
            if options.durable {
                f.sync_all()
            } else {
                Ok(())
            }
        })
        .and_then(|()| f.metadata())
        .map(|meta| pending.meta = meta)
        .map_err(write_err)?;
    Ok(pending)
}

impl Pending {
    /// The temp file holding the new version.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// fstat of the temp file as written: its identity until the rename.
    pub fn temp_metadata(&self) -> &fs::Metadata {
        &self.meta
    }

    /// Renames the new version into place and syncs the directory.
    pub fn commit(mut self) -> Result<(), AtomicError> {
        fs::rename(&self.temp, &self.target).map_err(|error| AtomicError::Rename {
            path: self.target.clone(),
            error,
        })?;
        self.done = true;
        if self.durable {
            sync_dir(dir_of(&self.target))
        } else {
            Ok(())
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Replaces `target` with `bytes` in one step.
pub fn write(target: &Path, bytes: &[u8], options: Options<'_>) -> Result<(), AtomicError> {
    prepare(target, bytes, options)?.commit()
}

/// fsyncs a directory, so the names created or renamed in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), AtomicError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|error| AtomicError::DirSync {
            dir: dir.to_owned(),
            error,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sshjit-atomic-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn replaces_with_the_mode_asked_for_and_leaves_no_temp() {
        let d = temp_dir("replace");
        let target = d.join("f.json");
        fs::write(&target, b"old").unwrap();
        write(&target, b"new", Options::mode(0o640)).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o7777, 0o640);
        let left: Vec<_> = fs::read_dir(&d).unwrap().collect();
        assert_eq!(left.len(), 1, "only the target remains");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_pending_version_dropped_leaves_the_target_untouched() {
        let d = temp_dir("drop");
        let target = d.join("f.json");
        let fixed = d.join("f.json.tmp");
        fs::write(&target, b"old").unwrap();
        fs::write(&fixed, b"left by a crash").unwrap();
        let options = Options {
            temp: Some(&fixed),
            ..Options::mode(0o644)
        };
        let pending = prepare(&target, b"new", options).unwrap();
        assert_eq!(fs::read(pending.temp_path()).unwrap(), b"new");
        drop(pending);
        assert!(!fixed.exists());
        assert_eq!(fs::read(&target).unwrap(), b"old");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_symlink_at_the_temp_name_is_not_followed() {
        let d = temp_dir("link");
        let target = d.join("f.json");
        let fixed = d.join("f.json.tmp");
        let victim = d.join("victim");
        fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, &fixed).unwrap();
        let options = Options {
            temp: Some(&fixed),
            ..Options::mode(0o644)
        };
        write(&target, b"new", options).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert_eq!(fs::read(&target).unwrap(), b"new");
        fs::remove_dir_all(&d).unwrap();
    }
}
