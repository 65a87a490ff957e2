//! The web console under `/console/`: plain server-rendered pages over the
//! same operations as the people's CLI (the login of `sshjit login`, the
//! request flow of `sshjit approve|deny`, the changes of `sshjit
//! revoke|freeze|thaw --server`, the report of `sshjit report --server`),
//! so the rules, refusals and audit records are the same whichever way a
//! person comes.
//!
//! - `GET|POST /console/login`, `POST /console/logout`: password and TOTP
//!   code; the session token lives in an `HttpOnly`, `SameSite=Strict`
//!   cookie (`Secure` unless served over plain http on loopback) that
//!   lasts the server's `session_ttl`.
//! - `GET /console/requests` and the approve, deny and review forms
//!   (`pages`); `GET /console/grants` and the revoke, freeze and thaw forms
//!   (`pages`); `GET /console/report[.csv|.json]`, `GET /console/chart.svg`
//!   (`report`).
//! - `GET /console/changes?seq=N`: a long poll the page's script uses to
//!   reload when the trail moves on.
//!
//! Every form carries a CSRF token bound to the session (to a per-form
//! cookie before login); a POST without it is refused 403 before anything
//! is read or done. Every answer carries a strict Content-Security-Policy:
//! the only script and style are the two files served here.

mod pages;
mod report;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::App;
use super::session::{Authenticated, authenticate_token, password_login};
use crate::log;
use crate::ops::OpError;
use crate::people::new_token;

/// The session cookie.
const SESSION_COOKIE: &str = "sshjit_console";
/// The cookie that binds the login form's token before there is a session.
const LOGIN_COOKIE: &str = "sshjit_console_login";
/// Longest value of any form field (a reason's 1024 bytes, with room).
const MAX_FIELD: usize = 1024;
/// How long a long poll waits for the trail to move on.
const POLL: Duration = Duration::from_secs(25);

/// Strict: nothing but this server's own style sheet, script and images;
/// `connect-src 'self'` lets the script's long poll reach `/changes`.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const CSS: &str = include_str!("../../../templates/console/console.css");
const JS: &str = include_str!("../../../templates/console/console.js");

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::to("/console/requests") }),
        )
        .route(
            "/console/",
            get(|| async { Redirect::to("/console/requests") }),
        )
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/changes", get(changes))
        .route("/console/console.css", get(css))
        .route("/console/console.js", get(js))
        .route("/console/requests", get(pages::requests))
        .route("/console/requests/{id}/{decision}", post(pages::decide))
        .route("/console/grants", get(pages::grants))
        .route("/console/revoke", post(pages::revoke))
        .route("/console/freeze", post(pages::freeze))
        .route("/console/thaw", post(pages::thaw))
        .route("/console/report", get(report::page))
        .route("/console/report.csv", get(report::csv))
        .route("/console/report.json", get(report::json))
        .route("/console/chart.svg", get(report::chart))
        .layer(axum::middleware::map_response(secure_headers))
}

/// The headers every console answer carries.
async fn secure_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        CSS,
    )
        .into_response()
}

async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        JS,
    )
        .into_response()
}

/// A rendered page with its status.
fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => {
            log::event("console", &[("error", &e.to_string())]);
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be made\n",
            )
                .into_response()
        }
    }
}

/// A cookie's value from the request.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, scoped to the
/// console; `Secure` whenever the server speaks TLS.
fn set_cookie(app: &App, name: &str, value: &str, max_age: u64) -> HeaderValue {
    let secure = if app.config.tls.is_some() {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{name}={value}; Path=/console; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The CSRF token of a secret the browser holds only as an `HttpOnly`
/// cookie: the page can show it, another site can neither read nor make it.
fn csrf_of(secret: &str) -> String {
    sshjit::store::trail::sha256_hex(format!("sshjit-console-csrf\0{secret}").as_bytes())
}

/// Whether `given` is the token of `secret`, compared in constant time.
fn csrf_ok(secret: &str, given: &str) -> bool {
    let want = csrf_of(secret);
    want.len() == given.len()
        && want
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn forbidden_csrf() -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "refused: the form's token is missing or wrong; reload the page\n",
    )
        .into_response()
}

/// The person of a console request, with the form token of their session.
pub(super) struct Visitor {
    who: Authenticated,
    csrf: String,
}

impl Visitor {
    fn name(&self) -> &str {
        &self.who.person.name
    }

    fn is_admin(&self) -> bool {
        self.who.in_group("admin")
    }
}

/// Where a page goes without a good session: the login form.
enum NoSession {
    Login,
    Failed(OpError),
}

impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        match self {
            NoSession::Login => Redirect::to("/console/login").into_response(),
            NoSession::Failed(e) => problem(&e),
        }
    }
}

/// The session of the cookie, if good.
async fn visitor(app: &App, headers: &HeaderMap) -> Result<Visitor, NoSession> {
    let token = cookie(headers, SESSION_COOKIE).ok_or(NoSession::Login)?;
    match authenticate_token(app, token).await {
        Ok(who) => Ok(Visitor {
            who,
            csrf: csrf_of(token),
        }),
        Err(OpError::Unauthorized(_)) => Err(NoSession::Login),
        Err(e) => Err(NoSession::Failed(e)),
    }
}

/// The session of a form, refused 403 unless its token is the session's.
async fn poster(app: &App, headers: &HeaderMap, csrf: &str) -> Result<Visitor, Response> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Err(forbidden_csrf());
    };
    if !csrf_ok(token, csrf) {
        log::event("console", &[("refused", "csrf")]);
        return Err(forbidden_csrf());
    }
    visitor(app, headers)
        .await
        .map_err(IntoResponse::into_response)
}

