//! A received operation's rows: the operation, its deliveries, what a
//! duplicate and a warning leave behind. The writer thread runs this inside
//! the batch's transaction. SQLite writes them row by row (each statement
//! is a call within the process); PostgreSQL writes a whole batch's
//! operations, deliveries and words in one statement, because each
//! statement is a round trip the single writer waits for.

use postgres::types::{ToSql, Type};

use super::db::{Db, Param, Pg};
use super::deliveries::{delivery_columns, insert_delivery, NewDeliveries};
use super::notices::{note_first_warnings, queue_notification};
use super::{StoreError, DUPLICATE_OF, EVENT_FIELD};
use crate::model::said::Said;
use crate::model::{duplicate_reason, DeliveryRequest, Inserted, NewOperation, NotificationKind, OpStatus};

/// Stores one received operation.
pub(super) fn insert(conn: &Db, op: &NewOperation) -> Result<Inserted, StoreError> {
    if let Db::Postgres(_) = conn {
        let mut one = insert_all(conn, &[op])?;
        return one
            .pop()
            .ok_or_else(|| StoreError::Corrupt("an operation was written without an id".into()));
    }
    let row = Prepared::of(conn, op)?;
    let id = conn.query_one(INSERT_SQLITE, &row.params(), |row| row.get(0))?;
    for (position, delivery) in row.deliveries().iter().enumerate() {
        insert_delivery(conn, id, position as i64, delivery, op.received_at)?;
    }
    row.finish(conn, id)
}

/// Stores received operations, answering in their order. On PostgreSQL
/// their rows go in as few statements as their dedupe keys allow.
pub(super) fn insert_all(conn: &Db, ops: &[&NewOperation]) -> Result<Vec<Inserted>, StoreError> {
    let Db::Postgres(pg) = conn else {
        return ops.iter().map(|op| insert(conn, op)).collect();
    };
    let mut done = Vec::with_capacity(ops.len());
    let mut pending: Vec<Prepared> = Vec::with_capacity(ops.len());
    for op in ops {
        // A twin of a pending operation would find the key taken by a row
        // with no id yet: the pending ones are written first, so that it
        // is told which operation it repeats, as it would be one by one.
        if let Some((key, _)) = op.dedupe_candidate() {
            if pending
                .iter()
                .any(|p| p.dedupe_key == Some(key) && p.op.processing == op.processing)
            {
                write_pending(pg, conn, &mut pending, &mut done)?;
            }
        }
        pending.push(Prepared::of(conn, op)?);
    }
    write_pending(pg, conn, &mut pending, &mut done)?;
    Ok(done)
}

/// Writes `pending` in one statement and what follows each row.
fn write_pending(
    pg: &Pg,
    conn: &Db,
    pending: &mut Vec<Prepared<'_>>,
    done: &mut Vec<Inserted>,
) -> Result<(), StoreError> {
    if pending.is_empty() {
        return Ok(());
    }
    let ids = insert_pg(pg, pending)?;
    if ids.len() != pending.len() {
        return Err(StoreError::Corrupt(format!(
            "{} operations written, {} ids returned",
            pending.len(),
            ids.len()
        )));
    }
    for (row, id) in pending.drain(..).zip(ids) {
        done.push(row.finish(conn, id)?);
    }
    Ok(())
}

const INSERT_SQLITE: &str = "INSERT INTO operations (processing, received_at, remote_addr, method, raw_query,
         raw_body, content_type, charset, fields, warnings, status, reason, dedupe_key, event, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?2) RETURNING id";

