//! The operations page: the filter as people type it (dates such as
//! `вчера` or `01.12.2026`, "по" taking its whole day), the rows with
//! what answers the usual questions (event, client, phone, amount, each
//! action's outcome), the totals for the filter, and the live updates.

use std::collections::BTreeMap;
use std::sync::Arc;

use hyper::StatusCode;
use jiff::civil::Date;

use super::auth::Signed;
use super::i18n::{fill, say, Counted};
use super::pages::{self, Filter, Listing, Row, Totaled};
use super::request::Context;
use super::totals::by_day;
use super::{read, Console, PAGE};
use crate::clock::{self, now_ms, parse_since};
use crate::http::Reply;
use crate::model::OpStatus;
use crate::store::{Failing, HistoryFilter, TotalsFilter, EVENT_FIELD};

/// Days the totals cover when the filter names no dates.
const DEFAULT_DAYS: i64 = 30;
/// How far back the event filter looks for the events a processing has seen.
const EVENTS_SEEN_DAYS: i64 = 90;
/// Most operations chosen by id at once (ticked, or a bulk replay's).
pub(super) const MAX_CHOSEN: usize = 500;
/// Most operations whose rows a live update refreshes at once.
const LIVE_REFRESH: usize = PAGE;

/// The filter as typed, from the query string or a form. A day chosen in
/// the date input (`day`, `2026-12-01`) is that day from start to end.
pub(super) fn filter_of<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Filter {
    let value = |key: &str| get(key).unwrap_or("").trim().to_string();
    let mut filter = Filter {
        processing: value("processing"),
        event: value("event"),
        status: value("status"),
        outcome: value("outcome"),
        error: value("error"),
        since: value("since"),
        until: value("until"),
        q: value("q"),
        ids: value("ids"),
    };
    if let Ok(day) = value("day").parse::<Date>() {
        filter.since = clock::dotted(day);
        filter.until = filter.since.clone();
    }
    filter
}

/// When a typed bound falls: a day (`вчера`, `01.12.2026`, `2026-12-01`)
/// starts at its midnight, or, as an end, at the next one: "по 01.12"
/// includes the 1st, as people read "с … по …". Anything else is read as
/// the command line's `--since` reads it (`24h`, `2026-12-01 10:00`), exactly.
fn bound(cx: &Context, text: &str, end: bool, now: i64) -> Result<Option<i64>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let tz = &cx.config.server.time_zone;
    let today = clock::day_of(now, tz);
    if let Some(day) = clock::parse_day(text, today) {
        let day = if end { day.tomorrow().unwrap_or(day) } else { day };
        return Ok(Some(clock::day_start(day, tz)));
    }
    // `01.12.2026 10:00`: the day as Russians write it, then a time.
    let typed = text;
    let text = match text.split_once(' ') {
        Some((day, time)) => match clock::parse_day(day, today) {
            Some(day) => format!("{day} {}", time.trim()),
            None => text.to_string(),
        },
        None => text.to_string(),
    };
    parse_since(&text, now, tz)
        .map(Some)
        .map_err(|_| fill(cx.t().bad_time, typed))
}

/// The store's filter for `filter` within what `signed` may see, or the
/// problem with what was typed, in the reader's language.
pub(super) fn history_filter(cx: &Context, signed: &Signed, filter: &Filter) -> Result<HistoryFilter, String> {
    let now = now_ms();
    let t = cx.t();
    let status = if filter.status.is_empty() {
        None
    } else {
        Some(
            filter
                .status
                .parse::<OpStatus>()
                .map_err(|_| fill(t.bad_choice, &filter.status))?,
        )
    };
    let outcome = if filter.outcome.is_empty() {
        None
    } else {
        Some(Failing::parse(&filter.outcome).ok_or_else(|| fill(t.bad_choice, &filter.outcome))?)
    };
    let some = |text: &str| (!text.is_empty()).then(|| text.to_string());
    let mut ids = Vec::new();
    for id in filter.ids.split(',').map(str::trim).filter(|id| !id.is_empty()) {
        let id: i64 = id.parse().map_err(|_| fill(t.bad_choice, id))?;
        ids.push((id, id));
    }
    if ids.len() > MAX_CHOSEN {
        return Err(fill(t.too_many_chosen, MAX_CHOSEN));
    }
    Ok(HistoryFilter {
        ids,
        processing: some(&filter.processing),
        status,
        event: some(&filter.event),
        outcome,
        error_text: some(&filter.error),
        since: bound(cx, &filter.since, false, now)?,
        until: bound(cx, &filter.until, true, now)?,
        within: cx.visible(&signed.role),
        search: some(&filter.q),
        limit: PAGE,
        ..HistoryFilter::default()
    })
}

