//! The login path's invariants, checked on any valid policy: shared by the
//! `policy` fuzz target and the property tests (tests/it/props.rs), so both
//! guard the same promises. For every request derived from the document
//! (its users, hosts, certificate selectors, and the instants around each
//! grant's window): no panic; every printed line reads back with sshd's
//! grammar, carries an expiry sshd still accepts at that instant and no
//! later than its grants' end, and belongs to grants valid at that instant;
//! nothing revoked is printed, and nothing but break-glass while frozen;
//! and the policy index gives the same answers as the whole document.

use std::time::Duration;

use sshjit::index::{self, Identity, Index};
use sshjit_policy::evaluate::{certificate_revocation, refusals, revocation_of};
use sshjit_policy::openssh::options::{parse_keys_line, parse_principals_line};
use sshjit_policy::render::{Expiry, render};
use sshjit_policy::time::{Civil, Timestamp, civil_to_unix};
use sshjit_policy::{
    Decision, Denial, HostName, KeyId, Mode, Policy, Request, Subject, Target, Username,
};

/// Checks every invariant for requests derived from `policy`, the exact
/// bytes it was parsed from: including that its index answers every such
/// request exactly as the whole document does.
pub fn check_policy(document: &[u8], policy: &Policy<'_>) {
    let identity = Identity {
        dev: 1,
        ino: 2,
        size: document.len() as u64,
        mtime: (1_700_000_000, 0),
        ctime: (1_700_000_000, 0),
    };
    let index_bytes = index::build(document, &identity, Timestamp::from_unix(1_700_000_100, 0))
        .expect("a valid policy indexes");
    let index = Index::open(&index_bytes[..], &identity).expect("a fresh index opens");

    // What is written back is what was read.
    let again = policy.to_document().expect("a valid policy serializes");
    assert_eq!(Policy::parse(&again).expect("and parses again"), *policy);

    let mut users: Vec<Username<'_>> = policy
        .grants
        .iter()
        .take(4)
        .map(|g| g.user.clone())
        .collect();
    users.push(Username::new("nobody").unwrap());
    let mut hosts = vec![HostName::new("web-1").unwrap()];
    for g in policy.grants.iter().take(4) {
        if let Some(p) = g.hosts.first() {
            let name = p.as_str().replace('*', "x").replace('?', "y");
            if let Ok(h) = HostName::new(name.trim_start_matches(['-', '.']).to_owned()) {
                hosts.push(h);
            }
        }
    }
    let mut instants = vec![Timestamp::parse_rfc3339("2026-11-21T10:30:00Z").unwrap()];
    for g in policy.grants.iter().take(4) {
        instants.extend(g.not_before);
        instants.push(g.expires_at);
        instants.push(g.expires_at.saturating_sub(Duration::from_nanos(1)));
        instants.push(g.expires_at.saturating_sub(Duration::from_secs(1)));
    }
    let key_id = policy.revocations.iter().find_map(|r| match &r.target {
        Target::KeyId(k) => Some(k.clone()),
        _ => None,
    });
    let serial = policy.revocations.iter().find_map(|r| match r.target {
        Target::Serial(s) => Some(s),
        _ => None,
    });
    let other_key_id = KeyId::new("fuzz-key-id").unwrap();
    for user in &users {
        let offered = policy
            .grants
            .iter()
            .find(|g| g.user == *user)
            .and_then(|g| g.key())
            .map(|k| k.fingerprint());
        let revoked_fp = policy.revocations.iter().find_map(|r| match r.target {
            Target::Fingerprint(f) => Some(f),
            _ => None,
        });
        let modes = [
            Mode::Keys { offered: None },
            Mode::Keys { offered },
            Mode::Principals {
                key_id: None,
                serial: None,
                fingerprint: None,
            },
            Mode::Principals {
                key_id: Some(&other_key_id),
                serial: Some(7),
                fingerprint: offered,
            },
            Mode::Principals {
                key_id: key_id.as_ref(),
                serial,
                fingerprint: revoked_fp,
            },
        ];
        for host in &hosts {
            for &now in &instants {
                for mode in modes {
                    let req = Request { user, host, mode };
                    check(policy, &req, now);
                    check_indexed(policy, &index, &req, now);
                }
            }
        }
    }
}

