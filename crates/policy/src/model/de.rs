//! Reading a document. The three objects (the document, a grant, a
//! revocation) are read by hand-written serde visitors instead of derived
//! ones so that every refusal is noted with its [`ErrorKind`] as it
//! happens: serde's errors carry only text, and `sshjit check` picks its
//! hint from the kind, never from the text. Strings are borrowed from the
//! document where they have no escapes, as the derived code did.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{ErrorKind, Grant, RawGrant, RawRevocation, Revocation};
use crate::key::AuthorizedKey;
use crate::time::{TimeError, Timestamp};
use crate::types::{
    Actor, Command, Fingerprint, FromPattern, GrantId, HostPattern, InvalidValue, KeyId, Principal,
    Reason, Username, cow_str, quote_for_display,
};

/// Where a visitor notes the kind of the refusal it raises.
pub(super) type Note<'c> = &'c Cell<Option<ErrorKind>>;

/// The document's top level, before the whole-document checks.
pub(super) struct RawPolicy<'a> {
    pub version: u32,
    pub serial: Option<u64>,
    pub frozen: bool,
    pub grants: Vec<Grant<'a>>,
    pub revocations: Vec<Revocation<'a>>,
}

/// Reads a document, noting the kind of a refusal in `note`.
pub(super) fn read_document<'a>(
    document: &'a [u8],
    note: Note<'_>,
) -> Result<RawPolicy<'a>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(document);
    let raw = de.deserialize_map(PolicyVisitor(note))?;
    de.end()?;
    Ok(raw)
}

/// Reads one grant with serde's plain entry point (the trail's records
/// hold grants); the kind is not needed there.
pub(super) fn grant<'de, D: Deserializer<'de>>(d: D) -> Result<Grant<'de>, D::Error> {
    d.deserialize_map(GrantVisitor(&Cell::new(None)))
}

/// As [`grant`], for a revocation.
pub(super) fn revocation<'de, D: Deserializer<'de>>(d: D) -> Result<Revocation<'de>, D::Error> {
    d.deserialize_map(RevocationVisitor(&Cell::new(None)))
}

fn fail<E: de::Error>(note: Note<'_>, kind: ErrorKind, error: E) -> E {
    note.set(Some(kind));
    error
}

/// Fills `slot` from the next value, refusing a field given twice.
fn take<'de, A: MapAccess<'de>, T>(
    map: &mut A,
    note: Note<'_>,
    slot: &mut Option<T>,
    name: &'static str,
    read: impl FnOnce(&mut A) -> Result<T, A::Error>,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(fail(
            note,
            ErrorKind::DuplicateField,
            de::Error::duplicate_field(name),
        ));
    }
    *slot = Some(read(map)?);
    Ok(())
}

fn required<T, E: de::Error>(note: Note<'_>, slot: Option<T>, name: &'static str) -> Result<T, E> {
    slot.ok_or_else(|| fail(note, ErrorKind::MissingField(name), E::missing_field(name)))
}

fn unknown<E: de::Error>(note: Note<'_>, name: &str, expected: &'static [&'static str]) -> E {
    fail(
        note,
        ErrorKind::UnknownField,
        E::unknown_field(name, expected),
    )
}

/// A string value, borrowed when it can be.
struct Text;

impl<'de> DeserializeSeed<'de> for Text {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        cow_str(d)
    }
}

/// `null` or what `S` reads.
struct Nullable<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Nullable<S> {
    type Value = Option<S::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Nullable<S> {
    type Value = Option<S::Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value or null")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(d).map(Some)
    }
}

/// A string checked by a newtype's constructor.
struct Checked<'c, T> {
    note: Note<'c>,
    check: fn(Cow<'_, str>) -> Result<T, Rejected>,
}

/// A value or entry rejected: the kind, and the message serde reports.
pub(super) struct Rejected {
    pub kind: ErrorKind,
    pub message: String,
}

impl From<InvalidValue> for Rejected {
    fn from(e: InvalidValue) -> Self {
        Rejected {
            kind: ErrorKind::InvalidValue,
            message: e.to_string(),
        }
    }
}

