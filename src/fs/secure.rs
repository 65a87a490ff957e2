//! Secure open of a local file that decides access (the policy, the config):
//! a regular file owned by root or by us, not writable by group or others,
//! in directories with the same properties all the way up, symlinks resolved
//! and both the link's and the target's directories checked.

use std::fmt;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::system;

/// Why a file was not read.
#[derive(Debug)]
pub enum FileError {
    NotFound(PathBuf),
    /// The file or a directory above it could be changed by someone other
    /// than root or us.
    Insecure {
        path: PathBuf,
        why: String,
        fix: String,
    },
    NotRegular(PathBuf),
    TooLarge {
        path: PathBuf,
        limit: usize,
    },
    Io {
        path: PathBuf,
        error: io::Error,
    },
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::NotFound(p) => write!(f, "{}: no such file", p.display()),
            FileError::Insecure { path, why, fix } => {
                write!(f, "refusing {}: {why} (fix: {fix})", path.display())
            }
            FileError::NotRegular(p) => write!(f, "refusing {}: not a regular file", p.display()),
            FileError::TooLarge { path, limit } => {
                write!(f, "refusing {}: larger than {limit} bytes", path.display())
            }
            FileError::Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for FileError {}

/// An open file that passed the ownership and permission checks.
#[derive(Debug)]
pub struct SecureFile {
    pub file: File,
    /// fstat of the open handle.
    pub meta: Metadata,
    pub path: PathBuf,
    /// The path with every symlink resolved: where the file really is.
    pub canonical: PathBuf,
    limit: usize,
}

impl SecureFile {
    /// Reads the whole file, at most the limit it was opened with.
    pub fn read_all(self) -> Result<Vec<u8>, FileError> {
        let (path, limit) = (self.path, self.limit);
        read_bounded(self.file, limit).map_err(|e| match e {
            ReadBoundedError::Io(error) => FileError::Io { path, error },
            ReadBoundedError::TooLarge => FileError::TooLarge { path, limit },
        })
    }
}

/// Reads a whole file after the ownership and permission checks, at most
/// `limit` bytes.
pub fn read_secure(path: &Path, limit: usize) -> Result<Vec<u8>, FileError> {
    open_secure(path, limit)?.read_all()
}

/// As `read_secure`, for a secret (a token, a private key): also refused
/// when others may read it.
pub fn read_secret(path: &Path, limit: usize) -> Result<Vec<u8>, FileError> {
    open_checked(path, limit, true)?.read_all()
}

/// Opens a file after the ownership and permission checks of the file, the
/// directories above it and, for a symlink, those above its target.
pub fn open_secure(path: &Path, limit: usize) -> Result<SecureFile, FileError> {
    open_checked(path, limit, false)
}

fn open_checked(path: &Path, limit: usize, secret: bool) -> Result<SecureFile, FileError> {
    let io_err = |error: io::Error| {
        if error.kind() == io::ErrorKind::NotFound {
            FileError::NotFound(path.to_owned())
        } else {
            FileError::Io {
                path: path.to_owned(),
                error,
            }
        }
    };
    let absolute = std::path::absolute(path).map_err(io_err)?;
    let canonical = fs::canonicalize(&absolute).map_err(io_err)?;
    let me = system::euid();
    // The directories that hold the name we were given (one of them may
    // hold a symlink), then those that hold the file itself.
    if let Some(parent) = absolute.parent() {
        check_ancestors(parent, me)?;
    }
    if canonical != absolute
        && let Some(parent) = canonical.parent()
    {
        check_ancestors(parent, me)?;
    }
    // O_NOFOLLOW: the canonical name has no symlink left, so one appearing
    // now is a race we refuse. O_NONBLOCK: never hang opening a FIFO.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&canonical)
        .map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.file_type().is_file() {
        return Err(FileError::NotRegular(path.to_owned()));
    }
    check_owner_and_mode(&canonical, &meta, me, false)?;
    if secret && meta.mode() & 0o004 != 0 {
        return Err(FileError::Insecure {
            path: path.to_owned(),
            why: format!(
                "secret file is readable by others (mode {:04o})",
                meta.mode() & 0o7777
            ),
            fix: format!("chmod o-r {}", path.display()),
        });
    }
    if meta.len() > limit as u64 {
        return Err(FileError::TooLarge {
            path: path.to_owned(),
            limit,
        });
    }
    Ok(SecureFile {
        file,
        meta,
        path: path.to_owned(),
        canonical,
        limit,
    })
}

/// True when anyone on this host may read the file at `path`: it is
/// readable by others, and every directory on its way (symlinks resolved)
/// is searchable by others. Only then may an error message quote what it
/// holds; otherwise a message gives a position and a kind, never content
/// (`--config /etc/shadow` must not print a line of it).
pub fn world_readable(path: &Path) -> bool {
    let Ok(absolute) = std::path::absolute(path) else {
        return false;
    };
    let Ok(canonical) = fs::canonicalize(&absolute) else {
        return false;
    };
    let readable = |p: &Path, bit: u32| fs::metadata(p).is_ok_and(|m| m.mode() & bit != 0);
    let searchable = |file: &Path| {
        file.parent()
            .is_none_or(|d| d.ancestors().all(|a| readable(a, 0o001)))
    };
    readable(&canonical, 0o004) && searchable(&absolute) && searchable(&canonical)
}

/// What an account may do to a file, as the kernel's permission bits say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Whether `account` may read (or write) the file at `path`: search
/// permission on every directory on its way (the name given and, symlinks
/// resolved, the file's real place) and the permission on the file itself,
/// by the owner, group and other bits (ACLs are not looked at). `Err`
/// names the first thing in the way.
pub fn access_for(path: &Path, account: &system::Account, access: Access) -> Result<(), String> {
    let absolute = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let canonical = fs::canonicalize(&absolute).map_err(|e| format!("{}: {e}", path.display()))?;
    let allowed = |p: &Path, bits: u32| -> Result<bool, String> {
        let m = fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        if account.uid == 0 {
            return Ok(true);
        }
        let shift = if m.uid() == account.uid {
            6
        } else if m.gid() == account.gid || account.groups.contains(&m.gid()) {
            3
        } else {
            0
        };
        Ok((m.mode() >> shift) & bits == bits)
    };
    let describe = |p: &Path| {
        fs::metadata(p).map_or_else(
            |_| String::new(),
            |m| {
                format!(
                    " (mode {:04o}, owner uid {}, group gid {})",
                    m.mode() & 0o7777,
                    m.uid(),
                    m.gid()
                )
            },
        )
    };
    for file in [&absolute, &canonical] {
        if let Some(parent) = file.parent() {
            // From the top down, so the first directory in the way is named.
            let dirs: Vec<&Path> = parent.ancestors().collect();
            for d in dirs.into_iter().rev() {
                if !allowed(d, 0o1)? {
                    return Err(format!("cannot enter {}{}", d.display(), describe(d)));
                }
            }
        }
    }
    let (bits, verb) = match access {
        Access::Read => (0o4, "read"),
        Access::Write => (0o2, "write"),
    };
    // A directory is also entered to read or write its entries.
    let bits = if canonical.is_dir() { bits | 0o1 } else { bits };
    if !allowed(&canonical, bits)? {
        return Err(format!(
            "cannot {verb} {}{}",
            canonical.display(),
            describe(&canonical)
        ));
    }
    Ok(())
}

/// A policy error as it may be shown for the file at `path`: whole when
/// anyone may read the file, else its kind and position only.
pub fn shown(path: &Path, error: sshjit_policy::PolicyError) -> sshjit_policy::PolicyError {
    if world_readable(path) {
        error
    } else {
        error.redacted()
    }
}

/// True when nothing is at `path`: no file, and no symlink on its way
/// (the path itself or a directory above it) that points to something
/// missing. A dangling symlink is a file that could not be read, not an
/// absent one.
pub fn truly_absent(path: &Path) -> bool {
    if fs::symlink_metadata(path).is_ok() {
        return false;
    }
    path.ancestors().all(|p| match fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_symlink() => fs::metadata(p).is_ok(),
        _ => true,
    })
}

