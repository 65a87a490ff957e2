//! Building the index from a validated document, and writing it atomically
//! beside the policy file.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::mem::Discriminant;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ssh_key::sha2::{Digest, Sha256};

use super::lookup::Identity;
use super::{
    ENTRY_LEN, FORMAT_VERSION, HEADER_LEN, Kind, MAGIC, SUFFIX, entry_check, fnv1a, racy_window,
};
use crate::fs::atomic;
use crate::fs::secure::open_secure;
use sshjit_policy::MAX_DOCUMENT_BYTES;
use sshjit_policy::evaluate::{Name, grant_names, revoked_name};
use sshjit_policy::openssh::allowed_signers::{AllowedSigners, MAX_SIGNATURE_BYTES};
use sshjit_policy::time::Timestamp;
use sshjit_policy::{Grant, Policy, Revocation};

/// One block to place: its table key and its bytes.
struct Block {
    kind: Kind,
    key: Vec<u8>,
    payload: Vec<u8>,
}

/// Builds the index bytes of `document` (which must be the exact bytes the
/// policy file holds, with `identity` its fstat), as of `built_at`.
pub fn build(document: &[u8], identity: &Identity, built_at: Timestamp) -> Result<Vec<u8>, String> {
    build_signed(document, identity, built_at, None)
}

/// As [`build`], for a document whose `signature` (the `.sig` file's
/// bytes) the caller has verified: the index then records the signature's
/// SHA-256, so that the login path can trust the index for a signed policy
/// as long as the signature file is byte for byte the one verified (and
/// its signer is still allowed, which it checks itself).
pub fn build_signed(
    document: &[u8],
    identity: &Identity,
    built_at: Timestamp,
    signature: Option<&[u8]>,
) -> Result<Vec<u8>, String> {
    let policy =
        Policy::parse(document).map_err(|e| format!("the policy does not validate: {e}"))?;
    build_parsed(&policy, document, identity, built_at, signature)
}

/// As [`build_signed`], for a caller that has `document` parsed already
/// (`policy` must be what it parses to: an edit that just wrote it).
pub fn build_parsed(
    policy: &Policy<'_>,
    document: &[u8],
    identity: &Identity,
    built_at: Timestamp,
    signature: Option<&[u8]>,
) -> Result<Vec<u8>, String> {
    let mut blocks = blocks(policy)?;
    if let Some(sig) = signature {
        blocks.push(Block {
            kind: Kind::Signature,
            key: Vec::new(),
            payload: Sha256::digest(sig).to_vec(),
        });
    }

    let nbuckets = (blocks.len() * 2).next_power_of_two().max(16);
    let table_offset = HEADER_LEN;
    let mut table = vec![0u8; nbuckets * ENTRY_LEN];
    let mut data = Vec::new();
    let data_offset = table_offset + table.len();
    for b in &blocks {
        let mut block = Vec::with_capacity(2 + b.key.len() + b.payload.len());
        let key_len = u16::try_from(b.key.len()).map_err(|_| "index key too long".to_owned())?;
        block.extend_from_slice(&key_len.to_le_bytes());
        block.extend_from_slice(&b.key);
        block.extend_from_slice(&b.payload);
        let offset = (data_offset + data.len()) as u64;
        let len = u32::try_from(block.len()).map_err(|_| "index block too large".to_owned())?;
        let digest: [u8; 32] = Sha256::digest(&block).into();
        data.extend_from_slice(&block);

        let hash = fnv1a(b.kind, &b.key);
        let mut slot = (hash as usize) & (nbuckets - 1);
        loop {
            let e = &mut table[slot * ENTRY_LEN..(slot + 1) * ENTRY_LEN];
            if e[8..12] == [0, 0, 0, 0] {
                e[0..8].copy_from_slice(&hash.to_le_bytes());
                e[8..12].copy_from_slice(&(b.kind as u32).to_le_bytes());
                e[12..16].copy_from_slice(&len.to_le_bytes());
                e[16..24].copy_from_slice(&offset.to_le_bytes());
                e[24..56].copy_from_slice(&digest);
                break;
            }
            slot = (slot + 1) & (nbuckets - 1);
        }
    }

    let mut out = Vec::with_capacity(data_offset + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&u32::from(policy.frozen).to_le_bytes());
    identity.write(&mut out);
    out.extend_from_slice(&built_at.unix_seconds().to_le_bytes());
    out.extend_from_slice(&built_at.subsec_nanos().to_le_bytes());
    out.extend_from_slice(&Sha256::digest(document));
    out.extend_from_slice(&(nbuckets as u32).to_le_bytes());
    debug_assert_eq!(out.len(), HEADER_LEN - 16);
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&table);
    out.extend_from_slice(&data);
    seal(&mut out, nbuckets);
    Ok(out)
}

