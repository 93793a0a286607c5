//! WAL checkpoints: small ones inline on the writer, large ones and the
//! idle truncation on a thread of their own.
//!
//! SQLite's automatic checkpoint runs inside the commit that finds the WAL
//! over 1 000 pages, on the writer thread. That is cheap while the WAL stays
//! near that size, and it must stay on the writer: only a checkpoint that
//! finishes between two of the writer's transactions lets the next one
//! start the WAL over, so one run elsewhere under constant writes lets the
//! WAL grow without end. But while a reader holds an old snapshot (an
//! online backup, a long export) no checkpoint can pass it, the WAL grows
//! to hundreds of megabytes, and the first commit after the reader ends
//! copied all of it: 244 ms of CPU inside one commit, which every webhook
//! in it waited for (BENCHMARKS.md, "Pruning and backup stalls").
//!
//! So the writer's connection has [`wal_pages`] in place of the automatic
//! checkpoint: near the usual size it checkpoints inline as before, and
//! past [`CATCH_UP_AT`] it leaves the copying to this module's thread,
//! which runs it on its own connection without blocking the writer. Once
//! nothing has been committed for [`IDLE`], the thread truncates the WAL to
//! zero bytes, so an idle daemon leaves no large WAL behind; the writer's
//! `journal_size_limit` trims it whenever it starts over.

use std::cell::Cell;
use std::ffi::c_int;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::hooks::Wal;
use rusqlite::Connection;

use crate::store::{open_connection, StoreError, SIDE_CACHE_KIB};

/// WAL pages at which the writer checkpoints inline (SQLite's default).
const CHECKPOINT_AT: c_int = 1_000;
/// WAL pages past which the checkpoint thread does the copying.
const CATCH_UP_AT: c_int = 4 * CHECKPOINT_AT;
/// Time without commits after which the WAL is truncated.
pub(in crate::store) const IDLE: Duration = Duration::from_secs(1);
/// What the WAL file is cut back to whenever it starts over.
pub(in crate::store) const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

thread_local! {
    /// Set on the writer's thread by [`wal_pages`] when the WAL is past
    /// [`CATCH_UP_AT`]: [`Checkpoints::committed`] passes it on to the thread.
    static CATCH_UP: Cell<bool> = const { Cell::new(false) };
    /// Set by [`Checkpoints::committed`] when the thread has just copied
    /// the bulk: the next inline checkpoint copies only the rest, and
    /// finishing between two transactions, lets the WAL start over.
    static CAUGHT_UP: Cell<bool> = const { Cell::new(false) };
}

/// The writer connection's WAL hook, called after each commit with the
/// WAL's size in pages.
fn wal_pages(wal: &Wal, pages: c_int) -> rusqlite::Result<()> {
    let caught_up = CAUGHT_UP.take();
    if pages < CHECKPOINT_AT {
        return Ok(());
    }
    if pages >= CATCH_UP_AT && !caught_up {
        CATCH_UP.set(true);
        return Ok(());
    }
    // PASSIVE, like the automatic checkpoint; one that cannot finish now
    // (a reader) finishes at a later commit.
    let _ = wal.checkpoint();
    Ok(())
}

