//! `hookrelay migrate-store`: a SQLite history copied into an empty
//! PostgreSQL database, ids and all, so that a user who moves to several
//! instances keeps every operation, attempt and notification.
//!
//! The copy reads one snapshot of the SQLite file (the daemon must be
//! stopped: the caller holds its lock) and writes everything in one
//! PostgreSQL transaction, so a copy that fails leaves no rows behind. It
//! refuses a database that holds any, so it is never merged into a live one.
//! Deliveries left `in_flight` by a stopped daemon are copied as waiting
//! again, as the daemon's next start would have made them.

use std::path::Path;

use crate::store::db::{Db, Param, Pg, Value};
use crate::store::postgres::schema as pg_schema;
use crate::store::{open_existing_file, Location, StoreError};

/// What a column holds, so that a NULL is sent as the column's type.
#[derive(Clone, Copy)]
enum Kind {
    Int,
    Text,
    Bytes,
}

use Kind::{Bytes, Int, Text};

/// Each table in the order foreign keys need, with its columns as both
/// schemas name them.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "operations",
        &[
            ("id", Int),
            ("processing", Text),
            ("received_at", Int),
            ("remote_addr", Text),
            ("method", Text),
            ("raw_query", Bytes),
            ("raw_body", Bytes),
            ("content_type", Text),
            ("charset", Text),
            ("fields", Text),
            ("warnings", Text),
            ("status", Text),
            ("reason", Text),
            ("dedupe_key", Text),
            ("updated_at", Int),
            ("event", Text),
        ],
    ),
    (
        "deliveries",
        &[
            ("id", Int),
            ("operation_id", Int),
            ("action", Text),
            ("position", Int),
            ("status", Text),
            ("attempts", Int),
            ("next_attempt_at", Int),
            ("last_error", Text),
            ("method", Text),
            ("url", Text),
            ("headers", Text),
            ("body", Bytes),
            ("redacted", Text),
            ("expect_body", Text),
            ("timeout_ms", Int),
            ("max_attempts", Int),
            ("first_delay_ms", Int),
            ("max_delay_ms", Int),
            ("updated_at", Int),
            ("target", Text),
            ("rules", Text),
            ("expires_at", Int),
            ("batch_key", Text),
            ("batch_id", Int),
        ],
    ),
    (
        "attempts",
        &[
            ("id", Int),
            ("delivery_id", Int),
            ("started_at", Int),
            ("duration_ms", Int),
            ("request", Text),
            ("http_status", Int),
            ("response_body", Text),
            ("error", Text),
            ("verdict", Text),
        ],
    ),
    (
        "notifications",
        &[
            ("id", Int),
            ("created_at", Int),
            ("kind", Text),
            ("processing", Text),
            ("operation_id", Int),
            ("text", Text),
            ("email_sent_at", Int),
            ("telegram_sent_at", Int),
        ],
    ),
    ("warning_days", &[("processing", Text), ("kind", Text), ("day", Int)]),
    ("meta", &[("key", Text), ("value", Int)]),
    (
        "silences",
        &[
            ("processing", Text),
            ("last_operation", Int),
            ("last_event_at", Int),
            ("alerted_at", Int),
        ],
    ),
    (
        "receivers",
        &[
            ("target", Text),
            ("version", Int),
            ("failures", Int),
            ("failing_since", Int),
            ("open_since", Int),
            ("probe_wait_ms", Int),
            ("next_probe_at", Int),
            ("last_success_at", Int),
            ("last_error", Text),
            ("last_error_at", Int),
        ],
    ),
    (
        "replays",
        &[
            ("id", Int),
            ("operation_id", Int),
            ("at", Int),
            ("source", Text),
            ("deliveries", Int),
        ],
    ),
    (
        "oauth_tokens",
        &[
            ("integration", Text),
            ("access_token", Text),
            ("refresh_token", Text),
            ("expires_at", Int),
            ("obtained_at", Int),
            ("refreshing_until", Int),
        ],
    ),
    (
        "remembered",
        &[("name", Text), ("key", Text), ("value", Text), ("at", Int)],
    ),
    (
        "batches",
        &[
            ("id", Int),
            ("batch_key", Text),
            ("rows", Int),
            ("made_at", Int),
            ("state", Text),
            ("attempts", Int),
            ("next_at", Int),
            ("sent_at", Int),
            ("upload_id", Text),
            ("upload_state", Text),
            ("linked", Int),
            ("user_not_found", Int),
            ("goal_not_found", Int),
            ("last_error", Text),
            ("lease_until", Int),
            ("updated_at", Int),
        ],
    ),
];

/// The tables whose ids PostgreSQL numbers: their sequences continue past
/// the copied ids, so no id is ever handed out twice.
const NUMBERED: &[&str] = &[
    "operations",
    "deliveries",
    "attempts",
    "notifications",
    "replays",
    "batches",
];

