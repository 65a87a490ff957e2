//! The change trail: one JSON line per change beside the policy
//! (`policy.json` → `policy.json.audit.jsonl`). Each record carries the
//! SHA-256 of the record before it (a hash chain), and the SHA-256 and
//! serial of the policy document it produced, which anchors the chain's
//! head to the policy file itself.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ssh_key::sha2::{Digest, Sha256};

use super::request::{AccessRequest, ApprovedBy, IssuedCertificate, RequestId, owned_actors};
use sshjit_policy::time::Timestamp;
use sshjit_policy::{
    Actor, Fingerprint, Grant, GrantId, HostName, Policy, Reason, Revocation, Username,
};

/// `prev` of the first record.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Longest record accepted (an `adopt` record holds a whole document).
pub const MAX_LINE: usize = 2 * sshjit_policy::MAX_DOCUMENT_BYTES + 64 * 1024;

/// The trail of the policy at `policy`.
pub fn trail_path(policy: &Path) -> PathBuf {
    let mut name = policy.file_name().unwrap_or_default().to_owned();
    name.push(".audit.jsonl");
    policy.with_file_name(name)
}

/// A SHA-256 in lower-case hex, as the trail records it.
pub type Sha256Hex = String;

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> Sha256Hex {
    base16ct::lower::encode_string(&Sha256::digest(bytes))
}

/// One change, as recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record<'a> {
    /// 1, 2, 3, ... without gaps.
    pub seq: u64,
    pub time: Timestamp,
    /// Who the change is attributed to (`--by`, `SUDO_USER` or the user).
    #[serde(borrow)]
    pub actor: Actor<'a>,
    /// The account that ran the command, and the host it ran on.
    pub os_user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo_user: Option<String>,
    pub host: String,
    #[serde(flatten, borrow)]
    pub action: Action<'a>,
    /// The document after this record: its serial and SHA-256 (`null`: no
    /// policy file).
    pub serial: Option<u64>,
    pub policy_sha256: Option<String>,
    /// The `hash` of the record before (`ZERO_HASH` for the first).
    pub prev: String,
    /// SHA-256 of this line without its `hash` field; set when read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

