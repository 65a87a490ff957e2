//! `sshjit grant`: give one key or certificate principal access to one
//! account, for a bounded time and a stated reason. Prints only the new
//! grant's id on stdout.

use std::time::Duration;

use clap::{ArgGroup, Args};

use super::change::{Change, GrantRequest, Place, apply};
pub use super::change::{Plan, new_id};
use super::context::{self, waiting};
use super::editing::{AdminLog, run_edit};
use super::failure::Failure;
use super::keyfile::read_key;
use super::output::{Output, Remark};
use super::remote::Remote;
use crate::log::Severity;
use crate::store;
use crate::{Globals, system};
use sshjit_policy::time::{Timestamp, parse_duration};
use sshjit_policy::{
    AuthorizedKey, Command, FromPattern, HostPattern, Principal, Reason, Subject, Username,
};

#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("subject").required(true).args(["key", "principal"])))]
#[command(group(ArgGroup::new("end").required(true).args(["duration", "until"])))]
pub struct GrantArgs {
    /// The local account to log in as (sshd's %u)
    #[arg(long, value_name = "USER")]
    pub user: String,
    /// The public key file (`-`: read it from stdin), e.g. alice_ed25519.pub
    #[arg(long, value_name = "FILE|-")]
    pub key: Option<String>,
    /// A certificate principal instead of a key
    #[arg(long, value_name = "P")]
    pub principal: Option<String>,
    /// How long, from --not-before or now: 90s, 15m, 2h30m, 1d
    #[arg(long = "for", id = "duration", value_name = "DURATION")]
    pub duration: Option<String>,
    /// The end, as an RFC 3339 time (2026-11-21T18:00:00Z)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Why (a ticket, an incident): required
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Only on hosts matching this glob (repeatable) [default: every host]
    #[arg(long = "host", id = "hosts", value_name = "GLOB")]
    pub hosts: Vec<String>,
    /// Only from these addresses (sshd's from=; repeatable)
    #[arg(long, value_name = "PATTERN", allow_hyphen_values = true)]
    pub from: Vec<String>,
    /// Force this command (sshd's command=)
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    pub command: Option<String>,
    /// No forwarding, no pty (sshd's restrict)
    #[arg(long)]
    pub restrict: bool,
    /// Not valid before this RFC 3339 time
    #[arg(long, value_name = "TIME")]
    pub not_before: Option<String>,
    /// Valid even while the policy is frozen (logged at alert priority)
    #[arg(long)]
    pub break_glass: bool,
    /// Who grants it [default: SUDO_USER, else the user running sshjit]
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
    /// Allow a grant longer than max_grant from the config
    #[arg(long)]
    pub force: bool,
}

impl GrantArgs {
    /// The grant the flags ask for (with the key read from its file),
    /// before the rules that need the clock.
    pub fn request(
        &self,
        key: Option<AuthorizedKey<'static>>,
    ) -> Result<GrantRequest<'static>, Failure> {
        let user = Username::new(self.user.clone()).map_err(|e| usage("--user", e))?;
        let principal = self
            .principal
            .clone()
            .map(Principal::new)
            .transpose()
            .map_err(|e| usage("--principal", e))?;
        if key.is_some() == principal.is_some() {
            return Err(Failure::usage("give exactly one of --key and --principal"));
        }
        let reason = Reason::new(self.reason.clone()).map_err(|e| usage("--reason", e))?;
        let time = |flag: &str, s: &str| {
            Timestamp::parse_rfc3339(s).map_err(|e| usage(flag, format!("{s:?}: {e}")))
        };
        let not_before = self
            .not_before
            .as_deref()
            .map(|s| time("--not-before", s))
            .transpose()?;
        let (duration, until) = match (&self.duration, &self.until) {
            (Some(d), None) => {
                let d = parse_duration(d).map_err(|e| usage("--for", format!("{d:?}: {e}")))?;
                (Some(d.as_secs()), None)
            }
            (None, Some(t)) => (None, Some(time("--until", t)?)),
            _ => return Err(Failure::usage("give exactly one of --for and --until")),
        };
        let hosts = self
            .hosts
            .iter()
            .map(|h| HostPattern::new(h.clone()).map(HostPattern::into_owned))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| usage("--host", e))?;
        let from = self
            .from
            .iter()
            .map(|f| FromPattern::new(f.clone()).map(FromPattern::into_owned))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| usage("--from", e))?;
        let command = self
            .command
            .clone()
            .map(Command::new)
            .transpose()
            .map_err(|e| usage("--command", e))?;
        Ok(GrantRequest {
            user: user.into_owned(),
            key,
            principal: principal.map(Principal::into_owned),
            hosts,
            not_before,
            duration,
            until,
            reason: reason.into_owned(),
            break_glass: self.break_glass,
            from,
            command: command.map(Command::into_owned),
            restrict: self.restrict,
            force: self.force,
        })
    }
}

