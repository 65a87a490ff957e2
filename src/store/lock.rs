//! The policy's lock: `policy.json.lock` beside it, never deleted, so every
//! process locks the same inode. Edits hold it exclusively; readers that
//! compare the trail with the policy hold it shared. Taken through
//! `crate::fs::lock::wait`, with a deadline; the store never prints, so a
//! caller that has someone to tell passes `Waiting`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use super::error::{StoreError, io_error};
use super::file::PolicyFile;
use crate::fs::lock::{self as fslock, Kind, LockError, Patience};
use crate::fs::secure;

/// How long an edit waits for another one to finish.
pub const LOCK_WAIT: Duration = Duration::from_secs(60);
/// When a caller hears that the lock is slow to come.
pub const TELL_AFTER: Duration = Duration::from_secs(3);

/// Told once, with the lock file's path, when the lock has not come after
/// `TELL_AFTER` (another edit is in progress).
pub type Waiting<'a> = Option<&'a mut dyn FnMut(&Path)>;

/// Waits for the exclusive lock, telling nobody if it is slow to come.
pub fn lock(target: &PolicyFile) -> Result<File, StoreError> {
    exclusive(target, None)
}

/// Waits (up to `LOCK_WAIT`) for the exclusive lock on `policy.json.lock`
/// in the policy's directory, which must exist: only `sshjit init`
/// creates directories ([`create_dirs`]), and only for the configured
/// location.
pub fn exclusive(target: &PolicyFile, waiting: Waiting<'_>) -> Result<File, StoreError> {
    let dir = target.dir();
    secure::check_directory(dir).map_err(StoreError::Insecure)?;
    let path = target.lock_path();
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => StoreError::LockDenied(path.clone()),
            _ => io_error(format!("opening {}", path.display()))(e),
        })?;
    secure::check_open_file(&path, &lock).map_err(StoreError::Insecure)?;
    wait(&path, &lock, Kind::Exclusive, waiting)?;
    Ok(lock)
}

/// A shared lock for readers that compare the trail with the policy
/// (`audit verify`, `report`): no edit runs between the two reads. `None`
/// when no edit ever made a lock file, or the reader may not open it.
pub fn shared(target: &PolicyFile, waiting: Waiting<'_>) -> Result<Option<File>, StoreError> {
    let path = target.lock_path();
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(&path);
    let lock = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // The lock is 0600 on purpose: anyone who could open it could hold
        // it and stall every edit. A reader without access goes unlocked.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(None),
        Err(e) => return Err(io_error(format!("opening {}", path.display()))(e)),
    };
    secure::check_open_file(&path, &lock).map_err(StoreError::Insecure)?;
    wait(&path, &lock, Kind::Shared, waiting)?;
    Ok(Some(lock))
}

fn wait(path: &Path, lock: &File, kind: Kind, waiting: Waiting<'_>) -> Result<(), StoreError> {
    let mut tell = waiting.map(|w| move || w(path));
    let patience = tell.as_mut().map(|t| Patience {
        after: TELL_AFTER,
        tell: t,
    });
    fslock::wait(lock, kind, Instant::now() + LOCK_WAIT, patience).map_err(|e| match e {
        LockError::Timeout { .. } => StoreError::LockTimeout {
            path: path.to_owned(),
            limit: LOCK_WAIT,
        },
        LockError::Io(e) => io_error(format!("locking {}", path.display()))(e),
    })
}

/// Creates the missing directories above the policy, each 0755 whatever
/// the umask: the helper's account must be able to reach the file. Only
/// `sshjit init` calls it, for the configured policy location.
pub fn create_dirs(dir: &Path) -> Result<(), StoreError> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    for d in missing.into_iter().rev() {
        match fs::DirBuilder::new().mode(0o755).create(d) {
            Ok(()) => fs::set_permissions(d, fs::Permissions::from_mode(0o755))
                .map_err(io_error(format!("setting the mode of {}", d.display())))?,
            // Another edit created it first.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(format!("creating {}", d.display()))(e)),
        }
    }
    Ok(())
}
