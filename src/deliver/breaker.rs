//! The circuit breaker of each receiver, as pure functions over
//! [`ReceiverState`]: no clock, no I/O, the caller passes `now`.
//!
//! Closed, attempts go out as usual and retryable failures are counted.
//! After `failures` of them in a row the breaker opens: deliveries to the
//! receiver wait, spending nothing of their retry budget, and one probe (an
//! ordinary waiting delivery) goes out every `probe`, the wait doubling up
//! to `max_probe` after each failed one. Any answer that is not a retryable
//! failure closes it, and the waiting deliveries drain.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::Breaker as Policy;
use crate::model::said::Said;
use crate::model::{BreakerChange, Open, ReceiverState};

/// Whether a delivery to a receiver may go out now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Send,
    /// The breaker is open and a probe is due: send exactly one.
    Probe,
    /// The breaker is open: nothing goes out before this time (ms), or
    /// before the probe in flight comes back (`None`).
    Wait(Option<i64>),
}

/// What an attempt's answer means to the breaker.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The receiver took it.
    Answered,
    /// The receiver answered but did not take it (a 4xx, or a 2xx whose
    /// body the action does not accept), with what it said: it is up, so
    /// the breaker closes, but the answer is its last error.
    Refused(Said),
    /// A network error, timeout, 5xx, 408 or 429, with what it was.
    Failed(Said),
}

/// Whether `state` lets a delivery go out at `now`; `probing` says a
/// probe is in flight.
pub fn permit(state: &ReceiverState, probing: bool, now: i64) -> Permit {
    match state.open {
        None => Permit::Send,
        Some(_) if probing => Permit::Wait(None),
        Some(open) if now >= open.next_probe_at => Permit::Probe,
        Some(open) => Permit::Wait(Some(open.next_probe_at)),
    }
}

/// Takes an attempt's `answer` at `now` into `state`; `probe` says the
/// attempt was the open breaker's probe. Returns the change to announce.
pub fn record(
    state: &mut ReceiverState,
    policy: &Policy,
    answer: &Answer,
    probe: bool,
    now: i64,
) -> Option<BreakerChange> {
    // Versions grow with time too, so that states reached by different
    // instances sharing one database compare by when they were reached.
    state.version = state.version.saturating_add(1).max(now.saturating_mul(1000));
    state.change = None;
    match answer {
        Answer::Answered | Answer::Refused(_) => {
            match answer {
                Answer::Refused(what) => {
                    state.last_error = Some(what.clone());
                    state.last_error_at = Some(now);
                }
                _ => state.last_success_at = Some(now),
            }
            state.failures = 0;
            state.failing_since = None;
            let was = state.open.take();
            state.change = was.map(|open| BreakerChange::Closed { since: open.since });
        }
        Answer::Failed(error) => {
            state.last_error = Some(error.clone());
            state.last_error_at = Some(now);
            state.failures = state.failures.saturating_add(1);
            let since = *state.failing_since.get_or_insert(now);
            match &mut state.open {
                Some(open) if probe => {
                    let max = policy.max_probe.as_millis() as i64;
                    open.probe_wait_ms = open.probe_wait_ms.saturating_mul(2).min(max);
                    open.next_probe_at = now.saturating_add(open.probe_wait_ms);
                }
                // An attempt that went out before the breaker opened.
                Some(_) => {}
                None if policy.failures > 0 && state.failures >= policy.failures => {
                    let wait = policy.probe.as_millis() as i64;
                    state.open = Some(Open {
                        since,
                        probe_wait_ms: wait,
                        next_probe_at: now.saturating_add(wait),
                    });
                    state.change = Some(BreakerChange::Opened);
                }
                None => {}
            }
        }
    }
    state.change
}

/// Closes `state`'s breaker by hand at `now` (nothing answered: its
/// last success and error stay); whether it was open.
pub fn close(state: &mut ReceiverState, now: i64) -> bool {
    state.version = state.version.saturating_add(1).max(now.saturating_mul(1000));
    state.failures = 0;
    state.failing_since = None;
    state.change = None;
    state.open.take().is_some()
}

/// Every receiver's breaker, shared by the scheduler (which asks
/// [`permit`]) and the workers (which [`record`] answers).
#[derive(Clone, Default)]
pub struct Breakers(Arc<Mutex<Table>>);

/// The breakers by receiver, and the receivers with a probe in flight.
#[derive(Default)]
pub struct Table {
    pub states: HashMap<String, ReceiverState>,
    pub probing: std::collections::HashSet<String>,
    /// When a receiver's plain success was last written to the database
    /// (none since anything else was).
    pub kept_at: HashMap<String, i64>,
}

impl Table {
    /// Whether a delivery to `target` may go out at `now`.
    pub fn permit(&self, target: &str, now: i64) -> Permit {
        match self.states.get(target) {
            Some(state) => permit(state, self.probing.contains(target), now),
            None => Permit::Send,
        }
    }

