//! The trail replayed into history: every grant with what happened to it
//! (revoked, lifted, removed outside sshjit) and every other change, in
//! order, voided records skipped. What `report` prints is drawn from here.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use super::request::ApprovedBy;
use super::revocation::RevocationRule;
use super::trail::{Action, Record};
use sshjit_policy::text::quote_for_display;
use sshjit_policy::time::Timestamp;
use sshjit_policy::{Grant, Revocation};

/// When, by whom, and at which record something happened. Times have
/// whole seconds; the record's `seq` orders what happened in one second.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub at: Timestamp,
    pub by: String,
    pub seq: u64,
}

impl Stamp {
    fn of(r: &Record<'_>, by: &str) -> Stamp {
        Stamp {
            at: r.time,
            by: by.to_owned(),
            seq: r.seq,
        }
    }

    fn order(&self) -> (Timestamp, u64) {
        (self.at, self.seq)
    }
}

/// A revocation that named a grant while it was in force.
#[derive(Clone, Debug)]
pub struct Revoked {
    /// The revocation's own time (`revoked_at`), by and record.
    pub mark: Stamp,
    pub target: String,
    pub reason: Option<String>,
    pub lifted: Option<Stamp>,
}

/// One grant, with what happened to it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub grant: Grant<'static>,
    pub recorded_at: Timestamp,
    pub recorded_by: String,
    pub os_user: String,
    pub admin_host: String,
    pub seq: u64,
    /// Found in an adopted document rather than granted through sshjit.
    pub adopted: bool,
    pub forced: bool,
    pub revoked: Vec<Revoked>,
    /// Gone from an adopted document: removed outside sshjit.
    pub removed: Option<Stamp>,
}

impl Entry {
    /// When access could start and when it ended (or will end).
    pub fn window(&self) -> (Timestamp, Timestamp) {
        let (start, end) = self.ordered_window();
        (start.0, end.0)
    }

    /// `window` with each end ordered among the records of its second:
    /// the grant's own record starts it, a revocation's record ends it;
    /// `not_before` and `expires_at` come before any record of their second.
    fn ordered_window(&self) -> ((Timestamp, u64), (Timestamp, u64)) {
        let start = (self.recorded_at, self.seq)
            .max((self.grant.not_before.unwrap_or(self.recorded_at), 0));
        let mut end = (self.grant.expires_at, 0);
        for r in self.revoked.iter().filter(|r| r.lifted.is_none()) {
            end = end.min(r.mark.order());
        }
        if let Some(m) = &self.removed {
            end = end.min(m.order());
        }
        (start, end)
    }

    pub fn status(&self, now: Timestamp) -> String {
        if let Some(r) = self.revoked.iter().find(|r| r.lifted.is_none()) {
            return format!("revoked {} by {}", r.mark.at, r.mark.by);
        }
        if let Some(m) = &self.removed {
            return format!("removed outside sshjit (found {} by {})", m.at, m.by);
        }
        if self.grant.expires_at <= now {
            "expired".into()
        } else {
            "active".into()
        }
    }
}

/// A change that is not a grant.
#[derive(Clone, Debug)]
pub struct Change {
    pub seq: u64,
    pub time: Timestamp,
    pub action: &'static str,
    pub by: String,
    pub what: String,
    /// Grants it touched (for `--user`).
    pub grants: Vec<usize>,
}

/// The trail replayed.
#[derive(Debug, Default)]
pub struct History {
    pub entries: Vec<Entry>,
    pub changes: Vec<Change>,
    pub freezes: Vec<Freeze>,
}

fn freeze(freezes: &mut Vec<Freeze>, mark: Stamp, reason: &str) {
    if freezes.last().is_none_or(|f| f.until.is_some()) {
        freezes.push(Freeze {
            from: mark,
            reason: reason.to_owned(),
            until: None,
        });
    }
}

fn thaw(freezes: &mut [Freeze], mark: Stamp) {
    if let Some(f) = freezes.last_mut()
        && f.until.is_none()
    {
        f.until = Some(mark);
    }
}

/// A period when only break-glass grants were valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Freeze {
    pub from: Stamp,
    pub reason: String,
    /// When and by whom it was thawed (`None`: still frozen).
    pub until: Option<Stamp>,
}

impl History {
    /// The freezes that kept `entry` out while it was otherwise in force
    /// (none for a break-glass grant).
    pub fn frozen_during(&self, entry: &Entry) -> Vec<&Freeze> {
        if entry.grant.break_glass {
            return Vec::new();
        }
        let (start, end) = entry.ordered_window();
        self.freezes
            .iter()
            .filter(|f| f.from.order() < end && f.until.as_ref().is_none_or(|u| u.order() > start))
            .collect()
    }
}

