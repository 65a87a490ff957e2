//! `sshjit login`: a session with sshjit-server, by password and TOTP
//! code (or by an enrolled SSH key signing the server's challenge), kept for this user only until it ends; `sshjit logout` ends it;
//! `sshjit whoami` says who the server takes us for.

use std::io::Read;
use std::path::PathBuf;

use clap::Args;
use serde::Deserialize;
use serde_json::json;

use super::failure::Failure;
use super::output::Output;
use super::remote::{HttpMethod, Remote, Session, decode};
use crate::{Globals, system};
use sshjit_policy::time::Timestamp;

#[derive(Args, Debug, Clone)]
pub struct LoginArgs {
    /// The person to log in as [default: $USER]
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Read the password from this file's first line [default: ask on the terminal]
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// The authenticator's current code [default: ask on the terminal]
    #[arg(long, value_name = "CODE", conflicts_with = "identity")]
    pub totp: Option<String>,
    /// Log in with an enrolled SSH key instead (no password, no TOTP: for
    /// automation accounts): a private key, or a .pub whose private half is in ssh-agent
    #[arg(long, value_name = "KEY", conflicts_with = "password_file")]
    pub identity: Option<PathBuf>,
}

/// What the server says of a session.
#[derive(Deserialize)]
struct SessionInfo {
    #[serde(default)]
    token: Option<String>,
    person: String,
    #[serde(default)]
    groups: Vec<String>,
    expires_at: Timestamp,
    #[serde(default)]
    totp: bool,
}

fn describe(remote: &Remote, info: &SessionInfo) -> String {
    let groups = if info.groups.is_empty() {
        String::new()
    } else {
        format!(" (groups {})", info.groups.join(", "))
    };
    format!(
        "{} as {}{groups} until {}{}",
        remote.url,
        info.person,
        info.expires_at,
        if info.totp { "" } else { ", without TOTP" }
    )
}

pub fn run_login(globals: &Globals, args: &LoginArgs) -> Result<Output, Failure> {
    let remote = Remote::required(globals)?;
    let person = match &args.user {
        Some(u) => u.clone(),
        None => std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .map_err(|_| Failure::usage("--user: no $USER to default to"))?,
    };
    if let Some(key) = &args.identity {
        return key_login(&remote, &person, key);
    }
    let password = match &args.password_file {
        Some(path) => first_line(path)?,
        None => system::read_secret(&format!("password for {person} at {}: ", remote.url))
            .map_err(|e| {
                Failure::usage(format!(
                    "cannot ask for the password ({e}): give --password-file"
                ))
            })?,
    };
    let totp = match &args.totp {
        Some(c) => c.clone(),
        None => system::read_secret("TOTP code: ")
            .map_err(|e| Failure::usage(format!("cannot ask for the code ({e}): give --totp")))?,
    };
    let body = serde_json::to_vec(&json!({
        "user": person,
        "password": password,
        "totp": totp.trim(),
    }))
    .map_err(|e| Failure::internal(e.to_string()))?;
    let reply = remote.send(HttpMethod::Post, "/v1/login", None, Some(&body))?;
    keep(&remote, decode(&remote.url, reply)?)
}

/// Signs the server's challenge with `key` (`ssh-keygen -Y sign`, so a
/// key in ssh-agent works as a key file does).
fn key_login(remote: &Remote, person: &str, key: &std::path::Path) -> Result<Output, Failure> {
    #[derive(Deserialize)]
    struct Challenge {
        challenge: String,
        namespace: String,
    }
    let body = serde_json::to_vec(&json!({ "user": person }))
        .map_err(|e| Failure::internal(e.to_string()))?;
    let reply = remote.send(HttpMethod::Post, "/v1/login/challenge", None, Some(&body))?;
    let c: Challenge = decode(&remote.url, reply)?;
    if c.namespace != "sshjit-login" || c.challenge.len() > 1024 {
        return Err(Failure::internal(format!(
            "{}: a challenge this sshjit does not sign",
            remote.url
        )));
    }
    let signature = super::sign::ssh_keygen_sign(c.challenge.as_bytes(), key, &c.namespace)?;
    let signature = String::from_utf8(signature)
        .map_err(|_| Failure::internal("ssh-keygen gave a signature that is not text"))?;
    let body = serde_json::to_vec(&json!({
        "user": person,
        "challenge": c.challenge,
        "signature": signature,
    }))
    .map_err(|e| Failure::internal(e.to_string()))?;
    let reply = remote.send(HttpMethod::Post, "/v1/login/key", None, Some(&body))?;
    keep(remote, decode(&remote.url, reply)?)
}

/// Keeps the session a login answered.
fn keep(remote: &Remote, info: SessionInfo) -> Result<Output, Failure> {
    let token = info.token.clone().ok_or_else(|| {
        Failure::internal(format!("{}: a login answer without a token", remote.url))
    })?;
    let session = Session {
        server: remote.url.to_string(),
        person: info.person.clone(),
        token,
        expires_at: info.expires_at,
    };
    let kept = session.save(&remote.url)?;
    let mut out = Output::text(format!("logged in to {}\n", describe(remote, &info)));
    out.note(format!("session kept in {}", kept.display()));
    Ok(out)
}

pub fn run_logout(globals: &Globals) -> Result<Output, Failure> {
    let remote = Remote::required(globals)?;
    let Some(session) = Session::load(&remote.url)? else {
        return Ok(Output::text(format!("not logged in to {}\n", remote.url)));
    };
    let reply = remote.send(HttpMethod::Post, "/v1/logout", Some(&session.token), None)?;
    Session::forget(&remote.url)?;
    // A session the server already ended is as good as ended now.
    if reply.status != 200 && reply.status != 401 {
        return Err(super::remote::refusal(&remote.url, &reply));
    }
    Ok(Output::text(format!("logged out of {}\n", remote.url)))
}

pub fn run_whoami(globals: &Globals) -> Result<Output, Failure> {
    let remote = Remote::required(globals)?;
    let info: SessionInfo = remote.call(HttpMethod::Get, "/v1/whoami", None::<&()>)?;
    Ok(Output::text(format!("{}\n", describe(&remote, &info))))
}

/// A secret's file: its first line. Only a kind of failure is said.
fn first_line(path: &PathBuf) -> Result<String, Failure> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_string(&mut text))
        .map_err(|e| Failure::usage(format!("--password-file {}: {}", path.display(), e.kind())))?;
    let line = text.lines().next().unwrap_or("").to_owned();
    if line.is_empty() {
        return Err(Failure::usage(format!(
            "--password-file {}: the first line is empty",
            path.display()
        )));
    }
    Ok(line)
}
