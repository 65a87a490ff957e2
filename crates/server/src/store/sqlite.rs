//! The SQLite store: one file in WAL mode, `synchronous = FULL` (an
//! acknowledged change survives a crash of the machine, not only of the
//! process), foreign keys on. rusqlite is synchronous: every call runs on
//! tokio's blocking pool, one at a time on the one connection.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension, Transaction, params};

use super::schema::{self, MIGRATIONS, VERSIONS_TABLE};
use super::{
    Append, Checkpoint, Effect, HostRow, LoginUpdate, PersonRow, REQUEST_ADD, REQUEST_COLUMNS,
    REQUEST_PUT, RequestQuery, RequestRow, SessionRow, StoreError, StoredRecord, from_db,
    groups_from_json, groups_to_json, request_query_sql, to_db,
};

#[derive(Clone)]
pub struct Sqlite {
    conn: Arc<Mutex<Connection>>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Maps a write error: a taken key is the caller's to interpret.
fn write_error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => StoreError::Conflict,
        _ => unavailable(e),
    }
}

/// The statements are written once for both databases with `$n`; SQLite
/// numbers `?n` as PostgreSQL numbers `$n`.
fn sql(text: &str) -> String {
    text.replace('$', "?")
}

impl Sqlite {
    pub async fn open(path: &Path) -> Result<Sqlite, StoreError> {
        let p = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || open_blocking(&p))
            .await
            .map_err(unavailable)??;
        Ok(Sqlite {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection on the blocking pool.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut c = conn
                .lock()
                .map_err(|_| unavailable("the connection's lock is poisoned"))?;
            f(&mut c)
        })
        .await
        .map_err(unavailable)?
    }

    pub async fn records_after(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let after = to_db(after)?;
        self.with(move |c| {
            let mut st = c
                .prepare_cached(&sql(
                    "SELECT seq, serial, hash, line FROM trail WHERE seq > $1 ORDER BY seq LIMIT $2",
                ))
                .map_err(unavailable)?;
            let rows = st
                .query_map(params![after, i64::from(limit)], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                })
                .map_err(unavailable)?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, serial, hash, line) = row.map_err(unavailable)?;
                out.push(StoredRecord {
                    seq: from_db(seq)?,
                    serial: serial.map(from_db).transpose()?,
                    hash,
                    line: line.into_bytes(),
                });
            }
            Ok(out)
        })
        .await
    }

    pub async fn last_seq(&self) -> Result<u64, StoreError> {
        self.with(|c| {
            let n: Option<i64> = c
                .query_row("SELECT MAX(seq) FROM trail", [], |r| r.get(0))
                .map_err(unavailable)?;
            from_db(n.unwrap_or(0))
        })
        .await
    }

    pub async fn checkpoint(&self, at_most: u64) -> Result<Option<Checkpoint>, StoreError> {
        let at_most = to_db(at_most)?;
        self.with(move |c| {
            let row: Option<(i64, String)> = c
                .query_row(
                    &sql("SELECT seq, document FROM checkpoints WHERE seq <= $1 ORDER BY seq DESC LIMIT 1"),
                    params![at_most],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(unavailable)?;
            row.map(|(seq, document)| {
                Ok(Checkpoint {
                    seq: from_db(seq)?,
                    document: document.into_bytes(),
                })
            })
            .transpose()
        })
        .await
    }

    pub async fn append(&self, append: Append) -> Result<(), StoreError> {
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            append_in(&tx, &append)?;
            tx.commit().map_err(write_error)
        })
        .await
    }

    pub async fn hosts(&self) -> Result<Vec<HostRow>, StoreError> {
        self.with(|c| {
            let mut st = c
                .prepare_cached("SELECT name, token_sha256 FROM hosts ORDER BY name")
                .map_err(unavailable)?;
            let rows = st
                .query_map([], |r| {
                    Ok(HostRow {
                        name: r.get(0)?,
                        token_sha256: r.get(1)?,
                    })
                })
                .map_err(unavailable)?;
            rows.collect::<Result<_, _>>().map_err(unavailable)
        })
        .await
    }

    pub async fn person(&self, name: &str) -> Result<Option<PersonRow>, StoreError> {
        let name = name.to_owned();
        self.with(move |c| {
            let row = c
                .query_row(
                    &sql(&format!("{PERSON_COLUMNS} WHERE name = $1")),
                    params![name],
                    person_row,
                )
                .optional()
                .map_err(unavailable)?;
            row.map(finish_person).transpose()
        })
        .await
    }

    pub async fn people(&self) -> Result<Vec<PersonRow>, StoreError> {
        self.with(|c| {
            let mut st = c
                .prepare_cached(&format!("{PERSON_COLUMNS} ORDER BY name"))
                .map_err(unavailable)?;
            let rows = st.query_map([], person_row).map_err(unavailable)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(finish_person(row.map_err(unavailable)?)?);
            }
            Ok(out)
        })
        .await
    }

    pub async fn person_keys(&self, name: &str) -> Result<Vec<(String, String)>, StoreError> {
        let name = name.to_owned();
        self.with(move |c| {
            let mut st = c
                .prepare_cached(&sql(
                    "SELECT fingerprint, key FROM person_keys WHERE person = $1 ORDER BY fingerprint",
                ))
                .map_err(unavailable)?;
            let rows = st
                .query_map(params![name], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(unavailable)?;
            rows.collect::<Result<_, _>>().map_err(unavailable)
        })
        .await
    }

    pub async fn login(&self, person: &str, update: LoginUpdate) -> Result<(), StoreError> {
        let person = person.to_owned();
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            match update {
                LoginUpdate::Failed { lock_until } => {
                    tx.execute(
                        &sql(
                            "UPDATE people SET failures = failures + 1,
                             locked_until = MAX(locked_until, $2) WHERE name = $1",
                        ),
                        params![person, lock_until.unwrap_or(0)],
                    )
                    .map_err(write_error)?;
                }
                LoginUpdate::SucceededByKey {
                    challenge_ms,
                    token_sha256,
                    session,
                } => {
                    let n = tx
                        .execute(
                            &sql(
                                "UPDATE people SET failures = 0, key_last_challenge = $2
                                 WHERE name = $1 AND key_last_challenge < $2",
                            ),
                            params![person, challenge_ms],
                        )
                        .map_err(write_error)?;
                    if n == 0 {
                        return Err(StoreError::Stale);
                    }
                    insert_session(&tx, &token_sha256, &session)?;
                }
                LoginUpdate::Succeeded {
                    totp_step,
                    token_sha256,
                    session,
                } => {
                    let step = totp_step.unwrap_or(i64::MIN);
                    let n = tx
                        .execute(
                            &sql(
                                "UPDATE people SET failures = 0,
                                 totp_last_step = MAX(totp_last_step, $2)
                                 WHERE name = $1 AND ($3 = 0 OR totp_last_step < $2)",
                            ),
                            params![person, step, i64::from(totp_step.is_some())],
                        )
                        .map_err(write_error)?;
                    if n == 0 {
                        return Err(StoreError::Stale);
                    }
                    tx.execute(
                        &sql(
                            "INSERT INTO sessions (token_sha256, person, created_at, expires_at, totp)
                             VALUES ($1, $2, $3, $4, $5)",
                        ),
                        params![
                            token_sha256,
                            session.person,
                            session.created_at,
                            session.expires_at,
                            session.totp
                        ],
                    )
                    .map_err(write_error)?;
                }
            }
            tx.commit().map_err(write_error)
        })
        .await
    }

    pub async fn request(&self, id: &str) -> Result<Option<RequestRow>, StoreError> {
        let id = id.to_owned();
        self.with(move |c| {
            c.query_row(
                &sql(&format!("{REQUEST_COLUMNS} WHERE id = $1")),
                params![id],
                request_row,
            )
            .optional()
            .map_err(unavailable)
        })
        .await
    }

    pub async fn requests(&self, query: RequestQuery) -> Result<Vec<RequestRow>, StoreError> {
        self.with(move |c| {
            let (text, arg) = request_query_sql(&query);
            let mut st = c.prepare_cached(&sql(&text)).map_err(unavailable)?;
            let rows = match arg {
                Some(a) => st.query_map(params![a], request_row),
                None => st.query_map([], request_row),
            }
            .map_err(unavailable)?;
            rows.collect::<Result<_, _>>().map_err(unavailable)
        })
        .await
    }

    pub async fn session(&self, token_sha256: &str) -> Result<Option<SessionRow>, StoreError> {
        let token = token_sha256.to_owned();
        self.with(move |c| {
            c.query_row(
                &sql("SELECT person, created_at, expires_at, totp FROM sessions WHERE token_sha256 = $1"),
                params![token],
                |r| {
                    Ok(SessionRow {
                        person: r.get(0)?,
                        created_at: r.get(1)?,
                        expires_at: r.get(2)?,
                        totp: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(unavailable)
        })
        .await
    }

    pub async fn end_session(&self, token_sha256: &str) -> Result<(), StoreError> {
        let token = token_sha256.to_owned();
        self.with(move |c| {
            c.execute(
                &sql("DELETE FROM sessions WHERE token_sha256 = $1"),
                params![token],
            )
            .map(drop)
            .map_err(write_error)
        })
        .await
    }

    pub async fn expire_sessions(&self, now: i64) -> Result<u64, StoreError> {
        self.with(move |c| {
            c.execute(
                &sql("DELETE FROM sessions WHERE expires_at <= $1"),
                params![now],
            )
            .map(|n| n as u64)
            .map_err(write_error)
        })
        .await
    }
}

fn insert_session(
    tx: &Transaction<'_>,
    token_sha256: &str,
    session: &SessionRow,
) -> Result<(), StoreError> {
    tx.execute(
        &sql(
            "INSERT INTO sessions (token_sha256, person, created_at, expires_at, totp)
             VALUES ($1, $2, $3, $4, $5)",
        ),
        params![
            token_sha256,
            session.person,
            session.created_at,
            session.expires_at,
            session.totp
        ],
    )
    .map(drop)
    .map_err(write_error)
}

fn request_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RequestRow> {
    Ok(RequestRow {
        id: r.get(0)?,
        requester: r.get(1)?,
        role: r.get(2)?,
        state: r.get(3)?,
        created_at: r.get(4)?,
        pending_until: r.get(5)?,
        cert_serial: r.get(6)?,
        review_due: r.get(7)?,
        updated_seq: r.get(8)?,
        body: r.get(9)?,
    })
}

const PERSON_COLUMNS: &str = "SELECT name, groups_json, password_hash, totp_sealed, totp_last_step, failures, locked_until FROM people";

type RawPerson = (
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    i64,
    i64,
);

fn person_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawPerson> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn finish_person(raw: RawPerson) -> Result<PersonRow, StoreError> {
    let (name, groups, password_hash, totp_sealed, totp_last_step, failures, locked_until) = raw;
    Ok(PersonRow {
        name,
        groups: groups_from_json(&groups)?,
        password_hash,
        totp_sealed,
        totp_last_step,
        failures,
        locked_until,
    })
}

fn append_in(tx: &Transaction<'_>, a: &Append) -> Result<(), StoreError> {
    let line = std::str::from_utf8(&a.record.line)
        .map_err(|_| StoreError::Corrupt("a record that is not UTF-8".into()))?;
    tx.execute(
        &sql("INSERT INTO trail (seq, serial, hash, line) VALUES ($1, $2, $3, $4)"),
        params![
            to_db(a.record.seq)?,
            a.record.serial.map(to_db).transpose()?,
            a.record.hash,
            line
        ],
    )
    .map_err(write_error)?;
    if let Some(cp) = &a.checkpoint {
        let doc = std::str::from_utf8(&cp.document)
            .map_err(|_| StoreError::Corrupt("a checkpoint that is not UTF-8".into()))?;
        tx.execute(
            &sql("INSERT INTO checkpoints (seq, document) VALUES ($1, $2)"),
            params![to_db(cp.seq)?, doc],
        )
        .map_err(write_error)?;
    }
    let exists = |what: String| {
        move |e: rusqlite::Error| match e.sqlite_error_code() {
            Some(ErrorCode::ConstraintViolation) => StoreError::Exists(what),
            _ => unavailable(e),
        }
    };
    match &a.effect {
        Effect::None => {}
        Effect::HostAdd { name, token_sha256 } => {
            tx.execute(
                &sql("INSERT INTO hosts (name, token_sha256, added_seq) VALUES ($1, $2, $3)"),
                params![name, token_sha256, to_db(a.record.seq)?],
            )
            .map_err(exists(format!("host {name}")))?;
        }
        Effect::HostRemove { name } => {
            tx.execute(&sql("DELETE FROM hosts WHERE name = $1"), params![name])
                .map_err(write_error)?;
        }
        Effect::PersonAdd(p) => {
            tx.execute(
                &sql(
                    "INSERT INTO people (name, groups_json, password_hash, totp_sealed)
                     VALUES ($1, $2, $3, $4)",
                ),
                params![
                    p.name,
                    groups_to_json(&p.groups),
                    p.password_hash,
                    p.totp_sealed
                ],
            )
            .map_err(exists(format!("person {}", p.name)))?;
        }
        Effect::PersonRemove { name } => {
            tx.execute(&sql("DELETE FROM people WHERE name = $1"), params![name])
                .map_err(write_error)?;
        }
        Effect::PersonKeyAdd {
            person,
            fingerprint,
            key,
        } => {
            tx.execute(
                &sql("INSERT INTO person_keys (person, fingerprint, key) VALUES ($1, $2, $3)"),
                params![person, fingerprint, key],
            )
            .map_err(exists(format!("key {fingerprint} of {person}")))?;
        }
        Effect::RequestAdd(row) | Effect::RequestPut(row) => {
            let statement = if matches!(a.effect, Effect::RequestAdd(_)) {
                REQUEST_ADD
            } else {
                REQUEST_PUT
            };
            tx.execute(
                &sql(statement),
                params![
                    row.id,
                    row.requester,
                    row.role,
                    row.state,
                    row.created_at,
                    row.pending_until,
                    row.cert_serial,
                    row.review_due,
                    row.updated_seq,
                    row.body
                ],
            )
            .map_err(exists(format!("request {}", row.id)))?;
        }
    }
    Ok(())
}

fn open_blocking(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| unavailable(format!("creating {}: {e}", dir.display())))?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let fresh = !path.exists();
    let mut c = Connection::open(path).map_err(unavailable)?;
    if fresh {
        // The database holds password hashes and sealed secrets.
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    c.busy_timeout(Duration::from_secs(10))
        .map_err(unavailable)?;
    c.pragma_update(None, "journal_mode", "WAL")
        .map_err(unavailable)?;
    c.pragma_update(None, "synchronous", "FULL")
        .map_err(unavailable)?;
    c.pragma_update(None, "foreign_keys", "ON")
        .map_err(unavailable)?;
    migrate(&mut c)?;
    Ok(c)
}

fn migrate(c: &mut Connection) -> Result<(), StoreError> {
    let tx = c
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(unavailable)?;
    tx.execute(VERSIONS_TABLE, []).map_err(unavailable)?;
    let current: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(unavailable)?;
    if current > schema::latest() {
        return Err(StoreError::Corrupt(format!(
            "schema version {current} is newer than this server's ({}): upgrade sshjit-server",
            schema::latest()
        )));
    }
    let now = sshjit_policy::time::Timestamp::now().unix_seconds();
    for (version, statements) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        for s in *statements {
            tx.execute(s, []).map_err(unavailable)?;
        }
        tx.execute(
            &sql("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)"),
            params![version, now],
        )
        .map_err(unavailable)?;
    }
    tx.commit().map_err(unavailable)
}
