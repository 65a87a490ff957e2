//! What the trail records of self-service access requests (sshjit-server):
//! the request as asked, each approval, the decision that gives access
//! (with the grant it adds to the policy and the certificate it issued),
//! a denial, a lapse, an early end, and the review note of a break-glass
//! request. Every value is one of the policy core's checked types or a
//! newtype here, so a record that decodes is valid field by field.

use serde::{Deserialize, Serialize};

use sshjit_policy::time::Timestamp;
use sshjit_policy::{Actor, AuthorizedKey, Fingerprint, HostPattern, Principal, Reason, Username};

sshjit_policy::checked_str!(
    /// A request's id: `r-` and 1 to 62 of `[a-z0-9-]`. It is also the id
    /// of the grant it gives, and the key ID of the certificate it issues,
    /// so it is a valid `GrantId`, `KeyId` and principal.
    RequestId,
    "request id",
    |s| {
        let Some(rest) = s.strip_prefix("r-") else {
            return Err("must start with \"r-\"");
        };
        if rest.is_empty() || rest.len() > 62 {
            return Err("must be r- and 1 to 62 characters");
        }
        if !rest.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-') {
            return Err("may contain only lower-case letters, digits and '-' after \"r-\"");
        }
        Ok(())
    }
);

sshjit_policy::checked_str!(
    /// A role's name in roles.toml: 1 to 64 of `[A-Za-z0-9._-]`.
    RoleName,
    "role name",
    |s| {
        if s.is_empty() || s.len() > 64 {
            return Err("must be 1 to 64 characters");
        }
        if !s.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c)) {
            return Err("may contain only letters, digits, '.', '_' and '-'");
        }
        Ok(())
    }
);

/// What an approved request issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Issue {
    /// The requester's key becomes a grant (keys mode).
    Grant,
    /// The user CA certifies the requester's key; a principal grant in the
    /// policy lets that certificate in (principals mode).
    Certificate,
}

impl Issue {
    pub fn as_str(self) -> &'static str {
        match self {
            Issue::Grant => "grant",
            Issue::Certificate => "certificate",
        }
    }
}

/// A request as asked and accepted by its role's rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRequest<'a> {
    #[serde(borrow)]
    pub id: RequestId<'a>,
    /// The person who asked (their server account).
    #[serde(borrow)]
    pub requester: Username<'a>,
    #[serde(borrow)]
    pub role: RoleName<'a>,
    /// The local account (sshd's `%u`).
    #[serde(borrow)]
    pub account: Username<'a>,
    /// Empty: every host the role allows (the role's own globs).
    #[serde(borrow, default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostPattern<'a>>,
    /// How long access lasts once approved, in seconds.
    pub duration: u64,
    #[serde(borrow)]
    pub reason: Reason<'a>,
    /// The requester's public key: the grant's key, or the key certified.
    #[serde(borrow)]
    pub key: AuthorizedKey<'a>,
    pub issue: Issue,
    /// Distinct approvers needed (0: none).
    pub approvals: u32,
    #[serde(default, skip_serializing_if = "is_false")]
    pub break_glass: bool,
    /// A pending request lapses at this time.
    pub pending_until: Timestamp,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Why a request was approved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovedBy {
    /// As many distinct approvers as the role needs.
    Approvers,
    /// The role needs none (`approvals = 0`).
    Automatic,
    /// The requester was on call for the role.
    OnCall,
    /// A break-glass role: granted at once, reviewed afterwards.
    BreakGlass,
}

impl ApprovedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovedBy::Approvers => "approvers",
            ApprovedBy::Automatic => "automatic",
            ApprovedBy::OnCall => "on_call",
            ApprovedBy::BreakGlass => "break_glass",
        }
    }
}

/// A certificate the user CA signed for a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuedCertificate<'a> {
    /// Unique in the store: the number of the trail record that issued it.
    pub serial: u64,
    /// The request id.
    #[serde(borrow)]
    pub key_id: RequestId<'a>,
    #[serde(borrow)]
    pub principal: Principal<'a>,
    pub valid_after: Timestamp,
    pub valid_before: Timestamp,
    /// The certified key.
    pub fingerprint: Fingerprint,
    /// The CA's key.
    pub ca: Fingerprint,
}

