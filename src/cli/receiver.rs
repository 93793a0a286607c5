//! `hookrelay receiver reset URL`: close a receiver's circuit breaker by
//! hand, so its waiting deliveries go out again now instead of waiting for
//! a probe (after the address was fixed, say). A running daemon on the
//! SQLite file does it, asked through its control socket, so its
//! scheduler lets them go at once; otherwise it is written here, and
//! daemons sharing a PostgreSQL database take it within half a second.

use super::{load_config, Cli, Failure};
use crate::{control, store};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Close the receiver's circuit breaker now.
    Reset {
        /// The receiver: any URL on it (scheme://host[:port], the path is ignored).
        url: String,
    },
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let Action::Reset { url } = &args.action;
    let target = super::receiver_target(url)?;
    let config = load_config(cli)?;
    let (was_open, how) = super::through_daemon(
        &config,
        "reset",
        |path| control::ask_breaker_reset(path, &target),
        || Ok(store::close_breaker(config.storage.location(), &target)?),
    )?;
    if was_open {
        println!("receiver {target}: circuit breaker closed{how}; its waiting deliveries go out now");
    } else {
        println!("receiver {target}: its circuit breaker was not open; nothing to do");
    }
    Ok(())
}
