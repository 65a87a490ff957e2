//! Reading logins back from a syslog file for `report --logins`: the
//! helper's decision lines (`mode=keys user=... matched=g-1,g-2 ...
//! outcome=allow`) say which grants sshd was given, and sshd's own
//! `Accepted publickey for USER ... SHA256:...` lines, when the file has
//! them, confirm that a login followed.
//!
//! Accepted line prefixes: classic (`Nov 21 10:00:00 host tag[pid]: `,
//! local time, year inferred), ISO (`2026-11-21T10:00:00.123+01:00 host
//! tag[pid]: `), RFC 5424 (`<86>1 2026-11-21T10:00:00Z host tag pid - - `),
//! and none at all (`authpriv.info sshjit[pid]: `).

use std::collections::{BTreeSet, HashMap};
use std::io::{self, BufRead, BufReader, Read};
use std::time::Duration;

use sshjit_policy::time::{Civil, Timestamp};

/// Longest line considered; longer ones are skipped.
const MAX_LINE: u64 = 64 * 1024;
/// sshd's default LoginGraceTime: an Accepted line later than this after
/// the decision does not belong to it.
const GRACE: Duration = Duration::from_secs(120);

/// What a syslog line says, if it is one of ours or sshd's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A helper decision with `outcome=allow`.
    Allowed {
        time: Option<Timestamp>,
        /// The host in the syslog prefix, if any (the same for sshd's lines).
        origin: Option<String>,
        /// The helper's own `host=` field.
        host: Option<String>,
        user: String,
        fingerprint: Option<String>,
        matched: Vec<String>,
    },
    /// sshd accepted a public key or certificate.
    Accepted {
        time: Option<Timestamp>,
        origin: Option<String>,
        user: String,
        fingerprint: String,
    },
}

/// How one grant was used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Decisions that handed the grant to sshd (sshd asks about twice per
    /// login: before and after the signature).
    pub decisions: u64,
    /// Logins sshd confirmed (`Accepted publickey`) right after such a decision.
    pub logins: u64,
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
    pub hosts: BTreeSet<String>,
}

/// Everything read from one file.
#[derive(Debug, Default)]
pub struct LoginLog {
    pub by_grant: HashMap<String, Usage>,
    pub lines: u64,
    pub decisions: u64,
    /// sshd `Accepted` lines seen (0: the file has none, so `logins` is
    /// unknown rather than zero).
    pub accepted: u64,
}

/// Reads a syslog file. `reference` (the file's modification time) gives
/// classic timestamps their year; events outside `[since, until)` are
/// ignored when their time is known.
pub fn read<R: Read>(
    reader: R,
    reference: Timestamp,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> io::Result<LoginLog> {
    let mut reader = BufReader::new(reader);
    let mut log = LoginLog::default();
    // (syslog host, user, fingerprint) -> the last allow decision for it.
    type Key = (Option<String>, String, String);
    let mut pending: HashMap<Key, (Option<Timestamp>, Vec<String>)> = HashMap::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut reader).take(MAX_LINE).read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') && n as u64 == MAX_LINE {
            // Too long for a log line: skip the rest of it.
            let mut sink = Vec::new();
            reader.read_until(b'\n', &mut sink)?;
            continue;
        }
        log.lines += 1;
        let text = String::from_utf8_lossy(&buf);
        let Some(event) = parse_line(text.trim_end(), reference) else {
            continue;
        };
        let in_period = |t: Option<Timestamp>| {
            t.is_none_or(|t| since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u))
        };
        match event {
            Event::Allowed {
                time,
                origin,
                host,
                user,
                fingerprint,
                matched,
            } => {
                if !in_period(time) {
                    continue;
                }
                log.decisions += 1;
                for id in &matched {
                    let u = log.by_grant.entry(id.clone()).or_default();
                    u.decisions += 1;
                    if let Some(t) = time {
                        u.first = Some(u.first.map_or(t, |f| f.min(t)));
                        u.last = Some(u.last.map_or(t, |l| l.max(t)));
                    }
                    if let Some(h) = host.as_ref().or(origin.as_ref()) {
                        u.hosts.insert(h.clone());
                    }
                }
                if let Some(fp) = fingerprint {
                    pending.insert((origin, user, fp), (time, matched));
                }
            }
            Event::Accepted {
                time,
                origin,
                user,
                fingerprint,
            } => {
                if !in_period(time) {
                    continue;
                }
                log.accepted += 1;
                let key = (origin, user, fingerprint);
                let Some((decided, matched)) = pending.remove(&key) else {
                    continue;
                };
                let late = matches!((decided, time), (Some(d), Some(a)) if d.until(a) > GRACE);
                if late {
                    continue;
                }
                for id in matched {
                    log.by_grant.entry(id).or_default().logins += 1;
                }
            }
        }
    }
    Ok(log)
}

