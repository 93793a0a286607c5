//! The TOML configuration: schema, defaults, durations, validation.
//!
//! The file is deserialized strictly into `Raw*` structs, then resolved into
//! [`Config`], which has every default filled in, every template parsed and
//! every path made absolute, so the rest of the program never re-checks it.

pub mod kinds;
mod raw;
mod secret;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::redact;
use crate::template::Template;

pub use secret::Secret;

/// Where the daemon looks when neither `-c` nor `HOOKRELAY_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/hookrelay/config.toml";

/// The token in config.example.toml (and so in the .deb's config): public,
/// so it is only accepted while the webhook listener is on loopback.
pub const EXAMPLE_TOKEN: &str = "3q2-7wEXAMPLE-only-use-hookrelay-token";
/// Shortest token accepted: 22 URL-safe base64 characters carry 128 bits.
pub const MIN_TOKEN_LEN: usize = 22;

/// A configuration error, one line, naming the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from.
    pub path: PathBuf,
    pub server: Server,
    pub storage: Storage,
    pub delivery: Delivery,
    pub notify: Option<Notify>,
    pub console: Console,
    pub processings: Vec<Processing>,
    /// `[[receiver]]`: pacing and breakers set for particular receivers.
    pub receivers: Vec<Receiver>,
}

/// `[console]`: the web console on `admin_listen`.
#[derive(Debug, Clone, PartialEq)]
pub struct Console {
    /// A session ends this long after sign-in.
    pub session_lifetime: Duration,
    pub viewers: Vec<Viewer>,
}

/// `[[console.viewer]]`: a read-only sign-in limited to some processings.
#[derive(Debug, Clone, PartialEq)]
pub struct Viewer {
    pub name: String,
    pub token: Secret,
    /// Glob patterns (`*`, `?`) of the processing names it may see.
    pub processings: Vec<String>,
    /// Whether it sees the webhook addresses (they hold the token that
    /// lets anyone send events); by default it does not.
    pub show_address: bool,
}

impl Viewer {
    /// Whether this viewer may see `processing`.
    pub fn sees(&self, processing: &str) -> bool {
        self.processings
            .iter()
            .any(|pattern| wildmatch::WildMatch::new(pattern).matches(processing))
    }
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    pub public_url: Option<Url>,
    pub admin_listen: SocketAddr,
    pub admin_token: Option<Secret>,
    pub max_body_bytes: usize,
    /// Most fields one request may carry (query and body together).
    pub max_fields: usize,
    /// Longest field name, a dotted JSON path counting whole.
    pub max_field_name_bytes: usize,
    /// Most bytes of field names and values of one request.
    pub max_fields_bytes: usize,
    /// Most connections one client address may hold open to the webhook listener.
    pub max_connections_per_client: usize,
    /// The zone times are shown in to people (CLI text; JSON stays UTC).
    pub time_zone: jiff::tz::TimeZone,
    /// The language the command line's text and the notifications say
    /// reasons, warnings and errors in (`--json` and logs stay English).
    pub language: crate::model::said::Lang,
    /// Peers whose `X-Forwarded-For` / `X-Real-IP` names the client (a reverse proxy).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// At most this many webhook requests per client address; more get 429.
    pub max_per_ip: Option<Rate>,
    /// Senders every processing accepts unless it names its own; empty: any.
    pub allow_from: Vec<ipnet::IpNet>,
}

/// A rate such as `50/s`: `count` per `per`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl std::fmt::Display for Rate {
    /// As written in the config: `5/s`, `300/m`, `1000/h`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// `[storage]`.
#[derive(Debug, Clone)]
pub struct Storage {
    /// Absolute path of the SQLite file (unused with `url`).
    pub path: PathBuf,
    /// The PostgreSQL database instead, shared by every instance.
    pub url: Option<String>,
    pub keep_days: u32,
}

impl Storage {
    /// Where the data is: the PostgreSQL database if one is set, else the file.
    pub fn location(&self) -> crate::model::location::Location {
        match &self.url {
            Some(url) => crate::model::location::Location::Postgres(url.clone()),
            None => crate::model::location::Location::File(self.path.clone()),
        }
    }
}

