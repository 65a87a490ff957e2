//! `sshjit revoke` takes access away by adding a revocation (which always
//! wins over a grant); `sshjit unrevoke` lifts revocations again. Both are
//! recorded like any change.

use clap::{ArgGroup, Args};

use super::change::{Change, Place, apply};
use super::context::{self, Context, waiting};
use super::editing::{AdminLog, run_edit};
use super::failure::Failure;
use super::keyfile;
use super::output::Output;
use super::remote::Remote;
use crate::Globals;
use crate::store::{self, Committed};
use sshjit_policy::types::parse_serial;
use sshjit_policy::{Fingerprint, GrantId, KeyId, Principal, Reason, Revocation, Target, Username};

/// Exactly one selector, the same for `revoke` and `unrevoke`.
#[derive(Args, Debug, Clone)]
#[command(group(ArgGroup::new("target").required(true).multiple(false)
    .args(["grant", "fingerprint", "key", "user", "principal", "key_id", "serial"])))]
pub struct RevokeArgs {
    /// One grant, by id
    #[arg(long, value_name = "ID")]
    pub grant: Option<String>,
    /// A key (and certificates of that key), by SHA256 fingerprint
    #[arg(long, value_name = "FP")]
    pub fingerprint: Option<String>,
    /// A key, by its public key file (`-`: stdin)
    #[arg(long, value_name = "FILE|-")]
    pub key: Option<String>,
    /// Every grant for this account
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// A certificate principal
    #[arg(long, value_name = "P")]
    pub principal: Option<String>,
    /// Certificates with this key ID (sshd's %i; it may start with `-`)
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    pub key_id: Option<String>,
    /// Certificates with this serial (sshd's %s)
    #[arg(long, value_name = "N")]
    pub serial: Option<String>,
    /// Why: required
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Who does it [default: SUDO_USER, else the user running sshjit]
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
}

impl RevokeArgs {
    /// The one thing named.
    pub fn target(&self) -> Result<Target<'static>, Failure> {
        let bad = |flag: &str, e: &dyn std::fmt::Display| Failure::usage(format!("{flag}: {e}"));
        if let Some(id) = &self.grant {
            return GrantId::new(id.clone())
                .map(|g| Target::Grant(g.into_owned()))
                .map_err(|e| bad("--grant", &e));
        }
        if let Some(fp) = &self.fingerprint {
            return Fingerprint::parse(fp)
                .map(Target::Fingerprint)
                .map_err(|e| bad("--fingerprint", &e));
        }
        if let Some(spec) = &self.key {
            return Ok(Target::Fingerprint(keyfile::read_key(spec)?.fingerprint()));
        }
        if let Some(u) = &self.user {
            return Username::new(u.clone())
                .map(|u| Target::User(u.into_owned()))
                .map_err(|e| bad("--user", &e));
        }
        if let Some(p) = &self.principal {
            return Principal::new(p.clone())
                .map(|p| Target::Principal(p.into_owned()))
                .map_err(|e| bad("--principal", &e));
        }
        if let Some(k) = &self.key_id {
            return KeyId::new(k.clone())
                .map(|k| Target::KeyId(k.into_owned()))
                .map_err(|e| bad("--key-id", &e));
        }
        if let Some(s) = &self.serial {
            return parse_serial(s)
                .map(Target::Serial)
                .map_err(|e| bad("--serial", &e));
        }
        Err(Failure::usage(
            "give one of --grant, --fingerprint, --key, --user, --principal, --key-id, --serial",
        ))
    }
}

/// Sends a revoke or an unrevoke to the server.
fn remote(remote: &Remote, args: &RevokeArgs, lift: bool) -> Result<Output, Failure> {
    if args.by.is_some() {
        return Err(Failure::usage(
            "--by: a server records the person you logged in as",
        ));
    }
    let revocation = Revocation {
        target: args.target()?,
        reason: Some(reason(args)?),
        revoked_at: None,
        revoked_by: None,
    };
    remote.change(&if lift {
        Change::Unrevoke { revocation }
    } else {
        Change::Revoke { revocation }
    })
}

fn reason(args: &RevokeArgs) -> Result<Reason<'static>, Failure> {
    Reason::new(args.reason.clone())
        .map(Reason::into_owned)
        .map_err(|e| Failure::usage(format!("--reason: {e}")))
}

pub fn run_revoke(globals: &Globals, args: &RevokeArgs) -> Result<Output, Failure> {
    if let Some(r) = Remote::from_globals(globals, false)? {
        return remote(&r, args, false);
    }
    run_edit(globals, "revoke", |ctx, log| edit(ctx, log, args, false))
}

pub fn run_unrevoke(globals: &Globals, args: &RevokeArgs) -> Result<Output, Failure> {
    if let Some(r) = Remote::from_globals(globals, false)? {
        return remote(&r, args, true);
    }
    run_edit(globals, "unrevoke", |ctx, log| edit(ctx, log, args, true))
}

/// `revoke` (or, with `lift`, `unrevoke`) on the policy file.
fn edit(
    ctx: &Context,
    log: &mut AdminLog,
    args: &RevokeArgs,
    lift: bool,
) -> Result<(Option<Committed>, Output), Failure> {
    let who = context::who(args.by.as_deref())?;
    log.who(&who);
    let target = args.target()?;
    let reason = reason(args)?;
    log_target(log, &target);
    log.field("reason", reason.as_str());
    let now = context::now();
    let revocation = Revocation {
        target,
        reason: Some(reason),
        revoked_at: None,
        revoked_by: None,
    };
    let change = if lift {
        Change::Unrevoke { revocation }
    } else {
        Change::Revoke { revocation }
    };
    let place = Place {
        origin: &ctx.policy_display(),
        max_grant: ctx.config.max_grant,
    };
    let edited = store::edit(&ctx.file, &who, now, Some(&mut waiting), |policy| {
        apply(&change, policy, &who, now, &place)
    })?;
    Ok((edited.committed, edited.value.into_output()))
}

fn log_target(log: &mut AdminLog, target: &Target<'_>) {
    let (key, value) = match target {
        Target::Grant(g) => ("grant", g.to_string()),
        Target::Fingerprint(fp) => ("fp", fp.to_string()),
        Target::User(u) => ("user", u.to_string()),
        Target::Principal(p) => ("principal", p.to_string()),
        Target::KeyId(k) => ("key_id", k.to_string()),
        Target::Serial(s) => ("cert_serial", s.to_string()),
    };
    log.field(key, &value);
}
