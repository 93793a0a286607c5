//! The daemon's control socket, `<database>.sock` beside the database:
//! how the command line asks a running daemon to do what would otherwise
//! compete with its writer for SQLite's write lock. That lock is not fair:
//! back-to-back transactions from another process kept the daemon's
//! writer (and every webhook waiting on it) out for over a second. So:
//!
//! - `backup`: the daemon takes the copy on its writer connection
//!   (store/sqlite/online_backup.rs), which keeps the WAL small, instead of a read
//!   transaction held across the whole copy;
//! - `replay`: the daemon queues the named operations' deliveries through
//!   its writer, a few operations a job, with its running config;
//! - `prune`: the daemon deletes in its retention's short batches;
//! - `requeue`: the daemon renders the waiting deliveries of the operations
//!   whose ids follow again, with its running config;
//! - `cancel operation <id> <who>` or `cancel receiver <target> <who>`: the
//!   daemon cancels the waiting deliveries through its writer;
//! - `breaker-reset <target>`: the daemon closes a receiver's breaker, and
//!   its scheduler lets the waiting deliveries go at once;
//! - `save-token`, then four lines (the integration, the access token, the
//!   refresh token, `<expires_at> <obtained_at>`): the daemon keeps a pair
//!   `hookrelay amocrm authorize` obtained.
//!
//! A Unix socket, mode 0600 like the database: only the service's user
//! and root can connect, so it needs no token, and no browser can reach
//! it. One request per connection: a line naming it (`backup`,
//! `replay <1 to include stopped processings, else 0> <who asks>`,
//! `prune <before ms>`, `breaker-reset <scheme://host:port/>`), for
//! `replay` the operation ids after it
//! (whitespace between them) up to the end of the stream. The answer is
//! lines: `refused <id> <kind> <parameter>` for each operation a replay
//! left alone ([`Refused`]), then
//! one of `ok <operations> <bytes> <path>` (backup), `ok <queued>
//! <operations>` (replay), `ok <deleted>` (prune), `ok <1 if it was open,
//! else 0>` (breaker-reset), `ok <cancelled>` (cancel), `left <id> <action>
//! <why>` lines then `ok <rendered>` (requeue), or `error <reason>`.
//! The daemon writes a backup into the database's folder (the one place
//! its sandbox lets it write); the command line then moves it where it was
//! asked to.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;

use crate::clock::now_ms;
use crate::ingest::Shared;
use crate::replay::{self, Ask, Queue, Refused, Report, Rerendered};
use crate::store::{self, BackupReport, Reader, Waiting, Writer};

/// Operation ids read from the socket per step of a replay: what is
/// read and planned at once.
const REPLAY_STEP: usize = 500;

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
    shared: Arc<Shared>,
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
        let (database, shared) = (database.clone(), Arc::clone(&shared));
        // A request is rare and its answer waits for a whole copy or
        // replay: plain blocking I/O on the blocking pool, like the work.
        let Ok(stream) = stream.into_std() else { continue };
        tokio::task::spawn_blocking(move || answer(stream, &database, &shared));
    }
    let _ = std::fs::remove_file(socket_path(&database));
}

