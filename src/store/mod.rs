//! The store, on SQLite or PostgreSQL: the only module that speaks SQL.
//!
//! One writer thread owns the only writing connection and commits whatever
//! is queued in one transaction (group commit); readers open their own
//! connections. Both engines run the same statements (`db.rs`); what
//! several instances sharing one PostgreSQL database need is in `postgres/`.
//! Times are milliseconds since the Unix epoch.
//!
//! # Rooms
//!
//! - The top of `store/` is what both engines share: the connection
//!   (`db.rs`), the writer (`writer.rs`) and its statements (`write.rs`, a
//!   delivery's row in `deliveries.rs`, notifications in `notices.rs`, the
//!   `max_age` sweep in `expiry.rs`), the reads (`read.rs`, `overview.rs`,
//!   `receivers.rs`, `export.rs`) and replay's inserts (`replay.rs`). A new
//!   table both engines keep (destination tokens, batches) goes here, with
//!   its statements in a file of its own, written once with `?1`
//!   placeholders; each engine's schema adds it as a migration.
//! - `sqlite/`: what only SQLite has: schema and migrations, WAL
//!   checkpoints, the database's files and modes, both backups, the
//!   search index and its indexer.
//! - `postgres/`: what only PostgreSQL has: schema, leases and SKIP LOCKED
//!   claims, TLS, the cluster session, `migrate-store`.
//!
//! On SQLite, every transaction that writes takes the write lock at its
//! start (`Db::begin_writing`'s `BEGIN IMMEDIATE`, or rusqlite's
//! immediate behaviour) and waits for it under `BUSY_TIMEOUT`: a
//! deferred one that has read cannot wait when its first write needs the
//! lock, and fails at once with "database is locked" if the checkpoint
//! thread or another process holds it. What only reads (backup's and
//! migrate-store's snapshots, the readers) begins deferred. Bulk writes
//! from the command line go through a running daemon's writer
//! (`control.rs`), since SQLite's lock is not fair to a waiting writer.

/// The condition that delivery `d` stands for its action: no newer one of
/// the same action for the same operation (a replay's delivery takes the
/// place of the one it replays). A literal, so `concat!` can put it into
/// constant SQL; the history, its summaries and the totals all count by it.
macro_rules! newest_per_action {
    () => {
        "NOT EXISTS (SELECT 1 FROM deliveries l WHERE l.operation_id = d.operation_id AND l.action = d.action AND l.id > d.id)"
    };
}

mod attempts;
mod batches;
mod db;
mod deliveries;
mod expiry;
mod export;
mod history;
mod inserts;
mod notices;
mod overview;
mod postgres;
mod read;
mod receivers;
mod remembered;
mod replay;
/// Bulk-seeding for the benchmark; not in the daemon's build.
#[cfg(feature = "bench")]
pub mod seed;
mod sqlite;
mod tokens;
mod totals;
mod write;
mod writer;

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use crate::model::location::Location;
use crate::model::{Channel, DeliveryRequest};
use db::{Db, Pg};

pub use batches::{Batch, BatchAttempt, BatchQueue, BatchStep};
pub use db::{LEASE_MS, STATEMENTS};
pub use expiry::Expired;
pub use export::{ExportFilter, ExportRow};
pub use history::{Chip, Failing, HistoryFilter};
pub use overview::{ActionQueue, Overview, RecentWarning, SilenceMark};
pub use postgres::claims::Turns;
pub use postgres::cluster::{Cluster, Duty};
pub use postgres::migrate::{migrate_store, Copied};
pub use read::{
    AllSkipped, AttemptView, DeliveryView, Notification, OperationSummary, OperationView, QueueStats, Reader,
    ReplayView,
};
pub use receivers::{Backlog, ProcessingStatus, ReceiverStatus};
pub use replay::{queue_replays, Replay};
pub use sqlite::backup::{backup, create_private, BackupReport};
pub use sqlite::files::{beside, check_folder, lock_daemon, DaemonLock};
pub use sqlite::indexer::{index_search, start_indexer, Indexer};
pub use sqlite::online_backup::{backup_through, Step as BackupStep};
pub use tokens::{save_token, TokenPair};
pub use totals::{Counted, HourCount, TotalsFilter};
pub use write::Waiting;
pub use writer::{spawn_writer, Hooks, Writer};

