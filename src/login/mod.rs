//! The login path: `sshjit keys` and `sshjit principals`, run by sshd.
//! Glue around `policy::evaluate`: read the source, decide, print, log one
//! line. Every error denies: nothing on stdout, a non-zero exit, one log
//! line saying why.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{self, ConfigError};
use crate::log::{Line, Severity, Syslog};
use crate::source::{self, IndexQuery, Query, SourceError};
use crate::system::HostLocalTime;
use crate::{Globals, HostError, exit};
use sshjit_policy::render::{self, Expiry, RenderError};
use sshjit_policy::time::Timestamp;
use sshjit_policy::{
    Decision, Denial, Fingerprint, KeyId, Mode, Policy, PolicyError, Request, Username, evaluate,
    types::parse_serial,
};

/// Which question sshd asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeKind {
    Keys,
    Principals,
}

impl ModeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModeKind::Keys => "keys",
            ModeKind::Principals => "principals",
        }
    }
}

/// The login-path arguments exactly as sshd passed them (unchecked).
#[derive(Clone, Debug)]
pub struct LoginArgs {
    pub mode: ModeKind,
    pub user: String,
    pub fingerprint: Option<String>,
    pub key_id: Option<String>,
    pub serial: Option<String>,
}

/// Why a login-path call denied by error.
#[derive(Debug)]
pub enum LoginError {
    Argument(String),
    Config(ConfigError),
    Host(String),
    Source(SourceError),
    Policy { origin: String, error: PolicyError },
    Render(RenderError),
    Output(io::Error),
}

impl LoginError {
    pub fn exit_code(&self) -> u8 {
        match self {
            LoginError::Argument(_) => exit::USAGE,
            LoginError::Output(_) => exit::INTERNAL,
            _ => exit::DENIED,
        }
    }
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginError::Argument(m) => write!(f, "bad argument: {m}"),
            LoginError::Config(e) => e.fmt(f),
            LoginError::Host(m) => write!(f, "host name: {m}"),
            LoginError::Source(e) => write!(f, "policy source: {e}"),
            LoginError::Policy { origin, error } => write!(f, "policy {origin}: {error}"),
            LoginError::Render(e) => write!(f, "render: {e}"),
            LoginError::Output(e) => write!(f, "writing to sshd: {e}"),
        }
    }
}

/// Runs one login-path call; returns the exit status.
pub fn run(globals: &Globals, args: &LoginArgs, started: Instant) -> u8 {
    run_to(globals, args, started, &mut io::stdout())
}

/// `run`, writing the answer for sshd to `out` (one write of the whole
/// answer, then a flush).
pub fn run_to(globals: &Globals, args: &LoginArgs, started: Instant, out: &mut dyn Write) -> u8 {
    let mut line = Line::new();
    line.field("mode", args.mode.as_str());
    line.field("user", &args.user);
    line.field_opt("fp", args.fingerprint.as_deref());
    line.field_opt("key_id", args.key_id.as_deref());
    line.field_opt("cert_serial", args.serial.as_deref());

    // The syslog socket comes from the config; until it is read, the default.
    let mut syslog = Syslog::new(config::DEFAULT_SYSLOG_SOCKET);
    // A panic (a bug) must still deny with one line saying so: the process
    // then dies by a signal and sshd discards its output.
    let (panic_line, panic_log) = (line.clone(), syslog.clone());
    std::panic::set_hook(Box::new(move |info| {
        let mut l = panic_line.clone();
        l.field("outcome", "error")
            .field("error", &format!("internal error: {info}"));
        panic_log.log(Severity::Err, l.as_str());
    }));
    let watchdog = match Watchdog::arm(
        config::DEFAULT_TIMEOUT,
        syslog.clone(),
        line.clone(),
        started,
    ) {
        Ok(w) => w,
        Err(e) => {
            // Without a deadline the call could hang a login: deny.
            line.field("outcome", "error")
                .field("error", &format!("cannot start the deadline thread: {e}"));
            syslog.log(Severity::Err, line.as_str());
            return exit::INTERNAL;
        }
    };
    let result = decide(
        globals,
        args,
        &mut line,
        &mut syslog,
        &watchdog,
        started,
        out,
    );
    let (severity, code) = match &result {
        Ok(severity) => (*severity, exit::OK),
        Err(e) => {
            line.field("outcome", "error")
                .field("error", &e.to_string());
            (Severity::Err, e.exit_code())
        }
    };
    line.field("latency_us", &started.elapsed().as_micros().to_string());
    if watchdog.disarm() {
        syslog.log(severity, line.as_str());
    }
    code
}

