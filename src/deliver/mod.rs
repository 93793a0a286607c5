//! Delivery: a scheduler thread claims due deliveries from the store and
//! hands them to a fixed pool of worker threads that share one ureq agent.
//!
//! Everything here is plain threads: ureq blocks, and so do the writer's
//! replies. The scheduler sleeps until the next delivery is due, a commit
//! wakes it, or [`POLL_INTERVAL`] passes (which also picks up work queued by
//! another process, such as `hookrelay replay`). At most
//! [`per_target_limit`] attempts go to one receiver at a time, so a hanging
//! receiver cannot take the whole pool. Each receiver can also be paced
//! ([`pace`]), and has a circuit breaker ([`breaker`]).

pub mod breaker;
pub mod judge;
mod lanes;
mod lookup;
pub mod metrica;
pub mod oauth;
mod pace;
mod recall;
pub mod retry;
mod scheduler;
pub mod send;
mod turns;

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::clock::now_ms;
use crate::metrics::Metrics;
use crate::model::said::Said;
use crate::model::{AttemptRecord, BreakerChange, DueDelivery, Outcome, ReceiverState};
use crate::store::Writer;
use breaker::{Answer, Breakers};
use retry::{next_step, Policy, Verdict};
pub use scheduler::ConfigSource;

/// Longest the scheduler sleeps without looking at the database.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What wakes the scheduler.
#[derive(Debug)]
pub enum Signal {
    /// Something was committed; there may be new work.
    Committed,
    /// A worker finished an attempt to this receiver and waits for another.
    WorkerIdle(String),
    /// The scheduler's claim was committed (or failed).
    Claimed(Result<crate::model::Claimed, crate::store::StoreError>),
    /// Stop claiming work.
    Stop,
}

/// Sends [`Signal`]s to the scheduler; cheap to clone.
#[derive(Clone)]
pub struct Waker(Sender<Signal>);

impl Waker {
    /// Tells the scheduler that new work may be due.
    pub fn wake(&self) {
        let _ = self.0.send(Signal::Committed);
    }
}

/// A waker and the receiving end the scheduler will own.
pub fn channel() -> (Waker, Receiver<Signal>) {
    let (tx, rx) = mpsc::channel();
    (Waker(tx), rx)
}

/// A delivery handed to a worker.
pub struct Job {
    pub due: DueDelivery,
    /// The probe of an open breaker.
    pub probe: bool,
    /// The receiver's breaker settings when it was handed out.
    pub breaker: crate::config::Breaker,
    /// The OAuth2 integration whose access token it goes with, if any.
    pub auth: Option<crate::config::kinds::OAuth>,
}

/// The running scheduler and workers.
pub struct Deliverer {
    signals: Sender<Signal>,
    scheduler: JoinHandle<()>,
    exited: Receiver<()>,
    workers: usize,
    /// Metrica's batch thread, and what tells it to stop.
    batches: (JoinHandle<()>, Arc<std::sync::atomic::AtomicBool>),
}

/// Starts `workers` worker threads, the scheduler that feeds them, and
/// Metrica's batch thread (each reads the running config through its own
/// source). The breakers start as they were kept ([`Writer::receivers`]).
pub fn start(
    writer: Writer,
    workers: usize,
    signals: (Waker, Receiver<Signal>),
    (config, batches_config): (ConfigSource, ConfigSource),
    metrics: Arc<Metrics>,
) -> anyhow::Result<Deliverer> {
    let (waker, rx) = signals;
    let kept = writer.receivers()?;
    for state in &kept {
        if let Some(open) = state.open {
            log::warn!(
                "receiver {}: the circuit breaker is open (failing since {}); deliveries wait for a probe",
                state.target,
                crate::clock::rfc3339(open.since)
            );
        }
        metrics.breaker(&state.target, state.open.is_some(), None);
    }
    let breakers = Breakers::from(kept);
    // A rendezvous channel: a job is handed over only to a worker that is
    // waiting, so a stop never leaves claimed jobs sitting in a queue.
    let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(0);
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    let (exited_tx, exited) = mpsc::channel();
    let agent = send::agent(concat!("hookrelay/", env!("CARGO_PKG_VERSION")));
    let tokens = Arc::new(oauth::Tokens::new(writer.clone(), agent.clone()));
    for n in 0..workers {
        let worker = Worker {
            agent: agent.clone(),
            tokens: Arc::clone(&tokens),
            jobs: Arc::clone(&jobs_rx),
            writer: writer.clone(),
            metrics: Arc::clone(&metrics),
            breakers: breakers.clone(),
            idle: waker.0.clone(),
            exited: exited_tx.clone(),
        };
        std::thread::Builder::new()
            .name(format!("deliver-{n}"))
            .spawn(move || worker.run())?;
    }
    let stop_batches = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let batcher = metrica::Batcher::new(writer.clone(), agent, batches_config, Arc::clone(&stop_batches));
    let batches = std::thread::Builder::new()
        .name("deliver-metrica".into())
        .spawn(move || batcher.run())?;
    let own = waker.0.clone();
    let scheduler = std::thread::Builder::new()
        .name("deliver-scheduler".into())
        .spawn(move || {
            scheduler::Scheduler::new(writer, workers, (rx, own), jobs_tx, (config, breakers), metrics).run()
        })?;
    Ok(Deliverer {
        signals: waker.0,
        scheduler,
        exited,
        workers,
        batches: (batches, stop_batches),
    })
}

