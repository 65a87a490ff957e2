//! What a host is told: the part of the policy for one host (and, on the
//! login path, one user and one mode), signed, carrying the serial.
//!
//! A part holds the grants that can apply to the question and every
//! revocation that can name one of them — by id, user, principal or key
//! fingerprint — plus, unless the question is about keys only, every
//! revocation that can name a presented certificate (key ID, serial,
//! fingerprint). The helper evaluates the part exactly as it would the
//! whole document; whatever the part leaves out cannot change its answer.
//! That is also why a part need not be bound to its question: served for
//! another user, host or mode, it holds no grant that question could use
//! that the whole document would refuse, and every revocation that could
//! name what it does hold.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use sshjit_policy::evaluate::{Name, grant_names, matches_host, revoked_name};
use sshjit_policy::{Grant, HostName, Policy, Subject, Username};

use crate::signing::Signer;

/// Which grants a question can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Keys,
    Principals,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "keys" => Some(Mode::Keys),
            "principals" => Some(Mode::Principals),
            _ => None,
        }
    }
}

/// A question: always a host; on the login path also a user and a mode.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Question {
    pub host: HostName<'static>,
    pub user: Option<Username<'static>>,
    pub mode: Option<Mode>,
}

/// A signed answer.
#[derive(Debug)]
pub struct Answer {
    pub serial: u64,
    pub body: Vec<u8>,
    /// base64 of the armored `ssh-keygen -Y sign` signature, for the
    /// `sshjit-signature` header.
    pub signature: String,
}

/// Answers built for one view, so a storm of logins signs each once.
/// Bounded: a host may ask about any user name.
#[derive(Default)]
pub struct Cache {
    answers: Mutex<HashMap<Question, Arc<Answer>>>,
}

const MAX_CACHED: usize = 50_000;

impl Cache {
    pub fn get_or_build(
        &self,
        question: &Question,
        build: impl FnOnce() -> Result<Answer, String>,
    ) -> Result<Arc<Answer>, String> {
        if let Some(a) = self
            .answers
            .lock()
            .ok()
            .and_then(|m| m.get(question).cloned())
        {
            return Ok(a);
        }
        let answer = Arc::new(build()?);
        if let Ok(mut m) = self.answers.lock() {
            if m.len() >= MAX_CACHED {
                m.clear();
            }
            m.insert(question.clone(), Arc::clone(&answer));
        }
        Ok(answer)
    }
}

/// A name a revocation can name, owned and hashable.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Named {
    Grant(String),
    User(String),
    Principal(String),
    Fingerprint(String),
    KeyId(String),
    Serial(u64),
}

impl From<Name<'_>> for Named {
    fn from(n: Name<'_>) -> Named {
        match n {
            Name::Grant(s) => Named::Grant(s.to_owned()),
            Name::User(s) => Named::User(s.to_owned()),
            Name::Principal(s) => Named::Principal(s.to_owned()),
            Name::Fingerprint(f) => Named::Fingerprint(f.to_string()),
            Name::KeyId(s) => Named::KeyId(s.to_owned()),
            Name::Serial(s) => Named::Serial(s),
        }
    }
}

/// Each user's grants, by index into the policy's grants.
pub type ByUser = HashMap<String, Vec<usize>>;

/// The part of `policy` for `question` (see the module's comment).
/// `by_user` indexes the policy's grants, so a user's part costs that
/// user's grants, not the whole document.
pub fn part(policy: &Policy<'static>, by_user: &ByUser, question: &Question) -> Policy<'static> {
    let candidates: Box<dyn Iterator<Item = &Grant<'static>>> = match &question.user {
        Some(u) => Box::new(
            by_user
                .get(u.as_str())
                .into_iter()
                .flatten()
                .filter_map(|&i| policy.grants.get(i)),
        ),
        None => Box::new(policy.grants.iter()),
    };
    let grants: Vec<_> = candidates
        .filter(|g| question.user.as_ref().is_none_or(|u| g.user == *u))
        .filter(|g| matches_host(&g.hosts, &question.host))
        .filter(|g| {
            matches!(
                (question.mode, &g.subject),
                (None, _)
                    | (Some(Mode::Keys), Subject::Key(_))
                    | (Some(Mode::Principals), Subject::Principal(_))
            )
        })
        .cloned()
        .collect();
    let names: HashSet<Named> = grants
        .iter()
        .flat_map(|g| grant_names(g).map(Named::from))
        .collect();
    let certificates = question.mode != Some(Mode::Keys);
    let revocations = policy
        .revocations
        .iter()
        .filter(|r| {
            let name = revoked_name(&r.target);
            (certificates && name.can_name_certificate()) || names.contains(&Named::from(name))
        })
        .cloned()
        .collect();
    Policy {
        version: 1,
        serial: policy.serial,
        frozen: policy.frozen,
        grants,
        revocations,
    }
}

