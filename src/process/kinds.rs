//! The bodies destination kinds build from their rendered templates: a
//! Telegram message, a Bitrix24 call's `fields`. Values are rendered as
//! plain text and then encoded by serde_json or the form encoder, so no
//! template needs an escape of its own.

use serde_json::{json, Map, Value};

use crate::config::kinds::{AmoCrm, Bitrix24, Kind, Shape, Telegram};
use crate::template::Template;

/// Longest message text Telegram takes, in UTF-16 units ("1-4096
/// characters after entities parsing", core.telegram.org/bots/api#sendmessage;
/// counted before parsing here, which is never less).
pub const TELEGRAM_TEXT_LIMIT: usize = 4096;
/// What ends a message that was cut.
const CUT_MARKER: &str = "\n[…]";
/// The same for Markdown, where `[` is markup.
const CUT_MARKER_MARKDOWN: &str = "\n…";
/// Room kept for the closing tags of an HTML message that was cut.
const CLOSING_ROOM: usize = 200;

/// The content type a kind's body goes with; none for `http` (its own).
pub fn content_type(kind: &Kind) -> Option<&'static str> {
    match kind {
        Kind::Http | Kind::Metrica(_) => None,
        Kind::Bitrix24(Bitrix24 { form: true, .. }) => Some("application/x-www-form-urlencoded"),
        Kind::Telegram(_) | Kind::Bitrix24(_) | Kind::AmoCrm(_) => Some("application/json"),
    }
}

/// The body of a kind's request; `take` renders a template as plain text.
pub fn body(kind: &Kind, take: &mut dyn FnMut(&Template) -> String) -> Vec<u8> {
    match kind {
        // Rows are bodies of their own (process::metrica).
        Kind::Http | Kind::Metrica(_) => Vec::new(),
        Kind::Telegram(t) => telegram(t, take),
        Kind::Bitrix24(b) if b.form => bitrix_form(b, take),
        Kind::Bitrix24(b) => {
            let mut call = table(&b.params, take);
            call["fields"] = table(&b.fields, take);
            call.to_string().into_bytes()
        }
        Kind::AmoCrm(a) => amocrm(a, take),
    }
}

/// What starts the key an amocrm action puts in its `key_field`.
pub const AMOCRM_KEY_PREFIX: &str = "hookrelay-";