fn check(policy: &Policy<'_>, req: &Request<'_>, now: Timestamp) {
    match sshjit_policy::evaluate(policy, req, now) {
        Decision::Deny(Denial::CertificateRevoked { revocation }) => {
            assert_eq!(certificate_revocation(policy, req), Some(revocation));
        }
        Decision::Deny(Denial::NoValidGrant) => {
            for g in policy.grants.iter().filter(|g| g.user == *req.user) {
                assert!(
                    !refusals(policy, g, req, now).is_empty(),
                    "{} is valid but was not allowed",
                    g.id
                );
            }
        }
        Decision::Allow(valid) => {
            assert!(!valid.is_empty());
            for g in &valid {
                assert_eq!(g.user, *req.user);
                assert!(
                    refusals(policy, g, req, now).is_empty(),
                    "{} allowed but refused",
                    g.id
                );
                assert!(revocation_of(policy, g).is_none(), "{} is revoked", g.id);
                assert!(g.not_before.is_none_or(|nb| nb <= now) && now < g.expires_at);
                assert!(!policy.frozen || g.break_glass);
                assert!(matches!(
                    (&g.subject, req.mode),
                    (Subject::Key(_), Mode::Keys { .. })
                        | (Subject::Principal(_), Mode::Principals { .. })
                ));
            }
            let rendered = render(&valid, Expiry::Utc, now).expect("valid grants always render");
            let text = std::str::from_utf8(&rendered.text).expect("output is UTF-8");
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), rendered.lines.len());
            assert!(text.is_empty() || text.ends_with('\n'));
            // sshd applies only the first line naming a principal: when a
            // valid grant of it allows any address, so does that line.
            let mut seen_principals = Vec::new();
            for (line, ids) in lines.iter().zip(&rendered.lines) {
                if let Mode::Principals { .. } = req.mode {
                    let parsed = parse_principals_line(line).expect("sshd reads it");
                    let principal = parsed.subject.clone();
                    if !seen_principals.contains(&principal) {
                        // Among the grants printed (one in its last
                        // fraction of a second is left out).
                        let printed = |g: &&&sshjit_policy::Grant<'_>| {
                            rendered.lines.iter().flatten().any(|id| **id == g.id)
                        };
                        let open = valid.iter().filter(printed).any(|g| {
                            matches!(&g.subject, Subject::Principal(p) if p.as_str() == principal)
                                && g.from.is_empty()
                        });
                        assert!(
                            !open || parsed.option("from").is_none(),
                            "{line}: the first line for {principal} is narrower than a valid grant"
                        );
                        seen_principals.push(principal);
                    }
                }
                let parsed = match req.mode {
                    Mode::Keys { .. } => parse_keys_line(line),
                    Mode::Principals { .. } => parse_principals_line(line),
                }
                .unwrap_or_else(|e| panic!("sshd would refuse {line:?}: {e}"));
                let expiry = parsed
                    .option("expiry-time")
                    .and_then(|o| o.value.clone())
                    .expect("expiry-time on every line");
                let last = parse_expiry(&expiry).expect("expiry-time is YYYYMMDDHHMMSSZ");
                assert!(
                    last >= now.unix_seconds(),
                    "{line}: already expired at {now}"
                );
                let grants: Vec<_> = ids
                    .iter()
                    .map(|id| policy.grant(id.as_str()).expect("a known grant"))
                    .collect();
                let end = grants.iter().map(|g| g.expires_at).max().unwrap();
                assert!(
                    Timestamp::from_unix(last + 1, 0) <= end,
                    "{line}: sshd's window outlasts {end}"
                );
                for g in grants {
                    assert!(
                        valid.iter().any(|v| v.id == g.id),
                        "{} printed but not valid",
                        g.id
                    );
                }
            }
        }
    }
}

/// The index's answer for `req` equals the whole document's.
fn check_indexed(policy: &Policy<'_>, index: &Index<&[u8]>, req: &Request<'_>, now: Timestamp) {
    let certificate = match req.mode {
        Mode::Keys { .. } => None,
        Mode::Principals {
            key_id,
            serial,
            fingerprint,
        } => Some((key_id, serial, fingerprint)),
    };
    let found = index
        .lookup(req.user.as_str(), certificate)
        .expect("lookup in a fresh index");
    let whole = sshjit_policy::evaluate(policy, req, now);
    let part = Policy::parse(&found.document).expect("the user's part validates");
    let got = found.info.evaluate(&part, req, now);
    if let Decision::Deny(Denial::CertificateRevoked { .. }) = whole {
        assert_eq!(got, whole, "index and document disagree on a certificate");
        return;
    }
    let ids = |d: &Decision<'_, '_>| match d {
        Decision::Allow(v) => Some(v.iter().map(|g| g.id.to_string()).collect::<Vec<_>>()),
        Decision::Deny(Denial::NoValidGrant) => Some(vec![]),
        Decision::Deny(Denial::CertificateRevoked { .. }) => None,
    };
    assert_eq!(
        ids(&got),
        ids(&whole),
        "index and document disagree for {:?}",
        req.mode
    );
    for g in &part.grants {
        let original = policy
            .grant(g.id.as_str())
            .expect("grant from the document");
        assert_eq!(g, original);
        assert_eq!(
            revocation_of(&part, g).map(|i| found.info.whole_revocation(i)),
            revocation_of(policy, original)
        );
    }
}

fn parse_expiry(s: &str) -> Option<i64> {
    let digits = s.strip_suffix('Z')?;
    if digits.len() != 14 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| digits[r].parse::<u32>().ok();
    civil_to_unix(&Civil {
        year: i64::from(n(0..4)?),
        month: n(4..6)?,
        day: n(6..8)?,
        hour: n(8..10)?,
        minute: n(10..12)?,
        second: n(12..14)?,
    })
}
