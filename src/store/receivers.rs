//! Receivers' circuit breakers and last answers, kept between restarts,
//! and the breaker notices queued with the attempt that changed them.

use super::db::{Db, Dialect, Row};
use super::notices::queue_notification;
use super::read::{unsent, Reader};
use super::StoreError;
use crate::model::said::Said;
use crate::model::{breaker_notice, BreakerChange, NotificationKind, Open, ReceiverState};

const COLUMNS: &str = "target, version, failures, failing_since, open_since, probe_wait_ms, next_probe_at,
     last_success_at, last_error, last_error_at";

fn state_row(row: &Row) -> Result<ReceiverState, StoreError> {
    let open_since: Option<i64> = row.get(4)?;
    Ok(ReceiverState {
        target: row.get(0)?,
        version: row.get(1)?,
        failures: super::db::count(row.get(2)?),
        failing_since: row.get(3)?,
        open: match open_since {
            Some(since) => Some(Open {
                since,
                probe_wait_ms: row.get::<Option<i64>>(5)?.unwrap_or(0),
                next_probe_at: row.get::<Option<i64>>(6)?.unwrap_or(0),
            }),
            None => None,
        },
        last_success_at: row.get(7)?,
        last_error: row.get(8)?,
        last_error_at: row.get(9)?,
        change: None,
    })
}

/// Every receiver kept, by target.
pub(super) fn load(conn: &Db) -> Result<Vec<ReceiverState>, StoreError> {
    conn.query(
        &format!("SELECT {COLUMNS} FROM receivers ORDER BY target"),
        &[],
        state_row,
    )
}

/// Deliveries to `target` waiting to be sent.
pub(super) fn waiting(conn: &Db, target: &str) -> Result<i64, StoreError> {
    conn.query_one(
        "SELECT count(*) FROM deliveries WHERE target = ?1 AND status IN ('pending', 'retrying')",
        &[&target],
        |row| row.get(0),
    )
}

/// Keeps `state` unless a newer one is kept already, and queues the notice
/// of its breaker's change, naming `processing` and `operation_id` (the
/// delivery that changed it).
///
/// Instances sharing a PostgreSQL database each run the breaker on what
/// they see and keep their states in the same row, so the row merges them:
/// only a closing state (an answer) clears an open breaker, an opening
/// state leaves one already open as it is, and a change is announced only
/// by the instance whose state made it in the row. With one instance
/// (SQLite) a state never does otherwise, so this keeps it as it is.
pub(super) fn save(
    conn: &Db,
    state: &ReceiverState,
    (processing, operation_id): (&str, i64),
    now: i64,
) -> Result<(), StoreError> {
    let closing = matches!(state.change, Some(BreakerChange::Closed { .. }));
    // Whether the kept breaker was open before; the row stays locked until
    // the commit, so another instance's change waits for this one.
    let was_open = match state.change {
        None => None,
        Some(_) => conn
            .query_opt(
                match conn.dialect() {
                    Dialect::Sqlite => "SELECT open_since IS NOT NULL FROM receivers WHERE target = ?1",
                    Dialect::Postgres => "SELECT open_since IS NOT NULL FROM receivers WHERE target = ?1 FOR UPDATE",
                },
                &[&state.target],
                |row| row.get::<bool>(0),
            )?
            .or(Some(false)),
    };
    let opening = matches!(state.change, Some(BreakerChange::Opened));
    let open = state.open.as_ref();
    // A state older than the kept one is dropped, except one that opens a
    // closed breaker or closes an open one: two instances' attempts reach
    // the row in any order, and a change must not be lost to an older
    // attempt's report that merely came later.
    let written = conn.execute(
        &format!(
            "INSERT INTO receivers ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (target) DO UPDATE SET
             version = CASE WHEN excluded.version > receivers.version THEN excluded.version
                            ELSE receivers.version + 1 END,
             failures = excluded.failures,
             failing_since = excluded.failing_since,
             open_since = CASE WHEN CAST(?11 AS BIGINT) = 1 OR receivers.open_since IS NULL THEN excluded.open_since
                               ELSE receivers.open_since END,
             probe_wait_ms = CASE WHEN CAST(?11 AS BIGINT) = 1 OR receivers.open_since IS NULL OR excluded.open_since IS NOT NULL
                                  THEN excluded.probe_wait_ms ELSE receivers.probe_wait_ms END,
             next_probe_at = CASE WHEN CAST(?11 AS BIGINT) = 1 OR receivers.open_since IS NULL OR excluded.open_since IS NOT NULL
                                  THEN excluded.next_probe_at ELSE receivers.next_probe_at END,
             last_success_at = excluded.last_success_at, last_error = excluded.last_error,
             last_error_at = excluded.last_error_at
         WHERE excluded.version > receivers.version
            OR (CAST(?11 AS BIGINT) = 1 AND receivers.open_since IS NOT NULL)
            OR (CAST(?12 AS BIGINT) = 1 AND receivers.open_since IS NULL)"
        ),
        &[
            &state.target,
            &state.version,
            &i64::from(state.failures),
            &state.failing_since,
            &open.map(|o| o.since),
            &open.map(|o| o.probe_wait_ms),
            &open.map(|o| o.next_probe_at),
            &state.last_success_at,
            &state.last_error.as_ref().map(Said::store),
            &state.last_error_at,
            &i64::from(closing),
            &i64::from(opening),
        ],
    )?;
    let announced = match (state.change, was_open) {
        _ if written == 0 => None,
        (Some(BreakerChange::Opened), Some(true)) => None,
        (Some(BreakerChange::Closed { .. }), Some(false)) => None,
        (change, _) => change,
    };
    if let Some(change) = announced {
        let text = breaker_notice(state, change, waiting(conn, &state.target)?);
        queue_notification(conn, NotificationKind::Receiver, processing, operation_id, &text, now)?;
    }
    Ok(())
}