/// What the totals count for `store`: the filter's processings, event and
/// dates (by whole hours), or the last 30 days when it names none.
fn totals_filter(cx: &Context, signed: &Signed, store: &HistoryFilter, now: i64) -> (TotalsFilter, Date, Date) {
    let tz = &cx.config.server.time_zone;
    // Only what the reader may see: a viewer naming another salon in the
    // address gets no counts of it, as it gets no rows.
    let processings: Vec<String> = cx
        .config
        .processings
        .iter()
        .filter(|p| cx.may_see(&signed.role, &p.name))
        .filter(|p| store.processing.as_ref().is_none_or(|one| *one == p.name))
        .map(|p| p.name.clone())
        .collect();
    let today = clock::day_of(now, tz);
    let since = store.since.unwrap_or_else(|| {
        let first = today
            .checked_sub(jiff::Span::new().days(DEFAULT_DAYS - 1))
            .unwrap_or(today);
        clock::day_start(first, tz)
    });
    let until = store.until.unwrap_or(now).max(since + 1);
    let filter = TotalsFilter {
        processings,
        event: store.event.clone(),
        since,
        until,
    };
    (filter, clock::day_of(since, tz), clock::day_of(until - 1, tz))
}

/// The fields worth a list row beyond the ones it shows by name: the
/// processing's required ones, then the rest in name order.
fn row_fields(cx: &Context, processing: &str, fields: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let required: &[String] = cx.config.processing(processing).map_or(&[], |p| p.require.as_slice());
    let shown_apart = |name: &str| name == EVENT_FIELD || pages::ROW_NAMED.iter().any(|group| group.contains(&name));
    let mut picked: Vec<(String, String)> = required
        .iter()
        .filter(|name| !shown_apart(name))
        .filter_map(|name| fields.get(name).map(|v| (name.clone(), v.clone())))
        .collect();
    if pages::ROW_NAMED
        .iter()
        .all(|group| group.iter().all(|name| !fields.contains_key(*name)))
    {
        // Not a Klientiks event: show what there is.
        for (name, value) in fields {
            if picked.len() >= pages::ROW_FIELDS {
                break;
            }
            if !required.contains(name) && !value.is_empty() && !shown_apart(name) {
                picked.push((name.clone(), value.clone()));
            }
        }
    }
    picked.truncate(pages::ROW_FIELDS);
    picked
}

/// What a bulk replay did, said after it: operations queued again, and
/// those it left alone.
fn replay_notice(cx: &Context) -> Option<String> {
    let count = |key: &str| cx.param(key).and_then(|n| n.parse::<u64>().ok());
    let mut said = Vec::new();
    if let Some(n) = count("requeued_ops") {
        said.push(say(cx.lang, Counted::ReplayQueued, n));
    }
    // `why=3 stopped salon-b`: how many were left alone for one reason.
    let reasons: Vec<(u64, String)> = cx
        .query
        .iter()
        .filter(|(key, _)| key == "why")
        .filter_map(|(_, value)| {
            let mut parts = value.splitn(3, ' ');
            let n = parts.next()?.parse().ok()?;
            let why = crate::replay::Refused::from_parts(parts.next()?, parts.next().unwrap_or(""))?;
            Some((n, cx.t().refused(&why)))
        })
        .collect();
    let refused: u64 = reasons.iter().map(|(n, _)| n).sum();
    if refused > 0 {
        let each: Vec<String> = reasons.iter().map(|(n, why)| format!("{why} ({n})")).collect();
        said.push(format!(
            "{} {}.",
            say(cx.lang, Counted::ReplayRefused, refused),
            each.join("; ")
        ));
    }
    if let Some(n) = count("queued") {
        said.push(say(cx.lang, Counted::DeliveriesQueued, n));
    }
    (!said.is_empty()).then(|| said.join(" "))
}

