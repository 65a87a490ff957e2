//! The console's working pages: pending requests with their approve and
//! deny forms and the break-glass reviews due (`/console/requests`);
//! active grants with their revoke forms, and freeze or thaw
//! (`/console/grants`). Each form calls the operation the CLI's command
//! calls, so its rules and refusals are the CLI's; a refusal is shown on
//! the page, with the operation's status.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sshjit::commands::change::Change;
use sshjit_policy::evaluate::{revocation_of, time_refusal};
use sshjit_policy::time::{Timestamp, format_duration};
use sshjit_policy::{GrantId, Reason, Revocation, Subject, Target};

use super::super::admin::{apply_change, may_administer};
use super::super::requests::person_of;
use super::{Frame, MAX_FIELD, Visitor, bounded, html, poster, problem, visitor};
use crate::ops::OpError;
use crate::requests::{Stored, decode, shown_state};
use crate::store::RequestQuery;

/// A request as a row of the page.
pub(super) struct RequestRow {
    id: String,
    requester: String,
    role: String,
    account: String,
    hosts: String,
    duration: String,
    reason: String,
    waiting: String,
    approvals: String,
    break_glass: bool,
    state: &'static str,
}

fn since(then: Timestamp, now: Timestamp) -> String {
    format_duration(then.until(now))
}

fn request_row(s: &Stored<'_>, policy: &sshjit_policy::Policy<'_>, now: Timestamp) -> RequestRow {
    let r = &s.request;
    RequestRow {
        id: r.id.to_string(),
        requester: r.requester.to_string(),
        role: r.role.to_string(),
        account: r.account.to_string(),
        hosts: if r.hosts.is_empty() {
            "the role's hosts".into()
        } else {
            r.hosts
                .iter()
                .map(|h| h.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        },
        duration: format_duration(std::time::Duration::from_secs(r.duration)),
        reason: r.reason.to_string(),
        waiting: since(s.created_at, now),
        approvals: format!("{} of {}", s.approvals.len(), r.approvals),
        break_glass: r.break_glass,
        state: shown_state(s, policy, now),
    }
}

#[derive(Template)]
#[template(path = "console/requests.html")]
struct RequestsPage<'a> {
    frame: Frame<'a>,
    error: Option<&'a str>,
    pending: Vec<RequestRow>,
    reviews: Vec<RequestRow>,
}

async fn request_rows(
    app: &super::App,
    v: &Visitor,
    query: RequestQuery,
    now: Timestamp,
) -> Result<Vec<RequestRow>, OpError> {
    let p = person_of(&v.who);
    let view = app.ledger.view();
    let mut out = Vec::new();
    for row in app.ledger.store().requests(query).await? {
        let s = decode(&row)?;
        if app.flow.visible(&p, &s) {
            out.push(request_row(&s, &view.policy, now));
        }
    }
    Ok(out)
}

async fn requests_page(
    app: &super::App,
    v: &Visitor,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let now = Timestamp::now();
    let rows = async {
        let mut pending = request_rows(app, v, RequestQuery::Pending, now).await?;
        pending.retain(|r| r.state == "pending");
        let reviews = request_rows(app, v, RequestQuery::ReviewDue, now).await?;
        Ok::<_, OpError>((pending, reviews))
    }
    .await;
    match rows {
        Ok((pending, reviews)) => html(
            status,
            &RequestsPage {
                frame: Frame::of(app, v, "requests"),
                error,
                pending,
                reviews,
            },
        ),
        Err(e) => problem(&e),
    }
}

pub(super) async fn requests(State(app): State<Arc<super::App>>, headers: HeaderMap) -> Response {
    let v = match visitor(&app, &headers).await {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    app.metrics.request("console_requests", 200);
    requests_page(&app, &v, StatusCode::OK, None).await
}

#[derive(Deserialize)]
pub(super) struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    note: String,
}

/// Approve, deny or review a request: the request flow's own steps.
pub(super) async fn decide(
    State(app): State<Arc<super::App>>,
    headers: HeaderMap,
    Path((id, what)): Path<(String, String)>,
    Form(f): Form<DecideForm>,
) -> Response {
    let v = match poster(&app, &headers, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let result = async {
        let id = bounded("request id", &id, 64)?;
        let reason = bounded("reason", f.reason.trim(), MAX_FIELD)?;
        let note = bounded("note", f.note.trim(), MAX_FIELD)?;
        let p = person_of(&v.who);
        let (flow, ledger, hook) = (&app.flow, &app.ledger, app.webhook.as_ref());
        match what.as_str() {
            "approve" => {
                let reason = (!reason.is_empty()).then_some(reason);
                flow.approve(ledger, hook, &p, id, reason).await?;
            }
            "deny" => {
                if reason.is_empty() {
                    return Err(OpError::Usage("a reason is required to deny".into()));
                }
                flow.deny(ledger, hook, &p, id, reason).await?;
            }
            "review" => {
                if note.is_empty() {
                    return Err(OpError::Usage("the review note is required".into()));
                }
                flow.review(ledger, hook, &p, id, note).await?;
            }
            _ => return Err(OpError::NotFound("no such step".into())),
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            app.metrics.request("console_decide", 303);
            Redirect::to("/console/requests").into_response()
        }
        Err(e) => {
            app.metrics.request("console_decide", e.status());
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            requests_page(&app, &v, status, Some(e.message())).await
        }
    }
}

/// An active grant as a row of the page.
pub(super) struct GrantRow {
    id: String,
    account: String,
    subject: String,
    hosts: String,
    left: String,
    expires_at: String,
    reason: String,
    granted_by: String,
    certificate: String,
    break_glass: bool,
}

#[derive(Template)]
#[template(path = "console/grants.html")]
struct GrantsPage<'a> {
    frame: Frame<'a>,
    error: Option<&'a str>,
    grants: Vec<GrantRow>,
}