    /// Takes an attempt's answer; returns the receiver's new state to keep.
    pub fn record(&mut self, target: &str, policy: &Policy, answer: &Answer, probe: bool, now: i64) -> ReceiverState {
        if probe {
            self.probing.remove(target);
        }
        let state = self.states.entry(target.to_string()).or_insert_with(|| ReceiverState {
            target: target.to_string(),
            ..ReceiverState::default()
        });
        record(state, policy, answer, probe, now);
        state.clone()
    }

    /// Whether `state`, just recorded at `now` after `answered` (an
    /// accepted answer), is worth writing to the database with its attempt.
    /// A change, a failure and a refusal always are; a plain success (only
    /// `last_success_at` moves) at most once a second per receiver: a
    /// second late is nothing to `status`, and it spared a statement per
    /// delivery (a round trip on PostgreSQL).
    pub fn worth_keeping(&mut self, state: &ReceiverState, answered: bool, now: i64) -> bool {
        let plain = answered && state.change.is_none() && state.open.is_none();
        if !plain {
            // The next success is written at once: it resets what this one set.
            self.kept_at.remove(&state.target);
            return true;
        }
        if self.kept_at.get(&state.target).is_some_and(|at| now - at < 1000) {
            return false;
        }
        self.kept_at.insert(state.target.clone(), now);
        true
    }

    /// Takes what other instances sharing the database reached: each kept
    /// state newer than this instance's own replaces it (a breaker another
    /// instance opened holds here too, and one it closed lets go here).
    pub fn adopt(&mut self, kept: Vec<ReceiverState>) {
        for state in kept {
            let newer = self
                .states
                .get(&state.target)
                // The same version: this instance's own state as the row
                // merged it with the others'.
                .is_none_or(|mine| state.version >= mine.version);
            if newer {
                self.states.insert(state.target.clone(), state);
            }
        }
    }

    /// The receivers whose breaker is open.
    pub fn open(&self) -> impl Iterator<Item = (&String, &Open)> {
        self.states.iter().filter_map(|(t, s)| s.open.as_ref().map(|o| (t, o)))
    }
}

impl Breakers {
    /// Breakers starting from what was kept (open ones stay open).
    pub fn from(states: Vec<ReceiverState>) -> Breakers {
        let states = states.into_iter().map(|s| (s.target.clone(), s)).collect();
        Breakers(Arc::new(Mutex::new(Table {
            states,
            probing: Default::default(),
            kept_at: Default::default(),
        })))
    }

