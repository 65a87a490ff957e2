//! The administration command line on the server machine, as a process:
//! what it refuses before touching a store, and what it prints. (The
//! server's behaviour on the wire is tested with the helper and sshd in
//! the workspace's `tests/it/server.rs`, which runs this binary.)

use std::path::PathBuf;
use std::process::Command;

fn server() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sshjit-server"))
}

fn dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(d: &std::path::Path, extra: &str) -> PathBuf {
    let path = d.join("server.toml");
    std::fs::write(
        &path,
        format!(
            "store = \"sqlite:{}\"\nsigning_key = \"{}\"\nsecrets_key = \"{}\"\n{extra}",
            d.join("server.db").display(),
            d.join("signing_key").display(),
            d.join("secrets_key").display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_bad_config_is_refused_before_anything_starts() {
    let d = dir("bad-config");
    for (text, want) in [
        (
            "listen = \"0.0.0.0:8022\"",
            "plain http is allowed only on loopback",
        ),
        (
            "store = \"mysql://db\"",
            "expected sqlite:/PATH or postgres://",
        ),
        ("colour = \"blue\"", "unknown field"),
        ("max_grant = \"forever\"", "max_grant"),
    ] {
        let c = d.join("bad.toml");
        std::fs::write(&c, text).unwrap();
        let out = server()
            .arg("--config")
            .arg(&c)
            .args(["host", "list"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{text}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{text}: want {want:?} in {err}");
    }
    // An explicit config that is missing is an error, not defaults.
    let out = server()
        .args(["--config", "/nonexistent/server.toml", "host", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn hosts_are_enrolled_once_with_a_token_shown_once() {
    let d = dir("hosts");
    let c = config(&d, "");
    let add = |name: &str| {
        server()
            .arg("--config")
            .arg(&c)
            .args(["host", "add", name])
            .output()
            .unwrap()
    };
    let out = add("web-1");
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(token.starts_with("sjh_") && token.len() > 40, "{token}");
    // The token is not kept: the database holds its hash only.
    let db = std::fs::read(d.join("server.db")).unwrap();
    assert!(!db.windows(token.len()).any(|w| w == token.as_bytes()));
    assert_eq!(add("web-1").status.code(), Some(1));
    assert_eq!(add("WEB-1").status.code(), Some(1));
    assert_eq!(add("bad name").status.code(), Some(1));
    let out = server()
        .arg("--config")
        .arg(&c)
        .args(["host", "list"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "web-1\n");
    let out = server()
        .arg("--config")
        .arg(&c)
        .args(["host", "remove", "web-2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no host web-2"));
}

#[test]
fn the_signer_line_names_the_namespace_and_the_key_file_stays_private() {
    let d = dir("signer");
    let c = config(&d, "");
    let out = server()
        .arg("--config")
        .arg(&c)
        .arg("signer")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        line.starts_with("sshjit-server namespaces=\"sshjit-policy\" ssh-ed25519 "),
        "{line}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.join("signing_key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // A key others can read is refused.
    std::fs::set_permissions(
        d.join("signing_key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = server()
        .arg("--config")
        .arg(&c)
        .arg("signer")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn people_need_a_real_password_and_their_secrets_are_not_stored_plain() {
    let d = dir("people");
    let c = config(&d, "");
    let short = d.join("short");
    std::fs::write(&short, "short\n").unwrap();
    let out = server()
        .arg("--config")
        .arg(&c)
        .args(["user", "add", "alice", "--password-file"])
        .arg(&short)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 12 characters"));
    let good = d.join("good");
    std::fs::write(&good, "a long enough password\n").unwrap();
    let out = server()
        .arg("--config")
        .arg(&c)
        .args([
            "user",
            "add",
            "alice",
            "--groups",
            "admin,sre",
            "--password-file",
        ])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let uri = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        uri.starts_with("otpauth://totp/") && uri.contains(":alice?secret="),
        "{uri}"
    );
    let secret = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let db = std::fs::read(d.join("server.db")).unwrap();
    let contains = |needle: &[u8]| db.windows(needle.len()).any(|w| w == needle);
    assert!(
        !contains(secret.as_bytes()),
        "the TOTP secret is stored in the clear"
    );
    assert!(!contains(b"a long enough password"));
    let out = server()
        .arg("--config")
        .arg(&c)
        .args(["user", "list"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "alice groups=admin,sre\n"
    );
}

#[test]
fn a_policy_file_is_imported_whole_with_its_serial_and_exported_as_a_file_holds_it() {
    let d = dir("import");
    let c = config(&d, "");
    let doc = r#"{"version": 1, "serial": 41, "frozen": true, "grants": [
        {"id": "g-1", "user": "deploy", "principal": "alice", "expires_at": "2099-01-01T00:00:00Z", "reason": "on-call"}],
        "revocations": [{"user": "mallory", "reason": "left"}]}"#;
    let file = d.join("policy.json");
    std::fs::write(&file, doc).unwrap();
    let import = |f: &std::path::Path| {
        server()
            .arg("--config")
            .arg(&c)
            .args(["policy", "import"])
            .arg(f)
            .args(["--reason", "move to the server"])
            .output()
            .unwrap()
    };
    let out = import(&file);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("serial 41"),
        "{out:?}"
    );
    let out = server()
        .arg("--config")
        .arg(&c)
        .args(["policy", "export"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["serial"], 41);
    assert_eq!(v["frozen"], true);
    assert_eq!(v["grants"][0]["id"], "g-1");
    assert_eq!(v["revocations"][0]["user"], "mallory");
    // A document that would not validate changes nothing.
    std::fs::write(&file, r#"{"version": 1, "grants": [{"id": "g-2"}]}"#).unwrap();
    let out = import(&file);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing field"),
        "{out:?}"
    );
    let out = server()
        .arg("--config")
        .arg(&c)
        .args(["policy", "export"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["serial"], 41);
}

#[test]
fn a_bad_roles_file_stops_the_server_saying_where() {
    let d = dir("roles");
    let roles = d.join("roles.toml");
    let ca = d.join("user_ca");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&ca)
        .status()
        .unwrap();
    assert!(made.success());
    let good = "[role.user]\nrequesters = [\"group:dev\"]\naccounts = [\"ubuntu\"]\nmax = \"4h\"\napprovals = 1\napprovers = [\"group:sre\"]\n";
    for (text, want) in [
        (
            format!("{good}colour = \"blue\"\n"),
            "line 7: unknown field `colour`",
        ),
        (good.replace("4h", "forever"), "role.user: max"),
        (
            good.replace("group:sre", "team:sre"),
            "role.user: approvers[0]",
        ),
        (format!("{good}issue = \"certificate\"\n"), "no user_ca_key"),
        (format!("{good}reason_pattern = \"(\"\n"), "reason_pattern"),
    ] {
        std::fs::write(&roles, &text).unwrap();
        let c = config(
            &d,
            &format!(
                "listen = \"127.0.0.1:0\"\nroles = \"{}\"\n",
                roles.display()
            ),
        );
        let out = server().arg("--config").arg(&c).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{text}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{text}: want {want:?} in {err}");
        assert!(!err.contains("event=listening"), "{err}");
    }
    // The same roles with a CA start (and are counted).
    std::fs::write(&roles, format!("{good}issue = \"certificate\"\n")).unwrap();
    let c = config(
        &d,
        &format!(
            "listen = \"127.0.0.1:0\"\nroles = \"{}\"\nuser_ca_key = \"{}\"\n",
            roles.display(),
            ca.display()
        ),
    );
    let out = server()
        .arg("--config")
        .arg(&c)
        .arg("user-ca")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ssh-ed25519 AAAA"));
}
