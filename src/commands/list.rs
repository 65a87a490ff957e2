//! `sshjit list`: the grants valid now as a table (id, user, key
//! fingerprint or principal, hosts, time left, reason, by), with `--all`
//! also the expired, revoked and not-yet-valid ones, marked; the active
//! revocations and the frozen state; `--json` for scripts.

use std::fmt::Write as _;

use clap::Args;
use serde_json::{Value, json};

use super::context::{self, Context};
use super::failure::Failure;
use super::output::Output;
use super::remote::Remote;
use crate::Globals;
use crate::store::tail::read_tail;
use crate::store::trail::{self, Action, Record};
use crate::store::{self, RevocationRule};
use sshjit_policy::evaluate::{revocation_of, time_refusal};
use sshjit_policy::text::quote_for_display;
use sshjit_policy::time::{Timestamp, format_duration};
use sshjit_policy::{Grant, Policy, Refusal, Subject, Username};

#[derive(Args, Debug, Clone)]
pub struct ListArgs {
    /// Only grants for this account
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Also expired, revoked and not-yet-valid grants
    #[arg(long)]
    pub all: bool,
    /// JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// Where a grant stands right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Valid,
    /// In its window and not revoked, but the policy is frozen.
    Frozen,
    NotYetValid,
    Expired,
    /// Named by `revocations[i]`.
    Revoked(usize),
}

impl Status {
    pub fn of(policy: &Policy<'_>, g: &Grant<'_>, now: Timestamp) -> Status {
        match (time_refusal(g, now), revocation_of(policy, g)) {
            (Some(Refusal::Expired), _) => Status::Expired,
            (_, Some(i)) => Status::Revoked(i),
            (Some(_), None) => Status::NotYetValid,
            (None, None) if policy.frozen && !g.break_glass => Status::Frozen,
            (None, None) => Status::Valid,
        }
    }

    /// Shown without `--all`: what works now or would after a thaw.
    pub fn is_current(self) -> bool {
        matches!(self, Status::Valid | Status::Frozen)
    }

    pub fn name(self) -> &'static str {
        match self {
            Status::Valid => "valid",
            Status::Frozen => "frozen",
            Status::NotYetValid => "not-yet-valid",
            Status::Expired => "expired",
            Status::Revoked(_) => "revoked",
        }
    }
}

pub fn run(globals: &Globals, args: &ListArgs) -> Result<Output, Failure> {
    let user = args
        .user
        .as_deref()
        .map(|u| Username::new(u).map_err(|e| Failure::usage(format!("--user: {e}"))))
        .transpose()?;
    let (origin, bytes) = match Remote::from_globals(globals, false)? {
        Some(remote) => (
            remote.url.to_string(),
            RemoteOrLocal::Remote(remote.fetch("/v1/admin/policy")?, remote),
        ),
        None => {
            let ctx = Context::load(globals)?;
            let Some(bytes) = store::read_policy(&ctx.file)? else {
                return Err(Failure::refused(format!(
                    "there is no policy at {} (create it with `sshjit init`)",
                    ctx.policy_display()
                )));
            };
            (ctx.policy_display(), RemoteOrLocal::Local(bytes, ctx))
        }
    };
    let policy = Policy::parse(bytes.document()).map_err(|e| {
        let e = match &bytes {
            RemoteOrLocal::Local(_, ctx) => crate::fs::secure::shown(&ctx.file.policy, e),
            RemoteOrLocal::Remote(..) => e,
        };
        Failure::refused(format!(
            "the policy {origin} is invalid: {e}; every login is denied until it is fixed (`sshjit check` shows where)"
        ))
    })?;
    let freeze = if policy.frozen {
        match &bytes {
            RemoteOrLocal::Local(_, ctx) => last_freeze(ctx),
            RemoteOrLocal::Remote(_, remote) => remote
                .fetch("/v1/admin/trail")
                .ok()
                .and_then(|t| last_freeze_in(&t)),
        }
    } else {
        None
    };
    let now = context::now();
    let rows: Vec<(&Grant<'_>, Status)> = policy
        .grants
        .iter()
        .filter(|g| user.as_ref().is_none_or(|u| g.user == *u))
        .map(|g| (g, Status::of(&policy, g, now)))
        .filter(|(_, s)| args.all || s.is_current())
        .collect();
    let revocations: Vec<usize> = (0..policy.revocations.len())
        .filter(|&i| match &user {
            None => true,
            Some(u) => {
                let t = &policy.revocations[i].target;
                let rule = RevocationRule::new(t);
                policy.grants.iter().any(|g| g.user == *u && rule.names(g))
                    || matches!(t, sshjit_policy::Target::User(x) if x == u)
            }
        })
        .collect();
    let view = View {
        origin,
        policy: &policy,
        rows,
        revocations,
        freeze: freeze.as_ref(),
        now,
    };
    Ok(Output::text(if args.json {
        view.json()
    } else {
        view.table()
    }))
}

/// Where the document came from.
enum RemoteOrLocal {
    Local(Vec<u8>, Context),
    Remote(Vec<u8>, Remote),
}

impl RemoteOrLocal {
    fn document(&self) -> &[u8] {
        match self {
            RemoteOrLocal::Local(b, _) | RemoteOrLocal::Remote(b, _) => b,
        }
    }
}

/// The last freeze in a whole trail's bytes.
fn last_freeze_in(trail_bytes: &[u8]) -> Option<Record<'static>> {
    trail_bytes
        .split(|&b| b == b'\n')
        .rev()
        .filter(|l| !l.is_empty())
        .find_map(|l| {
            let r = trail::decode(l).ok()?;
            matches!(r.action, Action::Freeze { .. }).then(|| r.into_owned())
        })
}

