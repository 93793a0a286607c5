//! The operations page: the filter, the totals for it, and the rows.

use std::collections::BTreeMap;

use jiff::civil::Date;
use maud::{html, Markup};

use super::{fill, layout, status_badge, totals, Frame, Texts};
use crate::clock;
use crate::klientiks;
use crate::model::{DeliveryStatus, OpStatus};
use crate::store::{Chip, Failing, OperationSummary, EVENT_FIELD};

/// The operations page's filter, as given in the query string.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub processing: String,
    pub event: String,
    pub status: String,
    /// How an action's delivery fails (`Failing`'s names).
    pub outcome: String,
    /// Text in an action's error.
    pub error: String,
    pub since: String,
    pub until: String,
    pub q: String,
    /// Chosen operations, comma-separated ids (ticked rows, or what a
    /// bulk replay queued).
    pub ids: String,
}

impl Filter {
    pub(super) fn pairs(&self) -> [(&'static str, &String); 9] {
        [
            ("ids", &self.ids),
            ("processing", &self.processing),
            ("event", &self.event),
            ("status", &self.status),
            ("outcome", &self.outcome),
            ("error", &self.error),
            ("since", &self.since),
            ("until", &self.until),
            ("q", &self.q),
        ]
    }

    /// The filter as query parameters (empty ones left out), `&`-joined.
    pub fn query(&self) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in self.pairs() {
            if !value.is_empty() {
                query.append_pair(key, value);
            }
        }
        query.finish()
    }

    /// The filter as a form's hidden inputs.
    pub(super) fn hidden(&self) -> Markup {
        html! {
            @for (key, value) in self.pairs() {
                input type="hidden" name=(key) value=(value);
            }
        }
    }

    /// The operations page for this filter with other dates.
    fn dated(&self, since: &str, until: &str) -> String {
        let other = Filter {
            since: since.to_string(),
            until: until.to_string(),
            ..self.clone()
        };
        format!("/operations?{}", other.query())
    }
}

/// Most extra fields a list row shows.
pub const ROW_FIELDS: usize = 3;
/// Fields a row shows in columns of their own, each the first present of
/// its group: the client's name, phone, and the amount (paid, invoiced,
/// or the visit's cost), as Klientiks names them.
pub const ROW_NAMED: [&[&str]; 3] = [
    &["client_name", "client_first_name"],
    &["client_phone"],
    &["invoice_paid_sum", "invoice_amount", "appointment_total_cost"],
];

/// One row of the operations list.
pub struct Row {
    pub summary: OperationSummary,
    pub fields: BTreeMap<String, String>,
    /// Other fields worth showing (a processing's required ones).
    pub extra: Vec<(String, String)>,
    /// Each action's newest delivery.
    pub chips: Vec<Chip>,
}

impl Row {
    fn named(&self, group: usize) -> &str {
        ROW_NAMED[group]
            .iter()
            .find_map(|name| self.fields.get(*name).filter(|v| !v.is_empty()))
            .map_or("", String::as_str)
    }
}

/// Longest field value shown in a list row.
const ROW_VALUE_CHARS: usize = 40;

fn cut(text: &str) -> String {
    if text.chars().count() <= ROW_VALUE_CHARS {
        return text.to_string();
    }
    let mut short: String = text.chars().take(ROW_VALUE_CHARS - 1).collect();
    short.push('…');
    short
}

/// An event's name as the reader knows it: Klientiks's own, or the key.
fn event_name(frame: &Frame, key: &str) -> String {
    match klientiks::find(key) {
        Some(event) if frame.lang == super::super::i18n::Lang::Ru => event.russian.to_string(),
        Some(event) => event.english.to_string(),
        None => key.to_string(),
    }
}

/// An action's outcome in a row: its name and what the last answer was.
fn chip(t: &Texts, chip: &Chip) -> Markup {
    let what = match (chip.status, chip.http_status) {
        (DeliveryStatus::Delivered, Some(status)) => status.to_string(),
        (DeliveryStatus::Delivered, None) => "✓".to_string(),
        (
            DeliveryStatus::Pending | DeliveryStatus::InFlight | DeliveryStatus::Expired | DeliveryStatus::Cancelled,
            _,
        ) => t.delivery_status(chip.status).to_string(),
        (_, Some(status)) if (200..300).contains(&status) => fill(t.not_accepted_chip, status),
        (_, Some(status)) => status.to_string(),
        (_, None) => chip
            .error
            .as_ref()
            .map_or_else(|| t.delivery_status(chip.status).to_string(), |e| cut(&t.said(e))),
    };
    let title = chip.error.as_ref().map(|e| t.said(e)).unwrap_or_default();
    html! {
        span class=(format!("chip c-{}", chip.status.as_str())) title=(title) {
            span.action { (chip.action) } " " (what)
        }
    }
}

