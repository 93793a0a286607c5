//! The console's overview of one processing: what came lately and what waits.

use super::db::Dialect;
use super::read::Reader;
use super::StoreError;
use crate::model::said::Said;
use crate::model::{DeliveryStatus, OpStatus};

const HOUR_MS: i64 = 3_600_000;

/// One processing at a glance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overview {
    /// The newest operation: its id and when it was received.
    pub last: Option<(i64, i64)>,
    /// Operations by status received in the last 24 hours (by the hour:
    /// the current hour and the 23 before it).
    pub day: Vec<(OpStatus, u64)>,
    /// The same over the last 7 days.
    pub week: Vec<(OpStatus, u64)>,
    /// Per action, deliveries waiting now.
    pub waiting: Vec<ActionQueue>,
    /// The newest warning notices, newest first.
    pub warnings: Vec<RecentWarning>,
}

/// One action's deliveries waiting now.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionQueue {
    pub action: String,
    /// Not yet tried (claimed for a first attempt included).
    pub pending: u64,
    /// Failed at least once and waiting to try again (or claimed for it).
    pub retrying: u64,
    /// The newest error of those retrying.
    pub last_error: Option<Said>,
    /// Those pending or retrying past half their `max_age`: they may
    /// expire unsent.
    pub aging: u64,
    /// When the first of its waiting deliveries that can expire does.
    pub first_expiry: Option<i64>,
}

/// A processing's announced silence.
#[derive(Debug, Clone, PartialEq)]
pub struct SilenceMark {
    pub processing: String,
    /// The last event before it: operation id and when it was received.
    pub last_operation: i64,
    pub last_event_at: i64,
    pub alerted_at: i64,
}

/// A warning notice as notified.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentWarning {
    pub created_at: i64,
    pub operation_id: i64,
    pub text: Said,
}