/// The record of the freeze in force, from the end of the trail.
fn last_freeze(ctx: &Context) -> Option<Record<'static>> {
    let mut file = store::read_trail(&ctx.file.trail()).ok()??;
    let mut want = 16;
    loop {
        let tail = read_tail(&mut file, want).ok()?;
        let found = tail.lines.iter().rev().find_map(|l| {
            let r = trail::decode(l).ok()?;
            matches!(r.action, Action::Freeze { .. }).then(|| r.into_owned())
        });
        if found.is_some() || tail.lines.len() < want || want >= 1 << 16 {
            return found;
        }
        want *= 16;
    }
}

struct View<'p, 'a> {
    origin: String,
    policy: &'p Policy<'a>,
    rows: Vec<(&'p Grant<'a>, Status)>,
    revocations: Vec<usize>,
    freeze: Option<&'p Record<'static>>,
    now: Timestamp,
}

impl View<'_, '_> {
    fn table(&self) -> String {
        let p = self.policy;
        let mut out = format!(
            "policy {}: {}{} grants, {} revocations\n",
            self.origin,
            p.serial
                .map(|s| format!("serial {s}, "))
                .unwrap_or_default(),
            p.grants.len(),
            p.revocations.len()
        );
        if p.frozen {
            out.push_str("FROZEN: only break-glass grants are valid");
            if let Some(r) = self.freeze
                && let Action::Freeze { reason } = &r.action
            {
                let _ = write!(
                    out,
                    " (since {} by {}: {})",
                    r.time,
                    r.actor,
                    quote_for_display(reason.as_str(), 120)
                );
            }
            out.push('\n');
        }
        out.push('\n');
        if self.rows.is_empty() {
            out.push_str("no grants to show");
            if !p.grants.is_empty() {
                out.push_str(" (--all shows expired, revoked and not-yet-valid grants)");
            }
            out.push('\n');
        } else {
            let mut table = vec![
                [
                    "ID",
                    "USER",
                    "KEY / PRINCIPAL",
                    "HOSTS",
                    "LEFT",
                    "STATUS",
                    "REASON",
                    "BY",
                ]
                .map(String::from)
                .to_vec(),
            ];
            for (g, status) in &self.rows {
                table.push(self.row(g, *status));
            }
            out.push_str(&render_table(&table));
        }
        if !self.revocations.is_empty() {
            out.push_str("\nrevocations (a revocation always wins over a grant):\n");
            for &i in &self.revocations {
                let r = &p.revocations[i];
                let rule = RevocationRule::new(&r.target);
                let named = p.grants.iter().filter(|g| rule.names(g)).count();
                let _ = write!(out, "  [{i}] {}", r.target);
                if let Some(at) = r.revoked_at {
                    let _ = write!(out, " at {at}");
                }
                if let Some(by) = &r.revoked_by {
                    let _ = write!(out, " by {by}");
                }
                if let Some(reason) = &r.reason {
                    let _ = write!(out, ": {}", quote_for_display(reason.as_str(), 80));
                }
                let _ = writeln!(out, " ({named} grant(s) named)");
            }
        }
        out
    }

