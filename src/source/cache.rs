//! The stale-if-error cache (off unless `cache_dir` and `max_stale` are
//! set): the last good document per (mode, user), kept 0600 in
//! `cache_dir` with its signature and origin. It is written only after
//! the document passed every check, and read only when every source was
//! unavailable; the caller re-verifies the signature and the serial, and
//! evaluates it at the current time like any other document.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::https::{MAX_RESPONSE_BYTES, MAX_SIGNATURE_BYTES};
use super::private::{self, PrivateDir, PrivateError};

/// Room for the envelope around the document (escaping can double it).
const MAX_CACHE_BYTES: usize = 2 * MAX_RESPONSE_BYTES + 4 * MAX_SIGNATURE_BYTES;
const FORMAT: u32 = 1;

/// Where and how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheSettings {
    pub dir: PathBuf,
    pub max_stale: Duration,
}

/// What the cache entry is for.
#[derive(Clone, Copy, Debug)]
pub struct Key<'a> {
    pub mode: &'a str,
    pub user: &'a str,
    pub host: &'a str,
}

impl Key<'_> {
    /// `keys.deploy.json`: users and modes are validated names without `/`.
    fn file_name(&self) -> String {
        format!("{}.{}.json", self.mode, self.user)
    }
}

#[derive(Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Envelope {
    format: u32,
    origin: String,
    mode: String,
    user: String,
    host: String,
    serial: Option<u64>,
    signature: Option<String>,
    document: String,
}

/// A document served from the cache.
#[derive(Debug)]
pub struct Cached {
    pub origin: String,
    pub bytes: Vec<u8>,
    pub signature: Option<Vec<u8>>,
    pub age: Duration,
}

/// Why the cache could not stand in.
#[derive(Debug)]
pub enum CacheError {
    Dir(PrivateError),
    Empty,
    TooOld { age: Duration, max: Duration },
    Invalid(String),
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::Dir(e) => write!(f, "cache: {e}"),
            CacheError::Empty => f.write_str("cache: no entry"),
            CacheError::TooOld { age, max } => write!(
                f,
                "cache: entry is {}s old, more than max_stale ({}s)",
                age.as_secs(),
                max.as_secs()
            ),
            CacheError::Invalid(m) => write!(f, "cache: {m}"),
        }
    }
}

impl std::error::Error for CacheError {}

/// Reads the entry for `key` if it is younger than `max_stale`.
pub fn load(settings: &CacheSettings, key: &Key<'_>) -> Result<Cached, CacheError> {
    let dir = PrivateDir::open(&settings.dir, "cache_dir").map_err(CacheError::Dir)?;
    let name = key.file_name();
    let (bytes, meta) = dir
        .read(&name, MAX_CACHE_BYTES)
        .map_err(CacheError::Dir)?
        .ok_or(CacheError::Empty)?;
    let age = private::age(&meta).ok_or_else(|| {
        CacheError::Invalid(format!(
            "{name} was written in the future (the clock moved back?): not used"
        ))
    })?;
    if age > settings.max_stale {
        return Err(CacheError::TooOld {
            age,
            max: settings.max_stale,
        });
    }
    let env: Envelope =
        serde_json::from_slice(&bytes).map_err(|e| CacheError::Invalid(format!("{name}: {e}")))?;
    if env.format != FORMAT || env.mode != key.mode || env.user != key.user || env.host != key.host
    {
        return Err(CacheError::Invalid(format!(
            "{name} was written for another request or format"
        )));
    }
    Ok(Cached {
        origin: env.origin,
        bytes: env.document.into_bytes(),
        signature: env.signature.map(String::into_bytes),
        age,
    })
}

/// A document to record, and what stands behind it.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    pub origin: &'a str,
    pub serial: Option<u64>,
    pub document: &'a [u8],
    pub signature: Option<&'a [u8]>,
    /// Signed, so the rollback guard refused any lower serial: a higher one
    /// in the cache can only be a newer document another helper stored
    /// meanwhile. Without it serials prove nothing (an unsigned server may
    /// be restored, replaced or simply renumber), and the latest answer
    /// accepted is the one kept.
    pub guarded: bool,
}

/// Records a document that passed every check. An identical entry is only
/// marked as confirmed now; for a guarded (signed) document, an entry with
/// a higher serial is kept (another helper stored a newer document
/// meanwhile); otherwise the latest accepted answer replaces the entry,
/// whatever the serials say.
pub fn store(
    settings: &CacheSettings,
    key: &Key<'_>,
    entry: &Entry<'_>,
    deadline: Instant,
) -> Result<(), CacheError> {
    let invalid = |m: &str| CacheError::Invalid(m.to_owned());
    let serial = entry.serial;
    let env = Envelope {
        format: FORMAT,
        origin: entry.origin.to_owned(),
        mode: key.mode.to_owned(),
        user: key.user.to_owned(),
        host: key.host.to_owned(),
        serial,
        signature: entry
            .signature
            .map(|s| String::from_utf8(s.to_vec()))
            .transpose()
            .map_err(|_| invalid("signature is not text"))?,
        document: String::from_utf8(entry.document.to_vec())
            .map_err(|_| invalid("document is not UTF-8"))?,
    };
    let bytes = serde_json::to_vec(&env).map_err(|e| CacheError::Invalid(e.to_string()))?;
    let dir = PrivateDir::open(&settings.dir, "cache_dir").map_err(CacheError::Dir)?;
    let name = key.file_name();
    let _lock = dir
        .lock(&format!("{name}.lock"), deadline)
        .map_err(CacheError::Dir)?;
    match dir.read(&name, MAX_CACHE_BYTES).map_err(CacheError::Dir)? {
        Some((old, _)) if old == bytes => return dir.touch(&name).map_err(CacheError::Dir),
        Some((old, _)) if entry.guarded => {
            let newer = serde_json::from_slice::<Envelope>(&old)
                .ok()
                .and_then(|o| o.serial)
                .zip(serial)
                .is_some_and(|(kept, new)| kept > new);
            if newer {
                return Ok(());
            }
        }
        Some(_) | None => {}
    }
    dir.write(&name, &bytes).map_err(CacheError::Dir)
}
