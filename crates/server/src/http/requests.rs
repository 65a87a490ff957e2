//! Access requests over HTTP, for people with a session:
//!
//! - `POST /v1/requests` (`sshjit request`): ask; the answer is the
//!   request, already approved when its role lets it be.
//! - `GET /v1/requests[?pending=1]` (`sshjit requests`): the requests the
//!   person may see (theirs, their roles' to approve, all for admins),
//!   newest first; `GET /v1/requests/ID`: one (`--wait` polls it).
//! - `POST /v1/requests/ID/approve|deny|done|review`.
//! - `GET /v1/reviews`: break-glass requests awaiting their review note.
//!
//! Each answer is the request as `requests::to_json` shows it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use sshjit_policy::time::Timestamp;

use super::session::{Authenticated, authenticate};
use super::{App, error_response};
use crate::ops::OpError;
use crate::requests::{Ask, MAX_LISTED, Person, Stored, decode, to_json};
use crate::store::RequestQuery;

/// The request flow's view of a session's person.
pub(super) fn person_of(who: &Authenticated) -> Person<'_> {
    Person {
        name: &who.person.name,
        groups: &who.person.groups,
        totp: who.session.totp,
    }
}

fn answer(app: &App, route: &'static str, result: Result<Value, OpError>) -> Response {
    let response = match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => error_response(&e),
    };
    app.metrics.request(route, response.status().as_u16());
    response
}

fn shown(app: &App, s: &Stored<'_>) -> Value {
    to_json(s, &app.ledger.view().policy, Timestamp::now())
}

pub async fn open(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let who = authenticate(&app, &headers).await?;
        let ask: Ask = serde_json::from_slice(&body)
            .map_err(|e| OpError::Usage(format!("the request: {e}")))?;
        let s = app
            .flow
            .open(&app.ledger, app.webhook.as_ref(), &person_of(&who), &ask)
            .await?;
        Ok(shown(&app, &s))
    }
    .await;
    answer(&app, "request_open", result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    pending: Option<String>,
}

pub async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let result = async {
        let who = authenticate(&app, &headers).await?;
        let query = match q.pending.as_deref() {
            None | Some("0") | Some("false") => RequestQuery::Recent { limit: MAX_LISTED },
            Some(_) => RequestQuery::Pending,
        };
        rows(&app, &who, query).await
    }
    .await;
    answer(&app, "requests", result)
}

async fn rows(app: &App, who: &Authenticated, query: RequestQuery) -> Result<Value, OpError> {
    let p = person_of(who);
    let view = app.ledger.view();
    let now = Timestamp::now();
    let mut out = Vec::new();
    for row in app.ledger.store().requests(query).await? {
        let s = decode(&row)?;
        if app.flow.visible(&p, &s) {
            out.push(to_json(&s, &view.policy, now));
        }
    }
    Ok(Value::Array(out))
}

pub async fn reviews(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let result = async {
        let who = authenticate(&app, &headers).await?;
        rows(&app, &who, RequestQuery::ReviewDue).await
    }
    .await;
    answer(&app, "reviews", result)
}

pub async fn one(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let who = authenticate(&app, &headers).await?;
        let missing = || OpError::NotFound(format!("no request {id} that you may see"));
        if id.len() > 64 {
            return Err(missing());
        }
        let row = app.ledger.store().request(&id).await?.ok_or_else(missing)?;
        let s = decode(&row)?;
        if !app.flow.visible(&person_of(&who), &s) {
            return Err(missing());
        }
        Ok(shown(&app, &s))
    }
    .await;
    answer(&app, "request", result)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Decide {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

pub async fn decide(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path((id, what)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let who = authenticate(&app, &headers).await?;
        let d: Decide = if body.is_empty() {
            Decide::default()
        } else {
            serde_json::from_slice(&body)
                .map_err(|e| OpError::Usage(format!("the decision: {e}")))?
        };
        let p = person_of(&who);
        let (flow, ledger, hook) = (&app.flow, &app.ledger, app.webhook.as_ref());
        let s = match what.as_str() {
            "approve" => {
                flow.approve(ledger, hook, &p, &id, d.reason.as_deref())
                    .await?
            }
            "deny" => {
                let reason = d
                    .reason
                    .as_deref()
                    .ok_or_else(|| OpError::Usage("--reason is required to deny".into()))?;
                flow.deny(ledger, hook, &p, &id, reason).await?
            }
            "done" => flow.done(ledger, hook, &p, &id).await?.0,
            "review" => {
                let note = d
                    .note
                    .as_deref()
                    .ok_or_else(|| OpError::Usage("--note is required".into()))?;
                flow.review(ledger, hook, &p, &id, note).await?
            }
            _ => return Err(OpError::NotFound("no such endpoint".into())),
        };
        Ok(shown(&app, &s))
    }
    .await;
    answer(&app, "request_decide", result)
}
