//! What hookrelay says about an event, a delivery or an attempt: why it
//! was skipped, what was noticed, why it failed. Each is kept as a kind
//! with its parameters (JSON, in the column that once held English text)
//! and said in a language only when it is shown: the console in the
//! reader's, the command line and notifications in `server.language`.
//! Rows written before kept English text; they read back as
//! [`Said::Text`] and show as they were.

use serde::{Deserialize, Serialize};

use super::response::Judged;

mod russian;

/// A language things are said in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    Ru,
    #[default]
    En,
}

impl Lang {
    /// The code used in the config, `?lang=`, the cookie and `<html lang>`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ru => "ru",
            Lang::En => "en",
        }
    }

    /// A code as the config, `?lang=` or the cookie give it.
    pub fn parse(code: &str) -> Option<Lang> {
        match code {
            "ru" => Some(Lang::Ru),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The language `Accept-Language` prefers among ours; Russian when it
    /// names neither, since the console's users are Russian-speaking.
    pub fn from_accept_language(header: Option<&str>) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for item in header.unwrap_or("").split(',') {
            let mut parts = item.trim().split(';');
            let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or("");
            if let Some(lang) = Lang::parse(primary) {
                if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                    best = Some((q, lang));
                }
            }
        }
        best.map_or(Lang::Ru, |(_, lang)| lang)
    }

    /// The other language, for the switch.
    pub fn other(self) -> Lang {
        match self {
            Lang::Ru => Lang::En,
            Lang::En => Lang::Ru,
        }
    }
}

/// A field a template named that the event cannot fill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Absent {
    pub field: String,
    /// The event has the field, holding an unfilled placeholder.
    #[serde(default)]
    pub placeholder: bool,
    /// The closest name the event has, for a near miss.
    #[serde(default)]
    pub near: Option<String>,
}

/// One thing said, as a kind and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Said {
    /// Skipped: a `require`d field is not in the event.
    RequiredMissing { field: String },
    /// Skipped: a `require`d field is empty.
    RequiredEmpty { field: String },
    /// Skipped: a `require`d field holds an unfilled placeholder.
    RequiredPlaceholder { field: String },
    /// Skipped: a `require`d field holds an ad platform's unfilled macro.
    RequiredMacro { field: String, value: String },
    /// Skipped: a `when` field has another value.
    WhenMismatch {
        field: String,
        actual: String,
        wanted: String,
    },
    /// Held: the processing is stopped.
    Disabled,
    /// A duplicate of an earlier operation with the same dedupe key.
    Duplicate { key: String, earlier: i64 },
    /// Rejected: a JSON body that does not parse.
    BodyNotJson { error: String },
    /// Rejected: a JSON body that is not an object.
    BodyNotObject,
    /// Rejected: a field name past `max_field_name_bytes`.
    NameTooLong { name: String, limit: usize },
    /// Rejected: names and values past `max_fields_bytes`.
    FieldsTooBig { limit: usize },
    /// Rejected: more fields than `max_fields`.
    TooManyFields { limit: usize },
    /// An action's template cannot be rendered.
    RenderFailed { action: String, error: String },
    /// Not sent: templates name fields the event cannot fill.
    Absent { action: String, fields: Vec<Absent> },
    /// Warning: a field holds an unfilled placeholder.
    Placeholder { field: String, value: String },
    /// Warning: a field holds an ad platform's unfilled macro (`{ad_id}`).
    AdMacro { field: String, value: String },
    /// Warning: a body kept but not read for fields.
    BodyNotRead { content_type: String },
    /// Warning: a field an action uses was missing and sent empty.
    MissingField { action: String, field: String },
    /// Warning: a header value held control characters.
    HeaderControl { action: String, header: String },
    /// An answer with this status (the status spoke for itself).
    Http { status: u16 },
    /// An answer judged by the action's response rules.
    Answer {
        verdict: Judged,
        /// The platform's explanation, when its kind knows the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<crate::model::platform::Note>,
    },
    /// No answer: connecting, sending or reading failed.
    Network { error: String },
    /// The request could not be built.
    InvalidRequest { error: String },
    /// Not sent yet: it recalls what an earlier event's action keeps
    /// (`recall`), and that is not known yet.
    Recalling { name: String, key: String },
    /// A metrica row broke one of Metrica's rules: never uploaded.
    RowRefused { action: String, rule: RowRule },
    /// A Metrica upload ended without linking its rows.
    BatchUnlinked {
        action: String,
        batch: i64,
        upload: String,
        state: String,
    },
    /// The delivery's `max_age` passed before it could be sent.
    Expired,
    /// Cancelled by hand while it waited.
    Cancelled { by: String },
    /// A delivery failed for good: the operator is told.
    DeliveryFailed {
        action: String,
        error: Box<Said>,
        attempt: u32,
    },
    /// Deliveries expired in one sweep, by action.
    ExpiredBatch { by_action: Vec<(String, u64)> },
    /// Deliveries waiting past half their `max_age`, and when the first
    /// of them expires (UTC, RFC 3339).
    Aging { count: u64, first_expires: String },
    /// An action's long-lived token lapses soon (UTC, RFC 3339).
    TokenLapsing { action: String, expires: String },
    /// Not sent: the integration has no tokens, or its refresh token was
    /// refused; it must be authorized again.
    Authorize {
        processing: String,
        action: String,
        why: String,
    },
    /// A processing skipped every event of the last day.
    AllSkipped {
        processing: String,
        count: u64,
        latest: Option<Box<Said>>,
    },
    /// No events for a while within active hours (times as shown).
    SilenceBegan {
        after: String,
        hours: String,
        zone: String,
        operation: i64,
        at: String,
    },
    /// Events are back after a silence (times as shown).
    SilenceEnded {
        operation: i64,
        at: String,
        last_operation: i64,
        last_at: String,
    },
    /// A receiver's breaker opened (times in UTC, RFC 3339).
    BreakerOpened {
        target: String,
        since: String,
        failures: u32,
        error: Option<Box<Said>>,
        waiting: i64,
    },
    /// A receiver's breaker closed.
    BreakerClosed {
        target: String,
        since: String,
        waiting: i64,
    },
    /// Text kept as it was: written before kinds were kept, or a message
    /// with no kind of its own.
    Text { text: String },
}

