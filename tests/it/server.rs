//! sshjit-server as a real process on loopback, driven by its own command
//! line, the real `sshjit` (the helper over https, `login`, the admin
//! commands with `--server`) and a real sshd whose helper asks the server.
//! The same tests run on SQLite and on PostgreSQL (`scripts/test` starts
//! one); PostgreSQL also carries two servers sharing one database.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::server::{Client, Server, Store, postgres_database};
use crate::support::sshd::{ClientKey, Options, Sshd, USER_A};
use crate::support::*;

/// A host's helper configuration pointed at `server` with `token`.
struct HostSide {
    dir: TestDir,
    config: std::path::PathBuf,
}

impl HostSide {
    fn new(name: &str, server: &Server, host: &str, token: &str, extra: &str) -> HostSide {
        let dir = TestDir::new(name);
        let token_file = dir.join("token");
        write_file(&token_file, format!("{token}\n").as_bytes(), 0o600);
        let signers = dir.write("allowed_signers", server.allowed_signers());
        let state = dir.join("state");
        fs::create_dir(&state).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
        let config = dir.config(&format!(
            "source = \"{}/v1/policy\"\ntoken_file = \"{}\"\nallowed_signers = \"{}\"\nhost = \"{host}\"\nstate_dir = \"{}\"\n{extra}",
            server.url,
            token_file.display(),
            signers.display(),
            state.display()
        ));
        HostSide { dir, config }
    }

    fn keys(&self, user: &str) -> Run {
        let mut c = sshjit(&["keys", user, "--config"]);
        c.arg(&self.config);
        run_cmd(c)
    }
}

fn admin(server: &Server, name: &str) -> Client {
    let person = server.person(name, &["admin"]);
    let client = Client::new(name, server);
    client.login(&person);
    client
}

fn grant_key(client: &Client, user: &str, key_file: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "grant",
        "--user",
        user,
        "--key",
        key_file,
        "--for",
        "1h",
        "--reason",
        "INC-1 test",
    ];
    args.extend_from_slice(extra);
    let r = client.run(&args);
    r.assert_ok();
    r.stdout.trim().to_owned()
}

fn stores() -> Vec<(&'static str, Store)> {
    vec![("sqlite", Store::Sqlite), ("postgres", Store::Postgres)]
}

