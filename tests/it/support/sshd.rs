//! A real OpenSSH server on a loopback port, with the sshjit drop-in from
//! `sshd_config.d/sshjit.conf` wired to the built binary, a real rsyslogd
//! taking the helper's log lines, and a real `ssh` client.
//!
//! These tests need root (sshd switches users), sshd, ssh and rsyslogd.
//! When one is missing they fail with a message saying what to install;
//! they never skip.

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use super::{TestDir, bin, wait_until, write_file};

const SSHD: &str = "/usr/sbin/sshd";
const RSYSLOGD: &str = "/usr/sbin/rsyslogd";
/// The account sshd runs the helper as in these tests.
pub const HELPER_USER: &str = "nobody";
/// Local accounts the tests log in as.
pub const USER_A: &str = "sshjit-e2e-a";
pub const USER_B: &str = "sshjit-e2e-b";

fn require(cond: bool, what: &str) {
    assert!(
        cond,
        "end-to-end tests need {what}; `bash .ci/run` installs everything they use"
    );
}

/// Checks the prerequisites and creates the test accounts once per process.
pub fn prerequisites() {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return;
    }
    require(sshjit::system::euid() == 0, "root (sshd must switch users)");
    require(
        Path::new(SSHD).exists(),
        "sshd (Debian package openssh-server)",
    );
    require(which("ssh"), "ssh (Debian package openssh-client)");
    require(
        which("ssh-keygen"),
        "ssh-keygen (Debian package openssh-client)",
    );
    require(
        Path::new(RSYSLOGD).exists(),
        "rsyslogd (Debian package rsyslog)",
    );
    // sshd refuses to start without its privilege separation directory.
    fs::create_dir_all("/run/sshd").unwrap();
    fs::set_permissions("/run/sshd", fs::Permissions::from_mode(0o755)).unwrap();
    for user in [USER_A, USER_B] {
        ensure_user(user);
    }
    *done = true;
}

fn which(cmd: &str) -> bool {
    ["/usr/bin", "/bin", "/usr/sbin", "/usr/local/bin"]
        .iter()
        .any(|d| Path::new(d).join(cmd).exists())
}

/// Creates a local account with a shell and an unlocked, password-less
/// entry (`*`, so sshd with UsePAM=no does not treat it as locked).
fn ensure_user(user: &str) {
    if sshjit::system::user_exists(user) {
        return;
    }
    // Another test process may be creating it at the same time: retry.
    for _ in 0..20 {
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/bin/sh",
                user,
            ])
            .stderr(Stdio::null())
            .status();
        if sshjit::system::user_exists(user) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    require(
        sshjit::system::user_exists(user),
        "permission to create test accounts (useradd)",
    );
    for _ in 0..20 {
        if Command::new("usermod")
            .args(["-p", "*", user])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("usermod -p '*' {user} failed");
}

/// Runs a command, panicking with its output when it fails.
pub fn must(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An ssh key pair on disk.
#[derive(Clone, Debug)]
pub struct ClientKey {
    pub private: PathBuf,
    pub public_line: String,
    pub fingerprint: String,
}

impl ClientKey {
    pub fn generate(dir: &Path, name: &str) -> Self {
        let private = dir.join(name);
        must(
            Command::new("ssh-keygen")
                .args([
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    &format!("{name}@e2e"),
                    "-f",
                ])
                .arg(&private),
        );
        let public_line = fs::read_to_string(private.with_extension("pub"))
            .unwrap()
            .trim()
            .to_owned();
        let fp = must(
            Command::new("ssh-keygen")
                .arg("-lf")
                .arg(private.with_extension("pub")),
        );
        let fingerprint = fp.split_whitespace().nth(1).unwrap().to_owned();
        ClientKey {
            private,
            public_line,
            fingerprint,
        }
    }

    /// The certificate file ssh picks up next to the key.
    pub fn cert_path(&self) -> PathBuf {
        PathBuf::from(format!("{}-cert.pub", self.private.display()))
    }
}

/// A certificate authority for principals-mode tests.
pub struct TestCa {
    pub key: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path) -> Self {
        let key = dir.join("user-ca");
        must(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "test-ca", "-f"])
                .arg(&key),
        );
        TestCa { key }
    }

    pub fn public_path(&self) -> PathBuf {
        self.key.with_extension("pub")
    }

    /// Signs `key` with this CA: `ssh-keygen -s -I key_id -n principals -z serial -V validity`.
    pub fn sign(&self, key: &ClientKey, key_id: &str, principals: &[&str], serial: u64) {
        let _ = fs::remove_file(key.cert_path());
        must(
            Command::new("ssh-keygen")
                .arg("-q")
                .arg("-s")
                .arg(&self.key)
                .args([
                    "-I",
                    key_id,
                    "-n",
                    &principals.join(","),
                    "-z",
                    &serial.to_string(),
                    "-V",
                    "-5m:+1h",
                ])
                .arg(key.private.with_extension("pub")),
        );
    }
}

/// A real rsyslogd listening on a private socket and writing one file,
/// plus the same lines in the traditional auth.log format (`auth_log`:
/// date, host, tag) for tools that read real logs.
pub struct Syslogd {
    child: Child,
    pub socket: PathBuf,
    pub file: PathBuf,
    pub auth_log: PathBuf,
}

