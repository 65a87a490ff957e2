//! The policy endpoint's URL: parsed strictly once, when the config or
//! `--policy` is read, so that nothing the HTTP layer sees is ambiguous.
//! No user info (credentials would end up in logs), no fragment, only
//! printable ASCII, and plain `http` only towards a loopback address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest URL accepted.
const MAX_URL: usize = 2048;

/// A validated `https://` (or loopback `http://`) URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    tls: bool,
    /// As written in the URL (an IPv6 literal keeps its brackets), lowercase.
    host: String,
    port: Option<u16>,
    /// Starts with `/`.
    path: String,
    /// Without the `?`.
    query: Option<String>,
}

/// Which part of the policy the endpoint is asked for (its `user`, `host`
/// and `mode` parameters): the login path names user and mode; the
/// admin commands ask for the whole document (no user, no mode).
#[derive(Clone, Copy, Debug, Default)]
pub struct Scope<'a> {
    pub user: Option<&'a str>,
    pub host: Option<&'a str>,
    pub mode: Option<&'a str>,
}

/// Why a URL was refused: the URL as given (shortened, escaped) and what
/// is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlError {
    pub url: String,
    pub problem: UrlProblem,
}

/// What is wrong with a URL.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlProblem {
    TooLong,
    /// A character that is not printable ASCII.
    Character(char),
    NoScheme,
    Scheme(String),
    Fragment,
    UserInfo,
    UnclosedBracket,
    NotIpv6(String),
    AfterHost(String),
    NoHost,
    HostTooLong,
    NotDnsName(String),
    Port(String),
    /// A `%` that does not start a `%XX` escape (in the path or the query).
    Escape(&'static str),
    /// A character that must be percent-encoded (where, which).
    Unencoded(&'static str, char),
    /// Plain http to anything but a loopback address.
    PlainHttp,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policy URL {:?}: {}", self.url, self.problem)
    }
}

impl std::error::Error for UrlError {}

impl fmt::Display for UrlProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlProblem::TooLong => write!(f, "longer than {MAX_URL} bytes"),
            UrlProblem::Character(c) => write!(
                f,
                "contains {c:?}: only printable ASCII without spaces (percent-encode the rest)"
            ),
            UrlProblem::NoScheme => f.write_str("no scheme"),
            UrlProblem::Scheme(s) => write!(f, "unsupported scheme {s:?}: use https"),
            UrlProblem::Fragment => f.write_str("a fragment (#...) has no meaning here"),
            UrlProblem::UserInfo => f.write_str(
                "user info (user@ or user:password@) is not supported: use token_file or a client certificate",
            ),
            UrlProblem::UnclosedBracket => f.write_str("unclosed [ in the host"),
            UrlProblem::NotIpv6(h) => write!(f, "{h} is not an IPv6 address"),
            UrlProblem::AfterHost(r) => write!(f, "unexpected {r:?} after the host"),
            UrlProblem::NoHost => f.write_str("no host"),
            UrlProblem::HostTooLong => f.write_str("host name longer than 253 bytes"),
            UrlProblem::NotDnsName(h) => write!(
                f,
                "host {h:?} is not a DNS name or an IP address (IPv6 goes in [brackets]; non-ASCII names in their xn-- form)"
            ),
            UrlProblem::Port(p) => write!(f, "port {p:?} is not a number from 1 to 65535"),
            UrlProblem::Escape(what) => write!(f, "{what}: % must start a %XX escape"),
            UrlProblem::Unencoded(what, c) => write!(f, "{what}: {c:?} must be percent-encoded"),
            UrlProblem::PlainHttp => f.write_str(
                "plain http is allowed only to a loopback address (127.0.0.0/8 or [::1]); use https",
            ),
        }
    }
}

impl Url {
    /// Parses `https://host[:port][/path][?query]`.
    pub fn parse(spec: &str) -> Result<Url, UrlError> {
        let refuse = |problem| UrlError {
            url: sshjit_policy::text::quote_for_display(spec, 256),
            problem,
        };
        Url::parse_parts(spec).map_err(refuse)
    }

