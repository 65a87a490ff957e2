//! The last step of a login: the answer on stdout (only when allowed, and
//! never past the deadline) and the one decision line, built in one place
//! from what each step found.

use std::io::{self, Write};
use std::time::Duration;

use super::decide::Outcome;
use super::{LoginArgs, LoginError};
use crate::load::{Header, LoadError, Loaded, Setup};
use crate::log::{Line, Severity};
use crate::source::{Accepted, Fetched};
use sshjit_policy::Denial;

/// What the steps of one login found, for its decision line.
#[derive(Clone, Debug, Default)]
pub struct Record {
    mode: &'static str,
    user: String,
    fingerprint: Option<String>,
    key_id: Option<String>,
    serial: Option<String>,
    host: Option<String>,
    fetched: Option<FetchFacts>,
    header: Option<Header>,
    accepted: Option<Accepted>,
    verdict: Option<Verdict>,
    error: Option<String>,
}

/// Where the document came from and how.
#[derive(Clone, Debug)]
struct FetchFacts {
    origin: String,
    index: &'static str,
    unavailable: Vec<String>,
    cache_age: Option<Duration>,
    signer: Option<(String, String)>,
}

/// The decision, as the line tells it.
#[derive(Clone, Debug)]
enum Verdict {
    Deny(Denial),
    Expiring,
    Allow {
        matched: String,
        lines: usize,
        break_glass: String,
    },
}

impl Record {
    /// The arguments exactly as sshd passed them (before any check).
    pub fn new(args: &LoginArgs) -> Self {
        Record {
            mode: args.mode.as_str(),
            user: args.user.clone(),
            fingerprint: args.fingerprint.clone(),
            key_id: args.key_id.clone(),
            serial: args.serial.clone(),
            ..Record::default()
        }
    }

    pub fn set_up(&mut self, setup: &Setup) {
        self.host = setup.host.as_ref().map(|h| h.as_str().to_owned());
    }

    pub fn fetched(&mut self, f: &Fetched) {
        self.fetched = Some(FetchFacts {
            origin: f.doc.origin.clone(),
            index: f.view.word(),
            unavailable: f.failures.clone(),
            cache_age: f.cache_age,
            signer: f
                .signer
                .as_ref()
                .map(|s| (s.principals.clone(), s.fingerprint.clone())),
        });
    }

    /// A document that parsed but was refused still tells its header.
    pub fn refused(&mut self, e: &LoadError) {
        if let LoadError::Refused { header, .. } = e {
            self.header = Some(*header);
        }
    }

    pub fn loaded(&mut self, loaded: &Loaded<'_>) {
        self.header = Some(Header::of(&loaded.policy));
        self.accepted = Some(loaded.accepted.clone());
    }

    pub fn failed(&mut self, e: &LoginError) {
        self.error = Some(e.to_string());
    }

    /// The error of a call that ends without a decision of its own
    /// (a panic, the deadline).
    pub fn with_error(&self, error: &str) -> Record {
        Record {
            error: Some(error.to_owned()),
            ..self.clone()
        }
    }

    /// Served from the cache: it may lack what was published since.
    fn stale(&self) -> bool {
        self.fetched.as_ref().is_some_and(|f| f.cache_age.is_some())
    }

    /// How loud the line is: errors, break-glass logins and (at warning
    /// at least) answers from the cache stand out.
    pub fn severity(&self) -> Severity {
        let stale = |s: Severity| {
            if self.stale() {
                s.min(Severity::Warning)
            } else {
                s
            }
        };
        if self.error.is_some() {
            return Severity::Err;
        }
        match &self.verdict {
            Some(Verdict::Deny(_)) => stale(Severity::Notice),
            Some(Verdict::Expiring) => Severity::Notice,
            Some(Verdict::Allow { break_glass, .. }) if break_glass.is_empty() => {
                stale(Severity::Info)
            }
            Some(Verdict::Allow { .. }) => stale(Severity::Alert),
            None => Severity::Err,
        }
    }

