//! Key logins, for automation accounts (`sshjit login --identity KEY`):
//! `POST /v1/login/challenge {"user"}` hands out a challenge, sealed with
//! the server's secrets key so every replica can check it and nobody can
//! make one; `POST /v1/login/key {"user", "challenge", "signature"}`
//! takes an `ssh-keygen -Y sign -n sshjit-login` signature of it by one of
//! the person's enrolled keys. A challenge lasts a minute and is answered
//! once (the store keeps the issue time of the last one answered). The
//! session did not pass TOTP: roles with `totp = true` and administration
//! refuse it. Failures count towards the same lockout as passwords.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use ssh_key::{HashAlg, PublicKey, SshSig};
use sshjit_policy::time::Timestamp;

use super::session::{SessionInfo, admit, count_failure};
use super::{App, error_response};
use crate::log;
use crate::ops::OpError;
use crate::people;
use crate::store::{LoginUpdate, SessionRow, StoreError};

/// The namespace of login signatures (never the policy's).
pub const NAMESPACE: &str = "sshjit-login";
/// How long a challenge may be answered.
const CHALLENGE_MS: i64 = 60_000;
const MAX_SIGNATURE: usize = 16 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    user: String,
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    person: String,
    issued_ms: i64,
    nonce: String,
}

fn owner(person: &str) -> String {
    format!("{NAMESPACE}:{person}")
}

fn now_ms() -> i64 {
    let t = Timestamp::now();
    t.unix_seconds() * 1000 + i64::from(t.subsec_nanos() / 1_000_000)
}

pub async fn challenge(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Response {
    let result = (|| {
        let req: ChallengeRequest = serde_json::from_slice(&body)
            .map_err(|_| OpError::Usage("expected {\"user\"}".into()))?;
        let person = crate::ops::person_name(&req.user)?;
        let mut nonce = [0u8; 16];
        getrandom::getrandom(&mut nonce).map_err(|e| OpError::Internal(e.to_string()))?;
        let sealed = Sealed {
            person: person.to_string(),
            issued_ms: now_ms(),
            nonce: base16ct::lower::encode_string(&nonce),
        };
        let plain = serde_json::to_vec(&sealed).map_err(|e| OpError::Internal(e.to_string()))?;
        let challenge = app
            .sealer
            .seal(&owner(person.as_str()), &plain)
            .map_err(OpError::Internal)?;
        Ok::<_, OpError>(serde_json::json!({ "challenge": challenge, "namespace": NAMESPACE }))
    })();
    app.metrics.request(
        "login_challenge",
        result.as_ref().map_or_else(OpError::status, |_| 200),
    );
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => error_response(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyLogin {
    user: String,
    challenge: String,
    /// The armored `ssh-keygen -Y sign` signature of the challenge.
    signature: String,
}

pub async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    let result = do_login(&app, peer, &body).await;
    app.metrics.request(
        "login_key",
        result.as_ref().map_or_else(OpError::status, |_| 200),
    );
    match result {
        Ok(info) => Json(info).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn do_login(app: &App, peer: SocketAddr, body: &[u8]) -> Result<SessionInfo, OpError> {
    admit(app, peer, Some("key"))?;
    let from = peer.ip().to_string();
    let req: KeyLogin = serde_json::from_slice(body)
        .map_err(|_| OpError::Usage("expected {\"user\", \"challenge\", \"signature\"}".into()))?;
    let refuse = |why: &str, person: &str| {
        app.metrics.login("failed");
        log::event(
            "login",
            &[
                ("person", person),
                ("from", &from),
                ("method", "key"),
                ("outcome", "failed"),
                ("why", why),
            ],
        );
        OpError::Unauthorized("login failed".into())
    };
    let Ok(name) = crate::ops::person_name(&req.user) else {
        return Err(refuse("bad name", "-"));
    };
    let store = app.ledger.store();
    let Some(person) = store.person(name.as_str()).await? else {
        return Err(refuse("no such person", name.as_str()));
    };
    let now = Timestamp::now().unix_seconds();
    if person.locked_until > now {
        return Err(refuse("locked", name.as_str()));
    }
    let checked = check(
        app,
        name.as_str(),
        &req,
        &store.person_keys(name.as_str()).await?,
    );
    let issued_ms = match checked {
        Ok(ms) => ms,
        Err(why) => {
            count_failure(app, &person, now).await?;
            return Err(refuse(why, name.as_str()));
        }
    };
    let (token, sha) = people::new_token("sjs_").map_err(OpError::Internal)?;
    let expires_at = now + app.config.session_ttl.as_secs() as i64;
    let session = SessionRow {
        person: person.name.clone(),
        created_at: now,
        expires_at,
        totp: false,
    };
    match store
        .login(
            name.as_str(),
            LoginUpdate::SucceededByKey {
                challenge_ms: issued_ms,
                token_sha256: sha,
                session,
            },
        )
        .await
    {
        Ok(()) => {}
        Err(StoreError::Stale) => return Err(refuse("challenge already answered", name.as_str())),
        Err(e) => return Err(e.into()),
    }
    app.metrics.login("ok");
    log::event(
        "login",
        &[
            ("person", name.as_str()),
            ("from", &from),
            ("method", "key"),
            ("outcome", "ok"),
        ],
    );
    Ok(SessionInfo {
        token: Some(token),
        person: person.name,
        groups: person.groups,
        expires_at: Timestamp::from_unix(expires_at, 0).to_string(),
        totp: false,
    })
}

/// The challenge's issue time when it is this person's, current, and
/// signed by one of their keys; else why not (for the log only).
fn check(
    app: &App,
    person: &str,
    req: &KeyLogin,
    keys: &[(String, String)],
) -> Result<i64, &'static str> {
    if req.challenge.len() > 1024 || req.signature.len() > MAX_SIGNATURE {
        return Err("oversized");
    }
    let plain = app
        .sealer
        .open(&owner(person), &req.challenge)
        .map_err(|_| "not a challenge of ours")?;
    let sealed: Sealed = serde_json::from_slice(&plain).map_err(|_| "not a challenge of ours")?;
    if sealed.person != person {
        return Err("another person's challenge");
    }
    let age = now_ms() - sealed.issued_ms;
    if !(0..=CHALLENGE_MS).contains(&age) {
        return Err("stale challenge");
    }
    let sig = SshSig::from_pem(req.signature.as_bytes()).map_err(|_| "not a signature")?;
    let fingerprint = sig.public_key().fingerprint(HashAlg::Sha256).to_string();
    if !keys.iter().any(|(fp, _)| *fp == fingerprint) {
        return Err("a key not enrolled");
    }
    PublicKey::from(sig.public_key().clone())
        .verify(NAMESPACE, req.challenge.as_bytes(), &sig)
        .map_err(|_| "bad signature")?;
    Ok(sealed.issued_ms)
}
