//! Destination kinds: an action is a templated HTTP request (`http`, the
//! default) or a request hookrelay builds for a platform it knows, with that
//! platform's success rule, refusals, waits and limits already set.
//!
//! A kind resolves into the same [`super::Action`] an `http` action is: a
//! fixed URL, a method and response rules, plus what the kind renders
//! itself ([`Kind`]). So retries, the breaker, pacing, `max_age`, history,
//! the console and `try` treat every kind alike.

use crate::template::Template;

mod metrica;
pub use metrica::*;

/// What an action sends: the request its templates describe, or a
/// platform's request built from the kind's settings.
#[derive(Debug, Clone, Default)]
pub enum Kind {
    /// `kind = "http"`: `url`, `query`, `headers` and `body` as written.
    #[default]
    Http,
    /// `kind = "telegram"`: a message to a chat through the Bot API.
    Telegram(Telegram),
    /// `kind = "bitrix24"`: a REST call through a portal's incoming webhook.
    Bitrix24(Bitrix24),
    /// `kind = "amocrm"`: a lead with its contact, in one `leads/complex` call.
    AmoCrm(Box<AmoCrm>),
    /// `kind = "metrica"`: a row of a CSV uploaded to Yandex Metrica in batches.
    Metrica(Box<Metrica>),
}

impl Kind {
    /// The kind's name as the config writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Telegram(_) => "telegram",
            Kind::Bitrix24(_) => "bitrix24",
            Kind::AmoCrm(_) => "amocrm",
            Kind::Metrica(_) => "metrica",
        }
    }

    /// The OAuth2 integration an amocrm action signs in with, if it does.
    pub fn oauth(&self) -> Option<&OAuth> {
        match self {
            Kind::AmoCrm(amo) => amo.oauth.as_ref(),
            _ => None,
        }
    }

    /// The templates the kind renders (the `http` kind's are the action's own).
    pub fn templates(&self) -> Vec<&Template> {
        match self {
            Kind::Http => Vec::new(),
            Kind::Telegram(t) => vec![&t.text],
            Kind::Bitrix24(b) => {
                let mut all = Vec::new();
                for (_, shape) in b.fields.iter().chain(&b.params) {
                    shape.collect(&mut all);
                }
                all
            }
            Kind::AmoCrm(a) => a
                .contact
                .iter()
                .chain(&a.lead)
                .chain(&a.lead_fields)
                .chain(&a.contact_fields)
                .map(|(_, t)| t)
                .collect(),
            Kind::Metrica(m) => m.row.iter().map(|(_, t)| t).collect(),
        }
    }

    /// A metrica action's settings: its rows wait for a batch.
    pub fn metrica(&self) -> Option<&Metrica> {
        match self {
            Kind::Metrica(m) => Some(m),
            _ => None,
        }
    }
}

/// An amoCRM lead and its contact, made by `POST /api/v4/leads/complex`
/// (amocrm.ru/developers/content/crm_platform/leads-api, "Комплексное
/// добавление сделок с контактом и компанией").
#[derive(Debug, Clone)]
pub struct AmoCrm {
    /// The contact's `name`, `first_name`, `last_name`, `phone`, `email`.
    pub contact: Vec<(String, Template)>,
    /// The lead's `name` and `price`.
    pub lead: Vec<(String, Template)>,
    /// The lead's `pipeline_id`, `status_id`, `responsible_user_id`.
    pub lead_ids: Vec<(String, u64)>,
    /// The lead's custom fields, by field id.
    pub lead_fields: Vec<(String, Template)>,
    /// The contact's custom fields, by field id.
    pub contact_fields: Vec<(String, Template)>,
    /// Tags put on the lead.
    pub tags: Vec<String>,
    /// A text custom field of leads that gets a key of this delivery's own,
    /// so that a retry after an answer that never came first looks the
    /// lead up instead of making a second one.
    pub key_field: Option<u64>,
    /// When the long-lived token lapses (ms since the epoch), from its
    /// `exp`; none when it does not say.
    pub token_expires: Option<i64>,
    /// OAuth2 instead of a long-lived token: the tokens are kept in the
    /// database and sent when the request goes out.
    pub oauth: Option<OAuth>,
}

/// An amoCRM integration that signs in with OAuth2
/// (amocrm.ru/developers/content/oauth/step-by-step): an authorization
/// code is exchanged for an access token (24 h) and a refresh token,
/// which is single-use: each refresh hands out a new pair.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuth {
    /// The key its tokens are kept under: `amocrm <base URL> <client_id>`,
    /// shared by every action of that integration on that account.
    pub integration: String,
    /// `https://salon.amocrm.ru`.
    pub base: String,
    pub client_id: String,
    pub client_secret: super::Secret,
    pub redirect_uri: String,
    /// The processing and action named in `hookrelay amocrm authorize`.
    pub processing: String,
    pub action: String,
}

/// How long before a long-lived token lapses `check`, the log and a
/// daily notice start saying so.
pub const TOKEN_WARNING_MS: i64 = 14 * 24 * 3600 * 1000;

