//! What happens to a request, for the listener and the command line alike
//! (`try`, `replay`): its fields ([`fields`]), the decision of `require`,
//! `when`, `enabled` and the dedupe key, and each action rendered into the
//! request that goes out ([`render`]).

pub mod fields;
pub mod render;

use fields::{ExtractError, Extracted};

use crate::config::{Action, Processing};
use crate::model::{DeliveryRequest, NewOperation, OpStatus, RawRequest, Warning};
use crate::template::Escape;

/// Warning kind: a template named a field the event lacked.
pub const MISSING_FIELD: &str = "missing_field";
/// Warning kind: a header value held control characters, sent as spaces.
pub const HEADER_CONTROL: &str = "header_control";

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
            op.reason = Some(reason.to_string());
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
        op.reason = Some("the processing is disabled (enabled = false); replay to send".into());
        return op;
    }
    for action in &processing.actions {
        match delivery(action, lookup) {
            Ok((delivery, warnings)) => {
                op.warnings.extend(warnings);
                op.deliveries.push(delivery);
            }
            Err(err) => {
                op.status = OpStatus::Failed;
                op.reason = Some(format!("action `{}`: {err}", action.name));
                op.deliveries.clear();
                return op;
            }
        }
    }
    op
}

/// Renders `action` into a delivery to queue, with a warning per missing field.
pub fn delivery<'a>(
    action: &Action,
    lookup: impl Fn(&str) -> Option<&'a str> + Copy,
) -> Result<(DeliveryRequest, Vec<Warning>), String> {
    let rendered = render::render(action, lookup)?;
    let missing = rendered.missing.iter().map(|field| {
        Warning::new(
            MISSING_FIELD,
            format!(
                "action `{}`: field `{field}` is missing; it was sent empty",
                action.name
            ),
        )
    });
    let cleaned = rendered.cleaned_headers.iter().map(|header| {
        Warning::new(
            HEADER_CONTROL,
            format!(
                "action `{}`: header `{header}` held control characters; they were sent as spaces",
                action.name
            ),
        )
    });
    let warnings = missing.chain(cleaned).collect();
    let r = rendered.request;
    let delivery = DeliveryRequest {
        action: action.name.clone(),
        method: r.method.as_str().into(),
        url: r.url,
        headers: r.headers,
        body: r.body,
        redacted: r.redacted,
        expect_body: action.expect_body.clone(),
        timeout_ms: action.timeout.as_millis() as u64,
        max_attempts: action.retry.attempts,
        first_delay_ms: action.retry.first_delay.as_millis() as u64,
        max_delay_ms: action.retry.max_delay.as_millis() as u64,
    };
    Ok((delivery, warnings))
}

/// Why `require` or `when` says not to send, if they do.
pub fn skip_reason(processing: &Processing, extracted: &Extracted) -> Option<String> {
    for field in &processing.require {
        match extracted.fields.get(field) {
            None => return Some(format!("required field `{field}` is missing")),
            Some(v) if v.trim().is_empty() => return Some(format!("required field `{field}` is empty")),
            Some(_) if extracted.usable(field).is_none() => {
                return Some(format!("required field `{field}` holds an unfilled placeholder"))
            }
            Some(_) => {}
        }
    }
    for (field, wanted) in &processing.when {
        let actual = extracted.usable(field).unwrap_or("");
        if actual != wanted {
            return Some(format!("when: `{field}` is `{actual}`, not `{wanted}`"));
        }
    }
    None
}
