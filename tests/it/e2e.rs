//! End-to-end: a real sshd on loopback runs the helper through the shipped
//! drop-in; a real ssh client logs in (or is refused).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::support::sshd::{ClientKey, Options, Sshd, USER_A, USER_B};
use crate::support::*;

fn grant_for(id: &str, user: &str, key: &ClientKey) -> Value {
    key_grant(id, user, &key.public_line)
}

fn with(mut g: Value, field: &str, value: Value) -> Value {
    g[field] = value;
    g
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sleep_until_unix(t: i64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let target = Duration::from_secs(t as u64);
    if target > now {
        std::thread::sleep(target - now);
    }
}

/// A server plus two client keys; the policy is set per test.
fn setup(
    name: &str,
    policy: impl FnOnce(&ClientKey, &ClientKey) -> Value,
) -> (Sshd, ClientKey, ClientKey) {
    let keys = TestDir::new(&format!("{name}-keys"));
    let a = ClientKey::generate(&keys.path, "alice");
    let b = ClientKey::generate(&keys.path, "bob");
    let sshd = Sshd::start(name, &policy(&a, &b), Options::default());
    // Keep the key directory alive as long as the server's.
    std::mem::forget(keys);
    (sshd, a, b)
}

#[test]
fn valid_grant_logs_in_and_is_logged() {
    let (sshd, a, b) = setup("e2e-valid", |a, _| {
        doc(vec![grant_for("g-alice", USER_A, a)], vec![])
    });
    sshd.assert_login(USER_A, &a);
    let line = sshd.syslog.wait_for(&["outcome=allow", "matched=g-alice"]);
    assert!(line.starts_with("authpriv.info sshjit["), "{line}");
    for field in [
        format!("user={USER_A}"),
        "mode=keys".into(),
        format!("fp={}", a.fingerprint),
        "host=e2e-host-1".into(),
        "latency_us=".into(),
    ] {
        assert!(line.contains(&field), "{field} missing: {line}");
    }
    // Another key, and the right key for another account, are refused.
    sshd.assert_refused(USER_A, &b);
    sshd.assert_refused(USER_B, &a);
    sshd.syslog
        .wait_for(&[&format!("user={USER_B}"), "outcome=none"]);
}

#[test]
fn time_window_host_and_account_are_enforced() {
    let (sshd, a, _b) = setup("e2e-window", |a, _| {
        doc(
            vec![with(
                grant_for("g-expired", USER_A, a),
                "expires_at",
                json!(rfc3339_in(-60)),
            )],
            vec![],
        )
    });
    sshd.assert_refused(USER_A, &a);
    sshd.set_policy(&doc(
        vec![with(
            grant_for("g-later", USER_A, &a),
            "not_before",
            json!(rfc3339_in(3600)),
        )],
        vec![],
    ));
    sshd.assert_refused(USER_A, &a);
    sshd.set_policy(&doc(
        vec![with(
            grant_for("g-db", USER_A, &a),
            "hosts",
            json!(["db-*"]),
        )],
        vec![],
    ));
    sshd.assert_refused(USER_A, &a);
    sshd.set_policy(&doc(
        vec![with(
            grant_for("g-e2e", USER_A, &a),
            "hosts",
            json!(["E2E-*"]),
        )],
        vec![],
    ));
    sshd.assert_login(USER_A, &a);
    sshd.set_policy(&doc(vec![grant_for("g-b", USER_B, &a)], vec![]));
    sshd.assert_refused(USER_A, &a);
    sshd.assert_login(USER_B, &a);
}

#[test]
fn each_revocation_kind_refuses_the_next_login() {
    let (sshd, a, _b) = setup("e2e-revoke", |a, _| {
        doc(vec![grant_for("g-1", USER_A, a)], vec![])
    });
    for rev in [
        json!({"grant": "g-1"}),
        json!({"fingerprint": a.fingerprint}),
        json!({"user": USER_A}),
    ] {
        sshd.set_policy(&doc(vec![grant_for("g-1", USER_A, &a)], vec![]));
        sshd.assert_login(USER_A, &a);
        sshd.set_policy(&doc(vec![grant_for("g-1", USER_A, &a)], vec![rev.clone()]));
        sshd.assert_refused(USER_A, &a);
    }
}

#[test]
fn frozen_refuses_all_but_break_glass() {
    let (sshd, a, b) = setup("e2e-frozen", |a, b| {
        doc(
            vec![
                grant_for("g-normal", USER_A, a),
                with(grant_for("g-bg", USER_A, b), "break_glass", json!(true)),
            ],
            vec![],
        )
    });
    sshd.assert_login(USER_A, &a);
    sshd.assert_login(USER_A, &b);
    let mut frozen = doc(
        vec![
            grant_for("g-normal", USER_A, &a),
            with(grant_for("g-bg", USER_A, &b), "break_glass", json!(true)),
        ],
        vec![],
    );
    frozen["frozen"] = json!(true);
    sshd.set_policy(&frozen);
    sshd.assert_refused(USER_A, &a);
    sshd.assert_login(USER_A, &b);
    // Break-glass use is logged at alert priority.
    let line = sshd.syslog.wait_for(&["break_glass=g-bg", "outcome=allow"]);
    assert!(line.starts_with("authpriv.alert "), "{line}");
}

#[test]
fn a_grant_that_runs_out_stops_working_while_sshd_runs() {
    let expires = now_secs() + 6;
    let (sshd, a, _b) = setup("e2e-runs-out", |a, _| {
        doc(
            vec![with(
                grant_for("g-short", USER_A, a),
                "expires_at",
                json!(rfc3339_at(expires)),
            )],
            vec![],
        )
    });
    sshd.assert_login(USER_A, &a);
    sleep_until_unix(expires + 1);
    sshd.assert_refused(USER_A, &a);
    sshd.syslog
        .wait_for(&["outcome=none", "reason=no-valid-grant"]);
}

#[test]
fn from_restricts_the_source_address() {
    let (sshd, a, b) = setup("e2e-from", |a, b| {
        doc(
            vec![
                with(grant_for("g-here", USER_A, a), "from", json!(["127.0.0.1"])),
                with(
                    grant_for("g-elsewhere", USER_A, b),
                    "from",
                    json!(["10.0.0.0/8", "!127.0.0.1"]),
                ),
            ],
            vec![],
        )
    });
    sshd.assert_login(USER_A, &a);
    sshd.assert_refused(USER_A, &b);
}

#[test]
fn command_and_restrict_behave_as_sshd_documents() {
    let (sshd, a, b) = setup("e2e-command", |a, b| {
        doc(
            vec![
                with(
                    with(
                        grant_for("g-cmd", USER_A, a),
                        "command",
                        json!("echo \"forced $SSH_ORIGINAL_COMMAND\""),
                    ),
                    "restrict",
                    json!(true),
                ),
                grant_for("g-free", USER_A, b),
            ],
            vec![],
        )
    });
    let l = sshd.login(USER_A, &a, "id -un");
    assert!(l.succeeded(), "{l:?}\n{}", sshd.diagnostics());
    assert_eq!(
        l.stdout.trim(),
        "forced id -un",
        "the forced command runs instead"
    );
    // restrict: no port forwarding (a remote forward needs the server's consent).
    let forward = ["-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9"];
    let l = sshd.login_with(USER_A, &b, &forward, "echo forwarded");
    assert!(
        l.succeeded() && l.stdout.contains("forwarded"),
        "{l:?}\n{}",
        sshd.diagnostics()
    );
    sshd.set_policy(&doc(
        vec![with(grant_for("g-r", USER_A, &b), "restrict", json!(true))],
        vec![],
    ));
    sshd.assert_login(USER_A, &b);
    let l = sshd.login_with(USER_A, &b, &forward, "echo forwarded");
    assert!(
        !l.succeeded() && l.stderr.contains("forwarding failed"),
        "{l:?}"
    );
}

#[test]
fn certificates_use_principals() {
    let (sshd, a, b) = setup("e2e-cert", |_, _| doc(vec![], vec![]));
    sshd.ca.sign(&a, "alice@corp-1", &["alice", "oncall"], 1001);
    sshd.ca.sign(&b, "bob@corp-1", &["bob"], 1002);
    let grants = || {
        vec![
            principal_grant("g-alice", USER_A, "alice"),
            principal_grant("g-bob", USER_A, "bob"),
        ]
    };
    sshd.set_policy(&doc(grants(), vec![]));
    sshd.assert_login(USER_A, &a);
    sshd.assert_login(USER_A, &b);
    let line = sshd.syslog.wait_for(&[
        "mode=principals",
        "key_id=alice@corp-1",
        "cert_serial=1001",
        "outcome=allow",
    ]);
    assert!(line.contains("matched=g-alice,g-bob"), "{line}");
    // Wrong account, no matching principal, expired, revoked principal/key ID/serial/fingerprint.
    sshd.assert_refused(USER_B, &a);
    sshd.set_policy(&doc(vec![principal_grant("g-ops", USER_A, "ops")], vec![]));
    sshd.assert_refused(USER_A, &a);
    sshd.set_policy(&doc(
        vec![with(
            principal_grant("g-alice", USER_A, "alice"),
            "expires_at",
            json!(rfc3339_in(-5)),
        )],
        vec![],
    ));
    sshd.assert_refused(USER_A, &a);
    for rev in [
        json!({"principal": "alice"}),
        json!({"key_id": "alice@corp-1"}),
        json!({"serial": 1001}),
        json!({"fingerprint": a.fingerprint}),
        json!({"grant": "g-alice"}),
    ] {
        sshd.set_policy(&doc(grants(), vec![rev.clone()]));
        sshd.assert_refused(USER_A, &a);
        sshd.assert_login(USER_A, &b);
    }
    // Frozen: only a break-glass principal works.
    let mut frozen = doc(
        vec![
            principal_grant("g-alice", USER_A, "alice"),
            with(
                principal_grant("g-bob", USER_A, "bob"),
                "break_glass",
                json!(true),
            ),
        ],
        vec![],
    );
    frozen["frozen"] = json!(true);
    sshd.set_policy(&frozen);
    sshd.assert_refused(USER_A, &a);
    sshd.assert_login(USER_A, &b);
}

#[test]
fn a_broken_policy_denies_and_says_why() {
    let (sshd, a, _b) = setup("e2e-broken", |a, _| {
        doc(vec![grant_for("g-1", USER_A, a)], vec![])
    });
    sshd.assert_login(USER_A, &a);
    let mut bad = doc(vec![grant_for("g-1", USER_A, &a)], vec![]);
    bad["grants"][0]["expires_at"] = json!("2099-01-01T00:00:00");
    sshd.set_policy(&bad);
    sshd.assert_refused(USER_A, &a);
    let line = sshd.syslog.wait_for(&["outcome=error", "has no zone"]);
    assert!(line.starts_with("authpriv.err "), "{line}");
    // A policy others can write is refused too.
    sshd.set_policy(&doc(vec![grant_for("g-1", USER_A, &a)], vec![]));
    sshd.assert_login(USER_A, &a);
    std::fs::set_permissions(
        &sshd.policy,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    sshd.assert_refused(USER_A, &a);
    sshd.syslog
        .wait_for(&["outcome=error", "writable by group or others"]);
}

/// sshd itself must read our expiry-time as the grant's end: a static
/// authorized_keys file holding the helper's line lets the key in before
/// `expires_at` and refuses it after, in both styles and in a zone with
/// summer time in effect and one with a fractional offset.
#[test]
fn sshd_reads_expiry_time_as_the_same_instant() {
    super::support::sshd::prerequisites();
    for (style, tz) in [
        ("utc", "UTC"),
        ("local", "Australia/Sydney"),
        ("local", "Asia/Kathmandu"),
        ("local", "America/New_York"),
    ] {
        let dir = TestDir::new("e2e-expiry-keys");
        let key = ClientKey::generate(&dir.path, "k");
        let expires = now_secs() + 5;
        let policy = dir.policy(&doc(
            vec![with(
                grant_for("g-1", USER_A, &key),
                "expires_at",
                json!(rfc3339_at(expires)),
            )],
            vec![],
        ));
        let config = dir.config(&format!("expiry_time = \"{style}\""));
        let mut c = Globals::new(&policy, &config)
            .host("h")
            .cmd(&["keys", USER_A]);
        c.env("TZ", tz);
        let r = run_cmd(c);
        r.assert_ok();
        assert!(r.stdout.starts_with("expiry-time=\""), "{r:?}");
        let keys_file = dir.write("authorized_keys", &r.stdout);
        let sshd = Sshd::start(
            "e2e-expiry",
            &doc(vec![], vec![]),
            Options {
                static_keys_file: Some(keys_file),
                env: vec![("TZ".into(), tz.into())],
                ..Options::default()
            },
        );
        sshd.assert_login(USER_A, &key);
        sleep_until_unix(expires + 1);
        let l = sshd.login(USER_A, &key, "true");
        assert!(
            l.refused(),
            "{style} {tz}: sshd still accepts {} after expiry: {l:?}",
            r.stdout.trim()
        );
        // sshd says why at VERBOSE: the key line's options (expiry-time) refused it.
        assert!(
            sshd.sshd_log().contains("Refused by key options"),
            "{style} {tz}: {}",
            sshd.sshd_log()
        );
    }
}

/// The helper reads a signed policy from an https endpoint: a revocation
/// published there refuses the very next login, and replaying the older
/// signed document is refused as a rollback.
#[test]
fn https_source_revocation_refuses_the_very_next_login() {
    use crate::support::https::{
        Pki, Response, Server, header_value, signing_key, ssh_sign, write_pem,
    };
    use std::os::unix::fs::PermissionsExt;

    let keys = TestDir::new("e2e-https-keys");
    let a = ClientKey::generate(&keys.path, "alice");
    let files = TestDir::new("e2e-https-files");
    let pki = Pki::new("e2e CA");
    let server = Server::start(&pki);
    let ca = files.join("ca.pem");
    write_pem(&ca, &pki.ca_pem);
    let signer = signing_key(&files, "signer");
    let signers = files.write(
        "allowed_signers",
        format!("security@corp {}\n", signer.public_line),
    );
    // The helper runs as an unprivileged account, which owns its state.
    let state = files.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    let publish = |d: &Value| {
        let b = serde_json::to_vec_pretty(d).unwrap();
        let sig = ssh_sign(&signer, &b, "sshjit-policy");
        server.route(
            "/policy.json",
            Response::ok(b).header("Sshjit-Signature", &header_value(&sig)),
        );
    };
    let granted = |serial: u64, revocations: Vec<Value>| {
        json!({"version": 1, "serial": serial,
               "grants": [grant_for("g-alice", USER_A, &a)], "revocations": revocations})
    };
    publish(&granted(1, vec![]));
    let sshd = Sshd::start(
        "e2e-https",
        &doc(vec![], vec![]),
        Options {
            source: Some(server.url("/policy.json")),
            sshjit_config: format!(
                "ca_file = \"{}\"\nallowed_signers = \"{}\"\nstate_dir = \"{}\"\ntimeout = \"2s\"",
                ca.display(),
                signers.display(),
                state.display()
            ),
            ..Options::default()
        },
    );
    sshd.assert_login(USER_A, &a);
    let line = sshd.syslog.wait_for(&[
        "outcome=allow",
        "signed_by=security@corp",
        "policy_serial=1",
    ]);
    assert!(
        line.contains(&format!("source={}", server.url("/policy.json"))),
        "{line}"
    );
    let seen = server.seen();
    assert!(
        seen.iter()
            .any(|s| s.query == format!("user={USER_A}&host=e2e-host-1&mode=keys")),
        "{seen:?}"
    );

    publish(&granted(
        2,
        vec![json!({"grant": "g-alice", "reason": "left"})],
    ));
    sshd.assert_refused(USER_A, &a);
    sshd.syslog.wait_for(&["outcome=none", "policy_serial=2"]);
    assert_eq!(
        std::fs::read_to_string(state.join("serial")).unwrap(),
        "2\n"
    );

    // Replaying the older, validly signed document does not bring access back.
    publish(&granted(1, vec![]));
    sshd.assert_refused(USER_A, &a);
    sshd.syslog
        .wait_for(&["rollback refused: serial 1 is lower than 2"]);
}
