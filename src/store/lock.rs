//! The policy's lock: `policy.json.lock` beside it, never deleted, so every
//! process locks the same inode. Edits hold it exclusively; readers that
//! compare the trail with the policy hold it shared.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use super::{PolicyFile, StoreError, io_error};
use crate::fs::secure as file;

/// How long an edit waits for another one to finish.
pub const LOCK_WAIT: Duration = Duration::from_secs(60);

/// Waits for the exclusive lock on `policy.json.lock` (never deleted, so
/// every edit locks the same inode).
pub fn lock(target: &PolicyFile) -> Result<File, StoreError> {
    let dir = target.dir();
    create_dirs(dir)?;
    file::check_directory(dir).map_err(StoreError::Insecure)?;
    let path = target.lock_path();
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| match e.kind() {
            // The usual cause: an admin who forgot sudo.
            io::ErrorKind::PermissionDenied => StoreError::Refused(format!(
                "cannot open {}: permission denied; changing the policy needs its owner's rights (run with sudo)",
                path.display()
            )),
            _ => io_error(format!("opening {}", path.display()))(e),
        })?;
    file::check_open_file(&path, &lock).map_err(StoreError::Insecure)?;
    wait_for(&path, || lock.try_lock())?;
    Ok(lock)
}

/// A shared lock for readers that compare the trail with the policy
/// (`audit verify`, `report`): no edit runs between the two reads. `None`
/// when no edit ever made a lock file, or the reader may not open it.
pub fn lock_shared(target: &PolicyFile) -> Result<Option<File>, StoreError> {
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
    file::check_open_file(&path, &lock).map_err(StoreError::Insecure)?;
    wait_for(&path, || lock.try_lock_shared())?;
    Ok(Some(lock))
}

/// Polls `try_lock` until it succeeds, saying so when it takes a while
/// and giving up after `LOCK_WAIT`.
fn wait_for(
    path: &Path,
    try_lock: impl Fn() -> Result<(), fs::TryLockError>,
) -> Result<(), StoreError> {
    let started = Instant::now();
    let mut told = false;
    let mut pause = Duration::from_millis(1);
    loop {
        match try_lock() {
            Ok(()) => return Ok(()),
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => {
                return Err(io_error(format!("locking {}", path.display()))(e));
            }
        }
        let waited = started.elapsed();
        if waited >= LOCK_WAIT {
            return Err(StoreError::Io {
                what: format!("locking {}", path.display()),
                error: io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "another edit has held the lock for over {}s",
                        LOCK_WAIT.as_secs()
                    ),
                ),
            });
        }
        if !told && waited >= Duration::from_secs(3) {
            crate::term::eprint(&format!(
                "waiting for {} (another edit is in progress)...\n",
                path.display()
            ));
            told = true;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Creates the missing directories above the policy, each 0755 whatever
/// the umask: the helper's account must be able to reach the file.
fn create_dirs(dir: &Path) -> Result<(), StoreError> {
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
