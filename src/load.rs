//! The one load step, shared by the login path and the read-only aids
//! (`check`, `explain`, `verify`): config → sources and host → fetch →
//! parse → accept, giving a [`Loaded`] policy: the whole document or one
//! user's part through the index (its [`View`]).
//!
//! Two steps, because the parsed policy borrows the fetched bytes:
//! [`Setup::fetch`] gives a [`Fetch`] that owns them, and [`Fetch::load`]
//! parses them once (no copy) and applies the checks that follow parsing
//! (the serial against rollback, the cache).

use std::fmt;
use std::time::Instant;

use crate::config::{self, Config, ConfigError};
use crate::index::{PartRequest, View};
use crate::source::{self, Accepted, Fetched, Scope, Source, SourceError};
use crate::{Globals, HostError, exit};
use sshjit_policy::{HostName, Policy, PolicyError};

/// Why no policy could be loaded.
#[derive(Debug)]
pub enum LoadError {
    Config(ConfigError),
    /// `--policy` or `--host` is not valid.
    Argument(String),
    /// This host's name could not be had from the system.
    Host(String),
    /// No document could be fetched.
    Source(SourceError),
    /// The document does not parse or validate.
    Policy {
        origin: String,
        error: PolicyError,
    },
    /// The document validated but was refused after (no serial, rollback);
    /// `header` is what it said about itself.
    Refused {
        header: Header,
        error: SourceError,
    },
}

/// What a parsed document says about itself, for the decision line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub serial: Option<u64>,
    pub frozen: bool,
}

impl Header {
    pub fn of(policy: &Policy<'_>) -> Self {
        Header {
            serial: policy.serial,
            frozen: policy.frozen,
        }
    }
}

impl LoadError {
    pub fn exit_code(&self) -> u8 {
        match self {
            LoadError::Argument(_) => exit::USAGE,
            _ => exit::DENIED,
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Config(e) => e.fmt(f),
            LoadError::Argument(m) | LoadError::Host(m) => f.write_str(m),
            LoadError::Source(e) | LoadError::Refused { error: e, .. } => e.fmt(f),
            LoadError::Policy { origin, error } => write!(f, "policy {origin}: {error}"),
        }
    }
}

impl std::error::Error for LoadError {}

impl From<HostError> for LoadError {
    fn from(e: HostError) -> Self {
        match e {
            HostError::Argument(m) => LoadError::Argument(m),
            HostError::System(m) => LoadError::Host(m),
        }
    }
}

/// Reads the config (`--config`, else the default file, which may be absent).
pub fn config(globals: &Globals) -> Result<Config, LoadError> {
    config::load(globals.config.as_deref()).map_err(LoadError::Config)
}

/// What a fetch needs that the command line and the config decide.
#[derive(Debug)]
pub struct Setup {
    pub config: Config,
    pub sources: Vec<Source>,
    /// This host's name; the aids go on without it (the endpoint then
    /// decides which host's document to serve).
    pub host: Option<HostName<'static>>,
}

impl Setup {
    /// For the login path: this host's name is required, and a bad one is
    /// reported before a bad source.
    pub fn for_login(globals: &Globals, config: Config) -> Result<Setup, LoadError> {
        let host = crate::host_name(globals, &config)?;
        let sources =
            crate::sources(globals, &config).map_err(|e| LoadError::Argument(e.to_string()))?;
        Ok(Setup {
            config,
            sources,
            host: Some(host),
        })
    }

    /// For the read-only aids: config and sources; the host name when it
    /// can be had.
    pub fn read(globals: &Globals) -> Result<Setup, LoadError> {
        let config = config(globals)?;
        let sources =
            crate::sources(globals, &config).map_err(|e| LoadError::Argument(e.to_string()))?;
        let host = crate::host_name(globals, &config).ok();
        Ok(Setup {
            config,
            sources,
            host,
        })
    }

