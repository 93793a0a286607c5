//! `hookrelay status`: per processing and per receiver, what is happening
//! now: enabled or held, silent or not, breaker open or closed, what waits
//! and since when, the last success and the last error. It reads the
//! database, so it works beside the running daemon and without it.

use serde_json::{json, Value};

use super::{load_config, rfc3339, Cli, Failure};
use crate::clock;
use crate::config::Config;
use crate::store::{Backlog, Batch, BatchQueue, ProcessingStatus, Reader, ReceiverStatus, SilenceMark};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// One processing's line of facts.
struct ProcessingReport<'a> {
    name: &'a str,
    enabled: bool,
    last_event: Option<(i64, i64)>,
    silence: Option<SilenceMark>,
    status: ProcessingStatus,
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let config = load_config(cli)?;
    let reader = Reader::open(config.storage.location())?;
    let silences = reader.silences()?;
    let mut processings = Vec::new();
    for p in &config.processings {
        processings.push(ProcessingReport {
            name: &p.name,
            enabled: p.enabled,
            last_event: reader.last_event(&p.name)?,
            silence: silences.iter().find(|s| s.processing == p.name).cloned(),
            status: reader.processing_status(&p.name)?,
        });
    }
    let receivers = reader.receiver_statuses()?;
    let mut batches = Vec::new();
    for (_, m) in config.metrica_actions() {
        batches.push((m.key.as_str(), reader.batch_queue(&m.key)?));
    }
    if args.json {
        let mut json = to_json(&config, &processings, &receivers);
        json["batches"] = batches
            .iter()
            .map(|(key, q)| {
                json!({
                    "action": key,
                    "waiting": q.waiting,
                    "oldest_waiting_since": time(q.oldest),
                    "unfinished_batches": q.unfinished,
                    "last_batch": q.last.as_ref().map(batch_json),
                })
            })
            .collect();
        println!("{json}");
    } else {
        print!("{}", to_text(&config, &processings, &receivers));
        print!("{}", batches_text(&config, &batches));
    }
    Ok(())
}

/// Each metrica action's rows waiting for a batch, and its last batch.
fn batches_text(config: &Config, batches: &[(&str, BatchQueue)]) -> String {
    let at = |ms: i64| clock::local(ms, &config.server.time_zone);
    let mut out = String::new();
    for (key, q) in batches {
        out.push_str(&format!("metrica {key}:\n"));
        let waiting = match q.oldest {
            Some(oldest) => format!("{} rows, the oldest since {}", q.waiting, at(oldest)),
            None => "no rows".to_string(),
        };
        out.push_str(&format!("  waiting:        {waiting} (for a batch)\n"));
        if q.unfinished > 0 {
            out.push_str(&format!("  unfinished:     {} batches\n", q.unfinished));
        }
        let last = q
            .last
            .as_ref()
            .map_or("none yet".to_string(), |b| batch_text(b, config));
        out.push_str(&format!("  last batch:     {last}\n"));
    }
    out
}

/// A batch in a line: its rows, when it was sent, Metrica's upload, its
/// state and counts.
pub(super) fn batch_text(b: &Batch, config: &Config) -> String {
    let at = |ms: i64| clock::local(ms, &config.server.time_zone);
    let mut text = format!("batch {}, {} rows, {}", b.id, b.rows, b.state);
    if let Some(sent) = b.sent_at {
        text.push_str(&format!(", sent {}", at(sent)));
    }
    if let Some(upload) = &b.upload_id {
        text.push_str(&format!(", upload {upload}"));
    }
    if let Some(state) = &b.upload_state {
        text.push_str(&format!(" {state}"));
    }
    let counts: Vec<String> = [
        ("linked", b.linked),
        ("user not found", b.user_not_found),
        ("goal not found", b.goal_not_found),
    ]
    .iter()
    .filter_map(|(name, n)| n.map(|n| format!("{name} {n}")))
    .collect();
    if !counts.is_empty() {
        text.push_str(&format!(" ({})", counts.join(", ")));
    }
    if let (Some(error), "ready" | "sending" | "failed") = (&b.last_error, b.state.as_str()) {
        text.push_str(&format!("; last error: {}", error.say(config.server.language)));
    }
    text
}

fn batch_json(b: &Batch) -> Value {
    json!({
        "id": b.id,
        "rows": b.rows,
        "state": b.state,
        "made_at": rfc3339(b.made_at),
        "sent_at": time(b.sent_at),
        "attempts": b.attempts,
        "upload_id": b.upload_id,
        "upload_state": b.upload_state,
        "linked": b.linked,
        "user_not_found": b.user_not_found,
        "goal_not_found": b.goal_not_found,
        "last_error": b.last_error.as_ref().map(ToString::to_string),
    })
}

