//! Process-level tests of the https source against a local TLS server that
//! misbehaves on demand, of signed documents with rollback protection, of
//! the stale-if-error cache and of `sshjit sign` / `sshjit verify`.
//!
//! Deadlines are asserted loosely (the process ends well before 3× the
//! configured 1 s deadline, while the server stalls for 30 s): the point is
//! that nothing hangs. Measured times are printed (`--nocapture`).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use ssh_encoding::base64::{Base64, Encoding};

use crate::support::https::{
    Behaviour, Pki, Response, Server, ServerOptions, SignKey, header_value, refused_port,
    signing_key, ssh_sign, write_pem,
};
use crate::support::*;

/// Generous bound for "denied within the deadline": the deadline is 1 s.
const BOUND: Duration = Duration::from_secs(3);

/// A test directory with a CA, its PEM and helpers to run the binary.
struct Env {
    dir: TestDir,
    pki: Pki,
    ca: PathBuf,
}

impl Env {
    fn new(name: &str) -> Self {
        let dir = TestDir::new(name);
        let pki = Pki::new("sshjit test CA");
        let ca = dir.join("ca.pem");
        write_pem(&ca, &pki.ca_pem);
        Env { dir, pki, ca }
    }

    /// A config trusting only the test CA, with a 1 s deadline.
    fn config(&self, extra: &str) -> PathBuf {
        self.dir.config(&format!(
            "ca_file = \"{}\"\ntimeout = \"1s\"\nhost = \"web-1\"\n{extra}",
            self.ca.display()
        ))
    }

    fn keys(&self, config: &Path, policy: &str) -> (Run, Duration) {
        let globals = Globals::new(policy, config);
        let t = Instant::now();
        let r = globals.run(&["keys", "deploy"]);
        (r, t.elapsed())
    }
}

fn timed(args: &[&str]) -> (Run, Duration) {
    let t = Instant::now();
    let r = run(args);
    (r, t.elapsed())
}

fn body(doc: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(doc).unwrap()
}

fn deploy_doc(serial: u64) -> Value {
    json!({"version": 1, "serial": serial, "grants": [key_grant("g-1", "deploy", KEY_A)], "revocations": []})
}

#[test]
fn serves_over_https_and_asks_for_user_host_and_mode() {
    let env = Env::new("https-basic");
    let server = Server::start(&env.pki);
    server.route("/p.json", Response::ok(body(&deploy_doc(3))));
    let config = env.config("");
    let (r, _) = env.keys(&config, &server.url("/p.json?fleet=eu"));
    r.assert_ok();
    assert!(
        r.stdout.contains(KEY_A.split(' ').nth(1).unwrap()),
        "{r:#?}"
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].query, "fleet=eu&user=deploy&host=web-1&mode=keys");
    assert!(seen[0].header("user-agent").unwrap().starts_with("sshjit/"));
    assert_eq!(seen[0].header("accept-encoding"), None);
    for field in [
        &format!("source=\"{}\"", server.url("/p.json?fleet=eu")) as &str,
        "policy_serial=3",
        "outcome=allow",
    ] {
        assert!(r.stderr.contains(field), "{field}: {}", r.stderr);
    }
    // The same through the config's `source`, in principals mode, with a
    // user name that needs percent-encoding.
    let c = env.config(&format!("source = \"{}\"", server.url("/p.json")));
    run(&["principals", "svc$", "--config", c.to_str().unwrap()]).assert_ok();
    assert_eq!(
        server.seen().last().unwrap().query,
        "user=svc%24&host=web-1&mode=principals"
    );
}

#[test]
fn plain_http_only_to_loopback() {
    let env = Env::new("https-plain");
    let server = Server::start_with(ServerOptions {
        identity: None,
        client_ca: None,
    });
    server.route("/p.json", Response::ok(body(&deploy_doc(1))));
    let config = env.config("");
    env.keys(&config, &server.url("/p.json")).0.assert_ok();
    let (r, _) = env.keys(&config, "http://policy.example.com/p.json");
    r.assert_denied();
    assert!(r.stderr.contains("plain http"), "{}", r.stderr);
}

