//! `hookrelay fields NAME`: the fields of the latest request to a processing,
//! to map them in the config (Webjack's "Получить" button).

use super::{load_config, print_fields, Cli, Failure};
use crate::clock;
use crate::store::Reader;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The processing's name.
    name: String,
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let config = load_config(cli)?;
    let processing = super::find_processing(&config, &args.name)?;
    let reader = Reader::open(config.storage.location())?;
    let Some(op) = reader.latest_with_fields(&processing.name)? else {
        println!(
            "no request to `{}` is recorded yet; send a test event to {}",
            processing.name,
            config.webhook_url(processing)
        );
        return Ok(());
    };
    let s = &op.summary;
    println!(
        "operation {}, received {} from {}, status {}",
        s.id,
        clock::local(s.received_at, &config.server.time_zone),
        op.request.remote_addr,
        s.status
    );
    println!("fields:");
    print_fields(&op.fields);
    for warning in &op.warnings {
        println!("warning: {warning}");
    }
    Ok(())
}
