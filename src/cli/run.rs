//! `hookrelay run`.

use super::{load_config, Cli, Failure};

pub fn run(cli: &Cli) -> Result<(), Failure> {
    let config = load_config(cli)?;
    crate::daemon::main(config).map_err(|err| {
        log::error!("{err:#}");
        Failure::Runtime(format!("{err:#}"))
    })
}