/// What a record did, with everything needed to reconstruct it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action<'a> {
    /// The document as found: when the trail starts on an existing policy,
    /// or when an admin acknowledges a change made outside sshjit.
    Adopt {
        #[serde(borrow)]
        reason: Reason<'a>,
        frozen: bool,
        #[serde(borrow)]
        grants: Vec<Grant<'a>>,
        #[serde(borrow)]
        revocations: Vec<Revocation<'a>>,
    },
    Grant {
        #[serde(borrow)]
        grant: Grant<'a>,
        /// Longer than `max_grant`, given with `--force`.
        #[serde(default, skip_serializing_if = "is_false")]
        forced: bool,
    },
    Revoke {
        #[serde(borrow)]
        revocation: Revocation<'a>,
    },
    /// Revocations lifted.
    Unrevoke {
        #[serde(borrow)]
        reason: Reason<'a>,
        #[serde(borrow)]
        revocations: Vec<Revocation<'a>>,
    },
    Freeze {
        #[serde(borrow)]
        reason: Reason<'a>,
    },
    Thaw {
        #[serde(borrow)]
        reason: Reason<'a>,
    },
    /// Expired grants and dead revocations removed from the document.
    Prune {
        older_than: String,
        #[serde(borrow)]
        grants: Vec<GrantId<'a>>,
        #[serde(borrow)]
        revocations: Vec<Revocation<'a>>,
    },
    /// sshjit-server: a host enrolled. Its bearer token is kept hashed by
    /// the server and appears in no record.
    HostAdd {
        #[serde(borrow)]
        name: HostName<'a>,
    },
    /// sshjit-server: a host's token revoked; the host gets 401 from now on.
    HostRemove {
        #[serde(borrow)]
        name: HostName<'a>,
    },
    /// sshjit-server: a person's account made (its password and TOTP
    /// secret are kept by the server and appear in no record).
    PersonAdd {
        #[serde(borrow)]
        person: Username<'a>,
        #[serde(borrow, default, skip_serializing_if = "Vec::is_empty")]
        groups: Vec<Username<'a>>,
    },
    /// sshjit-server: a person's account removed, with its keys and sessions.
    PersonRemove {
        #[serde(borrow)]
        person: Username<'a>,
    },
    /// sshjit-server: an SSH key a person may log in with.
    PersonKeyAdd {
        #[serde(borrow)]
        person: Username<'a>,
        fingerprint: Fingerprint,
    },
    /// sshjit-server: a person asked for access through a role.
    RequestOpen {
        #[serde(borrow)]
        request: Box<AccessRequest<'a>>,
    },
    /// sshjit-server: one approval (the record's actor) of a request that
    /// needs more than it has so far.
    RequestApprove {
        #[serde(borrow)]
        id: RequestId<'a>,
        #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
        reason: Option<Reason<'a>>,
    },
    /// sshjit-server: a request approved; its grant is added to the policy
    /// (a key grant, or the principal grant of the certificate issued).
    RequestGrant {
        #[serde(borrow)]
        id: RequestId<'a>,
        #[serde(borrow)]
        grant: Grant<'a>,
        approved_by: ApprovedBy,
        /// Everyone who approved it, the last approval (this record's
        /// actor) included; empty when no person had to.
        #[serde(borrow, default, skip_serializing_if = "Vec::is_empty")]
        approvers: Vec<Actor<'a>>,
        #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
        certificate: Option<Box<IssuedCertificate<'a>>>,
    },
    /// sshjit-server: a pending request refused.
    RequestDeny {
        #[serde(borrow)]
        id: RequestId<'a>,
        #[serde(borrow)]
        reason: Reason<'a>,
    },
    /// sshjit-server: a pending request that nobody decided in time.
    RequestExpire {
        #[serde(borrow)]
        id: RequestId<'a>,
    },
    /// sshjit-server: access ended early (`sshjit done`): a revocation of
    /// the request's grant, added to the policy.
    RequestDone {
        #[serde(borrow)]
        id: RequestId<'a>,
        #[serde(borrow)]
        revocation: Revocation<'a>,
    },
    /// sshjit-server: the review note a break-glass request needs.
    RequestReview {
        #[serde(borrow)]
        id: RequestId<'a>,
        #[serde(borrow)]
        note: Reason<'a>,
    },
    /// The trail itself was mended: an interrupted change voided and/or
    /// the incomplete end of an interrupted append discarded.
    Repair {
        #[serde(borrow)]
        reason: Reason<'a>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        voids: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        discarded_bytes: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        discarded_sha256: Option<String>,
    },
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Action<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Adopt { .. } => "adopt",
            Action::Grant { .. } => "grant",
            Action::Revoke { .. } => "revoke",
            Action::Unrevoke { .. } => "unrevoke",
            Action::Freeze { .. } => "freeze",
            Action::Thaw { .. } => "thaw",
            Action::Prune { .. } => "prune",
            Action::Repair { .. } => "repair",
            Action::HostAdd { .. } => "host_add",
            Action::HostRemove { .. } => "host_remove",
            Action::PersonAdd { .. } => "person_add",
            Action::PersonRemove { .. } => "person_remove",
            Action::PersonKeyAdd { .. } => "person_key_add",
            Action::RequestOpen { .. } => "request_open",
            Action::RequestApprove { .. } => "request_approve",
            Action::RequestGrant { .. } => "request_grant",
            Action::RequestDeny { .. } => "request_deny",
            Action::RequestExpire { .. } => "request_expire",
            Action::RequestDone { .. } => "request_done",
            Action::RequestReview { .. } => "request_review",
        }
    }

    /// Whether the record stands for an edit of the document (which an
    /// interruption may have kept from taking effect), rather than a
    /// statement about the document as it already is.
    pub fn is_edit(&self) -> bool {
        matches!(
            self,
            Action::Grant { .. }
                | Action::Revoke { .. }
                | Action::Unrevoke { .. }
                | Action::Freeze { .. }
                | Action::Thaw { .. }
                | Action::Prune { .. }
                | Action::RequestGrant { .. }
                | Action::RequestDone { .. }
        )
    }

    /// Applies the change this record stands for to `policy`, as the
    /// command that wrote it did (the record's serial is the caller's to
    /// set). Replaying a trail from its start gives the document as it was
    /// after each record: how the server rebuilds its policy, and how a
    /// replica follows another's changes. Records that do not change the
    /// document (repairs, the server's hosts and people) leave it as it is.
    pub fn apply(&self, policy: &mut Policy<'static>) -> Result<(), ReplayError> {
        fn remove_revocation(
            policy: &mut Policy<'static>,
            r: &Revocation<'_>,
        ) -> Result<(), ReplayError> {
            let at = policy
                .revocations
                .iter()
                .position(|x| x == r)
                .ok_or_else(|| ReplayError::NoSuchRevocation(r.target.to_string()))?;
            policy.revocations.remove(at);
            Ok(())
        }
        match self {
            Action::Adopt {
                frozen,
                grants,
                revocations,
                ..
            } => {
                policy.frozen = *frozen;
                policy.grants = grants.iter().cloned().map(Grant::into_owned).collect();
                policy.revocations = revocations
                    .iter()
                    .cloned()
                    .map(Revocation::into_owned)
                    .collect();
            }
            Action::Grant { grant, .. } | Action::RequestGrant { grant, .. } => {
                if policy.grant(grant.id.as_str()).is_some() {
                    return Err(ReplayError::DuplicateGrant(grant.id.to_string()));
                }
                policy.grants.push(grant.clone().into_owned());
            }
            Action::Revoke { revocation } | Action::RequestDone { revocation, .. } => {
                policy.revocations.push(revocation.clone().into_owned());
            }
            Action::Unrevoke { revocations, .. } => {
                for r in revocations {
                    remove_revocation(policy, r)?;
                }
            }
            Action::Freeze { .. } => policy.frozen = true,
            Action::Thaw { .. } => policy.frozen = false,
            Action::Prune {
                grants,
                revocations,
                ..
            } => {
                for id in grants {
                    let at = policy
                        .grants
                        .iter()
                        .position(|g| g.id == *id)
                        .ok_or_else(|| ReplayError::NoSuchGrant(id.to_string()))?;
                    policy.grants.remove(at);
                }
                for r in revocations {
                    remove_revocation(policy, r)?;
                }
            }
            Action::Repair { .. }
            | Action::HostAdd { .. }
            | Action::HostRemove { .. }
            | Action::PersonAdd { .. }
            | Action::PersonRemove { .. }
            | Action::PersonKeyAdd { .. }
            | Action::RequestOpen { .. }
            | Action::RequestApprove { .. }
            | Action::RequestDeny { .. }
            | Action::RequestExpire { .. }
            | Action::RequestReview { .. } => {}
        }
        Ok(())
    }

    pub fn into_owned(self) -> Action<'static> {
        fn rev(v: Vec<Revocation<'_>>) -> Vec<Revocation<'static>> {
            v.into_iter().map(Revocation::into_owned).collect()
        }
        match self {
            Action::Adopt {
                reason,
                frozen,
                grants,
                revocations,
            } => Action::Adopt {
                reason: reason.into_owned(),
                frozen,
                grants: grants.into_iter().map(Grant::into_owned).collect(),
                revocations: rev(revocations),
            },
            Action::Grant { grant, forced } => Action::Grant {
                grant: grant.into_owned(),
                forced,
            },
            Action::Revoke { revocation } => Action::Revoke {
                revocation: revocation.into_owned(),
            },
            Action::Unrevoke {
                reason,
                revocations,
            } => Action::Unrevoke {
                reason: reason.into_owned(),
                revocations: rev(revocations),
            },
            Action::Freeze { reason } => Action::Freeze {
                reason: reason.into_owned(),
            },
            Action::Thaw { reason } => Action::Thaw {
                reason: reason.into_owned(),
            },
            Action::Prune {
                older_than,
                grants,
                revocations,
            } => Action::Prune {
                older_than,
                grants: grants.into_iter().map(GrantId::into_owned).collect(),
                revocations: rev(revocations),
            },
            Action::Repair {
                reason,
                voids,
                discarded_bytes,
                discarded_sha256,
            } => Action::Repair {
                reason: reason.into_owned(),
                voids,
                discarded_bytes,
                discarded_sha256,
            },
            Action::HostAdd { name } => Action::HostAdd {
                name: name.into_owned(),
            },
            Action::HostRemove { name } => Action::HostRemove {
                name: name.into_owned(),
            },
            Action::PersonAdd { person, groups } => Action::PersonAdd {
                person: person.into_owned(),
                groups: groups.into_iter().map(Username::into_owned).collect(),
            },
            Action::PersonRemove { person } => Action::PersonRemove {
                person: person.into_owned(),
            },
            Action::PersonKeyAdd {
                person,
                fingerprint,
            } => Action::PersonKeyAdd {
                person: person.into_owned(),
                fingerprint,
            },
            Action::RequestOpen { request } => Action::RequestOpen {
                request: Box::new(request.into_owned()),
            },
            Action::RequestApprove { id, reason } => Action::RequestApprove {
                id: id.into_owned(),
                reason: reason.map(Reason::into_owned),
            },
            Action::RequestGrant {
                id,
                grant,
                approved_by,
                approvers,
                certificate,
            } => Action::RequestGrant {
                id: id.into_owned(),
                grant: grant.into_owned(),
                approved_by,
                approvers: owned_actors(approvers),
                certificate: certificate.map(|c| Box::new(c.into_owned())),
            },
            Action::RequestDeny { id, reason } => Action::RequestDeny {
                id: id.into_owned(),
                reason: reason.into_owned(),
            },
            Action::RequestExpire { id } => Action::RequestExpire {
                id: id.into_owned(),
            },
            Action::RequestDone { id, revocation } => Action::RequestDone {
                id: id.into_owned(),
                revocation: revocation.into_owned(),
            },
            Action::RequestReview { id, note } => Action::RequestReview {
                id: id.into_owned(),
                note: note.into_owned(),
            },
        }
    }
}