#[test]
fn a_host_token_answers_only_for_its_own_host_and_a_removed_one_not_at_all() {
    for (kind, store) in stores() {
        let server = Server::start_with(&format!("srv-tokens-{kind}"), store, "");
        let web1 = server.host_add("web-1");
        let web2 = server.host_add("web-2");
        let alice = admin(&server, "alice");
        let key = alice.home.write("a.pub", format!("{KEY_A}\n"));
        let id = grant_key(
            &alice,
            "deploy",
            key.to_str().unwrap(),
            &["--host", "web-*"],
        );

        // The helper on web-1 asks with web-1's token: the grant, signed.
        let host = HostSide::new(
            &format!("srv-tokens-h1-{kind}"),
            &server,
            "web-1",
            &web1,
            "",
        );
        let r = host.keys("deploy");
        r.assert_ok();
        assert!(r.stdout.ends_with(&format!("{KEY_A}\n")), "{kind}: {r:#?}");
        assert!(r.stderr.contains(&format!("matched={id}")), "{r:#?}");
        assert!(r.stderr.contains("signed_by=sshjit-server"), "{r:#?}");

        // web-2's token asking as web-1: 403, and the helper denies.
        let (status, _) = server.get("/v1/policy?host=web-1&user=deploy&mode=keys", Some(&web2));
        assert_eq!(status, 403, "{kind}");
        let wrong = HostSide::new(
            &format!("srv-tokens-h2-{kind}"),
            &server,
            "web-1",
            &web2,
            "",
        );
        let r = wrong.keys("deploy");
        r.assert_denied();
        assert!(r.stderr.contains("403"), "{r:#?}");

        // No token, an unknown one, a removed one: 401.
        assert_eq!(server.get("/v1/policy?host=web-1", None).0, 401);
        assert_eq!(
            server
                .get("/v1/policy?host=web-1", Some("sjh_not-a-token-we-made"))
                .0,
            401
        );
        server.cli(&["host", "remove", "web-1"]).assert_ok();
        // The running server follows the store within its poll interval.
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.get("/v1/policy?host=web-1", Some(&web1)).0 != 401 {
            assert!(
                Instant::now() < deadline,
                "{kind}: the removed token still works"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        host.keys("deploy").assert_denied();
        // Every change is in the trail, host enrolment and removal too.
        let report = alice.run(&["report"]);
        report.assert_ok();
        for what in ["host add", "host remove", "person add", &id] {
            assert!(
                report.stdout.contains(what),
                "{kind}: {what}: {}",
                report.stdout
            );
        }
        assert!(
            report.stdout.contains("trail: verified"),
            "{}",
            report.stdout
        );
    }
}

#[test]
fn remote_administration_says_what_the_file_commands_say() {
    for (kind, store) in stores() {
        let server = Server::start_with(&format!("srv-admin-{kind}"), store, "");
        let alice = admin(&server, "alice");
        let key = alice.home.write("a.pub", format!("{KEY_A}\n"));
        let r = alice.run(&[
            "grant",
            "--user",
            "deploy",
            "--key",
            key.to_str().unwrap(),
            "--for",
            "2h",
            "--reason",
            "INC-7 deploy",
        ]);
        r.assert_ok();
        let id = r.stdout.trim().to_owned();
        assert!(id.starts_with("g-"), "{r:#?}");
        assert!(
            r.stderr.contains(&format!(
                "granted {id}: key {FP_A} may log in as deploy on every host until"
            )),
            "{r:#?}"
        );

        // The same refusals, with the same exit statuses.
        let r = alice.run(&[
            "grant",
            "--user",
            "deploy",
            "--key",
            key.to_str().unwrap(),
            "--for",
            "30d",
            "--reason",
            "x",
        ]);
        assert_eq!(r.code, Some(1), "{r:#?}");
        assert!(r.stderr.contains("longer than max_grant"), "{r:#?}");
        let r = alice.run(&[
            "grant",
            "--user",
            "bad user",
            "--key",
            key.to_str().unwrap(),
            "--for",
            "1h",
            "--reason",
            "x",
        ]);
        assert_eq!(r.code, Some(2), "{r:#?}");
        let r = alice.run(&["revoke", "--grant", "g-nope", "--reason", "x"]);
        assert_eq!(r.code, Some(1), "{r:#?}");
        assert!(
            r.stderr
                .contains("there is no grant g-nope in the server's policy"),
            "{r:#?}"
        );
        let r = alice.run(&[
            "grant",
            "--user",
            "deploy",
            "--key",
            key.to_str().unwrap(),
            "--for",
            "1h",
            "--reason",
            "x",
            "--by",
            "mallory",
        ]);
        assert_eq!(r.code, Some(2), "{r:#?}");

        let r = alice.run(&["revoke", "--user", "deploy", "--reason", "INC-8 done"]);
        r.assert_ok();
        assert_eq!(
            r.stdout,
            format!("revoked user deploy: 1 grant(s) stop working at the next login: {id}\n")
        );
        let r = alice.run(&["revoke", "--user", "deploy", "--reason", "again"]);
        r.assert_ok();
        assert!(r.stdout.starts_with("already revoked"), "{r:#?}");
        alice
            .run(&["unrevoke", "--user", "deploy", "--reason", "back"])
            .assert_ok();
        let r = alice.run(&["freeze", "--reason", "INC-9"]);
        r.assert_ok();
        assert!(
            r.stdout.starts_with("frozen: only break-glass grants"),
            "{r:#?}"
        );

        let r = alice.run(&["list"]);
        r.assert_ok();
        assert!(
            r.stdout
                .contains("FROZEN: only break-glass grants are valid (since"),
            "{r:#?}"
        );
        assert!(r.stdout.contains(&id), "{r:#?}");
        let r = alice.run(&["list", "--json"]);
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["frozen"], true);
        alice.run(&["thaw", "--reason", "over"]).assert_ok();

        let r = alice.run(&["report", "--format", "json"]);
        r.assert_ok();
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["grants"][0]["grant"]["id"], id.as_str(), "{v}");

        // Someone not in group admin can log in, and administer nothing.
        let bob = server.person("bob", &[]);
        let client = Client::new("bob", &server);
        client.login(&bob);
        let r = client.run(&["whoami"]);
        r.assert_ok();
        assert!(r.stdout.contains("as bob"), "{r:#?}");
        let r = client.run(&["freeze", "--reason", "x"]);
        assert_eq!(r.code, Some(1), "{r:#?}");
        assert!(r.stderr.contains("bob is not in group admin"), "{r:#?}");
        let r = client.run(&["list"]);
        assert_eq!(r.code, Some(1), "{r:#?}");
        // Without a session: told to log in.
        let stranger = Client::new("stranger", &server);
        let r = stranger.run(&["list"]);
        assert_eq!(r.code, Some(1), "{r:#?}");
        assert!(r.stderr.contains("sshjit login"), "{r:#?}");
        // After logout the session is gone here and on the server.
        alice.run(&["logout"]).assert_ok();
        let r = alice.run(&["list"]);
        assert_eq!(r.code, Some(1), "{r:#?}");
    }
}

