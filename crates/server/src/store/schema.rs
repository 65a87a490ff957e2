//! The schema, as numbered migrations applied in order on start. The SQL
//! is written once for both databases: only types both accept, `$n`
//! placeholders (SQLite reads them as numbered too).

/// Each migration: its number and its statements.
pub const MIGRATIONS: &[(i64, &[&str])] = &[
    (
        1,
        &[
            // Every change, hash-chained; the policy is the replay of these.
            "CREATE TABLE trail (
            seq BIGINT PRIMARY KEY,
            serial BIGINT,
            hash TEXT NOT NULL UNIQUE,
            line TEXT NOT NULL
        )",
            // The policy document as of a record: a start replays from here.
            "CREATE TABLE checkpoints (
            seq BIGINT PRIMARY KEY,
            document TEXT NOT NULL
        )",
            "CREATE TABLE hosts (
            name TEXT PRIMARY KEY,
            token_sha256 TEXT NOT NULL UNIQUE,
            added_seq BIGINT NOT NULL
        )",
            "CREATE TABLE people (
            name TEXT PRIMARY KEY,
            groups_json TEXT NOT NULL,
            password_hash TEXT,
            totp_sealed TEXT,
            totp_last_step BIGINT NOT NULL DEFAULT 0,
            failures BIGINT NOT NULL DEFAULT 0,
            locked_until BIGINT NOT NULL DEFAULT 0
        )",
            "CREATE TABLE person_keys (
            person TEXT NOT NULL REFERENCES people(name) ON DELETE CASCADE,
            fingerprint TEXT NOT NULL,
            key TEXT NOT NULL,
            PRIMARY KEY (person, fingerprint)
        )",
            "CREATE TABLE sessions (
            token_sha256 TEXT PRIMARY KEY,
            person TEXT NOT NULL REFERENCES people(name) ON DELETE CASCADE,
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            totp BOOLEAN NOT NULL
        )",
            "CREATE INDEX sessions_expiry ON sessions (expires_at)",
        ],
    ),
    (
        2,
        &[
            // Access requests: the trail records every step; this is each
            // request's state after its last record (`updated_seq`), written
            // in that record's transaction. `body` is the whole request as the
            // server keeps it (JSON); the other columns are what is searched.
            "CREATE TABLE requests (
            id TEXT PRIMARY KEY,
            requester TEXT NOT NULL,
            role TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            pending_until BIGINT NOT NULL,
            cert_serial BIGINT UNIQUE,
            review_due BOOLEAN NOT NULL DEFAULT FALSE,
            updated_seq BIGINT NOT NULL,
            body TEXT NOT NULL
        )",
            "CREATE INDEX requests_state ON requests (state, pending_until)",
            "CREATE INDEX requests_created ON requests (created_at)",
            // Key logins: the issue time (ms) of the last challenge answered,
            // so that a signed challenge is accepted once.
            "ALTER TABLE people ADD COLUMN key_last_challenge BIGINT NOT NULL DEFAULT 0",
        ],
    ),
];

/// The newest schema this server knows.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Creates the table that records applied migrations.
pub const VERSIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY,
    applied_at BIGINT NOT NULL
)";
