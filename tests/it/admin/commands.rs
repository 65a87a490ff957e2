//! Each admin command, run as a process, and each of its refusals: a
//! refusal exits non-zero, says why, and leaves the policy and the trail
//! byte for byte as they were.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::process::Stdio;

use serde_json::{Value, json};

use super::{Admin, LogSocket, ids, is_grant_id};
use crate::support::*;

#[test]
fn init_creates_the_policy_and_grant_fills_it() {
    let a = Admin::bare("adm-grant");
    // Editing commands never create a policy.
    let r = a.run(&[
        "grant",
        "--user",
        "deploy",
        "--key",
        &a.key("a.pub"),
        "--for",
        "1h",
        "--reason",
        "r",
    ]);
    r.assert_denied();
    assert!(r.stderr.contains("sshjit init"), "{r:?}");
    assert!(!a.policy.exists() && !a.trail_path().exists());
    assert!(!a.dir.join("policy.json.lock").exists());
    // init does: empty, serial 0, its trail starting with the adopt of it.
    let r = a.ok(&["init", "--by", "bob"]);
    assert_eq!(r.stdout, "");
    assert!(r.stderr.contains("created "), "{r:?}");
    assert_eq!(a.doc()["serial"], 0);
    assert_eq!(a.doc()["grants"], json!([]));
    let t = a.trail();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0]["action"], "adopt");
    assert_eq!(t[0]["actor"], "bob");
    assert_eq!(t[0]["seq"], 1);
    let sha = sshjit::store::trail::sha256_hex(&fs::read(&a.policy).unwrap());
    assert_eq!(t[0]["policy_sha256"], json!(sha));
    a.ok(&["audit", "verify"]);
    // Again: nothing to do, nothing changed.
    let before = a.snapshot();
    let r = a.ok(&["init"]);
    assert!(r.stderr.contains("already a policy"), "{r:?}");
    assert_eq!(a.snapshot(), before);
    let id = a.grant("deploy", "a.pub", &["--host", "web-*", "--by", "bob"]);
    // Root-owned (or ours), 0644, next to a 0640 trail and the lock.
    let meta = fs::metadata(&a.policy).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o644);
    assert_eq!(meta.uid(), sshjit::system::euid());
    assert_eq!(fs::metadata(a.trail_path()).unwrap().mode() & 0o7777, 0o640);
    assert!(a.dir.join("policy.json.lock").exists());
    assert!(!a.dir.join("policy.json.tmp").exists());
    let doc = a.doc();
    assert_eq!(doc["serial"], 1);
    let g = &doc["grants"][0];
    assert_eq!(g["id"], json!(id));
    assert_eq!(g["user"], "deploy");
    assert_eq!(g["key"], KEY_A);
    assert_eq!(g["hosts"], json!(["web-*"]));
    assert_eq!(g["granted_by"], "bob");
    assert_eq!(g["reason"], "test");
    // The helper prints the key now.
    let r = a.keys("deploy");
    r.assert_ok();
    assert!(r.stdout.contains(KEY_A.split(' ').nth(1).unwrap()), "{r:?}");
    a.ok(&["check"]);
    // One record after init's, with the grant and the document's hash.
    let t = a.changes();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0]["action"], "grant");
    assert_eq!(t[0]["grant"], *g);
    assert_eq!(t[0]["serial"], 1);
    assert_eq!(t[0]["actor"], "bob");
    let sha = sshjit::store::trail::sha256_hex(&fs::read(&a.policy).unwrap());
    assert_eq!(t[0]["policy_sha256"], json!(sha));
}

#[test]
fn grant_writes_every_option() {
    let a = Admin::new("adm-options");
    let key = a.key("b.pub");
    let r = a.ok(&[
        "grant",
        "--user",
        "web",
        "--key",
        &key,
        "--until",
        "2099-01-01T12:00:00+01:00",
        "--not-before",
        "2098-12-30T12:00:00Z",
        "--reason",
        "INC-7 \"quoted\" reason",
        "--host",
        "web-*",
        "--host",
        "db-1",
        "--from",
        "10.0.0.0/8",
        "--from",
        "!10.1.2.3",
        "--command",
        "/usr/bin/uptime",
        "--restrict",
        "--break-glass",
        "--force",
    ]);
    let id = r.stdout.trim();
    let g = a.doc()["grants"][0].clone();
    assert_eq!(
        g,
        json!({
            "id": id, "user": "web", "key": KEY_B, "hosts": ["web-*", "db-1"],
            "not_before": "2098-12-30T12:00:00Z", "expires_at": "2099-01-01T11:00:00Z",
            "reason": "INC-7 \"quoted\" reason", "granted_by": g["granted_by"],
            "break_glass": true, "from": ["10.0.0.0/8", "!10.1.2.3"],
            "command": "/usr/bin/uptime", "restrict": true
        })
    );
    assert_eq!(a.changes()[0]["forced"], true);
    // Not valid yet: the helper prints nothing.
    let r = a.keys("web");
    r.assert_ok();
    assert_eq!(r.stdout, "");

    // A principal, and a key from stdin; --by defaults to SUDO_USER.
    a.ok(&[
        "grant",
        "--user",
        "ops",
        "--principal",
        "alice@corp",
        "--for",
        "2h30m",
        "--reason",
        "on call",
    ]);
    let mut c = a.cmd(&[
        "grant",
        "--user",
        "deploy",
        "--key",
        "-",
        "--for",
        "15m",
        "--reason",
        "stdin key",
    ]);
    c.env("SUDO_USER", "carol")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{KEY_A}\n").as_bytes())
        .unwrap();
    let r = Run::from_output(child.wait_with_output().unwrap());
    r.assert_ok();
    let doc = a.doc();
    assert_eq!(doc["grants"][1]["principal"], "alice@corp");
    assert_eq!(doc["grants"][2]["key"], KEY_A);
    assert_eq!(doc["grants"][2]["granted_by"], "carol");
    assert_eq!(a.changes()[2]["sudo_user"], "carol");
    assert_eq!(doc["serial"], 3);
    // Each grant has its own id.
    let ids = ids(&doc);
    assert!(ids.iter().all(|i| is_grant_id(i)));
    assert_eq!(
        ids.iter().collect::<std::collections::HashSet<_>>().len(),
        3
    );
}

