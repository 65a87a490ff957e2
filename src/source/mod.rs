//! Where the policy document comes from: a local file (the default). Every
//! source hands back the exact bytes; parsing happens in `policy`.

pub mod file;

use std::fmt;
use std::path::PathBuf;

use crate::policy::MAX_DOCUMENT_BYTES;

/// Default policy location.
pub const DEFAULT_POLICY: &str = "/etc/sshjit/policy.json";

/// One configured source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
}

impl Source {
    /// Reads `--policy` or a config `source` entry: an `https://` URL or a path.
    pub fn parse(spec: &str) -> Result<Self, String> {
        if spec.is_empty() {
            return Err("empty policy source".into());
        }
        if let Some((scheme, _)) = spec.split_once("://") {
            return Err(format!(
                "unsupported policy source scheme {scheme:?}: give a file path"
            ));
        }
        Ok(Source::File(PathBuf::from(spec)))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A document as fetched, with where it came from.
#[derive(Debug)]
pub struct Document {
    pub bytes: Vec<u8>,
    pub origin: String,
}

/// Why no document could be had.
#[derive(Debug)]
pub enum SourceError {
    File(file::FileError),
}

impl SourceError {
    /// True when the source could not be reached at all, so the next one in
    /// a failover list may be tried. A source that answered with something
    /// unacceptable is never skipped.
    pub fn is_unavailable(&self) -> bool {
        match self {
            SourceError::File(e) => e.is_unavailable(),
        }
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceError::File(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SourceError {}

/// What a source gave: the whole document, or what a shortcut made of an
/// open local file without reading it (the policy index).
#[derive(Debug)]
pub enum Fetched<T> {
    Document(Document),
    Shortcut { origin: String, value: T },
}

/// Fetches from the first source that is available, in order.
pub fn fetch(sources: &[Source]) -> Result<Document, SourceError> {
    match fetch_with(sources, |_, _| None::<()>)? {
        Fetched::Document(d) => Ok(d),
        Fetched::Shortcut { .. } => unreachable!("no shortcut was offered"),
    }
}

/// Like `fetch`, but a local file that passed the permission checks is
/// first offered to `shortcut`; when it returns a value, the file is not read.
pub fn fetch_with<T>(
    sources: &[Source],
    mut shortcut: impl FnMut(&std::path::Path, &file::SecureFile) -> Option<T>,
) -> Result<Fetched<T>, SourceError> {
    let mut last = None;
    for source in sources {
        match fetch_one(source, &mut shortcut) {
            Ok(f) => return Ok(f),
            Err(e) if e.is_unavailable() => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        SourceError::File(file::FileError::NotFound(PathBuf::from(DEFAULT_POLICY)))
    }))
}

fn fetch_one<T>(
    source: &Source,
    shortcut: &mut impl FnMut(&std::path::Path, &file::SecureFile) -> Option<T>,
) -> Result<Fetched<T>, SourceError> {
    match source {
        Source::File(path) => {
            let f = file::open_secure(path, MAX_DOCUMENT_BYTES).map_err(SourceError::File)?;
            let origin = path.display().to_string();
            if let Some(value) = shortcut(path, &f) {
                return Ok(Fetched::Shortcut { origin, value });
            }
            Ok(Fetched::Document(Document {
                bytes: f.read_all().map_err(SourceError::File)?,
                origin,
            }))
        }
    }
}