    fn row(&self, g: &Grant<'_>, status: Status) -> Vec<String> {
        let subject = match &g.subject {
            Subject::Key(k) => k.fingerprint().to_string(),
            Subject::Principal(p) => format!("principal {p}"),
        };
        let hosts = if g.hosts.is_empty() {
            "*".to_owned()
        } else {
            g.hosts
                .iter()
                .map(|h| h.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        let left = match status {
            Status::Valid | Status::Frozen => format_duration(self.now.until(g.expires_at)),
            _ => "-".into(),
        };
        let mut status_text = match status {
            Status::NotYetValid => format!(
                "starts in {}",
                format_duration(self.now.until(g.not_before.unwrap_or(g.expires_at)))
            ),
            Status::Expired => format!(
                "expired {} ago",
                format_duration(g.expires_at.until(self.now))
            ),
            Status::Revoked(i) => format!("revoked [{i}]"),
            s => s.name().to_owned(),
        };
        if g.break_glass {
            status_text.push_str(" break-glass");
        }
        vec![
            g.id.to_string(),
            g.user.to_string(),
            subject,
            cut(&hosts, 32),
            left,
            status_text,
            cut(g.reason.as_str(), 40),
            g.granted_by
                .as_ref()
                .map_or_else(|| "-".into(), |b| cut(b.as_str(), 24)),
        ]
    }

    fn json(&self) -> String {
        let p = self.policy;
        let grants: Vec<Value> = self
            .rows
            .iter()
            .map(|(g, status)| {
                let mut v = serde_json::to_value(g).unwrap_or(Value::Null);
                if let (Value::Object(m), Subject::Key(k)) = (&mut v, &g.subject) {
                    m.insert("fingerprint".into(), json!(k.fingerprint().to_string()));
                }
                if let Value::Object(m) = &mut v {
                    m.insert("status".into(), json!(status.name()));
                    if let Status::Revoked(i) = status {
                        m.insert("revoked_by_revocation".into(), json!(i));
                    }
                    if status.is_current() {
                        m.insert(
                            "seconds_left".into(),
                            json!(self.now.until(g.expires_at).as_secs()),
                        );
                    }
                }
                v
            })
            .collect();
        let revocations: Vec<Value> = self
            .revocations
            .iter()
            .map(|&i| {
                let r = &p.revocations[i];
                let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut v {
                    m.insert("index".into(), json!(i));
                    let rule = RevocationRule::new(&r.target);
                    let named: Vec<&str> = p
                        .grants
                        .iter()
                        .filter(|g| rule.names(g))
                        .map(|g| g.id.as_str())
                        .collect();
                    m.insert("names".into(), json!(named));
                }
                v
            })
            .collect();
        let freeze = self.freeze.and_then(|r| match &r.action {
            Action::Freeze { reason } => Some(json!({
                "at": r.time.to_string(), "by": r.actor.as_str(), "reason": reason.as_str()
            })),
            _ => None,
        });
        let doc = json!({
            "policy": self.origin,
            "serial": p.serial,
            "frozen": p.frozen,
            "freeze": freeze,
            "now": self.now.to_string(),
            "grants": grants,
            "revocations": revocations,
        });
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// At most `max` characters, marked with `...` when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(3)).collect();
    out.push_str("...");
    out
}

/// Left-aligned columns two spaces apart; the last column is not padded.
pub fn render_table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_cut() {
        let t = render_table(&[
            vec!["ID".into(), "USER".into(), "REASON".into()],
            vec!["g-1".into(), "deploy".into(), cut("a very long reason", 10)],
        ]);
        assert_eq!(t, "ID   USER    REASON\ng-1  deploy  a very ...\n");
    }

    #[test]
    fn status_order_expired_then_revoked_then_pending() {
        let doc = br#"{"version":1,"frozen":true,"grants":[
            {"id":"g-exp","user":"u","principal":"p","expires_at":"2026-01-01T00:00:00Z","reason":"r"},
            {"id":"g-rev","user":"u","principal":"q","not_before":"2027-01-01T00:00:00Z","expires_at":"2027-02-01T00:00:00Z","reason":"r"},
            {"id":"g-pend","user":"u","principal":"p","not_before":"2027-01-01T00:00:00Z","expires_at":"2027-02-01T00:00:00Z","reason":"r"},
            {"id":"g-frozen","user":"u","principal":"p","expires_at":"2027-02-01T00:00:00Z","reason":"r"},
            {"id":"g-bg","user":"u","principal":"p","expires_at":"2027-02-01T00:00:00Z","reason":"r","break_glass":true}
        ],"revocations":[{"principal":"q"},{"grant":"g-exp"}]}"#;
        let p = Policy::parse(doc).unwrap();
        let now = Timestamp::parse_rfc3339("2026-06-01T00:00:00Z").unwrap();
        let s: Vec<Status> = p.grants.iter().map(|g| Status::of(&p, g, now)).collect();
        assert_eq!(
            s,
            [
                Status::Expired,
                Status::Revoked(0),
                Status::NotYetValid,
                Status::Frozen,
                Status::Valid
            ]
        );
    }
}
