//! `sshjit explain USER`: for every grant of that user, valid or exactly why
//! not — the tool for a refused login.

use std::fmt::Write as _;

use super::Failure;
use crate::config::Config;
use crate::load::{Ask, LoadError, Setup};
use crate::system::HostLocalTime;
use crate::{Globals, term};
use sshjit_policy::evaluate::{certificate_revocation, refusals};
use sshjit_policy::render::{self, Expiry, ExpiryStyle};
use sshjit_policy::time::{Timestamp, format_duration};
use sshjit_policy::types::{parse_serial, quote_for_display};
use sshjit_policy::{
    Fingerprint, Grant, HostName, KeyId, Mode, Policy, Refusal, Request, Subject, Username,
};

pub struct ExplainArgs {
    pub user: String,
    pub at: Option<String>,
    pub fingerprint: Option<String>,
    pub key_id: Option<String>,
    pub serial: Option<String>,
}

/// The question `explain` answers: its arguments, checked.
struct Question {
    user: Username<'static>,
    host: HostName<'static>,
    at: Timestamp,
    fingerprint: Option<Fingerprint>,
    key_id: Option<KeyId<'static>>,
    serial: Option<u64>,
}

pub fn run(globals: &Globals, args: &ExplainArgs) -> u8 {
    match run_checked(globals, args) {
        Ok(report) => term::print(&report),
        Err(failure) => failure.report(),
    }
}

fn run_checked(globals: &Globals, args: &ExplainArgs) -> Result<String, Failure> {
    let setup = Setup::read(globals).map_err(|e| Failure::refused(e.to_string()))?;
    let fetch = setup
        .fetch(Ask::read_only(Some(&args.user)))
        .map_err(|e| Failure::refused(e.to_string()))?;
    let question = check_args(globals, &setup.config, args)?;
    let loaded = fetch.load().map_err(|e| {
        Failure::refused(match e {
            LoadError::Policy { .. } => format!(
                "{e}\nthe whole document is refused, so every login is denied; run `sshjit check` for details"
            ),
            e => format!("{e}\nevery login is denied until it is fixed"),
        })
    })?;
    let mut out = loaded.signature_note();
    out.push_str(&explain(
        loaded.origin(),
        &loaded.policy,
        &question,
        setup.config.expiry_time,
    ));
    Ok(out)
}

fn check_args(globals: &Globals, config: &Config, args: &ExplainArgs) -> Result<Question, Failure> {
    let usage = |e: &dyn std::fmt::Display| Failure::usage(e.to_string());
    let user = Username::new(args.user.clone()).map_err(|e| usage(&e))?;
    let host = crate::host_name(globals, config).map_err(|e| usage(&e))?;
    let at = match &args.at {
        Some(t) => {
            Timestamp::parse_rfc3339(t).map_err(|e| Failure::usage(format!("--at {t:?}: {e}")))?
        }
        None => Timestamp::now(),
    };
    let fingerprint = args
        .fingerprint
        .as_deref()
        .map(Fingerprint::parse)
        .transpose()
        .map_err(|e| usage(&e))?;
    let key_id = args
        .key_id
        .as_deref()
        .map(|k| KeyId::new(k.to_owned()))
        .transpose()
        .map_err(|e| usage(&e))?;
    let serial = args
        .serial
        .as_deref()
        .map(parse_serial)
        .transpose()
        .map_err(|e| usage(&e))?;
    Ok(Question {
        user,
        host,
        at,
        fingerprint,
        key_id,
        serial,
    })
}

fn explain(origin: &str, policy: &Policy<'_>, q: &Question, style: ExpiryStyle) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "policy {origin}: {}{} grants, {} revocations{}",
        policy
            .serial
            .map(|s| format!("serial {s}, "))
            .unwrap_or_default(),
        policy.grants.len(),
        policy.revocations.len(),
        if policy.frozen {
            ", FROZEN: only break-glass grants are valid"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "user {} on host {} at {}", q.user, q.host, q.at);

    let keys_mode = Mode::Keys {
        offered: if q.key_id.is_some() || q.serial.is_some() {
            None
        } else {
            q.fingerprint
        },
    };
    let principals_mode = Mode::Principals {
        key_id: q.key_id.as_ref(),
        serial: q.serial,
        fingerprint: q.fingerprint,
    };
    let request = |mode| Request {
        user: &q.user,
        host: &q.host,
        mode,
    };
    let cert_revoked = certificate_revocation(policy, &request(principals_mode));
    if let Some(i) = cert_revoked {
        let _ = writeln!(
            out,
            "the presented certificate is revoked by {}: no principal is valid for it",
            describe_revocation(policy, i)
        );
    }

    let mine: Vec<&Grant<'_>> = policy.grants.iter().filter(|g| g.user == q.user).collect();
    if mine.is_empty() {
        let _ = writeln!(out, "\nno grant names user {}: sshd gets nothing", q.user);
        return out;
    }
    let (mut keys, mut principals) = (Vec::new(), Vec::new());
    for g in mine {
        let mode = match g.subject {
            Subject::Key(_) => keys_mode,
            Subject::Principal(_) => principals_mode,
        };
        let why = refusals(policy, g, &request(mode), q.at);
        out.push('\n');
        describe_grant(&mut out, g);
        if why.is_empty() && !(cert_revoked.is_some() && g.principal().is_some()) {
            let _ = writeln!(
                out,
                "  VALID until {} ({} left); sshd sees expiry-time=\"{}\"",
                g.expires_at,
                format_duration(q.at.until(g.expires_at)),
                render::expiry_value(g.expires_at, Expiry::new(style, &HostLocalTime))
                    .unwrap_or_else(|e| e.to_string()),
            );
            match g.subject {
                Subject::Key(_) => keys.push(g.id.as_str()),
                Subject::Principal(_) => principals.push(g.id.as_str()),
            }
        } else {
            let _ = writeln!(out, "  NOT VALID:");
            if why.is_empty() {
                let _ = writeln!(out, "  - the presented certificate is revoked (above)");
            }
            for r in why {
                let _ = writeln!(out, "  - {}", describe_refusal(policy, g, q, r));
            }
        }
    }
    let _ = writeln!(
        out,
        "\nresult: keys: {}; principals: {}",
        list_or_none(&keys),
        list_or_none(&principals)
    );
    out
}

