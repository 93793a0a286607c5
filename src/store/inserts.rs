//! A received operation's rows: the operation, its deliveries, what a
//! duplicate and a warning leave behind. The writer thread runs this inside
//! the batch's transaction.

use super::db::{Db, Dialect, Param};
use super::deliveries::{insert_delivery, insert_with_deliveries};
use super::notices::{note_first_warnings, queue_notification};
use super::{StoreError, DUPLICATE_OF, EVENT_FIELD};
use crate::model::said::Said;
use crate::model::{duplicate_reason, Inserted, NewOperation, NotificationKind, OpStatus};

pub(super) fn insert(conn: &Db, op: &NewOperation) -> Result<Inserted, StoreError> {
    let mut status = op.status;
    let mut reason = op.reason.clone();
    let mut dedupe_key = None;
    if let Some((key, since)) = op.dedupe_candidate() {
        let earlier = match conn.dialect() {
            Dialect::Sqlite => conn.query_opt(DUPLICATE_OF, &[&op.processing, &key, &since], |row| row.get(0))?,
            // Several instances insert at once: a read could miss the
            // other's uncommitted twin, a unique key cannot.
            Dialect::Postgres => {
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
    let fields = serde_json::Value::Object(fields).to_string();
    let said: Vec<&Said> = op.warnings.iter().map(|w| &w.said).collect();
    let warnings = serde_json::to_string(&said).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let reason_text = reason.as_ref().map(Said::store);
    // PostgreSQL keeps the words to search with the operation; SQLite's
    // indexer thread adds them to its own file later.
    let search_text = match conn.dialect() {
        Dialect::Sqlite => String::new(),
        Dialect::Postgres => super::sqlite::search::pg_search_text(op.fields.iter().map(|(_, v)| v.as_str())),
    };
    let status_text = status.as_str();
    let event = op
        .fields
        .iter()
        .find(|(name, _)| name == EVENT_FIELD)
        .map(|(_, v)| v.as_str());
    let mut params: Vec<&dyn Param> = vec![
        &op.processing,
        &op.received_at,
        &op.request.remote_addr,
        &op.request.method,
        &op.request.query,
        &op.request.body,
        &op.request.content_type,
        &op.charset,
        &fields,
        &warnings,
        &status_text,
        &reason_text,
        &dedupe_key,
        &event,
    ];
    if conn.dialect() == Dialect::Postgres {
        params.push(&search_text);
    }
    let sql = match conn.dialect() {
        Dialect::Sqlite => {
            "INSERT INTO operations (processing, received_at, remote_addr, method, raw_query, raw_body,
                 content_type, charset, fields, warnings, status, reason, dedupe_key, event, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?2) RETURNING id"
        }
        // With its words, never updated after (postgres/schema.rs, 8).
        Dialect::Postgres => {
            "WITH operation AS (
                 INSERT INTO operations (processing, received_at, remote_addr, method, raw_query, raw_body,
                     content_type, charset, fields, warnings, status, reason, dedupe_key, event, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?2) RETURNING id),
             words AS (
                 INSERT INTO operation_words (operation_id, search_text) VALUES ((SELECT id FROM operation), ?15))"
        }
    };
    // Failed here means every delivery was refused (a field the event
    // lacks): they are kept, failed, so history says which and why.
    let deliveries = match status {
        OpStatus::Queued | OpStatus::Failed => op.deliveries.as_slice(),
        _ => &[],
    };
    let id: i64 = match conn.dialect() {
        Dialect::Postgres => insert_with_deliveries(conn, sql, &params, deliveries, op.received_at)?,
        Dialect::Sqlite => {
            let id = conn.query_one(sql, &params, |row| row.get(0))?;
            for (position, delivery) in deliveries.iter().enumerate() {
                insert_delivery(conn, id, position as i64, delivery, op.received_at)?;
            }
            id
        }
    };
    if let (Some(key), Dialect::Postgres) = (dedupe_key, conn.dialect()) {
        super::postgres::claims::own_dedupe_key(conn, &op.processing, key, id)?;
    }
    for why in deliveries.iter().filter_map(|d| d.refused.as_ref()) {
        queue_notification(conn, NotificationKind::Failure, &op.processing, id, why, op.received_at)?;
    }
    note_first_warnings(conn, op, id)?;
    Ok(Inserted { id, status, reason })
}
