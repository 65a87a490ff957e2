//! The policy index: a binary file beside the policy (`policy.json.idx`)
//! that lets the login path read one user's part of a large policy instead
//! of parsing the whole document on every call.
//!
//! It is derived only from a document that validated, by root (the admin
//! commands and `sshjit index` write it), and trusted only while it still
//! describes the policy file exactly: the header records the file's device,
//! inode, size, mtime and ctime, and the helper compares them with an fstat
//! of the open policy. Any edit changes them (ctime cannot be set from user
//! space; an admin's rename gives a new inode). An index built less than
//! [`racy_window`] after the policy's last change is not trusted, because a
//! second edit within one timestamp tick could leave every field equal
//! (the "racy git" problem); the builder waits out that window before it
//! reads the policy, so its own index is never racy. Whenever the index is missing, stale, racy or
//! damaged, the helper parses the whole document as before.
//!
//! Each user's part is a small policy document of its own — that user's
//! grants and every revocation that can name them — which the helper still
//! parses and validates and evaluates with the same pure `evaluate`; its
//! SHA-256 is in the table entry that points to it. Revocations of
//! certificates (key ID, serial, fingerprint) have entries of their own.
//!
//! Layout (little-endian):
//!
//! ```text
//! header   128 bytes: magic "SSHJITX1", version, flags, file identity,
//!                     build time, SHA-256 of the policy, table size, and
//!                     the first 16 bytes of the SHA-256 of the above
//! table    nbuckets x 64 bytes, open addressing on FNV-1a of the key:
//!                     hash u64, kind u32, len u32, offset u64, SHA-256 of
//!                     the block, and a check of the entry itself (empty
//!                     ones too, so a damaged entry can never end a probe
//!                     early and hide a revocation)
//! blocks   [u16 key length][key][payload]
//!            user block payload: [u32 n][u32 original revocation index] x n,
//!                                then the sub-document (JSON)
//!            certificate revocation payload: [u32 original revocation index]
//! ```

mod build;
mod lookup;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use build::{
    Written, build, build_parsed, build_signed, index_path, policy_sha256, prebuild, reseal,
    settle, signature_path, write_for,
};
pub use lookup::{Identity, Index, IndexLookup, PartInfo, ReadAt};

use std::borrow::Cow;

use crate::fs::secure::{FileError, SecureFile, open_secure};
use ssh_key::sha2::Digest;
use sshjit_policy::evaluate::Name;
use sshjit_policy::time::Timestamp;
use sshjit_policy::{Decision, Fingerprint, KeyId, Policy, Request, evaluate};

/// File name of the index of `policy.json`: `policy.json.idx`.
pub const SUFFIX: &str = ".idx";
/// Largest index accepted.
pub const MAX_INDEX_BYTES: u64 = 1 << 30;
/// How long after the policy's last change an index must have been built
/// to be trusted: longer than one tick of the file system's timestamps.
/// Local Linux file systems keep nanoseconds from a clock that ticks at
/// least every 10 ms; a file whose times have no nanoseconds at all is
/// taken to be on one that keeps whole seconds (FAT, some network file
/// systems).
pub fn racy_window(identity: &Identity) -> Duration {
    if identity.ctime.1 == 0 && identity.mtime.1 == 0 {
        Duration::from_millis(2500)
    } else {
        Duration::from_millis(25)
    }
}

const MAGIC: &[u8; 8] = b"SSHJITX1";
const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 128;
const ENTRY_LEN: usize = 64;

/// Kinds of table entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
enum Kind {
    Empty = 0,
    User = 1,
    KeyId = 2,
    Serial = 3,
    Fingerprint = 4,
    /// The SHA-256 of the signature file verified when the index was built
    /// (key: empty).
    Signature = 5,
}

impl Kind {
    fn from_u32(v: u32) -> Option<Kind> {
        Some(match v {
            0 => Kind::Empty,
            1 => Kind::User,
            2 => Kind::KeyId,
            3 => Kind::Serial,
            4 => Kind::Fingerprint,
            5 => Kind::Signature,
            _ => return None,
        })
    }
}

