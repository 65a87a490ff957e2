//! Remote administration, for members of group `admin` with a session that
//! passed TOTP:
//!
//! - `POST /v1/admin/change`: a change as `sshjit grant|revoke|unrevoke|
//!   freeze|thaw --server` sends it; applied by the same code that edits a
//!   policy file, so the checks, refusals and output are the same. The
//!   answer is what the command prints; a refusal carries the kind that
//!   decides the command's exit status.
//! - `GET /v1/admin/policy`: the whole document, as a policy file holds
//!   it (`sshjit list --server`).
//! - `GET /v1/admin/trail`: every record, as a trail file holds them
//!   (`sshjit report --server`, which verifies the chain itself).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sshjit::commands::change::{Applied, Change, Place, apply};
use sshjit::commands::{Failure, FailureKind};
use sshjit::store::{Edit, Who};
use sshjit_policy::Actor;
use sshjit_policy::time::Timestamp;

use super::session::{Authenticated, authenticate};
use super::{App, error_response};
use crate::ledger::{Decision, LedgerError};
use crate::log;
use crate::ops::OpError;
use crate::store::Effect;
use crate::webhook::Webhook;

/// Records read from the store at a time for the trail.
const TRAIL_BATCH: u32 = 4096;

/// The session's person, when an admin who passed TOTP.
async fn admin(app: &App, headers: &HeaderMap) -> Result<Authenticated, OpError> {
    may_administer(authenticate(app, headers).await?)
}

/// `who`, when an admin whose session passed TOTP.
pub(super) fn may_administer(who: Authenticated) -> Result<Authenticated, OpError> {
    if !who.in_group("admin") {
        return Err(OpError::Forbidden(format!(
            "{} is not in group admin",
            who.person.name
        )));
    }
    if !who.session.totp {
        return Err(OpError::Forbidden(
            "administration needs a session that passed TOTP".into(),
        ));
    }
    Ok(who)
}

/// Why a change was not made: the command's own refusal, or the server's.
pub(super) enum ChangeError {
    Failure(Failure),
    Op(OpError),
}

impl From<LedgerError> for ChangeError {
    fn from(e: LedgerError) -> Self {
        ChangeError::Op(e.into())
    }
}

impl From<OpError> for ChangeError {
    fn from(e: OpError) -> Self {
        ChangeError::Op(e)
    }
}

fn failure_response(f: &Failure) -> Response {
    let (status, kind) = match f.kind {
        FailureKind::Usage => (StatusCode::BAD_REQUEST, "usage"),
        FailureKind::Refused => (StatusCode::CONFLICT, "refused"),
        FailureKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    (
        status,
        Json(serde_json::json!({ "error": f.message, "kind": kind })),
    )
        .into_response()
}

pub async fn change(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let result = do_change(&app, &headers, &body).await;
    let response = match &result {
        Ok(applied) => Json(applied).into_response(),
        Err(ChangeError::Failure(f)) => failure_response(f),
        Err(ChangeError::Op(e)) => error_response(e),
    };
    app.metrics
        .request("admin_change", response.status().as_u16());
    response
}

async fn do_change(app: &App, headers: &HeaderMap, body: &[u8]) -> Result<Applied, ChangeError> {
    let person = admin(app, headers).await?;
    let change: Change<'_> = serde_json::from_slice(body)
        .map_err(|e| ChangeError::Failure(Failure::usage(format!("the change: {e}"))))?;
    apply_change(app, &person, &change).await
}

/// Applies `change` for `person` (an admin: [`may_administer`]), records
/// it and logs it: `sshjit grant|revoke|... --server` and the console.
pub(super) async fn apply_change(
    app: &App,
    person: &Authenticated,
    change: &Change<'_>,
) -> Result<Applied, ChangeError> {
    let actor = Actor::new(person.person.name.clone())
        .map_err(|e| OpError::Internal(e.to_string()))?
        .into_owned();
    let who = Who {
        actor,
        os_user: person.person.name.clone(),
        sudo_user: None,
        host: String::new(),
    };
    let now = Timestamp::from_unix(Timestamp::now().unix_seconds(), 0);
    let place = Place {
        origin: "the server's policy",
        max_grant: app.config.max_grant,
    };
    let (applied, committed) = app
        .ledger
        .commit(&who, |view| {
            let mut policy = (*view.policy).clone();
            match apply(change, &mut policy, &who, now, &place) {
                Ok(Edit::Unchanged(a)) => Ok(Decision::Unchanged(a)),
                Ok(Edit::Change { action, value }) => Ok(Decision::Change {
                    action,
                    policy: Some(Box::new(policy)),
                    effect: Effect::None,
                    value,
                }),
                Err(f) => Err(ChangeError::Failure(f)),
            }
        })
        .await?;
    let mut fields = vec![
        ("person", person.person.name.clone()),
        ("change", change.name().to_owned()),
    ];
    if let Some(c) = &committed {
        app.metrics
            .changes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        fields.push(("seq", c.seq.to_string()));
        fields.push(("serial", c.serial.to_string()));
        fields.push(("hash", c.hash.clone()));
        if let (Some(hook), Some(event)) = (&app.webhook, Webhook::event(&c.record)) {
            hook.send(event);
        }
    } else {
        fields.push(("outcome", "unchanged".into()));
    }
    if let Some(id) = &applied.grant {
        fields.push(("grant", id.clone()));
    }
    let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    log::event("change", &refs);
    Ok(applied)
}

pub async fn policy(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let result = async {
        admin(&app, &headers).await?;
        let view = app.ledger.view();
        let mut policy = (*view.policy).clone();
        policy.serial = Some(view.serial);
        policy
            .to_document()
            .map_err(|e| OpError::Internal(e.to_string()))
    }
    .await;
    let response = match result {
        Ok(doc) => ([(header::CONTENT_TYPE, "application/json")], doc).into_response(),
        Err(e) => error_response(&e),
    };
    app.metrics
        .request("admin_policy", response.status().as_u16());
    response
}

pub async fn trail(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let result = async {
        admin(&app, &headers).await?;
        trail_lines(&app).await
    }
    .await;
    let response = match result {
        Ok(lines) => ([(header::CONTENT_TYPE, "application/jsonl")], lines).into_response(),
        Err(e) => error_response(&e),
    };
    app.metrics
        .request("admin_trail", response.status().as_u16());
    response
}

impl ChangeError {
    /// The HTTP status `POST /v1/admin/change` answers it with.
    pub(super) fn status(&self) -> u16 {
        match self {
            ChangeError::Failure(f) => match f.kind {
                FailureKind::Usage => 400,
                FailureKind::Refused => 409,
                FailureKind::Internal => 500,
            },
            ChangeError::Op(e) => e.status(),
        }
    }

    /// What the person is told.
    pub(super) fn message(&self) -> &str {
        match self {
            ChangeError::Failure(f) => &f.message,
            ChangeError::Op(e) => e.message(),
        }
    }
}

/// Every record of the trail, as a trail file holds them.
pub(super) async fn trail_lines(app: &App) -> Result<Vec<u8>, OpError> {
    let store = app.ledger.store();
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let batch = store.records_after(after, TRAIL_BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = last.seq;
        for r in batch {
            out.extend_from_slice(&r.line);
        }
    }
    Ok(out)
}
