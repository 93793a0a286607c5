//! `hookrelay show ID`: one operation with its fields, warnings,
//! deliveries and every attempt.

use serde_json::json;

use super::{load_config, rfc3339, Cli, Failure};
use crate::clock;
use crate::model::said::Said;
use crate::store::{OperationView, Reader};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The operation id, as `history` lists it.
    id: i64,
    /// Print one JSON object for scripts.
    #[arg(long)]
    json: bool,
}

/// Where a metrica row stands: waiting for its batch, or in one.
fn batch_line(batch: &Option<crate::store::Batch>, config: &crate::config::Config) -> String {
    match batch {
        None => "waits for the next batch".into(),
        Some(b) => super::status::batch_text(b, config),
    }
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let config = load_config(cli)?;
    let reader = Reader::open(config.storage.location())?;
    let op = reader
        .operation(args.id)?
        .ok_or_else(|| Failure::Runtime(format!("no operation {}", args.id)))?;
    if args.json {
        println!("{}", to_json(&op));
    } else {
        print_text(&op, &config);
    }
    Ok(())
}

/// The stable JSON shape of `show --json`.
fn to_json(op: &OperationView) -> serde_json::Value {
    let deliveries: Vec<_> = op
        .deliveries
        .iter()
        .map(|d| {
            let attempts: Vec<_> = d
                .attempts
                .iter()
                .map(|a| {
                    json!({
                        "started_at": rfc3339(a.started_at),
                        "duration_ms": a.duration_ms,
                        "request": a.request,
                        "http_status": a.http_status,
                        "response_body": a.response_body,
                        "error": a.error.as_ref().map(ToString::to_string),
                        "verdict": a.judged,
                    })
                })
                .collect();
            json!({
                "id": d.id,
                "action": d.action,
                "status": d.status.as_str(),
                "request": d.request,
                "next_attempt_at": if d.batch.is_some() { serde_json::Value::Null } else { json!(rfc3339(d.next_attempt_at)) },
                "batch": d.batch.as_ref().map(|b| b.as_ref().map_or(json!("waiting"), |b| json!({
                    "id": b.id,
                    "rows": b.rows,
                    "state": b.state,
                    "sent_at": b.sent_at.map(rfc3339),
                    "upload_id": b.upload_id,
                    "upload_state": b.upload_state,
                    "linked": b.linked,
                    "user_not_found": b.user_not_found,
                    "goal_not_found": b.goal_not_found,
                }))),
                "last_error": d.last_error.as_ref().map(ToString::to_string),
                "attempts": attempts,
            })
        })
        .collect();
    json!({
        "id": op.summary.id,
        "processing": op.summary.processing,
        "received_at": rfc3339(op.summary.received_at),
        "status": op.summary.status.as_str(),
        "reason": op.summary.reason.as_ref().map(ToString::to_string),
        "remote_addr": op.request.remote_addr,
        "method": op.request.method,
        "query": String::from_utf8_lossy(&op.request.query),
        "content_type": op.request.content_type,
        "body": String::from_utf8_lossy(&op.request.body),
        "charset": op.charset,
        "fields": op.fields,
        "warnings": op.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "deliveries": deliveries,
        "replays": op.replays.iter().map(|r| json!({
            "at": rfc3339(r.at),
            "source": r.source,
            "deliveries": r.deliveries,
        })).collect::<Vec<_>>(),
    })
}

/// Characters of a raw body the text view prints.
const SHOWN_BODY_CHARS: usize = 4096;

fn print_text(op: &OperationView, config: &crate::config::Config) {
    let (tz, lang) = (&config.server.time_zone, config.server.language);
    let s = &op.summary;
    println!("operation {}  {}  {}", s.id, s.processing, s.status);
    if let Some(reason) = &s.reason {
        println!("reason:    {}", reason.say(lang));
    }
    println!(
        "received:  {} from {} ({} {})",
        clock::local(s.received_at, tz),
        op.request.remote_addr,
        op.request.method,
        op.charset
    );
    if !op.request.query.is_empty() {
        println!("query:     {}", String::from_utf8_lossy(&op.request.query));
    }
    if !op.request.body.is_empty() {
        // The raw body is what a rejected request is replayed from; long
        // ones are cut here and whole in --json.
        let body = String::from_utf8_lossy(&op.request.body);
        let shown: String = body.chars().take(SHOWN_BODY_CHARS).collect();
        println!(
            "body:      ({}, {} bytes){}",
            op.request.content_type.as_deref().unwrap_or("no content type"),
            op.request.body.len(),
            if shown.len() < body.len() {
                "; the first part, --json has all"
            } else {
                ""
            }
        );
        for line in shown.lines() {
            println!("  {line}");
        }
    }
    println!("fields:");
    super::print_fields(&op.fields);
    for warning in &op.warnings {
        println!("warning:   {}", warning.say(lang));
    }
    for r in &op.replays {
        println!(
            "replayed:  {} by {}, {} deliveries queued",
            clock::local(r.at, tz),
            r.source,
            r.deliveries
        );
    }
    for d in &op.deliveries {
        println!("delivery {}  action {}  {}", d.id, d.action, d.status);
        println!("  request: {}", d.request);
        if let Some(batch) = &d.batch {
            println!("  batch: {}", batch_line(batch, config));
        }
        if d.batch.is_none()
            && matches!(
                d.status,
                crate::model::DeliveryStatus::Retrying | crate::model::DeliveryStatus::Pending
            )
        {
            println!("  next attempt: {}", clock::local(d.next_attempt_at, tz));
        }
        if let Some(error) = &d.last_error {
            println!("  last error: {}", error.say(lang));
        }
        for (n, a) in d.attempts.iter().enumerate() {
            // The error, when kept, is the verdict with the platform's note.
            let outcome = match (&a.judged, a.http_status, &a.error) {
                (_, _, Some(err)) => err.say(lang),
                (Some(judged), _, None) => Said::Answer {
                    verdict: judged.clone(),
                    note: None,
                }
                .say(lang),
                (None, Some(status), None) => format!("HTTP {status}"),
                (None, None, None) => "no answer".into(),
            };
            println!(
                "  attempt {}  {}  {} ms  {}",
                n + 1,
                clock::local(a.started_at, tz),
                a.duration_ms,
                outcome
            );
            if let Some(body) = a.response_body.as_deref().filter(|b| !b.is_empty()) {
                let first_line = body.lines().next().unwrap_or("");
                println!("    response: {}", first_line.chars().take(120).collect::<String>());
            }
        }
    }
}
