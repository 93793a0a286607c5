//! `hookrelay replay ID…` or `--status failed|held [--since] [--processing]`:
//! queue fresh deliveries with the current config's actions. Old attempts
//! stay in history. Actions an operation already delivered are not sent
//! again, so replaying a `partial` operation only retries what failed.

use super::{load_config, Cli, Failure};
use crate::model::{DeliveryStatus, OpStatus};
use crate::process::{self as rules, fields::Extracted};
use crate::store::{queue_replays, HistoryFilter, OperationView, Reader, Replay};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Operation ids, as `history` lists them.
    ids: Vec<i64>,
    /// Instead of ids: every operation with this status (failed, held, partial, …).
    #[arg(long, value_parser = super::history::parse_status, conflicts_with = "ids")]
    status: Option<OpStatus>,
    /// With --status: only operations received within this long (e.g. 24h) or since a time.
    #[arg(long, requires = "status")]
    since: Option<String>,
    /// With --status: only this processing.
    #[arg(long, requires = "status")]
    processing: Option<String>,
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    if args.ids.is_empty() && args.status.is_none() {
        return Err(Failure::Usage("name operation ids, or --status failed|held".into()));
    }
    let config = load_config(cli)?;
    let since = super::history::resolve_since(args.since.as_deref(), &config)?;
    let reader = Reader::open(&config.storage.path)?;
    let operations: Vec<OperationView> = if args.ids.is_empty() {
        let filter = HistoryFilter {
            ids: Vec::new(),
            processing: args.processing.clone(),
            status: args.status,
            since,
            limit: i64::MAX as usize,
            ..HistoryFilter::default()
        };
        let mut list = Vec::new();
        for summary in reader.history(&filter)? {
            list.extend(reader.operation(summary.id)?);
        }
        list
    } else {
        args.ids
            .iter()
            .map(|&id| {
                reader
                    .operation(id)?
                    .ok_or_else(|| Failure::Runtime(format!("no operation {id}")))
            })
            .collect::<Result<_, _>>()?
    };
    let mut replays = Vec::new();
    for op in &operations {
        match plan(&config, op) {
            Ok(replay) => replays.push(replay),
            Err(why) => println!("operation {}: not replayed: {why}", op.summary.id),
        }
    }
    let queued = queue_replays(&config.storage.path, &replays)?;
    println!("queued {queued} deliveries for {} operation(s)", replays.len());
    Ok(())
}

/// The deliveries to queue for `op`, or why there are none.
fn plan(config: &crate::config::Config, op: &OperationView) -> Result<Replay, String> {
    match op.summary.status {
        OpStatus::Queued => return Err("it is still being delivered".into()),
        OpStatus::Rejected => return Err("its body did not parse; fix the sender and send it again".into()),
        _ => {}
    }
    let processing = config
        .processing(&op.summary.processing)
        .ok_or_else(|| format!("processing `{}` is no longer in the config", op.summary.processing))?;
    let delivered: Vec<&str> = op
        .deliveries
        .iter()
        .filter(|d| d.status == DeliveryStatus::Delivered)
        .map(|d| d.action.as_str())
        .collect();
    let extracted = Extracted::from_fields(op.fields.clone());
    let lookup = |name: &str| extracted.usable(name);
    let mut deliveries = Vec::new();
    for action in processing
        .actions
        .iter()
        .filter(|a| !delivered.contains(&a.name.as_str()))
    {
        let (delivery, _) = rules::delivery(action, lookup).map_err(|e| format!("action `{}`: {e}", action.name))?;
        deliveries.push(delivery);
    }
    if deliveries.is_empty() {
        return Err("every action was already delivered".into());
    }
    Ok(Replay {
        operation_id: op.summary.id,
        deliveries,
    })
}
