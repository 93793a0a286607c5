//! Yandex Metrica's batches: a metrica action's rows (deliveries with a
//! `batch_key`, never due on their own) gathered into one upload.
//!
//! A batch is a row of its own, made in the transaction that gives its
//! rows their `batch_id`: a row is taken by one batch only, and a batch
//! keeps its rows through any restart. Its states:
//!
//! - `ready`: to upload (made, or an upload refused with "try later").
//! - `sending`: an upload started and its answer is not known (it was
//!   committed before the request went out). Before sending again, the
//!   uploads Metrica lists are checked for it (deliver/metrica.rs).
//! - `uploaded`: Metrica took the file (its rows are `delivered`); its
//!   processing state is polled until it ends.
//! - `done`: Metrica's processing ended (PROCESSED, LINKAGE_FAILURE…), or
//!   there is nothing to poll.
//! - `failed`: Metrica refused the file for good, or the retries ran out;
//!   its rows are `failed`.
//!
//! `lease_until`: while one instance works on a batch, another leaves it.

use super::attempts::refresh_operation_status;
use super::db::{Db, Dialect, Row};
use super::notices::queue_notification;
use super::{Reader, StoreError, Writer};
use crate::model::response::Judged;
use crate::model::said::Said;
use crate::model::NotificationKind;

/// A batch as kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub id: i64,
    /// The action's `processing/action`.
    pub key: String,
    pub rows: i64,
    pub made_at: i64,
    pub state: String,
    /// Uploads tried.
    pub attempts: i64,
    pub next_at: i64,
    /// When the last upload was sent.
    pub sent_at: Option<i64>,
    /// Metrica's id for the upload, and its processing state.
    pub upload_id: Option<String>,
    pub upload_state: Option<String>,
    /// Rows linked to visits, users not found, goals not found.
    pub linked: Option<i64>,
    pub user_not_found: Option<i64>,
    pub goal_not_found: Option<i64>,
    pub last_error: Option<Said>,
}

const BATCH_COLUMNS: &str = "id, batch_key, rows, made_at, state, attempts, next_at, sent_at, upload_id, upload_state,
     linked, user_not_found, goal_not_found, last_error";

fn batch_row(row: &Row) -> Result<Batch, StoreError> {
    Ok(Batch {
        id: row.get(0)?,
        key: row.get(1)?,
        rows: row.get(2)?,
        made_at: row.get(3)?,
        state: row.get(4)?,
        attempts: row.get(5)?,
        next_at: row.get(6)?,
        sent_at: row.get(7)?,
        upload_id: row.get(8)?,
        upload_state: row.get(9)?,
        linked: row.get(10)?,
        user_not_found: row.get(11)?,
        goal_not_found: row.get(12)?,
        last_error: row.get(13)?,
    })
}

/// A batch's rows: each delivery's id and its row (JSON pairs).
pub type BatchRows = Vec<(i64, Option<Vec<u8>>)>;

/// What one upload (or the check for it) said, recorded on each of the
/// batch's rows as an attempt.
#[derive(Debug, Clone)]
pub struct BatchAttempt {
    pub started_at: i64,
    pub duration_ms: i64,
    /// The request line, secrets masked.
    pub request: String,
    pub http_status: Option<u16>,
    pub response_body: Option<String>,
    pub error: Option<Said>,
    pub judged: Option<Judged>,
}

/// How a batch's step ended.
#[derive(Debug, Clone)]
pub enum BatchStep {
    /// Metrica took the file: its rows are delivered. `poll_at`: when to
    /// read its state; none when there is nothing to poll (it ended).
    Uploaded {
        attempt: BatchAttempt,
        upload_id: String,
        upload_state: Option<String>,
        poll_at: Option<i64>,
    },
    /// Not taken; sent again at `at`. `unknown`: the answer was lost, so
    /// the upload may have been taken: the uploads are checked first.
    Retry {
        attempt: BatchAttempt,
        at: i64,
        unknown: bool,
    },
    /// Refused for good: its rows fail, and the operator is told `notice`.
    Failed { attempt: BatchAttempt, notice: Said },
    /// The uploads list showed no upload of this batch: send it now.
    NotFound,
    /// The upload's state, read; `poll_at` none when it has ended, and
    /// `notice` when it ended badly.
    Polled {
        upload_state: String,
        counts: [Option<i64>; 3],
        poll_at: Option<i64>,
        notice: Option<Said>,
    },
}

