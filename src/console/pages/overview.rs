//! The overview page: a card per processing, and for the admin every
//! receiver with its circuit breaker.

use maud::{html, Markup};

use super::{fill, layout, status_badge, Frame, Texts};
use crate::console::totals::Totals;
use crate::model::OpStatus;
use crate::store::{Overview, ReceiverStatus};

/// One processing's card on the overview.
pub struct Card<'a> {
    pub name: &'a str,
    pub enabled: bool,
    /// The webhook address, for those who may see it (it holds the token).
    pub address: Option<String>,
    pub overview: Overview,
    /// When the last event before an announced silence came.
    pub silent_since: Option<i64>,
    /// The receivers its actions call whose circuit breaker is open.
    pub open_receivers: Vec<&'a ReceiverStatus>,
    /// The last 30 days, newest first.
    pub days: Option<Totals>,
    /// Its metrica actions: what waits for a batch, and the last batch.
    pub batches: Vec<(String, crate::store::BatchQueue)>,
}

/// One receiver's breaker, as a problem line of a card.
fn receiver_problem(frame: &Frame, r: &ReceiverStatus) -> Markup {
    let t = frame.t();
    let s = &r.state;
    let Some(open) = s.open else { return html! {} };
    let text = fill(
        &fill(
            &fill(&fill(t.receiver_open, &s.target), frame.time(open.since)),
            s.last_error.as_ref().map_or("-".to_string(), |e| t.said(e)),
        ),
        frame.time(open.next_probe_at),
    );
    html! { p.problem.breaker role="status" { (text) } }
}