/// Runs `args` (a failing command) and checks its status, message and
/// that nothing changed.
#[track_caller]
fn refused(a: &Admin, args: &[&str], code: i32, message: &str) {
    let before = a.snapshot();
    let r = a.run(args);
    assert_eq!(r.code, Some(code), "{args:?}: {r:#?}");
    assert_eq!(r.stdout, "", "{args:?}");
    assert!(
        r.stderr.contains(message),
        "{args:?}: want {message:?} in {}",
        r.stderr
    );
    assert_eq!(a.snapshot(), before, "{args:?} changed something");
    assert!(!a.dir.join("policy.json.tmp").exists());
}

#[test]
fn grant_refusals_change_nothing() {
    let a = Admin::new("adm-refuse");
    a.grant("deploy", "a.pub", &[]);
    a.dir.write(
        "id_ed25519",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    a.dir
        .write("opts.pub", format!("restrict,command=\"id\" {KEY_A}\n"));
    a.dir.write(
        "cert.pub",
        "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29t x\n",
    );
    let (a_pub, private, opts, cert) = (
        a.key("a.pub"),
        a.key("id_ed25519"),
        a.key("opts.pub"),
        a.key("cert.pub"),
    );
    let past = rfc3339_in(-60);
    let base = |key: &str| -> Vec<String> {
        ["grant", "--user", "deploy", "--key", key, "--reason", "r"]
            .map(String::from)
            .to_vec()
    };
    let with = |key: &str, more: &[&str]| -> Vec<String> {
        let mut v = base(key);
        v.extend(more.iter().map(|s| s.to_string()));
        v
    };
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            with(&a_pub, &["--until", &past]),
            1,
            "the window is already over",
        ),
        (with(&private, &["--for", "1h"]), 2, "this is a PRIVATE key"),
        (
            with(&opts, &["--for", "1h"]),
            2,
            "carries authorized_keys options",
        ),
        (with(&cert, &["--for", "1h"]), 2, "is a certificate"),
        (
            with(&a.key("missing.pub"), &["--for", "1h"]),
            2,
            "No such file",
        ),
        (
            with(&a_pub, &["--for", "25h"]),
            1,
            "longer than max_grant (1d",
        ),
        (with(&a_pub, &["--for", "0s"]), 2, "longer than 0s"),
        (with(&a_pub, &["--for", "1w"]), 2, "not a duration"),
        (
            with(&a_pub, &["--until", "2099-01-01T00:00:00"]),
            2,
            "no zone",
        ),
        (
            with(
                &a_pub,
                &[
                    "--for",
                    "1h",
                    "--not-before",
                    "2099-01-01T00:00:00Z",
                    "--until",
                    "2098-01-01T00:00:00Z",
                ],
            ),
            2,
            "cannot be used with",
        ),
        (
            with(&a_pub, &["--for", "1h", "--host", "web,db"]),
            2,
            "--host: invalid host pattern",
        ),
        (
            with(&a_pub, &["--for", "1h", "--from", "10.0.0.1 "]),
            2,
            "--from: invalid",
        ),
        (
            with(&a_pub, &["--for", "1h", "--command", "echo \\"]),
            2,
            "--command: invalid",
        ),
        (
            with(&a_pub, &["--for", "1h", "--by", " "]),
            2,
            "--by: invalid actor",
        ),
        (
            with(&a_pub, &["--for", "1h", "--principal", "alice"]),
            2,
            "cannot be used with",
        ),
        (base(&a_pub), 2, "--for <DURATION>|--until <TIME>"),
    ];
    for (args, code, message) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&a, &args, *code, message);
    }
    refused(
        &a,
        &[
            "grant", "--user", "deploy", "--key", &a_pub, "--for", "1h", "--reason", "",
        ],
        2,
        "--reason: invalid reason \"\": must not be empty",
    );
    refused(
        &a,
        &[
            "grant", "--user", "../root", "--key", &a_pub, "--for", "1h", "--reason", "r",
        ],
        2,
        "--user: invalid user name",
    );
    refused(
        &a,
        &["grant", "--user", "deploy", "--for", "1h", "--reason", "r"],
        2,
        "--key <FILE|->|--principal <P>",
    );
    // --host before `grant` is this host's name, never a grant's hosts.
    let c = a.cmd(&[
        "--host", "web-1", "grant", "--user", "deploy", "--key", &a_pub, "--for", "1h", "--reason",
        "r",
    ]);
    let before = a.snapshot();
    let r = run_cmd(c);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("put --host GLOB after `grant`"), "{r:?}");
    assert_eq!(a.snapshot(), before);

    // A grant that a revocation would kill from birth.
    a.ok(&["revoke", "--key", &a_pub, "--reason", "laptop stolen"]);
    refused(
        &a,
        &[
            "grant", "--user", "deploy", "--key", &a_pub, "--for", "1h", "--reason", "r",
        ],
        1,
        "would be revoked from the start by revocations[0] (fingerprint",
    );
    // --force goes past max_grant; the record and the log say so.
    let r = a.ok(&[
        "grant",
        "--user",
        "deploy",
        "--key",
        &a.key("b.pub"),
        "--for",
        "2d",
        "--reason",
        "r",
        "--force",
    ]);
    assert!(r.stderr.contains("forced=true"), "{}", r.stderr);
}

