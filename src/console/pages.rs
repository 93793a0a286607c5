//! The console's HTML. maud escapes every value put into a page, so a field
//! holding `<script>` shows as text; nothing here marks a value as trusted
//! HTML. The pages work without JavaScript; `console.js` only adds copy
//! buttons and live updates.

use std::collections::BTreeMap;

use maud::{html, Markup, DOCTYPE};

use super::auth::Role;
use super::i18n::{fill, Lang, Texts};
use crate::clock;
use crate::klientiks::{self, EVENTS};
use crate::model::{DeliveryStatus, OpStatus};
use crate::replay::Refused;
use crate::store::{OperationSummary, OperationView};

mod overview;
mod replay;
pub use overview::{overview, Card};
pub use replay::confirm_replay;

/// What every page knows about the request it answers.
pub struct Frame<'a> {
    pub lang: Lang,
    /// Who is signed in, and the CSRF token for forms; `None` on the sign-in page.
    pub signed: Option<(&'a Role, &'a str)>,
    pub tz: &'a jiff::tz::TimeZone,
    /// The page's path and query without `lang`, for the language switch.
    pub here: String,
}

impl Frame<'_> {
    fn t(&self) -> &'static Texts {
        self.lang.texts()
    }

    fn time(&self, ms: i64) -> String {
        clock::local(ms, self.tz)
    }

    fn is_admin(&self) -> bool {
        matches!(self.signed, Some((Role::Admin, _)))
    }

    fn csrf(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.signed.map_or("", |(_, c)| c)); }
    }

    fn switch_href(&self) -> String {
        let join = if self.here.contains('?') { '&' } else { '?' };
        format!("{}{join}lang={}", self.here, self.lang.other().code())
    }
}

/// The page around `content`.
pub fn layout(frame: &Frame, title: &str, content: Markup) -> Markup {
    let t = frame.t();
    html! {
        (DOCTYPE)
        html lang=(frame.lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · hookrelay" }
                link rel="stylesheet" href="/static/console.css";
                script src="/static/console.js" defer {}
            }
            body {
                header {
                    a.brand href="/" { "hookrelay" }
                    @if frame.signed.is_some() {
                        nav {
                            a href="/" { (t.overview) }
                            a href="/operations" { (t.operations) }
                        }
                    }
                    div.who {
                        @if let Some((role, _)) = frame.signed {
                            span.role {
                                @match role {
                                    Role::Admin => (t.admin),
                                    Role::Viewer(name) => { (t.viewer) " " (name) },
                                }
                            }
                        }
                        a.lang href=(frame.switch_href()) { (frame.lang.other().texts().language_name) }
                        @if frame.signed.is_some() {
                            form.inline method="post" action="/logout" {
                                (frame.csrf())
                                button type="submit" { (t.sign_out) }
                            }
                        }
                    }
                }
                main { (content) }
                footer { (fill(t.times_in, frame.tz.iana_name().unwrap_or("UTC"))) }
            }
        }
    }
}

/// The sign-in form, with `problem` above it if the last try failed.
pub fn sign_in(frame: &Frame, problem: Option<&str>, admin_token_set: bool) -> Markup {
    let t = frame.t();
    layout(
        frame,
        t.sign_in,
        html! {
            h1 { (t.sign_in) }
            @if let Some(problem) = problem { p.problem role="alert" { (problem) } }
            form.signin method="post" action="/login" {
                label for="token" { (t.token) }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button type="submit" { (t.sign_in) }
            }
            p.hint { (t.sign_in_hint) }
            @if !admin_token_set { p.hint { (t.no_admin_token) } }
        },
    )
}

/// A short page saying what went wrong.
pub fn message(frame: &Frame, text: &str) -> Markup {
    layout(frame, text, html! { p.problem role="alert" { (text) } })
}

fn status_badge(t: &Texts, status: OpStatus) -> Markup {
    html! { span class=(format!("status s-{}", status.as_str())) { (t.op_status(status)) } }
}

/// The operations page's filter, as given in the query string.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub processing: String,
    pub status: String,
    pub since: String,
    pub until: String,
    pub q: String,
}

