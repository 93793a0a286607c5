//! The web console on the admin listener: the overview, the operations with
//! their search, one operation, fields and the Klientiks helper, in
//! Russian and English (`i18n.rs`), rendered on the server (`pages.rs`);
//! what the admin changes (replay, requeue, cancel, a breaker's reset) is
//! `actions.rs`; the HTTP plumbing (context, cookies, forms, headers) is
//! `request.rs`.
//!
//! Everyone signs in with a token (`auth.rs`): the admin token sees and
//! replays everything; a viewer's sees only its processings, read-only. A
//! processing a viewer may not see answers exactly as one that does not
//! exist, so names cannot be probed. Every form that changes something
//! carries the session's CSRF token, and the session cookie is
//! `SameSite=Strict`.

mod actions;
mod auth;
mod export;
mod i18n;
mod listing;
mod pages;
mod request;
mod totals;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, StatusCode};

use crate::clock::now_ms;
use crate::http::Reply;
use crate::ingest::{sender::client_of, Shared, Throttle};
use crate::klientiks;
use crate::replay;
use crate::store::{Reader, ReceiverStatus, StoreError, TotalsFilter};

pub use auth::Role;
use auth::{Refused, Sessions, Signed};
use i18n::fill;
use listing::{filter_of, history_filter};
use pages::Card;
use request::{context, cookie, read_form, redirect, session_cookie, static_file, Context, SESSION_COOKIE};

/// Operations per page.
const PAGE: usize = 50;
/// Days the overview's chart shows.
const CHART_DAYS: i64 = 30;
/// Warnings shown per processing on the overview.
const OVERVIEW_WARNINGS: usize = 3;
/// A guesser spreading over many addresses passes the per-address brake;
/// the log still gets one line per this long.
const REFUSAL_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

const CSS: &str = include_str!("console.css");
const JS: &str = include_str!("console.js");

/// The console's state: the live config, a reading connection and the sessions.
pub struct Console {
    pub shared: Arc<Shared>,
    pub reader: Arc<Mutex<Reader>>,
    sessions: Sessions,
    /// At most one refused sign-in logged per interval, from any address.
    refusal_log: Mutex<Throttle>,
}

impl Console {
    /// A console reading through `reader`, with no one signed in.
    pub fn new(shared: Arc<Shared>, reader: Arc<Mutex<Reader>>) -> Console {
        Console {
            shared,
            reader,
            sessions: Sessions::default(),
            refusal_log: Mutex::new(Throttle::new(REFUSAL_LOG_INTERVAL)),
        }
    }
}

/// Whether `path` is the console's (everything on the admin listener but
/// `/healthz` and `/metrics`).
pub fn owns(path: &str) -> bool {
    !matches!(path, "/healthz" | "/metrics")
}

/// Runs `read` with the console's reading connection, off the async workers.
async fn read<T: Send + 'static>(
    console: &Arc<Console>,
    read: impl FnOnce(&Reader) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, String> {
    let reader = Arc::clone(&console.reader);
    let done = tokio::task::spawn_blocking(move || {
        let reader = reader.lock().unwrap_or_else(|p| p.into_inner());
        read(&reader)
    })
    .await;
    match done {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(err) => Err(format!("the reading task failed: {err}")),
    }
}

/// Answers one console request.
pub async fn handle(console: Arc<Console>, remote: SocketAddr, request: Request<Incoming>) -> Reply {
    let (parts, body) = request.into_parts();
    let cx = context(console.shared.config(), &parts, remote);
    let path = parts.uri.path();
    let method = &parts.method;
    match (method, path) {
        (&Method::GET, "/static/console.css") => return static_file(CSS, "text/css; charset=utf-8"),
        (&Method::GET, "/static/console.js") => return static_file(JS, "text/javascript; charset=utf-8"),
        (&Method::GET, "/login") => {
            return cx.page(
                StatusCode::OK,
                pages::sign_in(&cx.frame(None), None, cx.config.server.admin_token.is_some()),
            )
        }
        (&Method::POST, "/login") => {
            let client = client_of(remote, &parts.headers, &cx.config.server.trusted_proxies);
            return match read_form(body).await {
                Ok(form) => sign_in(&console, &cx, &client, form.get("token").map_or("", String::as_str)),
                Err(reply) => reply,
            };
        }
        _ => {}
    }
    let session_id = cookie(&parts.headers, SESSION_COOKIE).unwrap_or("").to_string();
    let Some(signed) = console.sessions.get(&cx.config, &session_id, Instant::now()) else {
        return if *method == Method::GET {
            redirect("/login", None)
        } else {
            cx.message(StatusCode::FORBIDDEN, None, cx.t().stale_form)
        };
    };
    if *method == Method::POST {
        let form = match read_form(body).await {
            Ok(form) => form,
            Err(reply) => return reply,
        };
        if !auth::csrf_matches(&signed, form.get("csrf").map_or("", String::as_str)) {
            return cx.message(StatusCode::FORBIDDEN, Some(&signed), cx.t().stale_form);
        }
        return post(&console, &cx, &signed, path, &session_id, &form).await;
    }
    if *method != Method::GET {
        return cx.message(StatusCode::METHOD_NOT_ALLOWED, Some(&signed), cx.t().not_found);
    }
    get(&console, &cx, &signed, path).await
}