fn to_text(config: &Config, processings: &[ProcessingReport], receivers: &[ReceiverStatus]) -> String {
    let tz = &config.server.time_zone;
    let at = |ms: i64| clock::local(ms, tz);
    let backlog = |b: &Backlog| match b.oldest {
        Some(oldest) => format!("{} deliveries, the oldest received {}", b.waiting, at(oldest)),
        None => "nothing".to_string(),
    };
    let mut out = String::new();
    for p in processings {
        let state = match (&p.silence, p.enabled) {
            (_, false) => "held (enabled = false)",
            (Some(_), true) => "silent",
            (None, true) => "enabled",
        };
        out.push_str(&format!("processing {}: {state}\n", p.name));
        let last_event = p.last_event.map_or("none yet".to_string(), |(id, when)| {
            format!("operation {id} at {}", at(when))
        });
        out.push_str(&format!("  last event:     {last_event}\n"));
        if let Some(s) = &p.silence {
            out.push_str(&format!(
                "  silence:        nothing since {} (alerted {})\n",
                at(s.last_event_at),
                at(s.alerted_at)
            ));
        }
        out.push_str(&format!("  waiting:        {}\n", backlog(&p.status.backlog)));
        if p.status.backlog.aging > 0 {
            out.push_str(&format!(
                "  warning:        {} of them waited past half their max_age; they expire unsent if they cannot go in time, the first at {}\n",
                p.status.backlog.aging,
                p.status.backlog.first_expiry.map_or("?".to_string(), at)
            ));
        }
        let delivered = p.status.last_delivered.map_or("none".to_string(), |(id, when)| {
            format!("operation {id} at {}", at(when))
        });
        out.push_str(&format!("  last delivered: {delivered}\n"));
        let failed = p
            .status
            .last_failed
            .as_ref()
            .map_or("none".to_string(), |(id, when, error)| {
                format!(
                    "operation {id} at {}: {}",
                    at(*when),
                    error
                        .as_ref()
                        .map_or("failed".to_string(), |e| e.say(config.server.language))
                )
            });
        out.push_str(&format!("  last failure:   {failed}\n"));
    }
    for r in receivers {
        let s = &r.state;
        let state = match s.open {
            Some(open) => format!(
                "breaker OPEN, failing since {}; next probe {}",
                at(open.since),
                at(open.next_probe_at)
            ),
            None if s.refusing() => "breaker closed; it answers, but its last answer was not accepted".to_string(),
            None => "breaker closed".to_string(),
        };
        out.push_str(&format!("receiver {}: {state}\n", s.target));
        out.push_str(&format!("  waiting:        {}\n", backlog(&r.backlog)));
        let success = s.last_success_at.map_or("none".to_string(), at);
        out.push_str(&format!("  last success:   {success}\n"));
        let error = match (&s.last_error, s.last_error_at) {
            (Some(error), Some(when)) => format!("{} at {}", error.say(config.server.language), at(when)),
            _ => "none".to_string(),
        };
        out.push_str(&format!("  last error:     {error}\n"));
        let policy = config.receiver_policy(&s.target);
        let pacing = match (policy.rate, policy.concurrency) {
            (None, None) => "none".to_string(),
            (rate, concurrency) => [
                rate.map(|r| match policy.burst {
                    1 => format!("rate {r}"),
                    burst => format!("rate {r}, burst {burst}"),
                }),
                concurrency.map(|c| format!("concurrency {c}")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", "),
        };
        out.push_str(&format!("  pacing:         {pacing}\n"));
    }
    if receivers.is_empty() {
        out.push_str("receivers: none has been sent to yet\n");
    }
    out
}

fn time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |ms| Value::String(rfc3339(ms)))
}

fn backlog_json(b: &Backlog) -> Value {
    json!({
        "waiting": b.waiting,
        "oldest_received_at": time(b.oldest),
        "past_half_max_age": b.aging,
        "first_expires_at": time(b.first_expiry),
    })
}

fn to_json(config: &Config, processings: &[ProcessingReport], receivers: &[ReceiverStatus]) -> Value {
    let processings: Vec<Value> = processings
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "enabled": p.enabled,
                "last_event": p.last_event.map(|(id, at)| json!({ "operation": id, "received_at": rfc3339(at) })),
                "silent_since": p.silence.as_ref().map(|s| rfc3339(s.last_event_at)),
                "backlog": backlog_json(&p.status.backlog),
                "last_delivered": p.status.last_delivered.map(|(id, at)| json!({ "operation": id, "at": rfc3339(at) })),
                "last_failed": p.status.last_failed.as_ref().map(|(id, at, error)| {
                    json!({ "operation": id, "at": rfc3339(*at), "error": error.as_ref().map(ToString::to_string) })
                }),
            })
        })
        .collect();
    let receivers: Vec<Value> = receivers
        .iter()
        .map(|r| {
            let s = &r.state;
            let policy = config.receiver_policy(&s.target);
            json!({
                "receiver": s.target,
                "breaker": if s.open.is_some() { "open" } else { "closed" },
                "failing_since": time(s.failing_since),
                "next_probe_at": time(s.open.map(|o| o.next_probe_at)),
                "failures_in_a_row": s.failures,
                "backlog": backlog_json(&r.backlog),
                "last_success_at": time(s.last_success_at),
                "last_error": s.last_error.as_ref().map(ToString::to_string),
                "last_error_at": time(s.last_error_at),
                "rate": policy.rate.map(|r| r.to_string()),
                "concurrency": policy.concurrency,
            })
        })
        .collect();
    json!({ "processings": processings, "receivers": receivers })
}