fn list_or_none(ids: &[&str]) -> String {
    if ids.is_empty() {
        "none valid".into()
    } else {
        format!("{} valid ({})", ids.len(), ids.join(", "))
    }
}

fn describe_grant(out: &mut String, g: &Grant<'_>) {
    match &g.subject {
        Subject::Key(k) => {
            let _ = write!(
                out,
                "grant {}: key {} {}",
                g.id,
                k.key_type(),
                k.fingerprint()
            );
            if !k.comment().is_empty() {
                let _ = write!(out, " ({})", k.comment());
            }
        }
        Subject::Principal(p) => {
            let _ = write!(out, "grant {}: principal {p}", g.id);
        }
    }
    if g.break_glass {
        out.push_str(" [break-glass]");
    }
    out.push('\n');
    let _ = write!(
        out,
        "  reason {}",
        quote_for_display(g.reason.as_str(), 200)
    );
    if let Some(by) = &g.granted_by {
        let _ = write!(out, ", granted by {by}");
    }
    out.push('\n');
    let hosts: Vec<&str> = g.hosts.iter().map(|h| h.as_str()).collect();
    let _ = write!(
        out,
        "  window {} .. {}; hosts {}",
        g.not_before
            .map(|t| t.to_string())
            .unwrap_or_else(|| "-".into()),
        g.expires_at,
        if hosts.is_empty() {
            "*".to_owned()
        } else {
            hosts.join(", ")
        }
    );
    if !g.from.is_empty() {
        let from: Vec<&str> = g.from.iter().map(|f| f.as_str()).collect();
        let _ = write!(out, "; from {}", from.join(","));
    }
    if let Some(c) = &g.command {
        let _ = write!(out, "; command {}", quote_for_display(c.as_str(), 200));
    }
    if g.restrict {
        out.push_str("; restrict");
    }
    out.push('\n');
}

fn describe_refusal(policy: &Policy<'_>, g: &Grant<'_>, q: &Question, r: Refusal) -> String {
    match r {
        Refusal::OtherUser => format!("it is for user {}", g.user),
        Refusal::OtherKind => "it is for the other mode".into(),
        Refusal::OtherKey => format!(
            "the offered key is {}, not this grant's key",
            q.fingerprint.map(|f| f.to_string()).unwrap_or_default()
        ),
        Refusal::NotYetValid => {
            let nb = g.not_before.unwrap_or(g.expires_at);
            format!(
                "not yet valid: starts {nb} (in {})",
                format_duration(q.at.until(nb))
            )
        }
        Refusal::Expired => format!(
            "expired at {} ({} ago)",
            g.expires_at,
            format_duration(g.expires_at.until(q.at))
        ),
        Refusal::OtherHost => format!("host {} matches none of its hosts globs", q.host),
        Refusal::Frozen => "the policy is frozen and this grant is not break-glass".into(),
        Refusal::Revoked { revocation } => {
            format!("revoked by {}", describe_revocation(policy, revocation))
        }
    }
}

fn describe_revocation(policy: &Policy<'_>, i: usize) -> String {
    let r = &policy.revocations[i];
    let mut s = format!("revocations[{i}] ({})", r.target);
    if let Some(reason) = &r.reason {
        let _ = write!(s, ": {}", quote_for_display(reason.as_str(), 200));
    }
    if let Some(by) = &r.revoked_by {
        let _ = write!(s, ", by {by}");
    }
    if let Some(at) = r.revoked_at {
        let _ = write!(s, " at {at}");
    }
    s
}
