//! Tests of the admin commands: each command and each refusal (`commands`),
//! the change trail and its tamper detection (`trail`), concurrency and
//! `kill -9` at every step (`crash`), and end-to-end through a real sshd
//! (`e2e`).

mod commands;
mod crash;
mod e2e;
mod trail;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// A policy directory with a config whose syslog lines go to stderr, and
/// (unless made `bare`) a policy created the deliberate way, `sshjit init`.
pub struct Admin {
    pub dir: TestDir,
    pub policy: PathBuf,
    pub config: PathBuf,
}

impl Admin {
    pub fn new(name: &str) -> Self {
        Admin::with_config(name, "")
    }

    /// `extra`: more config lines (TOML).
    pub fn with_config(name: &str, extra: &str) -> Self {
        let a = Admin::bare_with_config(name, extra);
        a.ok(&["init"]);
        a
    }

    /// Without a policy: for tests that write one by hand, or test `init`.
    pub fn bare(name: &str) -> Self {
        Admin::bare_with_config(name, "")
    }

    pub fn bare_with_config(name: &str, extra: &str) -> Self {
        let dir = TestDir::new(name);
        let config = dir.config(extra);
        let policy = dir.join("policy.json");
        dir.write("a.pub", format!("{KEY_A}\n"));
        dir.write("b.pub", format!("{KEY_B}\n"));
        Admin {
            dir,
            policy,
            config,
        }
    }

    pub fn trail_path(&self) -> PathBuf {
        self.dir.join("policy.json.audit.jsonl")
    }

    pub fn key(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// The command with `--policy` and `--config` added.
    pub fn cmd(&self, args: &[&str]) -> Command {
        Globals::new(&self.policy, &self.config).cmd(args)
    }

    pub fn run(&self, args: &[&str]) -> Run {
        run_cmd(self.cmd(args))
    }

    /// Runs a command that must succeed.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        r.assert_ok();
        r
    }

    /// A grant of `key` (a file in the directory) to `user`, for an hour
    /// and reason "test" unless `extra` says otherwise; returns its id.
    #[track_caller]
    pub fn grant(&self, user: &str, key: &str, extra: &[&str]) -> String {
        let key = self.key(key);
        let mut args = vec!["grant", "--user", user, "--key", &key];
        if !extra.contains(&"--for") && !extra.contains(&"--until") {
            args.extend(["--for", "1h"]);
        }
        if !extra.contains(&"--reason") {
            args.extend(["--reason", "test"]);
        }
        args.extend_from_slice(extra);
        let r = self.ok(&args);
        let id = r.stdout.trim_end_matches('\n').to_owned();
        assert!(
            is_grant_id(&id) && r.stdout == format!("{id}\n"),
            "grant prints only the id: {r:?}"
        );
        id
    }

    /// The policy document.
    pub fn doc(&self) -> Value {
        serde_json::from_slice(&fs::read(&self.policy).unwrap()).unwrap()
    }

    pub fn grant_ids(&self) -> Vec<String> {
        ids(&self.doc())
    }

    /// The trail's records after the first, which `init` wrote (an
    /// `adopt` of the empty policy, checked here): the changes made since.
    #[track_caller]
    pub fn changes(&self) -> Vec<Value> {
        let mut t = self.trail();
        assert!(!t.is_empty(), "no trail");
        assert_eq!(t[0]["action"], "adopt", "init's record first: {t:?}");
        assert_eq!(t[0]["grants"], serde_json::json!([]), "{t:?}");
        assert_eq!(t[0]["serial"], 0, "{t:?}");
        t.remove(0);
        t
    }

    /// The trail's records.
    pub fn trail(&self) -> Vec<Value> {
        fs::read_to_string(self.trail_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// What the helper prints for `user` on host web-1.
    pub fn keys(&self, user: &str) -> Run {
        self.run(&["keys", user, "--host", "web-1"])
    }

    /// The bytes of the policy and the trail, to show a refusal changed nothing.
    pub fn snapshot(&self) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        (
            fs::read(&self.policy).ok(),
            fs::read(self.trail_path()).ok(),
        )
    }
}

pub fn ids(doc: &Value) -> Vec<String> {
    doc["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_owned())
        .collect()
}

/// `g-YYYYMMDD-xxxx` (or a wider suffix).
pub fn is_grant_id(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() >= 15
        && s.starts_with("g-")
        && b[2..10].iter().all(u8::is_ascii_digit)
        && b[10] == b'-'
        && b[11..].iter().all(u8::is_ascii_hexdigit)
}

/// A syslog socket the test reads: every datagram an sshjit process sends.
pub struct LogSocket {
    pub path: PathBuf,
    socket: UnixDatagram,
}

impl LogSocket {
    pub fn bind(dir: &Path) -> Self {
        let path = dir.join("log.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        LogSocket { path, socket }
    }

    /// The messages received so far.
    pub fn drain(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = self.socket.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }
}

/// What a verification of the trail found, checked in-process.
pub fn verify_problems(policy: &Path) -> Vec<String> {
    let file = sshjit::store::PolicyFile::resolve(policy).unwrap();
    match sshjit::commands::audit::verify(&file, &[]) {
        Ok(v) => v.problems,
        Err(f) => vec![f.message],
    }
}