impl Plan {
    /// Checks every argument against the rules and the clock.
    pub fn check(
        args: &GrantArgs,
        key: Option<AuthorizedKey<'static>>,
        now: Timestamp,
        max_grant: Duration,
    ) -> Result<Plan, Failure> {
        args.request(key)?.plan(now, max_grant)
    }
}

pub fn run(globals: &Globals, args: &GrantArgs) -> Result<Output, Failure> {
    if let Some(remote) = Remote::from_globals(globals, false)? {
        if args.by.is_some() {
            return Err(Failure::usage(
                "--by: a server records the person you logged in as",
            ));
        }
        let key = args.key.as_deref().map(read_key).transpose()?;
        let grant = args.request(key)?;
        return remote.change(&Change::Grant { grant });
    }
    run_edit(globals, "grant", |ctx, log| {
        if globals.host.is_some() {
            return Err(Failure::usage(
                "--host before `grant` names this host for keys/principals; to limit the grant to hosts, put --host GLOB after `grant`",
            ));
        }
        let who = context::who(args.by.as_deref())?;
        log.who(&who);
        let now = context::now();
        let key = match &args.key {
            Some(spec) => Some(read_key(spec)?),
            None => None,
        };
        let request = args.request(key)?;
        let plan = request.plan(now, ctx.config.max_grant)?;
        log_fields(&plan, log);
        let change = Change::Grant { grant: request };
        let place = Place {
            origin: &ctx.policy_display(),
            max_grant: ctx.config.max_grant,
        };
        let edited = store::edit(&ctx.file, &who, now, Some(&mut waiting), |policy| {
            apply(&change, policy, &who, now, &place)
        })?;
        let applied = edited.value;
        if let Some(id) = &applied.grant {
            log.field("id", id);
        }
        let mut out = applied.into_output();
        if !system::user_exists(plan.user.as_str()) {
            // Before the `granted ...` line, as the remarks always read.
            let at = out.remarks.len().saturating_sub(1);
            out.remarks.insert(
                at,
                Remark::Note(format!(
                    "there is no account {} on this host; the grant works on hosts that have one",
                    plan.user
                )),
            );
        }
        Ok((edited.committed, out))
    })
}

fn usage(flag: &str, e: impl std::fmt::Display) -> Failure {
    Failure::usage(format!("{flag}: {e}"))
}

fn log_fields(plan: &Plan, log: &mut AdminLog) {
    log.field("user", plan.user.as_str());
    match &plan.subject {
        Subject::Key(k) => log.field("fp", &k.fingerprint().to_string()),
        Subject::Principal(p) => log.field("principal", p.as_str()),
    };
    if !plan.hosts.is_empty() {
        let h: Vec<&str> = plan.hosts.iter().map(|h| h.as_str()).collect();
        log.field("hosts", &h.join(","));
    }
    if let Some(nb) = plan.not_before {
        log.field("not_before", &nb.to_string());
    }
    log.field("expires_at", &plan.expires_at.to_string());
    if plan.break_glass {
        log.field("break_glass", "true").severity(Severity::Alert);
    }
    if plan.forced {
        log.field("forced", "true");
    }
    log.field("reason", plan.reason.as_str());
}

#[cfg(test)]
mod tests;