/// Writes the header's check and every table entry's (which depends on it).
fn seal(index: &mut [u8], nbuckets: usize) {
    let check = Sha256::digest(&index[..HEADER_LEN - 16]);
    index[HEADER_LEN - 16..HEADER_LEN].copy_from_slice(&check[..16]);
    let table = &mut index[HEADER_LEN..HEADER_LEN + nbuckets * ENTRY_LEN];
    for (slot, e) in table.chunks_exact_mut(ENTRY_LEN).enumerate() {
        let c = entry_check(&check[..16], slot as u64, e);
        e[56..64].copy_from_slice(&c);
    }
}

/// The same index for the same document in another file (`identity`), as
/// of `built_at`: an edit builds the index of its new document before the
/// rename puts it in place (so that no login finds the new policy without
/// its index), then gives it the identity the rename produced.
pub fn reseal(index: &mut [u8], identity: &Identity, built_at: Timestamp) -> Result<(), String> {
    let nbuckets = index
        .get(108..112)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
        .filter(|n| n.is_power_of_two() && HEADER_LEN + n * ENTRY_LEN <= index.len())
        .ok_or("not an index")?;
    let mut header = Vec::with_capacity(60);
    identity.write(&mut header);
    header.extend_from_slice(&built_at.unix_seconds().to_le_bytes());
    header.extend_from_slice(&built_at.subsec_nanos().to_le_bytes());
    index[16..76].copy_from_slice(&header);
    seal(index, nbuckets);
    Ok(())
}

/// The SHA-256 of the document an index was built from.
pub fn policy_sha256(index: &[u8]) -> Option<&[u8]> {
    index.get(76..108)
}

/// The user blocks and the certificate-revocation blocks of a policy.
/// Which revocations can name a grant or a certificate is the core's rule
/// (`revoked_name`, `grant_names`); here revocations are only filed by the
/// name they give, so each user's part is found without a scan.
fn blocks(policy: &Policy<'_>) -> Result<Vec<Block>, String> {
    // Grants by user, in document order.
    let mut by_user: BTreeMap<&str, Vec<&Grant<'_>>> = BTreeMap::new();
    for g in &policy.grants {
        by_user.entry(g.user.as_str()).or_default().push(g);
    }
    // Revocations by the name they give, keeping document order; those
    // that can name a certificate also get a table entry of their own.
    let mut by_name: HashMap<NameKey<'_>, Vec<usize>> = HashMap::new();
    let mut certificate: BTreeMap<(u32, String), usize> = BTreeMap::new();
    for (i, r) in policy.revocations.iter().enumerate() {
        let name = revoked_name(&r.target);
        let key = name_key(&name);
        if let (Some(kind), true) = (key.1, name.can_name_certificate()) {
            certificate
                .entry((kind as u32, key.2.clone().into_owned()))
                .or_insert(i);
        }
        by_name.entry(key).or_default().push(i);
    }

    let mut out = Vec::with_capacity(by_user.len() + certificate.len());
    for (user, grants) in by_user {
        let mut revs: Vec<usize> = Vec::new();
        for g in &grants {
            for name in grant_names(g) {
                revs.extend(by_name.get(&name_key(&name)).into_iter().flatten());
            }
        }
        revs.sort_unstable();
        revs.dedup();
        let sub = Policy {
            version: 1,
            serial: policy.serial,
            frozen: policy.frozen,
            grants: grants.into_iter().cloned().collect(),
            revocations: revs
                .iter()
                .map(|&i| policy.revocations[i].clone())
                .collect::<Vec<Revocation<'_>>>(),
        };
        let json = serde_json::to_vec(&sub).map_err(|e| e.to_string())?;
        let mut payload = Vec::with_capacity(4 + 4 * revs.len() + json.len());
        payload.extend_from_slice(&(revs.len() as u32).to_le_bytes());
        for &i in &revs {
            payload.extend_from_slice(&(i as u32).to_le_bytes());
        }
        payload.extend_from_slice(&json);
        out.push(Block {
            kind: Kind::User,
            key: user.as_bytes().to_vec(),
            payload,
        });
    }
    for ((kind, key), i) in certificate {
        let kind = super::Kind::from_u32(kind).ok_or("bad kind")?;
        out.push(Block {
            kind,
            key: key.into_bytes(),
            payload: (i as u32).to_le_bytes().to_vec(),
        });
    }
    Ok(out)
}