/// `[delivery]`: pool size and the defaults every action inherits.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub workers: usize,
    pub timeout: Duration,
    pub retry: Retry,
    /// How long after the event a delivery is still worth sending, for
    /// every action without its own; none: always.
    pub max_age: Option<Duration>,
    /// The circuit breaker of every receiver without its own.
    pub breaker: Breaker,
}

/// A circuit breaker's settings: how many retryable failures in a row open
/// it (0: never), and how often a probe goes out while it is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    pub failures: u32,
    /// The first wait between probes; it doubles after each failed probe.
    pub probe: Duration,
    /// The longest wait between probes.
    pub max_probe: Duration,
}

/// `[[receiver]]`: one receiver's pacing and breaker.
#[derive(Debug, Clone, PartialEq)]
pub struct Receiver {
    /// `scheme://host:port/`, as [`crate::model::target_of`] names it.
    pub target: String,
    pub policy: ReceiverPolicy,
}

/// How deliveries to one receiver are paced and guarded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReceiverPolicy {
    /// Most requests started per period; none: as fast as the workers go.
    pub rate: Option<Rate>,
    /// How many may start at once after an idle spell, before `rate`
    /// spaces them (1: evenly from the first).
    pub burst: u32,
    /// Most requests in flight at once; none: three quarters of the workers.
    pub concurrency: Option<usize>,
    pub breaker: Breaker,
}

/// A retry budget: total attempts and the backoff bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

/// `[notify]`: where failure notifications go, and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    pub email: Option<Email>,
    pub telegram: Option<Telegram>,
    /// At most one message per this long; the rest wait for the next digest.
    pub min_interval: Duration,
    /// Whether messages list the operations' fields (names, phones: personal data).
    pub include_fields: bool,
}

/// Email notifications.
#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    pub to: Vec<String>,
    pub from: String,
    pub transport: EmailTransport,
}

/// How email leaves the machine.
#[derive(Debug, Clone, PartialEq)]
pub enum EmailTransport {
    /// An `smtp://` (plain, or STARTTLS with `?tls=required`) or `smtps://` URL.
    Smtp(Secret),
    /// A sendmail-compatible binary.
    Sendmail(PathBuf),
}

/// `[notify.telegram]`: messages through the Telegram Bot API.
#[derive(Debug, Clone, PartialEq)]
pub struct Telegram {
    pub bot_token: Secret,
    pub chat_id: String,
    /// The Bot API's base URL (tests point it at a local server).
    pub api_url: Url,
}

/// One `[[processing]]`: a webhook address and the actions run for each event.
#[derive(Debug, Clone)]
pub struct Processing {
    pub name: String,
    pub enabled: bool,
    pub token: Secret,
    /// Tokens still accepted while senders move to `token` (rotation).
    pub previous_tokens: Vec<Secret>,
    /// The HTTP methods the webhook accepts.
    pub methods: Vec<Method>,
    pub response: Response,
    pub require: Vec<String>,
    pub dedupe: Option<Template>,
    pub dedupe_window: Duration,
    /// Field/value pairs that must all match, in file order.
    pub when: Vec<(String, String)>,
    pub actions: Vec<Action>,
    /// Sender addresses accepted (this processing's `allow_from`, else the
    /// server's); empty: any.
    pub allow_from: Vec<ipnet::IpNet>,
    /// Alert when no event came for this long in active time.
    pub silence: Option<Silence>,
}

/// A processing's silence alert: `silence`, `active_hours`, `active_days`.
#[derive(Debug, Clone, PartialEq)]
pub struct Silence {
    /// Active time without an event before the alert.
    pub after: Duration,
    /// When events are expected, in `server.time_zone`.
    pub active: crate::clock::ActiveTime,
}

/// What the sender of a webhook gets back once the event is stored.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: String,
    pub content_type: String,
}

/// The HTTP method of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    /// The method as it goes on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }

    /// The method named `text`, in any case; `None` for any other.
    pub fn parse(text: &str) -> Option<Method> {
        match text.to_ascii_uppercase().as_str() {
            "GET" => Some(Method::Get),
            "POST" => Some(Method::Post),
            _ => None,
        }
    }
}

