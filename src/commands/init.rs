//! `sshjit init`: the one command that creates a policy. Every other
//! command refuses a policy that is not there, so a mistyped `--policy`
//! (or a hostile one, where the admin commands are delegated through sudo)
//! can never leave a root-owned file behind.
//!
//! It creates an empty document (serial 0) with its trail and index, only
//! where nothing is, only under a name ending in `.json`; the directories
//! above it only for the configured location (the config's first source,
//! `/etc/sshjit/policy.json` by default), never for a `--policy` path.

use std::path::Path;

use clap::Args;

use super::context;
use super::editing::run_edit;
use super::failure::Failure;
use super::output::Output;
use crate::Globals;
use crate::source::Source;
use crate::store::{self, StoreError, reason_text};
use sshjit_policy::{Policy, Reason};

#[derive(Args, Debug, Clone)]
pub struct InitArgs {
    /// Why (recorded in the trail) [default: "sshjit init: a new, empty policy"]
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Who does it [default: SUDO_USER, else the user running sshjit]
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
}

pub fn run(globals: &Globals, args: &InitArgs) -> Result<Output, Failure> {
    if globals.server.is_some() {
        return Err(Failure::usage(
            "--server: init creates a local policy file; a server keeps its own policy",
        ));
    }
    run_edit(globals, "init", |ctx, log| {
        let who = context::who(args.by.as_deref())?;
        log.who(&who);
        let reason = match &args.reason {
            Some(r) => Reason::new(r.clone())
                .map(Reason::into_owned)
                .map_err(|e| Failure::usage(format!("--reason: {e}")))?,
            None => reason_text("sshjit init: a new, empty policy"),
        };
        log.field("reason", reason.as_str());
        // Directories are made only for the location the config names.
        let configured = match (ctx.config.sources.first(), &globals.policy) {
            (Some(Source::File(_)), None) => true,
            (Some(Source::File(p)), Some(given)) => Path::new(given) == p,
            _ => false,
        };
        match store::create(&ctx.file, &who, context::now(), reason, configured) {
            Ok(committed) => {
                let mut out = Output::default();
                out.line(format!(
                    "created {}: an empty policy (serial 0), with its trail {}",
                    ctx.policy_display(),
                    ctx.file.trail().display()
                ));
                Ok((Some(committed), out))
            }
            // Run again on a policy that is there: nothing to do, as for
            // the other commands; anything else there is refused.
            Err(StoreError::Exists(path)) => match store::read_policy(&ctx.file) {
                Ok(Some(bytes)) if Policy::parse(&bytes).is_ok() => {
                    let mut out = Output::default();
                    out.note(format!(
                        "{} is already a policy: nothing changed",
                        path.display()
                    ));
                    Ok((None, out))
                }
                _ => Err(StoreError::Exists(path).into()),
            },
            Err(e) => Err(e.into()),
        }
    })
}
