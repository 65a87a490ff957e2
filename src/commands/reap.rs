//! `sshjit reap`: ends live sshd sessions that the policy no longer lets
//! in. sshd stops a revoked or expired grant at the next login, not in a
//! session already open; this closes that gap on each host (a systemd
//! timer runs it every few seconds, and a path unit on every policy change).
//!
//! A session is found from the process table: a process that sshd started
//! for a connection (its parent is sshd running as the user, whose parent
//! is sshd running as root) with `SSH_USER_AUTH` in its environment — sshd
//! sets it with `ExposeAuthInfo yes` and writes there the key or
//! certificate the connection authenticated with. That record belongs to
//! the user, who could rewrite it: one changed after the session started,
//! or not made as sshd makes it, is taken as tampered and the session is
//! ended.
//!
//! What ends a session: its key's fingerprint or its certificate's key ID,
//! serial or fingerprint revoked; every grant that named its key (or one of
//! its certificate's principals) for this account revoked; the policy
//! frozen (unless a break-glass grant still lets it in). With
//! `end = "expiry"` (per account, in `/etc/sshjit/reap.toml`) also: no
//! grant valid any more (expired, removed) or the certificate expired.
//! Sessions of keys and principals that no grant and no revocation names
//! (static authorized_keys, passwords) are not sshjit's and are left alone.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use clap::Args;
use serde::Deserialize;

use super::failure::Failure;
use super::output::Output;
use crate::Globals;
use crate::fs::secure::{self as file, FileError};
use crate::load::{Ask, Setup};
use crate::log::{Line, Severity, Syslog};
use crate::system::{self, process};
use sshjit_policy::evaluate::{certificate_revocation, refusals};
use sshjit_policy::time::Timestamp;
use sshjit_policy::{
    Decision, Fingerprint, Grant, HostName, KeyId, Mode, Policy, Refusal, Request, Subject,
    Username,
};

pub const DEFAULT_RULES: &str = "/etc/sshjit/reap.toml";
const MAX_RULES_BYTES: usize = 64 * 1024;
/// Most accounts named in the rules.
const MAX_ACCOUNTS: usize = 10_000;
/// Largest auth record read (sshd writes one line per method used).
const MAX_RECORD: u64 = 64 * 1024;
/// How long the processes of an ended session get to exit after SIGTERM
/// before SIGKILL.
const GRACE: Duration = Duration::from_secs(2);
/// A record changed this long after its session started is tampered
/// (sshd writes it before it starts the session's first process; the
/// slack covers the clock tick of /proc's start times and clock slew).
const RECORD_SLACK: Duration = Duration::from_secs(2);

#[derive(Args, Debug, Clone)]
pub struct ReapArgs {
    /// When sessions end, per account [default: /etc/sshjit/reap.toml, optional]
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Print what would be ended (and the sessions sshjit cannot account for); end nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// When a session ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndAt {
    /// Only when revoked (key, certificate, every grant), or frozen.
    Revocation,
    /// Also when no grant lets it in any more, or the certificate expired.
    Expiry,
}

/// `reap.toml`: a default and exceptions per local account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    pub end: EndAt,
    pub accounts: BTreeMap<String, EndAt>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            end: EndAt::Revocation,
            accounts: BTreeMap::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    end: Option<String>,
    accounts: Option<BTreeMap<String, String>>,
}

