//! The decision: which grants are valid for (user, host, mode) at `now`.
//! Pure: the caller passes the clock reading.

use crate::time::Timestamp;
use crate::{Fingerprint, Grant, HostName, HostPattern, KeyId, Policy, Subject, Target, Username};

/// What sshd asked, as the helper's arguments said it.
#[derive(Clone, Copy, Debug)]
pub enum Mode<'r> {
    /// `sshjit keys`: authorized keys, optionally only the offered one.
    Keys { offered: Option<Fingerprint> },
    /// `sshjit principals`: principals for a presented certificate.
    Principals {
        key_id: Option<&'r KeyId<'r>>,
        serial: Option<u64>,
        fingerprint: Option<Fingerprint>,
    },
}

/// One question: who logs in, where, and how.
#[derive(Clone, Copy, Debug)]
pub struct Request<'r> {
    pub user: &'r Username<'r>,
    pub host: &'r HostName<'r>,
    pub mode: Mode<'r>,
}

/// The answer. Anything but `Allow` means: print nothing.
#[must_use]
#[derive(Debug, PartialEq)]
pub enum Decision<'p, 'a> {
    /// These grants are valid right now, in document order (never empty).
    Allow(Vec<&'p Grant<'a>>),
    Deny(Denial),
}

/// Why nothing is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// No grant of this user is valid for this host, mode and time.
    NoValidGrant,
    /// The presented certificate (key ID, serial or fingerprint) is named by
    /// `revocations[revocation]`.
    CertificateRevoked { revocation: usize },
}

/// Why one grant is not valid for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The grant is for another account.
    OtherUser,
    /// A key grant asked for principals, or a principal grant for keys.
    OtherKind,
    /// sshd offered a different key.
    OtherKey,
    /// `now < not_before`.
    NotYetValid,
    /// `now >= expires_at`.
    Expired,
    /// No `hosts` glob matches this host.
    OtherHost,
    /// The document is frozen and the grant is not break-glass.
    Frozen,
    /// Named by `revocations[revocation]`.
    Revoked { revocation: usize },
}

/// Decides which grants are valid. Revocations always win; a frozen document
/// lets only break-glass grants through.
pub fn evaluate<'p, 'a>(
    policy: &'p Policy<'a>,
    req: &Request<'_>,
    now: Timestamp,
) -> Decision<'p, 'a> {
    if let Some(revocation) = certificate_revocation(policy, req) {
        return Decision::Deny(Denial::CertificateRevoked { revocation });
    }
    let user = req.user.as_str();
    let valid: Vec<&'p Grant<'a>> = policy
        .grants
        .iter()
        .filter(|g| g.user.as_str() == user)
        .filter(|g| first_refusal(policy, g, req, now).is_none())
        .collect();
    if valid.is_empty() {
        Decision::Deny(Denial::NoValidGrant)
    } else {
        Decision::Allow(valid)
    }
}

/// In principals mode, the revocation naming the presented certificate.
pub fn certificate_revocation(policy: &Policy<'_>, req: &Request<'_>) -> Option<usize> {
    let Mode::Principals {
        key_id,
        serial,
        fingerprint,
    } = req.mode
    else {
        return None;
    };
    policy.revocations.iter().position(|r| match &r.target {
        Target::KeyId(k) => key_id == Some(k),
        Target::Serial(s) => serial == Some(*s),
        Target::Fingerprint(fp) => fingerprint == Some(*fp),
        _ => false,
    })
}

/// Every reason the grant is not valid for `req` at `now` (empty: valid).
pub fn refusals(
    policy: &Policy<'_>,
    grant: &Grant<'_>,
    req: &Request<'_>,
    now: Timestamp,
) -> Vec<Refusal> {
    let mut out = Vec::new();
    if grant.user != *req.user {
        out.push(Refusal::OtherUser);
    }
    match (&grant.subject, req.mode) {
        (Subject::Key(key), Mode::Keys { offered }) => {
            if offered.is_some_and(|fp| key.fingerprint() != fp) {
                out.push(Refusal::OtherKey);
            }
        }
        (Subject::Principal(_), Mode::Principals { .. }) => {}
        _ => out.push(Refusal::OtherKind),
    }
    if !matches_host(&grant.hosts, req.host) {
        out.push(Refusal::OtherHost);
    }
    out.extend(time_refusal(grant, now));
    if policy.frozen && !grant.break_glass {
        out.push(Refusal::Frozen);
    }
    if let Some(revocation) = revocation_of(policy, grant) {
        out.push(Refusal::Revoked { revocation });
    }
    out
}

