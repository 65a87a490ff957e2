//! The change trail as an auditor relies on it: `audit verify` passes on
//! what the commands wrote, and catches an edited, deleted or rewritten
//! record and a truncated tail; interruptions are mended by the next edit;
//! anything else waits for `audit repair`, which never rewrites history.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};

use super::Admin;
use crate::support::*;

/// A trail of six records: init's adopt of the empty policy, then grant,
/// grant, revoke, freeze, thaw.
fn five(name: &str) -> (Admin, Vec<String>) {
    let a = Admin::new(name);
    let g1 = a.grant("deploy", "a.pub", &[]);
    let g2 = a.grant("web", "b.pub", &["--reason", "INC-2 web"]);
    a.ok(&["revoke", "--grant", &g1, "--reason", "done"]);
    a.ok(&["freeze", "--reason", "INC-3"]);
    a.ok(&["thaw", "--reason", "INC-3 over"]);
    assert_eq!(a.changes().len(), 5);
    (a, vec![g1, g2])
}

fn lines(a: &Admin) -> Vec<String> {
    fs::read_to_string(a.trail_path())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(a: &Admin, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(a.trail_path(), text).unwrap();
}

/// `audit verify` must fail and say `what`.
#[track_caller]
fn verify_fails(a: &Admin, what: &[&str]) -> Run {
    let r = a.run(&["audit", "verify"]);
    assert_eq!(r.code, Some(1), "{r:#?}");
    assert_eq!(r.stdout, "", "{r:#?}");
    for w in what {
        assert!(r.stderr.contains(w), "want {w:?} in {}", r.stderr);
    }
    r
}

#[test]
fn verify_passes_on_what_the_commands_wrote() {
    let (a, _) = five("trail-ok");
    let t = a.trail();
    let r = a.ok(&[
        "audit",
        "verify",
        "--anchor",
        t[1]["hash"].as_str().unwrap(),
    ]);
    assert!(r.stdout.contains("6 records from "), "{r:?}");
    assert!(r.stdout.contains("every hash and link intact"), "{r:?}");
    assert!(r.stdout.contains("the head (record 6, thaw by "), "{r:?}");
    assert!(
        r.stdout.contains(&format!(
            "serial 5, sha256 {}",
            t[5]["policy_sha256"].as_str().unwrap()
        )),
        "{r:?}"
    );
    assert!(r.stdout.contains(t[5]["hash"].as_str().unwrap()), "{r:?}");
    // The chain, record by record.
    assert_eq!(t[0]["prev"], "0".repeat(64));
    for i in 1..6 {
        assert_eq!(t[i]["prev"], t[i - 1]["hash"]);
        assert_eq!(t[i]["seq"], i + 1);
    }
    assert!(r.stdout.contains("is in the chain"), "{r:?}");
    // An anchor that is in no record fails.
    let r = a.run(&["audit", "verify", "--anchor", &"ab".repeat(32)]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("no record has the anchor hash"), "{r:?}");
}

#[test]
fn an_edited_middle_record_is_detected() {
    let (a, _) = five("trail-edit");
    let mut l = lines(&a);
    assert!(l[2].contains("INC-2 web"));
    l[2] = l[2].replace("INC-2 web", "INC-2 db");
    write_lines(&a, &l);
    verify_fails(
        &a,
        &[
            ":3: record on line 3: its contents do not match its hash: it was altered",
            "2 good records",
        ],
    );
    // Editing the hash too does not help: the next record names the old one.
    let (a, _) = five("trail-edit-rehash");
    let mut l = lines(&a);
    let mut record = sshjit::store::trail::decode(l[2].as_bytes())
        .unwrap()
        .into_owned();
    let sshjit::store::trail::Action::Grant { grant, .. } = &mut record.action else {
        panic!("record 3 is a grant");
    };
    grant.reason = sshjit_policy::Reason::new("INC-2 db").unwrap();
    let (line, _) = sshjit::store::trail::encode(&record).unwrap();
    l[2] = String::from_utf8(line).unwrap().trim_end().to_owned();
    write_lines(&a, &l);
    verify_fails(&a, &[":4: record 4 does not follow the record before it"]);
}

#[test]
fn a_deleted_record_is_detected() {
    let (a, _) = five("trail-delete");
    let mut l = lines(&a);
    l.remove(3);
    write_lines(&a, &l);
    verify_fails(
        &a,
        &[":4: record 4 is missing before record 5: records were removed"],
    );
    // Two in a row.
    let (a, _) = five("trail-delete-2");
    let mut l = lines(&a);
    l.drain(2..4);
    write_lines(&a, &l);
    verify_fails(&a, &["records 3 to 4 are missing"]);
    // Swapped.
    let (a, _) = five("trail-swap");
    let mut l = lines(&a);
    l.swap(2, 3);
    write_lines(&a, &l);
    verify_fails(&a, &["records were removed"]);
}

#[test]
fn a_truncated_tail_is_detected_and_blocks_edits_until_repaired() {
    let (a, _) = five("trail-truncate");
    let mut l = lines(&a);
    l.pop();
    write_lines(&a, &l);
    verify_fails(
        &a,
        &[
            "the trail's head does not match the policy",
            "the last trail record (5 freeze at ",
            "the policy file is serial 5",
            "records were removed from the end of the trail, or the policy was changed outside sshjit",
        ],
    );
    // Edits refuse, changing nothing, and say what to do.
    let before = a.snapshot();
    let r = a.run(&[
        "grant",
        "--user",
        "u",
        "--key",
        &a.key("a.pub"),
        "--for",
        "1h",
        "--reason",
        "r",
    ]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("does not match the policy"), "{r:?}");
    assert!(
        r.stderr.contains("`sshjit audit repair --reason TEXT`"),
        "{r:?}"
    );
    assert_eq!(a.snapshot(), before);
    // Repair records the policy as it is; history stays as it was.
    let r = a.ok(&[
        "audit",
        "repair",
        "--reason",
        "INC-4: trail restored from backup, one record short",
        "--by",
        "sec",
    ]);
    assert!(
        r.stdout.contains("recorded the policy as it is (record 6)"),
        "{r:?}"
    );
    let t = a.trail();
    assert_eq!(t.len(), 6);
    assert_eq!(t[5]["action"], "adopt");
    assert_eq!(t[5]["actor"], "sec");
    let reason = t[5]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("INC-4: trail restored from backup")
            && reason.contains("found: the last trail record"),
        "{reason}"
    );
    a.ok(&["audit", "verify"]);
    a.grant("u", "a.pub", &[]);
    a.ok(&["audit", "verify"]);
}

