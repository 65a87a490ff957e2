//! Where the policy document comes from: a local file (the default) or an
//! https endpoint, tried in order within one deadline; then the checks that
//! depend on where bytes came from: the signature over the exact bytes,
//! the serial against rollback, and the stale-if-error cache. Parsing
//! happens in `policy`; the caller hands the parsed serial back to
//! `accept`.

pub mod cache;
pub mod https;
pub mod private;
pub mod rollback;
pub mod signature;
pub mod url;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::fs::secure as file;
use cache::CacheSettings;
use https::{HttpsError, TlsSettings};
use rollback::{RollbackError, SerialCheck};
use signature::{AllowedSigners, SignatureError, Signer};
use sshjit_policy::MAX_DOCUMENT_BYTES;
/// The old name of [`Scope`].
#[deprecated(note = "renamed `source::Scope`")]
pub use url::Scope as Query;
pub use url::{Scope, Url, UrlError, UrlProblem};

use crate::index::{Identity, IndexError, PartRequest, Probe, Unused, View};

/// Default policy location.
pub const DEFAULT_POLICY: &str = "/etc/sshjit/policy.json";
/// Default `state_dir`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/sshjit";

/// One configured source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Https(Url),
}

impl Source {
    /// Reads `--policy` or a config `source` entry: an `https://` URL (or
    /// `http://` to a loopback address) or a path.
    pub fn parse(spec: &str) -> Result<Self, SourceSpecError> {
        if spec.is_empty() {
            return Err(SourceSpecError::Empty);
        }
        if spec.contains("://") {
            return Url::parse(spec)
                .map(Source::Https)
                .map_err(SourceSpecError::Url);
        }
        Ok(Source::File(PathBuf::from(spec)))
    }
}

/// Why a `--policy` or `source` value was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpecError {
    Empty,
    Url(UrlError),
}

impl fmt::Display for SourceSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpecError::Empty => f.write_str("empty policy source"),
            SourceSpecError::Url(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SourceSpecError {}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Https(u) => u.fmt(f),
        }
    }
}

/// Everything about fetching that the config decides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchSettings {
    pub tls: TlsSettings,
    pub allowed_signers: Option<PathBuf>,
    pub state_dir: PathBuf,
    /// Set only when the cache is on (`cache_dir` and `max_stale` > 0).
    pub cache: Option<CacheSettings>,
}

/// One fetch: what to ask for, until when, and whether this call may
/// record state (the login path) or only read it (admin commands).
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub scope: Scope<'a>,
    pub deadline: Instant,
    pub persist: bool,
}

/// The part of the overall `timeout` that network work may use: the rest
/// is left for verifying, parsing, evaluating and logging, so that the
/// helper's own deadline (its watchdog) is never what stops it.
pub fn network_deadline(started: Instant, timeout: Duration) -> Instant {
    let reserve = (timeout / 4).min(Duration::from_millis(500));
    started + timeout - reserve
}

/// A document as fetched, with where it came from.
#[derive(Debug)]
pub struct Document {
    pub bytes: Vec<u8>,
    pub origin: String,
    /// The local file it was read from (errors quote a file's content only
    /// when anyone may read it).
    pub path: Option<PathBuf>,
}

/// A document and what is known about it before parsing.
#[derive(Debug)]
pub struct Fetched {
    pub doc: Document,
    /// Who signed it, when signatures are required.
    pub signer: Option<Signer>,
    /// Set when the document came from the cache: its age.
    pub cache_age: Option<Duration>,
    /// Sources that were unavailable before this one (or before the cache).
    pub failures: Vec<String>,
    /// The whole document, or one user's part read through the index.
    pub view: View,
    signature: Option<Vec<u8>>,
}

/// What one source answered: the whole document (with its signature, and
/// why the index was not used), or one user's part through the index.
enum Answer {
    Whole {
        bytes: Vec<u8>,
        signature: Option<Vec<u8>>,
        unindexed: Option<IndexError>,
    },
    Part {
        found: crate::index::IndexLookup,
        /// The signature file's bytes, when signatures are required.
        signature: Option<Vec<u8>>,
    },
}

