//! The SQLite store: the only module that speaks SQL.
//!
//! One writer thread owns the only writing connection and commits whatever
//! is queued in one transaction (group commit); readers open their own
//! connections. Times are milliseconds since the Unix epoch.

mod read;
mod schema;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

pub use read::{AttemptView, DeliveryView, HistoryFilter, OperationSummary, OperationView, Reader};
pub use writer::{spawn_writer, Claimed, Writer};

/// How long a connection waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Most response-body bytes an attempt record keeps.
pub const RESPONSE_BODY_LIMIT: usize = 2048;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database schema version {0} is newer than this hookrelay understands ({1}); upgrade hookrelay")]
    TooNew(i64, i64),
    #[error("database schema version {0} is older than this hookrelay ({1}); run the daemon once to migrate it")]
    TooOld(i64, i64),
    #[error("no database at {0}: start the daemon once to create it")]
    Missing(String),
    #[error("the database writer has stopped")]
    WriterGone,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name stored in the database and printed by the CLI.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "`{other}` is not one of: {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// Where an operation (one received webhook) stands.
    OpStatus {
        Queued = "queued",
        Delivered = "delivered",
        Failed = "failed",
        Partial = "partial",
        Skipped = "skipped",
        Duplicate = "duplicate",
        Held = "held",
        Rejected = "rejected",
    }
}

string_enum! {
    /// Where one action's delivery stands.
    DeliveryStatus {
        Pending = "pending",
        InFlight = "in_flight",
        Retrying = "retrying",
        Delivered = "delivered",
        Failed = "failed",
    }
}

/// A received webhook to store, with the deliveries it starts.
#[derive(Debug, Clone)]
pub struct NewOperation {
    pub processing: String,
    pub received_at: i64,
    pub remote_addr: String,
    pub method: String,
    pub raw_query: Vec<u8>,
    pub raw_body: Vec<u8>,
    pub content_type: Option<String>,
    pub charset: String,
    pub fields: Vec<(String, String)>,
    pub warnings: Vec<String>,
    pub status: OpStatus,
    pub reason: Option<String>,
    /// A rendered dedupe key and the oldest `received_at` it is compared with.
    pub dedupe: Option<(String, i64)>,
    pub deliveries: Vec<NewDelivery>,
}

/// One action's rendered request and its retry budget.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub action: String,
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub redacted: String,
    pub expect_body: Option<String>,
    pub timeout_ms: u64,
    pub max_attempts: u32,
    pub first_delay_ms: u64,
    pub max_delay_ms: u64,
}

/// What storing an operation decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Inserted {
    pub id: i64,
    pub status: OpStatus,
    pub reason: Option<String>,
}

/// A delivery claimed for an attempt: everything a worker needs to send it.
#[derive(Debug, Clone, PartialEq)]
pub struct DueDelivery {
    pub id: i64,
    pub operation_id: i64,
    /// Attempts already made before this one.
    pub attempts: u32,
    pub request: NewDelivery,
}

/// How an attempt ended, as far as the delivery is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again at this time (ms since the epoch).
    RetryAt(i64),
    Failed,
}

/// One finished attempt, to record.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_id: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub request: String,
    pub http_status: Option<u16>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub outcome: Outcome,
}

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

/// Creates the database if needed (owner-only permissions) and migrates it.
fn open_for_writing(path: &Path) -> Result<Connection, StoreError> {
    let fresh = !path.exists();
    let mut conn = open_connection(path, true)?;
    if fresh {
        restrict_permissions(path);
    }
    schema::migrate(&mut conn)?;
    Ok(conn)
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(err) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        log::warn!("could not make {} owner-only: {err}", path.display());
    }
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path) {}
