//! `server.toml`: where the server listens, where its store is, and the
//! keys it signs with. A missing default file means defaults; unknown keys
//! are an error.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sshjit::fs::secure::{self as file, FileError};
use sshjit::source::Url;
use sshjit_policy::time::parse_duration;

pub const DEFAULT_CONFIG: &str = "/etc/sshjit/server.toml";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8022";
pub const DEFAULT_STORE: &str = "sqlite:/var/lib/sshjit/server.db";
pub const DEFAULT_ROLES: &str = "/etc/sshjit/roles.toml";
pub const DEFAULT_ONCALL: &str = "/etc/sshjit/oncall.toml";
pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";
const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// Where the store is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSpec {
    /// One SQLite file (WAL).
    Sqlite(PathBuf),
    /// A PostgreSQL connection string (`postgres://user@host:port/db`);
    /// several servers may share one database.
    Postgres(String),
}

impl StoreSpec {
    pub fn parse(s: &str) -> Result<StoreSpec, String> {
        if let Some(path) = s.strip_prefix("sqlite:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(format!("{s:?}: the SQLite file must be an absolute path"));
            }
            return Ok(StoreSpec::Sqlite(path));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            if s.len() > 2048 {
                return Err("the PostgreSQL URL is longer than 2048 bytes".into());
            }
            return Ok(StoreSpec::Postgres(s.to_owned()));
        }
        Err("expected sqlite:/PATH or postgres://user@host:port/db".into())
    }

    /// The directory beside which generated keys are kept by default.
    pub fn key_dir(&self) -> PathBuf {
        match self {
            StoreSpec::Sqlite(p) => p.parent().unwrap_or(Path::new("/")).to_owned(),
            StoreSpec::Postgres(_) => PathBuf::from("/var/lib/sshjit"),
        }
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            // The connection string may hold a password: show where, not how.
            StoreSpec::Postgres(s) => {
                let rest = s.split_once("://").map_or("", |(_, r)| r);
                let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                write!(f, "postgres://{host}")
            }
        }
    }
}

/// The settings in force.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Certificate chain and key (PEM) for https; plain http is allowed
    /// only on a loopback address.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub store: StoreSpec,
    /// The key every answer is signed with (namespace `sshjit-policy`);
    /// generated on first start when absent.
    pub signing_key: PathBuf,
    /// The key that seals secrets kept in the store (TOTP seeds), so that
    /// a copy of the database alone does not reveal them; generated on
    /// first start when absent. Replicas share it.
    pub secrets_key: PathBuf,
    pub user_ca_key: Option<PathBuf>,
    pub roles: PathBuf,
    /// Whether `roles` was named (then the file must exist).
    pub roles_explicit: bool,
    /// The on-call schedule (optional file).
    pub oncall: PathBuf,
    /// How long a request waits for its approvals before it lapses.
    pub request_ttl: Duration,
    /// Where alerts (break-glass) are sent, besides the server's log.
    pub syslog_socket: PathBuf,
    pub webhook: Option<Url>,
    /// Longest grant an admin gives without `--force`.
    pub max_grant: Duration,
    /// How long a login session lasts.
    pub session_ttl: Duration,
    /// The longest an answer may rest on a view of the store that was not
    /// confirmed current: past it the server answers 503 and hosts use
    /// their local copy, cache or next source.
    pub max_lag: Duration,
}

/// Why the config was refused.
#[derive(Debug)]
pub enum ConfigError {
    File(FileError),
    Syntax { path: PathBuf, message: String },
    Value { key: &'static str, message: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::File(e) => e.fmt(f),
            ConfigError::Syntax { path, message } => write!(f, "{}: {message}", path.display()),
            ConfigError::Value { key, message } => write!(f, "server config: {key}: {message}"),
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    store: Option<String>,
    signing_key: Option<PathBuf>,
    secrets_key: Option<PathBuf>,
    user_ca_key: Option<PathBuf>,
    roles: Option<PathBuf>,
    oncall: Option<PathBuf>,
    request_ttl: Option<String>,
    syslog_socket: Option<PathBuf>,
    webhook: Option<String>,
    max_grant: Option<String>,
    session_ttl: Option<String>,
    max_lag: Option<String>,
}

/// Loads the config: `explicit` must exist; the default path may be absent
/// (and only absent: a dangling link or an unreadable file is an error).
pub fn load(explicit: Option<&Path>) -> Result<ServerConfig, ConfigError> {
    let path = explicit.unwrap_or(Path::new(DEFAULT_CONFIG));
    match file::read_secure(path, MAX_CONFIG_BYTES) {
        Ok(bytes) => parse(path, &bytes),
        Err(FileError::NotFound(_)) if explicit.is_none() && !path.is_symlink() => parse(path, b""),
        Err(e) => Err(ConfigError::File(e)),
    }
}

/// A TOML file's error as its line and the parser's message, never the
/// parser's quote of the line (which can be anything the file holds): the
/// same shape for server.toml, roles.toml and oncall.toml.
pub fn toml_message(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {}", e.message())
        }
        None => e.message().to_owned(),
    }
}