/// A key of this delivery's own, made once when it is rendered: a retry
/// sends the same bytes, so the same key, and can look the lead up by it.
fn delivery_key() -> String {
    let mut bytes = [0u8; 8];
    // Without the system's randomness, the time still tells deliveries apart.
    if getrandom::fill(&mut bytes).is_err() {
        bytes = (crate::clock::now_ms() as u64).to_le_bytes();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{AMOCRM_KEY_PREFIX}{hex}")
}

/// A rendered price as amoCRM's integer: the whole part's digits
/// (`1 500,00 ₽` is 1500); none when there are none.
fn price(text: &str) -> Option<u64> {
    let whole = text.split(['.', ',']).next().unwrap_or("");
    let digits: String = whole.chars().filter(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Custom fields by id, as amoCRM takes them; empty values are left out.
fn custom_fields(pairs: &[(String, Template)], take: &mut dyn FnMut(&Template) -> String) -> Vec<Value> {
    pairs
        .iter()
        .filter_map(|(id, t)| {
            let value = take(t);
            let id: u64 = id.parse().ok()?;
            (!value.is_empty()).then(|| json!({"field_id": id, "values": [{"value": value}]}))
        })
        .collect()
}

/// `leads/complex`'s body: one lead, its contact embedded (phone and
/// email as the contact's PHONE and EMAIL multi-fields, WORK).
fn amocrm(a: &AmoCrm, take: &mut dyn FnMut(&Template) -> String) -> Vec<u8> {
    let mut lead = Map::new();
    for (name, t) in &a.lead {
        let value = take(t);
        match name.as_str() {
            "price" => {
                if let Some(p) = price(&value) {
                    lead.insert("price".into(), Value::from(p));
                }
            }
            _ => {
                lead.insert(name.clone(), Value::String(value));
            }
        }
    }
    for (name, id) in &a.lead_ids {
        lead.insert(name.clone(), Value::from(*id));
    }
    let mut lead_fields = custom_fields(&a.lead_fields, take);
    if let Some(field) = a.key_field {
        lead_fields.push(json!({"field_id": field, "values": [{"value": delivery_key()}]}));
    }
    if !lead_fields.is_empty() {
        lead.insert("custom_fields_values".into(), Value::Array(lead_fields));
    }
    let mut contact = Map::new();
    let mut contact_fields = custom_fields(&a.contact_fields, take);
    for (name, t) in &a.contact {
        let value = take(t);
        match name.as_str() {
            "phone" | "email" if value.is_empty() => {}
            "phone" | "email" => contact_fields.push(json!({
                "field_code": name.to_ascii_uppercase(),
                "values": [{"value": value, "enum_code": "WORK"}],
            })),
            _ => {
                contact.insert(name.clone(), Value::String(value));
            }
        }
    }
    if !contact_fields.is_empty() {
        contact.insert("custom_fields_values".into(), Value::Array(contact_fields));
    }
    let mut embedded = json!({ "contacts": [contact] });
    if !a.tags.is_empty() {
        embedded["tags"] = a.tags.iter().map(|t| json!({"name": t})).collect();
    }
    lead.insert("_embedded".into(), embedded);
    Value::Array(vec![Value::Object(lead)]).to_string().into_bytes()
}

/// The key an amocrm request carries in its lead's custom field, if any.
pub fn amocrm_key(body: &[u8]) -> Option<String> {
    let leads: Value = serde_json::from_slice(body).ok()?;
    leads
        .get(0)?
        .get("custom_fields_values")?
        .as_array()?
        .iter()
        .flat_map(|f| f["values"].as_array().into_iter().flatten())
        .filter_map(|v| v["value"].as_str())
        .find(|v| v.starts_with(AMOCRM_KEY_PREFIX))
        .map(String::from)
}

/// `sendMessage`'s JSON: a numeric chat id goes as a number.
fn telegram(t: &Telegram, take: &mut dyn FnMut(&Template) -> String) -> Vec<u8> {
    let text = cut(&take(&t.text), t.parse_mode.as_deref());
    let chat = t
        .chat_id
        .parse::<i64>()
        .map_or_else(|_| Value::String(t.chat_id.clone()), Value::from);
    let mut message = json!({ "chat_id": chat, "text": text });
    if let Some(mode) = &t.parse_mode {
        message["parse_mode"] = Value::String(mode.clone());
    }
    message.to_string().into_bytes()
}

/// `text` within Telegram's limit: as it is when it fits, else cut with a
/// marker; an HTML message keeps its tags whole and closes those the cut
/// left open, so Telegram can still parse it.
pub fn cut(text: &str, parse_mode: Option<&str>) -> String {
    let units = |s: &str| s.encode_utf16().count();
    if units(text) <= TELEGRAM_TEXT_LIMIT {
        return text.to_string();
    }
    let html = parse_mode == Some("HTML");
    let marker = match parse_mode {
        Some("Markdown" | "MarkdownV2") => CUT_MARKER_MARKDOWN,
        _ => CUT_MARKER,
    };
    let room = TELEGRAM_TEXT_LIMIT - units(marker) - if html { CLOSING_ROOM } else { 0 };
    let mut used = 0;
    let end = text
        .char_indices()
        .find(|(_, c)| {
            used += c.len_utf16();
            used > room
        })
        .map_or(text.len(), |(at, _)| at);
    let mut kept = &text[..end];
    if !html {
        return format!("{kept}{marker}");
    }
    // A tag or an entity the cut went through is dropped whole.
    if let Some(open) = kept.rfind('<') {
        if !kept[open..].contains('>') {
            kept = &kept[..open];
        }
    }
    if let Some(amp) = kept.rfind('&') {
        if !kept[amp..].contains(';') {
            kept = &kept[..amp];
        }
    }
    let mut closing = String::new();
    for name in open_tags(kept).iter().rev() {
        if closing.encode_utf16().count() + name.len() + 3 > CLOSING_ROOM {
            break;
        }
        closing.push_str(&format!("</{name}>"));
    }
    format!("{kept}{closing}{marker}")
}

/// The tags `html` opens and does not close, outermost first.
fn open_tags(html: &str) -> Vec<String> {
    let mut open: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else { break };
        let tag = &rest[start + 1..start + len];
        rest = &rest[start + len + 1..];
        let name = |t: &str| {
            t.split(|c: char| c.is_whitespace())
                .next()
                .unwrap_or("")
                .to_ascii_lowercase()
        };
        match tag.strip_prefix('/') {
            Some(closed) => {
                let closed = name(closed);
                if let Some(at) = open.iter().rposition(|t| *t == closed) {
                    open.truncate(at);
                }
            }
            None => open.push(name(tag)),
        }
    }
    open
}

/// A table of shapes as a JSON object.
fn table(pairs: &[(String, Shape)], take: &mut dyn FnMut(&Template) -> String) -> Value {
    let mut map = Map::new();
    for (name, shape) in pairs {
        map.insert(name.clone(), value(shape, take));
    }
    Value::Object(map)
}

fn value(shape: &Shape, take: &mut dyn FnMut(&Template) -> String) -> Value {
    match shape {
        Shape::Text(t) => Value::String(take(t)),
        Shape::List(items) => Value::Array(items.iter().map(|s| value(s, take)).collect()),
        Shape::Table(pairs) => table(pairs, take),
    }
}

/// `fields[NAME]=…&fields[PHONE][0][VALUE]=…`: the nested form keys PHP
/// reads into arrays, as Bitrix24's REST takes them.
fn bitrix_form(b: &Bitrix24, take: &mut dyn FnMut(&Template) -> String) -> Vec<u8> {
    let mut pairs = Vec::new();
    for (name, shape) in &b.params {
        flatten(name, shape, take, &mut pairs);
    }
    for (name, shape) in &b.fields {
        flatten(&format!("fields[{name}]"), shape, take, &mut pairs);
    }
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
        .into_bytes()
}

fn flatten(key: &str, shape: &Shape, take: &mut dyn FnMut(&Template) -> String, into: &mut Vec<(String, String)>) {
    match shape {
        Shape::Text(t) => into.push((key.to_string(), take(t))),
        Shape::List(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{key}[{i}]"), item, take, into);
            }
        }
        Shape::Table(pairs) => {
            for (name, item) in pairs {
                flatten(&format!("{key}[{name}]"), item, take, into);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short text is left alone; a long one ends in the marker within
    /// the limit, counted in UTF-16 units (an emoji is two).
    #[test]
    fn long_text_is_cut_with_a_marker() {
        assert_eq!(cut("привет", None), "привет");
        let exact = "я".repeat(TELEGRAM_TEXT_LIMIT);
        assert_eq!(cut(&exact, None), exact);
        let long = "😀".repeat(3000);
        let shown = cut(&long, None);
        assert!(shown.ends_with(CUT_MARKER));
        assert!(shown.encode_utf16().count() <= TELEGRAM_TEXT_LIMIT);
        assert!(
            shown.encode_utf16().count() > TELEGRAM_TEXT_LIMIT - 10,
            "not cut shorter than needed"
        );
        assert!(cut(&long, Some("MarkdownV2")).ends_with("\n…"));
    }

    /// An HTML message cut inside a bold run and a link gets them closed,
    /// and a tag or entity cut in half is dropped.
    #[test]
    fn html_is_cut_whole() {
        let long = format!(
            "<b>Новая запись</b>\n<i>{}<a href=\"https://x\">ссылка &amp; ещё</a></i>",
            "а".repeat(5000)
        );
        let shown = cut(&long, Some("HTML"));
        assert!(shown.ends_with("</i>\n[…]"), "{}", &shown[shown.len() - 40..]);
        assert!(shown.encode_utf16().count() <= TELEGRAM_TEXT_LIMIT);
        let half_tag = format!("{}<b class", "x".repeat(4000));
        let shown = cut(&format!("{half_tag}{}", "y".repeat(200)), Some("HTML"));
        assert!(!shown.contains("<b"), "a half tag is dropped");
        let half_entity = format!("{}&am", "x".repeat(3890));
        let shown = cut(&format!("{half_entity}{}", "y".repeat(300)), Some("HTML"));
        assert!(!shown.contains('&'), "a half entity is dropped");
        assert_eq!(open_tags("<b>x<i>y</i><a href=\"z\">w"), ["b", "a"]);
    }

    use crate::config::Config;
    use std::collections::HashMap;

    const KINDS: &str = r#"
[[processing]]
name = "p"
token = "abcdefghijklmnopqrstuvwxyz"
[[processing.action]]
name = "tg"
kind = "telegram"
bot_token = "123456:AAEhBP0av28eBx_yZZZZZZZ"
chat_id = "-1001234567890"
parse_mode = "HTML"
text = "<b>Запись</b>: {{client_name | html}}, {{client_phone | phone}}"
[[processing.action]]
name = "lead"
kind = "bitrix24"
webhook_url = "https://salon.bitrix24.ru/rest/1/x7k2p9q4w1z8"
fields = { TITLE = "Запись {{client_name}}", OPENED = true, PHONE = [{ VALUE = "{{client_phone | phone}}", VALUE_TYPE = "WORK" }] }
[[processing.action]]
name = "lead-form"
kind = "bitrix24"
method = "crm.lead.update"
format = "form"
webhook_url = "https://salon.bitrix24.ru/rest/1/x7k2p9q4w1z8/"
fields = { TITLE = "{{client_name}}", PHONE = [{ VALUE = "{{client_phone}}" }] }
"#;

    /// Each kind's request: its URL with the secret masked in what is
    /// shown, its body encoded whole, and its rules and pacing set.
    #[test]
    fn kinds_render_their_platforms_requests() {
        let config = Config::parse(KINDS, std::path::Path::new("/c.toml")).unwrap();
        let p = &config.processings[0];
        let fields: HashMap<&str, &str> = [
            ("client_name", "Анна <VIP> & Co"),
            ("client_phone", "8 (916) 123-45-67"),
        ]
        .into_iter()
        .collect();
        let render = |i: usize| crate::process::render::render(&p.actions[i], |n| fields.get(n).copied()).unwrap();
        assert!(p.fields_used().contains("client_phone") && p.fields_used().contains("client_name"));

        let tg = render(0).request;
        assert_eq!(
            tg.url,
            "https://api.telegram.org/bot123456:AAEhBP0av28eBx_yZZZZZZZ/sendMessage"
        );
        assert_eq!(
            tg.redacted,
            "POST https://api.telegram.org/bot123456:MASKED/sendMessage"
        );
        let message: Value = serde_json::from_slice(tg.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            message,
            json!({"chat_id": -1001234567890i64, "parse_mode": "HTML",
                   "text": "<b>Запись</b>: Анна &lt;VIP&gt; &amp; Co, +79161234567"})
        );
        assert!(tg.headers.contains(&("Content-Type".into(), "application/json".into())));
        assert_eq!(p.actions[0].rules.keep.as_deref(), Some("result.message_id"));

        let lead = render(1).request;
        assert_eq!(
            lead.url,
            "https://salon.bitrix24.ru/rest/1/x7k2p9q4w1z8/crm.lead.add.json"
        );
        assert_eq!(
            lead.redacted,
            "POST https://salon.bitrix24.ru/rest/1/MASKED/crm.lead.add.json"
        );
        let call: Value = serde_json::from_slice(lead.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            call,
            json!({"fields": {"TITLE": "Запись Анна <VIP> & Co", "OPENED": "Y",
                              "PHONE": [{"VALUE": "+79161234567", "VALUE_TYPE": "WORK"}]}})
        );

        let form = render(2).request;
        assert!(form.url.ends_with("/rest/1/x7k2p9q4w1z8/crm.lead.update.json"));
        assert_eq!(
            String::from_utf8(form.body.unwrap()).unwrap(),
            "fields%5BTITLE%5D=%D0%90%D0%BD%D0%BD%D0%B0+%3CVIP%3E+%26+Co&fields%5BPHONE%5D%5B0%5D%5BVALUE%5D=8+%28916%29+123-45-67"
        );
        assert!(form
            .headers
            .contains(&("Content-Type".into(), "application/x-www-form-urlencoded".into())));

        // The portal gets Bitrix24's bucket, once for both actions.
        let policy = config.receiver_policy("https://salon.bitrix24.ru/");
        assert_eq!(policy.rate.map(|r| r.to_string()), Some("2/s".into()));
        assert_eq!(policy.burst, 48);
        assert_eq!(config.receivers.len(), 1);
    }

    /// amoCRM's price is a whole number read from what the template made;
    /// the delivery's key is found again in the body it went into.
    #[test]
    fn amocrm_prices_and_keys() {
        assert_eq!(price("1 500,00 ₽"), Some(1500));
        assert_eq!(price("2500.5"), Some(2500));
        assert_eq!(price(""), None);
        assert_eq!(price("бесплатно"), None);
        let key = delivery_key();
        assert!(key.starts_with(AMOCRM_KEY_PREFIX) && key.len() == AMOCRM_KEY_PREFIX.len() + 16);
        assert_ne!(key, delivery_key(), "each delivery its own");
        let body = json!([{"custom_fields_values": [
            {"field_id": 1, "values": [{"value": "ad-7"}]},
            {"field_id": 2, "values": [{"value": key}]}
        ]}]);
        assert_eq!(amocrm_key(body.to_string().as_bytes()), Some(key));
        assert_eq!(amocrm_key(b"[{}]"), None);
    }

    /// A `[[receiver]]` for the portal (an Enterprise plan's 5/s) wins.
    #[test]
    fn a_receiver_of_its_own_overrides_the_kinds_pacing() {
        let text = format!("{KINDS}\n[[receiver]]\nurl = \"https://salon.bitrix24.ru\"\nrate = \"5/s\"\nburst = 250\n");
        let config = Config::parse(&text, std::path::Path::new("/c.toml")).unwrap();
        let policy = config.receiver_policy("https://salon.bitrix24.ru/");
        assert_eq!(
            (policy.rate.map(|r| r.to_string()), policy.burst),
            (Some("5/s".into()), 250)
        );
    }
}
