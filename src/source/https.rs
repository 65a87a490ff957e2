//! The https source: one GET per attempt under a hard deadline, pinned
//! roots, bounded sizes, no redirects, no proxies, no compression.
//!
//! The client is built only when an https source is used. With `ca_file`
//! only those roots are trusted and no system store is read; without it the
//! distribution's CA bundle is loaded (slower: every root is parsed).
//! Every wait — DNS, connect, TLS, headers, body — counts against the one
//! deadline the caller passes (ureq's global timeout), so a server that
//! trickles its answer is cut off when the deadline passes.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};

use super::url::{Scope, Url};
use crate::fs::secure::{self as file, FileError};

/// Largest policy document accepted over https. Smaller than the file
/// source's bound: every concurrent login holds one in memory.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Largest detached signature (`.sig` body or decoded header).
pub use sshjit_policy::openssh::allowed_signers::MAX_SIGNATURE_BYTES;
/// Largest status line plus headers.
const MAX_HEADER_BYTES: usize = 16 << 10;
/// The response header carrying the signature (base64 of the armored text).
pub const SIGNATURE_HEADER: &str = "sshjit-signature";
/// Pause before the one retry after a connection error.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// No retry when less than this would be left for it.
const MIN_RETRY_BUDGET: Duration = Duration::from_millis(150);
const MAX_CA_FILE_BYTES: usize = 4 << 20;
const MAX_SECRET_BYTES: usize = 64 << 10;
const MAX_TOKEN: usize = 4096;

/// Distribution CA bundles, in the order tried when `ca_file` is not set.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// How the client authenticates the server and itself (config keys).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
}

/// Why an https request gave no usable answer.
#[derive(Debug)]
pub enum HttpsError {
    /// Local setup (ca_file, client certificate, token) is unusable.
    Setup(String),
    /// The deadline passed before the answer was complete.
    Timeout(Duration),
    /// No connection could be made (refused, unreachable, DNS).
    Connect(String),
    /// The connection broke after it was made.
    Io(String),
    /// The TLS handshake failed: an untrusted, expired or misnamed
    /// certificate, or a protocol mismatch.
    Tls(String),
    /// A status other than 200.
    Status(u16),
    /// A redirect (never followed).
    Redirect(u16, Option<String>),
    TooLarge {
        what: &'static str,
        limit: usize,
    },
    /// The answer is not HTTP as expected (bad framing, bad header).
    Protocol(String),
    /// Signatures are required and the server offered none.
    Unsigned(String),
}

impl HttpsError {
    /// The server could not be reached or had a transient failure (5xx,
    /// timeout): another source, then the cache, may be used. Everything
    /// else is an answer we refuse, which always denies.
    pub fn is_unavailable(&self) -> bool {
        match self {
            HttpsError::Timeout(_) | HttpsError::Connect(_) | HttpsError::Io(_) => true,
            HttpsError::Status(s) => (500..600).contains(s),
            _ => false,
        }
    }
}

impl fmt::Display for HttpsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpsError::Setup(m) => f.write_str(m),
            HttpsError::Timeout(d) => write!(f, "no complete answer within {} ms", d.as_millis()),
            HttpsError::Connect(m) => write!(f, "cannot connect: {m}"),
            HttpsError::Io(m) => write!(f, "connection failed: {m}"),
            HttpsError::Tls(m) => write!(f, "TLS: {m}"),
            HttpsError::Status(s) => write!(f, "HTTP status {s}"),
            HttpsError::Redirect(s, to) => write!(
                f,
                "HTTP status {s} redirects to {}: redirects are not followed, configure the final URL",
                to.as_deref().unwrap_or("(no location)")
            ),
            HttpsError::TooLarge { what, limit } => write!(f, "{what} larger than {limit} bytes"),
            HttpsError::Protocol(m) => write!(f, "bad HTTP answer: {m}"),
            HttpsError::Unsigned(m) => f.write_str(m),
        }
    }
}

