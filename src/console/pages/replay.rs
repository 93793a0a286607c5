//! The confirmation before a bulk replay: what will go, what will not and
//! why, the held operations of stopped processings, and those older than
//! an action's `max_age`.

use maud::{html, Markup};

use super::super::i18n::{say, Counted};
use super::{fill, layout, status_badge, Filter, Frame};
use crate::replay::{Ask, Preview, Refused};

/// The confirmation before replaying every failed or held operation a
/// filter matches: what will go, by processing and status; what will not,
/// and why; and the held operations of stopped processings, and those
/// older than an action's `max_age`, each sent only when the link naming
/// them was followed.
pub fn confirm_replay(frame: &Frame, filter: &Filter, preview: &Preview, ask: &Ask) -> Markup {
    let t = frame.t();
    let count = preview.count();
    let back = format!("/operations?{}", filter.query());
    let stopped: Vec<String> = preview.stopped.iter().map(|(p, n)| format!("{p}: {n}")).collect();
    let expired: Vec<String> = preview.expired.iter().map(|(a, n)| format!("{a}: {n}")).collect();
    let include_stopped = ask.include_stopped;
    // The page asked for again with one choice changed, the other kept.
    let with = |include_stopped: bool, force: bool| {
        let mut query = format!("/replay?{}", filter.query());
        if include_stopped {
            query.push_str("&include_stopped=1");
        }
        if force {
            query.push_str("&force=1");
        }
        query
    };
    layout(
        frame,
        t.replay,
        html! {
            h1 { (t.replay) }
            @if !preview.go.is_empty() {
                h2 { (t.will_go) }
                table {
                    thead { tr { th { (t.processing) } th { (t.status) } th { (t.count) } } }
                    tbody {
                        @for ((processing, status), n) in &preview.go {
                            tr { td { (processing) } td { (status_badge(t, *status)) } td.num { (n) } }
                        }
                    }
                }
            }
            @if !preview.refused.is_empty()
                || (!preview.stopped.is_empty() && !include_stopped)
                || (!preview.expired.is_empty() && !ask.force)
            {
                h2 { (t.will_not_go) }
                table {
                    thead { tr { th { (t.reason) } th { (t.count) } } }
                    tbody {
                        @if !include_stopped {
                            @for (processing, n) in &preview.stopped {
                                tr { td { (t.refused(&Refused::Stopped(processing.clone()))) } td.num { (n) } }
                            }
                        }
                        @if !ask.force {
                            @for (action, n) in &preview.expired {
                                tr { td { (t.refused(&Refused::Expired(action.clone()))) } td.num { (n) } }
                            }
                        }
                        @for (why, n) in &preview.refused {
                            tr { td { (t.refused(why)) } td.num { (n) } }
                        }
                    }
                }
            }
            @if count == 0 && preview.stopped.is_empty() && preview.expired.is_empty() {
                p { (t.nothing_to_replay) }
                p { a href=(back) { (t.cancel) } }
            } @else {
                @if !preview.stopped.is_empty() {
                    // Including them changes the count: the page is asked for again.
                    p {
                        @if include_stopped {
                            a href=(with(false, ask.force)) { (t.exclude_stopped) }
                        } @else {
                            a href=(with(true, ask.force)) { (fill(t.include_stopped, stopped.join(", "))) }
                        }
                    }
                }
                @if !preview.expired.is_empty() {
                    p {
                        @if ask.force {
                            a href=(with(include_stopped, false)) { (t.exclude_expired) }
                        } @else {
                            a href=(with(include_stopped, true)) { (fill(t.include_expired, expired.join(", "))) }
                        }
                    }
                }
                form method="post" action="/replay" {
                    p { (say(frame.lang, Counted::ReplayAsk, count as u64)) }
                    (frame.csrf())
                    (filter.hidden())
                    @if include_stopped { input type="hidden" name="include_stopped" value="1"; }
                    @if ask.force { input type="hidden" name="force" value="1"; }
                    input type="hidden" name="expected" value=(count);
                    button type="submit" disabled[count == 0] { (t.confirm) }
                    " "
                    a href=(back) { (t.cancel) }
                }
            }
        },
    )
}
