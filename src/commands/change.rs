//! A change to the policy as a person asks for it, and what applying it
//! does: one definition for a policy file (the editing commands hand
//! [`apply`] to `store::edit`) and for the server (which receives the
//! change as JSON from `sshjit grant --server ...` and applies it to its
//! own policy). The wire form is this module's serde form; every value in
//! it is one of the policy core's checked types, so a change that
//! deserializes is already validated field by field, and [`apply`] checks
//! the rest against the policy and the clock.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::failure::Failure;
use super::output::{Output, Remark};
use crate::store::trail::Action;
use crate::store::{Edit, RevocationRule, Who};
use sshjit_policy::evaluate::{revocation_of, time_refusal};
use sshjit_policy::time::{Timestamp, format_duration};
use sshjit_policy::{
    AuthorizedKey, Command, FromPattern, Grant, GrantId, HostPattern, Policy, Principal, Reason,
    Revocation, Subject, Target, Username,
};

/// A change, as sent to the server (`POST /v1/admin/change`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change<'a> {
    Grant {
        #[serde(borrow)]
        grant: GrantRequest<'a>,
    },
    /// The revocation's target and reason; when and by whom are filled in
    /// where it is applied.
    Revoke {
        #[serde(borrow)]
        revocation: Revocation<'a>,
    },
    /// Lifts the revocations naming the target.
    Unrevoke {
        #[serde(borrow)]
        revocation: Revocation<'a>,
    },
    Freeze {
        #[serde(borrow)]
        reason: Reason<'a>,
    },
    Thaw {
        #[serde(borrow)]
        reason: Reason<'a>,
    },
}

impl Change<'_> {
    /// The command's name (`grant`, `revoke`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Change::Grant { .. } => "grant",
            Change::Revoke { .. } => "revoke",
            Change::Unrevoke { .. } => "unrevoke",
            Change::Freeze { .. } => "freeze",
            Change::Thaw { .. } => "thaw",
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A grant as asked for: the clock-free part of `sshjit grant`'s flags,
/// checked one by one. [`GrantRequest::plan`] applies the rules that need
/// the clock and the limits, where the grant is made.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest<'a> {
    #[serde(borrow)]
    pub user: Username<'a>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub key: Option<AuthorizedKey<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostPattern<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    /// `--for`, in seconds (counted from `not_before`, else from now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    /// `--until`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    #[serde(borrow)]
    pub reason: Reason<'a>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub break_glass: bool,
    #[serde(borrow, default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<FromPattern<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Command<'a>>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub restrict: bool,
    /// Longer than `max_grant` on purpose.
    #[serde(default, skip_serializing_if = "is_false")]
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

impl GrantRequest<'_> {
    /// Checks the request against the rules and the clock.
    pub fn plan(&self, now: Timestamp, max_grant: Duration) -> Result<Plan, Failure> {
        let subject = match (&self.key, &self.principal) {
            (Some(k), None) => Subject::Key(k.clone().into_owned()),
            (None, Some(p)) => Subject::Principal(p.clone().into_owned()),
            _ => return Err(Failure::usage("give exactly one of --key and --principal")),
        };
        let expires_at = match (self.duration, self.until) {
            (Some(secs), None) => {
                if secs == 0 {
                    return Err(Failure::usage("--for: a grant must last longer than 0s"));
                }
                self.not_before
                    .unwrap_or(now)
                    .saturating_add(Duration::from_secs(secs))
            }
            (None, Some(t)) => t,
            _ => return Err(Failure::usage("give exactly one of --for and --until")),
        };
        if let Some(nb) = self.not_before
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
        let start = self.not_before.map_or(now, |nb| nb.max(now));
        let length = start.until(expires_at);
        if length > max_grant && !self.force {
            return Err(Failure::refused(format!(
                "a grant of {} is longer than max_grant ({}, from the config): shorten it, or add --force to grant it anyway",
                format_duration(length),
                format_duration(max_grant)
            )));
        }
        if self.hosts.len() > sshjit_policy::MAX_HOSTS {
            return Err(Failure::usage("--host: at most 256 globs"));
        }
        if self.from.len() > sshjit_policy::MAX_FROM {
            return Err(Failure::usage("--from: at most 64 patterns"));
        }
        Ok(Plan {
            user: self.user.clone().into_owned(),
            subject,
            hosts: self
                .hosts
                .iter()
                .cloned()
                .map(HostPattern::into_owned)
                .collect(),
            not_before: self.not_before,
            expires_at,
            reason: self.reason.clone().into_owned(),
            break_glass: self.break_glass,
            from: self
                .from
                .iter()
                .cloned()
                .map(FromPattern::into_owned)
                .collect(),
            command: self.command.clone().map(Command::into_owned),
            restrict: self.restrict,
            forced: length > max_grant,
            length,
        })
    }
}

impl Plan {
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

    pub fn subject_text(&self) -> String {
        match &self.subject {
            Subject::Key(k) => format!("key {}", k.fingerprint()),
            Subject::Principal(p) => format!("principal {p}"),
        }
    }

    pub fn hosts_text(&self) -> String {
        if self.hosts.is_empty() {
            "on every host".into()
        } else {
            let h: Vec<&str> = self.hosts.iter().map(|h| h.as_str()).collect();
            format!("on {}", h.join(", "))
        }
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

/// The command-line selector that names `target` (for hints).
pub fn selector_flags(target: &Target<'_>) -> String {
    match target {
        Target::Grant(g) => format!("--grant {g}"),
        Target::Fingerprint(fp) => format!("--fingerprint {fp}"),
        Target::User(u) => format!("--user {u}"),
        Target::Principal(p) => format!("--principal {p}"),
        Target::KeyId(k) => format!(
            "--key-id {}",
            sshjit_policy::text::quote_for_display(k.as_str(), 64)
        ),
        Target::Serial(s) => format!("--serial {s}"),
    }
}

/// What applying a change says: what the command prints, the same for a
/// file and a server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// For stdout.
    pub text: String,
    /// For stderr, in order, before `text`.
    #[serde(default)]
    pub remarks: Vec<Remark>,
    /// The new grant's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
}

impl Applied {
    fn text(text: String) -> Self {
        Applied {
            text,
            ..Applied::default()
        }
    }