/// The contact keys an amocrm action knows.
pub const AMOCRM_CONTACT_KEYS: &[&str] = &["name", "first_name", "last_name", "phone", "email"];
/// The lead's text keys, and its id keys.
pub const AMOCRM_LEAD_KEYS: &[&str] = &["name", "price"];
pub const AMOCRM_LEAD_ID_KEYS: &[&str] = &["pipeline_id", "status_id", "responsible_user_id"];

/// Whether `subdomain` is an amoCRM account's subdomain (`salon` of
/// salon.amocrm.ru).
pub fn subdomain_shape(subdomain: &str) -> bool {
    !subdomain.is_empty()
        && subdomain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The `exp` (Unix seconds) of a JWT such as amoCRM's long-lived token,
/// read without checking its signature (only amoCRM can); none when the
/// token is not a JWT or has no `exp`.
pub fn jwt_expiry(token: &str) -> Option<i64> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_i64()
}

/// A Telegram message: `sendMessage` with `chat_id`, the rendered `text`
/// and, when set, `parse_mode` (core.telegram.org/bots/api#sendmessage).
#[derive(Debug, Clone)]
pub struct Telegram {
    /// A chat's number (`-100…` for a supergroup) or a channel's `@name`.
    pub chat_id: String,
    pub text: Template,
    /// `HTML`, `MarkdownV2` or `Markdown`; none: plain text.
    pub parse_mode: Option<String>,
}

/// A Bitrix24 REST call: `method` with `fields` (apidocs.bitrix24.com,
/// crm.lead.add: `fields` holds the lead's fields, list fields such as
/// `PHONE` as lists of `{VALUE, VALUE_TYPE}`).
#[derive(Debug, Clone)]
pub struct Bitrix24 {
    /// The REST method, `crm.lead.add` by default.
    pub method: String,
    /// The `fields` table, in file order.
    pub fields: Vec<(String, Shape)>,
    /// Parameters beside `fields` (`id` for `crm.lead.update`), in file order.
    pub params: Vec<(String, Shape)>,
    /// Sent as nested form keys (`fields[PHONE][0][VALUE]=…`) instead of JSON.
    pub form: bool,
}

/// A value of a table of templates: text, a list, or a table.
#[derive(Debug, Clone)]
pub enum Shape {
    Text(Template),
    List(Vec<Shape>),
    Table(Vec<(String, Shape)>),
}

impl Shape {
    /// Reads a TOML value: strings are templates, numbers and booleans are
    /// fixed text, arrays and tables nest. `key` names it in errors.
    pub fn from_toml(key: &str, value: toml::Value) -> Result<Shape, String> {
        let text = |source: &str| {
            Template::parse(source)
                .map(Shape::Text)
                .map_err(|e| format!("{key}: template `{source}`: {e}"))
        };
        match value {
            toml::Value::String(source) => text(&source),
            toml::Value::Integer(n) => text(&n.to_string()),
            toml::Value::Float(n) => text(&n.to_string()),
            toml::Value::Boolean(b) => text(if b { "Y" } else { "N" }),
            toml::Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| Shape::from_toml(&format!("{key}[{i}]"), item))
                .collect::<Result<_, _>>()
                .map(Shape::List),
            toml::Value::Table(table) => table
                .into_iter()
                .map(|(name, item)| Ok((name.clone(), Shape::from_toml(&format!("{key}.{name}"), item)?)))
                .collect::<Result<_, String>>()
                .map(Shape::Table),
            toml::Value::Datetime(d) => text(&d.to_string()),
        }
    }

    fn collect<'a>(&'a self, into: &mut Vec<&'a Template>) {
        match self {
            Shape::Text(t) => into.push(t),
            Shape::List(items) => items.iter().for_each(|s| s.collect(into)),
            Shape::Table(pairs) => pairs.iter().for_each(|(_, s)| s.collect(into)),
        }
    }
}

/// The Bot API everyone uses; tests point `api_url` at a local server.
pub const TELEGRAM_API: &str = "https://api.telegram.org";

/// Whether `token` has a bot token's shape: the bot's number, a colon and
/// the secret part, as @BotFather gives it (`123456:AAE…`).
pub fn bot_token_shape(token: &str) -> bool {
    match token.split_once(':') {
        Some((id, secret)) => {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
                && secret.len() >= 20
                && secret
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }
        None => false,
    }
}

