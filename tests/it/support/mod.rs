//! What the integration tests share: directories that pass sshjit's
//! permission checks, policies built from test keys, and a runner for the
//! binary with the environment sshd gives it.

#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

pub mod browser;
pub mod https;
pub mod server;
pub mod sshd;
pub mod synthetic;

pub const KEY_A: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmhXmfyH35TmVDzfJ+0t0DbYFg88Gcc+UtpLZreAJk9 a@test";
pub const FP_A: &str = "SHA256:X5oprPYTCKn2RSt7zk0vLaTKD2WNGktiH+URhgz06P8";
pub const KEY_B: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF7Vi4lHU6BizDGW263nDayDu2UnUB7NxON9I9z3dUaX b@test";
pub const FP_B: &str = "SHA256:nqYZ+IxOnbiBaZwc6r0G+iS9w0wOhnnAotOo2aybfo4";

/// The built binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sshjit")
}

/// A directory whose every ancestor is owned by root or us, not writable by
/// group or others (so sshjit and sshd accept files in it) and searchable by
/// everyone (so the helper can run as an unprivileged AuthorizedKeysCommandUser).
pub fn secure_base() -> PathBuf {
    let me = sshjit::system::euid();
    let candidates = [
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sshjit-tests"),
        PathBuf::from(format!("/run/sshjit-tests-{me}")),
    ];
    for c in candidates {
        if fs::create_dir_all(&c).is_err() {
            continue;
        }
        let _ = fs::set_permissions(&c, fs::Permissions::from_mode(0o755));
        if c.ancestors().all(|d| {
            fs::metadata(d).is_ok_and(|m| {
                (m.uid() == 0 || m.uid() == me) && m.mode() & 0o022 == 0 && m.mode() & 0o001 != 0
            })
        }) {
            return c;
        }
    }
    panic!(
        "no secure directory for test files: {} has an ancestor that is group/other-writable or not searchable, and /run is not writable",
        env!("CARGO_TARGET_TMPDIR")
    );
}