impl Record<'_> {
    pub fn into_owned(self) -> Record<'static> {
        Record {
            seq: self.seq,
            time: self.time,
            actor: self.actor.into_owned(),
            os_user: self.os_user,
            sudo_user: self.sudo_user,
            host: self.host,
            action: self.action.into_owned(),
            serial: self.serial,
            policy_sha256: self.policy_sha256,
            prev: self.prev,
            hash: self.hash,
        }
    }

    /// The record's hash (set on every record read or encoded).
    pub fn hash(&self) -> &str {
        self.hash.as_deref().unwrap_or(ZERO_HASH)
    }
}

/// Encodes a record as one line (with its `\n`) and returns the line and
/// the record's hash. The hash covers the exact bytes of the line without
/// its final `,"hash":"..."` member, so verifying needs no re-encoding.
pub fn encode(record: &Record<'_>) -> Result<(Vec<u8>, String), serde_json::Error> {
    let mut unhashed = record.clone();
    unhashed.hash = None;
    let mut line = serde_json::to_vec(&unhashed)?;
    let hash = sha256_hex(&line);
    // `line` is a JSON object: replace its closing brace.
    line.pop();
    line.extend_from_slice(format!(",\"hash\":\"{hash}\"}}\n").as_bytes());
    Ok((line, hash))
}