/// Closes `target`'s open breaker by hand (`hookrelay receiver reset`, the
/// console, or a reload that turned it off): its waiting deliveries go out
/// again. The version grows as an attempt's would, so every instance
/// adopts the closed state. Whether it was open.
pub(super) fn close_breaker(conn: &Db, target: &str, now: i64) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE receivers SET
             version = CASE WHEN version + 1 > ?2 THEN version + 1 ELSE ?2 END,
             failures = 0, failing_since = NULL, open_since = NULL, probe_wait_ms = NULL, next_probe_at = NULL
         WHERE target = ?1 AND open_since IS NOT NULL",
        &[&target, &now.saturating_mul(1000)],
    )? == 1)
}

/// Takes the open breaker's probe of `target` for this instance, if one is
/// due at `now` and no other instance took it: the next probe then waits
/// until `next` (the answer of this one sets the real time). Whether it
/// was taken.
pub(super) fn take_probe(conn: &Db, target: &str, now: i64, next: i64) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE receivers SET next_probe_at = ?3
         WHERE target = ?1 AND open_since IS NOT NULL AND next_probe_at <= ?2",
        &[&target, &now, &next],
    )? == 1)
}

/// What waits to be sent, per processing or per receiver.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Backlog {
    /// Deliveries not yet sent: pending, waiting to retry, or claimed.
    pub waiting: u64,
    /// When the oldest operation among them was received.
    pub oldest: Option<i64>,
    /// Those past half their `max_age`: they may expire unsent (counted
    /// per processing only).
    pub aging: u64,
    /// When the first of them that can expire does (per processing only).
    pub first_expiry: Option<i64>,
}

/// One processing, for `hookrelay status`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessingStatus {
    pub backlog: Backlog,
    /// The newest operation delivered in full: id and when it finished.
    pub last_delivered: Option<(i64, i64)>,
    /// The newest operation that failed (in full or in part): id, when, and
    /// the error of its last failed delivery.
    pub last_failed: Option<(i64, i64, Option<Said>)>,
}

/// One receiver, for `hookrelay status`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverStatus {
    pub state: ReceiverState,
    pub backlog: Backlog,
}

impl Reader {
    /// Every receiver's breaker as kept, without what waits for each.
    pub fn receiver_states(&self) -> Result<Vec<ReceiverState>, StoreError> {
        load(&self.conn)
    }

    /// Every receiver kept or with deliveries waiting, by target.
    pub fn receiver_statuses(&self) -> Result<Vec<ReceiverStatus>, StoreError> {
        let mut list: Vec<ReceiverStatus> = load(&self.conn)?
            .into_iter()
            .map(|state| ReceiverStatus {
                state,
                backlog: Backlog::default(),
            })
            .collect();
        // The waiting deliveries (a partial index) drive the join; see
        // overview.rs's `waiting`.
        let rows = self.conn.query(
            &format!(
                "SELECT target, CAST(SUM(n) AS BIGINT), MIN(oldest) FROM ({}) AS w GROUP BY target",
                unsent(
                    self.driving_join(),
                    "d.target AS target, COUNT(*) AS n, MIN(o.received_at) AS oldest",
                    "",
                    "GROUP BY d.target"
                )
            ),
            &[],
            |row| Ok((row.get::<String>(0)?, row.get::<i64>(1)?, row.get(2)?)),
        )?;
        for (target, waiting, oldest) in rows {
            let backlog = Backlog {
                waiting: waiting as u64,
                oldest,
                aging: 0,
                first_expiry: None,
            };
            match list.iter_mut().find(|r| r.state.target == target) {
                Some(known) => known.backlog = backlog,
                None => list.push(ReceiverStatus {
                    state: ReceiverState {
                        target,
                        ..ReceiverState::default()
                    },
                    backlog,
                }),
            }
        }
        list.sort_by(|a, b| a.state.target.cmp(&b.state.target));
        Ok(list)
    }

