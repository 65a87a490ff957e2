//! `sshjit check`: validate the config and the policy; on error say where
//! and how to fix it.

use std::fmt::Write as _;

use super::Failure;
use crate::fs::secure::{Access, access_for};
use crate::load::{Ask, LoadError, Setup};
use crate::source::Source;
use crate::{Globals, system, term};
use sshjit_policy::evaluate::{revocation_of, time_refusal};
use sshjit_policy::time::Timestamp;
use sshjit_policy::{Policy, Refusal, Target};
use std::path::PathBuf;

/// The account sshd runs the helper as, unless `--as` says otherwise
/// (the drop-in's `AuthorizedKeysCommandUser`).
pub const HELPER_ACCOUNT: &str = "sshjit";

pub fn run(globals: &Globals, account: Option<&str>) -> u8 {
    match check(globals, account) {
        Ok(report) => term::print(&report),
        Err(failure) => failure.report(),
    }
}

fn check(globals: &Globals, account: Option<&str>) -> Result<String, Failure> {
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
    out.push_str(&helper_view(globals, &setup, account)?);
    Ok(out)
}

/// What the helper's account will see: root reads everything, the helper
/// does not. Every file a login reads must be readable by that account
/// (and `state_dir` writable), or every login is denied; an unreadable
/// index only costs speed.
fn helper_view(globals: &Globals, setup: &Setup, account: Option<&str>) -> Result<String, Failure> {
    let name = match account {
        Some(a) => a,
        None if system::euid() == 0 => HELPER_ACCOUNT,
        // Not root: this run read everything as itself already.
        None => return Ok(String::new()),
    };
    let Some(who) = system::account(name) else {
        return match account {
            Some(_) => Err(Failure::usage(format!("--as: there is no account {name}"))),
            None => Ok(format!(
                "note: there is no account {name}: give --as USER (sshd's AuthorizedKeysCommandUser) to check what the helper can read\n"
            )),
        };
    };
    let fetch = &setup.config.fetch;
    let mut needed: Vec<(&str, PathBuf, Access)> = Vec::new();
    let config = globals
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CONFIG));
    if config.exists() {
        needed.push(("the config", config, Access::Read));
    }
    for s in &setup.sources {
        if let Source::File(p) = s {
            needed.push(("the policy", p.clone(), Access::Read));
            if fetch.allowed_signers.is_some() {
                needed.push((
                    "the signature",
                    super::sign::signature_path(p),
                    Access::Read,
                ));
            }
        }
    }
    let tls = &fetch.tls;
    for (what, path) in [
        ("allowed_signers", &fetch.allowed_signers),
        ("ca_file", &tls.ca_file),
        ("client_cert", &tls.client_cert),
        ("client_key", &tls.client_key),
        ("token_file", &tls.token_file),
    ] {
        if let Some(p) = path {
            needed.push((what, p.clone(), Access::Read));
        }
    }
    if fetch.allowed_signers.is_some() {
        needed.push(("state_dir", fetch.state_dir.clone(), Access::Write));
    }
    let label = format!("the helper's account {name} (uid {})", who.uid);
    let problems: Vec<String> = needed
        .iter()
        .filter_map(|(what, path, access)| {
            access_for(path, &who, *access)
                .err()
                .map(|why| format!("{what}: {why}"))
        })
        .collect();
    if !problems.is_empty() {
        return Err(Failure::refused(format!(
            "{label} {}; sshd runs the helper as that account, so every login is denied until it can (fix the modes, or give --as the account sshd really uses)",
            problems.join("; ")
        )));
    }
    let mut out = format!(
        "ok: {label} can read {}\n",
        needed
            .iter()
            .map(|(what, ..)| *what)
            .collect::<Vec<_>>()
            .join(", ")
    );
    for s in &setup.sources {
        if let Source::File(p) = s {
            let idx = crate::index::index_path(p);
            if idx.exists()
                && let Err(why) = access_for(&idx, &who, Access::Read)
            {
                out.push_str(&format!(
                    "warning: {label} {why}: the login path reads the whole document instead of the index\n"
                ));
            }
        }
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
