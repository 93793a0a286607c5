//! Retention: finished operations older than `keep_days` are deleted with
//! their deliveries and attempts, hourly, in small batches. Each batch is one
//! short writer job, so webhooks arriving meanwhile wait milliseconds at most.
//! Operations still `queued` (deliveries pending or retrying) are never pruned.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::clock::now_ms;
use crate::store::{StoreError, Writer};

/// Operations deleted per writer job.
pub const BATCH: usize = 200;
/// How often pruning runs (and once at start).
const EVERY: Duration = Duration::from_secs(3600);
const DAY_MS: i64 = 86_400_000;

/// The cut-off time for `keep_days`: operations received before it go.
pub fn cutoff(keep_days: u32, now: i64) -> i64 {
    now - i64::from(keep_days) * DAY_MS
}

/// Deletes everything prunable before `before`, batch by batch; returns the count.
pub fn prune(writer: &Writer, before: i64) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let deleted = writer.prune(before, BATCH)?;
        total += deleted;
        if deleted < BATCH {
            return Ok(total);
        }
    }
}

/// The running pruning thread.
pub struct Pruner {
    stop: Sender<()>,
    handle: JoinHandle<()>,
}

impl Pruner {
    /// Stops the thread after the batch in progress.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.handle.join();
    }
}

/// Starts pruning now and every hour.
pub fn start(writer: Writer, keep_days: u32) -> std::io::Result<Pruner> {
    let (stop, stopped) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("retention".into())
        .spawn(move || loop {
            match prune(&writer, cutoff(keep_days, now_ms())) {
                Ok(0) => {}
                Ok(n) => log::info!("pruned {n} operations older than {keep_days} days"),
                Err(err) => log::error!("pruning failed: {err}"),
            }
            match stopped.recv_timeout(EVERY) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        })?;
    Ok(Pruner { stop, handle })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeliveryRequest, NewOperation, OpStatus};
    use crate::store::{spawn_writer, HistoryFilter, Hooks, Reader};

    fn operation(received_at: i64, status: OpStatus) -> NewOperation {
        NewOperation {
            status,
            deliveries: vec![DeliveryRequest::sample("a")],
            ..NewOperation::sample(received_at)
        }
    }

    /// Thousands of old operations go in batches of at most BATCH; queued and recent ones stay.
    #[test]
    fn prunes_old_finished_operations_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let hooks = Hooks {
            on_commit: Box::new(|| {}),
            on_error: Box::new(|_| {}),
        };
        let (writer, _thread) = spawn_writer(&path, hooks).unwrap();
        let now = now_ms();
        let old = now - 100 * DAY_MS;
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            for i in 0..3_000 {
                let status = match i % 4 {
                    0 | 2 => OpStatus::Skipped,
                    1 => OpStatus::Held,
                    _ => OpStatus::Queued,
                };
                writer.insert(operation(old + i, status)).await.unwrap();
            }
            writer.insert(operation(now, OpStatus::Skipped)).await.unwrap();
        });
        let queued_before = Reader::open(&path)
            .unwrap()
            .history(&HistoryFilter {
                status: Some(OpStatus::Queued),
                limit: 10_000,
                ..HistoryFilter::default()
            })
            .unwrap()
            .len();
        assert_eq!(queued_before, 750);

        let before = cutoff(90, now);
        assert_eq!(Reader::open(&path).unwrap().prunable(before).unwrap(), 2_250);
        let first = writer.prune(before, BATCH).unwrap();
        assert_eq!(first, BATCH, "one job deletes one batch");
        let rest = prune(&writer, before).unwrap();
        assert_eq!(first + rest, 2_250);

        let reader = Reader::open(&path).unwrap();
        let left = reader
            .history(&HistoryFilter {
                limit: 10_000,
                ..HistoryFilter::default()
            })
            .unwrap();
        assert_eq!(left.len(), 751, "750 queued old ones and the recent one");
        assert!(left
            .iter()
            .all(|op| op.status == OpStatus::Queued || op.received_at == now));
        assert_eq!(reader.prunable(before).unwrap(), 0);
    }
}