impl IssuedCertificate<'_> {
    pub fn into_owned(self) -> IssuedCertificate<'static> {
        IssuedCertificate {
            serial: self.serial,
            key_id: self.key_id.into_owned(),
            principal: self.principal.into_owned(),
            valid_after: self.valid_after,
            valid_before: self.valid_before,
            fingerprint: self.fingerprint,
            ca: self.ca,
        }
    }
}

impl AccessRequest<'_> {
    pub fn into_owned(self) -> AccessRequest<'static> {
        AccessRequest {
            id: self.id.into_owned(),
            requester: self.requester.into_owned(),
            role: self.role.into_owned(),
            account: self.account.into_owned(),
            hosts: self
                .hosts
                .into_iter()
                .map(HostPattern::into_owned)
                .collect(),
            duration: self.duration,
            reason: self.reason.into_owned(),
            key: self.key.into_owned(),
            issue: self.issue,
            approvals: self.approvals,
            break_glass: self.break_glass,
            pending_until: self.pending_until,
        }
    }
}

/// Owned approvers' names, for records.
pub fn owned_actors(v: Vec<Actor<'_>>) -> Vec<Actor<'static>> {
    v.into_iter().map(Actor::into_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::history::replay;
    use crate::store::trail::{Action, Record, ZERO_HASH, decode, encode};
    use sshjit_policy::{Policy, Revocation, Target};

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmhXmfyH35TmVDzfJ+0t0DbYFg88Gcc+UtpLZreAJk9 a@test";

    fn t(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn rec(seq: u64, by: &str, action: Action<'static>) -> Record<'static> {
        Record {
            seq,
            time: t("2026-11-21T10:00:00Z").saturating_add(std::time::Duration::from_secs(seq)),
            actor: Actor::new(by.to_owned()).unwrap(),
            os_user: by.into(),
            sudo_user: None,
            host: "server-1".into(),
            action,
            serial: Some(seq),
            policy_sha256: Some("x".into()),
            prev: ZERO_HASH.into(),
            hash: None,
        }
    }

    fn ask() -> AccessRequest<'static> {
        AccessRequest {
            id: RequestId::new("r-20261121-0a0b0c0d").unwrap(),
            requester: Username::new("alice").unwrap(),
            role: RoleName::new("user").unwrap(),
            account: Username::new("ubuntu").unwrap(),
            hosts: vec![HostPattern::new("web-*").unwrap()],
            duration: 3600,
            reason: Reason::new("INC-1 restart").unwrap(),
            key: AuthorizedKey::parse(KEY).unwrap(),
            issue: Issue::Certificate,
            approvals: 1,
            break_glass: false,
            pending_until: t("2026-11-21T11:00:00Z"),
        }
    }

    fn grant_record() -> Action<'static> {
        let policy = Policy::parse(
            br#"{"version":1,"grants":[{"id":"r-20261121-0a0b0c0d","user":"ubuntu",
            "principal":"alice@r-20261121-0a0b0c0d","hosts":["web-*"],
            "expires_at":"2026-11-21T11:00:05Z","reason":"requested by alice: INC-1 restart",
            "granted_by":"bob"}]}"#,
        )
        .unwrap()
        .into_owned();
        Action::RequestGrant {
            id: ask().id,
            grant: policy.grants[0].clone(),
            approved_by: ApprovedBy::Approvers,
            approvers: vec![Actor::new("bob").unwrap()],
            certificate: Some(Box::new(IssuedCertificate {
                serial: 2,
                key_id: ask().id,
                principal: Principal::new("alice@r-20261121-0a0b0c0d").unwrap(),
                valid_after: t("2026-11-21T10:00:02Z"),
                valid_before: t("2026-11-21T11:00:05Z"),
                fingerprint: ask().key.fingerprint(),
                ca: ask().key.fingerprint(),
            })),
        }
    }

    #[test]
    fn request_records_round_trip_and_only_grant_and_done_change_the_policy() {
        let done = Action::RequestDone {
            id: ask().id,
            revocation: Revocation {
                target: Target::Grant(sshjit_policy::GrantId::new("r-20261121-0a0b0c0d").unwrap()),
                reason: Some(Reason::new("ended early by alice").unwrap()),
                revoked_at: Some(t("2026-11-21T10:30:00Z")),
                revoked_by: Some(Actor::new("alice").unwrap()),
            },
        };
        let actions = [
            Action::RequestOpen {
                request: Box::new(ask()),
            },
            Action::RequestApprove {
                id: ask().id,
                reason: Some(Reason::new("ok").unwrap()),
            },
            grant_record(),
            done,
            Action::RequestReview {
                id: ask().id,
                note: Reason::new("fine").unwrap(),
            },
        ];
        let mut policy = Policy::empty();
        for (i, a) in actions.iter().enumerate() {
            let r = rec(i as u64 + 1, "bob", a.clone());
            let (line, hash) = encode(&r).unwrap();
            let back = decode(&line[..line.len() - 1]).unwrap().into_owned();
            assert_eq!(back.hash(), hash);
            assert_eq!(back.action, *a, "{}", String::from_utf8_lossy(&line));
            let before = policy.clone();
            a.apply(&mut policy).unwrap();
            let changes = matches!(a, Action::RequestGrant { .. } | Action::RequestDone { .. });
            assert_eq!(before != policy, changes, "{}", a.name());
            assert_eq!(a.is_edit(), changes);
        }
        assert_eq!(policy.grants.len(), 1);
        assert_eq!(policy.revocations.len(), 1);
        // A request's grant twice does not replay.
        assert!(grant_record().apply(&mut policy).is_err());
    }

    #[test]
    fn report_shows_who_asked_who_approved_and_the_early_end() {
        let records = vec![
            rec(
                1,
                "alice",
                Action::RequestOpen {
                    request: Box::new(ask()),
                },
            ),
            rec(2, "bob", grant_record()),
            rec(
                3,
                "alice",
                Action::RequestDone {
                    id: ask().id,
                    revocation: Revocation {
                        target: Target::Grant(
                            sshjit_policy::GrantId::new("r-20261121-0a0b0c0d").unwrap(),
                        ),
                        reason: None,
                        revoked_at: None,
                        revoked_by: None,
                    },
                },
            ),
        ];
        let h = replay(&records);
        assert_eq!(h.entries.len(), 1);
        let e = &h.entries[0];
        assert_eq!(e.recorded_by, "bob");
        assert!(e.status(t("2026-11-21T10:10:00Z")).starts_with("revoked"));
        let what: Vec<String> = h
            .changes
            .iter()
            .map(|c| format!("{} {}", c.action, c.what))
            .collect();
        assert!(what[0].starts_with("request r-20261121-0a0b0c0d: alice asks role user as ubuntu on web-* for 1h (certificate)"), "{what:?}");
        assert!(what[1].contains("by bob; certificate serial 2"), "{what:?}");
        assert!(what[2].starts_with("done r-20261121-0a0b0c0d"), "{what:?}");
    }

    #[test]
    fn request_ids_are_grant_ids_key_ids_and_principals() {
        let id = RequestId::new("r-20261121-7f3a9c01").unwrap();
        assert!(sshjit_policy::GrantId::new(id.as_str()).is_ok());
        assert!(sshjit_policy::KeyId::new(id.as_str()).is_ok());
        assert!(sshjit_policy::Principal::new(id.as_str()).is_ok());
        for bad in [
            "",
            "r-",
            "g-1",
            "r-A",
            "r-a b",
            "r-a/b",
            &format!("r-{}", "a".repeat(63)),
        ] {
            assert!(RequestId::new(bad).is_err(), "{bad:?}");
        }
        assert!(RoleName::new("on-call.eu_1").is_ok());
        assert!(RoleName::new("a b").is_err());
    }
}