/// A fresh secure directory, removed on drop.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let path = secure_base().join(format!("{name}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        TestDir { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes a file with mode 0644.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(name);
        write_file(&p, contents.as_ref(), 0o644);
        p
    }

    /// Writes a policy document and returns its path.
    pub fn policy(&self, doc: &Value) -> PathBuf {
        self.write("policy.json", serde_json::to_vec_pretty(doc).unwrap())
    }

    /// A config that sends log lines to stderr (no syslog socket there),
    /// plus `extra` TOML lines.
    pub fn config(&self, extra: &str) -> PathBuf {
        let text = format!(
            "syslog_socket = \"{}\"\n{extra}\n",
            self.join("no-syslog-here").display()
        );
        self.write("sshjit.toml", text)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Replaces a file atomically with the given mode.
pub fn write_file(path: &Path, contents: &[u8], mode: u32) {
    let tmp = path.with_extension("tmp-write");
    fs::write(&tmp, contents).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// RFC 3339 for now + `offset` seconds (negative: in the past).
pub fn rfc3339_in(offset: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    rfc3339_at(now + offset)
}

/// RFC 3339 (UTC) for Unix seconds.
pub fn rfc3339_at(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A grant valid from an hour ago for a day.
pub fn key_grant(id: &str, user: &str, key: &str) -> Value {
    json!({
        "id": id, "user": user, "key": key,
        "not_before": rfc3339_in(-3600), "expires_at": rfc3339_in(86_400),
        "reason": "test grant", "granted_by": "tests"
    })
}

pub fn principal_grant(id: &str, user: &str, principal: &str) -> Value {
    json!({
        "id": id, "user": user, "principal": principal,
        "expires_at": rfc3339_in(86_400), "reason": "test grant"
    })
}

pub fn doc(grants: Vec<Value>, revocations: Vec<Value>) -> Value {
    json!({"version": 1, "serial": 1, "grants": grants, "revocations": revocations})
}

/// What a run of the binary gave.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(o: Output) -> Self {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Denied by error: non-zero exit and nothing at all on stdout.
    #[track_caller]
    pub fn assert_denied(&self) -> &Self {
        assert_ne!(self.code, Some(0), "must fail: {self:#?}");
        assert!(
            self.code.is_some(),
            "must exit, not die by a signal: {self:#?}"
        );
        assert_eq!(self.stdout, "", "nothing may be printed: {self:#?}");
        self
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "must succeed: {self:#?}");
        self
    }
}

/// The binary as sshd runs it: minimal environment, cwd `/`, stdin /dev/null.
pub fn sshjit(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .current_dir("/")
        .stdin(Stdio::null());
    c
}

/// Runs the binary and collects what it did.
pub fn run(args: &[&str]) -> Run {
    run_cmd(sshjit(args))
}

/// The global options of runs of the binary: `--policy` (a path or a URL),
/// `--config`, and `--host` once [`Globals::host`] names one. They go after
/// each run's own arguments:
/// `Globals::new(&policy, &config).host("h").run(&["keys", "deploy"])` is
/// `sshjit keys deploy --policy POLICY --config CONFIG --host h`.
#[derive(Clone, Debug)]
pub struct Globals {
    policy: OsString,
    config: PathBuf,
    host: Option<String>,
}

impl Globals {
    pub fn new(policy: impl AsRef<OsStr>, config: impl AsRef<Path>) -> Self {
        Globals {
            policy: policy.as_ref().to_owned(),
            config: config.as_ref().to_owned(),
            host: None,
        }
    }

    /// This host's name (`--host`, after the subcommand: for `keys`,
    /// `principals` and `explain`; after `grant` it would be a grant's
    /// hosts). Without it a run takes the config's, else gethostname().
    pub fn host(&self, name: &str) -> Self {
        Globals {
            host: Some(name.to_owned()),
            ..self.clone()
        }
    }

    /// The options as arguments, for a command built another way.
    pub fn flags(&self) -> Vec<OsString> {
        let mut flags = vec![
            "--policy".into(),
            self.policy.clone(),
            "--config".into(),
            self.config.clone().into(),
        ];
        if let Some(h) = &self.host {
            flags.extend(["--host".into(), h.into()]);
        }
        flags
    }

    /// The binary as sshd runs it ([`sshjit`]): `args`, then the options.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = sshjit(args);
        c.args(self.flags());
        c
    }

    /// Runs `args` with the options and collects what the binary did.
    pub fn run(&self, args: &[&str]) -> Run {
        run_cmd(self.cmd(args))
    }
}

pub fn run_cmd(mut c: Command) -> Run {
    let out = c.output().expect("run sshjit");
    Run::from_output(out)
}

/// Runs an admin command (`grant`, `revoke`, `index`, ...) on `policy`
/// with `config`; panics with its stderr unless it succeeds; its stdout.
pub fn admin(args: &[&str], policy: &Path, config: &Path) -> String {
    let out = Command::new(bin())
        .args(args)
        .arg("--policy")
        .arg(policy)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run sshjit");
    assert!(
        out.status.success(),
        "sshjit {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `f` until it returns true or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Runs the binary (as sshd would: [`sshjit`]'s environment) with a
/// private view of `/etc`: an overlay in a mount namespace of its own, in
/// which `setup` (shell commands) runs first, e.g. to put something at
/// `/etc/sshjit/sshjit.toml`. The host's `/etc` is never touched, so tests
/// running at the same time see none of it. Needs root.
pub fn run_with_private_etc(dir: &TestDir, setup: &str, args: &[&str]) -> Run {
    assert_eq!(sshjit::system::euid(), 0, "a private /etc needs root");
    let (upper, work) = (dir.join("etc-upper"), dir.join("etc-work"));
    for d in [&upper, &work] {
        let _ = fs::remove_dir_all(d);
        fs::create_dir_all(d).unwrap();
    }
    let script = format!(
        "mount -t overlay overlay -o lowerdir=/etc,upperdir={},workdir={} /etc && {setup} && exec \"$@\"",
        upper.display(),
        work.display()
    );
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(script)
        .arg("sh")
        .arg(bin())
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .current_dir("/")
        .stdin(Stdio::null());
    run_cmd(c)
}