/// A plain page saying what went wrong.
fn problem(e: &OpError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    html(
        status,
        &ProblemPage {
            message: e.message(),
        },
    )
}

#[derive(Template)]
#[template(path = "console/problem.html")]
struct ProblemPage<'a> {
    message: &'a str,
}

/// A form field bounded in length; `what` names it in the refusal.
fn bounded<'a>(what: &str, value: &'a str, max: usize) -> Result<&'a str, OpError> {
    if value.len() > max {
        return Err(OpError::Usage(format!(
            "the {what} is too long (at most {max} bytes)"
        )));
    }
    Ok(value)
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    error: Option<&'a str>,
    user: &'a str,
}

/// The login form, with a fresh cookie its token is bound to.
async fn login_page(State(app): State<Arc<App>>) -> Response {
    login_form(&app, StatusCode::OK, None, "")
}

fn login_form(app: &App, status: StatusCode, error: Option<&str>, user: &str) -> Response {
    let secret = match new_token("sjl_") {
        Ok((secret, _)) => secret,
        Err(e) => return problem(&OpError::Internal(e)),
    };
    let csrf = csrf_of(&secret);
    let mut r = html(
        status,
        &LoginPage {
            csrf: &csrf,
            error,
            user,
        },
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(app, LOGIN_COOKIE, &secret, 900),
    );
    r
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    totp: String,
}

async fn login(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let Some(secret) = cookie(&headers, LOGIN_COOKIE) else {
        return forbidden_csrf();
    };
    if !csrf_ok(secret, &f.csrf) {
        log::event("console", &[("refused", "csrf")]);
        return forbidden_csrf();
    }
    let user = f.user.trim();
    let shown_user = if user.len() <= 64 { user } else { "" };
    if user.len() > 64 || f.password.len() > MAX_FIELD || f.totp.len() > 16 {
        app.metrics.request("console_login", 401);
        return login_form(
            &app,
            StatusCode::UNAUTHORIZED,
            Some("login failed"),
            shown_user,
        );
    }
    match password_login(&app, peer, user.to_owned(), f.password, f.totp).await {
        Ok(info) => {
            app.metrics.request("console_login", 303);
            let token = info.token.unwrap_or_default();
            let mut r = Redirect::to("/console/requests").into_response();
            let h = r.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_cookie(
                    &app,
                    SESSION_COOKIE,
                    &token,
                    app.config.session_ttl.as_secs(),
                ),
            );
            h.append(header::SET_COOKIE, set_cookie(&app, LOGIN_COOKIE, "", 0));
            r
        }
        Err(e) => {
            app.metrics.request("console_login", e.status());
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            login_form(&app, status, Some(e.message()), shown_user)
        }
    }
}

#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<CsrfOnly>,
) -> Response {
    let v = match poster(&app, &headers, &f.csrf).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(e) = app.ledger.store().end_session(&v.who.token_sha256).await {
        return problem(&e.into());
    }
    log::event("logout", &[("person", v.name()), ("via", "console")]);
    app.metrics.request("console_logout", 303);
    let mut r = Redirect::to("/console/login").into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, set_cookie(&app, SESSION_COOKIE, "", 0));
    r
}

#[derive(Deserialize)]
struct ChangesQuery {
    seq: u64,
}

/// Answers `{"seq": N}` once the trail is past `seq`, or after [`POLL`].
async fn changes(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<ChangesQuery>,
) -> Response {
    if let Err(e) = visitor(&app, &headers).await {
        return match e {
            NoSession::Login => StatusCode::UNAUTHORIZED.into_response(),
            other => other.into_response(),
        };
    }
    let deadline = tokio::time::Instant::now() + POLL;
    while app.ledger.view().seq == q.seq
        && tokio::time::Instant::now() < deadline
        && !*app.stopping.borrow()
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    axum::Json(serde_json::json!({ "seq": app.ledger.view().seq })).into_response()
}

/// What every signed-in page shows in its header.
pub(super) struct Frame<'a> {
    pub person: &'a str,
    pub admin: bool,
    pub csrf: &'a str,
    pub seq: u64,
    pub frozen: bool,
    /// Which page: `requests`, `grants`, `report`.
    pub here: &'a str,
}

impl<'a> Frame<'a> {
    fn of(app: &App, v: &'a Visitor, here: &'a str) -> Frame<'a> {
        let view = app.ledger.view();
        Frame {
            person: v.name(),
            admin: v.is_admin(),
            csrf: &v.csrf,
            seq: view.seq,
            frozen: view.policy.frozen,
            here,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csrf_token_is_good_only_for_its_own_secret() {
        let token = csrf_of("sjs_one");
        assert!(csrf_ok("sjs_one", &token));
        assert!(!csrf_ok("sjs_two", &token));
        assert!(!csrf_ok("sjs_one", ""));
        assert!(!csrf_ok("sjs_one", &token[..63]));
        assert!(!csrf_ok("sjs_one", &format!("{token}0")));
        // Not the session token's own hash (which the store keys on).
        assert_ne!(token, crate::people::token_sha256("sjs_one"));
    }

    #[test]
    fn cookies_are_found_by_exact_name_across_headers() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("other=1; sshjit_console_login=L"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("sshjit_console=S"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("S"));
        assert_eq!(cookie(&h, LOGIN_COOKIE), Some("L"));
        assert_eq!(cookie(&h, "sshjit"), None);
    }

    #[test]
    fn fields_longer_than_their_bound_are_refused() {
        assert_eq!(bounded("reason", "ok", 2).ok(), Some("ok"));
        let e = bounded("reason", "too long", 2).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.message().contains("reason"), "{}", e.message());
    }
}
