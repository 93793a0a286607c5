//! Deliveries whose `max_age` passed before they could be sent, and those
//! past half of it. Either engine; the daemon's scheduler asks the writer
//! to sweep every second ([`Writer::expire`]) and to warn every minute
//! ([`Writer::warn_aging`]).

use std::collections::BTreeMap;

use super::attempts::refresh_operation_status;
use super::db::Db;
use super::notices::{queue_notification, warn_once};
use super::{StoreError, Writer};
use crate::clock::now_ms;
use crate::model::said::Said;
use crate::model::{notice_day, NotificationKind};

/// Deliveries expired per sweep; the rest go at the next one, a second on.
const EXPIRE_STEP: i64 = 500;

/// Warning kind: deliveries have waited past half their `max_age`.
pub const AGING: &str = "aging";

/// Deliveries one sweep expired: processing, action, how many.
pub type Expired = Vec<(String, String, u64)>;

/// Expires up to [`EXPIRE_STEP`] waiting deliveries whose `expires_at` has
/// passed at `now`: each becomes `expired` (never sent after), its
/// operation's status follows, and each processing gets one notification
/// for the whole sweep. Claimed ones (`in_flight`) are the scheduler's:
/// it expires those it holds through [`expire_claimed`].
pub(super) fn expire(conn: &Db, now: i64) -> Result<Expired, StoreError> {
    let rows = conn.query(
        "SELECT d.id, d.operation_id, d.action, o.processing
         FROM deliveries d JOIN operations o ON o.id = d.operation_id
         WHERE d.status IN ('pending', 'retrying') AND d.expires_at <= ?1
         ORDER BY d.expires_at LIMIT ?2",
        &[&now, &EXPIRE_STEP],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
    )?;
    expire_rows(conn, rows, "'pending', 'retrying'", now)
}

/// Expires these claimed deliveries, which the scheduler held until past
/// their `expires_at`: as [`expire`] does, if they are still claimed and
/// past it.
/// (Given back instead, the next claim would take them again before a
/// sweep could see them.)
pub(super) fn expire_claimed(conn: &Db, ids: &[i64], now: i64) -> Result<Expired, StoreError> {
    let mut rows = Vec::new();
    for id in ids {
        rows.extend(conn.query(
            "SELECT d.id, d.operation_id, d.action, o.processing
             FROM deliveries d JOIN operations o ON o.id = d.operation_id
             WHERE d.id = ?1 AND d.status = 'in_flight' AND d.expires_at <= ?2",
            &[id, &now],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )?);
    }
    expire_rows(conn, rows, "'in_flight'", now)
}

/// Marks `rows` (delivery, operation, action, processing) expired when
/// their status is still one of `statuses` (SQL), refreshes their
/// operations, and tells each processing once.
fn expire_rows(
    conn: &Db,
    rows: Vec<(i64, i64, String, String)>,
    statuses: &str,
    now: i64,
) -> Result<Expired, StoreError> {
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut first_of: BTreeMap<String, i64> = BTreeMap::new();
    let mut operations = Vec::new();
    let update = format!(
        "UPDATE deliveries SET status = 'expired', last_error = ?2, updated_at = ?3, lease_owner = NULL
         WHERE id = ?1 AND status IN ({statuses})"
    );
    for (id, operation_id, action, processing) in rows {
        // Another instance may have sent or expired it since the SELECT.
        if conn.execute(&update, &[&id, &Said::Expired.store(), &now])? == 0 {
            continue;
        }
        first_of.entry(processing.clone()).or_insert(operation_id);
        *counts.entry((processing, action)).or_default() += 1;
        operations.push(operation_id);
    }
    operations.sort_unstable();
    operations.dedup();
    for operation_id in operations {
        refresh_operation_status(conn, operation_id, now)?;
    }
    for (processing, operation_id) in &first_of {
        let by_action: Vec<(String, u64)> = counts
            .iter()
            .filter(|((p, _), _)| p == processing)
            .map(|((_, action), n)| (action.clone(), *n))
            .collect();
        let said = Said::ExpiredBatch { by_action };
        queue_notification(conn, NotificationKind::Failure, processing, *operation_id, &said, now)?;
    }
    Ok(counts.into_iter().map(|((p, a), n)| (p, a, n)).collect())
}

/// Queues a warning, once a day per processing, for each processing with
/// deliveries still waiting past half their `max_age` at `now`: they may
/// expire unsent. How many processings were warned.
pub(super) fn warn_aging(conn: &Db, now: i64) -> Result<usize, StoreError> {
    let rows: Vec<(String, i64, i64, i64)> = conn.query(
        "SELECT o.processing, COUNT(*), MIN(o.id), MIN(d.expires_at)
         FROM deliveries d JOIN operations o ON o.id = d.operation_id
         WHERE d.status IN ('pending', 'retrying') AND d.expires_at > ?1
           AND 2 * CAST(?1 AS BIGINT) >= o.received_at + d.expires_at
         GROUP BY o.processing",
        &[&now],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
    )?;
    let mut warned = 0;
    for (processing, n, operation_id, first) in rows {
        let said = Said::Aging {
            count: n as u64,
            first_expires: crate::clock::rfc3339(first),
        };
        if warn_once(conn, &processing, AGING, notice_day(now), operation_id, &said, now)? {
            warned += 1;
        }
    }
    Ok(warned)
}

