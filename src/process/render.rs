//! Rendering an action into the exact request that goes out, and masking its
//! secrets for logs and attempt records.
//!
//! The request is rendered once, when the event is accepted, and stored with
//! the delivery: retries send the same bytes even after a config reload.

use url::Url;

use crate::config::kinds::Kind;
use crate::config::{Action, Method};
use crate::redact;
use crate::template::{Escape, Template};

/// A fully rendered outgoing request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// `METHOD url` with secrets masked: what logs and history show.
    pub redacted: String,
}

/// A rendered request and the template fields it found missing.
#[derive(Debug)]
pub struct Rendered {
    pub request: Request,
    pub missing: Vec<String>,
    /// Of `missing`, the fields the event does not have at all.
    pub absent: Vec<String>,
    /// Headers whose values held control characters, sent as spaces.
    pub cleaned_headers: Vec<String>,
}

/// Renders `action` for an event whose usable fields `lookup` returns.
pub fn render<'a>(action: &Action, lookup: impl Fn(&str) -> Option<&'a str> + Copy) -> Result<Rendered, String> {
    let mut missing = Vec::new();
    let mut absent = Vec::new();
    let mut take = |template: &Template, escape: Escape| {
        let rendered = template.render(lookup, escape);
        for field in rendered.missing {
            if !missing.contains(&field) {
                missing.push(field);
            }
        }
        for field in rendered.absent {
            if !absent.contains(&field) {
                absent.push(field);
            }
        }
        rendered.text
    };
    let url_text = take(&action.url, Escape::Url);
    let mut url = Url::parse(&url_text).map_err(|e| format!("url `{url_text}` does not parse: {e}"))?;
    if !action.query.is_empty() {
        let values: Vec<(&str, String)> = action
            .query
            .iter()
            .map(|(name, template)| (name.as_str(), take(template, Escape::None)))
            .collect();
        url.query_pairs_mut().extend_pairs(values);
    }
    let content_type = action.content_type.clone().or_else(|| {
        let body = action.body.as_ref()?.source().trim_start();
        Some(if body.starts_with('{') || body.starts_with('[') {
            "application/json".into()
        } else {
            "application/x-www-form-urlencoded".into()
        })
    });
    let body_escape = match content_type.as_deref() {
        Some(ct) if ct.contains("json") => Escape::Json,
        Some(ct) if ct.contains("x-www-form-urlencoded") => Escape::Url,
        _ => Escape::None,
    };
    let body = match &action.kind {
        Kind::Http => action.body.as_ref().map(|t| take(t, body_escape).into_bytes()),
        kind => Some(super::kinds::body(kind, &mut |t| take(t, Escape::None))),
    };
    let content_type = content_type.or_else(|| super::kinds::content_type(&action.kind).map(String::from));
    let mut cleaned_headers = Vec::new();
    let mut headers: Vec<(String, String)> = action
        .headers
        .iter()
        .map(|(name, template)| {
            let (value, cleaned) = header_value(take(template, Escape::None));
            if cleaned {
                cleaned_headers.push(name.clone());
            }
            (name.clone(), value)
        })
        .collect();
    if let Some(ct) = content_type {
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
            headers.push(("Content-Type".into(), ct));
        }
    }
    let redacted = format!("{} {}", action.method.as_str(), redact::url(&url));
    Ok(Rendered {
        request: Request {
            method: action.method,
            url: url.into(),
            headers,
            body,
            redacted,
        },
        missing,
        absent,
        cleaned_headers,
    })
}