/// PostgreSQL: operations with their words (never updated after:
/// postgres/schema.rs, 8) and their deliveries, each column an array
/// with an element per row. Ids come from the sequence in `input`, in
/// the operations' order (`n`), rather than from RETURNING, whose order
/// PostgreSQL does not promise; `input` calls a volatile function and is
/// read four times, so it is computed once.
const INSERT_PG: &str = concat!(
    "WITH input AS (
         SELECT nextval((SELECT pg_get_serial_sequence('operations', 'id'))::regclass) AS id, o.*
         FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bytea[], $6::bytea[], $7::text[],
                     $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
                     $15::text[])
              WITH ORDINALITY AS o(processing, received_at, remote_addr, method, raw_query, raw_body,
                  content_type, charset, fields, warnings, status, reason, dedupe_key, event, words, n)),
     operation AS (
         INSERT INTO operations (id, processing, received_at, remote_addr, method, raw_query, raw_body,
             content_type, charset, fields, warnings, status, reason, dedupe_key, event, updated_at)
         SELECT id, processing, received_at, remote_addr, method, raw_query, raw_body, content_type, charset,
             fields, warnings, status, reason, dedupe_key, event, received_at
         FROM input),
     words AS (INSERT INTO operation_words (operation_id, search_text) SELECT id, words FROM input),
     delivery AS (
         INSERT INTO deliveries (",
    delivery_columns!(),
    ")
         SELECT input.id, d.action, d.position, d.status, d.updated_at, d.next_attempt_at, d.last_error,
             d.method, d.url, d.headers, d.body, d.redacted, d.expect_body, d.timeout_ms, d.max_attempts,
             d.first_delay_ms, d.max_delay_ms, d.target, d.rules, d.expires_at, d.batch_key
         FROM unnest($16::bigint[], $17::text[], $18::bigint[], $19::text[], $20::bigint[], $21::bigint[],
                     $22::text[], $23::text[], $24::text[], $25::text[], $26::bytea[], $27::text[],
                     $28::text[], $29::bigint[], $30::bigint[], $31::bigint[], $32::bigint[], $33::text[],
                     $34::text[], $35::bigint[], $36::text[])
              AS d(n, action, position, status, updated_at, next_attempt_at, last_error, method, url,
                  headers, body, redacted, expect_body, timeout_ms, max_attempts, first_delay_ms,
                  max_delay_ms, target, rules, expires_at, batch_key)
         JOIN input USING (n))
     SELECT id FROM input ORDER BY n"
);

/// Writes `rows` in one statement: their ids, in their order.
fn insert_pg<'r>(pg: &Pg, rows: &'r [Prepared<'r>]) -> Result<Vec<i64>, StoreError> {
    let words: Vec<String> = rows
        .iter()
        .map(|row| super::sqlite::search::pg_search_text(row.op.fields.iter().map(|(_, v)| v.as_str())))
        .collect();
    let text =
        |column: fn(&'r Prepared<'r>) -> Option<&'r str>| -> Vec<Option<&str>> { rows.iter().map(column).collect() };
    let bytes = |column: fn(&'r Prepared<'r>) -> &'r [u8]| -> Vec<&[u8]> { rows.iter().map(column).collect() };
    let columns = [
        text(|r| Some(&r.op.processing)),
        text(|r| Some(&r.op.request.remote_addr)),
        text(|r| Some(&r.op.request.method)),
        text(|r| r.op.request.content_type.as_deref()),
        text(|r| Some(&r.op.charset)),
        text(|r| Some(&r.fields)),
        text(|r| Some(&r.warnings)),
        text(|r| Some(r.status_text)),
        text(|r| r.reason_text.as_deref()),
        text(|r| r.dedupe_key),
        text(|r| r.event),
    ];
    let received_at: Vec<i64> = rows.iter().map(|r| r.op.received_at).collect();
    let (query, body) = (bytes(|r| &r.op.request.query), bytes(|r| &r.op.request.body));
    let mut deliveries = NewDeliveries::default();
    for (n, row) in rows.iter().enumerate() {
        for (position, delivery) in row.deliveries().iter().enumerate() {
            deliveries.push(n as i64 + 1, position as i64, delivery, row.op.received_at)?;
        }
    }
    let [processing, remote_addr, method, content_type, charset, fields, warnings, status, reason, dedupe_key, event] =
        &columns;
    let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![
        (processing, Type::TEXT_ARRAY),
        (&received_at, Type::INT8_ARRAY),
        (remote_addr, Type::TEXT_ARRAY),
        (method, Type::TEXT_ARRAY),
        (&query, Type::BYTEA_ARRAY),
        (&body, Type::BYTEA_ARRAY),
        (content_type, Type::TEXT_ARRAY),
        (charset, Type::TEXT_ARRAY),
        (fields, Type::TEXT_ARRAY),
        (warnings, Type::TEXT_ARRAY),
        (status, Type::TEXT_ARRAY),
        (reason, Type::TEXT_ARRAY),
        (dedupe_key, Type::TEXT_ARRAY),
        (event, Type::TEXT_ARRAY),
        (&words, Type::TEXT_ARRAY),
    ];
    params.extend(deliveries.params());
    pg.query_typed(INSERT_PG, &params, |row| row.get(0))
}

