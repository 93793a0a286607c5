//! An action's response rules: `expect_body`, `[accept]` and `[retry_on]`.

use serde_json::Value;

use super::*;
use crate::model::response::{Accept, ResponseRules, RetryOn, Statuses};

/// The action's rules; `expect_body` is `accept.body` by its older name.
pub(super) fn resolve(
    expect_body: Option<String>,
    accept: Option<RawAccept>,
    retry_on: Option<RawRetryOn>,
) -> Result<ResponseRules, String> {
    let mut rules = ResponseRules::expecting(expect_body.filter(|t| !t.is_empty()));
    if let Some(raw) = accept {
        if raw.body.is_some() && rules.accept.body.is_some() {
            return Err("expect_body: is accept.body by its older name; set one of them".into());
        }
        rules.accept = Accept {
            status: raw.status.map(|s| statuses("accept.status", &s)).transpose()?,
            json: json_rules("accept.json", raw.json)?,
            json_present: raw
                .json_present
                .into_iter()
                .map(|path| json_path("accept.json_present", path))
                .collect::<Result<_, _>>()?,
            body: raw.body.filter(|t| !t.is_empty()).or(rules.accept.body),
        };
    }
    if let Some(raw) = retry_on {
        let delay_json = raw
            .delay_json
            .map(|path| json_path("retry_on.delay_json", path))
            .transpose()?;
        let until_json = raw
            .until_json
            .map(|path| json_path("retry_on.until_json", path))
            .transpose()?;
        rules.retry = RetryOn {
            status: raw.status.map(|s| statuses("retry_on.status", &s)).transpose()?,
            json: json_rules("retry_on.json", raw.json)?,
            delay_json,
            until_json,
        };
    }
    Ok(rules)
}

/// Statuses as the config lists them: `200`, `"2xx"` or `"500-503"`.
fn statuses(key: &str, values: &[toml::Value]) -> Result<Vec<Statuses>, String> {
    values
        .iter()
        .map(|value| {
            let range = match value {
                toml::Value::Integer(n) => u16::try_from(*n).ok().map(|n| (n, n)),
                toml::Value::String(text) => status_text(text),
                _ => None,
            };
            range
                .filter(|&(low, high)| (100..=599).contains(&low) && (low..=599).contains(&high))
                .ok_or_else(|| {
                    format!("{key}: `{value}` is not a status (200), a class (\"2xx\") or a range (\"500-503\")")
                })
        })
        .collect()
}

fn status_text(text: &str) -> Option<Statuses> {
    let text = text.trim();
    if let Some(class) = text.strip_suffix("xx").filter(|c| c.len() == 1) {
        let hundreds: u16 = class.parse().ok()?;
        return Some((hundreds * 100, hundreds * 100 + 99));
    }
    match text.split_once('-') {
        Some((low, high)) => Some((low.trim().parse().ok()?, high.trim().parse().ok()?)),
        None => text.parse().ok().map(|n| (n, n)),
    }
}

/// `json = { success = "POSTBACK ACCEPTED", parameters.retry_after = 5 }`:
/// dotted keys (which TOML nests) become paths; an array lists the values
/// any of which will do.
fn json_rules(key: &str, table: toml::Table) -> Result<Vec<(String, Vec<Value>)>, String> {
    let mut rules = Vec::new();
    flatten(key, "", table, &mut rules)?;
    Ok(rules)
}

fn flatten(key: &str, prefix: &str, table: toml::Table, into: &mut Vec<(String, Vec<Value>)>) -> Result<(), String> {
    for (name, value) in table {
        let path = format!("{prefix}{name}");
        let values = match value {
            toml::Value::Table(inner) => {
                flatten(key, &format!("{path}."), inner, into)?;
                continue;
            }
            toml::Value::Array(items) if items.is_empty() => {
                return Err(format!("{key}.{path}: list at least one value"));
            }
            toml::Value::Array(items) => items,
            single => vec![single],
        };
        let values = values
            .into_iter()
            .map(|v| json_value(&v).ok_or_else(|| format!("{key}.{path}: `{v}` is not a string, number or boolean")))
            .collect::<Result<Vec<_>, _>>()?;
        into.push((json_path(key, path)?, values));
    }
    Ok(())
}

fn json_value(value: &toml::Value) -> Option<Value> {
    match value {
        toml::Value::String(s) => Some(Value::from(s.as_str())),
        toml::Value::Integer(n) => Some(Value::from(*n)),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number),
        toml::Value::Boolean(b) => Some(Value::from(*b)),
        _ => None,
    }
}

/// A dotted JSON path, checked: no empty step.
fn json_path(key: &str, path: String) -> Result<String, String> {
    if path.split('.').any(str::is_empty) {
        return Err(format!(
            "{key}: `{path}` is not a JSON path (names and array indexes joined by dots: parameters.retry_after, result.0.id)"
        ));
    }
    Ok(path)
}
