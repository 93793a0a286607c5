//! The console's HTML. maud escapes every value put into a page, so a field
//! holding `<script>` shows as text; nothing here marks a value as trusted
//! HTML. The pages work without JavaScript; `console.js` only adds copy
//! buttons and live updates.

use maud::{html, Markup, DOCTYPE};

use super::auth::Role;
use super::i18n::{fill, Lang, Texts};
use crate::clock;
use crate::model::OpStatus;

mod chart;
mod fields;
mod list;
mod operation;
mod overview;
mod replay;
mod totals;
pub use fields::fields;
pub use list::{operations, progress, rows, Filter, Listing, Row, Totaled, ROW_FIELDS, ROW_NAMED};
pub use operation::{operation, operation_body, Shown};
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
    /// A signed-out reader's frame in UTC, for the pages' tests.
    #[cfg(test)]
    fn for_tests(lang: Lang, here: &str) -> Frame<'static> {
        static UTC: jiff::tz::TimeZone = jiff::tz::TimeZone::UTC;
        Frame {
            lang,
            signed: None,
            tz: &UTC,
            here: here.into(),
        }
    }

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
                // A sentence as a title keeps no full stop: "Не найдено · hookrelay".
                title { (title.trim_end_matches('.')) " · hookrelay" }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let frame = Frame::for_tests(Lang::En, "/\"><script>");
        let page = message(&frame, "<script>alert(1)</script>\"><img onerror=x>").into_string();
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }
}
