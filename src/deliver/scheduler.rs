//! The scheduler: claims due deliveries from the store ahead of need, keeps
//! them per receiver, and hands them to idle workers, at most
//! [`per_target_limit`] (or the receiver's `concurrency`) at a time to one
//! receiver, no faster than its `rate`, and only a probe while its breaker
//! is open.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod chores;

use super::breaker::{Breakers, Permit};
use super::pace::Pace;
use super::turns::{pick, shared_turn};
use super::{per_target_limit, Job, Signal, POLL_INTERVAL};
use crate::clock::now_ms;
use crate::config::{Config, ReceiverPolicy};
use crate::metrics::Metrics;
use crate::model::DueDelivery;
use crate::store::{Turns, Writer};

/// The running config, read again each round so a reload's `[[receiver]]`
/// settings apply at once.
pub type ConfigSource = Box<dyn Fn() -> Arc<Config> + Send>;

/// Rounds of work (the receiver's cap each) claimed ahead for one receiver
/// before claims pass over it. Each claim is a commit the scheduler waits
/// for; with two rounds (12 deliveries for one receiver) the drain of a
/// 100 000-delivery backlog was bound by those round trips, 3 657-4 665
/// deliveries/s; with eight, 5 092-6 531/s (BENCHMARKS.md, session 6).
const ROUNDS_AHEAD: usize = 8;

/// Longest a stopping scheduler waits for its claim in flight, to give
/// its deliveries back (a restart would, later).
const CLAIM_AT_STOP: Duration = Duration::from_secs(5);

/// Least time between two claims that skip busy receivers and found nothing
/// else (each scans past their backlog).
const SKIP_RESCAN: Duration = Duration::from_millis(250);

/// Whether this instance may send `target`'s due probe: always alone on
/// its database; with other instances, if it took the probe in the
/// database before them. One that did not waits a probe interval (the
/// breakers' refresh brings the real time).
fn take_probe(writer: &Writer, breakers: &Breakers, target: &str, now_ms: i64) -> bool {
    if !writer.shared() {
        return true;
    }
    // Not held across the database's round trip: the workers record answers in it.
    let wait = breakers
        .lock()
        .states
        .get(target)
        .and_then(|s| s.open)
        .map(|open| open.probe_wait_ms.max(1));
    let Some(wait) = wait else { return false };
    let next = now_ms + wait;
    let taken = match writer.take_probe(target.to_string(), now_ms, next) {
        Ok(taken) => taken,
        Err(err) => {
            log::warn!("receiver {target}: cannot take the probe in the database: {err}");
            false
        }
    };
    if !taken {
        if let Some(open) = breakers.lock().states.get_mut(target).and_then(|s| s.open.as_mut()) {
            open.next_probe_at = next;
        }
    }
    taken
}

/// What the claim at the writer asked for.
struct Asked {
    /// It passes over the well-supplied receivers.
    skips: bool,
    /// Most deliveries it takes.
    limit: usize,
}

/// The scheduler thread's state.
pub(super) struct Scheduler {
    writer: Writer,
    signals: Receiver<Signal>,
    /// Its own signals' sender: a claim's answer comes back through it.
    own: Sender<Signal>,
    /// The claim at the writer, if one is. The scheduler does not wait for
    /// it: under load a claim waits for a commit behind the webhooks' (a
    /// few milliseconds), and workers that finished meanwhile sat idle
    /// with deliveries already in hand (BENCHMARKS.md, session 15).
    out: Option<Asked>,
    /// The last claim found fewer deliveries than it asked for: the next
    /// waits for a reason to look (a commit, a freed worker, the poll)
    /// rather than following its answer at once.
    dry: bool,
    /// When the next not-yet-due delivery becomes due, as the last claim saw.
    next_due: Option<i64>,
    /// A rendezvous channel to the workers: a delivery is handed over only
    /// to a worker that is waiting.
    jobs: SyncSender<Job>,
    config: ConfigSource,
    breakers: Breakers,
    pace: Pace,
    /// With other instances on the database: the session turns are taken in.
    turns: Option<Turns>,
    workers: usize,
    /// Most attempts in flight to a receiver without its own `concurrency`.
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
    /// The config the breakers' settings were last applied from.
    applied: Option<Arc<Config>>,
    /// When the breakers were last read back from a shared database.
    refreshed: Option<Instant>,
    metrics: Arc<Metrics>,
    /// When deliveries were last expired, and looked at for the aging warning.
    expired: Option<Instant>,
    aged: Option<Instant>,
    /// When long-lived tokens were last looked at.
    tokens: Option<Instant>,
    /// When orphaned claims were last given back.
    orphans: Option<Instant>,
}

