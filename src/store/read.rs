//! Read-only queries for the command line: history and one operation.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::db::{Db, Dialect, Row};
use super::{open_existing, Location, StoreError, DUPLICATE_OF, META_LAST_NOTIFIED};
use crate::model::response::Judged;
use crate::model::said::Said;
use crate::model::{DeliveryStatus, NotificationKind, OpStatus, RawRequest};

/// A reading connection, separate from the writer's.
pub struct Reader {
    pub(super) conn: Db,
    /// SQLite's search index file, attached as `search` at the first search.
    search: Option<PathBuf>,
    search_attached: Cell<bool>,
}

/// One line of `history`.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationSummary {
    pub id: i64,
    pub processing: String,
    pub received_at: i64,
    pub status: OpStatus,
    pub reason: Option<Said>,
    /// Deliveries finished as `delivered`, and in all.
    pub delivered: u32,
    pub deliveries: u32,
    /// For a `failed` or `partial` operation: why its first delivery that
    /// did not arrive failed, expired or was cancelled (the rule that
    /// judged the answer, or the error), for a list to say.
    pub failure: Option<Said>,
}

/// A processing that received events and skipped every one of them.
#[derive(Debug, Clone, PartialEq)]
pub struct AllSkipped {
    pub processing: String,
    pub count: u64,
    /// The newest of those operations, and why it was skipped.
    pub latest: i64,
    pub latest_reason: Option<Said>,
}

/// A notification not yet sent on every channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: i64,
    pub created_at: i64,
    /// `failure` or `warning`.
    pub kind: NotificationKind,
    pub processing: String,
    pub operation_id: i64,
    pub text: Said,
    pub email_pending: bool,
    pub telegram_pending: bool,
}

impl Notification {
    /// Whether `channel` has yet to send this notification.
    pub fn pending_on(&self, channel: super::Channel) -> bool {
        match channel {
            super::Channel::Email => self.email_pending,
            super::Channel::Telegram => self.telegram_pending,
        }
    }
}

/// How much delivery work is waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Deliveries not yet sent: pending, waiting to retry, or claimed.
    pub depth: u64,
    /// When the oldest of their operations was received.
    pub oldest_received_at: Option<i64>,
}

/// A query over the deliveries not yet sent, joined with their operations
/// (`d`, `o`): those due or waiting to retry, then (UNION ALL) those
/// claimed for sending. A claimed delivery (`in_flight`) is still waiting
/// for the receiver: the scheduler claims ahead, and one can wait in its
/// queue for a worker or a receiver's turn, as the breaker's backlog does
/// just after it closes. Each half reads its own partial index
/// (`deliveries_due`, `deliveries_in_flight`; on PostgreSQL
/// `deliveries_leased`), so it costs what is waiting, not the table.
/// `columns` are selected in both halves, `and` narrows both, `group`
/// ends both; the caller sums the halves.
pub(super) fn unsent(join: &str, columns: &str, and: &str, group: &str) -> String {
    let half = |status: &str| {
        format!(
            "SELECT {columns} FROM deliveries d {join} operations o ON o.id = d.operation_id
             WHERE {status}{and} {group}"
        )
    };
    format!(
        "{} UNION ALL {}",
        half("d.status IN ('pending', 'retrying')"),
        half("d.status = 'in_flight'")
    )
}

/// Everything recorded about one operation.
#[derive(Debug, Clone)]
pub struct OperationView {
    pub summary: OperationSummary,
    pub request: RawRequest,
    pub charset: String,
    pub fields: BTreeMap<String, String>,
    pub warnings: Vec<Said>,
    pub deliveries: Vec<DeliveryView>,
    /// Each time it was replayed, oldest first.
    pub replays: Vec<ReplayView>,
}

/// One replay of an operation.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayView {
    pub at: i64,
    /// Who asked: "command line (root)", "console (admin)".
    pub source: String,
    /// How many deliveries it queued.
    pub deliveries: i64,
}

