//! End-to-end: the admin commands edit the policy a real sshd's helper
//! reads, and the very next login follows: grant lets in, revoke and
//! freeze keep out, break-glass works during a freeze, thaw restores. The
//! admin lines reach a real rsyslogd at the right priority, and `report`
//! reads the helper's decision lines back from its file.

use std::path::Path;

use serde_json::Value;

use crate::support::sshd::{ClientKey, Options, Sshd, USER_A, USER_B};
use crate::support::*;

/// Runs an admin command against the server's config (its policy, host
/// and syslog socket).
fn admin(sshd: &Sshd, args: &[&str]) -> Run {
    let mut c = sshjit(args);
    c.arg("--config").arg(&sshd.config);
    run_cmd(c)
}

#[track_caller]
fn ok(sshd: &Sshd, args: &[&str]) -> String {
    let r = admin(sshd, args);
    r.assert_ok();
    r.stdout
}

fn public(key: &ClientKey) -> String {
    key.private.with_extension("pub").display().to_string()
}

fn keys(name: &str) -> (ClientKey, ClientKey) {
    let dir = TestDir::new(name);
    let a = ClientKey::generate(&dir.path, "alice");
    let b = ClientKey::generate(&dir.path, "bob");
    // The keys live as long as the test process.
    std::mem::forget(dir);
    (a, b)
}

#[test]
fn grant_revoke_freeze_break_glass_and_thaw_decide_the_next_login() {
    let (a, b) = keys("adm-e2e-keys");
    let sshd = Sshd::start("adm-e2e", &doc(vec![], vec![]), Options::default());
    sshd.assert_refused(USER_A, &a);

    // grant: the next login works.
    let (pa, pb) = (public(&a), public(&b));
    let ga = ok(
        &sshd,
        &[
            "grant",
            "--user",
            USER_A,
            "--key",
            &pa,
            "--for",
            "10m",
            "--reason",
            "INC-1 e2e",
            "--host",
            "e2e-host-*",
            "--by",
            "bob",
        ],
    )
    .trim()
    .to_owned();
    sshd.assert_login(USER_A, &a);
    let line = sshd.syslog.wait_for(&["action=grant", &format!("id={ga}")]);
    assert!(line.starts_with("authpriv.notice sshjit["), "{line}");
    sshd.syslog
        .wait_for(&["outcome=allow", &format!("matched={ga}")]);
    // Only that account, only matching hosts.
    sshd.assert_refused(USER_B, &a);
    ok(
        &sshd,
        &[
            "grant", "--user", USER_B, "--key", &pb, "--for", "10m", "--reason", "r", "--host",
            "db-*",
        ],
    );
    sshd.assert_refused(USER_B, &b);

    // revoke: the next login is refused; lifting it lets in again.
    ok(
        &sshd,
        &["revoke", "--key", &pa, "--reason", "laptop stolen"],
    );
    sshd.assert_refused(USER_A, &a);
    sshd.syslog
        .wait_for(&["action=revoke", &format!("fp={}", a.fingerprint)]);
    ok(
        &sshd,
        &["unrevoke", "--key", &pa, "--reason", "laptop found"],
    );
    sshd.assert_login(USER_A, &a);
    ok(&sshd, &["revoke", "--grant", &ga, "--reason", "done"]);
    sshd.assert_refused(USER_A, &a);
    ok(&sshd, &["unrevoke", "--grant", &ga, "--reason", "not done"]);
    ok(
        &sshd,
        &["revoke", "--user", USER_A, "--reason", "account suspended"],
    );
    sshd.assert_refused(USER_A, &a);
    ok(
        &sshd,
        &["unrevoke", "--user", USER_A, "--reason", "reinstated"],
    );
    sshd.assert_login(USER_A, &a);

    // freeze: everything stops but break-glass, logged at alert.
    let bg = ok(
        &sshd,
        &[
            "grant",
            "--user",
            USER_A,
            "--key",
            &pb,
            "--for",
            "10m",
            "--reason",
            "INC-2 responder",
            "--break-glass",
        ],
    )
    .trim()
    .to_owned();
    let line = sshd.syslog.wait_for(&["action=grant", "break_glass=true"]);
    assert!(line.starts_with("authpriv.alert sshjit["), "{line}");
    ok(&sshd, &["freeze", "--reason", "INC-2 intrusion"]);
    let line = sshd.syslog.wait_for(&["action=freeze", "outcome=ok"]);
    assert!(line.starts_with("authpriv.alert sshjit["), "{line}");
    sshd.assert_refused(USER_A, &a);
    sshd.assert_login(USER_A, &b);
    let line = sshd
        .syslog
        .wait_for(&[&format!("break_glass={bg}"), "outcome=allow"]);
    assert!(line.starts_with("authpriv.alert "), "{line}");

    // thaw: back as before.
    ok(&sshd, &["thaw", "--reason", "INC-2 contained"]);
    let line = sshd.syslog.wait_for(&["action=thaw"]);
    assert!(line.starts_with("authpriv.alert sshjit["), "{line}");
    sshd.assert_login(USER_A, &a);
    sshd.assert_login(USER_A, &b);

    // The trail verifies, and the report says who had access and used it.
    let v = ok(&sshd, &["audit", "verify"]);
    assert!(v.contains("every hash and link intact"), "{v}");
    // The harness wrote the first policy by hand: the trail adopted it.
    assert!(
        v.contains("note: the trail starts by adopting the policy"),
        "{v}"
    );
    let log = sshd.syslog.file.display().to_string();
    let report: Value = serde_json::from_str(&ok(
        &sshd,
        &["report", "--format", "json", "--logins", &log],
    ))
    .unwrap();
    assert_eq!(report["trail"]["verified"], true);
    let entry = |id: &str| {
        report["grants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["grant"]["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {report:#}"))
            .clone()
    };
    let used = entry(&ga)["usage"].clone();
    assert!(used["decisions"].as_u64().unwrap() >= 4, "{used}");
    assert_eq!(used["hosts"], serde_json::json!([sshd.host]));
    assert_eq!(entry(&ga)["recorded_by"], "bob");
    assert_eq!(entry(&ga)["revocations"].as_array().unwrap().len(), 3);
    assert!(entry(&bg)["usage"]["decisions"].as_u64().unwrap() >= 1);
    let actions: Vec<&str> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "adopt", "revoke", "unrevoke", "revoke", "unrevoke", "revoke", "unrevoke", "freeze",
            "thaw"
        ]
    );
    assert!(Path::new(&sshd.policy).exists());
}

