//! Who makes a change: what every trail record and admin log line is
//! attributed to.

use crate::system;
use sshjit_policy::{Actor, InvalidValue};

/// Who makes a change: the name it is attributed to and the account and
/// host it was made from.
#[derive(Clone, Debug)]
pub struct Who {
    pub actor: Actor<'static>,
    pub os_user: String,
    pub sudo_user: Option<String>,
    pub host: String,
}

impl Who {
    /// `by` (the command's `--by`) when given, else the person behind sudo
    /// (`SUDO_USER`), else the account running the command. The error is
    /// `by`'s, which is not a valid actor name.
    pub fn current(by: Option<&str>) -> Result<Who, InvalidValue> {
        let uid = system::uid();
        let os_user = system::user_name(uid).unwrap_or_else(|| format!("uid {uid}"));
        let sudo_user = std::env::var("SUDO_USER")
            .ok()
            .filter(|s| !s.trim().is_empty());
        let actor = match (by, &sudo_user) {
            (Some(b), _) => b.to_owned(),
            (None, Some(s)) => s.clone(),
            (None, None) => os_user.clone(),
        };
        let actor = Actor::new(actor)?.into_owned();
        let host = system::hostname().unwrap_or_else(|_| "unknown".into());
        Ok(Who {
            actor,
            os_user,
            sudo_user,
            host,
        })
    }
}
