//! The server's store, behind one interface with two implementations:
//! SQLite (one file, WAL: the embedded default) and PostgreSQL (several
//! servers sharing one database).
//!
//! What is kept: the trail (every change, hash-chained, in the format of
//! the policy file's trail), from which the policy is replayed; checkpoints
//! of the policy document so a start need not replay from the beginning;
//! and the tables a record's change touches besides the policy (hosts and
//! their hashed tokens, people, their keys and sessions). A record and the
//! table change that goes with it are written in one transaction, so no
//! change happens without its record. Records are numbered without gaps:
//! two servers appending the same number conflict, and the later one
//! catches up and tries again, which keeps the serial growing across
//! servers.
//!
//! Serving hosts reads only: a server can follow a read-only replica of the
//! database, as long as its schema is current.

mod postgres;
mod schema;
mod sqlite;

use std::fmt;

pub use postgres::Postgres;
pub use sqlite::Sqlite;

use crate::config::StoreSpec;

/// One record as stored: its number, the policy's serial after it, its
/// hash and its line (the JSON the trail format defines, with `hash`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    pub seq: u64,
    pub serial: Option<u64>,
    pub hash: String,
    pub line: Vec<u8>,
}

/// The policy document as of record `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub document: Vec<u8>,
}

/// An enrolled host: its name and the SHA-256 of its bearer token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRow {
    pub name: String,
    pub token_sha256: String,
}

/// A person who logs in to the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonRow {
    pub name: String,
    pub groups: Vec<String>,
    /// Argon2id, PHC string.
    pub password_hash: Option<String>,
    /// The TOTP seed, sealed with the server's secrets key.
    pub totp_sealed: Option<String>,
    /// The last TOTP time step accepted: a code is accepted once.
    pub totp_last_step: i64,
    /// Failed logins in a row.
    pub failures: i64,
    /// Unix time until which logins are refused (0: not locked).
    pub locked_until: i64,
}

/// A login session (its token is kept as a SHA-256).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub person: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// Whether the login passed a TOTP code.
    pub totp: bool,
}

/// An access request's state, as the `requests` table keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRow {
    pub id: String,
    pub requester: String,
    pub role: String,
    /// `pending`, `approved`, `denied`, `expired` or `done`.
    pub state: String,
    pub created_at: i64,
    pub pending_until: i64,
    pub cert_serial: Option<i64>,
    /// A break-glass request without its review note yet.
    pub review_due: bool,
    /// The record that left it so.
    pub updated_seq: i64,
    /// The whole request (JSON, `crate::requests::Stored`).
    pub body: String,
}

/// Which requests to read, newest first.
#[derive(Clone, Debug)]
pub enum RequestQuery {
    /// The newest `limit`, of any state.
    Recent { limit: u32 },
    /// Pending ones.
    Pending,
    /// Pending ones whose time ran out at `now`.
    Lapsed { now: i64 },
    /// Break-glass requests awaiting their review note.
    ReviewDue,
}

/// What a record changes besides the policy, in the same transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    HostAdd {
        name: String,
        token_sha256: String,
    },
    HostRemove {
        name: String,
    },
    PersonAdd(PersonRow),
    /// Removes the person's keys and sessions too.
    PersonRemove {
        name: String,
    },
    PersonKeyAdd {
        person: String,
        fingerprint: String,
        key: String,
    },
    /// A new request (its id must be free).
    RequestAdd(RequestRow),
    /// A request moved on (its row replaced).
    RequestPut(RequestRow),
}

/// One record to append, with its checkpoint (now and then) and effect.
#[derive(Clone, Debug)]
pub struct Append {
    pub record: StoredRecord,
    pub checkpoint: Option<Checkpoint>,
    pub effect: Effect,
}

/// What a login attempt changes.
#[derive(Clone, Debug)]
pub enum LoginUpdate {
    /// A wrong password or code: one more failure; locked until
    /// `lock_until` when given.
    Failed { lock_until: Option<i64> },
    /// A good key login: failures reset, the challenge's issue time
    /// recorded (a challenge is answered once), and the session.
    SucceededByKey {
        challenge_ms: i64,
        token_sha256: String,
        session: SessionRow,
    },
    /// A good login: failures reset, the TOTP step (when one was used)
    /// recorded so that the code is not accepted again, and the session.
    Succeeded {
        totp_step: Option<i64>,
        token_sha256: String,
        session: SessionRow,
    },
}

/// Why the store did not do what was asked.
#[derive(Debug)]
pub enum StoreError {
    /// The database cannot be reached or failed: answer 503.
    Unavailable(String),
    /// Another server appended a record with this number first.
    Conflict,
    /// A host or person of that name exists already.
    Exists(String),
    /// A TOTP step at or before the last accepted one (a replayed code),
    /// or a person that is gone.
    Stale,
    /// The database holds what this server cannot read (a newer schema,
    /// damaged rows).
    Corrupt(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(m) => write!(f, "store unavailable: {m}"),
            StoreError::Conflict => f.write_str("another server appended first"),
            StoreError::Exists(what) => write!(f, "{what} exists already"),
            StoreError::Stale => f.write_str("refused: already used or gone"),
            StoreError::Corrupt(m) => write!(f, "store holds what this server cannot read: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// The store, SQLite or PostgreSQL.
#[derive(Clone)]
pub enum Store {
    Sqlite(Sqlite),
    Postgres(Postgres),
}

/// Dispatches one call to the implementation in use.
macro_rules! each {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Sqlite($s) => $call,
            Store::Postgres($s) => $call,
        }
    };
}

impl Store {
    /// Opens the store and brings its schema up to date (a read-only
    /// database whose schema is current is fine).
    pub async fn open(spec: &StoreSpec) -> Result<Store, StoreError> {
        match spec {
            StoreSpec::Sqlite(path) => Ok(Store::Sqlite(Sqlite::open(path).await?)),
            StoreSpec::Postgres(url) => Ok(Store::Postgres(Postgres::open(url).await?)),
        }
    }

