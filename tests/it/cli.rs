//! Process-level tests: the built binary, run as sshd runs it, against
//! policies in temporary directories. Every bad input must deny: a non-zero
//! exit and nothing on stdout.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};

use serde_json::{Value, json};

use crate::support::*;

/// Runs `keys USER` against `doc` with logs on stderr.
fn keys(dir: &TestDir, doc: &Value, user: &str) -> Run {
    Globals::new(dir.policy(doc), dir.config(""))
        .host("web-1")
        .run(&["keys", user])
}

fn keys_raw(dir: &TestDir, document: &str, user: &str) -> Run {
    Globals::new(dir.write("policy.json", document), dir.config(""))
        .host("web-1")
        .run(&["keys", user])
}

fn b64(key: &str) -> &str {
    key.split(' ').nth(1).unwrap()
}

#[test]
fn prints_valid_keys_with_options() {
    let dir = TestDir::new("golden");
    let mut g = key_grant("g-1", "deploy", KEY_A);
    g["expires_at"] = json!("2099-06-30T12:00:00Z");
    g["from"] = json!(["10.0.0.0/8", "127.0.0.1"]);
    g["command"] = json!("echo \"ok\"");
    g["restrict"] = json!(true);
    let mut h = key_grant("g-2", "deploy", KEY_B);
    h["expires_at"] = json!("2099-06-30T12:00:00Z");
    h["hosts"] = json!(["WEB-*"]);
    let r = Globals::new(
        dir.policy(&doc(vec![g, h, key_grant("g-3", "other", KEY_A)], vec![])),
        dir.config("expiry_time = \"utc\""),
    )
    .host("web-1")
    .run(&["keys", "deploy"]);
    r.assert_ok();
    assert_eq!(
        r.stdout,
        format!(
            "expiry-time=\"20990630115959Z\",from=\"10.0.0.0/8,127.0.0.1\",command=\"echo \\\"ok\\\"\",restrict ssh-ed25519 {} a@test\n\
             expiry-time=\"20990630115959Z\" ssh-ed25519 {} b@test\n",
            b64(KEY_A),
            b64(KEY_B)
        )
    );
    // One decision line, on stderr here because the config names no socket.
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", r.stderr);
    let l = lines[0];
    for field in [
        "mode=keys",
        "user=deploy",
        "host=web-1",
        "matched=g-1,g-2",
        "lines=2",
        "outcome=allow",
        "policy_serial=1",
        "latency_us=",
    ] {
        assert!(l.contains(field), "{field} missing in {l}");
    }
}

#[test]
fn prints_principals() {
    let dir = TestDir::new("principals");
    let d = doc(
        vec![
            principal_grant("g-1", "deploy", "alice"),
            principal_grant("g-2", "deploy", "ops"),
            key_grant("g-3", "deploy", KEY_A),
        ],
        vec![],
    );
    let r = Globals::new(dir.policy(&d), dir.config(""))
        .host("web-1")
        .run(&[
            "principals",
            "deploy",
            "--key-id",
            "alice@corp",
            "--serial",
            "7",
            "--fingerprint",
            FP_A,
        ]);
    r.assert_ok();
    let names: Vec<&str> = r
        .stdout
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(names, ["alice", "ops"]);
    assert!(
        r.stdout.lines().all(|l| l.starts_with("expiry-time=\"")),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("key_id=alice@corp cert_serial=7"),
        "{}",
        r.stderr
    );
}

#[test]
fn nothing_valid_is_success_with_empty_output() {
    let dir = TestDir::new("empty");
    let mut expired = key_grant("g-1", "deploy", KEY_A);
    expired["expires_at"] = json!(rfc3339_in(-10));
    let r = keys(&dir, &doc(vec![expired], vec![]), "deploy");
    r.assert_ok();
    assert_eq!(r.stdout, "");
    assert!(
        r.stderr.contains("outcome=none reason=no-valid-grant"),
        "{}",
        r.stderr
    );
}

#[test]
fn global_options_go_before_or_after_the_subcommand() {
    let dir = TestDir::new("globals");
    let policy = dir.policy(&doc(vec![key_grant("g-1", "deploy", KEY_A)], vec![]));
    let config = dir.config("");
    let (p, c) = (policy.to_str().unwrap(), config.to_str().unwrap());
    let a = run(&[
        "--policy", p, "--config", c, "--host", "web-1", "keys", "deploy",
    ]);
    let b = run(&[
        "keys", "deploy", "--policy", p, "--config", c, "--host", "web-1",
    ]);
    let m = run(&[
        "--policy", p, "keys", "--host", "web-1", "deploy", "--config", c,
    ]);
    a.assert_ok();
    assert!(a.stdout.contains(b64(KEY_A)));
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(a.stdout, m.stdout);
}

