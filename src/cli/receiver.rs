//! `hookrelay receiver reset URL`: close a receiver's circuit breaker by
//! hand, so its waiting deliveries go out again now instead of waiting for
//! a probe (after the address was fixed, say). A running daemon on the
//! SQLite file does it, asked through its control socket, so its
//! scheduler lets them go at once; otherwise it is written here, and
//! daemons sharing a PostgreSQL database take it within half a second.

use super::{load_config, Cli, Failure};
use crate::model::target_of;
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
    if url::Url::parse(url).map_or(true, |u| !u.has_host()) {
        return Err(Failure::Usage(format!(
            "`{url}` is not a URL with a host, such as https://plarin.example"
        )));
    }
    let target = target_of(url);
    let config = load_config(cli)?;
    let asked = match config.storage.location().file() {
        Some(path) => control::ask_breaker_reset(path, &target),
        None => control::Asked::NoDaemon,
    };
    let (was_open, how) = match asked {
        control::Asked::Done(was_open) => (was_open, ", by the running daemon"),
        control::Asked::Failed(reason) => return Err(Failure::Runtime(format!("the daemon's reset failed: {reason}"))),
        control::Asked::NoDaemon => (store::close_breaker(config.storage.location(), &target)?, ""),
    };
    if was_open {
        println!("receiver {target}: circuit breaker closed{how}; its waiting deliveries go out now");
    } else {
        println!("receiver {target}: its circuit breaker was not open; nothing to do");
    }
    Ok(())
}
