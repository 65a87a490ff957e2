//! What every command for people starts from: the config, the policy file
//! to work on, the syslog, the clock, and who is acting.

use std::path::{Path, PathBuf};

use super::failure::Failure;
use crate::config::{self, Config};
use crate::log::Syslog;
use crate::source::Source;
use crate::store::{PolicyFile, Who};
use crate::{Globals, term};
use sshjit_policy::time::Timestamp;

/// The clock for admin commands, in whole seconds: grant windows and
/// trail times read better without nanoseconds, and nothing is lost.
pub fn now() -> Timestamp {
    Timestamp::from_unix(Timestamp::now().unix_seconds(), 0)
}

/// Who acts: `--by` when given, else `SUDO_USER`, else the account.
pub fn who(by: Option<&str>) -> Result<Who, Failure> {
    Who::current(by).map_err(|e| Failure::usage(format!("--by: {e}")))
}

/// Tells the admin, while it happens, that the command waits for the
/// policy's lock. A progress message, not a result: it cannot wait for
/// the command to finish.
pub fn waiting(lock: &Path) {
    term::eprint(&format!(
        "waiting for {} (another edit is in progress)...\n",
        lock.display()
    ));
}

/// What every admin command starts from.
pub struct Context {
    pub config: Config,
    pub file: PolicyFile,
    pub syslog: Syslog,
}

impl Context {
    /// Loads the config and picks the policy file: `--policy`, else the
    /// config's first source.
    pub fn load(globals: &Globals) -> Result<Context, Failure> {
        let config =
            config::load(globals.config.as_deref()).map_err(|e| Failure::refused(e.to_string()))?;
        let sources =
            crate::sources(globals, &config).map_err(|e| Failure::usage(e.to_string()))?;
        let path = policy_file(&sources)?;
        let file = PolicyFile::resolve(&path)?;
        let syslog = Syslog::new(&config.syslog_socket);
        Ok(Context {
            config,
            file,
            syslog,
        })
    }

    /// The policy's path for messages.
    pub fn policy_display(&self) -> String {
        self.file.policy.display().to_string()
    }
}

/// The admin commands edit a local file: the first source.
fn policy_file(sources: &[Source]) -> Result<PathBuf, Failure> {
    match sources.first() {
        Some(Source::File(p)) => Ok(p.clone()),
        #[allow(unreachable_patterns)]
        Some(other) => Err(Failure::usage(format!(
            "the policy source {other} is not a local file: the admin commands edit a file; give --policy PATH"
        ))),
        None => Err(Failure::usage("no policy source: give --policy PATH")),
    }
}
