//! Time as people read and type it: in the configured time zone, with the
//! zone named. Scripts get RFC 3339 in UTC (`--json`); everything a person
//! reads goes through here. Pure functions: the current time is passed in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Milliseconds since the epoch as RFC 3339, to the millisecond.
pub fn rfc3339(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// The zone times are shown in when the config names none: the users'.
pub const DEFAULT_TIME_ZONE: &str = "Europe/Moscow";

/// The time zone called `name` (an IANA name such as `Europe/Moscow`, or `UTC`).
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name).map_err(|_| format!("`{name}` is not a known time zone (e.g. Europe/Moscow, UTC)"))
}

/// `2026-11-25 13:05:01 MSK`: milliseconds since the epoch in `tz`.
pub fn local(ms: i64, tz: &TimeZone) -> String {
    match Timestamp::from_millisecond(ms) {
        Ok(at) => at
            .to_zoned_datetime(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        Err(_) => format!("{ms} ms"),
    }
}

/// Reads a `--since`: a duration back from `now_ms` (`24h`, `7d`), a date
/// (`2026-11-25`: its midnight in `tz`), a local time (`2026-11-25 10:00`
/// or with `T`, in `tz`), or an RFC 3339 time with its offset.
pub fn parse_since(text: &str, now_ms: i64, tz: &TimeZone) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(now_ms.saturating_sub(ago.as_millis() as i64));
    }
    if let Ok(at) = text.parse::<Timestamp>() {
        return Ok(at.as_millisecond());
    }
    let civil = text.parse::<DateTime>().or_else(|_| {
        text.parse::<Date>()
            .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
    });
    match civil {
        Ok(civil) => civil
            .to_zoned_datetime(tz.clone())
            .map(|z| z.timestamp().as_millisecond())
            .map_err(|e| format!("`{text}`: {e}")),
        Err(_) => Err(format!(
            "`{text}` is neither a duration such as 24h, a date such as 2026-11-25, nor a time such as 2026-11-25 10:00"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moscow() -> TimeZone {
        time_zone(DEFAULT_TIME_ZONE).unwrap()
    }

    /// Times are shown in the zone, which is named.
    #[test]
    fn local_time_names_the_zone() {
        // 2026-11-25T10:05:01Z is 13:05:01 in Moscow (UTC+3 all year).
        let ms = 1_795_601_101_000;
        assert_eq!(local(ms, &moscow()), "2026-11-25 13:05:01 MSK");
        assert_eq!(local(ms, &time_zone("UTC").unwrap()), "2026-11-25 10:05:01 UTC");
        assert!(time_zone("Mars/Olympus").is_err());
    }

    /// A date is its local midnight; durations count back from now.
    #[test]
    fn since_takes_dates_times_and_durations() {
        let tz = moscow();
        let midnight = parse_since("2026-11-25", 0, &tz).unwrap();
        assert_eq!(local(midnight, &tz), "2026-11-25 00:00:00 MSK");
        let ten = parse_since("2026-11-25 10:00", 0, &tz).unwrap();
        assert_eq!(ten - midnight, 10 * 3_600_000);
        assert_eq!(parse_since("2026-11-25T10:00", 0, &tz).unwrap(), ten);
        assert_eq!(parse_since("2026-11-25T07:00:00Z", 0, &tz).unwrap(), ten);
        assert_eq!(parse_since("24h", 100_000_000, &tz).unwrap(), 100_000_000 - 86_400_000);
        assert!(parse_since("yesterday-ish", 0, &tz).is_err());
    }
}