    /// The decision line: fields in a fixed order, those of the steps
    /// reached; `latency` last when known.
    pub fn line(&self, latency: Option<Duration>) -> Line {
        let mut line = Line::new();
        // The parent is sshd's process for this connection, the pid in
        // sshd's own lines about it (which carry the client's address):
        // right after `mode`, before any value a client chose, so a filter
        // such as Fail2Ban's can tie the two together safely.
        line.field("mode", self.mode)
            .field("ppid", &std::os::unix::process::parent_id().to_string())
            .field("user", &self.user)
            .field_opt("fp", self.fingerprint.as_deref())
            .field_opt("key_id", self.key_id.as_deref())
            .field_opt("cert_serial", self.serial.as_deref())
            .field_opt("host", self.host.as_deref());
        if let Some(f) = &self.fetched {
            line.field("source", &f.origin).field("index", f.index);
            if !f.unavailable.is_empty() {
                line.field("unavailable", &f.unavailable.join("; "));
            }
            if let Some(age) = f.cache_age {
                line.field("cache", "hit")
                    .field("age_s", &age.as_secs().to_string());
            }
            if let Some((principals, fingerprint)) = &f.signer {
                line.field("signed_by", principals)
                    .field("signer_fp", fingerprint);
            }
        }
        if let Some(h) = &self.header {
            if let Some(s) = h.serial {
                line.field("policy_serial", &s.to_string());
            }
            if h.frozen {
                line.field("frozen", "true");
            }
        }
        if let Some(a) = &self.accepted {
            if let Some(from) = a.raised_from {
                line.field(
                    "serial_raised_from",
                    &from.map_or_else(|| "none".to_owned(), |f| f.to_string()),
                );
            }
            line.field_opt("cache_error", a.cache_error.as_deref());
        }
        match &self.verdict {
            Some(Verdict::Deny(Denial::NoValidGrant)) => {
                line.field("outcome", "none")
                    .field("reason", "no-valid-grant");
            }
            Some(Verdict::Deny(Denial::CertificateRevoked { revocation })) => {
                line.field("outcome", "none")
                    .field("reason", "certificate-revoked")
                    .field("revocation", &revocation.to_string());
            }
            Some(Verdict::Expiring) => {
                line.field("outcome", "none").field("reason", "expiring");
            }
            Some(Verdict::Allow {
                matched,
                lines,
                break_glass,
            }) => {
                line.field("matched", matched)
                    .field("lines", &lines.to_string());
                if !break_glass.is_empty() {
                    line.field("break_glass", break_glass);
                }
                if self.error.is_none() {
                    line.field("outcome", "allow");
                }
            }
            None => {}
        }
        if let Some(e) = &self.error {
            line.field("outcome", "error").field("error", e);
        }
        if let Some(l) = latency {
            line.field("latency_us", &l.as_micros().to_string());
        }
        line
    }
}

/// Records the outcome and, when allowed, writes the answer for sshd: one
/// write of the whole answer, then a flush.
pub fn answer(
    outcome: Outcome<'_>,
    record: &mut Record,
    in_time: impl Fn() -> bool,
    out: &mut dyn Write,
) -> Result<(), LoginError> {
    let answer = match outcome {
        Outcome::Deny(denial) => {
            record.verdict = Some(Verdict::Deny(denial));
            return Ok(());
        }
        Outcome::Expiring => {
            record.verdict = Some(Verdict::Expiring);
            return Ok(());
        }
        Outcome::Allow(answer) => answer,
    };
    record.verdict = Some(Verdict::Allow {
        matched: answer.matched.join(","),
        lines: answer.lines,
        break_glass: answer.break_glass.join(","),
    });
    // Past the deadline nothing may be printed: the watchdog has already
    // denied and is exiting.
    if !in_time() {
        return Err(LoginError::Output(io::Error::other("deadline passed")));
    }
    out.write_all(&answer.text)
        .and_then(|()| out.flush())
        .map_err(LoginError::Output)
}
