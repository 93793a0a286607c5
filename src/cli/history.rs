//! `hookrelay history`: received operations, newest first, as a table or JSON.

use super::{load_config, rows, Cli, Failure};
use crate::clock;
use crate::clock::now_ms;
use crate::config::Config;
use crate::model::OpStatus;
use crate::store::{HistoryFilter, Reader};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only these operations: ids and ranges, e.g. 12,15-20 (as notifications name them).
    #[arg(long, value_parser = parse_ids)]
    id: Option<Ids>,
    /// Only this processing.
    #[arg(long)]
    processing: Option<String>,
    /// Only this status (queued, delivered, failed, partial, skipped, duplicate, held, rejected).
    #[arg(long, value_parser = parse_status())]
    status: Option<OpStatus>,
    /// Only operations received within this long (24h, 7d), or since a date
    /// (2026-11-25) or time (2026-11-25 10:00) in server.time_zone.
    #[arg(long)]
    since: Option<String>,
    /// At most this many operations.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print a JSON array for scripts (with --follow: one JSON object per line).
    #[arg(long)]
    json: bool,
    /// Keep printing new operations and status changes until Ctrl-C, like `tail -f`.
    #[arg(long, conflicts_with = "id")]
    follow: bool,
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

/// `--status`'s parser: the statuses are its possible values, so shell
/// completions offer them.
pub fn parse_status() -> impl clap::builder::TypedValueParser<Value = OpStatus> {
    use clap::builder::TypedValueParser;
    let names: Vec<&'static str> = OpStatus::ALL.iter().map(|s| s.as_str()).collect();
    clap::builder::PossibleValuesParser::new(names).try_map(|text| text.parse::<OpStatus>())
}

/// A `--since` read in the config's time zone (see [`clock::parse_since`]);
/// a usage error if it does not parse.
pub fn resolve_since(text: Option<&str>, config: &Config) -> Result<Option<i64>, Failure> {
    resolve_time("--since", text, config)
}

/// A point in time given to `flag`, read like `--since`; the error names the flag.
pub fn resolve_time(flag: &str, text: Option<&str>, config: &Config) -> Result<Option<i64>, Failure> {
    text.map(|t| {
        clock::parse_since(t, now_ms(), &config.server.time_zone).map_err(|e| Failure::Usage(format!("{flag}: {e}")))
    })
    .transpose()
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let config = load_config(cli)?;
    let since = resolve_since(args.since.as_deref(), &config)?;
    let reader = Reader::open(config.storage.location())?;
    if args.follow {
        let follow = super::follow::Follow {
            processing: args.processing.clone(),
            status: args.status,
            since,
            limit: args.limit,
            json: args.json,
            tz: config.server.time_zone.clone(),
            lang: config.server.language,
        };
        return super::follow::run(&reader, &follow);
    }
    let operations = reader.history(&HistoryFilter {
        ids: args.id.clone().map(|ids| ids.0).unwrap_or_default(),
        processing: args.processing.clone(),
        status: args.status,
        since,
        limit: args.limit,
        ..HistoryFilter::default()
    })?;
    if args.json {
        let list: Vec<_> = operations.iter().map(rows::to_json).collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    if operations.is_empty() {
        println!("no operations match");
        return Ok(());
    }
    println!("{}", rows::HEADER);
    for op in &operations {
        println!("{}", rows::row(op, &config.server.time_zone, config.server.language));
    }
    Ok(())
}
