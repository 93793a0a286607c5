//! What the admin changes from the console: replay (one operation, or all
//! a filter matches after a confirmation), render waiting deliveries again,
//! cancel them, and close a receiver's breaker. Each writes through the
//! daemon's writer, off the async workers, as the command line does through
//! the control socket.

use std::collections::BTreeMap;
use std::sync::Arc;

use hyper::StatusCode;

use super::auth::Signed;
use super::pages::{self, Filter};
use super::request::{redirect, Context};
use super::{filter_of, history_filter, read, Console};
use crate::http::Reply;
use crate::model::OpStatus;
use crate::replay;
use crate::store::{HistoryFilter, OperationView, StoreError, Waiting, Writer};

/// Reasons a bulk replay's summary names, at most (the rest are counted only).
const MAX_REASONS: usize = 10;

/// Who the console's changes are recorded as: only the admin makes them.
const SOURCE: &str = "console (admin)";

/// What the console's "replay matching" replays: operations that did not
/// reach every receiver.
const REPLAYED: [OpStatus; 3] = [OpStatus::Failed, OpStatus::Held, OpStatus::Partial];

/// The confirmation before a bulk replay (GET /replay), for the filter in
/// the query string.
pub(super) async fn confirm_replay(console: &Arc<Console>, cx: &Context, signed: &Signed) -> Reply {
    let mut filter = filter_of(|key| cx.param(key));
    // Ticked rows come as `id=1&id=2`: the chosen operations, whatever else
    // the list was filtered by.
    let ticked: Vec<&str> = cx
        .query
        .iter()
        .filter(|(k, _)| k == "id")
        .map(|(_, v)| v.as_str())
        .collect();
    if !ticked.is_empty() {
        filter = super::pages::Filter {
            ids: ticked.join(","),
            ..super::pages::Filter::default()
        };
    }
    let ask = ask(cx.param("include_stopped"), cx.param("force"));
    match replay_candidates(console, cx, signed, &filter).await {
        Ok(list) => cx.page(
            StatusCode::OK,
            pages::confirm_replay(
                &cx.frame(Some(signed)),
                &filter,
                &replay::preview(&cx.config, &list, &ask),
                &ask,
            ),
        ),
        Err(reply) => reply,
    }
}

/// The admin's forms: `/replay`, `/receivers/reset`, and an operation's
/// `/replay`, `/requeue` and `/cancel`.
pub(super) async fn post(
    console: &Arc<Console>,
    cx: &Context,
    signed: &Signed,
    path: &str,
    form: &BTreeMap<String, String>,
) -> Reply {
    if path == "/receivers/reset" {
        return reset_breaker(console, cx, signed, form).await;
    }
    if path == "/replay" {
        return replay_matching(console, cx, signed, form).await;
    }
    let Some((id, action)) = path
        .strip_prefix("/operations/")
        .and_then(|rest| rest.split_once('/'))
        .and_then(|(id, action)| Some((id.parse::<i64>().ok()?, action)))
    else {
        return cx.not_found(signed);
    };
    match action {
        "replay" => replay_one(console, cx, signed, id, form).await,
        "requeue" => requeue(console, cx, signed, id).await,
        "cancel" => match write(console, move |w| w.cancel(Waiting::Of(id), SOURCE.into())).await {
            Ok(n) => {
                log::info!("console: cancelled {n} waiting deliveries of operation {id}");
                redirect(&format!("/operations/{id}?cancelled={n}"), None)
            }
            Err(err) => cx.read_failed(signed, err),
        },
        _ => cx.not_found(signed),
    }
}

async fn reset_breaker(
    console: &Arc<Console>,
    cx: &Context,
    signed: &Signed,
    form: &BTreeMap<String, String>,
) -> Reply {
    let Some(target) = form.get("target").cloned() else {
        return cx.message(StatusCode::BAD_REQUEST, Some(signed), cx.t().stale_form);
    };
    let closing = target.clone();
    match write(console, move |w| w.close_breaker(closing)).await {
        Ok(_) => {
            log::info!("receiver {target}: circuit breaker closed by hand (console)");
            let target = url::form_urlencoded::byte_serialize(target.as_bytes()).collect::<String>();
            redirect(&format!("/?reset={target}"), None)
        }
        Err(err) => cx.read_failed(signed, err),
    }
}

