//! One operation's page: what it is, why it stands where it stands, its
//! deliveries with every attempt, its fields and the raw request, and the
//! admin's buttons (replay, requeue, cancel).

use std::collections::BTreeMap;

use maud::{html, Markup};

use super::{fill, layout, status_badge, Frame, Texts};
use crate::model::said::Said;
use crate::model::ReceiverState;
use crate::model::{DeliveryStatus, OpStatus};
use crate::replay::Refused;
use crate::store::{DeliveryView, OperationView};

/// A metrica row's batch in a line: waiting for one, or the batch with
/// its rows, when it was sent, Metrica's upload, its state and counts.
pub fn batch_line(frame: &Frame, batch: Option<&crate::store::Batch>) -> Markup {
    let t = frame.t();
    let Some(b) = batch else {
        return html! { (t.batch_waiting) };
    };
    let counts = [
        (t.batch_linked, b.linked),
        (t.batch_user_not_found, b.user_not_found),
        (t.batch_goal_not_found, b.goal_not_found),
    ];
    html! {
        (fill(t.batch, b.id)) " · " (t.batch_state(&b.state)) " · " (fill(t.batch_rows, b.rows))
        @if let Some(sent) = b.sent_at { " · " (fill(t.batch_sent, frame.time(sent))) }
        @if let Some(upload) = &b.upload_id { " · " (fill(t.batch_upload, upload)) }
        @if let Some(state) = &b.upload_state { " " code { (state) } }
        @for (text, n) in counts {
            @if let Some(n) = n { " · " (fill(text, n)) }
        }
        @if let (Some(error), "ready" | "sending" | "failed") = (&b.last_error, b.state.as_str()) {
            " · " span.error { (t.said(error)) }
        }
    }
}

/// Why an operation stands where it does, one line per action, before
/// anything else on its page: skipped because, failed with, waiting for
/// (a receiver's open breaker, its turn, the next try), expired.
fn verdict(frame: &Frame, op: &OperationView, receivers: &[ReceiverState]) -> Markup {
    let t = frame.t();
    let s = &op.summary;
    let now = crate::clock::now_ms();
    // Each action's newest delivery: a replay's stands for the one it replays.
    let mut newest: Vec<&DeliveryView> = Vec::new();
    for d in op.deliveries.iter().rev() {
        if !newest.iter().any(|n| n.action == d.action) {
            newest.insert(0, d);
        }
    }
    // The status, and what the answer kept (a new lead's id), if anything.
    let answer = |d: &DeliveryView| {
        let last = d.attempts.last();
        let code = last.and_then(|a| a.http_status)?.to_string();
        Some(match last.and_then(|a| a.judged.as_ref()).and_then(|j| j.kept()) {
            Some(kept) => fill(&fill(t.verdict_kept, &code), crate::model::response::value_text(kept)),
            None => code,
        })
    };
    let line = |d: &DeliveryView| -> String {
        let error = d.last_error.as_ref().map_or_else(String::new, |e| t.said(e));
        match d.status {
            DeliveryStatus::Delivered => fill(
                &fill(t.verdict_delivered, &d.action),
                answer(d).unwrap_or_else(|| "✓".to_string()),
            ),
            DeliveryStatus::Failed => fill(&fill(t.verdict_failed, &d.action), error),
            DeliveryStatus::Expired => fill(t.verdict_expired, &d.action),
            DeliveryStatus::Cancelled => fill(t.verdict_cancelled, &d.action),
            DeliveryStatus::Pending | DeliveryStatus::Retrying | DeliveryStatus::InFlight => {
                let target = d.request.split(' ').nth(1).map(crate::model::target_of);
                let open = receivers
                    .iter()
                    .find(|r| Some(&r.target) == target.as_ref())
                    .and_then(|r| r.open.map(|open| (r, open)));
                if let Some((r, open)) = open {
                    fill(
                        &fill(
                            &fill(&fill(t.verdict_breaker, &d.action), &r.target),
                            frame.time(open.since),
                        ),
                        frame.time(open.next_probe_at),
                    )
                } else if d.status == DeliveryStatus::InFlight {
                    fill(t.verdict_sending, &d.action)
                } else if d.next_attempt_at <= now {
                    fill(&fill(t.verdict_turn, &d.action), frame.time(d.next_attempt_at))
                } else if d.status == DeliveryStatus::Retrying {
                    fill(
                        &fill(&fill(t.verdict_retry, &d.action), frame.time(d.next_attempt_at)),
                        error,
                    )
                } else {
                    fill(&fill(t.verdict_pending, &d.action), frame.time(d.next_attempt_at))
                }
            }
        }
    };
    html! {
        div.verdict role="status" {
            @if let (Some(reason), true) = (&s.reason, newest.is_empty()) {
                p { (status_badge(t, s.status)) " " (t.said(reason)) }
            }
            @for d in &newest {
                p class=(format!("d-{}", d.status.as_str())) { (line(d)) }
            }
        }
    }
}

