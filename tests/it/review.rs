//! Regression tests for the findings of the hostile review (issue 9), one
//! per finding, named after it. Each failed before its fix. Those about
//! sshd (10, 11) run through the real sshd harness.

use std::fs;
use std::path::Path;

use crate::admin::Admin;
use crate::support::*;

/// Every entry under `dir`, recursively, as paths relative to it.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn finding_01_editing_commands_never_create_a_policy() {
    let dir = TestDir::new("review-1");
    let config = dir.config("");
    let key = dir.write("a.pub", format!("{KEY_A}\n"));
    let key = key.to_str().unwrap();
    let before = tree(&dir.path);
    // The review's attack: pretty-printed JSON is valid shell.
    let targets = [
        dir.join("profile.d/zz.sh"),
        dir.join("zz.sh"),
        dir.join("missing/dir/policy.json"),
        dir.join("policy.json"),
    ];
    for target in &targets {
        let g = Globals::new(target, &config);
        for args in [
            vec!["revoke", "--key-id", "x", "--reason", "INC $(id >/tmp/p)"],
            vec!["unrevoke", "--user", "u", "--reason", "r"],
            vec![
                "grant", "--user", "u", "--key", key, "--for", "1h", "--reason", "r",
            ],
            vec!["freeze", "--reason", "r"],
            vec!["thaw", "--reason", "r"],
            vec!["prune"],
            vec!["audit", "repair", "--reason", "r"],
            vec!["index"],
        ] {
            let r = g.run(&args);
            assert_eq!(r.code, Some(1), "{args:?} on {}: {r:#?}", target.display());
            assert_eq!(r.stdout, "", "{args:?}: {r:#?}");
            if args[0] != "index" {
                assert!(r.stderr.contains("sshjit init"), "{args:?}: {r:#?}");
            }
            assert_eq!(tree(&dir.path), before, "{args:?} created something");
        }
    }
    // init is deliberate: a name ending in .json, nothing there already,
    // and directories only for the configured location.
    let r = Globals::new(dir.join("zz.sh"), &config).run(&["init"]);
    assert_eq!(r.code, Some(2), "{r:#?}");
    assert!(r.stderr.contains("must end in .json"), "{r:#?}");
    let r = Globals::new(dir.join("missing/dir/policy.json"), &config).run(&["init"]);
    assert_eq!(r.code, Some(1), "{r:#?}");
    assert_eq!(
        tree(&dir.path),
        before,
        "init made directories for --policy"
    );
    let configured = dir.write(
        "configured.toml",
        format!(
            "source = \"{}\"\nsyslog_socket = \"{}\"\n",
            dir.join("etc/sshjit/policy.json").display(),
            dir.join("no-syslog-here").display()
        ),
    );
    run(&["init", "--config", configured.to_str().unwrap()]).assert_ok();
    assert!(dir.join("etc/sshjit/policy.json").is_file());
    assert!(dir.join("etc/sshjit/policy.json.audit.jsonl").is_file());
    // Where it is deliberate, the editing commands work.
    run(&[
        "grant",
        "--user",
        "u",
        "--key",
        key,
        "--for",
        "1h",
        "--reason",
        "r",
        "--config",
        configured.to_str().unwrap(),
    ])
    .assert_ok();
    // An existing file that is not a policy is never taken over.
    let other = dir.write("other.json", "{\"not\": \"a policy\"}\n");
    let r = Globals::new(&other, &config).run(&["init"]);
    assert_eq!(r.code, Some(1), "{r:#?}");
    assert_eq!(fs::read(&other).unwrap(), b"{\"not\": \"a policy\"}\n");
}

