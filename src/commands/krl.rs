//! `sshjit krl --output FILE`: the policy's revocations that OpenSSH can
//! enforce on its own — key fingerprints, certificate key IDs and
//! certificate serials — as a binary key revocation list (OpenSSH's
//! PROTOCOL.krl) for sshd's `RevokedKeys`. A host that does not run the
//! helper, or a key that also sits in a static authorized_keys file, is
//! then refused too. Revocations of grants, users and principals name
//! nothing OpenSSH can see; only the helper enforces them.

use std::path::PathBuf;

use clap::Args;

use super::failure::Failure;
use super::output::Output;
use crate::Globals;
use crate::fs::atomic::{self, Options};
use crate::load::{Ask, Setup};
use sshjit_policy::time::Timestamp;
use sshjit_policy::{Policy, Target};

#[derive(Args, Debug, Clone)]
pub struct KrlArgs {
    /// Write the KRL to this file (replaced atomically, mode 0644); point sshd's RevokedKeys at it
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
}

/// `"SSHKRL\n\0"`.
const KRL_MAGIC: u64 = 0x5353_484b_524c_0a00;
const KRL_FORMAT_VERSION: u32 = 1;
const SECTION_CERTIFICATES: u8 = 1;
const SECTION_FINGERPRINT_SHA256: u8 = 5;
const CERT_SERIAL_LIST: u8 = 0x20;
const CERT_KEY_ID: u8 = 0x23;

/// What goes into a KRL, taken from a policy's revocations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revoked {
    /// SHA-256 hashes of public key blobs, sorted and unique.
    pub sha256: Vec<[u8; 32]>,
    /// Certificate key IDs, sorted and unique.
    pub key_ids: Vec<String>,
    /// Certificate serials (never 0: sshd never revokes serial 0), sorted and unique.
    pub serials: Vec<u64>,
    /// Revocations a KRL cannot express (grants, users, principals).
    pub not_expressible: usize,
    /// `serial: 0` revocations: sshd ignores serial 0 in a KRL.
    pub serial_zero: bool,
}

impl Revoked {
    pub fn of(policy: &Policy<'_>) -> Revoked {
        let mut r = Revoked::default();
        for revocation in &policy.revocations {
            match &revocation.target {
                Target::Fingerprint(fp) => r.sha256.push(sha256_bytes(&fp.to_string())),
                Target::KeyId(id) => r.key_ids.push(id.as_str().to_owned()),
                Target::Serial(0) => r.serial_zero = true,
                Target::Serial(s) => r.serials.push(*s),
                Target::Grant(_) | Target::User(_) | Target::Principal(_) => r.not_expressible += 1,
            }
        }
        r.sha256.sort_unstable();
        r.sha256.dedup();
        r.key_ids.sort_unstable();
        r.key_ids.dedup();
        r.serials.sort_unstable();
        r.serials.dedup();
        r
    }

    /// The KRL's bytes: header, one certificates section for every CA (an
    /// empty CA key: sshjit's serial and key ID revocations do not depend
    /// on the CA), and one SHA-256 fingerprint section.
    pub fn encode(&self, krl_version: u64, generated: u64, comment: &str) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&KRL_MAGIC.to_be_bytes());
        out.extend_from_slice(&KRL_FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&krl_version.to_be_bytes());
        out.extend_from_slice(&generated.to_be_bytes());
        out.extend_from_slice(&0u64.to_be_bytes()); // flags
        put_string(&mut out, b""); // reserved
        put_string(&mut out, comment.as_bytes());
        if !self.serials.is_empty() || !self.key_ids.is_empty() {
            let mut section = Vec::new();
            put_string(&mut section, b""); // any CA
            put_string(&mut section, b""); // reserved
            if !self.serials.is_empty() {
                let list: Vec<u8> = self.serials.iter().flat_map(|s| s.to_be_bytes()).collect();
                section.push(CERT_SERIAL_LIST);
                put_string(&mut section, &list);
            }
            if !self.key_ids.is_empty() {
                let mut ids = Vec::new();
                for id in &self.key_ids {
                    put_string(&mut ids, id.as_bytes());
                }
                section.push(CERT_KEY_ID);
                put_string(&mut section, &ids);
            }
            out.push(SECTION_CERTIFICATES);
            put_string(&mut out, &section);
        }
        if !self.sha256.is_empty() {
            let mut hashes = Vec::new();
            for h in &self.sha256 {
                put_string(&mut hashes, h);
            }
            out.push(SECTION_FINGERPRINT_SHA256);
            put_string(&mut out, &hashes);
        }
        out
    }
}

