//! The TOML configuration: schema, defaults, durations, validation.
//!
//! The file is deserialized strictly into `Raw*` structs, then resolved into
//! [`Config`], which has every default filled in, every template parsed and
//! every path made absolute, so the rest of the program never re-checks it.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use url::Url;

use crate::clock;
use crate::redact;
use crate::template::{Escape, Template, TemplateError};

/// Where the daemon looks when neither `-c` nor `HOOKRELAY_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/hookrelay/config.toml";

const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9180";
const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// A Klientiks event has a few dozen fields; a thousand is far past any real one.
const DEFAULT_MAX_FIELDS: usize = 1000;
const DEFAULT_MAX_FIELD_NAME_BYTES: usize = 256;
/// An eighth of the listener's 1024 connections.
const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 128;
/// The default cap on names and values together, as a multiple of `max_body_bytes`.
const DEFAULT_FIELDS_BYTES_PER_BODY_BYTE: usize = 4;
const DEFAULT_DB_PATH: &str = "/var/lib/hookrelay/hookrelay.db";
const DEFAULT_KEEP_DAYS: u32 = 90;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
const DEFAULT_ATTEMPTS: u32 = 12;
const DEFAULT_FIRST_DELAY: Duration = Duration::from_secs(30);
const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(2 * 3600);
const DEFAULT_WORKERS: usize = 8;
const DEFAULT_DEDUPE_WINDOW: Duration = Duration::from_secs(30 * 86400);
const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(15 * 60);
const DEFAULT_TELEGRAM_API: &str = "https://api.telegram.org";
const DEFAULT_RESPONSE_STATUS: u16 = 200;
const DEFAULT_RESPONSE_BODY: &str = "ok";
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

/// A string that prints as `MASKED` in `Debug` and `Display`, so logging a
/// config never leaks it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the few places that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this secret, in time that does not depend on
    /// where they differ (both are hashed first, so length leaks nothing either).
    pub fn matches(&self, candidate: &str) -> bool {
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq;
        let wanted = Sha256::digest(self.0.as_bytes());
        bool::from(wanted.ct_eq(&Sha256::digest(candidate.as_bytes())))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MASKED")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MASKED")
    }
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
    pub processings: Vec<Processing>,
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
    /// Peers whose `X-Forwarded-For` names the client (a reverse proxy).
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

/// `[storage]`.
#[derive(Debug, Clone)]
pub struct Storage {
    /// Absolute path of the SQLite file.
    pub path: PathBuf,
    pub keep_days: u32,
}

/// `[delivery]`: pool size and the defaults every action inherits.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub workers: usize,
    pub timeout: Duration,
    pub retry: Retry,
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
    /// Upper-case HTTP methods the webhook accepts.
    pub methods: Vec<String>,
    pub response: Response,
    pub require: Vec<String>,
    pub dedupe: Option<Template>,
    pub dedupe_window: Duration,
    /// Field/value pairs that must all match, in file order.
    pub when: Vec<(String, String)>,
    pub actions: Vec<Action>,
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
    pub expect_body: Option<String>,
    pub timeout: Duration,
    pub retry: Retry,
}

impl Processing {
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
        for action in &self.actions {
            templates.push(&action.url);
            templates.extend(action.query.iter().map(|(_, t)| t));
            templates.extend(action.headers.iter().map(|(_, t)| t));
            templates.extend(action.body.iter());
        }
        used.extend(templates.into_iter().flat_map(Template::fields));
        used
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
        let raw: RawConfig = toml::from_str(text).map_err(|err| {
            let (line, column) = err.span().map(|span| line_column(text, span.start)).unwrap_or((1, 1));
            ConfigError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                message: err.message().replace('\n', " "),
            }
        })?;
        raw.resolve(path).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
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
            ("storage.path", self.storage.path != fresh.storage.path),
            ("storage.keep_days", self.storage.keep_days != fresh.storage.keep_days),
            ("delivery.workers", self.delivery.workers != fresh.delivery.workers),
            ("[notify]", self.notify != fresh.notify),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
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

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.len(), |nl| before.len() - nl - 1) + 1;
    (line, column)
}