impl Filter {
    /// The filter as query parameters (empty ones left out), `&`-joined.
    pub fn query(&self) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("processing", &self.processing),
            ("status", &self.status),
            ("since", &self.since),
            ("until", &self.until),
            ("q", &self.q),
        ] {
            if !value.is_empty() {
                query.append_pair(key, value);
            }
        }
        query.finish()
    }

    fn hidden(&self) -> Markup {
        html! {
            input type="hidden" name="processing" value=(self.processing);
            input type="hidden" name="status" value=(self.status);
            input type="hidden" name="since" value=(self.since);
            input type="hidden" name="until" value=(self.until);
            input type="hidden" name="q" value=(self.q);
        }
    }
}

/// One row of the operations list, with the fields worth showing in it.
pub struct Row {
    pub summary: OperationSummary,
    pub fields: Vec<(String, String)>,
}

/// Longest field value shown in a list row.
const ROW_VALUE_CHARS: usize = 40;

/// The rows of the operations table (also what live updates insert).
pub fn rows(frame: &Frame, rows: &[Row]) -> Markup {
    let t = frame.t();
    html! {
        @for row in rows {
            @let s = &row.summary;
            tr data-id=(s.id) {
                td.num { a href=(format!("/operations/{}", s.id)) { (s.id) } }
                td.time { (frame.time(s.received_at)) }
                td { (s.processing) }
                td { (status_badge(t, s.status)) }
                td.fields {
                    @for (name, value) in &row.fields {
                        span.field { span.name { (name) } "=" (value.chars().take(ROW_VALUE_CHARS).collect::<String>()) }
                    }
                }
                td.num { @if s.deliveries > 0 { (s.delivered) "/" (s.deliveries) } }
            }
        }
    }
}

/// What the operations page shows.
pub struct Listing<'a> {
    pub filter: &'a Filter,
    /// The processings the filter may name.
    pub processings: Vec<&'a str>,
    pub rows: Vec<Row>,
    /// The next page's `before`, when there may be one.
    pub next: Option<i64>,
    /// Whether this is the first page (live updates add rows only there).
    pub first_page: bool,
    pub notice: Option<String>,
    pub problem: Option<String>,
}

