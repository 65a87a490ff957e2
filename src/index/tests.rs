//! The index gives the same answers as the whole document, and is never
//! trusted when it may describe another version or is damaged.

use serde_json::json;

use std::time::Duration;

use super::*;
use sshjit_policy::key::samples::{FP_A, FP_B, KEY_A, KEY_B};
use sshjit_policy::time::Timestamp;
use sshjit_policy::{Decision, Denial, HostName, Mode, Policy, Request, Username, evaluate};

fn identity() -> Identity {
    Identity {
        dev: 2049,
        ino: 42,
        size: 0,
        mtime: (1_795_000_000, 5),
        ctime: (1_795_000_000, 7),
    }
}

fn doc() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "version": 1, "serial": 9,
        "grants": [
            {"id": "g-1", "user": "deploy", "key": KEY_A, "expires_at": "2099-01-01T00:00:00Z", "reason": "r"},
            {"id": "g-2", "user": "deploy", "key": KEY_B, "expires_at": "2099-01-01T00:00:00Z", "reason": "r"},
            {"id": "g-3", "user": "root", "principal": "alice", "expires_at": "2099-01-01T00:00:00Z", "reason": "r"},
            {"id": "g-4", "user": "root", "key": KEY_B, "expires_at": "2099-01-01T00:00:00Z", "reason": "r"},
        ],
        "revocations": [
            {"serial": 77},
            {"grant": "g-9"},
            {"fingerprint": FP_B, "reason": "lost"},
            {"key_id": "alice@corp"},
            {"principal": "bob"},
            {"grant": "g-1"},
        ]
    }))
    .unwrap()
}

fn built(doc: &[u8]) -> Vec<u8> {
    let at = Timestamp::from_unix(1_795_000_100, 0);
    build(doc, &identity(), at).unwrap()
}

fn ids(d: &Decision<'_, '_>) -> Vec<String> {
    match d {
        Decision::Allow(v) => v.iter().map(|g| g.id.to_string()).collect(),
        Decision::Deny(Denial::NoValidGrant) => vec![],
        Decision::Deny(Denial::CertificateRevoked { revocation }) => {
            vec![format!("cert-revoked-{revocation}")]
        }
    }
}

#[test]
fn the_user_part_holds_its_grants_and_revocations() {
    let doc = doc();
    let bytes = built(&doc);
    let index = Index::open(&bytes[..], &identity()).unwrap();
    let found = index.lookup("deploy", None).unwrap();
    let part = Policy::parse(&found.document).unwrap();
    assert_eq!(
        part.grants
            .iter()
            .map(|g| g.id.as_str())
            .collect::<Vec<_>>(),
        ["g-1", "g-2"]
    );
    assert_eq!(part.serial, Some(9));
    // The fingerprint revocation of KEY_B and the grant revocation of g-1,
    // with their places in the whole document.
    assert_eq!(found.info.revocation_indices, [2, 5]);
    let nobody = index.lookup("nobody", None).unwrap();
    assert!(Policy::parse(&nobody.document).unwrap().grants.is_empty());
}

#[test]
fn answers_match_the_whole_document() {
    let doc = doc();
    let whole = Policy::parse(&doc).unwrap();
    let bytes = built(&doc);
    let index = Index::open(&bytes[..], &identity()).unwrap();
    let host = HostName::new("web-1").unwrap();
    let now = Timestamp::parse_rfc3339("2026-11-21T10:00:00Z").unwrap();
    let kid = sshjit_policy::KeyId::new("alice@corp").unwrap();
    let other = sshjit_policy::KeyId::new("carol@corp").unwrap();
    let fp_a = sshjit_policy::Fingerprint::parse(FP_A).unwrap();
    let fp_b = sshjit_policy::Fingerprint::parse(FP_B).unwrap();
    for user in ["deploy", "root", "nobody"] {
        let u = Username::new(user).unwrap();
        for mode in [
            Mode::Keys { offered: None },
            Mode::Keys {
                offered: Some(fp_a),
            },
            Mode::Principals {
                key_id: None,
                serial: None,
                fingerprint: None,
            },
            Mode::Principals {
                key_id: Some(&kid),
                serial: None,
                fingerprint: None,
            },
            Mode::Principals {
                key_id: Some(&other),
                serial: Some(77),
                fingerprint: None,
            },
            Mode::Principals {
                key_id: Some(&other),
                serial: Some(1),
                fingerprint: Some(fp_b),
            },
            Mode::Principals {
                key_id: Some(&other),
                serial: Some(1),
                fingerprint: Some(fp_a),
            },
        ] {
            let req = Request {
                user: &u,
                host: &host,
                mode,
            };
            let expected = ids(&evaluate(&whole, &req, now));
            let cert = match mode {
                Mode::Principals {
                    key_id,
                    serial,
                    fingerprint,
                } => Some((key_id, serial, fingerprint)),
                Mode::Keys { .. } => None,
            };
            let found = index.lookup(user, cert).unwrap();
            let part = Policy::parse(&found.document).unwrap();
            let got = ids(&found.info.evaluate(&part, &req, now));
            assert_eq!(got, expected, "{user} {mode:?}");
        }
    }
}

#[test]
fn another_version_of_the_file_is_stale() {
    let bytes = built(&doc());
    for change in [
        |i: &mut Identity| i.ino += 1,
        |i: &mut Identity| i.dev += 1,
        |i: &mut Identity| i.size += 1,
        |i: &mut Identity| i.mtime.1 += 1,
        |i: &mut Identity| i.ctime.0 += 1,
    ] {
        let mut other = identity();
        change(&mut other);
        assert!(matches!(
            Index::open(&bytes[..], &other),
            Err(IndexError::Stale)
        ));
    }
}

