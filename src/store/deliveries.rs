//! A delivery's row: how it is written, read back, claimed and rendered
//! again. Both engines' writers use these statements; both engines'
//! claims (`write.rs`'s and `postgres/claims.rs`'s) read rows with the same columns,
//! so the claims import this module and it imports neither.

use postgres::types::{ToSql, Type};

use super::db::{count, Db, Param, Row};
use super::read::{parse_status, AttemptView, DeliveryView, Reader};
use super::StoreError;
use crate::model::response::{Judged, ResponseRules};
use crate::model::said::Said;
use crate::model::{target_of, DeliveryRequest, DueDelivery};

/// The columns a new delivery's row is written with, in the order both
/// inserts bind them: the operation, then [`RequestColumns`]' own.
macro_rules! delivery_columns {
    () => {
        "operation_id, action, position, status, updated_at, next_attempt_at, last_error,
         method, url, headers, body, redacted, expect_body, timeout_ms, max_attempts, first_delay_ms,
         max_delay_ms, target, rules, expires_at, batch_key"
    };
}
pub(super) use delivery_columns;

/// When a metrica row is due on its own: never. Its batch sends it
/// (store/batches.rs), so no claim ever sees it due.
pub(super) const NEVER_DUE: i64 = 253_402_300_799_000;

/// A rendered request's columns as stored, bound in this order by both
/// statements that write them (the insert and the re-render): `method,
/// url, headers, body, redacted, expect_body, timeout_ms, max_attempts,
/// first_delay_ms, max_delay_ms, target, rules, expires_at, batch_key`.
struct RequestColumns<'a> {
    d: &'a DeliveryRequest,
    headers: String,
    numbers: [i64; 4],
    target: String,
    rules: Option<String>,
}

impl<'a> RequestColumns<'a> {
    fn of(d: &'a DeliveryRequest) -> Result<RequestColumns<'a>, StoreError> {
        Ok(RequestColumns {
            d,
            headers: serde_json::to_string(&d.headers).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            numbers: [
                d.timeout_ms as i64,
                i64::from(d.max_attempts),
                d.first_delay_ms as i64,
                d.max_delay_ms as i64,
            ],
            target: target_of(&d.url),
            rules: rules_json(&d.rules),
        })
    }

    /// The 14 values, after `before` (the statement's own first ones).
    fn after<'b>(&'b self, before: &[&'b dyn Param]) -> Vec<&'b dyn Param> {
        let d = self.d;
        let mut params = before.to_vec();
        params.extend_from_slice(&[
            &d.method,
            &d.url,
            &self.headers,
            &d.body,
            &d.redacted,
            &d.rules.accept.body,
        ]);
        params.extend(self.numbers.iter().map(|n| n as &dyn Param));
        params.extend_from_slice(&[&self.target, &self.rules, &d.expires_at, &d.batch]);
        params
    }
}

pub(super) fn insert_delivery(
    conn: &Db,
    operation_id: i64,
    position: i64,
    d: &DeliveryRequest,
    now: i64,
) -> Result<(), StoreError> {
    let columns = RequestColumns::of(d)?;
    let (status, refused, due) = first_state(d, now);
    conn.execute(
        concat!(
            "INSERT INTO deliveries (",
            delivery_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"
        ),
        &columns.after(&[&operation_id, &d.action, &position, &status, &now, &due, &refused]),
    )?;
    Ok(())
}

/// PostgreSQL: new deliveries' columns as arrays, an element per
/// delivery, for the statement that writes a batch's rows with `unnest`
/// (inserts.rs). Bound in [`delivery_columns`]' order, with the operation's
/// place in that statement's (1-based) for its id.
#[derive(Default)]
pub(super) struct NewDeliveries<'a> {
    operation: Vec<i64>,
    action: Vec<&'a str>,
    position: Vec<i64>,
    status: Vec<&'static str>,
    updated_at: Vec<i64>,
    next_attempt_at: Vec<i64>,
    last_error: Vec<Option<String>>,
    method: Vec<&'a str>,
    url: Vec<&'a str>,
    headers: Vec<String>,
    body: Vec<Option<&'a [u8]>>,
    redacted: Vec<&'a str>,
    expect_body: Vec<Option<&'a str>>,
    numbers: [Vec<i64>; 4],
    target: Vec<String>,
    rules: Vec<Option<String>>,
    expires_at: Vec<Option<i64>>,
    batch_key: Vec<Option<&'a str>>,
}

impl<'a> NewDeliveries<'a> {
    /// Adds `d`, the delivery at `position` of the statement's `operation`th
    /// operation, received at `now`.
    pub(super) fn push(
        &mut self,
        operation: i64,
        position: i64,
        d: &'a DeliveryRequest,
        now: i64,
    ) -> Result<(), StoreError> {
        let RequestColumns {
            headers,
            numbers,
            target,
            rules,
            ..
        } = RequestColumns::of(d)?;
        let (status, refused, due) = first_state(d, now);
        self.operation.push(operation);
        self.action.push(&d.action);
        self.position.push(position);
        self.status.push(status);
        self.updated_at.push(now);
        self.next_attempt_at.push(due);
        self.last_error.push(refused);
        self.method.push(&d.method);
        self.url.push(&d.url);
        self.headers.push(headers);
        self.body.push(d.body.as_deref());
        self.redacted.push(&d.redacted);
        self.expect_body.push(d.rules.accept.body.as_deref());
        for (column, n) in self.numbers.iter_mut().zip(numbers) {
            column.push(n);
        }
        self.target.push(target);
        self.rules.push(rules);
        self.expires_at.push(d.expires_at);
        self.batch_key.push(d.batch.as_deref());
        Ok(())
    }

