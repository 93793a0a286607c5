//! `kind = "amocrm"`: its keys into a `leads/complex` request, its
//! answers' rules, and its sign-in (a long-lived token, or OAuth2).

use serde_json::json;

use super::kinds::{only_for, Built};
use super::*;
use crate::config::kinds::{self as k, AmoCrm, Kind};
use crate::model::platform::About;
use crate::model::response::{Accept, NoteRule, ResponseRules, RetryOn};

/// `kind = "amocrm"`: a lead and its contact through `leads/complex`,
/// with a private integration's long-lived token.
pub(super) fn amocrm(raw: &mut RawAction) -> Result<Built, String> {
    only_for("amocrm", raw)?;
    let base = match (raw.subdomain.take(), raw.api_url.take()) {
        (Some(_), Some(_)) => return Err("api_url: set subdomain or api_url, not both".into()),
        (None, None) => {
            return Err("subdomain: missing (salon for salon.amocrm.ru; or api_url for a kommo.com account)".into())
        }
        (Some(sub), None) => {
            if !k::subdomain_shape(&sub) {
                return Err(format!(
                    "subdomain: `{sub}` is not an account's subdomain (salon for salon.amocrm.ru)"
                ));
            }
            format!("https://{sub}.amocrm.ru")
        }
        (None, Some(api)) => super::kinds::api_base(&api)?,
    };
    // Ok: OAuth2; Err: the long-lived token.
    let oauth = match (
        raw.access_token.take(),
        raw.client_id.take(),
        raw.client_secret.take(),
        raw.redirect_uri.take(),
    ) {
        (Some(token), None, None, None) => {
            if token.expose().trim().is_empty() || token.expose().contains(char::is_whitespace) {
                return Err("access_token: not a token (paste the long-lived token whole, on one line)".into());
            }
            Err(token)
        }
        (Some(_), ..) => {
            return Err(
                "access_token: set a long-lived access_token, or OAuth2's client_id, client_secret and redirect_uri; not both"
                    .into(),
            )
        }
        (None, Some(client_id), Some(client_secret), Some(redirect_uri)) => {
            if client_id.trim().is_empty() {
                return Err("client_id: must not be empty (the integration's ID, from its Keys and scopes)".into());
            }
            match Url::parse(&redirect_uri) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => {
                    return Err(format!(
                        "redirect_uri: `{redirect_uri}` is not the integration's http(s) redirect address"
                    ))
                }
            }
            Ok(k::OAuth {
                integration: format!("amocrm {base} {client_id}"),
                base: base.clone(),
                client_id,
                client_secret,
                redirect_uri,
                processing: String::new(),
                action: raw.name.clone(),
            })
        }
        (None, None, None, None) => {
            return Err(
                "access_token: missing (a private integration's long-lived token; or client_id, client_secret and redirect_uri for OAuth2)"
                    .into(),
            )
        }
        (None, ..) => return Err("client_id: OAuth2 needs client_id, client_secret and redirect_uri, all three".into()),
    };
    let text_table =
        |key: &str, table: Option<toml::Table>, known: &[&str]| -> Result<Vec<(String, Template)>, String> {
            let mut pairs = Vec::new();
            for (name, value) in table.unwrap_or_default() {
                if !known.is_empty() && !known.contains(&name.as_str()) {
                    continue;
                }
                let source = match value {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(n) => n.to_string(),
                    other => return Err(format!("{key}.{name}: must be a string, found {}", other.type_str())),
                };
                pairs.push((
                    name.clone(),
                    parse_template(&format!("{key}.{name}"), &source, &source)?,
                ));
            }
            Ok(pairs)
        };
    let by_id = |key: &str, table: Option<toml::Table>| -> Result<Vec<(String, Template)>, String> {
        let pairs = text_table(key, table, &[])?;
        match pairs.iter().find(|(id, _)| id.parse::<u64>().is_err()) {
            Some((id, _)) => Err(format!(
                "{key}.{id}: name the custom field by its number (amoCRM → Настройки → поле → ID)"
            )),
            None => Ok(pairs),
        }
    };
    let contact_table = raw
        .contact
        .take()
        .ok_or("contact: missing (name, phone, email of the client)")?;
    if let Some(unknown) = contact_table
        .keys()
        .find(|n| !k::AMOCRM_CONTACT_KEYS.contains(&n.as_str()))
    {
        return Err(format!(
            "contact.{unknown}: not one of {} (custom fields go in contact_fields)",
            k::AMOCRM_CONTACT_KEYS.join(", ")
        ));
    }
    let contact = text_table("contact", Some(contact_table), k::AMOCRM_CONTACT_KEYS)?;
    let mut lead_table = raw.lead.take().unwrap_or_default();
    let mut lead_ids = Vec::new();
    for key in k::AMOCRM_LEAD_ID_KEYS {
        match lead_table.remove(*key) {
            None => {}
            Some(toml::Value::Integer(n)) if n > 0 => lead_ids.push((key.to_string(), n as u64)),
            Some(_) => return Err(format!("lead.{key}: must be a number (the id amoCRM shows)")),
        }
    }
    if let Some(unknown) = lead_table.keys().find(|n| !k::AMOCRM_LEAD_KEYS.contains(&n.as_str())) {
        return Err(format!(
            "lead.{unknown}: not one of {}, {} (custom fields go in lead_fields)",
            k::AMOCRM_LEAD_KEYS.join(", "),
            k::AMOCRM_LEAD_ID_KEYS.join(", ")
        ));
    }
    let lead = text_table("lead", Some(lead_table), k::AMOCRM_LEAD_KEYS)?;
    // A long-lived token goes with the request as it is stored; OAuth2's
    // access token is added when the request goes out (deliver/oauth.rs).
    let mut headers = Vec::new();
    if let Err(token) = &oauth {
        headers.push((
            "Authorization".to_string(),
            Template::literal(&format!("Bearer {}", token.expose().trim())),
        ));
    }
    headers.push(("Accept".to_string(), Template::literal("application/json")));
    Ok(Built {
        method: Method::Post,
        url: Template::literal(&format!("{base}/api/v4/leads/complex")),
        query: Vec::new(),
        headers,
        body: None,
        content_type: None,
        rules: amocrm_rules(),
        kind: Kind::AmoCrm(Box::new(AmoCrm {
            contact,
            lead,
            lead_ids,
            lead_fields: by_id("lead_fields", raw.lead_fields.take())?,
            contact_fields: by_id("contact_fields", raw.contact_fields.take())?,
            tags: raw.tags.take().unwrap_or_default(),
            key_field: raw.key_field.take(),
            token_expires: oauth
                .as_ref()
                .err()
                .and_then(|token| k::jwt_expiry(token.expose().trim()))
                .map(|secs| secs.saturating_mul(1000)),
            oauth: oauth.ok(),
        })),
    })
}

