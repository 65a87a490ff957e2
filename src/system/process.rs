//! The process table as Linux shows it in /proc, and signals sent through
//! pidfds (so a process that exited between the scan and the signal, and
//! whose id was reused, is never hit). `sshjit reap` uses it to find sshd's
//! sessions and end them.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Most bytes read from one /proc file (environ, cmdline, stat).
const MAX_PROC_FILE: u64 = 256 * 1024;

/// One process, as far as sshjit needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// Clock ticks after boot: with `pid`, the process's identity.
    pub start_ticks: u64,
    /// Where its executable is (`/proc/PID/exe`), when it can be read.
    pub exe: Option<PathBuf>,
}

impl Process {
    /// The executable's file name (`sshd`, `sshd-session`, ...).
    pub fn exe_name(&self) -> Option<&OsStr> {
        self.exe.as_deref().and_then(Path::file_name)
    }

    /// When it started, on the wall clock (to the clock tick).
    pub fn started(&self) -> Option<SystemTime> {
        let hz = ticks_per_second();
        let uptime = uptime()?;
        let since_boot = Duration::from_millis(self.start_ticks.saturating_mul(1000) / hz);
        SystemTime::now().checked_sub(uptime.checked_sub(since_boot)?)
    }
}

/// Every process in /proc that could be read (processes come and go
/// while we read: those that vanish are left out).
pub fn scan() -> io::Result<Vec<Process>> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(p) = read_process(pid) {
            out.push(p);
        }
    }
    Ok(out)
}

/// One process, or `None` when it is gone or unreadable.
pub fn read_process(pid: u32) -> Option<Process> {
    let dir = PathBuf::from(format!("/proc/{pid}"));
    let stat = read_bounded(&dir.join("stat")).ok()?;
    let stat = String::from_utf8_lossy(&stat);
    // `pid (comm) state ppid ...`: comm may hold anything, even ") ",
    // so the fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); ppid is field 4, starttime field 22.
    let ppid = fields.get(1)?.parse().ok()?;
    let start_ticks = fields.get(19)?.parse().ok()?;
    let status = read_bounded(&dir.join("status")).ok()?;
    let uid = String::from_utf8_lossy(&status)
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let exe = fs::read_link(dir.join("exe")).ok();
    Some(Process {
        pid,
        ppid,
        uid,
        start_ticks,
        exe,
    })
}

/// The value of `name` in the environment the process was started with
/// (`/proc/PID/environ`; the process itself could have changed it since).
pub fn environ_var(pid: u32, name: &str) -> Option<Vec<u8>> {
    let bytes = read_bounded(Path::new(&format!("/proc/{pid}/environ"))).ok()?;
    let prefix = format!("{name}=");
    bytes
        .split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(prefix.as_bytes()))
        .map(<[u8]>::to_vec)
}

fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    File::open(path)?
        .take(MAX_PROC_FILE)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// Seconds since boot (`/proc/uptime`, the clock /proc's start times count on).
fn uptime() -> Option<Duration> {
    let text = fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

/// `sysconf(_SC_CLK_TCK)`: the unit of /proc's start times.
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 on error.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100)
}

/// A handle on one process that stays bound to it even after its id is
/// reused (a pidfd).
#[derive(Debug)]
pub struct Handle {
    fd: OwnedFd,
    pub pid: u32,
}

impl Handle {
    /// Opens a pidfd for `p` and checks it is still the same process (its
    /// start time unchanged): `None` when it is gone or was replaced.
    pub fn open(p: &Process) -> io::Result<Option<Handle>> {
        let pid = libc::pid_t::try_from(p.pid)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
        // SAFETY: pidfd_open takes a pid and flags and returns a new file
        // descriptor or -1; no memory is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ESRCH) {
                Ok(None)
            } else {
                Err(e)
            };
        }
        // SAFETY: `fd` is a descriptor the kernel just gave us and nothing
        // else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // Opened after the scan: the process under that id must still be
        // the one we saw.
        match read_process(p.pid) {
            Some(now) if now.start_ticks == p.start_ticks => Ok(Some(Handle { fd, pid: p.pid })),
            _ => Ok(None),
        }
    }

    /// Sends `signal`; `Ok(false)` when the process has already exited.
    pub fn signal(&self, signal: i32) -> io::Result<bool> {
        // SAFETY: pidfd_send_signal takes our open pidfd, a signal number,
        // a null siginfo (allowed: the kernel fills it as for kill(2)) and
        // no flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            Ok(false)
        } else {
            Err(e)
        }
    }

    /// Whether the process has exited (its pidfd is readable).
    pub fn exited(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, count 1, no wait.
        let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
        rc > 0 && pfd.revents & libc::POLLIN != 0
    }
}

/// `SIGTERM` and `SIGKILL`, for callers that need no libc.
pub const SIGTERM: i32 = libc::SIGTERM;
pub const SIGKILL: i32 = libc::SIGKILL;