impl Said {
    /// Every kind, as stored.
    pub const KINDS: &'static [&'static str] = &[
        "required_missing",
        "required_empty",
        "required_placeholder",
        "required_macro",
        "when_mismatch",
        "disabled",
        "duplicate",
        "body_not_json",
        "body_not_object",
        "name_too_long",
        "fields_too_big",
        "too_many_fields",
        "render_failed",
        "absent",
        "placeholder",
        "ad_macro",
        "body_not_read",
        "missing_field",
        "header_control",
        "http",
        "answer",
        "network",
        "invalid_request",
        "recalling",
        "row_refused",
        "batch_unlinked",
        "expired",
        "cancelled",
        "delivery_failed",
        "expired_batch",
        "aging",
        "token_lapsing",
        "authorize",
        "all_skipped",
        "silence_began",
        "silence_ended",
        "breaker_opened",
        "breaker_closed",
        "text",
    ];

    /// Text, kept as it is.
    pub fn text(text: impl Into<String>) -> Said {
        Said::Text { text: text.into() }
    }

    /// Read back from a column: its JSON, or (a row written before kinds
    /// were kept) the text itself.
    pub fn read(stored: &str) -> Said {
        if stored.starts_with("{\"kind\":") {
            if let Ok(said) = serde_json::from_str(stored) {
                return said;
            }
        }
        Said::text(stored)
    }

    /// What a column keeps.
    pub fn store(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Said in `lang`.
    pub fn say(&self, lang: Lang) -> String {
        match lang {
            Lang::En => self.english(),
            Lang::Ru => self.russian(),
        }
    }

    fn english(&self) -> String {
        match self {
            Said::RequiredMissing { field } => format!("required field `{field}` is missing"),
            Said::RequiredEmpty { field } => format!("required field `{field}` is empty"),
            Said::RequiredPlaceholder { field } => {
                format!("required field `{field}` holds an unfilled placeholder")
            }
            Said::RequiredMacro { field, value } => {
                format!("required field `{field}` holds an ad platform's unfilled macro `{value}`")
            }
            Said::WhenMismatch { field, actual, wanted } => {
                format!("when: `{field}` is `{actual}`, not `{wanted}`")
            }
            Said::Disabled => "the processing is disabled (enabled = false); replay to send".into(),
            Said::Duplicate { key, earlier } => format!("same dedupe key `{key}` as operation {earlier}"),
            Said::BodyNotJson { error } => format!("the JSON body does not parse: {error}"),
            Said::BodyNotObject => "the JSON body must be an object such as {\"client_id\": \"1\"}".into(),
            Said::NameTooLong { name, limit } => format!("field name `{name}` is longer than {limit} bytes"),
            Said::FieldsTooBig { limit } => format!("the fields come to more than {limit} bytes"),
            Said::TooManyFields { limit } => format!("more than {limit} fields"),
            Said::RenderFailed { action, error } => format!("action `{action}`: {error}"),
            Said::Absent { action, fields } => {
                let each: Vec<String> = fields
                    .iter()
                    .map(|a| match (&a.near, a.placeholder) {
                        (_, true) => format!("field `{}` holds an unfilled placeholder", a.field),
                        (Some(near), false) => {
                            format!("the event has no field `{}` (did you mean `{near}`?)", a.field)
                        }
                        (None, false) => format!("the event has no field `{}`", a.field),
                    })
                    .collect();
                format!(
                    "action `{action}`: {}; nothing was sent (on_missing = \"fail\")",
                    each.join("; ")
                )
            }
            Said::Placeholder { field, value } => format!(
                "field `{field}` holds an unfilled placeholder `{value}`: the sender's address has a typo; the field counts as missing"
            ),
            Said::AdMacro { field, value } => format!(
                "field `{field}` holds an ad platform's unfilled macro `{value}`: the ad's link did not get its value; the field counts as missing"
            ),
            Said::BodyNotRead { content_type } => format!(
                "the body ({content_type}) was kept but not read for fields: only form and JSON bodies are"
            ),
            Said::MissingField { action, field } => {
                format!("action `{action}`: field `{field}` is missing; it was sent empty")
            }
            Said::HeaderControl { action, header } => format!(
                "action `{action}`: header `{header}` held control characters; they were sent as spaces"
            ),
            Said::Http { status } => format!("HTTP {status}"),
            Said::Answer { verdict, note: None } => verdict.to_string(),
            Said::Answer {
                verdict,
                note: Some(note),
            } => format!("{verdict}; {note}"),
            Said::Network { error } => error.clone(),
            Said::InvalidRequest { error } => format!("invalid request: {error}"),
            Said::Recalling { name, key } => format!(
                "not sent yet: it needs what `{name}` keeps for `{key}` (an earlier event's answer, a lead's id), \
                 which is not known yet; tried again later"
            ),
            Said::RowRefused { action, rule } => format!("action `{action}`: {}; the row is not uploaded", rule.english()),
            Said::BatchUnlinked { action, batch, upload, state } => format!(
                "action `{action}`: Metrica's upload {upload} (batch {batch}) ended {state}: it linked none of its rows \
                 to visits; see the tag's offline data in Metrica"
            ),
            Said::Expired => "expired: max_age passed before it could be sent; it will not be sent".into(),
            Said::Cancelled { by } => format!("cancelled by {by}"),
            Said::DeliveryFailed { action, error, attempt } => {
                format!("action `{action}`: {} (attempt {attempt})", error.english())
            }
            Said::ExpiredBatch { by_action } => {
                let total: u64 = by_action.iter().map(|(_, n)| n).sum();
                let each: Vec<String> = by_action.iter().map(|(a, n)| format!("action `{a}`: {n}")).collect();
                format!(
                    "{total} deliveries expired unsent ({}): max_age passed before they could be sent; \
                     `hookrelay history --status failed` lists them, `hookrelay replay --force ID` sends one anyway",
                    each.join(", ")
                )
            }
            Said::Aging { count, first_expires } => format!(
                "{count} deliveries have waited past half their max_age and will expire unsent if they cannot go \
                 in time, the first at {first_expires}; `hookrelay status` shows the receivers' state"
            ),
            Said::TokenLapsing { action, expires } => format!(
                "action `{action}`: its amoCRM access_token (a long-lived token) expires at {expires}; \
                 make a new one in the integration's settings and put it in access_token before then"
            ),
            Said::Authorize { processing, action, why } => format!(
                "not sent: amoCRM needs signing in again ({why}); open the integration in amoCRM, copy a new \
                 authorization code and run `hookrelay amocrm authorize {processing} {action} CODE`, then replay"
            ),
            Said::AllSkipped {
                processing,
                count,
                latest,
            } => format!(
                "every one of the {count} events of the last 24 h was skipped, nothing was sent \
                 (the latest: {}); check `require` and `when` against `hookrelay fields {processing}`",
                latest.as_ref().map_or("no reason recorded".to_string(), |l| l.english())
            ),
            Said::SilenceBegan {
                after,
                hours,
                zone,
                operation,
                at,
            } => format!(
                "no events for {after} within active hours ({hours}, {zone}); the last was operation {operation} at {at}. \
                 Has the webhook address in the sender changed, or has it stopped sending?"
            ),
            Said::SilenceEnded {
                operation,
                at,
                last_operation,
                last_at,
            } => format!(
                "events are back: operation {operation} at {at}, the first since operation {last_operation} at {last_at}"
            ),
            Said::BreakerOpened {
                target,
                since,
                failures,
                error,
                waiting,
            } => format!(
                "receiver {target} fails since {since} ({failures} failures in a row), last error: {}; \
                 the breaker is open: {waiting} deliveries wait, unspent, for a probe to succeed",
                error.as_ref().map_or("unknown".to_string(), |e| e.english())
            ),
            Said::BreakerClosed { target, since, waiting } => format!(
                "receiver {target} answers again (failing since {since}); the breaker is closed: {waiting} waiting deliveries are being sent"
            ),
            Said::Text { text } => text.clone(),
        }
    }

    /// The stored kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Said::RequiredMissing { .. } => "required_missing",
            Said::RequiredEmpty { .. } => "required_empty",
            Said::RequiredPlaceholder { .. } => "required_placeholder",
            Said::RequiredMacro { .. } => "required_macro",
            Said::WhenMismatch { .. } => "when_mismatch",
            Said::Disabled => "disabled",
            Said::Duplicate { .. } => "duplicate",
            Said::BodyNotJson { .. } => "body_not_json",
            Said::BodyNotObject => "body_not_object",
            Said::NameTooLong { .. } => "name_too_long",
            Said::FieldsTooBig { .. } => "fields_too_big",
            Said::TooManyFields { .. } => "too_many_fields",
            Said::RenderFailed { .. } => "render_failed",
            Said::Absent { .. } => "absent",
            Said::Placeholder { .. } => "placeholder",
            Said::AdMacro { .. } => "ad_macro",
            Said::BodyNotRead { .. } => "body_not_read",
            Said::MissingField { .. } => "missing_field",
            Said::HeaderControl { .. } => "header_control",
            Said::Http { .. } => "http",
            Said::Answer { .. } => "answer",
            Said::Network { .. } => "network",
            Said::InvalidRequest { .. } => "invalid_request",
            Said::Recalling { .. } => "recalling",
            Said::RowRefused { .. } => "row_refused",
            Said::BatchUnlinked { .. } => "batch_unlinked",
            Said::Expired => "expired",
            Said::Cancelled { .. } => "cancelled",
            Said::DeliveryFailed { .. } => "delivery_failed",
            Said::ExpiredBatch { .. } => "expired_batch",
            Said::Aging { .. } => "aging",
            Said::TokenLapsing { .. } => "token_lapsing",
            Said::Authorize { .. } => "authorize",
            Said::AllSkipped { .. } => "all_skipped",
            Said::SilenceBegan { .. } => "silence_began",
            Said::SilenceEnded { .. } => "silence_ended",
            Said::BreakerOpened { .. } => "breaker_opened",
            Said::BreakerClosed { .. } => "breaker_closed",
            Said::Text { .. } => "text",
        }
    }
}

