//! `hookrelay notify-test`: send a test message through every configured
//! notification channel and report each result.

use super::{load_config, Cli, Failure};
use crate::notify::{self, message};

pub fn run(cli: &Cli) -> Result<(), Failure> {
    let config = load_config(cli)?;
    let notify = config
        .notify
        .as_ref()
        .ok_or_else(|| Failure::Usage("no [notify] section in the config: nothing to test".into()))?;
    let message = message::test_message(&notify::host_name());
    let agent = notify::agent();
    let mut failed = 0;
    for channel in notify::channels(notify) {
        match notify::send(notify, &agent, channel, &message) {
            Ok(()) => println!("{}: sent", channel.as_str()),
            Err(err) => {
                println!("{}: failed: {err}", channel.as_str());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(Failure::Runtime(format!("{failed} channel(s) failed")));
    }
    Ok(())
}
