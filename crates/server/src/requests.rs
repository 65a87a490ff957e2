//! Self-service access requests: a person asks through a role, the role's
//! rules decide (approvers, on call, automatic, break-glass), and approval
//! adds a grant to the policy — the requester's key, or the principal
//! grant of a certificate the user CA signs for their key.
//!
//! States: `pending` → `approved` (enough distinct approvers, none of them
//! the requester; or at once when the role needs none, the requester is on
//! call, or the role is break-glass) | `denied` | `expired` (nobody decided
//! before `pending_until`); `approved` → `done` (`sshjit done`: a
//! revocation of its grant). What a person sees is derived from that and
//! the policy: an approved request whose window ran out shows `expired`,
//! one whose grant or certificate a revocation names shows `revoked`.
//!
//! Every step is a trail record committed with the request's row
//! (`requests` table) in one transaction. A step is decided against the
//! row read just before and the ledger's view at that moment; when the
//! view moved on in between (another change here or on a replica), the
//! row is read again and the step decided again, so two approvers on two
//! servers never both count as "the first".

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sshjit::log::{Severity, Syslog};
use sshjit::store::Who;
use sshjit::store::request::{
    AccessRequest, ApprovedBy, Issue, IssuedCertificate, RequestId, RoleName,
};
use sshjit::store::trail::Action;
use sshjit_policy::evaluate::revocation_of;
use sshjit_policy::time::{Timestamp, format_duration};
use sshjit_policy::{
    Actor, AuthorizedKey, Grant, GrantId, HostPattern, Principal, Reason, Revocation, Subject,
    Target, Username,
};

use crate::ca::{CertificateRequest, UserCa};
use crate::ledger::{Committed, Decision, Ledger, LedgerError, View};
use crate::log;
use crate::oncall::OnCall;
use crate::ops::OpError;
use crate::roles::{Role, Roles, any_includes};
use crate::store::{Effect, RequestQuery, RequestRow, StoreError};
use crate::webhook::Webhook;

/// Longest reason a request may give (the grant's reason adds the
/// requester's name to it, within the policy's 1024 bytes).
const MAX_REASON: usize = 900;
/// Most host globs in one request.
const MAX_HOSTS: usize = 64;
/// How many times a step is decided again after the view moved on.
const ATTEMPTS: usize = 16;
/// How far a certificate's start is put back for hosts whose clocks lag.
const CLOCK_SKEW: i64 = 60;
/// Most requests listed at once.
pub const MAX_LISTED: u32 = 1000;

/// What the request flow needs besides the ledger.
pub struct Flow {
    pub roles: Roles,
    pub oncall: OnCall,
    pub ca: Option<UserCa>,
    /// How long a request may wait for its approvals.
    pub ttl: Duration,
    /// Where alerts go (break-glass), besides the server's own log.
    pub syslog: Syslog,
}

/// One approval, as kept.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Approval {
    pub by: String,
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A step taken, as kept: who, when, and what they said.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    pub by: String,
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// The stored state (the row's state column).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Approved,
    Denied,
    Expired,
    Done,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Denied => "denied",
            State::Expired => "expired",
            State::Done => "done",
        }
    }
}

/// A request as the server keeps it (the row's body).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stored<'a> {
    #[serde(borrow)]
    pub request: AccessRequest<'a>,
    pub created_at: Timestamp,
    pub state: State,
    #[serde(default)]
    pub approvals: Vec<Approval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<ApprovedBy>,
    /// When access ends (set at approval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_serial: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied: Option<Step>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Step>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Step>,
}

impl Stored<'_> {
    fn into_owned(self) -> Stored<'static> {
        Stored {
            request: self.request.into_owned(),
            created_at: self.created_at,
            state: self.state,
            approvals: self.approvals,
            approved_at: self.approved_at,
            approved_by: self.approved_by,
            expires_at: self.expires_at,
            certificate: self.certificate,
            cert_serial: self.cert_serial,
            principal: self.principal,
            denied: self.denied,
            ended: self.ended,
            review: self.review,
        }
    }

    fn row(&self, seq: u64) -> Result<RequestRow, ReqError> {
        Ok(RequestRow {
            id: self.request.id.to_string(),
            requester: self.request.requester.to_string(),
            role: self.request.role.to_string(),
            state: self.state.as_str().to_owned(),
            created_at: self.created_at.unix_seconds(),
            pending_until: self.request.pending_until.unix_seconds(),
            cert_serial: self.cert_serial.map(|s| s as i64),
            review_due: self.request.break_glass
                && self.review.is_none()
                && self.approved_at.is_some(),
            updated_seq: seq as i64,
            body: serde_json::to_string(self)
                .map_err(|e| ReqError::Op(OpError::Internal(format!("encoding a request: {e}"))))?,
        })
    }
}

