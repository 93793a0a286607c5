//! What an action counts as "the destination took it", and what it counts
//! as "try again later": the response rules a delivery carries, and the
//! verdict an attempt records, naming the rule that decided it.
//!
//! Real destinations answer 200 and say no in the body: Telegram's Bot API
//! `{"ok":false,...}` (core.telegram.org/bots/api, "Making requests"),
//! Bitrix24's `{"error":"...","error_description":"..."}`
//! (apidocs.bitrix24.com, "Errors"). So success is decided by rules the
//! action sets, and the default stays what it always was: any 2xx.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A range of HTTP statuses, both ends included: `2xx` is `(200, 299)`.
pub type Statuses = (u16, u16);

/// The rules one delivery's answers are judged by. Stored with the
/// delivery (as JSON), so a reload does not change how a request already
/// rendered is judged; `hookrelay requeue` renders it again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResponseRules {
    pub accept: Accept,
    pub retry: RetryOn,
    /// Answers a destination kind gives a name (a Telegram bot blocked, a
    /// group that became a supergroup), said with the failure; set by the
    /// kind, not the config.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<NoteRule>,
    /// A JSON path whose value an accepted answer keeps (Bitrix24's new
    /// lead id, `result`): shown with the attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep: Option<String>,
    /// Where the kept value is remembered, for a later event's `recall`:
    /// the action's `processing/action` and this event's key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remember: Option<(String, String)>,
}

/// When an answer that is not accepted gets a platform's explanation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoteRule {
    /// The statuses it applies to; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status: Vec<Statuses>,
    /// A JSON path that must hold one of these values (Bitrix24's `error`
    /// code); no values: be present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<(String, Vec<Value>)>,
    /// A JSON path whose value, when present, the note quotes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<String>,
    pub about: super::platform::About,
}

/// `accept`: every condition set must hold for an answer to be success.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Accept {
    /// The statuses that may be success; `None`: any 2xx.
    pub status: Option<Vec<Statuses>>,
    /// JSON paths that must hold one of their values.
    pub json: Vec<(String, Vec<Value>)>,
    /// JSON paths that must be present (any value but null).
    pub json_present: Vec<String>,
    /// Text the body must contain (what `expect_body` always meant).
    pub body: Option<String>,
}

/// `retry_on`: what an answer that is not accepted must show to be tried
/// again later; any other is a permanent failure.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryOn {
    /// `None`: 408, 429 and 5xx.
    pub status: Option<Vec<Statuses>>,
    /// JSON paths any one of which holding one of its values means "later".
    pub json: Vec<(String, Vec<Value>)>,
    /// A JSON path whose number is the seconds to wait before the next
    /// attempt, like a `Retry-After` header (Telegram's `parameters.retry_after`).
    pub delay_json: Option<String>,
    /// A JSON path whose number is the Unix time (seconds) before which the
    /// next attempt must not go (Bitrix24's `time.operating_reset_at`).
    pub until_json: Option<String>,
}

/// The statuses retried when `retry_on.status` is not set.
pub const DEFAULT_RETRY_STATUSES: &[Statuses] = &[(408, 408), (429, 429), (500, 599)];
/// The statuses accepted when `accept.status` is not set.
pub const DEFAULT_ACCEPT_STATUSES: &[Statuses] = &[(200, 299)];

impl ResponseRules {
    /// The rules of an action that sets only `expect_body` (or nothing).
    pub fn expecting(body: Option<String>) -> ResponseRules {
        ResponseRules {
            accept: Accept {
                body,
                ..Accept::default()
            },
            ..ResponseRules::default()
        }
    }

    /// Whether these are the rules an action without any has (then the
    /// store keeps none).
    pub fn is_default(&self) -> bool {
        *self == ResponseRules::default()
    }
}

/// Whether `status` is in `sets`.
pub fn status_in(sets: &[Statuses], status: u16) -> bool {
    sets.iter().any(|&(low, high)| (low..=high).contains(&status))
}

