//! `hookrelay migrate-store --to postgres://…`: the configured SQLite
//! history copied into an empty PostgreSQL database (README, "When one
//! machine is not enough"). The daemon must be stopped: its lock is held
//! for the copy, so none starts meanwhile.

use std::time::Instant;

use super::{load_config, Cli, Failure};
use crate::store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The empty PostgreSQL database to copy into (postgres://user@host/db).
    #[arg(long, value_name = "URL")]
    to: String,
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let config = load_config(cli)?;
    if config.storage.url.is_some() {
        return Err(Failure::Usage(
            "migrate-store copies from a SQLite database; this config's storage is already storage.url".into(),
        ));
    }
    if !(args.to.starts_with("postgres://") || args.to.starts_with("postgresql://")) {
        return Err(Failure::Usage(format!(
            "--to: `{}` is not a PostgreSQL URL such as postgres://hookrelay@db.example/hookrelay",
            store::Location::Postgres(args.to.clone())
        )));
    }
    let path = &config.storage.path;
    if !path.exists() {
        return Err(store::StoreError::Missing(path.display().to_string()).into());
    }
    // Held until the copy is done: no daemon writes what the copy would miss.
    let _lock = store::lock_daemon(path)?;
    let started = Instant::now();
    let copied = store::migrate_store(path, &args.to, |table, rows| {
        println!("{table}: {rows} row(s)");
    })?;
    let operations = copied
        .iter()
        .find(|(table, _)| *table == "operations")
        .map_or(0, |(_, n)| *n);
    println!(
        "copied {operations} operation(s) from {} to {} in {:.1} s; set [storage] url to it and start the daemon",
        path.display(),
        store::Location::Postgres(args.to.clone()),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