/// A fetched document and, when asked for, its detached signature.
#[derive(Debug)]
pub struct Fetched {
    pub body: Vec<u8>,
    /// The armored `ssh-keygen -Y sign` signature.
    pub signature: Option<Vec<u8>>,
}

/// A configured client; cheap to build with a pinned CA, cheap to clone.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    token: Option<String>,
}

impl Client {
    pub fn new(settings: &TlsSettings) -> Result<Client, HttpsError> {
        let roots = match &settings.ca_file {
            Some(path) => load_roots(path, true)?,
            None => system_roots()?,
        };
        let mut tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .root_certs(RootCerts::new_with_certs(&roots));
        match (&settings.client_cert, &settings.client_key) {
            (Some(cert), Some(key)) => tls = tls.client_cert(Some(client_cert(cert, key)?)),
            (None, None) => {}
            _ => {
                return Err(HttpsError::Setup(
                    "client_cert and client_key go together".into(),
                ));
            }
        }
        let token = settings.token_file.as_deref().map(read_token).transpose()?;
        let agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            .max_redirects(0)
            // The helper's environment should carry no proxy settings; if
            // it does, they are not ours to follow.
            .proxy(None)
            .user_agent(concat!("sshjit/", env!("CARGO_PKG_VERSION")))
            .accept("application/json")
            .accept_encoding("")
            .max_response_header_size(MAX_HEADER_BYTES)
            .max_idle_connections(2)
            .build()
            .new_agent();
        Ok(Client { agent, token })
    }

    /// Fetches the document for `query`, and its signature when
    /// `signed`: from the `Sshjit-Signature` header, else from
    /// `<path>.sig` with the same query. At most one quick retry of a
    /// request that could not connect, all before `deadline`.
    pub fn fetch(
        &self,
        url: &Url,
        query: &Scope<'_>,
        signed: bool,
        deadline: Instant,
    ) -> Result<Fetched, HttpsError> {
        let (body, header) = self.get_with_retry(&url.request(query, ""), deadline, true)?;
        let signature = match (signed, header) {
            (false, _) => None,
            (true, Some(h)) => Some(h),
            (true, None) => {
                let sig_url = url.request(query, ".sig");
                match self.get_with_retry(&sig_url, deadline, false) {
                    Ok((sig, _)) => Some(sig),
                    Err(HttpsError::Status(s @ (404 | 410))) => {
                        return Err(HttpsError::Unsigned(format!(
                            "unsigned: no {} header and {sig_url} answered {s}",
                            "Sshjit-Signature"
                        )));
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        Ok(Fetched { body, signature })
    }

    fn get_with_retry(
        &self,
        url: &str,
        deadline: Instant,
        document: bool,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), HttpsError> {
        match self.get(url, deadline, document) {
            Err(HttpsError::Connect(_))
                if deadline.saturating_duration_since(Instant::now())
                    > RETRY_PAUSE + MIN_RETRY_BUDGET =>
            {
                std::thread::sleep(RETRY_PAUSE);
                self.get(url, deadline, document)
            }
            other => other,
        }
    }

    fn get(
        &self,
        url: &str,
        deadline: Instant,
        document: bool,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), HttpsError> {
        let budget = deadline.saturating_duration_since(Instant::now());
        if budget.is_zero() {
            return Err(HttpsError::Timeout(Duration::ZERO));
        }
        let started = Instant::now();
        let timeout = |e: ureq::Error| classify(e, started.elapsed());
        let mut req = self.agent.get(url);
        if let Some(t) = &self.token {
            req = req.header("authorization", &format!("Bearer {t}"));
        }
        let mut resp = req
            .config()
            .timeout_global(Some(budget))
            .build()
            .call()
            .map_err(timeout)?;
        let status = resp.status().as_u16();
        if (300..400).contains(&status) {
            let to = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(200).collect());
            return Err(HttpsError::Redirect(status, to));
        }
        if status != 200 {
            return Err(HttpsError::Status(status));
        }
        let (limit, what) = if document {
            (MAX_RESPONSE_BYTES, "response")
        } else {
            (MAX_SIGNATURE_BYTES, "signature")
        };
        let header = if document {
            signature_header(resp.headers())?
        } else {
            None
        };
        // Refuse a declared oversize before reading any of it.
        if resp
            .body()
            .content_length()
            .is_some_and(|n| n > limit as u64)
        {
            return Err(HttpsError::TooLarge { what, limit });
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(limit as u64)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => HttpsError::TooLarge { what, limit },
                e => timeout(e),
            })?;
        Ok((body, header))
    }
}

/// A request's method, for [`Client::send`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// What [`Client::send`] got: any status, the body (bounded), and the
/// headers a caller of the server's API reads.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub etag: Option<String>,
    /// The `Sshjit-Signature` header, base64-decoded.
    pub signature: Option<Vec<u8>>,
}

/// One request to the server's API, for [`Client::send`].
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub method: Method,
    pub url: &'a str,
    /// Instead of the configured token.
    pub bearer: Option<&'a str>,
    /// The JSON body of a `POST`.
    pub json: Option<&'a [u8]>,
    /// More headers (such as `if-none-match`).
    pub extra: &'a [(&'a str, &'a str)],
    pub deadline: Instant,
    /// Largest body read.
    pub limit: usize,
}