/// The writer's side of the checkpoint thread.
pub(in crate::store) struct Checkpoints {
    nudge: SyncSender<()>,
    /// Writer to thread: copy the WAL. Thread to writer: copied.
    catch_up: Arc<AtomicBool>,
    caught_up: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl Checkpoints {
    /// Sets up `writer`'s connection and starts the thread.
    /// The WAL is truncated once nothing has been committed for `idle`.
    pub(in crate::store) fn start(writer: &Connection, path: &Path, idle: Duration) -> Result<Self, StoreError> {
        writer.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        writer.wal_hook(Some(wal_pages));
        let conn = open_connection(path, false)?;
        conn.pragma_update(None, "cache_size", -SIDE_CACHE_KIB)?;
        // Never wait for readers or the writer: a checkpoint that cannot
        // finish now finishes at the next nudge.
        conn.busy_timeout(Duration::ZERO)?;
        let catch_up = Arc::new(AtomicBool::new(false));
        let caught_up = Arc::new(AtomicBool::new(false));
        let (nudge, nudges) = mpsc::sync_channel(1);
        let handle = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn({
                let flags = (Arc::clone(&catch_up), Arc::clone(&caught_up));
                move || run(&conn, &nudges, idle, &flags.0, &flags.1)
            })
            .map_err(|e| StoreError::Commit(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpoints {
            nudge,
            catch_up,
            caught_up,
            handle,
        })
    }

    /// Called on the writer's thread after each commit. Never blocks.
    pub(in crate::store) fn committed(&self) {
        if self.caught_up.swap(false, Ordering::Relaxed) {
            CAUGHT_UP.set(true);
        }
        if CATCH_UP.take() {
            self.catch_up.store(true, Ordering::Relaxed);
        }
        match self.nudge.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }

    /// Stops the thread after a last checkpoint that truncates the WAL.
    pub(in crate::store) fn stop(self) {
        drop(self.nudge);
        let _ = self.handle.join();
    }
}

fn run(conn: &Connection, nudges: &Receiver<()>, idle: Duration, catch_up: &AtomicBool, caught_up: &AtomicBool) {
    let mut truncated = true;
    loop {
        match nudges.recv_timeout(idle) {
            Ok(()) => {
                truncated = false;
                // Caught up only once what is left is small: while a reader
                // holds an old snapshot nothing past it can be copied, and
                // the writer must not then copy it all inline when it ends.
                if catch_up.swap(false, Ordering::Relaxed)
                    && checkpoint(conn, "PASSIVE")
                        .is_some_and(|(_, log, copied)| log - copied < i64::from(CHECKPOINT_AT))
                {
                    caught_up.store(true, Ordering::Relaxed);
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if !truncated {
                    truncated = truncate(conn, nudges);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                checkpoint(conn, "TRUNCATE");
                return;
            }
        }
    }
}

/// Truncates the idle WAL, giving way to the writer: whether it did.
///
/// A TRUNCATE checkpoint holds the write lock while it copies, syncs and
/// cuts the file, and the writer waits for it (`BEGIN IMMEDIATE` under the
/// busy timeout). So the copying is done first by a PASSIVE checkpoint,
/// which takes no write lock, and the truncation follows only if that
/// copied everything and nothing was committed meanwhile: then it holds
/// the lock only to cut an already copied file.
fn truncate(conn: &Connection, nudges: &Receiver<()>) -> bool {
    let copied_all = |(busy, log, copied): (bool, i64, i64)| !busy && log == copied;
    if !checkpoint(conn, "PASSIVE").is_some_and(copied_all) {
        return false;
    }
    match nudges.try_recv() {
        // A commit came in: not idle after all.
        Ok(()) => false,
        Err(_) => checkpoint(conn, "TRUNCATE").is_some_and(copied_all),
    }
}

/// Runs one checkpoint: whether a reader or the writer kept it from
/// finishing, the WAL's size and how much of it is now copied (in pages);
/// `None` if it failed.
fn checkpoint(conn: &Connection, mode: &str) -> Option<(bool, i64, i64)> {
    // (busy, pages in the WAL, pages copied); busy = 1 when a reader or
    // the writer kept it from finishing, which is normal and retried.
    let done = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
    });
    match done {
        Ok((busy, log, copied)) => Some((busy != 0, log, copied)),
        Err(err) => {
            log::warn!("WAL checkpoint failed (the next one will try again): {err}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::clock::now_ms;
    use crate::store::tests::{insert_all, operation, quiet};
    use crate::store::writer::spawn_writer_idle;
    use crate::store::{open_connection, spawn_writer};

    /// How long an idle writer waits before truncating, in these tests.
    const IDLE: Duration = Duration::from_millis(10);

    /// Sleeps for a time around [`IDLE`], from 4 ms before it to 4 ms after,
    /// a different one each round: the next commit then meets the
    /// truncation in each of its moments.
    fn around_the_truncation(round: u32) {
        std::thread::sleep(IDLE - Duration::from_millis(4) + Duration::from_micros(u64::from(round % 9) * 1000));
    }

    /// Regression: webhooks a second apart (a booking, then its payment)
    /// got 503 "database is locked" when their commit met the idle WAL
    /// truncation, because the writer's deferred transaction read first
    /// (the dedupe lookup) and then could not wait for the write lock.
    /// Hundreds of commits timed around the truncation all succeed.
    #[test]
    fn webhooks_around_the_idle_truncation_are_all_stored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (writer, _thread) = spawn_writer_idle(&path, quiet(), IDLE).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut refused = Vec::new();
        for round in 0..400 {
            let op = operation(Some(&format!("booking-{round}")), &["a"]);
            if let Err(err) = runtime.block_on(writer.insert(op)) {
                refused.push(format!("round {round}: {err}"));
            }
            around_the_truncation(round);
        }
        assert!(refused.is_empty(), "{} of 400 refused: {refused:?}", refused.len());
    }

    /// Regression: the scheduler's claim (which reads before it writes)
    /// failed with "database is locked" at once when another connection
    /// held the write lock, as the idle truncation does for a moment; it
    /// now waits for the lock. So does an insert that reads first.
    #[test]
    fn a_claim_waits_for_a_write_lock_held_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (writer, _thread) = spawn_writer(&path, quiet()).unwrap();
        insert_all(&writer, vec![operation(None, &["a"])]);
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for round in 0..3 {
            let held = hold_the_write_lock(&path, Duration::from_millis(200));
            let claimed = writer.claim_due(now_ms() + 60_000, 10, Vec::new());
            assert!(claimed.is_ok(), "round {round}: the claim failed: {:?}", claimed.err());
            held.join().unwrap();
            let held = hold_the_write_lock(&path, Duration::from_millis(200));
            let inserted = runtime.block_on(writer.insert(operation(Some(&format!("k{round}")), &["a"])));
            assert!(
                inserted.is_ok(),
                "round {round}: the insert failed: {:?}",
                inserted.err()
            );
            held.join().unwrap();
        }
    }

    /// Takes the database's write lock on a connection of its own, as a
    /// checkpoint or another process does, and holds it for `hold` on a
    /// thread; returns once it is taken.
    fn hold_the_write_lock(path: &std::path::Path, hold: Duration) -> std::thread::JoinHandle<()> {
        let conn = open_connection(path, false).unwrap();
        let (locked, taken) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked.send(()).unwrap();
            std::thread::sleep(hold);
            conn.execute_batch("COMMIT").unwrap();
        });
        taken.recv().unwrap();
        thread
    }

    /// An idle writer leaves no WAL behind: a second after the last commit the
    /// checkpoint thread truncates it to nothing.
    #[test]
    fn an_idle_writer_truncates_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (writer, _thread) = spawn_writer(&path, quiet()).unwrap();
        insert_all(&writer, (0..200).map(|_| operation(None, &["a"])).collect());
        let wal = dir.path().join("t.db-wal");
        let wal_size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert!(wal_size() > 0, "the inserts went to the WAL");
        let deadline = Instant::now() + Duration::from_secs(10);
        while wal_size() > 0 {
            assert!(Instant::now() < deadline, "the WAL is still {} bytes", wal_size());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
