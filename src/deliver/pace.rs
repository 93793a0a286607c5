//! Pacing: at most `rate` requests started per period to a receiver, spread
//! evenly (one every period / count) rather than in bursts, so a receiver
//! limited to 5/s never sees more than 5 in any one second, and a replay of
//! thousands of operations reaches it as a steady trickle.

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
    /// it will.
    pub fn take(&mut self, target: &str, rate: Rate, now: Instant) -> Result<(), Instant> {
        let gap = gap(rate);
        match self.next.get_mut(target) {
            Some(next) if *next > now => Err(*next),
            // After an idle spell the turn starts from now: no burst to
            // make up for the time nothing was sent.
            Some(next) => {
                *next = now + gap;
                Ok(())
            }
            None => {
                self.next.insert(target.to_string(), now + gap);
                Ok(())
            }
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
        assert_eq!(pace.take("a", rate, start), Ok(()));
        assert_eq!(pace.take("a", rate, start), Err(start + Duration::from_millis(200)));
        assert_eq!(pace.take("b", rate, start), Ok(()), "another receiver is not slowed");
        let later = start + Duration::from_millis(199);
        assert!(pace.take("a", rate, later).is_err());
        let turn = start + Duration::from_millis(200);
        assert_eq!(pace.take("a", rate, turn), Ok(()));
        // Idle for a second: the next one goes at once, and only one.
        let idle = turn + Duration::from_secs(1);
        assert_eq!(pace.take("a", rate, idle), Ok(()));
        assert!(pace.take("a", rate, idle).is_err());
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
            if pace.take("a", rate, now).is_ok() {
                sent.push(ms);
            }
        }
        assert_eq!(sent.len(), 25);
        for pair in sent.windows(6) {
            assert!(pair[5] - pair[0] >= 1_000, "{pair:?}");
        }
    }
}