/// The rows of the operations table (also what live updates send).
pub fn rows(frame: &Frame, rows: &[Row]) -> Markup {
    let t = frame.t();
    html! {
        @for row in rows {
            @let s = &row.summary;
            tr data-id=(s.id) data-status=(s.status.as_str()) {
                @if frame.is_admin() {
                    td.pick { input type="checkbox" name="id" value=(s.id) form="chosen" aria-label=(fill(t.operation, s.id)); }
                }
                td.num data-label=(t.id) { a href=(format!("/operations/{}", s.id)) { (s.id) } }
                td.time data-label=(t.received) { (frame.time(s.received_at)) }
                td data-label=(t.event) {
                    div.lines {
                        @if let Some(event) = row.fields.get(EVENT_FIELD) { span { (event_name(frame, event)) } }
                        span.quiet { (s.processing) }
                    }
                }
                td data-label=(t.client) {
                    div.lines {
                        @if !row.named(0).is_empty() { span { (cut(row.named(0))) } }
                        @if !row.named(1).is_empty() { span.phone { (row.named(1)) } }
                        @for (name, value) in &row.extra {
                            span.field { span.name { (name) } "=" (cut(value)) }
                        }
                    }
                }
                td.num data-label=(t.amount) { (row.named(2)) }
                td data-label=(t.status) { (status_badge(t, s.status)) }
                td.chips data-label=(t.deliveries) {
                    @for c in &row.chips { (chip(t, c)) " " }
                }
            }
        }
    }
}

/// The totals the page shows, and what they cover.
pub struct Totaled {
    pub totals: super::super::totals::Totals,
    pub first_day: Date,
    pub last_day: Date,
    /// Whether the filter named the dates (else: the last 30 days).
    pub dated: bool,
    /// Whether the status, search or outcome filters narrow the list
    /// (the totals count past them).
    pub narrowed: bool,
}

/// What the operations page shows.
pub struct Listing<'a> {
    pub filter: &'a Filter,
    /// The processings the filter may name.
    pub processings: Vec<&'a str>,
    /// The events the filter offers.
    pub events: Vec<String>,
    pub rows: Vec<Row>,
    /// The next page's `before`, when there may be one.
    pub next: Option<i64>,
    /// Whether this is the first page (live updates add rows only there).
    pub first_page: bool,
    pub notice: Option<String>,
    pub problem: Option<String>,
    /// The times the dates typed mean: from, and before.
    pub range: Option<(Option<i64>, Option<i64>)>,
    pub totals: Option<Totaled>,
    pub today: Date,
    /// For chosen operations (a bulk replay's): how many stand in each status.
    pub progress: Option<Vec<(OpStatus, u64)>>,
}

/// Where chosen operations stand; refreshed live while some still wait.
pub fn progress(frame: &Frame, counts: &[(OpStatus, u64)], live: &str) -> Markup {
    let t = frame.t();
    let waiting = counts
        .iter()
        .find(|(s, _)| *s == OpStatus::Queued)
        .map_or(0, |(_, n)| *n);
    html! {
        div #progress data-live=[(waiting > 0).then_some(live)] role="status" {
            p {
                @for (status, n) in counts { span.count { (status_badge(t, *status)) " " (n) } " " }
            }
            @if waiting > 0 {
                p.quiet.s-queued { (super::super::i18n::say(frame.lang, super::super::i18n::Counted::StillWaiting, waiting)) }
            }
        }
    }
}

/// The day `days` before `today`, dotted.
fn days_back(today: Date, days: i64) -> String {
    clock::dotted(today.checked_sub(jiff::Span::new().days(days)).unwrap_or(today))
}

fn presets(frame: &Frame, listing: &Listing) -> Markup {
    let t = frame.t();
    let (filter, today) = (listing.filter, listing.today);
    let this_day = clock::dotted(today);
    let yesterday = days_back(today, 1);
    html! {
        p.presets {
            a href=(filter.dated(&this_day, &this_day)) { (t.today) }
            a href=(filter.dated(&yesterday, &yesterday)) { (t.yesterday) }
            a href=(filter.dated(&days_back(today, 6), "")) { (t.days_7) }
            a href=(filter.dated(&days_back(today, 29), "")) { (t.days_30) }
        }
    }
}

