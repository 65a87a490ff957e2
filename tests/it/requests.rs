//! Self-service access requests, end to end: a real sshjit-server (SQLite
//! and PostgreSQL) with a roles file, driven by the real `sshjit` CLI of
//! each person (their own HOME, sessions from password + TOTP codes
//! computed here, or from an SSH key in a file or a real ssh-agent), and a
//! real sshd that trusts the server's user CA and whose principals and
//! keys helper asks the server on every login.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::server::{Client, Person, Server, Store};
use crate::support::sshd::{ClientKey, Login, Options, Sshd, TestCa, USER_A, must};
use crate::support::*;

/// Roles for most tests: `user` needs two approvers from group sre and a
/// ticket; `auto` (certificates) and `deploy` (key grants) need none;
/// `emergency` is break-glass; `automation` is for key logins.
fn roles(account: &str) -> String {
    format!(
        r#"
[role.user]
requesters = ["group:dev"]
accounts = ["{account}", "deploy"]
hosts = ["web-*", "e2e-host-*"]
max = "4h"
approvals = 2
approvers = ["group:sre"]
reason_pattern = "^INC-[0-9]+"
issue = "certificate"

[role.one]
requesters = ["group:dev"]
accounts = ["{account}"]
max = "1h"
approvals = 1
approvers = ["group:sre"]
issue = "certificate"

[role.auto]
requesters = ["group:dev"]
accounts = ["{account}"]
max = "1h"
approvals = 0
issue = "certificate"

[role.deploy]
requesters = ["group:dev"]
accounts = ["{account}"]
max = "1h"
approvals = 0
issue = "grant"

[role.emergency]
requesters = ["group:sre", "group:dev"]
accounts = ["{account}"]
max = "2h"
break_glass = true

[role.automation]
requesters = ["user:jenkins"]
accounts = ["jenkins"]
max = "1h"
approvals = 0
totp = false
issue = "certificate"
"#
    )
}

/// A server with the roles above (and `extra` server.toml lines); the
/// roles file lives in `dir`.
pub(crate) fn start(name: &str, store: Store, dir: &TestDir, extra: &str) -> Server {
    let roles = dir.write("roles.toml", roles(USER_A));
    let mut extra = extra.to_owned();
    if !extra.contains("user_ca_key") {
        let ca = TestCa::new(&dir.path);
        extra.push_str(&format!("user_ca_key = \"{}\"\n", ca.key.display()));
    }
    Server::start_with(
        name,
        store,
        &format!("roles = \"{}\"\n{extra}", roles.display()),
    )
}

/// A person with their own machine, logged in with password + TOTP.
pub(crate) fn person(server: &Server, name: &str, groups: &[&str]) -> (Person, Client) {
    let p = server.person(name, groups);
    let c = Client::new(name, server);
    c.login(&p);
    (p, c)
}

/// `sshjit requests --json`, as a list.
pub(crate) fn listed(c: &Client) -> Vec<Value> {
    let r = c.run(&["requests", "--json"]);
    r.assert_ok();
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:#?}"))
}

pub(crate) fn shown(c: &Client, id: &str) -> Value {
    listed(c)
        .into_iter()
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed"))
}

/// The first line of a successful `sshjit request`: the id.
#[track_caller]
pub(crate) fn request(c: &Client, args: &[&str]) -> (String, Run) {
    let mut a = vec!["request"];
    a.extend_from_slice(args);
    let r = c.run(&a);
    r.assert_ok();
    let id = r.stdout.lines().next().unwrap_or("").to_owned();
    assert!(id.starts_with("r-"), "{r:#?}");
    (id, r)
}

#[track_caller]
fn refused(r: &Run, needle: &str) {
    assert_eq!(r.code, Some(1), "must be refused: {r:#?}");
    assert!(r.stderr.contains(needle), "want {needle:?}: {r:#?}");
}

