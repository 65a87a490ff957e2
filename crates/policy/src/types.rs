//! Validated values: every string that comes from a policy document or from
//! sshd's command line is held in one of these newtypes, which can only be
//! built through a checking constructor.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

pub use crate::text::{has_no_controls, quote_for_display};

/// A value that failed validation: what it was meant to be, the offending
/// input (escaped and shortened for display) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue {
    pub what: &'static str,
    pub value: String,
    pub why: &'static str,
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} {}: {}", self.what, self.value, self.why)
    }
}

impl std::error::Error for InvalidValue {}

impl InvalidValue {
    pub fn new(what: &'static str, value: &str, why: &'static str) -> Self {
        InvalidValue {
            what,
            value: quote_for_display(value, 80),
            why,
        }
    }
}

/// Deserializes a string, borrowing from the input when it has no escapes.
#[doc(hidden)]
pub fn cow_str<'de, D: Deserializer<'de>>(d: D) -> Result<Cow<'de, str>, D::Error> {
    struct CowVisitor;
    impl<'de> Visitor<'de> for CowVisitor {
        type Value = Cow<'de, str>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Cow::Borrowed(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v.to_owned()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v))
        }
    }
    d.deserialize_str(CowVisitor)
}

/// Defines a string newtype whose only constructor runs `$check`: the
/// policy's own value types, and those of the crates built on it (the
/// server's request and role names), with the same serde and error shape.
#[macro_export]
macro_rules! checked_str {
    ($(#[$meta:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name<'a>(::std::borrow::Cow<'a, str>);

        impl<'a> $name<'a> {
            /// Checks `value`; the only way to build one.
            pub fn new(
                value: impl Into<::std::borrow::Cow<'a, str>>,
            ) -> Result<Self, $crate::InvalidValue> {
                let value = value.into();
                let check: fn(&str) -> Result<(), &'static str> = $check;
                match check(&value) {
                    Ok(()) => Ok($name(value)),
                    Err(why) => Err($crate::InvalidValue::new($what, &value, why)),
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// True when the value points into the document it was parsed from.
            pub fn is_borrowed(&self) -> bool {
                matches!(self.0, ::std::borrow::Cow::Borrowed(_))
            }

            pub fn into_owned(self) -> $name<'static> {
                $name(::std::borrow::Cow::Owned(self.0.into_owned()))
            }
        }

        impl ::std::fmt::Display for $name<'_> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de: 'a, 'a> $crate::__serde::Deserialize<'de> for $name<'a> {
            fn deserialize<D: $crate::__serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $name::new($crate::types::cow_str(d)?)
                    .map_err(<D::Error as $crate::__serde::de::Error>::custom)
            }
        }

        impl $crate::__serde::Serialize for $name<'_> {
            fn serialize<S: $crate::__serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

fn check_charset(
    s: &str,
    min: usize,
    max: usize,
    allowed: fn(u8) -> bool,
    why_chars: &'static str,
) -> Result<(), &'static str> {
    if s.len() < min {
        return Err("must not be empty");
    }
    if s.len() > max {
        return Err("is too long");
    }
    if !s.bytes().all(allowed) {
        return Err(why_chars);
    }
    Ok(())
}

checked_str!(
    /// A local account name, as sshd passes it in `%u`: a letter, digit or
    /// `_` first, then letters, digits, `.`, `_`, `-`, `@`, optionally ending
    /// in `$`; at most 64 bytes.
    Username,
    "user name",
    |s| {
        let body = s.strip_suffix('$').unwrap_or(s);
        check_charset(body, 1, 63, |c| c.is_ascii_alphanumeric() || b"._-@".contains(&c),
            "may contain only letters, digits, '.', '_', '-', '@' (and a final '$')")?;
        if !body.as_bytes()[0].is_ascii_alphanumeric() && body.as_bytes()[0] != b'_' {
            return Err("must start with a letter, a digit or '_'");
        }
        Ok(())
    }
);

checked_str!(
    /// A grant's id: 1 to 64 of `[A-Za-z0-9._-]`.
    GrantId,
    "grant id",
    |s| check_charset(s, 1, 64, |c| c.is_ascii_alphanumeric() || b"._-".contains(&c),
        "may contain only letters, digits, '.', '_' and '-'")
);

checked_str!(
    /// A certificate principal: 1 to 256 of letters, digits and `._@+=:/-`,
    /// not starting with `-`. Never whitespace, quotes or commas, so it is
    /// always the last field of a principals line.
    Principal,
    "principal",
    |s| {
        check_charset(s, 1, 256, |c| c.is_ascii_alphanumeric() || b"._@+=:/-".contains(&c),
            "may contain only letters, digits and '._@+=:/-'")?;
        if s.starts_with('-') {
            return Err("must not start with '-'");
        }
        Ok(())
    }
);

checked_str!(
    /// A `hosts` glob: letters, digits, `.`, `_`, `-` and the wildcards `*`
    /// and `?`; matched case-insensitively against the host's name.
    HostPattern,
    "host pattern",
    |s| check_charset(s, 1, 255, |c| c.is_ascii_alphanumeric() || b"._-*?".contains(&c),
        "may contain only letters, digits, '.', '_', '-', '*' and '?'")
);

checked_str!(
    /// This host's name (`--host`, the config, or gethostname()).
    HostName,
    "host name",
    |s| {
        check_charset(s, 1, 253, |c| c.is_ascii_alphanumeric() || b"._-".contains(&c),
            "may contain only letters, digits, '.', '_' and '-'")?;
        if s.starts_with(['-', '.']) {
            return Err("must not start with '-' or '.'");
        }
        Ok(())
    }
);

checked_str!(
    /// One `from=` pattern: an address, a CIDR block or a host name, with
    /// `*`/`?` wildcards and an optional leading `!`.
    FromPattern,
    "from pattern",
    |s| {
        check_charset(s, 1, 255, |c| c.is_ascii_alphanumeric() || b".:*?/!_-".contains(&c),
            "may contain only letters, digits and '.:*?/!_-'")?;
        if s[1..].contains('!') {
            return Err("'!' is allowed only at the start");
        }
        Ok(())
    }
);

checked_str!(
    /// A forced command: up to 4096 bytes with no control characters; it
    /// must not end in a backslash, which sshd would read as escaping the
    /// closing quote.
    Command,
    "command",
    |s| {
        if s.trim().is_empty() {
            return Err("must not be empty");
        }
        if s.len() > 4096 {
            return Err("is too long (at most 4096 bytes)");
        }
        if !has_no_controls(s) {
            return Err("must not contain control characters such as newlines");
        }
        if s.ends_with('\\') {
            return Err("must not end with a backslash");
        }
        Ok(())
    }
);

checked_str!(
    /// A reason: required, up to 1024 bytes, no control characters.
    Reason,
    "reason",
    |s| {
        if s.trim().is_empty() {
            return Err("must not be empty");
        }
        if s.len() > 1024 {
            return Err("is too long (at most 1024 bytes)");
        }
        if !has_no_controls(s) {
            return Err("must not contain control characters such as newlines");
        }
        Ok(())
    }
);

checked_str!(
    /// Who did something (`granted_by`, `revoked_by`): 1 to 128 bytes, no
    /// control characters.
    Actor,
    "actor",
    |s| {
        if s.trim().is_empty() {
            return Err("must not be empty");
        }
        if s.len() > 128 {
            return Err("is too long (at most 128 bytes)");
        }
        if !has_no_controls(s) {
            return Err("must not contain control characters");
        }
        Ok(())
    }
);

checked_str!(
    /// A certificate key ID (sshd's `%i`): 1 to 1024 bytes, no control
    /// characters.
    KeyId,
    "key ID",
    |s| {
        if s.is_empty() {
            return Err("must not be empty");
        }
        if s.len() > 1024 {
            return Err("is too long (at most 1024 bytes)");
        }
        if !has_no_controls(s) {
            return Err("must not contain control characters");
        }
        Ok(())
    }
);

/// A SHA256 key fingerprint as `ssh-keygen -l` prints it (`SHA256:` and 43
/// unpadded base64 characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fingerprint(ssh_key::Fingerprint);

impl Fingerprint {
    pub fn of(key: &ssh_key::public::KeyData) -> Self {
        Fingerprint(key.fingerprint(ssh_key::HashAlg::Sha256))
    }

    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let bad = |why| InvalidValue::new("fingerprint", s, why);
        if !s.starts_with("SHA256:") {
            return Err(bad(
                "must be a SHA256 fingerprint as ssh-keygen -l prints it (SHA256:...)",
            ));
        }
        if s.len() != 7 + 43 {
            return Err(bad("must be SHA256: followed by 43 base64 characters"));
        }
        match ssh_key::Fingerprint::from_str(s) {
            Ok(fp) if fp.is_sha256() => Ok(Fingerprint(fp)),
            _ => Err(bad("is not valid base64")),
        }
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Fingerprint::parse(&cow_str(d)?).map_err(de::Error::custom)
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A certificate serial number (sshd's `%s`), in decimal.
pub fn parse_serial(s: &str) -> Result<u64, InvalidValue> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(InvalidValue::new(
            "serial",
            s,
            "must be a decimal number (0 to 18446744073709551615)",
        ));
    }
    s.parse()
        .map_err(|_| InvalidValue::new("serial", s, "is larger than 18446744073709551615"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in [
            "root",
            "deploy",
            "a",
            "_svc",
            "svc-1",
            "j.doe",
            "alice@corp",
            "MACHINE$",
            "0day",
        ] {
            assert!(Username::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../x",
            "a b",
            "-x",
            ".hidden",
            "a/b",
            "a\nb",
            "a\"b",
            "a,b",
            "$",
            "é",
            &"a".repeat(65),
        ] {
            assert!(Username::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Username::new("a b").unwrap_err().to_string(),
            "invalid user name \"a b\": may contain only letters, digits, '.', '_', '-', '@' (and a final '$')"
        );
    }

    #[test]
    fn principals_and_hosts() {
        assert!(Principal::new("alice@corp.example").is_ok());
        assert!(Principal::new("role/admin").is_ok());
        for bad in ["", "-x", "a b", "a,b", "a\"b", "#a"] {
            assert!(Principal::new(bad).is_err(), "{bad:?}");
        }
        assert!(HostPattern::new("web-*.prod.example.com").is_ok());
        assert!(HostPattern::new("db-?").is_ok());
        assert!(HostPattern::new("web,db").is_err());
        assert!(HostName::new("web-1.example.com").is_ok());
        assert!(HostName::new("-web").is_err());
        assert!(HostName::new("web*").is_err());
    }

    #[test]
    fn from_and_commands() {
        for ok in [
            "10.0.0.0/8",
            "192.168.1.*",
            "!10.1.2.3",
            "2001:db8::/32",
            "*.example.com",
        ] {
            assert!(FromPattern::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a,b", "a\"b", "a b", "1!2"] {
            assert!(FromPattern::new(bad).is_err(), "{bad:?}");
        }
        assert!(Command::new("echo \"hi\" \\n").is_ok());
        assert!(Command::new("echo\nid").is_err());
        assert!(Command::new("echo \\").is_err());
        assert!(Command::new(" ").is_err());
        assert!(Command::new("x".repeat(4097)).is_err());
    }

    #[test]
    fn fingerprints() {
        let s = "SHA256:gvf161vkHP4NKOD3jvKd+OHUg5Ys7Q5R+XZNdckCYK8";
        assert_eq!(Fingerprint::parse(s).unwrap().to_string(), s);
        for bad in [
            "",
            "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48",
            "SHA256:gvf161vkHP4NKOD3jvKd+OHUg5Ys7Q5R+XZNdckCYK",
            "SHA256:gvf161vkHP4NKOD3jvKd+OHUg5Ys7Q5R+XZNdckCYK8=",
            "SHA256:gvf161vkHP4NKOD3jvKd+OHUg5Ys7Q5R+XZNdckCY!8",
            "sha256:gvf161vkHP4NKOD3jvKd+OHUg5Ys7Q5R+XZNdckCYK8",
        ] {
            assert!(Fingerprint::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serials() {
        assert_eq!(parse_serial("0"), Ok(0));
        assert_eq!(parse_serial("18446744073709551615"), Ok(u64::MAX));
        for bad in ["", "-1", "+1", "1.0", "0x10", "18446744073709551616", " 1"] {
            assert!(parse_serial(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn display_quoting_is_safe() {
        assert_eq!(quote_for_display("a\"b\\c\nd", 80), "\"a\\\"b\\\\c\\x0ad\"");
        assert_eq!(quote_for_display("abcdef", 3), "\"abc...\"");
    }
}