impl Rules {
    /// Reads the rules: `explicit` must exist; the default file may be absent.
    pub fn load(explicit: Option<&Path>) -> Result<Rules, Failure> {
        let path = explicit.unwrap_or(Path::new(DEFAULT_RULES));
        match file::read_secure(path, MAX_RULES_BYTES) {
            Ok(bytes) => Rules::parse(&bytes)
                .map_err(|m| Failure::refused(format!("{}: {m}", path.display()))),
            Err(FileError::NotFound(_)) if explicit.is_none() => Ok(Rules::default()),
            Err(e) => Err(Failure::refused(e.to_string())),
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<Rules, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
        let raw: RawRules = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        let end_at = |key: &str, v: &str| match v {
            "revocation" => Ok(EndAt::Revocation),
            "expiry" => Ok(EndAt::Expiry),
            _ => Err(format!(
                "{key}: {v:?}: expected \"revocation\" or \"expiry\""
            )),
        };
        let mut rules = Rules::default();
        if let Some(v) = &raw.end {
            rules.end = end_at("end", v)?;
        }
        let accounts = raw.accounts.unwrap_or_default();
        if accounts.len() > MAX_ACCOUNTS {
            return Err(format!("accounts: more than {MAX_ACCOUNTS}"));
        }
        for (name, v) in accounts {
            Username::new(name.as_str()).map_err(|e| format!("accounts: {e}"))?;
            let at = end_at(&format!("accounts.{name}"), &v)?;
            rules.accounts.insert(name, at);
        }
        Ok(rules)
    }

    pub fn for_account(&self, user: &str) -> EndAt {
        self.accounts.get(user).copied().unwrap_or(self.end)
    }
}

/// What a connection authenticated with, from its auth record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    Key {
        fingerprint: Fingerprint,
    },
    Certificate {
        /// The certified key's fingerprint.
        fingerprint: Fingerprint,
        key_id: String,
        serial: u64,
        principals: Vec<String>,
        /// Unix seconds.
        valid_before: u64,
    },
}

impl Credential {
    fn fields(&self, line: &mut Line) {
        match self {
            Credential::Key { fingerprint } => {
                line.field("fp", &fingerprint.to_string());
            }
            Credential::Certificate {
                fingerprint,
                key_id,
                serial,
                ..
            } => {
                line.field("fp", &fingerprint.to_string())
                    .field("key_id", key_id)
                    .field("cert_serial", &serial.to_string());
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Credential::Key { fingerprint } => format!("key {fingerprint}"),
            Credential::Certificate { key_id, serial, .. } => {
                format!("certificate {key_id:?} (serial {serial})")
            }
        }
    }
}

/// Reads sshd's auth record (`ExposeAuthInfo`): one line per method used,
/// `publickey TYPE BASE64 [info]` for keys and certificates. Other methods
/// (password, keyboard-interactive) name nothing sshjit grants.
pub fn parse_record(text: &str) -> Result<Vec<Credential>, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        if words.next() != Some("publickey") {
            continue;
        }
        let (Some(kind), Some(b64)) = (words.next(), words.next()) else {
            return Err("a publickey line without a key".into());
        };
        let text = format!("{kind} {b64}");
        if kind.contains("-cert-") {
            let cert = ssh_key::Certificate::from_openssh(&text)
                .map_err(|e| format!("a certificate that does not parse: {e}"))?;
            out.push(Credential::Certificate {
                fingerprint: Fingerprint::of(cert.public_key()),
                key_id: cert.key_id().to_owned(),
                serial: cert.serial(),
                principals: cert.valid_principals().to_vec(),
                valid_before: cert.valid_before(),
            });
        } else {
            let key = ssh_key::PublicKey::from_openssh(&text)
                .map_err(|e| format!("a key that does not parse: {e}"))?;
            out.push(Credential::Key {
                fingerprint: Fingerprint::of(key.key_data()),
            });
        }
    }
    Ok(out)
}

/// Why a session no longer holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// `revocations[i]` names its key, its certificate or all its grants.
    Revoked(usize),
    /// The policy is frozen and no break-glass grant lets it in.
    Frozen,
    /// No grant lets it in any more (expired, not yet valid, removed).
    Expired,
    /// The certificate's own validity ended.
    CertificateExpired,
    /// Its auth record was changed or is not as sshd makes it.
    Tampered(String),
}

