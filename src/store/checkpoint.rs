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

use super::{open_connection, StoreError};

/// WAL pages at which the writer checkpoints inline (SQLite's default).
const CHECKPOINT_AT: c_int = 1_000;
/// WAL pages past which the checkpoint thread does the copying.
const CATCH_UP_AT: c_int = 4 * CHECKPOINT_AT;
/// Time without commits after which the WAL is truncated.
const IDLE: Duration = Duration::from_secs(1);
/// What the WAL file is cut back to whenever it starts over.
pub(super) const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

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
pub(super) struct Checkpoints {
    nudge: SyncSender<()>,
    /// Writer to thread: copy the WAL. Thread to writer: copied.
    catch_up: Arc<AtomicBool>,
    caught_up: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl Checkpoints {
    /// Sets up `writer`'s connection and starts the thread.
    pub(super) fn start(writer: &Connection, path: &Path) -> Result<Self, StoreError> {
        writer.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        writer.wal_hook(Some(wal_pages));
        let conn = open_connection(path, false)?;
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
                move || run(&conn, &nudges, &flags.0, &flags.1)
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
    pub(super) fn committed(&self) {
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
    pub(super) fn stop(self) {
        drop(self.nudge);
        let _ = self.handle.join();
    }
}

fn run(conn: &Connection, nudges: &Receiver<()>, catch_up: &AtomicBool, caught_up: &AtomicBool) {
    let mut truncated = true;
    loop {
        match nudges.recv_timeout(IDLE) {
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
                    truncated = checkpoint(conn, "TRUNCATE").is_some_and(|(busy, log, copied)| !busy && log == copied);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                checkpoint(conn, "TRUNCATE");
                return;
            }
        }
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
    use super::super::spawn_writer;
    use super::super::tests::{insert_all, operation, quiet};

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
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while wal_size() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL is still {} bytes",
                wal_size()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