/// One `[[processing.action]]`: an outgoing request template.
#[derive(Debug, Clone)]
pub struct Action {
    pub name: String,
    pub method: Method,
    pub url: Template,
    /// Query parameters appended to the URL, in file order.
    pub query: Vec<(String, Template)>,
    pub headers: Vec<(String, Template)>,
    pub body: Option<Template>,
    pub content_type: Option<String>,
    /// What counts as taken, and what as "try again later".
    pub rules: crate::model::response::ResponseRules,
    pub timeout: Duration,
    pub retry: Retry,
    /// How long after the event its delivery is still worth sending (an ad
    /// platform refuses older conversions); past it, an unsent delivery
    /// becomes `expired`. None: always.
    pub max_age: Option<Duration>,
    /// What to do when a template names a field the event does not have.
    pub on_missing: OnMissing,
    /// What it sends: its own templates, or a platform's request.
    pub kind: kinds::Kind,
    /// `remember`: the result an accepted answer keeps is remembered under
    /// this key (rendered per event), for a later event's `recall`.
    pub remember: Option<Remember>,
}

/// Where an action remembers what its answers keep.
#[derive(Debug, Clone)]
pub struct Remember {
    /// `processing/action`, as `recall('…')` names it.
    pub name: String,
    pub key: Template,
}

/// `on_missing`: what an action does when a template names a field the
/// event does not have (a misspelled name, or a placeholder Klientiks did
/// not fill) and gives it no `default(...)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnMissing {
    /// `"fail"`: nothing is sent; the delivery fails at once, naming the
    /// field (and the closest one the event has), and can be replayed once
    /// the config is fixed.
    #[default]
    Fail,
    /// `"send_empty"`: the field is sent empty, with a warning.
    SendEmpty,
}

impl Processing {
    /// Whether a request from `client` may reach this processing.
    pub fn allows(&self, client: std::net::IpAddr) -> bool {
        let client = client.to_canonical();
        self.allow_from.is_empty() || self.allow_from.iter().any(|net| net.contains(&client))
    }

    /// Whether `candidate` is this processing's token or a previous one.
    /// Every token is compared, in constant time, whichever matches.
    pub fn accepts(&self, candidate: &str) -> bool {
        std::iter::once(&self.token)
            .chain(&self.previous_tokens)
            .fold(false, |found, token| token.matches(candidate) | found)
    }

    /// Every field the processing reads: `require`, `when`, `dedupe` and the
    /// actions' templates, sorted and without repeats.
    pub fn fields_used(&self) -> std::collections::BTreeSet<&str> {
        let mut used: std::collections::BTreeSet<&str> = self.require.iter().map(String::as_str).collect();
        used.extend(self.when.iter().map(|(field, _)| field.as_str()));
        let mut templates: Vec<&Template> = self.dedupe.iter().collect();
        templates.extend(self.actions.iter().flat_map(Action::templates));
        used.extend(templates.into_iter().flat_map(Template::fields));
        used
    }
}

impl Action {
    /// Every template the action renders: its URL, query, headers and
    /// body, its kind's, and its `remember` key.
    pub fn templates(&self) -> Vec<&Template> {
        let mut templates = vec![&self.url];
        templates.extend(self.query.iter().map(|(_, t)| t));
        templates.extend(self.headers.iter().map(|(_, t)| t));
        templates.extend(self.body.iter());
        templates.extend(self.kind.templates());
        templates.extend(self.remember.as_ref().map(|r| &r.key));
        templates
    }
}

