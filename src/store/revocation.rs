//! Which grants a revocation names, by the evaluator's own rule: the
//! commands (`revoke`, `prune`, `list`) and the trail's replay (`history`)
//! must agree with what the login path does.

use sshjit_policy::evaluate::revocation_of;
use sshjit_policy::{Grant, Policy, Revocation, Target};

/// A revocation of one target, ready to be asked which grants it names
/// (`revocation_of` on a document holding just that revocation).
pub struct RevocationRule<'t>(Policy<'t>);

impl<'t> RevocationRule<'t> {
    pub fn new(target: &Target<'t>) -> Self {
        RevocationRule(Policy {
            version: 1,
            serial: None,
            frozen: false,
            grants: Vec::new(),
            revocations: vec![Revocation {
                target: target.clone(),
                reason: None,
                revoked_at: None,
                revoked_by: None,
            }],
        })
    }

    /// Whether a revocation of this target names `grant`.
    pub fn names(&self, grant: &Grant<'_>) -> bool {
        revocation_of(&self.0, grant).is_some()
    }
}
