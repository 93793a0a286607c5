//! `kind = "metrica"`: its keys into a row of a batch upload. The row is
//! rendered when the event arrives (process/metrica.rs) and waits for its
//! batch (deliver/metrica.rs); the action's URL is the upload's, for what
//! history shows.

use super::kinds::{only_for, Built};
use super::*;
use crate::config::kinds::{self as k, Kind, Metrica, Route};
use crate::model::response::ResponseRules;

/// Most rows in one upload: Metrica takes files up to 1 GB, and a row is
/// short, but a batch is read into memory to send it.
const MOST_ROWS: usize = 100_000;

/// Default wait before a batch goes out with what it has.
const BATCH_EVERY: Duration = Duration::from_secs(15 * 60);

/// Default rows that send a batch at once.
const BATCH_MAX: usize = 1000;

/// Default wait between two reads of an upload's state: Metrica takes
/// up to two hours to process one, and every read counts against the
/// login's 5 000 requests a day.
const POLL_EVERY: Duration = Duration::from_secs(5 * 60);

/// Metrica's linking window for offline data: 21 days.
const WINDOW: Duration = Duration::from_secs(21 * 24 * 3600);

/// `kind = "metrica"`: rows of `route`'s CSV for `counter`.
pub(super) fn metrica(raw: &mut RawAction) -> Result<Built, String> {
    only_for("metrica", raw)?;
    if raw.max_age.is_some() {
        return Err(
            "max_age: a metrica row is refused once it is older than `window` (21 days by default); set window instead"
                .into(),
        );
    }
    let counter = raw
        .counter
        .take()
        .ok_or("counter: missing (the Metrica tag's number)")?;
    let token = raw
        .token
        .take()
        .ok_or("token: missing (an OAuth token with access to the tag: oauth.yandex.ru)")?;
    if token.expose().trim().is_empty() || token.expose().trim().contains(char::is_whitespace) {
        return Err("token: not a token (paste the OAuth token whole, on one line)".into());
    }
    let route = match raw.route.take().as_deref() {
        None | Some("orders") => Route::Orders,
        Some("conversions") => Route::Conversions,
        Some(other) => return Err(format!("route: `{other}` is not one of orders, conversions")),
    };
    let api = match raw.api_url.take() {
        None => k::METRICA_API.to_string(),
        Some(api) => super::kinds::api_base(&api)?,
    };
    let time_zone_name = raw.time_zone.take().unwrap_or_else(|| "Europe/Moscow".into());
    let time_zone = crate::clock::time_zone(&time_zone_name).map_err(|e| format!("time_zone: {e}"))?;
    let batch_every = raw.batch_every.take().map_or(BATCH_EVERY, |d| d.0);
    if batch_every < Duration::from_secs(1) {
        return Err("batch_every: must be at least 1s".into());
    }
    let batch_max = raw.batch_max.take().unwrap_or(BATCH_MAX);
    if batch_max == 0 || batch_max > MOST_ROWS {
        return Err(format!("batch_max: must be between 1 and {MOST_ROWS}"));
    }
    let poll_every = raw.poll_every.take().map_or(POLL_EVERY, |d| d.0);
    if poll_every < Duration::from_secs(1) {
        return Err("poll_every: must be at least 1s".into());
    }
    let window = raw.window.take().map_or(WINDOW, |d| d.0);
    if window.is_zero() {
        return Err("window: must be longer than zero".into());
    }
    let mut row = Vec::new();
    let table = raw
        .row
        .take()
        .ok_or_else(|| format!("row: missing (the CSV's columns: {})", route.columns().join(", ")))?;
    for (name, value) in table {
        if !route.columns().contains(&name.as_str()) {
            return Err(format!(
                "row.{name}: not a column of the {} route ({})",
                route.name(),
                route.columns().join(", ")
            ));
        }
        let source = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(n) => n.to_string(),
            other => return Err(format!("row.{name}: must be a string, found {}", other.type_str())),
        };
        row.push((name.clone(), parse_template(&format!("row.{name}"), &source, &source)?));
    }
    for required in route.required() {
        if !row.iter().any(|(name, _)| name == required) {
            return Err(format!("row.{required}: missing (every {} row needs it)", route.name()));
        }
    }
    let ids: Vec<&str> = route
        .identifiers()
        .iter()
        .copied()
        .filter(|id| row.iter().any(|(name, _)| name == id))
        .collect();
    match (route, ids.len()) {
        (_, 0) => {
            return Err(format!(
                "row: name who the row is about, one of {}",
                route.identifiers().join(", ")
            ))
        }
        (Route::Conversions, 2..) => {
            return Err(format!(
                "row: one of ClientId, Yclid, UserId per upload, not {}",
                ids.join(" and ")
            ))
        }
        _ => {}
    }
    row.sort_by_key(|(name, _)| route.columns().iter().position(|c| c == name));
    let metrica = Metrica {
        counter,
        token,
        route,
        api,
        time_zone,
        time_zone_name,
        batch_every,
        batch_max,
        poll_every,
        window,
        row,
        key: raw.name.clone(),
    };
    Ok(Built {
        method: Method::Post,
        url: Template::literal(&metrica.upload_url()),
        query: Vec::new(),
        headers: Vec::new(),
        body: None,
        content_type: None,
        rules: ResponseRules::expecting(None),
        kind: Kind::Metrica(Box::new(metrica)),
    })
}
