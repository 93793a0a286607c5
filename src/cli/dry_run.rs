//! `hookrelay try NAME key=value…` (or `--from ID`): what the processing
//! would decide and the exact requests it would send. Sends nothing and
//! writes nothing, unless `--send ACTION` asks to send one of them for
//! real (`try_send.rs`).

use std::collections::BTreeMap;

use serde_json::json;

use super::{load_config, Cli, Failure};
use crate::clock::now_ms;
use crate::model::said::Said;
use crate::model::{duplicate_reason, OpStatus, RawRequest};
use crate::process::{self as rules, fields::Extracted};
use crate::redact;
use crate::store::{Reader, StoreError};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The processing's name.
    name: String,
    /// Fields as key=value.
    #[arg(value_parser = parse_pair)]
    fields: Vec<(String, String)>,
    /// Take the fields of this recorded operation instead.
    #[arg(long, conflicts_with = "fields")]
    from: Option<i64>,
    /// Print one JSON object for scripts.
    #[arg(long, conflicts_with = "send")]
    json: bool,
    /// Send this action's request for real, after a confirmation, and
    /// print the answer and how the action's response rules judge it.
    /// Nothing is recorded.
    #[arg(long, value_name = "ACTION")]
    send: Option<String>,
    /// With --send: do not ask for confirmation.
    #[arg(long, requires = "send")]
    yes: bool,
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{text}` is not key=value"))
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let config = load_config(cli)?;
    let processing = super::find_processing(&config, &args.name)?;
    // Without a database yet there is no history to read or dedupe against.
    let reader = match Reader::open(config.storage.location()) {
        Ok(reader) => Some(reader),
        Err(StoreError::Missing(_)) => None,
        Err(err) => return Err(err.into()),
    };
    let fields: BTreeMap<String, String> = match args.from {
        Some(id) => {
            let reader = reader
                .as_ref()
                .ok_or_else(|| Failure::Runtime("no database yet: nothing is recorded".into()))?;
            reader
                .operation(id)?
                .ok_or_else(|| Failure::Runtime(format!("no operation {id}")))?
                .fields
        }
        None => args.fields.iter().cloned().collect(),
    };
    let request = RawRequest {
        remote_addr: "try".into(),
        method: "GET".into(),
        query: Vec::new(),
        body: Vec::new(),
        content_type: None,
    };
    let extracted = Extracted::from_fields(fields);
    let op = rules::operation(processing, now_ms(), request, Ok(extracted.clone()));
    let mut status = op.status;
    let mut reason = op.reason.clone();
    if let (Some((key, since)), Some(reader)) = (op.dedupe_candidate(), &reader) {
        // An operation does not duplicate itself: `--from ID` finds its own key.
        match reader.duplicate_of(&processing.name, key, since)? {
            Some(earlier) if Some(earlier) != args.from => {
                status = OpStatus::Duplicate;
                reason = Some(duplicate_reason(key, earlier));
            }
            _ => {}
        }
    }
    let mut warnings: Vec<Said> = op.warnings.iter().map(|w| w.said.clone()).collect();
    let deliveries = match status {
        OpStatus::Queued | OpStatus::Failed => op.deliveries,
        // A held processing renders nothing when it records an event, but
        // the user setting it up wants to see what enabling it would send.
        OpStatus::Held => {
            let mut rendered = Vec::new();
            for action in &processing.actions {
                let (delivery, more) = rules::delivery(action, &extracted, now_ms())
                    .map_err(|e| Failure::Runtime(format!("action `{}`: {e}", action.name)))?;
                warnings.extend(more.into_iter().map(|w| w.said));
                rendered.push(delivery);
            }
            rendered
        }
        _ => Vec::new(),
    };
    if let Some(action) = &args.send {
        let ask = super::try_send::Ask {
            action,
            confirmed: args.yes,
            lang: config.server.language,
        };
        return super::try_send::run(processing, status, reason.as_ref(), &deliveries, &ask);
    }
    if args.json {
        let deliveries: Vec<_> = deliveries
            .iter()
            .map(|d| {
                json!({
                    "action": d.action,
                    "method": d.method,
                    "url": redact::url_text(&d.url),
                    "headers": d.headers.iter().map(|(n, v)| json!([n, redact::header(n, v)])).collect::<Vec<_>>(),
                    "body": d.body.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
                    "refused": d.refused.as_ref().map(ToString::to_string),
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "processing": processing.name,
                "status": status.as_str(),
                "reason": reason.as_ref().map(ToString::to_string),
                "warnings": warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "held": status == OpStatus::Held,
                "deliveries": deliveries,
            })
        );
        return Ok(());
    }
    let lang = config.server.language;
    println!(
        "processing {}: would be {status}{}",
        processing.name,
        reason.map(|r| format!(" ({})", r.say(lang))).unwrap_or_default()
    );
    for warning in &warnings {
        println!("warning: {}", warning.say(lang));
    }
    if status == OpStatus::Held {
        println!("once enabled (enabled = true), it would send:");
    }
    if deliveries.is_empty() {
        println!("nothing would be sent");
        return Ok(());
    }
    for delivery in &deliveries {
        println!();
        println!("action {}:", delivery.action);
        if let Some(why) = &delivery.refused {
            println!("  would fail, not sent: {}", why.say(lang));
            continue;
        }
        super::try_send::print_request(delivery);
    }
    println!();
    println!("(nothing was sent)");
    Ok(())
}
