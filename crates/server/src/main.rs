//! `sshjit-server`: the one place a fleet's access is decided. With no
//! arguments (or `serve`) it runs the server; the other commands
//! administer it on the server machine and work whether it runs or not.

mod answer;
mod ca;
mod config;
mod http;
mod ledger;
mod log;
mod metrics;
mod oncall;
mod ops;
mod people;
mod requests;
mod roles;
mod signing;
mod store;
mod webhook;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sshjit::store::Who;
use tokio::sync::watch;

use crate::config::ServerConfig;
use crate::ledger::Ledger;
use crate::signing::{Sealer, Signer};
use crate::store::Store;

#[derive(Parser, Debug)]
#[command(
    name = "sshjit-server",
    version,
    about = "sshjit's server: grants, revocations, hosts and people in one store; signed answers for every host",
    propagate_version = true
)]
struct Cli {
    /// Server configuration [default: /etc/sshjit/server.toml, optional]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (what no command does too)
    Serve,
    /// Hosts that ask for their policy
    Host {
        #[command(subcommand)]
        command: HostCommand,
    },
    /// People who log in to the server
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Print the allowed_signers line that hosts need to trust this server's answers
    Signer,
    /// Print the user CA's public key, for the file hosts name in TrustedUserCAKeys
    UserCa,
    /// The policy as a whole
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Adopt a policy document as the server's, replacing what it holds (recorded; the serial carries over)
    Import {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Why: required
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Print the server's policy document
    Export,
}

#[derive(Subcommand, Debug)]
enum HostCommand {
    /// Enroll hosts; prints each one's bearer token once (only its hash is kept): the token alone for one host, `NAME TOKEN` lines for several
    Add {
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
    /// Remove a host: its token is refused from now on
    Remove {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// List the enrolled hosts
    List,
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Make a person's account; prints the otpauth:// URI of its TOTP secret once
    Add {
        #[arg(value_name = "NAME")]
        name: String,
        /// Groups, comma-separated (group `admin` may administer the policy)
        #[arg(long, value_name = "G,...", value_delimiter = ',')]
        groups: Vec<String>,
        /// Read the password from this file's first line [default: ask on the terminal]
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Remove a person's account, keys and sessions
    Remove {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// SSH keys a person may log in with
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// List the people
    List,
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Enroll a public key (FILE.pub) for key logins
    Add {
        #[arg(value_name = "NAME")]
        name: String,
        #[arg(value_name = "FILE.pub")]
        file: PathBuf,
    },
}

/// Exit statuses, as `sshjit`'s: 1 refused or failed, 2 usage.
const REFUSED: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sshjit-server: {e}");
            return ExitCode::from(REFUSED);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sshjit-server")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sshjit-server: cannot start the runtime: {e}");
            return ExitCode::from(REFUSED);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
            Command::Host { command } => host(&config, command).await,
            Command::User { command } => user(&config, command).await,
            Command::Policy { command } => policy(&config, command).await,
            Command::UserCa => {
                let path = config
                    .user_ca_key
                    .as_ref()
                    .ok_or("no user_ca_key in the server config")?;
                let ca = ca::UserCa::load(path).map_err(|e| e.to_string())?;
                println!("{}", ca.public_line());
                Ok(())
            }
            Command::Signer => {
                let (signer, _) =
                    Signer::load_or_create(&config.signing_key).map_err(|e| e.to_string())?;
                println!("{}", signer.allowed_signers_line());
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sshjit-server: {e}");
            ExitCode::from(REFUSED)
        }
    }
}

async fn open_ledger(config: &ServerConfig) -> Result<Arc<Ledger>, String> {
    let store = Store::open(&config.store)
        .await
        .map_err(|e| format!("{}: {e}", config.store))?;
    Ledger::open(store)
        .await
        .map(Arc::new)
        .map_err(|e| format!("{}: {e}", config.store))
}

/// Who a change made on the server machine is attributed to.
fn who() -> Result<Who, String> {
    Who::current(None).map_err(|e| e.to_string())
}

async fn serve(config: ServerConfig) -> Result<(), String> {
    let ledger = open_ledger(&config).await?;
    let (signer, made) = Signer::load_or_create(&config.signing_key).map_err(|e| e.to_string())?;
    if made {
        log::event(
            "signing_key",
            &[
                ("created", &config.signing_key.display().to_string()),
                ("allowed_signers", &signer.allowed_signers_line()),
            ],
        );
    }
    let sealer = Sealer::load_or_create(&config.secrets_key).map_err(|e| e.to_string())?;
    let tls = match &config.tls {
        Some((cert, key)) => Some(http::tls_acceptor(cert, key)?),
        None => None,
    };
    let listener = listen(config.listen).map_err(|e| format!("listen {}: {e}", config.listen))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("listen {}: {e}", config.listen))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let webhook = config
        .webhook
        .clone()
        .map(webhook::Webhook::new)
        .transpose()?;
    let flow = Arc::new(load_flow(&config)?);
    let view = ledger.view();
    log::event(
        "listening",
        &[
            (
                "address",
                &format!(
                    "{}://{}",
                    if tls.is_some() { "https" } else { "http" },
                    bound
                ),
            ),
            ("store", &config.store.to_string()),
            ("serial", &view.serial.to_string()),
            ("records", &view.seq.to_string()),
            ("hosts", &view.hosts.len().to_string()),
            ("roles", &flow.roles.roles.len().to_string()),
        ],
    );
    drop(view);
    let app = Arc::new(http::App {
        config,
        ledger: Arc::clone(&ledger),
        signer,
        sealer,
        metrics: Default::default(),
        limiter: Default::default(),
        stopping: stop_rx.clone(),
        webhook,
        flow,
    });
    tokio::spawn(Arc::clone(&ledger).follow(Duration::from_millis(500)));
    tokio::spawn(expire_sessions(Arc::clone(&ledger)));
    tokio::spawn(expire_requests(Arc::clone(&app)));
    tokio::spawn(async move {
        stop_signal().await;
        log::event("stopping", &[]);
        let _ = stop_tx.send(true);
    });
    http::serve(app, listener, tls, stop_rx).await;
    log::event("stopped", &[]);
    Ok(())
}

/// What the request flow reads at start: the roles (a bad file stops the
/// server, saying where), the on-call schedule and the user CA.
/// Connections the kernel may hold before the server accepts them. A
/// fleet reconnecting after an outage arrives at once: with the usual 1024
/// the rest would wait out SYN retransmits (1 s, 3 s, 7 s ... later); the
/// kernel still caps it at net.core.somaxconn.
const LISTEN_BACKLOG: u32 = 16_384;

fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

fn load_flow(config: &ServerConfig) -> Result<requests::Flow, String> {
    let roles = roles::load(&config.roles, config.roles_explicit).map_err(|e| e.to_string())?;
    let oncall = oncall::OnCall::load(&config.oncall)?;
    let ca = match &config.user_ca_key {
        Some(path) => Some(ca::UserCa::load(path).map_err(|e| format!("user_ca_key {e}"))?),
        None => None,
    };
    if let (Some(role), None) = (roles.need_ca(), &ca) {
        return Err(format!(
            "{}: role {} issues certificates, but server.toml sets no user_ca_key",
            roles.origin, role.name
        ));
    }
    Ok(requests::Flow {
        roles,
        oncall,
        ca,
        ttl: config.request_ttl,
        syslog: sshjit::log::Syslog::new(config.syslog_socket.clone()),
    })
}

/// Records pending requests that lapsed, a few times per `request_ttl`.
async fn expire_requests(app: Arc<http::App>) {
    let every = (app.config.request_ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = app
            .flow
            .expire_lapsed(&app.ledger, app.webhook.as_ref())
            .await
        {
            log::event("expire_requests", &[("error", e.message())]);
        }
    }
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

async fn expire_sessions(ledger: Arc<Ledger>) {
    loop {
        tokio::time::sleep(Duration::from_secs(600)).await;
        let now = sshjit_policy::time::Timestamp::now().unix_seconds();
        if let Err(e) = ledger.store().expire_sessions(now).await {
            log::event("expire_sessions", &[("error", &e.to_string())]);
        }
    }
}

async fn policy(config: &ServerConfig, command: PolicyCommand) -> Result<(), String> {
    let ledger = open_ledger(config).await?;
    match command {
        PolicyCommand::Import { file, reason } => {
            let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let committed = ops::policy_import(&ledger, &who()?, &bytes, &reason)
                .await
                .map_err(|e| e.to_string())?;
            eprintln!(
                "{} adopted as the server's policy (record {}, serial {})",
                file.display(),
                committed.seq,
                committed.serial
            );
        }
        PolicyCommand::Export => {
            let view = ledger.view();
            let mut p = (*view.policy).clone();
            p.serial = Some(view.serial);
            let doc = p.to_document().map_err(|e| e.to_string())?;
            use std::io::Write;
            std::io::stdout()
                .write_all(&doc)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

async fn host(config: &ServerConfig, command: HostCommand) -> Result<(), String> {
    let ledger = open_ledger(config).await?;
    match command {
        HostCommand::Add { names } => {
            let who = who()?;
            let one = names.len() == 1;
            for name in &names {
                let (token, committed) = ops::host_add(&ledger, &who, name)
                    .await
                    .map_err(|e| format!("{name}: {e}"))?;
                if one {
                    println!("{token}");
                    eprintln!(
                        "host {name} enrolled (record {}). The token above is shown once: on {name}, write it to the file its token_file names (root-owned, mode 0600).",
                        committed.seq
                    );
                } else {
                    println!("{name} {token}");
                }
            }
            if !one {
                eprintln!(
                    "{} hosts enrolled. The tokens above are shown once: give each host its own.",
                    names.len()
                );
            }
        }
        HostCommand::Remove { name } => {
            let committed = ops::host_remove(&ledger, &who()?, &name)
                .await
                .map_err(|e| e.to_string())?;
            eprintln!(
                "host {name} removed (record {}): its token is refused from now on",
                committed.seq
            );
        }
        HostCommand::List => {
            for h in ops::hosts(&ledger) {
                println!("{h}");
            }
        }
    }
    Ok(())
}

async fn user(config: &ServerConfig, command: UserCommand) -> Result<(), String> {
    let ledger = open_ledger(config).await?;
    match command {
        UserCommand::Add {
            name,
            groups,
            password_file,
        } => {
            let sealer = Sealer::load_or_create(&config.secrets_key).map_err(|e| e.to_string())?;
            let password = match password_file {
                Some(f) => read_password_file(&f)?,
                None => {
                    let first = sshjit::system::read_secret(&format!("password for {name}: "))
                        .map_err(|e| {
                            format!("cannot ask for a password ({e}): use --password-file")
                        })?;
                    let again = sshjit::system::read_secret("the same again: ")
                        .map_err(|e| e.to_string())?;
                    if first != again {
                        return Err("the two passwords differ".into());
                    }
                    first
                }
            };
            let issuer = format!(
                "sshjit {}",
                sshjit::system::hostname().unwrap_or_else(|_| "server".into())
            );
            let made = ops::person_add(
                &ledger,
                &sealer,
                &who()?,
                &name,
                &groups,
                &password,
                &issuer,
            )
            .await
            .map_err(|e| e.to_string())?;
            println!("{}", made.otpauth);
            // The code for the app's camera, only where a person looks
            // (stdout may be a file or a pipe in a script).
            if std::io::IsTerminal::is_terminal(&std::io::stdout())
                && let Some(qr) = people::qr_for_terminal(&made.otpauth)
            {
                println!("{qr}");
            }
            eprintln!(
                "person {name} added (record {}). The URI above holds the TOTP secret and is shown once: add it to an authenticator app.",
                made.committed.seq
            );
        }
        UserCommand::Remove { name } => {
            let committed = ops::person_remove(&ledger, &who()?, &name)
                .await
                .map_err(|e| e.to_string())?;
            eprintln!("person {name} removed (record {})", committed.seq);
        }
        UserCommand::Key {
            command: KeyCommand::Add { name, file },
        } => {
            let text = read_small(&file, 16 * 1024)?;
            let (fp, committed) = ops::person_key_add(&ledger, &who()?, &name, &text)
                .await
                .map_err(|e| e.to_string())?;
            eprintln!("key {fp} enrolled for {name} (record {})", committed.seq);
        }
        UserCommand::List => {
            let store = ledger.store();
            let people = store.people().await.map_err(|e| e.to_string())?;
            for p in people {
                let keys = store
                    .person_keys(&p.name)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut line = p.name.clone();
                if !p.groups.is_empty() {
                    line.push_str(&format!(" groups={}", p.groups.join(",")));
                }
                for (fp, _) in keys {
                    line.push_str(&format!(" key={fp}"));
                }
                println!("{line}");
            }
        }
    }
    Ok(())
}

/// A small file given on the command line. Only a kind of failure is
/// said, never its content.
fn read_small(path: &Path, limit: u64) -> Result<String, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    (&mut f)
        .take(limit + 1)
        .read_to_string(&mut text)
        .map_err(|_| format!("{}: not a text file", path.display()))?;
    if text.len() as u64 > limit {
        return Err(format!("{}: larger than {limit} bytes", path.display()));
    }
    Ok(text)
}

fn read_password_file(path: &Path) -> Result<String, String> {
    let text = read_small(path, 4096)?;
    let line = text.lines().next().unwrap_or("").to_owned();
    if line.is_empty() {
        return Err(format!("{}: the first line is empty", path.display()));
    }
    Ok(line)
}