/// The notifications column holding a channel's "sent at".
fn channel_column(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "email_sent_at",
        Channel::Telegram => "telegram_sent_at",
    }
}

/// `meta` key: when a notification last went out.
const META_LAST_NOTIFIED: &str = "last_notified_at";
/// `meta` key: the last /healthz write probe.
const META_HEALTH_PROBE: &str = "health_probe_at";

/// Deletes one batch of finished operations received before ?1 (at most ?2);
/// deliveries and attempts go with them (ON DELETE CASCADE).
const PRUNE_BATCH: &str = "DELETE FROM operations WHERE id IN (
     SELECT id FROM operations WHERE received_at < ?1 AND status != 'queued' ORDER BY received_at LIMIT ?2)";

/// The field an operation's event is read from, as Klientiks's addresses
/// send it (`event=appointment_paid`): the console filters and counts by it.
pub const EVENT_FIELD: &str = "event";

/// The earliest accepted operation of a processing with a dedupe key, since a time.
const DUPLICATE_OF: &str = "SELECT id FROM operations
     WHERE processing = ?1 AND dedupe_key = ?2 AND received_at >= ?3
     ORDER BY id LIMIT 1";

/// How long a connection waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database: {}", postgres::claims::describe(.0))]
    Postgres(#[from] ::postgres::Error),
    #[error("database schema version {0} is newer than this hookrelay understands ({1}); upgrade hookrelay")]
    TooNew(i64, i64),
    #[error("database schema version {0} is older than this hookrelay ({1}); run the daemon once to migrate it")]
    TooOld(i64, i64),
    #[error("no database at {0}: start the daemon once to create it")]
    Missing(String),
    #[error("database commit failed: {0}")]
    Commit(String),
    #[error("the database writer has stopped")]
    WriterGone,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database's folder or file cannot be used; the text names the cause.
    #[error("{0}")]
    Unusable(String),
    #[error("another hookrelay daemon is using {0} (it holds the lock {1}); stop it first")]
    Locked(String, String),
}

/// The page cache of the SQLite connections that work beside the writer
/// (the search indexer's two, the checkpoint's), in KiB: SQLite's default
/// is 2 MB each, which the daemon's peak memory paid for under load.
pub(crate) const SIDE_CACHE_KIB: i64 = 512;

