//! Judging an answer by a delivery's response rules, as a pure function:
//! the status and body in, the verdict and the rule that decided it out.
//!
//! The order: an answer whose status is accepted and whose body passes
//! every `accept` rule is delivered. Otherwise it is retried if its status
//! or one of its body's values is one `retry_on` names. Anything else is a
//! permanent failure, named by the first rule it broke.

use std::time::Duration;

use serde_json::Value;

use super::retry::Verdict;
use crate::model::platform::Note;
use crate::model::response::{status_in, Judged, ResponseRules, DEFAULT_ACCEPT_STATUSES, DEFAULT_RETRY_STATUSES};

/// Judges an answer of `status` with `body`, received at `now_ms`;
/// `retry_after` is what the `Retry-After` header asked for. A wait read
/// from the body counts too (`retry_on.delay_json`, seconds;
/// `retry_on.until_json`, a time): the longest wins.
pub fn judge(
    rules: &ResponseRules,
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
    now_ms: i64,
) -> (Verdict, Judged) {
    let json = Parsed::new(body);
    let accept = &rules.accept;
    let accepted_status = status_in(accept.status.as_deref().unwrap_or(DEFAULT_ACCEPT_STATUSES), status);
    let broken = if accepted_status {
        match body_rules(rules, status, body, &json) {
            None => {
                let kept = rules.keep.as_deref().and_then(|path| json.get(path)).cloned();
                return (Verdict::Delivered, Judged::Accepted { status, kept });
            }
            Some(broken) => broken,
        }
    } else {
        Judged::StatusRefused { status }
    };
    let retry = &rules.retry;
    let later = if status_in(retry.status.as_deref().unwrap_or(DEFAULT_RETRY_STATUSES), status) {
        Some(Judged::StatusRetry { status })
    } else {
        retry.json.iter().find_map(|(path, values)| {
            let found = json.get(path)?;
            values.iter().any(|v| same(v, found)).then(|| Judged::JsonRetry {
                status,
                path: path.clone(),
                value: found.clone(),
            })
        })
    };
    match later {
        Some(judged) => {
            let from_body = retry
                .delay_json
                .as_deref()
                .and_then(|path| json.get(path))
                .and_then(seconds);
            let until = retry
                .until_json
                .as_deref()
                .and_then(|path| json.get(path))
                .and_then(|at| until(at, now_ms));
            let retry_after = retry_after.max(from_body).max(until);
            (Verdict::Retry { retry_after }, judged)
        }
        None => (Verdict::Fail, broken),
    }
}

/// The platform's explanation of an answer that was not accepted: the
/// first of the rules' notes whose statuses and `when` value the answer
/// has, quoting its `json` value when the body holds one.
pub fn note(rules: &ResponseRules, status: u16, body: &[u8]) -> Option<Note> {
    if rules.notes.is_empty() {
        return None;
    }
    let json = Parsed::new(body);
    let rule = rules.notes.iter().find(|rule| {
        let status_fits = rule.status.is_empty() || status_in(&rule.status, status);
        let when_fits = rule.when.as_ref().is_none_or(|(path, values)| {
            json.get(path)
                .is_some_and(|found| !found.is_null() && (values.is_empty() || values.iter().any(|v| same(v, found))))
        });
        status_fits && when_fits
    })?;
    let value = rule
        .json
        .as_deref()
        .and_then(|path| json.get(path))
        .and_then(|found| match found {
            Value::Null => None,
            Value::String(text) if text.is_empty() => None,
            Value::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        });
    Some(Note {
        about: rule.about,
        // A body can hold anything; a note stays a line.
        value: value.map(|v| v.chars().take(200).collect()),
    })
}

/// The first `accept` body rule the answer breaks, if any.
fn body_rules(rules: &ResponseRules, status: u16, body: &[u8], json: &Parsed) -> Option<Judged> {
    let accept = &rules.accept;
    if let Some(text) = &accept.body {
        if !String::from_utf8_lossy(body).contains(text.as_str()) {
            return Some(Judged::BodyLacks {
                status,
                text: text.clone(),
            });
        }
    }
    if accept.json.is_empty() && accept.json_present.is_empty() {
        return None;
    }
    if json.0.is_none() {
        return Some(Judged::NotJson { status });
    }
    let mismatch = |path: &str, expected: &[Value]| Judged::JsonMismatch {
        status,
        path: path.to_string(),
        expected: expected.to_vec(),
        found: json.get(path).cloned().unwrap_or(Value::Null),
    };
    for (path, values) in &accept.json {
        match json.get(path) {
            Some(found) if values.iter().any(|v| same(v, found)) => {}
            _ => return Some(mismatch(path, values)),
        }
    }
    accept
        .json_present
        .iter()
        .find(|path| json.get(path).is_none_or(Value::is_null))
        .map(|path| mismatch(path, &[]))
}

/// The body parsed as JSON, if it is.
struct Parsed(Option<Value>);

impl Parsed {
    fn new(body: &[u8]) -> Parsed {
        Parsed(serde_json::from_slice(body).ok())
    }

