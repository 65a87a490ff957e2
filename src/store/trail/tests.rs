use super::*;
use crate::store::tail::read_tail;
use sshjit_policy::{Actor, Policy};
use std::fs::File;
use std::io::Write as _;

fn grant_action() -> Action<'static> {
    let doc = br#"{"version":1,"grants":[{"id":"g-1","user":"deploy",
        "key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmhXmfyH35TmVDzfJ+0t0DbYFg88Gcc+UtpLZreAJk9 a@test",
        "expires_at":"2026-11-21T11:00:00Z","reason":"INC-1 \"quoted\" \u00e9"}]}"#;
    let p = Policy::parse(doc).unwrap().into_owned();
    Action::Grant {
        grant: p.grants[0].clone(),
        forced: false,
    }
}

fn record(seq: u64, action: Action<'static>, sha: Option<&str>) -> Record<'static> {
    Record {
        seq,
        time: Timestamp::parse_rfc3339("2026-11-21T10:00:00Z").unwrap(),
        actor: Actor::new("bob").unwrap(),
        os_user: "root".into(),
        sudo_user: Some("bob".into()),
        host: "admin-1".into(),
        action,
        serial: sha.map(|_| seq),
        policy_sha256: sha.map(str::to_owned),
        prev: ZERO_HASH.into(),
        hash: None,
    }
}

#[test]
fn records_round_trip_and_carry_their_hash_last() {
    let r = record(1, grant_action(), Some("ab"));
    let (line, hash) = encode(&r).unwrap();
    assert!(line.ends_with(format!(",\"hash\":\"{hash}\"}}\n").as_bytes()));
    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
    let back = decode(&line[..line.len() - 1]).unwrap();
    assert_eq!(back.hash.as_deref(), Some(hash.as_str()));
    assert_eq!(Record { hash: None, ..back }, r);
    let text = String::from_utf8(line.clone()).unwrap();
    for field in [
        "\"seq\":1",
        "\"action\":\"grant\"",
        "\"grant\":{\"id\":\"g-1\"",
        "\"policy_sha256\":\"ab\"",
        "\"prev\":\"0000",
    ] {
        assert!(text.contains(field), "{field} in {text}");
    }
}

#[test]
fn any_change_to_a_record_is_detected() {
    let (line, _) = encode(&record(1, grant_action(), Some("ab"))).unwrap();
    let line = &line[..line.len() - 1];
    for (from, to) in [
        ("\"actor\":\"bob\"", "\"actor\":\"eve\""),
        ("2026-11-21T11:00:00Z", "2027-11-21T11:00:00Z"),
        ("\"seq\":1", "\"seq\":2"),
        ("\"policy_sha256\":\"ab\"", "\"policy_sha256\":\"ac\""),
    ] {
        let text = String::from_utf8(line.to_vec()).unwrap();
        assert!(text.contains(from), "{from}");
        let edited = text.replacen(from, to, 1);
        assert_eq!(
            decode(edited.as_bytes()).unwrap_err(),
            LineError::Altered,
            "{from}"
        );
    }
    // Re-ordering the members changes the bytes, so the hash no longer fits.
    let text = String::from_utf8(line.to_vec()).unwrap();
    let moved = text.replacen("\"os_user\":\"root\",", "", 1).replacen(
        "\"host\":\"admin-1\",",
        "\"host\":\"admin-1\",\"os_user\":\"root\",",
        1,
    );
    assert_eq!(decode(moved.as_bytes()).unwrap_err(), LineError::Altered);
    // The hash must be the last member, and present.
    let without: String = text.rsplit_once(",\"hash\"").unwrap().0.to_owned() + "}";
    assert!(matches!(
        decode(without.as_bytes()),
        Err(LineError::Syntax(_))
    ));
    assert!(matches!(decode(b"{}"), Err(LineError::Syntax(_))));
    assert!(matches!(decode(b"not json"), Err(LineError::Syntax(_))));
}

#[test]
fn every_action_round_trips() {
    let reason = || Reason::new("why").unwrap();
    let p = Policy::parse(
        br#"{"version":1,"grants":[{"id":"g-1","user":"u","principal":"p",
        "expires_at":"2026-11-21T11:00:00Z","reason":"r"}],"revocations":[{"principal":"p"}]}"#,
    )
    .unwrap()
    .into_owned();
    let actions = vec![
        Action::Adopt {
            reason: reason(),
            frozen: true,
            grants: p.grants.clone(),
            revocations: p.revocations.clone(),
        },
        grant_action(),
        Action::Revoke {
            revocation: p.revocations[0].clone(),
        },
        Action::Unrevoke {
            reason: reason(),
            revocations: p.revocations.clone(),
        },
        Action::Freeze { reason: reason() },
        Action::Thaw { reason: reason() },
        Action::Prune {
            older_than: "7d".into(),
            grants: vec![p.grants[0].id.clone()],
            revocations: vec![],
        },
        Action::Repair {
            reason: reason(),
            voids: Some(3),
            discarded_bytes: Some(10),
            discarded_sha256: Some("00".into()),
        },
    ];
    for action in actions {
        let name = action.name();
        let r = record(4, action, None);
        let (line, _) = encode(&r).unwrap();
        let back = decode(&line[..line.len() - 1]).unwrap().into_owned();
        assert_eq!(back.action, r.action, "{name}");
        assert!(
            String::from_utf8_lossy(&line).contains(&format!("\"action\":\"{name}\"")),
            "{name}"
        );
    }
}

