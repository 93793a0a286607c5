//! Schema migrations, numbered by `PRAGMA user_version`, applied: the
//! entries themselves are in `migrations.rs`.

use rusqlite::Connection;

use super::migrations::{Migration, MIGRATIONS};

/// The version this build writes and reads.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// The database's schema version.
pub fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// Applies every migration the database has not seen, each in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), crate::store::StoreError> {
    migrate_to(conn, VERSION)
}

/// Applies the migrations up to schema version `target`.
fn migrate_to(conn: &mut Connection, target: i64) -> Result<(), crate::store::StoreError> {
    let current = version(conn)?;
    if current > VERSION {
        return Err(crate::store::StoreError::TooNew(current, VERSION));
    }
    if current == 0 {
        // Before the first table: the only moment it costs nothing.
        incremental_auto_vacuum(conn)?;
    }
    for (index, migration) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(current as usize)
    {
        if let Some(before) = migration.before {
            before(conn)?;
        }
        if migration.rebuilds {
            // Only takes effect outside a transaction.
            conn.pragma_update(None, "foreign_keys", "OFF")?;
        }
        let applied = apply(conn, migration, index as i64 + 1);
        if migration.rebuilds {
            conn.pragma_update(None, "foreign_keys", "ON")?;
        }
        applied?;
    }
    Ok(())
}

fn apply(conn: &mut Connection, migration: &Migration, version: i64) -> Result<(), crate::store::StoreError> {
    // Immediate, like every transaction that writes: a deferred one that
    // read first could not wait for a lock another process holds.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(migration.sql)?;
    if let Some(then) = migration.then {
        then(&tx)?;
    }
    if migration.rebuilds {
        let broken: i64 = tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| row.get(0))?;
        if broken > 0 {
            return Err(crate::store::StoreError::Corrupt(format!(
                "migration {version} would leave {broken} rows pointing at nothing; not applied"
            )));
        }
    }
    tx.pragma_update(None, "user_version", version)?;
    tx.commit()?;
    Ok(())
}

/// SQLite's `auto_vacuum` value for INCREMENTAL.
const AUTO_VACUUM_INCREMENTAL: i64 = 2;

/// Turns on incremental auto-vacuum: by a VACUUM, instant on a new
/// database, a full copy once on one that has data.
pub(super) fn incremental_auto_vacuum(conn: &Connection) -> rusqlite::Result<()> {
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |row| row.get(0))?;
    if mode == AUTO_VACUUM_INCREMENTAL {
        return Ok(());
    }
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |row| {
        row.get(0)
    })?;
    if tables > 0 {
        log::warn!(
            "turning on incremental auto-vacuum once: a full VACUUM, which needs free disk about the database's size"
        );
    }
    // In WAL mode the setting takes effect only through a VACUUM, even on a
    // database without tables (where it is instant).
    conn.execute_batch("VACUUM")
}

/// Migration 3's receiver column, for the deliveries still waiting: finished
/// ones are never claimed again (a replay adds new ones).
pub(super) fn fill_in_targets(conn: &Connection) -> rusqlite::Result<()> {
    let waiting: Vec<(i64, String)> = conn
        .prepare("SELECT id, url FROM deliveries WHERE status IN ('pending', 'retrying', 'in_flight')")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut set = conn.prepare("UPDATE deliveries SET target = ?2 WHERE id = ?1")?;
    for (id, url) in waiting {
        set.execute(rusqlite::params![id, crate::model::target_of(&url)])?;
    }
    Ok(())
}

/// A database as builds before migration 5 made it: `target`'s schema and
/// no auto-vacuum.
#[cfg(test)]
pub(in crate::store) fn migrate_to_without_vacuum(conn: &mut Connection, target: i64) {
    for (index, migration) in MIGRATIONS.iter().enumerate().take(target as usize) {
        if migration.rebuilds {
            conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
        }
        apply(conn, migration, index as i64 + 1).unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a database from before AUTOINCREMENT keeps its rows and,
    /// once migrated, never hands out an id again after its newest rows are
    /// pruned, not even one only a notification still remembers.
    #[test]
    fn ids_continue_after_migration_and_pruning() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        migrate_to(&mut conn, 3).unwrap();
        conn.execute_batch(
            "INSERT INTO operations (id, processing, received_at, remote_addr, method, raw_query, raw_body,
                 charset, fields, warnings, status, updated_at)
             VALUES (7, 'p', 1, 'a', 'GET', x'', x'', 'utf-8', '{}', '[]', 'delivered', 1);
             INSERT INTO deliveries (id, operation_id, action, position, status, next_attempt_at, method,
                 url, headers, redacted, timeout_ms, max_attempts, first_delay_ms, max_delay_ms, updated_at)
             VALUES (5, 7, 'a', 0, 'delivered', 0, 'GET', 'http://x/', '[]', 'GET http://x/', 1, 1, 1, 1, 1);
             INSERT INTO attempts (id, delivery_id, started_at, duration_ms, request) VALUES (3, 5, 1, 1, 'GET');
             INSERT INTO notifications (created_at, kind, processing, operation_id, text)
                 VALUES (1, 'failure', 'p', 9, 'x');",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), VERSION);
        let count = |table: &str| -> i64 {
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| row.get(0))
                .unwrap()
        };
        assert_eq!((count("operations"), count("deliveries"), count("attempts")), (1, 1, 1));
        let fk: bool = conn.query_row("PRAGMA foreign_keys", [], |row| row.get(0)).unwrap();
        assert!(fk, "foreign keys are on again");
        // Pruning cascades as before, and the ids carry on past the largest.
        conn.execute("DELETE FROM operations", []).unwrap();
        assert_eq!(count("attempts"), 0);
        conn.execute_batch(
            "INSERT INTO operations (processing, received_at, remote_addr, method, raw_query, raw_body,
                 charset, fields, warnings, status, updated_at)
             VALUES ('p', 1, 'a', 'GET', x'', x'', 'utf-8', '{}', '[]', 'queued', 1);
             INSERT INTO deliveries (operation_id, action, position, status, next_attempt_at, method,
                 url, headers, redacted, timeout_ms, max_attempts, first_delay_ms, max_delay_ms, updated_at)
             VALUES (last_insert_rowid(), 'a', 0, 'pending', 0, 'GET', 'http://x/', '[]', 'GET http://x/', 1, 1, 1, 1, 1);
             INSERT INTO attempts (delivery_id, started_at, duration_ms, request) VALUES (last_insert_rowid(), 1, 1, 'GET');",
        )
        .unwrap();
        let max = |table: &str| -> i64 {
            conn.query_row(&format!("SELECT max(id) FROM {table}"), [], |row| row.get(0))
                .unwrap()
        };
        assert_eq!(max("operations"), 10, "past the notification's operation 9");
        assert_eq!(max("deliveries"), 6);
        assert_eq!(max("attempts"), 4);
    }
}
