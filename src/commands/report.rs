//! `sshjit report`: the access report an auditor asks for, rebuilt from
//! the change trail (`history`): every grant (who, what, where, window,
//! reason, granted by), when and by whom it was revoked, every freeze and
//! other change; with `--logins`, which grants were actually used. As a
//! table, JSON or CSV.

mod view;

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::audit;
use super::context::{self, Context, waiting};
use super::failure::Failure;
use super::logins::{self, LoginLog};
use super::output::Output;
use super::remote::Remote;
use crate::Globals;
use crate::store::history::{Change, Entry, History, replay};
use crate::store::trail::Record;
use crate::store::{self, chain, lock};
use sshjit_policy::Username;
use sshjit_policy::time::{Timestamp, parse_duration};
use view::Report;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

#[derive(Args, Debug, Clone)]
pub struct ReportArgs {
    /// From this time (RFC 3339), or this long ago (7d, 90d)
    #[arg(long, value_name = "DURATION|TIME")]
    pub since: Option<String>,
    /// Up to this time (RFC 3339) [default: now]
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only grants for this account
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// A syslog file (auth.log) with the helper's decision lines: also
    /// report which grants were used
    #[arg(long, value_name = "FILE")]
    pub logins: Option<PathBuf>,
}

/// The report; refused (exit 1) though printed when the trail does not verify.
pub fn run(globals: &Globals, args: &ReportArgs) -> Result<Output, Failure> {
    let now = context::now();
    let since = args
        .since
        .as_deref()
        .map(|s| match parse_duration(s) {
            Ok(d) => Ok(now.saturating_sub(d)),
            Err(_) => Timestamp::parse_rfc3339(s)
                .map_err(|e| Failure::usage(format!("--since {s:?}: a duration (7d) or {e}"))),
        })
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|s| {
            Timestamp::parse_rfc3339(s).map_err(|e| Failure::usage(format!("--until {s:?}: {e}")))
        })
        .transpose()?;
    let user = args
        .user
        .as_deref()
        .map(|u| Username::new(u).map_err(|e| Failure::usage(format!("--user: {e}"))))
        .transpose()?;
    let logins = match &args.logins {
        Some(path) => Some(read_logins(path, since, until)?),
        None => None,
    };
    let (trail, records, problems) = match Remote::from_globals(globals, false)? {
        Some(remote) => remote_trail(&remote)?,
        None => local_trail(globals)?,
    };
    let history = replay(&records);
    let filter = Filter {
        since,
        until,
        user: user.as_ref(),
        keep: None,
    };
    let shown = filter.entries(&history);
    let changes: Vec<&Change> = history
        .changes
        .iter()
        .filter(|c| since.is_none_or(|s| c.time >= s) && until.is_none_or(|u| c.time < u))
        .filter(|c| {
            user.is_none()
                || matches!(c.action, "freeze" | "thaw" | "repair")
                || c.grants.iter().any(|i| shown.contains(i))
        })
        .collect();
    let report = Report {
        trail,
        verified: problems.is_empty(),
        problems,
        records: records.len(),
        since,
        until,
        user: user.map(|u| u.to_string()),
        entries: shown.iter().map(|&i| &history.entries[i]).collect(),
        changes,
        logins: logins.as_ref(),
        login_file: args.logins.as_ref().map(|p| p.display().to_string()),
        now,
        history: &history,
    };
    let mut out = Output::text(match args.format {
        Format::Table => report.table(),
        Format::Json => report.json(),
        Format::Csv => report.csv(),
    });
    for p in &report.problems {
        out.warn(format!("the trail does not verify: {p}"));
    }
    out.refused = !report.verified;
    Ok(out)
}

/// Which grants and changes a report shows.
pub struct Filter<'a> {
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Only grants for this account.
    pub user: Option<&'a Username<'a>>,
    /// Only the grants it keeps (the server's filters by person and host).
    pub keep: Option<&'a dyn Fn(&Entry) -> bool>,
}

impl Filter<'_> {
    /// The indices of the entries shown: within the period, for the user,
    /// kept.
    pub fn entries(&self, history: &History) -> Vec<usize> {
        let in_period = |start: Timestamp, end: Timestamp| {
            self.until.is_none_or(|u| start < u) && self.since.is_none_or(|s| end > s)
        };
        (0..history.entries.len())
            .filter(|&i| {
                let e = &history.entries[i];
                let (start, end) = e.window();
                self.user.is_none_or(|u| e.grant.user == *u)
                    && in_period(start, end)
                    && self.keep.is_none_or(|keep| keep(e))
            })
            .collect()
    }
}

