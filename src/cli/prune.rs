//! `hookrelay prune [--dry-run]`: delete finished operations older than
//! `storage.keep_days` now (the daemon also does it hourly). Operations still
//! queued are kept. Safe while the daemon runs: it deletes in short batches, sized as the
//! daemon's own retention sizes them.

use super::{load_config, Cli, Failure};
use crate::clock;
use crate::clock::now_ms;
use crate::retention::{cutoff, prune_with};
use crate::store::{PruneConnection, Reader};

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
    let store = PruneConnection::open(config.storage.location())?;
    let deleted = prune_with(|size| store.batch(before, size))?;
    println!(
        "deleted {deleted} operation(s) received before {}",
        clock::local(before, &config.server.time_zone)
    );
    Ok(())
}