/// The operations list with its filter.
pub fn operations(frame: &Frame, listing: &Listing) -> Markup {
    let t = frame.t();
    let filter = listing.filter;
    let live_src = format!(
        "/operations?{}{}fragment=rows",
        filter.query(),
        if filter.query().is_empty() { "" } else { "&" }
    );
    layout(
        frame,
        t.operations,
        html! {
            h1 { (t.operations) }
            form.filter method="get" action="/operations" {
                label { (t.processing)
                    select name="processing" {
                        option value="" { (t.any) }
                        @for name in &listing.processings {
                            option value=(name) selected[filter.processing == *name] { (name) }
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
                label { (t.field_value) input type="search" name="q" value=(filter.q) placeholder=(t.field_value_hint); }
                button type="submit" { (t.show) }
                a href="/operations" { (t.reset) }
            }
            @if let Some(notice) = &listing.notice { p.notice role="status" { (notice) } }
            @if let Some(problem) = &listing.problem { p.problem role="alert" { (problem) } }
            table.operations {
                thead { tr {
                    th { (t.id) } th { (t.received) } th { (t.processing) } th { (t.status) } th { (t.fields) } th { (t.deliveries) }
                } }
                tbody #rows data-live=[listing.first_page.then_some(&live_src)] {
                    (rows(frame, &listing.rows))
                }
            }
            @if listing.rows.is_empty() { p.quiet { (t.no_operations) } }
            @if listing.first_page { p.quiet.live-note hidden { (t.live) } }
            @if let Some(before) = listing.next {
                p.pages {
                    a rel="next" href=(format!("/operations?{}{}before={before}", filter.query(), if filter.query().is_empty() { "" } else { "&" })) { (t.older) }
                }
            }
            @if frame.is_admin() {
                form.replay method="get" action="/replay" {
                    (filter.hidden())
                    button type="submit" { (t.replay_matching) }
                }
            }
        },
    )
}

/// One operation, everything recorded about it.
pub fn operation(frame: &Frame, op: &OperationView, notice: Option<&str>, replay: &Result<(), Refused>) -> Markup {
    let t = frame.t();
    let s = &op.summary;
    let title = fill(t.operation, s.id);
    let finished = !matches!(s.status, OpStatus::Queued);
    layout(
        frame,
        &title,
        html! {
            div #live data-live=[(!finished).then(|| format!("/operations/{}?fragment=live", s.id))] {
                (operation_body(frame, op, notice, replay))
            }
        },
    )
}

/// The part of an operation's page that changes while it is delivered.
/// `replay` says whether the current rules would replay it, or why not: a
/// held operation of a stopped processing gets a button that names it.
pub fn operation_body(frame: &Frame, op: &OperationView, notice: Option<&str>, replay: &Result<(), Refused>) -> Markup {
    let t = frame.t();
    let s = &op.summary;
    html! {
        h1 { (fill(t.operation, s.id)) " " (status_badge(t, s.status)) }
        @if let Some(notice) = notice { p.notice role="status" { (notice) } }
        dl.facts {
            dt { (t.processing) } dd { (s.processing) }
            dt { (t.received) } dd { (frame.time(s.received_at)) }
            @if let Some(reason) = &s.reason { dt { (t.reason) } dd { (t.said(reason)) } }
            dt { (t.from) } dd { (op.request.remote_addr) " (" (op.request.method) ")" }
            dt { (t.charset) } dd { (op.charset) }
        }
        @if frame.is_admin() {
            @match replay {
                Ok(()) => {
                    form.inline method="post" action=(format!("/operations/{}/replay", s.id)) {
                        (frame.csrf())
                        button type="submit" { (t.replay) }
                    }
                }
                Err(Refused::Stopped(name)) => {
                    form.inline method="post" action=(format!("/operations/{}/replay", s.id)) {
                        (frame.csrf())
                        input type="hidden" name="include_stopped" value="1";
                        button type="submit" { (fill(t.replay_stopped, name)) }
                    }
                }
                Err(why @ Refused::Expired(action)) => {
                    p.muted { (fill(t.not_replayable, t.refused(why))) }
                    form.inline method="post" action=(format!("/operations/{}/replay", s.id)) {
                        (frame.csrf())
                        input type="hidden" name="force" value="1";
                        button type="submit" { (fill(t.replay_expired, action)) }
                    }
                }
                // Nothing to say: it is being delivered, or it was.
                Err(Refused::StillQueued | Refused::AllDelivered) => {}
                Err(why) => { p.muted { (fill(t.not_replayable, t.refused(why))) } }
            }
        }
        @if frame.is_admin()
            && op.deliveries.iter().any(|d| matches!(d.status, DeliveryStatus::Pending | DeliveryStatus::Retrying))
        {
            form.inline.requeue method="post" action=(format!("/operations/{}/requeue", s.id)) {
                (frame.csrf())
                button type="submit" { (t.requeue_waiting) }
            }
            " "
            form.inline.cancel method="post" action=(format!("/operations/{}/cancel", s.id)) {
                (frame.csrf())
                button type="submit" { (t.cancel_waiting) }
            }
        }
        @if !op.replays.is_empty() {
            h2 { (t.replays) }
            ul.replays {
                @for r in &op.replays {
                    li { (frame.time(r.at)) " — " (fill(t.replayed_by, &r.source)) (r.deliveries) }
                }
            }
        }
        h2 { (t.fields) }
        (fields_table(t, &op.fields))
        @if !op.warnings.is_empty() {
            h2 { (t.warnings) }
            ul.warnings { @for w in &op.warnings { li { (t.said(w)) } } }
        }
        h2 { (t.deliveries) }
        @for d in &op.deliveries {
            section.delivery {
                h3 {
                    (fill(t.delivery, d.id)) ": " (d.action) " "
                    span class=(format!("status d-{}", d.status.as_str())) { (t.delivery_status(d.status)) }
                }
                p { span.label { (t.request) ": " } code { (d.request) } }
                @if matches!(d.status, DeliveryStatus::Pending | DeliveryStatus::Retrying) {
                    p { span.label { (t.next_attempt) ": " } (frame.time(d.next_attempt_at)) }
                }
                @if d.attempts.is_empty() {
                    p.quiet { (t.no_attempts) }
                } @else {
                    h4.label { (t.attempts) }
                    table.attempts {
                        thead { tr { th { (t.started) } th { (t.request) } th { (t.answer) } th { (t.latency_ms) } th { (t.response) } th { (t.error) } } }
                        tbody {
                            @for a in &d.attempts {
                                tr {
                                    td.time { (frame.time(a.started_at)) }
                                    td { code { (a.request) } }
                                    td.num { @if let Some(code) = a.http_status { (code) } }
                                    td.num { (a.duration_ms) }
                                    td { @if let Some(body) = &a.response_body { pre.snippet { (body) } } }
                                    td.error {
                                        @match &a.judged {
                                            Some(judged) if !judged.accepted() => (t.judged(judged)),
                                            _ => (a.error.as_ref().map(|e| t.said(e)).unwrap_or_default()),
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { (t.raw_request) }
        @if !op.request.query.is_empty() {
            h3 { (t.query) }
            pre.raw { (String::from_utf8_lossy(&op.request.query)) }
        }
        @if !op.request.body.is_empty() {
            h3 { (t.body) " (" (op.request.content_type.as_deref().unwrap_or("")) ", " (op.request.body.len()) " B)" }
            pre.raw { (String::from_utf8_lossy(&op.request.body)) }
        }
    }
}

fn fields_table(t: &Texts, fields: &BTreeMap<String, String>) -> Markup {
    html! {
        table.fields {
            thead { tr { th { (t.name) } th { (t.value) } } }
            tbody { @for (name, value) in fields { tr { td { code { (name) } } td { (value) } } } }
        }
    }
}

/// The template snippet for a field: the `phone` filter for phone numbers.
/// Only a field named as a phone, or holding one written as people write
/// phones, gets it: `| phone` on a 10- or 11-digit ad id or record id
/// sent `+71234567890` to the ad platform.
fn snippet(name: &str, value: &str) -> String {
    let lower = name.to_lowercase();
    let leaf = lower.rsplit(['.', '_']).next().unwrap_or(&lower);
    let named_phone = ["phone", "tel", "mobile", "телефон"]
        .iter()
        .any(|word| lower.contains(word));
    let named_otherwise = lower.starts_with("utm") || leaf == "id" || lower.ends_with("id");
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let phone_chars = value
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '(' | ')' | ' '));
    let written_as_phone = value.starts_with('+') || value.contains(['(', ' ', '-']);
    let phone_like =
        (10..=11).contains(&digits) && phone_chars && !named_otherwise && (named_phone || written_as_phone);
    if phone_like {
        format!("{{{{{name} | phone}}}}")
    } else {
        format!("{{{{{name}}}}}")
    }
}

/// A processing's latest fields with a template snippet for each, and the
/// Klientiks address helper.
pub fn fields(
    frame: &Frame,
    processing: &str,
    latest: Option<&OperationView>,
    event: Option<&klientiks::Event>,
    // None for a viewer who may not see the address (it holds the token).
    webhook: Option<&str>,
) -> Markup {
    let t = frame.t();
    layout(
        frame,
        t.fields_and_templates,
        html! {
            h1 { (t.fields_and_templates) ": " (processing) }
            h2 { (t.latest_fields) }
            @match latest {
                None => { p.quiet { (t.no_fields) } },
                Some(op) => {
                    p { a href=(format!("/operations/{}", op.summary.id)) { (fill(t.operation, op.summary.id)) } ", " (frame.time(op.summary.received_at)) }
                    table.fields {
                        thead { tr { th { (t.name) } th { (t.value) } th { (t.template) } } }
                        tbody {
                            @for (name, value) in &op.fields {
                                tr {
                                    td { code { (name) } }
                                    td { (value) }
                                    td.snippet {
                                        input.copyable readonly value=(snippet(name, value)) aria-label=(t.template);
                                        button.copy type="button" hidden { (t.copy) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(webhook) = webhook {
            h2 { (t.klientiks_address) }
            form.filter method="get" action=(format!("/fields/{processing}")) {
                label { (t.event)
                    select name="event" {
                        @for e in EVENTS {
                            option value=(e.key) selected[event.is_some_and(|x| x.key == e.key)] {
                                @if frame.lang == Lang::Ru { (e.russian) } @else { (e.english) }
                            }
                        }
                    }
                }
                button type="submit" { (t.make_address) }
            }
            @if let Some(event) = event {
                div.address {
                    textarea.copyable readonly rows="4" { (event.address(webhook)) }
                    button.copy type="button" hidden { (t.copy) }
                }
            }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_fields_get_the_phone_filter() {
        assert_eq!(
            snippet("client.phone", "+7 (999) 123-45-67"),
            "{{client.phone | phone}}"
        );
        assert_eq!(snippet("ad_id", "12345"), "{{ad_id}}");
        assert_eq!(snippet("client_phone", "79991234567"), "{{client_phone | phone}}");
        assert_eq!(snippet("contact", "8 (999) 123-45-67"), "{{contact | phone}}");
    }

    /// Regression: a 10- or 11-digit ad id in `utm_content` was offered
    /// `| phone`, which sends `+71234567890` to the ad platform.
    #[test]
    fn ids_and_utm_fields_never_get_the_phone_filter() {
        assert_eq!(snippet("utm_content", "1234567890"), "{{utm_content}}");
        assert_eq!(snippet("utm_content", "+7 999 123 45 67"), "{{utm_content}}");
        assert_eq!(snippet("appointment_id", "12345678901"), "{{appointment_id}}");
        assert_eq!(snippet("client.id", "79991234567"), "{{client.id}}");
        assert_eq!(snippet("total", "12345678901"), "{{total}}");
    }

    /// An operation older than an action's max_age says so in Russian,
    /// and the admin gets a button of its own that forces the replay.
    #[test]
    fn an_expired_operation_offers_a_forced_replay() {
        use crate::model::{said::Said, RawRequest};
        let tz = jiff::tz::TimeZone::UTC;
        let frame = Frame {
            lang: Lang::Ru,
            signed: Some((&Role::Admin, "c")),
            tz: &tz,
            here: "/operations/1".into(),
        };
        let op = OperationView {
            summary: OperationSummary {
                id: 1,
                processing: "p".into(),
                received_at: 0,
                status: OpStatus::Failed,
                reason: Some(Said::RequiredEmpty { field: "x".into() }),
                delivered: 0,
                deliveries: 1,
                failure: Some(Said::Expired),
            },
            request: RawRequest {
                remote_addr: "127.0.0.1:1".into(),
                method: "GET".into(),
                query: Vec::new(),
                body: Vec::new(),
                content_type: None,
            },
            charset: "utf-8".into(),
            fields: BTreeMap::new(),
            warnings: vec![Said::MissingField {
                action: "plarin".into(),
                field: "x".into(),
            }],
            deliveries: Vec::new(),
            replays: Vec::new(),
        };
        let page = operation_body(&frame, &op, None, &Err(Refused::Expired("plarin".into()))).into_string();
        assert!(page.contains("событие старше max_age действия «plarin»"), "{page}");
        assert!(page.contains(r#"name="force" value="1""#), "{page}");
        assert!(page.contains("Отправить всё равно"), "{page}");
        assert!(page.contains("обязательное поле «x» пустое"), "{page}");
        assert!(page.contains("поля «x» нет, оно отправлено пустым"), "{page}");
    }

    #[test]
    fn values_are_escaped() {
        let tz = jiff::tz::TimeZone::UTC;
        let frame = Frame {
            lang: Lang::En,
            signed: None,
            tz: &tz,
            here: "/\"><script>".into(),
        };
        let page = message(&frame, "<script>alert(1)</script>\"><img onerror=x>").into_string();
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }
}
