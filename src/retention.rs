//! Retention: finished operations older than `keep_days` are deleted with
//! their deliveries and attempts, hourly, in small batches. Each batch is one
//! short writer job, so webhooks arriving meanwhile wait milliseconds at most.
//! Operations still `queued` (deliveries pending or retrying) are never pruned.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::store::{now_ms, StoreError, Writer};

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