/// Every receiver: its breaker, what waits for it, its last answers.
fn receivers_table(frame: &Frame, receivers: &[ReceiverStatus]) -> Markup {
    let t = frame.t();
    let time = |at: Option<i64>| at.map(|at| frame.time(at)).unwrap_or_default();
    html! {
        section.card #receivers {
            h2 { (t.receivers) }
            table {
                thead { tr { th { (t.receiver) } th { (t.state) } th { (t.waiting) } th { (t.last_success) } th { (t.last_error) } } }
                tbody {
                    @for r in receivers {
                        tr {
                            td { (r.state.target) }
                            @if r.state.open.is_some() {
                                td.error {
                                    (t.breaker_open)
                                    // Closing it by hand lets the waiting deliveries go now.
                                    form.inline method="post" action="/receivers/reset" {
                                        (frame.csrf())
                                        input type="hidden" name="target" value=(r.state.target);
                                        button type="submit" { (t.breaker_reset) }
                                    }
                                }
                            } @else if r.state.refusing() { td.error { (t.breaker_refusing) } } @else { td { (t.breaker_closed) } }
                            td.num { (r.backlog.waiting) }
                            td { (time(r.state.last_success_at)) }
                            td.error {
                                (r.state.last_error.as_ref().map(|e| t.said(e)).unwrap_or_default())
                                @if let Some(at) = r.state.last_error_at { " (" (frame.time(at)) ")" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The overview: one card per processing the signed-in role may see, and
/// for the admin every receiver (`receivers`).
pub fn overview(frame: &Frame, cards: &[Card], receivers: &[ReceiverStatus], notice: Option<&str>) -> Markup {
    let t = frame.t();
    layout(
        frame,
        t.overview,
        html! {
            h1 { (t.overview) }
            @if let Some(notice) = notice { p.notice role="status" { (notice) } }
            @for card in cards {
                section.card #(format!("p-{}", card.name)) {
                    h2 {
                        (card.name) " "
                        @if card.enabled { span.badge.on { (t.enabled) } } @else { span.badge.off { (t.held) } }
                    }
                    @if let Some(since) = card.silent_since {
                        p.problem.silent role="status" { (fill(t.silent, frame.time(since))) }
                    }
                    @for r in &card.open_receivers {
                        (receiver_problem(frame, r))
                    }
                    @if let Some(address) = &card.address {
                        div.address {
                            span.label { (t.webhook_address) }
                            input.copyable readonly value=(address) aria-label=(t.webhook_address);
                            button.copy type="button" hidden { (t.copy) }
                        }
                    }
                    p {
                        span.label { (t.last_event) ": " }
                        @match card.overview.last {
                            Some((id, at)) => { a href=(format!("/operations/{id}")) { (frame.time(at)) " (#" (id) ")" } },
                            None => { (t.no_events) },
                        }
                    }
                    @if let Some(days) = &card.days { (super::chart::last_days(frame, days)) }
                    (counts_table(t, &card.overview))
                    h3 { (t.waiting) }
                    @if card.overview.waiting.is_empty() {
                        p.quiet { (t.nothing_waiting) }
                    } @else {
                        table {
                            thead { tr { th { (t.action) } th { (t.pending) } th { (t.retrying) } th { (t.last_error) } } }
                            tbody {
                                @for q in &card.overview.waiting {
                                    tr {
                                        td { (q.action) }
                                        td.num { (q.pending) }
                                        td.num { (q.retrying) }
                                        td.error { (q.last_error.as_ref().map(|e| t.said(e)).unwrap_or_default()) }
                                    }
                                    @if q.aging > 0 {
                                        tr.aging {
                                            td.problem colspan="4" role="status" {
                                                (fill(&fill(t.aging, q.aging), q.first_expiry.map(|at| frame.time(at)).unwrap_or_default()))
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if !card.batches.is_empty() {
                        h3 { (t.metrica_batches) }
                        table.batches {
                            thead { tr { th { (t.action) } th { (t.metrica_waiting.replace(": {}", "")) } th { (t.metrica_last_batch) } } }
                            tbody {
                                @for (action, q) in &card.batches {
                                    tr {
                                        td { (action) }
                                        td.num { (q.waiting) }
                                        td { @if let Some(b) = &q.last { (super::operation::batch_line(frame, Some(b))) } }
                                    }
                                }
                            }
                        }
                    }
                    @if !card.overview.warnings.is_empty() {
                        h3 { (t.warnings) }
                        ul.warnings {
                            @for w in &card.overview.warnings {
                                li {
                                    a href=(format!("/operations/{}", w.operation_id)) { (frame.time(w.created_at)) }
                                    ": " (t.said(&w.text))
                                }
                            }
                        }
                    }
                    p.links {
                        a href=(format!("/operations?processing={}", card.name)) { (t.operations) }
                        a href=(format!("/fields/{}", card.name)) { (t.fields_and_templates) }
                    }
                }
            }
            @if !receivers.is_empty() {
                (receivers_table(frame, receivers))
            }
        },
    )
}

fn counts_table(t: &Texts, overview: &Overview) -> Markup {
    let mut statuses: Vec<OpStatus> = overview.week.iter().map(|(s, _)| *s).collect();
    for (status, _) in &overview.day {
        if !statuses.contains(status) {
            statuses.push(*status);
        }
    }
    let count =
        |list: &[(OpStatus, u64)], status: OpStatus| list.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
    html! {
        @if !statuses.is_empty() {
            table.counts {
                thead { tr { th { (t.status) } th { (t.last_day) } th { (t.last_week) } } }
                tbody {
                    @for status in statuses {
                        tr {
                            td { (status_badge(t, status)) }
                            td.num { (count(&overview.day, status)) }
                            td.num { (count(&overview.week, status)) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::i18n::Lang;

    /// An open breaker is a problem line on the card of a processing that
    /// calls the receiver, and a row of the admin's receivers table.
    #[test]
    fn an_open_breaker_shows_on_the_overview() {
        use crate::model::{Open, ReceiverState};
        use crate::store::Backlog;
        let frame = Frame::for_tests(Lang::Ru, "/");
        let open = ReceiverStatus {
            state: ReceiverState {
                target: "https://ads.plarin.ru/".into(),
                open: Some(Open {
                    since: 0,
                    probe_wait_ms: 30_000,
                    next_probe_at: 60_000,
                }),
                last_error: Some("HTTP 503 <b>".into()),
                ..ReceiverState::default()
            },
            backlog: Backlog {
                waiting: 42,
                oldest: Some(0),
                aging: 0,
                first_expiry: None,
            },
        };
        let card = Card {
            name: "salon",
            enabled: true,
            address: None,
            overview: Overview::default(),
            silent_since: None,
            open_receivers: vec![&open],
            days: None,
            batches: Vec::new(),
        };
        let page = overview(&frame, &[card], std::slice::from_ref(&open), None).into_string();
        assert!(
            page.contains("Получатель https://ads.plarin.ru/ не отвечает с 1970-01-01"),
            "{page}"
        );
        assert!(page.contains("Последняя ошибка: HTTP 503 &lt;b&gt;"), "{page}");
        assert!(page.contains("не отвечает, доставки ждут"), "{page}");
        assert!(page.contains(">42<"), "{page}");
        // A way out by hand: the button that closes the breaker.
        assert!(
            page.contains(r#"action="/receivers/reset""#) && page.contains(r#"value="https://ads.plarin.ru/""#),
            "{page}"
        );
        assert!(page.contains("Отправлять снова"), "{page}");
    }
}
