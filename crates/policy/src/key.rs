//! A grant's public key, as one authorized_keys entry without options:
//! `<type> <base64> [comment]`, checked with the `ssh-key` crate.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use ssh_encoding::Decode;
use ssh_encoding::base64::{Base64, Encoding};
use ssh_key::public::KeyData;

use crate::types::{Fingerprint, InvalidValue, cow_str, has_no_controls};

/// Longest accepted key text (a 16384-bit RSA key is about 2.8 KiB).
pub const MAX_KEY_TEXT: usize = 8 * 1024;
/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Key types sshd accepts in authorized_keys, without certificates or DSA.
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// authorized_keys option names: a key whose first word is one of these (or
/// looks like `name=...`) carries options, which a grant expresses in its
/// own fields instead.
const OPTION_NAMES: &[&str] = &[
    "agent-forwarding",
    "cert-authority",
    "command",
    "environment",
    "expiry-time",
    "from",
    "no-agent-forwarding",
    "no-port-forwarding",
    "no-pty",
    "no-touch-required",
    "no-user-rc",
    "no-x11-forwarding",
    "permitlisten",
    "permitopen",
    "port-forwarding",
    "principals",
    "pty",
    "restrict",
    "touch-required",
    "tunnel",
    "user-rc",
    "verify-required",
    "x11-forwarding",
];

/// A validated public key line. Holds the original text; the parts are
/// located once at validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizedKey<'a> {
    text: Cow<'a, str>,
    type_end: usize,
    b64_start: usize,
    b64_end: usize,
    comment_start: usize,
}

impl<'a> AuthorizedKey<'a> {
    pub fn parse(text: impl Into<Cow<'a, str>>) -> Result<Self, InvalidValue> {
        Self::parse_noting_options(text.into()).map_err(|(e, _)| e)
    }

    /// As [`AuthorizedKey::parse`]; the flag tells a refusal for carrying
    /// authorized_keys options (which `sshjit check` explains) from others.
    pub(crate) fn parse_noting_options(text: Cow<'a, str>) -> Result<Self, (InvalidValue, bool)> {
        let bad = |why| (InvalidValue::new("key", &text, why), false);
        if text.len() > MAX_KEY_TEXT {
            return Err(bad("is too long"));
        }
        if !has_no_controls(&text) {
            return Err(bad("must be one line without control characters"));
        }
        let s: &str = &text;
        let is_space = |c: char| c == ' ' || c == '\t';
        if s.starts_with(is_space) || s.ends_with(is_space) {
            return Err(bad("must not have leading or trailing blanks"));
        }
        let type_end = s.find(is_space).unwrap_or(s.len());
        let key_type = &s[..type_end];
        if !KEY_TYPES.contains(&key_type) {
            let first = key_type.split([',', '=']).next().unwrap_or("");
            if key_type.contains(['=', ',', '"'])
                || OPTION_NAMES.contains(&first.to_ascii_lowercase().as_str())
            {
                return Err((
                    bad("carries authorized_keys options: give only '<type> <base64> [comment]' and use the grant's from, command and restrict fields").0,
                    true,
                ));
            }
            if key_type.contains("-cert-v01@openssh.com") {
                return Err(bad(
                    "is a certificate: grant its principal with \"principal\" instead",
                ));
            }
            if key_type == "ssh-dss" {
                return Err(bad("is a DSA key, which OpenSSH no longer accepts"));
            }
            return Err(bad(
                "has an unknown key type (expected ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256/384/521 or sk-*)",
            ));
        }
        let rest = &s[type_end..];
        let b64_start = type_end + (rest.len() - rest.trim_start_matches(is_space).len());
        let b64_len = s[b64_start..].find(is_space).unwrap_or(s.len() - b64_start);
        if b64_len == 0 {
            return Err(bad("has no key data after its type"));
        }
        let b64_end = b64_start + b64_len;
        let after = &s[b64_end..];
        let comment_start = b64_end + (after.len() - after.trim_start_matches(is_space).len());

        let key = decode_key(&s[b64_start..b64_end]).map_err(bad)?;
        if key.algorithm().as_str() != key_type {
            return Err(bad("has key data of another type than its type name"));
        }
        if let KeyData::Rsa(rsa) = &key {
            let n = rsa.n.as_positive_bytes().unwrap_or(&[]);
            let bits = match n.first() {
                Some(&b) => (n.len() - 1) * 8 + (8 - b.leading_zeros() as usize),
                None => 0,
            };
            if bits < MIN_RSA_BITS {
                return Err(bad("is an RSA key shorter than 2048 bits"));
            }
        }
        Ok(AuthorizedKey {
            text,
            type_end,
            b64_start,
            b64_end,
            comment_start,
        })
    }