impl<'de, T> DeserializeSeed<'de> for Checked<'_, T> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        (self.check)(cow_str(d)?).map_err(|r| fail(self.note, r.kind, de::Error::custom(r.message)))
    }
}

/// A JSON list of what `S` reads.
struct List<S>(S);

impl<'de, S: DeserializeSeed<'de> + Copy> DeserializeSeed<'de> for List<S> {
    type Value = Vec<S::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, S: DeserializeSeed<'de> + Copy> Visitor<'de> for List<S> {
    type Value = Vec<S::Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // The bound on entries is checked by the caller; cap the
        // preallocation so a claimed size cannot reserve memory.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(self.0)? {
            out.push(v);
        }
        Ok(out)
    }
}

impl<T> Clone for Checked<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Checked<'_, T> {}

/// Builds the seed of a string newtype checked by its constructor.
fn checked<T>(note: Note<'_>, check: fn(Cow<'_, str>) -> Result<T, Rejected>) -> Checked<'_, T> {
    Checked { note, check }
}

fn timestamp(s: Cow<'_, str>) -> Result<Timestamp, Rejected> {
    Timestamp::parse_rfc3339(&s).map_err(|e| Rejected {
        kind: match e {
            TimeError::NoZone => ErrorKind::TimeWithoutZone,
            TimeError::Syntax | TimeError::Range | TimeError::Duration => ErrorKind::InvalidValue,
        },
        message: format!("{}: {e}", quote_for_display(&s, 48)),
    })
}

fn public_key(s: Cow<'_, str>) -> Result<AuthorizedKey<'_>, Rejected> {
    AuthorizedKey::parse_noting_options(s).map_err(|(e, options)| Rejected {
        kind: if options {
            ErrorKind::KeyOptions
        } else {
            ErrorKind::InvalidValue
        },
        message: e.to_string(),
    })
}

/// Reads a string with `check` and keeps the document's borrow: the
/// constructors take `Cow<'de, str>`, which a plain fn pointer over any
/// lifetime cannot name, so the borrowing newtypes are read here.
fn borrowed<'de, A: MapAccess<'de>, T>(
    map: &mut A,
    note: Note<'_>,
    check: impl FnOnce(Cow<'de, str>) -> Result<T, Rejected>,
) -> Result<T, A::Error> {
    let s = map.next_value_seed(Text)?;
    check(s).map_err(|r| fail(note, r.kind, de::Error::custom(r.message)))
}

fn borrowed_opt<'de, A: MapAccess<'de>, T>(
    map: &mut A,
    note: Note<'_>,
    check: impl FnOnce(Cow<'de, str>) -> Result<T, Rejected>,
) -> Result<Option<T>, A::Error> {
    match map.next_value_seed(Nullable(Text))? {
        None => Ok(None),
        Some(s) => check(s)
            .map(Some)
            .map_err(|r| fail(note, r.kind, de::Error::custom(r.message))),
    }
}

/// A list of borrowing newtypes.
struct BorrowedList<'c, 'de, T> {
    note: Note<'c>,
    check: fn(Cow<'de, str>) -> Result<T, InvalidValue>,
}

impl<'de, T> DeserializeSeed<'de> for BorrowedList<'_, 'de, T> {
    type Value = Vec<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T> Visitor<'de> for BorrowedList<'_, 'de, T> {
    type Value = Vec<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of strings")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(256));
        while let Some(s) = seq.next_element_seed(Text)? {
            out.push(
                (self.check)(s)
                    .map_err(|e| fail(self.note, ErrorKind::InvalidValue, de::Error::custom(e)))?,
            );
        }
        Ok(out)
    }
}

struct PolicyVisitor<'c>(Note<'c>);

const POLICY_FIELDS: &[&str] = &["version", "serial", "frozen", "grants", "revocations"];

impl<'de> Visitor<'de> for PolicyVisitor<'_> {
    type Value = RawPolicy<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a policy document (a JSON object)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawPolicy<'de>, A::Error> {
        let note = self.0;
        let (mut version, mut serial, mut frozen) = (None, None, None);
        let (mut grants, mut revocations) = (None, None);
        while let Some(name) = map.next_key_seed(Text)? {
            match &*name {
                "version" => take(&mut map, note, &mut version, "version", |m| m.next_value())?,
                "serial" => take(&mut map, note, &mut serial, "serial", |m| {
                    m.next_value::<Option<u64>>()
                })?,
                "frozen" => take(&mut map, note, &mut frozen, "frozen", |m| m.next_value())?,
                "grants" => take(&mut map, note, &mut grants, "grants", |m| {
                    m.next_value_seed(List(GrantSeed(note)))
                })?,
                "revocations" => take(&mut map, note, &mut revocations, "revocations", |m| {
                    m.next_value_seed(List(RevocationSeed(note)))
                })?,
                other => return Err(unknown(note, other, POLICY_FIELDS)),
            }
        }
        Ok(RawPolicy {
            version: required(note, version, "version")?,
            serial: serial.flatten(),
            frozen: frozen.unwrap_or(false),
            grants: grants.unwrap_or_default(),
            revocations: revocations.unwrap_or_default(),
        })
    }
}

