//! Who is signed in to the console: sessions, the CSRF token each carries,
//! and the brake on guessing tokens. Fed the clock, so expiry and the brake
//! are tested without waiting.
//!
//! Sessions live in the daemon's memory: a restart signs everyone out. A
//! session remembers a digest of the token it was opened with, and is
//! honoured only while the config still has that token for that role, so
//! rotating a token or removing a viewer (and a SIGHUP) ends its sessions.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Config, Secret};

/// Failed sign-ins one address may make per [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 5;
/// How long failed sign-ins count against an address.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Sessions kept at most; past this the oldest are dropped first.
const MAX_SESSIONS: usize = 10_000;
/// Addresses the brake remembers at most (it forgets the oldest windows).
const MAX_TRACKED: usize = 10_000;

/// What a signed-in person may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Everything, replay included.
    Admin,
    /// Read-only, and only the processings this viewer's patterns match.
    Viewer(String),
}

/// A signed-in session as a request sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub role: Role,
    /// The value every state-changing form must send back.
    pub csrf: String,
}

#[derive(Debug, Clone)]
struct Session {
    signed: Signed,
    token_digest: [u8; 32],
    expires: Instant,
}

/// Every session and the failed sign-ins per address.
#[derive(Debug, Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// Why a sign-in did not open a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The token is not the admin's or any viewer's.
    WrongToken,
    /// Too many wrong tokens from this address; try again after this long.
    TooMany(Duration),
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// 256 random bits, URL-safe.
fn random_id() -> String {
    let mut bytes = [0u8; 32];
    // Without the OS's randomness no session could be safe: refuse them all.
    if getrandom::fill(&mut bytes).is_err() {
        log::error!("console: the system's random source failed; no session opened");
        return String::new();
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The role `token` signs in as under `config`, comparing in constant time
/// against every token (so the time taken says nothing about which matched).
fn role_of(config: &Config, token: &str) -> Option<(Role, [u8; 32])> {
    let mut found = None;
    if config.server.admin_token.as_ref().is_some_and(|t| t.matches(token)) {
        found = Some(Role::Admin);
    }
    for viewer in &config.console.viewers {
        if viewer.token.matches(token) && found.is_none() {
            found = Some(Role::Viewer(viewer.name.clone()));
        }
    }
    found.map(|role| (role, digest(token)))
}

/// The token `role` signs in with under `config` now, if the role still exists.
fn token_of<'a>(config: &'a Config, role: &Role) -> Option<&'a Secret> {
    match role {
        Role::Admin => config.server.admin_token.as_ref(),
        Role::Viewer(name) => config
            .console
            .viewers
            .iter()
            .find(|v| &v.name == name)
            .map(|v| &v.token),
    }
}

