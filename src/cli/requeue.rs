//! `hookrelay requeue [ID…] [--processing NAME]`: render the waiting
//! deliveries again from the current config, so those queued before its
//! action's URL or templates were fixed go out with the fix
//! ([`crate::replay::rerender`]). With no ids, every operation still
//! queued (of the processing). A running daemon on the SQLite file does it
//! with its running config, asked through its control socket.

use super::{load_config, Cli, Failure};
use crate::model::OpStatus;
use crate::store::{HistoryFilter, Reader};
use crate::{control, replay};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Operation ids, as `history` lists them; none: every queued operation.
    ids: Vec<i64>,
    /// Without ids: only this processing's.
    #[arg(long, conflicts_with = "ids")]
    processing: Option<String>,
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let config = load_config(cli)?;
    let reader = Reader::open(config.storage.location())?;
    let ids: Vec<i64> = if args.ids.is_empty() {
        replay::select_ids(
            &reader,
            &HistoryFilter {
                processing: args.processing.clone(),
                status: Some(OpStatus::Queued),
                ..HistoryFilter::default()
            },
        )?
    } else {
        args.ids.clone()
    };
    let (done, how) = super::through_daemon(
        &config,
        "requeue",
        |path| match ids.is_empty() {
            true => control::Asked::NoDaemon,
            false => control::ask_requeue(path, &ids),
        },
        || {
            let operations = super::operations(&reader, &ids)?;
            let queue = replay::Queue::Database(config.storage.location());
            Ok(replay::rerender(&config, &operations, &queue)?)
        },
    )?;
    for (id, action, why) in &done.left {
        println!("operation {id}: action {action}: left as it was: {why}");
    }
    println!(
        "rendered {} waiting deliveries again from the current config{how}",
        done.rerendered
    );
    Ok(())
}