impl Deliverer {
    /// Stops claiming work and waits up to `grace` for attempts in flight to
    /// finish and be recorded. Returns how many workers were still busy.
    pub fn stop(self, grace: Duration) -> usize {
        let _ = self.signals.send(Signal::Stop);
        self.batches.1.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.scheduler.join();
        let deadline = Instant::now() + grace;
        let mut finished = 0;
        while finished < self.workers {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.exited.recv_timeout(left) {
                Ok(()) => finished += 1,
                Err(_) => break,
            }
        }
        self.workers - finished
    }
}

/// Most attempts in flight to one receiver: three quarters of the pool, so
/// a receiver that hangs until the timeout cannot starve deliveries to the
/// others. (Half the pool cost 40% of the backlog drain to a single
/// receiver: 1 715 instead of 2 858 deliveries/s.)
pub fn per_target_limit(workers: usize) -> usize {
    (workers - workers / 4).max(1)
}

struct Worker {
    agent: ureq::Agent,
    tokens: Arc<oauth::Tokens>,
    jobs: Arc<Mutex<Receiver<Job>>>,
    writer: Writer,
    metrics: Arc<Metrics>,
    breakers: Breakers,
    idle: Sender<Signal>,
    exited: Sender<()>,
}

impl Worker {
    fn run(self) {
        loop {
            let job = match self.jobs.lock() {
                Ok(jobs) => jobs.recv(),
                Err(_) => break,
            };
            let Ok(job) = job else { break };
            if !self.still_ours(&job) {
                let _ = self.idle.send(Signal::WorkerIdle(job.due.target));
                continue;
            }
            let record = attempt(&self.agent, &job, &self.breakers, (&self.tokens, &self.writer));
            let seconds = record.duration_ms as f64 / 1000.0;
            let job = job.due;
            self.metrics
                .attempt(&job.request.action, record.outcome, seconds, now_ms());
            if let Some(state) = &record.receiver {
                if state.change.is_some() {
                    self.metrics.breaker(&state.target, state.open.is_some(), state.change);
                }
            }
            if let Err(err) = self.writer.record(record) {
                log::error!("delivery {}: cannot record the attempt: {err}", job.id);
            }
            let _ = self.idle.send(Signal::WorkerIdle(job.target));
        }
        let _ = self.exited.send(());
    }

    /// Whether this instance may send `job`: on a database shared with
    /// other instances, a claim is this instance's only while its lease is
    /// renewed. Normally the last renewal covers the whole attempt; if it
    /// does not (the database was unreachable), the worker waits until a
    /// renewal commits and asks whether the delivery is still its own:
    /// another instance may have taken it over, and then sends it instead.
    fn still_ours(&self, job: &Job) -> bool {
        // Renewals keep the lease at least two thirds of its length ahead;
        // a longer attempt relies on them going on while it runs.
        let attempt = (job.due.request.timeout_ms as i64).min(crate::store::LEASE_MS / 2);
        let needed = || now_ms() + attempt + LEASE_MARGIN_MS;
        if self.writer.leases_hold(needed()) {
            return true;
        }
        loop {
            if self.writer.leases_hold(needed()) {
                match self.writer.still_claimed(job.due.id) {
                    Ok(true) => return true,
                    Ok(false) => {
                        log::info!(
                            "delivery {}: another instance took it over while this one's lease lapsed",
                            job.due.id
                        );
                        return false;
                    }
                    Err(err) => log::warn!("delivery {}: cannot check its claim: {err}", job.due.id),
                }
            }
            std::thread::sleep(POLL_INTERVAL / 4);
        }
    }
}

/// Time an attempt must still be leased for beyond its timeout.
const LEASE_MARGIN_MS: i64 = 2_000;

