//! `hookrelay check`: validate the config like `nginx -t`, print each
//! processing's webhook address, and warn about template fields the latest
//! recorded event of that processing did not carry, and about breakers
//! that open only after an action's whole retry budget. Errors exit 2;
//! warnings are printed and exit 0. The verdict is the last line.

use super::{load_config, Cli, Failure};
use crate::config::Config;
use crate::redact;
use crate::store::{Reader, StoreError};

pub fn run(cli: &Cli) -> Result<(), Failure> {
    let config = load_config(cli)?;
    let mut warned = 0;
    // The daemon's first step, told as a warning: check runs as whoever
    // runs it, often not the service's user, and systemd creates a
    // StateDirectory= folder only when the service starts.
    let location = config.storage.location();
    match location.file() {
        Some(path) => {
            if let Err(err) = crate::store::check_folder(path) {
                println!("warning: {err}; the daemon cannot start until it can write there");
                warned += 1;
            }
        }
        None => {
            if let Err(err) = Reader::open(&location) {
                if !matches!(err, StoreError::Missing(_)) {
                    println!("warning: {err}; the daemon cannot start until it can reach the database");
                    warned += 1;
                }
            }
        }
    }
    println!("database: {location}");
    if let Some(email) = config.notify.as_ref().and_then(|n| n.email.as_ref()) {
        println!("email: to {} via {}", email.to.join(", "), email.transport.describe());
    }
    println!(
        "console: http://{}/ ({})",
        config.server.admin_listen,
        if config.server.admin_token.is_some() {
            "the admin signs in with server.admin_token"
        } else {
            "no server.admin_token: only viewers can sign in"
        }
    );
    for viewer in &config.console.viewers {
        let sees: Vec<&str> = config
            .processings
            .iter()
            .filter(|p| viewer.sees(&p.name))
            .map(|p| p.name.as_str())
            .collect();
        if sees.is_empty() {
            println!(
                "warning: console viewer {}: its processings ({}) match no processing",
                viewer.name,
                viewer.processings.join(", ")
            );
        } else {
            println!("console viewer {}: sees {}", viewer.name, sees.join(", "));
        }
    }
    for p in &config.processings {
        let state = if p.enabled {
            ""
        } else {
            " (disabled: requests are held)"
        };
        println!("processing {}{state}", p.name);
        println!("  webhook: {}", config.webhook_url(p));
        for action in &p.actions {
            println!(
                "  action {}: {} {}",
                action.name,
                action.method.as_str(),
                redact::url_like_text(action.url.source())
            );
        }
    }
    for r in &config.receivers {
        let p = &r.policy;
        let rate = match (p.rate, p.burst) {
            (None, _) => "unpaced".to_string(),
            (Some(rate), 1) => format!("rate {rate}"),
            (Some(rate), burst) => format!("rate {rate}, burst {burst}"),
        };
        let concurrency = p.concurrency.map_or(String::new(), |c| format!(", concurrency {c}"));
        let breaker = match p.breaker.failures {
            0 => "breaker off".to_string(),
            n => format!(
                "breaker after {n} failures, probes every {}..{}",
                humantime::format_duration(p.breaker.probe),
                humantime::format_duration(p.breaker.max_probe)
            ),
        };
        println!("receiver {}: {rate}{concurrency}, {breaker}", r.target);
    }
    let warnings: Vec<String> = config
        .late_breakers()
        .into_iter()
        .chain(config.token_warnings(crate::clock::now_ms()))
        .chain(stale_waiting(&config)?)
        .chain(field_warnings(&config)?)
        .collect();
    for warning in &warnings {
        println!("warning: {warning}");
    }
    // The verdict comes last, as `nginx -t` says it: below the warnings it
    // sums up, not above one that `run` would stop on.
    match warned + warnings.len() {
        0 => println!("{}: ok", config.path.display()),
        n => println!("{}: ok, with {n} warning(s) above", config.path.display()),
    }
    Ok(())
}

/// Actions whose waiting deliveries were rendered with an older config:
/// the newest waiting delivery of each processing, rendered again now,
/// would go out differently.
fn stale_waiting(config: &Config) -> Result<Vec<String>, Failure> {
    let Ok(reader) = Reader::open(config.storage.location()) else {
        return Ok(Vec::new());
    };
    let mut warnings = Vec::new();
    for processing in &config.processings {
        let newest = reader.history(&crate::store::HistoryFilter {
            processing: Some(processing.name.clone()),
            status: Some(crate::model::OpStatus::Queued),
            limit: 1,
            ..crate::store::HistoryFilter::default()
        })?;
        let Some(op) = newest.first().map(|s| reader.operation(s.id)).transpose()?.flatten() else {
            continue;
        };
        let extracted = crate::process::fields::Extracted::from_fields(op.fields.clone());
        let waiting = op.deliveries.iter().filter(|d| {
            matches!(
                d.status,
                crate::model::DeliveryStatus::Pending | crate::model::DeliveryStatus::Retrying
            )
        });
        for d in waiting {
            let Some(action) = processing.actions.iter().find(|a| a.name == d.action) else {
                continue;
            };
            let Ok((now, _)) = crate::process::delivery(action, &extracted, op.summary.received_at) else {
                continue;
            };
            if now.redacted != d.request {
                warnings.push(format!(
                    "processing `{}`: action `{}`: deliveries waiting now were rendered with an older config (operation {} would now go as {}); `hookrelay requeue --processing {}` renders them again",
                    processing.name, d.action, op.summary.id, now.redacted, processing.name
                ));
            }
        }
    }
    Ok(warnings)
}

/// Fields the config reads that the latest event of each processing lacked.
fn field_warnings(config: &Config) -> Result<Vec<String>, Failure> {
    let reader = match Reader::open(config.storage.location()) {
        Ok(reader) => reader,
        // No database yet: nothing received, nothing to compare with.
        Err(StoreError::Missing(_)) => return Ok(Vec::new()),
        // Said above; the config itself is fine.
        Err(_) if config.storage.url.is_some() => return Ok(Vec::new()),
        Err(err) => return Err(err.into()),
    };
    let mut warnings = Vec::new();
    for processing in &config.processings {
        let Some(latest) = reader.latest_with_fields(&processing.name)? else {
            continue;
        };
        let had: Vec<&str> = latest.fields.keys().map(String::as_str).collect();
        for field in processing.fields_used() {
            if !latest.fields.contains_key(field) {
                let near = crate::process::closest_field(field, latest.fields.keys().map(String::as_str))
                    .map(|near| format!(" (did you mean `{near}`?)"))
                    .unwrap_or_default();
                warnings.push(format!(
                    "processing `{}`: `{field}` was not in the last event (operation {}){near}; it had: {}",
                    processing.name,
                    latest.summary.id,
                    if had.is_empty() {
                        "no fields".to_string()
                    } else {
                        had.join(", ")
                    }
                ));
            }
        }
    }
    Ok(warnings)
}