/// Every way the endpoint can fail denies, prints nothing and ends within
/// the deadline (1 s) plus a margin, while the server would stall for 30 s.
#[test]
fn every_fault_denies_within_the_deadline() {
    let env = Env::new("https-faults");
    let good = Server::start(&env.pki);
    good.route("/p.json", Response::ok(body(&deploy_doc(1))));
    let config = env.config("");
    let other_ca = Pki::new("another CA");
    let wrong_ca = Server::start_with(ServerOptions {
        identity: Some(other_ca.server()),
        client_ca: None,
    });
    let expired = Server::start_with(ServerOptions {
        identity: Some(env.pki.expired_server()),
        client_ca: None,
    });
    let redirect = Server::start(&env.pki);
    redirect.route(
        "/p.json",
        Response {
            status: 302,
            headers: vec![("Location".into(), good.url("/p.json"))],
            body: vec![],
        },
    );
    let cases: Vec<(&str, String, Option<Behaviour>, &str)> = vec![
        (
            "connection refused",
            format!("https://127.0.0.1:{}/p.json", refused_port()),
            None,
            "cannot connect",
        ),
        (
            "accepts, never answers",
            good.url("/p.json"),
            Some(Behaviour::Hang),
            "no complete answer within",
        ),
        (
            "answers nothing after the request",
            good.url("/p.json"),
            Some(Behaviour::HangAfterRequest),
            "no complete answer within",
        ),
        (
            "trickles a byte a second",
            good.url("/p.json"),
            Some(Behaviour::Trickle),
            "no complete answer within",
        ),
        (
            "500",
            good.url("/p.json"),
            Some(Behaviour::Status(500)),
            "HTTP status 500",
        ),
        (
            "503",
            good.url("/p.json"),
            Some(Behaviour::Status(503)),
            "HTTP status 503",
        ),
        (
            "404",
            good.url("/p.json"),
            Some(Behaviour::Status(404)),
            "HTTP status 404",
        ),
        (
            "403",
            good.url("/p.json"),
            Some(Behaviour::Status(403)),
            "HTTP status 403",
        ),
        (
            "garbage body",
            good.url("/p.json"),
            Some(Behaviour::Garbage),
            "policy",
        ),
        (
            "not HTTP",
            good.url("/p.json"),
            Some(Behaviour::NotHttp),
            "bad HTTP answer",
        ),
        (
            "512 MiB body",
            good.url("/p.json"),
            Some(Behaviour::Oversized(512 << 20)),
            "larger than",
        ),
        (
            "declares 512 MiB",
            good.url("/p.json"),
            Some(Behaviour::DeclaredLength(512 << 20)),
            "larger than",
        ),
        ("wrong CA", wrong_ca.url("/p.json"), None, "TLS"),
        ("expired certificate", expired.url("/p.json"), None, "TLS"),
        (
            "redirect",
            redirect.url("/p.json"),
            None,
            "redirects are not followed",
        ),
    ];
    let mut report = String::new();
    for (name, url, behaviour, why) in cases {
        if let Some(b) = behaviour {
            good.set(b);
        }
        let (r, took) = env.keys(&config, &url);
        good.set(Behaviour::Serve);
        r.assert_denied();
        assert!(r.stderr.contains("outcome=error"), "{name}: {}", r.stderr);
        assert!(
            r.stderr.contains(why),
            "{name}: expected {why:?} in {}",
            r.stderr
        );
        assert!(took < BOUND, "{name}: took {took:?}");
        report.push_str(&format!("deny-time {name}: {} ms\n", took.as_millis()));
    }
    eprint!("{report}");
    // And the good server still answers.
    env.keys(&config, &good.url("/p.json")).0.assert_ok();
}

