//! How `sshjit report` shows what it gathered: a table, JSON or CSV.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::commands::list::{cut, render_table};
use crate::commands::logins::{LoginLog, Usage};
use crate::store::history::{Change, Entry, History};
use sshjit_policy::time::Timestamp;
use sshjit_policy::{Grant, Subject};

/// What the report shows.
pub(super) struct Report<'h> {
    pub(super) trail: String,
    pub(super) verified: bool,
    pub(super) problems: Vec<String>,
    pub(super) records: usize,
    pub(super) since: Option<Timestamp>,
    pub(super) until: Option<Timestamp>,
    pub(super) user: Option<String>,
    pub(super) entries: Vec<&'h Entry>,
    pub(super) changes: Vec<&'h Change>,
    pub(super) logins: Option<&'h LoginLog>,
    pub(super) login_file: Option<String>,
    pub(super) now: Timestamp,
    pub(super) history: &'h History,
}

fn subject(g: &Grant<'_>) -> String {
    match &g.subject {
        Subject::Key(k) => k.fingerprint().to_string(),
        Subject::Principal(p) => format!("principal {p}"),
    }
}

fn hosts(g: &Grant<'_>) -> String {
    if g.hosts.is_empty() {
        "*".into()
    } else {
        g.hosts
            .iter()
            .map(|h| h.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Report<'_> {
    fn usage(&self, e: &Entry) -> Option<Usage> {
        self.logins.map(|l| {
            l.by_grant
                .get(e.grant.id.as_str())
                .cloned()
                .unwrap_or_default()
        })
    }

    fn logins_known(&self) -> bool {
        self.logins.is_some_and(|l| l.accepted > 0)
    }

    pub(super) fn table(&self) -> String {
        let mut out = format!("access report from the change trail {}\n", self.trail);
        if self.verified {
            let _ = writeln!(
                out,
                "trail: verified ({} records, head matches the policy)",
                self.records
            );
        } else {
            let _ = writeln!(out, "trail: DOES NOT VERIFY: {}", self.problems.join("; "));
        }
        let _ = writeln!(
            out,
            "period: {} to {}{}",
            self.since
                .map_or_else(|| "the start of the trail".into(), |t| t.to_string()),
            self.until
                .map_or_else(|| format!("now ({})", self.now), |t| t.to_string()),
            self.user
                .as_ref()
                .map(|u| format!("; user {u}"))
                .unwrap_or_default()
        );
        if let (Some(l), Some(f)) = (self.logins, &self.login_file) {
            let _ = writeln!(
                out,
                "logins: {f}: {} lines, {} allow decisions, {}",
                l.lines,
                l.decisions,
                if l.accepted > 0 {
                    format!("{} sshd Accepted lines", l.accepted)
                } else {
                    "no sshd Accepted lines (LOGINS counts only what sshd confirmed; see USED)"
                        .into()
                }
            );
        }
        let _ = writeln!(out, "\ngrants ({}):", self.entries.len());
        if !self.entries.is_empty() {
            let mut head = vec![
                "ID",
                "USER",
                "KEY / PRINCIPAL",
                "HOSTS",
                "START",
                "END",
                "GRANTED BY",
                "REASON",
                "STATUS",
            ];
            if self.logins.is_some() {
                head.extend(["USED", "LOGINS", "LAST USED"]);
            }
            let mut rows = vec![head.into_iter().map(String::from).collect::<Vec<_>>()];
            for e in &self.entries {
                let (start, _) = e.window();
                let mut by = e.recorded_by.clone();
                if e.adopted {
                    by = format!(
                        "{} (adopted)",
                        e.grant
                            .granted_by
                            .as_ref()
                            .map_or("-".into(), |b| b.to_string())
                    );
                }
                let mut row = vec![
                    e.grant.id.to_string(),
                    e.grant.user.to_string(),
                    subject(&e.grant),
                    cut(&hosts(&e.grant), 32),
                    start.to_string(),
                    e.grant.expires_at.to_string(),
                    cut(&by, 24),
                    cut(e.grant.reason.as_str(), 40),
                    format!(
                        "{}{}{}",
                        e.status(self.now),
                        if e.grant.break_glass {
                            " break-glass"
                        } else {
                            ""
                        },
                        match self.history.frozen_during(e).len() {
                            0 => String::new(),
                            n => format!(", frozen {n}x"),
                        }
                    ),
                ];
                if let Some(u) = self.usage(e) {
                    row.push(u.decisions.to_string());
                    row.push(if self.logins_known() {
                        u.logins.to_string()
                    } else {
                        "-".into()
                    });
                    row.push(u.last.map_or_else(|| "-".into(), |t| t.to_string()));
                }
                rows.push(row);
            }
            out.push_str(&render_table(&rows));
        }
        let _ = writeln!(out, "\nother changes ({}):", self.changes.len());
        if !self.changes.is_empty() {
            let mut rows = vec![["TIME", "ACTION", "BY", "WHAT"].map(String::from).to_vec()];
            for c in &self.changes {
                rows.push(vec![
                    c.time.to_string(),
                    c.action.into(),
                    cut(&c.by, 24),
                    c.what.clone(),
                ]);
            }
            out.push_str(&render_table(&rows));
        }
        out
    }

    fn entry_json(&self, e: &Entry) -> Value {
        let (start, end) = e.window();
        let mut grant = serde_json::to_value(&e.grant).unwrap_or(Value::Null);
        if let (Value::Object(m), Subject::Key(k)) = (&mut grant, &e.grant.subject) {
            m.insert("fingerprint".into(), json!(k.fingerprint().to_string()));
        }
        let revoked: Vec<Value> = e
            .revoked
            .iter()
            .map(|r| {
                json!({
                    "at": r.mark.at.to_string(), "by": r.mark.by, "target": r.target, "reason": r.reason,
                    "lifted_at": r.lifted.as_ref().map(|l| l.at.to_string()),
                    "lifted_by": r.lifted.as_ref().map(|l| l.by.clone()),
                })
            })
            .collect();
        let usage = self.usage(e).map(|u| {
            json!({
                "decisions": u.decisions,
                "logins": if self.logins_known() { json!(u.logins) } else { Value::Null },
                "first_used": u.first.map(|t| t.to_string()),
                "last_used": u.last.map(|t| t.to_string()),
                "hosts": u.hosts,
            })
        });
        json!({
            "grant": grant,
            "recorded_at": e.recorded_at.to_string(),
            "recorded_by": e.recorded_by,
            "os_user": e.os_user,
            "admin_host": e.admin_host,
            "trail_seq": e.seq,
            "adopted": e.adopted,
            "forced": e.forced,
            "access_from": start.to_string(),
            "access_until": end.to_string(),
            "status": e.status(self.now),
            "revocations": revoked,
            "frozen": self.history.frozen_during(e).iter().map(|f| json!({
                "from": f.from.at.to_string(), "by": f.from.by, "reason": f.reason,
                "until": f.until.as_ref().map(|u| u.at.to_string()),
                "thawed_by": f.until.as_ref().map(|u| u.by.clone()),
            })).collect::<Vec<_>>(),
            "removed_at": e.removed.as_ref().map(|r| r.at.to_string()),
            "usage": usage,
        })
    }

    pub(super) fn json(&self) -> String {
        let doc = json!({
            "trail": {
                "path": self.trail, "verified": self.verified,
                "problems": self.problems, "records": self.records,
            },
            "period": {
                "since": self.since.map(|t| t.to_string()),
                "until": self.until.map(|t| t.to_string()),
                "now": self.now.to_string(),
            },
            "user": self.user,
            "logins": self.logins.map(|l| json!({
                "file": self.login_file, "lines": l.lines,
                "decisions": l.decisions, "accepted": l.accepted,
            })),
            "grants": self.entries.iter().map(|e| self.entry_json(e)).collect::<Vec<_>>(),
            "changes": self.changes.iter().map(|c| json!({
                "seq": c.seq, "time": c.time.to_string(), "action": c.action,
                "by": c.by, "what": c.what,
            })).collect::<Vec<_>>(),
        });
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        text.push('\n');
        text
    }

    pub(super) fn csv(&self) -> String {
        const HEAD: &[&str] = &[
            "id",
            "user",
            "key_fingerprint",
            "key",
            "principal",
            "hosts",
            "from",
            "command",
            "restrict",
            "break_glass",
            "not_before",
            "expires_at",
            "reason",
            "granted_by",
            "recorded_at",
            "recorded_by",
            "os_user",
            "admin_host",
            "adopted",
            "forced",
            "access_from",
            "access_until",
            "status",
            "revoked_at",
            "revoked_by",
            "revoke_target",
            "revoke_reason",
            "frozen",
            "decisions",
            "logins",
            "first_used",
            "last_used",
            "used_on_hosts",
        ];
        let mut out = csv_row(HEAD.iter().map(|s| s.to_string()));
        for e in &self.entries {
            let g = &e.grant;
            let (start, end) = e.window();
            let rev = e.revoked.iter().find(|r| r.lifted.is_none());
            let usage = self.usage(e);
            let opt = |t: Option<Timestamp>| t.map(|t| t.to_string()).unwrap_or_default();
            out.push_str(&csv_row([
                g.id.to_string(),
                g.user.to_string(),
                g.key()
                    .map(|k| k.fingerprint().to_string())
                    .unwrap_or_default(),
                g.key().map(|k| k.as_str().to_owned()).unwrap_or_default(),
                g.principal().map(|p| p.to_string()).unwrap_or_default(),
                g.hosts
                    .iter()
                    .map(|h| h.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                g.from
                    .iter()
                    .map(|f| f.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                g.command
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                g.restrict.to_string(),
                g.break_glass.to_string(),
                opt(g.not_before),
                g.expires_at.to_string(),
                g.reason.to_string(),
                g.granted_by
                    .as_ref()
                    .map(|b| b.to_string())
                    .unwrap_or_default(),
                e.recorded_at.to_string(),
                e.recorded_by.clone(),
                e.os_user.clone(),
                e.admin_host.clone(),
                e.adopted.to_string(),
                e.forced.to_string(),
                start.to_string(),
                end.to_string(),
                e.status(self.now),
                rev.map(|r| r.mark.at.to_string()).unwrap_or_default(),
                rev.map(|r| r.mark.by.clone()).unwrap_or_default(),
                rev.map(|r| r.target.clone()).unwrap_or_default(),
                rev.and_then(|r| r.reason.clone()).unwrap_or_default(),
                self.history
                    .frozen_during(e)
                    .iter()
                    .map(|f| {
                        format!(
                            "{}..{} by {}",
                            f.from.at,
                            f.until.as_ref().map_or("-".into(), |u| u.at.to_string()),
                            f.from.by
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                usage
                    .as_ref()
                    .map(|u| u.decisions.to_string())
                    .unwrap_or_default(),
                usage
                    .as_ref()
                    .filter(|_| self.logins_known())
                    .map(|u| u.logins.to_string())
                    .unwrap_or_default(),
                opt(usage.as_ref().and_then(|u| u.first)),
                opt(usage.as_ref().and_then(|u| u.last)),
                usage
                    .as_ref()
                    .map(|u| u.hosts.iter().cloned().collect::<Vec<_>>().join(" "))
                    .unwrap_or_default(),
            ]));
        }
        out
    }
}

/// One CSV record (RFC 4180). Cells a spreadsheet would run as a formula
/// (`=`, `+`, `-`, `@` first) get a leading `'`.
pub fn csv_row(cells: impl IntoIterator<Item = String>) -> String {
    let mut out = String::new();
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let cell = if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{cell}")
        } else {
            cell
        };
        if cell.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&cell.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&cell);
        }
    }
    out.push_str("\r\n");
    out
}
