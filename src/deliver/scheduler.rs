//! The scheduler: claims due deliveries from the store ahead of need, keeps
//! them per receiver, and hands them to idle workers, at most
//! [`per_target_limit`] at a time to one receiver.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use super::{per_target_limit, Signal, POLL_INTERVAL};
use crate::clock::now_ms;
use crate::model::DueDelivery;
use crate::store::Writer;

/// Least time between two claims that skip busy receivers and found nothing
/// else (each scans past their backlog).
const SKIP_RESCAN: Duration = Duration::from_millis(250);

/// The scheduler thread's state.
pub(super) struct Scheduler {
    writer: Writer,
    signals: Receiver<Signal>,
    /// A rendezvous channel to the workers: a delivery is handed over only
    /// to a worker that is waiting.
    jobs: SyncSender<DueDelivery>,
    /// Most attempts in flight to one receiver.
    cap: usize,
    /// Deliveries claimed ahead (they are `in_flight` in the database), so
    /// that one committed claim feeds several attempts.
    ahead: usize,
    /// Workers waiting for a delivery.
    idle: usize,
    /// Attempts in flight, by receiver.
    busy: HashMap<String, usize>,
    /// Deliveries claimed and not yet handed over, by receiver.
    waiting: HashMap<String, VecDeque<DueDelivery>>,
    /// When a claim that skipped the well-supplied receivers found nothing:
    /// every due delivery then belongs to them. Skipping means scanning past
    /// their whole backlog (on the writer thread), so it is repeated at
    /// most every SKIP_RESCAN: work for another receiver waits that long at
    /// most.
    others_empty: Option<Instant>,
}

impl Scheduler {
    /// A scheduler for `workers` workers fed through `jobs`.
    pub(super) fn new(
        writer: Writer,
        workers: usize,
        signals: Receiver<Signal>,
        jobs: SyncSender<DueDelivery>,
    ) -> Scheduler {
        Scheduler {
            writer,
            signals,
            jobs,
            cap: per_target_limit(workers),
            ahead: workers * 2,
            idle: workers,
            busy: HashMap::new(),
            waiting: HashMap::new(),
            others_empty: None,
        }
    }

    /// Hands out, claims, waits; until told to stop or the workers are gone.
    pub(super) fn run(mut self) {
        loop {
            if !self.hand_out() {
                return;
            }
            let wait = self.claim();
            if !self.take_signals(wait) {
                self.release_unsent();
                return;
            }
        }
    }

    /// Gives waiting deliveries to idle workers, within each receiver's cap.
    /// False when the workers are gone.
    fn hand_out(&mut self) -> bool {
        for (target, queue) in &mut self.waiting {
            let in_flight = self.busy.entry(target.clone()).or_default();
            while self.idle > 0 && *in_flight < self.cap {
                let Some(due) = queue.pop_front() else { break };
                *in_flight += 1;
                self.idle -= 1;
                if self.jobs.send(due).is_err() {
                    return false;
                }
            }
        }
        self.waiting.retain(|_, queue| !queue.is_empty());
        self.busy.retain(|_, n| *n > 0);
        true
    }

    /// Receivers with at least two rounds of work in flight or waiting:
    /// claims pass over their backlog.
    fn well_supplied(&self) -> Vec<String> {
        self.busy
            .iter()
            .filter(|(target, n)| **n + self.waiting.get(*target).map_or(0, VecDeque::len) >= 2 * self.cap)
            .map(|(target, _)| target.clone())
            .collect()
    }

    /// Claims more deliveries if workers are idle; returns how long to wait
    /// for a signal before looking again.
    fn claim(&mut self) -> Duration {
        let held: usize = self.waiting.values().map(VecDeque::len).sum();
        let supplied = self.well_supplied();
        let skipping = !supplied.is_empty();
        let known_empty = self.others_empty.is_some_and(|at| at.elapsed() < SKIP_RESCAN);
        // Rows held for well-supplied receivers must not block the others:
        // a skipping claim may always fill the idle workers.
        let limit = if skipping {
            self.ahead.saturating_sub(held).max(self.idle)
        } else {
            self.ahead.saturating_sub(held)
        };
        let mut wait = POLL_INTERVAL;
        if self.idle == 0 || limit == 0 || (skipping && known_empty) {
            return wait;
        }
        let now = now_ms();
        match self.writer.claim_due(now, limit, supplied) {
            Ok(claimed) => {
                if skipping && claimed.due.is_empty() {
                    self.others_empty = Some(Instant::now());
                }
                if !claimed.due.is_empty() {
                    wait = Duration::ZERO;
                }
                for due in claimed.due {
                    self.waiting.entry(due.target.clone()).or_default().push_back(due);
                }
                if let Some(next) = claimed.next_due {
                    wait = wait.min(Duration::from_millis((next - now).max(0) as u64));
                }
            }
            Err(err) => log::error!("cannot claim due deliveries: {err}"),
        }
        wait
    }

    /// Waits up to `wait` for a signal, then takes every one already sent.
    /// False on a stop.
    fn take_signals(&mut self, wait: Duration) -> bool {
        let mut signal = self.signals.recv_timeout(wait);
        loop {
            match signal {
                Ok(Signal::WorkerIdle(target)) => {
                    self.idle += 1;
                    if let Some(n) = self.busy.get_mut(&target) {
                        *n = n.saturating_sub(1);
                    }
                }
                Ok(Signal::Committed) | Err(RecvTimeoutError::Timeout) => {}
                Ok(Signal::Stop) | Err(RecvTimeoutError::Disconnected) => return false,
            }
            signal = self.signals.try_recv().map_err(|e| match e {
                mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
            });
            if matches!(signal, Err(RecvTimeoutError::Timeout)) {
                return true;
            }
        }
    }

    /// Claimed but never started: back to the queue for the next start.
    fn release_unsent(&self) {
        let unsent: Vec<i64> = self.waiting.values().flatten().map(|due| due.id).collect();
        if !unsent.is_empty() {
            if let Err(err) = self.writer.release(unsent) {
                log::warn!("cannot release claimed deliveries (a restart will): {err}");
            }
        }
    }
}
