//! The people's side of access requests on sshjit-server:
//! `sshjit request` (ask through a role; with `--wait`, wait for the
//! decision and print the ready `ssh` command), `sshjit requests` (list),
//! `sshjit approve`, `sshjit deny`, `sshjit done` (end access early) and
//! `sshjit review` (the note a break-glass access needs).
//!
//! `--ephemeral` makes a fresh Ed25519 key pair here, under
//! `~/.ssh/sshjit/` (directory 0700, private key 0600); only its public
//! half is sent. A certificate is written beside its key as
//! `KEY-cert.pub`, where ssh looks for it.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Deserialize;
use serde_json::{Value, json};

use super::failure::Failure;
use super::list::{cut, render_table};
use super::output::Output;
use super::remote::{HttpMethod, Remote};
use crate::Globals;
use crate::fs::atomic;
use sshjit_policy::time::{format_duration, parse_duration};

/// How often `--wait` asks.
const POLL: Duration = Duration::from_secs(1);

#[derive(Args, Debug, Clone)]
pub struct RequestArgs {
    /// The role to ask through (roles.toml on the server)
    #[arg(long, value_name = "ROLE")]
    pub role: String,
    /// The local account to log in as (sshd's %u)
    #[arg(long = "as", value_name = "ACCOUNT")]
    pub account: String,
    /// Host globs, within the role's [default: every host the role allows]
    #[arg(long = "host", value_name = "GLOB")]
    pub hosts: Vec<String>,
    /// How long, from approval (at most the role's max)
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: String,
    /// Why: required (and matching the role's reason_pattern)
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Your public key (FILE.pub; its private half stays here)
    #[arg(long, value_name = "FILE.pub", conflicts_with = "ephemeral")]
    pub key: Option<PathBuf>,
    /// Make a fresh key pair for this request under ~/.ssh/sshjit/
    #[arg(long)]
    pub ephemeral: bool,
    /// Wait for the decision, then print the ssh command as the last line
    #[arg(long)]
    pub wait: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RequestsArgs {
    /// Only requests waiting for a decision
    #[arg(long)]
    pub pending: bool,
    /// As JSON (a list of objects)
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ApproveArgs {
    #[arg(value_name = "ID")]
    pub id: String,
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct DenyArgs {
    #[arg(value_name = "ID")]
    pub id: String,
    /// Why: required
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
}

#[derive(Args, Debug, Clone)]
pub struct DoneArgs {
    #[arg(value_name = "ID")]
    pub id: String,
}

#[derive(Args, Debug, Clone)]
pub struct ReviewArgs {
    #[arg(value_name = "ID")]
    pub id: String,
    /// What was done, and the outcome: required
    #[arg(long, value_name = "TEXT")]
    pub note: String,
}

/// A request as the server shows it (the fields used here).
#[derive(Deserialize, Debug)]
struct Shown {
    id: String,
    state: String,
    account: String,
    #[serde(default)]
    hosts: Vec<String>,
    issue: String,
    #[serde(default)]
    certificate: Option<String>,
    expires_at: String,
    #[serde(default)]
    approvals: Vec<Value>,
    #[serde(default)]
    approvals_needed: u32,
    #[serde(default)]
    break_glass: bool,
}

/// The key a request sends, and where its private half is.
struct KeyPlan {
    public: String,
    /// The private key file ssh gets with -i (for --key, FILE without .pub).
    private: PathBuf,
    /// An ephemeral key not written yet (its OpenSSH text).
    fresh: Option<String>,
}

fn key_plan(args: &RequestArgs) -> Result<KeyPlan, Failure> {
    if args.ephemeral {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed)
            .map_err(|e| Failure::internal(format!("no random bytes for a key: {e}")))?;
        let pair = ssh_key::private::Ed25519Keypair::from_seed(&seed);
        let mut private = ssh_key::PrivateKey::from(pair);
        private.set_comment(format!(
            "sshjit-ephemeral@{}",
            crate::system::hostname().unwrap_or_default()
        ));
        let text = private
            .to_openssh(ssh_key::LineEnding::LF)
            .map_err(|e| Failure::internal(format!("encoding the key: {e}")))?;
        let public = private
            .public_key()
            .to_openssh()
            .map_err(|e| Failure::internal(format!("encoding the key: {e}")))?;
        return Ok(KeyPlan {
            public,
            private: PathBuf::new(),
            fresh: Some(text.to_string()),
        });
    }
    let Some(path) = &args.key else {
        return Err(Failure::usage(
            "give --key FILE.pub (your public key) or --ephemeral (a fresh key pair for this request)",
        ));
    };
    let spec = path.display().to_string();
    let key = super::keyfile::read_key(&spec)?;
    // The ssh command must work from any directory.
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.clone());
    let text = absolute.display().to_string();
    let private = match text.strip_suffix(".pub") {
        Some(p) => PathBuf::from(p),
        None => absolute.clone(),
    };
    Ok(KeyPlan {
        public: key.as_str().to_owned(),
        private,
        fresh: None,
    })
}

/// `~/.ssh/sshjit`, made 0700.
fn ephemeral_dir() -> Result<PathBuf, Failure> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .ok_or_else(|| Failure::refused("no home directory for the key (set HOME)"))?;
    let dir = home.join(".ssh/sshjit");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Failure::refused(format!("{}: {e}", dir.display())))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| Failure::refused(format!("{}: {e}", dir.display())))?;
    Ok(dir)
}

