//! The console's HTML. maud escapes every value put into a page, so a field
//! holding `<script>` shows as text; nothing here marks a value as trusted
//! HTML. The pages work without JavaScript; `console.js` only adds copy
//! buttons and live updates.

use maud::{html, Markup, DOCTYPE};

use super::auth::Role;
use super::i18n::{fill, Lang, Texts};
use crate::clock;
use crate::model::OpStatus;
use crate::store::OperationSummary;

mod fields;
mod operation;
mod overview;
mod replay;
pub use fields::fields;
pub use operation::{operation, operation_body};
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

#[cfg(test)]
mod tests {
    use super::*;

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