#[test]
fn requests_follow_their_roles_on_sqlite_and_postgres() {
    for (kind, store) in [("sqlite", Store::Sqlite), ("postgres", Store::Postgres)] {
        let dir = TestDir::new(&format!("req-rules-{kind}"));
        let server = start(&format!("req-rules-{kind}"), store, &dir, "");
        let (_, alice) = person(&server, "alice", &["dev"]);
        let (_, bob) = person(&server, "bob", &["sre"]);
        let (_, carol) = person(&server, "carol", &["sre"]);
        let (_, dave) = person(&server, "dave", &["dev"]);
        let (_, root) = person(&server, "root", &["admin"]);
        let key = alice.home.write("k.pub", format!("{KEY_A}\n"));
        let key = key.to_str().unwrap();
        let ask = |c: &Client, extra: &[&str]| {
            let mut a = vec!["request", "--role", "user", "--as", USER_A, "--for", "1h"];
            a.extend_from_slice(extra);
            c.run(&a)
        };

        // What the role does not allow is refused with what it allows, and
        // nothing is recorded.
        let r = ask(
            &alice,
            &["--reason", "INC-1 x", "--key", key, "--host", "db-1"],
        );
        refused(&r, "not all within role user");
        assert!(r.stderr.contains("hosts web-*, e2e-host-*"), "{r:#?}");
        refused(
            &alice.run(&[
                "request", "--role", "user", "--as", "root", "--for", "1h", "--reason", "INC-1",
                "--key", key,
            ]),
            "account root is not in role user",
        );
        refused(
            &alice.run(&[
                "request", "--role", "user", "--as", USER_A, "--for", "5h", "--reason", "INC-1",
                "--key", key,
            ]),
            "5h is longer than role user allows",
        );
        refused(
            &ask(&alice, &["--reason", "no ticket", "--key", key]),
            "reason_pattern",
        );
        refused(
            &alice.run(&[
                "request", "--role", "nope", "--as", USER_A, "--for", "1h", "--reason", "INC-1",
                "--key", key,
            ]),
            "no role nope: the roles are",
        );
        refused(
            &ask(&bob, &["--reason", "INC-1", "--key", key]),
            "may not ask for role user",
        );
        let r = ask(&alice, &["--reason", "INC-1\nsecond line", "--key", key]);
        assert_eq!(r.code, Some(2), "{r:#?}");
        let private = alice
            .home
            .write("private", "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n");
        let r = ask(
            &alice,
            &["--reason", "INC-1", "--key", private.to_str().unwrap()],
        );
        assert_eq!(r.code, Some(2), "a private key is never sent: {r:#?}");
        assert!(listed(&alice).is_empty(), "{kind}: refusals record nothing");

        // Two distinct approvers, never the requester, never twice.
        let (id, r) = request(
            &alice,
            &[
                "--role",
                "user",
                "--as",
                USER_A,
                "--host",
                "web-1",
                "--for",
                "1h",
                "--reason",
                "INC-7 restart",
                "--key",
                key,
            ],
        );
        assert!(r.stderr.contains("waits for approval"), "{r:#?}");
        let v = shown(&alice, &id);
        for field in [
            "id",
            "state",
            "role",
            "requester",
            "account",
            "reason",
            "expires_at",
        ] {
            assert!(!v[field].is_null(), "{field} in {v}");
        }
        assert_eq!(v["state"], "pending");
        assert_eq!(v["requester"], "alice");
        assert_eq!(v["account"], USER_A);
        refused(
            &alice.run(&["approve", &id]),
            "never approved by its requester",
        );
        refused(&dave.run(&["approve", &id]), "not an approver of role user");
        bob.run(&["approve", &id, "--reason", "looks right"])
            .assert_ok();
        assert_eq!(shown(&alice, &id)["state"], "pending", "{kind}: one of two");
        refused(&bob.run(&["approve", &id]), "bob already approved");
        let r = carol.run(&["approve", &id]);
        r.assert_ok();
        assert!(r.stdout.contains("approved until"), "{r:#?}");
        let v = shown(&alice, &id);
        assert_eq!(v["state"], "approved", "{v}");
        assert_eq!(v["approved_by"], "approvers");
        assert_eq!(v["approvals"].as_array().unwrap().len(), 2);
        assert_eq!(v["key_id"], id.as_str());
        assert!(v["cert_serial"].as_u64().unwrap() > 0);
        refused(&carol.run(&["approve", &id]), "already approved");

        // The policy hosts read has the principal grant, named after the
        // request and its requester.
        let policy: Value =
            serde_json::from_str(&root.run(&["list", "--all", "--json"]).stdout).unwrap();
        let grant = policy["grants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{kind}: grant {id} in {policy}"));
        assert_eq!(grant["principal"], format!("alice@{id}"));
        assert_eq!(grant["user"], USER_A);
        assert!(
            grant["reason"]
                .as_str()
                .unwrap()
                .starts_with("requested by alice: INC-7")
        );
        assert_eq!(grant["granted_by"], "bob, carol");

        // A denial needs a reason; a denied request cannot be approved.
        let (id2, _) = request(
            &dave,
            &[
                "--role", "user", "--as", USER_A, "--for", "30m", "--reason", "INC-8", "--key", key,
            ],
        );
        assert_eq!(bob.run(&["deny", &id2]).code, Some(2));
        bob.run(&["deny", &id2, "--reason", "use the runbook"])
            .assert_ok();
        assert_eq!(shown(&dave, &id2)["state"], "denied");
        refused(&carol.run(&["approve", &id2]), "already denied");
        // People see their own requests and those they approve.
        assert!(listed(&dave).iter().all(|v| v["requester"] == "dave"));
        assert_eq!(listed(&bob).len(), 2);
        let pending = bob.run(&["requests", "--pending"]);
        pending.assert_ok();
        assert!(
            pending.stdout.contains("no pending request"),
            "{pending:#?}"
        );

        // done: a revocation, recorded; again: nothing more.
        refused(&dave.run(&["done", &id]), "may not end");
        let r = alice.run(&["done", &id]);
        r.assert_ok();
        assert!(r.stdout.contains(&format!("{id}: done")), "{r:#?}");
        assert_eq!(shown(&alice, &id)["state"], "done");
        alice.run(&["done", &id]).assert_ok();

        // Every step is in the trail, and report shows it.
        let report = root.run(&["report", "--format", "json"]);
        report.assert_ok();
        let rep: Value = serde_json::from_str(&report.stdout).unwrap();
        let actions: Vec<&str> = rep["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["action"].as_str().unwrap())
            .collect();
        for a in ["request", "approve", "approved", "deny", "done"] {
            assert!(actions.contains(&a), "{kind}: {a} in {actions:?}");
        }
        let entry = rep["grants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["grant"]["id"] == id.as_str())
            .unwrap();
        assert!(
            entry["status"].as_str().unwrap().starts_with("revoked"),
            "{entry}"
        );
        assert_eq!(entry["recorded_by"], "carol");
    }
}

/// Points an sshd's helper at `server` (its principals and keys both ask
/// the server, with host `e2e-host-1`'s token), as a host is set up.
fn attach(sshd: &Sshd, server: &Server) {
    let token = server.host_add(sshd.host);
    let token_file = sshd.dir.join("token");
    write_file(&token_file, format!("{token}\n").as_bytes(), 0o600);
    std::os::unix::fs::chown(&token_file, Some(65534), None).unwrap();
    let signers = sshd.dir.write("allowed_signers", server.allowed_signers());
    let state = sshd.dir.join("state");
    fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), None).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    let config = fs::read_to_string(&sshd.config).unwrap();
    let (first, rest) = config.split_once('\n').unwrap();
    assert!(first.starts_with("source = "), "{config}");
    write_file(
        &sshd.config,
        format!(
            "source = \"{}/v1/policy\"\n{rest}token_file = \"{}\"\nallowed_signers = \"{}\"\nstate_dir = \"{}\"\n",
            server.url,
            token_file.display(),
            signers.display(),
            state.display()
        )
        .as_bytes(),
        0o644,
    );
}

