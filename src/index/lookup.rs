//! Reading one user's part from an index, by positioned reads of the
//! header, a few table entries and one block.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

use ssh_key::sha2::{Digest, Sha256};

use super::{
    ENTRY_LEN, FORMAT_VERSION, HEADER_LEN, IndexError, Kind, MAGIC, entry_check, fnv1a, racy_window,
};
use sshjit_policy::evaluate::certificate_names;
use sshjit_policy::time::Timestamp;
use sshjit_policy::{Decision, Denial, Mode, Policy, Request, evaluate};

/// What identifies one version of the policy file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
}

impl Identity {
    /// The same file (device and inode), whatever its size and times.
    pub fn same_file(&self, other: &Identity) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }

    pub fn of(meta: &Metadata) -> Self {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec() as u32),
            ctime: (meta.ctime(), meta.ctime_nsec() as u32),
        }
    }

    pub(super) fn write(&self, out: &mut Vec<u8>) {
        for v in [self.dev, self.ino, self.size] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for (s, n) in [self.mtime, self.ctime] {
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
        }
    }

    fn read(b: &[u8]) -> Self {
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        let i = |i: usize| i64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        let n = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        Identity {
            dev: u(0),
            ino: u(8),
            size: u(16),
            mtime: (i(24), n(32)),
            ctime: (i(36), n(44)),
        }
    }
}

/// Where index bytes come from: a file (positioned reads) or memory.
pub trait ReadAt {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn size(&self) -> u64;
}

impl ReadAt for (File, u64) {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(&self.0, buf, offset)
    }
    fn size(&self) -> u64 {
        self.1
    }
}

impl ReadAt for &[u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = self
            .get(start..start.saturating_add(buf.len()))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn size(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
}

/// An opened index whose header checked out against the policy file.
#[derive(Debug)]
pub struct Index<R> {
    source: R,
    nbuckets: u64,
    table_offset: u64,
    header_check: [u8; 16],
    pub policy_sha256: [u8; 32],
    identity: Identity,
    built: Timestamp,
}

/// The answer for one login request: the user's part (an empty document
/// when the user has no grant) and what relates it to the whole document.
#[derive(Debug)]
pub struct IndexLookup {
    pub document: Vec<u8>,
    pub info: PartInfo,
}

/// What relates a user's part to the whole document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// For each revocation of the part, its index in the whole document.
    pub revocation_indices: Vec<usize>,
    /// For a certificate: the first revocation naming its key ID, serial
    /// or fingerprint.
    pub certificate_revocation: Option<usize>,
    /// How the index was found to describe the policy file.
    pub matched: super::Match,
}

impl PartInfo {
    /// The decision for `req` on the user's `part`, as `evaluate` gives it
    /// on the whole document: a revoked certificate (found in the index's
    /// own table) denies; otherwise the part decides, with revocation
    /// numbers those of the whole document.
    pub fn evaluate<'p, 'a>(
        &self,
        part: &'p Policy<'a>,
        req: &Request<'_>,
        now: Timestamp,
    ) -> Decision<'p, 'a> {
        if let Some(revocation) = self.certificate_revocation {
            return Decision::Deny(Denial::CertificateRevoked { revocation });
        }
        match evaluate(part, req, now) {
            Decision::Deny(Denial::CertificateRevoked { revocation }) => {
                Decision::Deny(Denial::CertificateRevoked {
                    revocation: self.whole_revocation(revocation),
                })
            }
            other => other,
        }
    }

    /// The whole document's number of the part's revocation `i`.
    pub fn whole_revocation(&self, i: usize) -> usize {
        self.revocation_indices.get(i).copied().unwrap_or(i)
    }
}

fn damaged(why: impl Into<String>) -> IndexError {
    IndexError::Damaged(why.into())
}

impl<R: ReadAt> Index<R> {
    /// Checks the header: format, checksum, and that it describes exactly
    /// the policy file with `identity`, built well after its last change.
    pub fn open(source: R, identity: &Identity) -> Result<Self, IndexError> {
        let index = Index::open_unverified(source)?;
        index.describes(identity)?;
        Ok(index)
    }

    /// Whether the index describes exactly the policy file with
    /// `identity`, built well after its last change (otherwise `Stale` or
    /// `Racy`).
    pub fn describes(&self, identity: &Identity) -> Result<(), IndexError> {
        if self.identity != *identity {
            return Err(IndexError::Stale);
        }
        let changed = Timestamp::from_unix(identity.ctime.0, identity.ctime.1)
            .max(Timestamp::from_unix(identity.mtime.0, identity.mtime.1));
        if self.built < changed.saturating_add(racy_window(identity)) {
            return Err(IndexError::Racy);
        }
        Ok(())
    }

    /// The identity of the policy file the index was built for.
    pub fn described(&self) -> Identity {
        self.identity
    }

    /// The SHA-256 of the signature file the index was built from, if it
    /// was built from a verified signature.
    pub fn signature(&self) -> Result<Option<[u8; 32]>, IndexError> {
        match self.find(Kind::Signature, b"")? {
            None => Ok(None),
            Some(p) => p
                .try_into()
                .map(Some)
                .map_err(|_| damaged("signature entry size")),
        }
    }