#[test]
fn client_certificate_and_bearer_token() {
    let env = Env::new("https-client-auth");
    let client_pki = Pki::new("client CA");
    let server = Server::start_with(ServerOptions {
        identity: Some(env.pki.server()),
        client_ca: Some(client_pki.ca_pem.clone()),
    });
    server.route("/p.json", Response::ok(body(&deploy_doc(1))));
    let url = server.url("/p.json");
    // Without a client certificate the server refuses the handshake.
    let (r, _) = env.keys(&env.config(""), &url);
    r.assert_denied();
    let id = client_pki.client("web-1");
    let cert = env.dir.join("client.pem");
    write_pem(&cert, &id.cert_pem);
    let key = env.dir.join("client.key");
    write_file(&key, id.key_pem.as_bytes(), 0o600);
    let token = env.dir.join("token");
    write_file(&token, b"s3cr3t-token_value.1~+/==\n", 0o600);
    let extra = format!(
        "client_cert = \"{}\"\nclient_key = \"{}\"\ntoken_file = \"{}\"",
        cert.display(),
        key.display(),
        token.display()
    );
    let (r, _) = env.keys(&env.config(&extra), &url);
    r.assert_ok();
    assert_eq!(
        server.seen().last().unwrap().header("authorization"),
        Some("Bearer s3cr3t-token_value.1~+/==")
    );
    // Secrets readable by others, a key that does not match, a bad token.
    fs::set_permissions(&token, fs::Permissions::from_mode(0o644)).unwrap();
    let (r, _) = env.keys(&env.config(&extra), &url);
    r.assert_denied();
    assert!(r.stderr.contains("readable by others"), "{}", r.stderr);
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
    write_file(&token, b"two words\n", 0o600);
    env.keys(&env.config(&extra), &url).0.assert_denied();
    write_file(&token, b"ok\n", 0o600);
    write_file(&key, client_pki.client("x").key_pem.as_bytes(), 0o600);
    let (r, _) = env.keys(&env.config(&extra), &url);
    r.assert_denied();
    assert!(r.stderr.contains("client_cert"), "{}", r.stderr);
}

#[test]
fn failover_only_when_a_source_is_unavailable() {
    let env = Env::new("https-failover");
    let a = Server::start(&env.pki);
    let b = Server::start(&env.pki);
    b.route("/p.json", Response::ok(body(&deploy_doc(1))));
    let sources =
        |first: &str| env.config(&format!("source = [\"{first}\", \"{}\"]", b.url("/p.json")));
    let refused = format!("https://127.0.0.1:{}/p.json", refused_port());
    let keys = |c: &Path| timed(&["keys", "deploy", "--config", c.to_str().unwrap()]);
    // Refused, 5xx or silent: the second source answers, within the deadline.
    let (r, _) = keys(&sources(&refused));
    r.assert_ok();
    assert!(r.stderr.contains("unavailable="), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("source={}", b.url("/p.json"))),
        "{}",
        r.stderr
    );
    a.set(Behaviour::Status(502));
    keys(&sources(&a.url("/p.json"))).0.assert_ok();
    a.set(Behaviour::Hang);
    let (r, took) = keys(&sources(&a.url("/p.json")));
    r.assert_ok();
    assert!(took < BOUND, "{took:?}");
    eprintln!(
        "failover after a silent first source: {} ms",
        took.as_millis()
    );
    // A source that answers with something unacceptable is never skipped.
    a.set(Behaviour::Status(404));
    keys(&sources(&a.url("/p.json"))).0.assert_denied();
    a.set(Behaviour::Garbage);
    keys(&sources(&a.url("/p.json"))).0.assert_denied();
    let other = Pki::new("other");
    let wrong = Server::start_with(ServerOptions {
        identity: Some(other.server()),
        client_ca: None,
    });
    keys(&sources(&wrong.url("/p.json"))).0.assert_denied();
}

/// A state directory for the rollback guard (0700, ours).
fn private_dir(dir: &TestDir, name: &str) -> PathBuf {
    let p = dir.join(name);
    fs::create_dir(&p).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).unwrap();
    p
}

struct Signed {
    env: Env,
    server: Server,
    key: SignKey,
    state: PathBuf,
    config: PathBuf,
}

