use super::*;

const KEY_A: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmhXmfyH35TmVDzfJ+0t0DbYFg88Gcc+UtpLZreAJk9 a@test";
const FP_A: &str = "SHA256:X5oprPYTCKn2RSt7zk0vLaTKD2WNGktiH+URhgz06P8";
const FP_B: &str = "SHA256:nqYZ+IxOnbiBaZwc6r0G+iS9w0wOhnnAotOo2aybfo4";

fn at(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

fn policy(text: &str) -> Policy<'static> {
    Policy::parse(text.as_bytes()).unwrap().into_owned()
}

fn key(fp: &str) -> Credential {
    Credential::Key {
        fingerprint: Fingerprint::parse(fp).unwrap(),
    }
}

fn cert(principals: &[&str], key_id: &str, serial: u64, valid_before: u64) -> Credential {
    Credential::Certificate {
        fingerprint: Fingerprint::parse(FP_B).unwrap(),
        key_id: key_id.into(),
        serial,
        principals: principals.iter().map(|p| (*p).to_owned()).collect(),
        valid_before,
    }
}

fn verdict(doc: &str, user: &str, c: &Credential, now: &str) -> Verdict {
    let p = policy(doc);
    judge(
        &p,
        &Username::new(user).unwrap(),
        &HostName::new("web-1").unwrap(),
        c,
        at(now),
    )
}

fn grants(extra_revocations: &str) -> String {
    format!(
        r#"{{"version":1,"grants":[
            {{"id":"g-k","user":"deploy","key":"{KEY_A}","expires_at":"2030-01-01T12:00:00Z","reason":"r"}},
            {{"id":"g-p","user":"ubuntu","principal":"alice","expires_at":"2030-01-01T12:00:00Z","reason":"r"}},
            {{"id":"g-other-host","user":"ops","key":"{KEY_A}","hosts":["db-*"],"expires_at":"2030-01-01T12:00:00Z","reason":"r"}}
        ],"revocations":[{extra_revocations}]}}"#
    )
}

const BEFORE: &str = "2030-01-01T11:00:00Z";
const AFTER: &str = "2030-01-01T13:00:00Z";
const CERT_END: u64 = 1_893_502_800; // 2030-01-01T13:00:00Z

#[test]
fn a_key_session_holds_while_its_grant_does_and_ends_when_revoked_or_expired() {
    assert_eq!(
        verdict(&grants(""), "deploy", &key(FP_A), BEFORE),
        Verdict::Keep
    );
    let end = |cause| Verdict::End {
        cause,
        grants: vec!["g-k".into()],
    };
    assert_eq!(
        verdict(&grants(""), "deploy", &key(FP_A), AFTER),
        end(Cause::Expired)
    );
    assert_eq!(
        verdict(&grants(r#"{"grant":"g-k"}"#), "deploy", &key(FP_A), BEFORE),
        end(Cause::Revoked(0))
    );
    assert_eq!(
        verdict(
            &grants(r#"{"user":"deploy"}"#),
            "deploy",
            &key(FP_A),
            BEFORE
        ),
        end(Cause::Revoked(0))
    );
    assert_eq!(
        verdict(
            &grants(&format!(r#"{{"fingerprint":"{FP_A}"}}"#)),
            "deploy",
            &key(FP_A),
            BEFORE
        ),
        end(Cause::Revoked(0))
    );
    let frozen = grants("").replacen(r#""version":1,"#, r#""version":1,"frozen":true,"#, 1);
    assert_eq!(
        verdict(&frozen, "deploy", &key(FP_A), BEFORE),
        end(Cause::Frozen)
    );
}

#[test]
fn sessions_sshjit_never_granted_are_left_alone_unless_their_key_is_revoked() {
    // Another key, another account, a grant for other hosts only.
    assert_eq!(
        verdict(&grants(""), "deploy", &key(FP_B), AFTER),
        Verdict::NotOurs
    );
    assert_eq!(
        verdict(&grants(""), "root", &key(FP_A), AFTER),
        Verdict::NotOurs
    );
    assert_eq!(
        verdict(&grants(""), "ops", &key(FP_A), AFTER),
        Verdict::NotOurs
    );
    // A revoked key is ended whatever let it in (a static authorized_keys line).
    assert_eq!(
        verdict(
            &grants(&format!(r#"{{"fingerprint":"{FP_B}"}}"#)),
            "root",
            &key(FP_B),
            BEFORE
        ),
        Verdict::End {
            cause: Cause::Revoked(0),
            grants: vec![]
        }
    );
}

#[test]
fn a_certificate_session_ends_by_key_id_serial_principal_grant_or_its_own_expiry() {
    let c = cert(&["alice", "other"], "r-17", 17, CERT_END);
    assert_eq!(verdict(&grants(""), "ubuntu", &c, BEFORE), Verdict::Keep);
    let end = |cause| Verdict::End {
        cause,
        grants: vec!["g-p".into()],
    };
    for rev in [
        r#"{"key_id":"r-17"}"#,
        r#"{"serial":17}"#,
        r#"{"principal":"alice"}"#,
        r#"{"grant":"g-p"}"#,
    ] {
        assert_eq!(
            verdict(&grants(rev), "ubuntu", &c, BEFORE),
            end(Cause::Revoked(0)),
            "{rev}"
        );
    }
    let short = cert(&["alice"], "r-17", 17, CERT_END - 7200);
    assert_eq!(
        verdict(&grants(""), "ubuntu", &short, BEFORE),
        end(Cause::CertificateExpired)
    );
    // No grant names any of its principals: not sshjit's.
    assert_eq!(
        verdict(
            &grants(""),
            "ubuntu",
            &cert(&["bob"], "x", 1, CERT_END),
            BEFORE
        ),
        Verdict::NotOurs
    );
}

#[test]
fn rules_default_to_revocation_and_refuse_unknown_keys_and_values() {
    assert_eq!(Rules::parse(b"").unwrap(), Rules::default());
    let r = Rules::parse(b"end = \"expiry\"\n[accounts]\nroot = \"revocation\"\n").unwrap();
    assert_eq!(r.for_account("deploy"), EndAt::Expiry);
    assert_eq!(r.for_account("root"), EndAt::Revocation);
    assert!(Rules::parse(b"ends = \"expiry\"").is_err());
    assert!(Rules::parse(b"end = \"never\"").is_err());
    assert!(Rules::parse(b"[accounts]\n\"../x\" = \"expiry\"").is_err());
}

#[test]
fn the_auth_record_gives_publickey_lines_and_refuses_garbage() {
    let text = format!("password\npublickey {KEY_A}\nkeyboard-interactive/pam\n");
    assert_eq!(parse_record(&text).unwrap(), vec![key(FP_A)]);
    assert_eq!(parse_record("password\n").unwrap(), vec![]);
    assert!(parse_record("publickey ssh-ed25519\n").is_err());
    assert!(parse_record("publickey ssh-ed25519 AAAAnotakey\n").is_err());
    assert!(parse_record("publickey ssh-ed25519-cert-v01@openssh.com AAAA\n").is_err());
}

#[test]
fn only_paths_that_mkstemp_makes_for_sshd_are_read() {
    assert!(record_path_ok(b"/tmp/sshauth.AbC123xyz000QQQ"));
    assert!(!record_path_ok(b"/tmp/sshauth.AbC123xyz000QQ"));
    assert!(!record_path_ok(b"/tmp/sshauth.../../etc/pass"));
    assert!(!record_path_ok(b"/home/u/sshauth.AbC123xyz000QQQ"));
}