impl Scheduler {
    /// A scheduler for `workers` workers fed through `jobs`.
    pub(super) fn new(
        writer: Writer,
        workers: usize,
        (signals, own): (Receiver<Signal>, Sender<Signal>),
        jobs: SyncSender<Job>,
        (config, breakers): (ConfigSource, Breakers),
        metrics: Arc<Metrics>,
    ) -> Scheduler {
        Scheduler {
            writer,
            signals,
            own,
            out: None,
            dry: false,
            next_due: None,
            jobs,
            config,
            breakers,
            pace: Pace::default(),
            turns: None,
            workers,
            cap: per_target_limit(workers),
            ahead: workers * ROUNDS_AHEAD,
            idle: workers,
            busy: HashMap::new(),
            waiting: HashMap::new(),
            others_empty: None,
            applied: None,
            refreshed: None,
            metrics,
            expired: None,
            aged: None,
            tokens: None,
            orphans: None,
        }
    }

    /// Hands out, claims, waits; until told to stop or the workers are gone.
    pub(super) fn run(mut self) {
        loop {
            let config = (self.config)();
            if self
                .applied
                .as_ref()
                .is_none_or(|applied| !Arc::ptr_eq(applied, &config))
            {
                self.apply_breaker_settings(&config);
                self.applied = Some(Arc::clone(&config));
            }
            self.refresh_breakers();
            self.expire();
            self.remind_tokens(&config);
            let Some(turn) = self.hand_out(&config) else {
                return;
            };
            let mut wait = self.claim(&config);
            self.release_orphans();
            if let Some(turn) = turn {
                wait = wait.min(turn.saturating_duration_since(Instant::now()));
            }
            if !self.take_signals(wait) {
                self.await_claim();
                self.release_unsent();
                return;
            }
        }
    }

    /// Most attempts in flight to a receiver with `policy`.
    fn cap_of(&self, policy: &ReceiverPolicy) -> usize {
        policy.concurrency.map_or(self.cap, |c| c.min(self.workers))
    }

    /// Gives waiting deliveries to idle workers, within each receiver's
    /// cap, rate and breaker; deliveries of a receiver whose breaker is
    /// open go back to the database. Returns when a paced receiver's next
    /// turn comes, or None when the workers are gone.
    fn hand_out(&mut self, config: &Config) -> Option<Option<Instant>> {
        let now = Instant::now();
        let now_ms = now_ms();
        let mut turn: Option<Instant> = None;
        let mut back = Vec::new();
        let mut expired = Vec::new();
        let targets: Vec<String> = self.waiting.keys().cloned().collect();
        for target in targets {
            let policy = config.receiver_policy(&target);
            let cap = self.cap_of(&policy);
            let Some(queue) = self.waiting.get_mut(&target) else {
                continue;
            };
            // Past its max_age while it waited here for a worker, a turn
            // or a probe: expired, never sent.
            queue.retain(|due| {
                let gone = due.request.expires_at.is_some_and(|at| at <= now_ms);
                if gone {
                    expired.push(due.id);
                }
                !gone
            });
            let in_flight = self.busy.entry(target.clone()).or_default();
            let permit = self.breakers.lock().permit(&target, now_ms);
            let probe = match permit {
                Permit::Send => false,
                Permit::Probe if take_probe(&self.writer, &self.breakers, &target, now_ms) => true,
                Permit::Probe | Permit::Wait(_) => {
                    back.extend(queue.drain(..).map(|due| due.id));
                    continue;
                }
            };
            while self.idle > 0 && *in_flight < cap && !queue.is_empty() {
                let shared = self.writer.shared();
                let pick = match pick(
                    queue,
                    &mut self.pace,
                    shared.then_some((&self.writer, &mut self.turns)),
                    now,
                ) {
                    Ok(pick) => pick,
                    Err(at) => {
                        turn = Some(turn.map_or(at, |t| t.min(at)));
                        break;
                    }
                };
                if let Some(rate) = policy.rate {
                    let turn_taken = match shared {
                        true => shared_turn(&self.writer, &mut self.turns, &target, (rate, policy.burst), now),
                        false => self.pace.take(&target, rate, policy.burst, now),
                    };
                    if let Err(at) = turn_taken {
                        turn = Some(turn.map_or(at, |t| t.min(at)));
                        break;
                    }
                }
                let Some(due) = queue.remove(pick.index) else { break };
                if !shared {
                    for lane in &pick.lanes {
                        // Ready a moment ago, on this thread: taken now.
                        let _ = self.pace.take(&lane.key, lane.rate, lane.burst, now);
                    }
                }
                if probe {
                    self.breakers.lock().probing.insert(target.clone());
                    log::info!("receiver {target}: probing with delivery {}", due.id);
                }
                *in_flight += 1;
                self.idle -= 1;
                let auth = config.oauth_for(&due.request.url).cloned();
                let job = Job {
                    due,
                    probe,
                    breaker: policy.breaker,
                    auth,
                };
                if self.jobs.send(job).is_err() {
                    return None;
                }
                if probe {
                    break;
                }
            }
        }
        self.waiting.retain(|_, queue| !queue.is_empty());
        self.busy.retain(|_, n| *n > 0);
        self.pace.forget_idle(now);
        if !back.is_empty() {
            if let Err(err) = self.writer.release(back) {
                log::warn!("cannot give back deliveries to a receiver whose breaker is open: {err}");
            }
        }
        if !expired.is_empty() {
            let expired = self.writer.expire_claimed(expired);
            self.count_expired(expired);
        }
        Some(turn)
    }