#[test]
fn finding_04_report_logins_survives_a_forged_line_with_a_multibyte_escape() {
    let a = Admin::new("review-4");
    let g1 = a.grant("d", "a.pub", &[]);
    // What `logger -t sshjit 'mode=keys user=d host="\x1é" ...'` leaves:
    // an escape cut short by a two-byte character.
    let mut log = b"Nov 21 10:00:00 web-1 sshjit[1]: mode=keys user=d host=\"\\x1".to_vec();
    log.extend_from_slice("é".as_bytes());
    log.extend_from_slice(format!("\" outcome=allow matched={g1}\n").as_bytes());
    // And a few more ways to end a value mid-character.
    for tail in ["\\xé", "\\é", "\\x", "\\"] {
        log.extend_from_slice(
            format!("Nov 21 10:00:01 web-1 sshjit[2]: mode=keys user=d host=\"{tail}").as_bytes(),
        );
        log.extend_from_slice(format!("\" outcome=allow matched={g1}\n").as_bytes());
    }
    let path = a.dir.write("auth.log", &log);
    for format in ["table", "json", "csv"] {
        let r = a.run(&[
            "report",
            "--format",
            format,
            "--logins",
            path.to_str().unwrap(),
        ]);
        assert_eq!(r.code, Some(0), "{format}: {r:#?}");
        assert!(r.stdout.contains(&g1), "{format}: {r:#?}");
    }
    let j: serde_json::Value = serde_json::from_str(
        &a.ok(&[
            "report",
            "--format",
            "json",
            "--logins",
            path.to_str().unwrap(),
        ])
        .stdout,
    )
    .unwrap();
    let used = j["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["grant"]["id"] == g1.as_str())
        .unwrap()["usage"]["decisions"]
        .clone();
    // The escapes cut short by a quote swallow it (and the rest of the
    // line); the others are read.
    assert_eq!(used, 3, "the forged lines were read without a crash");
}

/// A directory private to the helper (0700), for `state_dir` and `cache_dir`.
fn private_dir(dir: &TestDir, name: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    fs::create_dir(&p).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).unwrap();
    p
}

fn deploy_doc(serial: u64, revoked: bool) -> Vec<u8> {
    let revocations = if revoked {
        vec![serde_json::json!({"user": "deploy", "reason": "left"})]
    } else {
        vec![]
    };
    let mut d = doc(vec![key_grant("g-1", "deploy", KEY_A)], revocations);
    d["serial"] = serde_json::json!(serial);
    serde_json::to_vec_pretty(&d).unwrap()
}

#[test]
fn finding_02_the_cache_keeps_the_latest_answer_not_the_highest_serial() {
    use crate::support::https::{Behaviour, Pki, Response, Server, write_pem};
    let dir = TestDir::new("review-2");
    let pki = Pki::new("review CA");
    let ca = dir.join("ca.pem");
    write_pem(&ca, &pki.ca_pem);
    let server = Server::start(&pki);
    let cache = private_dir(&dir, "cache");
    // Unsigned: there is no rollback guard, so serials prove nothing.
    let config = dir.config(&format!(
        "ca_file = \"{}\"\ntimeout = \"2s\"\nhost = \"web-1\"\ncache_dir = \"{}\"\nmax_stale = \"10m\"",
        ca.display(),
        cache.display()
    ));
    let url = server.url("/p.json");
    let keys = || Globals::new(&url, &config).run(&["keys", "deploy"]);
    server.route("/p.json", Response::ok(deploy_doc(100, false)));
    let r = keys();
    r.assert_ok();
    assert!(r.stdout.contains("ssh-ed25519"), "{r:#?}");
    // The server (restored, or another one) now says deploy is revoked,
    // under a lower serial.
    server.route("/p.json", Response::ok(deploy_doc(5, true)));
    let r = keys();
    r.assert_ok();
    assert_eq!(r.stdout, "", "{r:#?}");
    assert!(r.stderr.contains("outcome=none"), "{}", r.stderr);
    // Then it fails: the cache must not bring deploy back.
    server.set(Behaviour::Status(503));
    let r = keys();
    assert!(r.stderr.contains("cache=hit"), "{}", r.stderr);
    assert!(r.stderr.contains("policy_serial=5"), "{}", r.stderr);
    assert_eq!(r.stdout, "", "a revoked user is back: {r:#?}");
    assert!(r.stderr.contains("outcome=none"), "{}", r.stderr);
}