/// Replays records (in order, voided ones skipped) into grants and changes.
pub fn replay(records: &[Record<'static>]) -> History {
    let voided: Vec<u64> = records
        .iter()
        .filter_map(|r| match r.action {
            Action::Repair { voids, .. } => voids,
            _ => None,
        })
        .collect();
    let mut h = History::default();
    let mut active: Vec<Revocation<'static>> = Vec::new();
    let mut frozen = false;
    for r in records.iter().filter(|r| !voided.contains(&r.seq)) {
        let by = r.actor.to_string();
        let mut change = |action: &'static str, what: String, grants: Vec<usize>| {
            h.changes.push(Change {
                seq: r.seq,
                time: r.time,
                action,
                by: by.clone(),
                what,
                grants,
            });
        };
        match &r.action {
            Action::Grant { grant, forced } => {
                h.entries.push(entry(r, grant.clone(), false, *forced))
            }
            Action::Revoke { revocation } => {
                let hit = revoke(&mut h.entries, revocation, r, &by);
                change("revoke", describe_revocation(revocation), hit);
                active.push(revocation.clone());
            }
            Action::RequestOpen { request } => {
                let hosts: Vec<&str> = request.hosts.iter().map(|x| x.as_str()).collect();
                change(
                    "request",
                    format!(
                        "{}: {} asks role {} as {}{} for {} ({}{}): {}",
                        request.id,
                        request.requester,
                        request.role,
                        request.account,
                        if hosts.is_empty() {
                            String::new()
                        } else {
                            format!(" on {}", hosts.join(","))
                        },
                        sshjit_policy::time::format_duration(std::time::Duration::from_secs(
                            request.duration
                        )),
                        request.issue.as_str(),
                        if request.break_glass {
                            ", break-glass"
                        } else {
                            ""
                        },
                        quote_for_display(request.reason.as_str(), 200)
                    ),
                    Vec::new(),
                )
            }
            Action::RequestApprove { id, reason } => change(
                "approve",
                format!(
                    "{id}{}",
                    reason
                        .as_ref()
                        .map(|x| format!(": {}", quote_for_display(x.as_str(), 200)))
                        .unwrap_or_default()
                ),
                Vec::new(),
            ),
            Action::RequestGrant {
                id,
                grant,
                approved_by,
                approvers,
                certificate,
            } => {
                h.entries.push(entry(r, grant.clone(), false, false));
                let who: Vec<&str> = approvers.iter().map(|a| a.as_str()).collect();
                change(
                    "approved",
                    format!(
                        "{id}: {}{}",
                        match approved_by {
                            ApprovedBy::Approvers => format!("by {}", who.join(", ")),
                            ApprovedBy::Automatic =>
                                "automatically (the role needs no approval)".into(),
                            ApprovedBy::OnCall =>
                                "automatically (the requester was on call)".into(),
                            ApprovedBy::BreakGlass =>
                                "at once (break-glass, to be reviewed)".into(),
                        },
                        certificate
                            .as_ref()
                            .map(|c| format!(
                                "; certificate serial {} until {}",
                                c.serial, c.valid_before
                            ))
                            .unwrap_or_default()
                    ),
                    vec![h.entries.len() - 1],
                )
            }
            Action::RequestDeny { id, reason } => change(
                "deny",
                format!("{id}: {}", quote_for_display(reason.as_str(), 200)),
                Vec::new(),
            ),
            Action::RequestExpire { id } => change(
                "expire",
                format!("{id}: nobody decided in time"),
                Vec::new(),
            ),
            Action::RequestDone { id, revocation } => {
                let hit = revoke(&mut h.entries, revocation, r, &by);
                change("done", format!("{id}: access ended early"), hit);
                active.push(revocation.clone());
            }
            Action::RequestReview { id, note } => change(
                "review",
                format!("{id}: {}", quote_for_display(note.as_str(), 300)),
                Vec::new(),
            ),
            Action::Unrevoke {
                reason,
                revocations,
            } => {
                let mut hit = Vec::new();
                for lifted in revocations {
                    let t = lifted.target.to_string();
                    for (i, e) in h.entries.iter_mut().enumerate() {
                        for rv in e
                            .revoked
                            .iter_mut()
                            .filter(|x| x.target == t && x.lifted.is_none())
                        {
                            rv.lifted = Some(Stamp::of(r, &by));
                            hit.push(i);
                        }
                    }
                    active.retain(|a| a.target != lifted.target);
                }
                let targets: Vec<String> =
                    revocations.iter().map(|x| x.target.to_string()).collect();
                change(
                    "unrevoke",
                    format!(
                        "lifted {}: {}",
                        targets.join(", "),
                        quote_for_display(reason.as_str(), 200)
                    ),
                    hit,
                );
            }
            Action::Freeze { reason } => {
                frozen = true;
                freeze(&mut h.freezes, Stamp::of(r, &by), reason.as_str());
                change(
                    "freeze",
                    quote_for_display(reason.as_str(), 200),
                    Vec::new(),
                );
            }
            Action::Thaw { reason } => {
                frozen = false;
                thaw(&mut h.freezes, Stamp::of(r, &by));
                change("thaw", quote_for_display(reason.as_str(), 200), Vec::new());
            }
            Action::Prune {
                older_than,
                grants,
                revocations,
            } => change(
                "prune",
                format!(
                    "removed {} grant(s) expired more than {older_than} ago and {} dead revocation(s) from the policy",
                    grants.len(),
                    revocations.len()
                ),
                Vec::new(),
            ),
            Action::Repair { reason, voids, .. } => change(
                "repair",
                format!(
                    "{}{}",
                    voids
                        .map(|v| format!("voided record {v}: "))
                        .unwrap_or_default(),
                    quote_for_display(reason.as_str(), 300)
                ),
                Vec::new(),
            ),
            Action::HostAdd { name } => change("host add", format!("host {name}"), Vec::new()),
            Action::HostRemove { name } => {
                change("host remove", format!("host {name}"), Vec::new())
            }
            Action::PersonAdd { person, groups } => {
                let groups: Vec<&str> = groups.iter().map(|g| g.as_str()).collect();
                change(
                    "person add",
                    if groups.is_empty() {
                        format!("person {person}")
                    } else {
                        format!("person {person} (groups {})", groups.join(", "))
                    },
                    Vec::new(),
                )
            }
            Action::PersonRemove { person } => {
                change("person remove", format!("person {person}"), Vec::new())
            }
            Action::PersonKeyAdd {
                person,
                fingerprint,
            } => change(
                "person key add",
                format!("person {person}: key {fingerprint}"),
                Vec::new(),
            ),
            Action::Adopt {
                reason,
                frozen: adopted_frozen,
                grants,
                revocations,
            } => {
                let mut what = vec![quote_for_display(reason.as_str(), 300)];
                let mut touched = Vec::new();
                let adopted: HashMap<&str, &Grant<'static>> =
                    grants.iter().map(|g| (g.id.as_str(), g)).collect();
                // Grants the adopted document no longer has (or has
                // changed) were removed outside sshjit.
                let mut live: HashSet<String> = HashSet::new();
                for (i, e) in h.entries.iter_mut().enumerate() {
                    if e.removed.is_some() {
                        continue;
                    }
                    if adopted.get(e.grant.id.as_str()) == Some(&&e.grant) {
                        live.insert(e.grant.id.to_string());
                    } else {
                        e.removed = Some(Stamp::of(r, &by));
                        touched.push(i);
                    }
                }
                let mut added = 0;
                for g in grants {
                    if !live.contains(g.id.as_str()) {
                        h.entries.push(entry(r, g.clone(), true, false));
                        touched.push(h.entries.len() - 1);
                        added += 1;
                    }
                }
                if added > 0 {
                    what.push(format!("{added} grant(s) found"));
                }
                for rev in revocations {
                    if !active.iter().any(|a| a.target == rev.target) {
                        touched.extend(revoke(&mut h.entries, rev, r, &by));
                    }
                }
                active = revocations.clone();
                if *adopted_frozen != frozen {
                    frozen = *adopted_frozen;
                    if frozen {
                        freeze(&mut h.freezes, Stamp::of(r, &by), reason.as_str());
                        what.push("frozen".into());
                    } else {
                        thaw(&mut h.freezes, Stamp::of(r, &by));
                        what.push("not frozen".into());
                    }
                }
                change("adopt", what.join("; "), touched);
            }
        }
    }
    h
}

