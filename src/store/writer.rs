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
    channel_column, open_for_writing, StoreError, DUPLICATE_OF, META_HEALTH_PROBE, META_LAST_NOTIFIED, PRUNE_BATCH,
};
use crate::clock::now_ms;
use crate::model::{
    duplicate_reason, target_of, AttemptRecord, Channel, Claimed, DeliveryRequest, DeliveryStatus, DueDelivery,
    Inserted, NewOperation, OpStatus, Outcome,
};

/// Commands waiting for the writer; senders wait when it is full.
const QUEUE_CAPACITY: usize = 4096;
/// Most commands committed in one transaction.
const MAX_BATCH: usize = 1024;

/// What the writer tells the rest of the daemon.
pub struct Hooks {
    /// Called after each commit that queued deliveries or rescheduled one.
    pub on_commit: Box<dyn Fn() + Send>,
    /// Called with the reason when a commit fails (disk full, I/O error).
    pub on_error: Box<dyn Fn(&str) + Send>,
}

/// Answers a command's caller once the commit's fate is known: `Some(reason)`
/// if the commit failed.
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

/// A command run once inside the batch's transaction: whether it succeeded,
/// and how to answer its caller. Given no connection, the transaction failed
/// before reaching it, and it only builds the answer.
type Command = Box<dyn FnOnce(Option<&Connection>) -> (bool, Answer) + Send>;

/// What a job does inside the batch's transaction.
enum Work {
    Once(Command),
    /// An attempt's result. The request has already gone out, so a commit
    /// that fails (disk full) must not lose it: it is kept and applied again
    /// with the next batch until a commit takes it.
    Attempt(AttemptRecord),
}

/// One command for the writer.
struct Job {
    work: Work,
    /// Whether committing it may make deliveries due.
    wakes: bool,
}

impl Job {
    fn attempt(record: AttemptRecord) -> Job {
        // Only a retry needs the scheduler's attention (a new due time); the
        // worker tells it itself when it is free.
        let wakes = matches!(record.outcome, Outcome::RetryAt(_));
        Job {
            wakes,
            work: Work::Attempt(record),
        }
    }

    fn new<T: Send + 'static>(
        wakes: bool,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        reply: oneshot::Sender<Result<T, StoreError>>,
    ) -> Job {
        Job {
            wakes,
            work: Work::Once(Box::new(move |conn| {
                let result = conn.map(work);
                let ok = matches!(result, Some(Ok(_)));
                let answer: Answer = Box::new(move |commit_failure| {
                    let result = match (commit_failure, result) {
                        (Some(reason), Some(Ok(_)) | None) => Err(StoreError::Commit(reason.to_string())),
                        (None, None) => Err(StoreError::WriterGone),
                        (_, Some(result)) => result,
                    };
                    let _ = reply.send(result);
                });
                (ok, answer)
            })),
        }
    }
}

/// A cheap, cloneable handle to the writer thread. The thread stops once
/// every handle is dropped and the queue is drained.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

/// Opens (creating and migrating) the database, returns deliveries a stopped
/// daemon left `in_flight` to `pending`, and starts the writer thread.
pub fn spawn_writer(path: &Path, hooks: Hooks) -> Result<(Writer, JoinHandle<()>), StoreError> {
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
        .spawn(move || run(conn, rx, hooks))
        .map_err(|e| StoreError::Commit(format!("cannot start the writer thread: {e}")))?;
    Ok((Writer { tx }, handle))
}

impl Writer {
    async fn run<T: Send + 'static>(
        &self,
        wakes: bool,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job::new(wakes, work, reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Blocks until the job is committed: call from a plain thread only.
    fn run_blocking<T: Send + 'static>(
        &self,
        wakes: bool,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .blocking_send(Job::new(wakes, work, reply))
            .map_err(|_| StoreError::WriterGone)?;
        answer.blocking_recv().map_err(|_| StoreError::WriterGone)?
    }

    /// Stores a received operation; returns once it is committed.
    pub async fn insert(&self, op: NewOperation) -> Result<Inserted, StoreError> {
        self.run(true, move |conn| insert(conn, &op)).await
    }

