//! Schema migrations, numbered by `PRAGMA user_version`.
//!
//! Each entry moves the database from version `index` to `index + 1`. Never
//! edit a shipped entry: append a new one.

use rusqlite::Connection;

/// One step of the schema: its statements, then what SQL alone cannot do.
struct Migration {
    sql: &'static str,
    then: Option<fn(&Connection) -> rusqlite::Result<()>>,
}

/// Every migration, oldest first.
const MIGRATIONS: &[Migration] = &[
    // 1: operations, deliveries (with the rendered request), attempts.
    Migration {
        sql: r#"
    CREATE TABLE operations (
        id           INTEGER PRIMARY KEY,
        processing   TEXT    NOT NULL,
        received_at  INTEGER NOT NULL,          -- ms since the Unix epoch
        remote_addr  TEXT    NOT NULL,
        method       TEXT    NOT NULL,
        raw_query    BLOB    NOT NULL,
        raw_body     BLOB    NOT NULL,
        content_type TEXT,
        charset      TEXT    NOT NULL,
        fields       TEXT    NOT NULL,          -- JSON object of strings
        warnings     TEXT    NOT NULL,          -- JSON array of strings
        status       TEXT    NOT NULL,
        reason       TEXT,
        dedupe_key   TEXT,
        updated_at   INTEGER NOT NULL
    );
    CREATE INDEX operations_by_processing ON operations (processing, id);
    CREATE INDEX operations_by_status ON operations (status, id);
    CREATE INDEX operations_by_received ON operations (received_at);
    CREATE INDEX operations_by_dedupe ON operations (processing, dedupe_key, received_at)
        WHERE dedupe_key IS NOT NULL;

    CREATE TABLE deliveries (
        id              INTEGER PRIMARY KEY,
        operation_id    INTEGER NOT NULL REFERENCES operations (id) ON DELETE CASCADE,
        action          TEXT    NOT NULL,
        position        INTEGER NOT NULL,
        status          TEXT    NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        method          TEXT    NOT NULL,
        url             TEXT    NOT NULL,
        headers         TEXT    NOT NULL,       -- JSON array of [name, value]
        body            BLOB,
        redacted        TEXT    NOT NULL,
        expect_body     TEXT,
        timeout_ms      INTEGER NOT NULL,
        max_attempts    INTEGER NOT NULL,
        first_delay_ms  INTEGER NOT NULL,
        max_delay_ms    INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    );
    CREATE INDEX deliveries_due ON deliveries (next_attempt_at, id)
        WHERE status IN ('pending', 'retrying');
    CREATE INDEX deliveries_by_operation ON deliveries (operation_id, position);

    CREATE TABLE attempts (
        id            INTEGER PRIMARY KEY,
        delivery_id   INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
        started_at    INTEGER NOT NULL,
        duration_ms   INTEGER NOT NULL,
        request       TEXT    NOT NULL,         -- redacted request line
        http_status   INTEGER,
        response_body TEXT,                     -- first 2 KiB
        error         TEXT
    );
    CREATE INDEX attempts_by_delivery ON attempts (delivery_id, id);
    "#,
        then: None,
    },
    // 2: notifications waiting to be sent, the first-warning-per-day marks,
    //    and small named values (last notification time, health probe).
    Migration {
        sql: r#"
    CREATE TABLE notifications (
        id               INTEGER PRIMARY KEY,
        created_at       INTEGER NOT NULL,
        kind             TEXT    NOT NULL,      -- failure | warning
        processing       TEXT    NOT NULL,
        operation_id     INTEGER NOT NULL,      -- may outlive its operation
        text             TEXT    NOT NULL,
        email_sent_at    INTEGER,
        telegram_sent_at INTEGER
    );
    CREATE INDEX notifications_by_created ON notifications (created_at);

    CREATE TABLE warning_days (
        processing TEXT    NOT NULL,
        kind       TEXT    NOT NULL,
        day        INTEGER NOT NULL,            -- days since the Unix epoch
        PRIMARY KEY (processing, kind, day)
    ) WITHOUT ROWID;

    CREATE TABLE meta (
        key   TEXT    PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
        then: None,
    },
    // 3: each delivery's receiver (`scheme://host:port/`), indexed over the
    //    due ones, so a claim can pass over a busy receiver's backlog
    //    without reading it.
    Migration {
        sql: r#"
    ALTER TABLE deliveries ADD COLUMN target TEXT NOT NULL DEFAULT '';
    CREATE INDEX deliveries_due_by_target ON deliveries (target, next_attempt_at, id)
        WHERE status IN ('pending', 'retrying');
    "#,
        then: Some(fill_in_targets),
    },
];

/// The version this build writes and reads.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// The database's schema version.
pub fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// Migration 3's receiver column, for the deliveries still waiting: finished
/// ones are never claimed again (a replay adds new ones).
fn fill_in_targets(conn: &Connection) -> rusqlite::Result<()> {
    let waiting: Vec<(i64, String)> = conn
        .prepare("SELECT id, url FROM deliveries WHERE status IN ('pending', 'retrying', 'in_flight')")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut set = conn.prepare("UPDATE deliveries SET target = ?2 WHERE id = ?1")?;
    for (id, url) in waiting {
        set.execute(rusqlite::params![id, super::target_of(&url)])?;
    }
    Ok(())
}

/// Applies every migration the database has not seen, each in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), super::StoreError> {
    let current = version(conn)?;
    if current > VERSION {
        return Err(super::StoreError::TooNew(current, VERSION));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(migration.sql)?;
        if let Some(then) = migration.then {
            then(&tx)?;
        }
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
