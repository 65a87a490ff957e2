//! `roles.toml`: who may ask for what, for how long, and who approves.
//! Read once at start; a file that does not parse, names an unknown key or
//! holds a bad value stops the server with where the error is. A missing
//! file at the default path means no roles (every request is refused).
//!
//! ```toml
//! [role.user]
//! requesters = ["group:dev"]        # group:NAME or user:NAME
//! accounts = ["ubuntu", "deploy"]   # local accounts (sshd's %u)
//! hosts = ["web-*"]                 # host globs (absent: every host); a request may narrow them
//! max = "4h"                        # longest window; it starts at approval
//! approvals = 1                     # distinct approvers, never the requester; 0 = automatic
//! approvers = ["group:sre"]
//! reason_pattern = "^(INC|CHG)-[0-9]+"
//! issue = "certificate"             # or "grant" (the default)
//! totp = true                       # the session must have passed TOTP (default)
//! break_glass = false               # granted at once, valid while frozen, alerts, needs a review
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use sshjit::fs::secure::{self as file, FileError};
use sshjit::store::request::{Issue, RoleName};
use sshjit_policy::time::{format_duration, parse_duration};
use sshjit_policy::{HostPattern, Username};

const MAX_FILE: usize = 256 * 1024;
/// Most roles, and most entries in one of a role's lists.
const MAX_ROLES: usize = 1000;
const MAX_LIST: usize = 256;
/// Most approvals a role may need.
pub const MAX_APPROVALS: u32 = 10;
/// The longest window a role may give.
const MAX_WINDOW: Duration = Duration::from_secs(366 * 24 * 3600);
/// Longest reason_pattern, and the most its compiled form may take.
const MAX_PATTERN: usize = 1024;
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// Who a rule names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Member {
    User(Username<'static>),
    Group(Username<'static>),
}

impl Member {
    pub fn parse(s: &str) -> Result<Member, String> {
        let (kind, name) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected group:NAME or user:NAME"))?;
        let name = Username::new(name.to_owned())
            .map_err(|e| e.to_string())?
            .into_owned();
        match kind {
            "user" => Ok(Member::User(name)),
            "group" => Ok(Member::Group(name)),
            _ => Err(format!("{s:?}: expected group:NAME or user:NAME")),
        }
    }

    /// Whether the person `name` in `groups` is this member.
    pub fn includes(&self, name: &str, groups: &[String]) -> bool {
        match self {
            Member::User(u) => u.as_str() == name,
            Member::Group(g) => groups.iter().any(|x| x == g.as_str()),
        }
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Member::User(u) => write!(f, "user:{u}"),
            Member::Group(g) => write!(f, "group:{g}"),
        }
    }
}

/// Whether anyone in `members` is the person.
pub fn any_includes(members: &[Member], name: &str, groups: &[String]) -> bool {
    members.iter().any(|m| m.includes(name, groups))
}

/// One role, checked.
#[derive(Clone, Debug)]
pub struct Role {
    pub name: RoleName<'static>,
    pub requesters: Vec<Member>,
    pub accounts: Vec<Username<'static>>,
    /// Empty: every host.
    pub hosts: Vec<HostPattern<'static>>,
    pub max: Duration,
    pub approvals: u32,
    pub approvers: Vec<Member>,
    pub reason_pattern: Option<regex::Regex>,
    pub issue: Issue,
    pub totp: bool,
    pub break_glass: bool,
}

/// Every role.
#[derive(Clone, Debug, Default)]
pub struct Roles {
    pub roles: BTreeMap<String, Role>,
    /// Where they were read from (for messages).
    pub origin: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    role: BTreeMap<String, RawRole>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    requesters: Vec<String>,
    accounts: Vec<String>,
    #[serde(default)]
    hosts: Vec<String>,
    max: String,
    approvals: Option<u32>,
    #[serde(default)]
    approvers: Vec<String>,
    reason_pattern: Option<String>,
    issue: Option<String>,
    totp: Option<bool>,
    #[serde(default)]
    break_glass: bool,
}

/// Why the roles file was refused: where, and what.
#[derive(Debug)]
pub struct RolesError(pub String);

impl fmt::Display for RolesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RolesError {}

/// Reads the roles file: `explicit` (set in server.toml) must exist; the
/// default path may be absent.
pub fn load(path: &Path, explicit: bool) -> Result<Roles, RolesError> {
    match file::read_secure(path, MAX_FILE) {
        Ok(bytes) => parse(path, &bytes),
        Err(FileError::NotFound(_)) if !explicit && !path.is_symlink() => Ok(Roles {
            roles: BTreeMap::new(),
            origin: path.display().to_string(),
        }),
        Err(e) => Err(RolesError(format!("roles: {e}"))),
    }
}