/// A sign-in: a session and the overview, or the form again with the reason.
fn sign_in(console: &Console, cx: &Context, client: &crate::ingest::sender::Client, token: &str) -> Reply {
    let refused = match console.sessions.sign_in(&cx.config, client.ip, token, Instant::now()) {
        Ok(id) => return redirect("/", Some(session_cookie(&id, cx))),
        Err(refused) => refused,
    };
    let admitted = console
        .refusal_log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .admit(Instant::now());
    match admitted {
        Some(0) => log::warn!("console: sign-in refused for {}", client.shown),
        Some(held) => log::warn!(
            "console: sign-in refused for {} ({held} more refused since the last such line)",
            client.shown
        ),
        None => {}
    }
    let (status, text, wait) = match refused {
        Refused::WrongToken => (StatusCode::UNAUTHORIZED, cx.t().wrong_token.to_string(), None),
        Refused::TooMany(wait) => (
            StatusCode::TOO_MANY_REQUESTS,
            fill(cx.t().too_many, wait.as_secs().div_ceil(60)),
            Some(wait),
        ),
    };
    let mut reply = cx.page(
        status,
        pages::sign_in(&cx.frame(None), Some(&text), cx.config.server.admin_token.is_some()),
    );
    if let Some(value) = wait.and_then(|w| HeaderValue::from_str(&w.as_secs().max(1).to_string()).ok()) {
        reply.headers_mut().insert(RETRY_AFTER, value);
    }
    reply
}

async fn get(console: &Arc<Console>, cx: &Context, signed: &Signed, path: &str) -> Reply {
    if path == "/" {
        return overview(console, cx, signed).await;
    }
    if path == "/operations" {
        return listing::operations(console, cx, signed).await;
    }
    if path == "/export.csv" {
        return export::export(console, cx, signed).await;
    }
    if path == "/replay" {
        if signed.role != Role::Admin {
            return cx.message(StatusCode::FORBIDDEN, Some(signed), cx.t().forbidden);
        }
        return actions::confirm_replay(console, cx, signed).await;
    }
    if let Some(id) = path.strip_prefix("/operations/").and_then(|id| id.parse::<i64>().ok()) {
        return operation(console, cx, signed, id).await;
    }
    if let Some(name) = path.strip_prefix("/fields/") {
        return fields(console, cx, signed, name).await;
    }
    cx.not_found(signed)
}

async fn post(
    console: &Arc<Console>,
    cx: &Context,
    signed: &Signed,
    path: &str,
    session_id: &str,
    form: &BTreeMap<String, String>,
) -> Reply {
    if path == "/logout" {
        console.sessions.sign_out(session_id);
        let cleared = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
        return redirect("/login", Some(cleared));
    }
    if signed.role != Role::Admin {
        return cx.message(StatusCode::FORBIDDEN, Some(signed), cx.t().forbidden);
    }
    actions::post(console, cx, signed, path, form).await
}

