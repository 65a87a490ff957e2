//! What the server does, apart from how it is asked: the administration run
//! on the server machine (`sshjit-server host add`, `user add`, ...) and
//! the HTTP endpoints both call these. Every change goes through
//! [`Ledger::commit`], so each has its record.

use std::fmt;
use std::sync::Arc;

use sshjit::store::Who;
use sshjit::store::trail::Action;
use sshjit_policy::{Fingerprint, HostName, Username};

use crate::ledger::{Committed, Decision, Ledger, LedgerError};
use crate::people;
use crate::signing::Sealer;
use crate::store::{Effect, PersonRow, StoreError};

/// Why an operation was refused or failed, with the HTTP status it maps to.
#[derive(Debug)]
pub enum OpError {
    /// Bad input (400).
    Usage(String),
    /// No credentials, or bad ones (401).
    Unauthorized(String),
    /// Credentials that do not allow this (403).
    Forbidden(String),
    NotFound(String),
    /// A name that is taken (409).
    Exists(String),
    /// Too many attempts (429).
    TooMany(String),
    /// The store cannot be reached (503).
    Unavailable(String),
    /// Anything else (500).
    Internal(String),
}

impl OpError {
    pub fn status(&self) -> u16 {
        match self {
            OpError::Usage(_) => 400,
            OpError::Unauthorized(_) => 401,
            OpError::Forbidden(_) => 403,
            OpError::NotFound(_) => 404,
            OpError::Exists(_) => 409,
            OpError::TooMany(_) => 429,
            OpError::Unavailable(_) => 503,
            OpError::Internal(_) => 500,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            OpError::Usage(m)
            | OpError::Unauthorized(m)
            | OpError::Forbidden(m)
            | OpError::NotFound(m)
            | OpError::Exists(m)
            | OpError::TooMany(m)
            | OpError::Unavailable(m)
            | OpError::Internal(m) => m,
        }
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for OpError {}

impl From<LedgerError> for OpError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Store(s) => s.into(),
            LedgerError::Invalid(m) => OpError::Usage(m),
            LedgerError::Busy => OpError::Unavailable(e.to_string()),
            LedgerError::Broken(_) => OpError::Internal(e.to_string()),
        }
    }
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Exists(what) => OpError::Exists(format!("{what} exists already")),
            StoreError::Unavailable(_) | StoreError::Conflict => {
                OpError::Unavailable(e.to_string())
            }
            StoreError::Stale => OpError::Unauthorized(e.to_string()),
            StoreError::Corrupt(_) => OpError::Internal(e.to_string()),
        }
    }
}

pub fn host_name(name: &str) -> Result<HostName<'static>, OpError> {
    HostName::new(name.to_owned())
        .map(HostName::into_owned)
        .map_err(|e| OpError::Usage(e.to_string()))
}

pub fn person_name(name: &str) -> Result<Username<'static>, OpError> {
    Username::new(name.to_owned())
        .map(Username::into_owned)
        .map_err(|e| OpError::Usage(format!("person: {e}")))
}

/// Enrolls a host; returns its bearer token, shown once and kept only as
/// a hash.
pub async fn host_add(
    ledger: &Ledger,
    who: &Who,
    name: &str,
) -> Result<(String, Committed), OpError> {
    let host = host_name(name)?;
    let (token, sha) = people::new_token("sjh_").map_err(OpError::Internal)?;
    let (_, committed) = ledger
        .commit(who, |view| {
            if view
                .hosts
                .values()
                .any(|h| h.as_str().eq_ignore_ascii_case(host.as_str()))
            {
                return Err(OpError::Exists(format!("host {host} exists already")));
            }
            Ok(Decision::Change {
                action: Box::new(Action::HostAdd { name: host.clone() }),
                policy: None,
                effect: Effect::HostAdd {
                    name: host.to_string(),
                    token_sha256: sha.clone(),
                },
                value: (),
            })
        })
        .await?;
    let committed = committed.ok_or_else(|| OpError::Internal("nothing recorded".into()))?;
    Ok((token, committed))
}

/// Removes a host: its token gets 401 from now on.
pub async fn host_remove(ledger: &Ledger, who: &Who, name: &str) -> Result<Committed, OpError> {
    let host = host_name(name)?;
    let (_, committed) = ledger
        .commit(who, |view| {
            let Some(found) = view
                .hosts
                .values()
                .find(|h| h.as_str().eq_ignore_ascii_case(host.as_str()))
            else {
                return Err(OpError::NotFound(format!("no host {host}")));
            };
            Ok(Decision::Change {
                action: Box::new(Action::HostRemove {
                    name: found.clone(),
                }),
                policy: None,
                effect: Effect::HostRemove {
                    name: found.to_string(),
                },
                value: (),
            })
        })
        .await?;
    committed.ok_or_else(|| OpError::Internal("nothing recorded".into()))
}

/// What `person_add` made: the TOTP seed's URI, shown once.
pub struct NewPerson {
    pub otpauth: String,
    pub committed: Committed,
}

