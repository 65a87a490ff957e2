//! Concurrency and crashes: 40 `grant` processes at once all land, and
//! `kill -9` at any moment — at random times, and deterministically at
//! every file-changing system call (strace fault injection) — leaves the
//! policy old or new, never torn, and a trail that is consistent or mended
//! by the very next edit.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Admin, ids, is_grant_id, verify_problems};
use crate::support::*;

#[test]
fn forty_concurrent_grants_are_all_kept() {
    let a = Admin::new("crash-concurrent");
    let key = a.key("a.pub");
    let children: Vec<_> = (0..40)
        .map(|i| {
            let user = format!("user{i}");
            a.cmd(&[
                "grant", "--user", &user, "--key", &key, "--for", "1h", "--reason", "load",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut printed = BTreeSet::new();
    for child in children {
        let r = Run::from_output(child.wait_with_output().unwrap());
        r.assert_ok();
        assert!(is_grant_id(r.stdout.trim()), "{r:?}");
        printed.insert(r.stdout.trim().to_owned());
    }
    assert_eq!(printed.len(), 40, "every id is its own");
    let doc = a.doc();
    let kept: BTreeSet<String> = ids(&doc).into_iter().collect();
    assert_eq!(kept, printed);
    let users: BTreeSet<&str> = doc["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["user"].as_str().unwrap())
        .collect();
    assert_eq!(users.len(), 40);
    assert_eq!(doc["serial"], 40);
    let t = a.changes();
    assert_eq!(t.len(), 40);
    let serials: Vec<u64> = t.iter().map(|r| r["serial"].as_u64().unwrap()).collect();
    assert_eq!(serials, (1..=40).collect::<Vec<_>>());
    a.ok(&["audit", "verify"]);
}

/// The grant ids the trail says are in force: granted or adopted, not
/// voided (this test never prunes or removes grants).
fn trail_ids(a: &Admin) -> BTreeSet<String> {
    let t = a.trail();
    let voided: Vec<&Value> = t.iter().filter_map(|r| r.get("voids")).collect();
    let mut out = BTreeSet::new();
    for r in &t {
        if voided.contains(&&r["seq"]) {
            continue;
        }
        match r["action"].as_str().unwrap() {
            "grant" => {
                out.insert(r["grant"]["id"].as_str().unwrap().to_owned());
            }
            "adopt" => {
                out.clear();
                out.extend(ids(r));
            }
            _ => {}
        }
    }
    out
}

/// What must hold right after a `kill -9`, and after the next edit.
#[track_caller]
fn check_after_kill(a: &Admin, completed: &BTreeSet<String>, context: &str) {
    // Old or new, never torn: the helper's parser accepts it whole.
    if let Ok(bytes) = fs::read(&a.policy)
        && let Err(e) = sshjit_policy::Policy::parse(&bytes)
    {
        panic!("{context}: torn policy: {e}");
    }
    // The trail is consistent, or in a state only an interrupted edit leaves.
    for p in verify_problems(&a.policy) {
        let benign = p.contains("was interrupted before it took effect")
            || p.contains("ends in an incomplete record")
            || (p.contains("there is no trail") && !a.trail_path().exists());
        assert!(benign, "{context}: {p}");
    }
    // The next edit succeeds and leaves everything consistent.
    let id = a.grant("after", "b.pub", &["--reason", "after a crash"]);
    assert_eq!(
        verify_problems(&a.policy),
        Vec::<String>::new(),
        "{context}"
    );
    let kept: BTreeSet<String> = a.grant_ids().into_iter().collect();
    assert_eq!(kept, trail_ids(a), "{context}: policy and trail disagree");
    assert!(kept.contains(&id));
    for c in completed {
        assert!(kept.contains(c), "{context}: completed grant {c} lost");
    }
}

fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).unwrap();
    u64::from_le_bytes(b) % n.max(1)
}

/// A policy of `n` principal grants, so that an edit has some work to do.
fn seed(a: &Admin, n: usize) {
    let grants = (0..n)
        .map(|i| principal_grant(&format!("g-seed-{i}"), "ops", &format!("p{i}")))
        .collect();
    a.dir.policy(&doc(grants, vec![]));
}

#[test]
fn kill_9_at_random_moments_leaves_the_policy_old_or_new() {
    let a = Admin::bare("crash-random");
    seed(&a, 2000);
    let key = a.key("a.pub");
    let args = [
        "grant", "--user", "deploy", "--key", &key, "--for", "1h", "--reason", "crash",
    ];
    // How long one edit takes here, only to spread the kills over it.
    let started = Instant::now();
    let mut completed: BTreeSet<String> = BTreeSet::new();
    completed.insert(a.ok(&args).stdout.trim().to_owned());
    let span = started.elapsed().as_micros() as u64 * 3 / 2;
    let mut killed = 0;
    for round in 0..40 {
        let mut child = a
            .cmd(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(random_below(span)));
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            completed.insert(String::from_utf8(out.stdout).unwrap().trim().to_owned());
        } else {
            assert_eq!(
                out.status.signal(),
                Some(9),
                "round {round}: {:?}",
                out.status
            );
            killed += 1;
        }
        check_after_kill(&a, &completed, &format!("round {round}"));
    }
    assert!(killed > 0, "no round was killed before it finished");
}

/// The system calls that change files, or decide what is changed next.
const FILE_SYSCALLS: &[&str] = &[
    "openat",
    "write",
    "fsync",
    "fdatasync",
    "ftruncate",
    "rename",
    "renameat",
    "renameat2",
    "unlink",
    "unlinkat",
    "mkdir",
    "mkdirat",
    "fchmod",
    "flock",
];

/// Runs `grant` under strace, killed with SIGKILL on entering the `n`th
/// call of `syscall` (which then never runs). True when it was killed,
/// false when it finished first (there is no `n`th call).
fn grant_killed_at(a: &Admin, policy: &Path, syscall: &str, n: u32) -> bool {
    let key = a.key("a.pub");
    killed_at(
        a,
        policy,
        &[
            "grant", "--user", "deploy", "--key", &key, "--for", "1h", "--reason", "crash",
        ],
        syscall,
        n,
    )
}

/// Runs sshjit `args` under strace, killed as [`grant_killed_at`] says.
fn killed_at(a: &Admin, policy: &Path, args: &[&str], syscall: &str, n: u32) -> bool {
    let mut c = Command::new("strace");
    c.args(["-f", "-qq", "-o", "/dev/null", "-e"])
        .arg(format!("inject=?{syscall}:signal=SIGKILL:when={n}"))
        .arg("--")
        .arg(bin())
        .args(args)
        .args(Globals::new(policy, &a.config).flags())
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let status = c
        .status()
        .expect("strace (Debian package strace): `bash .ci/run` installs it");
    if status.success() {
        return false;
    }
    assert_eq!(status.signal(), Some(9), "{syscall} #{n}: {status:?}");
    true
}

#[test]
fn kill_9_at_every_file_syscall_of_an_edit() {
    let probe = Command::new("strace").arg("-V").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "this test needs strace (Debian package strace); `bash .ci/run` installs it"
    );
    // Three starting points: a policy just made by init, a policy without
    // a trail (adopted first), and a policy with a trail.
    for scenario in ["initialized", "untracked", "tracked"] {
        let a = Admin::new(&format!("crash-strace-{scenario}"));
        let mut kills = 0;
        let mut case = 0;
        for syscall in FILE_SYSCALLS {
            for n in 1.. {
                case += 1;
                // Each kill starts from the same kind of state.
                let dir = a.dir.join(&format!("case-{case}"));
                fs::create_dir(&dir).unwrap();
                fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                    .unwrap();
                let sub = Admin {
                    dir: TestDir { path: dir.clone() },
                    policy: dir.join("policy.json"),
                    config: a.config.clone(),
                };
                fs::copy(a.dir.join("a.pub"), sub.dir.join("a.pub")).unwrap();
                fs::copy(a.dir.join("b.pub"), sub.dir.join("b.pub")).unwrap();
                let mut completed = BTreeSet::new();
                match scenario {
                    "initialized" => {
                        sub.ok(&["init"]);
                    }
                    "untracked" => seed(&sub, 3),
                    _ => {
                        sub.ok(&["init"]);
                        completed.insert(sub.grant("deploy", "b.pub", &[]));
                    }
                }
                let killed = grant_killed_at(&sub, &sub.policy, syscall, n);
                let context = format!("{scenario}: killed at {syscall} #{n}");
                if killed {
                    kills += 1;
                    check_after_kill(&sub, &completed, &context);
                } else {
                    assert_eq!(
                        verify_problems(&sub.policy),
                        Vec::<String>::new(),
                        "{context}"
                    );
                }
                drop(sub);
                if !killed {
                    break;
                }
            }
        }
        // The edit does at least: open the lock, the policy, the trail and
        // the temp file, write two files, fsync, rename.
        assert!(kills >= 8, "{scenario}: only {kills} kill points");
    }
}

#[test]
fn a_killed_init_leaves_nothing_in_force_and_init_again_finishes() {
    // init creates the directory's lock, the trail (by its own rename) and
    // the policy (by the second rename).
    let probe = Command::new("strace").arg("-V").output();
    assert!(probe.is_ok_and(|o| o.status.success()), "needs strace");
    for n in [1, 2] {
        let a = Admin::bare(&format!("crash-init-{n}"));
        assert!(killed_at(&a, &a.policy, &["init"], "rename", n));
        assert!(!a.policy.exists(), "the policy's rename never happened");
        let r = a.run(&[
            "grant",
            "--user",
            "u",
            "--key",
            &a.key("a.pub"),
            "--for",
            "1h",
            "--reason",
            "r",
        ]);
        assert_eq!(r.code, Some(1), "no policy, so no edit: {r:?}");
        if n == 1 {
            // Killed before the trail was renamed into place: nothing at all.
            assert!(!a.trail_path().exists());
        } else {
            // The trail has init's record; the policy it describes is not there.
            let t = a.trail();
            assert_eq!(t.len(), 1);
            assert_eq!(t[0]["action"], "adopt");
        }
        // init again finishes what was begun, and the trail agrees.
        let r = a.ok(&["init"]);
        if n == 2 {
            assert!(r.stderr.contains("finished an init"), "{r:?}");
        }
        assert_eq!(a.trail().len(), 1);
        assert_eq!(verify_problems(&a.policy), Vec::<String>::new());
        check_after_kill(&a, &BTreeSet::new(), &format!("init, rename #{n}"));
    }
    // Killed at any other file system call: init again mends it too.
    let a = Admin::bare("crash-init-every");
    let mut case = 0;
    for syscall in FILE_SYSCALLS {
        for n in 1.. {
            case += 1;
            let dir = a.dir.join(&format!("case-{case}"));
            fs::create_dir(&dir).unwrap();
            fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            let sub = Admin {
                dir: TestDir { path: dir.clone() },
                policy: dir.join("policy.json"),
                config: a.config.clone(),
            };
            fs::copy(a.dir.join("b.pub"), sub.dir.join("b.pub")).unwrap();
            let killed = killed_at(&sub, &sub.policy, &["init"], syscall, n);
            let context = format!("init killed at {syscall} #{n}");
            if killed {
                sub.ok(&["init"]);
                check_after_kill(&sub, &BTreeSet::new(), &context);
            } else {
                assert_eq!(
                    verify_problems(&sub.policy),
                    Vec::<String>::new(),
                    "{context}"
                );
            }
            drop(sub);
            if !killed {
                break;
            }
        }
    }
}
