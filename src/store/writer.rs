//! The single writer thread and its group commit.
//!
//! Every change goes through one channel to one thread. The thread takes
//! whatever is queued (up to [`MAX_BATCH`]), applies each command, commits
//! once, and only then answers the waiting callers: one fsync covers a
//! whole burst of webhooks.
//!
//! One failing command must not undo the others. Received operations and
//! attempt results (the hot paths: they are data, and can be applied
//! twice) run first and without a savepoint each; other commands (a
//! claim, a replay) follow, each in its own savepoint. If a data job
//! fails, the transaction is rolled back and the batch is applied again
//! with a savepoint per job (writer/apply.rs). A savepoint and its release
//! were two of the 3.4 statements a held webhook cost, and on PostgreSQL
//! two round trips each; under delivering load most batches hold a claim,
//! which gave every webhook in them its savepoint until the data went first.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

mod apply;
mod job;

use apply::commit_batch;
use job::{replying, Between, Data, Job, Queued, Work};

use super::db::Db;
use super::notices::warn_once;
use super::sqlite::checkpoint::{self, Checkpoints};
use super::sqlite::online_backup::{OnlineBackup, Step};
use super::write::{claim, mark_notified, prune_batch, release, set_meta, silence_begins, silence_ends};
use super::{open_for_writing, Location, StoreError, META_HEALTH_PROBE};
use crate::clock::now_ms;
use crate::model::said::Said;
use crate::model::{
    notice_day, AttemptRecord, Channel, Claimed, DeliveryRequest, Inserted, NewOperation, ReceiverState,
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

/// A cheap, cloneable handle to the writer thread. The thread stops once
/// every handle is dropped and the queue is drained.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Queued>,
    /// On PostgreSQL, which other instances may share: its URL.
    url: Option<String>,
    /// On PostgreSQL: until when this instance's claims are surely its own
    /// (ms since the epoch).
    leased_until: Option<Arc<AtomicI64>>,
    /// Set when a breaker was closed by hand (see [`Writer::breakers_changed`]).
    breakers_changed: Arc<AtomicBool>,
}

/// Opens (creating and migrating) the database, returns deliveries a stopped
/// daemon left `in_flight` to `pending` (on PostgreSQL, where other
/// instances may be sending theirs, their leases expire instead), and
/// starts the writer thread.
pub fn spawn_writer(location: impl Into<Location>, hooks: Hooks) -> Result<(Writer, JoinHandle<()>), StoreError> {
    spawn_writer_idle(location, hooks, checkpoint::IDLE)
}

/// [`spawn_writer`] with the WAL truncated after `idle` without commits,
/// so a test can meet the truncation hundreds of times in seconds.
pub(super) fn spawn_writer_idle(
    location: impl Into<Location>,
    hooks: Hooks,
    idle: Duration,
) -> Result<(Writer, JoinHandle<()>), StoreError> {
    let location = location.into();
    let conn = open_for_writing(&location)?;
    let checkpoints = match (&conn, &location) {
        (Db::Sqlite(sqlite), Location::File(path)) => {
            let reset = conn.execute(
                // A batch's rows stay its own: the batch is resumed (deliver/metrica.rs).
                "UPDATE deliveries SET status = 'pending', updated_at = ?1 WHERE status = 'in_flight' AND batch_id IS NULL",
                &[&now_ms()],
            )?;
            if reset > 0 {
                log::info!("{reset} deliveries were in flight when hookrelay last stopped; they will be sent again");
            }
            // A command's savepoint copies each page it first touches into
            // a statement journal, which SQLite keeps in memory only up to
            // 64 KiB and then writes to a file in /var/tmp: every replay job
            // of 50 operations did, a quarter of the writer's time in a
            // replay. In memory it is bounded by one job (pruning 200 000
            // operations, in batches of up to 1 000, raised the peak RSS by
            // at most 1.5 MB; BENCHMARKS.md, session 16).
            sqlite.pragma_update(None, "temp_store", "MEMORY")?;
            Some(Checkpoints::start(sqlite, path, idle)?)
        }
        _ => None,
    };
    let leased_until = match &conn {
        Db::Postgres(pg) => Some(pg.leased_until()),
        Db::Sqlite(_) => None,
    };
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let handle = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || run(conn, rx, hooks, checkpoints))
        .map_err(|e| StoreError::Commit(format!("cannot start the writer thread: {e}")))?;
    let url = match &location {
        Location::Postgres(url) => Some(url.clone()),
        Location::File(_) => None,
    };
    Ok((
        Writer {
            tx,
            url,
            leased_until,
            breakers_changed: Arc::new(AtomicBool::new(false)),
        },
        handle,
    ))
}