/// Checks that `dir` and every directory above it are owned by root or us
/// and not writable by group or others (above `dir`, a sticky directory may
/// be, see [`check_ancestors`]): the rule for a file about to be created
/// there (the admin commands creating the policy or its trail).
pub fn check_directory(dir: &Path) -> Result<(), FileError> {
    check_ancestors(dir, system::euid())
}

/// Checks a file the caller opened itself (with `O_NOFOLLOW`): a regular
/// file owned by root or us, not writable by group or others.
pub fn check_open_file(path: &Path, file: &File) -> Result<Metadata, FileError> {
    let meta = file.metadata().map_err(|error| FileError::Io {
        path: path.to_owned(),
        error,
    })?;
    if !meta.file_type().is_file() {
        return Err(FileError::NotRegular(path.to_owned()));
    }
    check_owner_and_mode(path, &meta, system::euid(), false)?;
    Ok(meta)
}

enum ReadBoundedError {
    Io(io::Error),
    TooLarge,
}

/// Reads to the end, refusing more than `limit` bytes (the file may grow
/// after fstat).
fn read_bounded(file: File, limit: usize) -> Result<Vec<u8>, ReadBoundedError> {
    let mut buf = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(ReadBoundedError::Io)?;
    if buf.len() > limit {
        return Err(ReadBoundedError::TooLarge);
    }
    Ok(buf)
}

