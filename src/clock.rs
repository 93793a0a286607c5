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

/// A day as people type it: `сегодня`/`today`, `вчера`/`yesterday`,
/// `01.12.2026` (what Klientiks itself sends, and how Russians write
/// dates) or `2026-12-01`; `None` for anything else. `today` is the
/// current day in the reader's zone.
pub fn parse_day(text: &str, today: Date) -> Option<Date> {
    let text = text.trim().to_lowercase();
    match text.as_str() {
        "сегодня" | "today" => return Some(today),
        "вчера" | "yesterday" => return today.yesterday().ok(),
        _ => {}
    }
    if let Ok(date) = text.parse::<Date>() {
        return Some(date);
    }
    let mut parts = text.split('.');
    let (day, month, year) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || year.len() != 4 {
        return None;
    }
    Date::new(year.parse().ok()?, month.parse().ok()?, day.parse().ok()?).ok()
}

/// The day `ms` falls on in `tz`.
pub fn day_of(ms: i64, tz: &TimeZone) -> Date {
    Timestamp::from_millisecond(ms)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned_datetime(tz.clone())
        .date()
}

/// Milliseconds since the epoch at the start of `day` in `tz`.
pub fn day_start(day: Date, tz: &TimeZone) -> i64 {
    day.to_zoned_datetime(tz.clone())
        .map_or(0, |z| z.start_of_day().map_or(0, |s| s.timestamp().as_millisecond()))
}

/// `01.12.2026`: a day as Russians (and the console in either language) write it.
pub fn dotted(day: Date) -> String {
    day.strftime("%d.%m.%Y").to_string()
}

/// Day names as `active_days` takes them, Monday first.
pub const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
/// Longest span [`ActiveTime::between`] walks day by day; past it the span
/// counts as at least this long, which every `silence` is shorter than.
const MAX_DAYS_WALKED: i64 = 400;

/// Hours of the day and days of the week when something is expected, in a
/// time zone (a salon's opening hours): what a silence is measured in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveTime {
    /// Minutes after local midnight: from `start` (inclusive) to `end` (exclusive).
    pub start: u16,
    pub end: u16,
    /// Monday first.
    pub days: [bool; 7],
}

impl ActiveTime {
    /// Every minute of every day.
    pub fn always() -> ActiveTime {
        ActiveTime {
            start: 0,
            end: 24 * 60,
            days: [true; 7],
        }
    }

    /// Reads `"09:00-21:00"` (`24:00` ends at midnight; a window across
    /// midnight is refused).
    pub fn parse_hours(text: &str) -> Result<(u16, u16), String> {
        let minute = |part: &str| -> Option<u16> {
            let (h, m) = part.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
        };
        let parsed = text.split_once('-').and_then(|(a, b)| Some((minute(a)?, minute(b)?)));
        match parsed {
            Some((start, end)) if start < end => Ok((start, end)),
            Some(_) => Err(format!(
                "`{text}`: the start must be before the end (a window across midnight is not supported)"
            )),
            None => Err(format!("`{text}` is not HH:MM-HH:MM, e.g. \"09:00-21:00\"")),
        }
    }

