//! Resolution of the raw schema into [`Config`]: defaults filled in,
//! templates parsed, paths made absolute, and every error naming the key
//! and the processing.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use url::Url;

use super::*;
use crate::clock;
use crate::config::*;
use crate::redact;
use crate::template::{Escape, Template, TemplateError};

mod amocrm;
mod console;
mod kinds;
mod metrica;
mod notify;
mod receiver;
mod rules;

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
/// A working day: sign in in the morning, signed out by the next one.
const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Addresses and CIDR ranges (`10.0.0.0/8`, `::1`), a bare address being a
/// range of one.
pub(super) fn networks(key: &str, list: &[String]) -> Result<Vec<ipnet::IpNet>, String> {
    list.iter()
        .map(|text| {
            text.parse::<ipnet::IpNet>()
                .or_else(|_| {
                    text.parse::<std::net::IpAddr>()
                        .map(|ip| ipnet::IpNet::from(ip.to_canonical()))
                })
                .map(|net| net.trunc())
                .map_err(|_| format!("{key}: `{text}` is not an address or range such as 10.0.0.0/8"))
        })
        .collect()
}

/// `50/s`, `600/m` or `1000/h`.
pub(super) fn rate(text: &str) -> Result<Rate, String> {
    let bad = || format!("`{text}` is not a rate such as 50/s, 600/m or 1000/h");
    let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let per = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    if count == 0 {
        return Err(format!("`{text}`: the count must be at least 1"));
    }
    Ok(Rate { count, per })
}

fn socket_addr(key: &str, text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("{key}: `{text}` is not an IP address and port such as 127.0.0.1:8080"))
}

impl RawConfig {
    pub(super) fn resolve(self, path: &Path) -> Result<Config, String> {
        let base = path.parent().unwrap_or(Path::new("."));
        let server = self.server.resolve()?;
        if self.storage.path.is_some() && self.storage.url.is_some() {
            return Err("storage: set either path (SQLite) or url (PostgreSQL), not both".into());
        }
        let url = match self.storage.url {
            Some(url) if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) => {
                return Err(format!(
                    "storage.url: `{}` is not a PostgreSQL URL such as postgres://hookrelay@db.example/hookrelay",
                    crate::model::location::Location::Postgres(url.clone())
                ));
            }
            url => url,
        };
        let storage = Storage {
            path: base.join(self.storage.path.unwrap_or_else(|| DEFAULT_DB_PATH.into())),
            url,
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
            max_age: self.delivery.max_age.map(|d| d.0),
            retry: self
                .delivery
                .retry
                .over(default_retry)
                .map_err(|e| format!("delivery.retry: {e}"))?,
            breaker: self
                .delivery
                .breaker
                .over(receiver::DEFAULT_BREAKER)
                .map_err(|e| format!("delivery.breaker: {e}"))?,
        };
        if !(1..=256).contains(&delivery.workers) {
            return Err("delivery.workers: must be between 1 and 256".into());
        }
        if delivery.timeout.is_zero() {
            return Err("delivery.timeout: must be longer than zero".into());
        }
        if delivery.max_age.is_some_and(|age| age.is_zero()) {
            return Err("delivery.max_age: must be longer than zero".into());
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
                .resolve(&delivery, &server.allow_from)
                .map_err(|e| format!("processing `{name}`: {e}"))?;
            if processing.silence.is_some() && notify.is_none() {
                return Err(format!(
                    "processing `{name}`: silence: a silence alert is sent through [notify], which is not configured"
                ));
            }
            processings.push(processing);
        }
        kinds::check_recalls(&processings)?;
        if processings.is_empty() {
            // A truncated file must not reload as "serve nothing".
            return Err("no [[processing]] is configured: every webhook would get 404".into());
        }
        let console = self.console.resolve(&server, &tokens)?;
        let mut receivers = receiver::resolve(self.receiver, &delivery)?;
        receiver::implied(&processings, &mut receivers, &delivery);
        Ok(Config {
            path: path.to_path_buf(),
            server,
            storage,
            delivery,
            notify,
            console,
            processings,
            receivers,
        })
    }
}

impl RawServer {
    pub(super) fn resolve(self) -> Result<Server, String> {
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
        let language = match self.language.as_deref() {
            None => crate::model::said::Lang::En,
            Some(code) => crate::model::said::Lang::parse(code)
                .ok_or_else(|| format!("server.language: `{code}` is not en or ru"))?,
        };
        let trusted_proxies = networks("server.trusted_proxies", &self.trusted_proxies)?;
        let allow_from = networks("server.allow_from", &self.allow_from)?;
        let max_per_ip = self
            .max_per_ip
            .as_deref()
            .map(|text| rate(text).map_err(|e| format!("server.max_per_ip: {e}")))
            .transpose()?;
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
            language,
            trusted_proxies,
            max_per_ip,
            allow_from,
        })
    }
}

