//! `GET /v1/policy?host=&user=&mode=[&wait=SECONDS]`: the helper's https
//! protocol, answered for the host the bearer token belongs to.
//!
//! - 401 for no token, or one that is unknown or removed; 403 for a token
//!   asking about another host; 400 for a bad parameter.
//! - 200: the signed part (header `sshjit-signature`), `ETag: "SERIAL"`.
//! - With `If-None-Match: "SERIAL"` naming the current serial: 304, after
//!   waiting up to `wait` seconds (at most 60) for a change — `sshjit
//!   sync`'s long poll.
//! - 503 while this server's view of the store is not confirmed current
//!   (the store is down): hosts then use their local copy, cache or next
//!   source rather than an answer that may lack a revocation.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sshjit_policy::{HostName, Username};

use super::{App, error_response};
use crate::answer::{self, Mode, Question};
use crate::log;
use crate::ops::OpError;
use crate::people::{plausible_token, token_sha256};

/// Longest long poll.
const MAX_WAIT: u64 = 60;

#[derive(Deserialize)]
pub struct Params {
    host: Option<String>,
    user: Option<String>,
    mode: Option<String>,
    wait: Option<String>,
}

pub async fn get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    let started = Instant::now();
    let (outcome, response) = match answer(&app, &headers, params).await {
        Ok(r) => r,
        Err(e) => {
            let outcome = match e.status() {
                400 => "bad_request",
                401 => "unauthorized",
                403 => "forbidden",
                503 => "unavailable",
                _ => "error",
            };
            if e.status() != 503 {
                log::event(
                    "policy",
                    &[("status", &e.status().to_string()), ("error", e.message())],
                );
            }
            (outcome, error_response(&e))
        }
    };
    app.metrics.request("policy", response.status().as_u16());
    app.metrics.answer(outcome, started.elapsed());
    response
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    plausible_token(token).then_some(token)
}

async fn answer(
    app: &App,
    headers: &HeaderMap,
    params: Params,
) -> Result<(&'static str, Response), OpError> {
    let token =
        bearer(headers).ok_or_else(|| OpError::Unauthorized("a host token is required".into()))?;
    let sha = token_sha256(token);
    let mut view = app.ledger.view();
    let Some(own) = view.hosts.get(&sha).cloned() else {
        return Err(OpError::Unauthorized(
            "unknown or removed host token".into(),
        ));
    };
    let host = match params.host.as_deref() {
        None => own.clone(),
        Some(h) => {
            let h = HostName::new(h.to_owned())
                .map_err(|e| OpError::Usage(format!("host: {e}")))?
                .into_owned();
            if !h.as_str().eq_ignore_ascii_case(own.as_str()) {
                return Err(OpError::Forbidden(format!(
                    "this token belongs to host {own}, not {h}"
                )));
            }
            own.clone()
        }
    };
    let user = params
        .user
        .map(|u| Username::new(u).map(Username::into_owned))
        .transpose()
        .map_err(|e| OpError::Usage(format!("user: {e}")))?;
    let mode = params
        .mode
        .map(|m| Mode::parse(&m).ok_or_else(|| OpError::Usage("mode: keys or principals".into())))
        .transpose()?;
    let wait = match params.wait {
        None => 0,
        Some(w) => w
            .parse::<u64>()
            .ok()
            .filter(|w| *w <= MAX_WAIT)
            .ok_or_else(|| OpError::Usage(format!("wait: 0 to {MAX_WAIT} seconds")))?,
    };
    if !app.fresh() {
        return Err(OpError::Unavailable(
            "this server's view of the store is not current".into(),
        ));
    }
    if let Some(known) = if_none_match(headers)
        && known == view.serial
    {
        if wait > 0 {
            app.metrics.waiting.fetch_add(1, Ordering::Relaxed);
            let mut stopping = app.stopping.clone();
            tokio::select! {
                _ = app.ledger.wait_change(known, Duration::from_secs(wait)) => {}
                _ = stopping.wait_for(|s| *s) => {}
            }
            app.metrics.waiting.fetch_sub(1, Ordering::Relaxed);
            view = app.ledger.view();
            if !view.hosts.contains_key(&sha) {
                return Err(OpError::Unauthorized(
                    "unknown or removed host token".into(),
                ));
            }
        }
        if view.serial == known {
            let mut r = StatusCode::NOT_MODIFIED.into_response();
            set_etag(&mut r, known);
            return Ok(("not_modified", r));
        }
    }
    let question = Question { host, user, mode };
    let signer = &app.signer;
    let built = view
        .answers
        .get_or_build(&question, || {
            answer::build(&view.policy, view.serial, &view.by_user, &question, signer)
        })
        .map_err(OpError::Internal)?;
    let mut r = (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        built.body.clone(),
    )
        .into_response();
    set_etag(&mut r, built.serial);
    if let Ok(v) = HeaderValue::from_str(&built.signature) {
        r.headers_mut().insert("sshjit-signature", v);
    }
    Ok(("served", r))
}

fn if_none_match(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(header::IF_NONE_MATCH)?.to_str().ok()?;
    v.trim().trim_matches('"').parse().ok()
}

fn set_etag(r: &mut Response, serial: u64) {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{serial}\"")) {
        r.headers_mut().insert(header::ETAG, v);
    }
}