/// How a name that revocations can give is spelled in the index: the
/// table entry kind it has when it can name a certificate (those are
/// looked up apart from the user's part), and its text, which is also the
/// entry's key.
fn spelling<'a>(name: &Name<'a>) -> (Option<Kind>, Cow<'a, str>) {
    match *name {
        Name::Grant(s) | Name::User(s) | Name::Principal(s) => (None, Cow::Borrowed(s)),
        Name::KeyId(k) => (Some(Kind::KeyId), Cow::Borrowed(k)),
        Name::Serial(s) => (Some(Kind::Serial), Cow::Owned(s.to_string())),
        Name::Fingerprint(fp) => (Some(Kind::Fingerprint), Cow::Owned(fp.to_string())),
    }
}

/// The check of table entry `slot`: 8 bytes of SHA-256 over the header's
/// own check, the slot number and the entry's other 56 bytes.
fn entry_check(header_check: &[u8], slot: u64, entry: &[u8]) -> [u8; 8] {
    use ssh_key::sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(header_check);
    h.update(slot.to_le_bytes());
    h.update(&entry[..56]);
    h.finalize()[..8].try_into().unwrap()
}

/// FNV-1a, 64 bits: stable across builds and platforms (unlike std's
/// hasher). Collisions only cost a probe: every entry's key is compared.
fn fnv1a(kind: Kind, key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in (kind as u32).to_le_bytes().iter().chain(key) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Why an index was not used.
#[derive(Debug)]
pub enum IndexError {
    Missing,
    /// It describes another version of the policy file.
    Stale,
    /// Built too soon after the policy's last change to be sure.
    Racy,
    /// Unreadable, refused by the permission checks, or corrupt.
    Damaged(String),
    /// Signatures are required and the index records none, or another
    /// signature than the one beside the policy now.
    Unsigned,
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexError::Missing => f.write_str("missing"),
            IndexError::Stale => f.write_str("stale"),
            IndexError::Racy => f.write_str("racy"),
            IndexError::Damaged(why) => write!(f, "damaged: {why}"),
            IndexError::Unsigned => f.write_str("unsigned"),
        }
    }
}

impl std::error::Error for IndexError {}

impl IndexError {
    /// The short word for the decision line.
    pub fn word(&self) -> &'static str {
        match self {
            IndexError::Missing => "missing",
            IndexError::Stale => "stale",
            IndexError::Racy => "racy",
            IndexError::Damaged(_) => "damaged",
            IndexError::Unsigned => "unsigned",
        }
    }
}

/// How much of the policy a document is: the whole of it, or one user's
/// part read through the index.
#[derive(Debug)]
pub enum View {
    /// The whole document; when the index was asked for, why it was not
    /// used (`None`: not asked for, a signed document, not a file source,
    /// or the cache).
    Whole(Option<IndexError>),
    /// One user's part and what relates it to the whole document.
    Part(PartInfo),
}

/// How an index was found to describe the policy file read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// By the file's identity (device, inode, size, times), built after
    /// its last change had settled.
    Identity,
    /// By the SHA-256 of the very bytes read, the document the index was
    /// built from (the identity had changed: a file replaced with the same
    /// contents, or an edit's new index before its rename).
    Content,
}

impl View {
    /// What became of the index, for the decision line: used, missing,
    /// stale, racy, damaged, or off.
    pub fn word(&self) -> &'static str {
        match self {
            View::Part(PartInfo {
                matched: Match::Content,
                ..
            }) => "content",
            View::Part(_) => "used",
            View::Whole(None) => "off",
            View::Whole(Some(e)) => e.word(),
        }
    }

    pub fn is_part(&self) -> bool {
        matches!(self, View::Part(_))
    }

    /// The decision for `req` on `policy`, the document this view is of:
    /// through the index, the user's part decides as the whole would.
    pub fn evaluate<'p, 'a>(
        &self,
        policy: &'p Policy<'a>,
        req: &Request<'_>,
        now: Timestamp,
    ) -> Decision<'p, 'a> {
        match self {
            View::Whole(_) => evaluate(policy, req, now),
            View::Part(info) => info.evaluate(policy, req, now),
        }
    }
}

/// Asks for one user's part of a local policy through its index.
#[derive(Clone, Copy, Debug)]
pub struct PartRequest<'a> {
    pub user: &'a str,
    /// In principals mode: the certificate's key ID, serial and fingerprint.
    pub certificate: Option<Certificate<'a>>,
}

/// The presented certificate's key ID, serial and fingerprint.
pub type Certificate<'r> = (Option<&'r KeyId<'r>>, Option<u64>, Option<Fingerprint>);

