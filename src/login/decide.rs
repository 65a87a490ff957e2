//! The decision of a login, pure: the loaded policy, the request and the
//! clock in; what to answer sshd out. No I/O.

use crate::load::Loaded;
use sshjit_policy::render::{self, Expiry, RenderError};
use sshjit_policy::time::Timestamp;
use sshjit_policy::{Decision, Denial, HostName, Request};

use super::request::LoginRequest;

/// What a login gets. Only `Allow` prints anything.
#[must_use]
#[derive(Debug)]
pub enum Outcome<'p> {
    /// Nothing is valid.
    Deny(Denial),
    /// Valid for a fraction of a second more, but no whole second is left
    /// for sshd's expiry-time: nothing to print.
    Expiring,
    Allow(Answer<'p>),
}

/// The lines for sshd and the grants behind them.
#[derive(Debug)]
pub struct Answer<'p> {
    pub text: Vec<u8>,
    /// The grants the printed lines stand for, line by line.
    pub matched: Vec<&'p str>,
    pub lines: usize,
    /// The valid break-glass grants among them.
    pub break_glass: Vec<&'p str>,
}

/// Evaluates the request on the loaded view of the policy and renders the
/// valid grants.
pub fn decide<'p>(
    loaded: &'p Loaded<'_>,
    request: &LoginRequest<'_>,
    host: &HostName<'_>,
    expiry: Expiry<'_>,
    now: Timestamp,
) -> Result<Outcome<'p>, RenderError> {
    let req = Request {
        user: &request.user,
        host,
        mode: request.mode(),
    };
    let valid = match loaded.view().evaluate(&loaded.policy, &req, now) {
        Decision::Allow(valid) => valid,
        Decision::Deny(denial) => return Ok(Outcome::Deny(denial)),
    };
    let rendered = render::render(&valid, expiry, now)?;
    if rendered.lines.is_empty() {
        return Ok(Outcome::Expiring);
    }
    Ok(Outcome::Allow(Answer {
        matched: rendered
            .lines
            .iter()
            .flatten()
            .map(|id| id.as_str())
            .collect(),
        lines: rendered.lines.len(),
        text: rendered.text,
        break_glass: valid
            .iter()
            .filter(|g| g.break_glass)
            .map(|g| g.id.as_str())
            .collect(),
    }))
}
