//! A backup taken on the daemon's own writer connection.
//!
//! SQLite's backup API keeps a copy current when the database is changed
//! through the connection the backup reads from, so a backup stepped by
//! the writer thread between its transactions needs no long read
//! transaction. The one `hookrelay backup` takes on its own connection
//! does (see backup.rs), and that read pins the WAL: under load it grew
//! by 400 MB during a 15 s copy, and copying it back afterwards held one
//! acknowledgement for 166 ms (BENCHMARKS.md, session 6). Here checkpoints
//! go on as usual and the WAL stays small.
//!
//! rusqlite's safe `Backup` borrows the source connection for its whole
//! life, which the writer also needs mutably for its transactions, so the
//! handle is kept here through its C API.

use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use rusqlite::{ffi, Connection};

use crate::store::sqlite::backup::{create_private, BackupReport, STEP_PAGES};
use crate::store::{open_existing_file, StoreError, Writer};

/// A backup in progress: the copy's connection and SQLite's handle.
pub(in crate::store) struct OnlineBackup {
    target: PathBuf,
    file: std::fs::File,
    handle: NonNull<ffi::sqlite3_backup>,
    /// The copy's connection, kept open for the handle (closed after Drop
    /// has finished it).
    _copy: Connection,
}

/// Where a backup stands after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Pages still to copy, of the database's pages.
    More {
        remaining: i32,
        total: i32,
    },
    Done,
}

impl OnlineBackup {
    /// Starts copying `source` (the writer's connection) into the empty
    /// file `target`.
    pub(in crate::store) fn start(source: &Connection, target: &Path) -> Result<OnlineBackup, StoreError> {
        let copy = Connection::open(target)?;
        // Synced by hand after each step; a copy cut short is deleted.
        copy.pragma_update(None, "journal_mode", "OFF")?;
        copy.pragma_update(None, "synchronous", "OFF")?;
        copy.pragma_update(None, "cache_size", STEP_PAGES)?;
        let file = std::fs::File::open(target)
            .map_err(|e| StoreError::Unusable(format!("cannot open {}: {e}", target.display())))?;
        let main = c"main";
        // SAFETY: both handles are open connections; the backup is finished
        // (Drop) before either is closed: `copy` is a field dropped after
        // it, and the writer drops its backup before its connection.
        let handle = unsafe { ffi::sqlite3_backup_init(copy.handle(), main.as_ptr(), source.handle(), main.as_ptr()) };
        let Some(handle) = NonNull::new(handle) else {
            return Err(StoreError::Unusable(format!(
                "cannot start the backup: {}",
                // SAFETY: `copy` is open; the message is read before any other call.
                unsafe { std::ffi::CStr::from_ptr(ffi::sqlite3_errmsg(copy.handle())) }.to_string_lossy()
            )));
        };
        Ok(OnlineBackup {
            target: target.to_path_buf(),
            file,
            handle,
            _copy: copy,
        })
    }

    /// The file being written.
    pub(in crate::store) fn target(&self) -> &Path {
        &self.target
    }

    /// Copies up to `pages` pages and syncs them. Call between the
    /// writer's transactions, never inside one.
    pub(in crate::store) fn step(&mut self, pages: i32) -> Result<Step, StoreError> {
        // SAFETY: the handle is live until Drop.
        let rc = unsafe { ffi::sqlite3_backup_step(self.handle.as_ptr(), pages) };
        self.file
            .sync_data()
            .map_err(|e| StoreError::Unusable(format!("cannot sync {}: {e}", self.target.display())))?;
        match rc {
            ffi::SQLITE_DONE => Ok(Step::Done),
            ffi::SQLITE_OK | ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED => {
                // SAFETY: as above.
                let (remaining, total) = unsafe {
                    (
                        ffi::sqlite3_backup_remaining(self.handle.as_ptr()),
                        ffi::sqlite3_backup_pagecount(self.handle.as_ptr()),
                    )
                };
                Ok(Step::More { remaining, total })
            }
            code => Err(StoreError::Unusable(format!(
                "backup step failed: {}",
                rusqlite::Error::SqliteFailure(ffi::Error::new(code), None)
            ))),
        }
    }
}

impl Drop for OnlineBackup {
    fn drop(&mut self) {
        // SAFETY: finished exactly once, here; errors were seen by `step`.
        unsafe { ffi::sqlite3_backup_finish(self.handle.as_ptr()) };
    }
}

/// The longest pause between two steps.
const MAX_PAUSE: Duration = Duration::from_millis(100);
/// Steps in a row that copy nothing (the copy locked, or the backup
/// starting over because another process wrote) before giving up.
const STALLED_STEPS: u32 = 600;

/// Writes a consistent copy of the database into the new file `target`,
/// stepping the backup on `writer`'s thread with a pause as long as each
/// step took (so most of the writer's commits carry no copying).
pub fn backup_through(writer: &Writer, target: &Path) -> Result<BackupReport, StoreError> {
    create_private(target)?;
    let result = (|| {
        let (mut least, mut stalled) = (i32::MAX, 0);
        loop {
            let started = Instant::now();
            match writer.backup_step(target.to_path_buf(), STEP_PAGES)? {
                Step::Done => break,
                Step::More { remaining, .. } => {
                    if remaining < least {
                        (least, stalled) = (remaining, 0);
                    } else {
                        stalled += 1;
                        if stalled >= STALLED_STEPS {
                            return Err(StoreError::Unusable(format!(
                                "the copy into {} made no progress in {STALLED_STEPS} steps; is another process writing to the database all the time?",
                                target.display()
                            )));
                        }
                    }
                    std::thread::sleep(started.elapsed().clamp(Duration::from_millis(1), MAX_PAUSE));
                }
            }
        }
        let copy = open_existing_file(target)?;
        let operations: i64 = copy.query_row("SELECT count(*) FROM operations", [], |row| row.get(0))?;
        Ok(BackupReport {
            operations: operations as u64,
            bytes: std::fs::metadata(target).map(|m| m.len()).unwrap_or(0),
        })
    })();
    if result.is_err() {
        writer.backup_abort();
        // Leave no half-written copy that looks like a backup.
        let _ = std::fs::remove_file(target);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::spawn_writer;
    use crate::store::tests::{insert_all, operation, quiet};

    /// Webhooks stored between the steps are in the copy: the backup
    /// follows the writer's own changes instead of starting over, and
    /// the copy is owner-only.
    #[test]
    fn a_backup_on_the_writer_follows_its_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (writer, thread) = spawn_writer(&path, quiet()).unwrap();
        insert_all(&writer, (0..300).map(|_| operation(None, &["a"])).collect());
        let target = dir.path().join("copy.db");
        create_private(&target).unwrap();
        let mut stored = 300;
        let mut steps = 0;
        while let Step::More { remaining, total } = writer.backup_step(target.clone(), 2).unwrap() {
            assert!(remaining <= total, "{remaining} of {total}");
            insert_all(&writer, vec![operation(None, &["b"])]);
            stored += 1;
            steps += 1;
        }
        assert!(steps > 3, "copied in {steps} steps: too few to test anything");
        let copy = open_existing_file(&target).unwrap();
        let copied: i64 = copy
            .query_row("SELECT count(*) FROM operations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(copied, stored);
        let check: String = copy.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);

        // A second backup through the helper, then an abort that finds none.
        let report = backup_through(&writer, &dir.path().join("again.db")).unwrap();
        assert_eq!(report.operations, stored as u64);
        writer.backup_abort();
        drop(writer);
        thread.join().unwrap();
    }
}
