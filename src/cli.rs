//! The command line: clap definitions, dispatch, and the one place where
//! a command's output is printed and its failure becomes an exit status.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};

use sshjit::commands::{Failure, Output};
use sshjit::log::{Line, Severity, Syslog};
use sshjit::login::{self, LoginArgs, ModeKind};
use sshjit::{Globals, commands, config, exit, term};

#[derive(Parser, Debug)]
#[command(
    name = "sshjit",
    version,
    about = "Just-in-time, time-bound, revocable SSH access for stock OpenSSH",
    propagate_version = true
)]
pub(crate) struct Cli {
    #[command(flatten)]
    globals: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct GlobalArgs {
    /// Configuration file [default: /etc/sshjit/sshjit.toml, optional]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Policy source, a path or an https:// URL; overrides the config [default: /etc/sshjit/policy.json]
    #[arg(long, global = true, value_name = "SRC")]
    policy: Option<String>,
    /// This host's name for `hosts` globs [default: the config, else gethostname()]
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
    /// sshjit-server to talk to: for login and the people's commands [default: the client config's], and for grant, revoke, unrevoke, freeze, thaw, list and report instead of a policy file
    #[arg(long, global = true, value_name = "URL")]
    server: Option<String>,
}

/// `--host` after `keys`, `principals` or `explain`. It cannot be a global
/// option: `grant --host GLOB` means something else.
#[derive(Args, Debug)]
struct HostArg {
    /// This host's name for `hosts` globs [default: the config, else gethostname()]
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the authorized_keys lines valid now for USER (sshd's AuthorizedKeysCommand)
    Keys {
        /// The account logging in (sshd's %u)
        #[arg(value_name = "USER")]
        user: String,
        /// Print only the key with this fingerprint (sshd's %f)
        #[arg(long, value_name = "FP", allow_hyphen_values = true)]
        fingerprint: Option<String>,
        #[command(flatten)]
        host: HostArg,
    },
    /// Print the certificate principals valid now for USER (sshd's AuthorizedPrincipalsCommand)
    Principals {
        /// The account logging in (sshd's %u)
        #[arg(value_name = "USER")]
        user: String,
        /// The certificate's key ID (sshd's %i; it may start with `-`)
        #[arg(long, value_name = "ID", allow_hyphen_values = true)]
        key_id: Option<String>,
        /// The certificate's serial (sshd's %s)
        #[arg(long, value_name = "N", allow_hyphen_values = true)]
        serial: Option<String>,
        /// The certificate key's fingerprint (sshd's %f)
        #[arg(long, value_name = "FP", allow_hyphen_values = true)]
        fingerprint: Option<String>,
        #[command(flatten)]
        host: HostArg,
    },
    /// Validate the policy (and the config); print where an error is and how to fix it
    Check {
        /// Also check that this account (sshd's AuthorizedKeysCommandUser) can read every file a login reads [default, as root: sshjit]
        #[arg(long = "as", value_name = "USER")]
        account: Option<String>,
    },
    /// Build the policy index (the admin commands keep it current; run after a hand edit, or keep --watch running)
    Index {
        /// Keep running, rebuilding the index whenever the policy (or its signature) changes
        #[arg(long)]
        watch: bool,
        /// How often --watch looks at the policy [default: 1s]
        #[arg(long, value_name = "DURATION", requires = "watch")]
        interval: Option<String>,
    },
    /// Explain, grant by grant, why USER may or may not log in
    Explain {
        #[arg(value_name = "USER")]
        user: String,
        /// Evaluate at this RFC 3339 time instead of now
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// The offered key's fingerprint (keys) or the certificate's (principals)
        #[arg(long, value_name = "FP")]
        fingerprint: Option<String>,
        /// A certificate key ID to check against revocations
        #[arg(long, value_name = "ID", allow_hyphen_values = true)]
        key_id: Option<String>,
        /// A certificate serial to check against revocations
        #[arg(long, value_name = "N")]
        serial: Option<String>,
        #[command(flatten)]
        host: HostArg,
    },
    /// Create a new, empty policy and its trail (the only command that creates a policy)
    Init(commands::init::InitArgs),
    /// Give access: add a grant (prints only its id)
    Grant(commands::grant::GrantArgs),
    /// Take access away: add a revocation (it always wins over a grant)
    Revoke(commands::revoke::RevokeArgs),
    /// Lift the revocations that name exactly this
    Unrevoke(commands::revoke::RevokeArgs),
    /// Stop every grant but the break-glass ones
    Freeze(commands::freeze::FreezeArgs),
    /// Undo a freeze
    Thaw(commands::freeze::FreezeArgs),
    /// List the grants valid now (--all: every grant), revocations and the frozen state
    List(commands::list::ListArgs),
    /// Remove long-expired grants and dead revocations (the trail keeps them)
    Prune(commands::prune::PruneArgs),
    /// The access report from the change trail (--logins: and which grants were used)
    Report(commands::report::ReportArgs),
    /// Keep this host's policy file current from sshjit-server (--server URL): long polls, verified, with its index
    Sync(commands::sync::SyncArgs),
    /// Log in to sshjit-server (password and TOTP code, or --identity KEY); the session is kept for this user only
    Login(commands::session::LoginArgs),
    /// End the session with sshjit-server
    Logout,
    /// Ask sshjit-server for access through a role (prints the request id first; --wait: the ssh command last)
    Request(commands::request::RequestArgs),
    /// List the access requests you may see (yours, those you approve; all for admins)
    Requests(commands::request::RequestsArgs),
    /// Approve a pending request (never your own)
    Approve(commands::request::ApproveArgs),
    /// Deny a pending request (or withdraw your own)
    Deny(commands::request::DenyArgs),
    /// End a request's access early: a revocation, at the next login
    Done(commands::request::DoneArgs),
    /// Record the review note a break-glass access needs
    Review(commands::request::ReviewArgs),
    /// Who sshjit-server takes this session for
    Whoami,
    /// Verify or repair the change trail
    Audit {
        #[command(subcommand)]
        command: commands::audit::AuditCommand,
    },
    /// Sign a policy file with ssh-keygen -Y sign (namespace sshjit-policy), writing FILE.sig
    Sign {
        /// The policy document to sign (validated first; it needs a serial)
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The signing key: a private key, or a public key whose private half is in ssh-agent
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// Check the new signature against this allowed_signers file [default: the config's]
        #[arg(long, value_name = "FILE")]
        allowed_signers: Option<PathBuf>,
    },
    /// Write the revocations OpenSSH can enforce (keys, certificate key IDs and serials) as a KRL for sshd's RevokedKeys
    Krl(commands::krl::KrlArgs),
    /// End live sshd sessions whose key, certificate or grant was revoked (or, by rule, has expired)
    Reap(commands::reap::ReapArgs),
    /// Verify a policy's signature and serial as the helper would
    Verify {
        /// A policy file or an https:// URL [default: the configured sources]
        #[arg(value_name = "SRC")]
        source: Option<String>,
        /// The signature file, for a policy file [default: SRC.sig]
        #[arg(long, value_name = "FILE")]
        signature: Option<PathBuf>,
        /// The allowed_signers file [default: the config's]
        #[arg(long, value_name = "FILE")]
        allowed_signers: Option<PathBuf>,
    },
}

/// Runs the command line of this process; returns the exit status.
pub fn main() -> u8 {
    let started = Instant::now();
    run(std::env::args_os(), started)
}

pub fn run(args: impl IntoIterator<Item = OsString>, started: Instant) -> u8 {
    let args: Vec<OsString> = args.into_iter().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(&args, &e),
    };
    let mut globals = Globals {
        config: cli.globals.config,
        policy: cli.globals.policy,
        host: cli.globals.host,
        server: cli.globals.server,
    };
    // `--host` after the subcommand wins over one before it.
    if let Command::Keys { host, .. }
    | Command::Principals { host, .. }
    | Command::Explain { host, .. } = &cli.command
        && host.host.is_some()
    {
        globals.host.clone_from(&host.host);
    }
    match cli.command {
        Command::Keys {
            user, fingerprint, ..
        } => login::run(
            &globals,
            &LoginArgs {
                mode: ModeKind::Keys,
                user,
                fingerprint,
                key_id: None,
                serial: None,
            },
            started,
        ),
        Command::Principals {
            user,
            key_id,
            serial,
            fingerprint,
            ..
        } => login::run(
            &globals,
            &LoginArgs {
                mode: ModeKind::Principals,
                user,
                fingerprint,
                key_id,
                serial,
            },
            started,
        ),
        Command::Check { account } => commands::check::run(&globals, account.as_deref()),
        Command::Index { watch, interval } => {
            let every = match interval.as_deref().map(sshjit_policy::time::parse_duration) {
                None => std::time::Duration::from_secs(1),
                Some(Ok(d)) if d >= std::time::Duration::from_secs(1) => d,
                Some(_) => {
                    term::eprint(
                        "error: --interval: a duration of at least 1s (e.g. 1s, 30s, 5m)\n",
                    );
                    return exit::USAGE;
                }
            };
            commands::index::run(&globals, watch.then_some(every))
        }
        Command::Sign {
            file,
            key,
            allowed_signers,
        } => commands::sign::run_sign(
            &globals,
            &commands::sign::SignArgs {
                file,
                key,
                allowed_signers,
            },
        ),
        Command::Verify {
            source,
            signature,
            allowed_signers,
        } => commands::sign::run_verify(
            &globals,
            &commands::sign::VerifyArgs {
                source,
                signature,
                allowed_signers,
            },
        ),
        Command::Explain {
            user,
            at,
            fingerprint,
            key_id,
            serial,
            ..
        } => commands::explain::run(
            &globals,
            &commands::explain::ExplainArgs {
                user,
                at,
                fingerprint,
                key_id,
                serial,
            },
        ),
        Command::Init(args) => finish(commands::init::run(&globals, &args)),
        Command::Grant(args) => finish(commands::grant::run(&globals, &args)),
        Command::Revoke(args) => finish(commands::revoke::run_revoke(&globals, &args)),
        Command::Unrevoke(args) => finish(commands::revoke::run_unrevoke(&globals, &args)),
        Command::Freeze(args) => finish(commands::freeze::run(&globals, &args, true)),
        Command::Thaw(args) => finish(commands::freeze::run(&globals, &args, false)),
        Command::List(args) => finish(commands::list::run(&globals, &args)),
        Command::Prune(args) => finish(commands::prune::run(&globals, &args)),
        Command::Report(args) => finish(commands::report::run(&globals, &args)),
        Command::Audit { command } => finish(commands::audit::run(&globals, &command)),
        Command::Sync(args) => finish(commands::sync::run(&globals, &args)),
        Command::Login(args) => finish(commands::session::run_login(&globals, &args)),
        Command::Logout => finish(commands::session::run_logout(&globals)),
        Command::Request(args) => finish(commands::request::run_request(&globals, &args)),
        Command::Requests(args) => finish(commands::request::run_requests(&globals, &args)),
        Command::Approve(args) => finish(commands::request::run_approve(&globals, &args)),
        Command::Deny(args) => finish(commands::request::run_deny(&globals, &args)),
        Command::Done(args) => finish(commands::request::run_done(&globals, &args)),
        Command::Review(args) => finish(commands::request::run_review(&globals, &args)),
        Command::Whoami => finish(commands::session::run_whoami(&globals)),
        Command::Krl(args) => finish(commands::krl::run(&globals, &args)),
        Command::Reap(args) => finish(commands::reap::run(&globals, &args)),
    }
}

/// Prints what a command for people produced and returns the exit status:
/// its remarks on stderr, then its result on stdout (0, or 1 when the
/// output says it was refused); a failure on stderr with its kind's status.
fn finish(result: Result<Output, Failure>) -> u8 {
    match result {
        Ok(out) => {
            for remark in &out.remarks {
                term::eprint(&remark.text());
            }
            let status = term::print(&out.text);
            if status == exit::OK && out.refused {
                exit::DENIED
            } else {
                status
            }
        }
        Err(failure) => failure.report(),
    }
}

/// A command line clap refused. On the login path sshd never shows stderr,
/// so the refusal is also logged.
fn usage_error(args: &[OsString], e: &clap::Error) -> u8 {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = write!(io::stdout().lock(), "{e}");
        return exit::OK;
    }
    term::eprint(&e.to_string());
    let mode = args.iter().skip(1).find_map(|a| match a.to_str() {
        Some("keys") => Some("keys"),
        Some("principals") => Some("principals"),
        _ => None,
    });
    if let Some(mode) = mode {
        let first = e.to_string();
        let first = first
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ");
        let mut line = Line::new();
        line.field("mode", mode)
            .field("outcome", "error")
            .field("error", &format!("bad arguments: {first}"));
        Syslog::new(config::DEFAULT_SYSLOG_SOCKET).log(Severity::Err, line.as_str());
    }
    exit::USAGE
}