#[test]
fn a_login_code_is_good_once_and_guessing_locks_the_account() {
    let server = Server::start("srv-logins");
    let carol = server.person("carol", &["admin"]);
    let client = Client::new("carol", &server);
    let pf = carol.password_file.display().to_string();
    let code = carol.code();
    let login = |code: &str, password: &str| {
        client.run(&[
            "login",
            "--user",
            "carol",
            "--password-file",
            password,
            "--totp",
            code,
        ])
    };
    login(&code, &pf).assert_ok();
    // The same code again: refused, whatever the password.
    let r = login(&code, &pf);
    assert_eq!(r.code, Some(1), "{r:#?}");
    assert!(r.stderr.contains("login failed"), "{r:#?}");
    // A wrong password with a fresh code: refused, and says no more.
    let wrong = server.dir.write("wrong", "not the password\n");
    let r = login(&carol.code(), wrong.to_str().unwrap());
    assert_eq!(r.code, Some(1), "{r:#?}");
    assert!(r.stderr.contains("login failed"), "{r:#?}");
    assert!(!r.stderr.contains("password"), "{r:#?}");
    // Four more failures lock the account: then even the right password
    // and a fresh code are refused.
    for _ in 0..4 {
        let r = login("000000", &pf);
        assert_eq!(r.code, Some(1), "{r:#?}");
    }
    let r = login(&carol.code(), &pf);
    assert_eq!(r.code, Some(1), "{r:#?}");
    let log = server.log();
    assert!(log.contains("event=lockout person=carol"), "{log}");
    assert!(log.contains("why=locked"), "{log}");
    // Passwords and codes never reach the log.
    assert!(!log.contains("password of carol"), "{log}");
}

