//! The README's first command, run as a new user would: from a fresh clone
//! wherever it was put (under the sticky `/tmp`, in a home directory), as
//! root and as an unprivileged account; and the path checks that make that
//! possible without letting anyone else replace a component of the path.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{KEY_A, Run, TestDir, bin, doc, key_grant, run_cmd};

/// The key line the bundled example grants `deploy` on `web-1`.
const EXAMPLE_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmhXmfyH35TmVDzfJ+0t0DbYFg88Gcc+UtpLZreAJk9 alice@laptop";

/// The arguments of the README's first command (`cargo run -q -- ARGS  # ...`).
fn readme_first_command() -> Vec<String> {
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let block = readme
        .split("```sh\n")
        .nth(1)
        .expect("the README starts with a sh block");
    let first = block.lines().next().expect("a first command");
    let command = first.split(" # ").next().unwrap().trim();
    let args = command.strip_prefix("cargo run -q -- ").unwrap_or_else(|| {
        panic!("the README's first command is not `cargo run -q -- ...`: {first}")
    });
    args.split_whitespace().map(str::to_owned).collect()
}

/// A clone of this repository at `dest` (what `git clone` gives a new user:
/// the committed files, with the cloning user's umask).
fn clone_into(dest: &Path) {
    let _ = fs::remove_dir_all(dest);
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let out = Command::new("git")
        .args(["clone", "-q", "--no-hardlinks"])
        .arg(env!("CARGO_MANIFEST_DIR"))
        .arg(dest)
        .output()
        .expect("git");
    assert!(out.status.success(), "git clone: {out:?}");
}

/// Runs the README's first command in `clone` with `program` (the built
/// binary, or a copy of it the other account can reach), as `uid`.
fn quickstart_in(clone: &Path, program: &Path, uid: Option<u32>) -> Run {
    let mut c = match uid {
        None => Command::new(program),
        Some(uid) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .arg("--clear-groups")
                .arg(program);
            c
        }
    };
    c.args(readme_first_command()).current_dir(clone);
    run_cmd(c)
}

#[track_caller]
fn assert_example_line(r: &Run) {
    r.assert_ok();
    assert_eq!(r.stdout.lines().count(), 1, "{r:#?}");
    assert!(
        r.stdout.ends_with(&format!("restrict {EXAMPLE_KEY}\n")),
        "{r:#?}"
    );
    assert!(r.stdout.starts_with("expiry-time=\""), "{r:#?}");
}

fn unique(name: &str) -> String {
    format!("sshjit-{name}-{}", std::process::id())
}

#[test]
fn the_quickstart_works_from_a_fresh_clone_under_tmp() {
    let tmp = std::env::temp_dir();
    assert_ne!(
        fs::metadata(&tmp).unwrap().mode() & 0o1002,
        0,
        "the test wants the usual world-writable sticky /tmp"
    );
    let clone = tmp.join(unique("quickstart")).join("sshjit");
    clone_into(&clone);
    assert_example_line(&quickstart_in(&clone, Path::new(bin()), None));
    fs::remove_dir_all(clone.parent().unwrap()).unwrap();
}

#[test]
fn the_quickstart_works_from_a_fresh_clone_in_a_home_directory() {
    let home = PathBuf::from(std::env::var_os("HOME").expect("HOME"));
    let clone = home.join(unique("quickstart")).join("sshjit");
    clone_into(&clone);
    assert_example_line(&quickstart_in(&clone, Path::new(bin()), None));
    fs::remove_dir_all(clone.parent().unwrap()).unwrap();
}

#[test]
fn the_quickstart_works_for_an_unprivileged_user_with_a_clone_in_tmp() {
    if sshjit::system::euid() != 0 {
        // Switching to another account needs root; CI runs as root.
        return;
    }
    // The clone belongs to the user who made it, as after `git clone`.
    let top = std::env::temp_dir().join(unique("quickstart-nobody"));
    let clone = top.join("sshjit");
    clone_into(&clone);
    // The build may live where that account cannot go (under /root).
    let program = top.join("sshjit-bin");
    fs::copy(bin(), &program).unwrap();
    chown_tree(&top, 65534);
    assert_example_line(&quickstart_in(&clone, &program, Some(65534)));
    fs::remove_dir_all(&top).unwrap();
}

fn chown_tree(dir: &Path, uid: u32) {
    std::os::unix::fs::lchown(dir, Some(uid), Some(uid)).unwrap();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            chown_tree(&p, uid);
        } else {
            std::os::unix::fs::lchown(&p, Some(uid), Some(uid)).unwrap();
        }
    }
}

/// `keys` with a policy at `path` (absolute), cwd `/`.
fn keys_at(path: &Path) -> Run {
    let mut c = Command::new(bin());
    c.args(["keys", "deploy", "--host", "h", "--policy"])
        .arg(path)
        .current_dir("/");
    run_cmd(c)
}

fn policy_bytes() -> Vec<u8> {
    serde_json::to_vec(&doc(vec![key_grant("g-1", "deploy", KEY_A)], vec![])).unwrap()
}

/// A directory others can write to, with the sticky bit, owned by root:
/// what `/tmp` is, made here so the test does not depend on the host's.
fn sticky_dir(name: &str) -> TestDir {
    let d = TestDir::new(name);
    fs::set_permissions(d.join(""), fs::Permissions::from_mode(0o1777)).unwrap();
    d
}

