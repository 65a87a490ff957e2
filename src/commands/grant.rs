//! `sshjit grant`: give one key or certificate principal access to one
//! account, for a bounded time and a stated reason. Prints only the new
//! grant's id on stdout.

use std::collections::HashSet;
use std::time::Duration;

use clap::{ArgGroup, Args};

use super::context::{self, waiting};
use super::editing::{AdminLog, run_edit};
use super::failure::Failure;
use super::keyfile::read_key;
use super::output::Output;
use super::revoke::selector_flags;
use crate::log::Severity;
use crate::store::trail::Action;
use crate::store::{self, Edit, Who};
use crate::{Globals, system};
use sshjit_policy::evaluate::revocation_of;
use sshjit_policy::time::{Timestamp, format_duration, parse_duration};
use sshjit_policy::{
    AuthorizedKey, Command, FromPattern, Grant, GrantId, HostPattern, Policy, Principal, Reason,
    Subject, Target, Username,
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

/// A checked grant, ready to be added (its id is chosen under the lock).
#[derive(Debug)]
pub struct Plan {
    pub user: Username<'static>,
    pub subject: Subject<'static>,
    pub hosts: Vec<HostPattern<'static>>,
    pub not_before: Option<Timestamp>,
    pub expires_at: Timestamp,
    pub reason: Reason<'static>,
    pub break_glass: bool,
    pub from: Vec<FromPattern<'static>>,
    pub command: Option<Command<'static>>,
    pub restrict: bool,
    /// Longer than `max_grant`, allowed by `--force`.
    pub forced: bool,
    /// How long the grant can be used from now on.
    pub length: Duration,
}

pub fn run(globals: &Globals, args: &GrantArgs) -> Result<Output, Failure> {
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
        let plan = Plan::check(args, key, now, ctx.config.max_grant)?;
        plan.log_fields(log);
        let edited = store::edit(&ctx.file, &who, now, Some(&mut waiting), |policy| {
            let grant = plan.grant(policy, &who, now)?;
            let id = grant.id.clone();
            let frozen = policy.frozen;
            policy.grants.push(grant.clone());
            Ok::<_, Failure>(Edit::change(
                Action::Grant {
                    grant,
                    forced: plan.forced,
                },
                (id, frozen),
            ))
        })?;
        let (id, frozen) = edited.value;
        log.field("id", id.as_str());
        let mut out = Output::text(format!("{id}\n"));
        if frozen && !plan.break_glass {
            out.warn(
                "the policy is frozen: this grant works only after `sshjit thaw` (use --break-glass for access during the freeze)",
            );
        }
        if !system::user_exists(plan.user.as_str()) {
            out.note(format!(
                "there is no account {} on this host; the grant works on hosts that have one",
                plan.user
            ));
        }
        out.line(format!(
            "granted {id}: {} may log in as {} {} until {} ({}){}",
            plan.subject_text(),
            plan.user,
            plan.hosts_text(),
            plan.expires_at,
            format_duration(plan.length),
            if plan.break_glass {
                ", break-glass"
            } else {
                ""
            }
        ));
        Ok((edited.committed, out))
    })
}

fn usage(flag: &str, e: impl std::fmt::Display) -> Failure {
    Failure::usage(format!("{flag}: {e}"))
}