    /// Commits a small write, proving the database takes writes (for /healthz).
    pub async fn probe(&self) -> Result<(), StoreError> {
        self.run(false, |conn| set_meta(conn, META_HEALTH_PROBE, now_ms()))
            .await
    }

    /// Marks up to `limit` due deliveries `in_flight` and returns them,
    /// leaving those to the receivers in `skip` (named by [`super::target_of`]).
    /// `next_due` skips them too. Blocks: call from a plain thread, never
    /// from async code.
    pub fn claim_due(&self, now: i64, limit: usize, skip: Vec<String>) -> Result<Claimed, StoreError> {
        self.run_blocking(false, move |conn| claim(conn, now, limit, &skip))
    }

    /// Gives claimed deliveries back unsent. Blocks: plain threads only.
    pub fn release(&self, ids: Vec<i64>) -> Result<(), StoreError> {
        self.run_blocking(false, move |conn| release(conn, &ids))
    }

    /// Queues an attempt's result for the next commit; the writer logs its
    /// errors and keeps it through storage faults. Blocks while the queue is
    /// full: call from a plain thread.
    pub fn record(&self, record: AttemptRecord) -> Result<(), StoreError> {
        self.tx
            .blocking_send(Job::attempt(record))
            .map_err(|_| StoreError::WriterGone)
    }

    /// Records that `ids` went out on `channel` at `at`. Blocks: plain threads only.
    pub fn notified(&self, ids: Vec<i64>, channel: Channel, at: i64) -> Result<(), StoreError> {
        self.run_blocking(false, move |conn| mark_notified(conn, &ids, channel, at))
    }

    /// Queues one warning, once per day per processing, for each processing
    /// that received at least `min_events` since `since` and skipped every
    /// one (a `require` or `when` that can never be met). Returns their
    /// names. Blocks: plain threads only.
    pub fn warn_all_skipped(&self, since: i64, min_events: u32, now: i64) -> Result<Vec<String>, StoreError> {
        self.run_blocking(false, move |conn| warn_all_skipped(conn, since, min_events, now))
    }

    /// Caps the database's size in pages, so a test can run out of space.
    #[cfg(test)]
    pub(super) fn limit_pages(&self, pages: i64) -> Result<i64, StoreError> {
        self.run_blocking(false, move |conn| {
            let now: i64 = conn.query_row("PRAGMA page_count", [], |row| row.get(0))?;
            conn.pragma_update(None, "max_page_count", pages.max(now))?;
            Ok(now)
        })
    }

    /// Deletes up to `batch` finished operations received before `before`,
    /// with their deliveries and attempts. Blocks: plain threads only.
    pub fn prune(&self, before: i64, batch: usize) -> Result<usize, StoreError> {
        self.run_blocking(false, move |conn| prune_batch(conn, before, batch))
    }
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Job>, hooks: Hooks) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Attempt results a failed commit gave back. Any job (the scheduler's
    // claim runs at least once per poll interval) makes the writer try them
    // again, in a transaction of their own so that they cannot fail new work.
    let mut carried: Vec<AttemptRecord> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        if !carried.is_empty() {
            let mut retry: Vec<Job> = std::mem::take(&mut carried).into_iter().map(Job::attempt).collect();
            let kept = retry.len();
            if commit_and_tell(&mut conn, &mut retry, &mut carried, &hooks) {
                log::info!("saved {kept} attempt results kept since the database failed");
            }
        }
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_and_tell(&mut conn, &mut batch, &mut carried, &hooks);
    }
    if !carried.is_empty() {
        log::warn!(
            "{} attempt results could not be saved; those deliveries will be sent again at the next start",
            carried.len()
        );
    }
    log::debug!("store writer stopped");
}

/// Commits (and empties) `jobs` with [`commit_batch`], then tells the
/// daemon: a wake-up if a committed job may have made deliveries due, the
/// reason if the commit failed. Returns whether it committed.
fn commit_and_tell(conn: &mut Connection, jobs: &mut Vec<Job>, carry: &mut Vec<AttemptRecord>, hooks: &Hooks) -> bool {
    let wake = jobs.iter().any(|job| job.wakes);
    match commit_batch(conn, jobs.drain(..), carry) {
        Ok(()) => {
            if wake {
                (hooks.on_commit)();
            }
            true
        }
        Err(reason) => {
            (hooks.on_error)(&reason);
            false
        }
    }
}

