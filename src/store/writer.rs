//! The single writer thread and its group commit.
//!
//! Every change goes through one channel to one thread. The thread takes
//! whatever is queued (up to [`MAX_BATCH`]), applies each command in its own
//! savepoint, commits once, and only then answers the waiting callers: one
//! fsync covers a whole burst of webhooks.

use std::path::Path;
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use super::{
    now_ms, open_for_writing, AttemptRecord, DeliveryStatus, DueDelivery, Inserted, NewDelivery, NewOperation,
    OpStatus, Outcome, StoreError, DUPLICATE_OF,
};

/// Commands waiting for the writer; senders wait when it is full.
const QUEUE_CAPACITY: usize = 4096;
/// Most commands committed in one transaction.
const MAX_BATCH: usize = 1024;

/// Called after each commit that queued or finished deliveries.
pub type OnCommit = Box<dyn Fn() + Send>;

enum Command {
    Insert(Box<NewOperation>, oneshot::Sender<Result<Inserted, StoreError>>),
    Claim {
        now: i64,
        limit: usize,
        reply: oneshot::Sender<Result<Claimed, StoreError>>,
    },
    Record(Box<AttemptRecord>),
}

/// Deliveries handed out by [`Writer::claim_due`], now `in_flight`.
#[derive(Debug, Default)]
pub struct Claimed {
    pub due: Vec<DueDelivery>,
    /// When the next not-yet-due delivery becomes due, if any.
    pub next_due: Option<i64>,
}

/// A cheap, cloneable handle to the writer thread. The thread stops once
/// every handle is dropped and the queue is drained.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Command>,
}

/// Opens (creating and migrating) the database, returns deliveries a stopped
/// daemon left `in_flight` to `pending`, and starts the writer thread.
pub fn spawn_writer(path: &Path, on_commit: OnCommit) -> Result<(Writer, JoinHandle<()>), StoreError> {
    let conn = open_for_writing(path)?;
    let reset = conn.execute(
        "UPDATE deliveries SET status = 'pending', updated_at = ?1 WHERE status = 'in_flight'",
        [now_ms()],
    )?;
    if reset > 0 {
        log::info!("{reset} deliveries were in flight when hookrelay last stopped; they will be sent again");
    }
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let handle = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || run(conn, rx, on_commit))
        .map_err(|e| StoreError::Corrupt(format!("cannot start the writer thread: {e}")))?;
    Ok((Writer { tx }, handle))
}

impl Writer {
    /// Stores a received operation; returns once it is committed.
    pub async fn insert(&self, op: NewOperation) -> Result<Inserted, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Insert(Box::new(op), reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Marks up to `limit` due deliveries `in_flight` and returns them.
    /// Blocks: call from a plain thread, never from async code.
    pub fn claim_due(&self, now: i64, limit: usize) -> Result<Claimed, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .blocking_send(Command::Claim { now, limit, reply })
            .map_err(|_| StoreError::WriterGone)?;
        answer.blocking_recv().map_err(|_| StoreError::WriterGone)?
    }

    /// Queues an attempt's result for the next commit. Blocks while the queue
    /// is full: call from a plain thread.
    pub fn record(&self, record: AttemptRecord) -> Result<(), StoreError> {
        self.tx
            .blocking_send(Command::Record(Box::new(record)))
            .map_err(|_| StoreError::WriterGone)
    }
}

enum Reply {
    Insert(
        oneshot::Sender<Result<Inserted, StoreError>>,
        Result<Inserted, StoreError>,
    ),
    Claim(
        oneshot::Sender<Result<Claimed, StoreError>>,
        Result<Claimed, StoreError>,
    ),
    Recorded(i64, Result<(), StoreError>),
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Command>, on_commit: OnCommit) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        let wake = batch.iter().any(|c| !matches!(c, Command::Claim { .. }));
        let committed = commit_batch(&mut conn, &mut batch);
        // Commands left over by a failed transaction are dropped: their
        // callers see the writer's error instead of waiting on a retry loop.
        batch.clear();
        if committed && wake {
            on_commit();
        }
    }
    log::debug!("store writer stopped");
}