/// Rows copied, by table, in copying order.
pub type Copied = Vec<(&'static str, u64)>;

/// Copies the SQLite database at `from` into the empty PostgreSQL database
/// at `to`, creating its schema; `progress` hears each table's count as it
/// is done.
pub fn migrate_store(from: &Path, to: &str, mut progress: impl FnMut(&str, u64)) -> Result<Copied, StoreError> {
    let source = open_existing_file(from)?;
    let target = Db::Postgres(Box::new(Pg::connect(to)?));
    pg_schema::migrate(&target)?;
    let holds: i64 = target.query_one(
        "SELECT (SELECT COUNT(*) FROM operations) + (SELECT COUNT(*) FROM notifications)
              + (SELECT COUNT(*) FROM meta WHERE key <> 'schema_version')",
        &[],
        |row| row.get(0),
    )?;
    if holds > 0 {
        return Err(StoreError::Unusable(format!(
            "{} already holds hookrelay data; migrate-store copies into an empty database only",
            Location::Postgres(to.to_string())
        )));
    }
    // One snapshot of every table, into one transaction.
    source.execute_batch("BEGIN")?;
    target.batch("BEGIN")?;
    let copied = copy_tables(&source, &target, &mut progress);
    let _ = source.execute_batch("COMMIT");
    let copied = match copied {
        Ok(copied) => copied,
        Err(err) => {
            let _ = target.batch("ROLLBACK");
            return Err(err);
        }
    };
    for table in NUMBERED {
        target.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST((SELECT MAX(id) FROM {table}), 1))"
            ),
            &[],
        )?;
    }
    // SQLite numbers operations past the largest id ever used, even one
    // pruned since; continue past that as well.
    let used: Option<i64> = source
        .query_row("SELECT seq FROM sqlite_sequence WHERE name = 'operations'", [], |row| {
            row.get(0)
        })
        .ok();
    if let Some(used) = used.filter(|&used| used > 0) {
        target.execute(
            "SELECT setval(pg_get_serial_sequence('operations', 'id'),
                 GREATEST(?1, (SELECT COALESCE(MAX(id), 1) FROM operations)))",
            &[&used],
        )?;
    }
    target.batch("COMMIT")?;
    Ok(copied)
}

fn copy_tables(
    source: &rusqlite::Connection,
    target: &Db,
    progress: &mut impl FnMut(&str, u64),
) -> Result<Copied, StoreError> {
    let mut copied = Vec::new();
    for &(table, columns) in TABLES {
        let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
        let placeholders: Vec<String> = (1..=names.len()).map(|n| format!("?{n}")).collect();
        let insert = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            names.join(", "),
            placeholders.join(", ")
        );
        let mut statement = source.prepare(&format!("SELECT {} FROM {table}", names.join(", ")))?;
        let mut rows = statement.query([])?;
        let mut count = 0u64;
        while let Some(row) = rows.next()? {
            let mut cells = Vec::with_capacity(names.len());
            for (index, (_, kind)) in columns.iter().enumerate() {
                cells.push(match kind {
                    Int => Value::Int(row.get(index)?),
                    Text => Value::Text(row.get(index)?),
                    Bytes => Value::Bytes(row.get(index)?),
                });
            }
            // The words to search by, in their own table (postgres/schema.rs, 8).
            let words = if table == "operations" {
                let fields: String = row.get(9)?;
                let fields: std::collections::BTreeMap<String, String> =
                    crate::store::read::parse_json("fields", &fields)?;
                Some(crate::store::sqlite::search::pg_search_text(
                    fields.values().map(String::as_str),
                ))
            } else {
                None
            };
            if table == "deliveries" {
                // Claimed by a daemon that stopped: waiting again.
                if let (Value::Text(Some(status)), Value::Int(Some(attempts))) = (&cells[4], &cells[5]) {
                    if status == "in_flight" {
                        let waiting = if *attempts > 0 { "retrying" } else { "pending" };
                        cells[4] = Value::Text(Some(waiting.to_string()));
                    }
                }
            }
            let params: Vec<&dyn Param> = cells.iter().map(|c| c as &dyn Param).collect();
            target.execute(&insert, &params)?;
            if let (Some(words), Value::Int(Some(id))) = (&words, &cells[0]) {
                target.execute(
                    "INSERT INTO operation_words (operation_id, search_text) VALUES (?1, ?2)",
                    &[id, words],
                )?;
            }
            if table == "operations" {
                if let (
                    Value::Int(Some(id)),
                    Value::Text(Some(processing)),
                    Value::Int(Some(at)),
                    Value::Text(Some(key)),
                ) = (&cells[0], &cells[1], &cells[2], &cells[13])
                {
                    // The newest accepted operation holds its key.
                    target.execute(
                        "INSERT INTO dedupe_keys (processing, key, operation_id, received_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (processing, key) DO UPDATE
                             SET operation_id = excluded.operation_id, received_at = excluded.received_at
                             WHERE dedupe_keys.received_at < excluded.received_at",
                        &[processing, key, id, at],
                    )?;
                }
            }
            count += 1;
        }
        progress(table, count);
        copied.push((table, count));
    }
    Ok(copied)
}