#[test]
fn finding_03_a_deleted_policy_file_denies_and_is_never_served_from_the_cache() {
    let dir = TestDir::new("review-3");
    let cache = private_dir(&dir, "cache");
    let config = dir.config(&format!(
        "host = \"web-1\"\ncache_dir = \"{}\"\nmax_stale = \"10m\"",
        cache.display()
    ));
    let policy = dir.write("policy.json", deploy_doc(1, false));
    let g = Globals::new(&policy, &config);
    let r = g.run(&["keys", "deploy"]);
    r.assert_ok();
    assert!(r.stdout.contains("ssh-ed25519"), "{r:#?}");
    // Deleting the policy is how an operator cuts access in a hurry.
    fs::remove_file(&policy).unwrap();
    let r = g.run(&["keys", "deploy"]);
    r.assert_denied();
    assert!(!r.stderr.contains("cache=hit"), "{}", r.stderr);
    assert!(r.stderr.contains("no such file"), "{}", r.stderr);
    // A symlink left dangling (an unmounted target) is no different.
    std::os::unix::fs::symlink(dir.join("gone/policy.json"), &policy).unwrap();
    let r = g.run(&["keys", "deploy"]);
    r.assert_denied();
    assert!(!r.stderr.contains("cache=hit"), "{}", r.stderr);
    // Nor does a missing file hand over to the next source.
    fs::remove_file(&policy).unwrap();
    let other = dir.write("other.json", deploy_doc(1, false));
    let two = dir.config(&format!(
        "host = \"web-1\"\nsource = [\"{}\", \"{}\"]",
        policy.display(),
        other.display()
    ));
    let r = run(&["keys", "deploy", "--config", two.to_str().unwrap()]);
    r.assert_denied();
}

