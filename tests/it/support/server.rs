//! A real `sshjit-server` for tests: a process on a loopback port with its
//! own SQLite file, or its own database on the PostgreSQL that
//! `scripts/test` starts (`SSHJIT_TEST_POSTGRES`); its administration
//! through its own command line; people who log in with a password and the
//! TOTP code the test computes from the secret the server printed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Run, TestDir, bin, run_cmd};

/// The server binary, beside the helper: `cargo test --workspace` (what
/// `scripts/test` runs) builds it for its own tests. Building it from here
/// instead would rebuild shared dependencies with other features on
/// every run.
pub fn server_bin() -> PathBuf {
    let path = Path::new(bin()).with_file_name("sshjit-server");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (scripts/test), which builds it",
        path.display()
    );
    path
}

/// Which store a server uses.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite,
    /// A fresh database on the test PostgreSQL.
    Postgres,
    /// Exactly this store spec (several servers sharing one database).
    Shared(String),
}

/// The base URL of the test PostgreSQL (a role that may create databases).
pub fn postgres_base() -> String {
    std::env::var("SSHJIT_TEST_POSTGRES").expect(
        "SSHJIT_TEST_POSTGRES is not set: scripts/test starts a PostgreSQL for the server tests (run the suite through it)",
    )
}

/// A new, empty database on the test PostgreSQL; its URL.
pub fn postgres_database(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let base = postgres_base();
    let db = format!(
        "t_{}_{}_{}",
        name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let out = Command::new("psql")
        .args([
            &base,
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &format!("CREATE DATABASE {db}"),
        ])
        .output()
        .expect("psql");
    assert!(out.status.success(), "CREATE DATABASE {db}: {out:?}");
    let (head, _) = base.rsplit_once('/').expect("a database in the URL");
    format!("{head}/{db}")
}

/// A running sshjit-server.
pub struct Server {
    pub dir: TestDir,
    pub config: PathBuf,
    pub store: String,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Server {
    pub fn start(name: &str) -> Server {
        Server::start_with(name, Store::Sqlite, "")
    }

    /// A server on `store`, with `extra` lines of server.toml.
    pub fn start_with(name: &str, store: Store, extra: &str) -> Server {
        Server::start_keyed(name, store, extra, None)
    }

    /// A second server on `other`'s store with `other`'s keys, as a
    /// replica is run.
    pub fn replica_of(name: &str, other: &Server, extra: &str) -> Server {
        Server::start_keyed(
            name,
            Store::Shared(other.store.clone()),
            extra,
            Some(&other.dir.path),
        )
    }

    /// A server with its own new SQLite store but `other`'s keys (an old
    /// backup, say).
    pub fn with_keys_of(name: &str, other: &Server) -> Server {
        Server::start_keyed(name, Store::Sqlite, "", Some(&other.dir.path))
    }

    fn start_keyed(name: &str, store: Store, extra: &str, keys: Option<&Path>) -> Server {
        let dir = TestDir::new(name);
        let keys = keys.unwrap_or(&dir.path).to_owned();
        let store = match store {
            Store::Sqlite => format!("sqlite:{}", dir.join("server.db").display()),
            Store::Postgres => postgres_database(name),
            Store::Shared(s) => s,
        };
        let config = dir.join("server.toml");
        super::write_file(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\nstore = \"{store}\"\nsigning_key = \"{}\"\nsecrets_key = \"{}\"\n{extra}\n",
                keys.join("signing_key").display(),
                keys.join("secrets_key").display()
            )
            .as_bytes(),
            0o600,
        );
        let mut s = Server {
            log: dir.join("server.log"),
            dir,
            config,
            store,
            url: String::new(),
            child: None,
        };
        s.spawn();
        s
    }

    /// Starts the process and waits until it listens; `url` is its address.
    fn spawn(&mut self) {
        let log = fs::File::create(&self.log).unwrap();
        let mut child = Command::new(server_bin())
            .arg("--config")
            .arg(&self.config)
            .env_remove("HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshjit-server");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(addr) = text
                .lines()
                .find_map(|l| l.split(" address=").nth(1))
                .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
            {
                self.url = addr;
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("sshjit-server exited ({status}): {text}");
            }
            assert!(
                Instant::now() < deadline,
                "sshjit-server did not start: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// `sshjit-server --config CONFIG ARGS`.
    pub fn cli(&self, args: &[&str]) -> Run {
        let mut c = Command::new(server_bin());
        c.arg("--config").arg(&self.config).args(args);
        run_cmd(c)
    }

    /// Enrolls a host; its token, once the running server knows it (it
    /// follows changes made beside it within its poll interval).
    pub fn host_add(&self, name: &str) -> String {
        let r = self.cli(&["host", "add", name]);
        r.assert_ok();
        let token = r.stdout.trim().to_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.get(&format!("/v1/policy?host={name}"), Some(&token)).0 == 401 {
            assert!(
                Instant::now() < deadline,
                "the server never learnt of host {name}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        token
    }

    /// The line hosts put in allowed_signers.
    pub fn allowed_signers(&self) -> String {
        let r = self.cli(&["signer"]);
        r.assert_ok();
        r.stdout.clone()
    }

    /// Makes a person with a password; what the test needs to log in.
    pub fn person(&self, name: &str, groups: &[&str]) -> Person {
        let password_file = self.dir.write(
            &format!("{name}.password"),
            format!("password of {name} for tests\n"),
        );
        let mut args = vec!["user", "add", name, "--password-file"];
        let pf = password_file.display().to_string();
        args.push(&pf);
        let joined = groups.join(",");
        if !groups.is_empty() {
            args.push("--groups");
            args.push(&joined);
        }
        let r = self.cli(&args);
        r.assert_ok();
        let uri = r.stdout.trim();
        let secret = uri
            .split("secret=")
            .nth(1)
            .and_then(|s| s.split('&').next())
            .expect("a secret in the otpauth URI");
        Person {
            name: name.to_owned(),
            password_file,
            secret: totp_rs::Secret::Encoded(secret.to_owned())
                .to_bytes()
                .expect("base32"),
            last_step: Mutex::new(0),
        }
    }

    /// Ends the process at once (SIGKILL), as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Asks it to stop (SIGTERM) and waits.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        c.wait().unwrap()
    }

    /// Starts it again on the same store and keys (a new port).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET a path with an optional bearer token: (status, body).
    pub fn get(&self, path: &str, bearer: Option<&str>) -> (u16, String) {
        let mut c = Command::new("curl");
        c.args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "30"]);
        if let Some(t) = bearer {
            c.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        c.arg(format!("{}{path}", self.url));
        let out = c.output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (status.trim().parse().unwrap_or(0), body.to_owned())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A person who logs in.
pub struct Person {
    pub name: String,
    pub password_file: PathBuf,
    pub secret: Vec<u8>,
    /// The last 30 s step whose code was used: a code is accepted once.
    last_step: Mutex<u64>,
}

impl Person {
    /// A code for a step not used yet: the current step, else the next
    /// (within the server's one-step tolerance), else after waiting for
    /// a new step.
    pub fn code(&self) -> String {
        let mut last = self.last_step.lock().unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut step = (now / 30).max(*last + 1);
        if step > now / 30 + 1 {
            std::thread::sleep(Duration::from_secs((step - 1) * 30 + 1 - now));
            step = *last + 1;
        }
        *last = step;
        totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, self.secret.clone())
            .generate(step * 30)
    }

    /// The code of the step holding `unix` (to try a used or stale code).
    pub fn code_at(&self, unix: u64) -> String {
        totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, self.secret.clone())
            .generate(unix)
    }
}

/// A person's machine: their own HOME (session cache, client config) and
/// the `sshjit` command line pointed at a server.
pub struct Client {
    pub home: TestDir,
    pub server: String,
}

impl Client {
    pub fn new(name: &str, server: &Server) -> Client {
        Client {
            home: TestDir::new(&format!("{name}-home")),
            server: server.url.clone(),
        }
    }

    /// `sshjit ARGS --server URL` as this person.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .arg("--server")
            .arg(&self.server)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &self.home.path)
            .current_dir(&self.home.path)
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        run_cmd(self.cmd(args))
    }

    /// The session file for a server URL (`http://HOST:PORT`).
    pub fn session_file(&self, url: &str) -> PathBuf {
        let name = url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .replace(':', "_");
        self.home
            .join(".cache/sshjit/sessions")
            .join(format!("{name}.json"))
    }

    /// Points this machine at `url` (another replica, or the same server
    /// on a new port), carrying the session over: sessions live in the
    /// server's store, so the token is good there too.
    pub fn follow(&mut self, url: &str) {
        let from = self.session_file(&self.server);
        let to = self.session_file(url);
        if from != to {
            super::write_file(&to, &fs::read(&from).expect("a session"), 0o600);
        }
        self.server = url.to_owned();
    }

    /// Logs in as `person`; panics unless it worked.
    pub fn login(&self, person: &Person) {
        let code = person.code();
        let pf = person.password_file.display().to_string();
        self.run(&[
            "login",
            "--user",
            &person.name,
            "--password-file",
            &pf,
            "--totp",
            &code,
        ])
        .assert_ok();
    }
}
