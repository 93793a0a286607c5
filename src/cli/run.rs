//! `hookrelay run`.

use super::{load_config, Cli, Failure};

pub fn run(cli: &Cli) -> Result<(), Failure> {
    let config = load_config(cli)?;
    // One line, printed by the caller (with its journald priority).
    crate::daemon::main(config).map_err(|err| Failure::Runtime(format!("{err:#}")))
}