impl RawRetry {
    /// Fills unset keys from `defaults` and checks the result.
    pub(super) fn over(&self, defaults: Retry) -> Result<Retry, String> {
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

/// Processing and viewer names: they appear in URLs, metrics and file names.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
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
    pub(super) fn resolve(self, delivery: &Delivery, default_allow: &[ipnet::IpNet]) -> Result<Processing, String> {
        if !valid_name(&self.name) {
            return Err("name: use only a-z, 0-9 and `-`".into());
        }
        check_token("token", &self.token)?;
        for token in &self.previous_tokens {
            check_token("previous_tokens", token)?;
        }
        let methods = match self.methods {
            None => vec![Method::Get, Method::Post],
            Some(list) => list
                .iter()
                .map(|m| Method::parse(m).ok_or_else(|| format!("methods: `{m}` is not GET or POST")))
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
            let mut action = raw.resolve(delivery).map_err(|e| format!("action `{name}`: {e}"))?;
            match &mut action.kind {
                crate::config::kinds::Kind::AmoCrm(amo) => {
                    if let Some(oauth) = &mut amo.oauth {
                        oauth.processing = self.name.clone();
                    }
                }
                crate::config::kinds::Kind::Metrica(metrica) => {
                    metrica.key = format!("{}/{}", self.name, action.name);
                }
                _ => {}
            }
            if let Some(remember) = &mut action.remember {
                remember.name = format!("{}/{}", self.name, action.name);
            }
            actions.push(action);
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
            allow_from: match &self.allow_from {
                Some(list) => networks("allow_from", list)?,
                None => default_allow.to_vec(),
            },
            silence: silence(self.silence, self.active_hours.as_deref(), self.active_days.as_deref())?,
        })
    }
}

/// `silence`, with the `active_hours` and `active_days` it is measured in.
fn silence(after: Option<Dur>, hours: Option<&str>, days: Option<&[String]>) -> Result<Option<Silence>, String> {
    let Some(after) = after else {
        if hours.is_some() || days.is_some() {
            return Err("active_hours and active_days: they only shape `silence`, which is not set".into());
        }
        return Ok(None);
    };
    if after.0 < Duration::from_secs(1) {
        return Err("silence: must be at least 1s".into());
    }
    let mut active = clock::ActiveTime::always();
    if let Some(hours) = hours {
        (active.start, active.end) = clock::ActiveTime::parse_hours(hours).map_err(|e| format!("active_hours: {e}"))?;
    }
    if let Some(days) = days {
        active.days = [false; 7];
        for day in days {
            let index = clock::DAY_NAMES
                .iter()
                .position(|name| name.eq_ignore_ascii_case(day.trim()))
                .ok_or_else(|| format!("active_days: `{day}` is not one of {}", clock::DAY_NAMES.join(", ")))?;
            active.days[index] = true;
        }
        if days.is_empty() {
            return Err("active_days: name at least one day".into());
        }
    }
    Ok(Some(Silence { after: after.0, active }))
}

impl RawAction {
    pub(super) fn resolve(mut self, delivery: &Delivery) -> Result<Action, String> {
        if self.name.trim().is_empty() {
            return Err("name: must not be empty".into());
        }
        let built = match self.kind.as_deref().unwrap_or("http") {
            "http" => {
                kinds::only_for("http", &self)?;
                self.http()?
            }
            "telegram" => kinds::telegram(&mut self)?,
            "bitrix24" => kinds::bitrix24(&mut self)?,
            "amocrm" => amocrm::amocrm(&mut self)?,
            "metrica" => metrica::metrica(&mut self)?,
            other => {
                return Err(format!(
                    "kind: `{other}` is not one of http, telegram, bitrix24, amocrm, metrica"
                ))
            }
        };
        let timeout = self.timeout.map_or(delivery.timeout, |d| d.0);
        if timeout.is_zero() {
            return Err("timeout: must be longer than zero".into());
        }
        let retry = match &self.retry {
            Some(raw) => raw.over(delivery.retry).map_err(|e| format!("retry.{e}"))?,
            None => delivery.retry,
        };
        // A metrica row's age is checked against its `window` instead.
        let max_age = match built.kind {
            crate::config::kinds::Kind::Metrica(_) => None,
            _ => self.max_age.map(|d| d.0).or(delivery.max_age),
        };
        if max_age.is_some_and(|age| age.is_zero()) {
            return Err("max_age: must be longer than zero".into());
        }
        let on_missing = match self.on_missing.as_deref() {
            None | Some("fail") => OnMissing::Fail,
            Some("send_empty") => OnMissing::SendEmpty,
            Some(other) => return Err(format!("on_missing: `{other}` is not one of fail, send_empty")),
        };
        // The processing's name is filled in by the processing.
        let remember = self
            .remember
            .as_deref()
            .map(|source| {
                Ok::<_, String>(Remember {
                    name: self.name.clone(),
                    key: parse_template("remember", source, source)?,
                })
            })
            .transpose()?;
        Ok(Action {
            name: self.name,
            method: built.method,
            url: built.url,
            query: built.query,
            headers: built.headers,
            body: built.body,
            content_type: built.content_type,
            rules: built.rules,
            kind: built.kind,
            remember,
            timeout,
            retry,
            max_age,
            on_missing,
        })
    }
}
