//! Loading the policy as the login path does, for the read-only aids
//! (`check`, `explain`, `verify`): config, fetch, and the read-only
//! rollback check. Nothing is recorded: no serial, no cache.

use std::time::Instant;

use crate::Globals;
use crate::config::{self, Config};
use crate::source::{self, Fetched, Query};

/// Reads the config and fetches the document as the helper does, asking
/// the endpoint for the whole document of this host (or, with `user`, that
/// user's part). Nothing is recorded: no serial, no cache.
pub fn fetch(globals: &Globals, user: Option<&str>) -> Result<(Config, Fetched), String> {
    let started = Instant::now();
    let config = config::load(globals.config.as_deref()).map_err(|e| e.to_string())?;
    let sources = crate::sources(globals, &config)?;
    let host = crate::host_name(globals, &config).ok();
    let req = source::Request {
        query: Query {
            user,
            host: host.as_ref().map(|h| h.as_str()),
            mode: None,
        },
        deadline: source::network_deadline(started, config.timeout),
        persist: false,
    };
    let fetched = source::fetch(&sources, &config.fetch, &req, None).map_err(|e| e.to_string())?;
    Ok((config, fetched))
}

/// The rollback check of a parsed document, read-only; returns a line
/// about the signature and serial for people (empty when unsigned).
pub fn accept(config: &Config, fetched: &Fetched, serial: Option<u64>) -> Result<String, String> {
    let req = source::Request {
        query: Query::default(),
        deadline: Instant::now() + config.timeout,
        persist: false,
    };
    let accepted =
        source::accept(fetched, serial, &config.fetch, &req).map_err(|e| e.to_string())?;
    let Some(signer) = &fetched.signer else {
        return Ok(String::new());
    };
    let mut note = format!(
        "signature: good, by {} ({})",
        signer.principals, signer.fingerprint
    );
    match accepted.raised_from {
        None => note.push_str("; serial equal to the highest this host accepted"),
        Some(None) => note.push_str("; this host has accepted no serial yet"),
        Some(Some(h)) => note.push_str(&format!(
            "; serial above {h}, the highest this host accepted"
        )),
    }
    note.push('\n');
    Ok(note)
}
