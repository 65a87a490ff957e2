//! Golden tests for the lines sshd reads.

use serde_json::json;

use super::*;
use crate::Policy;
use crate::key::samples::{KEY_A, KEY_B};

fn policy(grants: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"version": 1, "grants": grants})).unwrap()
}

fn render_all(bytes: &[u8]) -> String {
    let p = Policy::parse(bytes).unwrap();
    let valid: Vec<_> = p.grants.iter().collect();
    let r = render(&valid, Expiry::Utc, Timestamp::UNIX_EPOCH).unwrap();
    String::from_utf8(r.text).unwrap()
}

#[test]
fn golden_key_lines() {
    let bytes = policy(json!([
        {"id": "g-1", "user": "u", "key": KEY_A, "expires_at": "2026-11-21T11:00:00Z", "reason": "r"},
        {"id": "g-2", "user": "u", "key": KEY_B, "expires_at": "2026-11-21T11:00:00.5+01:00", "reason": "r",
         "from": ["10.0.0.0/8", "!10.1.2.3", "*.example.com"], "command": "echo \"hi\" \\ there", "restrict": true},
    ]));
    let b64_a = KEY_A.split(' ').nth(1).unwrap();
    let b64_b = KEY_B.split(' ').nth(1).unwrap();
    assert_eq!(
        render_all(&bytes),
        format!(
            "expiry-time=\"20261121105959Z\" ssh-ed25519 {b64_a} a@test\n\
             expiry-time=\"20261121095959Z\",from=\"10.0.0.0/8,!10.1.2.3,*.example.com\",command=\"echo \\\"hi\\\" \\ there\",restrict ssh-ed25519 {b64_b} b@test\n"
        )
    );
}

#[test]
fn golden_principal_lines() {
    let bytes = policy(json!([
        {"id": "g-1", "user": "u", "principal": "alice", "expires_at": "2026-11-21T14:00:00Z", "reason": "r"},
        {"id": "g-2", "user": "u", "principal": "ops@corp", "expires_at": "2026-11-21T14:00:00Z", "reason": "r", "restrict": true, "command": "/bin/true"},
    ]));
    assert_eq!(
        render_all(&bytes),
        "expiry-time=\"20261121135959Z\" alice\nexpiry-time=\"20261121135959Z\",command=\"/bin/true\",restrict ops@corp\n"
    );
}

#[test]
fn identical_keys_are_merged_keeping_the_latest_expiry() {
    let key_other_comment = KEY_A.replace("a@test", "other comment");
    let bytes = policy(json!([
        {"id": "g-1", "user": "u", "key": KEY_A, "expires_at": "2026-11-21T11:00:00Z", "reason": "r"},
        {"id": "g-2", "user": "u", "key": key_other_comment, "expires_at": "2026-11-21T12:00:00Z", "reason": "r"},
        {"id": "g-3", "user": "u", "key": KEY_A, "expires_at": "2026-11-21T13:00:00Z", "reason": "r", "restrict": true},
    ]));
    let p = Policy::parse(&bytes).unwrap();
    let valid: Vec<_> = p.grants.iter().collect();
    let r = render(&valid, Expiry::Utc, Timestamp::UNIX_EPOCH).unwrap();
    let text = String::from_utf8(r.text).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.starts_with("expiry-time=\"20261121115959Z\" ssh-ed25519"),
        "{text}"
    );
    assert!(
        text.contains("expiry-time=\"20261121125959Z\",restrict ssh-ed25519"),
        "{text}"
    );
    let ids: Vec<Vec<&str>> = r
        .lines
        .iter()
        .map(|l| l.iter().map(|i| i.as_str()).collect())
        .collect();
    assert_eq!(ids, [vec!["g-1", "g-2"], vec!["g-3"]]);
}

#[test]
fn expiry_is_the_last_whole_second_before_the_end() {
    let t = |s| Timestamp::parse_rfc3339(s).unwrap();
    assert_eq!(
        expiry_value(t("2026-11-21T11:00:00Z"), Expiry::Utc).unwrap(),
        "20261121105959Z"
    );
    assert_eq!(
        expiry_value(t("2026-11-21T11:00:00.999Z"), Expiry::Utc).unwrap(),
        "20261121105959Z"
    );
    assert_eq!(
        expiry_value(t("2027-01-01T00:00:00Z"), Expiry::Utc).unwrap(),
        "20261231235959Z"
    );
}

#[test]
fn quoting_matches_sshd_dequote() {
    // sshd's opt_dequote: reads up to the first `"` not preceded by `\`,
    // turning `\"` into `"` and keeping every other byte.
    fn dequote(s: &[u8]) -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() && s[i] != b'"' {
            if s[i] == b'\\' && s.get(i + 1) == Some(&b'"') {
                i += 1;
            }
            out.push(s[i]);
            i += 1;
        }
        (out, i)
    }
    for v in [
        "plain", "a\"b", "a\\\"b", "\\\\\"", "\"\"", "x \\ y", "\\n", "\"", "\\\"x",
    ] {
        let mut line = Vec::new();
        write_quoted_body(&mut line, v);
        let body_len = line.len();
        line.extend_from_slice(b"\",restrict");
        let (value, consumed) = dequote(&line);
        assert_eq!(
            consumed, body_len,
            "{v:?}: the value must end at our closing quote"
        );
        assert_eq!(value, v.as_bytes(), "{v:?}");
    }
    // The one value that cannot be written: a final backslash would escape
    // the closing quote. Commands are refused for it at validation.
    assert!(crate::Command::new("x\\").is_err());
}

#[test]
fn a_grant_without_a_whole_second_left_is_not_printed() {
    let bytes = policy(json!([
        {"id": "g-1", "user": "u", "key": KEY_A, "expires_at": "2026-11-21T11:00:00.5Z", "reason": "r"},
    ]));
    let p = Policy::parse(&bytes).unwrap();
    let valid: Vec<_> = p.grants.iter().collect();
    let t = |s| Timestamp::parse_rfc3339(s).unwrap();
    // At 10:59:59.9 sshd may still accept until 10:59:59 ends: printed.
    let r = render(&valid, Expiry::Utc, t("2026-11-21T10:59:59.9Z")).unwrap();
    assert_eq!(r.lines.len(), 1);
    // At 11:00:00.2 the grant is valid for 0.3 s more, but sshd would read
    // any whole-second expiry as already past: nothing is printed.
    let r = render(&valid, Expiry::Utc, t("2026-11-21T11:00:00.2Z")).unwrap();
    assert!(r.lines.is_empty() && r.text.is_empty());
}
