//! The PostgreSQL store, for several servers sharing one database. Writes
//! go through one connection (reconnected when it breaks); a second
//! connection LISTENs for the `pg_notify` that every append sends in its
//! transaction, so the other servers pick a change up at once rather than
//! at their next poll.
//!
//! The connection string is libpq's URL form. TLS to the database is not
//! built in: keep the database on a Unix socket, loopback or a network you
//! trust for that traffic (or a TLS tunnel).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::poll_fn;
use tokio::sync::{Mutex, MutexGuard, Notify};
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client, NoTls, Row};

use super::schema::{self, MIGRATIONS, VERSIONS_TABLE};
use super::{
    Append, Checkpoint, Effect, HostRow, LoginUpdate, PersonRow, REQUEST_ADD, REQUEST_COLUMNS,
    REQUEST_PUT, RequestQuery, RequestRow, SessionRow, StoreError, StoredRecord, from_db,
    groups_from_json, groups_to_json, request_query_sql, to_db,
};

const CHANNEL: &str = "sshjit_trail";
/// How long to wait for a connection before calling the store unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one statement may take.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Postgres {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    client: Mutex<Option<Client>>,
    notified: Notify,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

async fn connect(url: &str) -> Result<Client, StoreError> {
    let connecting = tokio_postgres::connect(url, NoTls);
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| unavailable("no connection within 5 s"))?
        // The error may echo the connection string: say only what failed.
        .map_err(|e| unavailable(describe(&e)))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
        .batch_execute(&format!(
            "SET statement_timeout = {}",
            STATEMENT_TIMEOUT.as_millis()
        ))
        .await
        .map_err(|e| unavailable(describe(&e)))?;
    Ok(client)
}

/// A database error without anything from the connection string.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None if e.is_closed() => "connection closed".into(),
        None => {
            let text = e.to_string();
            // tokio-postgres's own texts name the failing step, not the URL.
            if text.contains("://") {
                "cannot connect".into()
            } else {
                text
            }
        }
    }
}

impl Postgres {
    pub async fn open(url: &str) -> Result<Postgres, StoreError> {
        let client = connect(url).await?;
        migrate(&client).await?;
        let inner = Arc::new(Inner {
            url: url.to_owned(),
            client: Mutex::new(Some(client)),
            notified: Notify::new(),
        });
        tokio::spawn(listen(Arc::downgrade(&inner)));
        Ok(Postgres { inner })
    }

