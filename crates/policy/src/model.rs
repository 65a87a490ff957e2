//! The policy document (version 1): model, parsing and validation. Pure: no
//! I/O and no clock. A document is accepted whole or not at all.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use self::de::Rejected;
use crate::key::AuthorizedKey;
use crate::types::{
    Actor, Command, Fingerprint, FromPattern, GrantId, HostPattern, KeyId, Principal, Reason,
    Username,
};

use crate::time::Timestamp;

/// Largest policy document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 64 << 20;
/// Most grants in one document.
pub const MAX_GRANTS: usize = 1_000_000;
/// Most revocations in one document.
pub const MAX_REVOCATIONS: usize = 1_000_000;
/// Most `hosts` globs in one grant.
pub const MAX_HOSTS: usize = 256;
/// Most `from` patterns in one grant.
pub const MAX_FROM: usize = 64;

/// A validated policy document.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Policy<'a> {
    pub version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    pub frozen: bool,
    pub grants: Vec<Grant<'a>>,
    pub revocations: Vec<Revocation<'a>>,
}

/// What a grant lets in: a public key, or a certificate principal.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject<'a> {
    Key(AuthorizedKey<'a>),
    Principal(Principal<'a>),
}

/// One time-bound grant of access.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Grant<'a> {
    pub id: GrantId<'a>,
    pub user: Username<'a>,
    #[serde(flatten)]
    pub subject: Subject<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostPattern<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    pub expires_at: Timestamp,
    pub reason: Reason<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granted_by: Option<Actor<'a>>,
    #[serde(skip_serializing_if = "is_false")]
    pub break_glass: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<FromPattern<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Command<'a>>,
    #[serde(skip_serializing_if = "is_false")]
    pub restrict: bool,
}

