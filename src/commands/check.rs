//! `sshjit check`: validate the config and the policy; on error say where
//! and how to fix it.

use std::fmt::Write as _;

use crate::{Globals, exit, term};
use sshjit_policy::evaluate::{revocation_of, time_refusal};
use sshjit_policy::time::Timestamp;
use sshjit_policy::{Policy, Refusal, Target};

pub fn run(globals: &Globals) -> u8 {
    let (config, fetched) = match crate::load::fetch(globals, None) {
        Ok(x) => x,
        Err(e) => {
            term::eprint(&format!("error: {e}\n"));
            return exit::DENIED;
        }
    };
    let doc = &fetched.doc;
    let policy = match Policy::parse(&doc.bytes) {
        Ok(p) => p,
        Err(e) => {
            let mut msg = format!("error: {}", doc.origin);
            if let Some((line, col)) = e.position {
                let _ = write!(msg, ":{line}:{col}");
            }
            msg.push_str(": ");
            if let Some(entry) = &e.entry {
                let _ = write!(msg, "{entry}: ");
            }
            let _ = writeln!(msg, "{}", e.message);
            if let Some(hint) = e.hint() {
                let _ = writeln!(msg, "hint: {hint}");
            }
            msg.push_str(
                "the whole document is refused: every login is denied until it is fixed\n",
            );
            term::eprint(&msg);
            return exit::DENIED;
        }
    };
    let note = match crate::load::accept(&config, &fetched, policy.serial) {
        Ok(n) => n,
        Err(e) => {
            term::eprint(&format!(
                "error: {e}\nevery login is denied until it is fixed\n"
            ));
            return exit::DENIED;
        }
    };
    let mut out = summary(&doc.origin, &policy, Timestamp::now());
    out.push_str(&note);
    // The index of the file the document came from.
    let used = crate::sources(globals, &config)
        .unwrap_or_default()
        .into_iter()
        .find(|s| s.to_string() == doc.origin);
    if let (Some(crate::source::Source::File(path)), None) = (used, fetched.cache_age) {
        out.push_str(&super::index::status(&path, &doc.bytes));
    }
    if let Some(age) = fetched.cache_age {
        out.push_str(&format!(
            "warning: served from the cache, {}s old\n",
            age.as_secs()
        ));
    }
    term::print(&out)
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