#[test]
fn finding_05_a_last_record_that_lost_only_its_newline_is_kept() {
    let a = Admin::new("review-5");
    let g1 = a.grant("deploy", "a.pub", &["--by", "bob"]);
    let full = fs::read(a.trail_path()).unwrap();
    assert_eq!(full.last(), Some(&b'\n'));
    let cut = &full[..full.len() - 1];
    for step in ["verify", "repair", "next edit"] {
        fs::write(a.trail_path(), cut).unwrap();
        match step {
            "verify" => {
                a.ok(&["audit", "verify"]);
            }
            "repair" => {
                let r = a.ok(&["audit", "repair", "--reason", "check"]);
                assert!(!r.stdout.contains("discarded"), "{r:#?}");
            }
            _ => {
                let r = a.run(&[
                    "grant",
                    "--user",
                    "web",
                    "--key",
                    &a.key("b.pub"),
                    "--for",
                    "1h",
                    "--reason",
                    "r",
                ]);
                r.assert_ok();
                assert!(!r.stderr.contains("repaired"), "{r:#?}");
            }
        }
        let now = fs::read(a.trail_path()).unwrap();
        assert!(now.starts_with(cut), "{step}: the record was destroyed");
        let t = a.trail();
        assert!(
            t.iter().any(|r| r["grant"]["id"] == g1.as_str()),
            "{step}: {t:?}"
        );
        assert!(t.iter().all(|r| r["action"] != "repair"), "{step}: {t:?}");
        a.ok(&["audit", "verify"]);
        // The report still says who granted it.
        let j: serde_json::Value =
            serde_json::from_str(&a.ok(&["report", "--format", "json"]).stdout).unwrap();
        let e = j["grants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["grant"]["id"] == g1.as_str())
            .unwrap()
            .clone();
        assert_ne!(e["adopted"], true, "{step}: {e}");
        assert_eq!(e["grant"]["granted_by"], "bob", "{step}: {e}");
    }
    assert_eq!(a.changes().len(), 2);
}

#[test]
fn finding_07_a_dangling_default_config_is_an_error_not_defaults() {
    let dir = TestDir::new("review-7");
    let policy = dir.write("policy.json", deploy_doc(1, false));
    let p = policy.to_str().unwrap();
    // Truly absent: defaults.
    run_with_private_etc(&dir, "rm -rf /etc/sshjit", &["check", "--policy", p]).assert_ok();
    // The config is a symlink to an unmounted file system: the defaults
    // would drop its settings (allowed_signers: an unsigned policy would
    // pass). Everything that reads the config denies.
    for setup in [
        "mkdir -p /etc/sshjit && ln -sfn /nonexistent/mnt/sshjit.toml /etc/sshjit/sshjit.toml",
        "rm -rf /etc/sshjit && ln -sfn /nonexistent/mnt/sshjit /etc/sshjit",
    ] {
        let r = run_with_private_etc(&dir, setup, &["check", "--policy", p]);
        r.assert_denied();
        assert!(r.stderr.contains("leads nowhere"), "{setup}: {r:#?}");
        let r = run_with_private_etc(
            &dir,
            setup,
            &["keys", "deploy", "--policy", p, "--host", "web-1"],
        );
        r.assert_denied();
        assert!(r.stderr.contains("leads nowhere"), "{setup}: {r:#?}");
    }
}

#[test]
fn finding_10_two_grants_of_one_principal_allow_what_either_allows_through_sshd() {
    use crate::support::sshd::{ClientKey, Options, Sshd, USER_A};
    use serde_json::json;
    let keys = TestDir::new("review-10-keys");
    let key = ClientKey::generate(&keys.path, "alice");
    let sshd = Sshd::start("review-10", &doc(vec![], vec![]), Options::default());
    sshd.ca.sign(&key, "alice@corp-10", &["alice"], 10);
    let restricted = || {
        let mut g = principal_grant("g-far", USER_A, "alice");
        g["from"] = json!(["10.9.9.9"]);
        g
    };
    // sshd applies only the first line naming the principal: the one
    // restricted to another address must not hide the unrestricted one.
    sshd.set_policy(&doc(
        vec![restricted(), principal_grant("g-any", USER_A, "alice")],
        vec![],
    ));
    sshd.assert_login(USER_A, &key);
    // Two restricted ones: either address may log in (here, ours).
    let mut near = principal_grant("g-near", USER_A, "alice");
    near["from"] = json!(["127.0.0.1"]);
    sshd.set_policy(&doc(vec![restricted(), near.clone()], vec![]));
    sshd.assert_login(USER_A, &key);
    // Neither from our address: refused, as the policy says.
    sshd.set_policy(&doc(vec![restricted()], vec![]));
    sshd.assert_refused(USER_A, &key);
    // A forced command on one grant and none on the other: sshd honours
    // one line per principal, the one without the command (the policy
    // allows a shell), not the forced command.
    let mut forced = principal_grant("g-cmd", USER_A, "alice");
    forced["command"] = json!("/bin/echo forced");
    sshd.set_policy(&doc(
        vec![forced, principal_grant("g-shell", USER_A, "alice")],
        vec![],
    ));
    let l = sshd.login(USER_A, &key, "echo chosen");
    assert!(l.succeeded() && l.stdout.contains("chosen"), "{l:?}");
}

#[test]
fn finding_11_a_certificate_key_id_starting_with_a_dash_logs_in_through_sshd() {
    use crate::support::sshd::{ClientKey, Options, Sshd, USER_A};
    let keys = TestDir::new("review-11-keys");
    let key = ClientKey::generate(&keys.path, "dash");
    let sshd = Sshd::start(
        "review-11",
        &doc(vec![principal_grant("g-dash", USER_A, "dash")], vec![]),
        Options::default(),
    );
    for key_id in ["-alice", "--serial", "--key-id=x", "-"] {
        sshd.ca.sign(&key, key_id, &["dash"], 11);
        sshd.assert_login(USER_A, &key);
        let line = sshd
            .syslog
            .wait_for(&["mode=principals", "outcome=allow", "cert_serial=11"]);
        assert!(!line.contains("bad arguments"), "{line}");
    }
    // Revoked by that key ID: refused, so the key ID really was read.
    sshd.set_policy(&doc(
        vec![principal_grant("g-dash", USER_A, "dash")],
        vec![serde_json::json!({"key_id": "-"})],
    ));
    sshd.assert_refused(USER_A, &key);
    sshd.syslog
        .wait_for(&["key_id=-", "reason=certificate-revoked"]);
}

/// What a terminal or a spreadsheet must never receive raw: C0 controls
/// but tab and newline (and CR before LF), DEL, C1, and the invisible
/// format characters that reorder or hide text (bidi, zero-width).
fn unsafe_chars(text: &str) -> Vec<char> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let bad = match c {
            '\n' | '\t' => false,
            '\r' => chars.peek() != Some(&'\n'),
            c if c.is_control() => true,
            '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' => true,
            '\u{2060}'..='\u{2069}' | '\u{feff}' | '\u{e0000}'..='\u{e007f}' => true,
            _ => false,
        };
        if bad {
            out.push(c);
        }
    }
    out
}