    /// The value at a dotted path: `parameters.retry_after`, `result.0.id`
    /// (a number steps into an array).
    fn get(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(self.0.as_ref()?, |value, step| match value {
            Value::Object(map) => map.get(step),
            Value::Array(items) => items.get(step.parse::<usize>().ok()?),
            _ => None,
        })
    }
}

/// Whether a configured value matches a found one: numbers by value (the
/// config's `5` matches the body's `5.0`), everything else exactly.
fn same(wanted: &Value, found: &Value) -> bool {
    match (wanted.as_f64(), found.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => wanted == found,
    }
}

/// A wait in seconds: a non-negative number, or a string holding one.
fn seconds(value: &Value) -> Option<Duration> {
    let n = number(value)?;
    (n.is_finite() && n >= 0.0).then(|| Duration::from_secs_f64(n.min(super::retry::MAX_RETRY_AFTER.as_secs_f64())))
}

/// A number, or a string holding one (`7`, `"7"`, `"1.5"`).
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::String(text) => text.trim().parse::<f64>().ok(),
        other => other.as_f64(),
    }
}

/// The wait until `at`, a Unix time in seconds (a number, or a string
/// holding one), from `now_ms`; none when it has passed.
fn until(at: &Value, now_ms: i64) -> Option<Duration> {
    let at = number(at)?;
    let wait_ms = (at * 1000.0) - now_ms as f64;
    (wait_ms.is_finite() && wait_ms > 0.0)
        .then(|| Duration::from_millis(wait_ms.min(super::retry::MAX_RETRY_AFTER.as_millis() as f64) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::response::{Accept, RetryOn};
    use serde_json::json;

    fn judged(rules: &ResponseRules, status: u16, body: &str) -> (Verdict, Judged) {
        judge(rules, status, body.as_bytes(), None, 0)
    }

    /// With no rules: any 2xx is success, 408, 429 and 5xx are retried,
    /// the rest fail, as before response rules existed.
    #[test]
    fn default_rules_are_the_statuses() {
        let rules = ResponseRules::default();
        assert_eq!(judged(&rules, 204, "").0, Verdict::Delivered);
        for status in [408, 429, 500, 503] {
            assert_eq!(
                judged(&rules, status, ""),
                (Verdict::Retry { retry_after: None }, Judged::StatusRetry { status })
            );
        }
        for status in [301, 400, 404, 422] {
            assert_eq!(
                judged(&rules, status, ""),
                (Verdict::Fail, Judged::StatusRefused { status })
            );
        }
    }

    /// `expect_body` is an accept rule: a 2xx without the text fails for
    /// good, naming it.
    #[test]
    fn expect_body_is_a_body_rule() {
        let rules = ResponseRules::expecting(Some("OK".into()));
        assert_eq!(judged(&rules, 200, "all OK").0, Verdict::Delivered);
        assert_eq!(
            judged(&rules, 200, "nope"),
            (
                Verdict::Fail,
                Judged::BodyLacks {
                    status: 200,
                    text: "OK".into()
                }
            )
        );
    }

    /// Plarin's public integrations count exactly `{"success": "POSTBACK
    /// ACCEPTED"}` as taken: anything else on a 200 is not accepted.
    #[test]
    fn a_json_value_decides_plarin() {
        let rules = ResponseRules {
            accept: Accept {
                json: vec![("success".into(), vec![json!("POSTBACK ACCEPTED")])],
                ..Accept::default()
            },
            ..ResponseRules::default()
        };
        assert_eq!(
            judged(&rules, 200, r#"{"success": "POSTBACK ACCEPTED"}"#).1,
            Judged::Accepted {
                status: 200,
                kept: None
            }
        );
        let (verdict, why) = judged(&rules, 200, r#"{"error": "bad token"}"#);
        assert_eq!(verdict, Verdict::Fail);
        assert_eq!(
            why.to_string(),
            r#"answered 200, but the body has no success (expected "POSTBACK ACCEPTED"): not accepted"#
        );
        assert_eq!(
            judged(&rules, 200, "POSTBACK ACCEPTED").1,
            Judged::NotJson { status: 200 }
        );
        // A 5xx is still retried whatever its body.
        assert_eq!(judged(&rules, 502, "<html>").1, Judged::StatusRetry { status: 502 });
    }

    /// Telegram: a 429 with `{"ok":false,...,"parameters":{"retry_after":N}}`
    /// waits N seconds; an `"ok": false` 400 fails for good; `"ok": true` is taken.
    #[test]
    fn telegram_waits_what_the_body_says() {
        let rules = ResponseRules {
            accept: Accept {
                json: vec![("ok".into(), vec![json!(true)])],
                ..Accept::default()
            },
            retry: RetryOn {
                delay_json: Some("parameters.retry_after".into()),
                ..RetryOn::default()
            },
            ..ResponseRules::default()
        };
        let limited = r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#;
        assert_eq!(
            judge(&rules, 429, limited.as_bytes(), Some(Duration::from_secs(3)), 0).0,
            Verdict::Retry {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        // The header wins when it asks for longer.
        assert_eq!(
            judge(&rules, 429, limited.as_bytes(), Some(Duration::from_secs(30)), 0).0,
            Verdict::Retry {
                retry_after: Some(Duration::from_secs(30))
            }
        );
        let blocked = r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#;
        assert_eq!(judged(&rules, 400, blocked).0, Verdict::Fail);
        let refused = r#"{"ok":false,"error_code":400}"#;
        assert!(matches!(judged(&rules, 200, refused).1, Judged::JsonMismatch { .. }));
        assert_eq!(judged(&rules, 200, r#"{"ok":true,"result":{}}"#).0, Verdict::Delivered);
    }

    /// Bitrix24: `error` on a 200 fails, unless its value is one that
    /// `retry_on.json` names; `result` must be there.
    #[test]
    fn bitrix_errors_by_value() {
        let rules = ResponseRules {
            accept: Accept {
                json_present: vec!["result".into()],
                ..Accept::default()
            },
            retry: RetryOn {
                json: vec![(
                    "error".into(),
                    vec![json!("QUERY_LIMIT_EXCEEDED"), json!("OVERLOAD_LIMIT")],
                )],
                ..RetryOn::default()
            },
            ..ResponseRules::default()
        };
        assert_eq!(
            judged(&rules, 200, r#"{"result": 42, "time": {}}"#).0,
            Verdict::Delivered
        );
        let (verdict, why) = judged(&rules, 200, r#"{"error":"OVERLOAD_LIMIT","error_description":"x"}"#);
        assert_eq!(verdict, Verdict::Retry { retry_after: None });
        assert_eq!(
            why.to_string(),
            r#"answered 200, and the body says error = "OVERLOAD_LIMIT": retried later"#
        );
        let (verdict, why) = judged(&rules, 400, r#"{"error":"ERROR_CORE","error_description":"bad"}"#);
        assert_eq!((verdict, why), (Verdict::Fail, Judged::StatusRefused { status: 400 }));
        assert!(matches!(
            judged(&rules, 200, r#"{"result": null}"#),
            (Verdict::Fail, Judged::JsonMismatch { .. })
        ));
    }

    /// Paths step into objects and arrays; numbers match by value.
    #[test]
    fn paths_and_numbers() {
        let parsed = Parsed::new(br#"{"result": [{"id": 5.0}], "a": {"b": "c"}}"#);
        assert_eq!(parsed.get("result.0.id"), Some(&json!(5.0)));
        assert_eq!(parsed.get("a.b"), Some(&json!("c")));
        assert_eq!(parsed.get("a.b.c"), None);
        assert_eq!(parsed.get("result.x"), None);
        assert!(same(&json!(5), &json!(5.0)));
        assert!(!same(&json!("5"), &json!(5)));
        assert_eq!(seconds(&json!("2.5")), Some(Duration::from_millis(2500)));
        assert_eq!(seconds(&json!(-1)), None);
    }

    /// An accepted status list replaces 2xx; a retry status list replaces
    /// the defaults, so `[]` retries no status.
    #[test]
    fn status_lists_replace_the_defaults() {
        let rules = ResponseRules {
            accept: Accept {
                status: Some(vec![(200, 200)]),
                ..Accept::default()
            },
            retry: RetryOn {
                status: Some(vec![]),
                ..RetryOn::default()
            },
            ..ResponseRules::default()
        };
        assert_eq!(judged(&rules, 201, "").1, Judged::StatusRefused { status: 201 });
        assert_eq!(judged(&rules, 503, "").0, Verdict::Fail);
    }

    /// Bitrix24's operating block: the body names when the method frees
    /// (`time.operating_reset_at`, Unix seconds); the retry waits until
    /// then, or not at all once it has passed; the longest wait wins.
    #[test]
    fn bitrix_waits_until_the_time_the_body_says() {
        let rules = ResponseRules {
            retry: RetryOn {
                until_json: Some("time.operating_reset_at".into()),
                ..RetryOn::default()
            },
            ..ResponseRules::default()
        };
        let now = 1_700_000_000_000;
        let body = |at: &str| format!(r#"{{"error":"QUERY_LIMIT_EXCEEDED","time":{{"operating_reset_at":{at}}}}}"#);
        let wait = |body: &str, header: Option<Duration>| judge(&rules, 503, body.as_bytes(), header, now).0;
        assert_eq!(
            wait(&body("1700000120"), None),
            Verdict::Retry {
                retry_after: Some(Duration::from_secs(120))
            }
        );
        assert_eq!(
            wait(&body("\"1700000001.5\""), None),
            Verdict::Retry {
                retry_after: Some(Duration::from_millis(1_500))
            },
            "a string holding a number"
        );
        assert_eq!(
            wait(&body("1600000000"), None),
            Verdict::Retry { retry_after: None },
            "passed"
        );
        assert_eq!(
            wait(&body("1700000010"), Some(Duration::from_secs(60))),
            Verdict::Retry {
                retry_after: Some(Duration::from_secs(60))
            },
            "the header asked for longer"
        );
    }
}