/// An sshd (its CA is the server's user CA) and a server that knows it.
pub(crate) fn sshd_and_server(name: &str, dir: &TestDir, extra: &str) -> (Sshd, Server) {
    let sshd = Sshd::start(
        &format!("{name}-sshd"),
        &doc(vec![], vec![]),
        Options {
            source: Some("http://127.0.0.1:9/v1/policy".into()),
            ..Options::default()
        },
    );
    let server = start(
        name,
        Store::Sqlite,
        dir,
        &format!("user_ca_key = \"{}\"\n{extra}", sshd.ca.key.display()),
    );
    attach(&sshd, &server);
    (sshd, server)
}

/// Runs the `ssh ...` line sshjit printed, pointed at the test sshd (its
/// host name resolved to loopback, its port, no known_hosts).
pub(crate) fn run_printed(sshd: &Sshd, line: &str, home: &Path) -> Login {
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"ssh"), "{line}");
    let out = Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
        ])
        .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
        .args(["-o", "HostName=127.0.0.1", "-o", "ConnectTimeout=20"])
        .args(["-p", &sshd.port.to_string()])
        .args(&words[1..])
        .args(["--", "echo logged-in"])
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Login {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[track_caller]
pub(crate) fn assert_in(sshd: &Sshd, l: &Login) {
    assert!(
        l.succeeded() && l.stdout.contains("logged-in"),
        "login must work: {l:?}\n{}",
        sshd.diagnostics()
    );
}

#[track_caller]
pub(crate) fn assert_out(sshd: &Sshd, l: &Login) {
    assert!(
        l.refused(),
        "login must be refused: {l:?}\n{}",
        sshd.diagnostics()
    );
}

/// `sshjit request ... --wait` in the background: its id (first line),
/// then, once decided, all it printed.
struct Waiting {
    child: Child,
    id: String,
    lines: BufReader<std::process::ChildStdout>,
}

impl Waiting {
    fn start(c: &Client, args: &[&str]) -> Waiting {
        let mut a = vec!["request"];
        a.extend_from_slice(args);
        a.push("--wait");
        let mut child = c
            .cmd(&a)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap());
        let mut id = String::new();
        lines.read_line(&mut id).unwrap();
        let id = id.trim().to_owned();
        assert!(id.starts_with("r-"), "the id comes first, at once: {id:?}");
        Waiting { child, id, lines }
    }

    /// The rest of stdout and the exit status, within a generous bound.
    fn finish(mut self) -> (Option<i32>, String, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "--wait did not end after the decision"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut out = String::new();
        self.lines.read_to_string(&mut out).unwrap();
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status.code(), out, err)
    }
}

