//! Advisory locks (flock, through std's `File::lock` family) taken with a
//! deadline: a lock held by a stuck process must never hang a login or an
//! edit forever.

use std::fmt;
use std::fs::{File, TryLockError};
use std::io;
use std::time::{Duration, Instant};

/// Which lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Shared,
    Exclusive,
}

/// Why a lock was not had.
#[derive(Debug)]
pub enum LockError {
    /// Still held by another process at the deadline.
    Timeout {
        waited: Duration,
    },
    Io(io::Error),
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Timeout { waited } => write!(
                f,
                "still held by another process after {:.1}s",
                waited.as_secs_f64()
            ),
            LockError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LockError {}

/// Someone to tell, once, when the wait grows long.
pub struct Patience<'a> {
    pub after: Duration,
    pub tell: &'a mut dyn FnMut(),
}

/// Takes the lock on `file`, polling until `deadline` (short pauses that
/// grow to 20 ms); `patience` hears once if the wait passes its mark.
pub fn wait(
    file: &File,
    kind: Kind,
    deadline: Instant,
    mut patience: Option<Patience<'_>>,
) -> Result<(), LockError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        let tried = match kind {
            Kind::Shared => file.try_lock_shared(),
            Kind::Exclusive => file.try_lock(),
        };
        match tried {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(LockError::Io(e)),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(LockError::Timeout {
                waited: now - started,
            });
        }
        if let Some(p) = &mut patience
            && now - started >= p.after
        {
            (p.tell)();
            patience = None;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_times_out_at_the_deadline_and_tells_once() {
        let path = std::env::temp_dir().join(format!("sshjit-lock-{}", std::process::id()));
        let holder = File::create(&path).unwrap();
        holder.lock().unwrap();
        let other = File::open(&path).unwrap();
        let mut told = 0;
        let mut tell = || told += 1;
        let r = wait(
            &other,
            Kind::Exclusive,
            Instant::now() + Duration::from_millis(200),
            Some(Patience {
                after: Duration::from_millis(50),
                tell: &mut tell,
            }),
        );
        assert!(matches!(r, Err(LockError::Timeout { .. })), "{r:?}");
        assert_eq!(told, 1);
        drop(holder);
        wait(
            &other,
            Kind::Shared,
            Instant::now() + Duration::from_secs(30),
            None,
        )
        .unwrap();
        std::fs::remove_file(&path).unwrap();
    }
}
