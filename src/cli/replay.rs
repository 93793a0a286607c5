//! `hookrelay replay ID…` or `--status failed|held [--since] [--processing]`:
//! queue fresh deliveries with the current config's actions. Old attempts
//! stay in history. What is queued is [`crate::replay`]'s rule. While a
//! daemon runs on the SQLite file, it does the queuing, with its running
//! config, asked through its control socket ([`control`]).

use super::{load_config, Cli, Failure};
use crate::model::OpStatus;
use crate::store::{HistoryFilter, Reader};
use crate::{control, replay};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Operation ids, as `history` lists them.
    ids: Vec<i64>,
    /// Instead of ids: every operation with this status (failed, held, partial, …).
    #[arg(long, value_parser = super::history::parse_status(), conflicts_with = "ids")]
    status: Option<OpStatus>,
    /// With --status: only operations received within this long (e.g. 24h) or since a time.
    #[arg(long, requires = "status")]
    since: Option<String>,
    /// With --status: only this processing.
    #[arg(long, requires = "status")]
    processing: Option<String>,
    /// Also send held operations of processings that are still stopped (enabled = false).
    #[arg(long)]
    include_stopped: bool,
    /// Also send operations older than an action's max_age (the destination may refuse them).
    #[arg(long)]
    force: bool,
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    if args.ids.is_empty() && args.status.is_none() {
        return Err(Failure::Usage("name operation ids, or --status failed|held".into()));
    }
    let config = load_config(cli)?;
    let since = super::history::resolve_since(args.since.as_deref(), &config)?;
    let reader = Reader::open(config.storage.location())?;
    let ids: Vec<i64> = if args.ids.is_empty() {
        replay::select_ids(
            &reader,
            &HistoryFilter {
                processing: args.processing.clone(),
                status: args.status,
                since,
                ..HistoryFilter::default()
            },
        )?
    } else {
        for &id in &args.ids {
            if reader.operation(id)?.is_none() {
                return Err(Failure::Runtime(format!("no operation {id}")));
            }
        }
        args.ids.clone()
    };
    let ask = replay::Ask {
        include_stopped: args.include_stopped,
        force: args.force,
        source: replay::command_line_source(),
    };
    // A running daemon queues them through its writer, with its running
    // config; a connection of our own would keep its webhooks waiting.
    let (report, how) = super::through_daemon(
        &config,
        "replay",
        |path| match ids.is_empty() {
            true => control::Asked::NoDaemon,
            false => control::ask_replay(path, &ids, &ask),
        },
        || {
            let operations = super::operations(&reader, &ids)?;
            let queue = replay::Queue::Database(config.storage.location());
            Ok(replay::run(&config, &operations, &ask, &queue)?)
        },
    )?;
    for (id, why) in &report.refused {
        println!("operation {id}: not replayed: {why}");
    }
    println!(
        "queued {} deliveries for {} operation(s){how}",
        report.queued, report.operations
    );
    Ok(())
}
