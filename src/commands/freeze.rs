//! `sshjit freeze` / `sshjit thaw`: in an incident, stop every grant but
//! the break-glass ones with one command, and restore them with another.
//! Both log at alert priority.

use clap::Args;

use super::change::{Change, Place, apply};
use super::context::{self, waiting};
use super::editing::run_edit;
use super::failure::Failure;
use super::output::Output;
use super::remote::Remote;
use crate::Globals;
use crate::log::Severity;
use crate::store;
use sshjit_policy::Reason;

#[derive(Args, Debug, Clone)]
pub struct FreezeArgs {
    /// Why: required
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Who does it [default: SUDO_USER, else the user running sshjit]
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
}

/// Freezes (`frozen = true`) or thaws the policy.
pub fn run(globals: &Globals, args: &FreezeArgs, frozen: bool) -> Result<Output, Failure> {
    let reason = || {
        Reason::new(args.reason.clone())
            .map(Reason::into_owned)
            .map_err(|e| Failure::usage(format!("--reason: {e}")))
    };
    let change = |reason| {
        if frozen {
            Change::Freeze { reason }
        } else {
            Change::Thaw { reason }
        }
    };
    if let Some(remote) = Remote::from_globals(globals, false)? {
        if args.by.is_some() {
            return Err(Failure::usage(
                "--by: a server records the person you logged in as",
            ));
        }
        return remote.change(&change(reason()?));
    }
    let name = if frozen { "freeze" } else { "thaw" };
    run_edit(globals, name, |ctx, log| {
        log.severity(Severity::Alert);
        let who = context::who(args.by.as_deref())?;
        log.who(&who);
        let reason = reason()?;
        log.field("reason", reason.as_str());
        let now = context::now();
        let change = change(reason);
        let place = Place {
            origin: &ctx.policy_display(),
            max_grant: ctx.config.max_grant,
        };
        let edited = store::edit(&ctx.file, &who, now, Some(&mut waiting), |policy| {
            apply(&change, policy, &who, now, &place)
        })?;
        Ok((edited.committed, edited.value.into_output()))
    })
}
