//! OAuth2 access tokens for the integrations that sign in (amoCRM), added
//! to a request when it goes out. amoCRM's access token lives 24 hours;
//! its refresh token is single-use, and each refresh hands out a new pair
//! (amocrm.ru/developers/content/oauth/step-by-step). So:
//!
//! - a token is refreshed ahead of its expiry (in its last hour, or last
//!   half for a shorter one), and after a 401 once;
//! - one refresh at a time: a lock per integration among this daemon's
//!   workers, and a lease in the database among instances sharing one
//!   (store/tokens.rs); who finds the lease taken waits for the new pair;
//! - the new pair is committed before its access token is first used, so
//!   a restart, or another instance, never holds a spent refresh token
//!   while a newer one exists only in memory;
//! - a refresh token amoCRM refuses means signing in again: the delivery
//!   fails, saying to run `hookrelay amocrm authorize`.
//!
//! A kill during a refresh, after amoCRM handed out the new pair and before
//! it was committed, loses that pair: amoCRM then refuses the old refresh
//! token, and the notice asks for a new authorization. No order of writes
//! can avoid that with a single-use token; the window is one round trip.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::http;

use crate::clock::now_ms;
use crate::config::kinds::OAuth;
use crate::model::said::Said;
use crate::store::{TokenPair, Writer};

/// How long a refresh may hold the lease before another may try.
const LEASE_MS: i64 = 30_000;
/// Refresh in the token's last hour (or last half, if it lives less).
const AHEAD_MS: i64 = 3_600_000;
/// How long a refresh waits for amoCRM.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);

/// Why no access token could be had.
#[derive(Debug)]
pub enum NoToken {
    /// The integration must be authorized again (no tokens, or the refresh
    /// token was refused): permanent.
    Authorize(Said),
    /// amoCRM or the database could not be asked now: try later.
    Later(String),
}

/// What an exchange at `/oauth2/access_token` gave.
#[derive(Debug)]
pub enum Exchanged {
    Pair(TokenPair),
    /// amoCRM refused the code or the refresh token: its words.
    Refused(String),
    /// No answer, or one not worth believing (5xx, 429): its words.
    Failed(String),
}

/// What is exchanged for a pair.
pub enum Grant<'a> {
    Code(&'a str),
    Refresh(&'a str),
}

/// Exchanges an authorization code or a refresh token for a new pair.
pub fn exchange(agent: &ureq::Agent, oauth: &OAuth, grant: Grant) -> Exchanged {
    let (grant_type, key, value) = match grant {
        Grant::Code(code) => ("authorization_code", "code", code),
        Grant::Refresh(token) => ("refresh_token", "refresh_token", token),
    };
    let body = serde_json::json!({
        "client_id": oauth.client_id,
        "client_secret": oauth.client_secret.expose(),
        "grant_type": grant_type,
        key: value,
        "redirect_uri": oauth.redirect_uri,
    });
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("{}/oauth2/access_token", oauth.base))
        .header("Content-Type", "application/json")
        .body(body.to_string());
    let request = match request {
        Ok(request) => agent
            .configure_request(request)
            .timeout_global(Some(EXCHANGE_TIMEOUT))
            .build(),
        Err(err) => return Exchanged::Failed(err.to_string()),
    };
    let started = now_ms();
    let mut response = match agent.run(request) {
        Ok(response) => response,
        Err(err) => return Exchanged::Failed(err.to_string()),
    };
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let said = |json: &serde_json::Value| {
        let hint = ["hint", "detail", "title"]
            .iter()
            .find_map(|k| json[*k].as_str().filter(|s| !s.is_empty()));
        format!("{status}{}", hint.map_or_else(String::new, |h| format!(": {h}")))
    };
    match status {
        200..=299 => {
            let (Some(access), Some(refresh)) = (json["access_token"].as_str(), json["refresh_token"].as_str()) else {
                return Exchanged::Failed(format!("{status}, but no access_token and refresh_token in the answer"));
            };
            let lives = json["expires_in"].as_i64().unwrap_or(86_400);
            Exchanged::Pair(TokenPair {
                access: access.to_string(),
                refresh: refresh.to_string(),
                expires_at: started + lives * 1000,
                obtained_at: started,
            })
        }
        429 | 500..=599 => Exchanged::Failed(said(&json)),
        _ => Exchanged::Refused(said(&json)),
    }
}

/// The access tokens this daemon's workers use, one refresh at a time:
/// each integration's pair is kept here behind its own lock, and read from
/// the database only when it is due for a refresh or amoCRM refused it
/// (another instance, or `authorize`, may have put a newer one there).
pub struct Tokens {
    writer: Writer,
    agent: ureq::Agent,
    pairs: Mutex<HashMap<String, Arc<Mutex<Option<TokenPair>>>>>,
}

