//! `hookrelay check`: validate the config like `nginx -t` and print each
//! processing's webhook address.

use super::{load_config, Cli, Failure};

pub fn run(cli: &Cli) -> Result<(), Failure> {
    let config = load_config(cli)?;
    println!("{}: ok", config.path.display());
    println!("database: {}", config.storage.path.display());
    for p in &config.processings {
        let state = if p.enabled {
            ""
        } else {
            " (disabled: requests are held)"
        };
        println!("processing {}{state}", p.name);
        println!("  webhook: {}", config.webhook_url(p));
        for action in &p.actions {
            println!(
                "  action {}: {} {}",
                action.name,
                action.method.as_str(),
                crate::outgoing::redact_url_text(action.url.source())
            );
        }
    }
    if config.processings.is_empty() {
        println!("no [[processing]] is configured: every webhook will get 404");
    }
    Ok(())
}