/// Which of Metrica's rules a row broke (config/kinds/metrica.rs cites them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum RowRule {
    /// A column every row needs is empty.
    Missing { column: String },
    /// None of the columns that say who the row is about is filled.
    NoIdentifier { columns: String },
    /// The time does not read as one.
    NotTime { column: String, value: String },
    /// Dated before Metrica's linking window.
    TooOld { column: String, value: String, days: u64 },
    /// Dated in the future.
    Future { column: String, value: String },
    /// Not a phone number with its country code.
    NotPhone { value: String },
    /// Not a number of money.
    NotNumber { column: String, value: String },
}

impl RowRule {
    /// In English.
    pub fn english(&self) -> String {
        match self {
            RowRule::Missing { column } => format!("column `{column}` is empty, and every row needs it"),
            RowRule::NoIdentifier { columns } => {
                format!("nothing says who the row is about: {columns} are all empty")
            }
            RowRule::NotTime { column, value } => format!("column `{column}`: `{value}` is not a date and time"),
            RowRule::TooOld { column, value, days } => format!(
                "column `{column}`: {value} is older than Metrica's {days}-day window, so it would never be linked"
            ),
            RowRule::Future { column, value } => format!("column `{column}`: {value} is in the future"),
            RowRule::NotPhone { value } => {
                format!("`{value}` is not a phone number with its country code (7XXXXXXXXXX)")
            }
            RowRule::NotNumber { column, value } => format!("column `{column}`: `{value}` is not an amount"),
        }
    }

    /// In Russian.
    pub fn russian(&self) -> String {
        match self {
            RowRule::Missing { column } => format!("колонка «{column}» пуста, а она нужна в каждой строке"),
            RowRule::NoIdentifier { columns } => {
                format!("не сказано, о ком строка: {columns} — все пусты")
            }
            RowRule::NotTime { column, value } => format!("колонка «{column}»: «{value}» — не дата и время"),
            RowRule::TooOld { column, value, days } => format!(
                "колонка «{column}»: {value} старше окна Метрики в {days} дн., такая строка не свяжется никогда"
            ),
            RowRule::Future { column, value } => format!("колонка «{column}»: {value} — это в будущем"),
            RowRule::NotPhone { value } => {
                format!("«{value}» — не номер телефона с кодом страны (7XXXXXXXXXX)")
            }
            RowRule::NotNumber { column, value } => format!("колонка «{column}»: «{value}» — не сумма"),
        }
    }
}

/// Kept text, for tests that need some said thing.
#[cfg(test)]
impl From<&str> for Said {
    fn from(text: &str) -> Said {
        Said::text(text)
    }
}

impl std::fmt::Display for Said {
    /// In English, as logs and `--json` say it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.english())
    }
}

#[cfg(test)]
mod tests;