/// The first reason the grant is not valid, cheapest checks first.
fn first_refusal(
    policy: &Policy<'_>,
    grant: &Grant<'_>,
    req: &Request<'_>,
    now: Timestamp,
) -> Option<Refusal> {
    if grant.user != *req.user {
        return Some(Refusal::OtherUser);
    }
    if let Some(r) = time_refusal(grant, now) {
        return Some(r);
    }
    if policy.frozen && !grant.break_glass {
        return Some(Refusal::Frozen);
    }
    match (&grant.subject, req.mode) {
        (Subject::Key(key), Mode::Keys { offered }) => {
            if offered.is_some_and(|fp| key.fingerprint() != fp) {
                return Some(Refusal::OtherKey);
            }
        }
        (Subject::Principal(_), Mode::Principals { .. }) => {}
        _ => return Some(Refusal::OtherKind),
    }
    if !matches_host(&grant.hosts, req.host) {
        return Some(Refusal::OtherHost);
    }
    revocation_of(policy, grant).map(|revocation| Refusal::Revoked { revocation })
}

/// Whether the grant's window holds `now`: `not_before <= now < expires_at`.
pub fn time_refusal(grant: &Grant<'_>, now: Timestamp) -> Option<Refusal> {
    if grant.not_before.is_some_and(|nb| now < nb) {
        Some(Refusal::NotYetValid)
    } else if now >= grant.expires_at {
        Some(Refusal::Expired)
    } else {
        None
    }
}

/// The first revocation that names this grant: its id, its user, its key's
/// fingerprint or its principal.
pub fn revocation_of(policy: &Policy<'_>, grant: &Grant<'_>) -> Option<usize> {
    let mut fingerprint = None;
    policy
        .revocations
        .iter()
        .position(|r| match (&r.target, &grant.subject) {
            (Target::Grant(id), _) => *id == grant.id,
            (Target::User(u), _) => *u == grant.user,
            (Target::Principal(p), Subject::Principal(q)) => p == q,
            (Target::Fingerprint(fp), Subject::Key(key)) => {
                *fingerprint.get_or_insert_with(|| key.fingerprint()) == *fp
            }
            _ => false,
        })
}

/// Empty `hosts` means every host; otherwise one glob must match.
pub fn matches_host(hosts: &[HostPattern<'_>], host: &HostName<'_>) -> bool {
    hosts.is_empty()
        || hosts
            .iter()
            .any(|p| glob_match(p.as_str().as_bytes(), host.as_str().as_bytes()))
}

/// `*` (any run) and `?` (one byte), ASCII case-insensitive. Linear time:
/// backtracks only to the last `*`.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p].eq_ignore_ascii_case(&text[t])) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// One thing a revocation can name, as a kind and a value. A revocation
/// names a grant, or a presented certificate, exactly when its
/// [`revoked_name`] is among that grant's [`grant_names`] or that
/// certificate's [`certificate_names`]: the rule `revocation_of` and
/// `certificate_revocation` apply one revocation at a time, stated so that
/// a reader of a part of the policy (the index) can look revocations up by
/// name instead of scanning them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name<'a> {
    Grant(&'a str),
    User(&'a str),
    Principal(&'a str),
    Fingerprint(Fingerprint),
    KeyId(&'a str),
    Serial(u64),
}

impl Name<'_> {
    /// True for the names a presented certificate can have (key ID, serial,
    /// fingerprint); a fingerprint also names key grants.
    pub fn can_name_certificate(&self) -> bool {
        matches!(
            self,
            Name::KeyId(_) | Name::Serial(_) | Name::Fingerprint(_)
        )
    }
}

/// What a revocation names.
pub fn revoked_name<'a>(target: &'a Target<'_>) -> Name<'a> {
    match target {
        Target::Grant(id) => Name::Grant(id.as_str()),
        Target::User(u) => Name::User(u.as_str()),
        Target::Principal(p) => Name::Principal(p.as_str()),
        Target::Fingerprint(fp) => Name::Fingerprint(*fp),
        Target::KeyId(k) => Name::KeyId(k.as_str()),
        Target::Serial(s) => Name::Serial(*s),
    }
}

/// Every name under which a revocation names this grant: its id, its user,
/// and its principal or its key's fingerprint.
pub fn grant_names<'a>(grant: &'a Grant<'_>) -> [Name<'a>; 3] {
    [
        Name::Grant(grant.id.as_str()),
        Name::User(grant.user.as_str()),
        match &grant.subject {
            Subject::Principal(p) => Name::Principal(p.as_str()),
            Subject::Key(key) => Name::Fingerprint(key.fingerprint()),
        },
    ]
}

/// The names of the certificate presented in principals mode (its key ID,
/// serial and fingerprint, those sshd gave); none in keys mode.
pub fn certificate_names<'a>(mode: &Mode<'a>) -> Vec<Name<'a>> {
    let Mode::Principals {
        key_id,
        serial,
        fingerprint,
    } = *mode
    else {
        return Vec::new();
    };
    let mut names = Vec::with_capacity(3);
    names.extend(key_id.map(|k| Name::KeyId(k.as_str())));
    names.extend(serial.map(Name::Serial));
    names.extend(fingerprint.map(Name::Fingerprint));
    names
}
