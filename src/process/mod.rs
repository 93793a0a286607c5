//! What happens to a request, for the listener and the command line alike
//! (`try`, `replay`): its fields ([`fields`]), the decision of `require`,
//! `when`, `enabled` and the dedupe key, and each action rendered into the
//! request that goes out ([`render`]).

pub mod fields;
pub mod kinds;
pub mod metrica;
pub mod render;

use fields::{ExtractError, Extracted};

use crate::config::{Action, OnMissing, Processing};
use crate::model::said::{Absent, Said};
use crate::model::{DeliveryRequest, NewOperation, OpStatus, RawRequest, Warning};
use crate::template::Escape;

/// Decides what `processing` does with a request and builds the operation.
/// `extracted` is an `Err` with the reason when the body did not parse or
/// its fields were past the limits: the operation is `rejected`, raw kept.
pub fn operation(
    processing: &Processing,
    received_at: i64,
    request: RawRequest,
    extracted: Result<Extracted, ExtractError>,
) -> NewOperation {
    let mut op = NewOperation::new(processing.name.clone(), received_at, request);
    let extracted = match extracted {
        Ok(extracted) => extracted,
        Err(reason) => {
            op.status = OpStatus::Rejected;
            op.reason = Some(match reason {
                ExtractError::Malformed(said) | ExtractError::TooLarge(said) => said,
            });
            return op;
        }
    };
    op.charset = extracted.charset.as_str().into();
    op.warnings.clone_from(&extracted.warnings);
    op.fields = extracted.fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let lookup = |name: &str| extracted.usable(name);

    if let Some(reason) = skip_reason(processing, &extracted) {
        op.status = OpStatus::Skipped;
        op.reason = Some(reason);
        return op;
    }
    if let Some(template) = &processing.dedupe {
        let key = template.render(lookup, Escape::None).text;
        let window = processing.dedupe_window.as_millis() as i64;
        op.dedupe = Some((key, op.received_at.saturating_sub(window)));
    }
    if !processing.enabled {
        op.status = OpStatus::Held;
        op.reason = Some(Said::Disabled);
        return op;
    }
    for action in &processing.actions {
        match delivery(action, &extracted, received_at) {
            Ok((delivery, warnings)) => {
                op.warnings.extend(warnings);
                op.deliveries.push(delivery);
            }
            Err(err) => {
                op.status = OpStatus::Failed;
                op.reason = Some(Said::RenderFailed {
                    action: action.name.clone(),
                    error: err,
                });
                op.deliveries.clear();
                return op;
            }
        }
    }
    // Every delivery refused: nothing will be sent, the operation has
    // failed already, for the first one's reason.
    if op.deliveries.iter().all(|d| d.refused.is_some()) {
        if let Some(why) = op.deliveries.first().and_then(|d| d.refused.clone()) {
            op.status = OpStatus::Failed;
            op.reason = Some(why);
        }
    }
    op
}