/// Reads a row's body.
pub fn decode(row: &RequestRow) -> Result<Stored<'static>, OpError> {
    serde_json::from_str::<Stored<'_>>(&row.body)
        .map(Stored::into_owned)
        .map_err(|e| OpError::Internal(format!("request {} in the store: {e}", row.id)))
}

/// Why a step was not taken, or that it must be decided again.
pub enum ReqError {
    Op(OpError),
    /// The view moved on since the row was read.
    Retry,
}

impl From<LedgerError> for ReqError {
    fn from(e: LedgerError) -> Self {
        ReqError::Op(e.into())
    }
}

impl From<OpError> for ReqError {
    fn from(e: OpError) -> Self {
        ReqError::Op(e)
    }
}

impl From<StoreError> for ReqError {
    fn from(e: StoreError) -> Self {
        ReqError::Op(e.into())
    }
}

fn refused(m: impl Into<String>) -> ReqError {
    ReqError::Op(OpError::Forbidden(m.into()))
}

fn conflict(m: impl Into<String>) -> ReqError {
    ReqError::Op(OpError::Exists(m.into()))
}

/// A person acting, as the session says.
pub struct Person<'a> {
    pub name: &'a str,
    pub groups: &'a [String],
    /// The session passed a TOTP code.
    pub totp: bool,
}

impl Person<'_> {
    fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == "admin")
    }

    fn who(&self) -> Result<Who, OpError> {
        Ok(Who {
            actor: Actor::new(self.name.to_owned())
                .map_err(|e| OpError::Internal(e.to_string()))?
                .into_owned(),
            os_user: self.name.to_owned(),
            sudo_user: None,
            host: String::new(),
        })
    }
}

/// What `sshjit request` sends.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ask {
    pub role: String,
    pub account: String,
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Seconds.
    pub duration: u64,
    pub reason: String,
    /// The public key (authorized_keys form).
    pub key: String,
}

fn now() -> Timestamp {
    Timestamp::from_unix(Timestamp::now().unix_seconds(), 0)
}

/// A fresh request id: `r-YYYYMMDD-` and 8 random hex digits.
fn new_id(now: Timestamp) -> Result<RequestId<'static>, OpError> {
    let c = now.to_civil();
    let mut random = [0u8; 4];
    getrandom::getrandom(&mut random)
        .map_err(|e| OpError::Internal(format!("no random bytes: {e}")))?;
    RequestId::new(format!(
        "r-{:04}{:02}{:02}-{}",
        c.year,
        c.month,
        c.day,
        base16ct::lower::encode_string(&random)
    ))
    .map(RequestId::into_owned)
    .map_err(|e| OpError::Internal(e.to_string()))
}

