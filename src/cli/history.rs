//! `hookrelay history`: received operations, newest first, as a table or JSON.

use std::time::Duration;

use serde_json::json;

use super::{load_config, rfc3339, Cli, Failure};
use crate::store::{now_ms, HistoryFilter, OpStatus, Reader};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only these operations: ids and ranges, e.g. 12,15-20 (as notifications name them).
    #[arg(long, value_parser = parse_ids)]
    id: Option<Ids>,
    /// Only this processing.
    #[arg(long)]
    processing: Option<String>,
    /// Only this status (queued, delivered, failed, partial, skipped, duplicate, held, rejected).
    #[arg(long, value_parser = parse_status)]
    status: Option<OpStatus>,
    /// Only operations received within this long (e.g. 24h, 7d) or since an RFC 3339 time.
    #[arg(long, value_parser = parse_since)]
    since: Option<i64>,
    /// At most this many operations.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print a JSON array for scripts.
    #[arg(long)]
    json: bool,
}

/// Operation ids as inclusive ranges.
#[derive(Debug, Clone)]
pub struct Ids(pub Vec<(i64, i64)>);

/// `12,15-20` as inclusive ranges.
pub fn parse_ids(text: &str) -> Result<Ids, String> {
    text.split(',')
        .map(|part| {
            let part = part.trim();
            let (from, to) = part.split_once('-').unwrap_or((part, part));
            match (from.trim().parse::<i64>(), to.trim().parse::<i64>()) {
                (Ok(from), Ok(to)) if from <= to => Ok((from, to)),
                _ => Err(format!("`{part}` is not an id or a range such as 15-20")),
            }
        })
        .collect::<Result<_, _>>()
        .map(Ids)
}

pub fn parse_status(text: &str) -> Result<OpStatus, String> {
    text.parse()
}

/// `24h` means "received in the last 24 hours"; an RFC 3339 time is taken as is.
pub fn parse_since(text: &str) -> Result<i64, String> {
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(now_ms() - ago.as_millis() as i64);
    }
    humantime::parse_rfc3339_weak(text)
        .map(|t| {
            t.duration_since(std::time::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_millis() as i64
        })
        .map_err(|_| format!("`{text}` is neither a duration such as 24h nor a time such as 2026-11-25T10:00:00Z"))
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let config = load_config(cli)?;
    let reader = Reader::open(&config.storage.path)?;
    let operations = reader.history(&HistoryFilter {
        ids: args.id.clone().map(|ids| ids.0).unwrap_or_default(),
        processing: args.processing.clone(),
        status: args.status,
        since: args.since,
        limit: args.limit,
    })?;
    if args.json {
        let list: Vec<_> = operations
            .iter()
            .map(|op| {
                json!({
                    "id": op.id,
                    "processing": op.processing,
                    "received_at": rfc3339(op.received_at),
                    "status": op.status.as_str(),
                    "reason": op.reason,
                    "deliveries": op.deliveries,
                    "delivered": op.delivered,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    if operations.is_empty() {
        println!("no operations match");
        return Ok(());
    }
    println!(
        "{:>8}  {:<24}  {:<20}  {:<9}  {:>4}  REASON",
        "ID", "RECEIVED", "PROCESSING", "STATUS", "SENT"
    );
    for op in &operations {
        println!(
            "{:>8}  {:<24}  {:<20}  {:<9}  {:>4}  {}",
            op.id,
            rfc3339(op.received_at),
            op.processing,
            op.status.as_str(),
            format!("{}/{}", op.delivered, op.deliveries),
            op.reason.as_deref().unwrap_or("")
        );
    }
    Ok(())
}