/// What `accept` did.
#[derive(Clone, Debug, Default)]
pub struct Accepted {
    /// The previous highest serial, when this document raised it.
    pub raised_from: Option<Option<u64>>,
    /// The cache could not be updated (the document is used anyway).
    pub cache_error: Option<String>,
}

/// Why no document could be had.
#[derive(Debug)]
pub enum SourceError {
    File(file::FileError),
    Https {
        origin: String,
        error: HttpsError,
    },
    Signature {
        origin: String,
        error: SignatureError,
    },
    /// Signed documents must carry a serial.
    NoSerial {
        origin: String,
    },
    Rollback {
        origin: String,
        error: RollbackError,
    },
    /// Every source was unavailable; `cache` says why the cache did not
    /// stand in (`None`: the cache is off).
    Unavailable {
        failures: Vec<String>,
        cache: Option<String>,
    },
}

impl SourceError {
    /// True when the source could not be reached at all, so the next one in
    /// a failover list may be tried. A source that answered with something
    /// unacceptable is never skipped. A local file is never "unavailable":
    /// deleting the policy is how an operator cuts access in a hurry, so a
    /// missing file (or a dangling symlink) denies, like any other error,
    /// and neither the next source nor the cache stands in.
    pub fn is_unavailable(&self) -> bool {
        match self {
            SourceError::File(_) => false,
            SourceError::Https { error, .. } => error.is_unavailable(),
            SourceError::Unavailable { .. } => true,
            _ => false,
        }
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::File(e) => e.fmt(f),
            SourceError::Https { origin, error } => write!(f, "{origin}: {error}"),
            SourceError::Signature { origin, error } => write!(f, "{origin}: {error}"),
            SourceError::NoSerial { origin } => write!(
                f,
                "{origin}: signed documents must carry a \"serial\" (rollback protection)"
            ),
            SourceError::Rollback { origin, error } => write!(f, "{origin}: {error}"),
            SourceError::Unavailable { failures, cache } => {
                write!(f, "no source available: {}", failures.join("; "))?;
                if let Some(c) = cache {
                    write!(f, "; {c}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for SourceError {}

/// Fetches from the first source that is available, in order, and checks
/// its signature; when none is available, the cache may stand in.
pub fn fetch(
    sources: &[Source],
    settings: &FetchSettings,
    req: &Request<'_>,
    part: Option<PartRequest<'_>>,
) -> Result<Fetched, SourceError> {
    let signers = match &settings.allowed_signers {
        Some(path) => Some(
            signature::load(path).map_err(|error| SourceError::Signature {
                origin: path.display().to_string(),
                error,
            })?,
        ),
        None => None,
    };
    let mut client = None;
    let mut failures = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        // Later sources keep a fair share of the time that is left.
        let now = Instant::now();
        let left = req.deadline.saturating_duration_since(now);
        let share = left / u32::try_from(sources.len() - i).unwrap_or(1);
        let until = if i + 1 == sources.len() {
            req.deadline
        } else {
            now + share
        };
        match fetch_one(
            source,
            settings,
            req,
            signers.is_some(),
            until,
            &mut client,
            part,
        ) {
            Ok(Answer::Part { found, signature }) => {
                // The index was built by root from this very signature
                // over this very document, verified then; what may have
                // changed since is who is allowed to sign, and the clock.
                let signer = match (&signers, &signature) {
                    (Some(s), Some(sig)) => Some(
                        s.vouch(sig, sshjit_policy::time::Timestamp::now().unix_seconds())
                            .map_err(|error| SourceError::Signature {
                                origin: source.to_string(),
                                error,
                            })?,
                    ),
                    _ => None,
                };
                return Ok(Fetched {
                    doc: Document {
                        bytes: found.document,
                        origin: source.to_string(),
                        path: local_path(source),
                    },
                    signer,
                    cache_age: None,
                    failures,
                    view: View::Part(found.info),
                    signature,
                });
            }
            Ok(Answer::Whole {
                bytes,
                signature,
                unindexed,
            }) => {
                let origin = source.to_string();
                let signer = verify(signers.as_ref(), &origin, &bytes, signature.as_deref())?;
                return Ok(Fetched {
                    doc: Document {
                        bytes,
                        origin,
                        path: local_path(source),
                    },
                    signer,
                    cache_age: None,
                    failures,
                    view: View::Whole(unindexed),
                    signature,
                });
            }
            Err(e) if e.is_unavailable() => failures.push(e.to_string()),
            Err(e) => return Err(e),
        }
    }
    if failures.is_empty() {
        failures.push("no source configured".into());
    }
    let Some(cache) = &settings.cache else {
        return Err(SourceError::Unavailable {
            failures,
            cache: None,
        });
    };
    let unavailable = |why: String, failures: Vec<String>| SourceError::Unavailable {
        failures,
        cache: Some(why),
    };
    let Some(key) = cache_key(&req.scope) else {
        return Err(unavailable(
            "cache: not used for this command".into(),
            failures,
        ));
    };
    let cached = match cache::load(cache, &key) {
        Ok(c) => c,
        Err(e) => return Err(unavailable(e.to_string(), failures)),
    };
    if !sources.iter().any(|s| s.to_string() == cached.origin) {
        return Err(unavailable(
            format!(
                "cache: entry from {}, which is no longer a source",
                cached.origin
            ),
            failures,
        ));
    }
    let origin = format!("cache:{}", cached.origin);
    let signer = verify(
        signers.as_ref(),
        &origin,
        &cached.bytes,
        cached.signature.as_deref(),
    )?;
    Ok(Fetched {
        doc: Document {
            bytes: cached.bytes,
            origin: cached.origin,
            path: None,
        },
        signer,
        cache_age: Some(cached.age),
        failures,
        view: View::Whole(None),
        signature: cached.signature,
    })
}

fn local_path(source: &Source) -> Option<PathBuf> {
    match source {
        Source::File(p) => Some(p.clone()),
        Source::Https(_) => None,
    }
}

fn cache_key<'a>(q: &Scope<'a>) -> Option<cache::Key<'a>> {
    Some(cache::Key {
        mode: q.mode?,
        user: q.user?,
        host: q.host?,
    })
}

fn verify(
    signers: Option<&AllowedSigners>,
    origin: &str,
    bytes: &[u8],
    signature: Option<&[u8]>,
) -> Result<Option<Signer>, SourceError> {
    let Some(signers) = signers else {
        return Ok(None);
    };
    let err = |error| SourceError::Signature {
        origin: origin.to_owned(),
        error,
    };
    let sig = signature.ok_or_else(|| err(SignatureError::Missing("unsigned".into())))?;
    let now = sshjit_policy::time::Timestamp::now().unix_seconds();
    signers.verify(bytes, sig, now).map(Some).map_err(err)
}

fn fetch_one(
    source: &Source,
    settings: &FetchSettings,
    req: &Request<'_>,
    signed: bool,
    until: Instant,
    client: &mut Option<https::Client>,
    part: Option<PartRequest<'_>>,
) -> Result<Answer, SourceError> {
    match source {
        Source::File(path) => read_file(path, signed, part, until),
        Source::Https(url) => {
            let https_err = |error| SourceError::Https {
                origin: url.to_string(),
                error,
            };
            if client.is_none() {
                *client = Some(https::Client::new(&settings.tls).map_err(https_err)?);
            }
            let c = client.as_ref().expect("client was just built");
            let f = c.fetch(url, &req.scope, signed, until).map_err(https_err)?;
            Ok(Answer::Whole {
                bytes: f.body,
                signature: f.signature,
                unindexed: None,
            })
        }
    }
}

/// How often a login reads the policy again when the file was replaced
/// while it was looking at the index.
const REPLACED_RETRIES: usize = 2;
/// Longest wait for an edit to rename its next version into place.
const PENDING_WAIT: Duration = Duration::from_millis(500);

/// Whether the file at `path` is no longer the one with `identity`.
fn replaced(path: &Path, identity: &Identity) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !Identity::of(&m).same_file(identity))
}