/// Whether `chat` is a chat's number or a channel's `@name`.
pub fn chat_id_shape(chat: &str) -> bool {
    let number = chat.strip_prefix('-').unwrap_or(chat);
    (!number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
        || chat
            .strip_prefix('@')
            .is_some_and(|name| name.len() >= 5 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

/// A Bitrix24 incoming webhook's address, checked: `http(s)://portal/rest/USER/CODE/`
/// (the trailing slash added when missing).
pub fn bitrix_webhook(text: &str) -> Result<url::Url, String> {
    let shape = "give the incoming webhook's address, https://PORTAL/rest/USER/CODE/";
    let mut url = url::Url::parse(text).map_err(|_| shape.to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || url.query().is_some() {
        return Err(shape.into());
    }
    let segments: Vec<&str> = url.path().trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["rest", user, code] if user.bytes().all(|b| b.is_ascii_digit()) && !code.is_empty() => {}
        _ => return Err(shape.into()),
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// Whether `method` is a REST method's name (`crm.lead.add`).
pub fn rest_method_shape(method: &str) -> bool {
    !method.is_empty()
        && method.contains('.')
        && method
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
}

/// What the running config's destination kinds ask of it: tokens that
/// lapse, Metrica's actions, the OAuth2 integration of a URL.
impl super::Config {
    /// The amocrm actions whose long-lived token lapses within
    /// [`TOKEN_WARNING_MS`] of `now_ms`, or has: processing, action
    /// and when.
    pub fn lapsing_tokens(&self, now_ms: i64) -> Vec<(&str, &str, i64)> {
        self.processings
            .iter()
            .flat_map(|p| p.actions.iter().map(move |a| (p, a)))
            .filter_map(|(p, a)| match &a.kind {
                Kind::AmoCrm(amo) => amo
                    .token_expires
                    .filter(|at| *at - now_ms <= TOKEN_WARNING_MS)
                    .map(|at| (p.name.as_str(), a.name.as_str(), at)),
                _ => None,
            })
            .collect()
    }

    /// The metrica actions, each with its settings.
    pub fn metrica_actions(&self) -> impl Iterator<Item = (&super::Action, &Metrica)> {
        self.processings
            .iter()
            .flat_map(|p| &p.actions)
            .filter_map(|a| a.kind.metrica().map(|m| (a, m)))
    }

    /// The metrica action whose rows wait under `key` (`processing/action`).
    pub fn metrica(&self, key: &str) -> Option<(&super::Action, &Metrica)> {
        self.metrica_actions().find(|(_, m)| m.key == key)
    }

    /// The OAuth2 integration whose API `url` is on (an amocrm action
    /// signing in with OAuth2 on that account), if any.
    pub fn oauth_for(&self, url: &str) -> Option<&OAuth> {
        self.processings
            .iter()
            .flat_map(|p| &p.actions)
            .filter_map(|a| a.kind.oauth())
            .find(|oauth| {
                url.strip_prefix(oauth.base.as_str())
                    .is_some_and(|path| path.starts_with('/'))
            })
    }

    /// [`Config::lapsing_tokens`], one line each, for `check` and the log.
    pub fn token_warnings(&self, now_ms: i64) -> Vec<String> {
        self.lapsing_tokens(now_ms)
            .into_iter()
            .map(|(processing, action, at)| {
                let when = crate::clock::rfc3339(at);
                if at <= now_ms {
                    format!("processing `{processing}`: action `{action}`: its access_token expired at {when}; amoCRM refuses it: make a new long-lived token")
                } else {
                    format!("processing `{processing}`: action `{action}`: its access_token expires at {when}; make a new long-lived token before then")
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long-lived token's expiry is read from its payload.
    #[test]
    fn a_jwts_expiry_is_read() {
        use base64::Engine;
        let part = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let token = format!(
            "{}.{}.sig",
            part(r#"{"alg":"RS256"}"#),
            part(r#"{"exp":1893456000,"jti":"x"}"#)
        );
        assert_eq!(jwt_expiry(&token), Some(1_893_456_000));
        assert_eq!(jwt_expiry("not-a-jwt"), None);
        assert_eq!(jwt_expiry(&format!("a.{}.b", part("{}"))), None);
        assert!(subdomain_shape("salon-1") && !subdomain_shape("Salon.ru") && !subdomain_shape(""));
    }

    #[test]
    fn shapes_of_ids_and_addresses() {
        assert!(bot_token_shape("123456:AAEhBP0av28e-Bx_yZZZZZZZ"));
        for bad in [
            "123456",
            "abc:AAEhBP0av28e-Bx_yZZZZZZZ",
            "1:short",
            "1:AAEhBP0av28e/Bx_yZZZZZZZ",
        ] {
            assert!(!bot_token_shape(bad), "{bad}");
        }
        for good in ["-1001234567890", "42", "@salon_news"] {
            assert!(chat_id_shape(good), "{good}");
        }
        for bad in ["", "-", "@ab", "chat", "12a"] {
            assert!(!chat_id_shape(bad), "{bad}");
        }
        assert_eq!(
            bitrix_webhook("https://salon.bitrix24.ru/rest/1/abc123")
                .unwrap()
                .as_str(),
            "https://salon.bitrix24.ru/rest/1/abc123/"
        );
        for bad in [
            "https://salon.bitrix24.ru/",
            "https://salon.bitrix24.ru/rest/1/",
            "https://salon.bitrix24.ru/rest/x/abc/",
            "ftp://salon.bitrix24.ru/rest/1/abc/",
            "https://salon.bitrix24.ru/rest/1/abc/crm.lead.add",
        ] {
            assert!(bitrix_webhook(bad).is_err(), "{bad}");
        }
        assert!(rest_method_shape("crm.lead.add") && rest_method_shape("crm.lead.update"));
        assert!(!rest_method_shape("crm") && !rest_method_shape("crm.lead.add?x=1"));
    }
}
