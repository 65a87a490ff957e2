//! Property tests of the login path's invariants (the same checker as the
//! `policy` fuzz target, `fuzz/invariants.rs`), on generated documents that
//! mix every field, boundary instants, revocation kinds and awkward option
//! values, so CI guards them on every change.

use proptest::prelude::*;
use serde_json::{Value, json};
use sshjit_policy::Policy;
use sshjit_policy::time::Timestamp;

#[path = "../../fuzz/invariants.rs"]
mod invariants;

const KEYS: [&str; 3] = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmhXmfyH35TmVDzfJ+0t0DbYFg88Gcc+UtpLZreAJk9 a@test",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF7Vi4lHU6BizDGW263nDayDu2UnUB7NxON9I9z3dUaX",
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPZtwkPL/sypkWCaTMoP/Dd1tVK7paCwisiPvD4+oTWGWs0u3S3qbkBB7bSYIdJczMapEOInlh2owVUULx8ayU0= e c",
];
const FPS: [&str; 3] = [
    "SHA256:X5oprPYTCKn2RSt7zk0vLaTKD2WNGktiH+URhgz06P8",
    "SHA256:nqYZ+IxOnbiBaZwc6r0G+iS9w0wOhnnAotOo2aybfo4",
    "SHA256:Tj/Fih1SR09Bw1ElKvy1DfDcbj/AJLR4Bqx/mSX7VWE",
];
const USERS: [&str; 3] = ["deploy", "root", "nobody"];
const PRINCIPALS: [&str; 3] = ["alice", "bob", "ops@corp"];
const HOSTS: [&str; 6] = [
    "web-*",
    "WEB-1",
    "db-?",
    "*",
    "db-1.prod.example.com",
    "*.example.com",
];
/// 2026-11-21T10:30:00Z, the instant the invariant checker also probes.
const BASE: i64 = 1_795_257_000;

fn time(offset: i64, nanos: u32) -> String {
    Timestamp::from_unix(BASE + offset, nanos).to_rfc3339()
}

prop_compose! {
    fn grant(i: usize)(
        user in 0..USERS.len(),
        subject in 0..(KEYS.len() + PRINCIPALS.len()),
        hosts in proptest::collection::vec(0..HOSTS.len(), 0..3),
        not_before in proptest::option::of(-7200i64..7200),
        length in 1i64..14_400,
        nanos in prop_oneof![Just(0u32), 1u32..1_000_000_000],
        break_glass in any::<bool>(),
        restrict in any::<bool>(),
        command in proptest::option::of("[a-z \"\\\\$'=,]{1,12}[a-z]"),
        from in proptest::collection::vec("!?[0-9.*/:a-z]{1,10}", 0..3),
    ) -> Value {
        let start = not_before.unwrap_or(-3600);
        let mut g = json!({
            "id": format!("g-{i}"),
            "user": USERS[user],
            "expires_at": time(start + length, nanos),
            "reason": "property test",
            "granted_by": "props",
        });
        if subject < KEYS.len() {
            g["key"] = json!(KEYS[subject]);
        } else {
            g["principal"] = json!(PRINCIPALS[subject - KEYS.len()]);
        }
        if let Some(nb) = not_before {
            g["not_before"] = json!(time(nb, 0));
        }
        if !hosts.is_empty() {
            g["hosts"] = json!(hosts.iter().map(|&h| HOSTS[h]).collect::<Vec<_>>());
        }
        if break_glass { g["break_glass"] = json!(true); }
        if restrict { g["restrict"] = json!(true); }
        if let Some(c) = command { g["command"] = json!(c); }
        if !from.is_empty() { g["from"] = json!(from); }
        g
    }
}

fn revocation() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0usize..6).prop_map(|i| json!({"grant": format!("g-{i}")})),
        (0..FPS.len()).prop_map(|i| json!({"fingerprint": FPS[i], "reason": "lost"})),
        (0..USERS.len()).prop_map(|i| json!({"user": USERS[i]})),
        (0..PRINCIPALS.len()).prop_map(|i| json!({"principal": PRINCIPALS[i]})),
        Just(json!({"key_id": "alice@corp-1", "revoked_by": "sec"})),
        (0u64..3).prop_map(|s| json!({"serial": s})),
    ]
}

fn document() -> impl Strategy<Value = Vec<u8>> {
    (
        (0usize..6).prop_flat_map(|n| (0..n).map(grant).collect::<Vec<_>>()),
        proptest::collection::vec(revocation(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(grants, revocations, frozen)| {
            serde_json::to_vec(&json!({
                "version": 1, "serial": 1, "frozen": frozen,
                "grants": grants, "revocations": revocations,
            }))
            .unwrap()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn login_path_invariants_hold(doc in document()) {
        // Generated commands and from patterns may be invalid on purpose:
        // then the document must be refused whole, which is also fine.
        if let Ok(policy) = Policy::parse(&doc) {
            invariants::check_policy(&doc, &policy);
        }
    }

    #[test]
    fn any_bytes_are_refused_or_hold(doc in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(policy) = Policy::parse(&doc) {
            invariants::check_policy(&doc, &policy);
        }
    }
}

/// The generator must produce mostly valid documents, or the property
/// above would prove little.
#[test]
fn the_generator_mostly_produces_valid_documents() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = document();
    let valid = (0..200)
        .filter(|_| Policy::parse(&strategy.new_tree(&mut runner).unwrap().current()).is_ok())
        .count();
    assert!(
        valid >= 100,
        "only {valid} of 200 generated documents are valid"
    );
}
