//! The log's line per event (a webhook stored, a delivery made), within a
//! budget of [`LINES_PER_SECOND`].
//!
//! A salon's few webhooks a day each get their line, which is what one
//! watches with `journalctl -f` while setting a sender up. Under a burst,
//! a line per event costs a `write` each (a tenth of the system calls of a
//! stored webhook) and floods journald, whose default rate limit (10 000
//! lines per 30 s per service) then drops the service's lines, warnings
//! and errors among them. Past the budget, event lines are left out and
//! counted; the next line let through is preceded by one saying how many.
//! Warnings and errors are never held back here. The history and the
//! console have every event either way.

use std::sync::Mutex;

/// Event lines logged in one second at most.
pub const LINES_PER_SECOND: u32 = 20;

/// How many event lines this second has used, and how many were left out
/// since the last one logged. Fed the clock, so it is tested without waiting.
#[derive(Debug, Default)]
pub struct Budget {
    second: u64,
    used: u32,
    left_out: u64,
}

impl Budget {
    /// An empty budget (const, for the process-wide one).
    pub const fn new() -> Budget {
        Budget {
            second: 0,
            used: 0,
            left_out: 0,
        }
    }

    /// `Some(n)` if a line may be logged in the second `second`, `n` being
    /// how many were left out before it; `None` (one more left out) if not.
    pub fn admit(&mut self, second: u64) -> Option<u64> {
        if second != self.second {
            self.second = second;
            self.used = 0;
        }
        if self.used >= LINES_PER_SECOND {
            self.left_out += 1;
            return None;
        }
        self.used += 1;
        Some(std::mem::take(&mut self.left_out))
    }
}

static BUDGET: Mutex<Budget> = Mutex::new(Budget::new());

/// Whether an event line may be logged now. Logs first how many were left
/// out, if any. False when info lines are off: nothing is counted then.
pub fn admit() -> bool {
    if !log::log_enabled!(log::Level::Info) {
        return false;
    }
    let second = crate::clock::now_ms().max(0) as u64 / 1000;
    let admitted = match BUDGET.lock() {
        Ok(mut budget) => budget.admit(second),
        Err(poisoned) => poisoned.into_inner().admit(second),
    };
    match admitted {
        Some(0) => true,
        Some(left_out) => {
            log::info!(
                "{left_out} lines about webhooks and deliveries left out (more than {LINES_PER_SECOND} a second); \
                 history and the console have them all"
            );
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lets_its_budget_through_then_counts_what_it_leaves_out() {
        let mut budget = Budget::new();
        for _ in 0..LINES_PER_SECOND {
            assert_eq!(budget.admit(7), Some(0));
        }
        assert_eq!(budget.admit(7), None);
        assert_eq!(budget.admit(7), None);
        // The next second: the first line says two were left out.
        assert_eq!(budget.admit(8), Some(2));
        assert_eq!(budget.admit(8), Some(0));
        // Nothing left out since: nothing to say.
        assert_eq!(budget.admit(20), Some(0));
    }
}
