//! The inputs of the `index` fuzz target: the policies whose indexes it
//! reads, the policy file identity each index is built for, and the layout
//! of one input — a control block (which policy, which form of index,
//! which request) followed by the index bytes or by damage to apply to the
//! genuine index. Shared by the target and by the test that writes its
//! committed seeds (`tests/it/fuzz_seeds.rs`), so the seeds are always the
//! builder's own output.

use sshjit::index::{self, Identity};
use sshjit_policy::time::Timestamp;

/// The documents whose indexes the target reads (the `policy` target's
/// seeds: every kind of grant and revocation, frozen, empty).
pub const POLICIES: [&[u8]; 5] = [
    include_bytes!("seeds/policy/revocations.json"),
    include_bytes!("seeds/policy/example.json"),
    include_bytes!("seeds/policy/frozen.json"),
    include_bytes!("seeds/policy/principals.json"),
    include_bytes!("seeds/policy/min.json"),
];

/// The policy file each index describes: one inode per document, so an
/// index of one can never pass for the index of another.
pub fn identity(policy: usize) -> Identity {
    Identity {
        dev: 2049,
        ino: 1000 + policy as u64,
        size: POLICIES[policy].len() as u64,
        mtime: (1_795_000_000, 5),
        ctime: (1_795_000_000, 7),
    }
}

/// When the indexes were built: well after the file's last change.
pub const BUILT_AT: Timestamp = Timestamp::from_unix(1_795_000_100, 0);

/// The builder's index of `POLICIES[policy]`.
pub fn genuine_index(policy: usize) -> Vec<u8> {
    index::build(POLICIES[policy], &identity(policy), BUILT_AT).expect("the policy seeds validate")
}

/// Bytes of the control block that starts every input.
pub const CONTROL_LEN: usize = 32;

/// What the control block chooses. Each choice is a number that the
/// target maps onto candidates drawn from the chosen policy (its users,
/// hosts, key IDs, serials, fingerprints and grant boundaries), with
/// values outside the list meaning "something the policy does not name".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Control {
    /// Which of [`POLICIES`] (modulo their number).
    pub policy: u8,
    /// How the index is made: [`FORM_RAW`], [`FORM_RESEALED`],
    /// [`FORM_DAMAGED`] (modulo 3).
    pub form: u8,
    pub user: u8,
    pub host: u8,
    /// 0: keys; 1: keys with an offered key; otherwise principals.
    pub mode: u8,
    /// 0: none.
    pub key_id: u8,
    /// 0: none.
    pub serial: u8,
    /// 0: none.
    pub fingerprint: u8,
    /// Which instant; past the candidates: `offset` seconds from a base.
    pub now: u8,
    /// A serial or a user name suffix the policy does not name.
    pub number: u64,
    pub offset: i64,
}

/// The index is the bytes after the control block, as they are. They can
/// be anything, even a forgery: libFuzzer learns the expected value of a
/// check from the comparison itself.
pub const FORM_RAW: u8 = 0;
/// The bytes after the control block with every check recomputed (header,
/// table entries, block digests): a forged index, which only root can
/// write, made easy to reach the reader's deeper paths.
pub const FORM_RESEALED: u8 = 1;
/// The genuine index of the chosen policy, damaged by the operations
/// after the control block (4 bytes each: operation, position as u16,
/// value): flip bits, zero a run, truncate, or take a run from an index of
/// the same file built a second later (a torn write). None of these can
/// compute a check, so the genuine answer or a refusal must come back.
pub const FORM_DAMAGED: u8 = 2;
/// Damage operations.
pub const DAMAGE_XOR: u8 = 0;
pub const DAMAGE_ZERO: u8 = 1;
pub const DAMAGE_TRUNCATE: u8 = 2;
pub const DAMAGE_TORN: u8 = 3;

impl Control {
    pub fn from_bytes(b: &[u8; CONTROL_LEN]) -> Self {
        Control {
            policy: b[0],
            form: b[1],
            user: b[2],
            host: b[3],
            mode: b[4],
            key_id: b[5],
            serial: b[6],
            fingerprint: b[7],
            now: b[8],
            number: u64::from_le_bytes(b[16..24].try_into().unwrap()),
            offset: i64::from_le_bytes(b[24..32].try_into().unwrap()),
        }
    }

    pub fn to_bytes(self) -> [u8; CONTROL_LEN] {
        let mut b = [0u8; CONTROL_LEN];
        b[..9].copy_from_slice(&[
            self.policy,
            self.form,
            self.user,
            self.host,
            self.mode,
            self.key_id,
            self.serial,
            self.fingerprint,
            self.now,
        ]);
        b[16..24].copy_from_slice(&self.number.to_le_bytes());
        b[24..32].copy_from_slice(&self.offset.to_le_bytes());
        b
    }
}

/// The committed seeds: for every policy, its genuine index read as given
/// (a keys and a principals request), resealed, and damaged (not at all,
/// and one flipped bit in the table).
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for policy in 0..POLICIES.len() {
        let genuine = genuine_index(policy);
        let p = policy as u8;
        let keys = Control {
            policy: p,
            mode: 1,
            fingerprint: 1,
            ..Control::default()
        };
        let principals = Control {
            policy: p,
            mode: 2,
            key_id: 1,
            serial: 1,
            fingerprint: 2,
            now: 1,
            ..Control::default()
        };
        let cases: [(&str, Control, Vec<u8>); 5] = [
            ("raw-keys", keys, genuine.clone()),
            ("raw-principals", principals, genuine.clone()),
            (
                "resealed",
                Control {
                    form: FORM_RESEALED,
                    user: 1,
                    ..principals
                },
                genuine.clone(),
            ),
            (
                "damaged-none",
                Control {
                    form: FORM_DAMAGED,
                    ..keys
                },
                Vec::new(),
            ),
            (
                "damaged-table",
                Control {
                    form: FORM_DAMAGED,
                    ..principals
                },
                [DAMAGE_XOR, 200, 0, 0x10].to_vec(),
            ),
        ];
        for (name, control, rest) in cases {
            let mut input = control.to_bytes().to_vec();
            input.extend_from_slice(&rest);
            out.push((format!("built-{policy}-{name}"), input));
        }
    }
    out
}