impl Cause {
    fn word(&self) -> &'static str {
        match self {
            Cause::Revoked(_) => "revoked",
            Cause::Frozen => "frozen",
            Cause::Expired => "expired",
            Cause::CertificateExpired => "certificate-expired",
            Cause::Tampered(_) => "record-tampered",
        }
    }

    /// Ended even with `end = "revocation"`.
    fn is_revocation(&self) -> bool {
        !matches!(self, Cause::Expired | Cause::CertificateExpired)
    }
}

/// What the policy says of one credential of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Still valid.
    Keep,
    /// No grant or revocation names it: not sshjit's to end.
    NotOurs,
    /// No longer valid; the grants that named it.
    End { cause: Cause, grants: Vec<String> },
}

/// Judges one credential of a session of `user` on `host` at `now`. Pure.
pub fn judge(
    policy: &Policy<'_>,
    user: &Username<'_>,
    host: &HostName<'_>,
    credential: &Credential,
    now: Timestamp,
) -> Verdict {
    let (mode, named): (Mode<'_>, Vec<&Grant<'_>>) = match credential {
        Credential::Key { fingerprint } => (
            Mode::Keys {
                offered: Some(*fingerprint),
            },
            policy
                .grants
                .iter()
                .filter(|g| g.user == *user)
                .filter(
                    |g| matches!(&g.subject, Subject::Key(k) if k.fingerprint() == *fingerprint),
                )
                .collect(),
        ),
        Credential::Certificate {
            fingerprint,
            principals,
            ..
        } => (
            Mode::Principals {
                key_id: None,
                serial: None,
                fingerprint: Some(*fingerprint),
            },
            policy
                .grants
                .iter()
                .filter(|g| g.user == *user)
                .filter(|g| {
                    matches!(&g.subject, Subject::Principal(p)
                        if principals.iter().any(|c| c == p.as_str()))
                })
                .collect(),
        ),
    };
    // The certificate's key ID and serial, checked as the helper checks them.
    let key_id = match credential {
        Credential::Certificate { key_id, .. } if !key_id.is_empty() => {
            KeyId::new(key_id.as_str()).ok()
        }
        _ => None,
    };
    let mode = match (mode, credential) {
        (Mode::Principals { fingerprint, .. }, Credential::Certificate { serial, .. }) => {
            Mode::Principals {
                key_id: key_id.as_ref(),
                serial: Some(*serial),
                fingerprint,
            }
        }
        (m, _) => m,
    };
    let request = Request { user, host, mode };
    let revoked_credential = match credential {
        Credential::Certificate { .. } => certificate_revocation(policy, &request),
        Credential::Key { fingerprint } => policy.revocations.iter().position(
            |r| matches!(&r.target, sshjit_policy::Target::Fingerprint(f) if f == fingerprint),
        ),
    };
    if let Some(i) = revoked_credential {
        return Verdict::End {
            cause: Cause::Revoked(i),
            grants: named.iter().map(|g| g.id.as_str().to_owned()).collect(),
        };
    }
    // Grants for other hosts are not how this session got in.
    let here: Vec<&Grant<'_>> = named
        .into_iter()
        .filter(|g| !refusals(policy, g, &request, now).contains(&Refusal::OtherHost))
        .collect();
    if here.is_empty() {
        return Verdict::NotOurs;
    }
    let ids = here.iter().map(|g| g.id.as_str().to_owned()).collect();
    if let Credential::Certificate { valid_before, .. } = credential
        && u64::try_from(now.unix_seconds()).unwrap_or(0) >= *valid_before
    {
        return Verdict::End {
            cause: Cause::CertificateExpired,
            grants: ids,
        };
    }
    if let Decision::Allow(valid) = sshjit_policy::evaluate(policy, &request, now) {
        // In principals mode every valid principal grant of the account is
        // listed; the session holds when one of its principals is among them.
        if valid.iter().any(|v| here.iter().any(|h| h.id == v.id)) {
            return Verdict::Keep;
        }
    }
    let reasons: Vec<Refusal> = here
        .iter()
        .flat_map(|g| refusals(policy, g, &request, now))
        .collect();
    let cause = if let Some(i) = reasons.iter().find_map(|r| match r {
        Refusal::Revoked { revocation } => Some(*revocation),
        _ => None,
    }) {
        Cause::Revoked(i)
    } else if reasons.contains(&Refusal::Frozen) {
        Cause::Frozen
    } else {
        Cause::Expired
    };
    Verdict::End { cause, grants: ids }
}

