//! Commands for people, over the store.
//!
//! A map:
//!
//! - read-only aids that share the login path's reading, signature checks
//!   and evaluation, so what they say is what sshd gets: `check`,
//!   `explain`, `sign` (and `verify`), `index`;
//! - `list` and `report` (`logins` reads the helper's syslog lines for
//!   it), which read the policy and the trail;
//! - `init`, the one command that creates a policy (with its trail);
//! - the editing commands `grant`, `revoke`/`unrevoke`, `freeze`/`thaw`,
//!   `prune` and `audit` (`verify` reads the trail, `repair` records the
//!   policy as it is), which all write through `crate::store::edit` and
//!   share `editing::run_edit` and its one syslog line;
//! - host integration: `krl` (the revocations OpenSSH can enforce, as a
//!   KRL for `RevokedKeys`) and `reap` (ends live sessions the policy no
//!   longer lets in);
//! - the people's side of access requests on sshjit-server: `request`
//!   (`request`, `requests`, `approve`, `deny`, `done`, `review`), and
//!   `session` (`login`, `logout`, `whoami`);
//! - what they share: `context` (config, policy file, clock, who acts),
//!   `failure` (the one error type), `output` (what a command prints),
//!   `keyfile` (`--key FILE`).
//!
//! Below them, `crate::store` owns every write of the policy and the
//! trail, the lock, and the trail's format, chain and history; it never
//! prints and never imports this module. The command line (`cli`, in the
//! binary) prints each command's `Output` and maps each `Failure` to its
//! exit status.

pub mod audit;
pub mod change;
pub mod check;
pub mod context;
pub mod editing;
pub mod explain;
pub mod failure;
pub mod freeze;
pub mod grant;
pub mod index;
pub mod init;
pub mod keyfile;
pub mod krl;
pub mod list;
pub mod logins;
pub mod output;
pub mod prune;
pub mod reap;
pub mod remote;
pub mod report;
pub mod request;
pub mod revoke;
pub mod session;
pub mod sign;
pub mod sync;

pub use context::{Context, now};
pub use editing::{AdminLog, run_edit};
pub use failure::{Failure, FailureKind};
pub use output::{Output, Remark};