#[test]
fn finding_09_what_is_printed_for_a_person_is_safe_for_a_terminal_and_a_spreadsheet() {
    let a = Admin::new("review-9");
    let reason = "INC-9 \u{202e}gnp.exe \u{2066}x\u{2069} \u{200b}z";
    let g1 = a.grant("deploy", "a.pub", &["--reason", reason]);
    a.ok(&["revoke", "--user", "web", "--reason", "\u{202e}left"]);
    // Forged log bytes: ESC, BEL, a C1 control and a bidi override.
    let log = a.dir.write(
        "auth.log",
        format!(
            "Nov 21 10:00:00 web-1 sshjit[1]: mode=keys user=deploy host=\"\\x1b[31mevil\\x07\\xc2\\x9b\\xe2\\x80\\xae\" outcome=allow matched={g1}\n"
        ),
    );
    let logins = log.to_str().unwrap();
    let runs = [
        vec!["list"],
        vec!["list", "--all"],
        vec!["list", "--json"],
        vec!["explain", "deploy", "--host", "web-1"],
        vec!["report"],
        vec!["report", "--format", "csv", "--logins", logins],
        vec!["report", "--format", "json", "--logins", logins],
        vec!["report", "--logins", logins],
        vec!["check"],
    ];
    for args in runs {
        let r = a.ok(&args);
        assert!(
            unsafe_chars(&r.stdout).is_empty(),
            "{args:?}: {:?}",
            unsafe_chars(&r.stdout)
        );
        assert!(
            unsafe_chars(&r.stderr).is_empty(),
            "{args:?}: {:?}",
            unsafe_chars(&r.stderr)
        );
    }
    // Escaped, not dropped: JSON keeps the very value.
    let j: serde_json::Value = serde_json::from_str(&a.ok(&["list", "--json"]).stdout).unwrap();
    assert!(j.to_string().contains('\u{202e}'), "{j}");
    let csv = a
        .ok(&["report", "--format", "csv", "--logins", logins])
        .stdout;
    assert!(csv.contains("\\u001b[31mevil\\u0007"), "{csv}");
    // And errors on stderr.
    let r = a.run(&["revoke", "--grant", "g-\u{202e}x", "--reason", "r"]);
    assert_ne!(r.code, Some(0));
    assert!(unsafe_chars(&r.stderr).is_empty(), "{:?}", r.stderr);
}

