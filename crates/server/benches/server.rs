//! `scripts/bench-server` (which builds the release binaries, starts a
//! private PostgreSQL and raises the descriptor limit, then runs `cargo
//! bench -p sshjit-server --bench server`): what sshjit-server costs,
//! measured side by side in one run. Prints medians and ratios; asserts
//! nothing.
//!
//! 1. Answers per second and latency (p50, p99) of `GET /v1/policy` at
//!    10,000 grants, for users across the policy, on SQLite and PostgreSQL.
//! 2. `sshjit keys` reading the server over http against the same helper
//!    reading a local indexed file of the same policy.
//! 3. From `sshjit revoke --server` returning to a syncing host's copy
//!    (and so its next login) refusing.
//! 4. 10,000 hosts, each with its own token, all asking at once with a
//!    stale copy (a fleet reconnecting after an outage): until all are
//!    current.
//!
//! Knobs: SSHJIT_BENCH_GRANTS (10000), SSHJIT_BENCH_SECONDS (10),
//! SSHJIT_BENCH_CONNECTIONS (32), SSHJIT_BENCH_RUNS (200),
//! SSHJIT_BENCH_HOSTS (10000).

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// A deterministic generator (xorshift64*), so runs are repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn random_key(rng: &mut Rng, comment: &str) -> String {
    use ssh_encoding::base64::{Base64, Encoding};
    let mut blob = Vec::with_capacity(51);
    blob.extend_from_slice(&11u32.to_be_bytes());
    blob.extend_from_slice(b"ssh-ed25519");
    blob.extend_from_slice(&32u32.to_be_bytes());
    for _ in 0..4 {
        blob.extend_from_slice(&rng.next().to_le_bytes());
    }
    format!("ssh-ed25519 {} {comment}", Base64::encode_string(&blob))
}

/// `n` grants, three per user; `hosts(i)` gives grant i's host globs.
fn policy(n: usize, hosts: impl Fn(usize) -> Vec<String>) -> String {
    let mut rng = Rng(0x5eed | 1);
    let mut grants = Vec::with_capacity(n);
    for i in 0..n {
        let user = format!("user{}", i / 3);
        grants.push(serde_json::json!({
            "id": format!("g-{i}"), "user": user,
            "key": random_key(&mut rng, &format!("{user}@laptop-{i}")),
            "hosts": hosts(i),
            "not_before": "2026-01-01T00:00:00Z", "expires_at": "2099-01-01T00:00:00Z",
            "reason": format!("INC-{i} synthetic access"), "granted_by": "bench",
        }));
    }
    let revocations: Vec<_> = (0..n)
        .step_by(50)
        .map(|i| serde_json::json!({"grant": format!("g-{i}"), "reason": "synthetic"}))
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({
        "version": 1, "serial": 1, "grants": grants, "revocations": revocations
    }))
    .unwrap()
}

struct Bins {
    server: PathBuf,
    helper: PathBuf,
}

impl Bins {
    fn locate() -> Bins {
        let server = PathBuf::from(env!("CARGO_BIN_EXE_sshjit-server"));
        let helper = server.with_file_name("sshjit");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--locked", "--quiet", "-p", "sshjit"])
            .status()
            .expect("cargo");
        assert!(
            status.success() && helper.exists(),
            "building sshjit failed"
        );
        Bins { server, helper }
    }
}

