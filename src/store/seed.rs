//! Synthetic history for benchmarks: millions of finished operations,
//! written in bulk. Nothing in the daemon uses it.

use std::path::Path;

use rusqlite::params;

use super::{open_file_for_writing, StoreError};

/// Operations written per transaction.
const CHUNK: u64 = 100_000;

/// What [`seed`] writes.
#[derive(Debug, Clone)]
pub struct Seed {
    /// How many operations.
    pub operations: u64,
    /// Received times, in ms since the epoch, spread evenly from `oldest` to `newest`.
    pub oldest: i64,
    pub newest: i64,
    /// Every n-th operation failed (HTTP 400); the others were delivered.
    pub failed_every: u64,
    /// The raw query each operation was received with (its fields are not parsed).
    pub query: String,
}

/// Appends `seed.operations` finished operations (Klientiks's paid visits,
/// bookings and new clients in turn), each with one delivery and
/// one attempt, to the database at `path` (created if missing). Runs with
/// `synchronous=OFF`: a crash while seeding can lose the seed, which is
/// acceptable for a benchmark's data and for nothing else.
pub fn seed(path: &Path, seed: &Seed) -> Result<(), StoreError> {
    let mut conn = open_file_for_writing(path)?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    // The search index is filled in the same transactions, in its own file.
    drop(super::sqlite::search::open_search(path)?);
    conn.execute(
        "ATTACH DATABASE ?1 AS search",
        [super::sqlite::search::search_path(path).to_string_lossy()],
    )?;
    conn.pragma_update(Some("search"), "synchronous", "OFF")?;
    let span = (seed.newest - seed.oldest).max(0);
    let mut done = 0;
    while done < seed.operations {
        let count = CHUNK.min(seed.operations - done);
        let tx = conn.transaction()?;
        let first_op: i64 = tx.query_row("SELECT COALESCE(MAX(id), 0) FROM operations", [], |r| r.get(0))?;
        let first_delivery: i64 = tx.query_row("SELECT COALESCE(MAX(id), 0) FROM deliveries", [], |r| r.get(0))?;
        tx.execute(
            "WITH RECURSIVE n(x) AS (SELECT ?1 UNION ALL SELECT x + 1 FROM n WHERE x < ?2)
             INSERT INTO operations (processing, received_at, remote_addr, method, raw_query, raw_body,
                 content_type, charset, fields, warnings, status, reason, dedupe_key, updated_at, event)
             SELECT 'bench', ?3 + x * ?4 / ?5, '127.0.0.1:40000', 'GET', CAST(?6 AS BLOB), X'', NULL, 'utf-8',
                 json_object('event', event, 'n', CAST(x AS TEXT), 'client_phone', printf('79%09d', x),
                     'utm_content', 'весна-42', 'appointment_total_cost', '2500'), '[]',
                 CASE WHEN x % ?7 = 0 THEN 'failed' ELSE 'delivered' END,
                 NULL, NULL, ?3 + x * ?4 / ?5, event
             FROM (SELECT x, CASE x % 3 WHEN 0 THEN 'appointment_paid' WHEN 1 THEN 'appointment_created'
                                        ELSE 'client_added' END AS event FROM n)
             -- Ids in the order of receipt, as the daemon numbers them.
             ORDER BY x",
            params![
                done as i64,
                (done + count - 1) as i64,
                seed.oldest,
                span,
                seed.operations.max(1) as i64,
                seed.query,
                seed.failed_every.max(1) as i64,
            ],
        )?;
        tx.execute(
            "INSERT INTO deliveries (operation_id, action, position, status, attempts, next_attempt_at,
                 last_error, method, url, headers, body, redacted, expect_body, timeout_ms, max_attempts,
                 first_delay_ms, max_delay_ms, updated_at)
             SELECT id, 'plarin', 0, status, 1, received_at,
                 CASE status WHEN 'failed' THEN 'HTTP 400' END, 'GET',
                 'http://127.0.0.1:9999/postback?token=secret&ad_id=%D0%B2%D0%B5%D1%81%D0%BD%D0%B0-42&value=2500',
                 '[]', NULL,
                 'GET http://127.0.0.1:9999/postback?token=MASKED&ad_id=%D0%B2%D0%B5%D1%81%D0%BD%D0%B0-42&value=2500',
                 NULL, 15000, 12, 30000, 7200000, received_at
             FROM operations WHERE id > ?1",
            [first_op],
        )?;
        // What the writer indexes for each operation (store/sqlite/search.rs): its
        // values, one per line; the seed's phones are already in normal form.
        tx.execute(
            "INSERT INTO search.field_search (rowid, text)
             SELECT id, (SELECT group_concat(value, char(10)) FROM json_each(fields)) FROM operations WHERE id > ?1",
            [first_op],
        )?;
        tx.execute(
            "INSERT INTO attempts (delivery_id, started_at, duration_ms, request, http_status, response_body, error)
             SELECT id, updated_at, 12, redacted, CASE status WHEN 'failed' THEN 400 ELSE 200 END,
                 CASE status WHEN 'failed' THEN 'bad ad_id' ELSE 'ok' END, NULL
             FROM deliveries WHERE id > ?1",
            [first_delivery],
        )?;
        super::sqlite::indexer::mark_all_indexed(&tx)?;
        tx.commit()?;
        done += count;
    }
    // Written back and synced now: otherwise the daemon's first checkpoint
    // pays for flushing the whole seed (seconds for 10 M operations).
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
    conn.pragma_update(Some("search"), "wal_checkpoint", "TRUNCATE")?;
    for file in [path.to_path_buf(), super::sqlite::search::search_path(path)] {
        std::fs::File::open(&file)
            .and_then(|file| file.sync_all())
            .map_err(|e| StoreError::Commit(format!("syncing {}: {e}", file.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OpStatus;
    use crate::store::{HistoryFilter, Reader};

    /// Seeded operations read back like real ones, with the asked-for statuses.
    #[test]
    fn seeded_history_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed.db");
        let plan = Seed {
            operations: 250,
            oldest: 1_000,
            newest: 2_000,
            failed_every: 10,
            query: "a=1".into(),
        };
        seed(&path, &plan).unwrap();
        let reader = Reader::open(&path).unwrap();
        let failed = reader
            .history(&HistoryFilter {
                status: Some(OpStatus::Failed),
                limit: 100,
                ..HistoryFilter::default()
            })
            .unwrap();
        assert_eq!(failed.len(), 25);
        let op = reader.operation(failed[0].id).unwrap().unwrap();
        assert_eq!(op.summary.status, OpStatus::Failed);
        assert_eq!(op.deliveries[0].attempts[0].http_status, Some(400));
        assert!((1_000..=2_000).contains(&op.summary.received_at));
        assert_eq!(op.request.query, b"a=1");
        let found = reader
            .history(&HistoryFilter {
                search: Some(op.fields["client_phone"].clone()),
                limit: 10,
                ..HistoryFilter::default()
            })
            .unwrap();
        assert_eq!(found.len(), 1, "the seed is searchable");
        assert_eq!(found[0].id, op.summary.id);
        // Numbered in the order received, as the daemon numbers them (a
        // date-bounded list relies on it), with the events in turn.
        let times: Vec<i64> = (1..=250)
            .map(|id| reader.operation(id).unwrap().unwrap().summary.received_at)
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        let events: Vec<String> = (1..=3)
            .map(|id| reader.operation(id).unwrap().unwrap().fields["event"].clone())
            .collect();
        assert_eq!(events, ["appointment_paid", "appointment_created", "client_added"]);
    }
}

/// What a storage floor run inserts per webhook, and on which schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorShape {
    /// The operation and its delivery, on the whole schema.
    Delivering,
    /// The operation alone, `held` (a processing with `enabled = false`).
    Held,
    /// The operation and its delivery without the console's counts (the
    /// `hour_counts` triggers) and its listing indexes (by status, by
    /// processing).
    Bare,
}

/// The storage floor: the rows hookrelay writes for one webhook of `query`
/// (the operation and, unless held, its delivery to `url`), inserted by a
/// tight loop of prepared statements on one connection, in commits of
/// `per_commit`, each fsync'd as the daemon's are (WAL,
/// `synchronous=FULL`), for `duration`. What any durable design on this
/// disk and this schema can reach: hookrelay's acknowledgements are
/// measured against it. Returns the webhooks stored and the time taken.
pub fn storage_floor(
    path: &Path,
    (query, url): (&str, &str),
    shape: FloorShape,
    per_commit: usize,
    duration: std::time::Duration,
) -> Result<(u64, std::time::Duration), StoreError> {
    let conn = open_file_for_writing(path)?;
    if shape == FloorShape::Bare {
        let triggers: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'hour_counts_%'")?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        for trigger in triggers {
            conn.execute_batch(&format!("DROP TRIGGER {trigger}"))?;
        }
        conn.execute_batch("DROP INDEX operations_by_status; DROP INDEX operations_by_processing;")?;
    }
    let fields: serde_json::Map<String, serde_json::Value> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), serde_json::Value::String(v.into_owned())))
        .collect();
    let event = fields.get("event").and_then(|v| v.as_str()).map(str::to_string);
    let fields = serde_json::Value::Object(fields).to_string();
    let status = if shape == FloorShape::Held { "held" } else { "queued" };
    let target = crate::model::target_of(url);
    let redacted = format!("GET {url}");
    let started = std::time::Instant::now();
    let mut webhooks = 0u64;
    while started.elapsed() < duration {
        let tx = conn.unchecked_transaction()?;
        for _ in 0..per_commit {
            let now = crate::clock::now_ms();
            let id: i64 = tx
                .prepare_cached(
                    "INSERT INTO operations (processing, received_at, remote_addr, method, raw_query, raw_body,
                         content_type, charset, fields, warnings, status, reason, dedupe_key, event, updated_at)
                     VALUES ('bench', ?1, '127.0.0.1:40000', 'GET', ?2, X'', NULL, 'utf-8', ?3, '[]', ?4, NULL, NULL, ?5, ?1)
                     RETURNING id",
                )?
                .query_row(params![now, query.as_bytes(), fields, status, event], |row| row.get(0))?;
            if shape != FloorShape::Held {
                tx.prepare_cached(
                    "INSERT INTO deliveries (operation_id, action, position, status, updated_at, next_attempt_at,
                         method, url, headers, body, redacted, timeout_ms, max_attempts, first_delay_ms,
                         max_delay_ms, target)
                     VALUES (?1, 'plarin', 0, 'pending', ?2, ?2, 'GET', ?3, '[]', NULL, ?4, 15000, 12, 30000,
                         7200000, ?5)",
                )?
                .execute(params![id, now, url, redacted, target])?;
            }
        }
        tx.commit()?;
        webhooks += per_commit as u64;
    }
    Ok((webhooks, started.elapsed()))
}
