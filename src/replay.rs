//! Replaying recorded operations with the current config's actions: which
//! operations, and what to queue for each. `hookrelay replay` and the
//! console's replay buttons share it, so both mean the same.

use crate::config::Config;
use crate::model::{DeliveryStatus, OpStatus};
use crate::process::{self as rules, fields::Extracted};
use crate::store::{queue_replays, HistoryFilter, Location, OperationView, Reader, Replay, StoreError, Writer};

/// Operations queued per writer job. The webhooks committed in the same
/// transaction wait for the whole job; 50 operations take a few
/// milliseconds (BENCHMARKS.md, "Replay beside webhooks").
const OPERATIONS_PER_JOB: usize = 50;

/// Where a replay's deliveries are written.
pub enum Queue<'a> {
    /// The running daemon's writer, `OPERATIONS_PER_JOB` operations a job,
    /// so webhooks' commits go between them (the console, and the command
    /// line through the control socket).
    Writer(&'a Writer),
    /// A connection of the replay's own: no daemon runs on this SQLite
    /// file, or the database is PostgreSQL.
    Database(Location),
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Deliveries queued, over every operation replayed.
    pub queued: usize,
    /// Operations that got deliveries.
    pub operations: usize,
    /// Operations left alone, each with the reason.
    pub refused: Vec<(i64, String)>,
}

/// Every operation `filter` matches (its limit ignored), with what was recorded.
pub fn select(reader: &Reader, filter: &HistoryFilter) -> Result<Vec<OperationView>, StoreError> {
    let mut list = Vec::new();
    for id in select_ids(reader, filter)? {
        list.extend(reader.operation(id)?);
    }
    Ok(list)
}

/// Every operation id `filter` matches (its limit ignored).
pub fn select_ids(reader: &Reader, filter: &HistoryFilter) -> Result<Vec<i64>, StoreError> {
    let filter = HistoryFilter {
        limit: i64::MAX as usize,
        ..filter.clone()
    };
    Ok(reader.history(&filter)?.iter().map(|summary| summary.id).collect())
}

/// Queues fresh deliveries for `operations` through `queue`. Blocks: plain
/// threads only.
pub fn run(config: &Config, operations: &[OperationView], queue: &Queue) -> Result<Report, StoreError> {
    let mut report = Report::default();
    let mut replays = Vec::new();
    for op in operations {
        match plan(config, op) {
            Ok(replay) => replays.push(replay),
            Err(why) => report.refused.push((op.summary.id, why)),
        }
    }
    report.operations = replays.len();
    report.queued = match queue {
        Queue::Database(_) if replays.is_empty() => 0,
        Queue::Database(location) => queue_replays(location, &replays)?,
        Queue::Writer(writer) => {
            let mut queued = 0;
            let mut replays = replays.into_iter().peekable();
            while replays.peek().is_some() {
                queued += writer.queue_replays(replays.by_ref().take(OPERATIONS_PER_JOB).collect())?;
            }
            queued
        }
    };
    Ok(report)
}

/// The deliveries to queue for `op`, or why there are none. Actions the
/// operation already delivered are not sent again, so replaying a
/// `partial` operation only retries what failed.
pub fn plan(config: &Config, op: &OperationView) -> Result<Replay, String> {
    match op.summary.status {
        OpStatus::Queued => return Err("it is still being delivered".into()),
        OpStatus::Rejected => return Err("its body did not parse; fix the sender and send it again".into()),
        _ => {}
    }
    let processing = config
        .processing(&op.summary.processing)
        .ok_or_else(|| format!("processing `{}` is no longer in the config", op.summary.processing))?;
    let delivered: Vec<&str> = op
        .deliveries
        .iter()
        .filter(|d| d.status == DeliveryStatus::Delivered)
        .map(|d| d.action.as_str())
        .collect();
    let extracted = Extracted::from_fields(op.fields.clone());
    let lookup = |name: &str| extracted.usable(name);
    let mut deliveries = Vec::new();
    for action in processing
        .actions
        .iter()
        .filter(|a| !delivered.contains(&a.name.as_str()))
    {
        let (delivery, _) = rules::delivery(action, lookup).map_err(|e| format!("action `{}`: {e}", action.name))?;
        deliveries.push(delivery);
    }
    if deliveries.is_empty() {
        return Err("every action was already delivered".into());
    }
    Ok(Replay {
        operation_id: op.summary.id,
        deliveries,
    })
}