impl Client {
    /// One request to the server's API. Every status is returned, not only
    /// 200; redirects are refused; the body is read up to the call's limit;
    /// everything happens before its deadline.
    pub fn send(&self, call: Call<'_>) -> Result<Reply, HttpsError> {
        let Call {
            method,
            url,
            bearer,
            json,
            extra,
            deadline,
            limit,
        } = call;
        let budget = deadline.saturating_duration_since(Instant::now());
        if budget.is_zero() {
            return Err(HttpsError::Timeout(Duration::ZERO));
        }
        let started = Instant::now();
        let timeout = |e: ureq::Error| classify(e, started.elapsed());
        let token = bearer.or(self.token.as_deref());
        let mut resp = match method {
            Method::Get => {
                let mut req = self.agent.get(url);
                if let Some(t) = token {
                    req = req.header("authorization", &format!("Bearer {t}"));
                }
                for (k, v) in extra {
                    req = req.header(*k, *v);
                }
                req.config()
                    .timeout_global(Some(budget))
                    .build()
                    .call()
                    .map_err(timeout)?
            }
            Method::Post => {
                let mut req = self
                    .agent
                    .post(url)
                    .header("content-type", "application/json");
                if let Some(t) = token {
                    req = req.header("authorization", &format!("Bearer {t}"));
                }
                for (k, v) in extra {
                    req = req.header(*k, *v);
                }
                req.config()
                    .timeout_global(Some(budget))
                    .build()
                    .send(json.unwrap_or(b"{}"))
                    .map_err(timeout)?
            }
        };
        let status = resp.status().as_u16();
        if (300..400).contains(&status) && status != 304 {
            let to = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(200).collect());
            return Err(HttpsError::Redirect(status, to));
        }
        let signature = signature_header(resp.headers())?;
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(128).collect());
        if resp
            .body()
            .content_length()
            .is_some_and(|n| n > limit as u64)
        {
            return Err(HttpsError::TooLarge {
                what: "response",
                limit,
            });
        }
        let body = if status == 304 {
            Vec::new()
        } else {
            resp.body_mut()
                .with_config()
                .limit(limit as u64)
                .read_to_vec()
                .map_err(|e| match e {
                    ureq::Error::BodyExceedsLimit(_) => HttpsError::TooLarge {
                        what: "response",
                        limit,
                    },
                    e => timeout(e),
                })?
        };
        Ok(Reply {
            status,
            body,
            etag,
            signature,
        })
    }
}