impl Syslogd {
    pub fn start(dir: &Path) -> Self {
        let socket = dir.join("log.sock");
        let file = dir.join("syslog.log");
        let auth_log = dir.join("auth.log");
        let conf = dir.join("rsyslog.conf");
        fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{dir}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{socket}" CreatePath="on")
template(name="line" type="string" string="%syslogfacility-text%.%syslogseverity-text% %syslogtag%%msg%\n")
*.* action(type="omfile" file="{file}" template="line")
*.* action(type="omfile" file="{auth_log}" template="RSYSLOG_TraditionalFileFormat")
"#,
                dir = dir.display(),
                socket = socket.display(),
                file = file.display(),
                auth_log = auth_log.display()
            ),
        )
        .unwrap();
        let child = Command::new(RSYSLOGD)
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rsyslogd");
        assert!(
            wait_until(Duration::from_secs(10), || socket.exists()),
            "rsyslogd did not create {}",
            socket.display()
        );
        // The helper runs as an unprivileged user and must be able to send.
        fs::set_permissions(&socket, fs::Permissions::from_mode(0o666)).unwrap();
        Syslogd {
            child,
            socket,
            file,
            auth_log,
        }
    }

    pub fn contents(&self) -> String {
        fs::read_to_string(&self.file).unwrap_or_default()
    }

    /// Waits for a line containing every one of `needles`; returns it.
    pub fn wait_for(&self, needles: &[&str]) -> String {
        let mut found = String::new();
        let ok = wait_until(Duration::from_secs(10), || {
            match self
                .contents()
                .lines()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                Some(l) => {
                    found = l.to_owned();
                    true
                }
                None => false,
            }
        });
        assert!(
            ok,
            "no syslog line with {needles:?} in:\n{}",
            self.contents()
        );
        found
    }
}

impl Drop for Syslogd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to configure the server.
#[derive(Default)]
pub struct Options {
    /// Extra sshjit config lines (TOML).
    pub sshjit_config: String,
    /// Extra sshd_config lines.
    pub sshd_config: String,
    /// Environment for sshd (e.g. TZ).
    pub env: Vec<(String, String)>,
    /// Use a static AuthorizedKeysFile instead of the sshjit drop-in.
    pub static_keys_file: Option<PathBuf>,
    /// The helper's `source` (default: the policy file written here).
    pub source: Option<String>,
    /// sshd logs to the test's rsyslogd (its own lines, with their pids,
    /// beside the helper's): it runs in a private mount namespace whose
    /// /dev/log is that rsyslogd's socket.
    pub sshd_syslog: bool,
}

/// A running sshd with its own policy file, config, CA and syslog daemon.
pub struct Sshd {
    child: Child,
    pub port: u16,
    pub dir: TestDir,
    pub policy: PathBuf,
    pub config: PathBuf,
    pub ca: TestCa,
    pub syslog: Syslogd,
    pub host: &'static str,
    log: PathBuf,
}

/// The outcome of one `ssh` run.
#[derive(Debug)]
pub struct Login {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Login {
    /// Authenticated and ran the command.
    pub fn succeeded(&self) -> bool {
        self.code == Some(0)
    }

    /// Refused at authentication.
    pub fn refused(&self) -> bool {
        self.code == Some(255) && self.stderr.contains("Permission denied")
    }
}

impl Sshd {
    /// Starts a server whose helper reads `policy` (written first).
    pub fn start(name: &str, policy: &Value, opts: Options) -> Self {
        prerequisites();
        let dir = TestDir::new(name);
        let host = "e2e-host-1";
        let policy_path = dir.policy(policy);
        let syslog = Syslogd::start(&dir.path);
        let config = dir.write(
            "sshjit.toml",
            format!(
                "source = \"{}\"\nhost = \"{host}\"\nsyslog_socket = \"{}\"\n{}\n",
                opts.source
                    .clone()
                    .unwrap_or_else(|| policy_path.display().to_string()),
                syslog.socket.display(),
                opts.sshjit_config
            ),
        );
        // sshd runs the helper only from a root-owned path that nobody else
        // can write, all the way up: copy the binary into our secure dir.
        let helper = dir.join("sshjit");
        fs::copy(bin(), &helper).unwrap();
        fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
        let hostkey = dir.join("hostkey");
        must(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&hostkey),
        );
        let ca = TestCa::new(&dir.path);