fn entry(r: &Record<'static>, grant: Grant<'static>, adopted: bool, forced: bool) -> Entry {
    Entry {
        grant,
        recorded_at: r.time,
        recorded_by: r.actor.to_string(),
        os_user: r.os_user.clone(),
        admin_host: r.host.clone(),
        seq: r.seq,
        adopted,
        forced,
        revoked: Vec::new(),
        removed: None,
    }
}

/// Marks the live grants a revocation (recorded by `r`) names; returns
/// their indexes.
fn revoke(
    entries: &mut [Entry],
    rev: &Revocation<'static>,
    r: &Record<'_>,
    by: &str,
) -> Vec<usize> {
    let mut hit = Vec::new();
    let rule = RevocationRule::new(&rev.target);
    let by = rev
        .revoked_by
        .as_ref()
        .map_or_else(|| by.to_owned(), |b| b.to_string());
    for (i, e) in entries.iter_mut().enumerate() {
        if e.removed.is_none() && e.grant.expires_at > r.time && rule.names(&e.grant) {
            e.revoked.push(Revoked {
                mark: Stamp::of(r, &by),
                target: rev.target.to_string(),
                reason: rev.reason.as_ref().map(|x| x.to_string()),
                lifted: None,
            });
            hit.push(i);
        }
    }
    hit
}

fn describe_revocation(r: &Revocation<'_>) -> String {
    let mut s = r.target.to_string();
    if let Some(reason) = &r.reason {
        let _ = write!(s, ": {}", quote_for_display(reason.as_str(), 200));
    }
    s
}

#[cfg(test)]
mod tests;
