//! Signed documents: the `allowed_signers` file (OpenSSH's format, the
//! subset that makes sense for one namespace) and verification of an
//! `ssh-keygen -Y sign -n sshjit-policy` signature over a document's exact
//! bytes. Pure: `now` is a parameter and the host's zone rules come in
//! through `LocalTime`.

use std::fmt;

use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PublicKey, SshSig};

use crate::AuthorizedKey;
use crate::evaluate::glob_match;
use crate::openssh::local_time::LocalTime;
use crate::time::{Civil, civil_to_unix};

/// The namespace every policy signature must carry.
pub const NAMESPACE: &str = "sshjit-policy";
/// Largest allowed_signers file read.
/// Largest signature accepted (an armored `ssh-keygen -Y sign` output).
pub const MAX_SIGNATURE_BYTES: usize = 16 << 10;
pub const MAX_ALLOWED_SIGNERS_BYTES: usize = 1 << 20;
/// The authenticator's "user present" flag in a FIDO (sk-*) signature.
const SK_USER_PRESENT: u8 = 0x01;

/// One line of allowed_signers.
#[derive(Clone, Debug)]
struct Entry {
    line: usize,
    /// The principals field as written (a comma-separated pattern list).
    principals: String,
    key: KeyData,
    namespaces: Option<String>,
    valid_after: Option<i64>,
    valid_before: Option<i64>,
}

/// The keys allowed to sign policy documents.
#[derive(Clone, Debug)]
pub struct AllowedSigners {
    origin: String,
    entries: Vec<Entry>,
}

/// Who signed an accepted document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signer {
    /// The principals field of the allowed_signers line that matched.
    pub principals: String,
    pub fingerprint: String,
}

/// Why a document's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// allowed_signers itself is unreadable or invalid.
    Signers(String),
    Missing(String),
    Malformed(String),
    WrongNamespace(String),
    UnknownSigner(String),
    /// The signer is listed but not for this namespace or not at this time.
    NotAllowed(String),
    /// The signature does not match the document.
    Mismatch(String),
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureError::Signers(m) => write!(f, "allowed_signers: {m}"),
            SignatureError::Missing(m)
            | SignatureError::Malformed(m)
            | SignatureError::WrongNamespace(m)
            | SignatureError::UnknownSigner(m)
            | SignatureError::NotAllowed(m)
            | SignatureError::Mismatch(m) => write!(f, "signature: {m}"),
        }
    }
}

impl std::error::Error for SignatureError {}

/// What is wrong with one line of allowed_signers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineProblem {
    NoPrincipals,
    UnclosedQuote,
    CertAuthority,
    /// An option given twice or without its value (its name).
    OptionTwice(&'static str),
    /// An option other than namespaces, valid-after, valid-before.
    UnsupportedOption(String),
    /// The options field does not split into `name[="value"]` items.
    BadOptions(String),
    /// `name=` not followed by a double-quoted value.
    OptionNotQuoted(String),
    OptionUnclosed(String),
    NoKey,
    ExpectedKey,
    Key(crate::InvalidValue),
    /// A valid-after/valid-before time that is not one.
    Time(String),
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineProblem::NoPrincipals => f.write_str("no principals"),
            LineProblem::UnclosedQuote => f.write_str("unclosed quote"),
            LineProblem::CertAuthority => f.write_str(
                "cert-authority is not supported: list the keys that sign policies themselves",
            ),
            LineProblem::OptionTwice(n) => write!(f, "option {n} given twice or without a value"),
            LineProblem::UnsupportedOption(n) => write!(
                f,
                "unsupported option {:?} (supported: namespaces, valid-after, valid-before)",
                crate::text::quote_for_display(n, 64)
            ),
            LineProblem::BadOptions(s) => write!(f, "bad options {s:?}"),
            LineProblem::OptionNotQuoted(n) => {
                write!(f, "option {n}: value must be in double quotes")
            }
            LineProblem::OptionUnclosed(n) => write!(f, "option {n}: unclosed quote"),
            LineProblem::NoKey => f.write_str("no key"),
            LineProblem::ExpectedKey => {
                f.write_str("expected '<type> <base64>' after the principals and options")
            }
            LineProblem::Key(e) => e.fmt(f),
            LineProblem::Time(v) => write!(
                f,
                "time {v:?}: expected YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS, optionally with Z"
            ),
        }
    }
}