/// Reads one request from `stream` and writes the answer.
fn answer(stream: UnixStream, database: &Path, shared: &Shared) {
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut request = BufReader::new(&stream);
    let mut line = String::new();
    if (&mut request).take(256).read_line(&mut line).is_err() {
        return;
    }
    let mut out = &stream;
    let words: Vec<&str> = line.split_whitespace().collect();
    let last = match words.as_slice() {
        ["backup"] => match backup(database, shared.writer()) {
            Ok((report, path)) => format!("ok {} {} {}", report.operations, report.bytes, path.display()),
            Err(err) => format!("error {err}"),
        },
        ["replay", include_stopped, ..] => {
            match replay(request, database, shared, &mut out, &replay_ask(&line, include_stopped)) {
                Ok(report) => format!("ok {} {}", report.queued, report.operations),
                Err(err) => format!("error {err}"),
            }
        }
        ["prune", before] => match before.parse::<i64>() {
            Ok(before) => match crate::retention::prune(shared.writer(), before) {
                Ok(deleted) => {
                    log::info!("prune requested through the control socket: deleted {deleted} operation(s)");
                    format!("ok {deleted}")
                }
                Err(err) => format!("error {err}"),
            },
            Err(_) => format!("error `{before}` is not a time in ms"),
        },
        ["requeue"] => match requeue(request, database, shared, &mut out) {
            Ok(done) => format!("ok {}", done.rerendered),
            Err(err) => format!("error {err}"),
        },
        ["cancel", kind, key, ..] => {
            let source = line.trim().splitn(4, ' ').nth(3).unwrap_or("command line").to_string();
            let which = match (*kind, key.parse::<i64>()) {
                ("operation", Ok(id)) => Some(Waiting::Of(id)),
                ("receiver", _) => Some(Waiting::To(key.to_string())),
                _ => None,
            };
            match which.map(|which| shared.writer().cancel(which, source)) {
                Some(Ok(n)) => {
                    log::info!("cancel requested through the control socket: {n} waiting deliveries cancelled");
                    format!("ok {n}")
                }
                Some(Err(err)) => format!("error {err}"),
                None => format!("error unknown request `{}`", line.trim()),
            }
        }
        ["breaker-reset", target] => match shared.writer().close_breaker(target.to_string()) {
            Ok(was_open) => {
                if was_open {
                    log::info!("receiver {target}: circuit breaker closed by hand (hookrelay receiver reset)");
                }
                format!("ok {}", u8::from(was_open))
            }
            Err(err) => format!("error {err}"),
        },
        ["save-token"] => match read_token(request) {
            Ok((integration, pair)) => match shared.writer().save_token(integration, pair) {
                Ok(()) => {
                    log::info!("OAuth2 tokens kept for an integration (hookrelay amocrm authorize)");
                    "ok 1".to_string()
                }
                Err(err) => format!("error {err}"),
            },
            Err(err) => format!("error {err}"),
        },
        _ => format!("error unknown request `{}`", line.trim()),
    };
    let _ = writeln!(out, "{}", one_line(&last));
}

/// The integration and pair after a `save-token` line.
fn read_token(request: impl BufRead) -> Result<(String, store::TokenPair), String> {
    let lines: Vec<String> = request
        .take(64 * 1024)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let [integration, access, refresh, times] = lines.as_slice() else {
        return Err("save-token takes four lines".into());
    };
    let (expires_at, obtained_at) = times
        .split_once(' ')
        .and_then(|(e, o)| Some((e.parse().ok()?, o.parse().ok()?)))
        .ok_or("save-token: `<expires_at> <obtained_at>` expected")?;
    Ok((
        integration.clone(),
        store::TokenPair {
            access: access.clone(),
            refresh: refresh.clone(),
            expires_at,
            obtained_at,
        },
    ))
}

/// The operation ids after a request's line, up to the end of the stream.
fn read_ids(request: &mut impl BufRead) -> Result<Vec<i64>, String> {
    let mut text = String::new();
    request
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the operation ids: {e}"))?;
    text.split_whitespace()
        .map(|id| id.parse::<i64>().map_err(|_| format!("`{id}` is not an operation id")))
        .collect()
}

/// The replay's [`Ask`] from its request line: `replay <flags> <source…>`,
/// flags a number: 1 to include stopped processings, plus 2 to send
/// operations past an action's `max_age` (`--force`).
fn replay_ask(line: &str, flags: &str) -> Ask {
    let source = line.trim().splitn(3, ' ').nth(2).unwrap_or("command line");
    let flags: u8 = flags.parse().unwrap_or(0);
    Ask {
        include_stopped: flags & 1 != 0,
        force: flags & 2 != 0,
        source: source.to_string(),
    }
}

/// Replays the operations whose ids follow in `request` with the running
/// config, through the writer, telling `out` of each one refused.
fn replay(
    mut request: impl BufRead,
    database: &Path,
    shared: &Shared,
    out: &mut impl Write,
    ask: &Ask,
) -> Result<Report, String> {
    let ids = read_ids(&mut request)?;
    let reader = Reader::open(database).map_err(|e| e.to_string())?;
    let config = shared.config();
    let mut total = Report::default();
    for step in ids.chunks(REPLAY_STEP) {
        let mut operations = Vec::with_capacity(step.len());
        for &id in step {
            match reader.operation(id).map_err(|e| e.to_string())? {
                Some(op) => operations.push(op),
                None => total.refused.push((id, Refused::Missing)),
            }
        }
        let report =
            replay::run(&config, &operations, ask, &Queue::Writer(shared.writer())).map_err(|e| e.to_string())?;
        total.queued += report.queued;
        total.operations += report.operations;
        total.refused.extend(report.refused);
    }
    for (id, why) in &total.refused {
        writeln!(out, "refused {id} {} {}", why.kind(), one_line(&why.param())).map_err(|e| e.to_string())?;
    }
    log::info!(
        "replay requested through the control socket: queued {} deliveries for {} operation(s), {} refused",
        total.queued,
        total.operations,
        total.refused.len()
    );
    Ok(total)
}

