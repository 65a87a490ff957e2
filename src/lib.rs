//! sshjit: just-in-time, time-bound, revocable SSH access for stock OpenSSH.
//!
//! sshd runs `sshjit keys` / `sshjit principals` on every login; they read
//! the policy, keep only what is valid right now and print it. The login
//! path is a pipeline (`login`): the request from sshd's arguments →
//! `load` (config, `source` for the bytes, the `index` view of one user's
//! part, the policy core's parse, the signature and rollback accept) →
//! decide with the core's pure `evaluate` and render → emit the answer and
//! one `log` line. The people's commands live in `commands`; every edit
//! goes through `store` (lock, trail, atomic replace), which never prints.
//! `fs` is the file toolkit (secure open, atomic write, lock with a
//! deadline); the command line itself lives in the binary. The model,
//! evaluation, time and OpenSSH grammars are the `sshjit_policy` crate.
//! Only `system` may use `unsafe`.
#![deny(unsafe_code)]

pub mod commands;
pub mod config;
pub mod fs;
pub mod index;
pub mod load;
pub mod log;
pub mod login;
pub mod source;
pub mod store;
pub mod system;
pub mod term;

use std::path::PathBuf;

use config::Config;
use source::Source;

/// Exit statuses, the same for every command.
pub mod exit {
    /// Success (for `keys`/`principals`: evaluated, whether or not anything was printed).
    pub const OK: u8 = 0;
    /// Denied or refused: the config, the source or the policy could not be
    /// read or validated (`check`: the document is invalid).
    pub const DENIED: u8 = 1;
    /// Bad command line or argument.
    pub const USAGE: u8 = 2;
    /// Internal failure: output could not be written, deadline exceeded.
    pub const INTERNAL: u8 = 3;
}

/// Options valid before or after any subcommand.
#[derive(Clone, Debug, Default)]
pub struct Globals {
    pub config: Option<PathBuf>,
    pub policy: Option<String>,
    pub host: Option<String>,
    /// `--server URL`: the people's commands talk to this sshjit-server.
    pub server: Option<String>,
}

/// Why this host's name could not be had.
#[derive(Debug)]
pub enum HostError {
    /// `--host` is not a valid host name.
    Argument(String),
    /// gethostname() failed or gave something that is not a host name.
    System(String),
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostError::Argument(m) | HostError::System(m) => f.write_str(m),
        }
    }
}

/// This host's name for `hosts` globs: `--host`, else the config's
/// `host`, else gethostname().
pub fn host_name(
    globals: &Globals,
    config: &Config,
) -> Result<sshjit_policy::HostName<'static>, HostError> {
    if let Some(h) = &globals.host {
        return sshjit_policy::HostName::new(h.clone())
            .map_err(|e| HostError::Argument(e.to_string()));
    }
    if let Some(h) = &config.host {
        return Ok(h.clone());
    }
    let name = system::hostname().map_err(|e| HostError::System(e.to_string()))?;
    sshjit_policy::HostName::new(name).map_err(|e| HostError::System(e.to_string()))
}

/// The sources to read: `--policy` when given, else the config's.
pub fn sources(globals: &Globals, config: &Config) -> Result<Vec<Source>, source::SourceSpecError> {
    match &globals.policy {
        Some(p) => Ok(vec![Source::parse(p)?]),
        None => Ok(config.sources.clone()),
    }
}
