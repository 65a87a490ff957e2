//! The on-call schedule (`oncall` in server.toml, default
//! `/etc/sshjit/oncall.toml`, optional): weekly shifts per person or
//! group, in a time zone. While a requester is on call for a role, their
//! requests for it are approved at once (and recorded as such).
//!
//! ```toml
//! time_zone = "Europe/Berlin"          # default for the shifts below (default UTC)
//!
//! [[shift]]
//! who = ["group:sre-eu"]               # group:NAME or user:NAME
//! roles = ["user"]                     # roles approved at once during the shift
//! weekly = ["mon-fri 09:00-17:00", "sat 10:00-14:00", "sun 22:00-06:00"]
//! time_zone = "America/New_York"       # optional, this shift's own
//! ```
//!
//! A window whose end is not after its start runs past midnight into the
//! next day (`sun 22:00-06:00` ends Monday 06:00); `24:00` is the end of a
//! day. Times are local to the zone (the system tz database), so shifts
//! follow daylight saving time. The file is read again when it changes; a
//! file that stops validating puts nobody on call (requests then wait for
//! approvers) and is logged.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use serde::Deserialize;
use sshjit::fs::secure::{self as file, FileError};

use crate::roles::Member;

const MAX_FILE: usize = 256 * 1024;
const MAX_SHIFTS: usize = 10_000;
const MAX_WINDOWS: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    time_zone: Option<String>,
    #[serde(default)]
    shift: Vec<RawShift>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShift {
    who: Vec<String>,
    roles: Vec<String>,
    weekly: Vec<String>,
    time_zone: Option<String>,
}

/// One weekly window: on these days (bit 0 = Monday), from `start` for
/// `length` minutes (which may run into the next day).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Window {
    days: u8,
    start: u16,
    length: u16,
}

#[derive(Clone, Debug)]
struct Shift {
    who: Vec<Member>,
    roles: Vec<String>,
    windows: Vec<Window>,
    zone: TimeZone,
}

/// The schedule, checked.
#[derive(Clone, Debug, Default)]
pub struct Schedule {
    shifts: Vec<Shift>,
}

fn day(s: &str) -> Result<u8, String> {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    DAYS.iter()
        .position(|d| s.eq_ignore_ascii_case(d))
        .map(|i| i as u8)
        .ok_or_else(|| format!("{s:?}: expected a day as mon, tue, wed, thu, fri, sat or sun"))
}

