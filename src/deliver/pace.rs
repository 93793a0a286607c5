//! Pacing: at most `rate` requests started per period to a receiver, spread
//! evenly (one every period / count) rather than in bursts, so a receiver
//! limited to 5/s never sees more than 5 in any one second, and a replay of
//! thousands of operations reaches it as a steady trickle.
//!
//! A `burst` above 1 lets that many go at once after an idle spell, then
//! the steady rate: the leaky bucket Bitrix24 documents (50 at once, then
//! 2/s; apidocs.bitrix24.com/settings/performance/limits.html). It is the
//! generic cell rate algorithm: each key keeps the time its bucket would be
//! empty, and a request may start while that is at most `burst - 1` gaps away.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::config::Rate;

/// When each paced receiver may get its next request.
#[derive(Default)]
pub struct Pace {
    next: HashMap<String, Instant>,
}

impl Pace {
    /// Takes `target`'s turn at `now` if it has come; otherwise says when
    /// it will. `burst`: how many may go at once after an idle spell (1:
    /// evenly spaced from the first).
    pub fn take(&mut self, target: &str, rate: Rate, burst: u32, now: Instant) -> Result<(), Instant> {
        let gap = gap(rate);
        let slack = gap * burst.max(1).saturating_sub(1);
        match self.next.get_mut(target) {
            Some(next) if *next > now + slack => Err(*next - slack),
            // After an idle spell the bucket is empty from now: no more
            // than `burst` to make up for the time nothing was sent.
            Some(next) => {
                *next = (*next).max(now) + gap;
                Ok(())
            }
            None => {
                self.next.insert(target.to_string(), now + gap);
                Ok(())
            }
        }
    }

    /// Whether `key`'s turn has come at `now`, without taking it; else when
    /// it will. A delivery paced on several keys checks them all first.
    pub fn ready(&self, key: &str, rate: Rate, burst: u32, now: Instant) -> Result<(), Instant> {
        let slack = gap(rate) * burst.max(1).saturating_sub(1);
        match self.next.get(key) {
            Some(next) if *next > now + slack => Err(*next - slack),
            _ => Ok(()),
        }
    }

    /// Forgets receivers whose turn passed long ago (they are unpaced now,
    /// or idle): the map stays as small as the receivers in use.
    pub fn forget_idle(&mut self, now: Instant) {
        self.next
            .retain(|_, next| now.saturating_duration_since(*next) < Duration::from_secs(3600));
    }
}

/// The time between two requests at `rate`.
pub(super) fn gap(rate: Rate) -> Duration {
    rate.per / rate.count.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 5/s: one every 200 ms, the first at once; a receiver's turn is its own.
    #[test]
    fn spaces_requests_evenly() {
        let rate = Rate {
            count: 5,
            per: Duration::from_secs(1),
        };
        let start = Instant::now();
        let mut pace = Pace::default();
        assert_eq!(pace.take("a", rate, 1, start), Ok(()));
        assert_eq!(pace.take("a", rate, 1, start), Err(start + Duration::from_millis(200)));
        assert_eq!(pace.take("b", rate, 1, start), Ok(()), "another receiver is not slowed");
        let later = start + Duration::from_millis(199);
        assert!(pace.take("a", rate, 1, later).is_err());
        let turn = start + Duration::from_millis(200);
        assert_eq!(pace.take("a", rate, 1, turn), Ok(()));
        // Idle for a second: the next one goes at once, and only one.
        let idle = turn + Duration::from_secs(1);
        assert_eq!(pace.take("a", rate, 1, idle), Ok(()));
        assert!(pace.take("a", rate, 1, idle).is_err());
    }

    /// Over any second, at most `count` turns are given.
    #[test]
    fn never_more_than_the_rate_in_a_window() {
        let rate = Rate {
            count: 5,
            per: Duration::from_secs(1),
        };
        let start = Instant::now();
        let mut pace = Pace::default();
        let mut sent = Vec::new();
        for ms in 0..5_000u64 {
            let now = start + Duration::from_millis(ms);
            if pace.take("a", rate, 1, now).is_ok() {
                sent.push(ms);
            }
        }
        assert_eq!(sent.len(), 25);
        for pair in sent.windows(6) {
            assert!(pair[5] - pair[0] >= 1_000, "{pair:?}");
        }
    }

    /// Bitrix24's bucket: 50 at once, then one every 500 ms; after a quiet
    /// spell, 50 again and no more.
    #[test]
    fn a_burst_then_the_steady_rate() {
        let rate = Rate {
            count: 2,
            per: Duration::from_secs(1),
        };
        let start = Instant::now();
        let mut pace = Pace::default();
        for n in 0..50 {
            assert_eq!(pace.take("p", rate, 50, start), Ok(()), "request {n} of the burst");
        }
        let refused = pace.take("p", rate, 50, start);
        assert_eq!(refused, Err(start + Duration::from_millis(500)));
        assert_eq!(pace.ready("p", rate, 50, start), refused, "ready says what take would");
        assert_eq!(pace.take("p", rate, 50, start + Duration::from_millis(500)), Ok(()));
        assert!(pace.take("p", rate, 50, start + Duration::from_millis(600)).is_err());
        // Over any 10 s from the start: at most 50 + 2 * 10.
        let mut sent = 51;
        for ms in 601..10_000u64 {
            if pace.take("p", rate, 50, start + Duration::from_millis(ms)).is_ok() {
                sent += 1;
            }
        }
        assert!(sent <= 50 + 20, "{sent}");
        let quiet = start + Duration::from_secs(100);
        let again = (0..60).filter(|_| pace.take("p", rate, 50, quiet).is_ok()).count();
        assert_eq!(
            again, 50,
            "an idle bucket holds 50, not what the quiet spell would add up to"
        );
    }
}