/// Applies and commits `batch`, then answers every caller. Attempt results
/// that did not make it into the database go to `carry`.
fn commit_batch(
    conn: &mut Connection,
    batch: impl Iterator<Item = Job>,
    carry: &mut Vec<AttemptRecord>,
) -> Result<(), String> {
    let mut jobs = batch;
    let mut answers = Vec::new();
    let mut applied = Vec::new();
    let outcome = (|| -> Result<(), rusqlite::Error> {
        let tx = conn.transaction()?;
        for job in jobs.by_ref() {
            // A savepoint per job: one bad command must not undo the others.
            // Cached statements, not rusqlite's Savepoint: that one parses its
            // SQL anew each time, which cost a fifth of the daemon's CPU.
            tx.prepare_cached("SAVEPOINT job")?.execute([])?;
            let ok = match job.work {
                Work::Once(work) => {
                    let (ok, answer) = work(Some(&tx));
                    answers.push(answer);
                    ok
                }
                Work::Attempt(record) => match record_attempt(&tx, &record) {
                    Ok(()) => {
                        applied.push(record);
                        true
                    }
                    Err(err) if is_storage_fault(&err) => {
                        carry.push(record);
                        false
                    }
                    Err(err) => {
                        log::error!("delivery {}: cannot record the attempt: {err}", record.delivery_id);
                        false
                    }
                },
            };
            if !ok {
                tx.prepare_cached("ROLLBACK TO job")?.execute([])?;
            }
            tx.prepare_cached("RELEASE job")?.execute([])?;
        }
        tx.commit()
    })();
    let failure = outcome.err().map(|e| e.to_string());
    if let Some(reason) = &failure {
        log::error!("database commit failed: {reason}");
        carry.append(&mut applied);
    }
    // Jobs a failed transaction never reached: attempt results are kept,
    // other callers get the failure.
    for job in jobs {
        match job.work {
            Work::Attempt(record) => carry.push(record),
            Work::Once(work) => answers.push(work(None).1),
        }
    }
    for answer in answers {
        answer(failure.as_deref());
    }
    failure.map_or(Ok(()), Err)
}

/// Whether `err` comes from the storage (full, read-only, failing) rather
/// than from the command, so trying the same command again later can work.
fn is_storage_fault(err: &StoreError) -> bool {
    use rusqlite::ErrorCode::{CannotOpen, DatabaseBusy, DatabaseLocked, DiskFull, ReadOnly, SystemIoFailure};
    matches!(
        err,
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
            if matches!(e.code, CannotOpen | DatabaseBusy | DatabaseLocked | DiskFull | ReadOnly | SystemIoFailure)
    )
}