/// The report of a server's trail as JSON or CSV, as `sshjit report
/// --server` prints it: `records` read from `trail`, `problems` what keeps
/// them from verifying.
pub fn render(
    trail: String,
    records: &[Record<'static>],
    problems: Vec<String>,
    filter: &Filter<'_>,
    format: Format,
    now: Timestamp,
) -> String {
    let history = replay(records);
    let shown = filter.entries(&history);
    let changes: Vec<&Change> = history
        .changes
        .iter()
        .filter(|c| {
            filter.since.is_none_or(|s| c.time >= s) && filter.until.is_none_or(|u| c.time < u)
        })
        .filter(|c| {
            (filter.user.is_none() && filter.keep.is_none())
                || matches!(c.action, "freeze" | "thaw" | "repair")
                || c.grants.iter().any(|i| shown.contains(i))
        })
        .collect();
    let report = Report {
        trail,
        verified: problems.is_empty(),
        problems,
        records: records.len(),
        since: filter.since,
        until: filter.until,
        user: filter.user.map(|u| u.to_string()),
        entries: shown.iter().map(|&i| &history.entries[i]).collect(),
        changes,
        logins: None,
        login_file: None,
        now,
        history: &history,
    };
    match format {
        Format::Table => report.table(),
        Format::Json => report.json(),
        Format::Csv => report.csv(),
    }
}

/// The trail beside the policy file, verified under a shared lock: its
/// name, its records, and what keeps it from verifying.
fn local_trail(globals: &Globals) -> Result<(String, Vec<Record<'static>>, Vec<String>), Failure> {
    let ctx = Context::load(globals)?;
    // Under one shared lock: the records read are those verified.
    let _lock = lock::shared(&ctx.file, Some(&mut waiting))?;
    let verdict = audit::verify_locked(&ctx.file, &[])?;
    let trail = ctx.file.trail();
    let reader = store::read_trail(&trail)?
        .ok_or_else(|| Failure::refused(format!("there is no trail at {}", trail.display())))?;
    let mut records = Vec::new();
    chain::walk(reader, |r| records.push(r.clone().into_owned()))
        .map_err(|e| Failure::internal(format!("reading {}: {e}", trail.display())))?;
    Ok((trail.display().to_string(), records, verdict.problems))
}

/// A server's trail, verified here: every hash and link, and its head
/// against the server's policy document.
fn remote_trail(remote: &Remote) -> Result<(String, Vec<Record<'static>>, Vec<String>), Failure> {
    let document = remote.fetch("/v1/admin/policy")?;
    let bytes = remote.fetch("/v1/admin/trail")?;
    let name = format!("{}v1/admin/trail", remote.url);
    let mut records = Vec::new();
    let walk = chain::walk(bytes.as_slice(), |r| records.push(r.clone().into_owned()))
        .map_err(|e| Failure::internal(format!("reading {name}: {e}")))?;
    let mut problems = Vec::new();
    if let Some(b) = &walk.broken {
        problems.push(format!("{name}:{}: {b}", b.line));
    }
    if let Some((offset, b)) = &walk.partial {
        problems.push(format!(
            "{name} ends in an incomplete record ({} bytes at offset {offset})",
            b.len()
        ));
    }
    let serial = sshjit_policy::Policy::parse(&document)
        .map_err(|e| Failure::refused(format!("the server's policy is invalid: {e}")))?
        .serial;
    let sha = crate::store::trail::sha256_hex(&document);
    // Changes may have come between the two reads: the last record at the
    // document's serial must describe it.
    match records.iter().rev().find(|r| r.serial == serial) {
        Some(r) if r.policy_sha256.as_deref() == Some(sha.as_str()) => {}
        Some(r) => problems.push(format!(
            "record {} does not describe the server's policy at serial {}",
            r.seq,
            serial.unwrap_or(0)
        )),
        None if records.is_empty() => {}
        None => problems.push(format!(
            "no record of the server's policy at serial {}",
            serial.unwrap_or(0)
        )),
    }
    Ok((name, records, problems))
}

fn read_logins(
    path: &PathBuf,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> Result<LoginLog, Failure> {
    let f = std::fs::File::open(path)
        .map_err(|e| Failure::usage(format!("--logins {}: {e}", path.display())))?;
    let modified = f
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(Timestamp::now, |d| {
            Timestamp::from_unix(i64::try_from(d.as_secs()).unwrap_or(i64::MAX), 0)
        });
    logins::read(f, modified, since, until)
        .map_err(|e| Failure::internal(format!("reading {}: {e}", path.display())))
}

#[cfg(test)]
mod tests;