async fn overview(console: &Arc<Console>, cx: &Context, signed: &Signed) -> Reply {
    let shown: Vec<(String, bool, Option<String>)> = cx
        .config
        .processings
        .iter()
        .filter(|p| cx.may_see(&signed.role, &p.name))
        .map(|p| {
            let address = cx.may_see_address(&signed.role).then(|| cx.config.webhook_url(p));
            (p.name.clone(), p.enabled, address)
        })
        .collect();
    let names: Vec<String> = shown.iter().map(|(name, _, _)| name.clone()).collect();
    let tz = cx.config.server.time_zone.clone();
    let today = crate::clock::day_of(now_ms(), &tz);
    let first_day = today
        .checked_sub(jiff::Span::new().days(CHART_DAYS - 1))
        .unwrap_or(today);
    let chart_since = crate::clock::day_start(first_day, &tz);
    // Each processing's metrica actions: (action, `processing/action`).
    let metrica: Vec<Vec<(String, String)>> = names
        .iter()
        .map(|name| {
            cx.config
                .metrica_actions()
                .filter(|(_, m)| m.key.split_once('/').is_some_and(|(p, _)| p == name))
                .map(|(a, m)| (a.name.clone(), m.key.clone()))
                .collect()
        })
        .collect();
    let found = read(console, move |reader| {
        let now = now_ms();
        let overviews = names
            .iter()
            .zip(metrica)
            .map(|(name, metrica)| {
                let counted = TotalsFilter {
                    processings: vec![name.clone()],
                    event: None,
                    since: chart_since,
                    until: now,
                };
                let batches = metrica
                    .into_iter()
                    .map(|(action, key)| Ok((action, reader.batch_queue(&key)?)))
                    .collect::<Result<Vec<_>, StoreError>>()?;
                Ok((
                    reader.overview(name, now, OVERVIEW_WARNINGS)?,
                    reader.totals(&counted)?,
                    batches,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((overviews, reader.silences()?, reader.receiver_statuses()?))
    })
    .await;
    let (overviews, silences, receivers) = match found {
        Ok(found) => found,
        Err(err) => return cx.read_failed(signed, err),
    };
    let cards: Vec<Card> = shown
        .iter()
        .zip(overviews)
        .map(|((name, enabled, address), (overview, counts, batches))| Card {
            name,
            enabled: *enabled,
            address: address.clone(),
            overview,
            silent_since: silences.iter().find(|s| &s.processing == name).map(|s| s.last_event_at),
            open_receivers: open_receivers_of(&cx.config, name, &receivers),
            days: Some(totals::by_day(&counts, first_day, today, &tz)),
            batches,
        })
        .collect();
    // A viewer sees the breakers of its processings' receivers on their
    // cards; the table of every receiver (with what waits for each, all
    // processings together) is the admin's.
    let all: &[ReceiverStatus] = if matches!(signed.role, auth::Role::Admin) {
        &receivers
    } else {
        &[]
    };
    let notice = cx
        .param("reset")
        .filter(|_| signed.role == Role::Admin)
        .map(|target| fill(cx.t().breaker_was_reset, target));
    cx.page(
        StatusCode::OK,
        pages::overview(&cx.frame(Some(signed)), &cards, all, notice.as_deref()),
    )
}

/// The receivers `processing`'s actions call (by each URL template's
/// literal `scheme://host:port`) whose circuit breaker is open.
fn open_receivers_of<'a>(
    config: &crate::config::Config,
    processing: &str,
    receivers: &'a [ReceiverStatus],
) -> Vec<&'a ReceiverStatus> {
    let Some(p) = config.processing(processing) else {
        return Vec::new();
    };
    let targets: Vec<String> = p
        .actions
        .iter()
        .map(|a| crate::model::target_of(a.url.source()))
        .collect();
    receivers
        .iter()
        .filter(|r| r.state.open.is_some() && targets.contains(&r.state.target))
        .collect()
}

async fn operation(console: &Arc<Console>, cx: &Context, signed: &Signed, id: i64) -> Reply {
    let found = read(console, move |r| Ok((r.operation(id)?, r.receiver_states()?))).await;
    let (op, receivers) = match found {
        Ok((Some(op), receivers)) if cx.may_see(&signed.role, &op.summary.processing) => (op, receivers),
        Ok(_) => return cx.not_found(signed),
        Err(err) => return cx.read_failed(signed, err),
    };
    let refused = cx
        .param("refused")
        .and_then(|kind| replay::Refused::from_parts(kind, cx.param("why").unwrap_or("")));
    let count = |key: &str| cx.param(key).and_then(|n| n.parse::<u64>().ok());
    let notice = match (cx.param("queued"), refused) {
        _ if cx.param("cancelled").is_some() => {
            count("cancelled").map(|n| i18n::say(cx.lang, i18n::Counted::DeliveriesCancelled, n))
        }
        _ if cx.param("requeued").is_some() => {
            count("requeued").map(|n| i18n::say(cx.lang, i18n::Counted::DeliveriesRequeued, n))
        }
        (Some(n), _) => n
            .parse()
            .ok()
            .map(|n| i18n::say(cx.lang, i18n::Counted::DeliveriesQueued, n)),
        (None, Some(why)) => Some(format!("{}: {}", fill(cx.t().not_replayed, id), cx.t().refused(&why))),
        (None, None) => None,
    };
    let replay = replay::plan(&cx.config, &op, &replay::Ask::default()).map(|_| ());
    let frame = cx.frame(Some(signed));
    let shown = pages::Shown {
        op: &op,
        notice: notice.as_deref(),
        replay: &replay,
        receivers: &receivers,
    };
    if cx.param("fragment") == Some("live") {
        return cx.page(StatusCode::OK, pages::operation_body(&frame, &shown));
    }
    cx.page(StatusCode::OK, pages::operation(&frame, &shown))
}

async fn fields(console: &Arc<Console>, cx: &Context, signed: &Signed, name: &str) -> Reply {
    let Some(processing) = cx.config.processing(name).filter(|p| cx.may_see(&signed.role, &p.name)) else {
        return cx.not_found(signed);
    };
    let owned = processing.name.clone();
    let latest = match read(console, move |r| r.latest_with_fields(&owned)).await {
        Ok(latest) => latest,
        Err(err) => return cx.read_failed(signed, err),
    };
    let event = cx.param("event").and_then(klientiks::find);
    cx.page(
        StatusCode::OK,
        pages::fields(
            &cx.frame(Some(signed)),
            &processing.name,
            latest.as_ref(),
            event,
            cx.may_see_address(&signed.role)
                .then(|| cx.config.webhook_url(processing))
                .as_deref(),
        ),
    )
}