/// Applies and commits `batch`, then answers every caller. Returns whether
/// the commit succeeded.
fn commit_batch(conn: &mut Connection, batch: &mut Vec<Command>) -> bool {
    let mut replies = Vec::with_capacity(batch.len());
    let outcome = (|| -> Result<(), rusqlite::Error> {
        let mut tx = conn.transaction()?;
        for command in batch.drain(..) {
            // A savepoint per command: one bad command must not undo the others.
            let mut sp = tx.savepoint()?;
            let reply = match command {
                Command::Insert(op, reply) => Reply::Insert(reply, insert(&sp, &op)),
                Command::Claim { now, limit, reply } => Reply::Claim(reply, claim(&sp, now, limit)),
                Command::Record(record) => Reply::Recorded(record.delivery_id, record_attempt(&sp, &record)),
            };
            let ok = match &reply {
                Reply::Insert(_, r) => r.is_ok(),
                Reply::Claim(_, r) => r.is_ok(),
                Reply::Recorded(_, r) => r.is_ok(),
            };
            if ok {
                sp.commit()?;
            } else {
                sp.rollback()?;
            }
            replies.push(reply);
        }
        tx.commit()
    })();
    let failure = outcome.as_ref().err().map(|e| e.to_string());
    if let Some(err) = &failure {
        log::error!("database commit failed: {err}");
    }
    // Callers whose command was applied learn of a failed commit here.
    let failed = |result_ok: bool| -> Option<StoreError> {
        match &failure {
            Some(err) if result_ok => Some(StoreError::Corrupt(format!("commit failed: {err}"))),
            _ => None,
        }
    };
    for reply in replies.drain(..) {
        match reply {
            Reply::Insert(tx, result) => {
                let result = match failed(result.is_ok()) {
                    Some(err) => Err(err),
                    None => result,
                };
                let _ = tx.send(result);
            }
            Reply::Claim(tx, result) => {
                let result = match failed(result.is_ok()) {
                    Some(err) => Err(err),
                    None => result,
                };
                let _ = tx.send(result);
            }
            Reply::Recorded(delivery, result) => {
                if let Err(err) = result {
                    log::error!("recording an attempt of delivery {delivery} failed: {err}");
                }
            }
        }
    }
    // With the transaction gone an error leaves nothing half-written; the
    // records it held stay `in_flight` and are retried after a restart.
    failure.is_none()
}

fn insert(conn: &Connection, op: &NewOperation) -> Result<Inserted, StoreError> {
    let mut status = op.status;
    let mut reason = op.reason.clone();
    let mut dedupe_key = None;
    if let Some((key, since)) = &op.dedupe {
        if !key.is_empty() && matches!(status, OpStatus::Queued | OpStatus::Held) {
            let earlier: Option<i64> = conn
                .prepare_cached(DUPLICATE_OF)?
                .query_row(params![op.processing, key, since], |row| row.get(0))
                .optional()?;
            match earlier {
                Some(id) => {
                    status = OpStatus::Duplicate;
                    reason = Some(format!("same dedupe key `{key}` as operation {id}"));
                }
                None => dedupe_key = Some(key.as_str()),
            }
        }
    }
    let fields: serde_json::Map<String, serde_json::Value> = op
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let fields = serde_json::Value::Object(fields).to_string();
    let texts: Vec<&str> = op.warnings.iter().map(|w| w.text.as_str()).collect();
    let warnings = serde_json::to_string(&texts).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO operations (processing, received_at, remote_addr, method, raw_query, raw_body,
             content_type, charset, fields, warnings, status, reason, dedupe_key, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?2)",
    )?
    .execute(params![
        op.processing,
        op.received_at,
        op.request.remote_addr,
        op.request.method,
        op.request.query,
        op.request.body,
        op.request.content_type,
        op.charset,
        fields,
        warnings,
        status.as_str(),
        reason,
        dedupe_key,
    ])?;
    let id = conn.last_insert_rowid();
    if status == OpStatus::Queued {
        for (position, delivery) in op.deliveries.iter().enumerate() {
            insert_delivery(conn, id, position as i64, delivery, op.received_at)?;
        }
    }
    Ok(Inserted { id, status, reason })
}

pub(super) fn insert_delivery(
    conn: &Connection,
    operation_id: i64,
    position: i64,
    d: &NewDelivery,
    now: i64,
) -> Result<(), StoreError> {
    let headers = serde_json::to_string(&d.headers).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO deliveries (operation_id, action, position, status, next_attempt_at, method, url,
             headers, body, redacted, expect_body, timeout_ms, max_attempts, first_delay_ms, max_delay_ms,
             updated_at)
         VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?4)",
    )?
    .execute(params![
        operation_id,
        d.action,
        position,
        now,
        d.method,
        d.url,
        headers,
        d.body,
        d.redacted,
        d.expect_body,
        d.timeout_ms as i64,
        d.max_attempts,
        d.first_delay_ms as i64,
        d.max_delay_ms as i64,
    ])?;
    Ok(())
}