/// Why a record could not be replayed onto the document before it: the
/// trail and the document it describes have parted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayError {
    DuplicateGrant(String),
    NoSuchGrant(String),
    NoSuchRevocation(String),
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayError::DuplicateGrant(id) => write!(f, "grant {id} is already in the document"),
            ReplayError::NoSuchGrant(id) => write!(f, "grant {id} is not in the document"),
            ReplayError::NoSuchRevocation(t) => {
                write!(f, "no revocation of {t} in the document to lift")
            }
        }
    }
}

impl std::error::Error for ReplayError {}

/// Why one line is not a good record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// Not a record at all (not JSON, missing fields, invalid values).
    Syntax(String),
    /// A record whose contents no longer match its hash: it was edited.
    Altered,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::Syntax(m) => write!(f, "not a trail record: {m}"),
            LineError::Altered => f.write_str("its contents do not match its hash: it was altered"),
        }
    }
}

/// Decodes one line (without its `\n`) and checks it against its own hash.
pub fn decode(line: &[u8]) -> Result<Record<'_>, LineError> {
    let record: Record<'_> =
        serde_json::from_slice(line).map_err(|e| LineError::Syntax(e.to_string()))?;
    let Some(hash) = record.hash.as_deref() else {
        return Err(LineError::Syntax("no \"hash\"".into()));
    };
    let suffix = format!(",\"hash\":\"{hash}\"}}");
    let Some(body) = line.strip_suffix(suffix.as_bytes()) else {
        return Err(LineError::Syntax("\"hash\" is not the last member".into()));
    };
    let mut hasher = Sha256::new();
    hasher.update(body);
    hasher.update(b"}");
    if base16ct::lower::encode_string(&hasher.finalize()) != hash {
        return Err(LineError::Altered);
    }
    Ok(record)
}

