//! People's sessions: `POST /v1/login` (password and TOTP code), `POST
//! /v1/logout`, `GET /v1/whoami`, and [`authenticate`] for the endpoints
//! that need a person.
//!
//! A login that fails says only that it failed, whatever the reason (no
//! such person, wrong password, wrong or reused code, locked): the log
//! line says which. Guessing is slowed three ways: Argon2id per attempt, a
//! per-address rate limit, and a lockout of the account after
//! [`people::LOCK_AFTER`] failures in a row.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sshjit_policy::time::Timestamp;

use super::{App, error_response};
use crate::log;
use crate::ops::OpError;
use crate::people::{self, plausible_token, token_sha256};
use crate::store::{LoginUpdate, PersonRow, SessionRow};

/// Logins allowed per address: a burst, then one per `REFILL`.
const BURST: f64 = 10.0;
const REFILL_SECS: f64 = 6.0;
/// Addresses tracked at once (the oldest are forgotten past it).
const MAX_TRACKED: usize = 100_000;

/// A token bucket per client address.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// Takes one attempt for `ip`; false when its bucket is empty.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let Ok(mut m) = self.buckets.lock() else {
            return false;
        };
        let now = Instant::now();
        if m.len() >= MAX_TRACKED {
            m.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() / REFILL_SECS < BURST
            });
        }
        let (tokens, at) = m.entry(ip).or_insert((BURST, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() / REFILL_SECS).min(BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    user: String,
    password: String,
    totp: String,
}

/// What a login returns, and what `whoami` says.
#[derive(Serialize)]
pub struct SessionInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) token: Option<String>,
    pub(super) person: String,
    pub(super) groups: Vec<String>,
    pub(super) expires_at: String,
    pub(super) totp: bool,
}

fn failed() -> OpError {
    OpError::Unauthorized("login failed".into())
}

pub async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    let result = do_login(&app, peer, &body).await;
    app.metrics.request(
        "login",
        result.as_ref().map_or_else(OpError::status, |_| 200),
    );
    match result {
        Ok(info) => Json(info).into_response(),
        Err(e) => error_response(&e),
    }
}

/// Takes one login attempt from the address's bucket; `method` names a
/// login other than by password in the log line.
pub(super) fn admit(app: &App, peer: SocketAddr, method: Option<&str>) -> Result<(), OpError> {
    if app.limiter.allow(peer.ip()) {
        return Ok(());
    }
    app.metrics.login("rate_limited");
    let from = peer.ip().to_string();
    let mut fields = vec![("from", from.as_str())];
    fields.extend(method.map(|m| ("method", m)));
    fields.push(("outcome", "rate_limited"));
    log::event("login", &fields);
    Err(OpError::TooMany(
        "too many logins from this address: wait".into(),
    ))
}

/// Counts a failed attempt against `person`: the account locks for
/// [`people::LOCK_FOR`] at the [`people::LOCK_AFTER`]th failure in a row,
/// whichever way the attempts came.
pub(super) async fn count_failure(app: &App, person: &PersonRow, now: i64) -> Result<(), OpError> {
    let lock = (person.failures + 1 >= people::LOCK_AFTER)
        .then(|| now + people::LOCK_FOR.as_secs() as i64);
    app.ledger
        .store()
        .login(&person.name, LoginUpdate::Failed { lock_until: lock })
        .await?;
    if lock.is_some() {
        log::event("lockout", &[("person", &person.name)]);
    }
    Ok(())
}

async fn do_login(app: &App, peer: SocketAddr, body: &[u8]) -> Result<SessionInfo, OpError> {
    admit(app, peer, None)?;
    let req: LoginRequest = serde_json::from_slice(body)
        .map_err(|_| OpError::Usage("expected {\"user\", \"password\", \"totp\"}".into()))?;
    checked_login(app, peer, req).await
}

/// A login by password and TOTP code (`sshjit login`, the console's form):
/// the same checks, lockout and log lines whichever way it came.
pub(super) async fn password_login(
    app: &App,
    peer: SocketAddr,
    user: String,
    password: String,
    totp: String,
) -> Result<SessionInfo, OpError> {
    admit(app, peer, None)?;
    checked_login(
        app,
        peer,
        LoginRequest {
            user,
            password,
            totp,
        },
    )
    .await
}