fn insert(conn: &Connection, op: &NewOperation) -> Result<Inserted, StoreError> {
    let mut status = op.status;
    let mut reason = op.reason.clone();
    let mut dedupe_key = None;
    if let Some((key, since)) = op.dedupe_candidate() {
        let earlier: Option<i64> = conn
            .prepare_cached(DUPLICATE_OF)?
            .query_row(params![op.processing, key, since], |row| row.get(0))
            .optional()?;
        match earlier {
            Some(id) => {
                status = OpStatus::Duplicate;
                reason = Some(duplicate_reason(key, id));
            }
            None => dedupe_key = Some(key),
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
    note_first_warnings(conn, op, id)?;
    Ok(Inserted { id, status, reason })
}

/// Queues a notification for the first warning of each kind per processing per day.
fn note_first_warnings(conn: &Connection, op: &NewOperation, operation_id: i64) -> Result<(), StoreError> {
    let day = op.received_at.div_euclid(86_400_000);
    let mut seen = Vec::new();
    for warning in &op.warnings {
        if seen.contains(&warning.kind) {
            continue;
        }
        seen.push(warning.kind);
        let first = conn
            .prepare_cached("INSERT OR IGNORE INTO warning_days (processing, kind, day) VALUES (?1, ?2, ?3)")?
            .execute(params![op.processing, warning.kind, day])?;
        if first == 1 {
            queue_notification(
                conn,
                "warning",
                &op.processing,
                operation_id,
                &warning.text,
                op.received_at,
            )?;
        }
    }
    Ok(())
}

/// Warning kind: a processing skipped every event for a day.
pub const ALL_SKIPPED: &str = "all_skipped";

fn warn_all_skipped(conn: &Connection, since: i64, min_events: u32, now: i64) -> Result<Vec<String>, StoreError> {
    let found: Vec<(String, i64, i64)> = conn
        .prepare_cached(
            "SELECT processing, count(*), max(id) FROM operations WHERE received_at >= ?1
             GROUP BY processing HAVING count(*) >= ?2 AND sum(status != 'skipped') = 0",
        )?
        .query_map(params![since, min_events], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    let day = now.div_euclid(86_400_000);
    let mut warned = Vec::new();
    for (processing, count, latest) in found {
        let first = conn
            .prepare_cached("INSERT OR IGNORE INTO warning_days (processing, kind, day) VALUES (?1, ?2, ?3)")?
            .execute(params![processing, ALL_SKIPPED, day])?;
        if first == 0 {
            continue;
        }
        let reason: Option<String> = conn
            .prepare_cached("SELECT reason FROM operations WHERE id = ?1")?
            .query_row([latest], |row| row.get(0))?;
        let text = format!(
            "every one of the {count} events of the last 24 h was skipped, nothing was sent \
             (the latest: {}); check `require` and `when` against `hookrelay fields {processing}`",
            reason.as_deref().unwrap_or("no reason recorded")
        );
        queue_notification(conn, "warning", &processing, latest, &text, now)?;
        warned.push(processing);
    }
    Ok(warned)
}

fn queue_notification(
    conn: &Connection,
    kind: &str,
    processing: &str,
    operation_id: i64,
    text: &str,
    at: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO notifications (created_at, kind, processing, operation_id, text) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![at, kind, processing, operation_id, text])?;
    Ok(())
}

fn set_meta(conn: &Connection, key: &str, value: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

fn mark_notified(conn: &Connection, ids: &[i64], channel: Channel, at: i64) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE notifications SET {} = ?2 WHERE id = ?1",
        channel_column(channel)
    );
    let mut mark = conn.prepare_cached(&sql)?;
    for id in ids {
        mark.execute(params![id, at])?;
    }
    set_meta(conn, META_LAST_NOTIFIED, at)
}

fn prune_batch(conn: &Connection, before: i64, batch: usize) -> Result<usize, StoreError> {
    let deleted = conn
        .prepare_cached(PRUNE_BATCH)?
        .execute(params![before, batch as i64])?;
    // Notifications and warning marks are small; they go in one statement each.
    conn.prepare_cached("DELETE FROM notifications WHERE created_at < ?1")?
        .execute([before])?;
    conn.prepare_cached("DELETE FROM warning_days WHERE day < ?1")?
        .execute([before.div_euclid(86_400_000)])?;
    Ok(deleted)
}

pub(super) fn insert_delivery(
    conn: &Connection,
    operation_id: i64,
    position: i64,
    d: &DeliveryRequest,
    now: i64,
) -> Result<(), StoreError> {
    let headers = serde_json::to_string(&d.headers).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO deliveries (operation_id, action, position, status, next_attempt_at, method, url,
             headers, body, redacted, expect_body, timeout_ms, max_attempts, first_delay_ms, max_delay_ms,
             updated_at, target)
         VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?4, ?15)",
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
        target_of(&d.url),
    ])?;
    Ok(())
}

/// What a claim reads of a delivery; [`due_row`] takes it apart.
const DUE_COLUMNS: &str = "id, operation_id, attempts, action, method, url, headers, body, redacted, expect_body,
     timeout_ms, max_attempts, first_delay_ms, max_delay_ms, next_attempt_at, target";

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