#[test]
fn max_grant_comes_from_the_config() {
    let a = Admin::with_config("adm-max", "max_grant = \"2h\"");
    let key = a.key("a.pub");
    refused(
        &a,
        &[
            "grant", "--user", "u", "--key", &key, "--for", "2h1s", "--reason", "r",
        ],
        1,
        "longer than max_grant (2h, from the config)",
    );
    a.grant("u", "a.pub", &["--for", "2h"]);
    // A grant that starts later is measured from its start.
    a.ok(&[
        "grant",
        "--user",
        "u",
        "--key",
        &key,
        "--not-before",
        &rfc3339_in(86_400),
        "--for",
        "2h",
        "--reason",
        "r",
    ]);
}

#[test]
fn an_invalid_or_insecure_policy_is_never_edited() {
    let a = Admin::bare("adm-invalid");
    let key = a.key("a.pub");
    let grant = [
        "grant", "--user", "u", "--key", &key, "--for", "1h", "--reason", "r",
    ];
    // Not valid: the whole document would be refused by the helper too.
    a.dir.write(
        "policy.json",
        "{\"version\": 1, \"grants\": [{\"id\": \"g-1\"}]}",
    );
    refused(&a, &grant, 1, "is invalid");
    assert!(!a.trail_path().exists());
    a.dir.write("policy.json", "not json");
    refused(&a, &grant, 1, "is invalid");
    for verb in [
        vec!["revoke", "--user", "u", "--reason", "r"],
        vec!["freeze", "--reason", "r"],
        vec!["prune"],
    ] {
        refused(&a, &verb, 1, "is invalid");
    }

    // Writable by others: the helper refuses it, so do we.
    let good = serde_json::to_vec(&doc(vec![], vec![])).unwrap();
    a.dir.write("policy.json", &good);
    fs::set_permissions(&a.policy, fs::Permissions::from_mode(0o666)).unwrap();
    refused(&a, &grant, 1, "writable by group or others");
    fs::set_permissions(&a.policy, fs::Permissions::from_mode(0o644)).unwrap();
    // Someone else's file.
    if sshjit::system::euid() == 0 {
        std::os::unix::fs::chown(&a.policy, Some(65534), None).unwrap();
        refused(&a, &grant, 1, "owned by uid 65534");
        std::os::unix::fs::chown(&a.policy, Some(0), None).unwrap();
    }
    // A directory others can write.
    let loose = a.dir.join("loose");
    fs::create_dir(&loose).unwrap();
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o777)).unwrap();
    for target in [loose.join("policy.json"), loose.join("new/policy.json")] {
        // Only init creates a policy; the configured location may need
        // its directory made.
        let configured = a.dir.write(
            "loose.toml",
            format!(
                "source = \"{}\"\nsyslog_socket = \"{}\"\n",
                target.display(),
                a.dir.join("no-syslog-here").display()
            ),
        );
        let r = Globals::new(&target, &configured).run(&["init"]);
        assert_eq!(r.code, Some(1), "{r:?}");
        assert!(r.stderr.contains("directory is writable"), "{r:?}");
        assert!(!target.exists());
        assert!(!loose.join("new").exists());
        assert!(!loose.join("policy.json.lock").exists());
    }
    // A dangling symlink is not replaced by a file.
    let dangling = a.dir.join("dangling.json");
    symlink(a.dir.join("nowhere.json"), &dangling).unwrap();
    let r = Globals::new(&dangling, &a.config).run(&[
        "grant", "--user", "u", "--key", &key, "--for", "1h", "--reason", "r",
    ]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("symlink to a missing file"), "{r:?}");
    assert!(
        fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // The policy is clean again: editing works, and through a symlink the
    // target is replaced while the link stays a link.
    a.grant("u", "a.pub", &[]);
    let link = a.dir.join("link.json");
    symlink(&a.policy, &link).unwrap();
    let r = Globals::new(&link, &a.config).run(&[
        "grant", "--user", "v", "--key", &key, "--for", "1h", "--reason", "r",
    ]);
    r.assert_ok();
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(a.grant_ids().len(), 2);
    assert_eq!(a.trail().len(), 3, "adopt, then two grants");
}