    /// The connection, made again when the last one broke.
    async fn client(&self) -> Result<MutexGuard<'_, Option<Client>>, StoreError> {
        let mut guard = self.inner.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = None;
            *guard = Some(connect(&self.inner.url).await?);
        }
        Ok(guard)
    }

    /// Runs a query, dropping the connection when it broke.
    async fn query(
        &self,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().ok_or_else(|| unavailable("no connection"))?;
        let result = client.query(statement, params).await;
        if client.is_closed() {
            *guard = None;
        }
        result.map_err(|e| unavailable(describe(&e)))
    }

    pub async fn changed(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.inner.notified.notified()).await;
    }

    pub async fn records_after(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let rows = self
            .query(
                "SELECT seq, serial, hash, line FROM trail WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&to_db(after)?, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredRecord {
                    seq: from_db(r.get(0))?,
                    serial: r.get::<_, Option<i64>>(1).map(from_db).transpose()?,
                    hash: r.get(2),
                    line: r.get::<_, String>(3).into_bytes(),
                })
            })
            .collect()
    }

    pub async fn last_seq(&self) -> Result<u64, StoreError> {
        let rows = self.query("SELECT MAX(seq) FROM trail", &[]).await?;
        from_db(
            rows.first()
                .and_then(|r| r.get::<_, Option<i64>>(0))
                .unwrap_or(0),
        )
    }

    pub async fn checkpoint(&self, at_most: u64) -> Result<Option<Checkpoint>, StoreError> {
        let rows = self
            .query(
                "SELECT seq, document FROM checkpoints WHERE seq <= $1 ORDER BY seq DESC LIMIT 1",
                &[&to_db(at_most)?],
            )
            .await?;
        rows.first()
            .map(|r| {
                Ok(Checkpoint {
                    seq: from_db(r.get(0))?,
                    document: r.get::<_, String>(1).into_bytes(),
                })
            })
            .transpose()
    }

    pub async fn append(&self, a: Append) -> Result<(), StoreError> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().ok_or_else(|| unavailable("no connection"))?;
        let result = append_in(client, &a).await;
        if client.is_closed() {
            *guard = None;
        }
        result
    }

    pub async fn hosts(&self) -> Result<Vec<HostRow>, StoreError> {
        let rows = self
            .query("SELECT name, token_sha256 FROM hosts ORDER BY name", &[])
            .await?;
        Ok(rows
            .iter()
            .map(|r| HostRow {
                name: r.get(0),
                token_sha256: r.get(1),
            })
            .collect())
    }

    pub async fn person(&self, name: &str) -> Result<Option<PersonRow>, StoreError> {
        let rows = self
            .query(&format!("{PERSON_COLUMNS} WHERE name = $1"), &[&name])
            .await?;
        rows.first().map(person_row).transpose()
    }

    pub async fn people(&self) -> Result<Vec<PersonRow>, StoreError> {
        let rows = self
            .query(&format!("{PERSON_COLUMNS} ORDER BY name"), &[])
            .await?;
        rows.iter().map(person_row).collect()
    }

    pub async fn person_keys(&self, name: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self
            .query(
                "SELECT fingerprint, key FROM person_keys WHERE person = $1 ORDER BY fingerprint",
                &[&name],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub async fn login(&self, person: &str, update: LoginUpdate) -> Result<(), StoreError> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().ok_or_else(|| unavailable("no connection"))?;
        let result = login_in(client, person, update).await;
        if client.is_closed() {
            *guard = None;
        }
        result
    }

    pub async fn request(&self, id: &str) -> Result<Option<RequestRow>, StoreError> {
        let rows = self
            .query(&format!("{REQUEST_COLUMNS} WHERE id = $1"), &[&id])
            .await?;
        Ok(rows.first().map(request_row))
    }

    pub async fn requests(&self, query: RequestQuery) -> Result<Vec<RequestRow>, StoreError> {
        let (text, arg) = request_query_sql(&query);
        let rows = match arg {
            Some(a) => self.query(&text, &[&a]).await?,
            None => self.query(&text, &[]).await?,
        };
        Ok(rows.iter().map(request_row).collect())
    }

    pub async fn session(&self, token_sha256: &str) -> Result<Option<SessionRow>, StoreError> {
        let rows = self
            .query(
                "SELECT person, created_at, expires_at, totp FROM sessions WHERE token_sha256 = $1",
                &[&token_sha256],
            )
            .await?;
        Ok(rows.first().map(|r| SessionRow {
            person: r.get(0),
            created_at: r.get(1),
            expires_at: r.get(2),
            totp: r.get(3),
        }))
    }

    pub async fn end_session(&self, token_sha256: &str) -> Result<(), StoreError> {
        self.query(
            "DELETE FROM sessions WHERE token_sha256 = $1",
            &[&token_sha256],
        )
        .await
        .map(drop)
    }

    pub async fn expire_sessions(&self, now: i64) -> Result<u64, StoreError> {
        let rows = self
            .query(
                "WITH gone AS (DELETE FROM sessions WHERE expires_at <= $1 RETURNING 1) SELECT COUNT(*) FROM gone",
                &[&now],
            )
            .await?;
        Ok(rows
            .first()
            .map_or(0, |r| r.get::<_, i64>(0))
            .try_into()
            .unwrap_or(0))
    }
}

fn request_row(r: &Row) -> RequestRow {
    RequestRow {
        id: r.get(0),
        requester: r.get(1),
        role: r.get(2),
        state: r.get(3),
        created_at: r.get(4),
        pending_until: r.get(5),
        cert_serial: r.get(6),
        review_due: r.get(7),
        updated_seq: r.get(8),
        body: r.get(9),
    }
}

const PERSON_COLUMNS: &str = "SELECT name, groups_json, password_hash, totp_sealed, totp_last_step, failures, locked_until FROM people";

fn person_row(r: &Row) -> Result<PersonRow, StoreError> {
    Ok(PersonRow {
        name: r.get(0),
        groups: groups_from_json(r.get(1))?,
        password_hash: r.get(2),
        totp_sealed: r.get(3),
        totp_last_step: r.get(4),
        failures: r.get(5),
        locked_until: r.get(6),
    })
}