    pub fn key_type(&self) -> &str {
        &self.text[..self.type_end]
    }

    pub fn base64(&self) -> &str {
        &self.text[self.b64_start..self.b64_end]
    }

    pub fn comment(&self) -> &str {
        &self.text[self.comment_start..]
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The decoded key. Validation already decoded it once, so this cannot fail.
    pub fn key_data(&self) -> KeyData {
        decode_key(self.base64()).expect("a validated key decodes")
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.key_data())
    }

    /// Same key material (type and data), whatever the comment.
    pub fn same_key(&self, other: &AuthorizedKey<'_>) -> bool {
        self.key_type() == other.key_type() && self.base64() == other.base64()
    }

    pub fn into_owned(self) -> AuthorizedKey<'static> {
        AuthorizedKey {
            text: Cow::Owned(self.text.into_owned()),
            type_end: self.type_end,
            b64_start: self.b64_start,
            b64_end: self.b64_end,
            comment_start: self.comment_start,
        }
    }
}

/// Base64 to key. Small keys (everything but RSA) decode on the stack;
/// a zeroed buffer sized for the largest key would dominate the cost of
/// validating a large policy.
fn decode_key(b64: &str) -> Result<KeyData, &'static str> {
    const STACK: usize = 192;
    let needed = b64.len() / 4 * 3 + 3;
    let mut small = [0u8; STACK];
    let mut large = Vec::new();
    let buf: &mut [u8] = if needed <= STACK {
        &mut small[..needed]
    } else {
        large.resize(needed, 0);
        &mut large
    };
    let mut blob: &[u8] =
        Base64::decode(b64, buf).map_err(|_| "has key data that is not valid base64")?;
    let key =
        KeyData::decode(&mut blob).map_err(|_| "has key data that is not a valid public key")?;
    if !blob.is_empty() {
        return Err("has trailing bytes after the key data");
    }
    Ok(key)
}

impl fmt::Display for AuthorizedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for AuthorizedKey<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        AuthorizedKey::parse(cow_str(d)?).map_err(de::Error::custom)
    }
}

impl Serialize for AuthorizedKey<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// Fixed sample keys and their fingerprints, for the tests of this crate
/// and of its users (no private half exists anywhere).
#[doc(hidden)]
pub mod samples {
    pub const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmhXmfyH35TmVDzfJ+0t0DbYFg88Gcc+UtpLZreAJk9 a@test";
    pub const FP_A: &str = "SHA256:X5oprPYTCKn2RSt7zk0vLaTKD2WNGktiH+URhgz06P8";
    pub const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF7Vi4lHU6BizDGW263nDayDu2UnUB7NxON9I9z3dUaX b@test";
    pub const FP_B: &str = "SHA256:nqYZ+IxOnbiBaZwc6r0G+iS9w0wOhnnAotOo2aybfo4";
    pub const KEY_ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPZtwkPL/sypkWCaTMoP/Dd1tVK7paCwisiPvD4+oTWGWs0u3S3qbkBB7bSYIdJczMapEOInlh2owVUULx8ayU0= ecdsa";
    pub const FP_ECDSA: &str = "SHA256:Tj/Fih1SR09Bw1ElKvy1DfDcbj/AJLR4Bqx/mSX7VWE";
    pub const KEY_RSA2048: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCstCJctqfiNshZlcjkaPiwCfGE23i0Vxfk1JJU7Kb1+y0kFSdEl3B/1JIuyRY4qrp3GJ4dmK+KmBabqGTnPtB6fv2/o6F2/Fu3il6tARsxWpgS7NuarwanA99gIZULsrDtXCQzJd8qYqP+DdqfnDQgrcxsTuFD5i1NwthRRjbzwLWIg8Df4qzWegExrlfR70LtSQJLCcAGMRG3pCKJme4K/k6n1Ub/L0KVt3X8iJh+WbPMGOo/xhqh1AmFAsxO8SR/AXNZlLl0UIXPsuT6Djj3Ec22t2R4WjaeaoWH683js6FJEUoLQfJgIi4Goqy5DwNOTeBIxAPx8jRvTzRhoAeJ r2048";
    pub const FP_RSA2048: &str = "SHA256:/9Z9v04Rix6UjFCa6wJ4KlcBLxbKMd6Hd4YC99sjZ5M";
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub use super::samples::*;