/// Runs sshjit with `args` under `umask 077`.
fn with_umask_077(args: &[&str]) -> Run {
    let mut sh = std::process::Command::new("/bin/sh");
    sh.arg("-c")
        .arg("umask 077; exec \"$@\"")
        .arg("sh")
        .arg(bin())
        .args(args)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::null());
    run_cmd(sh)
}

#[test]
fn the_policy_is_written_readable_whatever_the_umask() {
    let a = Admin::bare("adm-umask");
    let key = a.key("a.pub");
    let c = a.config.to_str().unwrap();
    let grant = |policy: &str| {
        with_umask_077(&[
            "grant", "--user", "u", "--key", &key, "--for", "1h", "--reason", "r", "--policy",
            policy, "--config", c,
        ])
        .assert_ok();
    };
    with_umask_077(&[
        "init",
        "--policy",
        a.policy.to_str().unwrap(),
        "--config",
        c,
    ])
    .assert_ok();
    assert_eq!(fs::metadata(&a.policy).unwrap().mode() & 0o7777, 0o644);
    grant(a.policy.to_str().unwrap());
    assert_eq!(fs::metadata(&a.policy).unwrap().mode() & 0o7777, 0o644);
    // A directory init has to create (for the configured location only)
    // is searchable by the helper's account.
    let nested = a.dir.join("etc/sshjit/policy.json");
    let configured = a.dir.write(
        "nested.toml",
        format!(
            "source = \"{}\"\nsyslog_socket = \"{}\"\n",
            nested.display(),
            a.dir.join("no-syslog-here").display()
        ),
    );
    with_umask_077(&["init", "--config", configured.to_str().unwrap()]).assert_ok();
    assert_eq!(fs::metadata(&nested).unwrap().mode() & 0o7777, 0o644);
    grant(nested.to_str().unwrap());
    assert_eq!(fs::metadata(&nested).unwrap().mode() & 0o7777, 0o644);
    for d in [a.dir.join("etc"), a.dir.join("etc/sshjit")] {
        assert_eq!(
            fs::metadata(&d).unwrap().mode() & 0o777,
            0o755,
            "{}",
            d.display()
        );
    }
}

#[test]
fn revoke_each_kind_and_lift_it() {
    let a = Admin::new("adm-revoke");
    let ga = a.grant("deploy", "a.pub", &[]);
    a.grant("deploy", "b.pub", &[]);
    let valid = |user: &str| -> usize { a.keys(user).stdout.lines().count() };
    assert_eq!(valid("deploy"), 2);
    let key_a = a.key("a.pub");
    for (selector, value, left) in [
        ("--grant", ga.as_str(), 1),
        ("--fingerprint", FP_A, 1),
        ("--key", key_a.as_str(), 1),
        ("--user", "deploy", 0),
    ] {
        let r = a.ok(&[
            "revoke", selector, value, "--reason", "INC-3", "--by", "sec",
        ]);
        assert!(r.stdout.starts_with("revoked "), "{r:?}");
        assert!(r.stdout.contains("stop working at the next login"), "{r:?}");
        assert_eq!(valid("deploy"), left, "{selector}");
        let doc = a.doc();
        let rev = doc["revocations"].as_array().unwrap()[0].clone();
        assert_eq!(rev["reason"], "INC-3");
        assert_eq!(rev["revoked_by"], "sec");
        assert!(rev["revoked_at"].as_str().unwrap().ends_with('Z'));
        // Revoking the same thing again changes nothing.
        let before = a.snapshot();
        let r = a.ok(&["revoke", selector, value, "--reason", "again"]);
        assert!(r.stdout.contains("already revoked"), "{r:?}");
        assert_eq!(a.snapshot(), before);
        // Lifting it is recorded too.
        let r = a.ok(&["unrevoke", selector, value, "--reason", "false alarm"]);
        assert!(r.stdout.contains("valid again"), "{r:?}");
        assert_eq!(valid("deploy"), 2);
        let t = a.trail();
        assert_eq!(t[t.len() - 1]["action"], "unrevoke");
        assert_eq!(t[t.len() - 1]["reason"], "false alarm");
        assert_eq!(t[t.len() - 1]["revocations"][0], rev);
        assert_eq!(a.doc()["revocations"], json!([]));
    }
    // Certificate selectors.
    for (selector, value, field, stored) in [
        ("--principal", "alice", "principal", json!("alice")),
        ("--key-id", "alice@corp-1", "key_id", json!("alice@corp-1")),
        ("--serial", "1001", "serial", json!(1001)),
    ] {
        a.ok(&["revoke", selector, value, "--reason", "r"]);
        assert_eq!(a.doc()["revocations"][0][field], stored);
        a.ok(&["unrevoke", selector, value, "--reason", "r"]);
    }
    // Refusals.
    refused(
        &a,
        &["revoke", "--grant", "g-nope", "--reason", "r"],
        1,
        "there is no grant g-nope",
    );
    refused(
        &a,
        &["unrevoke", "--user", "deploy", "--reason", "r"],
        1,
        "no revocation names user deploy",
    );
    refused(
        &a,
        &["revoke", "--user", "deploy", "--reason", " "],
        2,
        "--reason",
    );
    refused(
        &a,
        &["revoke", "--fingerprint", "MD5:aa", "--reason", "r"],
        2,
        "--fingerprint",
    );
    refused(
        &a,
        &["revoke", "--serial", "-1", "--reason", "r"],
        2,
        "--serial",
    );
    refused(
        &a,
        &["revoke", "--user", "a", "--grant", "g-1", "--reason", "r"],
        2,
        "cannot be used with",
    );
    refused(
        &a,
        &["revoke", "--reason", "r"],
        2,
        "required arguments were not provided",
    );
    refused(
        &a,
        &["revoke", "--key", &a.key("id"), "--reason", "r"],
        2,
        "--key",
    );
}