#[test]
fn an_approved_certificate_logs_in_through_sshd_until_done_or_revoked() {
    let dir = TestDir::new("req-cert");
    let (sshd, server) = sshd_and_server("req-cert", &dir, "");
    let (_, alice) = person(&server, "alice", &["dev"]);
    let (_, bob) = person(&server, "bob", &["sre"]);
    let (_, root) = person(&server, "root", &["admin"]);
    let key = ClientKey::generate(&alice.home.path, "id_alice");
    let public = format!("{}.pub", key.private.display());

    // Asked, waited for, approved by a second person, used.
    let waiting = Waiting::start(
        &alice,
        &[
            "--role",
            "one",
            "--as",
            USER_A,
            "--host",
            sshd.host,
            "--for",
            "30m",
            "--reason",
            "INC-9 check",
            "--key",
            &public,
        ],
    );
    let id = waiting.id.clone();
    let before = Instant::now();
    bob.run(&["approve", &id]).assert_ok();
    let (code, out, err) = waiting.finish();
    assert_eq!(code, Some(0), "{out}\n{err}");
    let ssh = out.lines().last().unwrap_or("").to_owned();
    let cert = format!("{}-cert.pub", key.private.display());
    assert_eq!(
        ssh,
        format!(
            "ssh -i {} -o CertificateFile={cert} -o IdentitiesOnly=yes {USER_A}@{}",
            key.private.display(),
            sshd.host
        )
    );
    // The certificate: key ID = request id, the serial the server shows,
    // the requester's principal, its key and nothing but a terminal.
    let text = must(Command::new("ssh-keygen").arg("-Lf").arg(&cert));
    let v = shown(&alice, &id);
    assert!(text.contains(&format!("Key ID: \"{id}\"")), "{text}");
    assert!(
        text.contains(&format!("Serial: {}", v["cert_serial"])),
        "{text}"
    );
    assert!(text.contains(&format!("alice@{id}")), "{text}");
    assert!(text.contains(&key.fingerprint), "{text}");
    assert!(
        text.contains("permit-pty") && !text.contains("permit-agent-forwarding"),
        "{text}"
    );
    let login = run_printed(&sshd, &ssh, &alice.home.path);
    assert_in(&sshd, &login);
    eprintln!("approval to a working login: {:?}", before.elapsed());
    sshd.syslog
        .wait_for(&[&format!("key_id={id}"), "outcome=allow"]);

    // done: refused at the next login, long before the certificate ends.
    alice.run(&["done", &id]).assert_ok();
    assert_out(&sshd, &run_printed(&sshd, &ssh, &alice.home.path));

    // A certificate revoked by key ID (an admin's `revoke --key-id`).
    let (id2, r) = request(
        &alice,
        &[
            "--role", "auto", "--as", USER_A, "--host", sshd.host, "--for", "30m", "--reason",
            "INC-10", "--key", &public,
        ],
    );
    let ssh2 = r.stdout.lines().last().unwrap().to_owned();
    assert_in(&sshd, &run_printed(&sshd, &ssh2, &alice.home.path));
    root.run(&["revoke", "--key-id", &id2, "--reason", "lost laptop"])
        .assert_ok();
    assert_out(&sshd, &run_printed(&sshd, &ssh2, &alice.home.path));
    assert_eq!(shown(&alice, &id2)["state"], "revoked");

    // ... and one revoked by serial.
    let (id3, r) = request(
        &alice,
        &[
            "--role", "auto", "--as", USER_A, "--host", sshd.host, "--for", "30m", "--reason",
            "INC-11", "--key", &public,
        ],
    );
    let ssh3 = r.stdout.lines().last().unwrap().to_owned();
    assert_in(&sshd, &run_printed(&sshd, &ssh3, &alice.home.path));
    let serial = shown(&alice, &id3)["cert_serial"]
        .as_u64()
        .unwrap()
        .to_string();
    root.run(&["revoke", "--serial", &serial, "--reason", "rotate"])
        .assert_ok();
    assert_out(&sshd, &run_printed(&sshd, &ssh3, &alice.home.path));
    // Serials are unique in the store.
    let serials: Vec<u64> = [&id, &id2, &id3]
        .iter()
        .map(|i| shown(&alice, i)["cert_serial"].as_u64().unwrap())
        .collect();
    assert!(
        serials[0] < serials[1] && serials[1] < serials[2],
        "{serials:?}"
    );
}