/// Makes one attempt, tells the receiver's breaker, and decides what the
/// delivery becomes.
fn attempt(
    agent: &ureq::Agent,
    job: &Job,
    breakers: &Breakers,
    (tokens, writer): (&oauth::Tokens, &Writer),
) -> AttemptRecord {
    let Job {
        due: job,
        probe,
        breaker,
        auth,
    } = job;
    let started_at = now_ms();
    let clock = Instant::now();
    let (result, request) = match recall::fill(writer, job) {
        Ok(None) => send_signed(agent, job, auth.as_ref(), tokens),
        Ok(Some(filled)) => send_signed(agent, &filled, auth.as_ref(), tokens),
        Err(waiting) => (Err(send::SendError::NotYet(waiting)), job.request.redacted.clone()),
    };
    // Held back before it was sent: nothing to tell the receiver's breaker.
    let reached = !matches!(
        result,
        Err(send::SendError::NotYet(_) | send::SendError::Unauthorized(_))
    );
    let duration_ms = clock.elapsed().as_millis() as i64;
    let d = &job.request;
    let (verdict, http_status, response_body, error, judged) = match result {
        Ok(answer) => {
            let (verdict, judged) = judge::judge(
                &d.rules,
                answer.status,
                &answer.body,
                answer.retry_after,
                started_at + duration_ms,
            );
            // An answer the body decided, or one the platform's kind
            // explains, says why, in the attempt's error, the delivery's
            // last error and the failure notice alike; a status speaks for
            // itself ("HTTP 503").
            let note = match verdict {
                Verdict::Delivered => None,
                _ => judge::note(&d.rules, answer.status, &answer.body),
            };
            let error = (judged.by_body() || note.is_some()).then(|| Said::Answer {
                verdict: judged.clone(),
                note,
            });
            (
                verdict,
                Some(answer.status),
                Some(answer.body_head()),
                error,
                Some(judged),
            )
        }
        Err(send::SendError::Invalid(error)) => (Verdict::Fail, None, None, Some(Said::InvalidRequest { error }), None),
        Err(send::SendError::Unauthorized(said)) => (Verdict::Fail, None, None, Some(said), None),
        Err(send::SendError::NotYet(said)) => (Verdict::Retry { retry_after: None }, None, None, Some(said), None),
        Err(send::SendError::Network(error)) => (
            Verdict::Retry { retry_after: None },
            None,
            None,
            Some(Said::Network { error }),
            None,
        ),
    };
    let policy = Policy {
        attempts: d.max_attempts,
        first_delay: Duration::from_millis(d.first_delay_ms),
        max_delay: Duration::from_millis(d.max_delay_ms),
    };
    let number = job.attempts + 1;
    // What it was, for the breaker, the logs and the failure notice.
    let said = match (http_status, &error) {
        (_, Some(err)) => err.clone(),
        (Some(status), None) => Said::Http { status },
        (None, None) => Said::text("failed"),
    };
    let what = said.to_string();
    // A request that was never sent (it cannot be built) says nothing
    // about the receiver.
    let answer = match (&verdict, http_status, &error) {
        _ if !reached => None,
        (Verdict::Retry { .. }, _, _) => Some(Answer::Failed(said.clone())),
        (_, None, Some(_)) => None,
        (Verdict::Fail, Some(_), _) => Some(Answer::Refused(said.clone())),
        _ => Some(Answer::Answered),
    };
    let answered = matches!(answer, Some(Answer::Answered));
    let now = now_ms();
    // The breaker's new state, and whether it is worth writing with the
    // attempt: one lock of the table for both.
    let receiver = match answer {
        Some(answer) => {
            let mut table = breakers.lock();
            let state = table.record(&job.target, breaker, &answer, *probe, now);
            let keep = table.worth_keeping(&state, answered, now);
            Some((state, keep))
        }
        // A probe that could not be sent proved nothing: the next
        // delivery is the probe.
        None => {
            if *probe {
                breakers.lock().probing.remove(&job.target);
            }
            None
        }
    };
    let parked = matches!(verdict, Verdict::Retry { .. }) && receiver.as_ref().is_some_and(|(r, _)| r.open.is_some());
    let outcome = if parked {
        Outcome::Parked
    } else {
        next_step(&policy, number, &verdict, now, random_unit())
    };
    if let Some((state, _)) = &receiver {
        log_change(state);
    }
    let receiver = receiver.and_then(|(state, keep)| keep.then_some(state));
    match outcome {
        Outcome::Delivered => {
            if crate::eventlog::admit() {
                log::info!(
                    "delivery {} ({}, operation {}) delivered: {what} in {duration_ms} ms",
                    job.id,
                    d.action,
                    job.operation_id
                );
            }
        }
        Outcome::RetryAt(at) => {
            log::warn!(
                "delivery {} ({}, operation {}) attempt {number}/{} failed: {what}; retrying in {} s",
                job.id,
                d.action,
                job.operation_id,
                d.max_attempts,
                (at - now_ms()).max(0) / 1000
            )
        }
        Outcome::Failed => log::error!(
            "delivery {} ({}, operation {}) failed for good after attempt {number}/{}: {what}",
            job.id,
            d.action,
            job.operation_id,
            d.max_attempts
        ),
        Outcome::Parked => log::warn!(
            "delivery {} ({}, operation {}) {}failed: {what}; it waits for the breaker of {} to close (not counted against its attempts)",
            job.id,
            d.action,
            job.operation_id,
            if *probe { "probe " } else { "attempt " },
            job.target
        ),
    }
    // A permanent failure is told to the operator, naming the action and
    // how many attempts it took.
    let failure_notice = (outcome == Outcome::Failed).then(|| Said::DeliveryFailed {
        action: d.action.clone(),
        error: Box::new(said),
        attempt: number,
    });
    // What the answer kept, remembered for a later event's `recall`.
    let remember = match (&outcome, judged.as_ref().and_then(|j| j.kept()), &d.rules.remember) {
        (Outcome::Delivered, Some(kept), Some((name, key))) => {
            let value = match kept {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            Some((name.clone(), key.clone(), value))
        }
        _ => None,
    };
    AttemptRecord {
        delivery_id: job.id,
        started_at,
        duration_ms,
        request,
        http_status,
        response_body,
        error,
        judged,
        outcome,
        failure_notice,
        receiver,
        remember,
    }
}

/// Sends `job` (or finds that an earlier attempt made its lead: see
/// [`lookup`]), with an OAuth2 access token when `auth` names the
/// integration; after a 401, once more with a refreshed one. Also the
/// request line the attempt records.
fn send_signed(
    agent: &ureq::Agent,
    job: &DueDelivery,
    auth: Option<&crate::config::kinds::OAuth>,
    tokens: &oauth::Tokens,
) -> (Result<send::Answer, send::SendError>, String) {
    let go = |due: &DueDelivery| {
        lookup::earlier_lead(agent, due).unwrap_or_else(|| (send::send(agent, due), due.request.redacted.clone()))
    };
    let Some(oauth) = auth else { return go(job) };
    let line = || job.request.redacted.clone();
    let unsent = |no: oauth::NoToken| match no {
        oauth::NoToken::Authorize(said) => Err(send::SendError::Unauthorized(said)),
        oauth::NoToken::Later(why) => Err(send::SendError::Network(why)),
    };
    let bearer = match tokens.bearer(oauth, None) {
        Ok(bearer) => bearer,
        Err(no) => return (unsent(no), line()),
    };
    let signed = |bearer: &str| {
        let mut signed = job.clone();
        signed
            .request
            .headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("authorization"));
        signed
            .request
            .headers
            .push(("Authorization".into(), format!("Bearer {bearer}")));
        signed
    };
    let (result, request) = go(&signed(&bearer));
    if !matches!(&result, Ok(answer) if answer.status == 401) {
        return (result, request);
    }
    // The token may have been revoked before its time: refreshed once.
    match tokens.bearer(oauth, Some(&bearer)) {
        Ok(newer) => go(&signed(&newer)),
        Err(oauth::NoToken::Authorize(said)) => (Err(send::SendError::Unauthorized(said)), request),
        Err(oauth::NoToken::Later(_)) => (result, request),
    }
}

/// Logs a breaker's opening or closing.
fn log_change(state: &ReceiverState) {
    match (state.change, state.open) {
        (Some(BreakerChange::Opened), Some(open)) => log::warn!(
            "receiver {}: circuit breaker open after {} failures in a row ({}); deliveries wait, probing in {} s",
            state.target,
            state.failures,
            state
                .last_error
                .as_ref()
                .map_or("unknown error".to_string(), Said::to_string),
            open.probe_wait_ms / 1000
        ),
        (Some(BreakerChange::Closed { since }), _) => log::info!(
            "receiver {}: answers again (failing since {}); circuit breaker closed",
            state.target,
            crate::clock::rfc3339(since)
        ),
        _ => {}
    }
}

/// A random number in `[0, 1)` for jitter; 0.5 if the OS cannot give one.
fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}