/// One action's delivery and its attempts.
#[derive(Debug, Clone)]
pub struct DeliveryView {
    pub id: i64,
    pub action: String,
    pub status: DeliveryStatus,
    pub next_attempt_at: i64,
    pub last_error: Option<Said>,
    pub request: String,
    pub attempts: Vec<AttemptView>,
    /// A metrica row: waiting for a batch (`Some(None)`), or in one.
    pub batch: Option<Option<super::Batch>>,
}

/// One attempt as recorded.
#[derive(Debug, Clone)]
pub struct AttemptView {
    pub started_at: i64,
    pub duration_ms: i64,
    pub request: String,
    pub http_status: Option<u16>,
    pub response_body: Option<String>,
    pub error: Option<Said>,
    /// How the answer was judged, by which rule; none before verdicts were kept.
    pub judged: Option<Judged>,
}

pub(super) fn parse_status<T: std::str::FromStr<Err = String>>(text: String) -> Result<T, StoreError> {
    text.parse().map_err(StoreError::Corrupt)
}

/// An operation's warnings: a JSON array of said things, or (rows written
/// before kinds were kept) of English text.
fn said_list(json: &str) -> Result<Vec<Said>, StoreError> {
    let items: Vec<serde_json::Value> = parse_json("warnings", json)?;
    Ok(items
        .into_iter()
        .map(|item| match item {
            serde_json::Value::String(text) => Said::text(text),
            other => serde_json::from_value(other.clone()).unwrap_or_else(|_| Said::text(other.to_string())),
        })
        .collect())
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Delivered counts only each action's newest delivery: after a replay,
/// "1/1", not "1/2" with the replayed failure still counted.
pub(super) const SUMMARY_COLUMNS: &str = concat!(
    "o.id, o.processing, o.received_at, o.status, o.reason,
    (SELECT COUNT(*) FROM deliveries d WHERE d.operation_id = o.id AND d.status = 'delivered' AND ",
    newest_per_action!(),
    "),
    (SELECT COUNT(*) FROM deliveries d WHERE d.operation_id = o.id AND ",
    newest_per_action!(),
    "),
    (SELECT d.last_error FROM deliveries d WHERE d.operation_id = o.id AND d.status IN ('failed', 'expired', 'cancelled')
     ORDER BY d.position, d.id DESC LIMIT 1)"
);

pub(super) fn summary_row(row: &Row<'_>) -> Result<(OperationSummary, String), StoreError> {
    Ok((
        OperationSummary {
            id: row.get(0)?,
            processing: row.get(1)?,
            received_at: row.get(2)?,
            status: OpStatus::Queued,
            reason: row.get(4)?,
            delivered: super::db::count(row.get(5)?),
            deliveries: super::db::count(row.get(6)?),
            failure: row.get(7)?,
        },
        row.get(3)?,
    ))
}

pub(super) fn with_status((mut summary, status): (OperationSummary, String)) -> Result<OperationSummary, StoreError> {
    summary.status = parse_status(status)?;
    // An operation a replay delivered since keeps its old failed delivery:
    // its failure is no longer the news.
    if !matches!(summary.status, OpStatus::Failed | OpStatus::Partial) {
        summary.failure = None;
    }
    Ok(summary)
}

impl Reader {
    /// Opens an existing database; it must already be at this build's schema.
    pub fn open(location: impl Into<Location>) -> Result<Reader, StoreError> {
        let location = location.into();
        Ok(Reader {
            conn: open_existing(&location)?,
            search: location.file().map(super::sqlite::search::search_path),
            search_attached: Cell::new(false),
        })
    }

    /// How the waiting deliveries drive a join to their operations: SQLite
    /// needs CROSS JOIN to keep them (a partial index) the outer loop;
    /// PostgreSQL's planner finds that itself and has no such syntax.
    pub(super) fn driving_join(&self) -> &'static str {
        match self.conn.dialect() {
            Dialect::Sqlite => "CROSS JOIN",
            Dialect::Postgres => "JOIN",
        }
    }

    /// Attaches the search index's file; false while there is none yet
    /// (the daemon creates it at start and fills it in the background).
    pub(super) fn attach_search(&self) -> Result<bool, StoreError> {
        if self.search_attached.get() {
            return Ok(true);
        }
        let (Some(search), Some(conn)) = (&self.search, self.conn.sqlite()) else {
            return Ok(false);
        };
        if !search.exists() {
            return Ok(false);
        }
        conn.execute("ATTACH DATABASE ?1 AS search", [search.to_string_lossy()])?;
        self.search_attached.set(true);
        Ok(true)
    }

    /// The newest operation of `processing` that has fields, if any.
    pub fn latest_with_fields(&self, processing: &str) -> Result<Option<OperationView>, StoreError> {
        // A rejected (unparsed) or empty request says nothing about the fields.
        let id: Option<i64> = self.conn.query_opt(
            "SELECT id FROM operations WHERE processing = ?1 AND fields != '{}' ORDER BY id DESC LIMIT 1",
            &[&processing],
            |row| row.get(0),
        )?;
        match id {
            Some(id) => self.operation(id),
            None => Ok(None),
        }
    }

    /// Notifications created since `since` that some channel has not sent, oldest first.
    pub fn pending_notifications(&self, since: i64, limit: usize) -> Result<Vec<Notification>, StoreError> {
        self.conn.query(
            "SELECT id, created_at, kind, processing, operation_id, text,
                    email_sent_at IS NULL, telegram_sent_at IS NULL
             FROM notifications
             WHERE created_at >= ?1 AND (email_sent_at IS NULL OR telegram_sent_at IS NULL)
             ORDER BY id LIMIT ?2",
            &[&since, &(limit as i64)],
            |row| {
                Ok(Notification {
                    id: row.get(0)?,
                    created_at: row.get(1)?,
                    kind: parse_status(row.get(2)?)?,
                    processing: row.get(3)?,
                    operation_id: row.get(4)?,
                    text: row.get::<Option<Said>>(5)?.unwrap_or_else(|| Said::text("")),
                    email_pending: row.get(6)?,
                    telegram_pending: row.get(7)?,
                })
            },
        )
    }

    /// The processings that received at least `min_events` since `since`
    /// and skipped every one (a `require` or `when` that can never be met).
    /// A read: it scans a day of operations, which must not hold up the
    /// writer.
    pub fn all_skipped(&self, since: i64, min_events: u32) -> Result<Vec<AllSkipped>, StoreError> {
        self.conn.query(
            "SELECT g.processing, g.n, g.latest, (SELECT reason FROM operations WHERE id = g.latest)
             FROM (SELECT processing, count(*) AS n, max(id) AS latest FROM operations
                   WHERE received_at >= ?1
                   GROUP BY processing
                   HAVING count(*) >= ?2 AND count(CASE WHEN status != 'skipped' THEN 1 END) = 0) g",
            &[&since, &i64::from(min_events)],
            |row| {
                Ok(AllSkipped {
                    processing: row.get(0)?,
                    count: row.get::<i64>(1)? as u64,
                    latest: row.get(2)?,
                    latest_reason: row.get(3)?,
                })
            },
        )
    }

    /// When a notification last went out, if ever.
    pub fn last_notified_at(&self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_opt("SELECT value FROM meta WHERE key = ?1", &[&META_LAST_NOTIFIED], |row| {
                row.get(0)
            })
    }

    /// Deliveries not yet sent (`unsent`) and the age of the oldest.
    pub fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        self.conn.query_one(
            &format!(
                "SELECT CAST(SUM(n) AS BIGINT), MIN(oldest) FROM ({}) AS w",
                unsent(
                    self.driving_join(),
                    "COUNT(*) AS n, MIN(o.received_at) AS oldest",
                    "",
                    ""
                )
            ),
            &[],
            |row| {
                Ok(QueueStats {
                    depth: row.get::<i64>(0)? as u64,
                    oldest_received_at: row.get(1)?,
                })
            },
        )
    }

    /// How many operations pruning at `before` would delete.
    pub fn prunable(&self, before: i64) -> Result<u64, StoreError> {
        Ok(self.conn.query_one(
            "SELECT COUNT(*) FROM operations WHERE received_at < ?1 AND status != 'queued'",
            &[&before],
            |row| row.get::<i64>(0),
        )? as u64)
    }

    /// The accepted operation an event with this dedupe key would duplicate.
    pub fn duplicate_of(&self, processing: &str, key: &str, since: i64) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_opt(DUPLICATE_OF, &[&processing, &key, &since], |row| row.get(0))
    }

    /// The fields of each of `ids` that exists.
    pub fn fields_of(
        &self,
        ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, BTreeMap<String, String>>, StoreError> {
        let mut found = std::collections::HashMap::new();
        for id in ids {
            if let Some(text) = self
                .conn
                .query_opt("SELECT fields FROM operations WHERE id = ?1", &[id], |row| {
                    row.get::<String>(0)
                })?
            {
                let id = *id;
                found.insert(id, parse_json("fields", &text)?);
            }
        }
        Ok(found)
    }

    /// One operation with its deliveries and every attempt, if it exists.
    pub fn operation(&self, id: i64) -> Result<Option<OperationView>, StoreError> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS}, o.remote_addr, o.method, o.raw_query, o.raw_body, o.content_type,
                    o.charset, o.fields, o.warnings
             FROM operations o WHERE o.id = ?1"
        );
        let row = self.conn.query_opt(&sql, &[&id], |row| {
            Ok((
                summary_row(row)?,
                row.get::<String>(8)?,
                row.get::<String>(9)?,
                row.get::<Vec<u8>>(10)?,
                row.get::<Vec<u8>>(11)?,
                row.get::<Option<String>>(12)?,
                row.get::<String>(13)?,
                row.get::<String>(14)?,
                row.get::<String>(15)?,
            ))
        })?;
        let Some((summary, remote_addr, method, raw_query, raw_body, content_type, charset, fields, warnings)) = row
        else {
            return Ok(None);
        };
        Ok(Some(OperationView {
            summary: with_status(summary)?,
            request: RawRequest {
                remote_addr,
                method,
                query: raw_query,
                body: raw_body,
                content_type,
            },
            charset,
            fields: parse_json("fields", &fields)?,
            warnings: said_list(&warnings)?,
            deliveries: self.deliveries(id)?,
            replays: self.conn.query(
                "SELECT at, source, deliveries FROM replays WHERE operation_id = ?1 ORDER BY id",
                &[&id],
                |row| {
                    Ok(ReplayView {
                        at: row.get(0)?,
                        source: row.get(1)?,
                        deliveries: row.get(2)?,
                    })
                },
            )?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::spawn_writer;
    use crate::store::tests::{insert_all, operation, quiet};

    /// Rows written before reasons, warnings and errors were kept as kinds
    /// hold English text; they read back as that text.
    #[test]
    fn old_rows_read_as_their_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (writer, _thread) = spawn_writer(&path, quiet()).unwrap();
        let id = insert_all(&writer, vec![operation(None, &["plarin"])])[0].id;
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "UPDATE operations SET reason = 'required field `a` is missing', warnings = '[\"field `b` holds x\"]'
                 WHERE id = {id};
             UPDATE deliveries SET last_error = 'HTTP 400' WHERE operation_id = {id};"
        ))
        .unwrap();
        let op = Reader::open(&path).unwrap().operation(id).unwrap().unwrap();
        assert_eq!(op.summary.reason, Some(Said::text("required field `a` is missing")));
        assert_eq!(op.warnings, [Said::text("field `b` holds x")]);
        assert_eq!(op.deliveries[0].last_error, Some(Said::text("HTTP 400")));
        assert_eq!(
            op.deliveries[0]
                .last_error
                .as_ref()
                .map(|e| e.say(crate::model::said::Lang::Ru))
                .as_deref(),
            Some("HTTP 400")
        );
    }
}