async fn append_in(client: &mut Client, a: &Append) -> Result<(), StoreError> {
    let err = |e: tokio_postgres::Error| unavailable(describe(&e));
    let line = std::str::from_utf8(&a.record.line)
        .map_err(|_| StoreError::Corrupt("a record that is not UTF-8".into()))?;
    let tx = client.transaction().await.map_err(err)?;
    let serial = a.record.serial.map(to_db).transpose()?;
    tx.execute(
        "INSERT INTO trail (seq, serial, hash, line) VALUES ($1, $2, $3, $4)",
        &[&to_db(a.record.seq)?, &serial, &a.record.hash, &line],
    )
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict
        } else {
            err(e)
        }
    })?;
    if let Some(cp) = &a.checkpoint {
        let doc = std::str::from_utf8(&cp.document)
            .map_err(|_| StoreError::Corrupt("a checkpoint that is not UTF-8".into()))?;
        tx.execute(
            "INSERT INTO checkpoints (seq, document) VALUES ($1, $2)",
            &[&to_db(cp.seq)?, &doc],
        )
        .await
        .map_err(err)?;
    }
    let exists = |what: String| {
        move |e: tokio_postgres::Error| {
            if is_unique_violation(&e) {
                StoreError::Exists(what)
            } else {
                unavailable(describe(&e))
            }
        }
    };
    match &a.effect {
        Effect::None => {}
        Effect::HostAdd { name, token_sha256 } => {
            tx.execute(
                "INSERT INTO hosts (name, token_sha256, added_seq) VALUES ($1, $2, $3)",
                &[name, token_sha256, &to_db(a.record.seq)?],
            )
            .await
            .map_err(exists(format!("host {name}")))?;
        }
        Effect::HostRemove { name } => {
            tx.execute("DELETE FROM hosts WHERE name = $1", &[name])
                .await
                .map_err(err)?;
        }
        Effect::PersonAdd(p) => {
            tx.execute(
                "INSERT INTO people (name, groups_json, password_hash, totp_sealed) VALUES ($1, $2, $3, $4)",
                &[&p.name, &groups_to_json(&p.groups), &p.password_hash, &p.totp_sealed],
            )
            .await
            .map_err(exists(format!("person {}", p.name)))?;
        }
        Effect::PersonRemove { name } => {
            tx.execute("DELETE FROM people WHERE name = $1", &[name])
                .await
                .map_err(err)?;
        }
        Effect::PersonKeyAdd {
            person,
            fingerprint,
            key,
        } => {
            tx.execute(
                "INSERT INTO person_keys (person, fingerprint, key) VALUES ($1, $2, $3)",
                &[person, fingerprint, key],
            )
            .await
            .map_err(exists(format!("key {fingerprint} of {person}")))?;
        }
        Effect::RequestAdd(row) | Effect::RequestPut(row) => {
            let statement = if matches!(a.effect, Effect::RequestAdd(_)) {
                REQUEST_ADD
            } else {
                REQUEST_PUT
            };
            tx.execute(
                statement,
                &[
                    &row.id,
                    &row.requester,
                    &row.role,
                    &row.state,
                    &row.created_at,
                    &row.pending_until,
                    &row.cert_serial,
                    &row.review_due,
                    &row.updated_seq,
                    &row.body,
                ],
            )
            .await
            .map_err(exists(format!("request {}", row.id)))?;
        }
    }
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&CHANNEL, &a.record.seq.to_string()],
    )
    .await
    .map_err(err)?;
    tx.commit().await.map_err(err)
}

