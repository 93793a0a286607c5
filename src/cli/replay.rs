//! `hookrelay replay ID…` or `--status failed|held [--since] [--processing]`:
//! queue fresh deliveries with the current config's actions. Old attempts
//! stay in history. What is queued is [`crate::replay`]'s rule.

use super::{load_config, Cli, Failure};
use crate::model::OpStatus;
use crate::replay;
use crate::store::{HistoryFilter, OperationView, Reader};

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
    let reader = Reader::open(config.storage.location())?;
    let operations: Vec<OperationView> = if args.ids.is_empty() {
        replay::select(
            &reader,
            &HistoryFilter {
                processing: args.processing.clone(),
                status: args.status,
                since,
                ..HistoryFilter::default()
            },
        )?
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
    let report = replay::run(&config, &operations)?;
    for (id, why) in &report.refused {
        println!("operation {id}: not replayed: {why}");
    }
    println!(
        "queued {} deliveries for {} operation(s)",
        report.queued, report.operations
    );
    Ok(())
}