#[test]
fn freeze_lets_only_break_glass_through_and_thaw_restores() {
    let a = Admin::new("adm-freeze");
    let normal = a.grant("deploy", "a.pub", &[]);
    let bg = a.grant("deploy", "b.pub", &["--break-glass"]);
    let r = a.ok(&["freeze", "--reason", "INC-9 intrusion", "--by", "sec"]);
    assert!(r.stdout.starts_with("frozen: "), "{r:?}");
    assert_eq!(a.doc()["frozen"], true);
    let out = a.keys("deploy").stdout;
    assert!(!out.contains(KEY_A.split(' ').nth(1).unwrap()));
    assert!(out.contains(KEY_B.split(' ').nth(1).unwrap()));
    // Frozen twice is still one freeze.
    let before = a.snapshot();
    assert!(
        a.ok(&["freeze", "--reason", "again"])
            .stdout
            .contains("already frozen")
    );
    assert_eq!(a.snapshot(), before);
    // A grant during the freeze works only after the thaw, and says so.
    let r = a.run(&[
        "grant",
        "--user",
        "deploy",
        "--key",
        &a.key("a.pub"),
        "--for",
        "1h",
        "--reason",
        "r",
    ]);
    r.assert_ok();
    assert!(r.stderr.contains("the policy is frozen"), "{r:?}");
    // list shows the freeze: when, by whom, why.
    let l = a.ok(&["list"]).stdout;
    assert!(
        l.contains("FROZEN: only break-glass grants are valid (since "),
        "{l}"
    );
    assert!(l.contains("by sec: \"INC-9 intrusion\")"), "{l}");
    let r = a.ok(&["thaw", "--reason", "contained"]);
    assert!(r.stdout.starts_with("thawed: "), "{r:?}");
    assert_eq!(a.doc()["frozen"], false);
    assert_eq!(a.keys("deploy").stdout.lines().count(), 2);
    let actions: Vec<String> = a
        .changes()
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actions, ["grant", "grant", "freeze", "grant", "thaw"]);
    assert_eq!(a.changes()[2]["reason"], "INC-9 intrusion");
    refused(&a, &["thaw", "--reason", ""], 2, "--reason");
    let _ = (normal, bg);
}

#[test]
fn every_change_bumps_the_serial_and_no_change_does_not() {
    let a = Admin::new("adm-serial");
    let mut expect = 0;
    let mut check = |a: &Admin, changed: bool| {
        if changed {
            expect += 1;
        }
        assert_eq!(a.doc()["serial"], expect);
    };
    a.grant("u", "a.pub", &[]);
    check(&a, true);
    a.ok(&["freeze", "--reason", "r"]);
    check(&a, true);
    a.ok(&["freeze", "--reason", "r"]);
    check(&a, false);
    a.ok(&["revoke", "--user", "u", "--reason", "r"]);
    check(&a, true);
    a.ok(&["revoke", "--user", "u", "--reason", "r"]);
    check(&a, false);
    a.ok(&["unrevoke", "--user", "u", "--reason", "r"]);
    check(&a, true);
    a.ok(&["thaw", "--reason", "r"]);
    check(&a, true);
    a.ok(&["prune"]);
    check(&a, false);
    let serials: Vec<u64> = a
        .changes()
        .iter()
        .map(|r| r["serial"].as_u64().unwrap())
        .collect();
    assert_eq!(serials, [1, 2, 3, 4, 5]);
}

