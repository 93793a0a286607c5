//! The TOML schema as serde reads it (`Raw*`, strict: unknown keys are
//! errors); [`resolve`] turns it into [`Config`].

mod resolve;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{Config, ConfigError, Secret};

/// Parses `text` as if read from `path` into a resolved config.
pub(super) fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
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
    console: RawConsole,
    #[serde(default)]
    processing: Vec<RawProcessing>,
    #[serde(default)]
    receiver: Vec<RawReceiver>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReceiver {
    url: String,
    rate: Option<String>,
    burst: Option<u32>,
    concurrency: Option<usize>,
    breaker: Option<RawBreaker>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    failures: Option<u32>,
    probe: Option<Dur>,
    max_probe: Option<Dur>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConsole {
    session_lifetime: Option<Dur>,
    #[serde(default)]
    viewer: Vec<RawViewer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawViewer {
    name: String,
    token: Secret,
    processings: Vec<String>,
    #[serde(default)]
    show_address: bool,
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
    language: Option<String>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    allow_from: Vec<String>,
    max_per_ip: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    path: Option<PathBuf>,
    url: Option<String>,
    keep_days: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    workers: Option<usize>,
    timeout: Option<Dur>,
    max_age: Option<Dur>,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    breaker: RawBreaker,
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
    allow_from: Option<Vec<String>>,
    silence: Option<Dur>,
    active_hours: Option<String>,
    active_days: Option<Vec<String>>,
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
    kind: Option<String>,
    method: Option<String>,
    url: Option<String>,
    #[serde(default)]
    query: toml::Table,
    #[serde(default)]
    headers: toml::Table,
    body: Option<String>,
    content_type: Option<String>,
    expect_body: Option<String>,
    accept: Option<RawAccept>,
    retry_on: Option<RawRetryOn>,
    timeout: Option<Dur>,
    max_age: Option<Dur>,
    retry: Option<RawRetry>,
    on_missing: Option<String>,
    // The destination kinds' keys (config/kinds.rs).
    bot_token: Option<Secret>,
    chat_id: Option<String>,
    text: Option<String>,
    parse_mode: Option<String>,
    api_url: Option<String>,
    webhook_url: Option<Secret>,
    fields: Option<toml::Table>,
    format: Option<String>,
    subdomain: Option<String>,
    access_token: Option<Secret>,
    contact: Option<toml::Table>,
    lead: Option<toml::Table>,
    lead_fields: Option<toml::Table>,
    contact_fields: Option<toml::Table>,
    tags: Option<Vec<String>>,
    key_field: Option<u64>,
    client_id: Option<String>,
    client_secret: Option<Secret>,
    redirect_uri: Option<String>,
    remember: Option<String>,
    params: Option<toml::Table>,
    counter: Option<u64>,
    token: Option<Secret>,
    route: Option<String>,
    time_zone: Option<String>,
    batch_every: Option<Dur>,
    batch_max: Option<usize>,
    poll_every: Option<Dur>,
    window: Option<Dur>,
    row: Option<toml::Table>,
}

/// `[processing.action.accept]`: what counts as taken.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccept {
    status: Option<Vec<toml::Value>>,
    #[serde(default)]
    json: toml::Table,
    #[serde(default)]
    json_present: Vec<String>,
    body: Option<String>,
}

/// `[processing.action.retry_on]`: what means "try again later".
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetryOn {
    status: Option<Vec<toml::Value>>,
    #[serde(default)]
    json: toml::Table,
    delay_json: Option<String>,
    until_json: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte offsets become 1-based line and column.
    #[test]
    fn line_columns() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
    }
}