        let auth = match &opts.static_keys_file {
            Some(file) => format!("AuthorizedKeysFile {}\n", file.display()),
            None => format!(
                "AuthorizedKeysFile none\nTrustedUserCAKeys {}\n{}",
                ca.public_path().display(),
                dropin(&helper, &config)
            ),
        };
        let log = dir.join("sshd.log");
        for attempt in 0..5 {
            let port = free_port();
            let sshd_config = dir.write(
                "sshd_config",
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {hostkey}\nPidFile {pid}\nUsePAM no\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                     StrictModes no\nPermitRootLogin no\nLogLevel VERBOSE\nMaxStartups 200:30:400\nMaxSessions 50\n\
                     {auth}{extra}\n",
                    hostkey = hostkey.display(),
                    pid = dir.join("sshd.pid").display(),
                    extra = opts.sshd_config,
                ),
            );
            let mut cmd = if opts.sshd_syslog {
                let mut c = Command::new("unshare");
                c.args([
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    DEV_LOG_NAMESPACE,
                ])
                .arg("sshd-with-dev-log")
                .arg(dir.join("host-dev"))
                .arg(&syslog.socket)
                .args([SSHD, "-D", "-f"])
                .arg(&sshd_config);
                c
            } else {
                let mut c = Command::new(SSHD);
                c.arg("-D").arg("-f").arg(&sshd_config).arg("-E").arg(&log);
                c
            };
            cmd.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
            for (k, v) in &opts.env {
                cmd.env(k, v);
            }
            let mut child = cmd
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start sshd");
            let up = wait_until(Duration::from_secs(10), || {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
                    || child.try_wait().ok().flatten().is_some()
            });
            if up && child.try_wait().ok().flatten().is_none() {
                return Sshd {
                    child,
                    port,
                    dir,
                    policy: policy_path,
                    config,
                    ca,
                    syslog,
                    host,
                    log,
                };
            }
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let _ = child.wait();
            eprintln!(
                "sshd start attempt {attempt} failed: {err}{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        panic!(
            "sshd did not start: {}",
            fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Replaces the policy atomically, as an admin edit would.
    pub fn set_policy(&self, policy: &Value) {
        write_file(
            &self.policy,
            &serde_json::to_vec_pretty(policy).unwrap(),
            0o644,
        );
    }

    /// Rebuilds the policy index, as the admin commands do after an edit.
    pub fn index(&self) {
        super::admin(&["index"], &self.policy, &self.config);
    }

    /// `ssh user@127.0.0.1 command` with exactly this key (and its
    /// certificate, if one was signed).
    pub fn login(&self, user: &str, key: &ClientKey, command: &str) -> Login {
        self.login_with(user, key, &[], command)
    }

    pub fn login_with(&self, user: &str, key: &ClientKey, extra: &[&str], command: &str) -> Login {
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
        .args([
            "-o",
            "ConnectTimeout=20",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ControlMaster=no",
        ])
        .arg("-i")
        .arg(&key.private);
        if key.cert_path().exists() {
            cmd.arg("-o")
                .arg(format!("CertificateFile={}", key.cert_path().display()));
        }
        cmd.args(extra)
            .args(["-p", &self.port.to_string()])
            .arg(format!("{user}@127.0.0.1"))
            .arg("--")
            .arg(command)
            .stdin(Stdio::null())
            .env("HOME", self.dir.path.to_str().unwrap());
        let out = cmd.output().expect("run ssh");
        Login {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts a login works and runs `true`.
    #[track_caller]
    pub fn assert_login(&self, user: &str, key: &ClientKey) {
        let l = self.login(user, key, "echo logged-in");
        assert!(
            l.succeeded() && l.stdout.contains("logged-in"),
            "login as {user} must work: {l:?}\n{}",
            self.diagnostics()
        );
    }

    /// Asserts a login is refused at authentication.
    #[track_caller]
    pub fn assert_refused(&self, user: &str, key: &ClientKey) {
        let l = self.login(user, key, "echo logged-in");
        assert!(
            l.refused(),
            "login as {user} must be refused: {l:?}\n{}",
            self.diagnostics()
        );
    }

    pub fn sshd_log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn diagnostics(&self) -> String {
        format!(
            "--- sshd log ---\n{}\n--- syslog ---\n{}",
            self.sshd_log(),
            self.syslog.contents()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `$3...` (sshd) with /dev/log bound to the socket `$2`, in the
/// mount namespace `unshare` made: /dev becomes a tmpfs holding bind
/// mounts of the devices sshd needs (the host's /dev stays reachable at
/// `$1`), so nothing changes outside.
const DEV_LOG_NAMESPACE: &str = r#"set -e
host_dev="$1"; sock="$2"; shift 2
mkdir -p "$host_dev"
mount --rbind /dev "$host_dev"
mount -t tmpfs -o mode=755 tmpfs /dev
for n in null zero full random urandom tty ptmx; do
  touch "/dev/$n"; mount --bind "$host_dev/$n" "/dev/$n"
done
mkdir /dev/pts; mount --rbind "$host_dev/pts" /dev/pts
touch /dev/log; mount --bind "$sock" /dev/log
exec "$@""#;

/// The shipped drop-in, with the installed binary's path replaced by the
/// test copy (plus `--config`) and the helper account by `nobody`.
fn dropin(helper: &Path, config: &Path) -> String {
    let text = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sshd_config.d/sshjit.conf"
    ))
    .unwrap();
    assert!(
        text.contains("/usr/local/libexec/sshjit"),
        "drop-in names the installed path"
    );
    text.replace(
        "/usr/local/libexec/sshjit ",
        &format!("{} --config {} ", helper.display(), config.display()),
    )
    .replace("CommandUser sshjit", &format!("CommandUser {HELPER_USER}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