#[test]
fn the_config_supplies_source_and_host_and_flags_override_it() {
    let dir = TestDir::new("config");
    let mut g = key_grant("g-1", "deploy", KEY_A);
    g["hosts"] = json!(["db-*"]);
    let policy = dir.policy(&doc(vec![g], vec![]));
    let config = dir.config(&format!(
        "source = \"{}\"\nhost = \"db-7\"",
        policy.display()
    ));
    let c = config.to_str().unwrap();
    let r = run(&["keys", "deploy", "--config", c]);
    r.assert_ok();
    assert!(r.stdout.contains(b64(KEY_A)), "{r:?}");
    let r = run(&["keys", "deploy", "--config", c, "--host", "web-1"]);
    r.assert_ok();
    assert_eq!(r.stdout, "", "--host overrides the config");
    let other = dir.write(
        "other.json",
        serde_json::to_vec(&doc(vec![], vec![])).unwrap(),
    );
    let r = Globals::new(&other, &config).run(&["keys", "deploy"]);
    r.assert_ok();
    assert_eq!(r.stdout, "", "--policy overrides the config");
}

#[test]
fn bad_documents_deny() {
    let dir = TestDir::new("bad-docs");
    let good = key_grant("g-1", "deploy", KEY_A);
    let with = |field: &str, value: Value| {
        let mut g = good.clone();
        g[field] = value;
        doc(vec![g], vec![])
    };
    let without = |field: &str| {
        let mut g = good.clone();
        g.as_object_mut().unwrap().remove(field);
        doc(vec![g], vec![])
    };
    let cases: Vec<(&str, Value)> = vec![
        ("unknown field", with("expiry", json!("x"))),
        (
            "unknown field in a revocation",
            doc(
                vec![good.clone()],
                vec![json!({"grant": "g-9", "reasn": "typo"})],
            ),
        ),
        ("missing expiry", without("expires_at")),
        ("missing reason", without("reason")),
        (
            "zone-less time",
            with("expires_at", json!("2099-01-01T00:00:00")),
        ),
        (
            "key with options",
            with("key", json!(format!("restrict,command=\"id\" {KEY_A}"))),
        ),
        (
            "newline in a command",
            with("command", json!("echo ok\nid")),
        ),
        (
            "garbage key",
            with("key", json!("ssh-ed25519 bm90IGEga2V5")),
        ),
        ("key and principal", with("principal", json!("alice"))),
        (
            "two selectors",
            doc(
                vec![good.clone()],
                vec![json!({"grant": "g-1", "user": "deploy"})],
            ),
        ),
        (
            "no selector",
            doc(vec![good.clone()], vec![json!({"reason": "x"})]),
        ),
        (
            "duplicate ids",
            doc(vec![good.clone(), good.clone()], vec![]),
        ),
        ("bad user in a grant", with("user", json!("../x"))),
        ("comma in from", with("from", json!(["10.0.0.1,0.0.0.0/0"]))),
        ("quote in a host glob", with("hosts", json!(["web\""]))),
        ("wrong version", json!({"version": 2, "grants": []})),
    ];
    for (what, d) in cases {
        let r = keys(&dir, &d, "deploy");
        r.assert_denied();
        assert_eq!(r.code, Some(1), "{what}: {r:?}");
        assert!(r.stderr.contains("outcome=error"), "{what}: {}", r.stderr);
    }
    for (what, text) in [
        ("syntax error", "{\"version\": 1, \"grants\": [}"),
        ("empty file", ""),
        ("trailing garbage", "{\"version\": 1} {}"),
        ("not UTF-8", "{\"version\": 1, \"grants\": [\"\u{fffd}\"]}"),
    ] {
        keys_raw(&dir, text, "deploy").assert_denied();
        let _ = what;
    }
    let invalid_utf8 = dir.write("bin.json", b"{\"version\": 1, \"serial\": \xff}");
    Globals::new(&invalid_utf8, dir.config(""))
        .run(&["keys", "deploy"])
        .assert_denied();
}

#[test]
fn one_bad_entry_denies_everyone() {
    let dir = TestDir::new("one-bad");
    let mut bad = key_grant("g-2", "other", KEY_B);
    bad["expires_at"] = json!("tomorrow");
    let r = keys(
        &dir,
        &doc(vec![key_grant("g-1", "deploy", KEY_A), bad], vec![]),
        "deploy",
    );
    r.assert_denied();
    assert!(r.stderr.contains("not an RFC 3339 time"), "{}", r.stderr);
}