    fn parse_parts(spec: &str) -> Result<Url, UrlProblem> {
        if spec.len() > MAX_URL {
            return Err(UrlProblem::TooLong);
        }
        if let Some(bad) = spec.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(UrlProblem::Character(bad));
        }
        let (scheme, rest) = spec.split_once("://").ok_or(UrlProblem::NoScheme)?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            other => return Err(UrlProblem::Scheme(other.to_owned())),
        };
        if rest.contains('#') {
            return Err(UrlProblem::Fragment);
        }
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err(UrlProblem::UserInfo);
        }
        let (host, port) = split_host_port(authority)?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let path = if path.is_empty() { "/" } else { path };
        check_chars(path, "path", b"/")?;
        if let Some(q) = query {
            check_chars(q, "query", b"/?")?;
        }
        let url = Url {
            tls,
            host,
            port,
            path: path.to_owned(),
            query: query.filter(|q| !q.is_empty()).map(str::to_owned),
        };
        if !tls && !url.is_loopback() {
            return Err(UrlProblem::PlainHttp);
        }
        Ok(url)
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// True for a literal loopback address. Names (even `localhost`) do not
    /// count: what they resolve to is not fixed by the URL.
    pub fn is_loopback(&self) -> bool {
        match self.ip() {
            Some(ip) => ip.is_loopback(),
            None => false,
        }
    }

    fn ip(&self) -> Option<IpAddr> {
        if let Some(v6) = self
            .host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
        {
            return v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
        }
        self.host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    }

    /// The request URL: the configured one with `user`, `host` and `mode`
    /// appended (with `&` when it already has a query), values
    /// percent-encoded. `suffix` is appended to the path (`.sig`).
    pub fn request(&self, q: &Scope<'_>, suffix: &str) -> String {
        let mut out = String::with_capacity(self.host.len() + self.path.len() + 96);
        out.push_str(if self.tls { "https://" } else { "http://" });
        out.push_str(&self.host);
        if let Some(p) = self.port {
            out.push(':');
            out.push_str(&p.to_string());
        }
        out.push_str(&self.path);
        out.push_str(suffix);
        let mut sep = '?';
        if let Some(existing) = &self.query {
            out.push('?');
            out.push_str(existing);
            sep = '&';
        }
        for (key, value) in [("user", q.user), ("host", q.host), ("mode", q.mode)] {
            if let Some(v) = value {
                out.push(sep);
                out.push_str(key);
                out.push('=');
                percent_encode(v, &mut out);
                sep = '&';
            }
        }
        out
    }
}

impl Url {
    /// The URL of an endpoint below this one: `https://host/base` and
    /// `/v1/login` give `https://host/base/v1/login` (a query of this URL
    /// is not carried over).
    pub fn join(&self, endpoint: &str) -> String {
        let mut out =
            String::with_capacity(self.host.len() + self.path.len() + endpoint.len() + 16);
        out.push_str(if self.tls { "https://" } else { "http://" });
        out.push_str(&self.host);
        if let Some(p) = self.port {
            out.push(':');
            out.push_str(&p.to_string());
        }
        out.push_str(self.path.trim_end_matches('/'));
        out.push_str(endpoint);
        out
    }

    /// `host` or `host:port`, as written (for file names and messages).
    pub fn authority(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.request(&Scope::default(), ""))
    }
}

/// `host[:port]`, host being a DNS name, an IPv4 address or `[IPv6]`.
fn split_host_port(authority: &str) -> Result<(String, Option<u16>), UrlProblem> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']').ok_or(UrlProblem::UnclosedBracket)?;
        let (h, rest) = authority.split_at(end + 1);
        let inner = &h[1..h.len() - 1];
        inner
            .parse::<Ipv6Addr>()
            .map_err(|_| UrlProblem::NotIpv6(h.to_owned()))?;
        match rest {
            "" => (h, None),
            r => match r.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return Err(UrlProblem::AfterHost(r.to_owned())),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(UrlProblem::NoHost);
    }
    if !host.starts_with('[') {
        check_dns_name(host)?;
    }
    let port = match port {
        None => None,
        Some(p) => {
            let n = (!p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u16>().ok())
                .flatten()
                .filter(|n| *n != 0)
                .ok_or_else(|| UrlProblem::Port(p.to_owned()))?;
            Some(n)
        }
    };
    Ok((host.to_ascii_lowercase(), port))
}