/// amoCRM's answers (amocrm.ru/developers/content/crm_platform/leads-api
/// and api-reference: `[{"id":…,"contact_id":…}]` on success, errors as
/// `application/problem+json` with `title`, `status`, `detail`, and
/// `validation-errors` on a 400): the new lead's id is kept; 429 and 5xx
/// are retried; a 400 (validation), a 401 (the token revoked or expired)
/// and a 403 are permanent, each with a note. Code 113 in a 403 (the
/// account allows API calls only from listed addresses) is known from
/// third-party integrations, not from amoCRM's pages we could read.
fn amocrm_rules() -> ResponseRules {
    let note = |status: Vec<(u16, u16)>, when: Option<(String, Vec<serde_json::Value>)>, json: &str, about| NoteRule {
        status,
        when,
        json: Some(json.to_string()),
        about,
    };
    let code_113 = vec![json!(113), json!("113")];
    ResponseRules {
        accept: Accept {
            json_present: vec!["0.id".into()],
            ..Accept::default()
        },
        retry: RetryOn::default(),
        notes: vec![
            note(vec![(401, 401)], None, "detail", About::AmoToken),
            note(
                vec![(403, 403)],
                Some(("error_code".into(), code_113.clone())),
                "ip",
                About::AmoAddress,
            ),
            note(
                vec![(403, 403)],
                Some(("response.error_code".into(), code_113)),
                "response.ip",
                About::AmoAddress,
            ),
            note(vec![(403, 403)], None, "detail", About::AmoForbidden),
            note(
                Vec::new(),
                Some(("validation-errors".into(), Vec::new())),
                "validation-errors.0.errors.0.detail",
                About::AmoInvalid,
            ),
            note(
                Vec::new(),
                Some(("detail".into(), Vec::new())),
                "detail",
                About::AmoSaid,
            ),
        ],
        keep: Some("0.id".into()),
        remember: None,
    }
}
