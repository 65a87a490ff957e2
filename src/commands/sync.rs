//! `sshjit sync --server URL --token-file F [--policy PATH] [--once]`:
//! keeps this host's local copy of its policy current from sshjit-server,
//! so that every login reads a local file (near the floor, and through a
//! server outage) while a change made on the server reaches the host
//! within seconds.
//!
//! It long-polls `GET /v1/policy?host=H&wait=S` with `If-None-Match` (the
//! server answers as soon as the policy changes, or 304 after the wait),
//! verifies every answer's signature against `allowed_signers` and its
//! serial against the copy it has, and only then replaces the copy: the
//! signature beside it (`policy.json.sig`), the document, and its index,
//! under the policy's lock. It never replaces a good copy with a worse one
//! (a lower serial, or other content under the same serial). After a
//! failure it waits a random time up to a doubling bound (full jitter), so
//! a fleet coming back after an outage does not reconnect all at once.
//! Every line it logs says how long ago the copy was last confirmed
//! current.
//!
//! Since `sync` (running as root) verifies the signature, the helper can
//! read the root-owned copy and its index without verifying it again: the
//! fast path for a large policy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use super::failure::Failure;
use super::output::Output;
use crate::config::{self, Config};
use crate::fs::atomic;
use crate::log::{Line, Severity, Syslog};
use crate::source::https::{self, Call, Client, Method};
use crate::source::signature::{self, AllowedSigners};
use crate::source::{DEFAULT_POLICY, Source, Url};
use crate::store::{PolicyFile, lock};
use crate::{Globals, index};
use sshjit_policy::time::{Timestamp, format_duration};
use sshjit_policy::{HostName, MAX_DOCUMENT_BYTES, Policy};

/// How long the server is asked to hold a poll, at most (it holds 60).
const WAIT: u64 = 30;
/// First and longest pause after a failure.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// A line saying all is well, at most this often.
const HEARTBEAT: Duration = Duration::from_secs(3600);

#[derive(Args, Debug, Clone)]
pub struct SyncArgs {
    /// The host's bearer token (from `sshjit-server host add`) [default: the config's token_file]
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Verify every answer against this file [default: the config's allowed_signers]
    #[arg(long, value_name = "FILE")]
    pub allowed_signers: Option<PathBuf>,
    /// Bring the copy up to date once and exit (for a timer)
    #[arg(long)]
    pub once: bool,
}

/// What one poll did.
#[derive(Debug, PartialEq, Eq)]
enum Polled {
    /// The copy is current (304, or the same document).
    Current,
    /// The copy was replaced.
    Updated {
        serial: u64,
        grants: usize,
        signed_by: String,
    },
}

/// Why a poll failed, and whether trying again later may help.
struct SyncError {
    message: String,
    /// Refused for good until someone acts (bad signature, rollback,
    /// unknown token), rather than unreachable.
    refused: bool,
}

fn unavailable(message: impl Into<String>) -> SyncError {
    SyncError {
        message: message.into(),
        refused: false,
    }
}

fn refused(message: impl Into<String>) -> SyncError {
    SyncError {
        message: message.into(),
        refused: true,
    }
}

struct Syncer {
    server: Url,
    client: Client,
    signers: AllowedSigners,
    host: HostName<'static>,
    file: PolicyFile,
    syslog: Syslog,
    /// The copy's serial and bytes' SHA-256, when there is a copy.
    local: Option<(u64, String)>,
    /// When the copy was last confirmed current.
    confirmed: Option<Instant>,
}

pub fn run(globals: &Globals, args: &SyncArgs) -> Result<Output, Failure> {
    let config =
        config::load(globals.config.as_deref()).map_err(|e| Failure::refused(e.to_string()))?;
    let mut syncer = Syncer::new(globals, args, &config)?;
    if args.once {
        return match syncer.poll(0) {
            Ok(polled) => {
                syncer.log_polled(&polled);
                Ok(Output::text(match polled {
                    Polled::Current => format!(
                        "{} is current (serial {})\n",
                        syncer.file.policy.display(),
                        syncer.local.as_ref().map_or(0, |l| l.0)
                    ),
                    Polled::Updated { serial, grants, .. } => format!(
                        "{} updated to serial {serial} ({grants} grants)\n",
                        syncer.file.policy.display()
                    ),
                }))
            }
            Err(e) => {
                syncer.log_error(&e);
                Err(if e.refused {
                    Failure::refused(e.message)
                } else {
                    Failure::internal(e.message)
                })
            }
        };
    }
    syncer.log(
        Severity::Info,
        &[
            ("event", "start"),
            ("serial", &syncer.local_serial()),
            ("policy", &syncer.file.policy.display().to_string()),
        ],
    );
    let mut failures: u32 = 0;
    let mut last_heartbeat = Instant::now();
    loop {
        // A little jitter on the wait, so polls of a fleet spread out.
        let wait = WAIT - jitter(Duration::from_secs(5)).as_secs();
        match syncer.poll(wait) {
            Ok(polled) => {
                failures = 0;
                if polled != Polled::Current || last_heartbeat.elapsed() >= HEARTBEAT {
                    syncer.log_polled(&polled);
                    last_heartbeat = Instant::now();
                }
            }
            Err(e) => {
                syncer.log_error(&e);
                failures = failures.saturating_add(1);
                let bound = BACKOFF_BASE
                    .saturating_mul(1 << failures.min(6))
                    .min(BACKOFF_CAP);
                std::thread::sleep(jitter(bound).max(Duration::from_millis(100)));
            }
        }
    }
}

/// A random duration up to `bound`.
fn jitter(bound: Duration) -> Duration {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        return bound / 2;
    }
    let millis = bound.as_millis().max(1) as u64;
    Duration::from_millis(u64::from_le_bytes(b) % millis)
}