fn decide(
    globals: &Globals,
    args: &LoginArgs,
    line: &mut Line,
    syslog: &mut Syslog,
    watchdog: &Watchdog,
    started: Instant,
    out: &mut dyn Write,
) -> Result<Severity, LoginError> {
    let user =
        Username::new(args.user.as_str()).map_err(|e| LoginError::Argument(e.to_string()))?;
    let offered = args
        .fingerprint
        .as_deref()
        .map(Fingerprint::parse)
        .transpose()
        .map_err(|e| LoginError::Argument(e.to_string()))?;
    // sshd expands %i to an empty string for a certificate without a key ID.
    let key_id = match args.key_id.as_deref() {
        None | Some("") => None,
        Some(k) => Some(KeyId::new(k).map_err(|e| LoginError::Argument(e.to_string()))?),
    };
    let serial = args
        .serial
        .as_deref()
        .map(parse_serial)
        .transpose()
        .map_err(|e| LoginError::Argument(e.to_string()))?;
    let mode = match args.mode {
        ModeKind::Keys => {
            if key_id.is_some() || serial.is_some() {
                return Err(LoginError::Argument(
                    "--key-id and --serial belong to the principals mode".into(),
                ));
            }
            Mode::Keys { offered }
        }
        ModeKind::Principals => Mode::Principals {
            key_id: key_id.as_ref(),
            serial,
            fingerprint: offered,
        },
    };

    let config = config::load(globals.config.as_deref()).map_err(LoginError::Config)?;
    *syslog = Syslog::new(&config.syslog_socket);
    watchdog.update(config.timeout, syslog.clone());
    let host = crate::host_name(globals, &config).map_err(|e| match e {
        HostError::Argument(m) => LoginError::Argument(m),
        HostError::System(m) => LoginError::Host(m),
    })?;
    line.field("host", host.as_str());

    let sources = crate::sources(globals, &config).map_err(LoginError::Argument)?;
    let fetch_req = source::Request {
        query: Query {
            user: Some(user.as_str()),
            host: Some(host.as_str()),
            mode: Some(args.mode.as_str()),
        },
        deadline: source::network_deadline(started, config.timeout),
        persist: true,
    };
    // A local policy with a fresh index: read only this user's part.
    let index_query = IndexQuery {
        user: user.as_str(),
        certificate: match mode {
            Mode::Keys { .. } => None,
            Mode::Principals {
                key_id,
                serial,
                fingerprint,
            } => Some((key_id, serial, fingerprint)),
        },
    };
    let fetched = source::fetch(&sources, &config.fetch, &fetch_req, Some(index_query))
        .map_err(LoginError::Source)?;
    line.field("source", &fetched.doc.origin);
    line.field("index", fetched.index);
    if !fetched.failures.is_empty() {
        line.field("unavailable", &fetched.failures.join("; "));
    }
    if let Some(age) = fetched.cache_age {
        line.field("cache", "hit")
            .field("age_s", &age.as_secs().to_string());
    }
    if let Some(signer) = &fetched.signer {
        line.field("signed_by", &signer.principals)
            .field("signer_fp", &signer.fingerprint);
    }
    let policy = Policy::parse(&fetched.doc.bytes).map_err(|error| LoginError::Policy {
        origin: fetched.doc.origin.clone(),
        error,
    })?;
    if let Some(s) = policy.serial {
        line.field("policy_serial", &s.to_string());
    }
    if policy.frozen {
        line.field("frozen", "true");
    }
    let accepted = source::accept(&fetched, policy.serial, &config.fetch, &fetch_req)
        .map_err(LoginError::Source)?;
    if let Some(from) = accepted.raised_from {
        line.field(
            "serial_raised_from",
            &from.map_or_else(|| "none".to_owned(), |f| f.to_string()),
        );
    }
    if let Some(e) = &accepted.cache_error {
        line.field("cache_error", e);
    }
    // An answer from the cache may lack what was published since: say so
    // at warning level at least.
    let stale = |s: Severity| {
        if fetched.cache_age.is_some() {
            s.min(Severity::Warning)
        } else {
            s
        }
    };

    let req = Request {
        user: &user,
        host: &host,
        mode,
    };
    let now = Timestamp::now();
    // Through the index, the user's part decides as the whole would.
    let decision = match &fetched.indexed {
        Some(info) => info.evaluate(&policy, &req, now),
        None => evaluate(&policy, &req, now),
    };
    let valid = match decision {
        Decision::Allow(valid) => valid,
        Decision::Deny(denial) => {
            line.field("outcome", "none");
            match denial {
                Denial::NoValidGrant => line.field("reason", "no-valid-grant"),
                Denial::CertificateRevoked { revocation } => line
                    .field("reason", "certificate-revoked")
                    .field("revocation", &revocation.to_string()),
            };
            return Ok(stale(Severity::Notice));
        }
    };
    let rendered = render::render(&valid, Expiry::new(config.expiry_time, &HostLocalTime), now)
        .map_err(LoginError::Render)?;
    if rendered.lines.is_empty() {
        // Valid for a fraction of a second more, but no whole second left
        // for sshd's expiry-time: nothing to print.
        line.field("outcome", "none").field("reason", "expiring");
        return Ok(Severity::Notice);
    }
    let matched: Vec<&str> = rendered
        .lines
        .iter()
        .flatten()
        .map(|id| id.as_str())
        .collect();
    line.field("matched", &matched.join(","));
    line.field("lines", &rendered.lines.len().to_string());
    let break_glass: Vec<&str> = valid
        .iter()
        .filter(|g| g.break_glass)
        .map(|g| g.id.as_str())
        .collect();
    if !break_glass.is_empty() {
        line.field("break_glass", &break_glass.join(","));
    }
    // Past the deadline nothing may be printed: the watchdog has already
    // denied and is exiting.
    if !watchdog.still_running() {
        return Err(LoginError::Output(io::Error::other("deadline passed")));
    }
    out.write_all(&rendered.text)
        .and_then(|()| out.flush())
        .map_err(LoginError::Output)?;
    line.field("outcome", "allow");
    Ok(stale(if break_glass.is_empty() {
        Severity::Info
    } else {
        Severity::Alert
    }))
}