#[test]
fn an_ephemeral_key_grant_logs_in_through_sshd_and_only_that_key() {
    let dir = TestDir::new("req-eph");
    let (sshd, server) = sshd_and_server("req-eph", &dir, "");
    let (_, alice) = person(&server, "alice", &["dev"]);
    let waiting = Waiting::start(
        &alice,
        &[
            "--role",
            "deploy",
            "--as",
            USER_A,
            "--host",
            sshd.host,
            "--for",
            "10m",
            "--reason",
            "deploy 42",
            "--ephemeral",
        ],
    );
    let id = waiting.id.clone();
    let (code, out, err) = waiting.finish();
    assert_eq!(code, Some(0), "{out}\n{err}");
    let ssh = out.lines().last().unwrap().to_owned();
    // A fresh pair under ~/.ssh/sshjit, the private half 0600 and ours;
    // the server has only the public half.
    let private = alice.home.join(&format!(".ssh/sshjit/{id}"));
    let meta = fs::metadata(&private).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(
        fs::metadata(private.parent().unwrap()).unwrap().mode() & 0o777,
        0o700
    );
    assert_eq!(
        ssh,
        format!(
            "ssh -i {} -o IdentitiesOnly=yes {USER_A}@{}",
            private.display(),
            sshd.host
        )
    );
    let fp = must(
        Command::new("ssh-keygen")
            .arg("-lf")
            .arg(private.with_extension("pub")),
    );
    assert!(
        fp.contains(shown(&alice, &id)["fingerprint"].as_str().unwrap()),
        "{fp}"
    );
    assert_in(&sshd, &run_printed(&sshd, &ssh, &alice.home.path));
    // Another key of alice's gets nothing from it.
    let other = ClientKey::generate(&alice.home.path, "other");
    sshd.assert_refused(USER_A, &other);
    alice.run(&["done", &id]).assert_ok();
    assert_out(&sshd, &run_printed(&sshd, &ssh, &alice.home.path));
}