impl Syncer {
    fn new(globals: &Globals, args: &SyncArgs, config: &Config) -> Result<Syncer, Failure> {
        let spec = globals
            .server
            .as_deref()
            .ok_or_else(|| Failure::usage("give --server URL"))?;
        let server = Url::parse(spec).map_err(|e| Failure::usage(format!("--server: {e}")))?;
        let mut tls = config.fetch.tls.clone();
        if let Some(t) = &args.token_file {
            tls.token_file = Some(t.clone());
        }
        if tls.token_file.is_none() {
            return Err(Failure::usage(
                "give --token-file FILE (the token `sshjit-server host add` printed), or set token_file",
            ));
        }
        let client = Client::new(&tls).map_err(|e| Failure::refused(e.to_string()))?;
        let signers_path = args
            .allowed_signers
            .clone()
            .or_else(|| config.fetch.allowed_signers.clone())
            .ok_or_else(|| {
                Failure::usage(
                    "sync verifies every answer: give --allowed-signers FILE (with the line `sshjit-server signer` prints), or set allowed_signers",
                )
            })?;
        let signers =
            signature::load(&signers_path).map_err(|e| Failure::refused(e.to_string()))?;
        let host = crate::host_name(globals, config).map_err(|e| Failure::usage(e.to_string()))?;
        let path = match &globals.policy {
            Some(p) => PathBuf::from(p),
            None => config
                .sources
                .iter()
                .find_map(|s| match s {
                    Source::File(p) => Some(p.clone()),
                    Source::Https(_) => None,
                })
                .unwrap_or_else(|| PathBuf::from(DEFAULT_POLICY)),
        };
        if path.as_os_str().to_string_lossy().contains("://") {
            return Err(Failure::usage(
                "--policy: sync keeps a local file: give a path",
            ));
        }
        let file = PolicyFile::resolve(&path)?;
        crate::fs::secure::check_directory(atomic::dir_of(&file.policy))
            .map_err(|e| Failure::refused(e.to_string()))?;
        let mut syncer = Syncer {
            server,
            client,
            signers,
            host,
            file,
            syslog: Syslog::new(&config.syslog_socket),
            local: None,
            confirmed: None,
        };
        syncer.local = syncer.read_local()?;
        Ok(syncer)
    }

