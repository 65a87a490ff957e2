//! `sshjit revoke` takes access away by adding a revocation (which always
//! wins over a grant); `sshjit unrevoke` lifts revocations again. Both are
//! recorded like any change.

use clap::{ArgGroup, Args};

use super::context::{self, waiting};
use super::editing::{AdminLog, run_edit};
use super::failure::Failure;
use super::keyfile;
use super::output::Output;
use crate::Globals;
use crate::store::trail::Action;
use crate::store::{self, Edit, RevocationRule};
use sshjit_policy::evaluate::{revocation_of, time_refusal};
use sshjit_policy::time::Timestamp;
use sshjit_policy::types::{parse_serial, quote_for_display};
use sshjit_policy::{
    Fingerprint, GrantId, KeyId, Policy, Principal, Reason, Revocation, Target, Username,
};

/// Exactly one selector, the same for `revoke` and `unrevoke`.
#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("target").required(true).multiple(false)
    .args(["grant", "fingerprint", "key", "user", "principal", "key_id", "serial"])))]
pub struct RevokeArgs {
    /// One grant, by id
    #[arg(long, value_name = "ID")]
    pub grant: Option<String>,
    /// A key (and certificates of that key), by SHA256 fingerprint
    #[arg(long, value_name = "FP")]
    pub fingerprint: Option<String>,
    /// A key, by its public key file (`-`: stdin)
    #[arg(long, value_name = "FILE|-")]
    pub key: Option<String>,
    /// Every grant for this account
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// A certificate principal
    #[arg(long, value_name = "P")]
    pub principal: Option<String>,
    /// Certificates with this key ID (sshd's %i)
    #[arg(long, value_name = "ID")]
    pub key_id: Option<String>,
    /// Certificates with this serial (sshd's %s)
    #[arg(long, value_name = "N")]
    pub serial: Option<String>,
    /// Why: required
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Who does it [default: SUDO_USER, else the user running sshjit]
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
}

impl RevokeArgs {
    /// The one thing named.
    pub fn target(&self) -> Result<Target<'static>, Failure> {
        let bad = |flag: &str, e: &dyn std::fmt::Display| Failure::usage(format!("{flag}: {e}"));
        if let Some(id) = &self.grant {
            return GrantId::new(id.clone())
                .map(|g| Target::Grant(g.into_owned()))
                .map_err(|e| bad("--grant", &e));
        }
        if let Some(fp) = &self.fingerprint {
            return Fingerprint::parse(fp)
                .map(Target::Fingerprint)
                .map_err(|e| bad("--fingerprint", &e));
        }
        if let Some(spec) = &self.key {
            return Ok(Target::Fingerprint(keyfile::read_key(spec)?.fingerprint()));
        }
        if let Some(u) = &self.user {
            return Username::new(u.clone())
                .map(|u| Target::User(u.into_owned()))
                .map_err(|e| bad("--user", &e));
        }
        if let Some(p) = &self.principal {
            return Principal::new(p.clone())
                .map(|p| Target::Principal(p.into_owned()))
                .map_err(|e| bad("--principal", &e));
        }
        if let Some(k) = &self.key_id {
            return KeyId::new(k.clone())
                .map(|k| Target::KeyId(k.into_owned()))
                .map_err(|e| bad("--key-id", &e));
        }
        if let Some(s) = &self.serial {
            return parse_serial(s)
                .map(Target::Serial)
                .map_err(|e| bad("--serial", &e));
        }
        Err(Failure::usage(
            "give one of --grant, --fingerprint, --key, --user, --principal, --key-id, --serial",
        ))
    }
}

/// The command-line selector that names `target` (for hints).
pub fn selector_flags(target: &Target<'_>) -> String {
    match target {
        Target::Grant(g) => format!("--grant {g}"),
        Target::Fingerprint(fp) => format!("--fingerprint {fp}"),
        Target::User(u) => format!("--user {u}"),
        Target::Principal(p) => format!("--principal {p}"),
        Target::KeyId(k) => format!("--key-id {}", quote_for_display(k.as_str(), 64)),
        Target::Serial(s) => format!("--serial {s}"),
    }
}

/// Grants in their window that `target` names.
fn in_window_named(policy: &Policy<'_>, target: &Target<'_>, now: Timestamp) -> Vec<String> {
    let rule = RevocationRule::new(target);
    policy
        .grants
        .iter()
        .filter(|g| time_refusal(g, now).is_none() && rule.names(g))
        .map(|g| g.id.to_string())
        .collect()
}