/// Waits, until `PENDING_WAIT` or the network deadline passes, for the
/// file at `path` to be replaced; true if it was.
fn wait_replaced(path: &Path, identity: &Identity, deadline: Instant) -> bool {
    let until = (Instant::now() + PENDING_WAIT).min(deadline);
    let mut pause = Duration::from_micros(200);
    while Instant::now() < until {
        if replaced(path, identity) {
            return true;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
    replaced(path, identity)
}

/// A file source: one user's part through the index when it describes the
/// file, else the whole document (and its signature when required).
fn read_file(
    path: &Path,
    signed: bool,
    part: Option<PartRequest<'_>>,
    deadline: Instant,
) -> Result<Answer, SourceError> {
    let mut attempt = 0;
    loop {
        let f = file::open_secure(path, MAX_DOCUMENT_BYTES).map_err(SourceError::File)?;
        let signature = if signed {
            Some(read_signature_file(path)?)
        } else {
            None
        };
        let Some(part) = part else {
            let bytes = f.read_all().map_err(SourceError::File)?;
            return Ok(Answer::Whole {
                bytes,
                signature,
                unindexed: None,
            });
        };
        // The index is probed with the fstat of the open policy (or the
        // SHA-256 of its bytes), so it can only describe the very file
        // that was checked. It lies beside the file itself (after
        // symlinks), where the admin commands write it.
        let why = match crate::index::probe(f, signature.as_deref(), part) {
            Probe::Part(found) => return Ok(Answer::Part { found, signature }),
            Probe::Unused { why, policy } => {
                let bytes = match policy {
                    Unused::File(f) => f.read_all().map_err(SourceError::File)?,
                    Unused::Failed(e) => return Err(SourceError::File(e)),
                    Unused::Read(m) => {
                        // An edit puts its new index in place just before
                        // it renames the new policy over the old one: a
                        // file replaced meanwhile is read again, and one
                        // about to be is waited for (briefly).
                        if attempt < REPLACED_RETRIES
                            && (replaced(path, &m.identity)
                                || (m.next_version_pending()
                                    && wait_replaced(path, &m.identity, deadline)))
                        {
                            attempt += 1;
                            continue;
                        }
                        m.document
                    }
                };
                (bytes, why)
            }
        };
        return Ok(Answer::Whole {
            bytes: why.0,
            signature,
            unindexed: Some(why.1),
        });
    }
}

/// `<file>.sig` beside a file source; absent means unsigned (refused).
fn read_signature_file(path: &Path) -> Result<Vec<u8>, SourceError> {
    let mut sig_path = path.as_os_str().to_owned();
    sig_path.push(".sig");
    let sig_path = PathBuf::from(sig_path);
    file::read_secure(&sig_path, https::MAX_SIGNATURE_BYTES).map_err(|e| match e {
        file::FileError::NotFound(p) => SourceError::Signature {
            origin: path.display().to_string(),
            error: SignatureError::Missing(format!("unsigned: {} does not exist", p.display())),
        },
        e => SourceError::File(e),
    })
}

/// After the document parsed and validated: with signatures, refuses a
/// serial below the highest accepted and (when persisting) records a
/// higher one; then stores a freshly fetched document in the cache.
pub fn accept(
    fetched: &Fetched,
    serial: Option<u64>,
    settings: &FetchSettings,
    req: &Request<'_>,
) -> Result<Accepted, SourceError> {
    let mut accepted = Accepted::default();
    let origin = &fetched.doc.origin;
    if fetched.signer.is_some() {
        let serial = serial.ok_or_else(|| SourceError::NoSerial {
            origin: origin.clone(),
        })?;
        let check = rollback::check(&settings.state_dir, serial, req.persist, req.deadline)
            .map_err(|error| SourceError::Rollback {
                origin: origin.clone(),
                error,
            })?;
        if let SerialCheck::Raised { from } = check {
            accepted.raised_from = Some(from);
        }
    }
    // One user's part from the index lacks the certificate revocations of
    // the whole document: it is never cached.
    if let (Some(cache), None, true, Some(key), false) = (
        &settings.cache,
        fetched.cache_age,
        req.persist,
        cache_key(&req.scope),
        fetched.view.is_part(),
    ) {
        // Writing must not eat the time left for answering sshd.
        let lock_deadline = Instant::now() + Duration::from_millis(100);
        let entry = cache::Entry {
            origin,
            serial,
            document: &fetched.doc.bytes,
            signature: fetched.signature.as_deref(),
            // Only signed documents have the rollback guard behind them.
            guarded: fetched.signer.is_some(),
        };
        if let Err(e) = cache::store(cache, &key, &entry, lock_deadline) {
            accepted.cache_error = Some(e.to_string());
        }
    }
    Ok(accepted)
}
