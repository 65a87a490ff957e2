//! The optional configuration file (`/etc/sshjit/sshjit.toml`, TOML).
//! A missing default file means defaults; unknown keys are an error;
//! command-line flags override it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::fs::secure::{self as file, FileError};
use crate::source::cache::CacheSettings;
use crate::source::https::TlsSettings;
use crate::source::{DEFAULT_POLICY, DEFAULT_STATE_DIR, FetchSettings, Source};
use sshjit_policy::HostName;
use sshjit_policy::render::ExpiryStyle;
use sshjit_policy::time::parse_duration;

pub const DEFAULT_CONFIG: &str = "/etc/sshjit/sshjit.toml";
pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// The deadline may not be set above this: sshd itself gives up at
/// LoginGraceTime (120 s by default).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_CONFIG_BYTES: usize = 64 * 1024;
/// Longest `max_stale`: a cached document may lack revocations published
/// since, so its use is bounded.
pub const MAX_STALE: Duration = Duration::from_secs(24 * 3600);

/// The settings in force for one invocation.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Sources in failover order (never empty).
    pub sources: Vec<Source>,
    pub host: Option<HostName<'static>>,
    /// One deadline for the whole invocation.
    pub timeout: Duration,
    pub expiry_time: ExpiryStyle,
    pub syslog_socket: PathBuf,
    /// Longest grant the admin commands give without `--force`.
    pub max_grant: Duration,
    /// How documents are fetched and checked: TLS, signatures, state, cache.
    pub fetch: FetchSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sources: vec![Source::File(PathBuf::from(DEFAULT_POLICY))],
            host: None,
            timeout: DEFAULT_TIMEOUT,
            expiry_time: ExpiryStyle::default(),
            syslog_socket: PathBuf::from(DEFAULT_SYSLOG_SOCKET),
            max_grant: Duration::from_secs(24 * 3600),
            fetch: FetchSettings {
                state_dir: PathBuf::from(DEFAULT_STATE_DIR),
                ..FetchSettings::default()
            },
        }
    }
}