/// Makes a person's account with a password and a fresh TOTP seed.
pub async fn person_add(
    ledger: &Ledger,
    sealer: &Sealer,
    who: &Who,
    name: &str,
    groups: &[String],
    password: &str,
    issuer: &str,
) -> Result<NewPerson, OpError> {
    let person = person_name(name)?;
    let mut checked = Vec::new();
    for g in groups {
        let g = Username::new(g.clone())
            .map_err(|e| OpError::Usage(format!("group: {e}")))?
            .into_owned();
        if !checked.contains(&g) {
            checked.push(g);
        }
    }
    if password.chars().count() < people::MIN_PASSWORD {
        return Err(OpError::Usage(format!(
            "the password must have at least {} characters",
            people::MIN_PASSWORD
        )));
    }
    if password.len() > people::MAX_PASSWORD {
        return Err(OpError::Usage("the password is too long".into()));
    }
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || people::hash_password(&password))
        .await
        .map_err(|e| OpError::Internal(e.to_string()))?
        .map_err(OpError::Internal)?;
    let secret = people::new_totp_secret().map_err(OpError::Internal)?;
    let sealed = sealer
        .seal(person.as_str(), &secret)
        .map_err(OpError::Internal)?;
    let row = PersonRow {
        name: person.to_string(),
        groups: checked.iter().map(ToString::to_string).collect(),
        password_hash: Some(hash),
        totp_sealed: Some(sealed),
        totp_last_step: 0,
        failures: 0,
        locked_until: 0,
    };
    let (_, committed) = ledger
        .commit(who, |_| {
            Ok::<_, OpError>(Decision::Change {
                action: Box::new(Action::PersonAdd {
                    person: person.clone(),
                    groups: checked.clone(),
                }),
                policy: None,
                effect: Effect::PersonAdd(row.clone()),
                value: (),
            })
        })
        .await?;
    Ok(NewPerson {
        otpauth: people::otpauth_uri(&secret, person.as_str(), issuer),
        committed: committed.ok_or_else(|| OpError::Internal("nothing recorded".into()))?,
    })
}

pub async fn person_remove(ledger: &Ledger, who: &Who, name: &str) -> Result<Committed, OpError> {
    let person = person_name(name)?;
    if ledger.store().person(person.as_str()).await?.is_none() {
        return Err(OpError::NotFound(format!("no person {person}")));
    }
    let (_, committed) = ledger
        .commit(who, |_| {
            Ok::<_, OpError>(Decision::Change {
                action: Box::new(Action::PersonRemove {
                    person: person.clone(),
                }),
                policy: None,
                effect: Effect::PersonRemove {
                    name: person.to_string(),
                },
                value: (),
            })
        })
        .await?;
    committed.ok_or_else(|| OpError::Internal("nothing recorded".into()))
}

/// Enrolls an SSH public key a person may log in with.
pub async fn person_key_add(
    ledger: &Ledger,
    who: &Who,
    name: &str,
    key_line: &str,
) -> Result<(Fingerprint, Committed), OpError> {
    let person = person_name(name)?;
    if ledger.store().person(person.as_str()).await?.is_none() {
        return Err(OpError::NotFound(format!("no person {person}")));
    }
    let key = sshjit_policy::AuthorizedKey::parse(key_line.trim().to_owned())
        .map_err(|e| OpError::Usage(e.to_string()))?;
    let fingerprint = key.fingerprint();
    let (_, committed) = ledger
        .commit(who, |_| {
            Ok::<_, OpError>(Decision::Change {
                action: Box::new(Action::PersonKeyAdd {
                    person: person.clone(),
                    fingerprint,
                }),
                policy: None,
                effect: Effect::PersonKeyAdd {
                    person: person.to_string(),
                    fingerprint: fingerprint.to_string(),
                    key: key.as_str().to_owned(),
                },
                value: (),
            })
        })
        .await?;
    Ok((
        fingerprint,
        committed.ok_or_else(|| OpError::Internal("nothing recorded".into()))?,
    ))
}

/// Adopts a whole policy document as the server's (moving a fleet from a
/// policy file to the server): recorded as an adopt record holding it. Its
/// serial carries over when higher, so hosts that read the file accept it.
pub async fn policy_import(
    ledger: &Ledger,
    who: &Who,
    document: &[u8],
    reason: &str,
) -> Result<Committed, OpError> {
    let policy = sshjit_policy::Policy::parse(document)
        .map_err(|e| OpError::Usage(format!("the document: {e}")))?
        .into_owned();
    let reason = sshjit_policy::Reason::new(reason.to_owned())
        .map_err(|e| OpError::Usage(format!("--reason: {e}")))?
        .into_owned();
    let (_, committed) = ledger
        .commit(who, |_| {
            Ok::<_, OpError>(Decision::Change {
                action: Box::new(Action::Adopt {
                    reason: reason.clone(),
                    frozen: policy.frozen,
                    grants: policy.grants.clone(),
                    revocations: policy.revocations.clone(),
                }),
                policy: Some(Box::new(policy.clone())),
                effect: Effect::None,
                value: (),
            })
        })
        .await?;
    committed.ok_or_else(|| OpError::Internal("nothing recorded".into()))
}

/// The server's view of the store, for commands that only read.
pub fn hosts(ledger: &Arc<Ledger>) -> Vec<String> {
    let mut names: Vec<String> = ledger
        .view()
        .hosts
        .values()
        .map(ToString::to_string)
        .collect();
    names.sort();
    names
}