    /// Records after `after`, in order, at most `limit`.
    pub async fn records_after(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        each!(self, s => s.records_after(after, limit).await)
    }

    /// The number of the last record (0: none).
    pub async fn last_seq(&self) -> Result<u64, StoreError> {
        each!(self, s => s.last_seq().await)
    }

    /// The latest checkpoint at or before `seq`.
    pub async fn checkpoint(&self, at_most: u64) -> Result<Option<Checkpoint>, StoreError> {
        each!(self, s => s.checkpoint(at_most).await)
    }

    /// Appends one record with its effect, in one transaction.
    pub async fn append(&self, append: Append) -> Result<(), StoreError> {
        each!(self, s => s.append(append).await)
    }

    pub async fn hosts(&self) -> Result<Vec<HostRow>, StoreError> {
        each!(self, s => s.hosts().await)
    }

    pub async fn person(&self, name: &str) -> Result<Option<PersonRow>, StoreError> {
        each!(self, s => s.person(name).await)
    }

    pub async fn people(&self) -> Result<Vec<PersonRow>, StoreError> {
        each!(self, s => s.people().await)
    }

    /// The keys a person may log in with: (fingerprint, public key line).
    pub async fn person_keys(&self, name: &str) -> Result<Vec<(String, String)>, StoreError> {
        each!(self, s => s.person_keys(name).await)
    }

    /// Records a login attempt's outcome. `Stale` when the TOTP step was
    /// already used (another login took it first).
    pub async fn login(&self, person: &str, update: LoginUpdate) -> Result<(), StoreError> {
        each!(self, s => s.login(person, update).await)
    }

    pub async fn request(&self, id: &str) -> Result<Option<RequestRow>, StoreError> {
        each!(self, s => s.request(id).await)
    }

    pub async fn requests(&self, query: RequestQuery) -> Result<Vec<RequestRow>, StoreError> {
        each!(self, s => s.requests(query).await)
    }

    pub async fn session(&self, token_sha256: &str) -> Result<Option<SessionRow>, StoreError> {
        each!(self, s => s.session(token_sha256).await)
    }

    pub async fn end_session(&self, token_sha256: &str) -> Result<(), StoreError> {
        each!(self, s => s.end_session(token_sha256).await)
    }

    /// Removes sessions that ended before `now`.
    pub async fn expire_sessions(&self, now: i64) -> Result<u64, StoreError> {
        each!(self, s => s.expire_sessions(now).await)
    }

    /// Waits until another writer may have appended (PostgreSQL's
    /// notifications), or for `timeout`.
    pub async fn changed(&self, timeout: std::time::Duration) {
        match self {
            Store::Sqlite(_) => tokio::time::sleep(timeout).await,
            Store::Postgres(p) => p.changed(timeout).await,
        }
    }
}

/// The SQL of a request query: its WHERE clause, and whether it takes `$1`.
fn request_query_sql(query: &RequestQuery) -> (String, Option<i64>) {
    const COLUMNS: &str = REQUEST_COLUMNS;
    match query {
        RequestQuery::Recent { limit } => (
            format!("{COLUMNS} ORDER BY created_at DESC, id DESC LIMIT $1"),
            Some(i64::from(*limit)),
        ),
        RequestQuery::Pending => (
            format!("{COLUMNS} WHERE state = 'pending' ORDER BY created_at DESC, id DESC"),
            None,
        ),
        RequestQuery::Lapsed { now } => (
            format!(
                "{COLUMNS} WHERE state = 'pending' AND pending_until <= $1 ORDER BY pending_until"
            ),
            Some(*now),
        ),
        RequestQuery::ReviewDue => (
            format!("{COLUMNS} WHERE review_due ORDER BY created_at DESC, id DESC"),
            None,
        ),
    }
}

const REQUEST_COLUMNS: &str = "SELECT id, requester, role, state, created_at, pending_until, cert_serial, review_due, updated_seq, body FROM requests";

/// Inserts or replaces a request's row (the SQL both databases read).
const REQUEST_ADD: &str = "INSERT INTO requests
    (id, requester, role, state, created_at, pending_until, cert_serial, review_due, updated_seq, body)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

const REQUEST_PUT: &str = "INSERT INTO requests
    (id, requester, role, state, created_at, pending_until, cert_serial, review_due, updated_seq, body)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    ON CONFLICT (id) DO UPDATE SET state = excluded.state, cert_serial = excluded.cert_serial,
    review_due = excluded.review_due, updated_seq = excluded.updated_seq, body = excluded.body";

/// Splits stored groups (a JSON list) back into names.
fn groups_from_json(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("people.groups: {e}")))
}

fn groups_to_json(groups: &[String]) -> String {
    serde_json::to_string(groups).unwrap_or_else(|_| "[]".into())
}

/// A `u64` kept in a signed 64-bit column.
fn to_db(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{n} does not fit the store")))
}

fn from_db(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative number {n}")))
}