/// Renders the waiting deliveries of the operations whose ids follow in
/// `request` again with the running config, telling `out` of each left.
fn requeue(
    mut request: impl BufRead,
    database: &Path,
    shared: &Shared,
    out: &mut impl Write,
) -> Result<Rerendered, String> {
    let ids = read_ids(&mut request)?;
    let reader = Reader::open(database).map_err(|e| e.to_string())?;
    let config = shared.config();
    let mut total = Rerendered::default();
    for id in ids {
        let Some(op) = reader.operation(id).map_err(|e| e.to_string())? else {
            continue;
        };
        let done = replay::rerender(&config, std::slice::from_ref(&op), &Queue::Writer(shared.writer()))
            .map_err(|e| e.to_string())?;
        total.rerendered += done.rerendered;
        total.left.extend(done.left);
    }
    for (id, action, why) in &total.left {
        writeln!(out, "left {id} {action} {}", one_line(&why.store())).map_err(|e| e.to_string())?;
    }
    log::info!(
        "requeue requested through the control socket: {} waiting deliveries rendered again",
        total.rerendered
    );
    Ok(total)
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
pub enum Asked<T> {
    /// No daemon answers on the socket: do it here.
    NoDaemon,
    /// The daemon did it.
    Done(T),
    /// The daemon tried and said why it failed.
    Failed(String),
}

/// Sends `request` to the daemon running on `database`, if any, and reads
/// its answer lines up to the last (`ok …`), which it returns with the
/// lines before it.
fn send(database: &Path, request: &[u8]) -> Asked<(String, Vec<String>)> {
    let Ok(mut stream) = UnixStream::connect(socket_path(database)) else {
        return Asked::NoDaemon;
    };
    // A copy or replay of a large database takes minutes; a daemon that
    // stops answering altogether is given an hour.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(3600)));
    if stream.write_all(request).is_err() || stream.shutdown(std::net::Shutdown::Write).is_err() {
        return Asked::NoDaemon;
    }
    let mut lines = Vec::new();
    for line in BufReader::new(&stream).lines() {
        match line {
            Ok(line) => lines.push(line),
            Err(err) => return Asked::Failed(format!("reading the daemon's answer: {err}")),
        }
    }
    let Some(last) = lines.pop() else {
        return Asked::Failed("the daemon closed the control socket without answering".into());
    };
    if let Some(reason) = last.strip_prefix("error ") {
        return Asked::Failed(reason.to_string());
    }
    match last.strip_prefix("ok ") {
        Some(rest) => Asked::Done((rest.to_string(), lines)),
        None => Asked::Failed(format!("unexpected answer from the daemon: {last}")),
    }
}

/// Asks the daemon running on `database`, if any, for a backup: its report
/// and the file it wrote.
pub fn ask_backup(database: &Path) -> Asked<(BackupReport, PathBuf)> {
    let (rest, _) = match send(database, b"backup\n") {
        Asked::Done(done) => done,
        Asked::NoDaemon => return Asked::NoDaemon,
        Asked::Failed(why) => return Asked::Failed(why),
    };
    let mut parts = rest.splitn(3, ' ');
    match (parts.next().map(str::parse), parts.next().map(str::parse), parts.next()) {
        (Some(Ok(operations)), Some(Ok(bytes)), Some(path)) => {
            Asked::Done((BackupReport { operations, bytes }, PathBuf::from(path)))
        }
        _ => Asked::Failed(format!("unexpected answer from the daemon: ok {rest}")),
    }
}

/// [`send`]s the request line `head` followed by `ids`, one a line.
fn send_ids(database: &Path, head: &str, ids: &[i64]) -> Asked<(String, Vec<String>)> {
    let mut request = format!("{head}\n").into_bytes();
    for id in ids {
        request.extend_from_slice(format!("{id}\n").as_bytes());
    }
    send(database, &request)
}

/// Asks the daemon running on `database`, if any, to replay `ids` with its
/// running config.
pub fn ask_replay(database: &Path, ids: &[i64], ask: &Ask) -> Asked<Report> {
    let flags = u8::from(ask.include_stopped) | (u8::from(ask.force) << 1);
    let head = format!("replay {flags} {}", one_line(&ask.source));
    let (rest, lines) = match send_ids(database, &head, ids) {
        Asked::Done(done) => done,
        Asked::NoDaemon => return Asked::NoDaemon,
        Asked::Failed(why) => return Asked::Failed(why),
    };
    let mut report = Report::default();
    for line in &lines {
        let refused = line.strip_prefix("refused ").and_then(|rest| {
            let mut parts = rest.splitn(3, ' ');
            let id = parts.next()?.parse().ok()?;
            Some((id, Refused::from_parts(parts.next()?, parts.next().unwrap_or(""))?))
        });
        match refused {
            Some(refused) => report.refused.push(refused),
            None => return Asked::Failed(format!("unexpected answer from the daemon: {line}")),
        }
    }
    match rest.split_once(' ').map(|(q, o)| (q.parse(), o.parse())) {
        Some((Ok(queued), Ok(operations))) => {
            report.queued = queued;
            report.operations = operations;
            Asked::Done(report)
        }
        _ => Asked::Failed(format!("unexpected answer from the daemon: ok {rest}")),
    }
}

/// Asks the daemon running on `database`, if any, to render the waiting
/// deliveries of `ids` again with its running config.
pub fn ask_requeue(database: &Path, ids: &[i64]) -> Asked<Rerendered> {
    let (rest, lines) = match send_ids(database, "requeue", ids) {
        Asked::Done(done) => done,
        Asked::NoDaemon => return Asked::NoDaemon,
        Asked::Failed(why) => return Asked::Failed(why),
    };
    let mut done = Rerendered::default();
    for line in &lines {
        let left = line.strip_prefix("left ").and_then(|rest| {
            let mut parts = rest.splitn(3, ' ');
            Some((
                parts.next()?.parse().ok()?,
                parts.next()?.to_string(),
                crate::model::said::Said::read(parts.next()?),
            ))
        });
        match left {
            Some(left) => done.left.push(left),
            None => return Asked::Failed(format!("unexpected answer from the daemon: {line}")),
        }
    }
    match rest.parse() {
        Ok(n) => {
            done.rerendered = n;
            Asked::Done(done)
        }
        Err(_) => Asked::Failed(format!("unexpected answer from the daemon: ok {rest}")),
    }
}

/// Asks the daemon running on `database`, if any, to cancel the waiting
/// deliveries `which` names, for `source`: how many.
pub fn ask_cancel(database: &Path, which: &Waiting, source: &str) -> Asked<usize> {
    let (kind, key) = match which {
        Waiting::Of(id) => ("operation", id.to_string()),
        Waiting::To(target) => ("receiver", target.clone()),
    };
    match send(
        database,
        format!("cancel {kind} {key} {}\n", one_line(source)).as_bytes(),
    ) {
        Asked::Done((rest, _)) => match rest.parse() {
            Ok(n) => Asked::Done(n),
            Err(_) => Asked::Failed(format!("unexpected answer from the daemon: ok {rest}")),
        },
        Asked::NoDaemon => Asked::NoDaemon,
        Asked::Failed(why) => Asked::Failed(why),
    }
}

/// Asks the daemon running on `database`, if any, to close `target`'s
/// circuit breaker: whether it was open.
pub fn ask_breaker_reset(database: &Path, target: &str) -> Asked<bool> {
    match send(database, format!("breaker-reset {target}\n").as_bytes()) {
        Asked::Done((rest, _)) => Asked::Done(rest == "1"),
        Asked::NoDaemon => Asked::NoDaemon,
        Asked::Failed(why) => Asked::Failed(why),
    }
}

/// Asks the daemon running on `database`, if any, to delete what is
/// prunable before `before` (ms since the epoch): how many operations went.
pub fn ask_prune(database: &Path, before: i64) -> Asked<usize> {
    match send(database, format!("prune {before}\n").as_bytes()) {
        Asked::Done((rest, _)) => match rest.parse() {
            Ok(deleted) => Asked::Done(deleted),
            Err(_) => Asked::Failed(format!("unexpected answer from the daemon: ok {rest}")),
        },
        Asked::NoDaemon => Asked::NoDaemon,
        Asked::Failed(why) => Asked::Failed(why),
    }
}

/// Asks the daemon running on `database`, if any, to keep an
/// integration's OAuth2 pair.
pub fn ask_save_token(database: &Path, integration: &str, pair: &store::TokenPair) -> Asked<()> {
    let request = format!(
        "save-token\n{}\n{}\n{}\n{} {}\n",
        one_line(integration),
        one_line(&pair.access),
        one_line(&pair.refresh),
        pair.expires_at,
        pair.obtained_at
    );
    match send(database, request.as_bytes()) {
        Asked::Done(_) => Asked::Done(()),
        Asked::NoDaemon => Asked::NoDaemon,
        Asked::Failed(why) => Asked::Failed(why),
    }
}