fn check_dns_name(host: &str) -> Result<(), UrlProblem> {
    if host.len() > 253 {
        return Err(UrlProblem::HostTooLong);
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(UrlProblem::NotDnsName(host.to_owned()));
        }
    }
    Ok(())
}

/// RFC 3986 path/query characters: unreserved, sub-delims, `:` `@`,
/// percent-encoded octets, plus `extra`.
fn check_chars(s: &str, what: &'static str, extra: &[u8]) -> Result<(), UrlProblem> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let ok =
                b.len() > i + 2 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit();
            if !ok {
                return Err(UrlProblem::Escape(what));
            }
            i += 3;
            continue;
        }
        let ok =
            c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&c) || extra.contains(&c);
        if !ok {
            return Err(UrlProblem::Unencoded(what, c as char));
        }
        i += 1;
    }
    Ok(())
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(value: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_builds_requests() {
        let u = Url::parse("https://Policy.Example.com/sshjit/policy.json").unwrap();
        assert!(u.is_tls());
        let q = Scope {
            user: Some("deploy$"),
            host: Some("web-1"),
            mode: Some("keys"),
        };
        assert_eq!(
            u.request(&q, ""),
            "https://policy.example.com/sshjit/policy.json?user=deploy%24&host=web-1&mode=keys"
        );
        let u = Url::parse("https://10.0.0.1:8443/p?fleet=eu&x=%2F").unwrap();
        assert_eq!(
            u.request(&q, ".sig"),
            "https://10.0.0.1:8443/p.sig?fleet=eu&x=%2F&user=deploy%24&host=web-1&mode=keys"
        );
        assert_eq!(u.to_string(), "https://10.0.0.1:8443/p?fleet=eu&x=%2F");
        let u = Url::parse("https://[2001:db8::1]:443").unwrap();
        assert_eq!(u.to_string(), "https://[2001:db8::1]:443/");
        let h = Scope {
            user: None,
            host: Some("a b@c"),
            mode: None,
        };
        assert_eq!(
            Url::parse("https://p/").unwrap().request(&h, ""),
            "https://p/?host=a%20b%40c"
        );
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "http://127.0.0.1:8080/p",
            "http://127.1.2.3/p",
            "http://[::1]:80/p",
        ] {
            let u = Url::parse(ok).unwrap();
            assert!(!u.is_tls() && u.is_loopback(), "{ok}");
        }
        for bad in [
            "http://localhost/p",
            "http://10.0.0.1/p",
            "http://policy.example.com/p",
            "http://[::ffff:127.0.0.1]/p",
            "http://127.0.0.1.example.com/p",
        ] {
            let e = Url::parse(bad).unwrap_err();
            assert_eq!(e.problem, UrlProblem::PlainHttp, "{bad}: {e}");
            assert!(e.to_string().contains("plain http"), "{bad}: {e}");
        }
    }

    #[test]
    fn refuses_ambiguous_urls() {
        for bad in [
            "https://user:pw@host/p",
            "https://host/p#frag",
            "https://host/p q",
            "https://host/p\n",
            "https://host/\u{e9}",
            "https://host:0/p",
            "https://host:65536/p",
            "https://host:/p",
            "https://host:8a/p",
            "https:///p",
            "https://-host/p",
            "https://ho st/p",
            "https://[::1/p",
            "https://[zz]/p",
            "https://host/p%2",
            "https://host/p\"",
            "https://host/p<x>",
            "ftp://host/p",
            "https://a..b/p",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
        assert!(Url::parse(&format!("https://h/{}", "a".repeat(MAX_URL))).is_err());
    }
}