/// `DAY HH:MM-HH:MM`, four hours around now in Kathmandu (UTC+05:45, no
/// daylight saving time), `days_ahead` days later.
fn kathmandu_window(days_ahead: i64) -> String {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let start = now + 5 * 3600 + 45 * 60 - 2 * 3600 + days_ahead * 86400;
    let day = (start.div_euclid(86400) + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let minute = start.rem_euclid(86400) / 60;
    let end = (minute + 240) % 1440;
    format!(
        "{} {:02}:{:02}-{:02}:{:02}",
        DAYS[day],
        minute / 60,
        minute % 60,
        end / 60,
        end % 60
    )
}

#[test]
fn on_call_requesters_are_approved_at_once_only_within_their_shift() {
    let dir = TestDir::new("req-oncall");
    let oncall = dir.join("oncall.toml");
    let write = |alice_days: i64| {
        write_file(
            &oncall,
            format!(
                "time_zone = \"Asia/Kathmandu\"\n\n[[shift]]\nwho = [\"user:alice\"]\nroles = [\"one\"]\nweekly = [\"{}\"]\n\n[[shift]]\nwho = [\"group:nights\"]\nroles = [\"one\"]\nweekly = [\"{}\"]\n# {alice_days}\n",
                kathmandu_window(alice_days),
                kathmandu_window(3)
            )
            .as_bytes(),
            0o644,
        )
    };
    write(0);
    let server = start(
        "req-oncall",
        Store::Sqlite,
        &dir,
        &format!("oncall = \"{}\"\n", oncall.display()),
    );
    let (_, alice) = person(&server, "alice", &["dev"]);
    let (_, dave) = person(&server, "dave", &["dev", "nights"]);
    let key = alice.home.write("k.pub", format!("{KEY_A}\n"));
    let key = key.to_str().unwrap();
    let args = [
        "--role",
        "one",
        "--as",
        USER_A,
        "--for",
        "1h",
        "--reason",
        "INC-3 on call",
        "--key",
        key,
    ];
    // In her shift: approved at once, and recorded as on call.
    let (id, r) = request(&alice, &args);
    assert!(
        r.stdout.lines().last().unwrap().starts_with("ssh "),
        "{r:#?}"
    );
    let v = shown(&alice, &id);
    assert_eq!(v["state"], "approved", "{v}");
    assert_eq!(v["approved_by"], "on_call");
    // Dave's group is on call three days from now, not now.
    let (id, _) = request(&dave, &args);
    assert_eq!(shown(&dave, &id)["state"], "pending");
    // The schedule is read again when it changes: alice's shift moved.
    write(2);
    let (id, _) = request(&alice, &args);
    assert_eq!(shown(&alice, &id)["state"], "pending");
    assert!(
        server.log().contains("approved_by=on_call"),
        "{}",
        server.log()
    );
}

/// A local HTTP listener that keeps every POST body it receives.
fn webhook_listener() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&got);
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(300);
        while Instant::now() < deadline {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break Some(body[..len].to_owned());
                    }
                }
            };
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if let Some(b) = body.and_then(|b| serde_json::from_str(&b).ok()) {
                keep.lock().unwrap().push(b);
            }
        }
    });
    (url, got)
}