/// Parses one line; `None` for anything that is neither an allow
/// decision of the helper nor an sshd `Accepted` line.
pub fn parse_line(line: &str, reference: Timestamp) -> Option<Event> {
    let prefix = split_prefix(line, reference);
    let (tag, message) = match prefix.app {
        Some(app) => (tag_of(app)?, prefix.rest),
        None => find_tag(prefix.rest)?,
    };
    let (time, origin) = (prefix.time, prefix.origin);
    match tag {
        Tag::Sshjit => {
            let fields = parse_fields(message);
            let get = |k: &str| {
                fields
                    .iter()
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| v.clone())
            };
            if get("outcome").as_deref() != Some("allow") || get("mode").is_none() {
                return None;
            }
            let matched = get("matched")?
                .split(',')
                .filter(|id| !id.is_empty() && !id.ends_with("..."))
                .map(str::to_owned)
                .collect();
            Some(Event::Allowed {
                time,
                origin,
                host: get("host"),
                user: get("user")?,
                fingerprint: get("fp"),
                matched,
            })
        }
        Tag::Sshd => {
            let rest = message.strip_prefix("Accepted publickey for ")?;
            let (user, rest) = rest.split_once(' ')?;
            let (_, algo) = rest.split_once(" ssh2: ")?;
            let fingerprint = algo
                .split_whitespace()
                .find(|t| t.starts_with("SHA256:"))?
                .to_owned();
            Some(Event::Accepted {
                time,
                origin,
                user: user.to_owned(),
                fingerprint,
            })
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    Sshjit,
    Sshd,
}

/// The programs whose lines matter (sshd logs from `sshd-session` since
/// OpenSSH 9.8).
fn tag_of(app: &str) -> Option<Tag> {
    match app {
        "sshjit" => Some(Tag::Sshjit),
        "sshd" | "sshd-session" => Some(Tag::Sshd),
        _ => None,
    }
}

/// A line's timestamp and host, and the program when the format names it
/// in its own field (RFC 5424).
struct Prefix<'l> {
    time: Option<Timestamp>,
    origin: Option<String>,
    app: Option<&'l str>,
    rest: &'l str,
}

/// Splits off a timestamp and host prefix, when there is one.
fn split_prefix(line: &str, reference: Timestamp) -> Prefix<'_> {
    let mut s = line;
    // <PRI>
    if let Some((pri, rest)) = s.strip_prefix('<').and_then(|r| r.split_once('>'))
        && !pri.is_empty()
        && pri.len() <= 3
        && pri.bytes().all(|b| b.is_ascii_digit())
    {
        s = rest;
    }
    // RFC 5424: "1 TIMESTAMP HOST APP PROCID MSGID SD MSG"
    if let Some(rest) = s.strip_prefix("1 ") {
        let parts: Vec<&str> = rest.splitn(6, ' ').collect();
        if let [ts, host, app, _pid, _msgid, rest] = parts.as_slice() {
            return Prefix {
                time: Timestamp::parse_rfc3339(ts).ok(),
                origin: nil(host),
                app: Some(app),
                rest: skip_structured_data(rest),
            };
        }
    }
    let bare = |time, host: &str, rest| Prefix {
        time,
        origin: nil(host),
        app: None,
        rest,
    };
    // ISO timestamp and host.
    if let Some((ts, rest)) = s.split_once(' ')
        && let Ok(t) = Timestamp::parse_rfc3339(ts)
    {
        let (host, rest) = rest.split_once(' ').unwrap_or(("", rest));
        return bare(Some(t), host, rest);
    }
    // Classic: "Mmm dd hh:mm:ss host ".
    if let Some((t, rest)) = classic_time(s, reference) {
        let (host, rest) = rest.split_once(' ').unwrap_or(("", rest));
        return bare(Some(t), host, rest);
    }
    bare(None, "", s)
}

