//! The store's hourly counts added up into the reader's days: what the
//! operations page's totals and the overview's chart show.

use std::collections::BTreeMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;

use crate::clock;
use crate::model::{DeliveryStatus, OpStatus};
use crate::store::{Counted, HourCount};

const HOUR_MS: i64 = 3_600_000;

/// One action's finished deliveries (the newest per operation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcomes {
    pub delivered: u64,
    pub failed: u64,
    pub expired: u64,
    pub cancelled: u64,
}

impl Outcomes {
    fn add(&mut self, status: &DeliveryStatus, n: u64) {
        match status {
            DeliveryStatus::Delivered => self.delivered += n,
            DeliveryStatus::Failed => self.failed += n,
            DeliveryStatus::Expired => self.expired += n,
            DeliveryStatus::Cancelled => self.cancelled += n,
            // Only finished deliveries are counted.
            _ => {}
        }
    }
}

/// The counts of one day, or of a whole range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Operations received, by their status now.
    pub statuses: BTreeMap<OpStatus, u64>,
    /// Per action name.
    pub actions: BTreeMap<String, Outcomes>,
}

impl Tally {
    /// Operations received.
    pub fn received(&self) -> u64 {
        self.statuses.values().sum()
    }

    fn add(&mut self, count: &HourCount) {
        match &count.what {
            Counted::Operations(status) => *self.statuses.entry(*status).or_default() += count.n,
            Counted::Action(action, status) => self.actions.entry(action.clone()).or_default().add(status, count.n),
        }
    }
}

/// A range's counts, in all and day by day (every day of the range, newest
/// first, empty ones included so a quiet day shows as one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    pub all: Tally,
    pub days: Vec<(Date, Tally)>,
}

/// Adds `counts` up by the day (in `tz`) each hour starts on, for every day
/// from `first` to `last`.
pub fn by_day(counts: &[HourCount], first: Date, last: Date, tz: &TimeZone) -> Totals {
    let mut days: BTreeMap<Date, Tally> = BTreeMap::new();
    let mut day = first;
    while day <= last {
        days.insert(day, Tally::default());
        match day.tomorrow() {
            Ok(next) => day = next,
            Err(_) => break,
        }
    }
    let mut all = Tally::default();
    for count in counts {
        all.add(count);
        if let Some(tally) = days.get_mut(&clock::day_of(count.hour * HOUR_MS, tz)) {
            tally.add(count);
        }
    }
    Totals {
        all,
        days: days.into_iter().rev().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hours land on the reader's days: 21:00 UTC is the next day in Moscow.
    #[test]
    fn hours_add_up_into_local_days() {
        let tz = TimeZone::get("Europe/Moscow").unwrap();
        let first = Date::new(2026, 12, 1).unwrap();
        let last = Date::new(2026, 12, 2).unwrap();
        let hour = |utc: &str| utc.parse::<jiff::Timestamp>().unwrap().as_millisecond() / HOUR_MS;
        let counts = [
            HourCount {
                hour: hour("2026-11-30T21:00:00Z"),
                what: Counted::Operations(OpStatus::Delivered),
                n: 3,
            },
            HourCount {
                hour: hour("2026-12-01T20:00:00Z"),
                what: Counted::Action("plarin".into(), DeliveryStatus::Failed),
                n: 1,
            },
            HourCount {
                hour: hour("2026-12-01T21:00:00Z"),
                what: Counted::Operations(OpStatus::Failed),
                n: 2,
            },
        ];
        let totals = by_day(&counts, first, last, &tz);
        assert_eq!(totals.all.received(), 5);
        let days: Vec<(String, u64)> = totals
            .days
            .iter()
            .map(|(day, tally)| (clock::dotted(*day), tally.received()))
            .collect();
        assert_eq!(days, [("02.12.2026".to_string(), 2), ("01.12.2026".to_string(), 3)]);
        assert_eq!(totals.days[1].1.actions["plarin"].failed, 1);
    }
}
