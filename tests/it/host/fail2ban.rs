//! The shipped Fail2Ban filter (`packaging/fail2ban/filter.d/sshjit.conf`)
//! run by the real `fail2ban-regex` over the auth.log that a real sshd and
//! the real helper write (sshd logs through /dev/log, to the same rsyslogd
//! as the helper): a connection the helper refused and that did not log in
//! counts once, for sshd's address; allowed logins never count, nor a
//! refused key followed by a granted one; hostile key IDs and user names
//! name no other address.

use std::path::Path;
use std::process::Command;

use crate::support::sshd::{ClientKey, Options, Sshd, USER_A};
use crate::support::{TestDir, doc, key_grant, principal_grant};

const FILTER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/fail2ban/filter.d/sshjit.conf"
);
const ELSEWHERE: &str = "10.66.66.66";

/// The addresses fail2ban-regex finds failures for, one per failure.
fn failures(log: &Path) -> Vec<String> {
    let out = Command::new("fail2ban-regex")
        .args(["--raw", "-o", "ip"])
        .arg(log)
        .arg(FILTER)
        .output()
        .expect("fail2ban-regex (Debian package fail2ban; scripts/test installs it)");
    assert!(
        out.status.success(),
        "fail2ban-regex: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_filter_counts_connections_the_helper_refused_and_nothing_else() {
    let dir = TestDir::new("f2b-keys");
    let granted = ClientKey::generate(&dir.path, "granted");
    let stranger = ClientKey::generate(&dir.path, "stranger");
    let hostile = ClientKey::generate(&dir.path, "hostile");
    let sshd = Sshd::start(
        "f2b",
        &doc(
            vec![
                key_grant("g-key", USER_A, &granted.public_line),
                principal_grant("g-cert", USER_A, "ops-e2e"),
            ],
            vec![],
        ),
        Options {
            sshd_syslog: true,
            ..Options::default()
        },
    );
    let log = sshd.syslog.auth_log.clone();
    let settled = |needles: &[&str]| {
        sshd.syslog.wait_for(needles);
    };

    // An allowed login: helper lines with outcome=allow, "Accepted".
    sshd.assert_login(USER_A, &granted);
    settled(&["Accepted publickey"]);
    assert_eq!(
        failures(&log),
        Vec::<String>::new(),
        "{}",
        sshd.diagnostics()
    );

    // A refused key, and the client gives up: one failure, sshd's address.
    sshd.assert_refused(USER_A, &stranger);
    settled(&["Connection closed by authenticating user"]);
    assert_eq!(failures(&log), vec!["127.0.0.1"], "{}", sshd.diagnostics());

    // A refused key, then a granted one on the same connection (an agent
    // with several keys): "Accepted" forgets the refusal.
    let both = sshd.login_with(
        USER_A,
        &stranger,
        &["-i", granted.private.to_str().unwrap()],
        "echo in",
    );
    assert!(both.succeeded(), "{both:?}\n{}", sshd.diagnostics());
    settled(&["Accepted publickey", &granted.fingerprint]);
    assert_eq!(failures(&log), vec!["127.0.0.1"], "{}", sshd.diagnostics());

    // A certificate whose key ID is built to read as a refusal naming
    // another address: allowed, and counted nowhere.
    sshd.ca.sign(
        &hostile,
        &format!("x\" outcome=none ppid=1 from {ELSEWHERE} port 22 [preauth]"),
        &["ops-e2e"],
        77,
    );
    sshd.assert_login(USER_A, &hostile);
    settled(&["mode=principals", "outcome=allow"]);
    // A user name built the same way (an invalid user: sshd never asks
    // the helper), offering an ungranted key.
    let invalid = format!("nobody from {ELSEWHERE} port 22 ssh2");
    let l = sshd.login(&invalid, &stranger, "true");
    assert!(l.refused(), "{l:?}");
    settled(&["invalid user nobody"]);
    let found = failures(&log);
    assert_eq!(found, vec!["127.0.0.1"], "{}", sshd.diagnostics());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(ELSEWHERE),
        "the hostile values did reach the log: {text}"
    );
    // The helper's lines carry sshd's pid as ppid=, as the filter needs.
    let pid = text
        .lines()
        .find(|l| l.contains("sshjit[") && l.contains("outcome=none"))
        .and_then(|l| l.split(" ppid=").nth(1))
        .and_then(|r| r.split(' ').next())
        .expect("a refusal line with ppid=")
        .to_owned();
    assert!(
        text.contains(&format!(
            "sshd[{pid}]: Connection closed by authenticating user"
        )),
        "ppid={pid} is the pid of sshd's lines for that connection:\n{text}"
    );
}