#[test]
fn break_glass_works_while_frozen_alerts_and_waits_for_its_review() {
    let dir = TestDir::new("req-glass");
    let (hook, events) = webhook_listener();
    let sshd = Sshd::start(
        "req-glass-sshd",
        &doc(vec![], vec![]),
        Options {
            source: Some("http://127.0.0.1:9/v1/policy".into()),
            ..Options::default()
        },
    );
    let server = start(
        "req-glass",
        Store::Sqlite,
        &dir,
        &format!(
            "user_ca_key = \"{}\"\nwebhook = \"{hook}\"\nsyslog_socket = \"{}\"\n",
            sshd.ca.key.display(),
            sshd.syslog.socket.display()
        ),
    );
    attach(&sshd, &server);
    let (_, alice) = person(&server, "alice", &["dev"]);
    let (_, root) = person(&server, "root", &["admin"]);
    root.run(&["freeze", "--reason", "INC-99 incident"])
        .assert_ok();

    // An ordinary grant does not work during the freeze ...
    let (_, r) = request(
        &alice,
        &[
            "--role",
            "deploy",
            "--as",
            USER_A,
            "--host",
            sshd.host,
            "--for",
            "10m",
            "--reason",
            "deploy",
            "--ephemeral",
        ],
    );
    assert_out(
        &sshd,
        &run_printed(&sshd, r.stdout.lines().last().unwrap(), &alice.home.path),
    );
    // ... break-glass does, at once.
    let (id, r) = request(
        &alice,
        &[
            "--role",
            "emergency",
            "--as",
            USER_A,
            "--host",
            sshd.host,
            "--for",
            "1h",
            "--reason",
            "INC-99 db down",
            "--ephemeral",
            "--wait",
        ],
    );
    assert!(r.stderr.contains("break-glass"), "{r:#?}");
    assert_in(
        &sshd,
        &run_printed(&sshd, r.stdout.lines().last().unwrap(), &alice.home.path),
    );
    let v = shown(&alice, &id);
    assert_eq!(v["approved_by"], "break_glass");
    assert_eq!(v["review"]["due"], true, "{v}");

    // Loud: an alert-priority syslog line, the server's log, the webhook.
    let line = sshd
        .syslog
        .wait_for(&["authpriv.alert", "event=break_glass", &id]);
    assert!(line.contains("account=sshjit-e2e-a"), "{line}");
    assert!(
        server.log().contains("event=break_glass priority=alert"),
        "{}",
        server.log()
    );
    let got = |kind: &str| {
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e["event"] == kind && e["record"].to_string().contains(&id))
    };
    assert!(
        wait_until(Duration::from_secs(30), || got("break_glass")),
        "{:?}",
        events.lock().unwrap()
    );
    assert!(got("request"));

    // The review: awaited (also in the API the web console reads), then
    // recorded once.
    let session: Value =
        serde_json::from_slice(&fs::read(root.session_file(&root.server)).unwrap()).unwrap();
    let (status, body) = server.get("/v1/reviews", Some(session["token"].as_str().unwrap()));
    assert_eq!(status, 200);
    assert!(body.contains(&id), "{body}");
    assert_eq!(alice.run(&["review", &id, "--note", ""]).code, Some(2));
    alice
        .run(&[
            "review",
            &id,
            "--note",
            "restarted postgres; replication healthy",
        ])
        .assert_ok();
    refused(
        &root.run(&["review", &id, "--note", "again"]),
        "reviewed already",
    );
    let v = shown(&alice, &id);
    assert_eq!(v["review"]["due"], false);
    assert_eq!(
        v["review"]["note"],
        "restarted postgres; replication healthy"
    );
    let (_, body) = server.get("/v1/reviews", Some(session["token"].as_str().unwrap()));
    assert_eq!(body.trim(), "[]");
    assert!(wait_until(Duration::from_secs(30), || got("review")));
    let report = root.run(&["report"]);
    assert!(report.stdout.contains("restarted postgres"), "{report:#?}");
}