impl Sessions {
    /// Signs in with `token` from `client` at `now`; the new session's id.
    pub fn sign_in(&self, config: &Config, client: IpAddr, token: &str, now: Instant) -> Result<String, Refused> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&(count, since)) = failures.get(&client) {
            let over = since + FAILURE_WINDOW;
            if now >= over {
                failures.remove(&client);
            } else if count >= MAX_FAILURES {
                return Err(Refused::TooMany(over - now));
            }
        }
        let Some((role, token_digest)) = role_of(config, token.trim()) else {
            if failures.len() >= MAX_TRACKED {
                failures.retain(|_, (_, since)| now < *since + FAILURE_WINDOW);
                if failures.len() >= MAX_TRACKED {
                    failures.clear();
                }
            }
            failures.entry(client).or_insert((0, now)).0 += 1;
            return Err(Refused::WrongToken);
        };
        failures.remove(&client);
        drop(failures);
        let id = random_id();
        let csrf = random_id();
        if id.is_empty() || csrf.is_empty() {
            return Err(Refused::WrongToken);
        }
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, s| s.expires > now);
            while sessions.len() >= MAX_SESSIONS {
                let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| k.clone()) else {
                    break;
                };
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            id.clone(),
            Session {
                signed: Signed { role, csrf },
                token_digest,
                expires: now + config.console.session_lifetime,
            },
        );
        Ok(id)
    }

    /// The session `id` names, if it is open, unexpired and its token is
    /// still the config's.
    pub fn get(&self, config: &Config, id: &str, now: Instant) -> Option<Signed> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let session = sessions.get(id)?;
        let current = token_of(config, &session.signed.role).map(|t| digest(t.expose()));
        let valid = session.expires > now && current.is_some_and(|d| bool::from(d.ct_eq(&session.token_digest)));
        if !valid {
            sessions.remove(id);
            return None;
        }
        Some(session.signed.clone())
    }

    /// Ends the session `id`.
    pub fn sign_out(&self, id: &str) {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// Whether `given` is the session's CSRF token, in constant time.
pub fn csrf_matches(signed: &Signed, given: &str) -> bool {
    bool::from(digest(&signed.csrf).ct_eq(&digest(given)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const ADMIN: &str = "admin-token-abcdefghijklmnop";
    const VIEWER: &str = "viewer-token-abcdefghijklmnop";

    fn config(viewer_token: &str) -> Config {
        Config::parse(
            &format!(
                "[server]\nadmin_token = \"{ADMIN}\"\n\
                 [[console.viewer]]\nname = \"salon-a\"\ntoken = \"{viewer_token}\"\nprocessings = [\"salon-a*\"]\n\
                 [[processing]]\nname = \"salon-a\"\ntoken = \"abcdefghijklmnopqrstuvwxyz\"\n\
                 [[processing.action]]\nname = \"a\"\nurl = \"https://h.example/\"\n"
            ),
            Path::new("/c.toml"),
        )
        .unwrap()
    }

    #[test]
    fn tokens_sign_in_as_their_role_until_they_change_or_expire() {
        let sessions = Sessions::default();
        let config = config(VIEWER);
        let now = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let admin = sessions.sign_in(&config, ip, ADMIN, now).unwrap();
        let viewer = sessions.sign_in(&config, ip, VIEWER, now).unwrap();
        assert_eq!(sessions.get(&config, &admin, now).unwrap().role, Role::Admin);
        assert_eq!(
            sessions.get(&config, &viewer, now).unwrap().role,
            Role::Viewer("salon-a".into())
        );
        let rotated = self::config("viewer-token-rotated-abcdefgh");
        assert_eq!(
            sessions.get(&rotated, &viewer, now),
            None,
            "a rotated token ends its sessions"
        );
        assert!(sessions.get(&rotated, &admin, now).is_some());
        let later = now + config.console.session_lifetime;
        assert_eq!(sessions.get(&config, &admin, later), None, "expired");
        assert_eq!(sessions.get(&config, "made-up", now), None);
    }

    #[test]
    fn wrong_tokens_are_braked_per_address() {
        let sessions = Sessions::default();
        let config = config(VIEWER);
        let now = Instant::now();
        let guesser: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert_eq!(
                sessions.sign_in(&config, guesser, "wrong", now),
                Err(Refused::WrongToken)
            );
        }
        assert!(matches!(
            sessions.sign_in(&config, guesser, ADMIN, now),
            Err(Refused::TooMany(_))
        ));
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(
            sessions.sign_in(&config, other, ADMIN, now).is_ok(),
            "others are not braked"
        );
        assert!(sessions.sign_in(&config, guesser, ADMIN, now + FAILURE_WINDOW).is_ok());
    }

    #[test]
    fn sign_out_ends_the_session() {
        let sessions = Sessions::default();
        let config = config(VIEWER);
        let now = Instant::now();
        let id = sessions
            .sign_in(&config, "192.0.2.1".parse().unwrap(), ADMIN, now)
            .unwrap();
        let signed = sessions.get(&config, &id, now).unwrap();
        assert!(csrf_matches(&signed, &signed.csrf));
        assert!(!csrf_matches(&signed, ""));
        sessions.sign_out(&id);
        assert_eq!(sessions.get(&config, &id, now), None);
    }
}