/// A header value with every control character but tab as a space, and
/// whether there were any. CR and LF would start a new header line; NUL and
/// the rest make the HTTP client refuse the request, which no retry fixes.
fn header_value(value: String) -> (String, bool) {
    if !value.chars().any(|c| c.is_control() && c != '\t') {
        return (value, false);
    }
    let clean = value
        .chars()
        .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
        .collect();
    (clean, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::collections::HashMap;
    use std::path::Path;

    fn action(toml_action: &str) -> Action {
        let text = format!(
            "[[processing]]\nname = \"p\"\ntoken = \"abcdefghijklmnopqrstuvwxyz\"\n[[processing.action]]\nname = \"a\"\n{toml_action}"
        );
        Config::parse(&text, Path::new("/x/c.toml")).unwrap().processings[0].actions[0].clone()
    }

    fn render_with(action: &Action, fields: &[(&str, &str)]) -> Rendered {
        let map: HashMap<&str, &str> = fields.iter().copied().collect();
        render(action, |n| map.get(n).copied()).unwrap()
    }

    /// Query values are URL-encoded exactly once, after the link's own parameters.
    /// The README's VK Ads recipe: the pixel's event link, its `;`-joined
    /// parameters sent and shown as VK documents them.
    #[test]
    fn the_vk_ads_recipe_renders_as_documented() {
        let vk = action(
            "url = \"https://top-fwz1.mail.ru/tracker?id=1234567;e=RG%3A{{appointment_total_cost | digits | default('0')}}/paid;rb_clickid={{rb_clickid}}\"",
        );
        let r = render_with(&vk, &[("appointment_total_cost", "1 500"), ("rb_clickid", "c1d2")]).request;
        let sent = "https://top-fwz1.mail.ru/tracker?id=1234567;e=RG%3A1500/paid;rb_clickid=c1d2";
        assert_eq!(r.url, sent);
        assert_eq!(r.redacted, format!("GET {sent}"));
    }

    #[test]
    fn query_values_encoded_once() {
        let a = action(
            "url = \"https://plarin.example/pb?token=s3cr3t&src=kl\"\nquery = { ad_id = \"{{ad_id}}\", name = \"{{name}}\", v = \"{{v|urlencode}}\" }",
        );
        let r = render_with(&a, &[("ad_id", "a&b=c"), ("name", "Анна Ф"), ("v", "%")]);
        assert_eq!(
            r.request.url,
            "https://plarin.example/pb?token=s3cr3t&src=kl&ad_id=a%26b%3Dc&name=%D0%90%D0%BD%D0%BD%D0%B0+%D0%A4&v=%2525"
        );
        assert!(r.missing.is_empty());
        assert!(!r.request.redacted.contains("s3cr3t"), "{}", r.request.redacted);
        assert!(r
            .request
            .redacted
            .starts_with("GET https://plarin.example/pb?token=MASKED&src=kl"));
    }

    /// Fields inside the URL template are encoded as one component.
    #[test]
    fn url_template_fields_are_encoded() {
        let a = action("url = \"https://h.example/c/{{id}}/x\"");
        let r = render_with(&a, &[("id", "a/b c")]);
        assert_eq!(r.request.url, "https://h.example/c/a%2Fb%20c/x");
    }

    /// A JSON body stays valid JSON whatever the values hold; headers get no newlines.
    #[test]
    fn json_body_and_headers() {
        let a = action(
            "method = \"POST\"\nurl = \"https://h.example/\"\nbody = '{\"phone\": \"{{p|phone}}\", \"n\": \"{{n}}\"}'\nheaders = { \"X-Api-Key\" = \"k{{n}}\" }",
        );
        let r = render_with(&a, &[("p", "8 912 345 67 89"), ("n", "a\"\r\nb")]);
        let body: serde_json::Value = serde_json::from_slice(r.request.body.as_ref().unwrap()).unwrap();
        assert_eq!(body["phone"], "+79123456789");
        assert_eq!(body["n"], "a\"\r\nb");
        assert_eq!(r.request.headers[0], ("X-Api-Key".to_string(), "ka\"  b".to_string()));
        assert_eq!(
            r.request.headers[1],
            ("Content-Type".to_string(), "application/json".to_string())
        );
    }

    /// Regression: a NUL in a field used in a header failed every attempt
    /// with "failed to parse header value" until the budget was spent.
    #[test]
    fn control_characters_in_headers_become_spaces() {
        let a = action("url = \"https://h.example/\"\nheaders = { \"X-Phone\" = \"{{p}}\", \"X-Id\" = \"{{id}}\" }");
        let r = render_with(&a, &[("p", "+7\u{0}912\u{1b}\t\u{7f}1"), ("id", "5")]);
        assert_eq!(r.request.headers[0], ("X-Phone".to_string(), "+7 912 \t 1".to_string()));
        assert_eq!(r.cleaned_headers, ["X-Phone"]);
        for (_, value) in &r.request.headers {
            assert!(ureq::http::HeaderValue::from_str(value).is_ok(), "{value:?}");
        }
    }

    /// Missing fields are collected once across every template of the action.
    #[test]
    fn missing_fields_collected() {
        let a = action("url = \"https://h.example/{{a}}\"\nquery = { x = \"{{a}}\", y = \"{{b}}\" }");
        let r = render_with(&a, &[]);
        assert_eq!(r.missing, vec!["a".to_string(), "b".to_string()]);
    }
}
