//! The write statements the writer thread runs, each inside the batch's
//! transaction. The engine that batches and commits them is `writer.rs`.

use super::attempts::refresh_operation_status;
use super::db::{Db, Dialect, Param};
use super::deliveries::{due_row, earliest, with_headers, DUE_COLUMNS};
use super::notices::warn_if_changed;
use super::{channel_column, StoreError, META_LAST_NOTIFIED, PRUNE_BATCH};
use crate::model::said::Said;
use crate::model::{notice_day, Channel, Claimed};

pub(super) fn set_meta(conn: &Db, key: &str, value: i64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&key, &value],
    )?;
    Ok(())
}

pub(super) fn mark_notified(conn: &Db, ids: &[i64], channel: Channel, at: i64) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE notifications SET {} = ?2 WHERE id = ?1",
        channel_column(channel)
    );
    for id in ids {
        conn.execute(&sql, &[id, &at])?;
    }
    set_meta(conn, META_LAST_NOTIFIED, at)
}

/// Free pages (4 KiB each) given back to the file system per operation
/// pruned. An operation takes about a quarter of a page, so this empties
/// the free list each batch while keeping what one commit moves in
/// proportion to the batch, which retention sizes to stay short.
const PAGES_PER_OPERATION: i64 = 4;

/// Gives up to `pages` pages that pruning freed back to the file system.
/// SQLite frees one page per step of this pragma, so it is stepped to the end.
pub(super) fn give_back_pages(conn: &rusqlite::Connection, pages: i64) -> Result<(), StoreError> {
    // Not cached: the count is part of the text, and varies.
    let mut stmt = conn.prepare(&format!("PRAGMA incremental_vacuum({pages})"))?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

pub(super) fn prune_batch(conn: &Db, before: i64, batch: usize) -> Result<usize, StoreError> {
    let deleted = conn.execute(PRUNE_BATCH, &[&before, &(batch as i64)])?;
    // Notifications and warning marks are small; they go in one statement each.
    conn.execute("DELETE FROM notifications WHERE created_at < ?1", &[&before])?;
    conn.execute("DELETE FROM warning_days WHERE day < ?1", &[&notice_day(before)])?;
    super::batches::prune(conn, before)?;
    match conn {
        Db::Sqlite(sqlite) => {
            // Counters the pruned operations emptied (PostgreSQL keeps none).
            conn.execute("DELETE FROM hour_counts WHERE n <= 0", &[])?;
            give_back_pages(sqlite, batch as i64 * PAGES_PER_OPERATION)?
        }
        // PostgreSQL's autovacuum reuses the space.
        Db::Postgres(_) => super::postgres::claims::prune_dedupe_keys(conn, before)?,
    }
    Ok(deleted)
}

/// Waiting deliveries' receivers: a walk along `deliveries_due_by_target`
/// from one receiver to the next, one index seek each, however long their
/// backlogs are.
const WAITING_TARGETS: &str = "WITH RECURSIVE t(target) AS (
         SELECT MIN(target) FROM deliveries WHERE status IN ('pending', 'retrying')
         UNION ALL
         SELECT (SELECT MIN(target) FROM deliveries
                 WHERE status IN ('pending', 'retrying') AND target > t.target)
         FROM t WHERE t.target IS NOT NULL)
     SELECT target FROM t WHERE target IS NOT NULL";

pub(super) fn claim(conn: &Db, now: i64, limit: usize, skip: &[String]) -> Result<Claimed, StoreError> {
    if conn.dialect() == Dialect::Postgres {
        return super::postgres::claims::claim(conn, now, limit, skip);
    }
    let limit = limit as i64;
    // Deliveries to the receivers in `skip` stay where they are. Rather than
    // scan past their backlog, ask each other receiver for its due ones.
    let targets: Option<Vec<String>> = if skip.is_empty() {
        None
    } else {
        let all: Vec<String> = conn.query(WAITING_TARGETS, &[], |row| row.get(0))?;
        Some(all.into_iter().filter(|t| !skip.contains(t)).collect())
    };
    let rows = match &targets {
        None => conn.query(
            &format!(
                "SELECT {DUE_COLUMNS} FROM deliveries
                 WHERE status IN ('pending', 'retrying') AND next_attempt_at <= ?1
                 ORDER BY next_attempt_at, id LIMIT ?2"
            ),
            &[&now, &limit],
            due_row,
        )?,
        Some(targets) => {
            let sql = format!(
                "SELECT {DUE_COLUMNS} FROM deliveries
                 WHERE target = ?1 AND status IN ('pending', 'retrying') AND next_attempt_at <= ?2
                 ORDER BY next_attempt_at, id LIMIT ?3"
            );
            let mut rows = Vec::new();
            for target in targets {
                rows.extend(conn.query(&sql, &[target, &now, &limit], due_row)?);
            }
            rows.sort_by_key(|(due, _, at)| (*at, due.id));
            rows.truncate(limit as usize);
            rows
        }
    };
    let mut claimed = Claimed {
        due: with_headers(rows)?,
        next_due: None,
    };
    if !claimed.due.is_empty() {
        // One statement for the whole claim, not one per delivery.
        let ids = serde_json::to_string(&claimed.due.iter().map(|d| d.id).collect::<Vec<i64>>())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        conn.execute(
            "UPDATE deliveries SET status = 'in_flight', updated_at = ?2
             WHERE id IN (SELECT value FROM json_each(?1))",
            &[&ids, &now],
        )?;
    }
    claimed.next_due = match &targets {
        None => conn.query_one(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE status IN ('pending', 'retrying')",
            &[],
            |row| row.get(0),
        )?,
        Some(targets) => {
            let mut next: Option<i64> = None;
            for target in targets {
                let at: Option<i64> = conn.query_one(
                    "SELECT MIN(next_attempt_at) FROM deliveries WHERE target = ?1 AND status IN ('pending', 'retrying')",
                    &[target],
                    |row| row.get(0),
                )?;
                next = earliest(next, at);
            }
            next
        }
    };
    Ok(claimed)
}

