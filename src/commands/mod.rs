//! Commands for people: the read-only aids (`check`, `explain`, `verify`,
//! `list`, `report`, `audit verify`) that share the login path's reading,
//! signature checks and evaluation, so what they say is what sshd gets;
//! `sign`, which publishes; `index`; and the editing commands (`grant`,
//! `revoke`, `unrevoke`, `freeze`, `thaw`, `prune`, `audit repair`), which
//! all write through `crate::store::edit`.

pub mod audit;
pub mod check;
pub mod explain;
pub mod freeze;
pub mod grant;
pub mod index;
pub mod list;
pub mod logins;
pub mod prune;
pub mod report;
pub mod revoke;
pub mod sign;

use std::path::PathBuf;

use crate::config::{self, Config};
use crate::log::{Line, Severity, Syslog};
use crate::source::Source;
use crate::{Globals, exit, system, term};
use sshjit_policy::Actor;
use sshjit_policy::time::Timestamp;

use crate::store::{self as store, PolicyFile, StoreError};

/// The clock for admin commands, in whole seconds: grant windows and
/// trail times read better without nanoseconds, and nothing is lost.
pub fn now() -> Timestamp {
    Timestamp::from_unix(Timestamp::now().unix_seconds(), 0)
}

/// Who makes a change: the name it is attributed to and the account and
/// host it was made from.
#[derive(Clone, Debug)]
pub struct Who {
    pub actor: Actor<'static>,
    pub os_user: String,
    pub sudo_user: Option<String>,
    pub host: String,
}

impl Who {
    /// `--by` when given, else the person behind sudo (`SUDO_USER`), else
    /// the account running the command.
    pub fn current(by: Option<&str>) -> Result<Who, String> {
        let uid = system::uid();
        let os_user = system::user_name(uid).unwrap_or_else(|| format!("uid {uid}"));
        let sudo_user = std::env::var("SUDO_USER")
            .ok()
            .filter(|s| !s.trim().is_empty());
        let actor = match (by, &sudo_user) {
            (Some(b), _) => b.to_owned(),
            (None, Some(s)) => s.clone(),
            (None, None) => os_user.clone(),
        };
        let actor = Actor::new(actor)
            .map_err(|e| format!("--by: {e}"))?
            .into_owned();
        let host = system::hostname().unwrap_or_else(|_| "unknown".into());
        Ok(Who {
            actor,
            os_user,
            sudo_user,
            host,
        })
    }
}

/// What every admin command starts from.
pub struct Context {
    pub config: Config,
    pub file: PolicyFile,
    pub syslog: Syslog,
}

impl Context {
    /// Loads the config and picks the policy file: `--policy`, else the
    /// config's first source.
    pub fn load(globals: &Globals) -> Result<Context, Failure> {
        let config =
            config::load(globals.config.as_deref()).map_err(|e| Failure::refused(e.to_string()))?;
        let sources = crate::sources(globals, &config).map_err(Failure::usage)?;
        let path = policy_file(&sources).map_err(Failure::usage)?;
        let file = PolicyFile::resolve(&path).map_err(Failure::from)?;
        let syslog = Syslog::new(&config.syslog_socket);
        Ok(Context {
            config,
            file,
            syslog,
        })
    }

    /// The policy's path for messages.
    pub fn policy_display(&self) -> String {
        self.file.policy.display().to_string()
    }
}

/// The admin commands edit a local file: the first source.
fn policy_file(sources: &[Source]) -> Result<PathBuf, String> {
    match sources.first() {
        Some(Source::File(p)) => Ok(p.clone()),
        #[allow(unreachable_patterns)]
        Some(other) => Err(format!(
            "the policy source {other} is not a local file: the admin commands edit a file; give --policy PATH"
        )),
        None => Err("no policy source: give --policy PATH".into()),
    }
}

/// A remark for the admin at the terminal.
pub fn note(message: &str) {
    term::eprint(&format!("note: {message}\n"));
}

/// Something the admin should act on; the command still succeeded.
pub fn warn(message: &str) {
    term::eprint(&format!("warning: {message}\n"));
}

/// A command that did not succeed: the exit status and what to tell the admin.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: exit::USAGE,
            message: message.into(),
        }
    }

    pub fn refused(message: impl Into<String>) -> Self {
        Failure {
            code: exit::DENIED,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Failure {
            code: exit::INTERNAL,
            message: message.into(),
        }
    }

    /// Prints the message and returns the status.
    pub fn report(&self) -> u8 {
        term::eprint(&format!("error: {}\n", self.message));
        self.code
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        if e.is_internal() {
            Failure::internal(e.to_string())
        } else {
            Failure::refused(e.to_string())
        }
    }
}

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
    pub fn ok(mut self, ctx: &Context, committed: Option<&store::Committed>) {
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
                if failure.code == exit::INTERNAL {
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
fn stale_signature(file: &PolicyFile) {
    let mut name = file.policy.file_name().unwrap_or_default().to_owned();
    name.push(".sig");
    let sig = file.policy.with_file_name(name);
    if sig.exists() {
        warn(&format!(
            "{} was made for the previous version: sign the policy again before hosts that require signatures read it",
            sig.display()
        ));
    }
}

/// Runs an editing command: loads the context, runs `body`, logs the
/// outcome once and turns it into an exit status. `body` fills the log
/// line and returns the committed record and what to print.
pub fn run_edit(
    globals: &Globals,
    action: &str,
    body: impl FnOnce(&Context, &mut AdminLog) -> Result<(Option<store::Committed>, String), Failure>,
) -> u8 {
    let mut log = AdminLog::new(action);
    let ctx = match Context::load(globals) {
        Ok(c) => c,
        Err(f) => {
            let syslog = Syslog::new(config::DEFAULT_SYSLOG_SOCKET);
            log.failed(&syslog, None, &f);
            return f.report();
        }
    };
    match body(&ctx, &mut log) {
        Ok((committed, out)) => {
            if let Some(c) = &committed {
                for r in &c.repaired {
                    term::eprint(&format!("note: trail repaired: {r}\n"));
                }
                if let Some(w) = &c.warning {
                    warn(w);
                }
                stale_signature(&ctx.file);
            }
            log.ok(&ctx, committed.as_ref());
            term::print(&out)
        }
        Err(f) => {
            log.failed(&ctx.syslog, Some(&ctx.policy_display()), &f);
            f.report()
        }
    }
}
