//! `hookrelay cancel ID…` or `--receiver URL`: cancel waiting deliveries
//! (`pending` or `retrying`), of these operations or to that receiver.
//! Each becomes `cancelled`, never sent again, with who cancelled it as its
//! last error; deliveries being sent right now (`in_flight`) finish. A
//! running daemon on the SQLite file does it through its writer, asked
//! through its control socket.

use super::{load_config, Cli, Failure};
use crate::control;
use crate::replay::command_line_source;
use crate::store::{self, Waiting};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Operation ids, as `history` lists them: their waiting deliveries.
    ids: Vec<i64>,
    /// Instead of ids: every waiting delivery to this receiver (any URL on it).
    #[arg(long, conflicts_with = "ids")]
    receiver: Option<String>,
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let which: Vec<Waiting> = match &args.receiver {
        Some(url) => vec![Waiting::To(super::receiver_target(url)?)],
        None if args.ids.is_empty() => {
            return Err(Failure::Usage("name operation ids, or --receiver URL".into()));
        }
        None => args.ids.iter().map(|&id| Waiting::Of(id)).collect(),
    };
    let config = load_config(cli)?;
    let source = command_line_source();
    let mut total = 0;
    let mut how = "";
    for which in &which {
        let (n, by) = super::through_daemon(
            &config,
            "cancel",
            |path| control::ask_cancel(path, which, &source),
            || Ok(store::cancel_waiting(config.storage.location(), which, &source)?),
        )?;
        total += n;
        how = by;
    }
    println!("cancelled {total} waiting deliveries{how}");
    Ok(())
}
