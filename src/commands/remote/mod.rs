//! Talking to sshjit-server as a person: where the server is (`--server`,
//! else the client config), the session a login leaves (cached for the
//! user only), and the server's JSON API, whose refusals come back as the
//! same `Failure` a local command gives, with the same exit status.

pub mod session;
pub mod settings;

use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::change::{Applied, Change};
use super::{Failure, FailureKind};
use crate::Globals;
use crate::source::Url;
use crate::source::https::{self, Call, Client, HttpsError, Method, Reply, TlsSettings};
pub use session::Session;
pub use settings::ClientSettings;

/// How long one call to the server may take.
const DEADLINE: Duration = Duration::from_secs(30);
/// Largest answer read from the server's API (a policy, a trail).
const MAX_ANSWER: usize = 256 << 20;

/// A server to talk to.
pub struct Remote {
    pub url: Url,
    http: Client,
}

impl Remote {
    /// The server named by `--server`, else (when `default_from_config`)
    /// by the client config; `None` when neither names one.
    pub fn from_globals(
        globals: &Globals,
        default_from_config: bool,
    ) -> Result<Option<Remote>, Failure> {
        let settings = ClientSettings::load()?;
        let spec = match (&globals.server, default_from_config) {
            (Some(s), _) => s.clone(),
            (None, true) => match &settings.server {
                Some(s) => s.clone(),
                None => return Ok(None),
            },
            (None, false) => return Ok(None),
        };
        let url = Url::parse(&spec).map_err(|e| Failure::usage(format!("--server: {e}")))?;
        let http = Client::new(&TlsSettings {
            ca_file: settings.ca_file.clone(),
            ..TlsSettings::default()
        })
        .map_err(|e| Failure::refused(format!("--server: {e}")))?;
        Ok(Some(Remote { url, http }))
    }

    /// The server named by `--server` or the client config; a usage error
    /// when neither does.
    pub fn required(globals: &Globals) -> Result<Remote, Failure> {
        Remote::from_globals(globals, true)?.ok_or_else(|| {
            Failure::usage(
                "no server: give --server URL, or set `server` in ~/.config/sshjit/client.toml",
            )
        })
    }

    /// The cached session for this server.
    pub fn session(&self) -> Result<Session, Failure> {
        Session::load(&self.url)?.ok_or_else(|| {
            Failure::refused(format!(
                "not logged in to {}: run `sshjit login --server {}`",
                self.url, self.url
            ))
        })
    }

    /// Sends one request and reads the answer; `token`: the session's.
    pub fn send(
        &self,
        method: Method,
        endpoint: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<Reply, Failure> {
        self.http
            .send(Call {
                method,
                url: &self.url.join(endpoint),
                bearer: token,
                json: body,
                extra: &[],
                deadline: Instant::now() + DEADLINE,
                limit: MAX_ANSWER,
            })
            .map_err(|e| unreachable(&self.url, &e))
    }

    /// A call with the cached session: the JSON answer, or the server's
    /// refusal as a `Failure`.
    pub fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, Failure> {
        let session = self.session()?;
        let json = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| Failure::internal(format!("encoding the request: {e}")))?;
        let reply = self.send(method, endpoint, Some(&session.token), json.as_deref())?;
        if reply.status == 401 {
            // The session is over: forget it, say how to start another.
            let _ = Session::forget(&self.url);
        }
        decode(&self.url, reply)
    }

    /// Asks the server to apply a change; prints what it says as the same
    /// command on a file would.
    pub fn change(&self, change: &Change<'_>) -> Result<super::Output, Failure> {
        let applied: Applied = self.call(Method::Post, "/v1/admin/change", Some(change))?;
        Ok(applied.into_output())
    }

    /// A call with the session whose answer is raw bytes (a document, a trail).
    pub fn fetch(&self, endpoint: &str) -> Result<Vec<u8>, Failure> {
        let session = self.session()?;
        let reply = self.send(Method::Get, endpoint, Some(&session.token), None)?;
        if reply.status == 200 {
            return Ok(reply.body);
        }
        if reply.status == 401 {
            let _ = Session::forget(&self.url);
        }
        Err(refusal(&self.url, &reply))
    }
}

fn unreachable(url: &Url, e: &HttpsError) -> Failure {
    Failure::internal(format!("{url}: {e}"))
}

/// The JSON answer of a 200, else the server's refusal.
pub fn decode<T: DeserializeOwned>(url: &Url, reply: Reply) -> Result<T, Failure> {
    if reply.status != 200 {
        return Err(refusal(url, &reply));
    }
    serde_json::from_slice(&reply.body)
        .map_err(|e| Failure::internal(format!("{url}: an answer this sshjit cannot read: {e}")))
}

/// A refusal from the server: its message and kind (the exit status a
/// local command would have), else one from the status.
pub fn refusal(url: &Url, reply: &Reply) -> Failure {
    #[derive(serde::Deserialize)]
    struct Refusal {
        error: String,
        #[serde(default)]
        kind: Option<String>,
    }
    let parsed: Option<Refusal> = serde_json::from_slice(&reply.body).ok();
    let kind = match parsed.as_ref().and_then(|r| r.kind.as_deref()) {
        Some("usage") => FailureKind::Usage,
        Some("refused") => FailureKind::Refused,
        Some("internal") => FailureKind::Internal,
        _ => match reply.status {
            400 | 413 | 422 => FailureKind::Usage,
            500..=599 => FailureKind::Internal,
            _ => FailureKind::Refused,
        },
    };
    let message = match (parsed, reply.status) {
        (Some(r), 401) => format!(
            "{url}: {} (log in with `sshjit login --server {url}`)",
            shown(&r.error, 300)
        ),
        (Some(r), _) => shown(&r.error, 2000),
        (None, s) => format!("{url}: HTTP status {s}"),
    };
    Failure::new(kind, message)
}

/// A server's text as it may be shown on a terminal: control and bidi
/// characters escaped, at most `max` characters.
fn shown(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push_str("...");
            break;
        }
        let bidi = matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

pub use https::Method as HttpMethod;