#[test]
fn a_bad_change_is_refused_with_the_checkers_message_and_changes_nothing() {
    let server = Server::start("srv-bad-change");
    let alice = admin(&server, "alice");
    let session: Value = serde_json::from_str(
        &fs::read_to_string(alice.home.join(".cache/sshjit/sessions").join(format!(
            "{}.json",
            server.url.trim_start_matches("http://").replace(':', "_")
        )))
        .unwrap(),
    )
    .unwrap();
    let token = session["token"].as_str().unwrap().to_owned();
    let before = server.get("/metrics", None).1;
    let post = |body: &str| {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "-H",
                &format!("Authorization: Bearer {token}"),
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                body,
            ])
            .arg(format!("{}/v1/admin/change", server.url))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap();
        (status.to_owned(), body.to_owned())
    };
    for (body, want) in [
        (
            r#"{"change":"grant","grant":{"user":"deploy","principal":"alice","duration":3600,"reason":"r","hosts":["bad host"]}}"#,
            "invalid host pattern",
        ),
        (
            r#"{"change":"grant","grant":{"user":"deploy","principal":"alice","duration":3600,"reason":"r","expires":"x"}}"#,
            "unknown field `expires`",
        ),
        (
            r#"{"change":"grant","grant":{"user":"deploy","key":"restrict ssh-ed25519 AAAA","duration":3600,"reason":"r"}}"#,
            "authorized_keys options",
        ),
        (
            r#"{"change":"revoke","revocation":{"user":"a","grant":"g-1","reason":"r"}}"#,
            "exactly one of",
        ),
        (r#"{"change":"drop_tables"}"#, "unknown variant"),
        ("not json", "the change"),
    ] {
        let (status, text) = post(body);
        assert_eq!(status, "400", "{body}: {text}");
        assert!(text.contains(want), "{body}: want {want:?} in {text}");
    }
    let after = server.get("/metrics", None).1;
    let serial = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("sshjit_serial "))
            .unwrap()
            .to_owned()
    };
    assert_eq!(serial(&before), serial(&after));
    assert_eq!(serial(&after), "sshjit_serial 0");
}

#[test]
fn logins_through_sshd_follow_the_server_and_a_revocation_locks_out_at_the_next_login() {
    let server = Server::start_with("srv-sshd", Store::Sqlite, "");
    let token = server.host_add("e2e-host-1");
    let alice = admin(&server, "alice");
    // The helper runs as an unprivileged account: the token is its own.
    let probe = TestDir::new("srv-sshd-probe");
    let key = ClientKey::generate(&probe.path, "user-a");
    let pubkey = alice.home.write("a.pub", format!("{}\n", key.public_line));
    let sshd = Sshd::start(
        "srv-sshd-e2e",
        &doc(vec![], vec![]),
        Options {
            source: Some(format!("{}/v1/policy", server.url)),
            ..Options::default()
        },
    );
    let token_file = sshd.dir.join("token");
    write_file(&token_file, format!("{token}\n").as_bytes(), 0o600);
    std::os::unix::fs::chown(&token_file, Some(65534), None).unwrap();
    let signers = sshd.dir.write("allowed_signers", server.allowed_signers());
    let state = sshd.dir.join("state");
    fs::create_dir(&state).unwrap();
    std::os::unix::fs::chown(&state, Some(65534), None).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    let mut config = fs::read_to_string(&sshd.config).unwrap();
    config.push_str(&format!(
        "token_file = \"{}\"\nallowed_signers = \"{}\"\nstate_dir = \"{}\"\n",
        token_file.display(),
        signers.display(),
        state.display()
    ));
    write_file(&sshd.config, config.as_bytes(), 0o644);

    sshd.assert_refused(USER_A, &key);
    let id = grant_key(&alice, USER_A, pubkey.to_str().unwrap(), &[]);
    sshd.assert_login(USER_A, &key);
    alice.run(&["freeze", "--reason", "INC-1"]).assert_ok();
    sshd.assert_refused(USER_A, &key);
    alice.run(&["thaw", "--reason", "INC-1 over"]).assert_ok();
    sshd.assert_login(USER_A, &key);
    alice
        .run(&["revoke", "--grant", &id, "--reason", "done"])
        .assert_ok();
    sshd.assert_refused(USER_A, &key);
    sshd.syslog.wait_for(&[
        "signed_by=sshjit-server",
        "policy_serial=1",
        "outcome=allow",
    ]);
    sshd.syslog
        .wait_for(&["policy_serial=2", "frozen=true", "outcome=none"]);
    sshd.syslog
        .wait_for(&["policy_serial=4", "outcome=none", "reason=no-valid-grant"]);
}