/// Denies from a second thread when the call overruns its deadline: logs
/// one line and exits non-zero, so sshd discards anything printed.
struct Watchdog {
    /// True until the main thread claims the outcome or the watchdog fires.
    running: Arc<AtomicBool>,
    /// The deadline and where to log, both updated once the config is read.
    state: Arc<Mutex<(Instant, Syslog)>>,
    started: Instant,
}

impl Watchdog {
    fn arm(timeout: Duration, syslog: Syslog, line: Line, started: Instant) -> io::Result<Self> {
        let running = Arc::new(AtomicBool::new(true));
        let state = Arc::new(Mutex::new((started + timeout, syslog)));
        let (r, s) = (Arc::clone(&running), Arc::clone(&state));
        std::thread::Builder::new()
            .name("deadline".into())
            .spawn(move || Watchdog::watch(&r, &s, line, started))?;
        Ok(Watchdog {
            running,
            state,
            started,
        })
    }

    fn watch(
        running: &AtomicBool,
        state: &Mutex<(Instant, Syslog)>,
        mut line: Line,
        started: Instant,
    ) {
        loop {
            let deadline = state.lock().map_or_else(|_| Instant::now(), |s| s.0);
            let now = Instant::now();
            if now < deadline {
                std::thread::sleep(deadline - now);
                continue;
            }
            if running.swap(false, Ordering::SeqCst) {
                line.field("outcome", "error")
                    .field("error", "deadline exceeded")
                    .field("latency_us", &started.elapsed().as_micros().to_string());
                if let Ok(s) = state.lock() {
                    s.1.log(Severity::Err, line.as_str());
                }
                std::process::exit(i32::from(exit::INTERNAL));
            }
            return;
        }
    }

    fn update(&self, timeout: Duration, syslog: Syslog) {
        if let Ok(mut s) = self.state.lock() {
            *s = (self.started + timeout, syslog);
        }
    }

    fn still_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Claims the outcome for the main thread; false if the watchdog already fired.
    fn disarm(&self) -> bool {
        self.running.swap(false, Ordering::SeqCst)
    }
}