/// Renders `action` into a delivery to queue for an event received at
/// `received_at` (its `max_age` counts from then), with a warning per field
/// sent empty. A field the event does not have at all makes the delivery
/// refused (stored failed, never sent) unless the action says
/// `on_missing = "send_empty"`.
pub fn delivery(
    action: &Action,
    extracted: &Extracted,
    received_at: i64,
) -> Result<(DeliveryRequest, Vec<Warning>), String> {
    if let crate::config::kinds::Kind::Metrica(m) = &action.kind {
        return Ok(metrica_row(action, m, extracted, received_at));
    }
    let rendered = render::render(action, |name| extracted.usable(name))?;
    let refused = match action.on_missing {
        OnMissing::Fail if !rendered.absent.is_empty() => Some(Said::Absent {
            action: action.name.clone(),
            fields: rendered
                .absent
                .iter()
                .map(|field| absent_field(field, extracted))
                .collect(),
        }),
        _ => None,
    };
    let sent_empty = if refused.is_some() {
        &[][..]
    } else {
        &rendered.missing[..]
    };
    let missing = sent_empty.iter().map(|field| {
        Warning::new(Said::MissingField {
            action: action.name.clone(),
            field: field.clone(),
        })
    });
    let cleaned = rendered.cleaned_headers.iter().map(|header| {
        Warning::new(Said::HeaderControl {
            action: action.name.clone(),
            header: header.clone(),
        })
    });
    let warnings = missing.chain(cleaned).collect();
    let r = rendered.request;
    let mut rules = action.rules.clone();
    rules.remember = action.remember.as_ref().and_then(|remember| {
        let key = remember.key.render(|name| extracted.usable(name), Escape::None).text;
        (!key.is_empty()).then(|| (remember.name.clone(), key))
    });
    let delivery = DeliveryRequest {
        action: action.name.clone(),
        method: r.method.as_str().into(),
        url: r.url,
        headers: r.headers,
        body: r.body,
        redacted: r.redacted,
        rules,
        timeout_ms: action.timeout.as_millis() as u64,
        max_attempts: action.retry.attempts,
        first_delay_ms: action.retry.first_delay.as_millis() as u64,
        max_delay_ms: action.retry.max_delay.as_millis() as u64,
        expires_at: action
            .max_age
            .map(|age| received_at.saturating_add(age.as_millis() as i64)),
        refused,
        batch: None,
    };
    Ok((delivery, warnings))
}

/// A metrica action's row, stored as the delivery's body (JSON pairs of
/// column and value) until its batch goes out; refused when it breaks
/// one of Metrica's rules. A field the event lacks leaves its cell
/// empty: whether the row can go without it is for those rules to say.
fn metrica_row(
    action: &Action,
    m: &crate::config::kinds::Metrica,
    extracted: &Extracted,
    received_at: i64,
) -> (DeliveryRequest, Vec<Warning>) {
    let url = m.upload_url();
    let (body, refused, warnings) =
        match metrica::row(m, |name| extracted.usable(name), received_at, crate::clock::now_ms()) {
            Ok(row) => {
                let warnings = row
                    .missing
                    .into_iter()
                    .map(|field| {
                        Warning::new(Said::MissingField {
                            action: action.name.clone(),
                            field,
                        })
                    })
                    .collect();
                (serde_json::to_vec(&row.cells).ok(), None, warnings)
            }
            Err(rule) => (
                None,
                Some(Said::RowRefused {
                    action: action.name.clone(),
                    rule,
                }),
                Vec::new(),
            ),
        };
    let delivery = DeliveryRequest {
        action: action.name.clone(),
        method: "POST".into(),
        redacted: format!("POST {} (a row of the next batch)", crate::redact::url_text(&url)),
        url,
        headers: Vec::new(),
        body,
        rules: action.rules.clone(),
        timeout_ms: action.timeout.as_millis() as u64,
        max_attempts: action.retry.attempts,
        first_delay_ms: action.retry.first_delay.as_millis() as u64,
        max_delay_ms: action.retry.max_delay.as_millis() as u64,
        expires_at: None,
        refused,
        batch: Some(m.key.clone()),
    };
    (delivery, warnings)
}

/// Why `field` cannot be filled from the event: it holds an unfilled
/// placeholder, or the event has no such field, with the closest name it
/// does have.
fn absent_field(field: &str, extracted: &Extracted) -> Absent {
    let placeholder = extracted.fields.contains_key(field);
    let names = extracted
        .fields
        .keys()
        .map(String::as_str)
        .filter(|name| extracted.usable(name).is_some());
    Absent {
        field: field.to_string(),
        placeholder,
        near: (!placeholder)
            .then(|| closest_field(field, names).map(str::to_string))
            .flatten(),
    }
}

