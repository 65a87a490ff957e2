//! The optional webhook (`webhook` in server.toml): one JSON POST per
//! change a security team wants to hear of at once — a revocation, a
//! freeze or thaw, a break-glass grant, and every step of an access
//! request (asked, approved, denied, expired, ended early, reviewed) —
//! with the record that made it. Sent after the change is committed and
//! never holding it up: a webhook that is down or slow is tried again a
//! few times within a bounded time, then logged, and the change stands.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sshjit::source::Url;
use sshjit::source::https::{Call, Client, Method, TlsSettings};
use sshjit::store::trail::{Action, Record};

use crate::log;

const DEADLINE: Duration = Duration::from_secs(5);
/// Attempts, and the pause after each failed one: at most about 30 s.
const RETRIES: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(3),
    Duration::from_secs(9),
    Duration::ZERO,
];

pub struct Webhook {
    url: Url,
    client: Client,
}

impl Webhook {
    pub fn new(url: Url) -> Result<Webhook, String> {
        let client = Client::new(&TlsSettings::default()).map_err(|e| format!("webhook: {e}"))?;
        Ok(Webhook { url, client })
    }

    /// The event a record makes, when it is one the webhook hears of.
    pub fn event(record: &Record<'_>) -> Option<Value> {
        let kind = match &record.action {
            Action::Revoke { .. } => "revoke",
            Action::Unrevoke { .. } => "unrevoke",
            Action::Freeze { .. } => "freeze",
            Action::Thaw { .. } => "thaw",
            Action::Grant { grant, .. } if grant.break_glass => "break_glass",
            Action::RequestOpen { .. } => "request",
            Action::RequestApprove { .. } => "approve",
            Action::RequestGrant { grant, .. } if grant.break_glass => "break_glass",
            Action::RequestGrant { .. } => "approved",
            Action::RequestDeny { .. } => "deny",
            Action::RequestExpire { .. } => "expire",
            Action::RequestDone { .. } => "done",
            Action::RequestReview { .. } => "review",
            _ => return None,
        };
        Some(json!({
            "event": kind,
            "seq": record.seq,
            "serial": record.serial,
            "by": record.actor.as_str(),
            "time": record.time.to_string(),
            "record": record,
        }))
    }

    /// Posts `event` in the background.
    pub fn send(&self, event: Value) {
        let url = self.url.join("");
        let client = self.client.clone();
        tokio::task::spawn_blocking(move || {
            let body = event.to_string();
            let kind = event["event"].as_str().unwrap_or("?").to_owned();
            for (attempt, pause) in RETRIES.iter().enumerate() {
                let sent = client.send(Call {
                    method: Method::Post,
                    url: &url,
                    bearer: None,
                    json: Some(body.as_bytes()),
                    extra: &[],
                    deadline: Instant::now() + DEADLINE,
                    limit: 64 * 1024,
                });
                let failure = match sent {
                    Ok(r) if (200..300).contains(&r.status) => return,
                    // A refusal is not going to change on its own.
                    Ok(r) if (400..500).contains(&r.status) && r.status != 429 => {
                        log::event(
                            "webhook",
                            &[("event", &kind), ("status", &r.status.to_string())],
                        );
                        return;
                    }
                    Ok(r) => format!("status {}", r.status),
                    Err(e) => e.to_string(),
                };
                let last = attempt + 1 == RETRIES.len();
                log::event(
                    "webhook",
                    &[
                        ("event", &kind),
                        ("error", &failure),
                        ("attempt", &(attempt + 1).to_string()),
                        ("outcome", if last { "given up" } else { "retrying" }),
                    ],
                );
                if last {
                    return;
                }
                std::thread::sleep(*pause);
            }
        });
    }
}
