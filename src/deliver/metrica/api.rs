//! What hookrelay asks Metrica and how it reads the answers: an upload
//! of a batch's rows as a multipart CSV file, signed with the action's
//! token, and the upload ids and states in what Metrica says back
//! (config/kinds/metrica.rs cites the API).

use std::time::Duration;

use crate::clock::now_ms;
use crate::config::kinds::{Metrica, Route};
use crate::model::{DeliveryRequest, DueDelivery};

/// The upload of `rows` as one CSV file (a multipart `file`), signed, with
/// `comment` on an offline conversions upload; and its request line as
/// history shows it.
pub fn upload_request(
    m: &Metrica,
    comment: &str,
    rows: &[Vec<(String, String)>],
    timeout: Duration,
    batch: i64,
) -> (DueDelivery, String) {
    let file = crate::process::metrica::csv(m.route, rows);
    let boundary = format!("hookrelay-batch-{batch}-{}", now_ms());
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"hookrelay-{batch}.csv\"\r\n\
         Content-Type: text/csv\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let url = match m.route {
        Route::Orders => m.upload_url(),
        Route::Conversions => {
            let mut url = m.upload_url();
            url.push_str("?comment=");
            url.push_str(&crate::template::url_component(comment));
            url
        }
    };
    let line = format!(
        "POST {} (batch {batch}: {} rows)",
        crate::redact::url_text(&url),
        rows.len()
    );
    let due = request(
        m,
        "POST",
        url,
        vec![(
            "Content-Type".into(),
            format!("multipart/form-data; boundary={boundary}"),
        )],
        Some(body),
        timeout,
        batch,
    );
    (due, line)
}

/// The comment an offline conversions upload carries, to be found by.
pub(super) fn comment(batch: i64) -> String {
    format!("hookrelay batch {batch}")
}

/// A request to Metrica with `m`'s token, shaped as a delivery for
/// `send::send`.
pub(super) fn request(
    m: &Metrica,
    method: &str,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout: Duration,
    batch: i64,
) -> DueDelivery {
    DueDelivery {
        id: batch,
        operation_id: 0,
        attempts: 0,
        target: crate::model::target_of(&url),
        request: DeliveryRequest {
            action: String::new(),
            method: method.into(),
            redacted: String::new(),
            url,
            headers: signed(headers, m),
            body,
            rules: Default::default(),
            timeout_ms: timeout.as_millis() as u64,
            max_attempts: 1,
            first_delay_ms: 0,
            max_delay_ms: 0,
            expires_at: None,
            refused: None,
            batch: None,
        },
    }
}

/// A JSON number or string as text.
pub(super) fn json_text(value: Option<&serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What an upload's answer says Metrica took: the upload's id and its
/// state. Offline conversions answer `{"uploading": {"id", "status"}}`;
/// the CDP's `uploading_id` and `api_validation_status` are read too.
pub(super) fn taken(body: &[u8]) -> Option<(String, Option<String>)> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let uploading = value.get("uploading").unwrap_or(&value);
    let id = json_text(uploading.get("id")).or_else(|| json_text(uploading.get("uploading_id")))?;
    let state = json_text(uploading.get("status")).or_else(|| json_text(uploading.get("api_validation_status")));
    Some((id, state))
}

/// `headers` with Metrica's `Authorization: OAuth …`.
fn signed(mut headers: Vec<(String, String)>, m: &Metrica) -> Vec<(String, String)> {
    headers.push(("Authorization".into(), format!("OAuth {}", m.token.expose().trim())));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_an_upload_answer_says() {
        assert_eq!(
            taken(br#"{"uploading":{"id":501,"status":"PREPARED","comment":"hookrelay batch 3"}}"#),
            Some(("501".into(), Some("PREPARED".into())))
        );
        assert_eq!(
            taken(br#"{"uploading":{"uploading_id":"a1b2","api_validation_status":"PASSED"}}"#),
            Some(("a1b2".into(), Some("PASSED".into())))
        );
        assert_eq!(taken(br#"{"errors":[{"error_type":"backend_error"}]}"#), None);
        assert_eq!(taken(b"not json"), None);
    }
}