    /// Fetches the document as `ask` says, within the config's timeout
    /// counted from `ask.started`.
    pub fn fetch<'s>(&'s self, ask: Ask<'s>) -> Result<Fetch<'s>, LoadError> {
        let request = source::Request {
            scope: Scope {
                user: ask.user,
                host: self.host.as_ref().map(|h| h.as_str()),
                mode: ask.mode,
            },
            deadline: source::network_deadline(ask.started, self.config.timeout),
            persist: ask.persist,
        };
        let fetched = source::fetch(&self.sources, &self.config.fetch, &request, ask.part)
            .map_err(LoadError::Source)?;
        Ok(Fetch {
            setup: self,
            request,
            fetched,
        })
    }
}

/// What to fetch, and whether this call may record state.
#[derive(Clone, Copy, Debug)]
pub struct Ask<'a> {
    /// The endpoint's `user` parameter: that user's part (`None`: the
    /// whole document of this host).
    pub user: Option<&'a str>,
    /// The endpoint's `mode` parameter (the login path only).
    pub mode: Option<&'a str>,
    /// Read only this user's part through the index of a local policy.
    pub part: Option<PartRequest<'a>>,
    /// Record the serial and the cache (the login path); the aids only read.
    pub persist: bool,
    /// When the call started: the deadline counts from it.
    pub started: Instant,
}

impl<'a> Ask<'a> {
    /// For the read-only aids: the whole document of this host, or with
    /// `user`, that user's part from the endpoint; nothing recorded.
    pub fn read_only(user: Option<&'a str>) -> Self {
        Ask {
            user,
            mode: None,
            part: None,
            persist: false,
            started: Instant::now(),
        }
    }
}

/// A fetched document, not yet parsed.
#[derive(Debug)]
pub struct Fetch<'s> {
    setup: &'s Setup,
    request: source::Request<'s>,
    pub fetched: Fetched,
}

impl Fetch<'_> {
    /// Parses the document (borrowing its bytes) and accepts it: with
    /// signatures, the serial against rollback; then the cache.
    pub fn load(&self) -> Result<Loaded<'_>, LoadError> {
        let doc = &self.fetched.doc;
        let policy = Policy::parse(&doc.bytes).map_err(|error| LoadError::Policy {
            origin: doc.origin.clone(),
            error: match &doc.path {
                Some(path) => crate::fs::secure::shown(path, error),
                None => error,
            },
        })?;
        let accepted = source::accept(
            &self.fetched,
            policy.serial,
            &self.setup.config.fetch,
            &self.request,
        )
        .map_err(|error| LoadError::Refused {
            header: Header::of(&policy),
            error,
        })?;
        Ok(Loaded {
            policy,
            accepted,
            fetched: &self.fetched,
        })
    }
}

/// A policy that parsed, validated and was accepted.
#[derive(Debug)]
pub struct Loaded<'f> {
    /// The whole document or one user's part, as [`Loaded::view`] says.
    pub policy: Policy<'f>,
    pub accepted: Accepted,
    pub fetched: &'f Fetched,
}

impl Loaded<'_> {
    pub fn view(&self) -> &View {
        &self.fetched.view
    }

    pub fn origin(&self) -> &str {
        &self.fetched.doc.origin
    }

    /// A line about the signature and serial for people (empty when
    /// unsigned).
    pub fn signature_note(&self) -> String {
        let Some(signer) = &self.fetched.signer else {
            return String::new();
        };
        let mut note = format!(
            "signature: good, by {} ({})",
            signer.principals, signer.fingerprint
        );
        match self.accepted.raised_from {
            None => note.push_str("; serial equal to the highest this host accepted"),
            Some(None) => note.push_str("; this host has accepted no serial yet"),
            Some(Some(h)) => note.push_str(&format!(
                "; serial above {h}, the highest this host accepted"
            )),
        }
        note.push('\n');
        note
    }
}