#[test]
fn bad_arguments_deny() {
    let dir = TestDir::new("bad-args");
    let globals = Globals::new(
        dir.policy(&doc(vec![key_grant("g-1", "deploy", KEY_A)], vec![])),
        dir.config(""),
    );
    let web_1 = globals.host("web-1");
    for user in [
        "../x",
        "a b",
        "",
        "-x",
        "--",
        "deploy\n",
        "de\"ploy",
        "dep,loy",
        "x/../deploy",
    ] {
        let r = web_1.run(&["keys", user]);
        r.assert_denied();
        assert_eq!(r.code, Some(2), "{user:?}: {r:?}");
    }
    for (flag, value) in [
        ("--serial", "-1"),
        ("--serial", "12a"),
        ("--serial", "18446744073709551616"),
        ("--serial", ""),
        ("--fingerprint", "MD5:aa:bb"),
        ("--fingerprint", "SHA256:short"),
        ("--key-id", "a\nb"),
    ] {
        let r = web_1.run(&["principals", "deploy", flag, value]);
        r.assert_denied();
        assert_eq!(r.code, Some(2), "{flag} {value:?}: {r:?}");
    }
    for host in ["web 1", "-web", "web/1", ""] {
        globals.host(host).run(&["keys", "deploy"]).assert_denied();
    }
    // Missing USER, unknown flags, keys with certificate flags.
    for args in [
        vec!["keys"],
        vec!["keys", "deploy", "--bogus"],
        vec!["keys", "deploy", "--serial", "1"],
        vec!["keys", "deploy", "extra"],
    ] {
        globals.run(&args).assert_denied();
    }
    // An empty key ID is what sshd's %i gives for a certificate without one.
    let r = web_1.run(&["principals", "deploy", "--key-id", ""]);
    r.assert_ok();
}

#[test]
fn config_problems_deny() {
    let dir = TestDir::new("bad-config");
    let policy = dir.policy(&doc(vec![key_grant("g-1", "deploy", KEY_A)], vec![]));
    for (what, extra) in [
        ("unknown key", "sauce = \"/etc/sshjit/policy.json\""),
        ("relative source", "source = \"policy.json\""),
        ("bad timeout", "timeout = \"forever\""),
        ("syntax", "source = "),
    ] {
        let c = dir.config(extra);
        let r = Globals::new(&policy, &c).run(&["keys", "deploy"]);
        r.assert_denied();
        assert!(r.stderr.contains("config"), "{what}: {}", r.stderr);
    }
    let missing = dir.join("nope.toml");
    Globals::new(&policy, &missing)
        .run(&["keys", "deploy"])
        .assert_denied();
    let c = dir.config("");
    fs::set_permissions(&c, fs::Permissions::from_mode(0o666)).unwrap();
    let r = Globals::new(&policy, &c).run(&["keys", "deploy"]);
    r.assert_denied();
    assert!(
        r.stderr.contains("writable by group or others"),
        "{}",
        r.stderr
    );
}

/// Runs keys against whatever `policy` path is, with a good config.
fn keys_at(dir: &TestDir, policy: &std::path::Path) -> Run {
    Globals::new(policy, dir.config(""))
        .host("h")
        .run(&["keys", "deploy"])
}

#[test]
fn permission_refusals() {
    let dir = TestDir::new("perms");
    let bytes = serde_json::to_vec(&doc(vec![key_grant("g-1", "deploy", KEY_A)], vec![])).unwrap();
    let good = dir.write("good.json", &bytes);
    keys_at(&dir, &good).assert_ok();

    for mode in [0o664, 0o646, 0o666, 0o622] {
        let p = dir.write("mode.json", &bytes);
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        let r = keys_at(&dir, &p);
        r.assert_denied();
        assert!(
            r.stderr.contains("writable by group or others"),
            "{mode:o}: {}",
            r.stderr
        );
    }

    // Owned by someone who is neither root nor us.
    if sshjit::system::euid() == 0 {
        let p = dir.write("owned.json", &bytes);
        std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
        let r = keys_at(&dir, &p);
        r.assert_denied();
        assert!(r.stderr.contains("owned by uid 65534"), "{}", r.stderr);
    }

    // A parent directory writable by others.
    let loose = dir.join("loose");
    fs::create_dir(&loose).unwrap();
    fs::write(loose.join("policy.json"), &bytes).unwrap();
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o777)).unwrap();
    let r = keys_at(&dir, &loose.join("policy.json"));
    r.assert_denied();
    assert!(r.stderr.contains("directory is writable"), "{}", r.stderr);
    // Sticky bit is no excuse (sshd's rule too).
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o1777)).unwrap();
    keys_at(&dir, &loose.join("policy.json")).assert_denied();

    // A symlink to a good file in a good directory is fine...
    let link = dir.join("link.json");
    symlink(&good, &link).unwrap();
    keys_at(&dir, &link).assert_ok();
    // ...to a file in a loose directory is not...
    let bad_link = dir.join("bad-link.json");
    symlink(loose.join("policy.json"), &bad_link).unwrap();
    keys_at(&dir, &bad_link).assert_denied();
    // ...nor is a good target reached through a link in a loose directory.
    let link_in_loose = loose.join("to-good.json");
    symlink(&good, &link_in_loose).unwrap();
    keys_at(&dir, &link_in_loose).assert_denied();
    // A link to a writable file.
    let w = dir.write("writable.json", &bytes);
    fs::set_permissions(&w, fs::Permissions::from_mode(0o666)).unwrap();
    let wl = dir.join("writable-link.json");
    symlink(&w, &wl).unwrap();
    keys_at(&dir, &wl).assert_denied();

    // Not a regular file: a directory, a FIFO (must not hang), /dev/null.
    keys_at(&dir, &dir.path).assert_denied();
    let fifo = dir.join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    fs::set_permissions(&fifo, fs::Permissions::from_mode(0o644)).unwrap();
    let r = keys_at(&dir, &fifo);
    r.assert_denied();
    assert!(r.stderr.contains("not a regular file"), "{}", r.stderr);
    keys_at(&dir, std::path::Path::new("/dev/null")).assert_denied();

    // Missing.
    let r = keys_at(&dir, &dir.join("missing.json"));
    r.assert_denied();
    assert!(r.stderr.contains("no such file"), "{}", r.stderr);

    // Too large (sparse: no disk used).
    let big = dir.write("big.json", b"");
    fs::OpenOptions::new()
        .write(true)
        .open(&big)
        .unwrap()
        .set_len(64 * 1024 * 1024 + 1)
        .unwrap();
    let r = keys_at(&dir, &big);
    r.assert_denied();
    assert!(r.stderr.contains("larger than"), "{}", r.stderr);
}