/// Why the configuration was refused.
#[derive(Debug)]
pub enum ConfigError {
    File(FileError),
    /// The default config is not there, but a symlink on its path is:
    /// pointing nowhere, it is not "no config".
    Dangling(PathBuf),
    Syntax {
        path: PathBuf,
        /// 1-based line and column, when known.
        position: Option<(usize, usize)>,
        message: String,
    },
    Value {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::File(e) => write!(f, "config: {e}"),
            ConfigError::Dangling(p) => write!(
                f,
                "config: {} leads nowhere (a symlink on its path points to something missing, e.g. an unmounted file system); only a config that is truly absent means defaults (fix: restore the target, or remove the symlink)",
                p.display()
            ),
            ConfigError::Syntax { path, message, .. } => {
                write!(f, "config {}: {}", path.display(), message.trim_end())
            }
            ConfigError::Value { path, key, message } => {
                write!(f, "config {}: {key}: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// The error without anything taken from the file: where, and what
    /// kind of problem. For a file the reader may not be able to read
    /// (`--config /etc/shadow` must not print a line of it). Unknown keys
    /// are named when they look like a misspelt setting (a bare
    /// lower-case word), as that is all a typo needs.
    pub fn redacted(self) -> ConfigError {
        const HIDDEN: &str = "(the content is not shown: the file is not readable by everyone)";
        match self {
            ConfigError::Syntax {
                path,
                position,
                message,
            } => {
                // toml's own message is its last line, after the quoted source.
                let message = message.trim_end().lines().last().unwrap_or("");
                let kind = if let Some(key) = message
                    .strip_prefix("unknown field `")
                    .and_then(|r| r.split_once('`'))
                    .map(|(k, _)| k)
                    .filter(|k| {
                        k.len() <= 32 && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    }) {
                    format!("unknown field `{key}`")
                } else if message.starts_with("unknown field") {
                    "an unknown field".to_owned()
                } else if message.starts_with("invalid type") {
                    "a value of the wrong type".to_owned()
                } else if message.starts_with("duplicate key") {
                    "a key given twice".to_owned()
                } else {
                    "not valid TOML".to_owned()
                };
                let at = position
                    .map(|(l, c)| format!("line {l}, column {c}: "))
                    .unwrap_or_default();
                ConfigError::Syntax {
                    path,
                    position,
                    message: format!("{at}{kind} {HIDDEN}"),
                }
            }
            ConfigError::Value { path, key, .. } => ConfigError::Value {
                path,
                key,
                message: format!("an invalid value {HIDDEN}"),
            },
            other => other,
        }
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.len()
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1)
        + 1;
    (line, column)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    source: Option<OneOrMany>,
    host: Option<String>,
    timeout: Option<String>,
    expiry_time: Option<String>,
    syslog_socket: Option<PathBuf>,
    max_grant: Option<String>,
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    token_file: Option<PathBuf>,
    allowed_signers: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    max_stale: Option<String>,
}

/// Loads the config: `explicit` must exist; the default path may be
/// absent, truly: a symlink on the way that leads nowhere (an unmounted
/// target) is an error, never "no config" (which would drop settings
/// such as `allowed_signers`).
pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
    let path = explicit.unwrap_or(Path::new(DEFAULT_CONFIG));
    match file::read_secure(path, MAX_CONFIG_BYTES) {
        Ok(bytes) => parse(path, &bytes).map_err(|e| {
            if file::world_readable(path) {
                e
            } else {
                e.redacted()
            }
        }),
        Err(FileError::NotFound(_)) if explicit.is_none() && file::truly_absent(path) => {
            Ok(Config::default())
        }
        Err(FileError::NotFound(p)) if explicit.is_none() => Err(ConfigError::Dangling(p)),
        Err(e) => Err(ConfigError::File(e)),
    }
}

/// Parses config text; `path` is only for messages.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Config, ConfigError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ConfigError::Syntax {
        path: path.to_owned(),
        position: None,
        message: "not UTF-8".into(),
    })?;
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_owned(),
        position: e.span().map(|s| line_column(text, s.start)),
        message: e.to_string(),
    })?;
    let value = |key: &'static str, message: String| ConfigError::Value {
        path: path.to_owned(),
        key,
        message,
    };
    let mut config = Config::default();
    if let Some(source) = raw.source {
        let list = match source {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        if list.is_empty() || list.len() > 8 {
            return Err(value("source", "give one to eight sources".into()));
        }
        config.sources = list
            .iter()
            .map(|s| {
                let src = Source::parse(s).map_err(|e| value("source", e.to_string()))?;
                match &src {
                    Source::File(p) if !p.is_absolute() => Err(value(
                        "source",
                        format!("{s:?} must be an absolute path (sshd runs the helper in /)"),
                    )),
                    _ => Ok(src),
                }
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(host) = raw.host {
        config.host = Some(
            HostName::new(host)
                .map_err(|e| value("host", e.to_string()))?
                .into_owned(),
        );
    }
    if let Some(t) = raw.timeout {
        let d = parse_duration(&t).map_err(|e| value("timeout", e.to_string()))?;
        if d.is_zero() || d > MAX_TIMEOUT {
            return Err(value("timeout", "must be between 1s and 30s".into()));
        }
        config.timeout = d;
    }
    if let Some(e) = raw.expiry_time {
        config.expiry_time = ExpiryStyle::parse(&e).ok_or_else(|| {
            value(
                "expiry_time",
                format!("{e:?}: expected \"local\" or \"utc\""),
            )
        })?;
    }
    if let Some(s) = raw.syslog_socket {
        if !s.is_absolute() {
            return Err(value("syslog_socket", "must be an absolute path".into()));
        }
        config.syslog_socket = s;
    }
    if let Some(m) = raw.max_grant {
        config.max_grant = parse_duration(&m).map_err(|e| value("max_grant", e.to_string()))?;
        if config.max_grant.is_zero() {
            return Err(value("max_grant", "must be longer than 0s".into()));
        }
    }
    let absolute = |key: &'static str, p: Option<PathBuf>| match p {
        Some(p) if !p.is_absolute() => Err(value(
            key,
            format!("{} must be an absolute path", p.display()),
        )),
        other => Ok(other),
    };
    config.fetch.tls = TlsSettings {
        ca_file: absolute("ca_file", raw.ca_file)?,
        client_cert: absolute("client_cert", raw.client_cert)?,
        client_key: absolute("client_key", raw.client_key)?,
        token_file: absolute("token_file", raw.token_file)?,
    };
    if config.fetch.tls.client_cert.is_some() != config.fetch.tls.client_key.is_some() {
        return Err(value(
            "client_cert",
            "client_cert and client_key go together".into(),
        ));
    }
    config.fetch.allowed_signers = absolute("allowed_signers", raw.allowed_signers)?;
    if let Some(d) = absolute("state_dir", raw.state_dir)? {
        config.fetch.state_dir = d;
    }
    let cache_dir = absolute("cache_dir", raw.cache_dir)?;
    let max_stale = match raw.max_stale {
        Some(m) => parse_duration(&m).map_err(|e| value("max_stale", e.to_string()))?,
        None => Duration::ZERO,
    };
    if max_stale > MAX_STALE {
        return Err(value("max_stale", "must be at most 24h".into()));
    }
    config.fetch.cache = match (cache_dir, max_stale.is_zero()) {
        (_, true) => None,
        (Some(dir), false) => Some(CacheSettings { dir, max_stale }),
        (None, false) => {
            return Err(value(
                "max_stale",
                "needs cache_dir (where the last good document is kept)".into(),
            ));
        }
    };
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Config, ConfigError> {
        parse(Path::new("/etc/sshjit/sshjit.toml"), text.as_bytes())
    }

    #[test]
    fn empty_is_defaults() {
        assert_eq!(p("").unwrap(), Config::default());
    }

    #[test]
    fn reads_every_key() {
        let c = p(r#"
            source = ["/etc/sshjit/a.json", "/etc/sshjit/b.json"]
            host = "web-1"
            timeout = "1500ms"
        "#);
        assert!(c.is_err(), "ms is not a unit");
        let c = p(r#"
            source = ["/etc/sshjit/a.json", "/etc/sshjit/b.json"]
            host = "web-1"
            timeout = "3s"
            expiry_time = "utc"
            syslog_socket = "/run/systemd/journal/dev-log"
            max_grant = "8h"
        "#)
        .unwrap();
        assert_eq!(c.sources.len(), 2);
        assert_eq!(c.host.unwrap().as_str(), "web-1");
        assert_eq!(c.timeout, Duration::from_secs(3));
        assert_eq!(c.expiry_time, ExpiryStyle::Utc);
        assert_eq!(c.max_grant, Duration::from_secs(8 * 3600));
        let c = p(r#"
            source = ["https://a.example/p.json", "https://b.example/p.json"]
            ca_file = "/etc/sshjit/ca.pem"
            client_cert = "/etc/sshjit/client.pem"
            client_key = "/etc/sshjit/client.key"
            token_file = "/etc/sshjit/token"
            allowed_signers = "/etc/sshjit/allowed_signers"
            state_dir = "/srv/state"
            cache_dir = "/srv/cache"
            max_stale = "15m"
        "#)
        .unwrap();
        assert!(matches!(
            &c.sources[..],
            [Source::Https(_), Source::Https(_)]
        ));
        assert_eq!(
            c.fetch.tls.ca_file.as_deref(),
            Some(Path::new("/etc/sshjit/ca.pem"))
        );
        assert_eq!(
            c.fetch.tls.token_file.as_deref(),
            Some(Path::new("/etc/sshjit/token"))
        );
        assert!(c.fetch.tls.client_cert.is_some() && c.fetch.tls.client_key.is_some());
        assert_eq!(
            c.fetch.allowed_signers.as_deref(),
            Some(Path::new("/etc/sshjit/allowed_signers"))
        );
        assert_eq!(c.fetch.state_dir, Path::new("/srv/state"));
        let cache = c.fetch.cache.unwrap();
        assert_eq!(cache.dir, Path::new("/srv/cache"));
        assert_eq!(cache.max_stale, Duration::from_secs(900));
        // The cache is off unless both are set; max_stale = 0s turns it off.
        assert!(
            p("cache_dir = \"/srv/cache\"")
                .unwrap()
                .fetch
                .cache
                .is_none()
        );
        assert!(
            p("cache_dir = \"/srv/cache\"\nmax_stale = \"0s\"")
                .unwrap()
                .fetch
                .cache
                .is_none()
        );
        assert_eq!(
            Config::default().fetch.state_dir,
            Path::new(DEFAULT_STATE_DIR)
        );
        let one = p(r#"source = "/srv/policy.json""#).unwrap();
        assert_eq!(one.sources, vec![Source::File("/srv/policy.json".into())]);
    }

    #[test]
    fn refuses_unknown_keys_and_bad_values() {
        for bad in [
            "sauce = \"/x\"",
            "source = \"relative.json\"",
            "source = []",
            "source = \"ftp://x/y\"",
            "host = \"a b\"",
            "timeout = \"0s\"",
            "timeout = \"5m\"",
            "timeout = 2",
            "expiry_time = \"gmt\"",
            "syslog_socket = \"dev/log\"",
            "[section]\nsource = \"/x\"",
            "source = \"/x\"\nsource = \"/y\"",
            "source = \"http://policy.example.com/p\"",
            "source = \"https://user:pw@policy.example.com/p\"",
            "source = [\"https://a/p\", \"ftp://b/p\"]",
            "ca_file = \"ca.pem\"",
            "allowed_signers = \"signers\"",
            "state_dir = \"var/lib/sshjit\"",
            "client_cert = \"/etc/c.pem\"",
            "client_key = \"/etc/c.key\"",
            "max_stale = \"1h\"",
            "cache_dir = \"/c\"\nmax_stale = \"2d\"",
            "cache_dir = \"/c\"\nmax_stale = \"soon\"",
            "token = \"/etc/sshjit/token\"",
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
        let msg = p("sauce = \"/x\"").unwrap_err().to_string();
        assert!(msg.contains("unknown field `sauce`"), "{msg}");
    }
}
