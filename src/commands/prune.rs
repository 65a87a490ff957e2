//! `sshjit prune`: keep the policy small. Removes grants that expired
//! long enough ago, and revocations that can no longer name anything; the
//! trail keeps their history.

use std::time::Duration;

use clap::Args;

use super::context::{self, waiting};
use super::editing::run_edit;
use super::failure::Failure;
use super::output::Output;
use crate::Globals;
use crate::store::trail::Action;
use crate::store::{self, Edit, RevocationRule};
use sshjit_policy::time::{Timestamp, format_duration, parse_duration};
use sshjit_policy::{GrantId, Policy, Revocation, Target};

#[derive(Args, Debug, Clone)]
pub struct PruneArgs {
    /// Remove grants that expired longer ago than this
    #[arg(long, value_name = "DURATION", default_value = "7d")]
    pub older_than: String,
    /// Who does it [default: SUDO_USER, else the user running sshjit]
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
}

/// What pruning removes from `policy` at `cutoff`, and removes it.
///
/// - grants whose `expires_at` is at or before `cutoff`;
/// - revocations of a grant id no longer in the document;
/// - revocations of a user or principal that name no grant left and were
///   made before `cutoff`.
///
/// Revocations of fingerprints, key IDs and serials always stay: they
/// also stop certificates, which the document cannot see.
pub fn prune(
    policy: &mut Policy<'static>,
    cutoff: Timestamp,
) -> (Vec<GrantId<'static>>, Vec<Revocation<'static>>) {
    let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut policy.grants)
        .into_iter()
        .partition(|g| g.expires_at <= cutoff);
    policy.grants = kept;
    let names_nothing = |r: &Revocation<'_>| {
        let rule = RevocationRule::new(&r.target);
        !policy.grants.iter().any(|g| rule.names(g))
    };
    let old = |r: &Revocation<'_>| r.revoked_at.is_some_and(|t| t <= cutoff);
    let (dead, live): (Vec<_>, Vec<_>) = std::mem::take(&mut policy.revocations)
        .into_iter()
        .partition(|r| match &r.target {
            Target::Grant(_) => names_nothing(r),
            Target::User(_) | Target::Principal(_) => names_nothing(r) && old(r),
            Target::Fingerprint(_) | Target::KeyId(_) | Target::Serial(_) => false,
        });
    policy.revocations = live;
    (gone.into_iter().map(|g| g.id).collect(), dead)
}

pub fn run(globals: &Globals, args: &PruneArgs) -> Result<Output, Failure> {
    run_edit(globals, "prune", |ctx, log| {
        let who = context::who(args.by.as_deref())?;
        log.who(&who);
        let older: Duration = parse_duration(&args.older_than)
            .map_err(|e| Failure::usage(format!("--older-than {:?}: {e}", args.older_than)))?;
        log.field("older_than", &args.older_than);
        let now = context::now();
        let cutoff = now.saturating_sub(older);
        let edited = store::edit(&ctx.file, &who, now, Some(&mut waiting), |policy| {
            let (grants, revocations) = prune(policy, cutoff);
            if grants.is_empty() && revocations.is_empty() {
                return Ok::<_, Failure>(Edit::Unchanged((0, 0)));
            }
            let counts = (grants.len(), revocations.len());
            Ok(Edit::change(
                Action::Prune {
                    older_than: args.older_than.clone(),
                    grants,
                    revocations,
                },
                counts,
            ))
        })?;
        let (g, r) = edited.value;
        log.field("grants", &g.to_string())
            .field("revocations", &r.to_string());
        let out = if edited.committed.is_none() {
            format!(
                "nothing to prune: no grant expired more than {} ago, no dead revocation\n",
                format_duration(older)
            )
        } else {
            format!(
                "pruned {g} grant(s) that expired more than {} ago and {r} revocation(s) that name nothing left; the trail keeps their history\n",
                format_duration(older)
            )
        };
        Ok((edited.committed, Output::text(out)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prunes_old_grants_and_dead_revocations_only() {
        let doc = br#"{"version":1,"grants":[
            {"id":"g-old","user":"u","principal":"p","expires_at":"2026-01-01T00:00:00Z","reason":"r"},
            {"id":"g-recent","user":"u","principal":"p","expires_at":"2026-05-31T00:00:00Z","reason":"r"},
            {"id":"g-live","user":"v","principal":"q","expires_at":"2027-01-01T00:00:00Z","reason":"r"}
        ],"revocations":[
            {"grant":"g-old"},
            {"grant":"g-recent"},
            {"user":"gone","revoked_at":"2026-01-01T00:00:00Z"},
            {"user":"gone-recently","revoked_at":"2026-05-31T00:00:00Z"},
            {"user":"v","revoked_at":"2026-01-01T00:00:00Z"},
            {"principal":"nobody-uses-it"},
            {"fingerprint":"SHA256:gvf161vkHP4NKOD3jvKd+OHUg5Ys7Q5R+XZNdckCYK8"},
            {"key_id":"alice"},
            {"serial":7}
        ]}"#;
        let mut p = Policy::parse(doc).unwrap().into_owned();
        let cutoff = Timestamp::parse_rfc3339("2026-05-01T00:00:00Z").unwrap();
        let (grants, revs) = prune(&mut p, cutoff);
        assert_eq!(
            grants.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
            ["g-old"]
        );
        let removed: Vec<String> = revs.iter().map(|r| r.target.to_string()).collect();
        assert_eq!(removed, ["grant g-old", "user gone"]);
        assert_eq!(p.grants.len(), 2);
        assert_eq!(p.revocations.len(), 7);
        // What is left still validates.
        Policy::parse(&p.to_document().unwrap()).unwrap();
    }
}