#[test]
fn every_revocation_kind_denies() {
    let dir = TestDir::new("revocations");
    let grants = vec![
        key_grant("g-1", "deploy", KEY_A),
        principal_grant("g-2", "deploy", "alice"),
    ];
    let config = dir.config("");
    for (rev, key_gone, principal_gone) in [
        (json!({"grant": "g-1"}), true, false),
        (json!({"grant": "g-2"}), false, true),
        (json!({"fingerprint": FP_A}), true, false),
        (json!({"user": "deploy"}), true, true),
        (json!({"principal": "alice"}), false, true),
        (json!({"key_id": "cert-1"}), false, true),
        (json!({"serial": 99}), false, true),
    ] {
        let globals =
            Globals::new(dir.policy(&doc(grants.clone(), vec![rev.clone()])), &config).host("h");
        let k = globals.run(&["keys", "deploy"]);
        k.assert_ok();
        assert_eq!(k.stdout.is_empty(), key_gone, "{rev}: {k:?}");
        let pr = globals.run(&[
            "principals",
            "deploy",
            "--key-id",
            "cert-1",
            "--serial",
            "99",
        ]);
        pr.assert_ok();
        assert_eq!(pr.stdout.is_empty(), principal_gone, "{rev}: {pr:?}");
    }
}

#[test]
fn frozen_passes_only_break_glass() {
    let dir = TestDir::new("frozen");
    let mut bg = key_grant("g-bg", "deploy", KEY_B);
    bg["break_glass"] = json!(true);
    let mut d = doc(vec![key_grant("g-1", "deploy", KEY_A), bg], vec![]);
    d["frozen"] = json!(true);
    let r = keys(&dir, &d, "deploy");
    r.assert_ok();
    assert!(!r.stdout.contains(b64(KEY_A)));
    assert!(r.stdout.contains(b64(KEY_B)));
    assert!(
        r.stderr.contains("frozen=true") && r.stderr.contains("break_glass=g-bg"),
        "{}",
        r.stderr
    );
}

#[test]
fn offered_fingerprint_selects_one_key() {
    let dir = TestDir::new("offered");
    let policy = dir.policy(&doc(
        vec![
            key_grant("g-1", "deploy", KEY_A),
            key_grant("g-2", "deploy", KEY_B),
        ],
        vec![],
    ));
    let r = Globals::new(policy, dir.config("")).host("h").run(&[
        "keys",
        "deploy",
        "--fingerprint",
        FP_B,
    ]);
    r.assert_ok();
    assert_eq!(r.stdout.lines().count(), 1);
    assert!(r.stdout.contains(b64(KEY_B)));
    assert!(r.stderr.contains(&format!("fp={FP_B}")), "{}", r.stderr);
}