/// What a revocation names. A revocation always wins over a grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target<'a> {
    Grant(GrantId<'a>),
    Fingerprint(Fingerprint),
    User(Username<'a>),
    Principal(Principal<'a>),
    KeyId(KeyId<'a>),
    Serial(u64),
}

/// One revocation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Revocation<'a> {
    #[serde(flatten)]
    pub target: Target<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<Actor<'a>>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What kind of refusal a [`PolicyError`] is. [`PolicyError::hint`] is
/// chosen by it, never by the message's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Not JSON: a syntax error, or the document ends early.
    Syntax,
    /// JSON of another type than the field takes (a number for a string).
    WrongType,
    /// A field this version does not know.
    UnknownField,
    /// A required field is absent (its name).
    MissingField(&'static str),
    /// A field given twice in one object.
    DuplicateField,
    /// A value its newtype refused (a user name, a glob, a key, a time...).
    InvalidValue,
    /// A time without `Z` or an offset.
    TimeWithoutZone,
    /// A key given with authorized_keys options in front of it.
    KeyOptions,
    /// A grant without exactly one of `key`/`principal`, or a revocation
    /// without exactly one selector.
    Selector,
    /// A grant whose `not_before` is not earlier than its `expires_at`.
    EmptyWindow,
    /// Two grants with one id.
    DuplicateId,
    /// A version other than 1.
    Version,
    /// Over a bound: document size, grants, revocations, hosts, from.
    TooLarge,
}

/// Why a document was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub kind: ErrorKind,
    /// 1-based line and column in the document, when known.
    pub position: Option<(usize, usize)>,
    /// Which entry, when known (`grants[3] (id "g-1")`).
    pub entry: Option<String>,
    pub message: String,
}

impl PolicyError {
    fn entry(kind: ErrorKind, entry: String, message: impl Into<String>) -> Self {
        PolicyError {
            kind,
            position: None,
            entry: Some(entry),
            message: message.into(),
        }
    }

    fn document(kind: ErrorKind, message: impl Into<String>) -> Self {
        PolicyError {
            kind,
            position: None,
            entry: None,
            message: message.into(),
        }
    }

    /// A reader's error, with the kind its visitor noted; an error serde_json
    /// raised itself is a syntax error or a value of the wrong JSON type.
    fn read(e: serde_json::Error, noted: Option<ErrorKind>) -> Self {
        let kind = noted.unwrap_or(match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ErrorKind::Syntax
            }
            serde_json::error::Category::Data | serde_json::error::Category::Io => {
                ErrorKind::WrongType
            }
        });
        // serde_json appends " at line L column C"; keep the message bare.
        let full = e.to_string();
        let message = match full.rfind(" at line ") {
            Some(i) if e.line() > 0 => full[..i].to_owned(),
            _ => full,
        };
        PolicyError {
            kind,
            position: (e.line() > 0).then_some((e.line(), e.column())),
            entry: None,
            message,
        }
    }

    /// The error without anything taken from the document: its kind and
    /// position only. For a document the reader may not be able to read
    /// (a root-only file given as `--policy`): a message must never show
    /// what the file holds.
    pub fn redacted(&self) -> PolicyError {
        let message = match self.kind {
            ErrorKind::Syntax => "not valid JSON here".to_owned(),
            ErrorKind::WrongType => "a value of the wrong JSON type".to_owned(),
            ErrorKind::UnknownField => "a field this version does not know".to_owned(),
            ErrorKind::MissingField(name) => format!("missing field `{name}`"),
            ErrorKind::DuplicateField => "a field given twice".to_owned(),
            ErrorKind::InvalidValue => "an invalid value".to_owned(),
            ErrorKind::TimeWithoutZone => "a time without a zone".to_owned(),
            ErrorKind::KeyOptions => "a key with authorized_keys options".to_owned(),
            ErrorKind::Selector => "not exactly one selector".to_owned(),
            ErrorKind::EmptyWindow => "not_before is not before expires_at".to_owned(),
            ErrorKind::DuplicateId => "two grants with one id".to_owned(),
            ErrorKind::Version => "not version 1".to_owned(),
            ErrorKind::TooLarge => "over a bound".to_owned(),
        };
        PolicyError {
            kind: self.kind,
            position: self.position,
            entry: None,
            message: format!(
                "{message} (the content is not shown: the file is not readable by everyone)"
            ),
        }
    }

    /// What to do about it, for `sshjit check`.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self.kind {
            ErrorKind::UnknownField => {
                "remove or correct that field: unknown fields are refused so a misspelt revocation is never ignored"
            }
            ErrorKind::MissingField("expires_at") => {
                "every grant needs an end: add \"expires_at\": \"2026-11-21T18:00:00Z\""
            }
            ErrorKind::MissingField("reason") => {
                "every grant needs a reason: add \"reason\": \"INC-1234 ...\""
            }
            ErrorKind::MissingField(_) => {
                "add the missing field; see the policy format in the README"
            }
            ErrorKind::DuplicateField => "a field appears twice in one object: keep one",
            ErrorKind::TimeWithoutZone => "end the time with Z (UTC) or an offset such as +01:00",
            ErrorKind::KeyOptions => {
                "write from=, command= and restrict as the grant's \"from\", \"command\" and \"restrict\" fields"
            }
            ErrorKind::Selector => "split the entry in two, one selector each",
            ErrorKind::DuplicateId => "give each grant its own id",
            ErrorKind::Syntax => {
                "the document is not valid JSON near this position; `python3 -m json.tool FILE` shows the first syntax error"
            }
            ErrorKind::WrongType
            | ErrorKind::InvalidValue
            | ErrorKind::EmptyWindow
            | ErrorKind::Version
            | ErrorKind::TooLarge => return None,
        })
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((line, column)) = self.position {
            write!(f, "line {line} column {column}: ")?;
        }
        if let Some(entry) = &self.entry {
            write!(f, "{entry}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for PolicyError {}

/// A grant as read, before the checks across its fields.
struct RawGrant<'a> {
    id: GrantId<'a>,
    user: Username<'a>,
    key: Option<AuthorizedKey<'a>>,
    principal: Option<Principal<'a>>,
    hosts: Vec<HostPattern<'a>>,
    not_before: Option<Timestamp>,
    expires_at: Timestamp,
    reason: Reason<'a>,
    granted_by: Option<Actor<'a>>,
    break_glass: bool,
    from: Vec<FromPattern<'a>>,
    command: Option<Command<'a>>,
    restrict: bool,
}

/// A revocation as read, before the checks across its fields.
struct RawRevocation<'a> {
    grant: Option<GrantId<'a>>,
    fingerprint: Option<Fingerprint>,
    user: Option<Username<'a>>,
    principal: Option<Principal<'a>>,
    key_id: Option<KeyId<'a>>,
    serial: Option<u64>,
    reason: Option<Reason<'a>>,
    revoked_at: Option<Timestamp>,
    revoked_by: Option<Actor<'a>>,
}