/// A duration written as a string such as `"30s"`, `"15m"`, `"2h"`, `"30d"`.
#[derive(Clone, Copy, Debug)]
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map(Dur).map_err(|err| {
            serde::de::Error::custom(format!(
                "invalid duration `{text}`: {err} (write e.g. \"30s\", \"15m\", \"2h\", \"30d\")"
            ))
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    delivery: RawDelivery,
    notify: Option<RawNotify>,
    #[serde(default)]
    processing: Vec<RawProcessing>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    public_url: Option<String>,
    admin_listen: Option<String>,
    admin_token: Option<Secret>,
    max_body_bytes: Option<usize>,
    max_fields: Option<usize>,
    max_field_name_bytes: Option<usize>,
    max_fields_bytes: Option<usize>,
    max_connections_per_client: Option<usize>,
    time_zone: Option<String>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    path: Option<PathBuf>,
    keep_days: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    workers: Option<usize>,
    timeout: Option<Dur>,
    #[serde(default)]
    retry: RawRetry,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    attempts: Option<u32>,
    first_delay: Option<Dur>,
    max_delay: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    #[serde(default)]
    email_to: Vec<String>,
    email_from: Option<String>,
    smtp: Option<Secret>,
    sendmail: Option<PathBuf>,
    min_interval: Option<Dur>,
    #[serde(default = "include_fields_by_default")]
    include_fields: bool,
    telegram: Option<RawTelegram>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelegram {
    bot_token: Secret,
    chat_id: String,
    api_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcessing {
    name: String,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
    token: Secret,
    #[serde(default)]
    previous_tokens: Vec<Secret>,
    methods: Option<Vec<String>>,
    response: Option<RawResponse>,
    #[serde(default)]
    require: Vec<String>,
    dedupe: Option<String>,
    dedupe_window: Option<Dur>,
    #[serde(default)]
    when: toml::Table,
    #[serde(default)]
    action: Vec<RawAction>,
}

fn enabled_by_default() -> bool {
    true
}

fn include_fields_by_default() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResponse {
    status: Option<u16>,
    body: Option<String>,
    content_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    name: String,
    method: Option<String>,
    url: String,
    #[serde(default)]
    query: toml::Table,
    #[serde(default)]
    headers: toml::Table,
    body: Option<String>,
    content_type: Option<String>,
    expect_body: Option<String>,
    timeout: Option<Dur>,
    retry: Option<RawRetry>,
}

fn socket_addr(key: &str, text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("{key}: `{text}` is not an IP address and port such as 127.0.0.1:8080"))
}

impl RawConfig {
    fn resolve(self, path: &Path) -> Result<Config, String> {
        let base = path.parent().unwrap_or(Path::new("."));
        let server = self.server.resolve()?;
        let storage = Storage {
            path: base.join(self.storage.path.unwrap_or_else(|| DEFAULT_DB_PATH.into())),
            keep_days: self.storage.keep_days.unwrap_or(DEFAULT_KEEP_DAYS),
        };
        if storage.keep_days == 0 {
            return Err("storage.keep_days: must be at least 1".into());
        }
        let default_retry = Retry {
            attempts: DEFAULT_ATTEMPTS,
            first_delay: DEFAULT_FIRST_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
        };
        let delivery = Delivery {
            workers: self.delivery.workers.unwrap_or(DEFAULT_WORKERS),
            timeout: self.delivery.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0),
            retry: self
                .delivery
                .retry
                .over(default_retry)
                .map_err(|e| format!("delivery.retry: {e}"))?,
        };
        if !(1..=256).contains(&delivery.workers) {
            return Err("delivery.workers: must be between 1 and 256".into());
        }
        if delivery.timeout.is_zero() {
            return Err("delivery.timeout: must be longer than zero".into());
        }
        let notify = self.notify.map(|n| n.resolve(base)).transpose()?;

        let mut processings = Vec::new();
        let mut names = HashSet::new();
        let mut tokens = HashSet::new();
        for raw in self.processing {
            let name = raw.name.clone();
            if !names.insert(name.clone()) {
                return Err(format!("processing `{name}`: the name is used twice"));
            }
            for token in std::iter::once(&raw.token).chain(&raw.previous_tokens) {
                if !tokens.insert(token.expose().to_string()) {
                    return Err(format!("processing `{name}`: token: the same token is used twice"));
                }
            }
            let public = std::iter::once(&raw.token)
                .chain(&raw.previous_tokens)
                .any(|t| t.expose() == EXAMPLE_TOKEN);
            if public && !server.listen.ip().is_loopback() {
                return Err(format!(
                    "processing `{name}`: token: the example token is public and server.listen `{}` is not loopback; \
                     make a token with `hookrelay token`",
                    server.listen
                ));
            }
            let processing = raw
                .resolve(&delivery)
                .map_err(|e| format!("processing `{name}`: {e}"))?;
            processings.push(processing);
        }
        if processings.is_empty() {
            // A truncated file must not reload as "serve nothing".
            return Err("no [[processing]] is configured: every webhook would get 404".into());
        }
        Ok(Config {
            path: path.to_path_buf(),
            server,
            storage,
            delivery,
            notify,
            processings,
        })
    }
}

impl RawServer {
    fn resolve(self) -> Result<Server, String> {
        let listen = socket_addr("server.listen", self.listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
        let admin_listen = socket_addr(
            "server.admin_listen",
            self.admin_listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN),
        )?;
        if !admin_listen.ip().is_loopback() && self.admin_token.is_none() {
            return Err(format!(
                "server.admin_listen: `{admin_listen}` is not a loopback address; set server.admin_token to expose it"
            ));
        }
        let public_url = self
            .public_url
            .map(|text| {
                Url::parse(&text)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| {
                        format!(
                            "server.public_url: `{}` is not an http(s) URL",
                            redact::url_like_text(&text)
                        )
                    })
            })
            .transpose()?;
        let max_body_bytes = self.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        let at_least_one = |key: &str, value: usize| {
            if value == 0 {
                Err(format!("server.{key}: must be at least 1"))
            } else {
                Ok(value)
            }
        };
        at_least_one("max_body_bytes", max_body_bytes)?;
        let max_fields = at_least_one("max_fields", self.max_fields.unwrap_or(DEFAULT_MAX_FIELDS))?;
        let max_field_name_bytes = at_least_one(
            "max_field_name_bytes",
            self.max_field_name_bytes.unwrap_or(DEFAULT_MAX_FIELD_NAME_BYTES),
        )?;
        let max_fields_bytes = at_least_one(
            "max_fields_bytes",
            self.max_fields_bytes
                .unwrap_or(max_body_bytes.saturating_mul(DEFAULT_FIELDS_BYTES_PER_BODY_BYTE)),
        )?;
        let max_connections_per_client = at_least_one(
            "max_connections_per_client",
            self.max_connections_per_client
                .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_CLIENT),
        )?;
        let time_zone = clock::time_zone(self.time_zone.as_deref().unwrap_or(clock::DEFAULT_TIME_ZONE))
            .map_err(|e| format!("server.time_zone: {e}"))?;
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .map(|text| {
                text.parse::<std::net::IpAddr>()
                    .map(|ip| ip.to_canonical())
                    .map_err(|_| format!("server.trusted_proxies: `{text}` is not an IP address such as 127.0.0.1"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Server {
            listen,
            public_url,
            admin_listen,
            admin_token: self.admin_token,
            max_body_bytes,
            max_fields,
            max_field_name_bytes,
            max_fields_bytes,
            max_connections_per_client,
            time_zone,
            trusted_proxies,
        })
    }
}

impl RawRetry {
    /// Fills unset keys from `defaults` and checks the result.
    fn over(&self, defaults: Retry) -> Result<Retry, String> {
        let retry = Retry {
            attempts: self.attempts.unwrap_or(defaults.attempts),
            first_delay: self.first_delay.map_or(defaults.first_delay, |d| d.0),
            max_delay: self.max_delay.map_or(defaults.max_delay, |d| d.0),
        };
        if retry.attempts == 0 {
            return Err("attempts: must be at least 1".into());
        }
        if retry.first_delay.is_zero() {
            return Err("first_delay: must be longer than zero".into());
        }
        if retry.max_delay < retry.first_delay {
            return Err("max_delay: must not be shorter than first_delay".into());
        }
        Ok(retry)
    }
}

/// Checks an SMTP URL and returns it as lettre takes it. Credentials over
/// `smtp://` need `?tls=required` (STARTTLS or nothing), or an explicit
/// `?tls=none` for a password knowingly sent in clear; `opportunistic` is
/// refused with them too, since a man in the middle can strip STARTTLS.
/// `tls=none` is hookrelay's word, so it is removed before lettre sees it.
fn smtp_url(smtp: &Secret) -> Result<Secret, String> {
    let mut url = Url::parse(smtp.expose())
        .ok()
        .filter(|u| matches!(u.scheme(), "smtp" | "smtps"))
        .ok_or("must be an smtp:// or smtps:// URL")?;
    let tls = url.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
    let has_credentials = !url.username().is_empty() || url.password().is_some();
    match (url.scheme(), tls.as_deref()) {
        (_, None | Some("required" | "opportunistic" | "none")) => {}
        (_, Some(other)) => return Err(format!("tls=`{other}`: use required, opportunistic or none")),
    }
    match (url.scheme(), tls.as_deref()) {
        ("smtps", Some("none")) => return Err("smtps:// is TLS; tls=none contradicts it".into()),
        ("smtp", None | Some("opportunistic")) if has_credentials => {
            return Err(
                "a password over smtp:// without tls=required can cross the network in clear; \
                 use smtps://…:465 or smtp://…:587?tls=required, or add ?tls=none to send it in clear knowingly"
                    .into(),
            )
        }
        _ => {}
    }
    if tls.as_deref() == Some("none") {
        let rest: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "tls")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if rest.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(rest);
        }
    }
    Ok(Secret(url.into()))
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

impl RawNotify {
    fn resolve(self, base: &Path) -> Result<Notify, String> {
        let email = self.email(base)?;
        let telegram = self.telegram.map(RawTelegram::resolve).transpose()?;
        if email.is_none() && telegram.is_none() {
            return Err("notify: configure email (email_to, email_from, smtp or sendmail) or [notify.telegram]".into());
        }
        Ok(Notify {
            email,
            telegram,
            min_interval: self.min_interval.map_or(DEFAULT_MIN_INTERVAL, |d| d.0),
            include_fields: self.include_fields,
        })
    }

    fn email(&self, base: &Path) -> Result<Option<Email>, String> {
        let transport = match (&self.smtp, &self.sendmail) {
            (Some(_), Some(_)) => return Err("notify: set either smtp or sendmail, not both".into()),
            (None, None) if self.email_to.is_empty() => return Ok(None),
            (None, None) => {
                return Err(
                    "notify: set smtp = \"smtps://user:password@host:465\" or sendmail = \"/usr/sbin/sendmail\"".into(),
                )
            }
            (Some(smtp), None) => EmailTransport::Smtp(smtp_url(smtp).map_err(|e| format!("notify.smtp: {e}"))?),
            (None, Some(path)) => EmailTransport::Sendmail(base.join(path)),
        };
        if self.email_to.is_empty() {
            return Err("notify.email_to: name at least one address".into());
        }
        for address in &self.email_to {
            address
                .parse::<lettre::Address>()
                .map_err(|e| format!("notify.email_to: `{address}`: {e}"))?;
        }
        let from = self
            .email_from
            .clone()
            .ok_or("notify.email_from: set the sender address, e.g. \"hookrelay@example.ru\"")?;
        from.parse::<lettre::message::Mailbox>()
            .map_err(|e| format!("notify.email_from: `{from}`: {e}"))?;
        Ok(Some(Email {
            to: self.email_to.clone(),
            from,
            transport,
        }))
    }
}

impl RawTelegram {
    fn resolve(self) -> Result<Telegram, String> {
        let text = self.api_url.as_deref().unwrap_or(DEFAULT_TELEGRAM_API);
        let api_url = Url::parse(text)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                format!(
                    "notify.telegram.api_url: `{}` is not an http(s) URL",
                    redact::url_like_text(text)
                )
            })?;
        if self.chat_id.trim().is_empty() {
            return Err("notify.telegram.chat_id: must not be empty".into());
        }
        Ok(Telegram {
            bot_token: self.bot_token,
            chat_id: self.chat_id,
            api_url,
        })
    }
}