fn signed_env(name: &str) -> Signed {
    let env = Env::new(name);
    let server = Server::start(&env.pki);
    let key = signing_key(&env.dir, "signer");
    let signers = env.dir.write(
        "allowed_signers",
        format!(
            "security@corp namespaces=\"sshjit-policy\" {}\n",
            key.public_line
        ),
    );
    let state = private_dir(&env.dir, "state");
    let config = env.config(&format!(
        "allowed_signers = \"{}\"\nstate_dir = \"{}\"",
        signers.display(),
        state.display()
    ));
    Signed {
        env,
        server,
        key,
        state,
        config,
    }
}

impl Signed {
    /// Serves `doc` with its signature in the header.
    fn publish(&self, doc: &Value) {
        let b = body(doc);
        let sig = ssh_sign(&self.key, &b, "sshjit-policy");
        self.server.unroute("/p.json.sig");
        self.server.route(
            "/p.json",
            Response::ok(b).header("Sshjit-Signature", &header_value(&sig)),
        );
    }

    fn keys(&self) -> Run {
        self.env.keys(&self.config, &self.server.url("/p.json")).0
    }

    fn stored_serial(&self) -> String {
        fs::read_to_string(self.state.join("serial")).unwrap_or_default()
    }
}

#[test]
fn signed_documents_are_verified() {
    let s = signed_env("https-signed");
    // Good, in the header.
    s.publish(&deploy_doc(5));
    let r = s.keys();
    r.assert_ok();
    assert!(r.stdout.contains("ssh-ed25519"), "{r:#?}");
    assert!(
        r.stderr
            .contains("signed_by=security@corp signer_fp=SHA256:"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("serial_raised_from=none"), "{}", r.stderr);
    assert_eq!(s.stored_serial(), "5\n");
    let meta = fs::metadata(s.state.join("serial")).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    // Good, as <path>.sig with the same query (no header).
    let b = body(&deploy_doc(5));
    let sig = ssh_sign(&s.key, &b, "sshjit-policy");
    s.server.route("/p.json", Response::ok(b.clone()));
    s.server.route("/p.json.sig", Response::ok(sig.clone()));
    let r = s.keys();
    r.assert_ok();
    assert!(!r.stderr.contains("serial_raised_from"), "{}", r.stderr);
    let seen = s.server.seen();
    assert_eq!(seen.last().unwrap().path, "/p.json.sig");
    assert_eq!(
        seen.last().unwrap().query,
        "user=deploy&host=web-1&mode=keys"
    );

    let deny = |why: &str| {
        let r = s.keys();
        r.assert_denied();
        assert!(r.stderr.contains(why), "expected {why:?}: {}", r.stderr);
    };
    // Tampered: one byte of the document changed after signing.
    let mut tampered = b.clone();
    let i = tampered.iter().position(|&c| c == b'5').unwrap();
    tampered[i] = b'6';
    s.server.route("/p.json", Response::ok(tampered));
    deny("does not match the document");
    // Unsigned: no header and no .sig.
    s.server.route("/p.json", Response::ok(b.clone()));
    s.server.unroute("/p.json.sig");
    deny("unsigned");
    // A signature by a key that is not listed.
    let stranger = signing_key(&s.env.dir, "stranger");
    s.server.route(
        "/p.json",
        Response::ok(b.clone()).header(
            "Sshjit-Signature",
            &header_value(&ssh_sign(&stranger, &b, "sshjit-policy")),
        ),
    );
    deny("not in");
    // The right key, another namespace.
    s.server.route(
        "/p.json",
        Response::ok(b.clone()).header(
            "Sshjit-Signature",
            &header_value(&ssh_sign(&s.key, &b, "file")),
        ),
    );
    deny("namespace");
    // Not a signature at all.
    s.server.route(
        "/p.json",
        Response::ok(b.clone()).header("Sshjit-Signature", &header_value("hello")),
    );
    deny("not an ssh-keygen -Y sign signature");
    // A signed document without a serial.
    let mut no_serial = deploy_doc(1);
    no_serial.as_object_mut().unwrap().remove("serial");
    s.publish(&no_serial);
    deny("must carry a");
    // The .sig request failing with 5xx is an unavailable source.
    s.server.route("/p.json", Response::ok(b.clone()));
    s.server.route(
        "/p.json.sig",
        Response {
            status: 503,
            headers: vec![],
            body: vec![],
        },
    );
    deny("HTTP status 503");
    assert_eq!(s.stored_serial(), "5\n");
}

#[test]
fn a_replayed_older_document_is_refused() {
    let s = signed_env("https-rollback");
    s.publish(&deploy_doc(7));
    s.keys().assert_ok();
    assert_eq!(s.stored_serial(), "7\n");
    // An attacker replays serial 6, validly signed: it still grants access
    // that serial 7 may have revoked.
    s.publish(&deploy_doc(6));
    let r = s.keys();
    r.assert_denied();
    assert!(
        r.stderr
            .contains("rollback refused: serial 6 is lower than 7"),
        "{}",
        r.stderr
    );
    assert_eq!(s.stored_serial(), "7\n");
    // The same serial again is fine; a higher one raises the mark.
    s.publish(&deploy_doc(7));
    s.keys().assert_ok();
    s.publish(&deploy_doc(9));
    let r = s.keys();
    r.assert_ok();
    assert!(r.stderr.contains("serial_raised_from=7"), "{}", r.stderr);
    assert_eq!(s.stored_serial(), "9\n");
    // Recovery after restoring an older policy: the admin resets the mark.
    write_file(&s.state.join("serial"), b"6\n", 0o600);
    s.publish(&deploy_doc(6));
    s.keys().assert_ok();
    // A state directory others can write, a missing one, a corrupt file: deny.
    write_file(&s.state.join("serial"), b"six\n", 0o600);
    let r = s.keys();
    r.assert_denied();
    assert!(r.stderr.contains("does not hold a serial"), "{}", r.stderr);
    write_file(&s.state.join("serial"), b"6\n", 0o600);
    fs::set_permissions(&s.state, fs::Permissions::from_mode(0o777)).unwrap();
    s.keys().assert_denied();
    fs::set_permissions(&s.state, fs::Permissions::from_mode(0o700)).unwrap();
    fs::remove_dir_all(&s.state).unwrap();
    let r = s.keys();
    r.assert_denied();
    assert!(r.stderr.contains("install -d"), "{}", r.stderr);
}

#[test]
fn concurrent_helpers_never_lower_the_serial() {
    let env = Env::new("https-concurrent");
    let key = signing_key(&env.dir, "signer");
    let signers = env
        .dir
        .write("allowed_signers", format!("ops {}\n", key.public_line));
    let state = private_dir(&env.dir, "state");
    let config = env.config(&format!(
        "allowed_signers = \"{}\"\nstate_dir = \"{}\"",
        signers.display(),
        state.display()
    ));
    // One signed file per serial, 1..=24, started in a shuffled order.
    let mut order: Vec<u64> = (1..=24).collect();
    order.sort_by_key(|n| (n * 7919) % 24);
    let files: Vec<PathBuf> = order
        .iter()
        .map(|n| {
            let b = body(&deploy_doc(*n));
            let p = env.dir.write(&format!("p{n}.json"), &b);
            env.dir.write(
                &format!("p{n}.json.sig"),
                ssh_sign(&key, &b, "sshjit-policy"),
            );
            p
        })
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (stop, path) = (stop.clone(), state.join("serial"));
        std::thread::spawn(move || {
            let mut last = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(t) = fs::read_to_string(&path) {
                    let v: u64 = t
                        .trim()
                        .parse()
                        .expect("a whole serial, never a torn write");
                    assert!(v >= last, "the stored serial went down from {last} to {v}");
                    last = v;
                }
            }
            last
        })
    };
    let children: Vec<_> = files
        .iter()
        .map(|p| {
            Globals::new(p, &config)
                .cmd(&["keys", "deploy"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut accepted = 0;
    for c in children {
        let r = Run::from_output(c.wait_with_output().unwrap());
        if r.code == Some(0) {
            accepted += 1;
        } else {
            r.assert_denied();
            assert!(r.stderr.contains("rollback refused"), "{}", r.stderr);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    watcher.join().unwrap();
    assert!(accepted >= 1);
    assert_eq!(fs::read_to_string(state.join("serial")).unwrap(), "24\n");
    // Nothing but the serial and its lock is left behind.
    let mut names: Vec<String> = fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["serial", "serial.lock"]);
}

#[test]
fn file_source_signatures_sit_beside_the_file() {
    let env = Env::new("file-signed");
    let key = signing_key(&env.dir, "signer");
    let signers = env
        .dir
        .write("allowed_signers", format!("ops {}\n", key.public_line));
    let state = private_dir(&env.dir, "state");
    let config = env.config(&format!(
        "allowed_signers = \"{}\"\nstate_dir = \"{}\"",
        signers.display(),
        state.display()
    ));
    let b = body(&deploy_doc(2));
    let policy = env.dir.write("policy.json", &b);
    let p = policy.to_str().unwrap();
    let r = env.keys(&config, p).0;
    r.assert_denied();
    assert!(r.stderr.contains("unsigned"), "{}", r.stderr);
    env.dir
        .write("policy.json.sig", ssh_sign(&key, &b, "sshjit-policy"));
    env.keys(&config, p).0.assert_ok();
    // A signature file others can write is refused like the policy.
    fs::set_permissions(
        env.dir.join("policy.json.sig"),
        fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    env.keys(&config, p).0.assert_denied();
}

#[test]
fn sign_and_verify_publish_in_one_step() {
    let env = Env::new("sign-cmd");
    let key = signing_key(&env.dir, "signer");
    let signers = env.dir.write(
        "allowed_signers",
        format!("release@corp {}\n", key.public_line),
    );
    let state = private_dir(&env.dir, "state");
    let config = env.config(&format!(
        "allowed_signers = \"{}\"\nstate_dir = \"{}\"",
        signers.display(),
        state.display()
    ));
    let c = config.to_str().unwrap();
    // Serial 11 is one version: the same bytes each time it is signed
    // (`sign` refuses other content under a serial already signed).
    let eleven = body(&deploy_doc(11));
    let policy = env.dir.write("policy.json", &eleven);
    let p = policy.to_str().unwrap();
    let k = key.private.to_str().unwrap();
    let r = run(&["sign", p, "--key", k, "--config", c]);
    r.assert_ok();
    assert!(r.stdout.contains("signed"), "{r:#?}");
    assert!(r.stdout.contains("release@corp"), "{r:#?}");
    let header = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Sshjit-Signature: "))
        .expect("the header value is printed")
        .to_owned();
    let sig = fs::read_to_string(env.dir.join("policy.json.sig")).unwrap();
    assert!(sig.starts_with("-----BEGIN SSH SIGNATURE-----"), "{sig}");
    assert_eq!(Base64::decode_vec(&header).unwrap(), sig.as_bytes());
    // The helper accepts it as is.
    env.keys(&config, p).0.assert_ok();
    let r = run(&["verify", p, "--config", c]);
    r.assert_ok();
    assert!(
        r.stdout.contains("good signature by release@corp"),
        "{r:#?}"
    );
    assert!(r.stdout.contains("serial 11"), "{r:#?}");
    // Verify over https, via the header.
    let server = Server::start(&env.pki);
    server.route(
        "/p.json",
        Response::ok(fs::read(&policy).unwrap()).header("Sshjit-Signature", &header),
    );
    run(&["verify", &server.url("/p.json"), "--config", c]).assert_ok();
    // A changed document fails verification.
    env.dir.write("policy.json", body(&deploy_doc(12)));
    run(&["verify", p, "--config", c]).assert_denied();
    // Signing with a key that hosts do not trust writes nothing.
    let stranger = signing_key(&env.dir, "stranger");
    let before = fs::read(env.dir.join("policy.json.sig")).unwrap();
    let r = run(&[
        "sign",
        p,
        "--key",
        stranger.private.to_str().unwrap(),
        "--config",
        c,
    ]);
    r.assert_denied();
    assert!(r.stderr.contains("would refuse"), "{}", r.stderr);
    assert_eq!(fs::read(env.dir.join("policy.json.sig")).unwrap(), before);
    // No serial, or an invalid document: nothing is signed.
    let mut no_serial = deploy_doc(1);
    no_serial.as_object_mut().unwrap().remove("serial");
    env.dir.write("policy.json", body(&no_serial));
    let r = run(&["sign", p, "--key", k, "--config", c]);
    r.assert_denied();
    assert!(r.stderr.contains("serial"), "{}", r.stderr);
    env.dir
        .write("policy.json", "{\"version\": 1, \"grants\": [{}]}");
    run(&["sign", p, "--key", k, "--config", c]).assert_denied();
    // After the helper accepted serial 11, verify flags an older document.
    env.dir.write("policy.json", &eleven);
    run(&["sign", p, "--key", k, "--config", c]).assert_ok();
    env.keys(&config, p).0.assert_ok();
    env.dir.write("policy.json", body(&deploy_doc(10)));
    run(&["sign", p, "--key", k, "--config", c]).assert_ok();
    let r = run(&["verify", p, "--config", c]);
    r.assert_denied();
    assert!(r.stderr.contains("rollback"), "{}", r.stderr);
}

/// Sets a file's modification time `secs` seconds into the past.
fn age_file(path: &Path, secs: u64) {
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(secs))
        .unwrap();
}

#[test]
fn the_cache_stands_in_only_while_the_source_is_unavailable() {
    let s = signed_env("https-cache");
    let cache = private_dir(&s.env.dir, "cache");
    let signers = s.env.dir.join("allowed_signers");
    let config = s.env.config(&format!(
        "allowed_signers = \"{}\"\nstate_dir = \"{}\"\ncache_dir = \"{}\"\nmax_stale = \"10m\"",
        signers.display(),
        s.state.display(),
        cache.display()
    ));
    let url = s.server.url("/p.json");
    let keys = || s.env.keys(&config, &url);
    s.publish(&deploy_doc(3));
    let (fresh, _) = keys();
    fresh.assert_ok();
    assert!(!fresh.stderr.contains("cache="), "{}", fresh.stderr);
    let entry = cache.join("keys.deploy.json");
    assert_eq!(fs::metadata(&entry).unwrap().mode() & 0o777, 0o600);

    // 5xx and timeouts: served from the cache, said so, same answer.
    for b in [
        Behaviour::Status(500),
        Behaviour::Status(503),
        Behaviour::Hang,
        Behaviour::Trickle,
    ] {
        s.server.set(b.clone());
        let (r, took) = keys();
        r.assert_ok();
        assert_eq!(r.stdout, fresh.stdout, "{b:?}");
        assert!(r.stderr.contains("cache=hit age_s="), "{b:?}: {}", r.stderr);
        assert!(r.stderr.contains("unavailable="), "{b:?}: {}", r.stderr);
        assert!(took < BOUND, "{b:?}: {took:?}");
        eprintln!("cache hit after {b:?}: {} ms", took.as_millis());
    }
    // Refused connections too.
    let gone = format!("https://127.0.0.1:{}/p.json", refused_port());
    let c2 = s.env.config(&format!(
        "allowed_signers = \"{}\"\nstate_dir = \"{}\"\ncache_dir = \"{}\"\nmax_stale = \"10m\"\nsource = [\"{gone}\", \"{url}\"]",
        signers.display(),
        s.state.display(),
        cache.display()
    ));
    s.server.set(Behaviour::Status(500));
    run(&["keys", "deploy", "--config", c2.to_str().unwrap()]).assert_ok();

    // Never after a 4xx or an unacceptable answer.
    for b in [
        Behaviour::Status(404),
        Behaviour::Status(401),
        Behaviour::Garbage,
    ] {
        s.server.set(b.clone());
        let (r, _) = keys();
        r.assert_denied();
        assert!(!r.stderr.contains("cache=hit"), "{b:?}: {}", r.stderr);
    }
    s.server.set(Behaviour::Serve);
    let b = body(&deploy_doc(3));
    s.server.route(
        "/p.json",
        Response::ok(b.clone()).header("Sshjit-Signature", &header_value("junk")),
    );
    keys().0.assert_denied();
    s.publish(&deploy_doc(3));

    // Older than max_stale: refused.
    s.server.set(Behaviour::Status(500));
    age_file(&entry, 11 * 60);
    let (r, _) = keys();
    r.assert_denied();
    assert!(r.stderr.contains("more than max_stale"), "{}", r.stderr);
    age_file(&entry, 9 * 60);
    let (r, _) = keys();
    r.assert_ok();
    assert!(r.stderr.contains("cache=hit age_s=5"), "{}", r.stderr);

    // A cached document whose signer is no longer allowed is refused.
    let other = signing_key(&s.env.dir, "other");
    s.env
        .dir
        .write("allowed_signers", format!("x {}\n", other.public_line));
    keys().0.assert_denied();
    s.env.dir.write(
        "allowed_signers",
        format!(
            "security@corp namespaces=\"sshjit-policy\" {}\n",
            s.key.public_line
        ),
    );
    keys().0.assert_ok();
    // Nor a cache entry someone else could have written.
    fs::set_permissions(&entry, fs::Permissions::from_mode(0o666)).unwrap();
    keys().0.assert_denied();
    fs::set_permissions(&entry, fs::Permissions::from_mode(0o600)).unwrap();

    // With max_stale = "0s" a failing source denies.
    let off = s.env.config(&format!(
        "allowed_signers = \"{}\"\nstate_dir = \"{}\"\ncache_dir = \"{}\"\nmax_stale = \"0s\"",
        signers.display(),
        s.state.display(),
        cache.display()
    ));
    s.env.keys(&off, &url).0.assert_denied();
}

#[test]
fn a_cached_grant_never_outlives_its_expiry() {
    let env = Env::new("https-cache-expiry");
    let server = Server::start(&env.pki);
    let cache = private_dir(&env.dir, "cache");
    let config = env.config(&format!(
        "cache_dir = \"{}\"\nmax_stale = \"1h\"",
        cache.display()
    ));
    let url = server.url("/p.json");
    let mut g = key_grant("g-short", "deploy", KEY_A);
    let ends = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + 3;
    g["expires_at"] = json!(rfc3339_at(ends));
    server.route("/p.json", Response::ok(body(&doc(vec![g], vec![]))));
    let (r, _) = env.keys(&config, &url);
    r.assert_ok();
    assert!(r.stdout.contains("ssh-ed25519"), "{r:#?}");
    server.set(Behaviour::Status(500));
    // Wait for the grant to end, then ask again: the cache is used, and
    // evaluated now.
    while SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        <= ends
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (r, _) = env.keys(&config, &url);
    r.assert_ok();
    assert_eq!(r.stdout, "");
    assert!(r.stderr.contains("cache=hit"), "{}", r.stderr);
    assert!(r.stderr.contains("outcome=none"), "{}", r.stderr);
}

#[test]
fn https_settings_are_checked() {
    let env = Env::new("https-settings");
    let server = Server::start(&env.pki);
    server.route("/p.json", Response::ok(body(&deploy_doc(1))));
    let url = server.url("/p.json");
    // A CA file others can write, or that holds no certificate.
    fs::set_permissions(&env.ca, fs::Permissions::from_mode(0o666)).unwrap();
    let (r, _) = env.keys(&env.config(""), &url);
    r.assert_denied();
    assert!(r.stderr.contains("ca_file"), "{}", r.stderr);
    fs::set_permissions(&env.ca, fs::Permissions::from_mode(0o644)).unwrap();
    write_pem(&env.ca, "not a certificate\n");
    let (r, _) = env.keys(&env.config(""), &url);
    r.assert_denied();
    assert!(r.stderr.contains("no CERTIFICATE"), "{}", r.stderr);
    // Config-level refusals.
    for (extra, why) in [
        ("max_stale = \"1h\"", "needs cache_dir"),
        ("source = \"http://10.1.2.3/p.json\"", "plain http"),
        ("allowed_signers = \"relative\"", "absolute"),
    ] {
        let (r, _) = env.keys(&env.config(extra), &url);
        r.assert_denied();
        assert!(r.stderr.contains(why), "{extra}: {}", r.stderr);
    }
}