pub fn run_revoke(globals: &Globals, args: &RevokeArgs) -> Result<Output, Failure> {
    run_edit(globals, "revoke", |ctx, log| {
        let who = context::who(args.by.as_deref())?;
        log.who(&who);
        let target = args.target()?;
        let reason = Reason::new(args.reason.clone())
            .map_err(|e| Failure::usage(format!("--reason: {e}")))?
            .into_owned();
        log_target(log, &target);
        log.field("reason", reason.as_str());
        let now = context::now();
        let edited = store::edit(&ctx.file, &who, now, Some(&mut waiting), |policy| {
            if let Target::Grant(id) = &target
                && policy.grant(id.as_str()).is_none()
            {
                return Err(Failure::refused(format!(
                    "there is no grant {id} in {}; `sshjit list --all` shows the grants",
                    ctx.policy_display()
                )));
            }
            if let Some(i) = policy.revocations.iter().position(|r| r.target == target) {
                return Ok(Edit::Unchanged(format!(
                    "already revoked: revocations[{i}] names {target}; nothing changed\n"
                )));
            }
            let stopped = in_window_named(policy, &target, now)
                .into_iter()
                .filter(|id| {
                    policy
                        .grant(id)
                        .is_some_and(|g| revocation_of(policy, g).is_none())
                })
                .collect::<Vec<_>>();
            let revocation = Revocation {
                target: target.clone(),
                reason: Some(reason.clone()),
                revoked_at: Some(now),
                revoked_by: Some(who.actor.clone()),
            };
            policy.revocations.push(revocation.clone());
            let out = if stopped.is_empty() {
                format!("revoked {target}: no grant in its window was using it\n")
            } else {
                format!(
                    "revoked {target}: {} grant(s) stop working at the next login: {}\n",
                    stopped.len(),
                    stopped.join(", ")
                )
            };
            Ok(Edit::change(Action::Revoke { revocation }, out))
        })?;
        Ok((edited.committed, Output::text(edited.value)))
    })
}

pub fn run_unrevoke(globals: &Globals, args: &RevokeArgs) -> Result<Output, Failure> {
    run_edit(globals, "unrevoke", |ctx, log| {
        let who = context::who(args.by.as_deref())?;
        log.who(&who);
        let target = args.target()?;
        let reason = Reason::new(args.reason.clone())
            .map_err(|e| Failure::usage(format!("--reason: {e}")))?
            .into_owned();
        log_target(log, &target);
        log.field("reason", reason.as_str());
        let now = context::now();
        let edited = store::edit(&ctx.file, &who, now, Some(&mut waiting), |policy| {
            let before: Vec<String> = valid_ids(policy, now);
            let (lifted, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut policy.revocations)
                .into_iter()
                .partition(|r| r.target == target);
            policy.revocations = kept;
            if lifted.is_empty() {
                return Err(Failure::refused(format!(
                    "no revocation names {target}; `sshjit list` shows the active revocations"
                )));
            }
            let again: Vec<String> = valid_ids(policy, now)
                .into_iter()
                .filter(|id| !before.contains(id))
                .collect();
            let out = if again.is_empty() {
                format!("lifted the revocation of {target}; no grant became valid again\n")
            } else {
                format!(
                    "lifted the revocation of {target}: valid again: {}\n",
                    again.join(", ")
                )
            };
            Ok(Edit::change(
                Action::Unrevoke {
                    reason: reason.clone(),
                    revocations: lifted,
                },
                out,
            ))
        })?;
        Ok((edited.committed, Output::text(edited.value)))
    })
}

/// Grants in their window and not revoked.
fn valid_ids(policy: &Policy<'_>, now: Timestamp) -> Vec<String> {
    policy
        .grants
        .iter()
        .filter(|g| time_refusal(g, now).is_none() && revocation_of(policy, g).is_none())
        .map(|g| g.id.to_string())
        .collect()
}

fn log_target(log: &mut AdminLog, target: &Target<'_>) {
    let (key, value) = match target {
        Target::Grant(g) => ("grant", g.to_string()),
        Target::Fingerprint(fp) => ("fp", fp.to_string()),
        Target::User(u) => ("user", u.to_string()),
        Target::Principal(p) => ("principal", p.to_string()),
        Target::KeyId(k) => ("key_id", k.to_string()),
        Target::Serial(s) => ("cert_serial", s.to_string()),
    };
    log.field(key, &value);
}
