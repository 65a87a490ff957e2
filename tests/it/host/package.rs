//! The Debian packages from `scripts/package` (scripts/test builds them
//! first), installed on this machine with `dpkg -i`, checked, removed and
//! purged: files, owners and modes; the helper's account and private
//! directories; `sshd -t` with the drop-in, and no reload over another
//! AuthorizedKeysCommand; units present but none enabled or running; after
//! `dpkg -r` nothing of ours runs, after `dpkg -P` no state is left. The
//! test puts the machine back as it found it (accounts included) and
//! refuses to run where sshjit is installed already.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::sshd::{self, must};

const HELPER: &str = "/usr/libexec/sshjit/sshjit";
const OTHER_COMMAND: &str = "/etc/ssh/sshd_config.d/00-sshjit-test-other.conf";
const UNITS: &[&str] = &[
    "sshjit-sync.service",
    "sshjit-index.path",
    "sshjit-index.service",
    "sshjit-reap.service",
    "sshjit-reap.timer",
    "sshjit-reap.path",
    "sshjit-server.service",
];

fn debs() -> (PathBuf, PathBuf) {
    // CARGO_TARGET_TMPDIR is TARGET/tmp; scripts/package writes TARGET/debian.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("debian");
    let find = |prefix: &str| {
        fs::read_dir(&dir)
            .ok()
            .and_then(|entries| {
                entries.flatten().map(|e| e.path()).find(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".deb"))
                })
            })
            .unwrap_or_else(|| {
                panic!(
                    "no {prefix}*.deb in {}: run scripts/package --profile dev first (scripts/test does)",
                    dir.display()
                )
            })
    };
    (find("sshjit_"), find("sshjit-server_"))
}

fn dpkg(args: &[&str]) -> String {
    must(
        Command::new("dpkg")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// (uid, gid, permission bits) of a path, not following a last symlink.
fn owner_mode(p: &str) -> (u32, u32, u32) {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    (m.uid(), m.gid(), m.permissions().mode() & 0o7777)
}

fn uid_of(user: &str) -> Option<u32> {
    let out = Command::new("id").args(["-u", user]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Any process running one of the packaged binaries.
fn ours_running() -> Vec<String> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| fs::read_link(e.path().join("exe")).ok())
        .map(|p| p.display().to_string())
        .filter(|p| p.starts_with(HELPER) || p.starts_with("/usr/bin/sshjit-server"))
        .collect()
}

/// Symlinks that would enable one of our units.
fn enablement_links() -> Vec<String> {
    let mut found = Vec::new();
    for base in [
        "/etc/systemd/system",
        "/usr/lib/systemd/system",
        "/lib/systemd/system",
    ] {
        let Ok(entries) = fs::read_dir(base) else {
            continue;
        };
        for dir in entries.flatten().filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(".wants") || n.ends_with(".requires"))
        }) {
            for link in fs::read_dir(dir.path()).into_iter().flatten().flatten() {
                let name = link.file_name().to_string_lossy().into_owned();
                if UNITS.contains(&name.as_str()) {
                    found.push(link.path().display().to_string());
                }
            }
        }
    }
    found
}

fn is_enabled(unit: &str) -> String {
    let out = Command::new("systemctl")
        .args(["is-enabled", unit])
        .output()
        .expect("systemctl");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Puts back what the install added that dpkg keeps (the accounts), and
/// purges the packages if a failed run left them.
struct Restore {
    had_users: Vec<&'static str>,
    had_etc_sshjit: bool,
    had_server_state: bool,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = fs::remove_file(OTHER_COMMAND);
        for pkg in ["sshjit", "sshjit-server"] {
            let _ = Command::new("dpkg").args(["-P", pkg]).output();
        }
        for user in ["sshjit", "sshjit-server"] {
            if !self.had_users.contains(&user) {
                let _ = Command::new("userdel").arg(user).output();
                let _ = Command::new("groupdel").arg(user).output();
            }
        }
        if !self.had_etc_sshjit {
            let _ = fs::remove_dir("/etc/sshjit");
        }
        if !self.had_server_state {
            let _ = fs::remove_dir_all("/var/lib/sshjit-server");
        }
    }
}