async fn checked_login(
    app: &App,
    peer: SocketAddr,
    req: LoginRequest,
) -> Result<SessionInfo, OpError> {
    let refuse = |why: &str, person: &str| {
        app.metrics.login("failed");
        log::event(
            "login",
            &[
                ("person", person),
                ("from", &peer.ip().to_string()),
                ("outcome", "failed"),
                ("why", why),
            ],
        );
        failed()
    };
    let Ok(name) = crate::ops::person_name(&req.user) else {
        return Err(refuse("bad name", "-"));
    };
    let store = app.ledger.store();
    let person = store.person(name.as_str()).await?;
    let hash = person
        .as_ref()
        .and_then(|p| p.password_hash.clone())
        .unwrap_or_else(|| people::decoy_hash().to_owned());
    let password = req.password;
    let good_password =
        tokio::task::spawn_blocking(move || people::verify_password(&password, &hash))
            .await
            .map_err(|e| OpError::Internal(e.to_string()))?;
    let Some(person) = person else {
        return Err(refuse("no such person", name.as_str()));
    };
    let now = Timestamp::now().unix_seconds();
    if person.locked_until > now {
        return Err(refuse("locked", name.as_str()));
    }
    let step = totp_step(app, &person, &req.totp, now);
    let (Some(step), true) = (step, good_password) else {
        count_failure(app, &person, now).await?;
        let why = if good_password {
            "bad code"
        } else {
            "bad password"
        };
        return Err(refuse(why, name.as_str()));
    };
    let (token, sha) = people::new_token("sjs_").map_err(OpError::Internal)?;
    let expires_at = now + app.config.session_ttl.as_secs() as i64;
    let session = SessionRow {
        person: person.name.clone(),
        created_at: now,
        expires_at,
        totp: true,
    };
    match store
        .login(
            name.as_str(),
            LoginUpdate::Succeeded {
                totp_step: Some(step),
                token_sha256: sha,
                session,
            },
        )
        .await
    {
        Ok(()) => {}
        Err(crate::store::StoreError::Stale) => {
            return Err(refuse("code already used", name.as_str()));
        }
        Err(e) => return Err(e.into()),
    }
    app.metrics.login("ok");
    log::event(
        "login",
        &[
            ("person", name.as_str()),
            ("from", &peer.ip().to_string()),
            ("outcome", "ok"),
        ],
    );
    Ok(SessionInfo {
        token: Some(token),
        person: person.name,
        groups: person.groups,
        expires_at: Timestamp::from_unix(expires_at, 0).to_string(),
        totp: true,
    })
}

/// The step of a good code not used before; `None` for anything else.
fn totp_step(app: &App, person: &PersonRow, code: &str, now: i64) -> Option<i64> {
    let sealed = person.totp_sealed.as_deref()?;
    let secret = app.sealer.open(&person.name, sealed).ok()?;
    let step = people::totp_step(&secret, code.trim(), u64::try_from(now).ok()?)?;
    (step > person.totp_last_step).then_some(step)
}

/// The person behind a request's session token.
pub struct Authenticated {
    pub person: PersonRow,
    pub session: SessionRow,
    pub token_sha256: String,
}

impl Authenticated {
    pub fn in_group(&self, group: &str) -> bool {
        self.person.groups.iter().any(|g| g == group)
    }
}

/// Checks `Authorization: Bearer <session token>`.
pub async fn authenticate(app: &App, headers: &HeaderMap) -> Result<Authenticated, OpError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| OpError::Unauthorized("log in first: sshjit login".into()))?;
    authenticate_token(app, token).await
}

/// The person behind a session token, however it came (header or cookie).
pub(super) async fn authenticate_token(app: &App, token: &str) -> Result<Authenticated, OpError> {
    if !plausible_token(token) {
        return Err(OpError::Unauthorized("log in first: sshjit login".into()));
    }
    let sha = token_sha256(token);
    let store = app.ledger.store();
    let session = store
        .session(&sha)
        .await?
        .ok_or_else(|| OpError::Unauthorized("the session ended: sshjit login".into()))?;
    if session.expires_at <= Timestamp::now().unix_seconds() {
        return Err(OpError::Unauthorized(
            "the session expired: sshjit login".into(),
        ));
    }
    let person = store
        .person(&session.person)
        .await?
        .ok_or_else(|| OpError::Unauthorized("the session ended: sshjit login".into()))?;
    Ok(Authenticated {
        person,
        session,
        token_sha256: sha,
    })
}

pub async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let result = async {
        let who = authenticate(&app, &headers).await?;
        app.ledger.store().end_session(&who.token_sha256).await?;
        log::event("logout", &[("person", &who.person.name)]);
        Ok::<_, OpError>(())
    }
    .await;
    app.metrics.request(
        "logout",
        result.as_ref().map_or_else(OpError::status, |_| 200),
    );
    match result {
        Ok(()) => Json(serde_json::json!({"ok": true})).into_response(),
        Err(e) => error_response(&e),
    }
}

pub async fn whoami(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let result = authenticate(&app, &headers).await;
    app.metrics.request(
        "whoami",
        result.as_ref().map_or_else(OpError::status, |_| 200),
    );
    match result {
        Ok(who) => Json(SessionInfo {
            token: None,
            person: who.person.name,
            groups: who.person.groups,
            expires_at: Timestamp::from_unix(who.session.expires_at, 0).to_string(),
            totp: who.session.totp,
        })
        .into_response(),
        Err(e) => error_response(&e),
    }
}