    /// The copy's serial and SHA-256, when it is there and valid.
    fn read_local(&self) -> Result<Option<(u64, String)>, Failure> {
        let bytes = match crate::fs::secure::read_secure(&self.file.policy, MAX_DOCUMENT_BYTES) {
            Ok(b) => b,
            Err(crate::fs::secure::FileError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(Failure::refused(e.to_string())),
        };
        // A copy that does not parse is replaced by the first good answer.
        Ok(Policy::parse(&bytes).ok().map(|p| {
            (
                p.serial.unwrap_or(0),
                crate::store::trail::sha256_hex(&bytes),
            )
        }))
    }

    fn local_serial(&self) -> String {
        self.local
            .as_ref()
            .map_or_else(|| "none".to_owned(), |l| l.0.to_string())
    }

    /// One request: waits up to `wait` seconds for a change.
    fn poll(&mut self, wait: u64) -> Result<Polled, SyncError> {
        let mut url = self.server.join("/v1/policy");
        url.push_str(&format!("?host={}", self.host));
        if wait > 0 {
            url.push_str(&format!("&wait={wait}"));
        }
        let etag = self.local.as_ref().map(|l| format!("\"{}\"", l.0));
        let extra: Vec<(&str, &str)> = etag
            .as_deref()
            .map(|e| vec![("if-none-match", e)])
            .unwrap_or_default();
        let reply = self
            .client
            .send(Call {
                method: Method::Get,
                url: &url,
                bearer: None,
                json: None,
                extra: &extra,
                deadline: Instant::now() + Duration::from_secs(wait + 15),
                limit: https::MAX_RESPONSE_BYTES,
            })
            .map_err(|e| {
                if e.is_unavailable() {
                    unavailable(format!("{}: {e}", self.server))
                } else {
                    refused(format!("{}: {e}", self.server))
                }
            })?;
        match reply.status {
            200 => {}
            304 => {
                self.confirmed = Some(Instant::now());
                return Ok(Polled::Current);
            }
            401 | 403 => {
                return Err(refused(format!(
                    "{}: HTTP status {}: this host's token is not accepted (removed, or another host's)",
                    self.server, reply.status
                )));
            }
            s @ 500..=599 => return Err(unavailable(format!("{}: HTTP status {s}", self.server))),
            s => return Err(refused(format!("{}: HTTP status {s}", self.server))),
        }
        let signature = reply
            .signature
            .ok_or_else(|| refused(format!("{}: an answer without a signature", self.server)))?;
        let signer = self
            .signers
            .verify(&reply.body, &signature, Timestamp::now().unix_seconds())
            .map_err(|e| refused(format!("{}: {e}", self.server)))?;
        let policy = Policy::parse(&reply.body)
            .map_err(|e| refused(format!("{}: an invalid policy: {e}", self.server)))?;
        let serial = policy
            .serial
            .ok_or_else(|| refused(format!("{}: a signed policy without a serial", self.server)))?;
        let sha = crate::store::trail::sha256_hex(&reply.body);
        if let Some((have, have_sha)) = &self.local {
            if serial < *have {
                return Err(refused(format!(
                    "{}: serial {serial} is older than the copy's {have}: kept the copy (a rollback, or a server restored from an old backup)",
                    self.server
                )));
            }
            if serial == *have {
                if sha == *have_sha {
                    self.confirmed = Some(Instant::now());
                    return Ok(Polled::Current);
                }
                return Err(refused(format!(
                    "{}: other content under the copy's serial {serial}: kept the copy",
                    self.server
                )));
            }
        }
        self.install(&reply.body, &signature)?;
        self.local = Some((serial, sha));
        self.confirmed = Some(Instant::now());
        Ok(Polled::Updated {
            serial,
            grants: policy.grants.len(),
            signed_by: signer.principals,
        })
    }

    /// Replaces the copy under the policy's lock: its signature, the
    /// document, its index.
    fn install(&self, body: &[u8], signature: &[u8]) -> Result<(), SyncError> {
        let _lock = lock::exclusive(&self.file, None)
            .map_err(|e| unavailable(format!("locking the copy: {e}")))?;
        let write = |path: &Path, bytes: &[u8]| {
            atomic::write(path, bytes, atomic::Options::mode(0o644))
                .map_err(|e| unavailable(format!("writing {}: {e}", path.display())))
        };
        write(&signature_path(&self.file.policy), signature)?;
        write(&self.file.policy, body)?;
        if let Err(e) = index::write_for(&self.file.policy, Some(&self.signers)) {
            // Only speed is lost: the helper reads the whole copy.
            self.log(
                Severity::Warning,
                &[("event", "index"), ("error", &e.to_string())],
            );
        }
        Ok(())
    }

    fn age(&self) -> String {
        match self.confirmed {
            Some(t) => format_duration(Duration::from_secs(t.elapsed().as_secs())),
            None => "never".to_owned(),
        }
    }

    fn log(&self, severity: Severity, fields: &[(&str, &str)]) {
        let mut line = Line::new();
        line.field("mode", "sync")
            .field("server", &self.server.to_string())
            .field("host", self.host.as_str());
        for (k, v) in fields {
            line.field(k, v);
        }
        self.syslog.log(severity, line.as_str());
    }

    fn log_polled(&self, polled: &Polled) {
        match polled {
            Polled::Current => self.log(
                Severity::Info,
                &[("event", "current"), ("serial", &self.local_serial())],
            ),
            Polled::Updated {
                serial,
                grants,
                signed_by,
            } => self.log(
                Severity::Notice,
                &[
                    ("event", "updated"),
                    ("serial", &serial.to_string()),
                    ("grants", &grants.to_string()),
                    ("signed_by", signed_by),
                ],
            ),
        }
    }

    fn log_error(&self, e: &SyncError) {
        self.log(
            if e.refused {
                Severity::Err
            } else {
                Severity::Warning
            },
            &[
                ("event", if e.refused { "refused" } else { "unavailable" }),
                ("serial", &self.local_serial()),
                ("copy_confirmed_ago", &self.age()),
                ("error", &e.message),
            ],
        );
    }
}

/// `policy.json.sig`.
fn signature_path(policy: &Path) -> PathBuf {
    let mut s = policy.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}