impl Reader {
    /// `processing`'s newest operation: its id and when it was received.
    pub fn last_event(&self, processing: &str) -> Result<Option<(i64, i64)>, StoreError> {
        self.conn.query_opt(
            "SELECT id, received_at FROM operations WHERE processing = ?1 ORDER BY id DESC LIMIT 1",
            &[&processing],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
    }

    /// Every announced silence that has not ended.
    pub fn silences(&self) -> Result<Vec<SilenceMark>, StoreError> {
        self.conn.query(
            "SELECT processing, last_operation, last_event_at, alerted_at FROM silences",
            &[],
            |row| {
                Ok(SilenceMark {
                    processing: row.get(0)?,
                    last_operation: row.get(1)?,
                    last_event_at: row.get(2)?,
                    alerted_at: row.get(3)?,
                })
            },
        )
    }

    /// `processing`'s overview as of `now`, with at most `warnings` warnings.
    pub fn overview(&self, processing: &str, now: i64, warnings: usize) -> Result<Overview, StoreError> {
        let last = self.last_event(processing)?;
        let this_hour = now.div_euclid(HOUR_MS);
        Ok(Overview {
            last,
            day: self.counts(processing, this_hour - 23)?,
            week: self.counts(processing, this_hour - 7 * 24 + 1)?,
            waiting: self.waiting(processing)?,
            warnings: self.recent_warnings(processing, warnings)?,
        })
    }

    fn counts(&self, processing: &str, from_hour: i64) -> Result<Vec<(OpStatus, u64)>, StoreError> {
        let sql = match self.conn.dialect() {
            Dialect::Sqlite => {
                "SELECT status, CAST(SUM(n) AS BIGINT) FROM hour_counts WHERE processing = ?1 AND hour >= ?2 AND action = ''
                 GROUP BY status HAVING SUM(n) > 0"
            }
            // No counters there (postgres/schema.rs): an index-only count.
            Dialect::Postgres => {
                "SELECT status, COUNT(*) FROM operations WHERE processing = ?1 AND received_at >= CAST(?2 AS BIGINT) * 3600000
                 GROUP BY status"
            }
        };
        let rows = self.conn.query(sql, &[&processing, &from_hour], |row| {
            Ok((row.get::<String>(0)?, row.get::<i64>(1)?))
        })?;
        let mut counts = rows
            .into_iter()
            .map(|(status, n)| Ok((status.parse().map_err(StoreError::Corrupt)?, n as u64)))
            .collect::<Result<Vec<(OpStatus, u64)>, StoreError>>()?;
        counts.sort_by_key(|(status, _)| OpStatus::ALL.iter().position(|s| s == status));
        Ok(counts)
    }

    fn waiting(&self, processing: &str) -> Result<Vec<ActionQueue>, StoreError> {
        let sql = match self.conn.dialect() {
            // With one max() in a group, SQLite takes the bare last_error
            // from the row that has it: the newest. CROSS JOIN keeps the
            // waiting deliveries (a partial index) as the outer loop; SQLite
            // would otherwise walk every operation of the processing to find
            // the few waiting.
            Dialect::Sqlite => {
                "SELECT d.action, d.status, COUNT(*), d.last_error, MAX(d.id),
                        SUM(CASE WHEN 2 * CAST(?2 AS BIGINT) >= o.received_at + d.expires_at THEN 1 ELSE 0 END),
                        MIN(d.expires_at)
                 FROM deliveries d CROSS JOIN operations o ON o.id = d.operation_id
                 WHERE d.status IN ('pending', 'retrying') AND o.processing = ?1
                 GROUP BY d.action, d.status ORDER BY d.action"
            }
            Dialect::Postgres => {
                "SELECT d.action, d.status, COUNT(*),
                        (array_agg(d.last_error ORDER BY d.id DESC))[1], MAX(d.id),
                        SUM(CASE WHEN 2 * CAST(?2 AS BIGINT) >= o.received_at + d.expires_at THEN 1 ELSE 0 END),
                        MIN(d.expires_at)
                 FROM deliveries d JOIN operations o ON o.id = d.operation_id
                 WHERE d.status IN ('pending', 'retrying') AND o.processing = ?1
                 GROUP BY d.action, d.status ORDER BY d.action"
            }
        };
        let rows = self.conn.query(sql, &[&processing, &crate::clock::now_ms()], |row| {
            Ok((
                row.get::<String>(0)?,
                row.get::<String>(1)?,
                row.get::<i64>(2)? as u64,
                row.get::<Option<Said>>(3)?,
                row.get::<Option<i64>>(5)?.unwrap_or(0) as u64,
                row.get::<Option<i64>>(6)?,
            ))
        })?;
        let mut queues: Vec<ActionQueue> = Vec::new();
        for (action, status, count, last_error, aging, expiry) in rows {
            if queues.last().is_none_or(|q| q.action != action) {
                queues.push(ActionQueue {
                    action,
                    pending: 0,
                    retrying: 0,
                    last_error: None,
                    aging: 0,
                    first_expiry: None,
                });
            }
            let Some(queue) = queues.last_mut() else { continue };
            queue.aging += aging;
            queue.first_expiry = super::deliveries::earliest(queue.first_expiry, expiry);
            if status == DeliveryStatus::Retrying.as_str() {
                queue.retrying = count;
                queue.last_error = last_error;
            } else {
                queue.pending = count;
            }
        }
        // Claimed deliveries still wait (read.rs, `unsent`): a first
        // attempt counts as pending, a later one as retrying.
        let claimed = self.conn.query(
            &format!(
                "SELECT d.action, CASE WHEN d.attempts > 0 THEN 'retrying' ELSE 'pending' END AS waits, COUNT(*)
                 FROM deliveries d {} operations o ON o.id = d.operation_id
                 WHERE d.status = 'in_flight' AND o.processing = ?1
                 GROUP BY d.action, waits",
                self.driving_join()
            ),
            &[&processing],
            |row| Ok((row.get::<String>(0)?, row.get::<String>(1)?, row.get::<i64>(2)? as u64)),
        )?;
        for (action, waits, count) in claimed {
            let at = match queues.iter().position(|q| q.action == action) {
                Some(at) => at,
                None => {
                    queues.push(ActionQueue {
                        action,
                        pending: 0,
                        retrying: 0,
                        last_error: None,
                        aging: 0,
                        first_expiry: None,
                    });
                    queues.len() - 1
                }
            };
            match waits.as_str() {
                "retrying" => queues[at].retrying += count,
                _ => queues[at].pending += count,
            }
        }
        queues.sort_by(|a, b| a.action.cmp(&b.action));
        Ok(queues)
    }

    fn recent_warnings(&self, processing: &str, limit: usize) -> Result<Vec<RecentWarning>, StoreError> {
        self.conn.query(
            "SELECT created_at, operation_id, text FROM notifications
             WHERE processing = ?1 AND kind = 'warning' ORDER BY id DESC LIMIT ?2",
            &[&processing, &(limit as i64)],
            |row| {
                Ok(RecentWarning {
                    created_at: row.get(0)?,
                    operation_id: row.get(1)?,
                    text: row.get::<Option<Said>>(2)?.unwrap_or_else(|| Said::text("")),
                })
            },
        )
    }
}