fn check_token(key: &str, token: &Secret) -> Result<(), String> {
    let token = token.expose();
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "{key}: too short ({} characters, need at least {MIN_TOKEN_LEN}); `hookrelay token` prints a good one",
            token.len()
        ));
    }
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!("{key}: use only A-Z, a-z, 0-9, `-` and `_`"));
    }
    Ok(())
}

/// Parses the template at `key`; an error quotes it as `shown`, which is
/// the source with its secrets masked.
fn parse_template(key: &str, source: &str, shown: &str) -> Result<Template, String> {
    Template::parse(source).map_err(|e: TemplateError| format!("{key}: template `{shown}`: {e}"))
}

/// Turns a TOML table of strings into ordered pairs, naming `key` on error.
fn string_pairs(key: &str, table: toml::Table) -> Result<Vec<(String, String)>, String> {
    table
        .into_iter()
        .map(|(name, value)| match value {
            toml::Value::String(text) => Ok((name, text)),
            other => Err(format!("{key}.{name}: must be a string, found {}", other.type_str())),
        })
        .collect()
}

impl RawProcessing {
    fn resolve(self, delivery: &Delivery) -> Result<Processing, String> {
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err("name: use only a-z, 0-9 and `-`".into());
        }
        check_token("token", &self.token)?;
        for token in &self.previous_tokens {
            check_token("previous_tokens", token)?;
        }
        let methods = match self.methods {
            None => vec!["GET".to_string(), "POST".to_string()],
            Some(list) => list
                .into_iter()
                .map(|m| {
                    let upper = m.to_ascii_uppercase();
                    if matches!(upper.as_str(), "GET" | "POST") {
                        Ok(upper)
                    } else {
                        Err(format!("methods: `{m}` is not GET or POST"))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        if methods.is_empty() {
            return Err("methods: name at least one of GET, POST".into());
        }
        let response = match self.response {
            None => Response {
                status: DEFAULT_RESPONSE_STATUS,
                body: DEFAULT_RESPONSE_BODY.into(),
                content_type: "text/plain; charset=utf-8".into(),
            },
            Some(raw) => Response {
                status: raw.status.unwrap_or(DEFAULT_RESPONSE_STATUS),
                body: raw.body.unwrap_or_else(|| DEFAULT_RESPONSE_BODY.into()),
                content_type: raw.content_type.unwrap_or_else(|| "text/plain; charset=utf-8".into()),
            },
        };
        if !(200..=299).contains(&response.status) {
            return Err(format!(
                "response.status: {} is not a 2xx status; the sender must see success",
                response.status
            ));
        }
        if let Some(field) = self.require.iter().find(|f| f.trim().is_empty()) {
            return Err(format!("require: `{field}` is not a field name"));
        }
        let dedupe = self
            .dedupe
            .as_deref()
            .map(|source| parse_template("dedupe", source, source))
            .transpose()?;
        let when = string_pairs("when", self.when)?;
        if self.action.is_empty() {
            return Err("add at least one [[processing.action]]".into());
        }
        let mut actions = Vec::new();
        for raw in self.action {
            let name = raw.name.clone();
            if actions.iter().any(|a: &Action| a.name == name) {
                return Err(format!("action `{name}`: the name is used twice"));
            }
            actions.push(raw.resolve(delivery).map_err(|e| format!("action `{name}`: {e}"))?);
        }
        Ok(Processing {
            name: self.name,
            enabled: self.enabled,
            token: self.token,
            previous_tokens: self.previous_tokens,
            methods,
            response,
            require: self.require,
            dedupe,
            dedupe_window: self.dedupe_window.map_or(DEFAULT_DEDUPE_WINDOW, |d| d.0),
            when,
            actions,
        })
    }
}

impl RawAction {
    fn resolve(self, delivery: &Delivery) -> Result<Action, String> {
        if self.name.trim().is_empty() {
            return Err("name: must not be empty".into());
        }
        let method = match self.method.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("GET") => Method::Get,
            Some("POST") => Method::Post,
            Some(other) => return Err(format!("method: `{other}` is not GET or POST")),
        };
        // Errors quote the URL with its secrets masked, as logs do: `check`
        // output and the SIGHUP log line are read and pasted by people.
        let shown_url = redact::url_like_text(&self.url);
        let url = parse_template("url", &self.url, &shown_url)?;
        // Every field rendered as "x" shows whether the fixed parts form a URL.
        let sample = url.render(|_| Some("x"), Escape::Url).text;
        match Url::parse(&sample) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => return Err(format!("url: `{shown_url}` is not an http(s) URL")),
        }
        let query = string_pairs("query", self.query)?
            .into_iter()
            .map(|(name, source)| {
                let shown = if redact::is_secret_param(&name) {
                    redact::MASK
                } else {
                    &source
                };
                Ok((name.clone(), parse_template(&format!("query.{name}"), &source, shown)?))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let headers = string_pairs("headers", self.headers)?
            .into_iter()
            .map(|(name, source)| {
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
                {
                    return Err(format!("headers: `{name}` is not a valid header name"));
                }
                let shown = if redact::is_secret_header(&name) {
                    redact::MASK
                } else {
                    &source
                };
                Ok((
                    name.clone(),
                    parse_template(&format!("headers.{name}"), &source, shown)?,
                ))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let body = self
            .body
            .as_deref()
            .map(|source| parse_template("body", source, source))
            .transpose()?;
        if body.is_some() && method == Method::Get {
            return Err("body: only a POST action sends a body".into());
        }
        if self.content_type.is_some() && body.is_none() {
            return Err("content_type: set a body too".into());
        }
        let timeout = self.timeout.map_or(delivery.timeout, |d| d.0);
        if timeout.is_zero() {
            return Err("timeout: must be longer than zero".into());
        }
        let retry = match &self.retry {
            Some(raw) => raw.over(delivery.retry).map_err(|e| format!("retry.{e}"))?,
            None => delivery.retry,
        };
        Ok(Action {
            name: self.name,
            method,
            url,
            query,
            headers,
            body,
            content_type: self.content_type,
            expect_body: self.expect_body,
            timeout,
            retry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures(dir: &str) -> Vec<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        files
    }

    /// The shipped example parses and points its database beside itself.
    #[test]
    fn example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let config = Config::load(&path).unwrap();
        assert_eq!(config.storage.path, path.parent().unwrap().join("hookrelay.db"));
        assert!(config.server.listen.ip().is_loopback());
        assert!(!config.processings.is_empty());
    }

    /// Each broken config fails with the message on its first line (`# error: …`).
    /// Regression: `check` and the SIGHUP log printed an action URL's
    /// `token=` value in "url: … is not an http(s) URL"; no broken fixture's
    /// error may show the secret its file holds.
    #[test]
    fn config_errors_mask_secrets() {
        let files = fixtures("tests/config/broken");
        let with_secret: Vec<_> = files
            .iter()
            .filter(|f| std::fs::read_to_string(f).unwrap().contains("s3cr3t"))
            .collect();
        assert!(with_secret.len() >= 3, "fixtures with a secret missing");
        for file in with_secret {
            let err = Config::load(file).unwrap_err().to_string();
            assert!(!err.contains("s3cr3t"), "{err}");
        }
    }

    /// Regression: `smtp://user:password@host` sent the password in clear;
    /// now it needs tls=required, or tls=none said out loud (which lettre
    /// does not know, so it is removed), and `check` says which.
    #[test]
    fn smtp_credentials_need_tls_or_an_explicit_none() {
        let transport = |smtp: &str| {
            let text = format!(
                "[notify]\nemail_to = [\"a@b.ru\"]\nemail_from = \"c@d.ru\"\nsmtp = \"{smtp}\"\n\
                 [[processing]]\nname = \"p\"\ntoken = \"abcdefghijklmnopqrstuvwxyz\"\n\
                 [[processing.action]]\nname = \"a\"\nurl = \"https://h.example/\"\n"
            );
            Config::parse(&text, Path::new("/c.toml")).map(|c| c.notify.unwrap().email.unwrap().transport)
        };
        for refused in [
            "smtp://u:pw@h:587",
            "smtp://u:pw@h:587?tls=opportunistic",
            "smtps://u:pw@h:465?tls=none",
            "smtp://h:25?tls=maybe",
        ] {
            let err = transport(refused).unwrap_err().to_string();
            assert!(!err.contains("pw"), "{err}");
        }
        let plain = transport("smtp://u:pw@h:587?tls=none").unwrap();
        assert_eq!(plain, EmailTransport::Smtp(Secret("smtp://u:pw@h:587".into())));
        assert!(plain.describe().contains("the password crosses the network in clear"));
        assert!(!plain.describe().contains("pw"));
        let starttls = transport("smtp://u:pw@h:587?tls=required").unwrap();
        assert_eq!(
            starttls.describe(),
            "smtp://u:MASKED@h:587?tls=required (STARTTLS required)"
        );
        assert_eq!(
            transport("smtps://u:pw@h:465").unwrap().describe(),
            "smtps://u:MASKED@h:465 (implicit TLS)"
        );
        assert_eq!(
            transport("smtp://127.0.0.1:25").unwrap().describe(),
            "smtp://127.0.0.1:25 (no TLS)"
        );
    }

    /// Regression: a truncated (0-byte) file loaded as "0 processing(s)" and a
    /// reload made every webhook a 404; now it is refused, blank lines too.
    #[test]
    fn empty_file_is_refused() {
        for text in ["", "\n  \n"] {
            let err = Config::parse(text, Path::new("/etc/hookrelay/config.toml")).unwrap_err();
            assert_eq!(err.to_string(), "/etc/hookrelay/config.toml: the file is empty");
        }
    }

    #[test]
    fn broken_configs_fail_with_their_message() {
        let files = fixtures("tests/config/broken");
        assert!(files.len() >= 10, "fixtures missing: found {}", files.len());
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let expected = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# error: "))
                .unwrap_or_else(|| panic!("{}: first line must be `# error: …`", file.display()));
            let err = Config::load(&file).expect_err(&file.display().to_string()).to_string();
            let shown = err.strip_prefix(&format!("{}", file.display())).unwrap_or(&err);
            assert_eq!(shown, expected, "{}", file.display());
        }
    }

    /// Secrets print as MASKED in Debug output of the whole config.
    #[test]
    fn debug_masks_secrets() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let config = Config::load(&path).unwrap();
        let token = config.processings[0].token.expose().to_string();
        let debug = format!("{config:?}");
        assert!(!debug.contains(&token));
        assert!(debug.contains("MASKED"));
    }

    /// Action settings fall back to [delivery], key by key.
    #[test]
    fn action_inherits_delivery_defaults() {
        let text = r#"
            [delivery]
            timeout = "5s"
            retry = { attempts = 3, first_delay = "1s" }
            [[processing]]
            name = "p"
            token = "abcdefghijklmnopqrstuvwxyz"
            [[processing.action]]
            name = "a"
            url = "http://127.0.0.1/x?{{id}}"
            retry = { max_delay = "10m" }
        "#;
        let config = Config::parse(text, Path::new("/etc/hookrelay/c.toml")).unwrap();
        let action = &config.processings[0].actions[0];
        assert_eq!(action.timeout, Duration::from_secs(5));
        assert_eq!(
            action.retry,
            Retry {
                attempts: 3,
                first_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(600)
            }
        );
        assert_eq!(config.storage.path, Path::new("/var/lib/hookrelay/hookrelay.db"));
    }

    /// Byte offsets become 1-based line and column.
    #[test]
    fn line_columns() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
    }
}
