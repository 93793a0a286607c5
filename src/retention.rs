//! Retention: finished operations older than `keep_days` are deleted with
//! their deliveries and attempts, hourly, in small batches. Each batch is one
//! short writer job, so webhooks arriving meanwhile wait milliseconds at most.
//! Operations still `queued` (deliveries pending or retrying) are never pruned.
//!
//! What a batch costs is mostly what its commit writes and syncs: deleting
//! one operation dirties about a dozen pages across the tables and their
//! indexes, and on a small VPS disk a 600-page commit took 60-130 ms, which
//! every webhook arriving meanwhile waits for. So the batch size is not
//! fixed: [`Batches`] sizes each batch from how long the last one took, to
//! keep each near [`TARGET`] (BENCHMARKS.md, "Pruning and backup stalls").

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::clock::now_ms;
use crate::store::{Duty, StoreError, Writer};

/// How often an instance not holding the duties looks again.
const NOT_HOLDING: Duration = Duration::from_secs(10);

/// How long one batch should take, commit included.
pub const TARGET: Duration = Duration::from_millis(15);
/// How often pruning runs (and once at start).
const EVERY: Duration = Duration::from_secs(3600);
const DAY_MS: i64 = 86_400_000;

/// The cut-off time for `keep_days`: operations received before it go.
pub fn cutoff(keep_days: u32, now: i64) -> i64 {
    now - i64::from(keep_days) * DAY_MS
}

/// The size of the next batch: halved when a batch took longer than
/// [`TARGET`], grown by a quarter when it took less than half of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batches {
    size: usize,
}

impl Batches {
    const FIRST: usize = 20;
    const MAX: usize = 1_000;

    /// Operations to delete in the next batch.
    pub fn size(self) -> usize {
        self.size
    }

    /// Adjusts the size after a batch of the current size took `took`.
    pub fn took(&mut self, took: Duration) {
        if took > TARGET {
            self.size = (self.size / 2).max(1);
        } else if took < TARGET / 2 {
            self.size = (self.size + self.size / 4 + 1).min(Self::MAX);
        }
    }
}

impl Default for Batches {
    fn default() -> Self {
        Batches { size: Self::FIRST }
    }
}

/// Deletes batch after batch with `batch(size)` (which returns how many it
/// deleted) until one comes back short; returns the total. After each
/// batch it pauses as long as the batch took, so that every other commit
/// of the writer carries no pruning: back to back, nearly every group
/// commit under load held a batch, and webhooks waited for it each time.
pub fn prune_with(mut batch: impl FnMut(usize) -> Result<usize, StoreError>) -> Result<usize, StoreError> {
    let mut sizes = Batches::default();
    let mut total = 0;
    loop {
        let size = sizes.size();
        let started = Instant::now();
        let deleted = batch(size)?;
        let took = started.elapsed();
        sizes.took(took);
        total += deleted;
        if deleted < size {
            return Ok(total);
        }
        std::thread::sleep(took.min(MAX_PAUSE));
    }
}

/// The longest pause between two batches.
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// Deletes everything prunable before `before` through the daemon's writer.
pub fn prune(writer: &Writer, before: i64) -> Result<usize, StoreError> {
    prune_with(|size| writer.prune(before, size))
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

/// Starts pruning now and every hour. Of several instances on one
/// database, the one holding the cluster's duties prunes; the others look
/// again every [`NOT_HOLDING`] whether that became them.
pub fn start(writer: Writer, keep_days: u32, duty: Duty) -> std::io::Result<Pruner> {
    let (stop, stopped) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("retention".into())
        .spawn(move || loop {
            let wait = if duty.held() {
                match prune(&writer, cutoff(keep_days, now_ms())) {
                    Ok(0) => {}
                    Ok(n) => log::info!("pruned {n} operations older than {keep_days} days"),
                    Err(err) => log::error!("pruning failed: {err}"),
                }
                EVERY
            } else {
                NOT_HOLDING
            };
            match stopped.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        })?;
    Ok(Pruner { stop, handle })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_shrink_when_slow_and_grow_when_fast() {
        let mut sizes = Batches::default();
        assert_eq!(sizes.size(), 20);
        sizes.took(TARGET * 3);
        assert_eq!(sizes.size(), 10);
        sizes.took(TARGET * 3 / 4);
        assert_eq!(sizes.size(), 10, "near the target it stays");
        sizes.took(TARGET / 4);
        assert_eq!(sizes.size(), 13);
        for _ in 0..10 {
            sizes.took(TARGET * 10);
        }
        assert_eq!(sizes.size(), 1, "never below one");
        for _ in 0..100 {
            sizes.took(Duration::ZERO);
        }
        assert_eq!(sizes.size(), 1_000, "never above the cap");
    }

    /// The loop stops at the first short batch and sums what was deleted.
    #[test]
    fn prune_with_stops_at_a_short_batch() {
        let mut left = 100;
        let mut asked = Vec::new();
        let total = prune_with(|size| {
            asked.push(size);
            let deleted = size.min(left);
            left -= deleted;
            Ok(deleted)
        })
        .unwrap();
        assert_eq!(total, 100);
        assert_eq!(left, 0);
        assert!(asked.len() >= 2 && *asked.last().unwrap() > 0);
    }
    use crate::model::{DeliveryRequest, NewOperation, OpStatus};
    use crate::store::{spawn_writer, HistoryFilter, Hooks, Reader};

    fn operation(received_at: i64, status: OpStatus) -> NewOperation {
        NewOperation {
            status,
            deliveries: vec![DeliveryRequest::sample("a")],
            ..NewOperation::sample(received_at)
        }
    }

    /// Thousands of old operations go in batches; queued and recent ones stay.
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
        let first = writer.prune(before, 200).unwrap();
        assert_eq!(first, 200, "one job deletes one batch");
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