/// The policy file as it is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocState {
    pub sha256: String,
    pub serial: Option<u64>,
}

/// How the trail's end relates to the policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Diagnosis {
    /// No trail and no policy: the first change starts both.
    Fresh,
    /// No trail, but a policy: the trail starts by adopting it.
    Untracked,
    /// The last record produced exactly the current policy.
    Consistent,
    /// The last record's change never took effect: the edit stopped after
    /// appending it and before replacing the policy, whose new version is
    /// still in the temp file. Voided automatically by the next edit.
    Interrupted { seq: u64 },
    /// Anything else: records were removed from the end, or the policy was
    /// changed, restored or removed outside sshjit. Needs `audit repair`.
    Mismatch { explanation: String },
}

impl Diagnosis {
    /// Whether an edit may mend it on its own: only sshjit's own
    /// interruptions qualify, never a change made by someone else.
    pub fn is_automatic(&self) -> bool {
        !matches!(self, Diagnosis::Mismatch { .. })
    }
}

/// Compares the last complete records (oldest first, at most the last two
/// are used) with the current policy and the temp file an interrupted edit
/// leaves behind. `exists`: whether there is a trail file at all.
pub fn diagnose(
    last: &[Record<'_>],
    exists: bool,
    current: Option<&DocState>,
    tmp: Option<&str>,
) -> Diagnosis {
    let Some(head) = last.last() else {
        // A trail is created with its first record in place, so one
        // without a complete record was emptied or cut short.
        return match (exists, current) {
            (true, _) => Diagnosis::Mismatch {
                explanation: "the trail holds no complete record: it was emptied or cut short"
                    .into(),
            },
            (false, Some(_)) => Diagnosis::Untracked,
            (false, None) => Diagnosis::Fresh,
        };
    };
    let current_sha = current.map(|c| c.sha256.as_str());
    if head.policy_sha256.as_deref() == current_sha {
        return Diagnosis::Consistent;
    }
    let before: Option<Option<&str>> = match last {
        [.., before, _] => Some(before.policy_sha256.as_deref()),
        [_] if head.seq == 1 => Some(None),
        _ => None,
    };
    let interrupted = head.action.is_edit()
        && before == Some(current_sha)
        && head.policy_sha256.is_some()
        && tmp == head.policy_sha256.as_deref();
    if interrupted {
        return Diagnosis::Interrupted { seq: head.seq };
    }
    let head_desc = format!(
        "the last trail record ({} {} at {}) produced {}",
        head.seq,
        head.action.name(),
        head.time,
        describe_state(head.serial, head.policy_sha256.as_deref())
    );
    let now_desc = match current {
        Some(c) => format!(
            "the policy file is {}",
            describe_state(c.serial, Some(&c.sha256))
        ),
        None => "there is no policy file".into(),
    };
    let why = if head.action.is_edit() && before == Some(current_sha) {
        "the policy was put back as it was before that change (restored or edited outside sshjit), or that change was interrupted and its temp file removed"
    } else {
        "records were removed from the end of the trail, or the policy was changed outside sshjit"
    };
    Diagnosis::Mismatch {
        explanation: format!("{head_desc}, but {now_desc}: {why}"),
    }
}

fn describe_state(serial: Option<u64>, sha: Option<&str>) -> String {
    match (serial, sha) {
        (_, None) => "no policy file".into(),
        (Some(s), Some(h)) => format!("serial {s} (sha256 {})", &h[..h.len().min(16)]),
        (None, Some(h)) => format!(
            "a document without serial (sha256 {})",
            &h[..h.len().min(16)]
        ),
    }
}

#[cfg(test)]
mod tests;
