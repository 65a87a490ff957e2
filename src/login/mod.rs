//! The login path: `sshjit keys` and `sshjit principals`, run by sshd.
//! A pipeline: the request (sshd's arguments, checked) → load (config,
//! fetch, parse, accept: the policy, whole or this user's part) → decide
//! (pure) → emit (the answer on stdout, one log line). Every error denies:
//! nothing on stdout, a non-zero exit, one log line saying why.

mod decide;
mod emit;
mod request;
mod watchdog;

use std::fmt;
use std::io::{self, Write};
use std::time::Instant;

use crate::load::{self, Ask, LoadError};
use crate::log::{Severity, Syslog};
use crate::system::HostLocalTime;
use crate::{Globals, config, exit};
use emit::Record;
use sshjit_policy::render::{Expiry, RenderError};
use sshjit_policy::time::Timestamp;
use watchdog::Watchdog;

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
    /// An argument from sshd is not valid.
    Argument(String),
    Load(LoadError),
    Render(RenderError),
    Output(io::Error),
}

impl LoginError {
    pub fn exit_code(&self) -> u8 {
        match self {
            LoginError::Argument(_) => exit::USAGE,
            LoginError::Load(e) => e.exit_code(),
            LoginError::Render(_) => exit::DENIED,
            LoginError::Output(_) => exit::INTERNAL,
        }
    }
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginError::Argument(m) | LoginError::Load(LoadError::Argument(m)) => {
                write!(f, "bad argument: {m}")
            }
            LoginError::Load(LoadError::Host(m)) => write!(f, "host name: {m}"),
            LoginError::Load(e @ (LoadError::Source(_) | LoadError::Refused { .. })) => {
                write!(f, "policy source: {e}")
            }
            LoginError::Load(e) => e.fmt(f),
            LoginError::Render(e) => write!(f, "render: {e}"),
            LoginError::Output(e) => write!(f, "writing to sshd: {e}"),
        }
    }
}

impl From<LoadError> for LoginError {
    fn from(e: LoadError) -> Self {
        LoginError::Load(e)
    }
}

/// Runs one login-path call; returns the exit status.
pub fn run(globals: &Globals, args: &LoginArgs, started: Instant) -> u8 {
    run_to(globals, args, started, &mut io::stdout())
}

/// `run`, writing the answer for sshd to `out` (one write of the whole
/// answer, then a flush).
pub fn run_to(globals: &Globals, args: &LoginArgs, started: Instant, out: &mut dyn Write) -> u8 {
    let mut record = Record::new(args);
    // The syslog socket comes from the config; until it is read, the default.
    let mut syslog = Syslog::new(config::DEFAULT_SYSLOG_SOCKET);
    // A panic (a bug) must still deny with one line saying so: the process
    // then dies by a signal and sshd discards its output.
    let (panic_record, panic_log) = (record.clone(), syslog.clone());
    std::panic::set_hook(Box::new(move |info| {
        let line = panic_record
            .with_error(&format!("internal error: {info}"))
            .line(None);
        panic_log.log(Severity::Err, line.as_str());
    }));
    let late = record.with_error("deadline exceeded");
    let watchdog = match Watchdog::arm(
        config::DEFAULT_TIMEOUT,
        syslog.clone(),
        move |elapsed| late.line(Some(elapsed)).as_str().to_owned(),
        started,
    ) {
        Ok(w) => w,
        Err(e) => {
            // Without a deadline the call could hang a login: deny.
            let error = format!("cannot start the deadline thread: {e}");
            syslog.log(Severity::Err, record.with_error(&error).line(None).as_str());
            return exit::INTERNAL;
        }
    };
    let result = login(
        globals,
        args,
        started,
        &mut record,
        &mut syslog,
        &watchdog,
        out,
    );
    let code = match &result {
        Ok(()) => exit::OK,
        Err(e) => {
            record.failed(e);
            e.exit_code()
        }
    };
    if watchdog.disarm() {
        let line = record.line(Some(started.elapsed()));
        syslog.log(record.severity(), line.as_str());
    }
    code
}

/// One login, step by step; `record` keeps what each step found.
fn login(
    globals: &Globals,
    args: &LoginArgs,
    started: Instant,
    record: &mut Record,
    syslog: &mut Syslog,
    watchdog: &Watchdog,
    out: &mut dyn Write,
) -> Result<(), LoginError> {
    let request = request::check(args)?;

    let config = load::config(globals)?;
    *syslog = Syslog::new(&config.syslog_socket);
    watchdog.update(config.timeout, syslog.clone());
    let setup = load::Setup::for_login(globals, config)?;
    record.set_up(&setup);
    let fetch = setup.fetch(Ask {
        user: Some(request.user.as_str()),
        mode: Some(request.kind.as_str()),
        part: Some(request.part()),
        persist: true,
        started,
    })?;
    record.fetched(&fetch.fetched);
    let loaded = fetch.load().inspect_err(|e| record.refused(e))?;
    record.loaded(&loaded);

    let host = setup
        .host
        .as_ref()
        .expect("the login path's setup has a host");
    let expiry = Expiry::new(setup.config.expiry_time, &HostLocalTime);
    let outcome = decide::decide(&loaded, &request, host, expiry, Timestamp::now())
        .map_err(LoginError::Render)?;

    emit::answer(outcome, record, || watchdog.still_running(), out)
}
