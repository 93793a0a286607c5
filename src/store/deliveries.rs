//! A delivery's row: how it is written, read back, claimed and rendered
//! again. Both engines' writers use these statements; both engines'
//! claims (`write.rs`'s and `pg.rs`'s) read rows with the same columns,
//! so the claims import this module and it imports neither.

use super::db::{Db, Row};
use super::StoreError;
use crate::model::response::ResponseRules;
use crate::model::{target_of, DeliveryRequest, DueDelivery};

pub(super) fn insert_delivery(
    conn: &Db,
    operation_id: i64,
    position: i64,
    d: &DeliveryRequest,
    now: i64,
) -> Result<(), StoreError> {
    let headers = serde_json::to_string(&d.headers).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    // A refused delivery is failed from the start, with why as its error.
    let status = if d.refused.is_some() { "failed" } else { "pending" };
    conn.execute(
        "INSERT INTO deliveries (operation_id, action, position, status, next_attempt_at, method, url,
             headers, body, redacted, expect_body, timeout_ms, max_attempts, first_delay_ms, max_delay_ms,
             updated_at, target, last_error, rules, expires_at)
         VALUES (?1, ?2, ?3, ?16, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?4, ?15, ?17, ?18, ?19)",
        &[
            &operation_id,
            &d.action,
            &position,
            &now,
            &d.method,
            &d.url,
            &headers,
            &d.body,
            &d.redacted,
            &d.rules.accept.body,
            &(d.timeout_ms as i64),
            &i64::from(d.max_attempts),
            &(d.first_delay_ms as i64),
            &(d.max_delay_ms as i64),
            &target_of(&d.url),
            &status,
            &d.refused,
            &rules_json(&d.rules),
            &d.expires_at,
        ],
    )?;
    Ok(())
}

/// What a claim reads of a delivery; [`due_row`] takes it apart.
pub(super) const DUE_COLUMNS: &str =
    "id, operation_id, attempts, action, method, url, headers, body, redacted, expect_body,
     timeout_ms, max_attempts, first_delay_ms, max_delay_ms, next_attempt_at, target, rules, expires_at";

/// A row of [`DUE_COLUMNS`]: the delivery, its headers as JSON, when it is due.
pub(super) fn due_row(row: &Row) -> Result<(DueDelivery, String, i64), StoreError> {
    Ok((
        DueDelivery {
            id: row.get(0)?,
            operation_id: row.get(1)?,
            attempts: count(row.get(2)?),
            target: row.get(15)?,
            request: DeliveryRequest {
                action: row.get(3)?,
                method: row.get(4)?,
                url: row.get(5)?,
                headers: Vec::new(),
                body: row.get(7)?,
                redacted: row.get(8)?,
                rules: rules_of(row.get(16)?, row.get(9)?),
                timeout_ms: row.get::<i64>(10)? as u64,
                max_attempts: count(row.get(11)?),
                first_delay_ms: row.get::<i64>(12)? as u64,
                max_delay_ms: row.get::<i64>(13)? as u64,
                expires_at: row.get(17)?,
                refused: None,
            },
        },
        row.get(6)?,
        row.get(14)?,
    ))
}

/// The `rules` column: none for the rules of an action that sets none or
/// only `expect_body` (kept in its own column, which older builds read).
fn rules_json(rules: &ResponseRules) -> Option<String> {
    let simple = ResponseRules::expecting(rules.accept.body.clone());
    (*rules != simple).then(|| serde_json::to_string(rules).unwrap_or_default())
}

/// A delivery's rules from its `rules` and `expect_body` columns. Rules
/// that do not parse (written by a newer build) fall back to the status
/// alone, which is what they would have been without the column.
pub(super) fn rules_of(json: Option<String>, expect_body: Option<String>) -> ResponseRules {
    json.and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_else(|| ResponseRules::expecting(expect_body))
}

/// A stored count as the model's `u32` (the store only writes small ones).
pub(super) fn count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Claimed rows with their headers parsed.
pub(super) fn with_headers(rows: Vec<(DueDelivery, String, i64)>) -> Result<Vec<DueDelivery>, StoreError> {
    rows.into_iter()
        .map(|(mut due, headers, _)| {
            due.request.headers = serde_json::from_str(&headers)
                .map_err(|e| StoreError::Corrupt(format!("headers of delivery {}: {e}", due.id)))?;
            Ok(due)
        })
        .collect()
}

/// The earliest of two optional times.
pub(super) fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Replaces a waiting delivery's request with `d`, rendered again from the
/// current config, due now (the new address or request is worth trying at
/// once); its attempts stay. Whether it was still waiting (a claimed one
/// is being sent and is left as it is).
pub(super) fn rerender(conn: &Db, id: i64, d: &DeliveryRequest, now: i64) -> Result<bool, StoreError> {
    let headers = serde_json::to_string(&d.headers).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(conn.execute(
        "UPDATE deliveries SET method = ?2, url = ?3, headers = ?4, body = ?5, redacted = ?6, expect_body = ?7,
             timeout_ms = ?8, max_attempts = ?9, first_delay_ms = ?10, max_delay_ms = ?11, target = ?12,
             updated_at = ?13, next_attempt_at = ?13, rules = ?14, expires_at = ?15
         WHERE id = ?1 AND status IN ('pending', 'retrying')",
        &[
            &id,
            &d.method,
            &d.url,
            &headers,
            &d.body,
            &d.redacted,
            &d.rules.accept.body,
            &(d.timeout_ms as i64),
            &i64::from(d.max_attempts),
            &(d.first_delay_ms as i64),
            &(d.max_delay_ms as i64),
            &target_of(&d.url),
            &now,
            &rules_json(&d.rules),
            &d.expires_at,
        ],
    )? == 1)
}

/// [`rerender`] for each of `requests`; how many were still waiting.
pub(super) fn rerender_all(conn: &Db, requests: &[(i64, DeliveryRequest)], now: i64) -> Result<usize, StoreError> {
    let mut n = 0;
    for (id, request) in requests {
        n += usize::from(rerender(conn, *id, request, now)?);
    }
    Ok(n)
}