/// `FILE-cert.pub` beside a private key `FILE`.
fn cert_path(private: &Path) -> PathBuf {
    let mut s = private.as_os_str().to_owned();
    s.push("-cert.pub");
    PathBuf::from(s)
}

pub fn run_request(globals: &Globals, args: &RequestArgs) -> Result<Output, Failure> {
    let remote = Remote::required(globals)?;
    let duration = parse_duration(&args.duration)
        .map_err(|e| Failure::usage(format!("--for {:?}: {e}", args.duration)))?;
    let mut plan = key_plan(args)?;
    let body = json!({
        "role": args.role,
        "account": args.account,
        "hosts": args.hosts,
        "duration": duration.as_secs(),
        "reason": args.reason,
        "key": plan.public,
    });
    let mut shown: Shown = remote.call(HttpMethod::Post, "/v1/requests", Some(&body))?;
    if let Some(text) = plan.fresh.take() {
        let dir = ephemeral_dir()?;
        plan.private = dir.join(&shown.id);
        atomic::write(&plan.private, text.as_bytes(), atomic::Options::mode(0o600))
            .map_err(|e| Failure::refused(format!("writing the key: {e}")))?;
        let mut public = plan.public.clone();
        public.push('\n');
        let pub_path = plan.private.with_file_name(format!("{}.pub", shown.id));
        atomic::write(&pub_path, public.as_bytes(), atomic::Options::mode(0o644))
            .map_err(|e| Failure::refused(format!("writing the key: {e}")))?;
    }
    let mut out = Output::text(format!("{}\n", shown.id));
    if shown.state == "pending" && args.wait {
        // The id first, at once: approvers need it while we wait.
        crate::term::print(&out.text);
        out.text.clear();
        crate::term::eprint(&format!(
            "waiting for approval of {} ({} of {} approvals so far)...\n",
            shown.id,
            shown.approvals.len(),
            shown.approvals_needed
        ));
        shown = wait(&remote, &shown.id)?;
    }
    match shown.state.as_str() {
        "approved" => {
            let ssh = ready(&shown, &plan, &mut out)?;
            out.text.push_str(&format!("{ssh}\n"));
            Ok(out)
        }
        "pending" => {
            out.note(format!(
                "{} waits for approval; `sshjit requests` shows it (ask with --wait to get the ssh command when it is approved)",
                shown.id
            ));
            Ok(out)
        }
        other => {
            if !out.text.is_empty() {
                crate::term::print(&out.text);
            }
            Err(Failure::refused(format!("{} was {other}", shown.id)))
        }
    }
}

/// Polls the request until it is decided, at most as long as it may wait.
fn wait(remote: &Remote, id: &str) -> Result<Shown, Failure> {
    let deadline = Instant::now() + Duration::from_secs(8 * 24 * 3600);
    loop {
        std::thread::sleep(POLL);
        let shown: Shown =
            remote.call(HttpMethod::Get, &format!("/v1/requests/{id}"), None::<&()>)?;
        if shown.state != "pending" || Instant::now() > deadline {
            return Ok(shown);
        }
    }
}

/// Writes the certificate (if any) and returns the ssh command line.
fn ready(shown: &Shown, plan: &KeyPlan, out: &mut Output) -> Result<String, Failure> {
    let mut ssh = format!("ssh -i {}", quote(&plan.private.display().to_string()));
    if shown.issue == "certificate" {
        let cert = shown.certificate.as_deref().ok_or_else(|| {
            Failure::internal(format!("{}: approved without a certificate", shown.id))
        })?;
        if cert.len() > 64 * 1024 || cert.trim_end().contains(['\n', '\r']) {
            return Err(Failure::internal(
                "the server sent a certificate this sshjit cannot read",
            ));
        }
        let path = cert_path(&plan.private);
        atomic::write(
            &path,
            format!("{}\n", cert.trim_end()).as_bytes(),
            atomic::Options::mode(0o644),
        )
        .map_err(|e| Failure::refused(format!("writing the certificate: {e}")))?;
        out.note(format!("certificate written to {}", path.display()));
        ssh.push_str(&format!(
            " -o CertificateFile={}",
            quote(&path.display().to_string())
        ));
    }
    ssh.push_str(" -o IdentitiesOnly=yes");
    let host = match shown.hosts.as_slice() {
        [one] if !one.contains(['*', '?']) => one.clone(),
        [] => {
            out.note("any host: put its name for HOST".to_string());
            "HOST".into()
        }
        many => {
            out.note(format!("put a host matching {} for HOST", many.join(", ")));
            "HOST".into()
        }
    };
    out.line(format!(
        "{}: approved{} until {}",
        shown.id,
        if shown.break_glass {
            " (break-glass: alerted, and it needs a review note: `sshjit review ID --note ...`)"
        } else {
            ""
        },
        shown.expires_at
    ));
    ssh.push_str(&format!(" {}@{host}", shown.account));
    Ok(ssh)
}

