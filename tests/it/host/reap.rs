//! `sshjit reap` through a real sshd (ExposeAuthInfo on): a session with a
//! running command ends within seconds of `revoke`, others stay; expiry
//! ends a session only where the rules say so; a certificate session ends
//! by its serial; a rewritten auth record ends its session.

use std::fs;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::sshd::{ClientKey, Options, Sshd, USER_A, USER_B};
use crate::support::{
    Run, admin, doc, key_grant, principal_grant, rfc3339_in, run_cmd, sshjit, wait_until,
};

/// One reap test at a time: `reap` looks at every sshd session on the
/// machine, and only these tests' sshds expose auth info.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A unique `sleep N` for a remote command, to find it in /proc.
fn marker() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0);
    700_000 + (std::process::id() % 1000) * 100 + N.fetch_add(1, Ordering::SeqCst)
}

fn start(name: &str, policy: &Value) -> Sshd {
    Sshd::start(
        name,
        policy,
        Options {
            sshd_config: "ExposeAuthInfo yes\n".into(),
            ..Options::default()
        },
    )
}

/// A live session: `ssh user@host COMMAND` left running.
struct Session {
    ssh: Child,
    marker: u32,
}

impl Session {
    /// Opens a session running `script` (which ends in `exec sleep MARKER`)
    /// and waits until the remote command runs.
    fn open(sshd: &Sshd, user: &str, key: &ClientKey, script: impl Fn(u32) -> String) -> Session {
        let marker = marker();
        let mut cmd = Command::new("ssh");
        cmd.args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "LogLevel=ERROR", "-o", "ControlMaster=no"])
        .arg("-i")
        .arg(&key.private);
        if key.cert_path().exists() {
            cmd.arg("-o")
                .arg(format!("CertificateFile={}", key.cert_path().display()));
        }
        cmd.args(["-p", &sshd.port.to_string()])
            .arg(format!("{user}@127.0.0.1"))
            .arg("--")
            .arg(script(marker))
            .env("HOME", &sshd.dir.path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let ssh = cmd.spawn().expect("start ssh");
        let s = Session { ssh, marker };
        assert!(
            wait_until(Duration::from_secs(30), || s.remote_alive()),
            "the session's command never ran\n{}",
            sshd.diagnostics()
        );
        s
    }

    fn sleeping(sshd: &Sshd, user: &str, key: &ClientKey) -> Session {
        Session::open(sshd, user, key, |m| format!("exec sleep {m}"))
    }

    /// Whether `sleep MARKER` still runs on the server.
    fn remote_alive(&self) -> bool {
        let want = format!("sleep\0{}\0", self.marker);
        fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .any(|e| fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want.as_bytes()))
    }

    /// Whether the client is still connected.
    fn client_alive(&mut self) -> bool {
        self.ssh.try_wait().unwrap().is_none()
    }

    /// Waits (generously) for both ends to be gone.
    fn assert_ended(&mut self, sshd: &Sshd) {
        assert!(
            wait_until(Duration::from_secs(15), || !self.client_alive()
                && !self.remote_alive()),
            "the session must be over\n{}",
            sshd.diagnostics()
        );
    }

    fn assert_alive(&mut self, sshd: &Sshd) {
        assert!(
            self.client_alive() && self.remote_alive(),
            "the session must still be open\n{}",
            sshd.diagnostics()
        );
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.ssh.kill();
        let _ = self.ssh.wait();
    }
}

/// `sshjit reap` as the timer runs it, with the server's config and policy.
fn reap(sshd: &Sshd, extra: &[&str]) -> Run {
    let mut c = sshjit(&["reap"]);
    c.args(extra)
        .arg("--config")
        .arg(&sshd.config)
        .arg("--policy")
        .arg(&sshd.policy);
    run_cmd(c)
}

#[test]
fn a_session_with_a_running_command_ends_within_seconds_of_revoke_and_others_stay() {
    let _one = one_at_a_time();
    let dir = crate::support::TestDir::new("reap-keys");
    let revoked = ClientKey::generate(&dir.path, "revoked");
    let kept = ClientKey::generate(&dir.path, "kept");
    let sshd = start(
        "reap-revoke",
        &doc(
            vec![
                key_grant("g-revoked", USER_A, &revoked.public_line),
                key_grant("g-kept", USER_B, &kept.public_line),
            ],
            vec![],
        ),
    );
    let mut gone = Session::sleeping(&sshd, USER_A, &revoked);
    let mut stays = Session::sleeping(&sshd, USER_B, &kept);
    // A dry run names it and ends nothing.
    let dry = reap(&sshd, &["--dry-run"]);
    dry.assert_ok();
    assert_eq!(dry.stdout, "", "nothing to end yet: {dry:#?}");

    let revoked_at = Instant::now();
    admin(
        &["revoke", "--grant", "g-revoked", "--reason", "INC-1 left"],
        &sshd.policy,
        &sshd.config,
    );
    let dry = reap(&sshd, &["--dry-run"]);
    assert!(
        dry.stdout.contains(&format!("would end: {USER_A}")) && !dry.stdout.contains(USER_B),
        "{dry:#?}"
    );
    gone.assert_alive(&sshd);
    let run = reap(&sshd, &[]);
    run.assert_ok();
    assert!(run.stdout.contains(&format!("ended: {USER_A}")), "{run:#?}");
    gone.assert_ended(&sshd);
    let took = revoked_at.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "ended {took:?} after revoke"
    );
    stays.assert_alive(&sshd);
    let line = sshd
        .syslog
        .wait_for(&["action=reap", &format!("user={USER_A}"), "outcome=ended"]);
    assert!(line.starts_with("authpriv.warning sshjit"), "{line}");
    for field in [
        "cause=revoked",
        "revocation=0",
        "grants=g-revoked",
        &format!("fp={}", revoked.fingerprint),
        "host=e2e-host-1",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
    assert_eq!(
        sshd.syslog.contents().matches("action=reap").count(),
        1,
        "one line per ended session"
    );
    // Once it is gone, the next run has nothing to do.
    let again = reap(&sshd, &[]);
    again.assert_ok();
    assert_eq!(again.stdout, "", "{again:#?}");
    stays.assert_alive(&sshd);
}

