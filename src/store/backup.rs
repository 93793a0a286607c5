//! `hookrelay backup`: a consistent copy of a running daemon's database.
//!
//! `VACUUM INTO` copies the database as one read transaction sees it. In
//! WAL mode a reader never blocks the writer, so webhooks keep being
//! acknowledged during the copy (the WAL grows until it ends, since a
//! checkpoint cannot pass an open read). Unlike the page-by-page backup
//! API, it does not start over when the daemon writes meanwhile, so it
//! finishes under constant load; and the copy comes out compact.

use std::path::Path;

use super::{open_existing, StoreError};

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub operations: u64,
    pub bytes: u64,
}

/// Copies the database at `database` into the new file `target`, created
/// owner-only first: the copy holds the same tokens and requests.
pub fn backup(database: &Path, target: &Path) -> Result<BackupReport, StoreError> {
    let conn = open_existing(database)?;
    create_private(target)?;
    let copied = conn.execute("VACUUM INTO ?1", [target.to_string_lossy()]);
    if let Err(err) = copied {
        // Leave no half-written copy that looks like a backup.
        let _ = std::fs::remove_file(target);
        return Err(err.into());
    }
    let copy = open_existing(target)?;
    let operations: i64 = copy.query_row("SELECT count(*) FROM operations", [], |row| row.get(0))?;
    let bytes = std::fs::metadata(target).map(|m| m.len()).unwrap_or(0);
    Ok(BackupReport {
        operations: operations as u64,
        bytes,
    })
}

/// Creates `target` empty with mode 0600, refusing one that exists: a
/// backup never overwrites.
fn create_private(target: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(target).map(drop).map_err(|err| {
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
