//! An attempt's result: the delivery's new state, the attempt's row, the
//! operation's status rolled up from its deliveries, and what the attempt
//! leaves for later (a notification, the receiver's breaker, a remembered
//! value). The writer thread runs this inside the batch's transaction.

use std::collections::HashMap;

use postgres::types::Type;

use super::db::{Db, Pg};
use super::notices::queue_notification;
use super::StoreError;
use crate::clock::now_ms;
use crate::model::response::Judged;
use crate::model::said::Said;
use crate::model::{AttemptRecord, DeliveryStatus, NotificationKind, Outcome};

/// The roll-up of `model::operation_status` in SQL, for the operation
/// `$operation` (an SQL expression), reading each delivery's status as
/// `$status` (an SQL expression over `d`): queued while any is unfinished,
/// else failed, delivered or partial by how many were delivered. A replay
/// adds deliveries after the old ones; for each action only the newest
/// counts.
macro_rules! status_roll_up {
    ($operation:literal, $status:literal) => {
        concat!(
            "(SELECT CASE
                 WHEN count(*) = 0 OR sum(CASE WHEN ",
            $status,
            " IN ('delivered', 'failed', 'cancelled', 'expired') THEN 0 ELSE 1 END) > 0 THEN 'queued'
                 WHEN sum(CASE WHEN ",
            $status,
            " = 'delivered' THEN 1 ELSE 0 END) = 0 THEN 'failed'
                 WHEN sum(CASE WHEN ",
            $status,
            " = 'delivered' THEN 1 ELSE 0 END) = count(*) THEN 'delivered'
                 ELSE 'partial' END
             FROM deliveries d WHERE d.operation_id = ",
            $operation,
            " AND ",
            newest_per_action!(),
            ")"
        )
    };
}

/// The statuses an operation's deliveries do not decide, so an operation
/// in one is not rolled up; every other is. Asked as `status NOT IN`,
/// which no index answers: with `status IN` the other four, PostgreSQL
/// misled by statistics taken while every operation was held walked the
/// whole status index rather than look each operation up by its id (a
/// drain after a replay: 24 ms a batch of attempts instead of about 1).
macro_rules! not_rolled_up {
    () => {
        "('skipped', 'duplicate', 'held', 'rejected')"
    };
}

/// An attempt's row's columns, in the order both engines bind them.
macro_rules! attempt_columns {
    () => {
        "delivery_id, started_at, duration_ms, request, http_status, response_body, error, verdict"
    };
}

/// Records one attempt's result.
pub(super) fn record_attempt(conn: &Db, r: &AttemptRecord) -> Result<(), StoreError> {
    match (r.outcome, conn) {
        (Outcome::Parked, _) | (_, Db::Sqlite(_)) => record_apart(conn, r),
        (_, Db::Postgres(pg)) => record_together(pg, conn, &[r]),
    }
}

/// Records attempts' results. On PostgreSQL those of a batch go in as few
/// statements as can keep their order where it matters: two results for
/// one delivery (one carried from a failed commit) go in turn.
pub(super) fn record_attempts(conn: &Db, records: &[&AttemptRecord]) -> Result<(), StoreError> {
    let Db::Postgres(pg) = conn else {
        return records.iter().try_for_each(|r| record_attempt(conn, r));
    };
    let mut pending: Vec<&AttemptRecord> = Vec::with_capacity(records.len());
    for &r in records {
        if pending.iter().any(|p| p.delivery_id == r.delivery_id) {
            record_together(pg, conn, &pending)?;
            pending.clear();
        }
        if r.outcome == Outcome::Parked {
            record_apart(conn, r)?;
        } else {
            pending.push(r);
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    record_together(pg, conn, &pending)
}

/// An attempt's values as its row and its delivery keep them.
struct Values<'a> {
    r: &'a AttemptRecord,
    /// The delivery's error until its next attempt.
    last_error: Option<String>,
    error: Option<String>,
    verdict: Option<String>,
    http_status: Option<i64>,
}

impl<'a> Values<'a> {
    fn of(r: &'a AttemptRecord) -> Values<'a> {
        Values {
            r,
            last_error: match (&r.error, r.http_status) {
                _ if r.outcome == Outcome::Delivered => None,
                (Some(err), _) => Some(err.store()),
                (None, Some(status)) => Some(Said::Http { status }.store()),
                (None, None) => None,
            },
            error: r.error.as_ref().map(Said::store),
            verdict: r.judged.as_ref().map(Judged::to_json),
            http_status: r.http_status.map(i64::from),
        }
    }

    /// The delivery's new status and when it is due again (an attempt
    /// that is not parked).
    fn next_state(&self) -> (&'static str, Option<i64>) {
        let (status, next_at) = match self.r.outcome {
            Outcome::RetryAt(at) => (DeliveryStatus::Retrying, Some(at)),
            Outcome::Failed => (DeliveryStatus::Failed, None),
            _ => (DeliveryStatus::Delivered, None),
        };
        (status.as_str(), next_at)
    }
}

/// Records an attempt in a statement per row: on SQLite (calls within the
/// process), and a parked attempt on either engine.
fn record_apart(conn: &Db, r: &AttemptRecord) -> Result<(), StoreError> {
    let now = now_ms();
    let values = Values::of(r);
    let operation_id: i64 = if r.outcome == Outcome::Parked {
        // Due again at once, and held back by the breaker until it closes;
        // the attempt is recorded but not counted against the budget.
        conn.query_one(
            "UPDATE deliveries SET status = CASE WHEN attempts > 0 THEN 'retrying' ELSE 'pending' END,
                 next_attempt_at = ?2, last_error = ?3, updated_at = ?2, lease_owner = NULL
             WHERE id = ?1 RETURNING operation_id",
            &[&r.delivery_id, &now, &values.last_error],
            |row| row.get(0),
        )?
    } else {
        let (status, next_at) = values.next_state();
        conn.query_one(
            "UPDATE deliveries SET status = ?2, attempts = attempts + 1,
                 next_attempt_at = COALESCE(?3, next_attempt_at), last_error = ?4, updated_at = ?5,
                 lease_owner = NULL
             WHERE id = ?1 RETURNING operation_id",
            &[&r.delivery_id, &status, &next_at, &values.last_error, &now],
            |row| row.get(0),
        )?
    };
    conn.execute(
        concat!(
            "INSERT INTO attempts (",
            attempt_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ),
        &[
            &r.delivery_id,
            &r.started_at,
            &r.duration_ms,
            &r.request,
            &values.http_status,
            &r.response_body,
            &values.error,
            &values.verdict,
        ],
    )?;
    refresh_operation_status(conn, operation_id, now)?;
    leave_for_later(conn, r, operation_id, now)
}

/// PostgreSQL: attempts' deliveries, their rows and their operations'
/// statuses, each column an array with an element per attempt. Every
/// part of a WITH reads the same snapshot: the roll-up sees the
/// deliveries' old statuses, so it is given the new ones.
const RECORD_PG: &str = concat!(
    "WITH input AS (
         SELECT * FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::bigint[],
                              $8::text[], $9::bigint[], $10::text[], $11::text[], $12::text[])
             WITH ORDINALITY AS a(delivery_id, status, next_at, last_error, started_at, duration_ms, request,
                 http_status, response_body, error, verdict, n)),
     updated AS (
         UPDATE deliveries d SET status = a.status, attempts = d.attempts + 1,
             next_attempt_at = COALESCE(a.next_at, d.next_attempt_at), last_error = a.last_error,
             updated_at = $1, lease_owner = NULL
         FROM input a WHERE d.id = a.delivery_id
         RETURNING d.id, d.operation_id),
     attempt AS (
         INSERT INTO attempts (",
    attempt_columns!(),
    ")
         SELECT ",
    attempt_columns!(),
    " FROM input ORDER BY n),
     operation AS (
         UPDATE operations o SET updated_at = $1, status = ",
    status_roll_up!(
        "o.id",
        "COALESCE((SELECT a.status FROM input a WHERE a.delivery_id = d.id), d.status)"
    ),
    " WHERE o.id IN (SELECT operation_id FROM updated) AND o.status NOT IN ",
    not_rolled_up!(),
    ")
     SELECT id, operation_id FROM updated"
);

/// Records attempts (none parked, each for a delivery of its own) in one
/// statement, a round trip of the single writer rather than three each.
fn record_together(pg: &Pg, conn: &Db, records: &[&AttemptRecord]) -> Result<(), StoreError> {
    let now = now_ms();
    let values: Vec<Values> = records.iter().map(|r| Values::of(r)).collect();
    let states: Vec<(&str, Option<i64>)> = values.iter().map(Values::next_state).collect();
    let ints = |column: fn(&AttemptRecord) -> i64| -> Vec<i64> { records.iter().map(|r| column(r)).collect() };
    let texts = |column: for<'v> fn(&'v Values<'v>) -> Option<&'v str>| -> Vec<Option<&str>> {
        values.iter().map(column).collect()
    };
    let (delivery_id, started_at, duration_ms) =
        (ints(|r| r.delivery_id), ints(|r| r.started_at), ints(|r| r.duration_ms));
    let status: Vec<&str> = states.iter().map(|(status, _)| *status).collect();
    let next_at: Vec<Option<i64>> = states.iter().map(|(_, at)| *at).collect();
    let http_status: Vec<Option<i64>> = values.iter().map(|v| v.http_status).collect();
    let request: Vec<&str> = records.iter().map(|r| r.request.as_str()).collect();
    let last_error = texts(|v| v.last_error.as_deref());
    let response_body = texts(|v| v.r.response_body.as_deref());
    let error = texts(|v| v.error.as_deref());
    let verdict = texts(|v| v.verdict.as_deref());
    let operations: HashMap<i64, i64> = pg
        .query_typed(
            RECORD_PG,
            &[
                (&now, Type::INT8),
                (&delivery_id, Type::INT8_ARRAY),
                (&status, Type::TEXT_ARRAY),
                (&next_at, Type::INT8_ARRAY),
                (&last_error, Type::TEXT_ARRAY),
                (&started_at, Type::INT8_ARRAY),
                (&duration_ms, Type::INT8_ARRAY),
                (&request, Type::TEXT_ARRAY),
                (&http_status, Type::INT8_ARRAY),
                (&response_body, Type::TEXT_ARRAY),
                (&error, Type::TEXT_ARRAY),
                (&verdict, Type::TEXT_ARRAY),
            ],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?
        .into_iter()
        .collect();
    for r in records {
        let Some(&operation_id) = operations.get(&r.delivery_id) else {
            return Err(StoreError::Corrupt(format!(
                "delivery {} is not in the database",
                r.delivery_id
            )));
        };
        leave_for_later(conn, r, operation_id, now)?;
    }
    Ok(())
}

/// What an attempt leaves for later: the operator's notice of a failure,
/// the receiver's breaker, a value a later event may recall.
fn leave_for_later(conn: &Db, r: &AttemptRecord, operation_id: i64, now: i64) -> Result<(), StoreError> {
    let needs_processing = r.failure_notice.is_some() || r.receiver.as_ref().is_some_and(|s| s.change.is_some());
    let processing: String = if needs_processing {
        conn.query_one(
            "SELECT processing FROM operations WHERE id = ?1",
            &[&operation_id],
            |row| row.get(0),
        )?
    } else {
        String::new()
    };
    if let Some(text) = &r.failure_notice {
        queue_notification(conn, NotificationKind::Failure, &processing, operation_id, text, now)?;
    }
    if let Some(state) = &r.receiver {
        super::receivers::save(conn, state, (&processing, operation_id), now)?;
    }
    if let Some((name, key, value)) = &r.remember {
        super::remembered::remember(conn, name, key, value, now)?;
    }
    Ok(())
}

/// Sets an operation's status from its deliveries' statuses in one
/// statement, so an attempt's record does not read the deliveries back
/// first (a round trip on PostgreSQL).
pub(super) fn refresh_operation_status(conn: &Db, operation_id: i64, now: i64) -> Result<(), StoreError> {
    conn.execute(
        concat!(
            "UPDATE operations SET updated_at = ?2, status = ",
            status_roll_up!("?1", "d.status"),
            " WHERE id = ?1 AND status NOT IN ",
            not_rolled_up!()
        ),
        &[&operation_id, &now],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::model::{operation_status, DeliveryStatus, OpStatus};

    /// The statuses left out of the roll-up are exactly those the model's
    /// roll-up never gives.
    #[test]
    fn the_statuses_left_out_are_those_the_roll_up_never_gives() {
        let mut given = vec![operation_status(&[])];
        for a in DeliveryStatus::ALL {
            given.push(operation_status(&[*a]));
            for b in DeliveryStatus::ALL {
                given.push(operation_status(&[*a, *b]));
            }
        }
        let left_out = not_rolled_up!();
        for status in OpStatus::ALL {
            let named = left_out.contains(&format!("'{status}'"));
            assert_eq!(named, !given.contains(status), "{status}");
        }
    }
}
