//! `hookrelay klientiks EVENT --processing NAME`: the address to paste into
//! Klientiks's "Добавить событие-webhook" form; `--list` lists the events.

use super::{load_config, Cli, Failure};
use crate::klientiks::{find, EVENTS};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The event: its key, English or Russian name (see --list).
    #[arg(required_unless_present = "list")]
    event: Option<String>,
    /// The processing whose address to use.
    #[arg(long, required_unless_present = "list")]
    processing: Option<String>,
    /// List the known events.
    #[arg(long)]
    list: bool,
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    if args.list {
        for event in EVENTS {
            println!("{:<20}  {:<30}  {}", event.key, event.english, event.russian);
        }
        return Ok(());
    }
    let name = args.event.as_deref().unwrap_or_default();
    let event = find(name).ok_or_else(|| {
        Failure::Usage(format!(
            "unknown Klientiks event `{name}`; `hookrelay klientiks --list` lists them"
        ))
    })?;
    let config = load_config(cli)?;
    let processing = super::find_processing(&config, args.processing.as_deref().unwrap_or_default())?;
    println!("{}", event.address(&config.webhook_url(processing)));
    Ok(())
}