/// SSH wire `string`: a big-endian u32 length, then the bytes.
fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    // Every string here is bounded by the policy's own bounds (64 MiB).
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The hash inside a validated `SHA256:...` fingerprint.
fn sha256_bytes(fp: &str) -> [u8; 32] {
    use std::str::FromStr;
    // A policy Fingerprint is SHA256 and valid by construction.
    ssh_key::Fingerprint::from_str(fp)
        .ok()
        .and_then(|f| f.sha256())
        .unwrap_or([0; 32])
}

pub fn run(globals: &Globals, args: &KrlArgs) -> Result<Output, Failure> {
    if args.output.as_os_str().is_empty() || args.output.file_name().is_none() {
        return Err(Failure::usage("--output: give a file name"));
    }
    let setup = Setup::read(globals).map_err(|e| Failure::refused(e.to_string()))?;
    let fetch = setup
        .fetch(Ask::read_only(None))
        .map_err(|e| Failure::refused(e.to_string()))?;
    let loaded = fetch
        .load()
        .map_err(|e| Failure::refused(format!("{e}\nno KRL written")))?;
    let revoked = Revoked::of(&loaded.policy);
    let now = Timestamp::now().unix_seconds().max(0) as u64;
    let comment = match loaded.policy.serial {
        Some(s) => format!("sshjit {} serial {s}", loaded.origin()),
        None => format!("sshjit {}", loaded.origin()),
    };
    // A KRL's version should grow with every change: the document's serial
    // does; without one, the time of generation.
    let version = loaded.policy.serial.unwrap_or(now);
    let bytes = revoked.encode(version, now, &comment);
    atomic::write(&args.output, &bytes, Options::mode(0o644))
        .map_err(|e| Failure::internal(e.to_string()))?;
    let mut out = Output::text(format!(
        "wrote {}: {} key fingerprints, {} certificate key IDs, {} certificate serials (KRL version {version})\n",
        args.output.display(),
        revoked.sha256.len(),
        revoked.key_ids.len(),
        revoked.serials.len()
    ));
    if revoked.not_expressible > 0 {
        out.note(format!(
            "{} revocations of grants, users or principals are not in the KRL (OpenSSH cannot see them; the helper enforces them)",
            revoked.not_expressible
        ));
    }
    if revoked.serial_zero {
        out.warn("a revocation of certificate serial 0 is not in the KRL: sshd never revokes serial 0 (revoke such certificates by key ID or fingerprint)");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_krl_is_the_header_alone() {
        let bytes = Revoked::default().encode(7, 1_700_000_000, "c");
        let mut want = b"SSHKRL\n\0".to_vec();
        want.extend_from_slice(&1u32.to_be_bytes());
        want.extend_from_slice(&7u64.to_be_bytes());
        want.extend_from_slice(&1_700_000_000u64.to_be_bytes());
        want.extend_from_slice(&0u64.to_be_bytes());
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, b'c']);
        assert_eq!(bytes, want);
    }

    #[test]
    fn revocations_are_sorted_deduplicated_and_split_by_what_openssh_can_see() {
        let doc = br#"{"version":1,"serial":3,"grants":[],"revocations":[
            {"serial": 9}, {"serial": 2}, {"serial": 9}, {"serial": 0},
            {"key_id": "b"}, {"key_id": "a"},
            {"fingerprint": "SHA256:X5oprPYTCKn2RSt7zk0vLaTKD2WNGktiH+URhgz06P8"},
            {"fingerprint": "SHA256:nqYZ+IxOnbiBaZwc6r0G+iS9w0wOhnnAotOo2aybfo4"},
            {"user": "deploy"}, {"grant": "g-1"}, {"principal": "p"}]}"#;
        let policy = Policy::parse(doc).unwrap();
        let r = Revoked::of(&policy);
        assert_eq!(r.serials, vec![2, 9]);
        assert_eq!(r.key_ids, vec!["a", "b"]);
        assert_eq!(r.sha256.len(), 2);
        assert!(r.sha256[0] < r.sha256[1]);
        assert_eq!(r.not_expressible, 3);
        assert!(r.serial_zero);
        let bytes = r.encode(3, 0, "");
        // The certificate section: type 1, then a string holding an empty
        // CA key, an empty reserved field, the serial list and the key IDs.
        let header = 8 + 4 + 8 + 8 + 8 + 4 + 4;
        assert_eq!(bytes[header], SECTION_CERTIFICATES);
        let body = &bytes[header + 5..];
        assert_eq!(&body[..8], &[0; 8]);
        assert_eq!(body[8], CERT_SERIAL_LIST);
        assert_eq!(&body[9..13], &16u32.to_be_bytes());
        assert_eq!(
            &body[13..29],
            &[0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 9]
        );
        assert_eq!(body[29], CERT_KEY_ID);
    }
}