async fn login_in(
    client: &mut Client,
    person: &str,
    update: LoginUpdate,
) -> Result<(), StoreError> {
    let err = |e: tokio_postgres::Error| unavailable(describe(&e));
    let tx = client.transaction().await.map_err(err)?;
    match update {
        LoginUpdate::Failed { lock_until } => {
            tx.execute(
                "UPDATE people SET failures = failures + 1, locked_until = GREATEST(locked_until, $2) WHERE name = $1",
                &[&person, &lock_until.unwrap_or(0)],
            )
            .await
            .map_err(err)?;
        }
        LoginUpdate::SucceededByKey {
            challenge_ms,
            token_sha256,
            session,
        } => {
            let n = tx
                .execute(
                    "UPDATE people SET failures = 0, key_last_challenge = $2
                     WHERE name = $1 AND key_last_challenge < $2",
                    &[&person, &challenge_ms],
                )
                .await
                .map_err(err)?;
            if n == 0 {
                return Err(StoreError::Stale);
            }
            tx.execute(
                "INSERT INTO sessions (token_sha256, person, created_at, expires_at, totp) VALUES ($1, $2, $3, $4, $5)",
                &[
                    &token_sha256,
                    &session.person,
                    &session.created_at,
                    &session.expires_at,
                    &session.totp,
                ],
            )
            .await
            .map_err(err)?;
        }
        LoginUpdate::Succeeded {
            totp_step,
            token_sha256,
            session,
        } => {
            let step = totp_step.unwrap_or(i64::MIN);
            let n = tx
                .execute(
                    "UPDATE people SET failures = 0, totp_last_step = GREATEST(totp_last_step, $2)
                     WHERE name = $1 AND ($3::BIGINT = 0 OR totp_last_step < $2)",
                    &[&person, &step, &i64::from(totp_step.is_some())],
                )
                .await
                .map_err(err)?;
            if n == 0 {
                return Err(StoreError::Stale);
            }
            tx.execute(
                "INSERT INTO sessions (token_sha256, person, created_at, expires_at, totp) VALUES ($1, $2, $3, $4, $5)",
                &[
                    &token_sha256,
                    &session.person,
                    &session.created_at,
                    &session.expires_at,
                    &session.totp,
                ],
            )
            .await
            .map_err(err)?;
        }
    }
    tx.commit().await.map_err(err)
}

/// Brings the schema up to date. A current schema costs only reads, so a
/// server can run on a read-only replica; otherwise the migrations run in
/// one transaction under an advisory lock, so servers starting together
/// migrate once.
async fn migrate(client: &Client) -> Result<(), StoreError> {
    let err = |e: tokio_postgres::Error| unavailable(describe(&e));
    let current = |rows: Vec<Row>| -> i64 { rows.first().map_or(0, |r| r.get(0)) };
    let exists = client
        .query("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(err)?
        .first()
        .is_some_and(|r| r.get::<_, bool>(0));
    if exists {
        let v = current(
            client
                .query(
                    "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                    &[],
                )
                .await
                .map_err(err)?,
        );
        if v > schema::latest() {
            return Err(StoreError::Corrupt(format!(
                "schema version {v} is newer than this server's ({}): upgrade sshjit-server",
                schema::latest()
            )));
        }
        if v == schema::latest() {
            return Ok(());
        }
    }
    client
        .batch_execute("BEGIN; SELECT pg_advisory_xact_lock(7270190431)")
        .await
        .map_err(err)?;
    let result = async {
        client.batch_execute(VERSIONS_TABLE).await.map_err(err)?;
        let v = current(
            client
                .query(
                    "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                    &[],
                )
                .await
                .map_err(err)?,
        );
        let now = sshjit_policy::time::Timestamp::now().unix_seconds();
        for (version, statements) in MIGRATIONS.iter().filter(|m| m.0 > v) {
            for s in *statements {
                client.batch_execute(s).await.map_err(err)?;
            }
            client
                .execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                    &[version, &now],
                )
                .await
                .map_err(err)?;
        }
        Ok::<_, StoreError>(())
    }
    .await;
    match result {
        Ok(()) => client.batch_execute("COMMIT").await.map_err(err),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Keeps a LISTEN connection open while the store lives, waking `changed`
/// on every notification; reconnects after a pause when it breaks.
async fn listen(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(url) = inner.upgrade().map(|i| i.url.clone()) else {
            return;
        };
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, tokio_postgres::connect(&url, NoTls));
        if let Ok(Ok((client, mut connection))) = connected.await {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let driver = tokio::spawn(async move {
                while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
                    match message {
                        Ok(AsyncMessage::Notification(_)) => {
                            if tx.send(()).is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            });
            if client
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .await
                .is_ok()
            {
                // A change may have come before the LISTEN: wake once.
                if let Some(i) = inner.upgrade() {
                    i.notified.notify_one();
                }
                while rx.recv().await.is_some() {
                    match inner.upgrade() {
                        Some(i) => i.notified.notify_one(),
                        None => return,
                    }
                }
            }
            driver.abort();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
