//! The policy index reader — `Index::open` and `lookup`, what the login
//! path runs on `policy.json.idx` — over arbitrary index bytes, read from
//! memory. An input is a control block choosing one of a few policies, the
//! form of the index and the request to look up, then the index bytes or
//! the damage to do to the genuine index (`index_cases.rs`); the seeds are
//! the builder's own indexes of those policies.
//!
//! - Any bytes, as given or with every check recomputed (forged): no panic
//!   reading them, nor parsing, evaluating and rendering what they return;
//!   the genuine index always answers.
//! - The genuine index damaged (bits flipped, runs zeroed, truncated, or
//!   torn with another build of the same file's index): a lookup that
//!   succeeds answers exactly as the undamaged index does, and that answer
//!   is what the whole document gives — the user's part validates, holds
//!   exactly the user's grants of the whole document, each with the same
//!   revocation (in the whole document's numbering), and `evaluate` on it
//!   decides exactly as on the whole document.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use sshjit::index::Index;
use sshjit_policy::evaluate::revocation_of;
use sshjit_policy::render::{Expiry, render};
use sshjit_policy::time::Timestamp;
use sshjit_policy::{
    Decision, Fingerprint, HostName, KeyId, Mode, Policy, Request, Target, Username, evaluate,
};

#[allow(dead_code, reason = "the seed writer is tests/it/fuzz_seeds.rs's")]
#[path = "../index_cases.rs"]
mod index_cases;
use index_cases::{
    BUILT_AT, CONTROL_LEN, Control, DAMAGE_TORN, DAMAGE_TRUNCATE, DAMAGE_XOR, DAMAGE_ZERO,
    FORM_DAMAGED, FORM_RAW, FORM_RESEALED, POLICIES, identity,
};

// The index layout (src/index/mod.rs), as far as resealing needs it.
const HEADER_LEN: usize = 128;
const HEADER_CHECK: usize = HEADER_LEN - 16;
const ENTRY_LEN: usize = 64;

/// One policy, its genuine index, and what a request can name.
struct Case {
    policy: Policy<'static>,
    genuine: Vec<u8>,
    /// The same file's index built a second later.
    rebuilt: Vec<u8>,
    users: Vec<Username<'static>>,
    hosts: Vec<HostName<'static>>,
    key_ids: Vec<KeyId<'static>>,
    serials: Vec<u64>,
    fingerprints: Vec<Fingerprint>,
    instants: Vec<Timestamp>,
}

static CASES: LazyLock<Vec<Case>> = LazyLock::new(|| (0..POLICIES.len()).map(case).collect());

