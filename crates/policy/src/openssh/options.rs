//! A reader of authorized_keys / principals lines that follows OpenSSH's own
//! code (auth-options.c `sshauthopt_parse`, `opt_dequote`; auth2-pubkey.c
//! `check_principals_line`; sshkey.c `sshkey_advance_past_options`). The
//! renderer reads back every line it writes with it, so a line sshd would
//! read differently from what we meant is never printed; the fuzz targets and
//! property tests use it as the oracle.

/// One option as sshd sees it: lower-cased name and, for `name="value"`,
/// the dequoted value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshdOption {
    pub name: String,
    pub value: Option<String>,
}

/// A line as sshd reads it: its options and what follows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshdLine {
    pub options: Vec<SshdOption>,
    /// keys: `<type> <base64> [comment]`; principals: the principal.
    pub subject: String,
}

impl SshdLine {
    pub fn option(&self, name: &str) -> Option<&SshdOption> {
        self.options.iter().find(|o| o.name == name)
    }
}

/// Why sshd would refuse a line (the names follow OpenSSH's messages).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineError {
    /// An option value that does not start with `"`.
    NotQuoted,
    /// An option value without its closing `"`.
    MissingEndQuote,
    /// An option value that is not UTF-8.
    NotUtf8,
    /// An option sshd does not know; the start of the text there.
    UnsupportedOption(String),
    /// Something other than `,` or a blank after an option.
    UnknownKeyOption,
    /// A `,` with no option after it.
    UnexpectedEnd,
    /// A line break or NUL inside the line.
    LineBreak,
    /// A quote opened and never closed before the key.
    UnterminatedQuote,
    /// The two readers sshd applies end the options in different places.
    ReadersDisagree,
    /// No `<type> <base64>` after the options.
    NoKey,
    /// An empty or comment line (principals).
    EmptyOrComment,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::NotQuoted => f.write_str("value is not quoted"),
            LineError::MissingEndQuote => f.write_str("missing end quote"),
            LineError::NotUtf8 => f.write_str("value is not UTF-8"),
            LineError::UnsupportedOption(at) => write!(f, "unsupported option at {at:?}"),
            LineError::UnknownKeyOption => f.write_str("unknown key option"),
            LineError::UnexpectedEnd => f.write_str("unexpected end-of-options"),
            LineError::LineBreak => f.write_str("line breaks or NUL inside a line"),
            LineError::UnterminatedQuote => f.write_str("unterminated quote"),
            LineError::ReadersDisagree => {
                f.write_str("options end in a different place for the two readers")
            }
            LineError::NoKey => f.write_str("no key after the options"),
            LineError::EmptyOrComment => f.write_str("empty or comment line"),
        }
    }
}

impl std::error::Error for LineError {}

/// Options sshd knows and whether they take a value (auth-options.c).
const KNOWN: &[(&str, bool)] = &[
    ("restrict", false),
    ("cert-authority", false),
    ("port-forwarding", false),
    ("no-port-forwarding", false),
    ("agent-forwarding", false),
    ("no-agent-forwarding", false),
    ("x11-forwarding", false),
    ("no-x11-forwarding", false),
    ("touch-required", false),
    ("no-touch-required", false),
    ("verify-required", false),
    ("pty", false),
    ("no-pty", false),
    ("user-rc", false),
    ("no-user-rc", false),
    ("command", true),
    ("principals", true),
    ("from", true),
    ("expiry-time", true),
    ("environment", true),
    ("permitopen", true),
    ("permitlisten", true),
    ("tunnel", true),
];

/// `opt_dequote`: a value must start with `"`; `\"` yields `"`, every
/// other byte is kept; the value ends at the first other `"`.
fn dequote(s: &[u8]) -> Result<(String, usize), LineError> {
    if s.first() != Some(&b'"') {
        return Err(LineError::NotQuoted);
    }
    let mut out = Vec::new();
    let mut i = 1;
    while i < s.len() && s[i] != b'"' {
        if s[i] == b'\\' && s.get(i + 1) == Some(&b'"') {
            i += 1;
        }
        out.push(s[i]);
        i += 1;
    }
    if i >= s.len() {
        return Err(LineError::MissingEndQuote);
    }
    let value = String::from_utf8(out).map_err(|_| LineError::NotUtf8)?;
    Ok((value, i + 1))
}

/// `sshauthopt_parse`: options up to the first blank outside quotes.
/// Returns the options and the number of bytes consumed.
pub fn parse_options(s: &str) -> Result<(Vec<SshdOption>, usize), LineError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut options = Vec::new();
    while i < b.len() && b[i] != b' ' && b[i] != b'\t' {
        let rest = &s[i..];
        let (name, takes_value) = KNOWN
            .iter()
            .find(|(name, takes_value)| {
                let n = name.len();
                rest.len() >= n
                    && rest.as_bytes()[..n].eq_ignore_ascii_case(name.as_bytes())
                    && if *takes_value {
                        rest.as_bytes().get(n) == Some(&b'=')
                    } else {
                        matches!(rest.as_bytes().get(n), None | Some(b',' | b' ' | b'\t'))
                    }
            })
            .copied()
            .ok_or_else(|| LineError::UnsupportedOption(rest.chars().take(20).collect()))?;
        i += name.len();
        let value = if takes_value {
            i += 1;
            let (v, used) = dequote(&b[i..])?;
            i += used;
            Some(v)
        } else {
            None
        };
        options.push(SshdOption {
            name: name.to_owned(),
            value,
        });
        if i >= b.len() || b[i] == b' ' || b[i] == b'\t' {
            break;
        }
        if b[i] != b',' {
            return Err(LineError::UnknownKeyOption);
        }
        i += 1;
        if i >= b.len() {
            return Err(LineError::UnexpectedEnd);
        }
    }
    Ok((options, i))
}

