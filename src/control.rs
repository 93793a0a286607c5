//! The daemon's control socket, `<database>.sock` beside the database:
//! how `hookrelay backup` asks a running daemon to take the copy on its
//! own writer connection (store/online_backup.rs), which keeps the WAL
//! small, instead of holding a read transaction across the whole copy.
//!
//! A Unix socket, mode 0600 like the database: only the service's user
//! and root can connect, so it needs no token, and no browser can reach
//! it. One request per connection, one line each way:
//! `backup` → `ok <operations> <bytes> <path>` or `error <reason>`. The
//! daemon writes the copy into the database's folder (the one place its
//! sandbox lets it write); the command line then moves it where it was
//! asked to.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixListener;

use crate::clock::now_ms;
use crate::store::{self, BackupReport, Writer};

/// The socket beside `database`.
pub fn socket_path(database: &Path) -> PathBuf {
    store::beside(database, ".sock")
}

/// Binds the socket owner-only: bound under a temporary name, its mode
/// set, then renamed into place, so it is never connectable with looser
/// permissions. A socket left by a daemon that died is replaced (the
/// caller holds the daemon lock, so it cannot be a live one).
pub fn bind(database: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(database);
    let temporary = store::beside(&path, &format!(".{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let listener = UnixListener::bind(&temporary)?;
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&temporary, &path)?;
    Ok(listener)
}

/// Answers requests on `listener` until `shutdown` resolves, then removes
/// the socket.
pub async fn serve(
    listener: UnixListener,
    database: PathBuf,
    writer: Writer,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            // Out of file descriptors, say: not a busy loop.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (database, writer) = (database.clone(), writer.clone());
        // A request is rare and its answer waits for a whole copy: plain
        // blocking I/O on the blocking pool, like the copy itself.
        let Ok(stream) = stream.into_std() else { continue };
        tokio::task::spawn_blocking(move || answer(stream, &database, &writer));
    }
    let _ = std::fs::remove_file(socket_path(&database));
}

/// Reads one request line from `stream` and writes the answer.
fn answer(stream: UnixStream, database: &Path, writer: &Writer) {
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut line = String::new();
    if BufReader::new((&stream).take(256)).read_line(&mut line).is_err() {
        return;
    }
    let answer = match line.trim() {
        "backup" => match backup(database, writer) {
            Ok((report, path)) => format!("ok {} {} {}\n", report.operations, report.bytes, path.display()),
            Err(err) => format!("error {}\n", one_line(&err.to_string())),
        },
        other => format!("error unknown request `{}`\n", one_line(other)),
    };
    let _ = (&stream).write_all(answer.as_bytes());
}

/// Takes a copy into a new file in the database's folder.
fn backup(database: &Path, writer: &Writer) -> Result<(BackupReport, PathBuf), store::StoreError> {
    let path = store::beside(database, &format!(".backup-{}", now_ms()));
    log::info!(
        "backup requested through the control socket: copying into {}",
        path.display()
    );
    let report = store::backup_through(writer, &path)?;
    log::info!(
        "backup done: {} operation(s), {} bytes in {}",
        report.operations,
        report.bytes,
        path.display()
    );
    Ok((report, path))
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// What asking the daemon gave.
pub enum Asked {
    /// No daemon answers on the socket: do it here.
    NoDaemon,
    /// The daemon took the copy: its report and the file it wrote.
    Done(BackupReport, PathBuf),
    /// The daemon tried and said why it failed.
    Failed(String),
}

/// Asks the daemon running on `database`, if any, for a backup.
pub fn ask_backup(database: &Path) -> Asked {
    let Ok(mut stream) = UnixStream::connect(socket_path(database)) else {
        return Asked::NoDaemon;
    };
    // A copy of a large database takes minutes; a daemon that stops
    // answering altogether is given an hour.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(3600)));
    if stream.write_all(b"backup\n").is_err() {
        return Asked::NoDaemon;
    }
    let mut line = String::new();
    if BufReader::new(&stream).read_line(&mut line).is_err() || line.is_empty() {
        return Asked::Failed("the daemon closed the control socket without answering".into());
    }
    let line = line.trim_end();
    if let Some(reason) = line.strip_prefix("error ") {
        return Asked::Failed(reason.to_string());
    }
    let mut parts = line.splitn(4, ' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("ok"), Some(operations), Some(bytes), Some(path)) => match (operations.parse(), bytes.parse()) {
            (Ok(operations), Ok(bytes)) => Asked::Done(BackupReport { operations, bytes }, PathBuf::from(path)),
            _ => Asked::Failed(format!("unexpected answer from the daemon: {line}")),
        },
        _ => Asked::Failed(format!("unexpected answer from the daemon: {line}")),
    }
}