/// The `Sshjit-Signature` header, base64-decoded: exactly one, or none.
fn signature_header(headers: &ureq::http::HeaderMap) -> Result<Option<Vec<u8>>, HttpsError> {
    let mut values = headers.get_all(SIGNATURE_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(HttpsError::Protocol(
            "more than one Sshjit-Signature header".into(),
        ));
    }
    let text = value
        .to_str()
        .map_err(|_| HttpsError::Protocol("Sshjit-Signature is not ASCII".into()))?
        .trim();
    if text.len() > MAX_SIGNATURE_BYTES * 4 / 3 + 4 {
        return Err(HttpsError::TooLarge {
            what: "Sshjit-Signature header",
            limit: MAX_SIGNATURE_BYTES,
        });
    }
    use ssh_encoding::base64::{Base64, Encoding};
    Base64::decode_vec(text)
        .map(Some)
        .map_err(|_| HttpsError::Protocol("Sshjit-Signature is not valid base64".into()))
}

/// Sorts ureq's errors into ours; `elapsed` is reported for timeouts.
fn classify(e: ureq::Error, elapsed: Duration) -> HttpsError {
    match e {
        ureq::Error::Timeout(_) => HttpsError::Timeout(elapsed),
        ureq::Error::HostNotFound => HttpsError::Connect("host not found".into()),
        ureq::Error::ConnectionFailed => HttpsError::Connect("connection failed".into()),
        ureq::Error::Rustls(e) => HttpsError::Tls(e.to_string()),
        ureq::Error::Tls(m) => HttpsError::Tls(m.to_string()),
        ureq::Error::Io(e) => classify_io(e, elapsed),
        ureq::Error::BodyExceedsLimit(_) => HttpsError::TooLarge {
            what: "response",
            limit: MAX_RESPONSE_BYTES,
        },
        other => HttpsError::Protocol(other.to_string()),
    }
}

fn classify_io(e: io::Error, elapsed: Duration) -> HttpsError {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return HttpsError::Tls(tls.to_string());
    }
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => HttpsError::Timeout(elapsed),
        io::ErrorKind::ConnectionRefused
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable
        | io::ErrorKind::AddrNotAvailable => HttpsError::Connect(e.to_string()),
        _ => HttpsError::Io(e.to_string()),
    }
}

/// Every certificate in a PEM file; with `strict`, each must be usable as
/// a root and there must be at least one.
fn load_roots(path: &Path, strict: bool) -> Result<Vec<Certificate<'static>>, HttpsError> {
    let setup = |m: String| HttpsError::Setup(format!("ca_file {}: {m}", path.display()));
    let bytes = file::read_secure(path, MAX_CA_FILE_BYTES).map_err(|e| setup(e.to_string()))?;
    let mut store = rustls::RootCertStore::empty();
    let mut roots = Vec::new();
    for (i, der) in CertificateDer::pem_slice_iter(&bytes).enumerate() {
        let der = der.map_err(|e| setup(format!("PEM: {e}")))?;
        match store.add(der.clone()) {
            Ok(()) => roots.push(Certificate::from_der(der.as_ref()).to_owned()),
            Err(e) if strict => {
                return Err(setup(format!(
                    "certificate {} is not a usable root: {e}",
                    i + 1
                )));
            }
            Err(_) => {}
        }
    }
    if roots.is_empty() {
        return Err(setup("no CERTIFICATE in it".into()));
    }
    Ok(roots)
}

fn system_roots() -> Result<Vec<Certificate<'static>>, HttpsError> {
    for bundle in SYSTEM_BUNDLES {
        match load_roots(Path::new(bundle), false) {
            Err(HttpsError::Setup(m)) if m.contains("no such file") => continue,
            other => return other,
        }
    }
    Err(HttpsError::Setup(format!(
        "no ca_file configured and no system CA bundle found (looked for {})",
        SYSTEM_BUNDLES.join(", ")
    )))
}