    /// Receivers with ROUNDS_AHEAD rounds of work in flight or waiting, and
    /// those whose breaker holds them back: claims pass over their backlog.
    fn well_supplied(&self, config: &Config, now_ms: i64) -> Vec<String> {
        let mut skip: Vec<String> = self
            .busy
            .keys()
            .chain(self.waiting.keys())
            .filter(|target| {
                let queued =
                    self.busy.get(*target).copied().unwrap_or(0) + self.waiting.get(*target).map_or(0, VecDeque::len);
                queued >= ROUNDS_AHEAD * self.cap_of(&config.receiver_policy(target))
            })
            .cloned()
            .collect();
        let table = self.breakers.lock();
        skip.extend(
            table
                .open()
                .filter(|(target, _)| table.permit(target, now_ms) != Permit::Probe)
                .map(|(target, _)| target.clone()),
        );
        skip.sort_unstable();
        skip.dedup();
        skip
    }

    /// When the next probe of an open breaker falls due, if one is still
    /// to come. (One already due waits for a delivery to probe with, which
    /// a commit or the poll finds.)
    fn next_probe(&self, now_ms: i64) -> Option<i64> {
        self.breakers
            .lock()
            .open()
            .map(|(_, open)| open.next_probe_at)
            .filter(|at| *at > now_ms)
            .min()
    }

    /// Asks for more deliveries if workers are idle and no claim is at the
    /// writer already (its answer comes as a signal); returns how long to
    /// wait for a signal before looking again.
    fn claim(&mut self, config: &Config) -> Duration {
        let held: usize = self.waiting.values().map(VecDeque::len).sum();
        let now = now_ms();
        let supplied = self.well_supplied(config, now);
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
        if let Some(probe) = self.next_probe(now) {
            wait = wait.min(Duration::from_millis((probe - now).max(0) as u64));
        }
        // One already due is the claim's to take (this one or the next):
        // waiting zero for it would spin until its answer.
        if let Some(next) = self.next_due.filter(|next| *next > now) {
            wait = wait.min(Duration::from_millis((next - now) as u64));
        }
        if self.out.is_some() || self.dry {
            return wait;
        }
        if skipping && known_empty {
            // Look again when the pause is over: with idle workers (a
            // breaker open, say) no signal may come sooner.
            let since = self.others_empty.map_or(SKIP_RESCAN, |at| at.elapsed());
            return wait.min(SKIP_RESCAN.saturating_sub(since));
        }
        if self.idle == 0 || limit == 0 {
            return wait;
        }
        let own = self.own.clone();
        let sent = self.writer.claim_due_then((now, limit, supplied), move |claimed| {
            let _ = own.send(Signal::Claimed(claimed));
        });
        match sent {
            Ok(()) => self.out = Some(Asked { skips: skipping, limit }),
            Err(err) => log::error!("cannot claim due deliveries: {err}"),
        }
        wait
    }

    /// Takes a claim's answer: its deliveries wait for workers.
    fn claimed(&mut self, claimed: Result<crate::model::Claimed, crate::store::StoreError>) {
        let asked = self.out.take().unwrap_or(Asked { skips: false, limit: 0 });
        self.dry = claimed.as_ref().map_or(true, |claimed| claimed.due.len() < asked.limit);
        match claimed {
            Ok(claimed) => {
                if asked.skips && claimed.due.is_empty() {
                    self.others_empty = Some(Instant::now());
                }
                for due in claimed.due {
                    self.waiting.entry(due.target.clone()).or_default().push_back(due);
                }
                self.next_due = claimed.next_due;
            }
            Err(err) => log::error!("cannot claim due deliveries: {err}"),
        }
    }

    /// Stopping: waits for the claim at the writer, if any, so that its
    /// deliveries are given back with the rest.
    fn await_claim(&mut self) {
        let deadline = Instant::now() + CLAIM_AT_STOP;
        while self.out.is_some() {
            match self
                .signals
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(Signal::Claimed(claimed)) => self.claimed(claimed),
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }

    /// Waits up to `wait` for a signal, then takes every one already sent.
    /// False on a stop.
    fn take_signals(&mut self, wait: Duration) -> bool {
        let mut signal = self.signals.recv_timeout(wait);
        loop {
            match signal {
                Ok(Signal::WorkerIdle(target)) => {
                    self.idle += 1;
                    self.dry = false;
                    if let Some(n) = self.busy.get_mut(&target) {
                        *n = n.saturating_sub(1);
                    }
                }
                Ok(Signal::Claimed(claimed)) => self.claimed(claimed),
                Ok(Signal::Committed) | Err(RecvTimeoutError::Timeout) => self.dry = false,
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

#[cfg(test)]
mod tests;
