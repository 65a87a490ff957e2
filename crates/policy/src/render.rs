//! Writes what sshd reads: authorized_keys lines for `keys`, principals
//! lines for `principals`. Options are written here, by our own rules,
//! because sshd's option grammar is the only one that counts.

use std::fmt;

use crate::openssh::local_time::{self, LocalTime};
use crate::openssh::options as sshd_grammar;
use crate::time::{Civil, Timestamp};
use crate::{Grant, GrantId, Subject};

/// How `expiry-time` is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExpiryStyle {
    /// `YYYYMMDDHHMMSSZ`: UTC, unambiguous; needs OpenSSH 9.1 or later.
    Utc,
    /// `YYYYMMDDHHMMSS` in this host's zone, written so that sshd's own
    /// parse (mktime with tm_isdst = 0) gives back the same instant;
    /// accepted by every OpenSSH that has `expiry-time`.
    #[default]
    Local,
}

impl ExpiryStyle {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "utc" => Some(ExpiryStyle::Utc),
            "local" => Some(ExpiryStyle::Local),
            _ => None,
        }
    }
}

/// How to write `expiry-time` for this call: in UTC, or in the zone sshd
/// reads zone-less times in.
#[derive(Clone, Copy)]
pub enum Expiry<'z> {
    Utc,
    Local(&'z dyn LocalTime),
}

impl<'z> Expiry<'z> {
    /// The configured style, with the host's zone rules for `local`.
    pub fn new(style: ExpiryStyle, zone: &'z dyn LocalTime) -> Self {
        match style {
            ExpiryStyle::Utc => Expiry::Utc,
            ExpiryStyle::Local => Expiry::Local(zone),
        }
    }
}

impl fmt::Debug for Expiry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expiry::Utc => "Utc",
            Expiry::Local(_) => "Local",
        })
    }
}

/// The expiry could not be written in the chosen style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError(pub String);

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RenderError {}

/// The output for sshd, and which grants stand behind each line.
#[derive(Debug, Default)]
pub struct Rendered<'p, 'a> {
    pub text: Vec<u8>,
    /// One entry per printed line: the grants it stands for.
    pub lines: Vec<Vec<&'p GrantId<'a>>>,
}

/// One output line before the expiry is written: lines with the same
/// subject and options are merged, keeping the latest expiry.
struct Entry<'p, 'a> {
    grant: &'p Grant<'a>,
    /// The line's `from` patterns (empty: any address): the grant's own,
    /// or the union of merged principal grants'.
    from: Vec<&'p str>,
    expires_at: Timestamp,
    ids: Vec<&'p GrantId<'a>>,
}

/// Renders the valid grants, one line per distinct (subject, options),
/// in document order. A grant in the last fraction of a second before a
/// fractional `expires_at` has no whole second left that sshd would accept;
/// its line is left out rather than printed already expired.
///
/// Principals are rendered so that what sshd allows is what the policy
/// allows: sshd applies only the *first* line naming a principal the
/// certificate carries (a key, by contrast, is tried line after line). So
/// principal grants with the same command and `restrict` become one line
/// whose `from` is the union of theirs (none when one of them has none;
/// not when a pattern is negated, which a union could turn against the
/// other grant), and the lines are ordered most permissive first: without
/// `from`, then without `command`, then without `restrict`.
pub fn render<'p, 'a>(
    valid: &[&'p Grant<'a>],
    expiry: Expiry<'_>,
    now: Timestamp,
) -> Result<Rendered<'p, 'a>, RenderError> {
    let mut entries: Vec<Entry<'p, 'a>> = Vec::with_capacity(valid.len());
    for &g in valid {
        let from: Vec<&'p str> = g.from.iter().map(|p| p.as_str()).collect();
        match entries.iter_mut().find(|e| same_line(e.grant, g)) {
            Some(e) => {
                e.expires_at = e.expires_at.max(g.expires_at);
                e.ids.push(&g.id);
                continue;
            }
            None if matches!(g.subject, Subject::Principal(_)) => {
                if let Some(e) = entries
                    .iter_mut()
                    .find(|e| mergeable_principals(e, g, &from))
                {
                    if e.from.is_empty() || from.is_empty() {
                        e.from.clear();
                    } else {
                        for p in from {
                            if !e.from.contains(&p) {
                                e.from.push(p);
                            }
                        }
                    }
                    e.expires_at = e.expires_at.max(g.expires_at);
                    e.ids.push(&g.id);
                    continue;
                }
            }
            None => {}
        }
        entries.push(Entry {
            grant: g,
            from,
            expires_at: g.expires_at,
            ids: vec![&g.id],
        });
    }
    // Stable: document order among equals; keys keep it entirely.
    entries.sort_by_key(|e| match e.grant.subject {
        Subject::Principal(_) => (
            !e.from.is_empty(),
            e.grant.command.is_some(),
            e.grant.restrict,
        ),
        Subject::Key(_) => (false, false, false),
    });
    let mut out = Rendered {
        text: Vec::with_capacity(entries.len() * 160),
        lines: Vec::with_capacity(entries.len()),
    };
    for e in entries {
        if last_whole_second(e.expires_at) < now.unix_seconds() {
            continue;
        }
        let start = out.text.len();
        let expiry = expiry_value(e.expires_at, expiry)?;
        write_line(&mut out.text, e.grant, &e.from, &expiry);
        read_back(&out.text[start..], e.grant, &e.from, &expiry)?;
        out.lines.push(e.ids);
    }
    Ok(out)
}