    /// The table, locked. A worker that panicked holding it left nothing
    /// half-written that matters more than going on.
    pub fn lock(&self) -> MutexGuard<'_, Table> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const POLICY: Policy = Policy {
        failures: 3,
        probe: Duration::from_secs(30),
        max_probe: Duration::from_secs(100),
    };

    fn failed() -> Answer {
        Answer::Failed(Said::Http { status: 503 })
    }

    /// Failures in a row open it, once; the run's start is kept as `since`.
    #[test]
    fn opens_after_failures_in_a_row() {
        let mut s = ReceiverState::default();
        assert_eq!(record(&mut s, &POLICY, &failed(), false, 1_000), None);
        assert_eq!(record(&mut s, &POLICY, &failed(), false, 2_000), None);
        assert_eq!(permit(&s, false, 2_000), Permit::Send);
        assert_eq!(
            record(&mut s, &POLICY, &failed(), false, 3_000),
            Some(BreakerChange::Opened)
        );
        let open = s.open.unwrap();
        assert_eq!((open.since, open.next_probe_at), (1_000, 33_000));
        // A late failure of an attempt already in flight changes nothing.
        assert_eq!(record(&mut s, &POLICY, &failed(), false, 4_000), None);
        assert_eq!(s.open.unwrap().next_probe_at, 33_000);
        assert_eq!(s.last_error, Some(Said::Http { status: 503 }));
        assert_eq!(s.version, 4_000_000, "later states have larger versions");
    }

    /// An answer between failures starts the count again.
    #[test]
    fn an_answer_resets_the_count() {
        let mut s = ReceiverState::default();
        record(&mut s, &POLICY, &failed(), false, 1);
        record(&mut s, &POLICY, &failed(), false, 2);
        record(&mut s, &POLICY, &Answer::Answered, false, 3);
        record(&mut s, &POLICY, &failed(), false, 4);
        record(&mut s, &POLICY, &failed(), false, 5);
        assert_eq!(s.open, None);
        assert_eq!((s.failures, s.failing_since, s.last_success_at), (2, Some(4), Some(3)));
    }

    /// Regression: a receiver that answered 400 to every postback showed
    /// "last error: none". An answer that is not taken closes the breaker
    /// like any answer (the receiver is up), but it is the last error, not
    /// a success.
    #[test]
    fn a_refusal_is_an_answer_and_the_last_error() {
        let mut s = ReceiverState::default();
        for at in 0..3 {
            record(&mut s, &POLICY, &failed(), false, at);
        }
        let change = record(
            &mut s,
            &POLICY,
            &Answer::Refused(Said::Http { status: 400 }),
            true,
            40_000,
        );
        assert_eq!(change, Some(BreakerChange::Closed { since: 0 }));
        assert_eq!(s.open, None);
        assert_eq!((s.failures, s.last_success_at), (0, None));
        assert_eq!(
            (s.last_error.clone(), s.last_error_at),
            (Some(Said::Http { status: 400 }), Some(40_000))
        );
        assert!(s.refusing());
        record(&mut s, &POLICY, &Answer::Answered, false, 41_000);
        assert!(!s.refusing());
    }

    /// Open: one probe when due, none while it is out; failed probes back
    /// off to max_probe; an answer closes it, naming since when.
    #[test]
    fn probes_back_off_and_an_answer_closes() {
        let mut s = ReceiverState::default();
        for at in 0..3 {
            record(&mut s, &POLICY, &failed(), false, at);
        }
        assert_eq!(permit(&s, false, 10_000), Permit::Wait(Some(30_002)));
        assert_eq!(permit(&s, false, 30_002), Permit::Probe);
        assert_eq!(permit(&s, true, 30_002), Permit::Wait(None));
        record(&mut s, &POLICY, &failed(), true, 31_000);
        assert_eq!(s.open.unwrap().next_probe_at, 91_000);
        record(&mut s, &POLICY, &failed(), true, 91_000);
        assert_eq!(s.open.unwrap().probe_wait_ms, 100_000, "capped at max_probe");
        assert_eq!(
            record(&mut s, &POLICY, &Answer::Answered, true, 200_000),
            Some(BreakerChange::Closed { since: 0 })
        );
        assert_eq!(permit(&s, false, 200_000), Permit::Send);
        assert_eq!(s.failures, 0);
    }

    /// failures = 0 turns the breaker off.
    #[test]
    fn zero_failures_never_opens() {
        let off = Policy { failures: 0, ..POLICY };
        let mut s = ReceiverState::default();
        for at in 0..100 {
            assert_eq!(record(&mut s, &off, &failed(), false, at), None);
        }
        assert_eq!(permit(&s, false, 100), Permit::Send);
    }

    /// Another instance's newer state replaces this one's; an older one
    /// does not.
    #[test]
    fn newer_states_from_other_instances_are_adopted() {
        let breakers = Breakers::default();
        let mut table = breakers.lock();
        table.record("http://a/", &POLICY, &failed(), false, 5_000);
        let mut theirs = ReceiverState {
            target: "http://a/".into(),
            ..ReceiverState::default()
        };
        for at in 1..4 {
            record(&mut theirs, &POLICY, &failed(), false, at);
        }
        table.adopt(vec![theirs.clone()]);
        assert_eq!(table.permit("http://a/", 6_000), Permit::Send, "theirs is older");
        for at in 6_000..6_003 {
            record(&mut theirs, &POLICY, &failed(), false, at);
        }
        table.adopt(vec![theirs]);
        assert!(
            matches!(table.permit("http://a/", 6_010), Permit::Wait(Some(_))),
            "opened there"
        );
    }

    /// The shared table: a probe in flight blocks a second one until its
    /// answer is recorded.
    #[test]
    fn the_table_tracks_the_probe_in_flight() {
        let breakers = Breakers::default();
        let mut table = breakers.lock();
        for at in 0..3 {
            table.record("http://a/", &POLICY, &failed(), false, at);
        }
        assert_eq!(table.permit("http://b/", 0), Permit::Send);
        assert_eq!(table.permit("http://a/", 40_000), Permit::Probe);
        table.probing.insert("http://a/".into());
        assert_eq!(table.permit("http://a/", 40_000), Permit::Wait(None));
        let kept = table.record("http://a/", &POLICY, &Answer::Answered, true, 41_000);
        assert_eq!(kept.change, Some(BreakerChange::Closed { since: 0 }));
        assert_eq!(table.permit("http://a/", 41_000), Permit::Send);
        assert_eq!(table.open().count(), 0);
    }

    /// A plain success is written at most once a second per receiver; a
    /// failure, a refusal or a change each time.
    #[test]
    fn plain_successes_are_kept_once_a_second() {
        let mut table = Table::default();
        let state = |target: &str| ReceiverState {
            target: target.into(),
            ..ReceiverState::default()
        };
        assert!(table.worth_keeping(&state("a"), true, 10_000));
        assert!(!table.worth_keeping(&state("a"), true, 10_500));
        assert!(table.worth_keeping(&state("b"), true, 10_500), "another receiver");
        assert!(table.worth_keeping(&state("a"), false, 10_600), "a failure or refusal");
        // The success after it resets its failures: written at once.
        assert!(table.worth_keeping(&state("a"), true, 10_650));
        assert!(!table.worth_keeping(&state("a"), true, 10_700));
        let closed = ReceiverState {
            change: Some(BreakerChange::Closed { since: 1 }),
            ..state("a")
        };
        assert!(table.worth_keeping(&closed, true, 10_800), "a change");
        assert!(table.worth_keeping(&state("a"), true, 10_900));
        assert!(!table.worth_keeping(&state("a"), true, 11_500));
        assert!(table.worth_keeping(&state("a"), true, 11_950));
    }
}