impl<'a> Grant<'a> {
    fn from_raw(raw: RawGrant<'a>) -> Result<Self, Rejected> {
        let id = raw.id;
        let fail = |kind, m: &str| {
            Err(Rejected {
                kind,
                message: format!(
                    "grant {}: {m}",
                    crate::text::quote_for_display(id.as_str(), 64)
                ),
            })
        };
        let subject = match (raw.key, raw.principal) {
            (Some(k), None) => Subject::Key(k),
            (None, Some(p)) => Subject::Principal(p),
            _ => {
                return fail(
                    ErrorKind::Selector,
                    "needs exactly one of \"key\" or \"principal\"",
                );
            }
        };
        if let Some(nb) = raw.not_before
            && nb >= raw.expires_at
        {
            return fail(
                ErrorKind::EmptyWindow,
                "\"not_before\" must be earlier than \"expires_at\"",
            );
        }
        if raw.hosts.len() > MAX_HOSTS {
            return fail(ErrorKind::TooLarge, "has more than 256 \"hosts\" patterns");
        }
        if raw.from.len() > MAX_FROM {
            return fail(ErrorKind::TooLarge, "has more than 64 \"from\" patterns");
        }
        Ok(Grant {
            id,
            user: raw.user,
            subject,
            hosts: raw.hosts,
            not_before: raw.not_before,
            expires_at: raw.expires_at,
            reason: raw.reason,
            granted_by: raw.granted_by,
            break_glass: raw.break_glass,
            from: raw.from,
            command: raw.command,
            restrict: raw.restrict,
        })
    }

    pub fn key(&self) -> Option<&AuthorizedKey<'a>> {
        match &self.subject {
            Subject::Key(k) => Some(k),
            Subject::Principal(_) => None,
        }
    }

    pub fn principal(&self) -> Option<&Principal<'a>> {
        match &self.subject {
            Subject::Principal(p) => Some(p),
            Subject::Key(_) => None,
        }
    }

    pub fn into_owned(self) -> Grant<'static> {
        Grant {
            id: self.id.into_owned(),
            user: self.user.into_owned(),
            subject: match self.subject {
                Subject::Key(k) => Subject::Key(k.into_owned()),
                Subject::Principal(p) => Subject::Principal(p.into_owned()),
            },
            hosts: self
                .hosts
                .into_iter()
                .map(HostPattern::into_owned)
                .collect(),
            not_before: self.not_before,
            expires_at: self.expires_at,
            reason: self.reason.into_owned(),
            granted_by: self.granted_by.map(Actor::into_owned),
            break_glass: self.break_glass,
            from: self.from.into_iter().map(FromPattern::into_owned).collect(),
            command: self.command.map(Command::into_owned),
            restrict: self.restrict,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Grant<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de::grant(d)
    }
}

impl<'a> Revocation<'a> {
    fn from_raw(raw: RawRevocation<'a>) -> Result<Self, Rejected> {
        let mut targets = [
            raw.grant.map(Target::Grant),
            raw.fingerprint.map(Target::Fingerprint),
            raw.user.map(Target::User),
            raw.principal.map(Target::Principal),
            raw.key_id.map(Target::KeyId),
            raw.serial.map(Target::Serial),
        ]
        .into_iter()
        .flatten();
        let (Some(target), None) = (targets.next(), targets.next()) else {
            return Err(Rejected {
                kind: ErrorKind::Selector,
                message: "a revocation needs exactly one of \"grant\", \"fingerprint\", \"user\", \"principal\", \"key_id\" or \"serial\"".to_owned(),
            });
        };
        Ok(Revocation {
            target,
            reason: raw.reason,
            revoked_at: raw.revoked_at,
            revoked_by: raw.revoked_by,
        })
    }

    pub fn into_owned(self) -> Revocation<'static> {
        Revocation {
            target: self.target.into_owned(),
            reason: self.reason.map(Reason::into_owned),
            revoked_at: self.revoked_at,
            revoked_by: self.revoked_by.map(Actor::into_owned),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Revocation<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de::revocation(d)
    }
}

