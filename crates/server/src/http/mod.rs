//! HTTP: the routes, and the loop that accepts connections (plain on
//! loopback, else TLS), serves HTTP/1.1 with bounded waits, and shuts down
//! gracefully.
//!
//! - `GET /v1/policy` (hosts, bearer token): the signed part of the policy
//!   for that host, and for a user and mode when asked; long poll with
//!   `If-None-Match` and `wait` (`policy`).
//! - `POST /v1/login`, `POST /v1/logout`, `GET /v1/whoami` (people:
//!   `session`); `POST /v1/login/challenge`, `POST /v1/login/key` (key
//!   logins: `keylogin`).
//! - `/v1/requests...`, `/v1/reviews` (access requests: `requests`).
//! - `POST /v1/admin/change`, `GET /v1/admin/policy`, `GET
//!   /v1/admin/trail` (group `admin`: `admin`).
//! - `/console/...`: the web console (`console`).
//! - `GET /healthz` (the process answers), `GET /readyz` (its view of the
//!   store is current), `GET /metrics` (Prometheus text).

mod admin;
mod console;
mod keylogin;
mod policy;
mod requests;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::config::ServerConfig;
use crate::ledger::Ledger;
use crate::log;
use crate::metrics::Metrics;
use crate::ops::OpError;
use crate::signing::{Sealer, Signer};

pub use session::RateLimiter;

/// Most connections open at once (syncing hosts each hold one).
const MAX_CONNECTIONS: usize = 20_000;
/// How long a client may take to send its request's headers, and to
/// finish a TLS handshake.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// What every request handler shares.
pub struct App {
    pub config: ServerConfig,
    pub ledger: Arc<Ledger>,
    pub signer: Signer,
    pub sealer: Sealer,
    pub metrics: Metrics,
    pub limiter: RateLimiter,
    /// True once shutdown began: long polls end.
    pub stopping: watch::Receiver<bool>,
    pub webhook: Option<crate::webhook::Webhook>,
    /// Roles, on-call schedule and user CA: the request flow.
    pub flow: Arc<crate::requests::Flow>,
}

impl App {
    /// Whether the view may be served: confirmed current within `max_lag`.
    pub fn fresh(&self) -> bool {
        self.ledger.lag() <= self.config.max_lag
    }
}

/// A JSON error body `{"error": "..."}` with the operation's status.
pub fn error_response(e: &OpError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (
        status,
        axum::Json(serde_json::json!({ "error": e.message() })),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    r
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/policy", get(policy::get))
        .route("/v1/login", post(session::login))
        .route("/v1/logout", post(session::logout))
        .route("/v1/whoami", get(session::whoami))
        .route("/v1/login/challenge", post(keylogin::challenge))
        .route("/v1/login/key", post(keylogin::login))
        .route("/v1/requests", get(requests::list).post(requests::open))
        .route("/v1/requests/{id}", get(requests::one))
        .route("/v1/requests/{id}/{decision}", post(requests::decide))
        .route("/v1/reviews", get(requests::reviews))
        .route("/v1/admin/change", post(admin::change))
        .route("/v1/admin/policy", get(admin::policy))
        .route("/v1/admin/trail", get(admin::trail))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(console::router())
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(app)
}

async fn not_found(State(app): State<Arc<App>>) -> Response {
    app.metrics.request("other", 404);
    error_response(&OpError::NotFound("no such endpoint".into()))
}

async fn healthz(State(app): State<Arc<App>>) -> &'static str {
    app.metrics.request("healthz", 200);
    "ok\n"
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.fresh() {
        app.metrics.request("readyz", 200);
        "ready\n".into_response()
    } else {
        app.metrics.request("readyz", 503);
        error_response(&OpError::Unavailable(format!(
            "the store was last confirmed {} s ago",
            app.ledger.lag().as_secs()
        )))
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    app.metrics.request("metrics", 200);
    let view = app.ledger.view();
    let lag = app.ledger.lag().as_secs_f64();
    let text = app.metrics.render(&[
        ("sshjit_serial", "The policy's serial.", view.serial as f64),
        (
            "sshjit_trail_records",
            "Records in the trail.",
            view.seq as f64,
        ),
        (
            "sshjit_grants",
            "Grants in the policy.",
            view.policy.grants.len() as f64,
        ),
        (
            "sshjit_revocations",
            "Revocations in the policy.",
            view.policy.revocations.len() as f64,
        ),
        ("sshjit_hosts", "Enrolled hosts.", view.hosts.len() as f64),
        (
            "sshjit_frozen",
            "1 while the policy is frozen.",
            f64::from(u8::from(view.policy.frozen)),
        ),
        (
            "sshjit_store_lag_seconds",
            "Since the view of the store was last confirmed current.",
            if lag.is_finite() { lag } else { -1.0 },
        ),
    ]);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Makes the TLS acceptor from the PEM files in the config.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls_cert/tls_key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves until `stop` fires, then stops accepting, ends long polls and
/// waits up to [`DRAIN`] for requests in flight.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let router = router(Arc::clone(&app));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: pause rather than spin.
                log::event("accept", &[("error", &e.to_string())]);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let router = router.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => connection(TokioIo::new(tcp), peer, router, watcher).await,
                Some(acceptor) => {
                    if let Ok(Ok(stream)) =
                        tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(tcp)).await
                    {
                        connection(TokioIo::new(stream), peer, router, watcher).await;
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        log::event("shutdown", &[("drain", "timed out")]);
    }
}

/// One HTTP/1.1 connection, with the peer's address for the handlers.
async fn connection<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    router: Router,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let mut router = router.clone();
            async move {
                use tower_service::Service;
                router.call(req.map(axum::body::Body::new)).await
            }
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024)
        .serve_connection(io, service);
    let _ = watcher.watch(conn).await;
}