/// A name as a map key: which kind of name, its table kind, its text.
type NameKey<'a> = (Discriminant<Name<'a>>, Option<Kind>, Cow<'a, str>);

fn name_key<'a>(name: &Name<'a>) -> NameKey<'a> {
    let (kind, text) = super::spelling(name);
    (std::mem::discriminant(name), kind, text)
}

/// The index path of a policy path.
pub fn index_path(policy: &Path) -> PathBuf {
    let mut s = policy.as_os_str().to_owned();
    s.push(SUFFIX);
    PathBuf::from(s)
}

/// What `write_for` wrote.
#[derive(Debug)]
pub struct Written {
    pub path: PathBuf,
    pub bytes: usize,
    pub document_bytes: usize,
    /// The index records a verified signature.
    pub signed: bool,
}

/// The signature file of a policy file: `policy.json.sig`.
pub fn signature_path(policy: &Path) -> PathBuf {
    let mut s = policy.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

/// Reads the policy file at `policy_path` (with the usual permission
/// checks), builds its index and writes it beside it. The caller holds the
/// policy's lock (the admin commands' `policy.json.lock`), so no other
/// writer uses the temp file.
///
/// The file is read only once its last change is at least [`racy_window`]
/// old (waiting if need be), and its identity is taken before and checked
/// after the read: any later edit then shows in ctime, so the index can
/// never be mistaken for a description of a newer version.
///
/// With `signers` (the host requires signed policies), `policy.json.sig`
/// must verify over exactly the bytes read, and the index records that
/// signature; otherwise nothing is written (the login path then verifies
/// the whole document, and denies it).
pub fn write_for(policy_path: &Path, signers: Option<&AllowedSigners>) -> io::Result<Written> {
    let (document, identity, read_at) = read_settled(policy_path)?;
    let signature = match signers {
        None => None,
        Some(signers) => {
            let sig_path = signature_path(policy_path);
            let sig = open_secure(&sig_path, MAX_SIGNATURE_BYTES)
                .and_then(|f| f.read_all())
                .map_err(io::Error::other)?;
            signers
                .verify(&document, &sig, Timestamp::now().unix_seconds())
                .map_err(|e| {
                    io::Error::other(format!(
                        "{}: {e}; no index written (sign the policy, then run `sshjit index`)",
                        policy_path.display()
                    ))
                })?;
            Some(sig)
        }
    };
    let bytes = build_signed(&document, &identity, read_at, signature.as_deref())
        .map_err(|e| not_built(policy_path, e))?;
    write_index(policy_path, &bytes, document.len(), signature.is_some())
}

/// What the document holds is quoted only if anyone may read it.
fn not_built(policy_path: &Path, e: String) -> io::Error {
    if crate::fs::secure::world_readable(policy_path) {
        io::Error::other(e)
    } else {
        io::Error::other(
            "the policy does not validate (`sshjit check` shows where; the content is not shown: the file is not readable by everyone)",
        )
    }
}

/// For an edit about to rename the file `temp` (fstat: `temp_meta`),
/// holding `document` (parsed: `policy`), over the policy: writes the
/// index of the new document now, so that the policy is never in place
/// without an index of its contents. Its identity is the temp file's,
/// which the rename changes: until [`settle`], the login path trusts it by
/// the document's SHA-256. Returns the index, for `settle`.
pub fn prebuild(
    policy_path: &Path,
    temp_meta: &fs::Metadata,
    policy: &Policy<'_>,
    document: &[u8],
) -> io::Result<Vec<u8>> {
    let bytes = build_parsed(
        policy,
        document,
        &Identity::of(temp_meta),
        Timestamp::now(),
        None,
    )
    .map_err(io::Error::other)?;
    write_index(policy_path, &bytes, document.len(), false)?;
    Ok(bytes)
}

/// After the rename: the prebuilt index with the identity of the policy
/// file as it now is, read once its change has settled; or, if the file
/// no longer holds the document the index describes, a new index of what
/// it holds.
pub fn settle(policy_path: &Path, mut prebuilt: Vec<u8>) -> io::Result<Written> {
    let (document, identity, read_at) = read_settled(policy_path)?;
    if policy_sha256(&prebuilt) == Some(&Sha256::digest(&document)[..]) {
        reseal(&mut prebuilt, &identity, read_at).map_err(io::Error::other)?;
        return write_index(policy_path, &prebuilt, document.len(), false);
    }
    let bytes = build(&document, &identity, read_at).map_err(|e| not_built(policy_path, e))?;
    write_index(policy_path, &bytes, document.len(), false)
}

/// Writes index bytes beside the policy: temp file (0644, the policy's
/// owner) in the same directory, rename. Not fsynced: the index is derived
/// data, every part of it is checked, and one lost in a crash only sends
/// logins to the whole document until it is rebuilt.
fn write_index(
    policy_path: &Path,
    bytes: &[u8],
    document_bytes: usize,
    signed: bool,
) -> io::Result<Written> {
    let target = index_path(policy_path);
    // One fixed temp name: the caller holds the policy's lock, and a temp
    // file left by an interrupted run is simply replaced. Same owner as
    // the policy, so the helper's checks treat both alike.
    let temp = atomic::dir_of(&target).join(format!(
        ".{}.tmp",
        target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("policy.idx")
    ));
    atomic::write(
        &target,
        bytes,
        atomic::Options {
            mode: 0o644,
            owner: Some(identity_owner(policy_path)?),
            temp: Some(&temp),
            durable: false,
        },
    )
    .map_err(io::Error::other)?;
    Ok(Written {
        path: target,
        bytes: bytes.len(),
        document_bytes,
        signed,
    })
}

fn identity_owner(path: &Path) -> io::Result<u32> {
    Ok(fs::metadata(path)?.uid())
}

/// The document, its identity, and a time before the read that is at
/// least the racy window after its last change.
fn read_settled(path: &Path) -> io::Result<(Vec<u8>, Identity, Timestamp)> {
    for _ in 0..10 {
        let f = open_secure(path, MAX_DOCUMENT_BYTES).map_err(io::Error::other)?;
        let identity = Identity::of(&f.meta);
        let changed = Timestamp::from_unix(identity.ctime.0, identity.ctime.1)
            .max(Timestamp::from_unix(identity.mtime.0, identity.mtime.1));
        let settled = changed.saturating_add(racy_window(&identity));
        let now = Timestamp::now();
        if now < settled {
            std::thread::sleep(now.until(settled));
            continue;
        }
        let document = f.read_all().map_err(io::Error::other)?;
        let after = open_secure(path, MAX_DOCUMENT_BYTES).map_err(io::Error::other)?;
        if Identity::of(&after.meta) == identity {
            return Ok((document, identity, now));
        }
    }
    Err(io::Error::other(
        "the policy file keeps changing; index not written",
    ))
}
