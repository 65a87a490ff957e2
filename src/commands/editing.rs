//! What the editing commands share: `run_edit` (load, run, log once) and
//! their one syslog line (`AdminLog`).

use super::context::Context;
use super::failure::{Failure, FailureKind};
use super::output::Output;
use crate::Globals;
use crate::config;
use crate::log::{Line, Severity, Syslog};
use crate::store::{Committed, PolicyFile, Who};

/// The one syslog line of an editing command: `action=... outcome=...`
/// plus what was changed, who did it, and the trail's new head (which a
/// copy of the log kept elsewhere anchors).
pub struct AdminLog {
    line: Line,
    severity: Severity,
}

impl AdminLog {
    pub fn new(action: &str) -> Self {
        let mut line = Line::new();
        line.field("action", action);
        AdminLog {
            line,
            severity: Severity::Notice,
        }
    }

    pub fn field(&mut self, key: &str, value: &str) -> &mut Self {
        self.line.field(key, value);
        self
    }

    /// Raises the priority (break-glass grants, freeze and thaw: alert).
    pub fn severity(&mut self, severity: Severity) -> &mut Self {
        self.severity = self.severity.min(severity);
        self
    }

    pub fn who(&mut self, who: &Who) -> &mut Self {
        self.line
            .field("by", who.actor.as_str())
            .field("os_user", &who.os_user);
        self.line.field_opt("sudo_user", who.sudo_user.as_deref());
        self
    }

    /// Logs a committed (or unneeded) change.
    pub fn ok(mut self, ctx: &Context, committed: Option<&Committed>) {
        self.line.field("policy", &ctx.policy_display());
        match committed {
            Some(c) => {
                self.line
                    .field("outcome", "ok")
                    .field("serial", &c.serial.to_string())
                    .field("trail_seq", &c.seq.to_string())
                    .field("trail_hash", &c.hash);
                if !c.repaired.is_empty() {
                    self.line.field("repaired", &c.repaired.join("; "));
                    self.severity = self.severity.min(Severity::Warning);
                }
                if let Some(w) = &c.warning {
                    self.line.field("warning", w);
                    self.severity = self.severity.min(Severity::Warning);
                }
            }
            None => {
                self.line.field("outcome", "unchanged");
            }
        }
        ctx.syslog.log(self.severity, self.line.as_str());
    }

    /// Logs a refused or failed change.
    pub fn failed(mut self, syslog: &Syslog, policy: Option<&str>, failure: &Failure) {
        self.line.field_opt("policy", policy);
        self.line
            .field(
                "outcome",
                if failure.kind == FailureKind::Internal {
                    "error"
                } else {
                    "refused"
                },
            )
            .field("error", &failure.message);
        syslog.log(self.severity.min(Severity::Warning), self.line.as_str());
    }
}

/// A detached signature beside the policy (`policy.json.sig`) no longer
/// matches it after an edit; hosts that require signatures would deny
/// every login until it is signed again. Say so.
fn stale_signature(file: &PolicyFile, out: &mut Output) {
    let mut name = file.policy.file_name().unwrap_or_default().to_owned();
    name.push(".sig");
    let sig = file.policy.with_file_name(name);
    if sig.exists() {
        out.warn(format!(
            "{} was made for the previous version: sign the policy again before hosts that require signatures read it",
            sig.display()
        ));
    }
}

/// Runs an editing command: loads the context, runs `body`, logs the
/// outcome once. `body` fills the log line and returns the committed
/// record (`None`: nothing written) and what to print; the remarks about
/// the commit (trail repaired, a warning, a stale signature) follow its own.
pub fn run_edit(
    globals: &Globals,
    action: &str,
    body: impl FnOnce(&Context, &mut AdminLog) -> Result<(Option<Committed>, Output), Failure>,
) -> Result<Output, Failure> {
    let mut log = AdminLog::new(action);
    let ctx = match Context::load(globals) {
        Ok(c) => c,
        Err(f) => {
            let syslog = Syslog::new(config::DEFAULT_SYSLOG_SOCKET);
            log.failed(&syslog, None, &f);
            return Err(f);
        }
    };
    match body(&ctx, &mut log) {
        Ok((committed, mut out)) => {
            if let Some(c) = &committed {
                for r in &c.repaired {
                    out.note(format!("trail repaired: {r}"));
                }
                if let Some(w) = &c.warning {
                    out.warn(w.clone());
                }
                stale_signature(&ctx.file, &mut out);
            }
            log.ok(&ctx, committed.as_ref());
            Ok(out)
        }
        Err(f) => {
            log.failed(&ctx.syslog, Some(&ctx.policy_display()), &f);
            Err(f)
        }
    }
}
