//! A processing's last days on the overview: today and yesterday in words,
//! and a small bar chart of the last 30 days, drawn on the server as
//! inline SVG (no script, no library): each day's bar is what came, its
//! green part what was delivered, its red part what failed.

use maud::{html, Markup};

use super::{fill, Frame};
use crate::clock;
use crate::console::totals::{Tally, Totals};
use crate::model::OpStatus;

/// Bar width and gap, in the chart's own units (the SVG scales to its box).
const BAR: u64 = 8;
const STEP: u64 = 10;
const HEIGHT: u64 = 48;

/// Delivered, failed (failed or partly failed), and received.
fn split(tally: &Tally) -> (u64, u64, u64) {
    let of = |status| tally.statuses.get(&status).copied().unwrap_or(0);
    (
        of(OpStatus::Delivered),
        of(OpStatus::Failed) + of(OpStatus::Partial),
        tally.received(),
    )
}

/// "получено 12, доставлено 10, ошибки 2".
fn words(frame: &Frame, tally: &Tally) -> String {
    let (delivered, failed, received) = split(tally);
    fill(&fill(&fill(frame.t().day_counts, received), delivered), failed)
}

/// Today and yesterday (the first two of `totals.days`, newest first), then the chart.
pub fn last_days(frame: &Frame, totals: &Totals) -> Markup {
    let t = frame.t();
    let days = &totals.days;
    let most = days.iter().map(|(_, tally)| tally.received()).max().unwrap_or(0).max(1);
    let width = days.len() as u64 * STEP;
    // Rounded down, so delivered and failed stacked never top the day's bar;
    // a day with any at all gets at least a sliver.
    let scale = |n: u64| if n == 0 { 0 } else { (n * HEIGHT / most).max(1) };
    html! {
        p.days {
            @if let Some((_, today)) = days.first() { span { strong { (t.today) ": " } (words(frame, today)) } }
            @if let Some((_, yesterday)) = days.get(1) { " · " span { strong { (t.yesterday) ": " } (words(frame, yesterday)) } }
        }
        @if days.len() > 1 {
            svg.chart viewBox=(format!("0 0 {width} {HEIGHT}")) preserveAspectRatio="none" role="img"
                aria-label=(fill(t.chart_label, days.len())) {
                // Oldest on the left.
                @for (i, (day, tally)) in days.iter().rev().enumerate() {
                    @let (delivered, failed, received) = split(tally);
                    @let x = i as u64 * STEP;
                    g {
                        title { (clock::dotted(*day)) ": " (words(frame, tally)) }
                        rect.received x=(x) y=(HEIGHT.saturating_sub(scale(received))) width=(BAR) height=(scale(received)) {}
                        rect.delivered x=(x) y=(HEIGHT.saturating_sub(scale(delivered))) width=(BAR) height=(scale(delivered)) {}
                        rect.failed x=(x) y=(HEIGHT.saturating_sub(scale(delivered) + scale(failed))) width=(BAR) height=(scale(failed)) {}
                    }
                }
            }
            p.legend.quiet {
                span.key.received {} (t.received_n.trim_end_matches(':')) " "
                span.key.delivered {} (t.delivered_n) " "
                span.key.failed {} (t.failed_n) " · " (t.chart_days)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::i18n::Lang;
    use crate::console::totals::by_day;
    use crate::model::DeliveryStatus;
    use crate::store::{Counted, HourCount};
    use jiff::civil::Date;

    /// Today and yesterday in words, and a bar per day, oldest left, each
    /// with its day and counts as a tooltip.
    #[test]
    fn the_last_days_in_words_and_bars() {
        let tz = jiff::tz::TimeZone::UTC;
        let frame = Frame::for_tests(Lang::Ru, "/");
        let today = Date::new(2026, 12, 2).unwrap();
        let first = Date::new(2026, 11, 3).unwrap();
        let hour = |day: Date| clock::day_start(day, &tz) / 3_600_000;
        let count = |day, status, n| HourCount {
            hour: hour(day),
            what: Counted::Operations(status),
            n,
        };
        let counts = [
            count(today, OpStatus::Delivered, 10),
            count(today, OpStatus::Failed, 2),
            count(Date::new(2026, 12, 1).unwrap(), OpStatus::Skipped, 4),
            HourCount {
                hour: hour(today),
                what: Counted::Action("plarin".into(), DeliveryStatus::Delivered),
                n: 10,
            },
        ];
        let page = last_days(&frame, &by_day(&counts, first, today, &tz)).into_string();
        assert!(
            page.contains("Сегодня: </strong>получено 12, доставлено 10, с ошибкой 2"),
            "{page}"
        );
        assert!(
            page.contains("Вчера: </strong>получено 4, доставлено 0, с ошибкой 0"),
            "{page}"
        );
        assert_eq!(page.matches("<g>").count(), 30, "{page}");
        assert!(page.contains("<title>02.12.2026: получено 12"), "{page}");
        assert!(page.find("03.11.2026") < page.find("02.12.2026: "), "oldest first");
    }

    /// Regression: a day whose delivered and failed bars rounded up past
    /// the chart's height underflowed and took the overview down.
    #[test]
    fn bars_stay_inside_the_chart() {
        let tz = jiff::tz::TimeZone::UTC;
        let frame = Frame::for_tests(Lang::En, "/");
        let today = Date::new(2026, 12, 2).unwrap();
        let hour = clock::day_start(today, &tz) / 3_600_000;
        let count = |status, n| HourCount {
            hour,
            what: Counted::Operations(status),
            n,
        };
        let counts = [
            count(OpStatus::Delivered, 333_333),
            count(OpStatus::Failed, 33_334),
            count(OpStatus::Partial, 1),
        ];
        let page = last_days(&frame, &by_day(&counts, today.yesterday().unwrap(), today, &tz)).into_string();
        assert!(!page.contains("y=\"-"), "{page}");
    }
}