impl Target<'_> {
    pub fn into_owned(self) -> Target<'static> {
        match self {
            Target::Grant(g) => Target::Grant(g.into_owned()),
            Target::Fingerprint(f) => Target::Fingerprint(f),
            Target::User(u) => Target::User(u.into_owned()),
            Target::Principal(p) => Target::Principal(p.into_owned()),
            Target::KeyId(k) => Target::KeyId(k.into_owned()),
            Target::Serial(s) => Target::Serial(s),
        }
    }
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Grant(g) => write!(f, "grant {g}"),
            Target::Fingerprint(fp) => write!(f, "fingerprint {fp}"),
            Target::User(u) => write!(f, "user {u}"),
            Target::Principal(p) => write!(f, "principal {p}"),
            Target::KeyId(k) => write!(
                f,
                "key_id {}",
                crate::text::quote_for_display(k.as_str(), 64)
            ),
            Target::Serial(s) => write!(f, "serial {s}"),
        }
    }
}

impl<'a> Policy<'a> {
    /// Parses and validates a whole document. Any error refuses all of it.
    pub fn parse(document: &'a [u8]) -> Result<Self, PolicyError> {
        if document.len() > MAX_DOCUMENT_BYTES {
            return Err(PolicyError::document(
                ErrorKind::TooLarge,
                format!("document is larger than {} bytes", MAX_DOCUMENT_BYTES),
            ));
        }
        let noted = Cell::new(None);
        let raw =
            de::read_document(document, &noted).map_err(|e| PolicyError::read(e, noted.get()))?;
        if raw.version != 1 {
            return Err(PolicyError::document(
                ErrorKind::Version,
                format!(
                    "unsupported version {} (this sshjit reads version 1)",
                    raw.version
                ),
            ));
        }
        if raw.grants.len() > MAX_GRANTS {
            return Err(PolicyError::document(
                ErrorKind::TooLarge,
                format!("more than {MAX_GRANTS} grants"),
            ));
        }
        if raw.revocations.len() > MAX_REVOCATIONS {
            return Err(PolicyError::document(
                ErrorKind::TooLarge,
                format!("more than {MAX_REVOCATIONS} revocations"),
            ));
        }
        let policy = Policy {
            version: 1,
            serial: raw.serial,
            frozen: raw.frozen,
            grants: raw.grants,
            revocations: raw.revocations,
        };
        policy.check_unique_ids()?;
        Ok(policy)
    }

    fn check_unique_ids(&self) -> Result<(), PolicyError> {
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(self.grants.len());
        for (i, g) in self.grants.iter().enumerate() {
            if let Some(first) = seen.insert(g.id.as_str(), i) {
                return Err(PolicyError::entry(
                    ErrorKind::DuplicateId,
                    format!("grants[{i}]"),
                    format!(
                        "duplicate grant id {} (first used by grants[{first}])",
                        crate::text::quote_for_display(g.id.as_str(), 64)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// An empty, valid document.
    pub fn empty() -> Policy<'static> {
        Policy {
            version: 1,
            serial: None,
            frozen: false,
            grants: Vec::new(),
            revocations: Vec::new(),
        }
    }

    pub fn into_owned(self) -> Policy<'static> {
        Policy {
            version: self.version,
            serial: self.serial,
            frozen: self.frozen,
            grants: self.grants.into_iter().map(Grant::into_owned).collect(),
            revocations: self
                .revocations
                .into_iter()
                .map(Revocation::into_owned)
                .collect(),
        }
    }

    /// The document as pretty JSON with a final newline, re-validated:
    /// what is written is always something `parse` accepts.
    pub fn to_document(&self) -> Result<Vec<u8>, PolicyError> {
        let mut out = serde_json::to_vec_pretty(self)
            .map_err(|e| PolicyError::document(ErrorKind::InvalidValue, e.to_string()))?;
        out.push(b'\n');
        Policy::parse(&out)?;
        Ok(out)
    }

    pub fn grant(&self, id: &str) -> Option<&Grant<'a>> {
        self.grants.iter().find(|g| g.id.as_str() == id)
    }
}

mod de;
#[cfg(test)]
mod tests;