    /// How much of the time from `from` to `to` (ms since the epoch) is
    /// active in `tz`, in milliseconds.
    pub fn between(&self, from: i64, to: i64, tz: &TimeZone) -> i64 {
        if to <= from {
            return 0;
        }
        let (Ok(first), Ok(last)) = (Timestamp::from_millisecond(from), Timestamp::from_millisecond(to)) else {
            return 0;
        };
        let mut day = first.to_zoned_datetime(tz.clone()).date();
        let last_day = last.to_zoned_datetime(tz.clone()).date();
        let mut total = 0;
        for _ in 0..MAX_DAYS_WALKED {
            if day > last_day {
                return total;
            }
            let weekday = day.weekday().to_monday_zero_offset() as usize;
            if self.days[weekday] {
                let at = |minute: u16| {
                    let midnight = day.to_datetime(jiff::civil::Time::midnight());
                    (midnight + jiff::Span::new().minutes(i64::from(minute)))
                        .to_zoned_datetime(tz.clone())
                        .map(|z| z.timestamp().as_millisecond())
                };
                if let (Ok(open), Ok(close)) = (at(self.start), at(self.end)) {
                    total += (close.min(to) - open.max(from)).max(0);
                }
            }
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => return total,
            }
        }
        i64::MAX
    }

    /// `09:00-21:00 mon-fri` style, for messages.
    pub fn describe(&self) -> String {
        let hours = format!(
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        );
        if self.days == [true; 7] {
            return hours;
        }
        let days: Vec<&str> = DAY_NAMES
            .iter()
            .zip(self.days)
            .filter(|(_, on)| *on)
            .map(|(name, _)| *name)
            .collect();
        format!("{hours} {}", days.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Days typed the ways people type them; anything else is no day.
    #[test]
    fn days_as_people_type_them() {
        let today = Date::new(2026, 12, 2).unwrap();
        let day = |text: &str| parse_day(text, today);
        assert_eq!(day("сегодня"), Some(today));
        assert_eq!(day(" Вчера "), Some(Date::new(2026, 12, 1).unwrap()));
        assert_eq!(day("yesterday"), Some(Date::new(2026, 12, 1).unwrap()));
        assert_eq!(day("01.12.2026"), Some(Date::new(2026, 12, 1).unwrap()));
        assert_eq!(day("1.12.2026"), Some(Date::new(2026, 12, 1).unwrap()));
        assert_eq!(day("2026-12-01"), Some(Date::new(2026, 12, 1).unwrap()));
        for not_a_day in ["31.02.2026", "01.12.26", "01.12", "24h", "завтра", ""] {
            assert_eq!(day(not_a_day), None, "{not_a_day}");
        }
        let tz = moscow();
        let start = day_start(Date::new(2026, 12, 1).unwrap(), &tz);
        assert_eq!(start, parse_since("2026-12-01", 0, &tz).unwrap());
        assert_eq!(day_of(start, &tz), Date::new(2026, 12, 1).unwrap());
        assert_eq!(day_of(start - 1, &tz), Date::new(2026, 11, 30).unwrap());
        assert_eq!(dotted(Date::new(2026, 12, 1).unwrap()), "01.12.2026");
    }

    /// Only the active hours of active days count, in the zone's local time.
    #[test]
    fn active_time_counts_opening_hours_only() {
        let tz = moscow();
        let (start, end) = ActiveTime::parse_hours("09:00-21:00").unwrap();
        let weekdays = ActiveTime {
            start,
            end,
            days: [true, true, true, true, true, false, false],
        };
        let at = |text: &str| parse_since(text, 0, &tz).unwrap();
        const HOUR: i64 = 3_600_000;
        // Friday 2026-11-27 20:00 to Monday 11:00: 1 h on Friday, 2 h on Monday.
        assert_eq!(
            weekdays.between(at("2026-11-27 20:00"), at("2026-11-30 11:00"), &tz),
            3 * HOUR
        );
        assert_eq!(
            weekdays.between(at("2026-11-28 10:00"), at("2026-11-29 23:00"), &tz),
            0,
            "a weekend"
        );
        assert_eq!(
            ActiveTime::always().between(at("2026-11-25"), at("2026-11-26"), &tz),
            24 * HOUR
        );
        assert_eq!(weekdays.between(at("2026-11-26"), at("2026-11-25"), &tz), 0);
        assert_eq!(weekdays.describe(), "09:00-21:00 mon,tue,wed,thu,fri");
        // The README's example: Monday to Saturday, last event Saturday 20:00.
        let but_sunday = ActiveTime {
            days: [true, true, true, true, true, true, false],
            ..weekdays.clone()
        };
        assert_eq!(
            but_sunday.between(at("2026-11-28 20:00"), at("2026-11-30 11:00"), &tz),
            3 * HOUR
        );
        assert_eq!(ActiveTime::parse_hours("00:00-24:00"), Ok((0, 1440)));
        assert!(ActiveTime::parse_hours("21:00-09:00")
            .unwrap_err()
            .contains("across midnight"));
        assert!(ActiveTime::parse_hours("9-21").is_err());
        assert!(ActiveTime::parse_hours("09:60-21:00").is_err());
    }

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