    /// `processing`'s backlog, last delivered and last failed operation.
    pub fn processing_status(&self, processing: &str) -> Result<ProcessingStatus, StoreError> {
        let backlog = self.conn.query_one(
            &format!(
                "SELECT CAST(SUM(n) AS BIGINT), MIN(oldest), CAST(SUM(aging) AS BIGINT), MIN(expiry) FROM ({}) AS w",
                unsent(
                    self.driving_join(),
                    "COUNT(*) AS n, MIN(o.received_at) AS oldest,
                     SUM(CASE WHEN 2 * CAST(?2 AS BIGINT) >= o.received_at + d.expires_at THEN 1 ELSE 0 END) AS aging,
                     MIN(d.expires_at) AS expiry",
                    " AND o.processing = ?1",
                    ""
                )
            ),
            &[&processing, &crate::clock::now_ms()],
            |row| {
                Ok(Backlog {
                    waiting: row.get::<Option<i64>>(0)?.unwrap_or(0) as u64,
                    oldest: row.get(1)?,
                    aging: row.get::<Option<i64>>(2)?.unwrap_or(0) as u64,
                    first_expiry: row.get(3)?,
                })
            },
        )?;
        let last = |statuses: &str| -> Result<Option<(i64, i64)>, StoreError> {
            self.conn.query_opt(
                &format!(
                    "SELECT id, updated_at FROM operations
                     WHERE processing = ?1 AND status IN ({statuses}) ORDER BY id DESC LIMIT 1"
                ),
                &[&processing],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
        };
        let last_failed = match last("'failed', 'partial'")? {
            Some((id, at)) => {
                let error: Option<Said> = self
                    .conn
                    .query_opt(
                        "SELECT last_error FROM deliveries WHERE operation_id = ?1 AND status IN ('failed', 'expired', 'cancelled')
                         ORDER BY id DESC LIMIT 1",
                        &[&id],
                        |row| row.get(0),
                    )?
                    .flatten();
                Some((id, at, error))
            }
            None => None,
        };
        Ok(ProcessingStatus {
            backlog,
            last_delivered: last("'delivered'")?,
            last_failed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AttemptRecord, BreakerChange, DeliveryStatus, Outcome};
    use crate::store::spawn_writer;
    use crate::store::tests::{insert_all, operation, quiet};

    fn attempt(delivery_id: i64, outcome: Outcome, receiver: ReceiverState) -> AttemptRecord {
        AttemptRecord {
            delivery_id,
            started_at: 1_000,
            duration_ms: 2,
            request: String::new(),
            http_status: Some(503),
            response_body: None,
            error: None,
            judged: None,
            outcome,
            failure_notice: None,
            receiver: Some(receiver),
            remember: None,
        }
    }

    /// A parked attempt is recorded but leaves the delivery due and its
    /// budget unspent; the breaker's state is kept, a late older state does
    /// not replace it, and the opening is queued as a notice.
    #[test]
    fn parked_attempts_keep_the_budget_and_the_breaker_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (writer, thread) = spawn_writer(&path, quiet()).unwrap();
        let id = insert_all(&writer, vec![operation(None, &["a"])])[0].id;
        let due = writer.claim_due(i64::MAX / 2, 10, Vec::new()).unwrap().due;
        let target = due[0].target.clone();
        let open = ReceiverState {
            target: target.clone(),
            version: 7,
            failures: 5,
            failing_since: Some(500),
            open: Some(Open {
                since: 500,
                probe_wait_ms: 30_000,
                next_probe_at: 31_000,
            }),
            last_error: Some("HTTP 503".into()),
            last_error_at: Some(1_000),
            change: Some(BreakerChange::Opened),
            ..ReceiverState::default()
        };
        writer
            .record(attempt(due[0].id, Outcome::Parked, open.clone()))
            .unwrap();
        let stale = ReceiverState {
            version: 3,
            open: None,
            change: None,
            ..open.clone()
        };
        let again = writer.claim_due(i64::MAX / 2, 10, Vec::new()).unwrap().due;
        assert_eq!(again.len(), 1, "a parked delivery is due again");
        assert_eq!(again[0].attempts, 0, "and its attempt was not counted");
        writer.record(attempt(again[0].id, Outcome::Parked, stale)).unwrap();
        let kept = writer.receivers().unwrap();
        drop(writer);
        thread.join().unwrap();

        assert_eq!(kept, vec![ReceiverState { change: None, ..open }]);
        let reader = Reader::open(&path).unwrap();
        let op = reader.operation(id).unwrap().unwrap();
        assert_eq!(op.deliveries[0].status, DeliveryStatus::Pending);
        assert_eq!(op.deliveries[0].attempts.len(), 2, "both attempts are recorded");
        let mut notices = reader.pending_notifications(0, 10).unwrap();
        notices.retain(|n| n.kind != NotificationKind::Warning);
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert_eq!(notices[0].kind, NotificationKind::Receiver);
        assert!(
            notices[0]
                .text
                .to_string()
                .contains(&format!("receiver {target} fails since"))
                && notices[0].text.to_string().contains("1 deliveries wait"),
            "{}",
            notices[0].text
        );
        let statuses = reader.receiver_statuses().unwrap();
        assert_eq!(statuses.len(), 1);
        assert_eq!(statuses[0].backlog.waiting, 1);
        assert!(statuses[0].state.open.is_some());
    }
}
