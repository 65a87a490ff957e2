//! The first step of a login: sshd's arguments, checked, as one request.

use super::{LoginArgs, LoginError, ModeKind};
use crate::index::PartRequest;
use sshjit_policy::types::parse_serial;
use sshjit_policy::{Fingerprint, KeyId, Mode, Username};

/// sshd's arguments after every check: nothing unchecked is left.
#[derive(Debug)]
pub struct LoginRequest<'a> {
    pub kind: ModeKind,
    pub user: Username<'a>,
    /// `%f`: the offered key's or the certificate's fingerprint.
    pub fingerprint: Option<Fingerprint>,
    /// `%i` (principals mode only).
    pub key_id: Option<KeyId<'a>>,
    /// `%s` (principals mode only).
    pub serial: Option<u64>,
}

/// Checks every argument, in the order sshd's command line gives them.
pub fn check(args: &LoginArgs) -> Result<LoginRequest<'_>, LoginError> {
    let bad = |e: sshjit_policy::types::InvalidValue| LoginError::Argument(e.to_string());
    let user = Username::new(args.user.as_str()).map_err(bad)?;
    let fingerprint = args
        .fingerprint
        .as_deref()
        .map(Fingerprint::parse)
        .transpose()
        .map_err(bad)?;
    // sshd expands %i to an empty string for a certificate without a key ID.
    let key_id = match args.key_id.as_deref() {
        None | Some("") => None,
        Some(k) => Some(KeyId::new(k).map_err(bad)?),
    };
    let serial = args
        .serial
        .as_deref()
        .map(parse_serial)
        .transpose()
        .map_err(bad)?;
    if args.mode == ModeKind::Keys && (key_id.is_some() || serial.is_some()) {
        return Err(LoginError::Argument(
            "--key-id and --serial belong to the principals mode".into(),
        ));
    }
    Ok(LoginRequest {
        kind: args.mode,
        user,
        fingerprint,
        key_id,
        serial,
    })
}

impl LoginRequest<'_> {
    /// The question for `evaluate`.
    pub fn mode(&self) -> Mode<'_> {
        match self.kind {
            ModeKind::Keys => Mode::Keys {
                offered: self.fingerprint,
            },
            ModeKind::Principals => Mode::Principals {
                key_id: self.key_id.as_ref(),
                serial: self.serial,
                fingerprint: self.fingerprint,
            },
        }
    }

    /// This user's part of a local policy, through its index.
    pub fn part(&self) -> PartRequest<'_> {
        PartRequest {
            user: self.user.as_str(),
            certificate: match self.kind {
                ModeKind::Keys => None,
                ModeKind::Principals => Some((self.key_id.as_ref(), self.serial, self.fingerprint)),
            },
        }
    }
}
