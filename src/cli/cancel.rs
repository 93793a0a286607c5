//! `hookrelay cancel ID…` or `--receiver URL`: cancel waiting deliveries
//! (`pending` or `retrying`), of these operations or to that receiver.
//! Each becomes `cancelled`, never sent again, with who cancelled it as its
//! last error; deliveries being sent right now (`in_flight`) finish. A
//! running daemon on the SQLite file does it through its writer, asked
//! through its control socket.

use super::{load_config, Cli, Failure};
use crate::control;
use crate::model::target_of;
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
        Some(url) => {
            if url::Url::parse(url).map_or(true, |u| !u.has_host()) {
                return Err(Failure::Usage(format!(
                    "`{url}` is not a URL with a host, such as https://plarin.example"
                )));
            }
            vec![Waiting::To(target_of(url))]
        }
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
        let asked = match config.storage.location().file() {
            Some(path) => control::ask_cancel(path, which, &source),
            None => control::Asked::NoDaemon,
        };
        total += match asked {
            control::Asked::Done(n) => {
                how = ", by the running daemon";
                n
            }
            control::Asked::Failed(reason) => {
                return Err(Failure::Runtime(format!("the daemon's cancel failed: {reason}")))
            }
            control::Asked::NoDaemon => store::cancel_waiting(config.storage.location(), which, &source)?,
        };
    }
    println!("cancelled {total} waiting deliveries{how}");
    Ok(())
}