#[test]
fn admin_lines_go_to_syslog_at_the_right_priority() {
    let a = Admin::new("adm-syslog");
    let log = LogSocket::bind(&a.dir.path);
    a.dir.write(
        "sshjit.toml",
        format!("syslog_socket = \"{}\"\n", log.path.display()),
    );
    let key = a.key("a.pub");
    let grant = |extra: &[&str]| {
        let mut args = vec![
            "grant", "--user", "deploy", "--key", &key, "--for", "1h", "--reason", "INC-1",
        ];
        args.extend_from_slice(extra);
        a.ok(&args)
    };
    let r = grant(&[]);
    assert_eq!(
        r.stderr.matches("sshjit: action=").count(),
        0,
        "to syslog, not stderr: {}",
        r.stderr
    );
    let id = r.stdout.trim().to_owned();
    let lines = log.drain();
    assert_eq!(lines.len(), 1, "{lines:?}");
    // authpriv (10) * 8 + notice (5).
    assert!(lines[0].starts_with("<85>sshjit["), "{}", lines[0]);
    for field in [
        "action=grant",
        "outcome=ok",
        &format!("id={id}"),
        "user=deploy",
        &format!("fp={FP_A}"),
        "reason=INC-1",
        "serial=1",
        "trail_seq=2",
        "trail_hash=",
        "expires_at=",
        "by=",
    ] {
        assert!(lines[0].contains(field), "{field}: {}", lines[0]);
    }
    // The head hash logged is the trail's.
    let t = a.changes();
    assert!(lines[0].contains(t[0]["hash"].as_str().unwrap()));
    // Break-glass, freeze and thaw: alert (1).
    grant(&["--break-glass"]);
    a.ok(&["freeze", "--reason", "r"]);
    a.ok(&["thaw", "--reason", "r"]);
    let lines = log.drain();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for l in &lines {
        assert!(l.starts_with("<81>sshjit["), "{l}");
    }
    assert!(lines[0].contains("break_glass=true"));
    assert!(lines[1].contains("action=freeze"));
    assert!(lines[2].contains("action=thaw"));
    // A refusal: warning (4), with the reason.
    let r = a.run(&[
        "grant",
        "--user",
        "deploy",
        "--key",
        &key,
        "--until",
        "2000-01-01T00:00:00Z",
        "--reason",
        "r",
    ]);
    assert_eq!(r.code, Some(1));
    let lines = log.drain();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("<84>sshjit["), "{}", lines[0]);
    assert!(lines[0].contains("outcome=refused"));
    assert!(lines[0].contains("already over"));
    // Revocations and unchanged commands: notice.
    a.ok(&["revoke", "--user", "deploy", "--reason", "r"]);
    a.ok(&["revoke", "--user", "deploy", "--reason", "r"]);
    let lines = log.drain();
    assert!(
        lines[0].starts_with("<85>")
            && lines[0].contains("action=revoke")
            && lines[0].contains("outcome=ok")
    );
    assert!(lines[1].contains("outcome=unchanged"), "{}", lines[1]);
}