/// Every directory from `dir` up to `/` must be owned by root or `me` and
/// not writable by group or others, so that nobody else can replace any
/// component of the path.
///
/// `dir` itself, the directory that holds the file (or the symlink to it,
/// or the name about to be created), follows that rule without exception,
/// as sshd's does: sshjit keeps files beside the policy (its index, lock,
/// trail and temporary files), and in a directory others can write to they
/// could take those names first.
///
/// Above it, one exception keeps a checkout in `/tmp` usable without
/// weakening the rule: a directory writable by others that is *sticky* and
/// owned by root or `me` lets others add names but not rename or remove a
/// name they do not own (only its owner, the directory's owner or root
/// can). Such a directory is accepted when the entry on our path inside it,
/// looked at itself (`lstat`: a symlink is not followed), is owned by root
/// or `me`; that entry is then checked by the ordinary rules as the next
/// component down. A non-sticky writable directory, a sticky one owned by
/// anybody else, or a sticky one whose entry on our path belongs to anybody
/// else still refuses.
pub(crate) fn check_ancestors(dir: &Path, me: u32) -> Result<(), FileError> {
    // The entry on our path inside the directory being checked; none for
    // `dir` itself, which gets no exception.
    let mut below: Option<&Path> = None;
    for d in dir.ancestors() {
        let meta = fs::metadata(d).map_err(|error| FileError::Io {
            path: d.to_owned(),
            error,
        })?;
        match check_owner_and_mode(d, &meta, me, true) {
            Ok(()) => {}
            Err(refusal) => sticky_exception(d, &meta, below, me).ok_or(refusal)??,
        }
        below = Some(d);
    }
    Ok(())
}

/// For a directory that failed the ordinary check: `Some(Ok)` when it is
/// a sticky directory owned by root or `me` whose entry `below` is owned by
/// root or `me`; `Some(Err)` when that entry belongs to someone else (said
/// precisely); `None` when the exception does not apply at all.
fn sticky_exception(
    dir: &Path,
    meta: &Metadata,
    below: Option<&Path>,
    me: u32,
) -> Option<Result<(), FileError>> {
    let owner_ok = meta.uid() == 0 || meta.uid() == me;
    if meta.mode() & libc::S_ISVTX == 0 || !owner_ok {
        return None;
    }
    let below = below?;
    let entry = match fs::symlink_metadata(below) {
        Ok(m) => m,
        Err(error) => {
            return Some(Err(FileError::Io {
                path: below.to_owned(),
                error,
            }));
        }
    };
    if entry.uid() == 0 || entry.uid() == me {
        return Some(Ok(()));
    }
    Some(Err(FileError::Insecure {
        path: below.to_owned(),
        why: format!(
            "owned by uid {} inside {}, a directory others can write to (mode {:04o}): its owner could replace it",
            entry.uid(),
            dir.display(),
            meta.mode() & 0o7777
        ),
        fix: format!("chown root {}", below.display()),
    }))
}

fn check_owner_and_mode(
    path: &Path,
    meta: &Metadata,
    me: u32,
    is_dir: bool,
) -> Result<(), FileError> {
    let what = if is_dir { "directory" } else { "file" };
    if meta.uid() != 0 && meta.uid() != me {
        return Err(FileError::Insecure {
            path: path.to_owned(),
            why: format!("{what} is owned by uid {}, not root", meta.uid()),
            fix: format!("chown root {}", path.display()),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(FileError::Insecure {
            path: path.to_owned(),
            why: format!("{what} is writable by group or others (mode {mode:04o})"),
            fix: format!("chmod go-w {}", path.display()),
        });
    }
    Ok(())
}