#[derive(Clone, Copy)]
struct GrantSeed<'c>(Note<'c>);

impl<'de> DeserializeSeed<'de> for GrantSeed<'_> {
    type Value = Grant<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Grant<'de>, D::Error> {
        d.deserialize_map(GrantVisitor(self.0))
    }
}

#[derive(Clone, Copy)]
struct RevocationSeed<'c>(Note<'c>);

impl<'de> DeserializeSeed<'de> for RevocationSeed<'_> {
    type Value = Revocation<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Revocation<'de>, D::Error> {
        d.deserialize_map(RevocationVisitor(self.0))
    }
}

struct GrantVisitor<'c>(Note<'c>);

const GRANT_FIELDS: &[&str] = &[
    "id",
    "user",
    "key",
    "principal",
    "hosts",
    "not_before",
    "expires_at",
    "reason",
    "granted_by",
    "break_glass",
    "from",
    "command",
    "restrict",
];

fn invalid(e: InvalidValue) -> Rejected {
    e.into()
}

impl<'de> Visitor<'de> for GrantVisitor<'_> {
    type Value = Grant<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a grant (a JSON object)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Grant<'de>, A::Error> {
        let note = self.0;
        let (mut id, mut user, mut key, mut principal) = (None, None, None, None);
        let (mut hosts, mut not_before, mut expires_at, mut reason) = (None, None, None, None);
        let (mut granted_by, mut break_glass, mut from) = (None, None, None);
        let (mut command, mut restrict) = (None, None);
        while let Some(name) = map.next_key_seed(Text)? {
            let m = &mut map;
            match &*name {
                "id" => take(m, note, &mut id, "id", |m| {
                    borrowed(m, note, |s| GrantId::new(s).map_err(invalid))
                })?,
                "user" => take(m, note, &mut user, "user", |m| {
                    borrowed(m, note, |s| Username::new(s).map_err(invalid))
                })?,
                "key" => take(m, note, &mut key, "key", |m| {
                    borrowed_opt(m, note, public_key)
                })?,
                "principal" => take(m, note, &mut principal, "principal", |m| {
                    borrowed_opt(m, note, |s| Principal::new(s).map_err(invalid))
                })?,
                "hosts" => take(m, note, &mut hosts, "hosts", |m| {
                    m.next_value_seed(BorrowedList {
                        note,
                        check: HostPattern::new,
                    })
                })?,
                "not_before" => take(m, note, &mut not_before, "not_before", |m| {
                    m.next_value_seed(Nullable(checked(note, timestamp)))
                })?,
                "expires_at" => take(m, note, &mut expires_at, "expires_at", |m| {
                    m.next_value_seed(checked(note, timestamp))
                })?,
                "reason" => take(m, note, &mut reason, "reason", |m| {
                    borrowed(m, note, |s| Reason::new(s).map_err(invalid))
                })?,
                "granted_by" => take(m, note, &mut granted_by, "granted_by", |m| {
                    borrowed_opt(m, note, |s| Actor::new(s).map_err(invalid))
                })?,
                "break_glass" => take(m, note, &mut break_glass, "break_glass", |m| {
                    m.next_value::<bool>()
                })?,
                "from" => take(m, note, &mut from, "from", |m| {
                    m.next_value_seed(BorrowedList {
                        note,
                        check: FromPattern::new,
                    })
                })?,
                "command" => take(m, note, &mut command, "command", |m| {
                    borrowed_opt(m, note, |s| Command::new(s).map_err(invalid))
                })?,
                "restrict" => take(m, note, &mut restrict, "restrict", |m| {
                    m.next_value::<bool>()
                })?,
                other => return Err(unknown(note, other, GRANT_FIELDS)),
            }
        }
        let raw = RawGrant {
            id: required(note, id, "id")?,
            user: required(note, user, "user")?,
            key: key.flatten(),
            principal: principal.flatten(),
            hosts: hosts.unwrap_or_default(),
            not_before: not_before.flatten(),
            expires_at: required(note, expires_at, "expires_at")?,
            reason: required(note, reason, "reason")?,
            granted_by: granted_by.flatten(),
            break_glass: break_glass.unwrap_or(false),
            from: from.unwrap_or_default(),
            command: command.flatten(),
            restrict: restrict.unwrap_or(false),
        };
        Grant::from_raw(raw).map_err(|r| fail(note, r.kind, de::Error::custom(r.message)))
    }
}