/// One sshd connection with a session open.
#[derive(Debug)]
struct Session {
    /// sshd's root process for the connection (the pid in sshd's log lines).
    monitor: process::Process,
    /// sshd running as the user.
    child: process::Process,
    /// The processes sshd started for the session (shell, command).
    leaders: Vec<process::Process>,
    /// The auth record's path, from the first leader's environment.
    record: Vec<u8>,
}

fn is_sshd(p: &process::Process) -> bool {
    p.exe_name()
        .and_then(|n| n.to_str())
        .map(|n| n.trim_end_matches(" (deleted)"))
        .is_some_and(|n| n == "sshd" || n == "sshd-session")
}

/// Sessions from the process table: a non-sshd process whose parent is
/// sshd running as that process's user, whose parent is sshd running as
/// root.
fn sessions(procs: &[process::Process]) -> Vec<Session> {
    let by_pid: HashMap<u32, &process::Process> = procs.iter().map(|p| (p.pid, p)).collect();
    let mut found: BTreeMap<u32, Session> = BTreeMap::new();
    for p in procs {
        if is_sshd(p) {
            continue;
        }
        let Some(child) = by_pid.get(&p.ppid).filter(|c| is_sshd(c) && c.uid == p.uid) else {
            continue;
        };
        let Some(monitor) = by_pid
            .get(&child.ppid)
            .filter(|m| is_sshd(m) && m.uid == 0 && m.pid != 1)
        else {
            continue;
        };
        let Some(record) = process::environ_var(p.pid, "SSH_USER_AUTH") else {
            continue;
        };
        let s = found.entry(child.pid).or_insert_with(|| Session {
            monitor: (*monitor).clone(),
            child: (*child).clone(),
            leaders: Vec::new(),
            record: record.clone(),
        });
        s.leaders.push(p.clone());
    }
    for s in found.values_mut() {
        s.leaders.sort_by_key(|l| l.start_ticks);
        if let Some(first) = s.leaders.first()
            && let Some(r) = process::environ_var(first.pid, "SSH_USER_AUTH")
        {
            s.record = r;
        }
    }
    found.into_values().collect()
}

/// sshd names its records `/tmp/sshauth.` and 15 characters from mkstemp.
fn record_path_ok(path: &[u8]) -> bool {
    path.strip_prefix(b"/tmp/sshauth.")
        .is_some_and(|rest| rest.len() == 15 && rest.iter().all(u8::is_ascii_alphanumeric))
}

/// What a session's record says, or why it cannot be believed.
enum RecordRead {
    Credentials(Vec<Credential>),
    /// Gone (a /tmp cleaner, or the user): the session cannot be judged.
    Missing,
    Tampered(String),
}

fn read_record(s: &Session) -> RecordRead {
    if !record_path_ok(&s.record) {
        return RecordRead::Tampered("SSH_USER_AUTH does not name a file sshd makes".into());
    }
    let path = Path::new(std::str::from_utf8(&s.record).unwrap_or_default());
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return RecordRead::Missing,
        Err(e) => return RecordRead::Tampered(format!("{}: {e}", path.display())),
    };
    match check_record(&file, s) {
        Ok(()) => {}
        Err(why) => return RecordRead::Tampered(why),
    }
    let mut text = String::new();
    if file.take(MAX_RECORD).read_to_string(&mut text).is_err() {
        return RecordRead::Tampered("not UTF-8 text".into());
    }
    match parse_record(&text) {
        Ok(c) => RecordRead::Credentials(c),
        Err(e) => RecordRead::Tampered(e),
    }
}