#[test]
fn the_trail_sits_beside_the_policy() {
    assert_eq!(
        trail_path(Path::new("/etc/sshjit/policy.json")),
        Path::new("/etc/sshjit/policy.json.audit.jsonl")
    );
}

fn temp_file(name: &str, contents: &[u8]) -> File {
    let path = std::env::temp_dir().join(format!("sshjit-tail-{name}-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    f.write_all(contents).unwrap();
    let _ = std::fs::remove_file(&path);
    f
}

#[test]
fn the_tail_is_read_from_the_end() {
    let mut f = temp_file("small", b"one\ntwo\nthree\npart");
    let t = read_tail(&mut f, 2).unwrap();
    assert_eq!(t.lines, [b"two".to_vec(), b"three".to_vec()]);
    assert_eq!(t.partial, b"part");
    assert_eq!(t.complete_len, 14);

    let mut f = temp_file("one", b"only\n");
    let t = read_tail(&mut f, 2).unwrap();
    assert_eq!(t.lines, [b"only".to_vec()]);
    assert!(t.partial.is_empty());

    let mut f = temp_file("empty", b"");
    let t = read_tail(&mut f, 2).unwrap();
    assert!(t.lines.is_empty() && t.partial.is_empty() && t.complete_len == 0);

    // Lines longer than the first window, and many lines before them.
    let long = vec![b'x'; 200_000];
    let mut contents = b"a\n".repeat(100_000);
    contents.extend_from_slice(&long);
    contents.push(b'\n');
    contents.extend_from_slice(b"last\n");
    let mut f = temp_file("long", &contents);
    let t = read_tail(&mut f, 2).unwrap();
    assert_eq!(t.lines, [long, b"last".to_vec()]);
    assert_eq!(t.complete_len, contents.len() as u64);
}

fn state(sha: &str, serial: u64) -> DocState {
    DocState {
        sha256: sha.into(),
        serial: Some(serial),
    }
}

fn freeze(seq: u64, sha: &str) -> Record<'static> {
    record(
        seq,
        Action::Freeze {
            reason: Reason::new("x").unwrap(),
        },
        Some(sha),
    )
}

#[test]
fn diagnosis_of_each_state() {
    // Nothing yet; a policy without a trail.
    assert_eq!(diagnose(&[], false, None, None), Diagnosis::Fresh);
    assert_eq!(
        diagnose(&[], false, Some(&state("a", 1)), None),
        Diagnosis::Untracked
    );
    // A trail file without a complete record was emptied: sshjit creates
    // a trail with its first record in place.
    for current in [None, Some(&state("a", 1))] {
        let d = diagnose(&[], true, current, None);
        assert!(
            matches!(&d, Diagnosis::Mismatch { explanation } if explanation.contains("emptied")),
            "{d:?}"
        );
    }
    // The head describes the policy.
    let two = [freeze(4, "a"), freeze(5, "b")];
    assert_eq!(
        diagnose(&two, true, Some(&state("b", 5)), None),
        Diagnosis::Consistent
    );
    // Record 5 appended, rename never happened: the temp file proves it.
    assert_eq!(
        diagnose(&two, true, Some(&state("a", 4)), Some("b")),
        Diagnosis::Interrupted { seq: 5 }
    );
    // The first record of a new policy, never renamed into place.
    assert_eq!(
        diagnose(&[freeze(1, "a")], true, None, Some("a")),
        Diagnosis::Interrupted { seq: 1 }
    );
    // Without the temp file the same picture is a restore or a rollback.
    let d = diagnose(&two, true, Some(&state("a", 4)), None);
    assert!(
        matches!(&d, Diagnosis::Mismatch { explanation } if explanation.contains("put back")),
        "{d:?}"
    );
    // A temp file with another document proves nothing either.
    assert!(matches!(
        diagnose(&two, true, Some(&state("a", 4)), Some("c")),
        Diagnosis::Mismatch { .. }
    ));
    // Edited outside sshjit, or records cut from the end.
    let d = diagnose(&two, true, Some(&state("z", 9)), Some("b"));
    assert!(
        matches!(&d, Diagnosis::Mismatch { explanation } if explanation.contains("removed from the end") && explanation.contains("serial 9")),
        "{d:?}"
    );
    // The policy file was deleted.
    assert!(matches!(
        diagnose(&two, true, None, None),
        Diagnosis::Mismatch { .. }
    ));
    // An adopt or repair record is a statement, never an interrupted edit.
    let adopt = record(
        5,
        Action::Repair {
            reason: Reason::new("x").unwrap(),
            voids: None,
            discarded_bytes: None,
            discarded_sha256: None,
        },
        Some("b"),
    );
    assert!(matches!(
        diagnose(
            &[freeze(4, "a"), adopt],
            true,
            Some(&state("a", 4)),
            Some("b")
        ),
        Diagnosis::Mismatch { .. }
    ));
    assert!(Diagnosis::Interrupted { seq: 1 }.is_automatic());
    assert!(
        !Diagnosis::Mismatch {
            explanation: String::new()
        }
        .is_automatic()
    );
}

#[test]
fn every_kind_of_record_reads_back() {
    use sshjit_policy::{Fingerprint, HostName, Username};
    let host = HostName::new("web-1").unwrap();
    let person = Username::new("alice").unwrap();
    let fingerprint =
        Fingerprint::parse("SHA256:X5oprPYTCKn2RSt7zk0vLaTKD2WNGktiH+URhgz06P8").unwrap();
    for action in [
        Action::HostAdd { name: host.clone() },
        Action::HostRemove { name: host },
        Action::PersonAdd {
            person: person.clone(),
            groups: vec![Username::new("admin").unwrap()],
        },
        Action::PersonRemove {
            person: person.clone(),
        },
        Action::PersonKeyAdd {
            person,
            fingerprint,
        },
    ] {
        let record = Record {
            seq: 1,
            time: sshjit_policy::time::Timestamp::from_unix(1_800_000_000, 0),
            actor: sshjit_policy::Actor::new("root").unwrap(),
            os_user: "root".into(),
            sudo_user: None,
            host: "server-1".into(),
            action: action.clone(),
            serial: Some(0),
            policy_sha256: None,
            prev: ZERO_HASH.into(),
            hash: None,
        };
        let (line, hash) = encode(&record).unwrap();
        let back = decode(line.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(back.action, action);
        assert_eq!(back.hash(), hash);
        assert!(!action.is_edit());
    }
}