#[test]
fn a_pending_request_lapses_and_cannot_be_approved_after() {
    let dir = TestDir::new("req-lapse");
    let server = start("req-lapse", Store::Sqlite, &dir, "request_ttl = \"2s\"\n");
    let (_, alice) = person(&server, "alice", &["dev"]);
    let (_, bob) = person(&server, "bob", &["sre"]);
    let (_, carol) = person(&server, "carol", &["sre"]);
    let key = alice.home.write("k.pub", format!("{KEY_A}\n"));
    let (id, _) = request(
        &alice,
        &[
            "--role",
            "user",
            "--as",
            USER_A,
            "--for",
            "1h",
            "--reason",
            "INC-5",
            "--key",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        wait_until(Duration::from_secs(30), || shown(&alice, &id)["state"]
            == "expired"),
        "{}",
        shown(&alice, &id)
    );
    refused(&carol.run(&["approve", &id]), "expired");
    // The lapse is recorded by the server itself.
    assert!(
        wait_until(Duration::from_secs(30), || server.log().lines().any(|l| {
            l.contains("action=request_expire by=sshjit-server") && l.contains(&id)
        })),
        "{}",
        server.log()
    );
    assert!(
        bob.run(&["requests", "--pending"])
            .stdout
            .contains("no pending request")
    );
}

#[test]
fn automation_logs_in_with_a_key_from_a_file_or_an_agent() {
    let dir = TestDir::new("req-keys");
    let server = start("req-keys", Store::Sqlite, &dir, "");
    server.person("jenkins", &["ci"]);
    let jenkins = Client::new("jenkins", &server);
    let key = ClientKey::generate(&jenkins.home.path, "ci_key");
    let public = format!("{}.pub", key.private.display());
    server
        .cli(&["user", "key", "add", "jenkins", &public])
        .assert_ok();
    let stranger = ClientKey::generate(&jenkins.home.path, "not_enrolled");

    // A key file.
    let r = jenkins.run(&[
        "login",
        "--user",
        "jenkins",
        "--identity",
        key.private.to_str().unwrap(),
    ]);
    r.assert_ok();
    assert!(r.stdout.contains("without TOTP"), "{r:#?}");
    let (id, r) = request(
        &jenkins,
        &[
            "--role",
            "automation",
            "--as",
            "jenkins",
            "--for",
            "30m",
            "--reason",
            "build 7",
            "--key",
            &public,
        ],
    );
    assert!(
        r.stdout
            .lines()
            .last()
            .unwrap()
            .contains("CertificateFile="),
        "{r:#?}"
    );
    assert_eq!(shown(&jenkins, &id)["state"], "approved");
    // A session without TOTP gets nothing from a role that needs it, nor
    // administration.
    server.person("robot", &["dev", "admin"]);
    server
        .cli(&["user", "key", "add", "robot", &public])
        .assert_ok();
    let robot = Client::new("robot", &server);
    robot
        .run(&[
            "login",
            "--user",
            "robot",
            "--identity",
            key.private.to_str().unwrap(),
        ])
        .assert_ok();
    refused(
        &robot.run(&[
            "request", "--role", "auto", "--as", USER_A, "--for", "10m", "--reason", "x", "--key",
            &public,
        ]),
        "needs a session that passed TOTP",
    );
    refused(&robot.run(&["freeze", "--reason", "x"]), "passed TOTP");

    // An agent holding the key; only the public half on disk.
    let agent_dir = TestDir::new("req-keys-agent");
    let socket = agent_dir.join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || socket.exists()));
    must(
        Command::new("ssh-add")
            .arg("-q")
            .arg(&key.private)
            .env("SSH_AUTH_SOCK", &socket),
    );
    fs::remove_file(&key.private).unwrap();
    let with_agent = |args: &[&str]| {
        let mut c = jenkins.cmd(args);
        c.env("SSH_AUTH_SOCK", &socket);
        run_cmd(c)
    };
    with_agent(&["logout"]).assert_ok();
    let r = with_agent(&["login", "--user", "jenkins", "--identity", &public]);
    let _ = agent.kill();
    let _ = agent.wait();
    r.assert_ok();
    jenkins.run(&["whoami"]).assert_ok();

    // A key that is not enrolled: refused, and counted.
    let r = jenkins.run(&[
        "login",
        "--user",
        "jenkins",
        "--identity",
        stranger.private.to_str().unwrap(),
    ]);
    refused(&r, "login failed");
    assert!(
        server.log().contains("why=\"a key not enrolled\""),
        "{}",
        server.log()
    );
}