impl Config {
    /// Reads and resolves the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        // Absolute, so relative paths inside stay right whatever the cwd later is.
        let path = &std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses `text` as if read from `path` (relative paths resolve beside it).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                message: "the file is empty".into(),
            });
        }
        raw::parse(text, path)
    }

    /// The keys a running daemon cannot take from a reload, of those that
    /// differ between `self` (running) and `fresh`: they are read once at
    /// start (sockets, the database, threads, the notifier).
    pub fn restart_only_changes(&self, fresh: &Config) -> Vec<&'static str> {
        [
            ("server.listen", self.server.listen != fresh.server.listen),
            (
                "server.admin_listen",
                self.server.admin_listen != fresh.server.admin_listen,
            ),
            (
                "server.admin_token",
                self.server.admin_token != fresh.server.admin_token,
            ),
            (
                "server.max_connections_per_client",
                self.server.max_connections_per_client != fresh.server.max_connections_per_client,
            ),
            ("storage.path", self.storage.path != fresh.storage.path),
            ("storage.url", self.storage.url != fresh.storage.url),
            ("storage.keep_days", self.storage.keep_days != fresh.storage.keep_days),
            ("delivery.workers", self.delivery.workers != fresh.delivery.workers),
            ("[notify]", self.notify != fresh.notify),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
    }

    /// The pacing and breaker of `target` (`scheme://host:port/`): its
    /// `[[receiver]]`, or the `[delivery]` defaults.
    pub fn receiver_policy(&self, target: &str) -> ReceiverPolicy {
        self.receivers.iter().find(|r| r.target == target).map_or(
            ReceiverPolicy {
                rate: None,
                burst: 1,
                concurrency: None,
                breaker: self.delivery.breaker,
            },
            |r| r.policy,
        )
    }

    /// Actions whose receiver's breaker opens only after the action's
    /// whole retry budget: `breaker.failures` (its `[[receiver]]`, or
    /// `[delivery]`) at least `retry.attempts` (the action's, or
    /// `[delivery]`). During an outage, a sender whose events come one at a
    /// time fails each of them for good before the breaker opens and holds
    /// the rest. One line each, for `check` and the daemon's start.
    pub fn late_breakers(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for p in &self.processings {
            for action in &p.actions {
                let target = crate::model::target_of(action.url.source());
                let failures = self.receiver_policy(&target).breaker.failures;
                let attempts = action.retry.attempts;
                if failures > 0 && failures >= attempts {
                    let whose = if self.receivers.iter().any(|r| r.target == target) {
                        format!("[[receiver]] {target}")
                    } else {
                        "[delivery]".to_string()
                    };
                    warnings.push(format!(
                        "processing `{}`: action `{}`: the breaker opens after {failures} failures in a row ({whose} breaker.failures), but the action gives up after {attempts} attempts (retry.attempts): in an outage, events that come one at a time fail for good before the breaker holds them; make breaker.failures less than {attempts}",
                        p.name, action.name
                    ));
                }
            }
        }
        warnings
    }

    /// The actions (processing, action) present in both configs whose
    /// request or settings differ in `fresh`: deliveries already waiting
    /// were rendered with the old ones.
    pub fn changed_actions(&self, fresh: &Config) -> Vec<(String, String)> {
        let mut changed = Vec::new();
        for p in &self.processings {
            let Some(new) = fresh.processing(&p.name) else { continue };
            for action in &p.actions {
                let now = new.actions.iter().find(|a| a.name == action.name);
                if now.is_some_and(|now| format!("{now:?}") != format!("{action:?}")) {
                    changed.push((p.name.clone(), action.name.clone()));
                }
            }
        }
        changed
    }

    /// The processing a token belongs to, by name.
    pub fn processing(&self, name: &str) -> Option<&Processing> {
        self.processings.iter().find(|p| p.name == name)
    }

    /// The address a sender must call for `processing`.
    pub fn webhook_url(&self, processing: &Processing) -> String {
        let base = match &self.server.public_url {
            Some(url) => url.as_str().trim_end_matches('/').to_string(),
            None if self.server.listen.ip().is_unspecified() => {
                format!("http://<this-host>:{}", self.server.listen.port())
            }
            None => format!("http://{}", self.server.listen),
        };
        format!("{base}/hook/{}", processing.token.expose())
    }
}

impl EmailTransport {
    /// How mail leaves, for `check`: the URL with its password masked, and
    /// what protects it on the way.
    pub fn describe(&self) -> String {
        match self {
            EmailTransport::Sendmail(path) => format!("sendmail {}", path.display()),
            EmailTransport::Smtp(url) => {
                let parsed = Url::parse(url.expose()).ok();
                let tls = parsed
                    .as_ref()
                    .and_then(|u| u.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned()));
                let password = parsed.as_ref().is_some_and(|u| u.password().is_some());
                let security = match (parsed.as_ref().map(Url::scheme), tls.as_deref()) {
                    (Some("smtps"), _) => "implicit TLS",
                    (_, Some("required")) => "STARTTLS required",
                    (_, Some("opportunistic")) => "STARTTLS if the server offers it",
                    _ if password => "no TLS (tls=none): the password crosses the network in clear",
                    _ => "no TLS",
                };
                format!("{} ({security})", redact::url_text(url.expose()))
            }
        }
    }
}

#[cfg(test)]
mod tests;