impl Writer {
    async fn run<T: Send + 'static>(
        &self,
        wakes: bool,
        work: impl FnOnce(&Db) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Queued::Job(Job::new(wakes, work, replying(reply))))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Keeps the writer busy until the returned sender is used or dropped,
    /// as a long batch or a slow disk would (tests).
    #[cfg(test)]
    pub(crate) fn pause(&self) -> std::sync::mpsc::Sender<()> {
        let (started, wait_started) = std::sync::mpsc::channel();
        let (go, wait_go) = std::sync::mpsc::channel::<()>();
        let writer = self.clone();
        std::thread::spawn(move || {
            writer.run_blocking(false, move |_| {
                let _ = started.send(());
                let _ = wait_go.recv();
                Ok(())
            })
        });
        let _ = wait_started.recv();
        go
    }

    /// Jobs waiting in the queue (tests make batches with it).
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        QUEUE_CAPACITY - self.tx.capacity()
    }

    /// Blocks until the job is committed: call from a plain thread only.
    pub(super) fn run_blocking<T: Send + 'static>(
        &self,
        wakes: bool,
        work: impl FnOnce(&Db) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .blocking_send(Queued::Job(Job::new(wakes, work, replying(reply))))
            .map_err(|_| StoreError::WriterGone)?;
        answer.blocking_recv().map_err(|_| StoreError::WriterGone)?
    }

    /// Queues `work` and returns at once; `then` gets its result once the
    /// commit's fate is known (see [`Job::new`]).
    fn run_then<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Db) -> Result<T, StoreError> + Send + 'static,
        then: impl FnOnce(Result<T, StoreError>) + Send + 'static,
    ) -> Result<(), StoreError> {
        self.tx
            .blocking_send(Queued::Job(Job::new(false, work, then)))
            .map_err(|_| StoreError::WriterGone)
    }

    /// Stores a received operation; returns once it is committed.
    pub async fn insert(&self, op: NewOperation) -> Result<Inserted, StoreError> {
        let (reply, answer) = oneshot::channel();
        // Only deliveries the scheduler sends make it look: a held,
        // skipped or duplicate operation has none, a refused delivery is
        // failed at once, and a Metrica row waits for its batch.
        let wakes = op.deliveries.iter().any(|d| d.refused.is_none() && d.batch.is_none());
        let job = Job {
            wakes,
            work: Work::Data(Data::Insert(Box::new(op), reply)),
        };
        self.tx
            .send(Queued::Job(job))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
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

    /// [`Writer::claim_due`] without waiting: `then` gets the claim once it
    /// is committed (on the writer thread), so the caller can go on handing
    /// out what it holds meanwhile. Blocks only while the writer's queue is
    /// full: plain threads only.
    pub fn claim_due_then(
        &self,
        (now, limit, skip): (i64, usize, Vec<String>),
        then: impl FnOnce(Result<Claimed, StoreError>) + Send + 'static,
    ) -> Result<(), StoreError> {
        self.run_then(move |conn| claim(conn, now, limit, &skip), then)
    }

    /// One step of an online backup into `target` (the empty file the first
    /// step starts it in), copying up to `pages` pages. Blocks: plain
    /// threads only. See online_backup.rs.
    pub fn backup_step(&self, target: PathBuf, pages: i32) -> Result<Step, StoreError> {
        let (reply, answer) = oneshot::channel();
        let step: Between = Box::new(move |conn, backup| {
            let result = (|| {
                if backup.as_ref().is_none_or(|b| b.target() != target) {
                    *backup = None;
                    *backup = Some(OnlineBackup::start(conn, &target)?);
                }
                let Some(running) = backup.as_mut() else {
                    return Err(StoreError::WriterGone);
                };
                let step = running.step(pages);
                if !matches!(step, Ok(Step::More { .. })) {
                    *backup = None;
                }
                step
            })();
            let _ = reply.send(result);
        });
        self.tx
            .blocking_send(Queued::Between(step))
            .map_err(|_| StoreError::WriterGone)?;
        answer.blocking_recv().map_err(|_| StoreError::WriterGone)?
    }

    /// Ends the online backup in progress, if any. Blocks: plain threads only.
    pub fn backup_abort(&self) {
        let (reply, answer) = oneshot::channel();
        let abort: Between = Box::new(move |_, backup| {
            *backup = None;
            let _ = reply.send(());
        });
        if self.tx.blocking_send(Queued::Between(abort)).is_ok() {
            let _ = answer.blocking_recv();
        }
    }

    /// Whether other instances may share this database, so that what
    /// holds for the cluster (pacing) must be decided in it.
    pub fn shared(&self) -> bool {
        self.leased_until.is_some()
    }

    /// On a shared database, a session for taking paced receivers' turns
    /// ([`Turns`](super::Turns)); None alone on SQLite. Blocks: plain threads only.
    pub fn turns(&self) -> Result<Option<super::Turns>, StoreError> {
        self.url
            .as_deref()
            .map(super::postgres::claims::Turns::open)
            .transpose()
    }

    /// Whether every delivery this instance claimed is surely still its own
    /// until `until` (ms since the epoch): always on SQLite; on PostgreSQL,
    /// while its lease renewals keep committing.
    pub fn leases_hold(&self, until: i64) -> bool {
        self.leased_until
            .as_ref()
            .is_none_or(|leased| leased.load(Ordering::Relaxed) >= until)
    }

    /// Whether delivery `id` is still claimed by this instance (another may
    /// have taken it over once this one's lease lapsed). Blocks: plain
    /// threads only.
    pub fn still_claimed(&self, id: i64) -> Result<bool, StoreError> {
        self.run_blocking(false, move |conn| super::postgres::claims::still_claimed(conn, id))
    }

    /// Takes the probe of `target`'s open breaker for this instance if it is
    /// due at `now` and no other instance took it (see receivers.rs).
    /// Blocks: plain threads only.
    pub fn take_probe(&self, target: String, now: i64, next: i64) -> Result<bool, StoreError> {
        self.run_blocking(false, move |conn| {
            super::receivers::take_probe(conn, &target, now, next)
        })
    }

    /// Closes `target`'s open breaker by hand; whether it was open. The
    /// scheduler reads the breakers again at its next turn ([`Writer::breakers_changed`]).
    /// Blocks: plain threads only.
    pub fn close_breaker(&self, target: String) -> Result<bool, StoreError> {
        let closed = self.run_blocking(true, move |conn| {
            super::receivers::close_breaker(conn, &target, now_ms())
        })?;
        if closed {
            self.breakers_changed.store(true, Ordering::Relaxed);
        }
        Ok(closed)
    }

    /// Whether a breaker was closed by hand since the last call: the
    /// scheduler then reads the kept breakers again.
    pub fn breakers_changed(&self) -> bool {
        self.breakers_changed.swap(false, Ordering::Relaxed)
    }

    /// Every receiver's kept breaker and last answers. Blocks: plain threads only.
    pub fn receivers(&self) -> Result<Vec<ReceiverState>, StoreError> {
        self.run_blocking(false, super::receivers::load)
    }

    /// Queues fresh deliveries for recorded operations (see replay.rs) in
    /// one job; how many. Keep `replays` to a few dozen operations: the
    /// webhooks committed beside them wait for the whole job. Blocks:
    /// plain threads only.
    pub fn queue_replays(&self, replays: Vec<super::Replay>) -> Result<usize, StoreError> {
        self.run_blocking(true, move |conn| super::replay::queue_chunk(conn, &replays))
    }

    /// Replaces waiting deliveries' requests (by id) with these, rendered
    /// again from the current config, in one job; how many were still
    /// waiting. Keep it to a few dozen. Blocks: plain threads only.
    pub fn rerender(&self, requests: Vec<(i64, DeliveryRequest)>) -> Result<usize, StoreError> {
        self.run_blocking(true, move |conn| {
            super::deliveries::rerender_all(conn, &requests, now_ms())
        })
    }

    /// Cancels every waiting delivery `which` names, in steps of a few
    /// hundred, each its own job; how many. Blocks: plain threads only.
    pub fn cancel(&self, which: super::Waiting, source: String) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let (which, source) = (which.clone(), source.clone());
            let n = self.run_blocking(false, move |conn| {
                super::write::cancel_waiting(conn, &which, &source, now_ms())
            })?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
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
            .blocking_send(Queued::Job(Job::attempt(Box::new(record))))
            .map_err(|_| StoreError::WriterGone)
    }

    /// Records that `ids` went out on `channel` at `at`. Blocks: plain threads only.
    pub fn notified(&self, ids: Vec<i64>, channel: Channel, at: i64) -> Result<(), StoreError> {
        self.run_blocking(false, move |conn| mark_notified(conn, &ids, channel, at))
    }

    /// Queues a warning about `processing` unless one of `kind` was queued
    /// for it already today (UTC); whether it was queued. Blocks: plain
    /// threads only.
    pub fn warn_once(
        &self,
        processing: String,
        kind: &'static str,
        operation_id: i64,
        text: Said,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.run_blocking(false, move |conn| {
            warn_once(conn, &processing, kind, notice_day(now), operation_id, &text, now)
        })
    }

    /// Announces `processing`'s silence since its `last` event (operation
    /// id, received at) with `text`, once per silence; whether this call
    /// announced it. Blocks: plain threads only.
    pub fn silence_begins(&self, processing: String, last: (i64, i64), text: Said) -> Result<bool, StoreError> {
        self.run_blocking(false, move |conn| {
            silence_begins(conn, &processing, last, &text, now_ms())
        })
    }

    /// Ends `processing`'s announced silence with `text` about `operation`,
    /// the event that ended it; whether there was one. Blocks: plain threads only.
    pub fn silence_ends(&self, processing: String, operation: i64, text: Said) -> Result<bool, StoreError> {
        self.run_blocking(false, move |conn| {
            silence_ends(conn, &processing, operation, &text, now_ms())
        })
    }

    /// Caps the database's size in pages, so a test can run out of space.
    #[cfg(test)]
    pub(super) fn limit_pages(&self, pages: i64) -> Result<i64, StoreError> {
        self.run_blocking(false, move |conn| {
            let Some(conn) = conn.sqlite() else {
                return Err(StoreError::WriterGone);
            };
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

fn run(conn: Db, mut rx: mpsc::Receiver<Queued>, hooks: Hooks, checkpoints: Option<Checkpoints>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut between: Vec<Between> = Vec::new();
    // Attempt results a failed commit gave back. Any job (the scheduler's
    // claim runs at least once per poll interval) makes the writer try them
    // again, in a transaction of their own so that they cannot fail new work.
    let mut carried: Vec<AttemptRecord> = Vec::new();
    let mut backup: Option<OnlineBackup> = None;
    while let Some(first) = rx.blocking_recv() {
        if !carried.is_empty() {
            let mut retry: Vec<Job> = std::mem::take(&mut carried)
                .into_iter()
                .map(|r| Job::attempt(Box::new(r)))
                .collect();
            let kept = retry.len();
            if commit_and_tell(&conn, &mut retry, &mut carried, &hooks) {
                checkpoints.iter().for_each(Checkpoints::committed);
                log::info!("saved {kept} attempt results kept since the database failed");
            }
        }
        let mut next = Some(first);
        while let Some(queued) = next.take() {
            match queued {
                Queued::Job(job) => batch.push(job),
                Queued::Between(run) => between.push(run),
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() && commit_and_tell(&conn, &mut batch, &mut carried, &hooks) {
            checkpoints.iter().for_each(Checkpoints::committed);
        }
        for run in between.drain(..) {
            // Only SQLite's `hookrelay backup` asks for these.
            if let Some(sqlite) = conn.sqlite() {
                run(sqlite, &mut backup);
            }
        }
    }
    // A backup's handle must be finished before its source is closed.
    drop(backup);
    drop(conn);
    if let Some(checkpoints) = checkpoints {
        checkpoints.stop();
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
fn commit_and_tell(conn: &Db, jobs: &mut Vec<Job>, carry: &mut Vec<AttemptRecord>, hooks: &Hooks) -> bool {
    let wake = jobs.iter().any(|job| job.wakes);
    match commit_batch(conn, jobs.drain(..), wake, carry) {
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
