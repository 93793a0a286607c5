//! The confirmation before a bulk replay: what will go, what will not and
//! why, and the held operations of stopped processings.

use maud::{html, Markup};

use super::{fill, layout, status_badge, Filter, Frame};
use crate::replay::{Preview, Refused};

/// The confirmation before replaying every failed or held operation a
/// filter matches: what will go, by processing and status; what will not,
/// and why; and the held operations of stopped processings, sent only when
/// the box naming those processings is ticked.
pub fn confirm_replay(frame: &Frame, filter: &Filter, preview: &Preview, include_stopped: bool) -> Markup {
    let t = frame.t();
    let count = preview.count();
    let back = format!("/operations?{}", filter.query());
    let stopped: Vec<String> = preview.stopped.iter().map(|(p, n)| format!("{p}: {n}")).collect();
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
            @if !preview.refused.is_empty() || (!preview.stopped.is_empty() && !include_stopped) {
                h2 { (t.will_not_go) }
                table {
                    thead { tr { th { (t.reason) } th { (t.count) } } }
                    tbody {
                        @if !include_stopped {
                            @for (processing, n) in &preview.stopped {
                                tr { td { (t.refused(&Refused::Stopped(processing.clone()))) } td.num { (n) } }
                            }
                        }
                        @for (why, n) in &preview.refused {
                            tr { td { (t.refused(why)) } td.num { (n) } }
                        }
                    }
                }
            }
            @if count == 0 && preview.stopped.is_empty() {
                p { (t.nothing_to_replay) }
                p { a href=(back) { (t.cancel) } }
            } @else {
                @if !preview.stopped.is_empty() {
                    // Including them changes the count: the page is asked for again.
                    p {
                        @if include_stopped {
                            a href=(format!("/replay?{}", filter.query())) { (t.exclude_stopped) }
                        } @else {
                            a href=(format!("/replay?{}&include_stopped=1", filter.query())) {
                                (fill(t.include_stopped, stopped.join(", ")))
                            }
                        }
                    }
                }
                form method="post" action="/replay" {
                    p { (fill(t.confirm_replay, count)) }
                    (frame.csrf())
                    (filter.hidden())
                    @if include_stopped { input type="hidden" name="include_stopped" value="1"; }
                    input type="hidden" name="expected" value=(count);
                    button type="submit" disabled[count == 0] { (t.confirm) }
                    " "
                    a href=(back) { (t.cancel) }
                }
            }
        },
    )
}