    const KEY_RSA1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDasjaqo7MaGcR3007mOOYtj9IKa4did/x2MYyKS1qn7IO1tPTMieDaj0DisVH9Ya9N7Hu4ZGA4pgknrGOFhjbqDEeenFxcHx4CSfMYYeltyXro7f0XNS0tI2X9xL+Z+JTxH9dQmaPyHNnbwHFSyK4U9yo6sOexiVRXDdc1aM1aHw== r1024";

    #[test]
    fn parses_and_locates_parts() {
        let k = AuthorizedKey::parse(KEY_A).unwrap();
        assert_eq!(k.key_type(), "ssh-ed25519");
        assert_eq!(k.comment(), "a@test");
        assert!(k.base64().starts_with("AAAAC3"));
        assert_eq!(k.fingerprint().to_string(), FP_A);
        let bare = AuthorizedKey::parse(&KEY_A[..KEY_A.len() - 7]).unwrap();
        assert_eq!(bare.comment(), "");
        assert!(bare.same_key(&k));
        assert!(!bare.same_key(&AuthorizedKey::parse(KEY_B).unwrap()));
        let spaced = KEY_A.replacen(' ', "  ", 1);
        assert_eq!(
            AuthorizedKey::parse(spaced.as_str()).unwrap().base64(),
            k.base64()
        );
    }

    #[test]
    fn fingerprints_match_ssh_keygen() {
        for (key, fp) in [
            (KEY_A, FP_A),
            (KEY_B, FP_B),
            (KEY_ECDSA, FP_ECDSA),
            (KEY_RSA2048, FP_RSA2048),
        ] {
            assert_eq!(
                AuthorizedKey::parse(key).unwrap().fingerprint().to_string(),
                fp
            );
        }
    }

    #[test]
    fn refuses_options_certificates_and_garbage() {
        for opts in [
            "restrict",
            "from=\"10.0.0.1\"",
            "no-pty,no-agent-forwarding",
            "command=\"ls\"",
            "cert-authority",
        ] {
            let line = format!("{opts} {KEY_A}");
            let err = AuthorizedKey::parse(line.as_str()).unwrap_err();
            assert!(err.why.contains("options"), "{opts}: {err}");
        }
        let b64 = KEY_A.split(' ').nth(1).unwrap();
        for bad in [
            String::new(),
            "ssh-ed25519".into(),
            "ssh-ed25519 ".into(),
            "ssh-ed25519 AAAA".into(),
            "ssh-ed25519 !!!!".into(),
            format!("ssh-rsa {b64}"),
            format!("ssh-ed25519 {b64}AAAA"),
            format!("ssh-ed25519 {}", &b64[..b64.len() - 4]),
            "ssh-dss AAAAB3NzaC1kc3M=".into(),
            format!("ssh-ed25519-cert-v01@openssh.com {b64}"),
            format!(" {KEY_A}"),
            format!("{KEY_A} "),
            format!("{KEY_A}\n{KEY_B}"),
            format!("{KEY_A}\u{0}"),
            KEY_RSA1024.into(),
        ] {
            assert!(AuthorizedKey::parse(bad.as_str()).is_err(), "{bad:?}");
        }
        let err = AuthorizedKey::parse(KEY_RSA1024).unwrap_err();
        assert!(err.why.contains("2048"), "{err}");
    }
}