impl Plan {
    /// Checks every argument against the rules and the clock.
    pub fn check(
        args: &GrantArgs,
        key: Option<AuthorizedKey<'static>>,
        now: Timestamp,
        max_grant: Duration,
    ) -> Result<Plan, Failure> {
        let user = Username::new(args.user.clone()).map_err(|e| usage("--user", e))?;
        let subject = match (key, &args.principal) {
            (Some(k), None) => Subject::Key(k),
            (None, Some(p)) => {
                Subject::Principal(Principal::new(p.clone()).map_err(|e| usage("--principal", e))?)
            }
            _ => return Err(Failure::usage("give exactly one of --key and --principal")),
        };
        let reason = Reason::new(args.reason.clone()).map_err(|e| usage("--reason", e))?;
        let time = |flag: &str, s: &str| {
            Timestamp::parse_rfc3339(s).map_err(|e| usage(flag, format!("{s:?}: {e}")))
        };
        let not_before = args
            .not_before
            .as_deref()
            .map(|s| time("--not-before", s))
            .transpose()?;
        let expires_at = match (&args.duration, &args.until) {
            (Some(d), None) => {
                let d = parse_duration(d).map_err(|e| usage("--for", format!("{d:?}: {e}")))?;
                if d.is_zero() {
                    return Err(Failure::usage("--for: a grant must last longer than 0s"));
                }
                not_before.unwrap_or(now).saturating_add(d)
            }
            (None, Some(t)) => time("--until", t)?,
            _ => return Err(Failure::usage("give exactly one of --for and --until")),
        };
        if let Some(nb) = not_before
            && nb >= expires_at
        {
            return Err(Failure::usage(format!(
                "--not-before {nb} is not before the end {expires_at}"
            )));
        }
        if expires_at <= now {
            return Err(Failure::refused(format!(
                "the window is already over: it ends at {expires_at}, {} ago",
                format_duration(expires_at.until(now))
            )));
        }
        let start = not_before.map_or(now, |nb| nb.max(now));
        let length = start.until(expires_at);
        if length > max_grant && !args.force {
            return Err(Failure::refused(format!(
                "a grant of {} is longer than max_grant ({}, from the config): shorten it, or add --force to grant it anyway",
                format_duration(length),
                format_duration(max_grant)
            )));
        }
        let hosts = args
            .hosts
            .iter()
            .map(|h| HostPattern::new(h.clone()).map(HostPattern::into_owned))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| usage("--host", e))?;
        let from = args
            .from
            .iter()
            .map(|f| FromPattern::new(f.clone()).map(FromPattern::into_owned))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| usage("--from", e))?;
        if hosts.len() > sshjit_policy::MAX_HOSTS {
            return Err(Failure::usage("--host: at most 256 globs"));
        }
        if from.len() > sshjit_policy::MAX_FROM {
            return Err(Failure::usage("--from: at most 64 patterns"));
        }
        let command = args
            .command
            .clone()
            .map(Command::new)
            .transpose()
            .map_err(|e| usage("--command", e))?;
        Ok(Plan {
            user: user.into_owned(),
            subject,
            hosts,
            not_before,
            expires_at,
            reason: reason.into_owned(),
            break_glass: args.break_glass,
            from,
            command: command.map(Command::into_owned),
            restrict: args.restrict,
            forced: length > max_grant,
            length,
        })
    }

    /// The grant to add to `policy`, with a fresh id; refused when a
    /// revocation already in the policy would name it from the start.
    pub fn grant(
        &self,
        policy: &Policy<'_>,
        who: &Who,
        now: Timestamp,
    ) -> Result<Grant<'static>, Failure> {
        let grant = Grant {
            id: new_id(policy, now)?,
            user: self.user.clone(),
            subject: self.subject.clone(),
            hosts: self.hosts.clone(),
            not_before: self.not_before,
            expires_at: self.expires_at,
            reason: self.reason.clone(),
            granted_by: Some(who.actor.clone()),
            break_glass: self.break_glass,
            from: self.from.clone(),
            command: self.command.clone(),
            restrict: self.restrict,
        };
        if let Some(i) = revocation_of(policy, &grant) {
            let r = &policy.revocations[i];
            return Err(Failure::refused(format!(
                "this grant would be revoked from the start by revocations[{i}] ({}{}); lift that first with `sshjit unrevoke {}` if access is really intended",
                r.target,
                r.reason
                    .as_ref()
                    .map(|x| format!(": {:?}", x.as_str()))
                    .unwrap_or_default(),
                selector_flags(&r.target)
            )));
        }
        Ok(grant)
    }

    fn subject_text(&self) -> String {
        match &self.subject {
            Subject::Key(k) => format!("key {}", k.fingerprint()),
            Subject::Principal(p) => format!("principal {p}"),
        }
    }

    fn hosts_text(&self) -> String {
        if self.hosts.is_empty() {
            "on every host".into()
        } else {
            let h: Vec<&str> = self.hosts.iter().map(|h| h.as_str()).collect();
            format!("on {}", h.join(", "))
        }
    }

    fn log_fields(&self, log: &mut AdminLog) {
        log.field("user", self.user.as_str());
        match &self.subject {
            Subject::Key(k) => log.field("fp", &k.fingerprint().to_string()),
            Subject::Principal(p) => log.field("principal", p.as_str()),
        };
        if !self.hosts.is_empty() {
            let h: Vec<&str> = self.hosts.iter().map(|h| h.as_str()).collect();
            log.field("hosts", &h.join(","));
        }
        if let Some(nb) = self.not_before {
            log.field("not_before", &nb.to_string());
        }
        log.field("expires_at", &self.expires_at.to_string());
        if self.break_glass {
            log.field("break_glass", "true").severity(Severity::Alert);
        }
        if self.forced {
            log.field("forced", "true");
        }
        log.field("reason", self.reason.as_str());
    }
}

/// `g-YYYYMMDD-xxxx`: the UTC date and random hex, unique in the document
/// and never an id that a revocation names (that grant would be born revoked).
pub fn new_id(policy: &Policy<'_>, now: Timestamp) -> Result<GrantId<'static>, Failure> {
    let c = now.to_civil();
    let date = format!("{:04}{:02}{:02}", c.year, c.month, c.day);
    let mut taken: HashSet<&str> = policy.grants.iter().map(|g| g.id.as_str()).collect();
    for r in &policy.revocations {
        if let Target::Grant(id) = &r.target {
            taken.insert(id.as_str());
        }
    }
    for attempt in 0..64 {
        // Two random bytes are plenty for one day's grants; widen on collisions.
        let mut random = [0u8; 4];
        let len = if attempt < 16 { 2 } else { 4 };
        getrandom::getrandom(&mut random[..len])
            .map_err(|e| Failure::refused(format!("no random bytes for a grant id: {e}")))?;
        let id = format!(
            "g-{date}-{}",
            base16ct::lower::encode_string(&random[..len])
        );
        if !taken.contains(id.as_str()) {
            return GrantId::new(id).map_err(|e| Failure::refused(e.to_string()));
        }
    }
    Err(Failure::refused("could not find a free grant id"))
}

#[cfg(test)]
mod tests;