/// Checks what was asked against the role; the request to record.
fn check_ask<'f>(
    flow: &'f Flow,
    person: &Person<'_>,
    ask: &Ask,
    now: Timestamp,
) -> Result<(AccessRequest<'static>, &'f Role), OpError> {
    let forbidden = |m: String| OpError::Forbidden(m);
    let role =
        RoleName::new(ask.role.as_str()).map_err(|e| OpError::Usage(format!("--role: {e}")))?;
    let role = flow.roles.get(role.as_str()).ok_or_else(|| {
        let names: Vec<&str> = flow.roles.roles.keys().map(String::as_str).collect();
        OpError::NotFound(format!(
            "no role {}: the roles are {}",
            ask.role,
            if names.is_empty() {
                "(none configured)".into()
            } else {
                names.join(", ")
            }
        ))
    })?;
    if !any_includes(&role.requesters, person.name, person.groups) {
        return Err(forbidden(format!(
            "{} may not ask for role {}: its requesters are {}",
            person.name,
            role.name,
            role.requesters
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if role.totp && !person.totp {
        return Err(forbidden(format!(
            "role {} needs a session that passed TOTP: log in with a password and code",
            role.name
        )));
    }
    let account = Username::new(ask.account.clone())
        .map_err(|e| OpError::Usage(format!("--as: {e}")))?
        .into_owned();
    if !role.accounts.contains(&account) {
        return Err(forbidden(format!(
            "account {account} is not in role {}: {}",
            role.name,
            role.allows()
        )));
    }
    if ask.hosts.len() > MAX_HOSTS {
        return Err(OpError::Usage(format!("--host: at most {MAX_HOSTS} globs")));
    }
    let mut hosts = Vec::new();
    for h in &ask.hosts {
        let h = HostPattern::new(h.clone())
            .map_err(|e| OpError::Usage(format!("--host: {e}")))?
            .into_owned();
        if !role.covers_host(&h) {
            return Err(forbidden(format!(
                "hosts {h} are not all within role {}: {}",
                role.name,
                role.allows()
            )));
        }
        hosts.push(h);
    }
    if hosts.is_empty() {
        hosts = role.hosts.clone();
    }
    if ask.duration == 0 {
        return Err(OpError::Usage("--for: longer than 0s".into()));
    }
    if Duration::from_secs(ask.duration) > role.max {
        return Err(forbidden(format!(
            "{} is longer than role {} allows: {}",
            format_duration(Duration::from_secs(ask.duration)),
            role.name,
            role.allows()
        )));
    }
    if ask.reason.len() > MAX_REASON {
        return Err(OpError::Usage(format!(
            "--reason: longer than {MAX_REASON} bytes"
        )));
    }
    let reason = Reason::new(ask.reason.clone())
        .map_err(|e| OpError::Usage(format!("--reason: {e}")))?
        .into_owned();
    if let Some(p) = &role.reason_pattern
        && !p.is_match(reason.as_str())
    {
        return Err(forbidden(format!(
            "the reason does not match role {}'s reason_pattern {:?}",
            role.name,
            p.as_str()
        )));
    }
    let key = AuthorizedKey::parse(ask.key.trim().to_owned())
        .map_err(|e| OpError::Usage(format!("--key: {e}")))?
        .into_owned();
    if role.issue == Issue::Certificate && flow.ca.is_none() {
        return Err(OpError::Unavailable(format!(
            "role {} issues certificates, but this server has no user_ca_key",
            role.name
        )));
    }
    let request = AccessRequest {
        id: new_id(now)?,
        requester: Username::new(person.name.to_owned())
            .map_err(|e| OpError::Internal(e.to_string()))?
            .into_owned(),
        role: role.name.clone(),
        account,
        hosts,
        duration: ask.duration,
        reason,
        key,
        issue: role.issue,
        approvals: role.approvals,
        break_glass: role.break_glass,
        pending_until: now.saturating_add(flow.ttl),
    };
    Ok((request, role))
}

/// Decides a step against the row as read and the view, again when the
/// view moved on in between; the committed record and the row after it.
async fn step(
    ledger: &Ledger,
    who: &Who,
    id: &str,
    decide: impl Fn(&View, Stored<'static>) -> Result<Decision<Stored<'static>>, ReqError>,
) -> Result<(Stored<'static>, Option<Committed>), OpError> {
    for _ in 0..ATTEMPTS {
        let seq = ledger.view().seq;
        let row = ledger
            .store()
            .request(id)
            .await?
            .ok_or_else(|| OpError::NotFound(format!("no request {id}")))?;
        let stored = decode(&row)?;
        let result = ledger
            .commit(who, |view| {
                if view.seq != seq {
                    return Err(ReqError::Retry);
                }
                decide(view, stored.clone())
            })
            .await;
        match result {
            Ok(done) => return Ok(done),
            Err(ReqError::Retry) => continue,
            Err(ReqError::Op(e)) => return Err(e),
        }
    }
    Err(OpError::Unavailable(
        "the policy kept changing while deciding: try again".into(),
    ))
}

/// A change that records `action` and leaves the request as `after`.
fn change(
    view: &View,
    action: Action<'static>,
    policy: Option<sshjit_policy::Policy<'static>>,
    after: Stored<'static>,
) -> Result<Decision<Stored<'static>>, ReqError> {
    let row = after.row(view.seq + 1)?;
    Ok(Decision::Change {
        action: Box::new(action),
        policy: policy.map(Box::new),
        effect: Effect::RequestPut(row),
        value: after,
    })
}

/// The state a person sees: the stored one, unless time or a revocation
/// has ended it since.
pub fn shown_state(
    s: &Stored<'_>,
    policy: &sshjit_policy::Policy<'_>,
    now: Timestamp,
) -> &'static str {
    match s.state {
        State::Pending if now >= s.request.pending_until => "expired",
        State::Approved => {
            if revoked(s, policy) {
                "revoked"
            } else if s.expires_at.is_some_and(|e| now >= e) {
                "expired"
            } else {
                "approved"
            }
        }
        other => other.as_str(),
    }
}

/// Whether a revocation in the policy names the request's grant or
/// certificate.
fn revoked(s: &Stored<'_>, policy: &sshjit_policy::Policy<'_>) -> bool {
    let id = s.request.id.as_str();
    if let Some(g) = policy.grant(id)
        && revocation_of(policy, g).is_some()
    {
        return true;
    }
    policy.revocations.iter().any(|r| match &r.target {
        Target::KeyId(k) => s.certificate.is_some() && k.as_str() == id,
        Target::Serial(n) => s.cert_serial == Some(*n),
        Target::Fingerprint(fp) => s.request.key.fingerprint() == *fp,
        _ => false,
    })
}

impl Flow {
    /// `POST /v1/requests`: records the request, then approves it at once
    /// when the role lets it.
    pub async fn open(
        &self,
        ledger: &Ledger,
        hook: Option<&Webhook>,
        person: &Person<'_>,
        ask: &Ask,
    ) -> Result<Stored<'static>, OpError> {
        let now = now();
        let (request, role) = check_ask(self, person, ask, now)?;
        let who = person.who()?;
        let stored = Stored {
            request: request.clone(),
            created_at: now,
            state: State::Pending,
            approvals: Vec::new(),
            approved_at: None,
            approved_by: None,
            expires_at: None,
            certificate: None,
            cert_serial: None,
            principal: None,
            denied: None,
            ended: None,
            review: None,
        };
        let (stored, committed) = ledger
            .commit(&who, |view| {
                let row = stored.row(view.seq + 1)?;
                Ok::<_, ReqError>(Decision::Change {
                    action: Box::new(Action::RequestOpen {
                        request: Box::new(request.clone()),
                    }),
                    policy: None,
                    // An id taken already (32 random bits a day) is refused,
                    // never written over.
                    effect: Effect::RequestAdd(row),
                    value: stored.clone(),
                })
            })
            .await
            .map_err(|e| match e {
                ReqError::Op(e) => e,
                ReqError::Retry => OpError::Internal("retry outside a step".into()),
            })?;
        self.notify(hook, committed.as_ref());
        let id = stored.request.id.to_string();
        let at_once = if role.break_glass {
            Some(ApprovedBy::BreakGlass)
        } else if role.approvals == 0 {
            Some(ApprovedBy::Automatic)
        } else if self.oncall.schedule().on_call(
            person.name,
            person.groups,
            role.name.as_str(),
            now.unix_seconds(),
        ) {
            Some(ApprovedBy::OnCall)
        } else {
            None
        };
        let Some(rule) = at_once else {
            return Ok(stored);
        };
        let server = Who {
            actor: Actor::new(format!("sshjit-server ({})", rule.as_str()))
                .map_err(|e| OpError::Internal(e.to_string()))?
                .into_owned(),
            os_user: person.name.to_owned(),
            sudo_user: None,
            host: String::new(),
        };
        let (stored, committed) = step(ledger, &server, &id, |view, s| {
            if s.state != State::Pending {
                return Ok(Decision::Unchanged(s));
            }
            self.grant(view, s, rule, Vec::new())
        })
        .await?;
        self.notify(hook, committed.as_ref());
        Ok(stored)
    }

    /// The decision that gives access: the grant added to the policy and,
    /// for a certificate role, the certificate signed.
    fn grant(
        &self,
        view: &View,
        mut s: Stored<'static>,
        rule: ApprovedBy,
        approvers: Vec<Actor<'static>>,
    ) -> Result<Decision<Stored<'static>>, ReqError> {
        let now = now();
        let r = &s.request;
        let expires_at = now.saturating_add(Duration::from_secs(r.duration));
        let id = GrantId::new(r.id.to_string())
            .map_err(|e| ReqError::Op(OpError::Internal(e.to_string())))?
            .into_owned();
        let principal = format!("{}@{}", r.requester, r.id);
        let subject = match r.issue {
            Issue::Grant => Subject::Key(r.key.clone()),
            Issue::Certificate => Subject::Principal(
                Principal::new(principal.clone())
                    .map_err(|e| ReqError::Op(OpError::Internal(e.to_string())))?
                    .into_owned(),
            ),
        };
        let by = match rule {
            ApprovedBy::Approvers => approvers
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            ApprovedBy::Automatic => "sshjit-server (automatic)".into(),
            ApprovedBy::OnCall => format!("sshjit-server ({} on call)", r.requester),
            ApprovedBy::BreakGlass => format!("{} (break-glass)", r.requester),
        };
        let granted_by = Actor::new(
            sshjit_policy::text::quote_for_display(&by, 100)
                .trim_matches('"')
                .to_owned(),
        )
        .map_err(|e| ReqError::Op(OpError::Internal(e.to_string())))?
        .into_owned();
        let reason = Reason::new(format!("requested by {}: {}", r.requester, r.reason))
            .map_err(|e| ReqError::Op(OpError::Internal(e.to_string())))?
            .into_owned();
        let grant = Grant {
            id,
            user: r.account.clone(),
            subject,
            hosts: r.hosts.clone(),
            not_before: None,
            expires_at,
            reason,
            granted_by: Some(granted_by),
            break_glass: r.break_glass,
            from: Vec::new(),
            command: None,
            restrict: false,
        };
        if view.policy.grant(grant.id.as_str()).is_some() {
            return Err(conflict(format!(
                "the policy already has a grant {}",
                grant.id
            )));
        }
        if let Some(i) = revocation_of(&view.policy, &grant) {
            return Err(refused(format!(
                "a revocation in the policy (revocations[{i}], {}) would stop this access from the start: lift it first",
                view.policy.revocations[i].target
            )));
        }
        let certificate = match r.issue {
            Issue::Grant => None,
            Issue::Certificate => {
                let ca = self.ca.as_ref().ok_or_else(|| {
                    ReqError::Op(OpError::Unavailable(
                        "this server has no user_ca_key".into(),
                    ))
                })?;
                // The number of the record that issues it: unique in the store.
                let serial = view.seq + 1;
                let valid_after = now.unix_seconds() - CLOCK_SKEW;
                let text = ca
                    .sign(&CertificateRequest {
                        key: &r.key,
                        serial,
                        key_id: r.id.as_str(),
                        principal: &principal,
                        valid_after,
                        valid_before: expires_at.unix_seconds(),
                    })
                    .map_err(|e| ReqError::Op(OpError::Internal(e)))?;
                s.certificate = Some(text);
                s.cert_serial = Some(serial);
                Some(Box::new(IssuedCertificate {
                    serial,
                    key_id: r.id.clone(),
                    principal: Principal::new(principal.clone())
                        .map_err(|e| ReqError::Op(OpError::Internal(e.to_string())))?
                        .into_owned(),
                    valid_after: Timestamp::from_unix(valid_after, 0),
                    valid_before: expires_at,
                    fingerprint: r.key.fingerprint(),
                    ca: ca.fingerprint(),
                }))
            }
        };
        let mut policy = (*view.policy).clone();
        policy.grants.push(grant.clone());
        let action = Action::RequestGrant {
            id: s.request.id.clone(),
            grant,
            approved_by: rule,
            approvers,
            certificate,
        };
        s.state = State::Approved;
        s.approved_at = Some(now);
        s.approved_by = Some(rule);
        s.expires_at = Some(expires_at);
        if s.request.issue == Issue::Certificate {
            s.principal = Some(principal);
        }
        change(view, action, Some(policy), s)
    }

    /// `POST /v1/requests/ID/approve`.
    pub async fn approve(
        &self,
        ledger: &Ledger,
        hook: Option<&Webhook>,
        person: &Person<'_>,
        id: &str,
        reason: Option<&str>,
    ) -> Result<Stored<'static>, OpError> {
        let id = request_id(id)?;
        let reason = reason
            .map(|r| {
                Reason::new(r.to_owned())
                    .map(Reason::into_owned)
                    .map_err(|e| OpError::Usage(format!("--reason: {e}")))
            })
            .transpose()?;
        let who = person.who()?;
        let (stored, committed) = step(ledger, &who, id.as_str(), |view, mut s| {
            let now = now();
            let role = self.role_of(&s)?;
            if s.request.requester.as_str() == person.name {
                return Err(refused(format!(
                    "{} asked for {}: a request is never approved by its requester",
                    person.name, s.request.id
                )));
            }
            if !any_includes(&role.approvers, person.name, person.groups) {
                return Err(refused(format!(
                    "{} is not an approver of role {}",
                    person.name, role.name
                )));
            }
            if !person.totp {
                return Err(refused(
                    "approving needs a session that passed TOTP: log in with a password and code",
                ));
            }
            pending(&s, now)?;
            if s.approvals.iter().any(|a| a.by == person.name) {
                return Err(conflict(format!(
                    "{} already approved {}: it needs {} distinct approvers",
                    person.name, s.request.id, s.request.approvals
                )));
            }
            s.approvals.push(Approval {
                by: person.name.to_owned(),
                at: now,
                reason: reason.as_ref().map(ToString::to_string),
            });
            if (s.approvals.len() as u32) < s.request.approvals {
                let action = Action::RequestApprove {
                    id: s.request.id.clone(),
                    reason: reason.clone(),
                };
                return change(view, action, None, s);
            }
            let approvers = s
                .approvals
                .iter()
                .filter_map(|a| Actor::new(a.by.clone()).ok().map(Actor::into_owned))
                .collect();
            self.grant(view, s, ApprovedBy::Approvers, approvers)
        })
        .await?;
        self.notify(hook, committed.as_ref());
        Ok(stored)
    }

    /// `POST /v1/requests/ID/deny`: an approver, an admin, or the
    /// requester withdrawing it.
    pub async fn deny(
        &self,
        ledger: &Ledger,
        hook: Option<&Webhook>,
        person: &Person<'_>,
        id: &str,
        reason: &str,
    ) -> Result<Stored<'static>, OpError> {
        let id = request_id(id)?;
        let reason = Reason::new(reason.to_owned())
            .map_err(|e| OpError::Usage(format!("--reason: {e}")))?
            .into_owned();
        let who = person.who()?;
        let (stored, committed) = step(ledger, &who, id.as_str(), |view, mut s| {
            let now = now();
            let own = s.request.requester.as_str() == person.name;
            let approver = self
                .role_of(&s)
                .is_ok_and(|r| any_includes(&r.approvers, person.name, person.groups));
            if !(own || approver || person.is_admin()) {
                return Err(refused(format!(
                    "{} may not deny {}: only its role's approvers, an admin or its requester",
                    person.name, s.request.id
                )));
            }
            pending(&s, now)?;
            s.state = State::Denied;
            s.denied = Some(Step {
                by: person.name.to_owned(),
                at: now,
                text: Some(reason.to_string()),
            });
            let action = Action::RequestDeny {
                id: s.request.id.clone(),
                reason: reason.clone(),
            };
            change(view, action, None, s)
        })
        .await?;
        self.notify(hook, committed.as_ref());
        Ok(stored)
    }

    /// `POST /v1/requests/ID/done`: ends access early with a revocation of
    /// the request's grant (which stops its certificate too).
    pub async fn done(
        &self,
        ledger: &Ledger,
        hook: Option<&Webhook>,
        person: &Person<'_>,
        id: &str,
    ) -> Result<(Stored<'static>, bool), OpError> {
        let id = request_id(id)?;
        let who = person.who()?;
        let (stored, committed) = step(ledger, &who, id.as_str(), |view, mut s| {
            let now = now();
            let own = s.request.requester.as_str() == person.name;
            let approver = self
                .role_of(&s)
                .is_ok_and(|r| any_includes(&r.approvers, person.name, person.groups));
            if !(own || approver || person.is_admin()) {
                return Err(refused(format!(
                    "{} may not end {}: only its requester, its role's approvers or an admin",
                    person.name, s.request.id
                )));
            }
            match s.state {
                State::Done => return Ok(Decision::Unchanged(s)),
                State::Approved => {}
                State::Pending => {
                    return Err(conflict(format!(
                        "{} is still pending: withdraw it with `sshjit deny {} --reason ...`",
                        s.request.id, s.request.id
                    )));
                }
                other => {
                    return Err(conflict(format!(
                        "{} was {}: there is no access to end",
                        s.request.id,
                        other.as_str()
                    )));
                }
            }
            let target = Target::Grant(
                GrantId::new(s.request.id.to_string())
                    .map_err(|e| ReqError::Op(OpError::Internal(e.to_string())))?
                    .into_owned(),
            );
            let mut policy = (*view.policy).clone();
            if policy.revocations.iter().any(|r| r.target == target) {
                return Err(conflict(format!(
                    "{} is already revoked by a revocation of grant {}",
                    s.request.id, s.request.id
                )));
            }
            let revocation = Revocation {
                target,
                reason: Some(
                    Reason::new(format!("{}: ended early by {}", s.request.id, person.name))
                        .map_err(|e| ReqError::Op(OpError::Internal(e.to_string())))?
                        .into_owned(),
                ),
                revoked_at: Some(now),
                revoked_by: Some(who.actor.clone()),
            };
            policy.revocations.push(revocation.clone());
            s.state = State::Done;
            s.ended = Some(Step {
                by: person.name.to_owned(),
                at: now,
                text: None,
            });
            let action = Action::RequestDone {
                id: s.request.id.clone(),
                revocation,
            };
            change(view, action, Some(policy), s)
        })
        .await?;
        self.notify(hook, committed.as_ref());
        Ok((stored, committed.is_some()))
    }

    /// `POST /v1/requests/ID/review`: the note a break-glass request needs.
    pub async fn review(
        &self,
        ledger: &Ledger,
        hook: Option<&Webhook>,
        person: &Person<'_>,
        id: &str,
        note: &str,
    ) -> Result<Stored<'static>, OpError> {
        let id = request_id(id)?;
        let note = Reason::new(note.to_owned())
            .map_err(|e| OpError::Usage(format!("--note: {e}")))?
            .into_owned();
        let who = person.who()?;
        let (stored, committed) = step(ledger, &who, id.as_str(), |view, mut s| {
            if !s.request.break_glass || s.approved_at.is_none() {
                return Err(conflict(format!(
                    "{} is not a break-glass access: it needs no review",
                    s.request.id
                )));
            }
            if !(s.request.requester.as_str() == person.name || person.is_admin()) {
                return Err(refused(format!(
                    "{} may not review {}: only its requester or an admin",
                    person.name, s.request.id
                )));
            }
            if let Some(r) = &s.review {
                return Err(conflict(format!(
                    "{} was reviewed already, by {} at {}",
                    s.request.id, r.by, r.at
                )));
            }
            s.review = Some(Step {
                by: person.name.to_owned(),
                at: now(),
                text: Some(note.to_string()),
            });
            let action = Action::RequestReview {
                id: s.request.id.clone(),
                note: note.clone(),
            };
            change(view, action, None, s)
        })
        .await?;
        self.notify(hook, committed.as_ref());
        Ok(stored)
    }

    /// Records the lapse of every pending request whose time ran out.
    pub async fn expire_lapsed(
        &self,
        ledger: &Ledger,
        hook: Option<&Webhook>,
    ) -> Result<usize, OpError> {
        let now = now();
        let lapsed = ledger
            .store()
            .requests(RequestQuery::Lapsed {
                now: now.unix_seconds(),
            })
            .await?;
        let who = Who {
            actor: Actor::new("sshjit-server").map_err(|e| OpError::Internal(e.to_string()))?,
            os_user: "sshjit-server".into(),
            sudo_user: None,
            host: String::new(),
        };
        let mut n = 0;
        for row in lapsed {
            let (_, committed) = step(ledger, &who, &row.id, |view, mut s| {
                if s.state != State::Pending || now < s.request.pending_until {
                    return Ok(Decision::Unchanged(s));
                }
                s.state = State::Expired;
                let action = Action::RequestExpire {
                    id: s.request.id.clone(),
                };
                change(view, action, None, s)
            })
            .await?;
            if committed.is_some() {
                n += 1;
            }
            self.notify(hook, committed.as_ref());
        }
        Ok(n)
    }

    fn role_of(&self, s: &Stored<'_>) -> Result<&Role, ReqError> {
        self.roles.get(s.request.role.as_str()).ok_or_else(|| {
            refused(format!(
                "role {} of {} is no longer in {}",
                s.request.role, s.request.id, self.roles.origin
            ))
        })
    }

    /// Whether the person may see the request: theirs, an approver of its
    /// role, or an admin.
    pub fn visible(&self, person: &Person<'_>, s: &Stored<'_>) -> bool {
        person.is_admin()
            || s.request.requester.as_str() == person.name
            || self
                .roles
                .get(s.request.role.as_str())
                .is_some_and(|r| any_includes(&r.approvers, person.name, person.groups))
    }

    /// The log line, webhook and (break-glass) alert of a committed step.
    pub fn notify(&self, hook: Option<&Webhook>, committed: Option<&Committed>) {
        let Some(c) = committed else { return };
        let record = &c.record;
        let mut fields: Vec<(&str, String)> = vec![
            ("action", record.action.name().to_owned()),
            ("by", record.actor.to_string()),
            ("seq", c.seq.to_string()),
            ("serial", c.serial.to_string()),
        ];
        let mut alert = false;
        match &record.action {
            Action::RequestOpen { request } => {
                fields.push(("request", request.id.to_string()));
                fields.push(("role", request.role.to_string()));
                fields.push(("account", request.account.to_string()));
            }
            Action::RequestGrant {
                id,
                grant,
                approved_by,
                certificate,
                ..
            } => {
                fields.push(("request", id.to_string()));
                fields.push(("approved_by", approved_by.as_str().to_owned()));
                fields.push(("account", grant.user.to_string()));
                fields.push(("until", grant.expires_at.to_string()));
                if let Some(cert) = certificate {
                    fields.push(("cert_serial", cert.serial.to_string()));
                }
                alert = grant.break_glass;
            }
            Action::RequestApprove { id, .. }
            | Action::RequestDeny { id, .. }
            | Action::RequestExpire { id }
            | Action::RequestDone { id, .. }
            | Action::RequestReview { id, .. } => fields.push(("request", id.to_string())),
            _ => {}
        }
        let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if alert {
            let mut line = sshjit::log::Line::new();
            line.field("event", "break_glass")
                .field("priority", "alert");
            for (k, v) in &refs {
                line.field(k, v);
            }
            self.syslog.log(Severity::Alert, line.as_str());
            log::event(
                "break_glass",
                &[&[("priority", "alert")], refs.as_slice()].concat(),
            );
        } else {
            log::event("request", &refs);
        }
        if let (Some(h), Some(event)) = (hook, Webhook::event(record)) {
            h.send(event);
        }
    }
}