/// A row of [`DUE_COLUMNS`]: the delivery, its headers as JSON, when it is due.
fn due_row(row: &rusqlite::Row) -> rusqlite::Result<(DueDelivery, String, i64)> {
    Ok((
        DueDelivery {
            id: row.get(0)?,
            operation_id: row.get(1)?,
            attempts: row.get(2)?,
            target: row.get(15)?,
            request: DeliveryRequest {
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
        row.get(6)?,
        row.get(14)?,
    ))
}

fn claim(conn: &Connection, now: i64, limit: usize, skip: &[String]) -> Result<Claimed, StoreError> {
    let limit = limit as i64;
    // Deliveries to the receivers in `skip` stay where they are. Rather than
    // scan past their backlog, ask each other receiver for its due ones.
    let targets: Option<Vec<String>> = if skip.is_empty() {
        None
    } else {
        let all: Vec<String> = conn
            .prepare_cached(WAITING_TARGETS)?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        Some(all.into_iter().filter(|t| !skip.contains(t)).collect())
    };
    let rows = match &targets {
        None => conn
            .prepare_cached(&format!(
                "SELECT {DUE_COLUMNS} FROM deliveries
                 WHERE status IN ('pending', 'retrying') AND next_attempt_at <= ?1
                 ORDER BY next_attempt_at, id LIMIT ?2"
            ))?
            .query_map(params![now, limit], due_row)?
            .collect::<Result<Vec<_>, _>>()?,
        Some(targets) => {
            let mut due = conn.prepare_cached(&format!(
                "SELECT {DUE_COLUMNS} FROM deliveries
                 WHERE target = ?1 AND status IN ('pending', 'retrying') AND next_attempt_at <= ?2
                 ORDER BY next_attempt_at, id LIMIT ?3"
            ))?;
            let mut rows = Vec::new();
            for target in targets {
                for row in due.query_map(params![target, now, limit], due_row)? {
                    rows.push(row?);
                }
            }
            rows.sort_by_key(|(due, _, at)| (*at, due.id));
            rows.truncate(limit as usize);
            rows
        }
    };
    let mut claimed = Claimed::default();
    let mut mark = conn.prepare_cached("UPDATE deliveries SET status = 'in_flight', updated_at = ?2 WHERE id = ?1")?;
    for (mut due, headers, _) in rows {
        due.request.headers = serde_json::from_str(&headers)
            .map_err(|e| StoreError::Corrupt(format!("headers of delivery {}: {e}", due.id)))?;
        mark.execute(params![due.id, now])?;
        claimed.due.push(due);
    }
    claimed.next_due = match &targets {
        None => conn
            .prepare_cached("SELECT MIN(next_attempt_at) FROM deliveries WHERE status IN ('pending', 'retrying')")?
            .query_row([], |row| row.get(0))?,
        Some(targets) => {
            let mut first = conn.prepare_cached(
                "SELECT MIN(next_attempt_at) FROM deliveries WHERE target = ?1 AND status IN ('pending', 'retrying')",
            )?;
            let mut next: Option<i64> = None;
            for target in targets {
                let at: Option<i64> = first.query_row([target], |row| row.get(0))?;
                next = match (next, at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            next
        }
    };
    Ok(claimed)
}

/// Hands claimed deliveries back: `retrying` if they were tried before, else `pending`.
fn release(conn: &Connection, ids: &[i64]) -> Result<(), StoreError> {
    let mut release = conn.prepare_cached(
        "UPDATE deliveries SET status = CASE WHEN attempts > 0 THEN 'retrying' ELSE 'pending' END
         WHERE id = ?1 AND status = 'in_flight'",
    )?;
    for id in ids {
        release.execute([id])?;
    }
    Ok(())
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
    let (operation_id, action, attempts): (i64, String, u32) = conn
        .prepare_cached(
            "UPDATE deliveries SET status = ?2, attempts = attempts + 1,
                 next_attempt_at = COALESCE(?3, next_attempt_at), last_error = ?4, updated_at = ?5
             WHERE id = ?1 RETURNING operation_id, action, attempts",
        )?
        .query_row(
            params![r.delivery_id, status.as_str(), next_at, last_error, now],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )?;
    if status == DeliveryStatus::Failed {
        let processing: String = conn.query_row(
            "SELECT processing FROM operations WHERE id = ?1",
            [operation_id],
            |row| row.get(0),
        )?;
        let text = format!(
            "action `{action}`: {} (attempt {attempts})",
            last_error.as_deref().unwrap_or("failed")
        );
        queue_notification(conn, "failure", &processing, operation_id, &text, now)?;
    }
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
