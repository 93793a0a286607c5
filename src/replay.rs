//! Replaying recorded operations with the current config's actions: which
//! operations, and what to queue for each. `hookrelay replay` and the
//! console's replay buttons share it, so both mean the same.

use crate::config::Config;
use crate::model::{DeliveryStatus, OpStatus};
use crate::process::{self as rules, fields::Extracted};
use crate::store::{queue_replays, HistoryFilter, OperationView, Reader, Replay, StoreError};

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
    let filter = HistoryFilter {
        limit: i64::MAX as usize,
        ..filter.clone()
    };
    let mut list = Vec::new();
    for summary in reader.history(&filter)? {
        list.extend(reader.operation(summary.id)?);
    }
    Ok(list)
}

/// Queues fresh deliveries for `operations` in one transaction, through its
/// own connection to the database (beside the daemon's writer).
pub fn run(config: &Config, operations: &[OperationView]) -> Result<Report, StoreError> {
    let mut report = Report::default();
    let mut replays = Vec::new();
    for op in operations {
        match plan(config, op) {
            Ok(replay) => replays.push(replay),
            Err(why) => report.refused.push((op.summary.id, why)),
        }
    }
    report.operations = replays.len();
    if !replays.is_empty() {
        report.queued = queue_replays(config.storage.location(), &replays)?;
    }
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