/// What an operation's page shows.
pub struct Shown<'a> {
    pub op: &'a OperationView,
    /// What the last action did ("1 доставка снова в очереди."), if any.
    pub notice: Option<&'a str>,
    /// Whether the current rules would replay it, or why not: a held
    /// operation of a stopped processing gets a button that names it.
    pub replay: &'a Result<(), Refused>,
    /// The receivers' breakers, for what a waiting delivery waits for.
    pub receivers: &'a [ReceiverState],
}

/// One operation, everything recorded about it.
pub fn operation(frame: &Frame, shown: &Shown) -> Markup {
    let t = frame.t();
    let s = &shown.op.summary;
    let title = fill(t.operation, s.id);
    let finished = !matches!(s.status, OpStatus::Queued);
    layout(
        frame,
        &title,
        html! {
            div #live data-live=[(!finished).then(|| format!("/operations/{}?fragment=live", s.id))] {
                (operation_body(frame, shown))
            }
        },
    )
}

/// The part of an operation's page that changes while it is delivered.
pub fn operation_body(frame: &Frame, shown: &Shown) -> Markup {
    let Shown {
        op,
        notice,
        replay,
        receivers,
    } = shown;
    let t = frame.t();
    let s = &op.summary;
    html! {
        h1 { (fill(t.operation, s.id)) " " (status_badge(t, s.status)) }
        @if let Some(notice) = notice { p.notice role="status" { (notice) } }
        (verdict(frame, op, receivers))
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
                    li { (frame.time(r.at)) " — " (fill(t.replayed_by, t.source(&r.source))) (r.deliveries) }
                }
            }
        }
        h2 { (t.deliveries) }
        @for d in &op.deliveries {
            section.delivery {
                h3 {
                    (fill(t.delivery, d.id)) ": " (d.action) " "
                    span class=(format!("status d-{}", d.status.as_str())) { (t.delivery_status(d.status)) }
                }
                p { span.label { (t.request) ": " } code { (d.request) } }
                @if let Some(batch) = &d.batch {
                    p.batch { span.label { (t.metrica_batches) ": " } (batch_line(frame, batch.as_ref())) }
                }
                @if d.batch.is_none() && matches!(d.status, DeliveryStatus::Pending | DeliveryStatus::Retrying) {
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
                                        @match (&a.judged, &a.error) {
                                            (_, Some(error)) => (t.said(error)),
                                            (Some(judged), None) if !judged.accepted() => (t.said(&Said::Answer { verdict: judged.clone(), note: None })),
                                            _ => "",
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { (t.fields) }
        (fields_table(t, &op.fields))
        @if !op.warnings.is_empty() {
            h2 { (t.warnings) }
            ul.warnings { @for w in &op.warnings { li { (t.said(w)) } } }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::auth::Role;
    use crate::console::i18n::Lang;
    use crate::model::RawRequest;
    use crate::store::OperationSummary;

    fn request() -> RawRequest {
        RawRequest {
            remote_addr: "127.0.0.1:1".into(),
            method: "GET".into(),
            query: Vec::new(),
            body: Vec::new(),
            content_type: None,
        }
    }

    /// An operation older than an action's max_age says so in Russian,
    /// and the admin gets a button of its own that forces the replay.
    #[test]
    fn an_expired_operation_offers_a_forced_replay() {
        use crate::model::said::Said;
        let frame = Frame {
            signed: Some((&Role::Admin, "c")),
            ..Frame::for_tests(Lang::Ru, "/operations/1")
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
            request: request(),
            charset: "utf-8".into(),
            fields: BTreeMap::new(),
            warnings: vec![Said::MissingField {
                action: "plarin".into(),
                field: "x".into(),
            }],
            deliveries: Vec::new(),
            replays: Vec::new(),
        };
        let refused = Err(Refused::Expired("plarin".into()));
        let shown = Shown {
            op: &op,
            notice: None,
            replay: &refused,
            receivers: &[],
        };
        let page = operation_body(&frame, &shown).into_string();
        assert!(page.contains("событие старше max_age действия «plarin»"), "{page}");
        assert!(page.contains(r#"name="force" value="1""#), "{page}");
        assert!(page.contains("Отправить всё равно"), "{page}");
        assert!(page.contains("обязательное поле «x» пустое"), "{page}");
        assert!(page.contains("поля «x» нет, оно отправлено пустым"), "{page}");
    }

    /// The page leads with why: a delivery waiting behind an open breaker
    /// says since when and when the next probe is, not a "next try" in the past.
    #[test]
    fn the_verdict_comes_first_and_names_the_breaker() {
        use crate::model::Open;
        use crate::store::{AttemptView, DeliveryView};
        let frame = Frame::for_tests(Lang::Ru, "/operations/1");
        let delivery = |id: i64, action: &str, status: DeliveryStatus, code: Option<u16>| DeliveryView {
            id,
            action: action.into(),
            status,
            next_attempt_at: 1_000,
            last_error: code.map(|status| crate::model::said::Said::Http { status }),
            request: "GET http://plarin.example/pb?token=MASKED".into(),
            attempts: vec![AttemptView {
                started_at: 0,
                duration_ms: 1,
                request: String::new(),
                http_status: code,
                response_body: None,
                error: None,
                judged: None,
            }],
            batch: None,
        };
        let op = OperationView {
            summary: OperationSummary {
                id: 1,
                processing: "p".into(),
                received_at: 0,
                status: OpStatus::Queued,
                reason: None,
                delivered: 0,
                deliveries: 2,
                failure: None,
            },
            request: request(),
            charset: "utf-8".into(),
            fields: BTreeMap::from([("client_phone".into(), "+79991234567".into())]),
            warnings: Vec::new(),
            deliveries: vec![
                delivery(1, "plarin", DeliveryStatus::Failed, Some(503)),
                // The replay's delivery stands for the action now.
                delivery(2, "plarin", DeliveryStatus::Retrying, Some(503)),
                delivery(3, "tg", DeliveryStatus::Delivered, Some(200)),
            ],
            replays: Vec::new(),
        };
        let receivers = [ReceiverState {
            target: "http://plarin.example/".into(),
            version: 1,
            failures: 5,
            failing_since: Some(0),
            open: Some(Open {
                since: 0,
                probe_wait_ms: 1_000,
                next_probe_at: 60_000,
            }),
            last_success_at: None,
            last_error: None,
            last_error_at: None,
            change: None,
        }];
        let shown = Shown {
            op: &op,
            notice: None,
            replay: &Err(Refused::StillQueued),
            receivers: &receivers,
        };
        let page = operation_body(&frame, &shown).into_string();
        let verdict =
            page.find("plarin: ждёт — получатель http://plarin.example/ не отвечает с 1970-01-01 00:00:00 UTC");
        assert!(verdict.is_some(), "{page}");
        assert!(page.contains("tg: доставлена, ответ 200."), "{page}");
        assert!(
            !page.contains("plarin: не доставлена"),
            "the replayed failure is history: {page}"
        );
        let fields = page.find("+79991234567").unwrap();
        assert!(verdict < Some(fields), "the verdict before the fields");
    }
}
