//! `sshjit audit verify` checks the change trail: every record's hash, the
//! chain between records, and the head against the policy file (which
//! catches records cut from the end). `sshjit audit repair` records the
//! policy as it is when an interruption or a change outside sshjit left
//! the two apart; it never rewrites history.

use std::fmt::Write as _;

use clap::{Args, Subcommand};

use super::context::{self, Context, waiting};
use super::editing::run_edit;
use super::failure::Failure;
use super::output::Output;
use crate::Globals;
use crate::log::{Line, Severity};
use crate::store::chain::{self, Summary};
use crate::store::trail::{Action, Diagnosis, DocState, diagnose, sha256_hex};
use crate::store::{self, PolicyFile, StoreError, lock, reason_text};
use sshjit_policy::Policy;

#[derive(Subcommand, Debug, Clone)]
pub enum AuditCommand {
    /// Verify the change trail: hashes, chain, and its head against the policy
    Verify(VerifyArgs),
    /// Record the policy as it is after an interruption or a change outside sshjit
    Repair(RepairArgs),
}

#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    /// A record hash kept elsewhere (e.g. trail_hash from a syslog line)
    /// that must still be in the trail (repeatable)
    #[arg(long, value_name = "HASH")]
    pub anchor: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct RepairArgs {
    /// Why: what happened (required)
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Who does it [default: SUDO_USER, else the user running sshjit]
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
}

pub fn run(globals: &Globals, command: &AuditCommand) -> Result<Output, Failure> {
    match command {
        AuditCommand::Verify(args) => verify_command(globals, args),
        AuditCommand::Repair(args) => repair_command(globals, args),
    }
}

/// The policy file as it is now (hash and serial), read with the helper's
/// checks; an invalid document still has a hash.
fn current_state(file: &PolicyFile) -> Result<Option<DocState>, StoreError> {
    Ok(store::read_policy(file)?.map(|bytes| DocState {
        sha256: sha256_hex(&bytes),
        serial: Policy::parse(&bytes).ok().and_then(|p| p.serial),
    }))
}

/// The outcome of a verification.
pub struct Verdict {
    pub chain: Summary,
    /// Everything that keeps the trail from verifying.
    pub problems: Vec<String>,
    /// When the trail starts by adopting a policy: when, and its serial.
    pub start: Option<(sshjit_policy::time::Timestamp, Option<u64>)>,
}

/// Walks the whole trail and compares its head with the policy file.
pub fn verify(file: &PolicyFile, anchors: &[String]) -> Result<Verdict, Failure> {
    let _lock = lock::shared(file, Some(&mut waiting))?;
    verify_locked(file, anchors)
}

/// `verify` for a caller that holds a lock already.
pub fn verify_locked(file: &PolicyFile, anchors: &[String]) -> Result<Verdict, Failure> {
    let trail = file.trail();
    let Some(reader) = store::read_trail(&trail)? else {
        let what = match current_state(file)? {
            Some(_) => "the policy has never been changed through sshjit, or its trail was removed",
            None => "there is no policy either",
        };
        return Err(Failure::refused(format!(
            "there is no trail at {}: {what}",
            trail.display()
        )));
    };
    let mut found = vec![false; anchors.len()];
    let mut start = None;
    let walk = chain::walk(reader, |r| {
        if r.seq == 1 && matches!(r.action, Action::Adopt { .. }) {
            start = Some((r.time, r.serial));
        }
        for (i, a) in anchors.iter().enumerate() {
            if r.hash().eq_ignore_ascii_case(a) {
                found[i] = true;
            }
        }
    })
    .map_err(|e| Failure::internal(format!("reading {}: {e}", trail.display())))?;
    let current = current_state(file)?;
    let mut problems = Vec::new();
    if let Some(b) = &walk.broken {
        problems.push(format!("{}:{}: {b}", trail.display(), b.line));
    } else {
        let tmp = store::temp_sha(file)?;
        match diagnose(&walk.last, true, current.as_ref(), tmp.as_deref()) {
            Diagnosis::Consistent => {}
            Diagnosis::Fresh | Diagnosis::Untracked => {
                problems.push(format!("{} holds no record", trail.display()));
            }
            Diagnosis::Interrupted { seq } => problems.push(format!(
                "the last change (record {seq}) was interrupted before it took effect: the policy is as before it. \
                 The next edit voids it on its own, or run `sshjit audit repair --reason TEXT`"
            )),
            Diagnosis::Mismatch { explanation } => problems.push(format!(
                "the trail's head does not match the policy: {explanation}"
            )),
        }
    }
    if let Some((offset, bytes)) = &walk.partial {
        problems.push(format!(
            "the trail ends in an incomplete record ({} bytes at offset {offset}): an edit stopped while appending. \
             The next edit discards it on its own, or run `sshjit audit repair --reason TEXT`",
            bytes.len()
        ));
    }
    for (a, ok) in anchors.iter().zip(found) {
        if !ok {
            problems.push(format!(
                "no record has the anchor hash {a}: the trail was rewritten since that hash was logged, or it belongs to another trail"
            ));
        }
    }
    Ok(Verdict {
        chain: walk,
        problems,
        start,
    })
}

