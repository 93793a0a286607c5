//! The totals above the operations list: what came, how it stands, and
//! per action what arrived, in all and day by day.

use maud::{html, Markup};

use super::list::Totaled;
use super::{fill, status_badge, Frame};
use crate::clock;
use crate::console::totals::{Outcomes, Tally};

/// One action's outcomes as table cells.
fn outcome_cells(outcomes: Option<&Outcomes>) -> Markup {
    let o = outcomes.cloned().unwrap_or_default();
    html! {
        td.num.ok { (o.delivered) }
        td.num class=@if o.failed > 0 { "error" } { (o.failed) }
        td.num class=@if o.expired > 0 { "error" } { (o.expired) }
    }
}

fn statuses(frame: &Frame, tally: &Tally) -> Markup {
    let t = frame.t();
    html! {
        @for (status, n) in &tally.statuses {
            span.count { (status_badge(t, *status)) " " (n) }
            " "
        }
    }
}

/// The totals section.
pub fn section(frame: &Frame, totaled: &Totaled) -> Markup {
    let t = frame.t();
    let all = &totaled.totals.all;
    let span = if totaled.first_day == totaled.last_day {
        clock::dotted(totaled.first_day)
    } else {
        format!(
            "{} – {}",
            clock::dotted(totaled.first_day),
            clock::dotted(totaled.last_day)
        )
    };
    let actions: Vec<&String> = all.actions.keys().collect();
    html! {
        section.totals #totals {
            h2 {
                (t.totals) " " (fill(t.for_days, &span))
                @if !totaled.dated { " " span.quiet { (t.totals_default) } }
            }
            p.received {
                (t.received_n) " " strong { (all.received()) } " "
                (statuses(frame, all))
            }
            @if !actions.is_empty() {
                table.counts.cards {
                    thead { tr { th { (t.action) } th { (t.delivered_n) } th { (t.failed_n) } th { (t.expired_n) } } }
                    tbody {
                        @for action in &actions {
                            tr {
                                td data-label=(t.action) { (action) }
                                (outcome_cells(all.actions.get(*action)))
                            }
                        }
                    }
                }
            }
            @if totaled.totals.days.len() > 1 {
                details.by-day {
                    summary { (t.by_day) }
                    table.counts.cards {
                        thead { tr {
                            th { (t.day) } th { (t.received_n) }
                            @for action in &actions { th colspan="3" { (action) } }
                        } }
                        tbody {
                            @for (day, tally) in &totaled.totals.days {
                                tr {
                                    td data-label=(t.day) { (clock::dotted(*day)) }
                                    td.num data-label=(t.received_n) { (tally.received()) }
                                    @for action in &actions { (outcome_cells(tally.actions.get(*action))) }
                                }
                            }
                        }
                    }
                    p.hint { (t.by_day_hint) }
                }
            }
            @if totaled.narrowed { p.hint { (t.totals_narrowed) } }
        }
    }
}