fn filter_form(frame: &Frame, listing: &Listing) -> Markup {
    let t = frame.t();
    let filter = listing.filter;
    html! {
        form.filter method="get" action="/operations" {
            label { (t.processing)
                select name="processing" {
                    option value="" { (t.any) }
                    @for name in &listing.processings {
                        option value=(name) selected[filter.processing == *name] { (name) }
                    }
                }
            }
            label { (t.event)
                select name="event" {
                    option value="" { (t.any) }
                    @for event in &listing.events {
                        option value=(event) selected[filter.event == *event] { (event_name(frame, event)) }
                    }
                }
            }
            label { (t.status)
                select name="status" {
                    option value="" { (t.any) }
                    @for status in OpStatus::ALL {
                        option value=(status.as_str()) selected[filter.status == status.as_str()] { (t.op_status(*status)) }
                    }
                }
            }
            label { (t.since) input name="since" value=(filter.since) placeholder=(t.since_hint) size="12"; }
            label { (t.until) input name="until" value=(filter.until) placeholder=(t.since_hint) size="12"; }
            label { (t.day) input type="date" name="day"; }
            label { (t.field_value) input type="search" name="q" value=(filter.q) placeholder=(t.field_value_hint); }
            label { (t.outcome)
                select name="outcome" {
                    option value="" { (t.any) }
                    @for failing in Failing::ALL {
                        option value=(failing.as_str()) selected[filter.outcome == failing.as_str()] { (t.failing(*failing)) }
                    }
                }
            }
            label { (t.error_text) input type="search" name="error" value=(filter.error) placeholder=(t.error_text_hint); }
            button type="submit" { (t.show) }
            a href="/operations" { (t.reset) }
        }
        p.hint { (t.until_inclusive) }
    }
}

/// The operations list with its filter and totals.
pub fn operations(frame: &Frame, listing: &Listing) -> Markup {
    let t = frame.t();
    let filter = listing.filter;
    let joined = |query: String| if query.is_empty() { query } else { query + "&" };
    let live_src = format!("/operations?{}fragment=rows", joined(filter.query()));
    layout(
        frame,
        t.operations,
        html! {
            h1 { (t.operations) }
            (filter_form(frame, listing))
            (presets(frame, listing))
            @if let Some((since, until)) = listing.range {
                p.range {
                    (fill(
                        &fill(t.shown_range, since.map_or(t.beginning.to_string(), |at| frame.time(at))),
                        until.map_or(t.now.to_string(), |at| frame.time(at - 1)),
                    ))
                }
            }
            @if let Some(notice) = &listing.notice { p.notice role="status" { (notice) } }
            @if let Some(counts) = &listing.progress {
                (progress(frame, counts, &format!("/operations?{}fragment=progress", joined(filter.query()))))
            }
            @if let Some(problem) = &listing.problem { p.problem role="alert" { (problem) } }
            @if let Some(totaled) = &listing.totals { (totals::section(frame, totaled)) }
            table.operations.cards {
                thead { tr {
                    @if frame.is_admin() { th.pick {} }
                    th { (t.id) } th { (t.received) } th { (t.event) } th { (t.client) } th { (t.amount) }
                    th { (t.status) } th { (t.deliveries) }
                } }
                tbody #rows data-live=[listing.first_page.then_some(&live_src)] {
                    (rows(frame, &listing.rows))
                }
            }
            @if listing.rows.is_empty() { p.quiet { (t.no_operations) } }
            @if listing.first_page { p.quiet.live-note hidden { (t.live) } }
            p.export { a href=(format!("/export.csv?{}", filter.query())) download { (t.export_csv) } }
            @if let Some(before) = listing.next {
                p.pages {
                    a rel="next" href=(format!("/operations?{}before={before}", joined(filter.query()))) { (t.older) }
                }
            }
            @if frame.is_admin() && !listing.rows.is_empty() {
                div.bulk {
                    form #chosen method="get" action="/replay" {
                        button type="submit" { (t.replay_chosen) }
                    }
                    form.replay method="get" action="/replay" {
                        (filter.hidden())
                        button type="submit" { (t.replay_matching) }
                    }
                    @if filter.outcome.is_empty() {
                        form.replay method="get" action="/replay" {
                            @for (key, value) in filter.pairs() {
                                @if key != "outcome" { input type="hidden" name=(key) value=(value); }
                            }
                            input type="hidden" name="outcome" value=(Failing::Outage.as_str());
                            button type="submit" { (t.replay_outage) }
                        }
                    }
                }
            }
        },
    )
}