#[test]
fn list_shows_what_is_valid_and_why_not() {
    let a = Admin::bare("adm-list");
    // Start from a hand-written policy with expired and future grants.
    let mut expired = key_grant("g-old", "deploy", KEY_B);
    expired.as_object_mut().unwrap().remove("not_before");
    expired["expires_at"] = json!(rfc3339_in(-7200));
    let mut later = principal_grant("g-later", "deploy", "alice");
    later["not_before"] = json!(rfc3339_in(7200));
    a.dir.policy(&doc(
        vec![expired, later, key_grant("g-hand", "web", KEY_B)],
        vec![],
    ));
    let now_id = a.grant(
        "deploy",
        "a.pub",
        &[
            "--host",
            "web-*",
            "--by",
            "bob",
            "--reason",
            "INC-4 a rather long reason that the table will have to cut short",
        ],
    );
    a.ok(&["revoke", "--grant", "g-hand", "--reason", "left the team"]);
    let l = a.ok(&["list"]).stdout;
    assert!(
        l.starts_with(&format!(
            "policy {}: serial 3, 4 grants, 1 revocations\n",
            a.policy.display()
        )),
        "{l}"
    );
    let header = l.lines().find(|x| x.starts_with("ID ")).unwrap();
    for col in [
        "ID",
        "USER",
        "KEY / PRINCIPAL",
        "HOSTS",
        "LEFT",
        "STATUS",
        "REASON",
        "BY",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let row = l.lines().find(|x| x.starts_with(&now_id)).unwrap();
    for cell in [
        "deploy",
        FP_A,
        "web-*",
        "valid",
        "INC-4 a rather long reason that the t...",
        "bob",
    ] {
        assert!(row.contains(cell), "{cell}: {row}");
    }
    // Time left: an hour, or just under.
    assert!(row.contains("  1h  ") || row.contains("  59m"), "{row}");
    assert!(
        !l.lines().any(|x| ["g-old", "g-later", "g-hand"]
            .iter()
            .any(|id| x.starts_with(id))),
        "{l}"
    );
    assert!(l.contains("[0] grant g-hand at "), "{l}");
    assert!(l.contains("\"left the team\" (1 grant(s) named)"), "{l}");
    let all = a.ok(&["list", "--all"]).stdout;
    let status = |id: &str| all.lines().find(|x| x.starts_with(id)).unwrap().to_owned();
    assert!(status("g-old").contains("expired 2h"), "{all}");
    assert!(
        status("g-later").contains("starts in 1h") || status("g-later").contains("starts in 2h"),
        "{all}"
    );
    assert!(status("g-later").contains("principal alice"), "{all}");
    assert!(status("g-hand").contains("revoked [0]"), "{all}");
    let mine = a.ok(&["list", "--all", "--user", "web"]).stdout;
    assert!(mine.contains("g-hand") && !mine.contains("g-old"), "{mine}");
    let j: Value = serde_json::from_str(&a.ok(&["list", "--all", "--json"]).stdout).unwrap();
    assert_eq!(j["serial"], 3);
    assert_eq!(j["frozen"], false);
    let g = j["grants"].as_array().unwrap();
    assert_eq!(g.len(), 4);
    let by_id = |id: &str| g.iter().find(|x| x["id"] == id).unwrap().clone();
    assert_eq!(by_id(&now_id)["status"], "valid");
    assert_eq!(by_id(&now_id)["fingerprint"], FP_A);
    let left = by_id(&now_id)["seconds_left"].as_u64().unwrap();
    assert!(left > 0 && left <= 3600, "{left}");
    assert_eq!(by_id("g-old")["status"], "expired");
    assert_eq!(by_id("g-later")["status"], "not-yet-valid");
    assert_eq!(by_id("g-hand")["status"], "revoked");
    assert_eq!(j["revocations"][0]["names"], json!(["g-hand"]));
    // No policy at all is an error, not an empty list.
    let r = Globals::new(a.dir.join("none.json"), &a.config).run(&["list"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.contains("there is no policy"), "{r:?}");
}

#[test]
fn prune_removes_what_can_no_longer_matter() {
    let a = Admin::bare("adm-prune");
    let mut old = key_grant("g-old", "deploy", KEY_A);
    old["not_before"] = json!(rfc3339_in(-30 * 86_400));
    old["expires_at"] = json!(rfc3339_in(-20 * 86_400));
    let mut recent = key_grant("g-recent", "deploy", KEY_A);
    recent["not_before"] = json!(rfc3339_in(-7200));
    recent["expires_at"] = json!(rfc3339_in(-3600));
    a.dir.policy(&doc(
        vec![old, recent, key_grant("g-live", "deploy", KEY_B)],
        vec![
            json!({"grant": "g-old"}),
            json!({"user": "gone", "revoked_at": rfc3339_in(-30 * 86_400)}),
            json!({"fingerprint": FP_A}),
        ],
    ));
    let r = a.ok(&["prune"]);
    assert!(
        r.stdout
            .starts_with("pruned 1 grant(s) that expired more than 7d ago and 2 revocation(s)"),
        "{r:?}"
    );
    let doc = a.doc();
    assert_eq!(ids(&doc), ["g-recent", "g-live"]);
    assert_eq!(doc["revocations"], json!([{"fingerprint": FP_A}]));
    let t = a.trail();
    assert_eq!(t[0]["action"], "adopt");
    assert_eq!(t[1]["action"], "prune");
    assert_eq!(t[1]["grants"], json!(["g-old"]));
    assert_eq!(t[1]["older_than"], "7d");
    a.ok(&["check"]);
    let r = a.ok(&["prune", "--older-than", "0s"]);
    assert!(r.stdout.starts_with("pruned 1 grant(s)"), "{r:?}");
    let before = a.snapshot();
    assert!(
        a.ok(&["prune", "--older-than", "0s"])
            .stdout
            .starts_with("nothing to prune")
    );
    assert_eq!(a.snapshot(), before);
    refused(&a, &["prune", "--older-than", "soon"], 2, "--older-than");
}

#[test]
fn report_rebuilds_who_had_access_from_the_trail() {
    let a = Admin::bare("adm-report");
    a.dir
        .policy(&doc(vec![key_grant("g-hand", "web", KEY_B)], vec![]));
    let g1 = a.grant(
        "deploy",
        "a.pub",
        &["--by", "bob", "--reason", "INC-5 deploy, \"hotfix\""],
    );
    let g2 = a.grant("db", "b.pub", &["--by", "bob"]);
    a.ok(&[
        "revoke",
        "--grant",
        &g2,
        "--reason",
        "done early",
        "--by",
        "sec",
    ]);
    a.ok(&["freeze", "--reason", "INC-6", "--by", "sec"]);
    a.ok(&["thaw", "--reason", "INC-6 over", "--by", "sec"]);

    let t = a.ok(&["report"]).stdout;
    assert!(
        t.contains("trail: verified (6 records, head matches the policy)"),
        "{t}"
    );
    let row = |id: &str| {
        t.lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id}: {t}"))
            .to_owned()
    };
    assert!(
        row(&g1).contains("deploy")
            && row(&g1).contains(FP_A)
            && row(&g1).contains("bob")
            && row(&g1).contains("active, frozen 1x")
    );
    assert!(row(&g2).contains("revoked "), "{}", row(&g2));
    assert!(row(&g2).contains(" by sec"), "{}", row(&g2));
    assert!(
        row("g-hand").contains("tests (adopted)"),
        "{}",
        row("g-hand")
    );
    for change in ["revoke  sec", "freeze  sec", "thaw    sec", "adopt"] {
        assert!(t.contains(change), "{change}: {t}");
    }

    // JSON: everything, including who recorded what.
    let j: Value = serde_json::from_str(&a.ok(&["report", "--format", "json"]).stdout).unwrap();
    assert_eq!(j["trail"]["verified"], true);
    let grants = j["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 3);
    let e = grants
        .iter()
        .find(|e| e["grant"]["id"] == g2.as_str())
        .unwrap();
    assert_eq!(e["revocations"][0]["by"], "sec");
    assert_eq!(e["revocations"][0]["reason"], "done early");
    assert_eq!(e["revocations"][0]["target"], format!("grant {g2}"));
    assert_eq!(e["recorded_by"], "bob");
    assert_eq!(e["usage"], Value::Null);
    // The freeze came after g2's revocation: only g1 and g-hand were frozen out.
    assert_eq!(e["frozen"], json!([]));
    let e1 = grants
        .iter()
        .find(|e| e["grant"]["id"] == g1.as_str())
        .unwrap();
    assert_eq!(e1["frozen"][0]["by"], "sec");
    assert_eq!(e1["frozen"][0]["reason"], "INC-6");
    assert!(e1["frozen"][0]["until"].is_string());
    let actions: Vec<&str> = j["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["adopt", "revoke", "freeze", "thaw"]);

    // CSV: one row per grant, quoted where needed.
    let csv = a.ok(&["report", "--format", "csv"]).stdout;
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(
        lines[0].starts_with("id,user,key_fingerprint,key,principal,hosts,"),
        "{}",
        lines[0]
    );
    assert!(csv.contains("\"INC-5 deploy, \"\"hotfix\"\"\""), "{csv}");

    // Filters: user, and a period.
    let j: Value =
        serde_json::from_str(&a.ok(&["report", "--format", "json", "--user", "db"]).stdout)
            .unwrap();
    assert_eq!(j["grants"].as_array().unwrap().len(), 1);
    let actions: Vec<&str> = j["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["revoke", "freeze", "thaw"]);
    let j: Value = serde_json::from_str(
        &a.ok(&["report", "--format", "json", "--since", &rfc3339_in(7200)])
            .stdout,
    )
    .unwrap();
    let ids: Vec<&str> = j["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["grant"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["g-hand"], "only g-hand lasts beyond the hour");
    assert_eq!(j["changes"], json!([]));
    let j: Value = serde_json::from_str(
        &a.ok(&[
            "report",
            "--format",
            "json",
            "--since",
            "1d",
            "--until",
            &rfc3339_in(-3600),
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(
        j["grants"].as_array().unwrap().len(),
        0,
        "nothing had begun an hour ago"
    );

    // --logins: which grants were used, from the helper's decision lines.
    let log = a.dir.write(
        "auth.log",
        format!(
            "Nov 21 10:00:00 web-1 sshjit[1]: mode=keys user=deploy fp={FP_A} host=web-1 source=/etc/sshjit/policy.json policy_serial=3 matched={g1} lines=1 outcome=allow latency_us=4\n\
             Nov 21 10:00:00 web-1 sshjit[2]: mode=keys user=deploy fp={FP_A} host=web-1 source=/etc/sshjit/policy.json policy_serial=3 matched={g1} lines=1 outcome=allow latency_us=4\n\
             Nov 21 10:00:00 web-1 sshd[3]: Accepted publickey for deploy from 10.0.0.1 port 50000 ssh2: ED25519 {FP_A}\n\
             Nov 21 10:00:09 web-1 sshjit[4]: mode=keys user=db fp={FP_B} host=web-1 outcome=none reason=no-valid-grant latency_us=4\n"
        ),
    );
    let j: Value = serde_json::from_str(
        &a.ok(&[
            "report",
            "--format",
            "json",
            "--logins",
            log.to_str().unwrap(),
        ])
        .stdout,
    )
    .unwrap();
    let usage = |id: &str| {
        j["grants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["grant"]["id"] == id)
            .unwrap()["usage"]
            .clone()
    };
    assert_eq!(usage(&g1)["decisions"], 2);
    assert_eq!(usage(&g1)["logins"], 1);
    assert_eq!(usage(&g1)["hosts"], json!(["web-1"]));
    assert_eq!(usage(&g2)["decisions"], 0);
    assert_eq!(j["logins"]["accepted"], 1);
    let t = a.ok(&["report", "--logins", log.to_str().unwrap()]).stdout;
    assert!(t.contains("USED  LOGINS  LAST USED"), "{t}");

    refused(&a, &["report", "--since", "yesterday"], 2, "--since");
    refused(&a, &["report", "--format", "xml"], 2, "invalid value 'xml'");
    let r = a.run(&[
        "report",
        "--logins",
        a.dir.join("nope.log").to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(2), "{r:?}");
}

#[test]
fn an_admin_without_rights_is_told_to_use_sudo() {
    if sshjit::system::euid() != 0 {
        return; // needs root to run the binary as another account
    }
    use std::os::unix::process::CommandExt;
    let a = Admin::new("adm-nobody");
    a.grant("deploy", "a.pub", &[]);
    let before = a.snapshot();
    let key = a.key("a.pub");
    let mut c = a.cmd(&[
        "grant", "--user", "u", "--key", &key, "--for", "1h", "--reason", "r",
    ]);
    c.uid(65534).gid(65534);
    let r = run_cmd(c);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr.contains(
            "permission denied; changing the policy needs its owner's rights (run with sudo)"
        ),
        "{r:?}"
    );
    assert_eq!(a.snapshot(), before);
    // Reading what is world-readable still works.
    let mut c = a.cmd(&["list"]);
    c.uid(65534).gid(65534);
    run_cmd(c).assert_ok();
}

#[test]
fn an_edit_warns_that_a_detached_signature_is_stale() {
    let a = Admin::new("adm-sig");
    a.grant("deploy", "a.pub", &[]);
    a.dir
        .write("policy.json.sig", "-----BEGIN SSH SIGNATURE-----\n");
    let r = a.ok(&["freeze", "--reason", "r"]);
    assert!(
        r.stderr
            .contains("policy.json.sig was made for the previous version"),
        "{r:?}"
    );
    // Nothing changed, nothing to warn about.
    let r = a.ok(&["freeze", "--reason", "r"]);
    assert!(!r.stderr.contains(".sig"), "{r:?}");
}