    /// The 21 arrays with their types, in [`delivery_columns`]' order.
    pub(super) fn params(&self) -> [(&(dyn ToSql + Sync), Type); 21] {
        let [timeout, attempts, first_delay, max_delay] = &self.numbers;
        [
            (&self.operation, Type::INT8_ARRAY),
            (&self.action, Type::TEXT_ARRAY),
            (&self.position, Type::INT8_ARRAY),
            (&self.status, Type::TEXT_ARRAY),
            (&self.updated_at, Type::INT8_ARRAY),
            (&self.next_attempt_at, Type::INT8_ARRAY),
            (&self.last_error, Type::TEXT_ARRAY),
            (&self.method, Type::TEXT_ARRAY),
            (&self.url, Type::TEXT_ARRAY),
            (&self.headers, Type::TEXT_ARRAY),
            (&self.body, Type::BYTEA_ARRAY),
            (&self.redacted, Type::TEXT_ARRAY),
            (&self.expect_body, Type::TEXT_ARRAY),
            (timeout, Type::INT8_ARRAY),
            (attempts, Type::INT8_ARRAY),
            (first_delay, Type::INT8_ARRAY),
            (max_delay, Type::INT8_ARRAY),
            (&self.target, Type::TEXT_ARRAY),
            (&self.rules, Type::TEXT_ARRAY),
            (&self.expires_at, Type::INT8_ARRAY),
            (&self.batch_key, Type::TEXT_ARRAY),
        ]
    }
}

/// A new delivery's status, error and due time: a refused one is failed
/// from the start, with why as its error; a Metrica row waits for its batch.
fn first_state(d: &DeliveryRequest, now: i64) -> (&'static str, Option<String>, i64) {
    let status = if d.refused.is_some() { "failed" } else { "pending" };
    let due = if d.batch.is_some() { NEVER_DUE } else { now };
    (status, d.refused.as_ref().map(Said::store), due)
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
                batch: None,
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
    let columns = RequestColumns::of(d)?;
    let due = if d.batch.is_some() { NEVER_DUE } else { now };
    // A row already in a batch is that batch's: it is not rendered again.
    Ok(conn.execute(
        "UPDATE deliveries SET updated_at = ?2, next_attempt_at = ?3,
             method = ?4, url = ?5, headers = ?6, body = ?7, redacted = ?8, expect_body = ?9, timeout_ms = ?10,
             max_attempts = ?11, first_delay_ms = ?12, max_delay_ms = ?13, target = ?14, rules = ?15, expires_at = ?16,
             batch_key = ?17
         WHERE id = ?1 AND status IN ('pending', 'retrying') AND batch_id IS NULL",
        &columns.after(&[&id, &now, &due]),
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

impl Reader {
    /// An operation's deliveries, in action order, each with every attempt.
    pub(super) fn deliveries(&self, operation_id: i64) -> Result<Vec<DeliveryView>, StoreError> {
        let rows = self.conn.query(
            "SELECT id, action, status, next_attempt_at, last_error, redacted, batch_key IS NOT NULL
             FROM deliveries WHERE operation_id = ?1 ORDER BY position, id",
            &[&operation_id],
            |row| {
                Ok((
                    (
                        row.get::<i64>(0)?,
                        row.get::<String>(1)?,
                        row.get::<String>(2)?,
                        row.get::<i64>(3)?,
                    ),
                    row.get::<Option<Said>>(4)?,
                    row.get::<String>(5)?,
                    row.get::<bool>(6)?,
                ))
            },
        )?;
        rows.into_iter()
            .map(
                |((id, action, status, next_attempt_at), last_error, request, batched)| {
                    Ok(DeliveryView {
                        id,
                        action,
                        status: parse_status(status)?,
                        next_attempt_at,
                        last_error,
                        request,
                        attempts: self.attempts(id)?,
                        batch: if batched { Some(self.batch_of(id)?) } else { None },
                    })
                },
            )
            .collect()
    }

    fn attempts(&self, delivery_id: i64) -> Result<Vec<AttemptView>, StoreError> {
        self.conn.query(
            "SELECT started_at, duration_ms, request, http_status, response_body, error, verdict
             FROM attempts WHERE delivery_id = ?1 ORDER BY id",
            &[&delivery_id],
            |row| {
                Ok(AttemptView {
                    started_at: row.get(0)?,
                    duration_ms: row.get(1)?,
                    request: row.get(2)?,
                    http_status: row.get::<Option<i64>>(3)?.and_then(|s| u16::try_from(s).ok()),
                    response_body: row.get(4)?,
                    error: row.get(5)?,
                    judged: row.get::<Option<String>>(6)?.as_deref().and_then(Judged::parse),
                })
            },
        )
    }
}