/// Whether `pair` is in the part of its life where it is refreshed.
fn due(pair: &TokenPair, now: i64) -> bool {
    pair.expires_at - now <= AHEAD_MS.min((pair.expires_at - pair.obtained_at) / 2)
}

impl Tokens {
    pub fn new(writer: Writer, agent: ureq::Agent) -> Tokens {
        Tokens {
            writer,
            agent,
            pairs: Mutex::new(HashMap::new()),
        }
    }

    fn slot_of(&self, integration: &str) -> Arc<Mutex<Option<TokenPair>>> {
        let mut pairs = self.pairs.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(pairs.entry(integration.to_string()).or_default())
    }

    /// An access token to send now. `refused`: one amoCRM just answered
    /// 401 to, so a newer one is needed whatever its expiry says.
    pub fn bearer(&self, oauth: &OAuth, refused: Option<&str>) -> Result<String, NoToken> {
        let slot = self.slot_of(&oauth.integration);
        let mut held = slot.lock().unwrap_or_else(|e| e.into_inner());
        let usable = |pair: &TokenPair| refused.is_none_or(|r| r != pair.access) && !due(pair, now_ms());
        if let Some(pair) = held.as_ref().filter(|p| usable(p)) {
            return Ok(pair.access.clone());
        }
        let authorize = |why: &str| {
            NoToken::Authorize(Said::Authorize {
                processing: oauth.processing.clone(),
                action: oauth.action.clone(),
                why: why.to_string(),
            })
        };
        let Some(kept) = self.kept(oauth)? else {
            *held = None;
            return Err(authorize("no tokens yet: it was never authorized"));
        };
        if usable(&kept) {
            let access = kept.access.clone();
            *held = Some(kept);
            return Ok(access);
        }
        let now = now_ms();
        let leased = self
            .writer
            .lease_token(oauth.integration.clone(), kept.refresh.clone(), now, now + LEASE_MS)
            .map_err(|e| NoToken::Later(format!("cannot take the token refresh's lease: {e}")))?;
        let fresh = if leased {
            self.refresh(oauth, &kept, authorize)
        } else {
            self.await_other(oauth, &kept)
        };
        match fresh {
            Ok(pair) => {
                let access = pair.access.clone();
                *held = Some(pair);
                Ok(access)
            }
            Err(no) => {
                if matches!(no, NoToken::Authorize(_)) {
                    *held = None;
                }
                Err(no)
            }
        }
    }

    /// Spends `kept`'s refresh token under the lease this instance took;
    /// the new pair is committed before it is returned (before its access
    /// token is first used).
    fn refresh(
        &self,
        oauth: &OAuth,
        kept: &TokenPair,
        authorize: impl Fn(&str) -> NoToken,
    ) -> Result<TokenPair, NoToken> {
        match exchange(&self.agent, oauth, Grant::Refresh(&kept.refresh)) {
            Exchanged::Pair(pair) => {
                self.writer
                    .save_token(oauth.integration.clone(), pair.clone())
                    .map_err(|e| NoToken::Later(format!("cannot keep the refreshed tokens: {e}")))?;
                log::info!("amoCRM integration {}: access token refreshed", oauth.client_id);
                Ok(pair)
            }
            Exchanged::Refused(why) => {
                let _ = self.writer.release_token(oauth.integration.clone());
                Err(authorize(&format!("the refresh token was refused: {why}")))
            }
            Exchanged::Failed(why) => {
                let _ = self.writer.release_token(oauth.integration.clone());
                Err(NoToken::Later(format!("refreshing the amoCRM token: {why}")))
            }
        }
    }

    fn kept(&self, oauth: &OAuth) -> Result<Option<TokenPair>, NoToken> {
        self.writer
            .token(oauth.integration.clone())
            .map_err(|e| NoToken::Later(format!("cannot read the amoCRM tokens: {e}")))
    }

    /// Another instance holds the lease: waits for its new pair, up to
    /// the lease's length.
    fn await_other(&self, oauth: &OAuth, before: &TokenPair) -> Result<TokenPair, NoToken> {
        let deadline = Instant::now() + Duration::from_millis(LEASE_MS as u64);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            if let Some(now) = self.kept(oauth)? {
                if now.refresh != before.refresh {
                    return Ok(now);
                }
            }
        }
        Err(NoToken::Later(
            "another instance is refreshing the amoCRM token and has not finished".into(),
        ))
    }
}