fn case(i: usize) -> Case {
    let policy = Policy::parse(POLICIES[i]).expect("the policy seeds validate");
    let genuine = index_cases::genuine_index(i);
    // Resealing must be a no-op on the builder's own output, or this
    // target no longer knows the layout it forges.
    let mut resealed = genuine.clone();
    reseal_header(&mut resealed);
    reseal_table(&mut resealed);
    assert!(
        resealed == genuine,
        "the target's idea of the index layout is out of date"
    );

    let mut users: Vec<Username<'static>> = Vec::new();
    let revoked_users = policy.revocations.iter().filter_map(|r| match &r.target {
        Target::User(u) => Some(u.clone()),
        _ => None,
    });
    for u in policy
        .grants
        .iter()
        .map(|g| g.user.clone())
        .chain(revoked_users)
    {
        if !users.contains(&u) {
            users.push(u);
        }
    }
    users.push(Username::new("nobody").unwrap());

    let mut hosts: Vec<HostName<'static>> = ["web-1", "db-1.prod.example.com", "db-7", "x"]
        .into_iter()
        .map(|h| HostName::new(h).unwrap())
        .collect();
    for g in &policy.grants {
        for p in &g.hosts {
            let name = p.as_str().replace('*', "x").replace('?', "y");
            if let Ok(h) = HostName::new(name.trim_start_matches(['-', '.']).to_owned()) {
                hosts.push(h);
            }
        }
    }

    let mut key_ids = Vec::new();
    let mut serials = Vec::new();
    let mut fingerprints: Vec<Fingerprint> = policy
        .grants
        .iter()
        .filter_map(|g| g.key())
        .map(|k| k.fingerprint())
        .collect();
    for r in &policy.revocations {
        match &r.target {
            Target::KeyId(k) => key_ids.push(k.clone()),
            Target::Serial(s) => serials.push(*s),
            Target::Fingerprint(f) => fingerprints.push(*f),
            _ => {}
        }
    }
    // A fingerprint no policy names.
    fingerprints
        .push(Fingerprint::parse("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap());

    let mut instants = vec![Timestamp::parse_rfc3339("2026-11-21T10:30:00Z").unwrap()];
    for g in &policy.grants {
        instants.extend(g.not_before);
        instants.push(g.expires_at);
        instants.push(g.expires_at.saturating_sub(Duration::from_nanos(1)));
        instants.push(g.expires_at.saturating_sub(Duration::from_secs(1)));
    }

    let rebuilt = sshjit::index::build(
        POLICIES[i],
        &identity(i),
        BUILT_AT.saturating_add(Duration::from_secs(1)),
    )
    .unwrap();

    Case {
        policy,
        genuine,
        rebuilt,
        users,
        hosts,
        key_ids,
        serials,
        fingerprints,
        instants,
    }
}

/// Recomputes the header's check over the (possibly edited) header.
fn reseal_header(bytes: &mut [u8]) {
    if bytes.len() < HEADER_LEN {
        return;
    }
    let check = Sha256::digest(&bytes[..HEADER_CHECK]);
    bytes[HEADER_CHECK..HEADER_LEN].copy_from_slice(&check[..16]);
}

/// Recomputes, for every table entry present, the digest of the block it
/// points to (when it is not empty and the block lies inside the index)
/// and the entry's check.
fn reseal_table(bytes: &mut [u8]) {
    if bytes.len() < HEADER_LEN {
        return;
    }
    let header_check: [u8; 16] = bytes[HEADER_CHECK..HEADER_LEN].try_into().unwrap();
    let nbuckets = u32::from_le_bytes(bytes[108..112].try_into().unwrap()) as usize;
    let present = (bytes.len() - HEADER_LEN) / ENTRY_LEN;
    for slot in 0..nbuckets.min(present) {
        let at = HEADER_LEN + slot * ENTRY_LEN;
        let kind = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
        let len = u32::from_le_bytes(bytes[at + 12..at + 16].try_into().unwrap()) as usize;
        let offset = u64::from_le_bytes(bytes[at + 16..at + 24].try_into().unwrap());
        if let Some(block) = usize::try_from(offset)
            .ok()
            .filter(|_| kind != 0)
            .and_then(|o| bytes.get(o..o.checked_add(len)?))
        {
            let digest = Sha256::digest(block);
            bytes[at + 24..at + 56].copy_from_slice(&digest);
        }
        let mut h = Sha256::new();
        h.update(header_check);
        h.update((slot as u64).to_le_bytes());
        h.update(&bytes[at..at + 56]);
        let check = h.finalize();
        bytes[at + 56..at + 64].copy_from_slice(&check[..8]);
    }
}

/// `list[choice - 1]`, or `None` when `choice` is 0 or past the list.
fn nth<T: Clone>(list: &[T], choice: u8) -> Option<T> {
    usize::from(choice)
        .checked_sub(1)
        .and_then(|i| list.get(i))
        .cloned()
}

/// The genuine index with `ops` done to it, in order.
fn damaged(case: &Case, ops: &[u8]) -> Vec<u8> {
    let mut bytes = case.genuine.clone();
    for op in ops.chunks_exact(4) {
        let at = usize::from(u16::from_le_bytes([op[1], op[2]]));
        let run = at.min(bytes.len())..at.saturating_add(usize::from(op[3])).min(bytes.len());
        match op[0] % 4 {
            DAMAGE_XOR => {
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= op[3];
                }
            }
            DAMAGE_ZERO => bytes[run].fill(0),
            DAMAGE_TRUNCATE => bytes.truncate(at),
            DAMAGE_TORN => {
                let run = run.start..run.end.min(case.rebuilt.len());
                bytes[run.clone()].copy_from_slice(&case.rebuilt[run]);
            }
            _ => unreachable!(),
        }
    }
    bytes
}

fuzz_target!(|data: &[u8]| {
    let Some((control, rest)) = data.split_first_chunk::<CONTROL_LEN>() else {
        return;
    };
    let c = Control::from_bytes(control);
    let p = usize::from(c.policy) % POLICIES.len();
    let case = &CASES[p];

    let form = c.form % 3;
    let bytes = match form {
        FORM_RAW => rest.to_vec(),
        FORM_RESEALED => {
            let mut bytes = rest.to_vec();
            reseal_header(&mut bytes);
            reseal_table(&mut bytes);
            bytes
        }
        FORM_DAMAGED => damaged(case, rest),
        _ => unreachable!(),
    };

    // The request: mostly what the policy names, sometimes what it does not.
    let user = case
        .users
        .get(usize::from(c.user))
        .cloned()
        .unwrap_or_else(|| Username::new(format!("u{}", c.number)).unwrap());
    let host = &case.hosts[usize::from(c.host) % case.hosts.len()];
    let key_id = match c.key_id {
        0 => None,
        k => Some(
            nth(&case.key_ids, k).unwrap_or_else(|| KeyId::new(format!("k{}", c.number)).unwrap()),
        ),
    };
    let serial = match c.serial {
        0 => None,
        s => Some(nth(&case.serials, s).unwrap_or(c.number)),
    };
    let fingerprint = nth(&case.fingerprints, c.fingerprint);
    let mode = match c.mode {
        0 => Mode::Keys { offered: None },
        1 => Mode::Keys {
            offered: fingerprint,
        },
        _ => Mode::Principals {
            key_id: key_id.as_ref(),
            serial,
            fingerprint,
        },
    };
    let now = nth(&case.instants, c.now).unwrap_or_else(|| {
        // Within the years RFC 3339 can write, as the clock always is.
        let secs = 1_795_000_000i64
            .saturating_add(c.offset)
            .clamp(-62_167_219_200, 253_402_300_799);
        Timestamp::from_unix(secs, (c.number % 1_000_000_000) as u32)
    });
    let req = Request {
        user: &user,
        host,
        mode,
    };
    let certificate = match mode {
        Mode::Keys { .. } => None,
        Mode::Principals {
            key_id,
            serial,
            fingerprint,
        } => Some((key_id, serial, fingerprint)),
    };

    let found = Index::open(&bytes[..], &identity(p))
        .and_then(|index| index.lookup(user.as_str(), certificate));

    if let Err(e) = &found {
        assert!(bytes != case.genuine, "the genuine index refused: {e}");
    }
    if form != FORM_DAMAGED {
        // Anything may come back; the login path must survive it.
        if let Ok(found) = &found {
            if let Ok(part) = Policy::parse(&found.document) {
                if let Decision::Allow(valid) = found.info.evaluate(&part, &req, now) {
                    let _ = render(&valid, Expiry::Utc, now);
                }
            }
        }
        return;
    }

    let Ok(found) = found else {
        return;
    };
    // Damage never changes an answer: it is the genuine index's.
    let genuine = Index::open(&case.genuine[..], &identity(p))
        .and_then(|index| index.lookup(user.as_str(), certificate))
        .expect("the genuine index answers");
    assert!(
        found.document == genuine.document,
        "a damaged index gave another part for {req:?}"
    );
    assert_eq!(
        found.info, genuine.info,
        "a damaged index gave other numbers for {req:?}"
    );

    // And that answer is the whole document's.
    let whole = &case.policy;
    let part = Policy::parse(&found.document).expect("the user's part validates");
    let users_grants: Vec<_> = whole.grants.iter().filter(|g| g.user == user).collect();
    // (A user without grants gets an empty document, frozen or not.)
    if !users_grants.is_empty() {
        assert_eq!(part.frozen, whole.frozen);
    }
    assert_eq!(
        part.grants.iter().collect::<Vec<_>>(),
        users_grants,
        "the part does not hold exactly the user's grants"
    );
    for (g, original) in part.grants.iter().zip(&users_grants) {
        assert_eq!(
            revocation_of(&part, g).map(|i| found.info.whole_revocation(i)),
            revocation_of(whole, original),
            "{} is revoked differently in the part",
            g.id
        );
    }
    assert_eq!(
        found.info.evaluate(&part, &req, now),
        evaluate(whole, &req, now),
        "the part decides otherwise than the whole document for {req:?} at {now}"
    );
});
