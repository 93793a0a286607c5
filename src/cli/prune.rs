//! `hookrelay prune [--dry-run]`: delete finished operations older than
//! `storage.keep_days` now (the daemon also does it hourly). Operations still
//! queued are kept. Safe while the daemon runs: on a SQLite file, the
//! running daemon deletes them through its writer, asked through its
//! control socket ([`control`]); otherwise it deletes in short batches on
//! a connection of its own, sized as the daemon's own retention sizes them.

use super::{load_config, Cli, Failure};
use crate::clock::now_ms;
use crate::retention::{cutoff, prune_with};
use crate::store::{PruneConnection, Reader};
use crate::{clock, control};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only say what would be deleted.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let config = load_config(cli)?;
    let keep_days = config.storage.keep_days;
    let before = cutoff(keep_days, now_ms());
    if args.dry_run {
        let count = Reader::open(config.storage.location())?.prunable(before)?;
        println!(
            "would delete {count} operation(s) received before {} (keep_days = {keep_days}), with their deliveries and attempts",
            clock::local(before, &config.server.time_zone)
        );
        return Ok(());
    }
    // A running daemon deletes them through its writer; a connection of
    // our own would keep its webhooks waiting.
    let (deleted, how) = super::through_daemon(
        &config,
        "prune",
        |path| control::ask_prune(path, before),
        || {
            let store = PruneConnection::open(config.storage.location())?;
            Ok(prune_with(|size| store.batch(before, size))?)
        },
    )?;
    println!(
        "deleted {deleted} operation(s) received before {}{how}",
        clock::local(before, &config.server.time_zone)
    );
    Ok(())
}