impl Writer {
    /// Expires the waiting deliveries whose `max_age` passed, a few hundred
    /// a job; what it expired. Blocks: plain threads only.
    pub fn expire(&self) -> Result<Expired, StoreError> {
        self.run_blocking(false, |conn| expire(conn, now_ms()))
    }

    /// Expires claimed deliveries the scheduler held past their
    /// `max_age`; what it expired. Blocks: plain threads only.
    pub fn expire_claimed(&self, ids: Vec<i64>) -> Result<Expired, StoreError> {
        self.run_blocking(false, move |conn| expire_claimed(conn, &ids, now_ms()))
    }

    /// Warns, once a day per processing, about deliveries waiting past half
    /// their `max_age`. Blocks: plain threads only.
    pub fn warn_aging(&self) -> Result<usize, StoreError> {
        self.run_blocking(false, |conn| warn_aging(conn, now_ms()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OpStatus;
    use crate::store::tests::{insert_all, operation, quiet};
    use crate::store::{spawn_writer, Reader};

    /// A waiting delivery past its `expires_at` becomes `expired` with its
    /// operation `failed`, and each processing is told once per sweep; one
    /// not yet due to expire, or already sent, is left alone. Past half its
    /// age, a waiting one is warned about once a day.
    #[test]
    fn expired_deliveries_are_never_sent_and_told_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (writer, _thread) = spawn_writer(&path, quiet()).unwrap();
        let now = now_ms();
        let mut old = operation(None, &["plarin", "crm"]);
        old.received_at = now - 10_000;
        for d in &mut old.deliveries {
            d.expires_at = Some(now - 1_000);
        }
        let mut young = operation(None, &["plarin"]);
        young.received_at = now - 10_000;
        young.deliveries[0].expires_at = Some(now + 5_000);
        let ids = insert_all(&writer, vec![old, young]);

        let expired = writer.expire().unwrap();
        assert_eq!(
            expired,
            [
                ("p".to_string(), "crm".to_string(), 1),
                ("p".to_string(), "plarin".to_string(), 1)
            ]
        );
        assert!(writer.expire().unwrap().is_empty(), "each expires once");
        let reader = Reader::open(&path).unwrap();
        let op = reader.operation(ids[0].id).unwrap().unwrap();
        assert_eq!(op.summary.status, OpStatus::Failed);
        assert!(op
            .deliveries
            .iter()
            .all(|d| d.status == crate::model::DeliveryStatus::Expired && d.last_error == Some(Said::Expired)));
        let young = reader.operation(ids[1].id).unwrap().unwrap();
        assert_eq!(young.summary.status, OpStatus::Queued);

        let conn = rusqlite::Connection::open(&path).unwrap();
        let texts = |kind: &str| -> Vec<String> {
            let mut statement = conn
                .prepare("SELECT text FROM notifications WHERE kind = ?1 ORDER BY id")
                .unwrap();
            statement
                .query_map([kind], |row| row.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let failures = texts("failure");
        assert_eq!(failures.len(), 1, "one notice for the sweep: {failures:?}");
        assert!(Said::read(&failures[0])
            .to_string()
            .starts_with("2 deliveries expired unsent (action `crm`: 1, action `plarin`: 1)"));

        // The young one (10 s old, expiring in 5 s) is past half its age.
        // Claimed (the scheduler holds it) and past its age: expired when
        // the scheduler says so, not by the sweep, which leaves it alone.
        let mut held = operation(None, &["plarin"]);
        held.deliveries[0].expires_at = Some(now - 1);
        let held = insert_all(&writer, vec![held])[0].id;
        let claimed = writer.claim_due(now_ms(), 10, Vec::new()).unwrap();
        let ids: Vec<i64> = claimed.due.iter().map(|d| d.id).collect();
        assert_eq!(claimed.due.len(), 2, "the young one and the held one");
        assert!(writer.expire().unwrap().is_empty());
        let expired = writer.expire_claimed(ids.clone()).unwrap();
        assert_eq!(expired, [("p".to_string(), "plarin".to_string(), 1)]);
        let op = reader.operation(held).unwrap().unwrap();
        assert_eq!(op.deliveries[0].status, crate::model::DeliveryStatus::Expired);
        // The young one goes back to waiting.
        writer.release(ids).unwrap();

        let backlog = reader.processing_status("p").unwrap().backlog;
        assert_eq!((backlog.aging, backlog.first_expiry), (1, Some(now + 5_000)));
        assert_eq!(writer.warn_aging().unwrap(), 1);
        assert_eq!(writer.warn_aging().unwrap(), 0, "once a day");
        assert_eq!(
            texts("warning")
                .iter()
                .filter(|t| Said::read(t).kind() == AGING)
                .count(),
            1
        );
    }
}