fn check_record(file: &File, s: &Session) -> Result<(), String> {
    let m = file.metadata().map_err(|e| e.to_string())?;
    if !m.file_type().is_file() {
        return Err("not a regular file".into());
    }
    if m.uid() != s.child.uid || m.nlink() != 1 || m.mode() & 0o077 != 0 || m.len() > MAX_RECORD {
        return Err(format!(
            "not as sshd makes it (owner {}, mode {:04o}, links {}, {} bytes)",
            m.uid(),
            m.mode() & 0o7777,
            m.nlink(),
            m.len()
        ));
    }
    let changed = UNIX_EPOCH + Duration::new(m.ctime().max(0) as u64, m.ctime_nsec() as u32);
    let started = s
        .leaders
        .first()
        .and_then(process::Process::started)
        .ok_or("the session's start time cannot be read")?;
    if changed > started + RECORD_SLACK {
        return Err("changed after the session started".into());
    }
    Ok(())
}

/// One session's fate.
#[derive(Debug)]
struct Judged {
    session: Session,
    user: String,
    credential: Option<Credential>,
    outcome: Fate,
}

#[derive(Debug)]
enum Fate {
    Keep,
    /// Kept: cannot be judged (`why`).
    Unaccounted(String),
    End {
        cause: Cause,
        grants: Vec<String>,
    },
}

pub fn run(globals: &Globals, args: &ReapArgs) -> Result<Output, Failure> {
    // Other accounts' records and environments are unreadable, and their
    // sessions could not be signalled: without root it would see nothing
    // and say all is well.
    if system::euid() != 0 {
        return Err(Failure::usage(
            "reap runs as root: it reads every sshd session's record and ends sessions of any account",
        ));
    }
    let rules = Rules::load(args.rules.as_deref())?;
    let setup = Setup::read(globals).map_err(|e| Failure::refused(e.to_string()))?;
    let syslog = Syslog::new(&setup.config.syslog_socket);
    let host = crate::host_name(globals, &setup.config)
        .map_err(|e| Failure::refused(format!("this host's name: {e}")))?;
    let fetch = setup
        .fetch(Ask::read_only(None))
        .map_err(|e| Failure::refused(format!("{e}\nno session ended")))?;
    let loaded = fetch
        .load()
        .map_err(|e| Failure::refused(format!("{e}\nno session ended")))?;
    let now = Timestamp::now();
    let procs = process::scan().map_err(|e| Failure::internal(format!("/proc: {e}")))?;
    let mut judged = Vec::new();
    for session in sessions(&procs) {
        judged.push(judge_session(&loaded.policy, &host, session, &rules, now));
    }
    let mut out = Output::default();
    let mut failed = 0;
    for j in &judged {
        let Fate::End { cause, grants } = &j.outcome else {
            if let (Fate::Unaccounted(why), true) = (&j.outcome, args.dry_run) {
                let _ = writeln!(
                    out.text,
                    "unaccounted: {} (sshd pid {}): {why}",
                    j.user, j.session.monitor.pid
                );
            }
            continue;
        };
        let what = j
            .credential
            .as_ref()
            .map_or_else(|| "its auth record".to_owned(), Credential::describe);
        let why = match cause {
            Cause::Revoked(i) => format!("revoked (revocation {i})"),
            Cause::Tampered(t) => format!("auth record tampered: {t}"),
            c => c.word().to_owned(),
        };
        if args.dry_run {
            let _ = writeln!(
                out.text,
                "would end: {} (sshd pid {}): {what}: {why}",
                j.user, j.session.monitor.pid
            );
            continue;
        }
        let result = end_session(&j.session, &procs);
        let mut line = Line::new();
        line.field("action", "reap")
            .field("user", &j.user)
            .field("host", host.as_str())
            .field("sshd_pid", &j.session.monitor.pid.to_string());
        if let Some(c) = &j.credential {
            c.fields(&mut line);
        }
        if !grants.is_empty() {
            line.field("grants", &grants.join(","));
        }
        line.field("cause", cause.word());
        match cause {
            Cause::Revoked(i) => {
                line.field("revocation", &i.to_string());
            }
            Cause::Tampered(t) => {
                line.field("detail", t);
            }
            _ => {}
        }
        match result {
            Ok(n) => {
                line.field("outcome", "ended")
                    .field("processes", &n.to_string());
                syslog.log(Severity::Warning, line.as_str());
                let _ = writeln!(
                    out.text,
                    "ended: {} (sshd pid {}): {what}: {why}",
                    j.user, j.session.monitor.pid
                );
            }
            Err(e) => {
                failed += 1;
                line.field("outcome", "error").field("error", &e);
                syslog.log(Severity::Err, line.as_str());
                out.warn(format!(
                    "could not end the session of {} (sshd pid {}): {e}",
                    j.user, j.session.monitor.pid
                ));
            }
        }
    }
    out.refused = failed > 0;
    Ok(out)
}