/// Gathers `key`'s waiting rows into a batch when there are `max` of them,
/// or the oldest waited `every_ms`; the new batch's id, if one was made.
pub(super) fn make(conn: &Db, key: &str, max: usize, every_ms: i64, now: i64) -> Result<Option<i64>, StoreError> {
    const WAITING: &str = "SELECT id, updated_at FROM deliveries
         WHERE batch_key = ?1 AND batch_id IS NULL AND status = 'pending'
         ORDER BY id LIMIT 1 OFFSET ?2";
    let row = |row: &Row| Ok((row.get::<i64>(0)?, row.get::<i64>(1)?));
    let Some((_, oldest)) = conn.query_opt(WAITING, &[&key, &0i64], row)? else {
        return Ok(None);
    };
    // The `max`-th waiting row, if there are that many: the batch ends at it.
    let nth = conn.query_opt(WAITING, &[&key, &(max as i64 - 1)], row)?;
    if nth.is_none() && now - oldest < every_ms {
        return Ok(None);
    }
    let last = nth.map_or(i64::MAX, |(id, _)| id);
    let id: i64 = conn.query_one(
        "INSERT INTO batches (batch_key, rows, made_at, state, next_at, updated_at)
         VALUES (?1, 0, ?2, 'ready', ?2, ?2) RETURNING id",
        &[&key, &now],
        |row| row.get(0),
    )?;
    // `batch_id IS NULL` again: another instance may have taken some of
    // them since they were read.
    let taken = conn.execute(
        "UPDATE deliveries SET batch_id = ?1, status = 'in_flight', updated_at = ?2
         WHERE batch_key = ?3 AND batch_id IS NULL AND status = 'pending' AND id <= ?4",
        &[&id, &now, &key, &last],
    )?;
    if taken == 0 {
        conn.execute("DELETE FROM batches WHERE id = ?1", &[&id])?;
        return Ok(None);
    }
    conn.execute("UPDATE batches SET rows = ?2 WHERE id = ?1", &[&id, &(taken as i64)])?;
    Ok(Some(id))
}

/// Up to `limit` batches due for work (an upload, a check, a poll), leased
/// to this instance for `lease_ms`.
pub(super) fn take_due(conn: &Db, now: i64, lease_ms: i64, limit: usize) -> Result<Vec<Batch>, StoreError> {
    let lock = match conn.dialect() {
        Dialect::Sqlite => "",
        Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
    };
    conn.query(
        &format!(
            "UPDATE batches SET lease_until = ?2 WHERE id IN (
                 SELECT id FROM batches
                 WHERE state IN ('ready', 'sending', 'uploaded') AND next_at <= ?1
                   AND (lease_until IS NULL OR lease_until < ?1)
                 ORDER BY next_at, id LIMIT ?3 {lock})
             RETURNING {BATCH_COLUMNS}"
        ),
        &[&now, &(now + lease_ms), &(limit as i64)],
        batch_row,
    )
}

/// Gives every lease back: alone on its database, an instance starting
/// again resumes what it was doing when it stopped.
pub(super) fn release_leases(conn: &Db) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE batches SET lease_until = NULL WHERE lease_until IS NOT NULL",
        &[],
    )?;
    Ok(())
}

/// A batch's rows: each delivery's id and its row (the body, JSON pairs).
pub(super) fn rows(conn: &Db, batch: i64) -> Result<BatchRows, StoreError> {
    conn.query(
        "SELECT id, body FROM deliveries WHERE batch_id = ?1 ORDER BY id",
        &[&batch],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
}

/// Notes that an upload of `batch` starts now, leased until `until`:
/// committed before the request goes out, so that a crash after it leaves
/// the batch `sending`.
pub(super) fn sending(conn: &Db, batch: i64, now: i64, until: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE batches SET state = 'sending', sent_at = ?2, attempts = attempts + 1, lease_until = ?3, updated_at = ?2
         WHERE id = ?1",
        &[&batch, &now, &until],
    )?;
    Ok(())
}