/// The name among `names` closest to `field`, if one is close enough to be
/// a misspelling of it: at most two edits (a transposition is one), and
/// fewer than half its letters.
pub fn closest_field<'a>(field: &str, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let letters = field.chars().count();
    names
        .into_iter()
        .filter(|name| *name != field)
        .map(|name| {
            (
                strsim::damerau_levenshtein(&field.to_lowercase(), &name.to_lowercase()),
                name,
            )
        })
        .filter(|(distance, _)| *distance <= 2 && distance * 2 < letters)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// Why `require` or `when` says not to send, if they do.
pub fn skip_reason(processing: &Processing, extracted: &Extracted) -> Option<Said> {
    for field in &processing.require {
        let field_name = || field.clone();
        match extracted.fields.get(field) {
            None => return Some(Said::RequiredMissing { field: field_name() }),
            Some(v) if v.trim().is_empty() => return Some(Said::RequiredEmpty { field: field_name() }),
            Some(v) if crate::template::holds_macro(v) && !crate::template::holds_placeholder(v) => {
                return Some(Said::RequiredMacro {
                    field: field_name(),
                    value: v.chars().take(80).collect(),
                })
            }
            Some(_) if extracted.usable(field).is_none() => {
                return Some(Said::RequiredPlaceholder { field: field_name() })
            }
            Some(_) => {}
        }
    }
    for (field, wanted) in &processing.when {
        let actual = extracted.usable(field).unwrap_or("");
        if actual != wanted {
            return Some(Said::WhenMismatch {
                field: field.clone(),
                actual: actual.to_string(),
                wanted: wanted.clone(),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn action(extra: &str) -> Action {
        let text = format!(
            "[[processing]]\nname = \"p\"\ntoken = \"abcdefghijklmnopqrstuvwxyz\"\n[[processing.action]]\nname = \"plarin\"\n\
             url = \"https://plarin.example/pb\"\n{extra}"
        );
        Config::parse(&text, Path::new("/x/c.toml")).unwrap().processings[0].actions[0].clone()
    }

    fn event(fields: &[(&str, &str)]) -> Extracted {
        Extracted::from_fields(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    /// Regression: `{{utm_contnet}}` sent `ad_id=` (empty) and the
    /// operation showed delivered. A field the event does not have refuses
    /// the delivery, naming the field and the closest one the event has.
    #[test]
    fn a_misspelled_field_refuses_the_delivery() {
        let a = action("query = { ad_id = \"{{utm_contnet}}\" }");
        let (delivery, warnings) = delivery(&a, &event(&[("utm_content", "ad-7"), ("client_id", "1")]), 0).unwrap();
        assert_eq!(
            delivery.refused.as_ref().map(ToString::to_string).as_deref(),
            Some(
                "action `plarin`: the event has no field `utm_contnet` (did you mean `utm_content`?); nothing was sent (on_missing = \"fail\")"
            )
        );
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    /// `on_missing = "send_empty"` sends it empty with a warning; a
    /// `default(...)` fills it; a field the event has but left empty is
    /// sent empty with a warning (`require` is how to refuse those).
    #[test]
    fn missing_fields_other_ways() {
        let fields = event(&[("utm_content", ""), ("client_id", "1")]);
        let (d, w) = delivery(
            &action("query = { ad_id = \"{{ad}}\" }\non_missing = \"send_empty\""),
            &fields,
            0,
        )
        .unwrap();
        assert_eq!((d.refused, d.url.as_str()), (None, "https://plarin.example/pb?ad_id="));
        assert_eq!(w.len(), 1);
        assert_eq!(
            w[0].to_string(),
            "action `plarin`: field `ad` is missing; it was sent empty"
        );
        let (d, w) = delivery(&action("query = { ad_id = \"{{ad | default('none')}}\" }"), &fields, 0).unwrap();
        assert_eq!(
            (d.refused, d.url.as_str(), w.len()),
            (None, "https://plarin.example/pb?ad_id=none", 0)
        );
        let (d, w) = delivery(&action("query = { ad_id = \"{{utm_content}}\" }"), &fields, 0).unwrap();
        assert_eq!((d.refused, w.len()), (None, 1));
        let (d, _) = delivery(&action("query = { ad_id = \"{{zzz}}\" }"), &fields, 0).unwrap();
        assert_eq!(
            d.refused.as_ref().map(ToString::to_string).as_deref(),
            Some("action `plarin`: the event has no field `zzz`; nothing was sent (on_missing = \"fail\")"),
            "no suggestion when nothing is close"
        );
        assert!(Config::parse(
            "[[processing]]\nname = \"p\"\ntoken = \"abcdefghijklmnopqrstuvwxyz\"\n[[processing.action]]\nname = \"a\"\nurl = \"https://h/\"\non_missing = \"skip\"\n",
            Path::new("/c.toml")
        )
        .unwrap_err()
        .to_string()
        .contains("on_missing: `skip` is not one of fail, send_empty"));
    }

    /// Suggestions are near misses only.
    #[test]
    fn closest_field_is_a_near_miss() {
        let names = ["utm_content", "client_phone", "appointment_id"];
        assert_eq!(closest_field("utm_contnet", names), Some("utm_content"));
        assert_eq!(closest_field("client_phon", names), Some("client_phone"));
        assert_eq!(closest_field("Client_Phone", names), Some("client_phone"));
        assert_eq!(closest_field("phone", names), None);
        assert_eq!(closest_field("id", names), None);
    }

    /// Every action refused: the operation has failed already, with the
    /// first reason; one of two refused: it is still queued.
    #[test]
    fn an_operation_whose_every_delivery_is_refused_has_failed() {
        let text = "[[processing]]\nname = \"p\"\ntoken = \"abcdefghijklmnopqrstuvwxyz\"\n\
             [[processing.action]]\nname = \"a\"\nurl = \"https://h/\"\nquery = { x = \"{{nope}}\" }\n\
             [[processing.action]]\nname = \"b\"\nurl = \"https://h/\"\nquery = { x = \"{{n}}\" }\n";
        let config = Config::parse(text, Path::new("/c.toml")).unwrap();
        let request = || crate::model::RawRequest {
            remote_addr: "127.0.0.1:1".into(),
            method: "GET".into(),
            query: Vec::new(),
            body: Vec::new(),
            content_type: None,
        };
        let op = operation(&config.processings[0], 1, request(), Ok(event(&[("n", "1")])));
        assert_eq!(op.status, OpStatus::Queued);
        assert_eq!(op.deliveries.iter().filter(|d| d.refused.is_some()).count(), 1);
        let op = operation(&config.processings[0], 1, request(), Ok(event(&[("m", "1")])));
        assert_eq!(op.status, OpStatus::Failed);
        assert!(op
            .reason
            .unwrap()
            .to_string()
            .starts_with("action `a`: the event has no field `nope`"));
    }

    /// Regression: an ad platform's unfilled macro in `utm_content`
    /// (`{ad_id}`) was forwarded as the ad's id and got a 400. It is a
    /// warning of its own kind, the field counts as missing, and `require`
    /// skips the event, naming the macro.
    #[test]
    fn an_unfilled_ad_macro_is_not_an_id() {
        let fields = event(&[("utm_content", "{ad_id}")]);
        assert_eq!(fields.warnings.iter().map(|w| w.kind).collect::<Vec<_>>(), ["ad_macro"]);
        assert_eq!(fields.usable("utm_content"), None);
        let (d, _) = delivery(&action("query = { ad_id = \"{{utm_content}}\" }"), &fields, 0).unwrap();
        assert!(d.refused.is_some(), "not sent as an id");
        let text =
            "[[processing]]\nname = \"p\"\ntoken = \"abcdefghijklmnopqrstuvwxyz\"\nrequire = [\"utm_content\"]\n\
             [[processing.action]]\nname = \"a\"\nurl = \"https://h/\"\n";
        let config = Config::parse(text, Path::new("/c.toml")).unwrap();
        assert_eq!(
            skip_reason(&config.processings[0], &fields),
            Some(Said::RequiredMacro {
                field: "utm_content".into(),
                value: "{ad_id}".into()
            })
        );
    }
}