/// A received operation ready to be written: what the dedupe check made
/// of it, and its columns as text.
struct Prepared<'a> {
    op: &'a NewOperation,
    status: OpStatus,
    status_text: &'static str,
    reason: Option<Said>,
    /// The key this operation owns as the first of its kind.
    dedupe_key: Option<&'a str>,
    fields: String,
    warnings: String,
    reason_text: Option<String>,
    event: Option<&'a str>,
}

impl<'a> Prepared<'a> {
    /// Looks for an earlier twin of `op` (one found makes it a duplicate)
    /// and renders its columns.
    fn of(conn: &Db, op: &'a NewOperation) -> Result<Prepared<'a>, StoreError> {
        let mut status = op.status;
        let mut reason = op.reason.clone();
        let mut dedupe_key = None;
        if let Some((key, since)) = op.dedupe_candidate() {
            let earlier = match conn {
                Db::Sqlite(_) => conn.query_opt(DUPLICATE_OF, &[&op.processing, &key, &since], |row| row.get(0))?,
                // Several instances insert at once: a read could miss the
                // other's uncommitted twin, a unique key cannot.
                Db::Postgres(_) => {
                    super::postgres::claims::claim_dedupe_key(conn, &op.processing, key, since, op.received_at)?
                }
            };
            match earlier {
                Some(id) => {
                    status = OpStatus::Duplicate;
                    reason = Some(duplicate_reason(key, id));
                }
                None => dedupe_key = Some(key),
            }
        }
        let fields: serde_json::Map<String, serde_json::Value> = op
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let said: Vec<&Said> = op.warnings.iter().map(|w| &w.said).collect();
        Ok(Prepared {
            op,
            status,
            status_text: status.as_str(),
            reason_text: reason.as_ref().map(Said::store),
            reason,
            dedupe_key,
            fields: serde_json::Value::Object(fields).to_string(),
            warnings: serde_json::to_string(&said).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            event: op
                .fields
                .iter()
                .find(|(name, _)| name == EVENT_FIELD)
                .map(|(_, v)| v.as_str()),
        })
    }

    /// SQLite's parameters for [`INSERT_SQLITE`].
    fn params(&self) -> [&dyn Param; 14] {
        let op = self.op;
        [
            &op.processing,
            &op.received_at,
            &op.request.remote_addr,
            &op.request.method,
            &op.request.query,
            &op.request.body,
            &op.request.content_type,
            &op.charset,
            &self.fields,
            &self.warnings,
            &self.status_text,
            &self.reason_text,
            &self.dedupe_key,
            &self.event,
        ]
    }

    /// The deliveries written with it. Failed here means every delivery was
    /// refused (a field the event lacks): they are kept, failed, so history
    /// says which and why.
    fn deliveries(&self) -> &'a [DeliveryRequest] {
        match self.status {
            OpStatus::Queued | OpStatus::Failed => self.op.deliveries.as_slice(),
            _ => &[],
        }
    }

    /// Writes what follows the row once it has its id (`id`): the dedupe
    /// key's owner, a notification per refused delivery, the day's first
    /// warnings.
    fn finish(self, conn: &Db, id: i64) -> Result<Inserted, StoreError> {
        let op = self.op;
        if let (Some(key), Db::Postgres(_)) = (self.dedupe_key, conn) {
            super::postgres::claims::own_dedupe_key(conn, &op.processing, key, id)?;
        }
        for why in self.deliveries().iter().filter_map(|d| d.refused.as_ref()) {
            queue_notification(conn, NotificationKind::Failure, &op.processing, id, why, op.received_at)?;
        }
        note_first_warnings(conn, op, id)?;
        Ok(Inserted {
            id,
            status: self.status,
            reason: self.reason,
        })
    }
}
