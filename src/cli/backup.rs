//! `hookrelay backup PATH`: a consistent copy of the database, safe while
//! the daemon runs (README, "Backup and restore").

use std::path::PathBuf;
use std::time::Instant;

use super::{load_config, Cli, Failure};
use crate::store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The new file to write (it must not exist).
    path: PathBuf,
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let config = load_config(cli)?;
    let started = Instant::now();
    let report = store::backup(&config.storage.path, &args.path)?;
    println!(
        "backed up {} operation(s) to {} ({:.1} MB) in {:.1} s",
        report.operations,
        args.path.display(),
        report.bytes as f64 / 1_048_576.0,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