/// Records how `batch`'s step ended, on the batch and on its rows, and
/// gives its lease back.
pub(super) fn record(conn: &Db, batch: i64, step: &BatchStep, now: i64) -> Result<(), StoreError> {
    match step {
        BatchStep::Uploaded {
            attempt,
            upload_id,
            upload_state,
            poll_at,
        } => {
            let state = if poll_at.is_some() { "uploaded" } else { "done" };
            conn.execute(
                "UPDATE batches SET state = ?2, upload_id = ?3, upload_state = ?4, next_at = ?5, last_error = NULL,
                     lease_until = NULL, updated_at = ?6
                 WHERE id = ?1",
                &[&batch, &state, upload_id, upload_state, &poll_at.unwrap_or(now), &now],
            )?;
            on_rows(conn, batch, attempt, "delivered", now)?;
        }
        BatchStep::Retry { attempt, at, unknown } => {
            let state = if *unknown { "sending" } else { "ready" };
            conn.execute(
                "UPDATE batches SET state = ?2, next_at = ?3, last_error = ?4, lease_until = NULL, updated_at = ?5
                 WHERE id = ?1",
                &[&batch, &state, at, &attempt.error.as_ref().map(Said::store), &now],
            )?;
            on_rows(conn, batch, attempt, "in_flight", now)?;
        }
        BatchStep::Failed { attempt, notice } => {
            conn.execute(
                "UPDATE batches SET state = 'failed', last_error = ?2, lease_until = NULL, updated_at = ?3 WHERE id = ?1",
                &[&batch, &attempt.error.as_ref().map(Said::store), &now],
            )?;
            on_rows(conn, batch, attempt, "failed", now)?;
            notify(conn, batch, notice, now)?;
        }
        BatchStep::NotFound => {
            conn.execute(
                "UPDATE batches SET state = 'ready', next_at = ?2, lease_until = NULL, updated_at = ?2 WHERE id = ?1",
                &[&batch, &now],
            )?;
        }
        BatchStep::Polled {
            upload_state,
            counts,
            poll_at,
            notice,
        } => {
            let state = if poll_at.is_some() { "uploaded" } else { "done" };
            conn.execute(
                "UPDATE batches SET state = ?2, upload_state = ?3, linked = ?4, user_not_found = ?5,
                     goal_not_found = ?6, next_at = ?7, lease_until = NULL, updated_at = ?8
                 WHERE id = ?1",
                &[
                    &batch,
                    &state,
                    upload_state,
                    &counts[0],
                    &counts[1],
                    &counts[2],
                    &poll_at.unwrap_or(now),
                    &now,
                ],
            )?;
            if let Some(notice) = notice {
                notify(conn, batch, notice, now)?;
            }
        }
    }
    Ok(())
}

/// One attempt on each of `batch`'s rows, which are then `status`.
fn on_rows(conn: &Db, batch: i64, a: &BatchAttempt, status: &str, now: i64) -> Result<(), StoreError> {
    let error = a.error.as_ref().map(Said::store);
    conn.execute(
        "INSERT INTO attempts (delivery_id, started_at, duration_ms, request, http_status, response_body, error,
             verdict)
         SELECT id, ?2, ?3, ?4, ?5, ?6, ?7, ?8 FROM deliveries WHERE batch_id = ?1",
        &[
            &batch,
            &a.started_at,
            &a.duration_ms,
            &a.request,
            &a.http_status.map(i64::from),
            &a.response_body,
            &error,
            &a.judged.as_ref().map(Judged::to_json),
        ],
    )?;
    let last_error = if status == "delivered" { None } else { error };
    conn.execute(
        "UPDATE deliveries SET attempts = attempts + 1, status = ?2, last_error = ?3, updated_at = ?4
         WHERE batch_id = ?1",
        &[&batch, &status, &last_error, &now],
    )?;
    if status != "in_flight" {
        let operations: Vec<i64> = conn.query(
            "SELECT DISTINCT operation_id FROM deliveries WHERE batch_id = ?1",
            &[&batch],
            |row| row.get(0),
        )?;
        for operation in operations {
            refresh_operation_status(conn, operation, now)?;
        }
    }
    Ok(())
}

