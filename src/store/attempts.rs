//! An attempt's result: the delivery's new state, the attempt's row, the
//! operation's status rolled up from its deliveries, and what the attempt
//! leaves for later (a notification, the receiver's breaker, a remembered
//! value). The writer thread runs this inside the batch's transaction.

use super::db::{Db, Dialect, Param};
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

/// The statuses an operation's deliveries decide; the others (held,
/// skipped, rejected, duplicate) are not rolled up.
macro_rules! rolled_up_statuses {
    () => {
        "('queued', 'delivered', 'failed', 'partial')"
    };
}

/// An attempt's row, its values numbered as the statement binds them:
/// the delivery, started, duration, request, HTTP status, response body,
/// error, verdict.
macro_rules! insert_attempt {
    ($values:literal) => {
        concat!(
            "INSERT INTO attempts (delivery_id, started_at, duration_ms, request, http_status, response_body, error,
                 verdict)
             VALUES (",
            $values,
            ")"
        )
    };
}

pub(super) fn record_attempt(conn: &Db, r: &AttemptRecord) -> Result<(), StoreError> {
    let now = now_ms();
    let last_error = match (&r.error, r.http_status) {
        _ if r.outcome == Outcome::Delivered => None,
        (Some(err), _) => Some(err.store()),
        (None, Some(status)) => Some(Said::Http { status }.store()),
        (None, None) => None,
    };
    let error = r.error.as_ref().map(Said::store);
    let verdict = r.judged.as_ref().map(Judged::to_json);
    let http_status = r.http_status.map(i64::from);
    let attempt: [&dyn Param; 7] = [
        &r.started_at,
        &r.duration_ms,
        &r.request,
        &http_status,
        &r.response_body,
        &error,
        &verdict,
    ];
    // On PostgreSQL the delivery, its attempt and the operation's status
    // are one statement (one round trip of the single writer, not three).
    let mut recorded = false;
    let operation_id: i64 = match (r.outcome, conn.dialect()) {
        // Due again at once, and held back by the breaker until it closes;
        // the attempt is recorded but not counted against the budget.
        (Outcome::Parked, _) => conn.query_one(
            "UPDATE deliveries SET status = CASE WHEN attempts > 0 THEN 'retrying' ELSE 'pending' END,
                 next_attempt_at = ?2, last_error = ?3, updated_at = ?2, lease_owner = NULL
             WHERE id = ?1 RETURNING operation_id",
            &[&r.delivery_id, &now, &last_error],
            |row| row.get(0),
        )?,
        (outcome, dialect) => {
            let (status, next_at) = match outcome {
                Outcome::RetryAt(at) => (DeliveryStatus::Retrying, Some(at)),
                Outcome::Failed => (DeliveryStatus::Failed, None),
                _ => (DeliveryStatus::Delivered, None),
            };
            let status = status.as_str();
            let mut params: Vec<&dyn Param> = vec![&r.delivery_id, &status, &next_at, &last_error, &now];
            if dialect == Dialect::Postgres {
                params.extend(attempt);
                recorded = true;
            }
            conn.query_one(
                match dialect {
                    Dialect::Sqlite => {
                        "UPDATE deliveries SET status = ?2, attempts = attempts + 1,
                             next_attempt_at = COALESCE(?3, next_attempt_at), last_error = ?4, updated_at = ?5,
                             lease_owner = NULL
                         WHERE id = ?1 RETURNING operation_id"
                    }
                    // Every part of a WITH reads the same snapshot: the
                    // roll-up sees this delivery's old status, so it is
                    // given the new one.
                    Dialect::Postgres => concat!(
                        "WITH updated AS (
                             UPDATE deliveries SET status = ?2, attempts = attempts + 1,
                                 next_attempt_at = COALESCE(?3, next_attempt_at), last_error = ?4, updated_at = ?5,
                                 lease_owner = NULL
                             WHERE id = ?1 RETURNING operation_id),
                         attempt AS (",
                        insert_attempt!("?1, ?6, ?7, ?8, ?9, ?10, ?11, ?12"),
                        "),
                         operation AS (
                             UPDATE operations SET updated_at = ?5, status = ",
                        status_roll_up!(
                            "(SELECT operation_id FROM updated)",
                            "(CASE WHEN d.id = ?1 THEN ?2 ELSE d.status END)"
                        ),
                        " WHERE id = (SELECT operation_id FROM updated) AND status IN ",
                        rolled_up_statuses!(),
                        ")
                         SELECT operation_id FROM updated"
                    ),
                },
                &params,
                |row| row.get(0),
            )?
        }
    };
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
    if recorded {
        return Ok(());
    }
    let mut params: Vec<&dyn Param> = vec![&r.delivery_id];
    params.extend(attempt);
    conn.execute(insert_attempt!("?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8"), &params)?;
    refresh_operation_status(conn, operation_id, now)
}

/// Sets an operation's status from its deliveries' statuses in one
/// statement, so an attempt's record does not read the deliveries back
/// first (a round trip on PostgreSQL).
pub(super) fn refresh_operation_status(conn: &Db, operation_id: i64, now: i64) -> Result<(), StoreError> {
    conn.execute(
        concat!(
            "UPDATE operations SET updated_at = ?2, status = ",
            status_roll_up!("?1", "d.status"),
            " WHERE id = ?1 AND status IN ",
            rolled_up_statuses!()
        ),
        &[&operation_id, &now],
    )?;
    Ok(())
}