impl AllowedSigners {
    /// Parses allowed_signers text. `zone` gives zone-less times the
    /// meaning OpenSSH gives them (the host's local time).
    pub fn parse(origin: &str, text: &str, zone: &dyn LocalTime) -> Result<Self, SignatureError> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let entry = parse_line(i + 1, line, zone)
                .map_err(|m| SignatureError::Signers(format!("{origin}:{}: {m}", i + 1)))?;
            entries.push(entry);
        }
        if entries.is_empty() {
            return Err(SignatureError::Signers(format!(
                "{origin}: no signer in it (an empty list would refuse every document)"
            )));
        }
        Ok(AllowedSigners {
            origin: origin.to_owned(),
            entries,
        })
    }

    /// Checks `armored` (an `ssh-keygen -Y sign` signature) over exactly
    /// `document`, at Unix time `now`.
    pub fn verify(
        &self,
        document: &[u8],
        armored: &[u8],
        now: i64,
    ) -> Result<Signer, SignatureError> {
        let (sig, signer) = self.admit(armored, now)?;
        PublicKey::from(sig.public_key().clone())
            .verify(NAMESPACE, document, &sig)
            .map_err(|_| {
                SignatureError::Mismatch(format!(
                    "does not match the document (signed by {}): the document or its signature was changed after signing",
                    signer.fingerprint
                ))
            })?;
        Ok(signer)
    }

    /// Everything [`AllowedSigners::verify`] checks but the signature over
    /// the document: the namespace, that its key is listed, allowed now
    /// and (for security keys) that the user was present. For a signature
    /// whose check over the document was already made, on exactly these
    /// bytes (by root, when it built the policy's index).
    pub fn vouch(&self, armored: &[u8], now: i64) -> Result<Signer, SignatureError> {
        self.admit(armored, now).map(|(_, signer)| signer)
    }

    fn admit(&self, armored: &[u8], now: i64) -> Result<(SshSig, Signer), SignatureError> {
        let sig = SshSig::from_pem(armored.trim_ascii()).map_err(|e| {
            SignatureError::Malformed(format!("not an ssh-keygen -Y sign signature ({e})"))
        })?;
        if sig.namespace() != NAMESPACE {
            return Err(SignatureError::WrongNamespace(format!(
                "made for namespace {:?}, not {NAMESPACE:?} (sign with `sshjit sign` or `ssh-keygen -Y sign -n {NAMESPACE}`)",
                crate::text::quote_for_display(sig.namespace(), 64)
            )));
        }
        let key = sig.public_key();
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let candidates: Vec<&Entry> = self.entries.iter().filter(|e| &e.key == key).collect();
        if candidates.is_empty() {
            return Err(SignatureError::UnknownSigner(format!(
                "signed by {fingerprint}, which is not in {}",
                self.origin
            )));
        }
        let mut refusal = None;
        let entry = candidates.into_iter().find(|e| match e.refusal(now) {
            Some(why) => {
                refusal = Some(why);
                false
            }
            None => true,
        });
        let Some(entry) = entry else {
            return Err(SignatureError::NotAllowed(format!(
                "signer {fingerprint} in {}: {}",
                self.origin,
                refusal.unwrap_or_default()
            )));
        };
        if matches!(key, KeyData::SkEd25519(_) | KeyData::SkEcdsaSha2NistP256(_)) {
            let data = sig.signature_bytes();
            // sk signatures end with flags (1 byte) and a counter (4 bytes).
            let flags = data.len().checked_sub(5).map(|i| data[i]);
            if flags.is_none_or(|f| f & SK_USER_PRESENT == 0) {
                return Err(SignatureError::NotAllowed(format!(
                    "signer {fingerprint}: the security key did not confirm user presence"
                )));
            }
        }
        let signer = Signer {
            principals: entry.principals.clone(),
            fingerprint,
        };
        Ok((sig, signer))
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl Entry {
    /// Why this line does not allow a policy signature at `now`.
    fn refusal(&self, now: i64) -> Option<String> {
        if let Some(ns) = &self.namespaces
            && !pattern_list_matches(ns, NAMESPACE)
        {
            return Some(format!(
                "line {} allows namespaces=\"{ns}\", not {NAMESPACE}",
                self.line
            ));
        }
        if self.valid_after.is_some_and(|t| now < t) {
            return Some(format!("line {} is not valid yet (valid-after)", self.line));
        }
        if self.valid_before.is_some_and(|t| now > t) {
            return Some(format!("line {} has expired (valid-before)", self.line));
        }
        None
    }
}

/// OpenSSH's pattern lists: comma-separated globs, `!` negates and wins.
fn pattern_list_matches(list: &str, value: &str) -> bool {
    let mut matched = false;
    for p in list.split(',') {
        let (neg, p) = match p.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, p),
        };
        if glob_match(p.as_bytes(), value.as_bytes()) {
            if neg {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// `principals [options] keytype base64 [comment]`.
fn parse_line(line_no: usize, line: &str, zone: &dyn LocalTime) -> Result<Entry, LineProblem> {
    let (principals, rest) = take_field(line)?;
    if principals.is_empty() {
        return Err(LineProblem::NoPrincipals);
    }
    let rest = rest.trim_start();
    let (second, after_second) = take_field(rest)?;
    let (options, key_text) = if looks_like_key_type(&second) {
        (None, rest)
    } else {
        (Some(second), after_second.trim_start())
    };
    let mut entry = Entry {
        line: line_no,
        principals,
        key: parse_key(key_text)?,
        namespaces: None,
        valid_after: None,
        valid_before: None,
    };
    if let Some(options) = options {
        for (name, value) in split_options(&options)? {
            match (name.to_ascii_lowercase().as_str(), value) {
                ("cert-authority", None) => {
                    return Err(LineProblem::CertAuthority);
                }
                ("namespaces", Some(v)) if entry.namespaces.is_none() => {
                    entry.namespaces = Some(v);
                }
                ("valid-after", Some(v)) if entry.valid_after.is_none() => {
                    entry.valid_after = Some(parse_time(&v, zone)?);
                }
                ("valid-before", Some(v)) if entry.valid_before.is_none() => {
                    entry.valid_before = Some(parse_time(&v, zone)?);
                }
                ("namespaces", _) => return Err(LineProblem::OptionTwice("namespaces")),
                ("valid-after", _) => return Err(LineProblem::OptionTwice("valid-after")),
                ("valid-before", _) => return Err(LineProblem::OptionTwice("valid-before")),
                (n, _) => return Err(LineProblem::UnsupportedOption(n.to_owned())),
            }
        }
    }
    Ok(entry)
}

/// One whitespace-separated field; double quotes group (and are removed
/// from a quoted principals field, as OpenSSH does).
fn take_field(s: &str) -> Result<(String, &str), LineProblem> {
    if let Some(rest) = s.strip_prefix('"') {
        let end = rest.find('"').ok_or(LineProblem::UnclosedQuote)?;
        return Ok((rest[..end].to_owned(), &rest[end + 1..]));
    }
    let mut in_quote = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_quote = !in_quote,
            ' ' | '\t' if !in_quote => return Ok((s[..i].to_owned(), &s[i..])),
            _ => {}
        }
    }
    if in_quote {
        return Err(LineProblem::UnclosedQuote);
    }
    Ok((s.to_owned(), ""))
}

fn looks_like_key_type(s: &str) -> bool {
    s.starts_with("ssh-") || s.starts_with("ecdsa-") || s.starts_with("sk-")
}

fn parse_key(text: &str) -> Result<KeyData, LineProblem> {
    if text.is_empty() {
        return Err(LineProblem::NoKey);
    }
    let mut parts = text.split_whitespace();
    let (Some(kind), Some(b64)) = (parts.next(), parts.next()) else {
        return Err(LineProblem::ExpectedKey);
    };
    let key = AuthorizedKey::parse(format!("{kind} {b64}")).map_err(LineProblem::Key)?;
    Ok(key.key_data())
}

/// `a,b="x,y",c` → [(a, None), (b, Some("x,y")), (c, None)].
fn split_options(s: &str) -> Result<Vec<(String, Option<String>)>, LineProblem> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let name_end = rest.find([',', '=']).unwrap_or(rest.len());
        let name = &rest[..name_end];
        if name.is_empty() {
            return Err(LineProblem::BadOptions(s.to_owned()));
        }
        rest = &rest[name_end..];
        let value = if let Some(r) = rest.strip_prefix('=') {
            let r = r
                .strip_prefix('"')
                .ok_or_else(|| LineProblem::OptionNotQuoted(name.to_owned()))?;
            let end = r
                .find('"')
                .ok_or_else(|| LineProblem::OptionUnclosed(name.to_owned()))?;
            rest = &r[end + 1..];
            Some(r[..end].to_owned())
        } else {
            None
        };
        out.push((name.to_owned(), value));
        rest = match rest.strip_prefix(',') {
            Some(r) if !r.is_empty() => r,
            Some(_) => return Err(LineProblem::BadOptions(s.to_owned())),
            None if rest.is_empty() => rest,
            None => return Err(LineProblem::BadOptions(s.to_owned())),
        };
    }
    Ok(out)
}