#[test]
fn an_expired_grant_ends_its_session_only_where_the_rules_say_expiry() {
    let _one = one_at_a_time();
    let dir = crate::support::TestDir::new("reap-expiry-keys");
    let key = ClientKey::generate(&dir.path, "k");
    let grant = key_grant("g-1", USER_A, &key.public_line);
    let sshd = start("reap-expiry", &doc(vec![grant.clone()], vec![]));
    let mut session = Session::sleeping(&sshd, USER_A, &key);
    let mut expired = grant;
    expired["not_before"] = json!(rfc3339_in(-7200));
    expired["expires_at"] = json!(rfc3339_in(-60));
    sshd.set_policy(&doc(vec![expired], vec![]));
    // The default: only revocations end sessions.
    reap(&sshd, &[]).assert_ok();
    session.assert_alive(&sshd);
    let rules = sshd.dir.write(
        "reap.toml",
        format!("end = \"revocation\"\n[accounts]\n{USER_A} = \"expiry\"\n"),
    );
    let run = reap(&sshd, &["--rules", rules.to_str().unwrap()]);
    run.assert_ok();
    session.assert_ended(&sshd);
    sshd.syslog.wait_for(&[
        "action=reap",
        "cause=expired",
        "grants=g-1",
        "outcome=ended",
    ]);
    // Rules that do not parse end nothing.
    let bad = sshd.dir.write("bad.toml", "end = \"sometimes\"\n");
    let run = reap(&sshd, &["--rules", bad.to_str().unwrap()]);
    assert_eq!(run.code, Some(1), "{run:#?}");
}

#[test]
fn a_certificate_session_ends_when_its_serial_is_revoked() {
    let _one = one_at_a_time();
    let dir = crate::support::TestDir::new("reap-cert-keys");
    let key = ClientKey::generate(&dir.path, "c");
    let sshd = start(
        "reap-cert",
        &doc(vec![principal_grant("g-p", USER_A, "alice-e2e")], vec![]),
    );
    sshd.ca.sign(&key, "r-4242", &["alice-e2e"], 4242);
    let mut session = Session::sleeping(&sshd, USER_A, &key);
    admin(
        &["revoke", "--serial", "4242", "--reason", "INC-2"],
        &sshd.policy,
        &sshd.config,
    );
    reap(&sshd, &[]).assert_ok();
    session.assert_ended(&sshd);
    let line = sshd.syslog.wait_for(&["action=reap", "outcome=ended"]);
    for field in [
        "key_id=r-4242",
        "cert_serial=4242",
        "cause=revoked",
        "grants=g-p",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
}

#[test]
fn a_session_that_rewrites_its_auth_record_is_ended() {
    let _one = one_at_a_time();
    let dir = crate::support::TestDir::new("reap-tamper-keys");
    let mine = ClientKey::generate(&dir.path, "mine");
    let other = ClientKey::generate(&dir.path, "other");
    let sshd = start(
        "reap-tamper",
        &doc(
            vec![
                key_grant("g-mine", USER_A, &mine.public_line),
                key_grant("g-other", USER_A, &other.public_line),
            ],
            vec![],
        ),
    );
    // After a while, the session swaps its record for another valid key.
    let other_key = other.public_line.clone();
    let mut session = Session::open(&sshd, USER_A, &mine, |m| {
        format!("sleep 3; echo 'publickey {other_key}' > \"$SSH_USER_AUTH\"; exec sleep {m}")
    });
    // The session's first command is the shell: wait for the swap itself.
    assert!(
        wait_until(Duration::from_secs(30), || session.remote_alive()),
        "{}",
        sshd.diagnostics()
    );
    let run = reap(&sshd, &[]);
    run.assert_ok();
    session.assert_ended(&sshd);
    let line = sshd.syslog.wait_for(&["action=reap", "outcome=ended"]);
    assert!(line.contains("cause=record-tampered"), "{line}");
}