async fn replay_matching(
    console: &Arc<Console>,
    cx: &Context,
    signed: &Signed,
    form: &BTreeMap<String, String>,
) -> Reply {
    let filter = filter_of(|key| form.get(key).map(String::as_str));
    let operations = match replay_candidates(console, cx, signed, &filter).await {
        Ok(list) => list,
        Err(reply) => return reply,
    };
    let ask = ask(
        form.get("include_stopped").map(String::as_str),
        form.get("force").map(String::as_str),
    );
    let expected: usize = form.get("expected").and_then(|n| n.parse().ok()).unwrap_or(0);
    let preview = replay::preview(&cx.config, &operations, &ask);
    if preview.count() > expected {
        // More would go than the person agreed to: ask again with the new count.
        return cx.page(
            StatusCode::CONFLICT,
            pages::confirm_replay(&cx.frame(Some(signed)), &filter, &preview, &ask),
        );
    }
    let candidates: Vec<i64> = operations.iter().map(|op| op.summary.id).collect();
    let report = match run_replay(console, cx, operations, ask).await {
        Ok(report) => report,
        Err(err) => return cx.read_failed(signed, err),
    };
    let queued: Vec<String> = candidates
        .iter()
        .filter(|id| !report.refused.iter().any(|(refused, _)| refused == *id))
        .map(i64::to_string)
        .collect();
    // Left alone, by reason: each reason once, with its count.
    let mut reasons: Vec<((&str, String), usize)> = Vec::new();
    for (_, why) in &report.refused {
        let key = (why.kind(), why.param());
        match reasons.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => reasons.push((key, 1)),
        }
    }
    let mut said = url::form_urlencoded::Serializer::new(String::new());
    said.append_pair("requeued_ops", &queued.len().to_string());
    for ((kind, param), n) in reasons.iter().take(MAX_REASONS) {
        said.append_pair("why", &format!("{n} {kind} {param}"));
    }
    let said = said.finish();
    if !queued.is_empty() && queued.len() <= super::listing::MAX_CHOSEN {
        // The operations just queued, as they go: the filter that found
        // them (failed ones, say) would now find none of them.
        return redirect(&format!("/operations?ids={}&{said}", queued.join(",")), None);
    }
    let mut query = filter.query();
    if !query.is_empty() {
        query.push('&');
    }
    redirect(&format!("/operations?{query}{said}"), None)
}

async fn replay_one(
    console: &Arc<Console>,
    cx: &Context,
    signed: &Signed,
    id: i64,
    form: &BTreeMap<String, String>,
) -> Reply {
    let op = match read(console, move |r| r.operation(id)).await {
        Ok(Some(op)) => op,
        Ok(None) => return cx.not_found(signed),
        Err(err) => return cx.read_failed(signed, err),
    };
    let ask = ask(
        form.get("include_stopped").map(String::as_str),
        form.get("force").map(String::as_str),
    );
    match run_replay(console, cx, vec![op], ask).await {
        Ok(report) => match report.refused.first() {
            Some((_, why)) => redirect(
                &format!(
                    "/operations/{id}?refused={}&why={}",
                    why.kind(),
                    url::form_urlencoded::byte_serialize(why.param().as_bytes()).collect::<String>()
                ),
                None,
            ),
            None => redirect(&format!("/operations/{id}?queued={}", report.queued), None),
        },
        Err(err) => cx.read_failed(signed, err),
    }
}

async fn requeue(console: &Arc<Console>, cx: &Context, signed: &Signed, id: i64) -> Reply {
    let op = match read(console, move |r| r.operation(id)).await {
        Ok(Some(op)) => op,
        Ok(None) => return cx.not_found(signed),
        Err(err) => return cx.read_failed(signed, err),
    };
    let config = Arc::clone(&cx.config);
    match write(console, move |w| {
        replay::rerender(&config, &[op], &replay::Queue::Writer(w))
    })
    .await
    {
        Ok(done) => {
            log::info!(
                "console: rendered {} waiting deliveries of operation {id} again",
                done.rerendered
            );
            redirect(&format!("/operations/{id}?requeued={}", done.rerendered), None)
        }
        Err(err) => cx.read_failed(signed, err),
    }
}

/// Runs `write` with the daemon's writer on the blocking pool: each call
/// waits for its commit.
async fn write<T: Send + 'static>(
    console: &Arc<Console>,
    write: impl FnOnce(&Writer) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    let shared = Arc::clone(&console.shared);
    match tokio::task::spawn_blocking(move || write(shared.writer())).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(err) => Err(format!("the writing task failed: {err}")),
    }
}

/// Replays through the daemon's writer, a few operations a job, so that
/// webhooks' commits go between them.
async fn run_replay(
    console: &Arc<Console>,
    cx: &Context,
    operations: Vec<OperationView>,
    ask: replay::Ask,
) -> Result<replay::Report, String> {
    let config = Arc::clone(&cx.config);
    let report = write(console, move |w| {
        replay::run(&config, &operations, &ask, &replay::Queue::Writer(w))
    })
    .await?;
    log::info!(
        "console: replay queued {} deliveries for {} operation(s)",
        report.queued,
        report.operations
    );
    Ok(report)
}

/// A replay asked for in the console: with the stopped processings' held
/// operations when `include_stopped` is "1", and operations past an
/// action's `max_age` when `force` is "1".
fn ask(include_stopped: Option<&str>, force: Option<&str>) -> replay::Ask {
    replay::Ask {
        include_stopped: include_stopped == Some("1"),
        force: force == Some("1"),
        source: SOURCE.into(),
    }
}

/// The failed, held and partial operations `filter` matches (its status, if
/// set, narrowing that), with what was recorded.
async fn replay_candidates(
    console: &Arc<Console>,
    cx: &Context,
    signed: &Signed,
    filter: &Filter,
) -> Result<Vec<OperationView>, Reply> {
    let base = history_filter(cx, signed, filter)
        .map_err(|problem| cx.message(StatusCode::BAD_REQUEST, Some(signed), &problem))?;
    let statuses: Vec<OpStatus> = REPLAYED
        .iter()
        .copied()
        .filter(|s| base.status.is_none_or(|wanted| wanted == *s))
        .collect();
    let found = read(console, move |reader| {
        let mut all = Vec::new();
        for status in statuses {
            let filter = HistoryFilter {
                status: Some(status),
                ..base.clone()
            };
            all.extend(replay::select(reader, &filter)?);
        }
        all.sort_by_key(|op| op.summary.id);
        Ok(all)
    })
    .await;
    found.map_err(|err| cx.read_failed(signed, err))
}