#[test]
fn expiry_time_local_is_what_sshd_reads_back() {
    let dir = TestDir::new("local-time");
    let mut g = key_grant("g-1", "deploy", KEY_A);
    g["expires_at"] = json!("2099-11-21T11:00:00Z");
    let globals = Globals::new(dir.policy(&doc(vec![g], vec![])), dir.config("")).host("h");
    // sshd reads a zone-less expiry-time with mktime and tm_isdst = 0, i.e.
    // as standard time: in Sydney's summer (UTC+11, standard +10) the value
    // must be UTC+10; in Kathmandu (+05:45, no DST) UTC+05:45.
    for (tz, expected) in [
        ("UTC", "20991121105959"),
        ("Australia/Sydney", "20991121205959"),
        ("Asia/Kathmandu", "20991121164459"),
        ("America/New_York", "20991121055959"),
    ] {
        let mut c = globals.cmd(&["keys", "deploy"]);
        c.env("TZ", tz);
        let r = run_cmd(c);
        r.assert_ok();
        assert!(
            r.stdout
                .starts_with(&format!("expiry-time=\"{expected}\" ")),
            "{tz}: {}",
            r.stdout
        );
    }
}

#[test]
fn a_closed_stdout_is_an_error_not_a_crash() {
    let dir = TestDir::new("epipe");
    let globals = Globals::new(
        dir.policy(&doc(vec![key_grant("g-1", "deploy", KEY_A)], vec![])),
        dir.config(""),
    )
    .host("h");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut c = globals.cmd(&["keys", "deploy"]);
    c.stdout(writer).stderr(std::process::Stdio::piped());
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("outcome=error") && stderr.contains("writing to sshd"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn hostile_values_are_escaped_in_the_log() {
    let dir = TestDir::new("log-escape");
    let globals = Globals::new(dir.policy(&doc(vec![], vec![])), dir.config(""));
    let r = globals
        .host("h")
        .run(&["principals", "deploy", "--key-id", "x\" outcome=allow"]);
    r.assert_ok();
    assert!(
        r.stderr.contains("key_id=\"x\\\" outcome=allow\""),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.matches("outcome=").count(), 2, "{}", r.stderr);
    let r = globals.run(&["keys", "bad\nuser"]);
    r.assert_denied();
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("user=\"bad\\x0auser\""), "{}", r.stderr);
}

#[test]
fn check_reports_location_and_hint() {
    let dir = TestDir::new("check");
    let good = dir.policy(&doc(
        vec![key_grant("g-1", "deploy", KEY_A)],
        vec![json!({"grant": "g-gone"})],
    ));
    let config = dir.config("");
    let r = Globals::new(&good, &config).run(&["check"]);
    r.assert_ok();
    assert!(r.stdout.starts_with("ok: "), "{}", r.stdout);
    assert!(
        r.stdout.contains("1 grants (1 in their window"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("warning: revocations[0] names grant g-gone"),
        "{}",
        r.stdout
    );

    let bad = dir.write("bad.json", "{\n  \"version\": 1,\n  \"grants\": [\n    {\"id\": \"g-1\", \"user\": \"deploy\", \"principal\": \"a\",\n     \"expires_at\": \"2099-01-01T00:00:00\", \"reason\": \"x\"}\n  ]\n}\n");
    let r = Globals::new(&bad, &config).run(&["check"]);
    r.assert_denied();
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("bad.json:5:"), "{}", r.stderr);
    assert!(r.stderr.contains("has no zone"), "{}", r.stderr);
    assert!(
        r.stderr.contains("hint: end the time with Z"),
        "{}",
        r.stderr
    );

    let typo = dir.write(
        "typo.json",
        "{\"version\": 1, \"revocations\": [{\"user\": \"x\", \"reasn\": \"y\"}]}",
    );
    let r = Globals::new(&typo, &config).run(&["check"]);
    r.assert_denied();
    assert!(r.stderr.contains("unknown field `reasn`"), "{}", r.stderr);
    assert!(
        r.stderr.contains("hint: remove or correct that field"),
        "{}",
        r.stderr
    );
}

#[test]
fn explain_says_why() {
    let dir = TestDir::new("explain");
    let mut expired = key_grant("g-old", "deploy", KEY_B);
    expired["expires_at"] = json!("2026-01-01T00:00:00Z");
    expired["not_before"] = json!("2025-12-01T00:00:00Z");
    let mut elsewhere = key_grant("g-db", "deploy", KEY_A);
    elsewhere["hosts"] = json!(["db-*"]);
    let d = doc(
        vec![
            key_grant("g-ok", "deploy", KEY_A),
            expired,
            elsewhere,
            principal_grant("g-p", "deploy", "alice"),
        ],
        vec![json!({"principal": "alice", "reason": "rotated", "revoked_by": "sec"})],
    );
    let globals = Globals::new(dir.policy(&d), dir.config(""));
    let r = globals.host("web-1").run(&["explain", "deploy"]);
    r.assert_ok();
    let o = &r.stdout;
    assert!(o.contains("grant g-ok: key ssh-ed25519"), "{o}");
    assert!(o.contains("VALID until"), "{o}");
    assert!(o.contains("expired at 2026-01-01T00:00:00Z"), "{o}");
    assert!(
        o.contains("host web-1 matches none of its hosts globs"),
        "{o}"
    );
    assert!(
        o.contains("revoked by revocations[0] (principal alice): \"rotated\", by sec"),
        "{o}"
    );
    assert!(
        o.contains("result: keys: 1 valid (g-ok); principals: none valid"),
        "{o}"
    );

    let r = globals
        .host("web-1")
        .run(&["explain", "deploy", "--at", "2025-12-15T00:00:00Z"]);
    r.assert_ok();
    assert!(r.stdout.contains("keys: 1 valid (g-old)"), "{}", r.stdout);
    assert!(r.stdout.contains("not yet valid"), "{}", r.stdout);

    let r = globals.host("h").run(&["explain", "nobody"]);
    r.assert_ok();
    assert!(
        r.stdout.contains("no grant names user nobody"),
        "{}",
        r.stdout
    );
    globals.run(&["explain", "../x"]).assert_denied();
    globals
        .run(&["explain", "deploy", "--at", "yesterday"])
        .assert_denied();
}

fn sshjit_index(policy: &std::path::Path, config: &std::path::Path) -> Run {
    Globals::new(policy, config).run(&["index"])
}

#[test]
fn the_index_is_used_only_while_it_describes_the_policy() {
    let dir = TestDir::new("index");
    let config = dir.config("");
    let d1 = doc(
        vec![
            key_grant("g-1", "deploy", KEY_A),
            key_grant("g-2", "other", KEY_B),
        ],
        vec![],
    );
    let policy = dir.policy(&d1);
    let keys = |p: &std::path::Path| Globals::new(p, &config).host("h").run(&["keys", "deploy"]);
    let r = keys(&policy);
    r.assert_ok();
    assert!(r.stderr.contains("index=missing"), "{}", r.stderr);
    let whole = r.stdout.clone();

    let i = sshjit_index(&policy, &config);
    i.assert_ok();
    assert!(i.stdout.starts_with("indexed "), "{i:?}");
    let r = keys(&policy);
    r.assert_ok();
    assert!(r.stderr.contains("index=used"), "{}", r.stderr);
    assert_eq!(r.stdout, whole, "the index gives the same answer");
    let c = Globals::new(&policy, &config).run(&["check"]);
    assert!(
        c.stdout.contains("is current and used by the login path"),
        "{}",
        c.stdout
    );

    // An edit without re-indexing: the index is stale and the new document
    // decides (here: g-1 revoked).
    let d2 = doc(
        vec![
            key_grant("g-1", "deploy", KEY_A),
            key_grant("g-2", "other", KEY_B),
        ],
        vec![json!({"grant": "g-1"})],
    );
    dir.policy(&d2);
    let r = keys(&policy);
    r.assert_ok();
    assert!(r.stderr.contains("index=stale"), "{}", r.stderr);
    assert_eq!(r.stdout, "", "the revocation in the new document wins");
    let c = Globals::new(&policy, &config).run(&["check"]);
    assert!(c.stdout.contains("not used (stale)"), "{}", c.stdout);

    // Re-indexed: used again, with the revocation.
    sshjit_index(&policy, &config).assert_ok();
    let r = keys(&policy);
    assert!(
        r.stderr.contains("index=used") && r.stdout.is_empty(),
        "{r:?}"
    );

    // A damaged or insecure index is not used; the document still decides.
    let idx = dir.join("policy.json.idx");
    let mut bytes = fs::read(&idx).unwrap();
    bytes[100] ^= 1; // inside the header, under its checksum
    write_file(&idx, &bytes, 0o644);
    let r = keys(&policy);
    r.assert_ok();
    assert!(
        r.stderr.contains("index=damaged") && r.stdout.is_empty(),
        "{r:?}"
    );
    sshjit_index(&policy, &config).assert_ok();
    fs::set_permissions(&idx, fs::Permissions::from_mode(0o666)).unwrap();
    let r = keys(&policy);
    assert!(r.stderr.contains("index=damaged"), "{}", r.stderr);

    // An index of an invalid document is refused, and the old one kept.
    sshjit_index(&policy, &config).assert_ok();
    dir.write("policy.json", "{\"version\": 1, \"grnats\": []}");
    let i = sshjit_index(&policy, &config);
    i.assert_denied();
    assert!(i.stderr.contains("does not validate"), "{i:?}");
    keys(&policy).assert_denied();
}

#[test]
fn the_index_answers_certificates_like_the_document() {
    let dir = TestDir::new("index-cert");
    let config = dir.config("");
    let d = doc(
        vec![
            principal_grant("g-1", "deploy", "alice"),
            key_grant("g-2", "deploy", KEY_A),
        ],
        vec![
            json!({"serial": 5}),
            json!({"key_id": "alice@corp"}),
            json!({"fingerprint": FP_B}),
        ],
    );
    let policy = dir.policy(&d);
    let globals = Globals::new(&policy, &config).host("h");
    let cases: [&[&str]; 4] = [
        &["--key-id", "bob@corp", "--serial", "6"],
        &["--key-id", "alice@corp", "--serial", "6"],
        &["--key-id", "bob@corp", "--serial", "5"],
        &["--key-id", "bob@corp", "--fingerprint", FP_B],
    ];
    let ask = |extra: &[&str]| {
        let mut args = vec!["principals", "deploy"];
        args.extend_from_slice(extra);
        globals.run(&args)
    };
    let without: Vec<Run> = cases.iter().map(|a| ask(a)).collect();
    sshjit_index(&policy, &config).assert_ok();
    for (a, before) in cases.iter().zip(&without) {
        let after = ask(a);
        after.assert_ok();
        assert!(after.stderr.contains("index=used"), "{}", after.stderr);
        assert_eq!(after.stdout, before.stdout, "{a:?}");
        // The outcome and its reason, without the latency.
        let reason = |r: &Run| {
            r.stderr
                .split("outcome=")
                .nth(1)
                .and_then(|s| s.split(" latency_us=").next())
                .map(str::to_owned)
        };
        assert_eq!(reason(&after), reason(before), "{a:?}");
    }
    assert!(without[0].stdout.contains("alice"));
    for r in &without[1..] {
        assert_eq!(r.stdout, "");
        assert!(
            r.stderr.contains("reason=certificate-revoked"),
            "{}",
            r.stderr
        );
    }
}

#[test]
fn admin_edits_keep_the_index_current() {
    let dir = TestDir::new("index-admin");
    let config = dir.config("");
    let policy = dir.join("policy.json");
    let key = dir.write("a.pub", KEY_A);
    let globals = Globals::new(&policy, &config);
    globals.run(&["init"]).assert_ok();
    assert!(dir.join("policy.json.idx").exists());
    let grant = globals.run(&[
        "grant",
        "--user",
        "deploy",
        "--key",
        key.to_str().unwrap(),
        "--for",
        "1h",
        "--reason",
        "INC-1",
    ]);
    grant.assert_ok();
    assert!(dir.join("policy.json.idx").exists());
    let keys = || globals.host("h").run(&["keys", "deploy"]);
    let r = keys();
    r.assert_ok();
    assert!(r.stderr.contains("index=used"), "{}", r.stderr);
    assert!(
        r.stdout.contains(KEY_A.split(' ').nth(1).unwrap()),
        "{}",
        r.stdout
    );
    globals
        .run(&["revoke", "--grant", grant.stdout.trim(), "--reason", "done"])
        .assert_ok();
    let r = keys();
    assert!(
        r.stderr.contains("index=used") && r.stdout.is_empty(),
        "{r:?}"
    );
}

#[test]
fn the_index_is_trusted_by_content_when_the_file_was_replaced_with_the_same_bytes() {
    let dir = TestDir::new("index-content");
    let config = dir.config("");
    let d = doc(vec![key_grant("g-1", "deploy", KEY_A)], vec![]);
    let policy = dir.policy(&d);
    sshjit_index(&policy, &config).assert_ok();
    let keys = || {
        Globals::new(&policy, &config)
            .host("h")
            .run(&["keys", "deploy"])
    };
    let r = keys();
    assert!(r.stderr.contains("index=used"), "{}", r.stderr);
    // Config management rewrites the very same bytes: a new inode, new
    // times, the same document.
    let bytes = fs::read(&policy).unwrap();
    write_file(&policy, &bytes, 0o644);
    let r = keys();
    r.assert_ok();
    assert!(r.stderr.contains("index=content"), "{}", r.stderr);
    assert!(r.stdout.contains(KEY_A.split(' ').nth(1).unwrap()), "{r:?}");
    let c = Globals::new(&policy, &config).run(&["check"]);
    assert!(c.stdout.contains("by its SHA-256"), "{}", c.stdout);
    // One byte more (a trailing space): the whole document decides.
    let mut changed = bytes.clone();
    changed.push(b' ');
    write_file(&policy, &changed, 0o644);
    let r = keys();
    r.assert_ok();
    assert!(r.stderr.contains("index=stale"), "{}", r.stderr);
}

#[test]
fn a_signed_policy_is_read_through_its_index_while_its_signature_and_signer_hold() {
    use crate::support::https::{signing_key, ssh_sign};
    let dir = TestDir::new("index-signed");
    let key = signing_key(&dir, "signer");
    let signers = dir.write("allowed_signers", format!("ops {}\n", key.public_line));
    let state = dir.join("state");
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    let config = dir.config(&format!(
        "allowed_signers = \"{}\"\nstate_dir = \"{}\"",
        signers.display(),
        state.display()
    ));
    let mut d = doc(vec![key_grant("g-1", "deploy", KEY_A)], vec![]);
    d["serial"] = json!(5);
    let policy = dir.policy(&d);
    let bytes = fs::read(&policy).unwrap();
    let sig = dir.write("policy.json.sig", ssh_sign(&key, &bytes, "sshjit-policy"));
    let keys = || {
        Globals::new(&policy, &config)
            .host("h")
            .run(&["keys", "deploy"])
    };
    // Before an index: verified whole, as always.
    let r = keys();
    r.assert_ok();
    assert!(r.stderr.contains("index=missing"), "{}", r.stderr);
    let i = sshjit_index(&policy, &config);
    i.assert_ok();
    assert!(i.stdout.contains("its signature verified"), "{i:?}");
    let r = keys();
    r.assert_ok();
    assert!(
        r.stderr.contains("index=used") && r.stderr.contains("signed_by=ops"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains(KEY_A.split(' ').nth(1).unwrap()), "{r:?}");
    // The signer no longer allowed: denied, index or not.
    let other = signing_key(&dir, "other");
    dir.write("allowed_signers", format!("ops {}\n", other.public_line));
    keys().assert_denied();
    dir.write("allowed_signers", format!("ops {}\n", key.public_line));
    keys().assert_ok();
    // Another signature file (even a good one, by another allowed key):
    // not the one verified, so the whole document is verified again.
    dir.write(
        "allowed_signers",
        format!("ops {}\nops2 {}\n", key.public_line, other.public_line),
    );
    write_file(
        &sig,
        ssh_sign(&other, &bytes, "sshjit-policy").as_bytes(),
        0o644,
    );
    let r = keys();
    r.assert_ok();
    assert!(r.stderr.contains("index=unsigned"), "{}", r.stderr);
    assert!(r.stderr.contains("signed_by=ops2"), "{}", r.stderr);
    // A bad one, or none: denied.
    write_file(&sig, b"junk", 0o644);
    keys().assert_denied();
    fs::remove_file(&sig).unwrap();
    keys().assert_denied();
    // An index built without the signature (by an older sshjit, or before
    // allowed_signers was set) is never used for a signed policy.
    let unsigned = dir.write(
        "unsigned.toml",
        format!(
            "syslog_socket = \"{}\"\n",
            dir.join("no-syslog-here").display()
        ),
    );
    sshjit_index(&policy, &unsigned).assert_ok();
    write_file(
        &sig,
        ssh_sign(&key, &bytes, "sshjit-policy").as_bytes(),
        0o644,
    );
    let r = keys();
    r.assert_ok();
    assert!(r.stderr.contains("index=unsigned"), "{}", r.stderr);
    // The rollback guard holds through the index too.
    sshjit_index(&policy, &config).assert_ok();
    fs::write(state.join("serial"), "9\n").unwrap();
    let r = keys();
    r.assert_denied();
    assert!(r.stderr.contains("rollback"), "{}", r.stderr);
    // An index of a document its signature does not cover is not written.
    fs::write(state.join("serial"), "5\n").unwrap();
    let mut d2 = d.clone();
    d2["grants"][0]["user"] = json!("root");
    dir.policy(&d2);
    let i = sshjit_index(&policy, &config);
    i.assert_denied();
    assert!(i.stderr.contains("no index written"), "{i:?}");
    keys().assert_denied();
}

#[test]
fn index_watch_keeps_the_index_of_a_policy_written_by_another_tool_current() {
    let dir = TestDir::new("index-watch");
    let config = dir.config("");
    let policy = dir.policy(&doc(vec![key_grant("g-1", "deploy", KEY_A)], vec![]));
    let mut watcher = Globals::new(&policy, &config)
        .cmd(&["index", "--watch", "--interval", "1s"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let keys = || {
        Globals::new(&policy, &config)
            .host("h")
            .run(&["keys", "deploy"])
    };
    let used = |r: &Run| r.stderr.contains("index=used");
    assert!(wait_until(std::time::Duration::from_secs(20), || used(
        &keys()
    )));
    // Another tool writes a new version: revoked.
    dir.policy(&doc(
        vec![key_grant("g-1", "deploy", KEY_A)],
        vec![json!({"grant": "g-1"})],
    ));
    assert!(wait_until(std::time::Duration::from_secs(20), || {
        let r = keys();
        used(&r) && r.stdout.is_empty()
    }));
    // An invalid version is not indexed; the whole document denies.
    dir.write("policy.json", "{\"version\": 1, \"grnats\": []}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    keys().assert_denied();
    // Fixed again: indexed again.
    dir.policy(&doc(vec![key_grant("g-1", "deploy", KEY_A)], vec![]));
    assert!(wait_until(std::time::Duration::from_secs(20), || {
        let r = keys();
        used(&r) && !r.stdout.is_empty()
    }));
    let _ = watcher.kill();
    let _ = watcher.wait();
}