/// `YYYYMMDD[HHMM[SS]][Z]`: UTC with `Z`, else local time as OpenSSH reads it.
fn parse_time(v: &str, zone: &dyn LocalTime) -> Result<i64, LineProblem> {
    let (digits, utc) = match v.strip_suffix(['Z', 'z']) {
        Some(d) => (d, true),
        None => (v, false),
    };
    let bad = || LineProblem::Time(v.to_owned());
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n = |a: usize, b: usize| {
        digits
            .get(a..b)
            .map_or(0, |s| s.parse::<u32>().unwrap_or(0))
    };
    let c = Civil {
        year: i64::from(n(0, 4)),
        month: n(4, 6),
        day: n(6, 8),
        hour: n(8, 10),
        minute: n(10, 12),
        second: n(12, 14),
    };
    civil_to_unix(&c).ok_or_else(bad)?;
    if utc {
        civil_to_unix(&c).ok_or_else(bad)
    } else {
        zone.mktime_standard(&c).ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmhXmfyH35TmVDzfJ+0t0DbYFg88Gcc+UtpLZreAJk9";

    fn p(text: &str) -> Result<AllowedSigners, SignatureError> {
        AllowedSigners::parse("signers", text, &crate::openssh::local_time::Fixed(0))
    }

    #[test]
    fn parses_openssh_lines() {
        let s = p(&format!(
            "# comment\n\nalice@corp {ED} laptop\n\"bob,carol\" namespaces=\"sshjit-policy,git\",valid-after=\"20260101\",valid-before=\"20270101120000Z\" {ED}\n"
        ))
        .unwrap();
        assert_eq!(s.entries.len(), 2);
        assert_eq!(s.entries[1].principals, "bob,carol");
        assert_eq!(s.entries[1].valid_after, Some(1_767_225_600));
        assert_eq!(s.entries[1].valid_before, Some(1_798_804_800));
        assert_eq!(s.entries[0].refusal(0), None);
        assert!(
            s.entries[1]
                .refusal(1_767_225_599)
                .unwrap()
                .contains("not valid yet")
        );
        assert!(
            s.entries[1]
                .refusal(1_798_804_801)
                .unwrap()
                .contains("expired")
        );
        assert_eq!(s.entries[1].refusal(1_767_225_600), None);
    }

    #[test]
    fn refuses_what_it_does_not_support() {
        for (bad, why) in [
            (format!("ops cert-authority {ED}"), "cert-authority"),
            (format!("ops no-touch-required {ED}"), "unsupported option"),
            (format!("ops namespaces=git {ED}"), "double quotes"),
            (format!("ops valid-after=\"tomorrow\" {ED}"), "YYYYMMDD"),
            (format!("ops valid-after=\"20260230\" {ED}"), "YYYYMMDD"),
            (
                format!("ops namespaces=\"a\",namespaces=\"b\" {ED}"),
                "twice",
            ),
            ("ops ssh-ed25519".to_owned(), "expected"),
            ("ops ssh-dss AAAAB3NzaC1kc3M=".to_owned(), "DSA"),
            ("ops ssh-ed25519 AAAA".to_owned(), "key"),
            (format!("\"ops {ED}"), "unclosed quote"),
            (String::new(), "no signer"),
        ] {
            let e = p(&bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    fn keypair(seed: u8) -> ssh_key::PrivateKey {
        ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]))
    }

    fn armored(key: &ssh_key::PrivateKey, namespace: &str, msg: &[u8]) -> Vec<u8> {
        key.sign(namespace, HashAlg::Sha512, msg)
            .unwrap()
            .to_pem(ssh_key::LineEnding::LF)
            .unwrap()
            .into_bytes()
    }

    #[test]
    fn verifies_exact_bytes_by_a_listed_key_in_the_namespace() {
        let signer = keypair(1);
        let line = signer.public_key().to_openssh().unwrap();
        let list = p(&format!(
            "ops {line}
later valid-after=\"20990101Z\" {}\n",
            keypair(3).public_key().to_openssh().unwrap()
        ))
        .unwrap();
        let doc = br#"{"version": 1, "serial": 1, "grants": [], "revocations": []}"#;
        let sig = armored(&signer, NAMESPACE, doc);
        let ok = list.verify(doc, &sig, 1_800_000_000).unwrap();
        assert_eq!(ok.principals, "ops");
        assert_eq!(
            ok.fingerprint,
            signer.public_key().fingerprint(HashAlg::Sha256).to_string()
        );
        let mut tampered = doc.to_vec();
        tampered[30] = b'2';
        assert!(matches!(
            list.verify(&tampered, &sig, 0),
            Err(SignatureError::Mismatch(_))
        ));
        assert!(matches!(
            list.verify(doc, &armored(&signer, "git", doc), 0),
            Err(SignatureError::WrongNamespace(_))
        ));
        assert!(matches!(
            list.verify(doc, &armored(&keypair(2), NAMESPACE, doc), 0),
            Err(SignatureError::UnknownSigner(_))
        ));
        assert!(matches!(
            list.verify(doc, &armored(&keypair(3), NAMESPACE, doc), 1_800_000_000),
            Err(SignatureError::NotAllowed(_))
        ));
        assert!(matches!(
            list.verify(
                doc,
                b"-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n",
                0
            ),
            Err(SignatureError::Malformed(_))
        ));
        let other_ns = p(&format!("ops namespaces=\"git,file\" {line}")).unwrap();
        assert!(matches!(
            other_ns.verify(doc, &sig, 0),
            Err(SignatureError::NotAllowed(_))
        ));
    }

    #[test]
    fn pattern_lists_follow_openssh() {
        assert!(pattern_list_matches("sshjit-policy", NAMESPACE));
        assert!(pattern_list_matches("git,sshjit-*", NAMESPACE));
        assert!(!pattern_list_matches("git,file", NAMESPACE));
        assert!(!pattern_list_matches("*,!sshjit-policy", NAMESPACE));
    }
}