/// A scratch directory every ancestor of which is root's (or ours) and
/// not group/other-writable, as the helper requires.
fn scratch(name: &str) -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-server");
    let d = base.join(format!("{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    for p in [&base, &d] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    d
}

fn write(path: &Path, text: &str, mode: u32) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

struct Server {
    child: Child,
    dir: PathBuf,
    config: PathBuf,
    addr: String,
    bins: Arc<Bins>,
}

impl Server {
    fn start(bins: &Arc<Bins>, name: &str, store: &str) -> Server {
        let dir = scratch(name);
        let config = dir.join("server.toml");
        write(
            &config,
            &format!(
                "listen = \"127.0.0.1:0\"\nstore = \"{store}\"\nsigning_key = \"{}\"\nsecrets_key = \"{}\"\n",
                dir.join("signing_key").display(),
                dir.join("secrets_key").display()
            ),
            0o600,
        );
        let log = dir.join("server.log");
        let child = Command::new(&bins.server)
            .arg("--config")
            .arg(&config)
            .stderr(fs::File::create(&log).unwrap())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let addr = loop {
            let text = fs::read_to_string(&log).unwrap_or_default();
            if let Some(a) = text
                .lines()
                .find_map(|l| l.split(" address=http://").nth(1))
            {
                break a.split_whitespace().next().unwrap().to_owned();
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{text}");
            std::thread::sleep(Duration::from_millis(20));
        };
        Server {
            child,
            dir,
            config,
            addr,
            bins: Arc::clone(bins),
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(&self.bins.server)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn import(&self, document: &str) {
        let f = self.dir.join("import.json");
        write(&f, document, 0o644);
        self.cli(&[
            "policy",
            "import",
            f.to_str().unwrap(),
            "--reason",
            "benchmark",
        ]);
    }

    /// Waits until the running server serves `serial` to `token`.
    fn wait_serial(&self, token: &str, host: &str, serial: u64) {
        let started = Instant::now();
        loop {
            let out = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-D", "-", "-H"])
                .arg(format!("Authorization: Bearer {token}"))
                .arg(format!(
                    "http://{}/v1/policy?host={host}&user=none",
                    self.addr
                ))
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).contains(&format!("etag: \"{serial}\"")) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "serial {serial} never served"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on a kept-alive connection; the status.
async fn request(stream: &mut TcpStream, req: &[u8], buf: &mut Vec<u8>) -> std::io::Result<u16> {
    stream.write_all(req).await?;
    buf.clear();
    let mut chunk = [0u8; 16384];
    let (head_end, length) = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (i + 4, length);
        }
    };
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let status = std::str::from_utf8(&buf[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(status)
}

/// `connections` kept-alive connections asking for users' parts in turn
/// for `seconds`: (answers per second, sorted latencies, non-200 count).
fn load(
    addr: &str,
    token: &str,
    users: usize,
    connections: usize,
    seconds: u64,
) -> (f64, Vec<Duration>, usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for c in 0..connections {
            let addr = addr.to_owned();
            let token = token.to_owned();
            tasks.push(tokio::spawn(async move {
                let mut stream = TcpStream::connect(&addr).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let mut lat = Vec::new();
                let mut bad = 0;
                let mut buf = Vec::with_capacity(65536);
                let mut i = c * 7919;
                while Instant::now() < deadline {
                    i = (i + 1) % users;
                    let req = format!(
                        "GET /v1/policy?user=user{i}&host=web-1&mode=keys HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n"
                    );
                    let t = Instant::now();
                    match request(&mut stream, req.as_bytes(), &mut buf).await {
                        Ok(200) => lat.push(t.elapsed()),
                        Ok(_) => bad += 1,
                        Err(_) => {
                            bad += 1;
                            stream = TcpStream::connect(&addr).await.unwrap();
                        }
                    }
                }
                (lat, bad)
            }));
        }
        let started = Instant::now();
        let mut all = Vec::new();
        let mut bad = 0;
        for t in tasks {
            let (lat, b) = t.await.unwrap();
            all.extend(lat);
            bad += b;
        }
        let elapsed = started.elapsed().as_secs_f64();
        all.sort();
        (all.len() as f64 / elapsed, all, bad)
    })
}

fn answers_per_second(bins: &Arc<Bins>, out: &mut String, grants: usize) {
    let seconds = env_or("SSHJIT_BENCH_SECONDS", 10u64);
    let connections = env_or("SSHJIT_BENCH_CONNECTIONS", 32usize);
    let document = policy(grants, |_| {
        vec!["web-*".into(), "db-?.prod.example.com".into()]
    });
    let mut stores = vec![("SQLite", None)];
    if let Ok(base) = std::env::var("SSHJIT_TEST_POSTGRES") {
        stores.push(("PostgreSQL", Some(base)));
    }
    let _ = writeln!(
        out,
        "\n## GET /v1/policy at {grants} grants ({connections} connections kept alive, {seconds} s, users across the policy; the load generator shares the machine's cores)\n\n| store | answers/s | p50 ms | p99 ms | max ms | not 200 |\n|---|---:|---:|---:|---:|---:|"
    );
    for (name, base) in stores {
        let store = match &base {
            None => format!("sqlite:{}", scratch("aps-db").join("server.db").display()),
            Some(b) => {
                let db = format!("bench_{}", std::process::id());
                for sql in [
                    format!("DROP DATABASE IF EXISTS {db}"),
                    format!("CREATE DATABASE {db}"),
                ] {
                    let ok = Command::new("psql")
                        .args([b.as_str(), "-q", "-c", &sql])
                        .status()
                        .unwrap();
                    assert!(ok.success(), "{sql}");
                }
                format!("{}/{db}", b.rsplit_once('/').unwrap().0)
            }
        };
        let server = Server::start(bins, &format!("aps-{name}"), &store);
        server.import(&document);
        let token = server.cli(&["host", "add", "web-1"]).trim().to_owned();
        server.wait_serial(&token, "web-1", 1);
        // Warm the answers once, as a running fleet does.
        let _ = load(&server.addr, &token, grants / 3, 4, 2);
        let (rate, lat, bad) = load(&server.addr, &token, grants / 3, connections, seconds);
        let _ = writeln!(
            out,
            "| {name} | {rate:.0} | {} | {} | {} | {bad} |",
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99)),
            ms(*lat.last().unwrap())
        );
        eprintln!("  measured answers per second on {name}");
    }
}

fn helper_against_local_file(bins: &Arc<Bins>, out: &mut String, grants: usize) {
    let runs = env_or("SSHJIT_BENCH_RUNS", 200usize);
    let document = policy(grants, |_| {
        vec!["web-*".into(), "db-?.prod.example.com".into()]
    });
    let server = Server::start(
        bins,
        "helper",
        &format!(
            "sqlite:{}",
            scratch("helper-db").join("server.db").display()
        ),
    );
    server.import(&document);
    let token = server.cli(&["host", "add", "web-1"]).trim().to_owned();
    server.wait_serial(&token, "web-1", 1);
    let dir = scratch("helper-host");
    let token_file = dir.join("token");
    write(&token_file, &format!("{token}\n"), 0o600);
    let signers = dir.join("allowed_signers");
    write(&signers, &server.cli(&["signer"]), 0o644);
    let state = dir.join("state");
    fs::create_dir_all(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
    let sink = dir.join("log.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&sink).unwrap();
    std::thread::spawn(move || {
        let mut b = [0u8; 8192];
        while socket.recv(&mut b).is_ok() {}
    });
    let remote = dir.join("remote.toml");
    write(
        &remote,
        &format!(
            "source = \"http://{}/v1/policy\"\ntoken_file = \"{}\"\nallowed_signers = \"{}\"\nstate_dir = \"{}\"\nhost = \"web-1\"\nsyslog_socket = \"{}\"\n",
            server.addr,
            token_file.display(),
            signers.display(),
            state.display(),
            sink.display()
        ),
        0o644,
    );
    let local_policy = dir.join("policy.json");
    write(&local_policy, &document, 0o644);
    let local = dir.join("local.toml");
    write(
        &local,
        &format!(
            "source = \"{}\"\nhost = \"web-1\"\nsyslog_socket = \"{}\"\n",
            local_policy.display(),
            sink.display()
        ),
        0o644,
    );
    let built = Command::new(&bins.helper)
        .args(["index", "--config"])
        .arg(&local)
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    let user = format!("user{}", grants / 6);
    let keys = |config: &Path| {
        let mut c = Command::new(&bins.helper);
        c.args(["keys", &user, "--config"])
            .arg(config)
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    for config in [&remote, &local] {
        let o = keys(config).stdout(Stdio::piped()).output().unwrap();
        assert!(
            o.status.success() && !o.stdout.is_empty(),
            "{config:?}: {o:?}"
        );
    }
    let (mut t_remote, mut t_local) = (Vec::new(), Vec::new());
    for i in 0..runs {
        for (which, config) in [(i % 2, &remote), ((i + 1) % 2, &local)] {
            let t = Instant::now();
            assert!(keys(config).status().unwrap().success());
            if config == &remote {
                t_remote.push(t.elapsed());
            } else {
                t_local.push(t.elapsed());
            }
            let _ = which;
        }
    }
    let (r, l) = (median(t_remote), median(t_local));
    let _ = writeln!(
        out,
        "\n## sshjit keys at {grants} grants ({runs} interleaved runs, one fresh process each, ms)\n\n| helper reading | median ms | ratio to the local indexed file |\n|---|---:|---:|\n| a local indexed file | {} | 1.00 |\n| sshjit-server over http (signed, verified, rollback-checked) | {} | {:.2} |",
        ms(l),
        ms(r),
        r.as_secs_f64() / l.as_secs_f64()
    );
    eprintln!("  measured the helper against the server");
}

fn revoke_to_refusal(bins: &Arc<Bins>, out: &mut String) {
    let rounds = 20;
    let server = Server::start(
        bins,
        "revoke",
        &format!(
            "sqlite:{}",
            scratch("revoke-db").join("server.db").display()
        ),
    );
    let token = server.cli(&["host", "add", "web-1"]).trim().to_owned();
    let dir = scratch("revoke-host");
    let token_file = dir.join("token");
    write(&token_file, &format!("{token}\n"), 0o600);
    let signers = dir.join("allowed_signers");
    write(&signers, &server.cli(&["signer"]), 0o644);
    let policy_file = dir.join("policy.json");
    let config = dir.join("sshjit.toml");
    write(
        &config,
        &format!(
            "host = \"web-1\"\nsyslog_socket = \"{}\"\n",
            dir.join("none").display()
        ),
        0o644,
    );
    // An admin, logged in.
    let password = dir.join("password");
    write(&password, "a long enough password\n", 0o600);
    let uri = server.cli(&[
        "user",
        "add",
        "alice",
        "--groups",
        "admin",
        "--password-file",
        password.to_str().unwrap(),
    ]);
    let secret = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let secret = totp_rs::Secret::Encoded(secret.to_owned())
        .to_bytes()
        .unwrap();
    let code = totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, secret)
        .generate(sshjit_policy::time::Timestamp::now().unix_seconds() as u64);
    let home = dir.join("home");
    fs::create_dir_all(&home).unwrap();
    let sshjit = |args: &[&str]| {
        let o = Command::new(&bins.helper)
            .args(args)
            .args(["--server", &format!("http://{}", server.addr)])
            .env_clear()
            .env("HOME", &home)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {o:?}");
        String::from_utf8(o.stdout).unwrap()
    };
    sshjit(&[
        "login",
        "--user",
        "alice",
        "--password-file",
        password.to_str().unwrap(),
        "--totp",
        &code,
    ]);
    let mut sync = Command::new(&bins.helper)
        .args([
            "sync",
            "--server",
            &format!("http://{}", server.addr),
            "--token-file",
        ])
        .arg(&token_file)
        .arg("--allowed-signers")
        .arg(&signers)
        .arg("--policy")
        .arg(&policy_file)
        .arg("--config")
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let serial = || -> u64 {
        fs::read(&policy_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["serial"].as_u64())
            .unwrap_or(0)
    };
    let key = dir.join("a.pub");
    let mut rng = Rng(7);
    write(&key, &random_key(&mut rng, "bench"), 0o644);
    let mut took = Vec::new();
    for _ in 0..rounds {
        let id = sshjit(&[
            "grant",
            "--user",
            "deploy",
            "--key",
            key.to_str().unwrap(),
            "--for",
            "1h",
            "--reason",
            "bench",
        ]);
        let before = serial() + 1;
        let wait_until = |s: u64| {
            let t = Instant::now();
            while serial() < s {
                assert!(t.elapsed() < Duration::from_secs(30));
                std::thread::sleep(Duration::from_micros(500));
            }
        };
        wait_until(before);
        sshjit(&["revoke", "--grant", id.trim(), "--reason", "bench"]);
        let t = Instant::now();
        wait_until(before + 1);
        took.push(t.elapsed());
    }
    let _ = sync.kill();
    let _ = sync.wait();
    took.sort();
    let _ = writeln!(
        out,
        "\n## From `sshjit revoke --server` returning to a syncing host's copy refusing ({rounds} revocations)\n\nmedian {} ms, max {} ms",
        ms(percentile(&took, 0.5)),
        ms(*took.last().unwrap())
    );
    eprintln!("  measured revoke to refusal");
}

fn fleet_reconnecting(bins: &Arc<Bins>, out: &mut String, grants: usize) {
    let hosts = env_or("SSHJIT_BENCH_HOSTS", 10_000usize);
    let groups = (hosts / 10).max(1);
    // Grants spread over host groups of ten, as fleets are: each host's
    // part holds its group's grants.
    let document = policy(grants, |i| vec![format!("grp{}-*", i % groups)]);
    let server = Server::start(
        bins,
        "fleet",
        &format!("sqlite:{}", scratch("fleet-db").join("server.db").display()),
    );
    server.import(&document);
    let names: Vec<String> = (0..hosts)
        .map(|h| format!("grp{}-{}", h % groups, h / groups))
        .collect();
    let enrolled = Instant::now();
    let mut tokens = Vec::with_capacity(hosts);
    for chunk in names.chunks(2000) {
        let mut args = vec!["host", "add"];
        args.extend(chunk.iter().map(String::as_str));
        for line in server.cli(&args).lines() {
            let (name, token) = line.split_once(' ').unwrap();
            tokens.push((name.to_owned(), token.to_owned()));
        }
    }
    let enrol_time = enrolled.elapsed();
    let (last_name, last_token) = tokens.last().unwrap().clone();
    server.wait_serial(&last_token, &last_name, 1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let addr = server.addr.clone();
    let (done, failed, slowest, total_bytes) = rt.block_on(async move {
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(hosts);
        for (name, token) in tokens {
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                let req = format!(
                    "GET /v1/policy?host={name}&wait=60 HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\nIf-None-Match: \"0\"\r\nConnection: close\r\n\r\n"
                );
                let mut buf = Vec::new();
                for _ in 0..20 {
                    if let Ok(mut s) = TcpStream::connect(&addr).await
                        && let Ok(200) = request(&mut s, req.as_bytes(), &mut buf).await
                    {
                        return Some((started.elapsed(), buf.len()));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                None
            }));
        }
        let (mut ok, mut failed, mut slowest, mut bytes) = (0, 0, Duration::ZERO, 0usize);
        for t in tasks {
            match t.await.unwrap() {
                Some((at, n)) => {
                    ok += 1;
                    slowest = slowest.max(at);
                    bytes += n;
                }
                None => failed += 1,
            }
        }
        (ok, failed, slowest, bytes)
    });
    let _ = writeln!(
        out,
        "\n## {hosts} hosts, each with its own token, all asking at once with a stale copy ({grants} grants over {groups} host groups)\n\nall current after {} ms ({done} answered, {failed} failed, {:.1} MB sent); enrolling the {hosts} hosts took {:.1} s",
        ms(slowest),
        total_bytes as f64 / 1e6,
        enrol_time.as_secs_f64()
    );
    eprintln!("  measured the fleet reconnecting");
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let grants = env_or("SSHJIT_BENCH_GRANTS", 10_000usize);
    let bins = Arc::new(Bins::locate());
    let mut out = String::from("# sshjit-server benchmarks\n");
    answers_per_second(&bins, &mut out, grants);
    helper_against_local_file(&bins, &mut out, grants);
    revoke_to_refusal(&bins, &mut out);
    fleet_reconnecting(&bins, &mut out, grants);
    let _ = std::io::stdout().write_all(out.as_bytes());
}
