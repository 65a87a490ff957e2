//! `sshjit freeze` / `sshjit thaw`: in an incident, stop every grant but
//! the break-glass ones with one command, and restore them with another.
//! Both log at alert priority.

use clap::Args;

use super::context::{self, waiting};
use super::editing::run_edit;
use super::failure::Failure;
use super::output::Output;
use crate::Globals;
use crate::log::Severity;
use crate::store::trail::Action;
use crate::store::{self, Edit};
use sshjit_policy::evaluate::{revocation_of, time_refusal};
use sshjit_policy::time::Timestamp;
use sshjit_policy::{Policy, Reason};

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
    let name = if frozen { "freeze" } else { "thaw" };
    run_edit(globals, name, |ctx, log| {
        log.severity(Severity::Alert);
        let who = context::who(args.by.as_deref())?;
        log.who(&who);
        let reason = Reason::new(args.reason.clone())
            .map_err(|e| Failure::usage(format!("--reason: {e}")))?
            .into_owned();
        log.field("reason", reason.as_str());
        let now = context::now();
        let edited = store::edit(&ctx.file, &who, now, Some(&mut waiting), |policy| {
            if policy.frozen == frozen {
                return Ok::<_, Failure>(Edit::Unchanged(format!(
                    "already {}; nothing changed\n",
                    if frozen { "frozen" } else { "thawed" }
                )));
            }
            policy.frozen = frozen;
            let (break_glass, others) = in_window(policy, now);
            let out = if frozen {
                format!(
                    "frozen: only break-glass grants are valid now ({break_glass} in their window); {others} other grant(s) stop working at the next login\n"
                )
            } else {
                format!("thawed: {others} grant(s) in their window work again\n")
            };
            let action = if frozen {
                Action::Freeze {
                    reason: reason.clone(),
                }
            } else {
                Action::Thaw {
                    reason: reason.clone(),
                }
            };
            Ok(Edit::change(action, out))
        })?;
        Ok((edited.committed, Output::text(edited.value)))
    })
}

/// Grants in their window and not revoked: (break-glass, others).
fn in_window(policy: &Policy<'_>, now: Timestamp) -> (usize, usize) {
    policy
        .grants
        .iter()
        .filter(|g| time_refusal(g, now).is_none() && revocation_of(policy, g).is_none())
        .fold((0, 0), |(b, o), g| {
            if g.break_glass {
                (b + 1, o)
            } else {
                (b, o + 1)
            }
        })
}
