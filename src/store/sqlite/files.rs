//! The database's files as files: the folder it lives in, its mode, and
//! the lock that keeps a second daemon off it.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::store::StoreError;

/// Held by the running daemon for its whole life; dropping it releases the
/// lock (as does the process ending, however it ends).
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
}

/// A file beside the database: its name with `suffix` appended
/// (`.lock`, `-search`, `.sock`, …).
pub fn beside(database: &Path, suffix: &str) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The lock file beside the database: `<database>.lock`.
fn lock_path(database: &Path) -> PathBuf {
    beside(database, ".lock")
}

/// Takes the exclusive lock beside `database`, so a second daemon on the
/// same file refuses to start instead of fighting the first for SQLite's
/// write lock (which answered webhooks with 503 `database is locked`).
/// The command line does not take it: `replay` and `prune` run beside the
/// daemon.
pub fn lock_daemon(database: &Path) -> Result<DaemonLock, StoreError> {
    let path = lock_path(database);
    let file =
        open_private(&path).map_err(|err| StoreError::Unusable(format!("lock file {}: {err}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(DaemonLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(
            database.display().to_string(),
            path.display().to_string(),
        )),
        Err(std::fs::TryLockError::Error(err)) => {
            Err(StoreError::Unusable(format!("cannot lock {}: {err}", path.display())))
        }
    }
}

/// Opens (creating if needed) a file only its owner may read.
fn open_private(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Checks that the database's folder exists and that this process can
/// write there (and the database, if it exists), naming the cause in one
/// line: SQLite's own "unable to open database file" says neither which
/// nor why.
pub fn check_folder(database: &Path) -> Result<(), StoreError> {
    let folder = match database.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    match std::fs::metadata(folder) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::Unusable(format!(
                "database folder {} does not exist (storage.path = {}); create it or change storage.path",
                folder.display(),
                database.display()
            )))
        }
        Err(err) => {
            return Err(StoreError::Unusable(format!(
                "database folder {}: {err}",
                folder.display()
            )))
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(StoreError::Unusable(format!(
                "{} is not a folder (storage.path = {})",
                folder.display(),
                database.display()
            )))
        }
        Ok(_) => {}
    }
    // Creating a file is the only test that covers every cause (mode,
    // owner, ACLs, a read-only mount).
    let probe = folder.join(format!(".hookrelay-write-test-{}", std::process::id()));
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(err) => {
            return Err(StoreError::Unusable(format!(
                "database folder {} is not writable by {}: {err}",
                folder.display(),
                who_am_i()
            )))
        }
    }
    if database.exists() {
        if let Err(err) = std::fs::OpenOptions::new().write(true).open(database) {
            return Err(StoreError::Unusable(format!(
                "database {} is not writable by {}: {err}",
                database.display(),
                who_am_i()
            )));
        }
    }
    Ok(())
}

/// "user NAME (uid N)" for this process, as far as it can be told.
fn who_am_i() -> String {
    let uid = std::fs::read_to_string("/proc/self/status").ok().and_then(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1).map(str::to_string))
    });
    let Some(uid) = uid else {
        return "this user".into();
    };
    let name = std::fs::read_to_string("/etc/passwd").ok().and_then(|passwd| {
        passwd.lines().find_map(|line| {
            let mut parts = line.split(':');
            let name = parts.next()?;
            (parts.nth(1)? == uid).then(|| name.to_string())
        })
    });
    match name {
        Some(name) => format!("user {name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// Makes the database owner-only before SQLite opens it. A new file is
/// created empty with mode 0600 (SQLite takes an empty file as a new
/// database, and gives its -wal and -shm files the database's mode), so
/// there is no moment another local user could open it. An existing one
/// readable by others, with its -wal and -shm, is tightened, and the log
/// says so.
#[cfg(unix)]
pub(in crate::store) fn owner_only(path: &Path) {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    if created.is_ok() {
        return;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = std::path::PathBuf::from(name);
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            continue;
        }
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => log::warn!("{} was mode {mode:04o}; made it 0600 (owner only)", file.display()),
            Err(err) => log::warn!(
                "{} is mode {mode:04o} and could not be made owner-only: {err}",
                file.display()
            ),
        }
    }
}

#[cfg(not(unix))]
pub(in crate::store) fn owner_only(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: two daemons on one database both started, and 15 of 40
    /// webhooks got 503 `database is locked`; the second is now refused.
    #[test]
    fn a_second_daemon_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("h.db");
        let first = lock_daemon(&database).unwrap();
        let err = lock_daemon(&database).unwrap_err();
        assert!(matches!(err, StoreError::Locked(..)), "{err}");
        assert!(err.to_string().contains("another hookrelay daemon is using"), "{err}");
        drop(first);
        lock_daemon(&database).unwrap();
    }

    /// Regression: a missing folder printed the path three times and never
    /// the cause; now one line says which folder and why.
    #[test]
    fn a_missing_folder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("nope").join("h.db");
        let err = check_folder(&database).unwrap_err().to_string();
        assert!(err.starts_with("database folder "), "{err}");
        assert!(err.contains("nope does not exist"), "{err}");
        check_folder(&dir.path().join("h.db")).unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = check_folder(&file.join("h.db")).unwrap_err().to_string();
        assert!(err.contains("is not a folder"), "{err}");
    }
}