/// Parses config text; `path` is only for messages.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<ServerConfig, ConfigError> {
    let syntax = |message: String| ConfigError::Syntax {
        path: path.to_owned(),
        message,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| syntax("not UTF-8".into()))?;
    let raw: RawConfig =
        toml::from_str(text).map_err(|e| syntax(crate::config::toml_message(text, &e)))?;
    let value = |key: &'static str, message: String| ConfigError::Value { key, message };
    let listen: SocketAddr = raw
        .listen
        .as_deref()
        .unwrap_or(DEFAULT_LISTEN)
        .parse()
        .map_err(|_| value("listen", "expected ADDRESS:PORT, e.g. 0.0.0.0:8022".into()))?;
    let tls = match (raw.tls_cert, raw.tls_key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(value(
                "tls_cert",
                "give both tls_cert and tls_key, or neither".into(),
            ));
        }
    };
    if tls.is_none() && !listen.ip().is_loopback() {
        return Err(value(
            "listen",
            format!(
                "{listen} is not a loopback address: plain http is allowed only on loopback; set tls_cert and tls_key"
            ),
        ));
    }
    let store = match raw.store {
        Some(s) => StoreSpec::parse(&s).map_err(|m| value("store", m))?,
        None => default_store(),
    };
    let key_dir = store.key_dir();
    let duration = |key: &'static str, v: Option<String>, default: Duration, max: Duration| {
        let Some(v) = v else { return Ok(default) };
        let d = parse_duration(&v).map_err(|e| value(key, format!("{v:?}: {e}")))?;
        if d.is_zero() || d > max {
            return Err(value(
                key,
                format!(
                    "must be between 1s and {}",
                    sshjit_policy::time::format_duration(max)
                ),
            ));
        }
        Ok(d)
    };
    let webhook = raw
        .webhook
        .map(|w| Url::parse(&w).map_err(|e| value("webhook", e.problem.to_string())))
        .transpose()?;
    Ok(ServerConfig {
        listen,
        tls,
        signing_key: raw
            .signing_key
            .unwrap_or_else(|| key_dir.join("signing_key")),
        secrets_key: raw
            .secrets_key
            .unwrap_or_else(|| key_dir.join("secrets_key")),
        store,
        user_ca_key: raw.user_ca_key,
        roles_explicit: raw.roles.is_some(),
        roles: raw.roles.unwrap_or_else(|| PathBuf::from(DEFAULT_ROLES)),
        oncall: raw.oncall.unwrap_or_else(|| PathBuf::from(DEFAULT_ONCALL)),
        request_ttl: duration(
            "request_ttl",
            raw.request_ttl,
            Duration::from_secs(3600),
            Duration::from_secs(7 * 24 * 3600),
        )?,
        syslog_socket: raw
            .syslog_socket
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SYSLOG_SOCKET)),
        webhook,
        max_grant: duration(
            "max_grant",
            raw.max_grant,
            Duration::from_secs(24 * 3600),
            Duration::from_secs(366 * 24 * 3600),
        )?,
        session_ttl: duration(
            "session_ttl",
            raw.session_ttl,
            Duration::from_secs(3600),
            Duration::from_secs(24 * 3600),
        )?,
        max_lag: duration(
            "max_lag",
            raw.max_lag,
            Duration::from_secs(10),
            Duration::from_secs(3600),
        )?,
    })
}

/// `sqlite:/var/lib/sshjit/server.db`; for an account other than root,
/// which cannot write there, the same file under its own state directory
/// (`$XDG_STATE_HOME/sshjit`, else `~/.local/state/sshjit`), so the
/// quickstart runs without setup.
fn default_store() -> StoreSpec {
    if sshjit::system::euid() == 0 {
        return StoreSpec::Sqlite(PathBuf::from(&DEFAULT_STORE["sqlite:".len()..]));
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".local/state"))
        });
    match state {
        Some(dir) => StoreSpec::Sqlite(dir.join("sshjit/server.db")),
        None => StoreSpec::Sqlite(PathBuf::from(&DEFAULT_STORE["sqlite:".len()..])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<ServerConfig, ConfigError> {
        parse(Path::new("server.toml"), text.as_bytes())
    }

    #[test]
    fn defaults_listen_on_loopback_with_sqlite() {
        let c = p("").unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert!(matches!(c.store, StoreSpec::Sqlite(_)));
        assert!(c.tls.is_none());
        assert_eq!(c.max_grant, Duration::from_secs(86400));
    }

    #[test]
    fn plain_http_only_on_loopback_and_unknown_keys_refused() {
        let e = p("listen = \"0.0.0.0:8022\"").unwrap_err();
        assert!(e.to_string().contains("plain http"), "{e}");
        assert!(p("listen = \"0.0.0.0:8022\"\ntls_cert = \"/c\"\ntls_key = \"/k\"").is_ok());
        assert!(p("tls_cert = \"/c\"").is_err());
        let e = p("lisen = \"x\"").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        assert!(p("store = \"mysql://x\"").is_err());
        assert!(p("store = \"sqlite:relative.db\"").is_err());
        assert!(p("max_grant = \"0s\"").is_err());
    }

    #[test]
    fn a_postgres_password_is_never_shown() {
        let c = p("store = \"postgres://sshjit:s3cret@db.example.com:5432/sshjit\"").unwrap();
        let shown = c.store.to_string();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("db.example.com:5432/sshjit"), "{shown}");
    }

    #[test]
    fn a_syntax_error_does_not_quote_the_file() {
        let e = p("store = \"sqlite:/x\"\nsecret-line-here oops").unwrap_err();
        assert!(!e.to_string().contains("secret-line-here"), "{e}");
    }
}