fn same_line(a: &Grant<'_>, b: &Grant<'_>) -> bool {
    let subject = match (&a.subject, &b.subject) {
        (Subject::Key(x), Subject::Key(y)) => x.same_key(y),
        (Subject::Principal(x), Subject::Principal(y)) => x == y,
        _ => false,
    };
    subject && a.from == b.from && a.command == b.command && a.restrict == b.restrict
}

/// Whether principal grant `g` (with `from`) joins entry `e`'s line: same
/// principal, command and `restrict`, and no negated `from` pattern on
/// either side (`!a` in one grant's list would refuse an address the other
/// grant allows).
fn mergeable_principals(e: &Entry<'_, '_>, g: &Grant<'_>, from: &[&str]) -> bool {
    let same_principal = matches!(
        (&e.grant.subject, &g.subject),
        (Subject::Principal(x), Subject::Principal(y)) if x == y
    );
    let negated = |l: &[&str]| l.iter().any(|p| p.starts_with('!'));
    same_principal
        && e.grant.command == g.command
        && e.grant.restrict == g.restrict
        && !negated(&e.from)
        && !negated(from)
}

fn write_line(out: &mut Vec<u8>, g: &Grant<'_>, from: &[&str], expiry: &str) {
    out.extend_from_slice(b"expiry-time=\"");
    out.extend_from_slice(expiry.as_bytes());
    out.push(b'"');
    if !from.is_empty() {
        out.extend_from_slice(b",from=\"");
        out.extend_from_slice(from.join(",").as_bytes());
        out.push(b'"');
    }
    if let Some(cmd) = &g.command {
        out.extend_from_slice(b",command=\"");
        write_quoted_body(out, cmd.as_str());
        out.push(b'"');
    }
    if g.restrict {
        out.extend_from_slice(b",restrict");
    }
    out.push(b' ');
    match &g.subject {
        Subject::Key(k) => {
            out.extend_from_slice(k.key_type().as_bytes());
            out.push(b' ');
            out.extend_from_slice(k.base64().as_bytes());
            if !k.comment().is_empty() {
                out.push(b' ');
                out.extend_from_slice(k.comment().as_bytes());
            }
        }
        Subject::Principal(p) => out.extend_from_slice(p.as_str().as_bytes()),
    }
    out.push(b'\n');
}

/// Reads a written line back with sshd's grammar and checks that sshd will
/// see exactly the options and the key or principal we meant.
fn read_back(line: &[u8], g: &Grant<'_>, from: &[&str], expiry: &str) -> Result<(), RenderError> {
    let fail = |why: String| {
        Err(RenderError(format!(
            "grant {}: line would be misread by sshd: {why}",
            g.id
        )))
    };
    let Ok(text) = std::str::from_utf8(line) else {
        return fail("not UTF-8".into());
    };
    let text = text.strip_suffix('\n').unwrap_or(text);
    let parsed = match &g.subject {
        Subject::Key(_) => sshd_grammar::parse_keys_line(text),
        Subject::Principal(_) => sshd_grammar::parse_principals_line(text),
    };
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => return fail(e.to_string()),
    };
    let joined = from.join(",");
    let mut expected: Vec<(&str, Option<&str>)> = vec![("expiry-time", Some(expiry))];
    if !from.is_empty() {
        expected.push(("from", Some(&joined)));
    }
    if let Some(c) = &g.command {
        expected.push(("command", Some(c.as_str())));
    }
    if g.restrict {
        expected.push(("restrict", None));
    }
    let got: Vec<(&str, Option<&str>)> = parsed
        .options
        .iter()
        .map(|o| (o.name.as_str(), o.value.as_deref()))
        .collect();
    if got != expected {
        return fail(format!("options {got:?}, meant {expected:?}"));
    }
    let subject_ok = match &g.subject {
        Subject::Key(k) => {
            let mut parts = parsed.subject.split(' ');
            parts.next() == Some(k.key_type()) && parts.next() == Some(k.base64())
        }
        Subject::Principal(p) => parsed.subject == p.as_str(),
    };
    if !subject_ok {
        return fail(format!("subject {:?}", parsed.subject));
    }
    Ok(())
}

/// The body of a quoted option value: sshd's opt_dequote turns `\"` into `"`
/// and keeps every other byte, so only `"` needs escaping. A value ending in
/// `\` cannot be written; validation refuses such commands.
pub fn write_quoted_body(out: &mut Vec<u8>, value: &str) {
    for &b in value.as_bytes() {
        if b == b'"' {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// The last whole second in which sshd may accept a grant ending at `expires_at`.
fn last_whole_second(expires_at: Timestamp) -> i64 {
    expires_at.unix_seconds() - 1
}

/// The `expiry-time` value for a grant ending at `expires_at`.
///
/// sshd accepts a key while `now <= expiry-time` with `now` in whole seconds,
/// so the last second it may accept is the one before `expires_at` starts:
/// we write `floor(expires_at) - 1s`, and sshd's window never outlasts ours.
pub fn expiry_value(expires_at: Timestamp, expiry: Expiry<'_>) -> Result<String, RenderError> {
    let last = last_whole_second(expires_at);
    match expiry {
        Expiry::Utc => {
            let mut s = Timestamp::from_unix(last, 0).to_civil().compact();
            s.push('Z');
            Ok(s)
        }
        Expiry::Local(zone) => local_time::sshd_fields(last, zone)
            .as_ref()
            .map(Civil::compact)
            .ok_or_else(|| {
                RenderError(format!(
                    "cannot write expiry {} in this host's local time",
                    expires_at
                ))
            }),
    }
}

#[cfg(test)]
mod tests;