/// An authorized_keys line with options, as check_authkey_line reads it.
pub fn parse_keys_line(line: &str) -> Result<SshdLine, LineError> {
    if line.contains('\n') || line.contains('\0') {
        return Err(LineError::LineBreak);
    }
    let line = line.trim_start_matches([' ', '\t']);
    // sshkey_advance_past_options: the options end at the first blank
    // outside quotes; unterminated quotes are an error.
    let b = line.as_bytes();
    let (mut i, mut quoted) = (0, false);
    while i < b.len() && (quoted || (b[i] != b' ' && b[i] != b'\t')) {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'"') {
            i += 1;
        } else if b[i] == b'"' {
            quoted = !quoted;
        }
        i += 1;
    }
    if quoted {
        return Err(LineError::UnterminatedQuote);
    }
    let (options, used) = parse_options(line)?;
    if used != i {
        return Err(LineError::ReadersDisagree);
    }
    let subject = line[i..]
        .trim_start_matches([' ', '\t'])
        .trim_end_matches([' ', '\t']);
    let mut parts = subject.split([' ', '\t']).filter(|p| !p.is_empty());
    match (parts.next(), parts.next()) {
        (Some(_), Some(_)) => {}
        _ => return Err(LineError::NoKey),
    }
    Ok(SshdLine {
        options,
        subject: subject.to_owned(),
    })
}

/// A principals line, as check_principals_line reads it: the principal is
/// what follows the last blank; the options are parsed from the start.
pub fn parse_principals_line(line: &str) -> Result<SshdLine, LineError> {
    if line.contains('\n') || line.contains('\0') {
        return Err(LineError::LineBreak);
    }
    let line = line
        .trim_start_matches([' ', '\t'])
        .trim_end_matches([' ', '\t']);
    if line.is_empty() || line.starts_with('#') {
        return Err(LineError::EmptyOrComment);
    }
    let last_blank = line.rfind([' ', '\t']);
    let (options, subject) = match last_blank {
        Some(at) => {
            let (options, _) = parse_options(line)?;
            (options, line[at + 1..].to_owned())
        }
        None => (Vec::new(), line.to_owned()),
    };
    Ok(SshdLine { options, subject })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_options_like_sshd() {
        let l = parse_keys_line(
            "expiry-time=\"20261121105959Z\",from=\"10.0.0.0/8,!10.1.2.3\",command=\"echo \\\"a b\\\"\",restrict ssh-ed25519 AAAA c d",
        )
        .unwrap();
        assert_eq!(
            l.option("expiry-time").unwrap().value.as_deref(),
            Some("20261121105959Z")
        );
        assert_eq!(
            l.option("from").unwrap().value.as_deref(),
            Some("10.0.0.0/8,!10.1.2.3")
        );
        assert_eq!(
            l.option("command").unwrap().value.as_deref(),
            Some("echo \"a b\"")
        );
        assert!(l.option("restrict").unwrap().value.is_none());
        assert_eq!(l.subject, "ssh-ed25519 AAAA c d");
        let upper = parse_keys_line("RESTRICT,Command=\"x\" ssh-ed25519 AAAA").unwrap();
        assert_eq!(upper.options.len(), 2);
    }

    #[test]
    fn refuses_what_sshd_refuses() {
        for bad in [
            "command=\"unterminated ssh-ed25519 AAAA",
            "command=x ssh-ed25519 AAAA",
            "bogus ssh-ed25519 AAAA",
            "restrict,,no-pty ssh-ed25519 AAAA",
            "restrict;no-pty ssh-ed25519 AAAA",
            "command=\"a\\\" ssh-ed25519 AAAA",
            "restrict",
            "restrict ssh-ed25519",
        ] {
            assert!(parse_keys_line(bad).is_err(), "{bad:?}");
        }
    }

    /// Found by the `values` fuzz target: the error message cut a line in
    /// the middle of a multi-byte character and panicked.
    #[test]
    fn unsupported_option_message_keeps_characters_whole() {
        let line = "02026-1110:00:0-00 \u{652}ss \\";
        assert!(parse_keys_line(line).is_err());
        assert!(parse_keys_line(&"é".repeat(30)).is_err());
    }

    #[test]
    fn principals_are_the_last_word() {
        let l =
            parse_principals_line("expiry-time=\"20261121105959\",command=\"a b\" alice").unwrap();
        assert_eq!(l.subject, "alice");
        assert_eq!(l.option("command").unwrap().value.as_deref(), Some("a b"));
        assert_eq!(parse_principals_line("bob").unwrap().subject, "bob");
        assert!(parse_principals_line("bogus=\"x\" alice").is_err());
    }
}