fn claim(conn: &Connection, now: i64, limit: usize) -> Result<Claimed, StoreError> {
    let mut claimed = Claimed::default();
    let rows = conn
        .prepare_cached(
            "SELECT id, operation_id, attempts, action, method, url, headers, body, redacted, expect_body,
                    timeout_ms, max_attempts, first_delay_ms, max_delay_ms
             FROM deliveries
             WHERE status IN ('pending', 'retrying') AND next_attempt_at <= ?1
             ORDER BY next_attempt_at, id LIMIT ?2",
        )?
        .query_map(params![now, limit as i64], |row| {
            Ok((
                DueDelivery {
                    id: row.get(0)?,
                    operation_id: row.get(1)?,
                    attempts: row.get(2)?,
                    request: NewDelivery {
                        action: row.get(3)?,
                        method: row.get(4)?,
                        url: row.get(5)?,
                        headers: Vec::new(),
                        body: row.get(7)?,
                        redacted: row.get(8)?,
                        expect_body: row.get(9)?,
                        timeout_ms: row.get::<_, i64>(10)? as u64,
                        max_attempts: row.get(11)?,
                        first_delay_ms: row.get::<_, i64>(12)? as u64,
                        max_delay_ms: row.get::<_, i64>(13)? as u64,
                    },
                },
                row.get::<_, String>(6)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut mark = conn.prepare_cached("UPDATE deliveries SET status = 'in_flight', updated_at = ?2 WHERE id = ?1")?;
    for (mut due, headers) in rows {
        due.request.headers = serde_json::from_str(&headers)
            .map_err(|e| StoreError::Corrupt(format!("headers of delivery {}: {e}", due.id)))?;
        mark.execute(params![due.id, now])?;
        claimed.due.push(due);
    }
    claimed.next_due = conn
        .prepare_cached(
            "SELECT next_attempt_at FROM deliveries WHERE status IN ('pending', 'retrying')
             ORDER BY next_attempt_at LIMIT 1",
        )?
        .query_row([], |row| row.get(0))
        .optional()?;
    Ok(claimed)
}

fn record_attempt(conn: &Connection, r: &AttemptRecord) -> Result<(), StoreError> {
    let now = now_ms();
    let (status, next_at) = match r.outcome {
        Outcome::Delivered => (DeliveryStatus::Delivered, None),
        Outcome::RetryAt(at) => (DeliveryStatus::Retrying, Some(at)),
        Outcome::Failed => (DeliveryStatus::Failed, None),
    };
    let last_error = match (&r.error, r.http_status) {
        _ if status == DeliveryStatus::Delivered => None,
        (Some(err), _) => Some(err.clone()),
        (None, Some(code)) => Some(format!("HTTP {code}")),
        (None, None) => None,
    };
    let operation_id: i64 = conn
        .prepare_cached(
            "UPDATE deliveries SET status = ?2, attempts = attempts + 1,
                 next_attempt_at = COALESCE(?3, next_attempt_at), last_error = ?4, updated_at = ?5
             WHERE id = ?1 RETURNING operation_id",
        )?
        .query_row(
            params![r.delivery_id, status.as_str(), next_at, last_error, now],
            |row| row.get(0),
        )?;
    conn.prepare_cached(
        "INSERT INTO attempts (delivery_id, started_at, duration_ms, request, http_status, response_body, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        r.delivery_id,
        r.started_at,
        r.duration_ms,
        r.request,
        r.http_status,
        r.response_body,
        r.error,
    ])?;
    refresh_operation_status(conn, operation_id, now)
}

/// Sets an operation's status from its deliveries' statuses. A replay adds
/// deliveries after the old ones; for each action only the newest counts.
fn refresh_operation_status(conn: &Connection, operation_id: i64, now: i64) -> Result<(), StoreError> {
    let mut latest = std::collections::BTreeMap::new();
    let rows = conn
        .prepare_cached("SELECT action, status FROM deliveries WHERE operation_id = ?1 ORDER BY position")?
        .query_map([operation_id], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (action, status) in rows {
        latest.insert(action, status.parse::<DeliveryStatus>().map_err(StoreError::Corrupt)?);
    }
    let statuses: Vec<DeliveryStatus> = latest.into_values().collect();
    let status = operation_status(&statuses);
    conn.prepare_cached(
        "UPDATE operations SET status = ?2, updated_at = ?3
         WHERE id = ?1 AND status IN ('queued', 'delivered', 'failed', 'partial')",
    )?
    .execute(params![operation_id, status.as_str(), now])?;
    Ok(())
}

/// An operation is `queued` while any delivery is unfinished, then
/// `delivered`, `failed` or `partial` by how its deliveries ended.
pub fn operation_status(deliveries: &[DeliveryStatus]) -> OpStatus {
    let finished = |s: &&DeliveryStatus| matches!(s, DeliveryStatus::Delivered | DeliveryStatus::Failed);
    if deliveries.is_empty() || !deliveries.iter().all(|s| finished(&s)) {
        return OpStatus::Queued;
    }
    let delivered = deliveries.iter().filter(|s| **s == DeliveryStatus::Delivered).count();
    match delivered {
        0 => OpStatus::Failed,
        n if n == deliveries.len() => OpStatus::Delivered,
        _ => OpStatus::Partial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryStatus::*;

    /// The operation's status follows its deliveries.
    #[test]
    fn operation_status_from_deliveries() {
        assert_eq!(operation_status(&[Delivered, Delivered]), OpStatus::Delivered);
        assert_eq!(operation_status(&[Delivered, Retrying]), OpStatus::Queued);
        assert_eq!(operation_status(&[Pending]), OpStatus::Queued);
        assert_eq!(operation_status(&[InFlight, Failed]), OpStatus::Queued);
        assert_eq!(operation_status(&[Failed, Failed]), OpStatus::Failed);
        assert_eq!(operation_status(&[Delivered, Failed]), OpStatus::Partial);
    }
}
