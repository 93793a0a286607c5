//! The console's totals: how many operations came, by status, and per
//! action how many of their deliveries finished delivered, failed, expired
//! or cancelled, hour by hour (the console adds the hours up into the
//! reader's days). SQLite reads the trigger-kept `hour_counts` (a few rows
//! per hour, however many operations); PostgreSQL counts the operations
//! in the range, as its overview does.

use super::db::{Dialect, Param};
use super::history::Conditions;
use super::read::Reader;
use super::StoreError;
use crate::model::{DeliveryStatus, OpStatus};

const HOUR_MS: i64 = 3_600_000;

/// What the totals count: whole hours, as the counters keep them.
#[derive(Debug, Clone, Default)]
pub struct TotalsFilter {
    /// These processings (what the reader may see, or the one chosen).
    pub processings: Vec<String>,
    /// Only operations whose `event` field is this.
    pub event: Option<String>,
    /// The hour holding this time, and the hours after it...
    pub since: i64,
    /// ...up to the one holding the moment before this.
    pub until: i64,
}

/// One hour's count of one kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Counted {
    /// Operations received with this status now.
    Operations(OpStatus),
    /// An action's deliveries that finished so (the newest per operation).
    Action(String, DeliveryStatus),
}

/// `n` of `what`, among the operations received in `hour` (hours since the epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct HourCount {
    pub hour: i64,
    pub what: Counted,
    pub n: u64,
}

impl Reader {
    /// The counts for `filter`, by hour.
    pub fn totals(&self, filter: &TotalsFilter) -> Result<Vec<HourCount>, StoreError> {
        if filter.processings.is_empty() {
            return Ok(Vec::new());
        }
        let first_hour = filter.since.div_euclid(HOUR_MS);
        let last_hour = (filter.until - 1).div_euclid(HOUR_MS);
        let mut conditions = Conditions::default();
        let names: Vec<String> = filter
            .processings
            .iter()
            .map(|name| conditions.bind(name.clone()))
            .collect();
        let names = names.join(", ");
        let sql = match self.conn.dialect() {
            Dialect::Sqlite => {
                conditions.parts.push(format!("processing IN ({names})"));
                conditions.add("hour >=", first_hour);
                conditions.add("hour <=", last_hour);
                if let Some(event) = &filter.event {
                    conditions.add("event =", event.clone());
                }
                format!(
                    "SELECT hour, action, status, CAST(SUM(n) AS BIGINT) FROM hour_counts {}
                     GROUP BY hour, action, status HAVING SUM(n) > 0",
                    conditions.where_clause()
                )
            }
            Dialect::Postgres => {
                conditions.parts.push(format!("o.processing IN ({names})"));
                conditions.add("o.received_at >=", first_hour * HOUR_MS);
                conditions.add("o.received_at <", (last_hour + 1) * HOUR_MS);
                if let Some(event) = &filter.event {
                    conditions.add("o.event =", event.clone());
                }
                let chosen = conditions.where_clause();
                format!(
                    "SELECT o.received_at / 3600000, '', o.status, COUNT(*) FROM operations o {chosen}
                     GROUP BY 1, 3
                     UNION ALL
                     SELECT o.received_at / 3600000, d.action, d.status, COUNT(*)
                     FROM operations o JOIN deliveries d ON d.operation_id = o.id
                     {chosen} AND d.status IN ('delivered', 'failed', 'expired', 'cancelled')
                       AND {}
                     GROUP BY 1, 2, 3",
                    newest_per_action!()
                )
            }
        };
        let params: Vec<&dyn Param> = conditions.params();
        let rows = self.conn.query(&sql, &params, |row| {
            Ok((
                row.get::<i64>(0)?,
                row.get::<String>(1)?,
                row.get::<String>(2)?,
                row.get::<i64>(3)?,
            ))
        })?;
        rows.into_iter()
            .map(|(hour, action, status, n)| {
                let what = if action.is_empty() {
                    Counted::Operations(status.parse().map_err(StoreError::Corrupt)?)
                } else {
                    Counted::Action(action, status.parse().map_err(StoreError::Corrupt)?)
                };
                Ok(HourCount {
                    hour,
                    what,
                    n: n.max(0) as u64,
                })
            })
            .collect()
    }

    /// The events `processings` received since `since`, in name order (the
    /// console's event filter offers them).
    pub fn events_seen(&self, processings: &[String], since: i64) -> Result<Vec<String>, StoreError> {
        if processings.is_empty() {
            return Ok(Vec::new());
        }
        let mut conditions = Conditions::default();
        let names: Vec<String> = processings.iter().map(|name| conditions.bind(name.clone())).collect();
        let sql = match self.conn.dialect() {
            Dialect::Sqlite => {
                conditions.parts.push(format!("processing IN ({})", names.join(", ")));
                conditions.add("hour >=", since.div_euclid(HOUR_MS));
                format!(
                    "SELECT DISTINCT event FROM hour_counts {} AND event != '' AND action = '' ORDER BY event",
                    conditions.where_clause()
                )
            }
            Dialect::Postgres => {
                conditions.parts.push(format!("processing IN ({})", names.join(", ")));
                conditions.add("received_at >=", since);
                format!(
                    "SELECT DISTINCT event FROM operations {} AND event IS NOT NULL ORDER BY event",
                    conditions.where_clause()
                )
            }
        };
        self.conn.query(&sql, &conditions.params(), |row| row.get(0))
    }
}
