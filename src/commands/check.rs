//! `sshjit check`: validate the config and the policy; on error say where
//! and how to fix it.

use std::fmt::Write as _;

use super::Failure;
use crate::load::{Ask, LoadError, Setup};
use crate::source::Source;
use crate::{Globals, term};
use sshjit_policy::evaluate::{revocation_of, time_refusal};
use sshjit_policy::time::Timestamp;
use sshjit_policy::{Policy, Refusal, Target};

pub fn run(globals: &Globals) -> u8 {
    match check(globals) {
        Ok(report) => term::print(&report),
        Err(failure) => failure.report(),
    }
}

fn check(globals: &Globals) -> Result<String, Failure> {
    let setup = Setup::read(globals).map_err(|e| Failure::refused(e.to_string()))?;
    let fetch = setup
        .fetch(Ask::read_only(None))
        .map_err(|e| Failure::refused(e.to_string()))?;
    let loaded = fetch.load().map_err(|e| Failure::refused(refusal(&e)))?;
    let (fetched, doc) = (loaded.fetched, &loaded.fetched.doc);
    let mut out = summary(&doc.origin, &loaded.policy, Timestamp::now());
    out.push_str(&loaded.signature_note());
    // The index of the file the document came from.
    let used = setup.sources.iter().find(|s| s.to_string() == doc.origin);
    if let (Some(Source::File(path)), None) = (used, fetched.cache_age) {
        out.push_str(&super::index::status(path, &doc.bytes));
    }
    if let Some(age) = fetched.cache_age {
        out.push_str(&format!(
            "warning: served from the cache, {}s old\n",
            age.as_secs()
        ));
    }
    Ok(out)
}

/// Why the document is refused: where, and how to fix it.
fn refusal(e: &LoadError) -> String {
    let LoadError::Policy { origin, error } = e else {
        return format!("{e}\nevery login is denied until it is fixed");
    };
    let mut msg = origin.clone();
    if let Some((line, col)) = error.position {
        let _ = write!(msg, ":{line}:{col}");
    }
    msg.push_str(": ");
    if let Some(entry) = &error.entry {
        let _ = write!(msg, "{entry}: ");
    }
    let _ = writeln!(msg, "{}", error.message);
    if let Some(hint) = error.hint() {
        let _ = writeln!(msg, "hint: {hint}");
    }
    msg.push_str("the whole document is refused: every login is denied until it is fixed");
    msg
}

/// The one-paragraph report of a valid document, with warnings.
pub fn summary(origin: &str, policy: &Policy<'_>, now: Timestamp) -> String {
    let (mut valid, mut expired, mut pending, mut revoked) = (0, 0, 0, 0);
    for g in &policy.grants {
        match time_refusal(g, now) {
            Some(Refusal::Expired) => expired += 1,
            Some(_) => pending += 1,
            None if revocation_of(policy, g).is_some() => revoked += 1,
            None => valid += 1,
        }
    }
    let mut out = format!("ok: {origin}: version 1");
    if let Some(s) = policy.serial {
        let _ = write!(out, ", serial {s}");
    }
    let _ = writeln!(
        out,
        ", {} grants ({valid} in their window and not revoked, {revoked} revoked, {expired} expired, {pending} not yet valid), {} revocations, {}",
        policy.grants.len(),
        policy.revocations.len(),
        if policy.frozen {
            "FROZEN (only break-glass grants are valid)"
        } else {
            "not frozen"
        }
    );
    for (i, r) in policy.revocations.iter().enumerate() {
        if let Target::Grant(id) = &r.target
            && policy.grant(id.as_str()).is_none()
        {
            let _ = writeln!(
                out,
                "warning: revocations[{i}] names grant {id}, which is not in the document"
            );
        }
    }
    out
}