async fn grants_page(
    app: &super::App,
    v: &Visitor,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let now = Timestamp::now();
    let view = app.ledger.view();
    let policy = &view.policy;
    // Certificates the request flow issued, by their request (= grant) id.
    let certs = match app
        .ledger
        .store()
        .requests(RequestQuery::Recent {
            limit: crate::requests::MAX_LISTED,
        })
        .await
    {
        Ok(rows) => rows
            .iter()
            .filter_map(|r| decode(r).ok())
            .filter_map(|s| Some((s.request.id.to_string(), s.cert_serial?)))
            .collect::<std::collections::HashMap<_, _>>(),
        Err(e) => return problem(&e.into()),
    };
    let grants = policy
        .grants
        .iter()
        .filter(|g| time_refusal(g, now).is_none() && revocation_of(policy, g).is_none())
        .map(|g| GrantRow {
            id: g.id.to_string(),
            account: g.user.to_string(),
            subject: match &g.subject {
                Subject::Key(k) => k.fingerprint().to_string(),
                Subject::Principal(p) => format!("principal {p}"),
            },
            hosts: if g.hosts.is_empty() {
                "*".into()
            } else {
                g.hosts
                    .iter()
                    .map(|h| h.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            left: format_duration(now.until(g.expires_at)),
            expires_at: g.expires_at.to_string(),
            reason: g.reason.to_string(),
            granted_by: g
                .granted_by
                .as_ref()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            certificate: certs
                .get(g.id.as_str())
                .map(|serial| format!("key ID {}, serial {serial}", g.id))
                .unwrap_or_default(),
            break_glass: g.break_glass,
        })
        .collect();
    html(
        status,
        &GrantsPage {
            frame: Frame::of(app, v, "grants"),
            error,
            grants,
        },
    )
}

/// Grants and administration are for admins, as `sshjit list|revoke
/// --server` are.
fn admin_only(v: &Visitor) -> Result<(), OpError> {
    if v.is_admin() {
        Ok(())
    } else {
        Err(OpError::Forbidden(format!(
            "{} is not in group admin",
            v.name()
        )))
    }
}

pub(super) async fn grants(State(app): State<Arc<super::App>>, headers: HeaderMap) -> Response {
    let v = match visitor(&app, &headers).await {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    if let Err(e) = admin_only(&v) {
        app.metrics.request("console_grants", e.status());
        return problem(&e);
    }
    app.metrics.request("console_grants", 200);
    grants_page(&app, &v, StatusCode::OK, None).await
}

#[derive(Deserialize)]
pub(super) struct ChangeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    grant: String,
    #[serde(default)]
    reason: String,
}

/// Applies an admin's change as `sshjit revoke|freeze|thaw --server` does.
async fn change(app: &super::App, headers: &HeaderMap, f: &ChangeForm, what: &str) -> Response {
    let v = match poster(app, headers, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let result = async {
        let reason = bounded("reason", f.reason.trim(), MAX_FIELD)?;
        let reason = Reason::new(reason.to_owned())
            .map_err(|e| OpError::Usage(format!("the reason: {e}")))?;
        let change = match what {
            "revoke" => {
                let id = GrantId::new(bounded("grant id", f.grant.trim(), 64)?.to_owned())
                    .map_err(|e| OpError::Usage(format!("the grant: {e}")))?;
                Change::Revoke {
                    revocation: Revocation {
                        target: Target::Grant(id),
                        reason: Some(reason),
                        revoked_at: None,
                        revoked_by: None,
                    },
                }
            }
            "freeze" => Change::Freeze { reason },
            _ => Change::Thaw { reason },
        };
        Ok::<_, OpError>(change)
    }
    .await;
    let applied = match result {
        Ok(change) => match may_administer(v.who) {
            Ok(who) => apply_change(app, &who, &change)
                .await
                .map_err(|e| (e.status(), e.message().to_owned())),
            Err(e) => Err((e.status(), e.message().to_owned())),
        },
        Err(e) => Err((e.status(), e.message().to_owned())),
    };
    let route = match what {
        "revoke" => "console_revoke",
        "freeze" => "console_freeze",
        _ => "console_thaw",
    };
    match applied {
        Ok(_) => {
            app.metrics.request(route, 303);
            Redirect::to("/console/grants").into_response()
        }
        Err((status, message)) => {
            app.metrics.request(route, status);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            // The session was good a moment ago: show the page again, with
            // the refusal; one outside group admin sees the refusal alone.
            match visitor(app, headers).await {
                Ok(v) if v.is_admin() => grants_page(app, &v, status, Some(&message)).await,
                _ => problem(&OpError::Forbidden(message)),
            }
        }
    }
}

pub(super) async fn revoke(
    State(app): State<Arc<super::App>>,
    headers: HeaderMap,
    Form(f): Form<ChangeForm>,
) -> Response {
    change(&app, &headers, &f, "revoke").await
}

pub(super) async fn freeze(
    State(app): State<Arc<super::App>>,
    headers: HeaderMap,
    Form(f): Form<ChangeForm>,
) -> Response {
    change(&app, &headers, &f, "freeze").await
}

pub(super) async fn thaw(
    State(app): State<Arc<super::App>>,
    headers: HeaderMap,
    Form(f): Form<ChangeForm>,
) -> Response {
    change(&app, &headers, &f, "thaw").await
}