/// Builds and signs the answer to `question` from `policy` at `serial`
/// (the ledger's serial: an answer always carries one, also before the
/// first change, so a host's rollback check has something to hold on to).
pub fn build(
    policy: &Policy<'static>,
    serial: u64,
    by_user: &ByUser,
    question: &Question,
    signer: &Signer,
) -> Result<Answer, String> {
    let mut part = part(policy, by_user, question);
    part.serial = Some(serial);
    let mut body = serde_json::to_vec(&part).map_err(|e| e.to_string())?;
    body.push(b'\n');
    let signature = signer.sign_header(&body)?;
    Ok(Answer {
        serial,
        body,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sshjit_policy::evaluate::{Request, evaluate};
    use sshjit_policy::time::Timestamp;
    use sshjit_policy::{Fingerprint, KeyId};

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmhXmfyH35TmVDzfJ+0t0DbYFg88Gcc+UtpLZreAJk9 a@test";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF7Vi4lHU6BizDGW263nDayDu2UnUB7NxON9I9z3dUaX b@test";

    fn policy() -> Policy<'static> {
        let doc = serde_json::json!({
            "version": 1, "serial": 9,
            "grants": [
                {"id": "g-1", "user": "deploy", "key": KEY_A, "hosts": ["web-*"], "expires_at": "2099-01-01T00:00:00Z", "reason": "r"},
                {"id": "g-2", "user": "deploy", "key": KEY_B, "expires_at": "2099-01-01T00:00:00Z", "reason": "r"},
                {"id": "g-3", "user": "deploy", "principal": "alice", "expires_at": "2099-01-01T00:00:00Z", "reason": "r"},
                {"id": "g-4", "user": "ops", "principal": "bob", "hosts": ["db-*"], "expires_at": "2099-01-01T00:00:00Z", "reason": "r"},
                {"id": "g-5", "user": "ops", "key": KEY_A, "expires_at": "2099-01-01T00:00:00Z", "reason": "r"}
            ],
            "revocations": [
                {"grant": "g-2"}, {"grant": "g-4"}, {"user": "ops"}, {"principal": "alice"},
                {"principal": "carol"}, {"key_id": "alice@corp"}, {"serial": 77},
                {"fingerprint": "SHA256:nqYZ+IxOnbiBaZwc6r0G+iS9w0wOhnnAotOo2aybfo4"}
            ]
        });
        Policy::parse(&serde_json::to_vec(&doc).unwrap())
            .unwrap()
            .into_owned()
    }

    fn index(p: &Policy<'static>) -> ByUser {
        let mut m = ByUser::new();
        for (i, g) in p.grants.iter().enumerate() {
            m.entry(g.user.to_string()).or_default().push(i);
        }
        m
    }

    fn part(p: &Policy<'static>, q: &Question) -> Policy<'static> {
        super::part(p, &index(p), q)
    }

    fn q(host: &str, user: Option<&str>, mode: Option<Mode>) -> Question {
        Question {
            host: HostName::new(host.to_owned()).unwrap(),
            user: user.map(|u| Username::new(u.to_owned()).unwrap()),
            mode,
        }
    }

    #[test]
    fn a_part_holds_the_grants_for_the_question_and_the_revocations_that_can_name_them() {
        let p = policy();
        let keys = part(&p, &q("web-1", Some("deploy"), Some(Mode::Keys)));
        let ids: Vec<&str> = keys.grants.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(ids, ["g-1", "g-2"]);
        let targets: Vec<String> = keys
            .revocations
            .iter()
            .map(|r| r.target.to_string())
            .collect();
        // g-2 by id and by B's fingerprint; nothing about certificates in keys mode.
        assert_eq!(
            targets,
            [
                "grant g-2",
                "fingerprint SHA256:nqYZ+IxOnbiBaZwc6r0G+iS9w0wOhnnAotOo2aybfo4"
            ]
        );
        assert_eq!(keys.serial, Some(9));

        let part = part(&p, &q("db-1", Some("deploy"), Some(Mode::Principals)));
        let ids: Vec<&str> = part.grants.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(ids, ["g-3"]);
        let targets: Vec<String> = part
            .revocations
            .iter()
            .map(|r| r.target.to_string())
            .collect();
        assert!(targets.contains(&"principal alice".to_owned()));
        assert!(
            targets.contains(&"key_id \"alice@corp\"".to_owned()),
            "{targets:?}"
        );
        assert!(targets.contains(&"serial 77".to_owned()));
        assert!(
            !targets
                .iter()
                .any(|t| t.contains("carol") || t.contains("ops")),
            "{targets:?}"
        );
    }

    /// The grants a decision lets in; `None` for a denial.
    fn outcome(d: sshjit_policy::Decision<'_, '_>) -> Option<Vec<String>> {
        match d {
            sshjit_policy::Decision::Allow(g) => Some(g.iter().map(|g| g.id.to_string()).collect()),
            sshjit_policy::Decision::Deny(_) => None,
        }
    }

    /// Whatever the question, evaluating the part answers as the whole
    /// document does, for that question and for any other one it might
    /// be replayed to.
    #[test]
    fn a_part_answers_every_question_as_the_whole_document_does() {
        let p = policy();
        let now = Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").unwrap();
        let fps = [
            None,
            Some(Fingerprint::parse("SHA256:nqYZ+IxOnbiBaZwc6r0G+iS9w0wOhnnAotOo2aybfo4").unwrap()),
        ];
        let key_id = KeyId::new("alice@corp").unwrap();
        let modes = |fp: Option<Fingerprint>| {
            vec![
                sshjit_policy::Mode::Keys { offered: fp },
                sshjit_policy::Mode::Principals {
                    key_id: None,
                    serial: None,
                    fingerprint: fp,
                },
                sshjit_policy::Mode::Principals {
                    key_id: Some(&key_id),
                    serial: Some(77),
                    fingerprint: fp,
                },
            ]
        };
        for host in ["web-1", "db-1", "other"] {
            for user in ["deploy", "ops", "nobody"] {
                for mode in [None, Some(Mode::Keys), Some(Mode::Principals)] {
                    let question = q(host, Some(user), mode);
                    let part = part(&p, &question);
                    for fp in fps {
                        for m in modes(fp) {
                            let asks_keys = matches!(m, sshjit_policy::Mode::Keys { .. });
                            // A part answers its own question exactly.
                            let own = mode.is_none() || (mode == Some(Mode::Keys)) == asks_keys;
                            let r = Request {
                                user: &question.user.clone().unwrap(),
                                host: &question.host,
                                mode: m,
                            };
                            let whole = outcome(evaluate(&p, &r, now));
                            let from_part = outcome(evaluate(&part, &r, now));
                            if own {
                                assert_eq!(whole, from_part, "{host} {user} {mode:?} {m:?}");
                            }
                            // Replayed to any question, a part never lets in
                            // what the whole document refuses.
                            for other_host in ["web-1", "db-1", "other"] {
                                for other_user in ["deploy", "ops", "nobody"] {
                                    let h = HostName::new(other_host).unwrap();
                                    let u = Username::new(other_user).unwrap();
                                    let r = Request {
                                        user: &u,
                                        host: &h,
                                        mode: m,
                                    };
                                    let whole = outcome(evaluate(&p, &r, now)).unwrap_or_default();
                                    let replayed =
                                        outcome(evaluate(&part, &r, now)).unwrap_or_default();
                                    for id in &replayed {
                                        assert!(
                                            whole.contains(id),
                                            "{host}/{user}/{mode:?} replayed to {other_host}/{other_user}: {replayed:?} vs {whole:?}"
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