/// Tells the operator about `batch`, naming its first row's operation.
fn notify(conn: &Db, batch: i64, notice: &Said, now: i64) -> Result<(), StoreError> {
    let first: Option<(String, i64)> = conn.query_opt(
        "SELECT o.processing, o.id FROM deliveries d JOIN operations o ON o.id = d.operation_id
         WHERE d.batch_id = ?1 ORDER BY d.id LIMIT 1",
        &[&batch],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    if let Some((processing, operation)) = first {
        queue_notification(conn, NotificationKind::Failure, &processing, operation, notice, now)?;
    }
    Ok(())
}

/// Batches finished before `before`, whose rows are pruned with their
/// operations.
pub(super) fn prune(conn: &Db, before: i64) -> Result<usize, StoreError> {
    conn.execute(
        "DELETE FROM batches WHERE made_at < ?1 AND state IN ('done', 'failed')
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.batch_id = batches.id)",
        &[&before],
    )
}

/// What waits for a metrica action, and its newest batch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchQueue {
    /// Rows waiting for a batch, and when the oldest arrived.
    pub waiting: i64,
    pub oldest: Option<i64>,
    /// Batches not finished (being uploaded, or their state polled).
    pub unfinished: i64,
    pub last: Option<Batch>,
}

impl Reader {
    /// `key`'s waiting rows and newest batch.
    pub fn batch_queue(&self, key: &str) -> Result<BatchQueue, StoreError> {
        let (waiting, oldest) = self.conn.query_one(
            "SELECT COUNT(*), MIN(updated_at) FROM deliveries
             WHERE batch_key = ?1 AND batch_id IS NULL AND status = 'pending'",
            &[&key],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let unfinished = self.conn.query_one(
            "SELECT COUNT(*) FROM batches WHERE batch_key = ?1 AND state IN ('ready', 'sending', 'uploaded')",
            &[&key],
            |row| row.get(0),
        )?;
        let last = self.conn.query_opt(
            &format!("SELECT {BATCH_COLUMNS} FROM batches WHERE batch_key = ?1 ORDER BY id DESC LIMIT 1"),
            &[&key],
            batch_row,
        )?;
        Ok(BatchQueue {
            waiting,
            oldest,
            unfinished,
            last,
        })
    }

    /// The batch delivery `id` went (or goes) out in, if any.
    pub fn batch_of(&self, delivery: i64) -> Result<Option<Batch>, StoreError> {
        self.conn.query_opt(
            &format!(
                "SELECT {BATCH_COLUMNS} FROM batches
                 WHERE id = (SELECT batch_id FROM deliveries WHERE id = ?1)"
            ),
            &[&delivery],
            batch_row,
        )
    }
}

impl Writer {
    /// [`make`], committed. Blocks: plain threads only.
    pub fn make_batch(&self, key: String, max: usize, every_ms: i64, now: i64) -> Result<Option<i64>, StoreError> {
        self.run_blocking(false, move |conn| make(conn, &key, max, every_ms, now))
    }

    /// [`take_due`], committed. Blocks: plain threads only.
    pub fn due_batches(&self, now: i64, lease_ms: i64, limit: usize) -> Result<Vec<Batch>, StoreError> {
        self.run_blocking(false, move |conn| take_due(conn, now, lease_ms, limit))
    }

    /// [`release_leases`]. Blocks: plain threads only.
    pub fn release_batch_leases(&self) -> Result<(), StoreError> {
        self.run_blocking(false, release_leases)
    }

    /// A batch's rows. Blocks: plain threads only.
    pub fn batch_rows(&self, batch: i64) -> Result<BatchRows, StoreError> {
        self.run_blocking(false, move |conn| rows(conn, batch))
    }

    /// [`sending`], committed before this returns. Blocks: plain threads only.
    pub fn batch_sending(&self, batch: i64, now: i64, until: i64) -> Result<(), StoreError> {
        self.run_blocking(false, move |conn| sending(conn, batch, now, until))
    }

    /// [`record`], committed. Blocks: plain threads only.
    pub fn batch_step(&self, batch: i64, step: BatchStep, now: i64) -> Result<(), StoreError> {
        self.run_blocking(true, move |conn| record(conn, batch, &step, now))
    }
}