/// Opens a connection with the pragmas every hookrelay connection uses.
fn open_connection(path: &Path, create: bool) -> Result<Connection, StoreError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    } else if !path.exists() {
        return Err(StoreError::Missing(path.display().to_string()));
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL lets readers run beside the writer; FULL makes every commit durable.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Opens an existing database for the command line, which must be at this
/// build's schema: only the daemon migrates.
fn open_existing(location: &Location) -> Result<Db, StoreError> {
    let (db, version, current) = match location {
        Location::File(path) => (
            Db::Sqlite(open_existing_file(path)?),
            sqlite::schema::VERSION,
            sqlite::schema::VERSION,
        ),
        Location::Postgres(url) => {
            let db = Db::Postgres(Box::new(Pg::connect(url)?));
            let version = postgres::schema::version(&db)?;
            if version == 0 {
                return Err(StoreError::Missing(location.to_string()));
            }
            (db, version, postgres::schema::VERSION)
        }
    };
    if version > current {
        return Err(StoreError::TooNew(version, current));
    }
    if version < current {
        return Err(StoreError::TooOld(version, current));
    }
    Ok(db)
}

/// [`open_existing`] for what only SQLite has (backups, the search index).
fn open_existing_file(path: &Path) -> Result<Connection, StoreError> {
    let conn = open_connection(path, false)?;
    let version = sqlite::schema::version(&conn)?;
    if version > sqlite::schema::VERSION {
        return Err(StoreError::TooNew(version, sqlite::schema::VERSION));
    }
    if version < sqlite::schema::VERSION {
        return Err(StoreError::TooOld(version, sqlite::schema::VERSION));
    }
    Ok(conn)
}

/// Pruning from the command line, on a connection of its own. Each batch
/// is one short transaction, so a running daemon's writer waits for one
/// batch at most.
pub struct PruneConnection {
    conn: Db,
}

impl PruneConnection {
    /// Opens the database, which must exist at this build's schema.
    pub fn open(location: impl Into<Location>) -> Result<Self, StoreError> {
        Ok(PruneConnection {
            conn: open_existing(&location.into())?,
        })
    }

    /// Deletes up to `batch` prunable operations received before `before`,
    /// as the daemon's retention does; returns how many went.
    pub fn batch(&self, before: i64, batch: usize) -> Result<usize, StoreError> {
        self.conn
            .write_transaction(|conn| write::prune_batch(conn, before, batch))
    }
}

/// Replacing waiting deliveries' requests (see `replay::rerender`) from the
/// command line with no daemon running (or on PostgreSQL), on a connection
/// of its own, a few hundred per transaction; how many were still waiting.
pub fn rerender_waiting(
    location: impl Into<Location>,
    requests: &[(i64, DeliveryRequest)],
) -> Result<usize, StoreError> {
    let conn = open_existing(&location.into())?;
    let mut total = 0;
    for chunk in requests.chunks(200) {
        total += conn.write_transaction(|conn| {
            let n = deliveries::rerender_all(conn, chunk, crate::clock::now_ms())?;
            // The daemons' schedulers hear of it at the commit.
            postgres::claims::notify_due(conn)?;
            Ok(n)
        })?;
    }
    Ok(total)
}

/// Cancelling waiting deliveries from the command line with no daemon
/// running (or on PostgreSQL), on a connection of its own, a few hundred
/// per transaction; how many.
pub fn cancel_waiting(location: impl Into<Location>, which: &Waiting, source: &str) -> Result<usize, StoreError> {
    let conn = open_existing(&location.into())?;
    let mut total = 0;
    loop {
        let n = conn.write_transaction(|conn| write::cancel_waiting(conn, which, source, crate::clock::now_ms()))?;
        total += n;
        if n == 0 {
            return Ok(total);
        }
    }
}

/// Closing a receiver's breaker from the command line with no daemon
/// running (or on PostgreSQL), on a connection of its own.
pub fn close_breaker(location: impl Into<Location>, target: &str) -> Result<bool, StoreError> {
    let conn = open_existing(&location.into())?;
    receivers::close_breaker(&conn, target, crate::clock::now_ms())
}

/// Creates the database if needed (a SQLite file with owner-only
/// permissions) and migrates it.
fn open_for_writing(location: &Location) -> Result<Db, StoreError> {
    match location {
        Location::File(path) => Ok(Db::Sqlite(open_file_for_writing(path)?)),
        Location::Postgres(url) => {
            let db = Db::Postgres(Box::new(Pg::connect(url)?));
            postgres::schema::migrate(&db)?;
            Ok(db)
        }
    }
}

/// Creates the SQLite file if needed (owner-only permissions) and migrates it.
fn open_file_for_writing(path: &Path) -> Result<Connection, StoreError> {
    sqlite::files::owner_only(path);
    let mut conn = open_connection(path, true)?;
    sqlite::schema::migrate(&mut conn)?;
    Ok(conn)
}

#[cfg(test)]
mod console_tests;
#[cfg(test)]
mod pg_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod write_tests;