/// A word for a POSIX shell: as it is when it needs no quoting.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:@~".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

pub fn run_requests(globals: &Globals, args: &RequestsArgs) -> Result<Output, Failure> {
    let remote = Remote::required(globals)?;
    let endpoint = if args.pending {
        "/v1/requests?pending=1"
    } else {
        "/v1/requests"
    };
    let list: Vec<Value> = remote.call(HttpMethod::Get, endpoint, None::<&()>)?;
    if args.json {
        let text =
            serde_json::to_string_pretty(&list).map_err(|e| Failure::internal(e.to_string()))?;
        return Ok(Output::text(format!("{text}\n")));
    }
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("-").to_owned();
    let mut rows = vec![
        [
            "ID",
            "STATE",
            "ROLE",
            "REQUESTER",
            "ACCOUNT",
            "HOSTS",
            "FOR",
            "APPROVALS",
            "EXPIRES",
            "REASON",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for v in &list {
        let hosts: Vec<&str> = v["hosts"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        rows.push(vec![
            s(v, "id"),
            format!(
                "{}{}",
                s(v, "state"),
                if v["review"]["due"].as_bool() == Some(true) {
                    " (review due)"
                } else {
                    ""
                }
            ),
            s(v, "role"),
            s(v, "requester"),
            s(v, "account"),
            cut(
                &if hosts.is_empty() {
                    "*".into()
                } else {
                    hosts.join(",")
                },
                32,
            ),
            format_duration(Duration::from_secs(v["duration"].as_u64().unwrap_or(0))),
            format!(
                "{}/{}",
                v["approvals"].as_array().map_or(0, Vec::len),
                v["approvals_needed"].as_u64().unwrap_or(0)
            ),
            s(v, "expires_at"),
            cut(
                &sshjit_policy::text::quote_for_display(&s(v, "reason"), 200),
                40,
            ),
        ]);
    }
    if list.is_empty() {
        return Ok(Output::text(if args.pending {
            "no pending request\n"
        } else {
            "no request\n"
        }));
    }
    Ok(Output::text(render_table(&rows)))
}

fn decide(globals: &Globals, id: &str, what: &str, body: Value) -> Result<Output, Failure> {
    let remote = Remote::required(globals)?;
    sshjit_store_id(id)?;
    let shown: Value = remote.call(
        HttpMethod::Post,
        &format!("/v1/requests/{id}/{what}"),
        Some(&body),
    )?;
    let state = shown["state"].as_str().unwrap_or("?");
    let mut line = format!("{id}: {state}");
    if state == "pending" {
        line.push_str(&format!(
            " ({} of {} approvals)",
            shown["approvals"].as_array().map_or(0, Vec::len),
            shown["approvals_needed"].as_u64().unwrap_or(0)
        ));
    }
    if state == "approved"
        && let Some(until) = shown["expires_at"].as_str()
    {
        line.push_str(&format!(" until {until}"));
    }
    Ok(Output::text(format!("{line}\n")))
}

/// Checks an id before it goes into a URL path.
fn sshjit_store_id(id: &str) -> Result<(), Failure> {
    crate::store::request::RequestId::new(id)
        .map(drop)
        .map_err(|e| Failure::usage(e.to_string()))
}

pub fn run_approve(globals: &Globals, args: &ApproveArgs) -> Result<Output, Failure> {
    decide(
        globals,
        &args.id,
        "approve",
        json!({ "reason": args.reason }),
    )
}

pub fn run_deny(globals: &Globals, args: &DenyArgs) -> Result<Output, Failure> {
    decide(globals, &args.id, "deny", json!({ "reason": args.reason }))
}

pub fn run_done(globals: &Globals, args: &DoneArgs) -> Result<Output, Failure> {
    decide(globals, &args.id, "done", json!({}))
}

pub fn run_review(globals: &Globals, args: &ReviewArgs) -> Result<Output, Failure> {
    decide(globals, &args.id, "review", json!({ "note": args.note }))
}
