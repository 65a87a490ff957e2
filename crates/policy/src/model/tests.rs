//! Parsing, validation and evaluation with a fixed clock.

use serde_json::{Value, json};

use super::*;
use crate::evaluate::{glob_match, refusals};
use crate::key::samples::{FP_A, FP_B, KEY_A, KEY_B};
use crate::*;

const NOW: &str = "2026-11-21T10:30:00Z";

fn now() -> Timestamp {
    Timestamp::parse_rfc3339(NOW).unwrap()
}

fn at(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

fn grant(id: &str, user: &str, key: &str) -> Value {
    json!({
        "id": id, "user": user, "key": key,
        "expires_at": "2026-11-21T11:00:00Z", "reason": "INC-1 test"
    })
}

fn principal_grant(id: &str, user: &str, principal: &str) -> Value {
    json!({
        "id": id, "user": user, "principal": principal,
        "expires_at": "2026-11-21T11:00:00Z", "reason": "on-call"
    })
}

fn doc(grants: Vec<Value>, revocations: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"version": 1, "grants": grants, "revocations": revocations}))
        .unwrap()
}

fn parse_err(bytes: &[u8]) -> PolicyError {
    Policy::parse(bytes).expect_err("document must be refused")
}

fn with(mut g: Value, field: &str, value: Value) -> Value {
    g[field] = value;
    g
}

fn without(mut g: Value, field: &str) -> Value {
    g.as_object_mut().unwrap().remove(field);
    g
}

fn user(s: &'static str) -> Username<'static> {
    Username::new(s).unwrap()
}

fn host(s: &'static str) -> HostName<'static> {
    HostName::new(s).unwrap()
}

fn keys_for<'p, 'a>(policy: &'p Policy<'a>, u: &str, h: &str, t: Timestamp) -> Vec<&'p str> {
    let (u, h) = (
        Username::new(u.to_owned()).unwrap(),
        HostName::new(h.to_owned()).unwrap(),
    );
    let req = Request {
        user: &u,
        host: &h,
        mode: Mode::Keys { offered: None },
    };
    match evaluate(policy, &req, t) {
        Decision::Allow(v) => v.iter().map(|g| g.id.as_str()).collect(),
        Decision::Deny(_) => vec![],
    }
}

#[test]
fn the_design_example_parses() {
    let text = format!(
        r#"{{
  "version": 1, "serial": 7, "frozen": false,
  "grants": [
    {{ "id": "g-20261121-7f3a", "user": "deploy", "key": "{KEY_A}",
       "hosts": ["web-*", "db-1.prod.example.com"],
       "not_before": "2026-11-21T10:00:00Z", "expires_at": "2026-11-21T11:00:00Z",
       "reason": "INC-1234 restart nginx", "granted_by": "bob", "break_glass": false,
       "from": ["10.0.0.0/8", "192.168.1.*"], "command": "/usr/local/bin/restart-nginx",
       "restrict": true }},
    {{ "id": "g-2", "user": "ubuntu", "principal": "alice",
       "expires_at": "2026-11-21T14:00:00Z", "reason": "on-call week 47" }}
  ],
  "revocations": [
    {{ "grant": "g-2", "reason": "left the team", "revoked_at": "2026-11-21T12:00:00Z", "revoked_by": "sec" }},
    {{ "fingerprint": "SHA256:gvf161vkHP4NKOD3jvKd+OHUg5Ys7Q5R+XZNdckCYK8", "reason": "laptop stolen" }},
    {{ "user": "deploy" }},
    {{ "principal": "mallory" }},
    {{ "key_id": "alice@corp-20261121" }},
    {{ "serial": 1234 }}
  ]
}}"#
    );
    let p = Policy::parse(text.as_bytes()).unwrap();
    assert_eq!(p.serial, Some(7));
    assert_eq!(p.grants.len(), 2);
    assert_eq!(p.revocations.len(), 6);
    let g = &p.grants[0];
    assert_eq!(g.hosts.len(), 2);
    assert_eq!(g.from[1].as_str(), "192.168.1.*");
    assert!(g.restrict);
    assert_eq!(p.grants[1].principal().unwrap().as_str(), "alice");
    assert_eq!(p.revocations[5].target, Target::Serial(1234));
    // Strings without escapes are borrowed from the document.
    assert!(g.user.is_borrowed());
}