/// The client certificate chain and key, checked to belong together.
fn client_cert(cert: &Path, key: &Path) -> Result<ClientCert, HttpsError> {
    let cert_bytes = file::read_secure(cert, MAX_CA_FILE_BYTES)
        .map_err(|e| HttpsError::Setup(format!("client_cert: {e}")))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| HttpsError::Setup(format!("client_cert {}: PEM: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(HttpsError::Setup(format!(
            "client_cert {}: no CERTIFICATE in it",
            cert.display()
        )));
    }
    let key_bytes = file::read_secret(key, MAX_SECRET_BYTES)
        .map_err(|e| HttpsError::Setup(format!("client_key: {e}")))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
        HttpsError::Setup(format!(
            "client_key {}: no PKCS#8, PKCS#1 or SEC1 private key: {e}",
            key.display()
        ))
    })?;
    // ureq would panic on a key that does not match the certificate:
    // let rustls check the pair first.
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpsError::Setup(e.to_string()))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_client_auth_cert(chain.clone(), key_der.clone_key())
        .map_err(|e| {
            HttpsError::Setup(format!(
                "client_cert {} and client_key {}: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    let key = PrivateKey::from_pem(&key_bytes)
        .map_err(|e| HttpsError::Setup(format!("client_key {}: {e}", key.display())))?;
    let chain: Vec<Certificate<'static>> = chain
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    Ok(ClientCert::new_with_certs(&chain, key))
}

/// A bearer token: one line of RFC 6750 token68 characters.
fn read_token(path: &Path) -> Result<String, HttpsError> {
    let bytes = file::read_secret(path, MAX_SECRET_BYTES)
        .map_err(|e: FileError| HttpsError::Setup(format!("token_file: {e}")))?;
    let text = std::str::from_utf8(&bytes).unwrap_or("");
    let token = text.strip_suffix('\n').unwrap_or(text);
    let token = token.strip_suffix('\r').unwrap_or(token);
    let body = token.trim_end_matches('=');
    let ok = !body.is_empty()
        && token.len() <= MAX_TOKEN
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if !ok {
        return Err(HttpsError::Setup(format!(
            "token_file {}: must hold one bearer token (letters, digits, -._~+/ and trailing =, at most {MAX_TOKEN} bytes) on one line",
            path.display()
        )));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_means_transient() {
        for e in [
            HttpsError::Timeout(Duration::from_secs(1)),
            HttpsError::Connect("refused".into()),
            HttpsError::Io("reset".into()),
            HttpsError::Status(500),
            HttpsError::Status(503),
        ] {
            assert!(e.is_unavailable(), "{e}");
        }
        for e in [
            HttpsError::Status(404),
            HttpsError::Status(403),
            HttpsError::Status(204),
            HttpsError::Redirect(302, None),
            HttpsError::Tls("unknown issuer".into()),
            HttpsError::TooLarge {
                what: "response",
                limit: 1,
            },
            HttpsError::Protocol("x".into()),
            HttpsError::Unsigned("x".into()),
            HttpsError::Setup("x".into()),
        ] {
            assert!(!e.is_unavailable(), "{e}");
        }
    }

    #[test]
    fn signature_header_is_one_base64_value() {
        use ureq::http::{HeaderMap, HeaderValue};
        let mut h = HeaderMap::new();
        assert!(signature_header(&h).unwrap().is_none());
        h.insert("Sshjit-Signature", HeaderValue::from_static("aGVsbG8="));
        assert_eq!(signature_header(&h).unwrap().unwrap(), b"hello");
        h.append("sshjit-signature", HeaderValue::from_static("aGVsbG8="));
        assert!(signature_header(&h).is_err());
        let mut h = HeaderMap::new();
        h.insert("sshjit-signature", HeaderValue::from_static("not base64!"));
        assert!(signature_header(&h).is_err());
    }
}