    /// Checks the header (format, checksum, bounds) but not which policy
    /// file it describes: see [`Index::describes`] and `policy_sha256`.
    pub fn open_unverified(source: R) -> Result<Self, IndexError> {
        let mut h = [0u8; HEADER_LEN];
        source
            .read_exact_at(&mut h, 0)
            .map_err(|e| damaged(format!("header: {e}")))?;
        if &h[0..8] != MAGIC {
            return Err(damaged("not an sshjit index"));
        }
        let check = Sha256::digest(&h[..HEADER_LEN - 16]);
        if h[HEADER_LEN - 16..] != check[..16] {
            return Err(damaged("header checksum"));
        }
        if u32::from_le_bytes(h[8..12].try_into().unwrap()) != FORMAT_VERSION {
            return Err(damaged("another index format version"));
        }
        // 16..64: identity; 64..76: build time; 76..108: policy hash;
        // 108..112: buckets; the table follows the header.
        let identity = Identity::read(&h[16..64]);
        let built = Timestamp::from_unix(
            i64::from_le_bytes(h[64..72].try_into().unwrap()),
            u32::from_le_bytes(h[72..76].try_into().unwrap()),
        );
        let policy_sha256: [u8; 32] = h[76..108].try_into().unwrap();
        let nbuckets = u64::from(u32::from_le_bytes(h[108..112].try_into().unwrap()));
        let table_offset = HEADER_LEN as u64;
        if !nbuckets.is_power_of_two()
            || table_offset
                .checked_add(nbuckets * ENTRY_LEN as u64)
                .is_none_or(|end| end > source.size())
        {
            return Err(damaged("table out of bounds"));
        }
        Ok(Index {
            source,
            nbuckets,
            table_offset,
            header_check: h[HEADER_LEN - 16..].try_into().unwrap(),
            policy_sha256,
            identity,
            built,
        })
    }

    /// Finds the block stored under (kind, key) and returns its payload,
    /// after checking its hash.
    fn find(&self, kind: Kind, key: &[u8]) -> Result<Option<Vec<u8>>, IndexError> {
        let hash = fnv1a(kind, key);
        let mut slot = hash & (self.nbuckets - 1);
        for _ in 0..self.nbuckets {
            let mut e = [0u8; ENTRY_LEN];
            self.source
                .read_exact_at(&mut e, self.table_offset + slot * ENTRY_LEN as u64)
                .map_err(|e| damaged(format!("table: {e}")))?;
            if entry_check(&self.header_check, slot, &e) != e[56..64] {
                return Err(damaged("table entry check"));
            }
            let entry_kind = Kind::from_u32(u32::from_le_bytes(e[8..12].try_into().unwrap()))
                .ok_or_else(|| damaged("unknown entry kind"))?;
            if entry_kind == Kind::Empty {
                return Ok(None);
            }
            if entry_kind == kind && u64::from_le_bytes(e[0..8].try_into().unwrap()) == hash {
                let len = u32::from_le_bytes(e[12..16].try_into().unwrap()) as usize;
                let offset = u64::from_le_bytes(e[16..24].try_into().unwrap());
                if offset
                    .checked_add(len as u64)
                    .is_none_or(|end| end > self.source.size())
                {
                    return Err(damaged("block out of bounds"));
                }
                let mut block = vec![0u8; len];
                self.source
                    .read_exact_at(&mut block, offset)
                    .map_err(|e| damaged(format!("block: {e}")))?;
                if Sha256::digest(&block)[..] != e[24..56] {
                    return Err(damaged("block checksum"));
                }
                let key_len = usize::from(u16::from_le_bytes(
                    block
                        .get(0..2)
                        .ok_or_else(|| damaged("short block"))?
                        .try_into()
                        .unwrap(),
                ));
                let stored = block
                    .get(2..2 + key_len)
                    .ok_or_else(|| damaged("short block"))?;
                if stored == key {
                    return Ok(Some(block[2 + key_len..].to_vec()));
                }
            }
            slot = (slot + 1) & (self.nbuckets - 1);
        }
        Ok(None)
    }

    fn revocation_index(&self, kind: Kind, key: &[u8]) -> Result<Option<usize>, IndexError> {
        match self.find(kind, key)? {
            None => Ok(None),
            Some(p) if p.len() == 4 => {
                Ok(Some(u32::from_le_bytes(p[..].try_into().unwrap()) as usize))
            }
            Some(_) => Err(damaged("revocation block size")),
        }
    }

    /// The user's part, plus in principals mode the first revocation of the
    /// presented certificate.
    pub fn lookup(
        &self,
        user: &str,
        certificate: Option<super::Certificate<'_>>,
    ) -> Result<IndexLookup, IndexError> {
        let (document, revocation_indices) = match self.find(Kind::User, user.as_bytes())? {
            None => (br#"{"version":1}"#.to_vec(), Vec::new()),
            Some(p) => {
                let n = p
                    .get(0..4)
                    .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
                    .ok_or_else(|| damaged("short user block"))?;
                let table_end = n
                    .checked_mul(4)
                    .and_then(|t| t.checked_add(4))
                    .filter(|&e| e <= p.len())
                    .ok_or_else(|| damaged("short user block"))?;
                let revocation_indices = p[4..table_end]
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as usize)
                    .collect();
                (p[table_end..].to_vec(), revocation_indices)
            }
        };
        // The certificate's names, as the core gives them; each has an
        // entry of its own holding the first revocation that gives it.
        let mut certificate_revocation = None;
        if let Some((key_id, serial, fingerprint)) = certificate {
            let mode = Mode::Principals {
                key_id,
                serial,
                fingerprint,
            };
            for name in certificate_names(&mode) {
                let (Some(kind), key) = super::spelling(&name) else {
                    return Err(damaged(format!("no entry kind for {name:?}")));
                };
                if let Some(i) = self.revocation_index(kind, key.as_bytes())? {
                    certificate_revocation =
                        Some(certificate_revocation.map_or(i, |c: usize| c.min(i)));
                }
            }
        }
        Ok(IndexLookup {
            document,
            info: PartInfo {
                revocation_indices,
                certificate_revocation,
                matched: super::Match::Identity,
            },
        })
    }
}