#[test]
fn certificate_principals_are_granted_and_revoked_by_key_id() {
    let (a, _b) = keys("adm-e2e-cert-keys");
    let sshd = Sshd::start("adm-e2e-cert", &doc(vec![], vec![]), Options::default());
    sshd.ca.sign(&a, "alice@corp-7", &["alice"], 7001);
    sshd.assert_refused(USER_A, &a);
    ok(
        &sshd,
        &[
            "grant",
            "--user",
            USER_A,
            "--principal",
            "alice",
            "--for",
            "5m",
            "--reason",
            "on call",
        ],
    );
    sshd.assert_login(USER_A, &a);
    ok(
        &sshd,
        &[
            "revoke",
            "--key-id",
            "alice@corp-7",
            "--reason",
            "cert leaked",
        ],
    );
    sshd.assert_refused(USER_A, &a);
    ok(
        &sshd,
        &[
            "unrevoke",
            "--key-id",
            "alice@corp-7",
            "--reason",
            "false alarm",
        ],
    );
    sshd.assert_login(USER_A, &a);
    ok(
        &sshd,
        &["revoke", "--serial", "7001", "--reason", "cert leaked"],
    );
    sshd.assert_refused(USER_A, &a);
    ok(&sshd, &["unrevoke", "--serial", "7001", "--reason", "r"]);
    ok(&sshd, &["revoke", "--principal", "alice", "--reason", "r"]);
    sshd.assert_refused(USER_A, &a);
    ok(&sshd, &["audit", "verify"]);
}
