//! A request that recalls what an earlier event's action kept (a
//! template's `recall('processing/action')`, say the Bitrix24 lead a
//! booking made, for the paid visit's `crm.lead.update`) carries markers
//! (`template::recall_marker`) until it goes out; here each is replaced by
//! the remembered value (store/remembered.rs), encoded for where it stands.
//! One not remembered yet (the booking's lead is still on its way) holds
//! the request back: it is tried again later, like any retry, without
//! counting against the receiver's breaker.

use crate::model::said::Said;
use crate::model::DueDelivery;
use crate::store::Writer;
use crate::template::{recall_markers, RECALL_PREFIX};

/// The request with every recall filled in; `Err` says which one is not
/// known yet, or why it could not be read.
pub fn fill(writer: &Writer, due: &DueDelivery) -> Result<Option<DueDelivery>, Said> {
    let d = &due.request;
    let in_body = d
        .body
        .as_deref()
        .is_some_and(|b| String::from_utf8_lossy(b).contains(RECALL_PREFIX));
    if !in_body && !d.url.contains(RECALL_PREFIX) {
        return Ok(None);
    }
    let json = d
        .headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("content-type") && v.contains("json"));
    let mut filled = due.clone();
    let body = d
        .body
        .as_deref()
        .map(String::from_utf8_lossy)
        .unwrap_or_default()
        .into_owned();
    let mut markers = recall_markers(&d.url);
    markers.extend(recall_markers(&body));
    let mut new_url = d.url.clone();
    let mut new_body = body;
    for (marker, name, key) in markers {
        let value = match writer.recalled(name.clone(), key.clone()) {
            Ok(Some(value)) => value,
            Ok(None) => return Err(Said::Recalling { name, key }),
            Err(err) => {
                return Err(Said::Network {
                    error: format!("cannot recall `{name}`: {err}"),
                })
            }
        };
        let in_url = url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>();
        let in_text = if json {
            let quoted = serde_json::Value::String(value.clone()).to_string();
            quoted[1..quoted.len() - 1].to_string()
        } else {
            in_url.clone()
        };
        new_url = new_url.replace(&marker, &in_url);
        new_body = new_body.replace(&marker, &in_text);
    }
    filled.request.url = new_url;
    if filled.request.body.is_some() {
        filled.request.body = Some(new_body.into_bytes());
    }
    Ok(Some(filled))
}
