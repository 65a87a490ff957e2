//! `sshjit krl`: what ssh-keygen reads in the KRL, and a real sshd with
//! `RevokedKeys` and no helper at all refusing exactly what it names.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::support::sshd::{self, ClientKey, Options, Sshd, TestCa, USER_A, must};
use crate::support::{Globals, TestDir, doc, write_file};

/// `ssh-keygen -Q -f KRL FILE`: whether FILE's key or certificate is revoked.
fn revoked_per_ssh_keygen(krl: &Path, file: &Path) -> bool {
    let out = Command::new("ssh-keygen")
        .arg("-Q")
        .arg("-f")
        .arg(krl)
        .arg(file)
        .output()
        .expect("run ssh-keygen");
    let text = String::from_utf8_lossy(&out.stdout);
    match (out.status.code(), text.contains("REVOKED")) {
        (Some(0), false) => false,
        (Some(1), true) => true,
        other => panic!(
            "ssh-keygen -Q {}: {other:?}: {text}{}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn revocations(revoked: &ClientKey) -> Vec<Value> {
    vec![
        json!({"fingerprint": revoked.fingerprint, "reason": "laptop stolen"}),
        json!({"key_id": "kid-gone"}),
        json!({"serial": 42}),
        json!({"user": "nobody-here"}),
        json!({"grant": "g-1"}),
    ]
}

fn write_krl(dir: &TestDir, policy: &Value, krl: &Path) -> String {
    let policy = dir.policy(policy);
    let config = dir.config("");
    let run = Globals::new(&policy, &config).run(&["krl", "--output", krl.to_str().unwrap()]);
    run.assert_ok();
    run.stdout.clone() + &run.stderr
}

#[test]
fn ssh_keygen_reads_the_krl_as_revoking_exactly_the_fingerprints_key_ids_and_serials() {
    let dir = TestDir::new("krl-keygen");
    let ca = TestCa::new(&dir.path);
    let revoked = ClientKey::generate(&dir.path, "revoked");
    let good = ClientKey::generate(&dir.path, "good");
    let by_key_id = ClientKey::generate(&dir.path, "by-key-id");
    let by_serial = ClientKey::generate(&dir.path, "by-serial");
    let fine_cert = ClientKey::generate(&dir.path, "fine-cert");
    ca.sign(&by_key_id, "kid-gone", &["p"], 5);
    ca.sign(&by_serial, "kid-other", &["p"], 42);
    ca.sign(&fine_cert, "kid-fine", &["p"], 7);
    ca.sign(&revoked, "kid-of-a-revoked-key", &["p"], 8);
    let krl = dir.join("revoked.krl");
    let said = write_krl(&dir, &doc(vec![], revocations(&revoked)), &krl);
    assert!(
        said.contains("1 key fingerprints, 1 certificate key IDs, 1 certificate serials"),
        "{said}"
    );
    assert!(
        said.contains("2 revocations of grants, users or principals"),
        "{said}"
    );

    let pub_of = |k: &ClientKey| k.private.with_extension("pub");
    assert!(revoked_per_ssh_keygen(&krl, &pub_of(&revoked)));
    assert!(!revoked_per_ssh_keygen(&krl, &pub_of(&good)));
    assert!(revoked_per_ssh_keygen(&krl, &by_key_id.cert_path()));
    assert!(revoked_per_ssh_keygen(&krl, &by_serial.cert_path()));
    assert!(!revoked_per_ssh_keygen(&krl, &fine_cert.cert_path()));
    // A certificate of a revoked key is revoked with it.
    assert!(revoked_per_ssh_keygen(&krl, &revoked.cert_path()));

    // ssh-keygen's own listing of the KRL: version = the policy's serial.
    let listing = must(
        Command::new("ssh-keygen")
            .arg("-Q")
            .arg("-l")
            .arg("-f")
            .arg(&krl),
    );
    assert!(listing.contains("# KRL version 1"), "{listing}");
    // It prints the hash in hex.
    let hash: String = <ssh_key::Fingerprint as std::str::FromStr>::from_str(&revoked.fingerprint)
        .unwrap()
        .sha256()
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        listing.contains(&format!("hash: SHA256:{hash}")),
        "{listing}"
    );
    assert!(listing.contains("# Wildcard CA"), "{listing}");
    assert!(listing.contains("id: kid-gone"), "{listing}");
    assert!(listing.contains("serial: 42"), "{listing}");
}

#[test]
fn an_empty_krl_revokes_nothing_and_a_bad_policy_writes_none() {
    let dir = TestDir::new("krl-empty");
    let good = ClientKey::generate(&dir.path, "good");
    let krl = dir.join("empty.krl");
    write_krl(&dir, &doc(vec![], vec![]), &krl);
    assert!(!revoked_per_ssh_keygen(
        &krl,
        &good.private.with_extension("pub")
    ));

    let bad = dir.join("bad.krl");
    let policy = dir.write("broken.json", "{\"version\": 1, \"grants\": [{}]}");
    let run =
        Globals::new(&policy, dir.config("")).run(&["krl", "--output", bad.to_str().unwrap()]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stderr.contains("no KRL written"), "{run:#?}");
    assert!(!bad.exists());
}

#[test]
fn a_real_sshd_with_revoked_keys_refuses_what_the_krl_names_without_the_helper() {
    sshd::prerequisites();
    let dir = TestDir::new("krl-sshd-keys");
    let ca = TestCa::new(&dir.path);
    let revoked = ClientKey::generate(&dir.path, "revoked");
    let good = ClientKey::generate(&dir.path, "good");
    let cert_by_serial = ClientKey::generate(&dir.path, "cert-by-serial");
    let cert_by_key_id = ClientKey::generate(&dir.path, "cert-by-key-id");
    let cert_fine = ClientKey::generate(&dir.path, "cert-fine");
    // Certificates for the account's own name: sshd's default without an
    // AuthorizedPrincipalsFile.
    ca.sign(&cert_by_serial, "kid-other", &[USER_A], 42);
    ca.sign(&cert_by_key_id, "kid-gone", &[USER_A], 9);
    ca.sign(&cert_fine, "kid-fine", &[USER_A], 7);
    let krl = dir.join("revoked.krl");
    write_krl(&dir, &doc(vec![], revocations(&revoked)), &krl);
    // A static authorized_keys file: sshd alone decides, no sshjit helper.
    let keys = dir.join("authorized_keys");
    write_file(
        &keys,
        format!("{}\n{}\n", revoked.public_line, good.public_line).as_bytes(),
        0o644,
    );
    let server = Sshd::start(
        "krl-sshd",
        &doc(vec![], vec![]),
        Options {
            static_keys_file: Some(keys),
            sshd_config: format!(
                "TrustedUserCAKeys {}\nRevokedKeys {}\n",
                ca.public_path().display(),
                krl.display()
            ),
            ..Options::default()
        },
    );
    server.assert_login(USER_A, &good);
    server.assert_refused(USER_A, &revoked);
    server.assert_login(USER_A, &cert_fine);
    server.assert_refused(USER_A, &cert_by_serial);
    server.assert_refused(USER_A, &cert_by_key_id);
    assert!(
        server.sshd_log().contains("revoked by file"),
        "sshd says why: {}",
        server.diagnostics()
    );
}
