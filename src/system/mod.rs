//! Calls into libc that std does not offer: the effective uid, the host
//! name, local-time conversion (as sshd does it, and as syslog timestamps
//! are written), a terminal prompt that does not echo, and the process
//! table with pidfd signals (`process`). This is the only module allowed to use
//! `unsafe`; each block says why it is sound.
#![allow(unsafe_code)]

pub mod process;

use std::ffi::CStr;
use std::io;

use sshjit_policy::time::{Civil, civil_to_unix};

/// The effective user id of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The real user id of this process.
pub fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// The login name of a uid from the password database, if it has one.
pub fn user_name(uid: u32) -> Option<String> {
    let mut pwd: libc::passwd = unsafe_zeroed_passwd();
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the duration of the call: `pwd` and
    // `result` are locals, `buf` has the length we pass. getpwuid_r writes
    // only within them.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points to a NUL-terminated string inside `buf`,
    // which is still alive.
    let name = unsafe { CStr::from_ptr(pwd.pw_name) };
    name.to_str().ok().map(str::to_owned)
}

/// Whether a local account of that name exists.
pub fn user_exists(name: &str) -> bool {
    let Ok(cname) = std::ffi::CString::new(name) else {
        return false;
    };
    let mut pwd: libc::passwd = unsafe_zeroed_passwd();
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in `user_name`; `cname` is NUL-terminated and outlives the call.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    rc == 0 && !result.is_null()
}

/// A local account as the kernel checks its access: uid, primary group and
/// supplementary groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// Looks a local account up by name (`getpwnam_r`, `getgrouplist`).
pub fn account(name: &str) -> Option<Account> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut pwd: libc::passwd = unsafe_zeroed_passwd();
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in `user_name`; `cname` is NUL-terminated and outlives the call.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    let (uid, gid) = (pwd.pw_uid, pwd.pw_gid);
    let mut groups = vec![0 as libc::gid_t; 64];
    loop {
        let mut n = libc::c_int::try_from(groups.len()).ok()?;
        // SAFETY: `cname` is NUL-terminated; `groups` has room for `n`
        // entries, and getgrouplist writes at most that many, setting `n`
        // to how many there are (returning -1 when they did not fit).
        let rc = unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        let n = usize::try_from(n).ok()?;
        if rc >= 0 {
            groups.truncate(n);
            break;
        }
        if n <= groups.len() || n > 65_536 {
            return None;
        }
        groups.resize(n, 0);
    }
    Some(Account {
        name: name.to_owned(),
        uid,
        gid,
        groups,
    })
}

fn unsafe_zeroed_passwd() -> libc::passwd {
    // SAFETY: `passwd` is a plain C struct of integers and pointers, for which
    // all-zero bytes (null pointers) is a valid value.
    unsafe { std::mem::zeroed() }
}

/// The kernel's host name (gethostname(2)).
pub fn hostname() -> io::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`; gethostname writes at
    // most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "host name is not UTF-8"))
}

/// This host's local-time rules, from the C library (sshd reads a
/// zone-less `expiry-time` with them).
#[derive(Clone, Copy, Debug, Default)]
pub struct HostLocalTime;

impl sshjit_policy::openssh::local_time::LocalTime for HostLocalTime {
    fn offset(&self, unix: i64) -> Option<i64> {
        local_offset(unix)
    }

    fn mktime_standard(&self, fields: &Civil) -> Option<i64> {
        mktime_standard(fields)
    }
}

/// The offset from UTC, in seconds, in effect at `unix` (localtime_r's tm_gmtoff).
// time_t and c_long are i64 here but narrower on other targets.
#[allow(clippy::useless_conversion)]
fn local_offset(unix: i64) -> Option<i64> {
    let t: libc::time_t = unix.try_into().ok()?;
    let mut tm = zeroed_tm();
    // SAFETY: `t` and `tm` are valid locals; localtime_r is reentrant and
    // writes only `tm`. It returns null on failure, which we check.
    let r = unsafe { libc::localtime_r(&t, &mut tm) };
    if r.is_null() {
        return None;
    }
    Some(i64::from(tm.tm_gmtoff))
}

/// mktime on the fields with `tm_isdst = 0`, as sshd's parse_absolute_time does.
#[allow(clippy::useless_conversion)]
fn mktime_standard(c: &Civil) -> Option<i64> {
    civil_to_unix(c)?;
    let mut tm = zeroed_tm();
    tm.tm_year = i32::try_from(c.year - 1900).ok()?;
    tm.tm_mon = c.month as i32 - 1;
    tm.tm_mday = c.day as i32;
    tm.tm_hour = c.hour as i32;
    tm.tm_min = c.minute as i32;
    tm.tm_sec = c.second as i32;
    tm.tm_isdst = 0;
    // SAFETY: `tm` is a valid, initialised local; mktime reads and normalises it.
    let t = unsafe { libc::mktime(&mut tm) };
    if t == -1 {
        return None;
    }
    Some(i64::from(t))
}

/// The instant that local calendar fields (this host's zone, summer time
/// decided by the zone rules) name, as syslog's classic timestamps are
/// written. `None` when the fields are out of range or do not exist.
#[allow(clippy::useless_conversion)]
pub fn local_to_unix(c: &Civil) -> Option<i64> {
    civil_to_unix(c)?;
    let mut tm = zeroed_tm();
    tm.tm_year = i32::try_from(c.year - 1900).ok()?;
    tm.tm_mon = c.month as i32 - 1;
    tm.tm_mday = c.day as i32;
    tm.tm_hour = c.hour as i32;
    tm.tm_min = c.minute as i32;
    tm.tm_sec = c.second as i32;
    tm.tm_isdst = -1;
    // SAFETY: `tm` is a valid, initialised local; mktime reads and normalises it.
    let t = unsafe { libc::mktime(&mut tm) };
    if t == -1 {
        return None;
    }
    Some(i64::from(t))
}

fn zeroed_tm() -> libc::tm {
    // SAFETY: `tm` is a plain C struct of integers and (on glibc) a pointer
    // to the zone name, for which all-zero bytes is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Asks on the controlling terminal for a secret (a password, a code)
/// without echoing it, and reads one line. Fails when there is no
/// terminal (use the commands' `--password-file` then).
pub fn read_secret(prompt: &str) -> io::Result<String> {
    use std::io::{BufRead, Read, Write};
    use std::os::fd::AsRawFd;
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    let fd = tty.as_raw_fd();
    // SAFETY: `termios` is a plain C struct of integers, for which all-zero
    // bytes is a valid value; tcgetattr fills it from a valid descriptor.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open for the lifetime of `tty`; `saved` is a local.
    if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    quiet.c_lflag |= libc::ECHONL;
    // SAFETY: as above; `quiet` is a copy of the terminal's own settings.
    if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &quiet) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut writer = &tty;
    let asked = writer
        .write_all(prompt.as_bytes())
        .and_then(|()| writer.flush());
    let mut line = String::new();
    let read = asked.and_then(|()| {
        io::BufReader::new(&tty)
            .take(4096)
            .read_line(&mut line)
            .map(drop)
    });
    // SAFETY: restores the settings read above on the same descriptor.
    unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &saved) };
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