/// Deliveries cancelled per statement; a large backlog goes in steps, so
/// no job holds the writer for long.
const CANCEL_STEP: i64 = 500;

/// Cancels waiting (`pending` or `retrying`) deliveries, of `operation` or
/// to `target`, at most [`CANCEL_STEP`]: each becomes `cancelled`, with
/// who cancelled it as its last error, and its operation's status follows.
/// Claimed ones (`in_flight`) are being sent and stay. How many went.
pub(super) fn cancel_waiting(conn: &Db, which: &Waiting, source: &str, now: i64) -> Result<usize, StoreError> {
    let (column, key): (&str, &dyn Param) = match which {
        Waiting::Of(operation) => ("operation_id", operation),
        Waiting::To(target) => ("target", target),
    };
    let operations: Vec<i64> = conn.query(
        &format!(
            "UPDATE deliveries SET status = 'cancelled', last_error = ?2, updated_at = ?3, next_attempt_at = ?3
             WHERE id IN (SELECT id FROM deliveries WHERE {column} = ?1 AND status IN ('pending', 'retrying') LIMIT ?4)
             RETURNING operation_id"
        ),
        &[
            key,
            &Said::Cancelled { by: source.to_string() }.store(),
            &now,
            &CANCEL_STEP,
        ],
        |row| row.get(0),
    )?;
    let mut touched = operations.clone();
    touched.sort_unstable();
    touched.dedup();
    for operation in touched {
        refresh_operation_status(conn, operation, now)?;
    }
    Ok(operations.len())
}

/// Which waiting deliveries [`cancel_waiting`] cancels.
#[derive(Debug, Clone)]
pub enum Waiting {
    /// Those of one operation.
    Of(i64),
    /// Those to one receiver (`scheme://host:port/`).
    To(String),
}

/// Hands claimed deliveries back: `retrying` if they were tried before, else `pending`.
pub(super) fn release(conn: &Db, ids: &[i64]) -> Result<(), StoreError> {
    for id in ids {
        conn.execute(
            "UPDATE deliveries SET status = CASE WHEN attempts > 0 THEN 'retrying' ELSE 'pending' END,
                 lease_owner = NULL
             WHERE id = ?1 AND status = 'in_flight'",
            &[id],
        )?;
    }
    Ok(())
}

/// Records that `processing` has been silent since `last_operation` and
/// queues `text`, unless that silence was already announced; whether it was
/// new.
pub(super) fn silence_begins(
    conn: &Db,
    processing: &str,
    (last_operation, last_event_at): (i64, i64),
    text: &Said,
    now: i64,
) -> Result<bool, StoreError> {
    let new = conn.execute(
        "INSERT INTO silences (processing, last_operation, last_event_at, alerted_at)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        &[&processing, &last_operation, &last_event_at, &now],
    )?;
    warn_if_changed(conn, new, processing, last_operation, text, now)
}

/// Ends `processing`'s announced silence, if any, and queues `text` naming
/// `operation`, the event that ended it; whether there was one.
pub(super) fn silence_ends(
    conn: &Db,
    processing: &str,
    operation: i64,
    text: &Said,
    now: i64,
) -> Result<bool, StoreError> {
    let ended = conn.execute("DELETE FROM silences WHERE processing = ?1", &[&processing])?;
    warn_if_changed(conn, ended, processing, operation, text, now)
}