fn nil(host: &str) -> Option<String> {
    (!host.is_empty() && host != "-").then(|| host.to_owned())
}

fn skip_structured_data(s: &str) -> &str {
    let s = if let Some(rest) = s.strip_prefix("- ") {
        rest
    } else if s.starts_with('[') {
        // Skip [..][..] groups; values may hold escaped brackets.
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() && b[i] == b'[' {
            i += 1;
            while i < b.len() && b[i] != b']' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        }
        s.get(i..).unwrap_or("").trim_start()
    } else {
        s
    };
    s.trim_start_matches('\u{feff}')
}

fn classic_time(s: &str, reference: Timestamp) -> Option<(Timestamp, &str)> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| s.starts_with(m))? as u32 + 1;
    let rest = s.get(3..)?.strip_prefix(' ')?.trim_start_matches(' ');
    let (day, rest) = rest.split_once(' ')?;
    let (clock, rest) = rest.split_once(' ')?;
    let day: u32 = day.parse().ok()?;
    let mut hms = clock.split(':').map(|p| p.parse::<u32>().ok());
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next()??);
    let year = reference.to_civil().year;
    let at = |year| {
        crate::system::local_to_unix(&Civil {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    };
    let mut secs = at(year)?;
    // Classic lines have no year: a time well after the file was last
    // written belongs to the year before.
    if secs > reference.unix_seconds() + 2 * 86_400 {
        secs = at(year - 1)?;
    }
    Some((Timestamp::from_unix(secs, 0), rest))
}

/// `tag[pid]: message` or `tag: message` somewhere in `s`, for our tags.
fn find_tag(s: &str) -> Option<(Tag, &str)> {
    for name in ["sshjit", "sshd-session", "sshd"] {
        let mut from = 0;
        while let Some(i) = s[from..].find(name) {
            let start = from + i;
            let after = &s[start + name.len()..];
            let boundary = start == 0 || s.as_bytes()[start - 1] == b' ';
            let message = if let Some(rest) = after.strip_prefix('[') {
                rest.split_once("]: ")
                    .and_then(|(pid, m)| pid.bytes().all(|b| b.is_ascii_digit()).then_some(m))
            } else {
                after.strip_prefix(": ")
            };
            if let (true, Some(m)) = (boundary, message) {
                return Some((tag_of(name)?, m));
            }
            from = start + name.len();
        }
    }
    None
}

/// `key=value` pairs as `audit::Line` writes them: bare tokens, or quoted
/// with `\"`, `\\` and `\xNN` escapes.
pub fn parse_fields(s: &str) -> Vec<(&str, String)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let key_start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b' ' {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        let key = &s[key_start..i];
        i += 1;
        let mut value = String::new();
        if b.get(i) == Some(&b'"') {
            i += 1;
            let mut bytes = Vec::new();
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    match b[i + 1] {
                        // Two hex digits, read as bytes: a forged line may
                        // put anything there, a multi-byte character too.
                        b'x' if i + 3 < b.len() => {
                            let hex = |c: u8| char::from(c).to_digit(16);
                            let byte = hex(b[i + 2])
                                .zip(hex(b[i + 3]))
                                .map_or(b'?', |(h, l)| (h * 16 + l) as u8);
                            bytes.push(byte);
                            i += 4;
                        }
                        c => {
                            bytes.push(c);
                            i += 2;
                        }
                    }
                } else {
                    bytes.push(b[i]);
                    i += 1;
                }
            }
            i += 1;
            value = String::from_utf8_lossy(&bytes).into_owned();
        } else {
            let start = i;
            while i < b.len() && b[i] != b' ' {
                i += 1;
            }
            value.push_str(&s[start..i]);
        }
        out.push((key, value));
    }
    out
}

#[cfg(test)]
mod tests;
