//! Queuing fresh deliveries for recorded operations.
//!
//! A running daemon queues them through its writer
//! ([`Writer::queue_replays`](super::Writer::queue_replays)), a few
//! operations per job, so webhooks' commits go between them: SQLite's
//! write lock is not fair, and back-to-back transactions from another
//! process kept the daemon's writer out for over a second. With no daemon
//! (or on PostgreSQL, whose row locks let both write at once), the command
//! line writes through a connection of its own with [`queue_replays`].

use super::db::Db;
use super::deliveries::insert_delivery;
use super::{open_existing, Location, StoreError};
use crate::clock::now_ms;
use crate::model::DeliveryRequest;

/// Operations queued per transaction. One transaction for a whole replay
/// of 100 000 operations held SQLite's write lock for seconds, so the
/// daemon's commits (and the webhooks waiting on them) waited as long, and
/// the WAL grew by hundreds of megabytes that no checkpoint could copy
/// back meanwhile. A few hundred take tens of milliseconds.
const OPERATIONS_PER_COMMIT: usize = 200;

/// Fresh deliveries for one operation.
#[derive(Debug, Clone)]
pub struct Replay {
    pub operation_id: i64,
    pub deliveries: Vec<DeliveryRequest>,
    /// Who asked for it, recorded with it: "command line (root)", "console (admin)".
    pub source: String,
}

/// Adds each replay's deliveries after the operation's existing ones (whose
/// attempts stay in history), marks the operation `queued` again and
/// records the replay.
/// Returns how many deliveries were queued. Each operation is queued whole
/// or not at all; if a later transaction fails, the operations committed
/// before it stay queued (a second replay of the same selection skips
/// them: they are `queued`).
pub fn queue_replays(location: impl Into<Location>, replays: &[Replay]) -> Result<usize, StoreError> {
    let conn = open_existing(&location.into())?;
    let mut queued = 0;
    for chunk in replays.chunks(OPERATIONS_PER_COMMIT) {
        queued += conn.write_transaction(|conn| {
            let n = queue_chunk(conn, chunk)?;
            // The daemons' schedulers hear of it at the commit.
            super::postgres::claims::notify_due(conn)?;
            Ok(n)
        })?;
    }
    Ok(queued)
}

/// Queues `replays` inside the caller's transaction; how many deliveries.
pub(super) fn queue_chunk(conn: &Db, replays: &[Replay]) -> Result<usize, StoreError> {
    let now = now_ms();
    let mut queued = 0;
    for replay in replays {
        let next_position: i64 = conn.query_one(
            "SELECT COALESCE(MAX(position) + 1, 0) FROM deliveries WHERE operation_id = ?1",
            &[&replay.operation_id],
            |row| row.get(0),
        )?;
        for (offset, delivery) in replay.deliveries.iter().enumerate() {
            insert_delivery(conn, replay.operation_id, next_position + offset as i64, delivery, now)?;
            queued += 1;
        }
        // The operation keeps its reason (why it was skipped, held or
        // failed); the replay is an event of its own.
        conn.execute(
            "UPDATE operations SET status = 'queued', updated_at = ?2 WHERE id = ?1",
            &[&replay.operation_id, &now],
        )?;
        conn.execute(
            "INSERT INTO replays (operation_id, at, source, deliveries) VALUES (?1, ?2, ?3, ?4)",
            &[
                &replay.operation_id,
                &now,
                &replay.source,
                &(replay.deliveries.len() as i64),
            ],
        )?;
    }
    Ok(queued)
}
