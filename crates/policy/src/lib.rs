//! sshjit's policy core: the policy document (version 1) as a validated
//! model, the pure `evaluate` that decides what is valid at a given
//! instant, time, the text rules for what may be shown or printed, and the
//! OpenSSH grammars the helper speaks (authorized_keys options, principals
//! lines, allowed_signers, sshd's zone-less local time).
//!
//! No I/O and no clock: every input is bytes or values, `now` is a
//! parameter, and what depends on the host (its local time zone) comes in
//! through a trait. It depends on std, serde and the key crate only.
#![forbid(unsafe_code)]

pub mod evaluate;
pub mod key;
pub mod model;
pub mod openssh;
pub mod render;
pub mod text;
pub mod time;
pub mod types;

/// For [`checked_str!`] in other crates.
#[doc(hidden)]
pub use serde as __serde;

pub use evaluate::{Decision, Denial, Mode, Refusal, Request, evaluate};
pub use key::AuthorizedKey;
pub use model::*;
pub use types::{
    Actor, Command, Fingerprint, FromPattern, GrantId, HostName, HostPattern, InvalidValue, KeyId,
    Principal, Reason, Username,
};