/// `2xx`, `429` or `500-503`, as the config writes a status set.
pub fn statuses_text(sets: &[Statuses]) -> String {
    sets.iter()
        .map(|&(low, high)| match (low, high) {
            _ if low == high => low.to_string(),
            _ if low % 100 == 0 && high == low + 99 => format!("{}xx", low / 100),
            _ => format!("{low}-{high}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What decided an attempt's answer: the verdict and the rule behind it,
/// kept with the attempt (as JSON) so that history says it plainly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Judged {
    /// Accepted: the status is an accepted one and every body rule held;
    /// `kept`: the value the rules' `keep` path held (a new lead's id).
    Accepted {
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kept: Option<Value>,
    },
    /// Not accepted, not retried: the status is neither.
    StatusRefused { status: u16 },
    /// Retried: the status is one `retry_on` names (or a default one).
    StatusRetry { status: u16 },
    /// Retried: the body's `path` holds `value`, which `retry_on.json` names.
    JsonRetry { status: u16, path: String, value: Value },
    /// Not accepted: the body's `path` holds `found` (null: absent), not
    /// one of `expected` (empty: present was all it needed).
    JsonMismatch {
        status: u16,
        path: String,
        expected: Vec<Value>,
        found: Value,
    },
    /// Not accepted: a JSON rule was set and the body is not JSON.
    NotJson { status: u16 },
    /// Not accepted: the body lacks `text`.
    BodyLacks { status: u16, text: String },
}

impl Judged {
    /// Every kind, for tests that render each one.
    pub const KINDS: &'static [&'static str] = &[
        "accepted",
        "status_refused",
        "status_retry",
        "json_retry",
        "json_mismatch",
        "not_json",
        "body_lacks",
    ];

    /// The answer's HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Judged::Accepted { status, .. }
            | Judged::StatusRefused { status }
            | Judged::StatusRetry { status }
            | Judged::JsonRetry { status, .. }
            | Judged::JsonMismatch { status, .. }
            | Judged::NotJson { status }
            | Judged::BodyLacks { status, .. } => *status,
        }
    }

    /// What an accepted answer kept (the rules' `keep` path), if anything.
    pub fn kept(&self) -> Option<&Value> {
        match self {
            Judged::Accepted { kept, .. } => kept.as_ref(),
            _ => None,
        }
    }

    /// Whether the answer was accepted.
    pub fn accepted(&self) -> bool {
        matches!(self, Judged::Accepted { .. })
    }

    /// Whether the body decided it, not the status alone.
    pub fn by_body(&self) -> bool {
        matches!(
            self,
            Judged::JsonRetry { .. } | Judged::JsonMismatch { .. } | Judged::NotJson { .. } | Judged::BodyLacks { .. }
        )
    }

    /// Read back from its stored JSON; `None` for anything else (an attempt
    /// recorded before verdicts were kept has none).
    pub fn parse(text: &str) -> Option<Judged> {
        serde_json::from_str(text).ok()
    }

    /// The stored JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A JSON value as the config wrote it: strings quoted, the rest bare.
pub fn value_text(value: &Value) -> String {
    let text = value.to_string();
    // A body can hold anything; a verdict line stays a line.
    if text.chars().count() > 120 {
        format!("{}…", text.chars().take(120).collect::<String>())
    } else {
        text
    }
}

impl Judged {
    /// In Russian, for the console and `server.language = "ru"`.
    pub fn russian(&self) -> String {
        let status = self.status();
        match self {
            Judged::Accepted { kept: Some(kept), .. } => {
                format!("ответ {status}: принято, результат {}", value_text(kept))
            }
            Judged::Accepted { .. } => format!("ответ {status}: принято"),
            Judged::StatusRefused { .. } => format!("ответ {status}: этот код не означает успех, без повторов"),
            Judged::StatusRetry { .. } => format!("ответ {status}: повтор позже"),
            Judged::JsonRetry { path, value, .. } => {
                format!("ответ {status}, в теле {path} = {}: повтор позже", value_text(value))
            }
            Judged::JsonMismatch {
                path, expected, found, ..
            } => {
                let said = match found {
                    Value::Null => format!("в теле нет {path}"),
                    found => format!("в теле {path} = {}", value_text(found)),
                };
                let wanted = match expected.as_slice() {
                    [] => "что поле есть".to_string(),
                    values => values.iter().map(value_text).collect::<Vec<_>>().join(" или "),
                };
                format!("ответ {status}, но {said} (ожидалось {wanted}): не принято")
            }
            Judged::NotJson { .. } => format!("ответ {status}, но тело не JSON: не принято"),
            Judged::BodyLacks { text, .. } => format!("ответ {status}, но в теле нет «{text}»: не принято"),
        }
    }
}

impl std::fmt::Display for Judged {
    /// In English, for the CLI, logs and the attempt's `error`: "answered
    /// 200, but the body says error = "x": not accepted".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.status();
        match self {
            Judged::Accepted { kept: Some(kept), .. } => {
                write!(f, "answered {status}: accepted, result {}", value_text(kept))
            }
            Judged::Accepted { .. } => write!(f, "answered {status}: accepted"),
            Judged::StatusRefused { .. } => {
                write!(f, "answered {status}: not an accepted status, not retried")
            }
            Judged::StatusRetry { .. } => write!(f, "answered {status}: retried later"),
            Judged::JsonRetry { path, value, .. } => write!(
                f,
                "answered {status}, and the body says {path} = {}: retried later",
                value_text(value)
            ),
            Judged::JsonMismatch {
                path, expected, found, ..
            } => {
                let said = match found {
                    Value::Null => format!("the body has no {path}"),
                    found => format!("the body says {path} = {}", value_text(found)),
                };
                let wanted = match expected.as_slice() {
                    [] => "present".to_string(),
                    values => values.iter().map(value_text).collect::<Vec<_>>().join(" or "),
                };
                write!(f, "answered {status}, but {said} (expected {wanted}): not accepted")
            }
            Judged::NotJson { .. } => write!(f, "answered {status}, but the body is not JSON: not accepted"),
            Judged::BodyLacks { text, .. } => {
                write!(f, "answered {status}, but the body lacks `{text}`: not accepted")
            }
        }
    }
}