fn judge_session(
    policy: &Policy<'_>,
    host: &HostName<'_>,
    session: Session,
    rules: &Rules,
    now: Timestamp,
) -> Judged {
    let user =
        system::user_name(session.child.uid).unwrap_or_else(|| session.child.uid.to_string());
    let fate = |outcome, credential| (outcome, credential);
    let (outcome, credential) = match read_record(&session) {
        RecordRead::Missing => fate(Fate::Unaccounted("its auth record is gone".into()), None),
        RecordRead::Tampered(why) => fate(
            Fate::End {
                cause: Cause::Tampered(why),
                grants: Vec::new(),
            },
            None,
        ),
        RecordRead::Credentials(creds) => match Username::new(user.as_str()) {
            Err(e) => fate(Fate::Unaccounted(format!("account name: {e}")), None),
            Ok(name) => {
                let end_at = rules.for_account(&user);
                let mut result = fate(Fate::Keep, None);
                for c in creds {
                    if let Verdict::End { cause, grants } = judge(policy, &name, host, &c, now)
                        && (cause.is_revocation() || end_at == EndAt::Expiry)
                    {
                        result = fate(Fate::End { cause, grants }, Some(c));
                        break;
                    }
                }
                result
            }
        },
    };
    Judged {
        session,
        user,
        credential,
        outcome,
    }
}

/// Ends a connection: SIGTERM to sshd's process for the user (which then
/// says goodbye to the client) and to every process below it, then,
/// after a short grace, SIGKILL to whatever of them (and of sshd's root
/// process for the connection) is left. Returns how many were signalled.
fn end_session(s: &Session, procs: &[process::Process]) -> Result<usize, String> {
    let mut targets = vec![s.child.clone()];
    let mut i = 0;
    while i < targets.len() {
        let parent = targets[i].pid;
        targets.extend(procs.iter().filter(|p| p.ppid == parent).cloned());
        i += 1;
        if targets.len() > 100_000 {
            return Err("too many processes".into());
        }
    }
    let mut handles = Vec::new();
    for p in targets.iter().chain(std::iter::once(&s.monitor)) {
        match process::Handle::open(p) {
            Ok(Some(h)) => handles.push(h),
            Ok(None) => {}
            Err(e) => return Err(format!("pidfd for {}: {e}", p.pid)),
        }
    }
    let (monitor, others) = handles.split_last().map_or((None, &handles[..]), |(m, o)| {
        if m.pid == s.monitor.pid {
            (Some(m), o)
        } else {
            (None, &handles[..])
        }
    });
    for h in others {
        h.signal(process::SIGTERM)
            .map_err(|e| format!("SIGTERM to {}: {e}", h.pid))?;
    }
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline && !handles.iter().all(process::Handle::exited) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for h in others.iter().chain(monitor) {
        if !h.exited() {
            h.signal(process::SIGKILL)
                .map_err(|e| format!("SIGKILL to {}: {e}", h.pid))?;
        }
    }
    Ok(others.len())
}

#[cfg(test)]
mod tests;