    pub fn into_output(self) -> Output {
        Output {
            text: self.text,
            remarks: self.remarks,
            refused: false,
        }
    }
}

/// Where a change is applied, for messages (`/etc/sshjit/policy.json`, or
/// `the server's policy`), and the longest grant without `force`.
pub struct Place<'a> {
    pub origin: &'a str,
    pub max_grant: Duration,
}

/// Applies `change` to `policy` at `now` on behalf of `who`: the action to
/// record and what to print, or `Unchanged` (already so), or a refusal.
pub fn apply(
    change: &Change<'_>,
    policy: &mut Policy<'static>,
    who: &Who,
    now: Timestamp,
    place: &Place<'_>,
) -> Result<Edit<Applied>, Failure> {
    match change {
        Change::Grant { grant } => {
            let plan = grant.plan(now, place.max_grant)?;
            let grant = plan.grant(policy, who, now)?;
            let id = grant.id.to_string();
            let frozen = policy.frozen;
            policy.grants.push(grant.clone());
            let mut out = Applied::text(format!("{id}\n"));
            if frozen && !plan.break_glass {
                out.remarks.push(Remark::Warning(
                    "the policy is frozen: this grant works only after `sshjit thaw` (use --break-glass for access during the freeze)".into(),
                ));
            }
            out.remarks.push(Remark::Line(format!(
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
            )));
            out.grant = Some(id);
            Ok(Edit::change(
                Action::Grant {
                    grant,
                    forced: plan.forced,
                },
                out,
            ))
        }
        Change::Revoke { revocation } => {
            let target = revocation.target.clone().into_owned();
            let reason = required_reason(revocation)?;
            if let Target::Grant(id) = &target
                && policy.grant(id.as_str()).is_none()
            {
                return Err(Failure::refused(format!(
                    "there is no grant {id} in {}; `sshjit list --all` shows the grants",
                    place.origin
                )));
            }
            if let Some(i) = policy.revocations.iter().position(|r| r.target == target) {
                return Ok(Edit::Unchanged(Applied::text(format!(
                    "already revoked: revocations[{i}] names {target}; nothing changed\n"
                ))));
            }
            let rule = RevocationRule::new(&target);
            let stopped: Vec<String> = policy
                .grants
                .iter()
                .filter(|g| time_refusal(g, now).is_none() && rule.names(g))
                .filter(|g| revocation_of(policy, g).is_none())
                .map(|g| g.id.to_string())
                .collect();
            let revocation = Revocation {
                target: target.clone(),
                reason: Some(reason),
                revoked_at: Some(now),
                revoked_by: Some(who.actor.clone()),
            };
            policy.revocations.push(revocation.clone());
            let text = if stopped.is_empty() {
                format!("revoked {target}: no grant in its window was using it\n")
            } else {
                format!(
                    "revoked {target}: {} grant(s) stop working at the next login: {}\n",
                    stopped.len(),
                    stopped.join(", ")
                )
            };
            Ok(Edit::change(
                Action::Revoke { revocation },
                Applied::text(text),
            ))
        }
        Change::Unrevoke { revocation } => {
            let target = revocation.target.clone().into_owned();
            let reason = required_reason(revocation)?;
            let before = valid_ids(policy, now);
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
            let text = if again.is_empty() {
                format!("lifted the revocation of {target}; no grant became valid again\n")
            } else {
                format!(
                    "lifted the revocation of {target}: valid again: {}\n",
                    again.join(", ")
                )
            };
            Ok(Edit::change(
                Action::Unrevoke {
                    reason,
                    revocations: lifted,
                },
                Applied::text(text),
            ))
        }
        Change::Freeze { reason } | Change::Thaw { reason } => {
            let frozen = matches!(change, Change::Freeze { .. });
            let reason = reason.clone().into_owned();
            if policy.frozen == frozen {
                return Ok(Edit::Unchanged(Applied::text(format!(
                    "already {}; nothing changed\n",
                    if frozen { "frozen" } else { "thawed" }
                ))));
            }
            policy.frozen = frozen;
            let (break_glass, others) = in_window(policy, now);
            let text = if frozen {
                format!(
                    "frozen: only break-glass grants are valid now ({break_glass} in their window); {others} other grant(s) stop working at the next login\n"
                )
            } else {
                format!("thawed: {others} grant(s) in their window work again\n")
            };
            let action = if frozen {
                Action::Freeze { reason }
            } else {
                Action::Thaw { reason }
            };
            Ok(Edit::change(action, Applied::text(text)))
        }
    }
}

fn required_reason(revocation: &Revocation<'_>) -> Result<Reason<'static>, Failure> {
    revocation
        .reason
        .clone()
        .map(Reason::into_owned)
        .ok_or_else(|| Failure::usage("--reason is required"))
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

/// Grants in their window and not revoked: (break-glass, others).
fn in_window(policy: &Policy<'_>, now: Timestamp) -> (usize, usize) {
    policy
        .grants
        .iter()
        .filter(|g| time_refusal(g, now).is_none() && revocation_of(policy, g).is_none())
        .fold((0, 0), |(b, o), g| {
            if g.break_glass {
                (b + 1, o)
            } else {
                (b, o + 1)
            }
        })
}
