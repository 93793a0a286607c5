//! The retry policy as pure functions: when to try again (what an answer
//! means is `judge.rs`'s). No clock, no I/O: the caller passes `now` and the
//! random number, so the schedule is tested exactly.

use std::time::{Duration, SystemTime};

use crate::model::Outcome;

/// A server's `Retry-After` is honoured up to this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The retry budget of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Attempts in all, the first one included.
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

/// What one attempt's result means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Worth trying again, no sooner than `retry_after` if the server said so.
    Retry {
        retry_after: Option<Duration>,
    },
    /// Trying again will not help.
    Fail,
}

/// The wait after failed attempt number `attempt` (1-based): full jitter
/// between `first_delay` and the exponential cap `first_delay · 2^(attempt-1)`
/// (itself capped at `max_delay`), never shorter than the server's
/// `Retry-After`. `unit` is a random number in `[0, 1)`.
pub fn backoff(policy: &Policy, attempt: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(32);
    let cap = policy
        .first_delay
        .saturating_mul(1u32 << exponent.min(31))
        .min(policy.max_delay);
    let spread = cap.saturating_sub(policy.first_delay);
    let jittered = policy.first_delay + spread.mul_f64(unit.clamp(0.0, 1.0));
    match retry_after {
        Some(wait) => jittered.max(wait.min(MAX_RETRY_AFTER)),
        None => jittered,
    }
}

/// What a delivery becomes after attempt number `attempt` (1-based) ended
/// with `verdict` at `now_ms`.
pub fn next_step(policy: &Policy, attempt: u32, verdict: &Verdict, now_ms: i64, unit: f64) -> Outcome {
    match verdict {
        Verdict::Delivered => Outcome::Delivered,
        Verdict::Fail => Outcome::Failed,
        Verdict::Retry { .. } if attempt >= policy.attempts => Outcome::Failed,
        Verdict::Retry { retry_after } => {
            let wait = backoff(policy, attempt, *retry_after, unit);
            Outcome::RetryAt(now_ms.saturating_add(wait.as_millis() as i64))
        }
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const POLICY: Policy = Policy {
        attempts: 5,
        first_delay: Duration::from_secs(30),
        max_delay: Duration::from_secs(300),
    };

    /// The cap doubles from first_delay and stops at max_delay; jitter spans it.
    #[test]
    fn backoff_grows_exponentially_within_bounds() {
        let secs = |attempt, unit| backoff(&POLICY, attempt, None, unit).as_secs();
        assert_eq!(secs(1, 0.0), 30);
        assert_eq!(secs(1, 0.99), 30);
        assert_eq!(secs(2, 0.0), 30);
        assert_eq!(secs(2, 1.0), 60);
        assert_eq!(secs(3, 1.0), 120);
        assert_eq!(secs(4, 1.0), 240);
        assert_eq!(secs(5, 1.0), 300);
        assert_eq!(secs(40, 1.0), 300);
        assert_eq!(secs(3, 0.5), 75);
    }

    /// Retry-After wins when it asks for longer, up to a day.
    #[test]
    fn backoff_honours_retry_after() {
        let long = Some(Duration::from_secs(3600));
        assert_eq!(backoff(&POLICY, 1, long, 0.0), Duration::from_secs(3600));
        let short = Some(Duration::from_secs(1));
        assert_eq!(backoff(&POLICY, 1, short, 0.0), Duration::from_secs(30));
        let absurd = Some(Duration::from_secs(10 * 86400));
        assert_eq!(backoff(&POLICY, 1, absurd, 0.0), MAX_RETRY_AFTER);
    }

    /// The budget counts attempts: the last one fails instead of rescheduling.
    #[test]
    fn budget_is_spent_after_the_last_attempt() {
        let retry = Verdict::Retry { retry_after: None };
        assert_eq!(next_step(&POLICY, 1, &retry, 1_000, 0.0), Outcome::RetryAt(31_000));
        assert_eq!(next_step(&POLICY, 4, &retry, 0, 1.0), Outcome::RetryAt(240_000));
        assert_eq!(next_step(&POLICY, 5, &retry, 0, 0.0), Outcome::Failed);
        assert_eq!(next_step(&POLICY, 1, &Verdict::Fail, 0, 0.0), Outcome::Failed);
        assert_eq!(next_step(&POLICY, 5, &Verdict::Delivered, 0, 0.0), Outcome::Delivered);
    }

    /// Both forms of Retry-After parse; a past date means now.
    #[test]
    fn parses_retry_after() {
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_000);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(1_445_412_480 - 1_445_412_000))
        );
        assert_eq!(
            parse_retry_after("Sat, 21 Oct 2000 07:28:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
