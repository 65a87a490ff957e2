//! Large synthetic policies for benchmarks and load tests: many users with
//! a few grants each, host globs, some revocations, and keys made of random
//! bytes (any 32 bytes form a valid ssh-ed25519 public key).

use std::fmt::Write as _;

use serde_json::{Value, json};
use ssh_encoding::base64::{Base64, Encoding};

/// A small deterministic generator (xorshift64*), so runs are repeatable.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A random ssh-ed25519 public key line.
pub fn random_key(rng: &mut Rng, comment: &str) -> String {
    let mut blob = Vec::with_capacity(51);
    blob.extend_from_slice(&11u32.to_be_bytes());
    blob.extend_from_slice(b"ssh-ed25519");
    blob.extend_from_slice(&32u32.to_be_bytes());
    for _ in 0..4 {
        blob.extend_from_slice(&rng.next().to_le_bytes());
    }
    format!("ssh-ed25519 {} {comment}", Base64::encode_string(&blob))
}

/// The user that owns grants `3k..3k+2`.
pub fn user_of(i: usize) -> String {
    format!("user{}", i / 3)
}

/// A policy of `n` grants (three per user, valid from 2026 to 2099 on
/// `web-*` and `db-?.prod.example.com`, every 50th revoked by id and every
/// 97th user revoked), with `extra` grants appended, and the equivalent
/// authorized_keys file (one line per grant, as sshd would read a static
/// file holding the same keys).
pub fn policy(n: usize, extra: Vec<Value>) -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng::new(0x5eed + n as u64);
    let mut grants = Vec::with_capacity(n + extra.len());
    let mut keys_file = String::with_capacity(n * 130);
    for i in 0..n {
        let key = random_key(&mut rng, &format!("{}@laptop-{i}", user_of(i)));
        let _ = writeln!(keys_file, "expiry-time=\"20981231235959Z\" {key}");
        grants.push(json!({
            "id": format!("g-{i}"),
            "user": user_of(i),
            "key": key,
            "hosts": ["web-*", "db-?.prod.example.com"],
            "not_before": "2026-01-01T00:00:00Z",
            "expires_at": "2099-01-01T00:00:00Z",
            "reason": format!("INC-{i} synthetic access"),
            "granted_by": "bench",
        }));
    }
    grants.extend(extra);
    let mut revocations: Vec<Value> = (0..n)
        .step_by(50)
        .map(|i| json!({"grant": format!("g-{i}"), "reason": "synthetic"}))
        .collect();
    revocations.extend(
        (0..n / 3)
            .step_by(97)
            .map(|u| json!({"user": format!("user{u}")})),
    );
    let doc = json!({"version": 1, "serial": 1, "grants": grants, "revocations": revocations});
    (
        serde_json::to_vec_pretty(&doc).unwrap(),
        keys_file.into_bytes(),
    )
}