/// What the index said about the policy file the login path opened.
#[derive(Debug)]
pub enum Probe {
    /// One user's part.
    Part(IndexLookup),
    /// The index could not be used; the policy, read or not yet.
    Unused { why: IndexError, policy: Unused },
}

/// A policy file whose bytes are not the document its index describes.
#[derive(Debug)]
pub struct Mismatch {
    pub document: Vec<u8>,
    /// The policy file's identity (of the open handle) and real path.
    pub identity: Identity,
    pub canonical: PathBuf,
    /// The identity the index records.
    pub described: Identity,
}

impl Mismatch {
    /// Whether the index describes the file an edit is about to rename
    /// over the policy (`policy.json.tmp`, its next version): the edit puts
    /// the new index in place just before that rename.
    pub fn next_version_pending(&self) -> bool {
        std::fs::symlink_metadata(pending_policy(&self.canonical))
            .is_ok_and(|m| Identity::of(&m).same_file(&self.described))
    }
}

/// Where an edit writes the next version of the policy at `canonical`
/// before renaming it into place (`policy.json.tmp`).
pub fn pending_policy(canonical: &Path) -> PathBuf {
    let mut s = canonical.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// The policy file an unused index leaves to the caller.
#[derive(Debug)]
pub enum Unused {
    /// Not read yet.
    File(SecureFile),
    /// Read (to compare its SHA-256 with the index's), which did not
    /// match.
    Read(Mismatch),
    /// Reading it failed.
    Failed(FileError),
}

/// Looks `part` up in the index beside the policy file `policy` (open,
/// checked): by the open handle's identity, or, when that changed, by the
/// SHA-256 of its bytes. With `signature` (signatures required: the bytes
/// of the signature file beside the policy), the index must have been
/// built from a verified signature with exactly these bytes. The index
/// file passes the same permission checks as the policy.
pub fn probe(policy: SecureFile, signature: Option<&[u8]>, part: PartRequest<'_>) -> Probe {
    let identity = Identity::of(&policy.meta);
    let policy_canonical = policy.canonical.clone();
    let path = index_path(&policy.canonical);
    let file = match open_secure(&path, MAX_INDEX_BYTES as usize) {
        Ok(f) => f,
        Err(FileError::NotFound(_)) => return Probe::unused(IndexError::Missing, policy),
        Err(e) => return Probe::unused(IndexError::Damaged(e.to_string()), policy),
    };
    let len = file.meta.len();
    let index = match Index::open_unverified((file.file, len)) {
        Ok(i) => i,
        Err(e) => return Probe::unused(e, policy),
    };
    if let Some(sig) = signature {
        match index.signature() {
            Ok(Some(recorded)) if recorded[..] == ssh_key::sha2::Sha256::digest(sig)[..] => {}
            Ok(_) => return Probe::unused(IndexError::Unsigned, policy),
            Err(e) => return Probe::unused(e, policy),
        }
    }
    let (matched, rest) = match index.describes(&identity) {
        Ok(()) => (Match::Identity, Unused::File(policy)),
        // The identity says nothing: the bytes may still be the very
        // document the index describes.
        Err(why @ (IndexError::Stale | IndexError::Racy)) => {
            let document = match policy.read_all() {
                Ok(d) => d,
                Err(e) => {
                    return Probe::Unused {
                        why,
                        policy: Unused::Failed(e),
                    };
                }
            };
            let mismatch = Mismatch {
                document,
                identity,
                canonical: policy_canonical,
                described: index.described(),
            };
            if ssh_key::sha2::Sha256::digest(&mismatch.document)[..] != index.policy_sha256 {
                return Probe::Unused {
                    why,
                    policy: Unused::Read(mismatch),
                };
            }
            (Match::Content, Unused::Read(mismatch))
        }
        Err(e) => return Probe::unused(e, policy),
    };
    match index.lookup(part.user, part.certificate) {
        Ok(mut found) => {
            found.info.matched = matched;
            Probe::Part(found)
        }
        Err(why) => Probe::Unused { why, policy: rest },
    }
}

impl Probe {
    fn unused(why: IndexError, policy: SecureFile) -> Probe {
        Probe::Unused {
            why,
            policy: Unused::File(policy),
        }
    }
}

#[cfg(test)]
mod tests;
