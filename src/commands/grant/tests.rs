use super::*;
use crate::commands::keyfile::parse_key_file;
use sshjit_policy::Policy;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmhXmfyH35TmVDzfJ+0t0DbYFg88Gcc+UtpLZreAJk9 a@test";

fn args() -> GrantArgs {
    GrantArgs {
        user: "deploy".into(),
        key: Some("k.pub".into()),
        principal: None,
        duration: Some("1h".into()),
        until: None,
        reason: "INC-1".into(),
        hosts: vec![],
        from: vec![],
        command: None,
        restrict: false,
        not_before: None,
        break_glass: false,
        by: None,
        force: false,
    }
}

fn now() -> Timestamp {
    Timestamp::parse_rfc3339("2026-11-21T10:00:00Z").unwrap()
}

fn key() -> Option<AuthorizedKey<'static>> {
    Some(AuthorizedKey::parse(KEY).unwrap().into_owned())
}

fn check(a: &GrantArgs) -> Result<Plan, Failure> {
    Plan::check(a, key(), now(), Duration::from_secs(24 * 3600))
}

#[test]
fn key_files_hold_exactly_one_public_key() {
    let k = parse_key_file("k.pub", format!("# laptop\n\n{KEY}\n").as_bytes()).unwrap();
    assert_eq!(k.as_str(), KEY);
    for (bytes, why) in [
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn...\n-----END OPENSSH PRIVATE KEY-----\n",
            "PRIVATE key",
        ),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIE...\n", "PRIVATE key"),
        ("PuTTY-User-Key-File-3: ssh-ed25519\n", "PRIVATE key"),
        (
            "---- BEGIN SSH2 PUBLIC KEY ----\nAAAA\n---- END SSH2 PUBLIC KEY ----\n",
            "ssh-keygen -i",
        ),
        ("", "no public key"),
        ("# only a comment\n", "no public key"),
        ("ssh-ed25519 AAAA a\nssh-ed25519 BBBB b\n", "holds 2 keys"),
    ] {
        let e = parse_key_file("k", bytes.as_bytes()).unwrap_err();
        assert_eq!(e.status(), crate::exit::USAGE, "{bytes:?}");
        assert!(e.message.contains(why), "{bytes:?}: {}", e.message);
    }
    let e = parse_key_file("k", format!("restrict {KEY}").as_bytes()).unwrap_err();
    assert!(e.message.contains("options"), "{}", e.message);
    let e = parse_key_file("k", &vec![b'#'; 70_000]).unwrap_err();
    assert!(e.message.contains("larger than"), "{}", e.message);
}

#[test]
fn a_plan_is_checked_against_the_clock_and_the_rules() {
    let p = check(&args()).unwrap();
    assert_eq!(
        p.expires_at,
        Timestamp::parse_rfc3339("2026-11-21T11:00:00Z").unwrap()
    );
    assert_eq!(p.length, Duration::from_secs(3600));
    assert!(!p.forced);

    // --for counts from --not-before.
    let mut a = args();
    a.not_before = Some("2026-11-22T08:00:00Z".into());
    a.duration = Some("2h30m".into());
    let p = check(&a).unwrap();
    assert_eq!(
        p.expires_at,
        Timestamp::parse_rfc3339("2026-11-22T10:30:00Z").unwrap()
    );
    assert_eq!(p.length, Duration::from_secs(9000));

    let refused = |a: &GrantArgs, code: u8, text: &str| {
        let e = check(a).unwrap_err();
        assert_eq!(e.status(), code, "{a:?}: {}", e.message);
        assert!(e.message.contains(text), "{text}: {}", e.message);
    };
    let mut a = args();
    a.duration = None;
    a.until = Some("2026-11-21T09:59:59Z".into());
    refused(&a, crate::exit::DENIED, "already over");
    a.until = Some("2026-11-21T10:00:00Z".into());
    refused(&a, crate::exit::DENIED, "already over");
    a.until = Some("2026-11-21T12:00:00".into());
    refused(&a, crate::exit::USAGE, "no zone");
    let mut a = args();
    a.duration = Some("25h".into());
    refused(
        &a,
        crate::exit::DENIED,
        "longer than max_grant (1d, from the config)",
    );
    a.force = true;
    assert!(check(&a).unwrap().forced);
    let mut a = args();
    a.duration = Some("0s".into());
    refused(&a, crate::exit::USAGE, "longer than 0s");
    a.duration = Some("1 h".into());
    refused(&a, crate::exit::USAGE, "--for");
    let mut a = args();
    a.not_before = Some("2026-11-21T12:00:00Z".into());
    a.duration = None;
    a.until = Some("2026-11-21T11:00:00Z".into());
    refused(&a, crate::exit::USAGE, "is not before the end");
    let mut a = args();
    a.reason = " ".into();
    refused(&a, crate::exit::USAGE, "--reason");
    let mut a = args();
    a.user = "../root".into();
    refused(&a, crate::exit::USAGE, "--user");
    let mut a = args();
    a.hosts = vec!["web,db".into()];
    refused(&a, crate::exit::USAGE, "--host");
    let mut a = args();
    a.from = vec!["10.0.0.0/8 ".into()];
    refused(&a, crate::exit::USAGE, "--from");
    let mut a = args();
    a.command = Some("echo\nid".into());
    refused(&a, crate::exit::USAGE, "--command");
    // A window that started earlier counts only what is left of it.
    let mut a = args();
    a.not_before = Some("2026-11-20T00:00:00Z".into());
    a.duration = None;
    a.until = Some("2026-11-22T09:00:00Z".into());
    assert_eq!(check(&a).unwrap().length, Duration::from_secs(23 * 3600));
}

#[test]
fn ids_are_dated_random_and_free() {
    let p = Policy::empty();
    let id = new_id(&p, now()).unwrap();
    let s = id.as_str();
    assert!(s.starts_with("g-20261121-"), "{s}");
    assert_eq!(s.len(), "g-20261121-7f3a".len());
    assert!(s[11..].bytes().all(|b| b.is_ascii_hexdigit()));
    // Every short id taken (by grants or by revocations): it widens.
    let mut doc = String::from(r#"{"version":1,"grants":["#);
    for i in 0..0x8000u32 {
        if i > 0 {
            doc.push(',');
        }
        doc.push_str(&format!(
            r#"{{"id":"g-20261121-{i:04x}","user":"u","principal":"p","expires_at":"2027-01-01T00:00:00Z","reason":"r"}}"#
        ));
    }
    doc.push_str(r#"],"revocations":["#);
    for i in 0x8000..0x10000u32 {
        if i > 0x8000 {
            doc.push(',');
        }
        doc.push_str(&format!(r#"{{"grant":"g-20261121-{i:04x}"}}"#));
    }
    doc.push_str("]}");
    let full = Policy::parse(doc.as_bytes()).unwrap();
    let id = new_id(&full, now()).unwrap();
    assert_eq!(id.as_str().len(), "g-20261121-7f3a7f3a".len(), "{id}");
}