fn request_id(id: &str) -> Result<RequestId<'static>, OpError> {
    RequestId::new(id.to_owned())
        .map(RequestId::into_owned)
        .map_err(|e| OpError::Usage(e.to_string()))
}

/// Refuses a request that is no longer waiting for decisions.
fn pending(s: &Stored<'_>, now: Timestamp) -> Result<(), ReqError> {
    match s.state {
        State::Pending if now >= s.request.pending_until => Err(conflict(format!(
            "{} expired at {}: nobody decided in time; ask again",
            s.request.id, s.request.pending_until
        ))),
        State::Pending => Ok(()),
        other => Err(conflict(format!(
            "{} was already {}",
            s.request.id,
            other.as_str()
        ))),
    }
}

/// A request as `sshjit requests --json` and the web console show it.
pub fn to_json(s: &Stored<'_>, policy: &sshjit_policy::Policy<'_>, now: Timestamp) -> Value {
    let r = &s.request;
    let state = shown_state(s, policy, now);
    let expires_at = s.expires_at.unwrap_or(r.pending_until);
    json!({
        "id": r.id.as_str(),
        "state": state,
        "role": r.role.as_str(),
        "requester": r.requester.as_str(),
        "account": r.account.as_str(),
        "hosts": r.hosts.iter().map(|h| h.as_str()).collect::<Vec<_>>(),
        "reason": r.reason.as_str(),
        "duration": r.duration,
        "issue": r.issue.as_str(),
        "break_glass": r.break_glass,
        "created_at": s.created_at.to_string(),
        "pending_until": r.pending_until.to_string(),
        "expires_at": expires_at.to_string(),
        "approvals_needed": r.approvals,
        "approvals": s.approvals,
        "approved_at": s.approved_at.map(|t| t.to_string()),
        "approved_by": s.approved_by.map(ApprovedBy::as_str),
        "denied": s.denied,
        "ended": s.ended,
        "fingerprint": r.key.fingerprint().to_string(),
        "certificate": s.certificate,
        "cert_serial": s.cert_serial,
        "key_id": s.certificate.as_ref().map(|_| r.id.as_str()),
        "principal": s.principal,
        "review": if r.break_glass && s.approved_at.is_some() {
            json!({
                "due": s.review.is_none(),
                "note": s.review.as_ref().and_then(|x| x.text.clone()),
                "by": s.review.as_ref().map(|x| x.by.clone()),
                "at": s.review.as_ref().map(|x| x.at.to_string()),
            })
        } else {
            Value::Null
        },
    })
}