#[test]
fn a_policy_changed_outside_sshjit_waits_for_repair() {
    let (a, ids) = five("trail-hand-edit");
    let mut doc = a.doc();
    doc["grants"]
        .as_array_mut()
        .unwrap()
        .push(key_grant("g-by-hand", "root", KEY_A));
    a.dir.policy(&doc);
    verify_fails(&a, &["does not match the policy"]);
    let before = a.snapshot();
    let r = a.run(&["freeze", "--reason", "r"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(a.snapshot(), before);
    let r = a.ok(&["audit", "repair", "--reason", "emergency hand edit by ops"]);
    assert!(r.stdout.contains("recorded the policy as it is"), "{r:?}");
    a.ok(&["audit", "verify"]);
    // The report shows the hand-made grant, found by the adopt record.
    let j: Value = serde_json::from_str(&a.ok(&["report", "--format", "json"]).stdout).unwrap();
    let found = j["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["grant"]["id"] == "g-by-hand")
        .unwrap()
        .clone();
    assert_eq!(found["adopted"], true);
    assert!(
        j["grants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["grant"]["id"] == ids[0].as_str())
    );
    a.ok(&["freeze", "--reason", "r"]);
    // Nothing to repair now: no record is added.
    let n = a.trail().len();
    let r = a.ok(&["audit", "repair", "--reason", "check"]);
    assert!(r.stdout.contains("nothing to repair"), "{r:?}");
    assert_eq!(a.trail().len(), n);
}

#[test]
fn an_incomplete_last_record_is_discarded_by_the_next_edit() {
    let (a, _) = five("trail-torn");
    let full = fs::read(a.trail_path()).unwrap();
    // What a crash in the middle of an append leaves: half a line.
    let extra = br#"{"seq":7,"time":"2026-11-21T10:00:00Z","actor":"bob","os_user":"ro"#;
    let mut torn = full.clone();
    torn.extend_from_slice(extra);
    fs::write(a.trail_path(), &torn).unwrap();
    let n = extra.len();
    verify_fails(
        &a,
        &[
            &format!(
                "the trail ends in an incomplete record ({n} bytes at offset {})",
                full.len()
            ),
            "The next edit discards it on its own",
        ],
    );
    let r = a.run(&[
        "grant",
        "--user",
        "u",
        "--key",
        &a.key("a.pub"),
        "--for",
        "1h",
        "--reason",
        "r",
    ]);
    r.assert_ok();
    assert!(
        r.stderr.contains(&format!("note: trail repaired: an edit stopped while appending its record; its {n} incomplete bytes were discarded")),
        "{r:?}"
    );
    let t = a.trail();
    assert_eq!(t.len(), 8);
    assert_eq!(t[6]["action"], "repair");
    assert_eq!(t[6]["discarded_bytes"], n);
    assert_eq!(
        t[6]["discarded_sha256"],
        json!(sshjit::store::trail::sha256_hex(extra))
    );
    assert_eq!(t[7]["action"], "grant");
    let after = fs::read(a.trail_path()).unwrap();
    assert!(after.starts_with(&full), "the good records are untouched");
    a.ok(&["audit", "verify"]);
    // The same by `audit repair`.
    let mut torn = after.clone();
    torn.extend_from_slice(b"{\"seq\":9");
    fs::write(a.trail_path(), &torn).unwrap();
    let r = a.ok(&["audit", "repair", "--reason", "after a power cut"]);
    assert!(
        r.stdout
            .contains("repaired: after a power cut; an edit stopped while appending"),
        "{r:?}"
    );
    a.ok(&["audit", "verify"]);
}

#[test]
fn an_interrupted_change_is_voided_and_a_rollback_is_not() {
    let (a, _) = five("trail-interrupted");
    let old = fs::read(&a.policy).unwrap();
    let lost = a.grant("root", "a.pub", &["--reason", "never took effect"]);
    let new = fs::read(&a.policy).unwrap();
    // The state an edit killed between its append and its rename leaves:
    // the old policy, the record, and the new document in the temp file.
    write_file(&a.policy, &old, 0o644);
    write_file(&a.dir.join("policy.json.tmp"), &new, 0o644);
    verify_fails(
        &a,
        &["the last change (record 7) was interrupted before it took effect"],
    );
    let r = a.run(&["revoke", "--user", "web", "--reason", "r"]);
    r.assert_ok();
    assert!(
        r.stderr
            .contains("record 7 was appended by an edit that stopped before replacing the policy"),
        "{r:?}"
    );
    let t = a.trail();
    assert_eq!(t[7]["action"], "repair");
    assert_eq!(t[7]["voids"], 7);
    assert_eq!(t[8]["action"], "revoke");
    assert_eq!(
        t[8]["serial"], 6,
        "the voided change's serial is used again"
    );
    a.ok(&["audit", "verify"]);
    assert!(!a.grant_ids().contains(&lost));
    let j: Value = serde_json::from_str(&a.ok(&["report", "--format", "json"]).stdout).unwrap();
    assert!(
        !j["grants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["grant"]["id"] == lost.as_str()),
        "a voided grant never gave access"
    );

    // Without the temp file, the same picture is a restore: an admin decides.
    let old = fs::read(&a.policy).unwrap();
    a.grant("root", "a.pub", &[]);
    write_file(&a.policy, &old, 0o644);
    verify_fails(&a, &["put back as it was before that change"]);
    let r = a.run(&["thaw", "--reason", "r"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    a.ok(&["audit", "repair", "--reason", "restored yesterday's backup"]);
    a.ok(&["audit", "verify"]);
}

#[test]
fn repair_never_rewrites_a_broken_history() {
    let (a, _) = five("trail-broken");
    let mut l = lines(&a);
    l.remove(1);
    write_lines(&a, &l);
    let before = a.snapshot();
    let r = a.run(&["audit", "repair", "--reason", "r"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr
            .contains("Repair does not rewrite history: keep that file as evidence"),
        "{r:?}"
    );
    assert_eq!(a.snapshot(), before);
    // Moved aside as told, a new trail starts from the policy as it is.
    fs::rename(a.trail_path(), a.dir.join("policy.json.audit.jsonl.broken")).unwrap();
    let r = a.run(&["audit", "verify"]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("there is no trail at"), "{r:?}");
    a.ok(&[
        "audit",
        "repair",
        "--reason",
        "trail tampered, kept as evidence in .broken",
    ]);
    let t = a.trail();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0]["action"], "adopt");
    assert_eq!(t[0]["serial"], 5);
    assert_eq!(t[0]["grants"].as_array().unwrap().len(), 2);
    a.ok(&["audit", "verify"]);
}

#[test]
fn report_warns_and_fails_on_a_trail_that_does_not_verify() {
    let (a, ids) = five("trail-report");
    let mut l = lines(&a);
    l[4] = l[4].replace("INC-3", "INC-X");
    write_lines(&a, &l);
    let r = a.run(&["report"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stdout.contains("trail: DOES NOT VERIFY"), "{r:?}");
    assert!(
        r.stderr.contains("warning: the trail does not verify"),
        "{r:?}"
    );
    // What comes before the break is still reported.
    assert!(
        r.stdout.contains(&ids[0]) && r.stdout.contains(&ids[1]),
        "{r:?}"
    );
}

#[test]
fn an_insecure_trail_is_refused() {
    let (a, _) = five("trail-perms");
    fs::set_permissions(a.trail_path(), fs::Permissions::from_mode(0o666)).unwrap();
    let before = a.snapshot();
    let r = a.run(&["freeze", "--reason", "r"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("writable by group or others"), "{r:?}");
    assert_eq!(a.snapshot(), before);
    verify_fails(&a, &["writable by group or others"]);
}

#[test]
fn replaying_the_trail_from_its_start_gives_each_record_its_document() {
    let (a, ids) = five("trail-replay");
    a.ok(&["revoke", "--user", "web", "--reason", "left"]);
    a.ok(&["unrevoke", "--user", "web", "--reason", "back"]);
    a.ok(&[
        "revoke",
        "--key",
        &a.key("b.pub"),
        "--reason",
        "lost laptop",
    ]);
    let g3 = a.grant("ops", "a.pub", &["--for", "1h"]);
    a.ok(&["freeze", "--reason", "INC-4"]);
    let bytes = fs::read(a.trail_path()).unwrap();
    let mut policy = sshjit_policy::Policy::empty();
    let mut seen = 0;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let record = sshjit::store::trail::decode(line.strip_suffix(b"\n").unwrap())
            .unwrap()
            .into_owned();
        record.action.apply(&mut policy).unwrap();
        policy.serial = record.serial;
        let document = policy.to_document().unwrap();
        assert_eq!(
            Some(sshjit::store::trail::sha256_hex(&document)),
            record.policy_sha256,
            "record {} ({})",
            record.seq,
            record.action.name()
        );
        seen += 1;
    }
    assert_eq!(seen, 11);
    assert_eq!(policy.to_document().unwrap(), fs::read(&a.policy).unwrap());
    assert!(policy.grant(&ids[0]).is_some() && policy.grant(&g3).is_some());
    // A record that does not fit the document before it is refused.
    let mut again = policy.clone();
    let grant = policy.grant(&g3).unwrap().clone();
    let replayed = sshjit::store::trail::Action::Grant {
        grant,
        forced: false,
    }
    .apply(&mut again);
    assert!(replayed.is_err(), "{replayed:?}");
}