/// Parses roles text; `path` is for messages.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Roles, RolesError> {
    let at = |m: String| RolesError(format!("{}: {m}", path.display()));
    let text = std::str::from_utf8(bytes).map_err(|_| at("not UTF-8".into()))?;
    let raw: RawFile =
        toml::from_str(text).map_err(|e| at(crate::config::toml_message(text, &e)))?;
    if raw.role.len() > MAX_ROLES {
        return Err(at(format!("more than {MAX_ROLES} roles")));
    }
    let mut roles = BTreeMap::new();
    for (name, r) in raw.role {
        let role = check(&name, r).map_err(|m| at(format!("role.{name}: {m}")))?;
        roles.insert(name, role);
    }
    Ok(Roles {
        roles,
        origin: path.display().to_string(),
    })
}

fn list<T>(
    key: &str,
    items: &[String],
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    if items.len() > MAX_LIST {
        return Err(format!("{key}: more than {MAX_LIST} entries"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, s)| parse(s).map_err(|m| format!("{key}[{i}]: {m}")))
        .collect()
}

fn check(name: &str, r: RawRole) -> Result<Role, String> {
    let name = RoleName::new(name.to_owned())
        .map_err(|e| e.to_string())?
        .into_owned();
    let requesters = list("requesters", &r.requesters, Member::parse)?;
    if requesters.is_empty() {
        return Err("requesters: name at least one group:NAME or user:NAME".into());
    }
    let accounts = list("accounts", &r.accounts, |s| {
        Username::new(s.to_owned())
            .map(Username::into_owned)
            .map_err(|e| e.to_string())
    })?;
    if accounts.is_empty() {
        return Err("accounts: name at least one local account".into());
    }
    let hosts = list("hosts", &r.hosts, |s| {
        HostPattern::new(s.to_owned())
            .map(HostPattern::into_owned)
            .map_err(|e| e.to_string())
    })?;
    let max = parse_duration(&r.max).map_err(|e| format!("max: {:?}: {e}", r.max))?;
    if max.is_zero() || max > MAX_WINDOW {
        return Err(format!(
            "max: must be between 1s and {}",
            format_duration(MAX_WINDOW)
        ));
    }
    let approvers = list("approvers", &r.approvers, Member::parse)?;
    let approvals = r.approvals.unwrap_or(if r.break_glass { 0 } else { 1 });
    if approvals > MAX_APPROVALS {
        return Err(format!("approvals: at most {MAX_APPROVALS}"));
    }
    if approvals > 0 && approvers.is_empty() && !r.break_glass {
        return Err(format!(
            "approvals = {approvals} but no approvers: name them (group:NAME or user:NAME), or set approvals = 0"
        ));
    }
    let reason_pattern = match r.reason_pattern {
        None => None,
        Some(p) if p.len() > MAX_PATTERN => {
            return Err(format!("reason_pattern: longer than {MAX_PATTERN} bytes"));
        }
        Some(p) => Some(
            regex::RegexBuilder::new(&p)
                .size_limit(PATTERN_SIZE_LIMIT)
                .build()
                .map_err(|e| format!("reason_pattern: {e}"))?,
        ),
    };
    let issue = match r.issue.as_deref() {
        None | Some("grant") => Issue::Grant,
        Some("certificate") => Issue::Certificate,
        Some(other) => {
            return Err(format!(
                "issue: {other:?}: expected \"grant\" or \"certificate\""
            ));
        }
    };
    Ok(Role {
        name,
        requesters,
        accounts,
        hosts,
        max,
        approvals,
        approvers,
        reason_pattern,
        issue,
        totp: r.totp.unwrap_or(true),
        break_glass: r.break_glass,
    })
}

impl Roles {
    pub fn get(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// Whether a role issues certificates (the server then needs a user CA).
    pub fn need_ca(&self) -> Option<&Role> {
        self.roles.values().find(|r| r.issue == Issue::Certificate)
    }
}

impl Role {
    /// What the role allows, for refusals.
    pub fn allows(&self) -> String {
        let accounts: Vec<&str> = self.accounts.iter().map(|a| a.as_str()).collect();
        let hosts: Vec<&str> = self.hosts.iter().map(|h| h.as_str()).collect();
        format!(
            "role {} allows accounts {}, hosts {}, for at most {}",
            self.name,
            accounts.join(", "),
            if hosts.is_empty() {
                "(any)".into()
            } else {
                hosts.join(", ")
            },
            format_duration(self.max)
        )
    }

    /// Whether every host the request's glob matches is one the role's
    /// globs match. Conservative: a role's `?` never covers a request's
    /// `*`, and letters compare case-insensitively as hosts do.
    pub fn covers_host(&self, asked: &HostPattern<'_>) -> bool {
        self.hosts.is_empty()
            || self
                .hosts
                .iter()
                .any(|h| glob_contains(h.as_str().as_bytes(), asked.as_str().as_bytes()))
    }
}

/// Whether glob `outer` matches every name glob `inner` matches.
pub fn glob_contains(outer: &[u8], inner: &[u8]) -> bool {
    // can[i][j]: outer[i..] covers inner[j..].
    let (n, m) = (outer.len(), inner.len());
    let mut can = vec![vec![false; m + 1]; n + 1];
    can[n][m] = true;
    for i in (0..n).rev() {
        for j in (0..=m).rev() {
            can[i][j] = match outer[i] {
                b'*' => can[i + 1][j] || (j < m && can[i][j + 1]),
                b'?' => j < m && inner[j] != b'*' && can[i + 1][j + 1],
                c => j < m && inner[j].eq_ignore_ascii_case(&c) && can[i + 1][j + 1],
            };
        }
    }
    can[0][0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Roles, RolesError> {
        parse(Path::new("roles.toml"), text.as_bytes())
    }

    #[test]
    fn the_design_example_reads() {
        let r = p(r#"
[role.user]
requesters = ["group:dev"]
accounts = ["ubuntu", "deploy"]
hosts = ["web-*"]
max = "4h"
approvals = 1
approvers = ["group:sre"]
reason_pattern = "^(INC|CHG)-[0-9]+"
issue = "certificate"
totp = true

[role.emergency]
requesters = ["group:sre"]
accounts = ["root"]
max = "24h"
break_glass = true

[role.automation]
requesters = ["user:jenkins", "user:gitlab-runner"]
accounts = ["jenkins", "gitlab-runner"]
max = "1h"
approvals = 0
totp = false
issue = "certificate"
"#)
        .unwrap();
        let user = r.get("user").unwrap();
        assert_eq!(user.max, Duration::from_secs(4 * 3600));
        assert_eq!(user.issue, Issue::Certificate);
        assert!(user.reason_pattern.as_ref().unwrap().is_match("INC-12 x"));
        let e = r.get("emergency").unwrap();
        assert!(e.break_glass && e.approvals == 0 && e.totp && e.issue == Issue::Grant);
        assert!(!r.get("automation").unwrap().totp);
    }

    #[test]
    fn errors_say_where() {
        let e = p("[role.x]\nrequesters = [\"group:a\"]\naccounts = [\"u\"]\nmax = \"1h\"\napprovals = 0\nextra = 1\n")
            .unwrap_err();
        assert!(e.0.contains("line 6") && e.0.contains("extra"), "{e}");
        let e = p("[role.x]\nrequesters = [\"team:a\"]\naccounts = [\"u\"]\nmax = \"1h\"\napprovals = 0\n")
            .unwrap_err();
        assert!(e.0.contains("role.x: requesters[0]"), "{e}");
        let e = p("[role.x]\nrequesters = [\"group:a\"]\naccounts = [\"u\"]\nmax = \"1h\"\n")
            .unwrap_err();
        assert!(e.0.contains("no approvers"), "{e}");
        let e = p("[role.x]\nrequesters = [\"group:a\"]\naccounts = [\"u\"]\nmax = \"1h\"\napprovals = 0\nreason_pattern = \"(\"\n")
            .unwrap_err();
        assert!(e.0.contains("reason_pattern"), "{e}");
        let e = p("[role.x]\nrequesters = [\"group:a\"]\naccounts = [\"u\"]\nmax = \"1h\"\napprovals = 0\nissue = \"cert\"\n")
            .unwrap_err();
        assert!(e.0.contains("issue"), "{e}");
    }

    #[test]
    fn a_requested_glob_must_lie_within_the_roles() {
        let c = |o: &str, i: &str| glob_contains(o.as_bytes(), i.as_bytes());
        assert!(c("web-*", "web-1"));
        assert!(c("web-*", "WEB-1"));
        assert!(c("web-*", "web-1*"));
        assert!(c("web-*", "web-?"));
        assert!(c("*", "anything*"));
        assert!(!c("web-*", "db-1"));
        assert!(!c("web-*", "*"));
        assert!(!c("web-?", "web-*"));
        assert!(!c("a?c", "a*c"));
        assert!(c("a?c", "a?c"));
        assert!(!c("web-1", "web-?"));
    }
}