#[test]
fn finding_06_errors_never_echo_a_file_the_reader_could_not_read() {
    use std::os::unix::fs::PermissionsExt;
    let a = Admin::new("review-6");
    // Root's own files, readable by nobody else (the review used
    // /etc/shadow and /root/secret.txt).
    let vault = a.dir.join("vault");
    fs::create_dir(&vault).unwrap();
    fs::set_permissions(&vault, fs::Permissions::from_mode(0o700)).unwrap();
    let secret = |name: &str, text: &str| {
        let p = vault.join(name);
        write_file(&p, text.as_bytes(), 0o600);
        p.to_str().unwrap().to_owned()
    };
    const S: &str = "HUNTER2SECRET";
    let shadow = secret("shadow", &format!("root:$y$j9T${S}:19000:0:99999:7:::\n"));
    let toml = secret("s.toml", &format!("source = [\"{S}\"]\n"));
    let typed = secret("t.toml", &format!("timeout = [\"{S}\"]\n"));
    let key = secret("key.txt", &format!("ssh-ed25519 {S}\n"));
    let json_id = secret(
        "p.json",
        &format!("{{\"version\": 1, \"grants\": [{{\"id\": \"{S} x\"}}]}}"),
    );
    let json_key = secret(
        "k.json",
        &format!(
            "{{\"version\": 1, \"grants\": [{{\"id\": \"g\", \"user\": \"u\", \"key\": \"ssh-ed25519 {S}\", \"expires_at\": \"2099-01-01T00:00:00Z\", \"reason\": \"r\"}}]}}"
        ),
    );
    let signers = secret("signers", &format!("{S} ssh-ed25519 AAAA\n"));
    let p = a.policy.to_str().unwrap();
    let c = a.config.to_str().unwrap();
    let runs: Vec<Vec<&str>> = vec![
        vec!["list", "--config", &shadow, "--policy", p],
        vec!["check", "--config", &toml, "--policy", p],
        vec!["check", "--config", &typed, "--policy", p],
        vec!["keys", "deploy", "--config", &shadow, "--policy", p],
        vec![
            "grant", "--user", "u", "--key", &key, "--for", "1h", "--reason", "r", "--config", c,
            "--policy", p,
        ],
        vec![
            "revoke", "--key", &key, "--reason", "r", "--config", c, "--policy", p,
        ],
        vec!["check", "--config", c, "--policy", &json_id],
        vec!["check", "--config", c, "--policy", &json_key],
        vec!["check", "--config", c, "--policy", &shadow],
        vec![
            "keys", "u", "--host", "h", "--config", c, "--policy", &json_key,
        ],
        vec!["explain", "u", "--config", c, "--policy", &json_id],
        vec!["index", "--config", c, "--policy", &json_id],
        vec![
            "verify",
            &json_key,
            "--allowed-signers",
            &signers,
            "--config",
            c,
        ],
    ];
    for args in runs {
        let r = run(&args);
        assert_ne!(r.code, Some(0), "{args:?}: {r:#?}");
        assert!(
            !r.stdout.contains(S) && !r.stderr.contains(S),
            "{args:?} echoed it: {r:#?}"
        );
        assert!(!r.stderr.is_empty(), "{args:?} says why: {r:#?}");
    }
    // What anyone may read is quoted as before: it helps fix a typo.
    let open = a.dir.write(
        "open.json",
        format!("{{\"version\": 1, \"grants\": [{{\"id\": \"{S} x\"}}]}}"),
    );
    let r = run(&["check", "--config", c, "--policy", open.to_str().unwrap()]);
    r.assert_denied();
    assert!(r.stderr.contains(S), "{r:#?}");
}

#[test]
fn finding_08_sign_refuses_other_content_under_a_serial_already_signed() {
    use crate::support::https::signing_key;
    let dir = TestDir::new("review-8");
    let key = signing_key(&dir, "signer");
    let signers = dir.write("allowed_signers", format!("ops {}\n", key.public_line));
    let config = dir.config(&format!("allowed_signers = \"{}\"", signers.display()));
    let c = config.to_str().unwrap();
    let k = key.private.to_str().unwrap();
    let first = deploy_doc(5, false);
    let policy = dir.write("policy.json", &first);
    let p = policy.to_str().unwrap();
    let sig = dir.join("policy.json.sig");
    run(&["sign", p, "--key", k, "--config", c]).assert_ok();
    let signed_first = fs::read(&sig).unwrap();
    // The same bytes again: fine (a second signature of one version).
    run(&["sign", p, "--key", k, "--config", c]).assert_ok();
    // Other content under serial 5: both pairs would be valid, and a
    // replay of the first would be accepted where the second was.
    let second = deploy_doc(5, true);
    dir.write("policy.json", &second);
    let before = fs::read(&sig).unwrap();
    let r = run(&["sign", p, "--key", k, "--config", c]);
    r.assert_denied();
    assert!(r.stderr.contains("serial 5"), "{r:#?}");
    assert!(r.stderr.contains("raise"), "{r:#?}");
    assert_eq!(fs::read(&sig).unwrap(), before, "nothing signed");
    // Raised, it signs.
    dir.write("policy.json", deploy_doc(6, true));
    run(&["sign", p, "--key", k, "--config", c]).assert_ok();
    assert_ne!(fs::read(&sig).unwrap(), signed_first);
    // Back to the first version's bytes: still the same content as signed
    // under 5, so allowed (hosts that saw 6 refuse it as a rollback).
    dir.write("policy.json", &first);
    run(&["sign", p, "--key", k, "--config", c]).assert_ok();
}