#[test]
fn the_packages_install_with_dpkg_check_out_and_leave_nothing_running_or_enabled() {
    sshd::prerequisites();
    let (helper_deb, server_deb) = debs();
    assert!(
        !installed("sshjit") && !installed("sshjit-server"),
        "sshjit is installed on this machine already: this test installs and purges the packages, so it will not run here"
    );
    let _restore = Restore {
        had_users: ["sshjit", "sshjit-server"]
            .into_iter()
            .filter(|u| uid_of(u).is_some())
            .collect(),
        had_etc_sshjit: Path::new("/etc/sshjit").exists(),
        had_server_state: Path::new("/var/lib/sshjit-server").exists(),
    };

    // What the packages hold, as dpkg-deb lists it: every entry root's.
    for deb in [&helper_deb, &server_deb] {
        let listing = dpkg(&["--contents", deb.to_str().unwrap()]);
        for line in listing.lines() {
            assert!(line.contains(" root/root "), "{}: {line}", deb.display());
            assert!(
                !line.starts_with("-rwxrwx") && !line.contains("rw-rw"),
                "{line}"
            );
        }
    }
    let listing = dpkg(&["--contents", helper_deb.to_str().unwrap()]);
    for path in [
        "./usr/libexec/sshjit/sshjit",
        "./usr/bin/sshjit -> ../libexec/sshjit/sshjit",
        "./etc/ssh/sshd_config.d/sshjit.conf",
        "./etc/fail2ban/filter.d/sshjit.conf",
        "./etc/fail2ban/jail.d/sshjit.conf",
        "./usr/share/man/man1/sshjit-reap.1.gz",
        "./usr/share/bash-completion/completions/sshjit",
        "./usr/share/zsh/vendor-completions/_sshjit",
        "./usr/share/fish/vendor_completions.d/sshjit.fish",
    ] {
        assert!(listing.contains(path), "{path} in:\n{listing}");
    }

    dpkg(&[
        "-i",
        helper_deb.to_str().unwrap(),
        server_deb.to_str().unwrap(),
    ]);

    // The helper: root's, down a root-owned path, as sshd requires.
    for (path, want) in [
        ("/usr/libexec/sshjit/sshjit", 0o755),
        ("/usr/libexec/sshjit", 0o755),
        ("/usr/libexec", 0o755),
        ("/etc/ssh/sshd_config.d/sshjit.conf", 0o644),
        ("/etc/sshjit", 0o755),
        ("/etc/default/sshjit-sync", 0o644),
        ("/usr/bin/sshjit-server", 0o755),
        ("/etc/sshjit/server.toml", 0o644),
        ("/usr/lib/systemd/system/sshjit-reap.timer", 0o644),
    ] {
        assert_eq!(owner_mode(path), (0, 0, want), "{path}");
    }
    assert_eq!(
        fs::read_link("/usr/bin/sshjit").unwrap(),
        Path::new("../libexec/sshjit/sshjit")
    );
    // The accounts and their private directories.
    let helper_uid = uid_of("sshjit").expect("postinst made the sshjit account");
    let server_uid = uid_of("sshjit-server").expect("postinst made the sshjit-server account");
    assert!(helper_uid < 1000 && server_uid < 1000, "system accounts");
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("sshjit:") && l.ends_with(":/usr/sbin/nologin")),
        "{passwd}"
    );
    for dir in ["/var/lib/sshjit", "/var/cache/sshjit"] {
        let (uid, _, mode) = owner_mode(dir);
        assert_eq!((uid, mode), (helper_uid, 0o700), "{dir}");
    }
    let (uid, _, mode) = owner_mode("/var/lib/sshjit-server");
    assert_eq!((uid, mode), (server_uid, 0o700));
    // Conffiles as dpkg records them.
    let status = dpkg(&["-s", "sshjit"]);
    for conf in [
        "/etc/ssh/sshd_config.d/sshjit.conf",
        "/etc/fail2ban/filter.d/sshjit.conf",
        "/etc/default/sshjit-sync",
    ] {
        assert!(
            status.contains(&format!(" {conf} ")),
            "{conf} is a conffile:\n{status}"
        );
    }

    // sshd accepts its configuration with the drop-in, which names the
    // packaged helper and account.
    must(Command::new("/usr/sbin/sshd").arg("-t"));
    let effective =
        must(Command::new("/usr/sbin/sshd").args(["-T", "-C", "user=root,host=x,addr=127.0.0.1"]));
    assert!(
        effective
            .contains("authorizedkeyscommand /usr/libexec/sshjit/sshjit keys %u --fingerprint=%f"),
        "{effective}"
    );
    assert!(
        effective.contains("authorizedkeyscommanduser sshjit"),
        "{effective}"
    );
    assert!(
        effective.contains("authorizedprincipalscommanduser sshjit"),
        "{effective}"
    );

    // Another AuthorizedKeysCommand configured: postinst leaves sshd alone
    // and says why (sshd would take the first one it reads).
    fs::write(OTHER_COMMAND, "AuthorizedKeysCommand /bin/true\n").unwrap();
    let again = Command::new("/var/lib/dpkg/info/sshjit.postinst")
        .arg("configure")
        .output()
        .unwrap();
    let _ = fs::remove_file(OTHER_COMMAND);
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{said}");
    assert!(
        said.contains("not reloading sshd") && said.contains(OTHER_COMMAND),
        "{said}"
    );

    // The installed helper runs as its account, as sshd would run it.
    let version = must(Command::new("runuser").args(["-u", "sshjit", "--", HELPER, "--version"]));
    assert!(version.starts_with("sshjit "), "{version}");
    // The server's packaged config, account and state work together.
    must(Command::new("runuser").args([
        "-u",
        "sshjit-server",
        "--",
        "/usr/bin/sshjit-server",
        "--config",
        "/etc/sshjit/server.toml",
        "host",
        "list",
    ]));
    // Man pages and completions where the tools look for them.
    let man = must(
        Command::new("man")
            .args(["-P", "cat", "sshjit-reap"])
            .env("MANWIDTH", "80"),
    );
    assert!(man.contains("--dry-run"), "{man}");
    // The Fail2Ban filter by name, as a jail would load it.
    must(Command::new("fail2ban-regex").args([
        "Dec  3 10:00:00 h sshd[1]: Connection closed by authenticating user a 127.0.0.1 port 1 [preauth]",
        "sshjit",
    ]));

    // Units: valid, known, none enabled, none running.
    for unit in UNITS {
        let path = format!("/usr/lib/systemd/system/{unit}");
        assert!(Path::new(&path).exists(), "{path}");
        let verify = Command::new("systemd-analyze")
            .args(["verify", "--man=no", &path])
            .output()
            .unwrap();
        assert!(
            verify.status.success() && verify.stderr.is_empty(),
            "systemd-analyze verify {unit}: {}",
            String::from_utf8_lossy(&verify.stderr)
        );
        let state = is_enabled(unit);
        assert!(
            state == "disabled" || state == "static",
            "{unit} is {state}, not enabled by the package"
        );
    }
    let server_unit = fs::read_to_string("/usr/lib/systemd/system/sshjit-server.service").unwrap();
    for line in [
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "User=sshjit-server",
        "StateDirectory=sshjit-server",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(server_unit.contains(line), "{line:?} in the server's unit");
    }
    assert_eq!(enablement_links(), Vec::<String>::new());
    assert_eq!(ours_running(), Vec::<String>::new());

    // Removed: binaries gone, conffiles kept, nothing of ours running or
    // enabled, and sshd's configuration still checks.
    dpkg(&["-r", "sshjit", "sshjit-server"]);
    assert!(!Path::new(HELPER).exists() && !Path::new("/usr/bin/sshjit-server").exists());
    assert!(
        Path::new("/etc/ssh/sshd_config.d/sshjit.conf").exists(),
        "conffiles stay until purge"
    );
    assert_eq!(ours_running(), Vec::<String>::new());
    assert_eq!(enablement_links(), Vec::<String>::new());
    must(Command::new("/usr/sbin/sshd").arg("-t"));

    // Purged: conffiles and the helper's state gone; the server's store stays.
    dpkg(&["-P", "sshjit", "sshjit-server"]);
    for gone in [
        "/etc/ssh/sshd_config.d/sshjit.conf",
        "/etc/fail2ban/filter.d/sshjit.conf",
        "/etc/default/sshjit-sync",
        "/var/lib/sshjit",
        "/var/cache/sshjit",
        "/usr/lib/systemd/system/sshjit-reap.timer",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} after purge");
    }
    assert!(
        Path::new("/var/lib/sshjit-server").exists(),
        "the server's store is never deleted"
    );
    must(Command::new("/usr/sbin/sshd").arg("-t"));
}
