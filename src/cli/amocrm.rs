//! `hookrelay amocrm authorize PROCESSING ACTION CODE`: signs an amocrm
//! action's OAuth2 integration in. The authorization code (amoCRM shows it
//! in the integration's settings, or sends it to the redirect address; it
//! lives 20 minutes) is exchanged here for an access and a refresh token,
//! which are kept in the database: through a running daemon on the SQLite
//! file (its control socket), else written here. The daemon refreshes
//! them from then on (deliver/oauth.rs).

use super::{load_config, Cli, Failure};
use crate::config::kinds::{Kind, OAuth};
use crate::deliver::oauth::{exchange, Exchanged, Grant};
use crate::{control, store};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Exchange an authorization code for tokens, kept in the database.
    Authorize {
        /// The processing the amocrm action is in.
        processing: String,
        /// The amocrm action (with client_id, client_secret and redirect_uri).
        action: String,
        /// The authorization code amoCRM gave (valid 20 minutes, once).
        code: String,
    },
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let Action::Authorize {
        processing,
        action,
        code,
    } = &args.action;
    let config = load_config(cli)?;
    let oauth = oauth_of(&config, processing, action)?;
    let agent = crate::deliver::send::agent(concat!("hookrelay/", env!("CARGO_PKG_VERSION")));
    let pair = match exchange(&agent, &oauth, Grant::Code(code.trim())) {
        Exchanged::Pair(pair) => pair,
        Exchanged::Refused(why) => {
            return Err(Failure::Runtime(format!(
                "amoCRM refused the code ({why}); a code works once and for 20 minutes: copy a fresh one"
            )))
        }
        Exchanged::Failed(why) => return Err(Failure::Runtime(format!("cannot reach amoCRM: {why}"))),
    };
    let expires_at = pair.expires_at;
    let ((), how) = super::through_daemon(
        &config,
        "authorize",
        |path| control::ask_save_token(path, &oauth.integration, &pair),
        || Ok(store::save_token(config.storage.location(), &oauth.integration, &pair)?),
    )?;
    println!(
        "processing {processing}, action {action}: signed in to amoCRM{how}; the access token is good until {} and is refreshed from then on",
        crate::clock::rfc3339(expires_at)
    );
    Ok(())
}

/// The OAuth2 integration of `processing`'s `action`, or why there is none.
fn oauth_of(config: &crate::config::Config, processing: &str, action: &str) -> Result<OAuth, Failure> {
    let p = config
        .processing(processing)
        .ok_or_else(|| Failure::Usage(format!("no processing `{processing}` in the config")))?;
    let a = p
        .actions
        .iter()
        .find(|a| a.name == action)
        .ok_or_else(|| Failure::Usage(format!("processing `{processing}` has no action `{action}`")))?;
    match (&a.kind, a.kind.oauth()) {
        (_, Some(oauth)) => Ok(oauth.clone()),
        (Kind::AmoCrm(_), None) => Err(Failure::Usage(format!(
            "action `{action}` signs in with a long-lived access_token; authorize is for OAuth2 (client_id, client_secret, redirect_uri)"
        ))),
        (other, None) => Err(Failure::Usage(format!(
            "action `{action}` is a {} action, not an amocrm one",
            other.name()
        ))),
    }
}