#[test]
fn finding_12_check_says_what_the_helpers_account_will_see() {
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(sshjit::system::euid(), 0, "this test runs check as root");
    let dir = TestDir::new("review-12");
    let config = dir.config("");
    let policy = dir.write("policy.json", deploy_doc(1, false));
    let g = Globals::new(&policy, &config);
    // Readable by everyone: ok for nobody too, and said so.
    let r = g.run(&["check", "--as", "nobody"]);
    r.assert_ok();
    assert!(r.stdout.contains("nobody"), "{r:#?}");
    // 0600: root reads it, the helper's account cannot: every login would
    // be denied with EACCES, so check fails and says why.
    fs::set_permissions(&policy, fs::Permissions::from_mode(0o600)).unwrap();
    let r = g.run(&["check", "--as", "nobody"]);
    r.assert_denied();
    assert!(
        r.stderr.contains("nobody") && r.stderr.contains("cannot read"),
        "{r:#?}"
    );
    // The helper really is denied, as check said.
    let mut as_nobody = g.host("web-1").cmd(&["keys", "deploy"]);
    std::os::unix::process::CommandExt::uid(&mut as_nobody, 65534);
    let out = as_nobody.output().unwrap();
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    // A directory the account cannot enter is just as bad.
    fs::set_permissions(&policy, fs::Permissions::from_mode(0o644)).unwrap();
    let inner = dir.join("inner");
    fs::create_dir(&inner).unwrap();
    fs::set_permissions(&inner, fs::Permissions::from_mode(0o700)).unwrap();
    let hidden = inner.join("policy.json");
    fs::copy(&policy, &hidden).unwrap();
    let r = Globals::new(&hidden, &config).run(&["check", "--as", "nobody"]);
    r.assert_denied();
    assert!(r.stderr.contains("cannot enter"), "{r:#?}");
    // Without --as, root checks the default account (sshjit), or says
    // there is none.
    let r = g.run(&["check"]);
    r.assert_ok();
    assert!(r.stdout.contains("sshjit"), "{r:#?}");
}