fn verify_command(globals: &Globals, args: &VerifyArgs) -> Result<Output, Failure> {
    let ctx = Context::load(globals)?;
    let mut line = Line::new();
    line.field("action", "audit-verify")
        .field("policy", &ctx.policy_display());
    let verdict = match verify(&ctx.file, &args.anchor) {
        Ok(v) => v,
        Err(f) => {
            line.field("outcome", "failed").field("error", &f.message);
            ctx.syslog.log(Severity::Err, line.as_str());
            return Err(f);
        }
    };
    let trail = ctx.file.trail();
    let w = &verdict.chain;
    line.field("records", &w.records.to_string());
    if let Some(h) = w.head() {
        line.field("trail_hash", h.hash());
    }
    if verdict.problems.is_empty() {
        let head = w.head().expect("a consistent trail has a head");
        let mut out = format!(
            "ok: {}: {} records from {} to {}, every hash and link intact\n",
            trail.display(),
            w.records,
            w.first_time.map(|t| t.to_string()).unwrap_or_default(),
            w.last_time.map(|t| t.to_string()).unwrap_or_default(),
        );
        let _ = writeln!(
            out,
            "ok: the head (record {}, {} by {}) produced the policy as it is: {}",
            head.seq,
            head.action.name(),
            head.actor,
            match (head.serial, &head.policy_sha256) {
                (_, None) => "no policy file".to_owned(),
                (Some(s), Some(h)) => format!("serial {s}, sha256 {h}"),
                (None, Some(h)) => format!("sha256 {h}"),
            }
        );
        for a in &args.anchor {
            let _ = writeln!(out, "ok: anchor {a} is in the chain");
        }
        if let Some((time, serial)) = verdict.start {
            let _ = writeln!(
                out,
                "note: the trail starts by adopting the policy as found at {time}{}; changes before that are not in it",
                serial.map(|s| format!(" (serial {s})")).unwrap_or_default()
            );
        }
        let _ = writeln!(
            out,
            "head hash {} (compare with trail_hash in the last sshjit syslog line kept off this host)",
            head.hash()
        );
        line.field("outcome", "ok");
        ctx.syslog.log(Severity::Info, line.as_str());
        return Ok(Output::text(out));
    }
    line.field("outcome", "failed")
        .field("error", &verdict.problems.join("; "));
    ctx.syslog.log(Severity::Err, line.as_str());
    let mut problems = verdict.problems.iter();
    let first = problems.next().cloned().unwrap_or_default();
    let mut failure = Failure::refused(first);
    failure.detail = problems.map(|p| format!("error: {p}")).collect();
    failure.detail.push(format!(
        "{} good records before that{}",
        w.records,
        w.head()
            .map(|h| format!(
                " (last good: record {}, {} at {})",
                h.seq,
                h.action.name(),
                h.time
            ))
            .unwrap_or_default()
    ));
    Err(failure)
}

fn repair_command(globals: &Globals, args: &RepairArgs) -> Result<Output, Failure> {
    run_edit(globals, "audit-repair", |ctx, log| {
        log.severity(Severity::Warning);
        let who = context::who(args.by.as_deref())?;
        log.who(&who);
        let reason = sshjit_policy::Reason::new(args.reason.clone())
            .map_err(|e| Failure::usage(format!("--reason: {e}")))?;
        log.field("reason", reason.as_str());
        ctx.file.require_existing()?;
        let _lock = lock::exclusive(&ctx.file, Some(&mut waiting))?;
        // History first: a broken chain is evidence, not something to mend.
        if let Some(reader) = store::read_trail(&ctx.file.trail())? {
            let walk = chain::walk(reader, |_| {})
                .map_err(|e| Failure::internal(format!("reading the trail: {e}")))?;
            if let Some(b) = walk.broken {
                let t = ctx.file.trail();
                return Err(Failure::refused(format!(
                    "{}:{}: {b}. Repair does not rewrite history: keep that file as evidence \
                     (e.g. `mv {} {}.broken-{}`), then run `sshjit audit repair` again to start a new trail from the policy as it is",
                    t.display(),
                    b.line,
                    t.display(),
                    t.display(),
                    context::now().to_civil().compact()
                )));
            }
        }
        let mut session = store::Session::open(&ctx.file)?;
        let found = match &session.diagnosis {
            Diagnosis::Consistent | Diagnosis::Fresh if !session.has_partial() => {
                return Ok((
                    None,
                    Output::text("nothing to repair: the trail's head matches the policy\n"),
                ));
            }
            Diagnosis::Consistent | Diagnosis::Fresh | Diagnosis::Interrupted { .. } => None,
            Diagnosis::Untracked => Some("no trail records yet".to_owned()),
            Diagnosis::Mismatch { explanation } => Some(explanation.clone()),
        };
        let adopt = found
            .as_ref()
            .map(|f| reason_text(&format!("{}; found: {f}", reason.as_str())));
        let records = session.mending_records(Some(reason.as_str()), adopt);
        let now = context::now();
        let committed = session.append(&who, now, records)?;
        let _ = std::fs::remove_file(ctx.file.tmp_path());
        let mut out = String::new();
        for r in &committed.repaired {
            let _ = writeln!(out, "repaired: {r}");
        }
        if let Some(f) = found {
            let _ = writeln!(
                out,
                "recorded the policy as it is (record {}): {f}",
                committed.seq
            );
        }
        let _ = writeln!(out, "head hash {}", committed.hash);
        let mut committed = committed;
        committed.repaired.clear();
        Ok((Some(committed), Output::text(out)))
    })
}