#[test]
fn an_index_built_right_after_a_change_is_racy() {
    let doc = doc();
    let soon = Timestamp::from_unix(identity().ctime.0, identity().ctime.1)
        .saturating_add(racy_window(&identity()) / 2);
    let bytes = build(&doc, &identity(), soon).unwrap();
    assert!(matches!(
        Index::open(&bytes[..], &identity()),
        Err(IndexError::Racy)
    ));
}

#[test]
fn damage_is_detected_never_misread() {
    let doc = doc();
    let bytes = built(&doc);
    type Answer = (Vec<u8>, Vec<usize>, Option<usize>);
    let whole_answer = |b: &[u8]| -> Result<Answer, IndexError> {
        let index = Index::open(b, &identity())?;
        let kid = sshjit_policy::KeyId::new("alice@corp").unwrap();
        let d = index.lookup("deploy", Some((Some(&kid), Some(77), None)))?;
        Ok((
            d.document,
            d.info.revocation_indices,
            d.info.certificate_revocation,
        ))
    };
    let good = whole_answer(&bytes).unwrap();
    // Flip every byte in turn: the lookup either fails or, when the byte is
    // not read at all, gives the same answer.
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x41;
        match whole_answer(&b) {
            Err(_) => {}
            Ok(answer) => assert_eq!(answer, good, "byte {i} changed the answer"),
        }
    }
    // Truncation anywhere is refused or unread.
    for len in [
        0,
        8,
        HEADER_LEN - 1,
        HEADER_LEN,
        HEADER_LEN + 10,
        bytes.len() - 1,
    ] {
        if let Ok(answer) = whole_answer(&bytes[..len]) {
            assert_eq!(answer, good, "truncated to {len}");
        }
    }
    assert!(matches!(
        Index::open(&b"not an index at all"[..], &identity()),
        Err(IndexError::Damaged(_))
    ));
}

#[test]
fn whole_second_timestamps_need_a_longer_wait() {
    let mut coarse = identity();
    coarse.ctime.1 = 0;
    coarse.mtime.1 = 0;
    assert!(racy_window(&coarse) > Duration::from_secs(2));
    assert!(racy_window(&identity()) < Duration::from_millis(100));
    // An index read 1 s after a change on such a file system is racy.
    let at = Timestamp::from_unix(coarse.ctime.0 + 1, 0);
    let bytes = build(&doc(), &coarse, at).unwrap();
    assert!(matches!(
        Index::open(&bytes[..], &coarse),
        Err(IndexError::Racy)
    ));
}

#[test]
fn refuses_to_index_an_invalid_document() {
    assert!(
        build(
            br#"{"version": 1, "grnats": []}"#,
            &identity(),
            Timestamp::now()
        )
        .is_err()
    );
}

#[test]
fn a_resealed_index_describes_the_renamed_file_and_the_same_document() {
    let d = doc();
    let mut bytes = built(&d);
    let before = bytes.clone();
    let renamed = Identity {
        ino: 43,
        ctime: (1_795_000_050, 0),
        ..identity()
    };
    reseal(&mut bytes, &renamed, Timestamp::from_unix(1_795_000_200, 0)).unwrap();
    assert_eq!(policy_sha256(&bytes), policy_sha256(&before));
    assert!(matches!(
        Index::open(&before[..], &renamed),
        Err(IndexError::Stale)
    ));
    assert!(matches!(
        Index::open(&bytes[..], &identity()),
        Err(IndexError::Stale)
    ));
    let index = Index::open(&bytes[..], &renamed).unwrap();
    let old = Index::open(&before[..], &identity()).unwrap();
    for user in ["deploy", "root", "nobody"] {
        assert_eq!(
            index.lookup(user, None).unwrap().document,
            old.lookup(user, None).unwrap().document
        );
    }
    // Too soon after the rename's change: racy, as any index would be.
    let mut soon = before.clone();
    reseal(&mut soon, &renamed, Timestamp::from_unix(1_795_000_050, 0)).unwrap();
    assert!(matches!(
        Index::open(&soon[..], &renamed),
        Err(IndexError::Racy)
    ));
}

#[test]
fn a_signed_index_records_its_signature_and_an_unsigned_one_none() {
    let d = doc();
    let at = Timestamp::from_unix(1_795_000_100, 0);
    let unsigned = build(&d, &identity(), at).unwrap();
    let signed = build_signed(&d, &identity(), at, Some(b"-----BEGIN SSH SIGNATURE-----")).unwrap();
    use ssh_key::sha2::{Digest, Sha256};
    let recorded = Index::open(&signed[..], &identity())
        .unwrap()
        .signature()
        .unwrap();
    assert_eq!(
        recorded.map(|r| r.to_vec()),
        Some(Sha256::digest(b"-----BEGIN SSH SIGNATURE-----").to_vec())
    );
    assert_eq!(
        Index::open(&unsigned[..], &identity())
            .unwrap()
            .signature()
            .unwrap(),
        None
    );
    // The same answers either way.
    let a = Index::open(&signed[..], &identity()).unwrap();
    let b = Index::open(&unsigned[..], &identity()).unwrap();
    assert_eq!(
        a.lookup("deploy", None).unwrap().document,
        b.lookup("deploy", None).unwrap().document
    );
}