#[test]
fn in_a_sticky_directory_only_entries_of_root_or_our_own_are_accepted() {
    if sshjit::system::euid() != 0 {
        // chown to another account needs root; CI runs as root.
        return;
    }
    let bytes = policy_bytes();
    let sticky = sticky_dir("sticky");

    // In a directory of ours inside: accepted.
    fs::create_dir(sticky.join("mine")).unwrap();
    fs::set_permissions(sticky.join("mine"), fs::Permissions::from_mode(0o755)).unwrap();
    let nested = sticky.join("mine/policy.json");
    fs::write(&nested, &bytes).unwrap();
    keys_at(&nested).assert_ok();

    // Directly inside: the directory that holds the policy follows sshd's
    // rule without exception (others could take the names sshjit keeps
    // beside it). Refused, and so is a symlink to a good file kept there.
    let direct = sticky.write("policy.json", &bytes);
    let r = keys_at(&direct);
    r.assert_denied();
    assert!(
        r.stderr.contains("writable by group or others (mode 1777)"),
        "{r:#?}"
    );
    let link = sticky.join("link.json");
    std::os::unix::fs::symlink(&nested, &link).unwrap();
    keys_at(&link).assert_denied();

    // A directory inside that another account owns: it could swap our
    // file for its own. Refused, whatever is inside.
    fs::create_dir(sticky.join("theirs")).unwrap();
    fs::set_permissions(sticky.join("theirs"), fs::Permissions::from_mode(0o755)).unwrap();
    let theirs = sticky.join("theirs/policy.json");
    fs::write(&theirs, &bytes).unwrap();
    std::os::unix::fs::lchown(sticky.join("theirs"), Some(65534), None).unwrap();
    let r = keys_at(&theirs);
    r.assert_denied();
    assert!(r.stderr.contains("owned by uid 65534"), "{r:#?}");

    // A symlinked directory inside that another account owns, pointing at
    // our good directory: it could point it elsewhere at any time. Refused.
    let dir_link = sticky.join("link-dir");
    std::os::unix::fs::symlink(sticky.join("mine"), &dir_link).unwrap();
    std::os::unix::fs::lchown(&dir_link, Some(65534), None).unwrap();
    let r = keys_at(&dir_link.join("policy.json"));
    r.assert_denied();
    assert!(
        r.stderr.contains("owned by uid 65534 inside") && r.stderr.contains("mode 1777"),
        "{r:#?}"
    );

    // The same symlink, ours: accepted (its target is checked as well).
    std::os::unix::fs::lchown(&dir_link, Some(0), None).unwrap();
    keys_at(&dir_link.join("policy.json")).assert_ok();
}

#[test]
fn a_writable_directory_without_the_sticky_bit_or_owned_by_another_still_refuses() {
    if sshjit::system::euid() != 0 {
        return;
    }
    let bytes = policy_bytes();

    // World-writable, not sticky: anyone may rename our directory away.
    let open = TestDir::new("open");
    fs::set_permissions(open.join(""), fs::Permissions::from_mode(0o777)).unwrap();
    fs::create_dir(open.join("mine")).unwrap();
    fs::set_permissions(open.join("mine"), fs::Permissions::from_mode(0o755)).unwrap();
    let p = open.join("mine/policy.json");
    fs::write(&p, &bytes).unwrap();
    let r = keys_at(&p);
    r.assert_denied();
    assert!(
        r.stderr.contains("writable by group or others (mode 0777)"),
        "{r:#?}"
    );

    // Group-writable and sticky is still writable by the group, but the
    // sticky rule covers it the same way: directories of ours inside are
    // accepted.
    let group = TestDir::new("group-sticky");
    fs::set_permissions(group.join(""), fs::Permissions::from_mode(0o1775)).unwrap();
    fs::create_dir(group.join("mine")).unwrap();
    fs::set_permissions(group.join("mine"), fs::Permissions::from_mode(0o755)).unwrap();
    let g = group.join("mine/policy.json");
    fs::write(&g, &bytes).unwrap();
    keys_at(&g).assert_ok();

    // Sticky but owned by another account: its owner may remove anything
    // in it. Refused.
    let foreign = sticky_dir("foreign-sticky");
    fs::create_dir(foreign.join("mine")).unwrap();
    fs::set_permissions(foreign.join("mine"), fs::Permissions::from_mode(0o755)).unwrap();
    let f = foreign.join("mine/policy.json");
    fs::write(&f, &bytes).unwrap();
    std::os::unix::fs::lchown(foreign.join(""), Some(65534), None).unwrap();
    let r = keys_at(&f);
    r.assert_denied();
    assert!(r.stderr.contains("owned by uid 65534, not root"), "{r:#?}");
    std::os::unix::fs::lchown(foreign.join(""), Some(0), None).unwrap();

    // `init` (the only command that creates a policy) never creates one
    // directly in a sticky directory: the name it would create is nobody's
    // yet. An editing command creates nothing at all.
    let sticky = sticky_dir("create-in-sticky");
    let keys = TestDir::new("create-in-sticky-key");
    let key = keys.write("a.pub", KEY_A);
    let out = Command::new(bin())
        .arg("init")
        .arg("--policy")
        .arg(sticky.join("new.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("writable by group or others"),
        "{out:?}"
    );
    assert!(!sticky.join("new.json").exists());
    let out = Command::new(bin())
        .args([
            "grant", "--user", "deploy", "--for", "1h", "--reason", "test",
        ])
        .arg("--key")
        .arg(&key)
        .arg("--policy")
        .arg(sticky.join("new.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sshjit init"),
        "{out:?}"
    );
    assert!(!sticky.join("new.json").exists());
    assert!(!sticky.join("new.json.lock").exists());
}