/// `*`/`?` globs, case-insensitively, as `hosts` are matched.
fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// The answer sshjit-server gives for (user, host, mode): that user's
/// grants for that host and mode, every revocation that could name one of
/// them, and in principals mode every certificate revocation.
fn filtered(
    whole: &serde_json::Value,
    user: &str,
    host: &str,
    principals: bool,
) -> serde_json::Value {
    use serde_json::json;
    let grants: Vec<serde_json::Value> = whole["grants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["user"] == user)
        .filter(|g| g.get("principal").is_some() == principals)
        .filter(|g| {
            g.get("hosts")
                .and_then(|h| h.as_array())
                .is_none_or(|h| h.is_empty() || h.iter().any(|p| glob(p.as_str().unwrap(), host)))
        })
        .cloned()
        .collect();
    let fingerprint = |key: &str| match key {
        KEY_A => FP_A,
        KEY_B => FP_B,
        other => panic!("unknown test key {other}"),
    };
    let names = |r: &serde_json::Value| {
        grants.iter().any(|g| {
            r.get("grant") == Some(&g["id"])
                || r.get("user") == Some(&g["user"])
                || g.get("principal")
                    .is_some_and(|p| r.get("principal") == Some(p))
                || g.get("key").is_some_and(|k| {
                    r.get("fingerprint") == Some(&json!(fingerprint(k.as_str().unwrap())))
                })
        }) || (principals
            && ["key_id", "serial", "fingerprint"]
                .iter()
                .any(|k| r.get(*k).is_some()))
    };
    let revocations: Vec<serde_json::Value> = whole["revocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| names(r))
        .cloned()
        .collect();
    json!({"version": 1, "serial": whole["serial"], "grants": grants, "revocations": revocations})
}

#[test]
fn finding_13_a_replayed_signed_answer_never_grants_more_than_the_whole_document() {
    use crate::support::https::{
        Pki, Response, Server, header_value, signing_key, ssh_sign, write_pem,
    };
    use serde_json::json;
    // Decision (see README, "Signed policies"): answers are not bound to
    // their query. A mirror that replays the signed answer of one query
    // (user, host, mode) for another can only take access away: the helper
    // evaluates user, host and mode itself on every grant, and an answer
    // holds every revocation that could name its grants (and, for
    // principals, every certificate revocation), all at one serial.
    let dir = TestDir::new("review-13");
    let pki = Pki::new("review CA");
    let ca = dir.join("ca.pem");
    write_pem(&ca, &pki.ca_pem);
    let server = Server::start(&pki);
    let key = signing_key(&dir, "signer");
    let signers = dir.write("allowed_signers", format!("server {}\n", key.public_line));
    let state = private_dir(&dir, "state");
    let mut whole = doc(
        vec![
            key_grant("g-dk", "deploy", KEY_A),
            key_grant("g-dk2", "deploy", KEY_B),
            principal_grant("g-dp", "deploy", "alice"),
            key_grant("g-ok", "ops", KEY_B),
            principal_grant("g-op", "ops", "bob"),
            principal_grant("g-op2", "ops", "carol"),
        ],
        vec![
            json!({"grant": "g-dk2"}),
            json!({"key_id": "stolen"}),
            json!({"principal": "bob"}),
        ],
    );
    whole["serial"] = json!(7);
    whole["grants"][0]["hosts"] = json!(["web-*"]);
    whole["grants"][1]["hosts"] = json!(["db-*"]);
    whole["grants"][2]["hosts"] = json!(["web-*"]);
    let serve = |document: &serde_json::Value| {
        let bytes = serde_json::to_vec_pretty(document).unwrap();
        let sig = ssh_sign(&key, &bytes, "sshjit-policy");
        server.route(
            "/p.json",
            Response::ok(bytes).header("Sshjit-Signature", &header_value(&sig)),
        );
    };
    let url = server.url("/p.json");
    // Every query: user, host, mode (with a good or a revoked certificate).
    let mut queries = Vec::new();
    for user in ["deploy", "ops"] {
        for host in ["web-1", "db-1"] {
            queries.push((user, host, None));
            for key_id in ["good", "stolen"] {
                queries.push((user, host, Some(key_id)));
            }
        }
    }
    let ask = |user: &str, host: &str, key_id: Option<&str>| -> Vec<String> {
        let config = dir.config(&format!(
            "ca_file = \"{}\"\nhost = \"{host}\"\nallowed_signers = \"{}\"\nstate_dir = \"{}\"",
            ca.display(),
            signers.display(),
            state.display()
        ));
        let g = Globals::new(&url, &config);
        let r = match key_id {
            None => g.run(&["keys", user]),
            Some(k) => g.run(&["principals", user, "--key-id", k, "--serial", "9"]),
        };
        r.assert_ok();
        let matched = r
            .stderr
            .split_whitespace()
            .find_map(|f| f.strip_prefix("matched="))
            .unwrap_or("");
        let mut ids: Vec<String> = matched
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        ids.sort();
        ids
    };
    // What the whole document allows, query by query.
    serve(&whole);
    let allowed: Vec<Vec<String>> = queries.iter().map(|&(u, h, k)| ask(u, h, k)).collect();
    assert!(
        allowed.iter().any(|a| !a.is_empty()),
        "something is allowed"
    );
    // Each query's own answer gives exactly that; replayed for any other
    // query, never more than the whole document allows there.
    for (a, &(user, host, key_id)) in queries.iter().enumerate() {
        serve(&filtered(&whole, user, host, key_id.is_some()));
        for (b, &(u, h, k)) in queries.iter().enumerate() {
            let got = ask(u, h, k);
            if a == b {
                assert_eq!(got, allowed[b], "own answer for {:?}", queries[b]);
            }
            assert!(
                got.iter().all(|id| allowed[b].contains(id)),
                "the answer for {:?} replayed for {:?} allows {got:?}, the whole document only {:?}",
                queries[a],
                queries[b],
                allowed[b]
            );
        }
    }
}