struct RevocationVisitor<'c>(Note<'c>);

const REVOCATION_FIELDS: &[&str] = &[
    "grant",
    "fingerprint",
    "user",
    "principal",
    "key_id",
    "serial",
    "reason",
    "revoked_at",
    "revoked_by",
];

impl<'de> Visitor<'de> for RevocationVisitor<'_> {
    type Value = Revocation<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a revocation (a JSON object)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Revocation<'de>, A::Error> {
        let note = self.0;
        let (mut grant, mut fingerprint, mut user) = (None, None, None);
        let (mut principal, mut key_id, mut serial) = (None, None, None);
        let (mut reason, mut revoked_at, mut revoked_by) = (None, None, None);
        while let Some(name) = map.next_key_seed(Text)? {
            let m = &mut map;
            match &*name {
                "grant" => take(m, note, &mut grant, "grant", |m| {
                    borrowed_opt(m, note, |s| GrantId::new(s).map_err(invalid))
                })?,
                "fingerprint" => take(m, note, &mut fingerprint, "fingerprint", |m| {
                    borrowed_opt(m, note, |s| Fingerprint::parse(&s).map_err(invalid))
                })?,
                "user" => take(m, note, &mut user, "user", |m| {
                    borrowed_opt(m, note, |s| Username::new(s).map_err(invalid))
                })?,
                "principal" => take(m, note, &mut principal, "principal", |m| {
                    borrowed_opt(m, note, |s| Principal::new(s).map_err(invalid))
                })?,
                "key_id" => take(m, note, &mut key_id, "key_id", |m| {
                    borrowed_opt(m, note, |s| KeyId::new(s).map_err(invalid))
                })?,
                "serial" => take(m, note, &mut serial, "serial", |m| {
                    m.next_value::<Option<u64>>()
                })?,
                "reason" => take(m, note, &mut reason, "reason", |m| {
                    borrowed_opt(m, note, |s| Reason::new(s).map_err(invalid))
                })?,
                "revoked_at" => take(m, note, &mut revoked_at, "revoked_at", |m| {
                    m.next_value_seed(Nullable(checked(note, timestamp)))
                })?,
                "revoked_by" => take(m, note, &mut revoked_by, "revoked_by", |m| {
                    borrowed_opt(m, note, |s| Actor::new(s).map_err(invalid))
                })?,
                other => return Err(unknown(note, other, REVOCATION_FIELDS)),
            }
        }
        let raw = RawRevocation {
            grant: grant.flatten(),
            fingerprint: fingerprint.flatten(),
            user: user.flatten(),
            principal: principal.flatten(),
            key_id: key_id.flatten(),
            serial: serial.flatten(),
            reason: reason.flatten(),
            revoked_at: revoked_at.flatten(),
            revoked_by: revoked_by.flatten(),
        };
        Revocation::from_raw(raw).map_err(|r| fail(note, r.kind, de::Error::custom(r.message)))
    }
}
