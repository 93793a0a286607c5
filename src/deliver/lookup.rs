//! Before an amoCRM lead is sent again: did an earlier attempt make it?
//! `leads/complex` is not idempotent, and an attempt whose answer never
//! came (a timeout, a dropped connection, a 5xx) may have made the lead
//! all the same. An amocrm action with a `key_field` puts a key of the
//! delivery's own in that custom field; before every attempt the lead is
//! looked up by it (`GET /api/v4/leads?query=KEY`, which searches custom
//! fields' values: amocrm.com/developers/content/api_v4/leads-2) and, when
//! found, the delivery is done with that lead's id instead of a second
//! lead. Every attempt, the first too: one cut off by a kill -9 is not
//! recorded, so after a restart the delivery looks untried although its
//! lead may exist. It costs a request per lead, which the account's
//! implied pace counts (config/raw/resolve/receiver.rs).

use std::time::Duration;

use serde_json::Value;
use ureq::http;

use super::send::{Answer, SendError};
use crate::model::DueDelivery;
use crate::process::kinds::amocrm_key;

/// The path amocrm actions post to.
const COMPLEX: &str = "/api/v4/leads/complex";

/// What an attempt found when it looked: the answer
/// to record (the found lead as `[{"id": N}]`, or why it could not look)
/// and the request line that says it looked. None: send as usual.
pub fn earlier_lead(agent: &ureq::Agent, due: &DueDelivery) -> Option<(Result<Answer, SendError>, String)> {
    let d = &due.request;
    if !d.url.ends_with(COMPLEX) {
        return None;
    }
    let key = amocrm_key(d.body.as_deref()?)?;
    let base = &d.url[..d.url.len() - COMPLEX.len()];
    let url = format!("{base}/api/v4/leads?query={key}");
    let shown = format!(
        "GET {}/api/v4/leads?query={key} (did an earlier attempt make the lead?)",
        crate::redact::url_text(base)
    );
    let mut builder = http::Request::builder().method("GET").uri(url.as_str());
    for (name, value) in &d.headers {
        if name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("accept") {
            builder = builder.header(name.as_str(), value.as_str());
        }
    }
    let request = match builder.body(()) {
        Ok(request) => request,
        Err(_) => return None,
    };
    let timeout = Some(Duration::from_millis(d.timeout_ms));
    let request = agent.configure_request(request).timeout_global(timeout).build();
    let cannot = |why: String| {
        Some((
            Err(SendError::Network(format!(
                "cannot tell whether an earlier attempt made the lead ({why}); not sent again yet"
            ))),
            shown.clone(),
        ))
    };
    let mut response = match agent.run(request) {
        Ok(response) => response,
        Err(err) => return cannot(err.to_string()),
    };
    let status = response.status().as_u16();
    match status {
        204 => return None,
        200 => {}
        429 | 500..=599 => return cannot(format!("the lookup answered {status}")),
        // The lead's own request will meet the same refusal, and be judged.
        _ => return None,
    }
    let text = match response.body_mut().read_to_string() {
        Ok(text) => text,
        Err(err) => return cannot(err.to_string()),
    };
    let Ok(body) = serde_json::from_str::<Value>(&text) else {
        return cannot("the lookup's answer is not JSON".into());
    };
    let found = body["_embedded"]["leads"].as_array()?.iter().find(|lead| {
        lead["custom_fields_values"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|f| f["values"].as_array().into_iter().flatten())
            .any(|v| v["value"].as_str() == Some(key.as_str()))
    })?;
    let id = found["id"].clone();
    log::info!("delivery {}: an earlier attempt made lead {id}; not sent again", due.id);
    Some((
        Ok(Answer {
            status: 200,
            body: serde_json::json!([{ "id": id }]).to_string().into_bytes(),
            retry_after: None,
        }),
        shown,
    ))
}
