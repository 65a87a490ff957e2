use super::*;
use crate::store::trail::ZERO_HASH;
use sshjit_policy::{Actor, Policy, Reason};

const KEY_A: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmhXmfyH35TmVDzfJ+0t0DbYFg88Gcc+UtpLZreAJk9 a@test";
const FP_A: &str = "SHA256:X5oprPYTCKn2RSt7zk0vLaTKD2WNGktiH+URhgz06P8";

fn t(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

fn policy(json: &str) -> Policy<'static> {
    Policy::parse(json.as_bytes()).unwrap().into_owned()
}

fn grant(id: &str, user: &str) -> Grant<'static> {
    policy(&format!(
        r#"{{"version":1,"grants":[{{"id":"{id}","user":"{user}","key":"{KEY_A}",
        "expires_at":"2026-11-21T18:00:00Z","reason":"INC-1"}}]}}"#
    ))
    .grants
    .remove(0)
}

fn rev(json: &str) -> Revocation<'static> {
    policy(&format!(r#"{{"version":1,"revocations":[{json}]}}"#))
        .revocations
        .remove(0)
}

fn rec(seq: u64, time: &str, by: &str, action: Action<'static>) -> Record<'static> {
    Record {
        seq,
        time: t(time),
        actor: Actor::new(by.to_owned()).unwrap(),
        os_user: "root".into(),
        sudo_user: None,
        host: "admin-1".into(),
        action,
        serial: Some(seq),
        policy_sha256: Some("x".into()),
        prev: ZERO_HASH.into(),
        hash: None,
    }
}

fn reason(s: &str) -> Reason<'static> {
    Reason::new(s.to_owned()).unwrap()
}

#[test]
fn replay_follows_grants_through_revocations_freezes_and_repairs() {
    let records = vec![
        rec(
            1,
            "2026-11-21T10:00:00Z",
            "bob",
            Action::Grant {
                grant: grant("g-1", "deploy"),
                forced: false,
            },
        ),
        rec(
            2,
            "2026-11-21T10:05:00Z",
            "bob",
            Action::Grant {
                grant: grant("g-2", "web"),
                forced: true,
            },
        ),
        // Voided below: never took effect.
        rec(
            3,
            "2026-11-21T10:06:00Z",
            "eve",
            Action::Grant {
                grant: grant("g-x", "root"),
                forced: false,
            },
        ),
        rec(
            4,
            "2026-11-21T10:07:00Z",
            "bob",
            Action::Repair {
                reason: reason("interrupted"),
                voids: Some(3),
                discarded_bytes: None,
                discarded_sha256: None,
            },
        ),
        rec(
            5,
            "2026-11-21T11:00:00Z",
            "sec",
            Action::Freeze {
                reason: reason("INC-9"),
            },
        ),
        rec(
            6,
            "2026-11-21T11:10:00Z",
            "sec",
            Action::Revoke {
                revocation: rev(&format!(
                    r#"{{"fingerprint":"{FP_A}","reason":"laptop stolen","revoked_at":"2026-11-21T11:10:00Z","revoked_by":"sec"}}"#
                )),
            },
        ),
        rec(
            7,
            "2026-11-21T11:20:00Z",
            "sec",
            Action::Unrevoke {
                reason: reason("found the laptop"),
                revocations: vec![rev(&format!(r#"{{"fingerprint":"{FP_A}"}}"#))],
            },
        ),
        rec(
            8,
            "2026-11-21T11:30:00Z",
            "sec",
            Action::Revoke {
                revocation: rev(r#"{"user":"web","reason":"left"}"#),
            },
        ),
        rec(
            9,
            "2026-11-21T12:00:00Z",
            "sec",
            Action::Thaw {
                reason: reason("over"),
            },
        ),
    ];
    let h = replay(&records);
    let ids: Vec<&str> = h.entries.iter().map(|e| e.grant.id.as_str()).collect();
    assert_eq!(ids, ["g-1", "g-2"], "the voided grant is not history");
    let g1 = &h.entries[0];
    assert_eq!(g1.revoked.len(), 1);
    assert_eq!(
        g1.revoked[0].lifted,
        Some(Stamp {
            at: t("2026-11-21T11:20:00Z"),
            by: "sec".into(),
            seq: 7
        })
    );
    assert_eq!(
        g1.window(),
        (t("2026-11-21T10:00:00Z"), t("2026-11-21T18:00:00Z"))
    );
    assert_eq!(g1.status(t("2026-11-21T13:00:00Z")), "active");
    assert_eq!(g1.status(t("2026-11-21T19:00:00Z")), "expired");
    let g2 = &h.entries[1];
    assert!(g2.forced);
    assert_eq!(g2.revoked.len(), 2);
    assert_eq!(g2.window().1, t("2026-11-21T11:30:00Z"));
    assert_eq!(
        g2.status(t("2026-11-21T13:00:00Z")),
        "revoked 2026-11-21T11:30:00Z by sec"
    );
    let actions: Vec<&str> = h.changes.iter().map(|c| c.action).collect();
    assert_eq!(
        actions,
        ["repair", "freeze", "revoke", "unrevoke", "revoke", "thaw"]
    );
    assert_eq!(h.changes[2].grants, [0, 1]);
    assert_eq!(h.changes[4].grants, [1]);
    // The freeze from 11:00 to 12:00 kept both out for a while.
    let f = h.frozen_during(g1);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].from.at, t("2026-11-21T11:00:00Z"));
    assert_eq!(f[0].reason, "INC-9");
    assert_eq!(
        f[0].until,
        Some(Stamp {
            at: t("2026-11-21T12:00:00Z"),
            by: "sec".into(),
            seq: 9
        })
    );
    assert_eq!(h.frozen_during(g2).len(), 1);
    let mut bg = g1.clone();
    bg.grant.break_glass = true;
    assert!(
        h.frozen_during(&bg).is_empty(),
        "break-glass is never frozen out"
    );
    let mut late = g1.clone();
    late.recorded_at = t("2026-11-21T12:30:00Z");
    assert!(h.frozen_during(&late).is_empty());
}

#[test]
fn within_one_second_the_records_order_decides() {
    // Whole-second times: a grant, its revocation, a freeze and a thaw in
    // the same second. The revoked grant was never frozen out; the other was.
    let at = "2026-11-21T10:00:00Z";
    let records = vec![
        rec(
            1,
            at,
            "bob",
            Action::Grant {
                grant: grant("g-1", "deploy"),
                forced: false,
            },
        ),
        rec(
            2,
            at,
            "bob",
            Action::Grant {
                grant: grant("g-2", "web"),
                forced: false,
            },
        ),
        rec(
            3,
            at,
            "bob",
            Action::Revoke {
                revocation: rev(r#"{"grant":"g-2"}"#),
            },
        ),
        rec(
            4,
            at,
            "sec",
            Action::Freeze {
                reason: reason("r"),
            },
        ),
        rec(
            5,
            at,
            "sec",
            Action::Thaw {
                reason: reason("r"),
            },
        ),
        rec(
            6,
            at,
            "bob",
            Action::Grant {
                grant: grant("g-3", "db"),
                forced: false,
            },
        ),
    ];
    let h = replay(&records);
    let frozen: Vec<usize> = h.entries.iter().map(|e| h.frozen_during(e).len()).collect();
    assert_eq!(frozen, [1, 0, 0]);
}

#[test]
fn adopting_a_document_adds_and_removes_grants() {
    let mut edited = grant("g-2", "web");
    edited.reason = reason("changed by hand");
    let records = vec![
        rec(
            1,
            "2026-11-21T10:00:00Z",
            "bob",
            Action::Grant {
                grant: grant("g-1", "deploy"),
                forced: false,
            },
        ),
        rec(
            2,
            "2026-11-21T10:00:00Z",
            "bob",
            Action::Grant {
                grant: grant("g-2", "web"),
                forced: false,
            },
        ),
        rec(
            3,
            "2026-11-21T11:00:00Z",
            "sec",
            Action::Adopt {
                reason: reason("restored"),
                frozen: true,
                grants: vec![grant("g-1", "deploy"), edited, grant("g-3", "db")],
                revocations: vec![rev(r#"{"user":"db"}"#)],
            },
        ),
    ];
    let h = replay(&records);
    let ids: Vec<(&str, bool, bool)> = h
        .entries
        .iter()
        .map(|e| (e.grant.id.as_str(), e.adopted, e.removed.is_some()))
        .collect();
    assert_eq!(
        ids,
        [
            ("g-1", false, false),
            ("g-2", false, true),
            ("g-2", true, false),
            ("g-3", true, false)
        ]
    );
    assert_eq!(
        h.entries[3].revoked.len(),
        1,
        "the adopted revocation names g-3"
    );
    assert!(
        h.changes[0].what.contains("frozen"),
        "{}",
        h.changes[0].what
    );
    assert_eq!(h.freezes.len(), 1);
    assert_eq!(h.freezes[0].until, None, "still frozen");
}