#[test]
fn round_trips_through_to_document() {
    let bytes = doc(
        vec![
            with(grant("g-1", "deploy", KEY_A), "hosts", json!(["web-*"])),
            principal_grant("g-2", "ubuntu", "alice"),
        ],
        vec![json!({"user": "mallory", "reason": "left"})],
    );
    let p = Policy::parse(&bytes).unwrap();
    let out = p.to_document().unwrap();
    assert_eq!(Policy::parse(&out).unwrap(), p);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("\"key\": \"ssh-ed25519"), "{text}");
    assert!(
        !text.contains("break_glass"),
        "defaults are left out: {text}"
    );
}

#[test]
fn refuses_unknown_fields_everywhere() {
    let e = parse_err(br#"{"version": 1, "grnats": []}"#);
    assert!(e.message.starts_with("unknown field `grnats`"), "{e}");
    assert_eq!(e.position, Some((1, 23)));
    assert!(e.hint().is_some());
    let e = parse_err(&doc(
        vec![with(grant("g-1", "u", KEY_A), "expires", json!("x"))],
        vec![],
    ));
    assert!(e.message.contains("unknown field `expires`"), "{e}");
    let e = parse_err(&doc(vec![], vec![json!({"user": "x", "reson": "typo"})]));
    assert!(e.message.contains("unknown field `reson`"), "{e}");
}

#[test]
fn requires_version_1() {
    assert!(
        parse_err(br#"{"grants": []}"#)
            .message
            .contains("missing field `version`")
    );
    assert!(
        parse_err(br#"{"version": 2}"#)
            .message
            .contains("unsupported version 2")
    );
    assert!(
        parse_err(br#"{"version": "1"}"#)
            .message
            .contains("invalid type")
    );
    assert!(Policy::parse(br#"{"version": 1}"#).is_ok());
}

#[test]
fn refuses_broken_json() {
    for bad in [
        &b""[..],
        b"{",
        b"[]",
        b"null",
        br#"{"version": 1,}"#,
        b"{\"version\": 1} x",
        b"\xff",
    ] {
        assert!(
            Policy::parse(bad).is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let e = parse_err(b"{\n  \"version\": 1,\n  \"grants\": [\n");
    assert!(e.position.is_some());
    assert!(e.hint().unwrap().contains("not valid JSON"), "{e:?}");
}

#[test]
fn grant_requirements() {
    let g = grant("g-1", "deploy", KEY_A);
    let cases: Vec<(Value, &str)> = vec![
        (
            without(g.clone(), "expires_at"),
            "missing field `expires_at`",
        ),
        (without(g.clone(), "reason"), "missing field `reason`"),
        (with(g.clone(), "reason", json!("  ")), "invalid reason"),
        (without(g.clone(), "id"), "missing field `id`"),
        (without(g.clone(), "user"), "missing field `user`"),
        (without(g.clone(), "key"), "exactly one of"),
        (
            with(g.clone(), "principal", json!("alice")),
            "exactly one of",
        ),
        (
            with(g.clone(), "expires_at", json!("2026-11-21T11:00:00")),
            "has no zone",
        ),
        (
            with(g.clone(), "not_before", json!("2026-11-21 10:00:00Z")),
            "not an RFC 3339 time",
        ),
        (
            with(g.clone(), "not_before", json!("2026-11-21T11:00:00Z")),
            "must be earlier",
        ),
        (with(g.clone(), "id", json!("g 1")), "invalid grant id"),
        (
            with(g.clone(), "id", json!("x".repeat(65))),
            "invalid grant id",
        ),
        (with(g.clone(), "user", json!("../x")), "invalid user name"),
        (
            with(g.clone(), "key", json!(format!("restrict {KEY_A}"))),
            "authorized_keys options",
        ),
        (
            with(g.clone(), "key", json!("ssh-ed25519 AAAAgarbage")),
            "invalid key",
        ),
        (
            with(g.clone(), "command", json!("echo\nid")),
            "invalid command",
        ),
        (with(g.clone(), "command", json!("x\\")), "backslash"),
        (
            with(g.clone(), "hosts", json!(["web,db"])),
            "invalid host pattern",
        ),
        (with(g.clone(), "hosts", json!("web-*")), "invalid type"),
        (
            with(g.clone(), "from", json!(["10.0.0.1\""])),
            "invalid from pattern",
        ),
        (with(g.clone(), "break_glass", json!("yes")), "invalid type"),
        (
            with(g.clone(), "granted_by", json!("a\u{7}b")),
            "invalid actor",
        ),
        (
            with(g.clone(), "reason", json!("x".repeat(1025))),
            "too long",
        ),
        (
            with(g.clone(), "hosts", json!(vec!["h"; 257])),
            "more than 256",
        ),
    ];
    for (bad, expect) in cases {
        let e = parse_err(&doc(vec![bad.clone()], vec![]));
        assert!(
            e.to_string().contains(expect),
            "{bad}: {e} (expected {expect:?})"
        );
        assert!(e.position.is_some(), "{e}");
    }
}

#[test]
fn ids_are_unique() {
    let e = parse_err(&doc(
        vec![
            grant("g-1", "a", KEY_A),
            grant("g-2", "a", KEY_A),
            grant("g-1", "b", KEY_B),
        ],
        vec![],
    ));
    assert_eq!(e.entry.as_deref(), Some("grants[2]"));
    assert!(
        e.message
            .contains("duplicate grant id \"g-1\" (first used by grants[0])"),
        "{e}"
    );
}

#[test]
fn revocations_name_exactly_one_thing() {
    for bad in [
        json!({}),
        json!({"reason": "x"}),
        json!({"user": "a", "grant": "g-1"}),
        json!({"serial": 1, "key_id": "k"}),
        json!({"fingerprint": "MD5:aa"}),
        json!({"serial": -1}),
        json!({"serial": "12"}),
        json!({"key_id": ""}),
        json!({"user": "a", "revoked_at": "yesterday"}),
    ] {
        assert!(
            Policy::parse(&doc(vec![], vec![bad.clone()])).is_err(),
            "{bad}"
        );
    }
    let e = parse_err(&doc(vec![], vec![json!({"user": "a", "principal": "b"})]));
    assert!(e.message.contains("exactly one of"), "{e}");
}

#[test]
fn window_is_half_open() {
    let p_bytes = doc(
        vec![with(
            grant("g-1", "deploy", KEY_A),
            "not_before",
            json!("2026-11-21T10:00:00Z"),
        )],
        vec![],
    );
    let p = Policy::parse(&p_bytes).unwrap();
    assert!(keys_for(&p, "deploy", "web-1", at("2026-11-21T09:59:59.999Z")).is_empty());
    assert_eq!(
        keys_for(&p, "deploy", "web-1", at("2026-11-21T10:00:00Z")),
        ["g-1"]
    );
    assert_eq!(
        keys_for(&p, "deploy", "web-1", at("2026-11-21T10:59:59.999999999Z")),
        ["g-1"]
    );
    assert!(keys_for(&p, "deploy", "web-1", at("2026-11-21T11:00:00Z")).is_empty());
}

#[test]
fn only_the_account_named() {
    let bytes = doc(
        vec![grant("g-1", "deploy", KEY_A), grant("g-2", "root", KEY_B)],
        vec![],
    );
    let p = Policy::parse(&bytes).unwrap();
    assert_eq!(keys_for(&p, "deploy", "h", now()), ["g-1"]);
    assert_eq!(keys_for(&p, "root", "h", now()), ["g-2"]);
    assert!(keys_for(&p, "Deploy", "h", now()).is_empty());
    assert!(keys_for(&p, "nobody", "h", now()).is_empty());
}

#[test]
fn host_globs_are_case_insensitive() {
    let bytes = doc(
        vec![with(
            grant("g-1", "deploy", KEY_A),
            "hosts",
            json!(["web-*", "db-?.prod.example.com"]),
        )],
        vec![],
    );
    let p = Policy::parse(&bytes).unwrap();
    for ok in [
        "web-1",
        "WEB-12",
        "web-",
        "db-1.prod.example.com",
        "DB-9.PROD.example.com",
    ] {
        assert_eq!(keys_for(&p, "deploy", ok, now()), ["g-1"], "{ok}");
    }
    for no in [
        "web",
        "xweb-1",
        "db-10.prod.example.com",
        "db-1.prod.example.com.evil",
        "db-1",
    ] {
        assert!(keys_for(&p, "deploy", no, now()).is_empty(), "{no}");
    }
    let bytes = doc(
        vec![with(grant("g-1", "deploy", KEY_A), "hosts", json!([]))],
        vec![],
    );
    let everywhere = Policy::parse(&bytes).unwrap();
    assert_eq!(keys_for(&everywhere, "deploy", "anything", now()), ["g-1"]);
}

#[test]
fn glob_matching() {
    let m = |p: &str, t: &str| glob_match(p.as_bytes(), t.as_bytes());
    assert!(m("*", ""));
    assert!(m("*", "abc"));
    assert!(m("a*c", "abbbc"));
    assert!(m("a*b*c", "aXbYc"));
    assert!(!m("a*b*c", "aXbY"));
    assert!(m("?", "x"));
    assert!(!m("?", ""));
    assert!(m("**.x", "a.x"));
    assert!(!m("abc", "abcd"));
    assert!(m(&"*a".repeat(30), &"a".repeat(100)));
    assert!(!m(&"*a".repeat(30), &"b".repeat(100)));
}

#[test]
fn frozen_lets_only_break_glass_through() {
    let grants = vec![
        grant("g-normal", "deploy", KEY_A),
        with(grant("g-bg", "deploy", KEY_B), "break_glass", json!(true)),
    ];
    let open_bytes = doc(grants.clone(), vec![]);
    let open = Policy::parse(&open_bytes).unwrap();
    assert_eq!(keys_for(&open, "deploy", "h", now()), ["g-normal", "g-bg"]);
    let mut frozen_doc: Value = serde_json::from_slice(&doc(grants, vec![])).unwrap();
    frozen_doc["frozen"] = json!(true);
    let bytes = serde_json::to_vec(&frozen_doc).unwrap();
    let frozen = Policy::parse(&bytes).unwrap();
    assert_eq!(keys_for(&frozen, "deploy", "h", now()), ["g-bg"]);
}

#[test]
fn every_revocation_kind_wins() {
    let grants = vec![
        grant("g-1", "deploy", KEY_A),
        principal_grant("g-2", "deploy", "alice"),
    ];
    let cases = [
        (json!({"grant": "g-1"}), true, false),
        (json!({"grant": "g-2"}), false, true),
        (json!({"user": "deploy"}), true, true),
        (json!({"fingerprint": FP_A}), true, false),
        (json!({"fingerprint": FP_B}), false, false),
        (json!({"principal": "alice"}), false, true),
        (json!({"principal": "bob"}), false, false),
        (json!({"user": "other"}), false, false),
    ];
    let (u, h) = (user("deploy"), host("h"));
    let principals = Mode::Principals {
        key_id: None,
        serial: None,
        fingerprint: None,
    };
    for (rev, kills_key, kills_principal) in cases {
        let bytes = doc(grants.clone(), vec![rev.clone()]);
        let p = Policy::parse(&bytes).unwrap();
        assert_eq!(
            keys_for(&p, "deploy", "h", now()).is_empty(),
            kills_key,
            "{rev}"
        );
        let d = evaluate(
            &p,
            &Request {
                user: &u,
                host: &h,
                mode: principals,
            },
            now(),
        );
        assert_eq!(matches!(d, Decision::Deny(_)), kills_principal, "{rev}");
        if kills_key {
            let why = refusals(
                &p,
                &p.grants[0],
                &Request {
                    user: &u,
                    host: &h,
                    mode: Mode::Keys { offered: None },
                },
                now(),
            );
            assert_eq!(why, [Refusal::Revoked { revocation: 0 }], "{rev}");
        }
    }
}

#[test]
fn certificate_revocations_deny_everything() {
    let bytes = doc(
        vec![principal_grant("g-1", "deploy", "alice")],
        vec![
            json!({"key_id": "alice@corp-1"}),
            json!({"serial": 42}),
            json!({"fingerprint": FP_B}),
        ],
    );
    let p = Policy::parse(&bytes).unwrap();
    let (u, h) = (user("deploy"), host("h"));
    let kid_bad = KeyId::new("alice@corp-1").unwrap();
    let kid_ok = KeyId::new("alice@corp-2").unwrap();
    let fp_b = Fingerprint::parse(FP_B).unwrap();
    let fp_a = Fingerprint::parse(FP_A).unwrap();
    let ask = |key_id, serial, fingerprint| {
        evaluate(
            &p,
            &Request {
                user: &u,
                host: &h,
                mode: Mode::Principals {
                    key_id,
                    serial,
                    fingerprint,
                },
            },
            now(),
        )
    };
    assert!(matches!(
        ask(Some(&kid_ok), Some(7), Some(fp_a)),
        Decision::Allow(_)
    ));
    assert!(matches!(ask(None, None, None), Decision::Allow(_)));
    assert_eq!(
        ask(Some(&kid_bad), Some(7), Some(fp_a)),
        Decision::Deny(Denial::CertificateRevoked { revocation: 0 })
    );
    assert_eq!(
        ask(Some(&kid_ok), Some(42), Some(fp_a)),
        Decision::Deny(Denial::CertificateRevoked { revocation: 1 })
    );
    assert_eq!(
        ask(Some(&kid_ok), Some(7), Some(fp_b)),
        Decision::Deny(Denial::CertificateRevoked { revocation: 2 })
    );
}

#[test]
fn keys_mode_filters_the_offered_key_and_kind() {
    let bytes = doc(
        vec![
            grant("g-a", "deploy", KEY_A),
            grant("g-b", "deploy", KEY_B),
            principal_grant("g-p", "deploy", "alice"),
        ],
        vec![],
    );
    let p = Policy::parse(&bytes).unwrap();
    let (u, h) = (user("deploy"), host("h"));
    let offered = Some(Fingerprint::parse(FP_B).unwrap());
    let d = evaluate(
        &p,
        &Request {
            user: &u,
            host: &h,
            mode: Mode::Keys { offered },
        },
        now(),
    );
    let Decision::Allow(v) = d else {
        panic!("{d:?}")
    };
    assert_eq!(v.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(), ["g-b"]);
    let why = refusals(
        &p,
        &p.grants[0],
        &Request {
            user: &u,
            host: &h,
            mode: Mode::Keys { offered },
        },
        now(),
    );
    assert_eq!(why, [Refusal::OtherKey]);
    let why = refusals(
        &p,
        &p.grants[2],
        &Request {
            user: &u,
            host: &h,
            mode: Mode::Keys { offered: None },
        },
        now(),
    );
    assert_eq!(why, [Refusal::OtherKind]);
}

#[test]
fn refusals_lists_every_reason() {
    let mut v: Value = serde_json::from_slice(&doc(
        vec![with(
            grant("g-1", "deploy", KEY_A),
            "hosts",
            json!(["db-*"]),
        )],
        vec![json!({"grant": "g-1"}), json!({"user": "deploy"})],
    ))
    .unwrap();
    v["frozen"] = json!(true);
    let bytes = serde_json::to_vec(&v).unwrap();
    let p = Policy::parse(&bytes).unwrap();
    let (u, h) = (user("deploy"), host("web-1"));
    let why = refusals(
        &p,
        &p.grants[0],
        &Request {
            user: &u,
            host: &h,
            mode: Mode::Keys { offered: None },
        },
        at("2026-12-01T00:00:00Z"),
    );
    assert_eq!(
        why,
        [
            Refusal::OtherHost,
            Refusal::Expired,
            Refusal::Frozen,
            Refusal::Revoked { revocation: 0 }
        ]
    );
}

#[test]
fn bounds_are_enforced() {
    let big = vec![b' '; MAX_DOCUMENT_BYTES + 1];
    assert!(parse_err(&big).message.contains("larger than"));
}

#[test]
fn every_refusal_has_its_kind_and_the_hint_follows_the_kind() {
    let g = grant("g-1", "deploy", KEY_A);
    let grants = |g: Value| doc(vec![g], vec![]);
    let cases: Vec<(Vec<u8>, ErrorKind, Option<&str>)> = vec![
        (b"{\"version\": 1,".to_vec(), ErrorKind::Syntax, Some("not valid JSON")),
        (b"{\"version\": 1} x".to_vec(), ErrorKind::Syntax, Some("not valid JSON")),
        (br#"{"version": "1"}"#.to_vec(), ErrorKind::WrongType, None),
        (b"[]".to_vec(), ErrorKind::WrongType, None),
        (br#"{"version": 1, "grnats": []}"#.to_vec(), ErrorKind::UnknownField, Some("unknown fields are refused")),
        (grants(with(g.clone(), "expires", json!("x"))), ErrorKind::UnknownField, Some("misspelt")),
        (grants(without(g.clone(), "expires_at")), ErrorKind::MissingField("expires_at"), Some("every grant needs an end")),
        (grants(without(g.clone(), "reason")), ErrorKind::MissingField("reason"), Some("every grant needs a reason")),
        (grants(without(g.clone(), "user")), ErrorKind::MissingField("user"), Some("add the missing field")),
        (br#"{"grants": []}"#.to_vec(), ErrorKind::MissingField("version"), Some("add the missing field")),
        (br#"{"version": 1, "frozen": true, "frozen": false}"#.to_vec(), ErrorKind::DuplicateField, Some("keep one")),
        (
            format!(r#"{{"version": 1, "grants": [{{"id": "g", "id": "h", "user": "u", "key": "{KEY_A}", "expires_at": "2026-11-21T11:00:00Z", "reason": "r"}}]}}"#).into_bytes(),
            ErrorKind::DuplicateField,
            Some("keep one"),
        ),
        (grants(with(g.clone(), "expires_at", json!("2026-11-21T11:00:00"))), ErrorKind::TimeWithoutZone, Some("end the time with Z")),
        (grants(with(g.clone(), "expires_at", json!("soon"))), ErrorKind::InvalidValue, None),
        (grants(with(g.clone(), "key", json!(format!("restrict {KEY_A}")))), ErrorKind::KeyOptions, Some("\"restrict\" fields")),
        (grants(with(g.clone(), "key", json!("ssh-dss AAAA"))), ErrorKind::InvalidValue, None),
        (grants(with(g.clone(), "user", json!("a b"))), ErrorKind::InvalidValue, None),
        (grants(with(g.clone(), "hosts", json!(["ok", "bad host"]))), ErrorKind::InvalidValue, None),
        (grants(with(g.clone(), "principal", json!("alice"))), ErrorKind::Selector, Some("one selector each")),
        (doc(vec![], vec![json!({"user": "a", "principal": "b"})]), ErrorKind::Selector, Some("one selector each")),
        (grants(with(g.clone(), "not_before", json!("2026-11-21T11:00:00Z"))), ErrorKind::EmptyWindow, None),
        (doc(vec![g.clone(), g.clone()], vec![]), ErrorKind::DuplicateId, Some("its own id")),
        (br#"{"version": 2}"#.to_vec(), ErrorKind::Version, None),
        (grants(with(g.clone(), "hosts", json!(vec!["h"; 257]))), ErrorKind::TooLarge, None),
        (grants(with(g.clone(), "break_glass", json!("yes"))), ErrorKind::WrongType, None),
    ];
    for (bytes, kind, hint) in cases {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let e = parse_err(&bytes);
        assert_eq!(e.kind, kind, "{text}: {e}");
        match hint {
            Some(h) => assert!(
                e.hint().is_some_and(|got| got.contains(h)),
                "{text}: {e}: {:?}",
                e.hint()
            ),
            None => assert_eq!(e.hint(), None, "{text}: {e}"),
        }
    }
}

#[test]
fn optional_fields_take_null_and_a_field_given_twice_counts_its_null() {
    let mut g = grant("g-1", "deploy", KEY_A);
    g["not_before"] = Value::Null;
    g["granted_by"] = Value::Null;
    g["principal"] = Value::Null;
    let bytes = doc(vec![g], vec![json!({"user": "x", "grant": null})]);
    let p = Policy::parse(&bytes).unwrap();
    assert!(p.grants[0].not_before.is_none() && p.grants[0].granted_by.is_none());
    assert!(matches!(p.revocations[0].target, Target::User(_)));
    let e = parse_err(br#"{"version": 1, "serial": null, "serial": 3}"#);
    assert_eq!(e.kind, ErrorKind::DuplicateField, "{e}");
    assert!(
        Policy::parse(br#"{"version": 1, "serial": null}"#)
            .unwrap()
            .serial
            .is_none()
    );
    // Strings without escapes still point into the document.
    let bytes = doc(vec![grant("g-1", "deploy", KEY_A)], vec![]);
    let p = Policy::parse(&bytes).unwrap();
    assert!(p.grants[0].id.is_borrowed() && p.grants[0].reason.is_borrowed());
}

#[test]
fn a_grant_written_as_a_json_array_is_refused() {
    let e = parse_err(
        format!(r#"{{"version": 1, "grants": [["g-1", "deploy", "{KEY_A}"]]}}"#).as_bytes(),
    );
    assert_eq!(e.kind, ErrorKind::WrongType, "{e}");
}