#[test]
fn kill_9_during_changes_loses_no_acknowledged_change() {
    for (kind, store) in stores() {
        let mut server = Server::start_with(&format!("srv-kill-{kind}"), store, "");
        let mut alice = admin(&server, "alice");
        let mut acknowledged = Vec::new();
        for round in 0..4 {
            // Changes in a second thread while the server dies under them.
            let url = server.url.clone();
            let home = alice.home.path.clone();
            let writer = std::thread::spawn(move || {
                let mut ids = Vec::new();
                for i in 0..40 {
                    let out = std::process::Command::new(bin())
                        .args([
                            "grant",
                            "--server",
                            &url,
                            "--user",
                            "deploy",
                            "--principal",
                            &format!("p{round}-{i}"),
                            "--for",
                            "1h",
                            "--reason",
                            "storm",
                        ])
                        .env_clear()
                        .env("HOME", &home)
                        .output()
                        .unwrap();
                    if out.status.success() {
                        ids.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
                    }
                }
                ids
            });
            std::thread::sleep(Duration::from_millis(150 + 100 * round));
            server.kill9();
            acknowledged.extend(writer.join().unwrap());
            server.restart();
            alice.follow(&server.url);
        }
        let client = alice;
        let r = client.run(&["list", "--json"]);
        r.assert_ok();
        let v: Value = serde_json::from_str(&r.stdout).unwrap();
        let kept: Vec<&str> = v["grants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["id"].as_str().unwrap())
            .collect();
        assert!(
            !acknowledged.is_empty(),
            "{kind}: no change went through at all"
        );
        for id in &acknowledged {
            assert!(
                kept.contains(&id.as_str()),
                "{kind}: acknowledged {id} lost"
            );
        }
        let report = client.run(&["report"]);
        report.assert_ok();
        assert!(
            report.stdout.contains("trail: verified"),
            "{kind}: {}",
            report.stdout
        );
    }
}

#[test]
fn two_servers_on_one_postgres_share_every_change_and_a_killed_one_costs_no_login() {
    let db = postgres_database("replicas");
    let extra = "max_lag = \"5s\"";
    let a = Server::start_with("srv-replica-a", Store::Shared(db.clone()), extra);
    // Both sign with one key and seal with one key, as replicas do.
    let b = Server::replica_of("srv-replica-b", &a, extra);
    let token = a.host_add("web-1");
    let alice = admin(&a, "alice");
    let key = alice.home.write("a.pub", format!("{KEY_A}\n"));
    let id = grant_key(&alice, "deploy", key.to_str().unwrap(), &[]);
    // B learns it at once (LISTEN/NOTIFY), not at its next poll.
    let started = Instant::now();
    loop {
        let (status, body) = b.get("/v1/policy?host=web-1&user=deploy&mode=keys", Some(&token));
        if status == 200 && body.contains(&id) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "B never saw {id}: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "replica B served the grant {:?} after A made it",
        started.elapsed()
    );
    // A session made on A works on B.
    let mut alice = alice;
    let a_url = a.url.clone();
    alice.follow(&b.url);
    let r = alice.run(&[
        "revoke",
        "--key",
        key.to_str().unwrap(),
        "--reason",
        "via B",
    ]);
    r.assert_ok();
    alice.follow(&a_url);
    // Serials keep growing across both.
    let metrics = |s: &Server| s.get("/metrics", None).1;
    let serial = |m: String| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix("sshjit_serial "))
            .unwrap()
            .parse::<f64>()
            .unwrap() as u64
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while serial(metrics(&a)) != 2 {
        assert!(Instant::now() < deadline, "A did not follow B");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(serial(metrics(&b)), 2);

    // A login storm with the helper failing over from A to B while A is
    // killed in the middle of it: no login fails.
    alice
        .run(&[
            "unrevoke",
            "--key",
            key.to_str().unwrap(),
            "--reason",
            "back",
        ])
        .assert_ok();
    let host = TestDir::new("srv-replica-host");
    let token_file = host.join("token");
    write_file(&token_file, format!("{token}\n").as_bytes(), 0o600);
    let signers = host.write("allowed_signers", a.allowed_signers());
    let state = host.join("state");
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    let config = host.config(&format!(
        "source = [\"{}/v1/policy\", \"{}/v1/policy\"]\ntoken_file = \"{}\"\nallowed_signers = \"{}\"\nhost = \"web-1\"\nstate_dir = \"{}\"\ntimeout = \"10s\"",
        a.url, b.url, token_file.display(), signers.display(), state.display()
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut b_sees_it = false;
    while !b_sees_it && Instant::now() < deadline {
        b_sees_it = b
            .get("/v1/policy?host=web-1&user=deploy&mode=keys", Some(&token))
            .1
            .contains("\"revocations\":[]");
    }
    let mut a = a;
    let mut failures = Vec::new();
    for i in 0..60 {
        if i == 20 {
            a.kill9();
        }
        let mut c = sshjit(&["keys", "deploy", "--config"]);
        c.arg(&config);
        let r = run_cmd(c);
        if r.code != Some(0) || !r.stdout.contains(KEY_A) {
            failures.push(r);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 60 logins failed: {:#?}",
        failures.len(),
        failures.first()
    );
}

#[test]
fn a_server_whose_store_is_down_answers_503_and_the_helper_denies() {
    let db = postgres_database("down");
    let server = Server::start_with("srv-down", Store::Shared(db.clone()), "max_lag = \"2s\"");
    let token = server.host_add("web-1");
    assert_eq!(server.get("/v1/policy?host=web-1", Some(&token)).0, 200);
    let name = db.rsplit('/').next().unwrap().to_owned();
    let base = crate::support::server::postgres_base();
    let psql = |sql: &str| {
        let out = std::process::Command::new("psql")
            .args([&base, "-q", "-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "{sql}: {out:?}");
    };
    psql(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"));
    psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.get("/v1/policy?host=web-1", Some(&token)).0 != 503 {
        assert!(
            Instant::now() < deadline,
            "still answering with the store down"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let host = HostSide::new("srv-down-host", &server, "web-1", &token, "");
    let r = host.keys("deploy");
    r.assert_denied();
    assert!(r.stderr.contains("503"), "{r:#?}");
    assert_eq!(server.get("/readyz", None).0, 503);
    psql(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.get("/v1/policy?host=web-1", Some(&token)).0 != 200 {
        assert!(Instant::now() < deadline, "did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = host.dir;
}

#[test]
fn metrics_health_and_graceful_shutdown() {
    let mut server = Server::start("srv-ops");
    let token = server.host_add("web-1");
    let count = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .map_or(0, |v| v.parse::<f64>().unwrap() as u64)
    };
    let before = server.get("/metrics", None).1;
    assert_eq!(server.get("/healthz", None), (200, "ok\n".into()));
    assert_eq!(server.get("/readyz", None).0, 200);
    for _ in 0..3 {
        assert_eq!(
            server
                .get("/v1/policy?host=web-1&user=u&mode=keys", Some(&token))
                .0,
            200
        );
    }
    assert_eq!(
        server
            .get("/v1/policy?host=web-1", Some("sjh_wrongwrongwrong"))
            .0,
        401
    );
    let (status, text) = server.get("/metrics", None);
    assert_eq!(status, 200);
    let delta = |name: &str| count(&text, name) - count(&before, name);
    assert_eq!(
        delta("sshjit_policy_answers_total{outcome=\"served\"}"),
        3,
        "{text}"
    );
    assert_eq!(
        delta("sshjit_policy_answers_total{outcome=\"unauthorized\"}"),
        1,
        "{text}"
    );
    assert_eq!(delta("sshjit_policy_answer_seconds_count"), 4, "{text}");
    assert!(text.contains("sshjit_hosts 1"), "{text}");
    // A long poll in flight when the server is asked to stop ends at once.
    let url = format!("{}/v1/policy?host=web-1&wait=60", server.url);
    let etag = "\"0\"";
    let t = std::thread::spawn(move || {
        let started = Instant::now();
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                &format!("Authorization: Bearer {token}"),
                "-H",
                &format!("If-None-Match: {etag}"),
                &url,
            ])
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            started.elapsed(),
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let status = server.stop();
    assert!(status.success(), "{status:?}: {}", server.log());
    let (code, took) = t.join().unwrap();
    assert_eq!(code, "304");
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(server.log().contains("event=stopped"), "{}", server.log());
}

/// `sshjit sync` for one host: its token, allowed_signers and policy path.
struct Synced {
    dir: TestDir,
    policy: std::path::PathBuf,
    config: std::path::PathBuf,
    args: Vec<String>,
}

impl Synced {
    fn new(name: &str, server: &Server, host: &str, token: &str) -> Synced {
        let dir = TestDir::new(name);
        let token_file = dir.join("token");
        write_file(&token_file, format!("{token}\n").as_bytes(), 0o600);
        let signers = dir.write("allowed_signers", server.allowed_signers());
        let policy = dir.join("policy.json");
        let config = dir.config(&format!("host = \"{host}\""));
        let args = vec![
            "sync".into(),
            "--server".into(),
            server.url.clone(),
            "--token-file".into(),
            token_file.display().to_string(),
            "--allowed-signers".into(),
            signers.display().to_string(),
            "--policy".into(),
            policy.display().to_string(),
            "--config".into(),
            config.display().to_string(),
        ];
        Synced {
            dir,
            policy,
            config,
            args,
        }
    }

    fn once(&self) -> Run {
        let mut c = std::process::Command::new(bin());
        c.args(self.args.iter().map(String::as_str)).arg("--once");
        run_cmd(c)
    }

    fn spawn(&self) -> std::process::Child {
        std::process::Command::new(bin())
            .args(self.args.iter().map(String::as_str))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(fs::File::create(self.dir.join("sync.log")).unwrap())
            .spawn()
            .unwrap()
    }

    fn serial(&self) -> Option<u64> {
        let bytes = fs::read(&self.policy).ok()?;
        let v: Value = serde_json::from_slice(&bytes).ok()?;
        v["serial"].as_u64()
    }

    /// Waits until the copy has reached `serial`; how long that took.
    fn wait_serial(&self, serial: u64, limit: Duration) -> Duration {
        let t = Instant::now();
        while self.serial() < Some(serial) {
            assert!(
                t.elapsed() < limit,
                "the copy stayed at {:?}, not {serial}: {}",
                self.serial(),
                fs::read_to_string(self.dir.join("sync.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        t.elapsed()
    }
}

#[test]
fn sync_keeps_the_local_copy_current_within_seconds_and_logins_read_it_with_its_index() {
    for (kind, store) in stores() {
        let server = Server::start_with(&format!("srv-sync-{kind}"), store, "");
        let token = server.host_add("web-1");
        let alice = admin(&server, "alice");
        let key = alice.home.write("a.pub", format!("{KEY_A}\n"));
        let synced = Synced::new(&format!("srv-sync-host-{kind}"), &server, "web-1", &token);
        let mut child = synced.spawn();
        synced.wait_serial(0, Duration::from_secs(30));
        let id = grant_key(
            &alice,
            "deploy",
            key.to_str().unwrap(),
            &["--host", "web-*"],
        );
        let took = synced.wait_serial(1, Duration::from_secs(10));
        eprintln!("{kind}: a grant reached the synced copy in {took:?}");
        // The helper reads the copy and its index: no signature work per login.
        let globals = Globals::new(&synced.policy, &synced.config).host("web-1");
        // The index follows the document by the racy window (25 ms).
        let deadline = Instant::now() + Duration::from_secs(10);
        let r = loop {
            let r = globals.run(&["keys", "deploy"]);
            if r.stderr.contains("index=used") || Instant::now() > deadline {
                break r;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        r.assert_ok();
        assert!(r.stdout.ends_with(&format!("{KEY_A}\n")), "{r:#?}");
        assert!(
            r.stderr.contains("index=used") && r.stderr.contains(&format!("matched={id}")),
            "{r:#?}"
        );
        assert!(
            fs::read_to_string(format!("{}.sig", synced.policy.display()))
                .unwrap()
                .contains("BEGIN SSH SIGNATURE")
        );
        // A revocation reaches it within 2 s (measured from the command's end).
        alice
            .run(&["revoke", "--grant", &id, "--reason", "INC-2"])
            .assert_ok();
        let took = synced.wait_serial(2, Duration::from_secs(10));
        eprintln!("{kind}: a revocation reached the synced copy in {took:?}");
        assert!(took < Duration::from_secs(2), "{kind}: {took:?}");
        let r = globals.run(&["keys", "deploy"]);
        r.assert_ok();
        assert_eq!(r.stdout, "", "{r:#?}");
        // The server goes away: logins go on from the copy.
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn sync_never_replaces_a_good_copy_with_a_worse_one() {
    let server = Server::start("srv-sync-worse");
    let token = server.host_add("web-1");
    let alice = admin(&server, "alice");
    for i in 0..3 {
        alice
            .run(&["freeze", "--reason", &format!("r{i}")])
            .assert_ok();
        alice
            .run(&["thaw", "--reason", &format!("r{i}")])
            .assert_ok();
    }
    let synced = Synced::new("srv-sync-worse-host", &server, "web-1", &token);
    let r = synced.once();
    r.assert_ok();
    assert!(r.stdout.contains("updated to serial 6"), "{r:#?}");
    let r = synced.once();
    r.assert_ok();
    assert!(r.stdout.contains("is current (serial 6)"), "{r:#?}");

    // Another server with the same key and a lower serial (an old backup):
    // refused, the copy kept.
    let fresh = Server::with_keys_of("srv-sync-worse-backup", &server);
    let backup_token = fresh.host_add("web-1");
    let backup = admin(&fresh, "bob");
    backup.run(&["freeze", "--reason", "x"]).assert_ok();
    let mut args = synced.args.clone();
    args[2] = fresh.url.clone();
    write_file(
        &synced.dir.join("token"),
        format!("{backup_token}\n").as_bytes(),
        0o600,
    );
    let out = std::process::Command::new(bin())
        .args(&args)
        .arg("--once")
        .output()
        .unwrap();
    let r = Run::from_output(out);
    assert_eq!(r.code, Some(1), "{r:#?}");
    assert!(
        r.stderr.contains("serial 1 is older than the copy's 6"),
        "{r:#?}"
    );
    assert_eq!(synced.serial(), Some(6));

    // Answers signed by a key not in allowed_signers: refused.
    let stranger = Server::start("srv-sync-worse-stranger");
    let stranger_token = stranger.host_add("web-1");
    let mut args = synced.args.clone();
    args[2] = stranger.url.clone();
    write_file(
        &synced.dir.join("token"),
        format!("{stranger_token}\n").as_bytes(),
        0o600,
    );
    let out = std::process::Command::new(bin())
        .args(&args)
        .arg("--once")
        .output()
        .unwrap();
    let r = Run::from_output(out);
    assert_eq!(r.code, Some(1), "{r:#?}");
    assert!(r.stderr.contains("signature"), "{r:#?}");
    assert_eq!(synced.serial(), Some(6));
    // A token the server does not know: refused, the copy kept.
    write_file(
        &synced.dir.join("token"),
        b"sjh_unknown-token-value\n",
        0o600,
    );
    let r = synced.once();
    assert_eq!(r.code, Some(1), "{r:#?}");
    assert!(r.stderr.contains("401"), "{r:#?}");
    assert_eq!(synced.serial(), Some(6));
}