fn minutes(s: &str) -> Result<u16, String> {
    let bad = || format!("{s:?}: expected HH:MM (00:00 to 24:00)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// `DAY[-DAY] HH:MM-HH:MM`.
fn window(s: &str) -> Result<Window, String> {
    let (days, times) = s.trim().split_once(' ').ok_or_else(|| {
        format!("{s:?}: expected \"DAY[-DAY] HH:MM-HH:MM\", e.g. \"mon-fri 09:00-17:00\"")
    })?;
    let (first, last) = match days.split_once('-') {
        Some((a, b)) => (day(a)?, day(b)?),
        None => (day(days)?, day(days)?),
    };
    let mut mask = 0u8;
    let mut d = first;
    loop {
        mask |= 1 << d;
        if d == last {
            break;
        }
        d = (d + 1) % 7;
    }
    let (from, to) = times
        .trim()
        .split_once('-')
        .ok_or_else(|| format!("{s:?}: expected HH:MM-HH:MM after the days"))?;
    let (start, end) = (minutes(from)?, minutes(to)?);
    if start == 24 * 60 {
        return Err(format!("{s:?}: a window cannot start at 24:00"));
    }
    let length = if end > start {
        end - start
    } else {
        end + 24 * 60 - start
    };
    Ok(Window {
        days: mask,
        start,
        length,
    })
}

fn zone(name: &str) -> Result<TimeZone, String> {
    if name.len() > 64 {
        return Err("time_zone: too long".into());
    }
    TimeZone::get(name).map_err(|e| format!("time_zone {name:?}: {e}"))
}

/// Parses a schedule; `path` is for messages.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Schedule, String> {
    let at = |m: String| format!("{}: {m}", path.display());
    let text = std::str::from_utf8(bytes).map_err(|_| at("not UTF-8".into()))?;
    let raw: RawFile =
        toml::from_str(text).map_err(|e| at(crate::config::toml_message(text, &e)))?;
    if raw.shift.len() > MAX_SHIFTS {
        return Err(at(format!("more than {MAX_SHIFTS} shifts")));
    }
    let default_zone = match &raw.time_zone {
        Some(z) => zone(z).map_err(at)?,
        None => TimeZone::UTC,
    };
    let mut shifts = Vec::new();
    for (i, s) in raw.shift.into_iter().enumerate() {
        let here = |m: String| at(format!("shift[{i}]: {m}"));
        if s.who.is_empty() || s.roles.is_empty() || s.weekly.is_empty() {
            return Err(here(
                "who, roles and weekly must each name at least one".into(),
            ));
        }
        if s.who.len() > MAX_WINDOWS || s.roles.len() > MAX_WINDOWS || s.weekly.len() > MAX_WINDOWS
        {
            return Err(here(format!(
                "at most {MAX_WINDOWS} entries in who, roles and weekly"
            )));
        }
        let who = s
            .who
            .iter()
            .map(|w| Member::parse(w))
            .collect::<Result<Vec<_>, _>>()
            .map_err(here)?;
        for r in &s.roles {
            sshjit::store::request::RoleName::new(r.as_str())
                .map_err(|e| here(format!("roles: {e}")))?;
        }
        let windows = s
            .weekly
            .iter()
            .map(|w| window(w))
            .collect::<Result<Vec<_>, _>>()
            .map_err(here)?;
        let zone = match &s.time_zone {
            Some(z) => zone(z).map_err(here)?,
            None => default_zone.clone(),
        };
        shifts.push(Shift {
            who,
            roles: s.roles,
            windows,
            zone,
        });
    }
    Ok(Schedule { shifts })
}

impl Schedule {
    /// Whether the person is on call for `role` at `unix` (seconds).
    pub fn on_call(&self, person: &str, groups: &[String], role: &str, unix: i64) -> bool {
        let Ok(at) = jiff::Timestamp::from_second(unix) else {
            return false;
        };
        self.shifts.iter().any(|s| {
            s.roles.iter().any(|r| r == role)
                && s.who.iter().any(|m| m.includes(person, groups))
                && in_shift(s, at)
        })
    }
}

fn in_shift(s: &Shift, at: jiff::Timestamp) -> bool {
    let local = at.to_zoned(s.zone.clone());
    let today = weekday_index(local.weekday());
    let minute = u32::from(local.hour() as u16 * 60 + local.minute() as u16);
    let yesterday = (today + 6) % 7;
    s.windows.iter().any(|w| {
        let (start, end) = (u32::from(w.start), u32::from(w.start) + u32::from(w.length));
        // Began today, or began yesterday and runs past midnight.
        (w.days & (1 << today) != 0 && start <= minute && minute < end)
            || (w.days & (1 << yesterday) != 0 && end > 1440 && minute + 1440 < end)
    })
}

fn weekday_index(d: Weekday) -> u8 {
    (d.to_monday_zero_offset()) as u8
}

/// The schedule file, read again when it changes.
pub struct OnCall {
    path: PathBuf,
    state: Mutex<(Option<(SystemTime, u64)>, Schedule)>,
}

impl OnCall {
    /// Reads the file now: a bad file stops the server from starting.
    pub fn load(path: &Path) -> Result<OnCall, String> {
        let oncall = OnCall {
            path: path.to_owned(),
            state: Mutex::new((None, Schedule::default())),
        };
        let (stamp, schedule) = read(path)?;
        if let Ok(mut s) = oncall.state.lock() {
            *s = (stamp, schedule);
        }
        Ok(oncall)
    }

    /// The schedule as the file is now.
    pub fn schedule(&self) -> Schedule {
        let stamp = stamp_of(&self.path);
        let Ok(mut state) = self.state.lock() else {
            return Schedule::default();
        };
        if state.0 != stamp {
            match read(&self.path) {
                Ok((stamp, schedule)) => *state = (stamp, schedule),
                Err(e) => {
                    crate::log::event("oncall", &[("error", &e), ("effect", "nobody on call")]);
                    *state = (stamp, Schedule::default());
                }
            }
        }
        state.1.clone()
    }
}

fn stamp_of(path: &Path) -> Option<(SystemTime, u64)> {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
}

fn read(path: &Path) -> Result<(Option<(SystemTime, u64)>, Schedule), String> {
    let stamp = stamp_of(path);
    match file::read_secure(path, MAX_FILE) {
        Ok(bytes) => Ok((stamp, parse(path, &bytes)?)),
        Err(FileError::NotFound(_)) if !path.is_symlink() => Ok((None, Schedule::default())),
        Err(e) => Err(format!("oncall: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_second()
    }

    fn sched(text: &str) -> Schedule {
        parse(Path::new("oncall.toml"), text.as_bytes()).unwrap()
    }

    #[test]
    fn windows_in_a_zone_and_past_midnight() {
        let s = sched(
            r#"
time_zone = "UTC"
[[shift]]
who = ["user:alice", "group:sre"]
roles = ["user"]
weekly = ["mon-fri 09:00-17:00", "sun 22:00-06:00"]
[[shift]]
who = ["user:bob"]
roles = ["user"]
weekly = ["wed 09:00-10:00"]
time_zone = "Asia/Kathmandu"
"#,
        );
        let g: Vec<String> = vec![];
        // 2026-11-23 is a Monday.
        assert!(s.on_call("alice", &g, "user", at("2026-11-23T09:00:00Z")));
        assert!(!s.on_call("alice", &g, "user", at("2026-11-23T17:00:00Z")));
        assert!(!s.on_call("alice", &g, "other", at("2026-11-23T10:00:00Z")));
        assert!(s.on_call("carol", &["sre".into()], "user", at("2026-11-23T10:00:00Z")));
        assert!(!s.on_call("carol", &g, "user", at("2026-11-23T10:00:00Z")));
        // Sunday 22:00 to Monday 06:00.
        assert!(s.on_call("alice", &g, "user", at("2026-11-22T23:30:00Z")));
        assert!(s.on_call("alice", &g, "user", at("2026-11-23T05:59:00Z")));
        assert!(!s.on_call("alice", &g, "user", at("2026-11-24T05:00:00Z")));
        // Kathmandu is UTC+05:45: Wednesday 09:00 there is 03:15 UTC.
        assert!(s.on_call("bob", &g, "user", at("2026-11-25T03:15:00Z")));
        assert!(!s.on_call("bob", &g, "user", at("2026-11-25T09:00:00Z")));
    }

    #[test]
    fn bad_schedules_say_where() {
        for (text, needle) in [
            (
                "[[shift]]\nwho=[\"user:a\"]\nroles=[\"r\"]\nweekly=[\"mon 9-17\"]\n",
                "HH:MM",
            ),
            (
                "[[shift]]\nwho=[\"user:a\"]\nroles=[\"r\"]\nweekly=[\"xyz 09:00-10:00\"]\n",
                "day",
            ),
            (
                "[[shift]]\nwho=[\"user:a\"]\nroles=[\"r\"]\nweekly=[\"mon 09:00-10:00\"]\ntime_zone=\"Mars/Base\"\n",
                "Mars",
            ),
            (
                "[[shift]]\nwho=[\"team:a\"]\nroles=[\"r\"]\nweekly=[\"mon 09:00-10:00\"]\n",
                "group:NAME",
            ),
            (
                "[[shift]]\nwho=[\"user:a\"]\nroles=[\"r\"]\nweekly=[\"mon 09:00-10:00\"]\nextra=1\n",
                "line 5",
            ),
        ] {
            let e = parse(Path::new("oncall.toml"), text.as_bytes()).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