/// GET /operations: the list, its filter and totals; with `fragment=rows`,
/// only rows, for the live updates (the newer ones after `after`, or the
/// ones named in `refresh` again, with their statuses now); with
/// `fragment=progress`, where chosen operations stand.
pub(super) async fn operations(console: &Arc<Console>, cx: &Context, signed: &Signed) -> Reply {
    let filter = filter_of(|key| cx.param(key));
    let now = now_ms();
    let mut listing = Listing {
        filter: &filter,
        processings: cx
            .config
            .processings
            .iter()
            .filter(|p| cx.may_see(&signed.role, &p.name))
            .map(|p| p.name.as_str())
            .collect(),
        events: Vec::new(),
        rows: Vec::new(),
        next: None,
        first_page: cx.param("before").is_none(),
        notice: replay_notice(cx),
        problem: None,
        range: None,
        totals: None,
        today: clock::day_of(now, &cx.config.server.time_zone),
        progress: None,
    };
    let mut store_filter = match history_filter(cx, signed, &filter) {
        Ok(f) => f,
        Err(problem) => {
            listing.problem = Some(problem);
            return cx.page(
                StatusCode::BAD_REQUEST,
                pages::operations(&cx.frame(Some(signed)), &listing),
            );
        }
    };
    if store_filter.since.is_some() || store_filter.until.is_some() {
        listing.range = Some((store_filter.since, store_filter.until));
    }
    store_filter.before = cx.param("before").and_then(|b| b.parse().ok());
    let live = cx.param("fragment") == Some("rows");
    let chosen = !store_filter.ids.is_empty() && listing.first_page && !live;
    if chosen {
        // Where the chosen operations stand, all of them, not one page.
        let mut every = store_filter.clone();
        every.limit = MAX_CHOSEN;
        let found = read(console, move |reader| reader.history(&every)).await;
        let mut counts: BTreeMap<OpStatus, u64> = BTreeMap::new();
        match found {
            Ok(all) => all.iter().for_each(|s| *counts.entry(s.status).or_default() += 1),
            Err(err) => return cx.read_failed(signed, err),
        }
        let counts: Vec<(OpStatus, u64)> = counts.into_iter().collect();
        if cx.param("fragment") == Some("progress") {
            let here = format!("/operations?{}&fragment=progress", filter.query());
            return cx.page(StatusCode::OK, pages::progress(&cx.frame(Some(signed)), &counts, &here));
        }
        listing.progress = Some(counts);
    }
    if live {
        if let Some(ids) = cx.param("refresh") {
            // Rows already shown, again: only ids, within what the reader may see.
            store_filter = HistoryFilter {
                ids: ids
                    .split(',')
                    .filter_map(|id| id.trim().parse().ok())
                    .take(LIVE_REFRESH)
                    .map(|id| (id, id))
                    .collect(),
                within: cx.visible(&signed.role),
                limit: LIVE_REFRESH,
                ..HistoryFilter::default()
            };
            if store_filter.ids.is_empty() {
                return cx.page(StatusCode::OK, maud::html! {});
            }
        } else if !filter.ids.is_empty() {
            // A list of chosen operations gets no new ones.
            return cx.page(StatusCode::OK, maud::html! {});
        } else {
            // The rows newer than the newest shown. A burst of more than a page
            // between two polls shows its newest page; a reload shows the rest.
            let after: i64 = cx.param("after").and_then(|a| a.parse().ok()).unwrap_or(i64::MAX);
            store_filter.ids = vec![(after.saturating_add(1), i64::MAX)];
        }
    }
    let (totals_filter, first_day, last_day) = totals_filter(cx, signed, &store_filter, now);
    let counted = !live && listing.first_page;
    let found = read(console, move |reader| {
        let summaries = reader.history(&store_filter)?;
        let ids: Vec<i64> = summaries.iter().map(|s| s.id).collect();
        let fields = reader.fields_of(&ids)?;
        let outcomes = reader.outcomes_of(&ids)?;
        let (counts, events) = if counted {
            let seen_since = now - EVENTS_SEEN_DAYS * 24 * 3_600_000;
            (
                reader.totals(&totals_filter)?,
                reader.events_seen(&totals_filter.processings, seen_since)?,
            )
        } else {
            (Vec::new(), Vec::new())
        };
        Ok((summaries, fields, outcomes, counts, events))
    })
    .await;
    let (summaries, mut fields, mut outcomes, counts, events) = match found {
        Ok(found) => found,
        Err(err) => return cx.read_failed(signed, err),
    };
    listing.next = (summaries.len() == PAGE)
        .then(|| summaries.last().map(|s| s.id))
        .flatten();
    listing.rows = summaries
        .into_iter()
        .map(|summary| {
            let own = fields.remove(&summary.id).unwrap_or_default();
            Row {
                extra: row_fields(cx, &summary.processing, &own),
                chips: outcomes.remove(&summary.id).unwrap_or_default(),
                fields: own,
                summary,
            }
        })
        .collect();
    if live {
        return cx.page(StatusCode::OK, pages::rows(&cx.frame(Some(signed)), &listing.rows));
    }
    listing.events = events;
    if !filter.event.is_empty() && !listing.events.contains(&filter.event) {
        listing.events.push(filter.event.clone());
    }
    if counted {
        listing.totals = Some(Totaled {
            totals: by_day(&counts, first_day, last_day, &cx.config.server.time_zone),
            first_day,
            last_day,
            dated: !filter.since.is_empty() || !filter.until.is_empty(),
            narrowed: !filter.status.is_empty()
                || !filter.q.is_empty()
                || !filter.outcome.is_empty()
                || !filter.error.is_empty()
                || !filter.ids.is_empty(),
        });
    }
    cx.page(StatusCode::OK, pages::operations(&cx.frame(Some(signed)), &listing))
}
