//! `hookrelay backup` when no daemon answers on its control socket: a
//! consistent copy taken on a connection of its own. (A running daemon
//! takes the copy itself, on its writer connection: online_backup.rs.)
//!
//! SQLite's online backup API copies the database a few pages at a time.
//! It starts over whenever another connection writes between two steps,
//! which under constant load would be forever, unless the copying
//! connection holds one read transaction across all the steps: every step
//! then reads the same snapshot and nothing starts over. In WAL mode that
//! reader never blocks the daemon's writer (the WAL grows until the copy is
//! done, since a checkpoint cannot pass an open read).
//!
//! The copy is paced: [`STEP_PAGES`] pages per step, each step's pages
//! synced to disk before the next, and a pause as long as the step took.
//! The first version (`VACUUM INTO`) wrote a 1.1 GB copy in 9 s in one go,
//! and one acknowledgement waited 1.2 s behind those writes
//! (BENCHMARKS.md, "Pruning and backup stalls").

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::Connection;

use crate::store::{open_existing_file, StoreError};

/// Pages (4 KiB each) copied and synced per step.
pub(in crate::store) const STEP_PAGES: i32 = 256;
/// How long a step that finds the copy or the database locked waits, and
/// how many such waits in a row end the backup.
const LOCKED_WAIT: Duration = Duration::from_millis(100);
const LOCKED_TRIES: u32 = 600;

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub operations: u64,
    pub bytes: u64,
}

/// Copies the database at `database` into the new file `target`, created
/// owner-only first: the copy holds the same tokens and requests.
pub fn backup(database: &Path, target: &Path) -> Result<BackupReport, StoreError> {
    let source = open_existing_file(database)?;
    create_private(target)?;
    if let Err(err) = copy(&source, target) {
        // Leave no half-written copy that looks like a backup.
        let _ = std::fs::remove_file(target);
        return Err(err);
    }
    let copy = open_existing_file(target)?;
    let operations: i64 = copy.query_row("SELECT count(*) FROM operations", [], |row| row.get(0))?;
    let bytes = std::fs::metadata(target).map(|m| m.len()).unwrap_or(0);
    Ok(BackupReport {
        operations: operations as u64,
        bytes,
    })
}

/// Copies `source`, as one snapshot of it, into the empty file `target`.
fn copy(source: &Connection, target: &Path) -> Result<(), StoreError> {
    let synced = |err: std::io::Error| StoreError::Unusable(format!("cannot sync {}: {err}", target.display()));
    // The snapshot: a read transaction, begun by its first read.
    source.execute_batch("BEGIN")?;
    source.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))?;
    let mut copy = Connection::open(target)?;
    // Synced by hand after each step instead; a copy cut short is deleted.
    copy.pragma_update(None, "journal_mode", "OFF")?;
    copy.pragma_update(None, "synchronous", "OFF")?;
    // Small, so each step's pages reach the file rather than wait in memory.
    copy.pragma_update(None, "cache_size", STEP_PAGES)?;
    let file = std::fs::File::open(target).map_err(synced)?;
    {
        let backup = Backup::new(source, &mut copy)?;
        let mut locked = 0;
        loop {
            let started = Instant::now();
            let step = backup.step(STEP_PAGES)?;
            file.sync_data().map_err(synced)?;
            match step {
                StepResult::Done => break,
                StepResult::More => {
                    locked = 0;
                    std::thread::sleep(started.elapsed());
                }
                StepResult::Busy | StepResult::Locked => {
                    locked += 1;
                    if locked >= LOCKED_TRIES {
                        return Err(StoreError::Unusable(format!(
                            "{} stayed locked for a minute; is something else writing to it?",
                            target.display()
                        )));
                    }
                    std::thread::sleep(LOCKED_WAIT);
                }
                // A result this build does not know: treat as still going.
                _ => {}
            }
        }
    }
    drop(copy);
    source.execute_batch("COMMIT")?;
    file.sync_all().map_err(synced)?;
    Ok(())
}

/// Creates `target` empty with mode 0600, refusing one that exists: a
/// backup never overwrites. Returns it open for writing.
pub fn create_private(target: &Path) -> Result<std::fs::File, StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(target).map_err(|err| {
        StoreError::Unusable(if err.kind() == std::io::ErrorKind::AlreadyExists {
            format!(
                "{} exists; a backup never overwrites, name a new file",
                target.display()
            )
        } else {
            format!("cannot create {}: {err}", target.display())
        })
    })
}
