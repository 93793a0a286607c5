//! Each destination kind's keys into an action's request and rules: `http`
//! as its templates say, `telegram` and `bitrix24` as the platforms'
//! documents say (sources in `config/kinds.rs` and `model/platform.rs`;
//! `amocrm` in `amocrm.rs`), and the checks across kinds: which keys belong
//! to which, and that every `recall` names an action that remembers.

use serde_json::json;

use super::*;
use crate::config::kinds::{self as k, Bitrix24, Kind, Shape, Telegram};
use crate::model::platform::About;
use crate::model::response::{Accept, NoteRule, ResponseRules, RetryOn};

/// What an action's kind makes of its keys: the request's fixed parts
/// and the rules its answers are judged by.
pub(super) struct Built {
    pub(super) method: Method,
    pub(super) url: Template,
    pub(super) query: Vec<(String, Template)>,
    pub(super) headers: Vec<(String, Template)>,
    pub(super) body: Option<Template>,
    pub(super) content_type: Option<String>,
    pub(super) rules: ResponseRules,
    pub(super) kind: Kind,
}

/// The keys only some kinds have, and which.
const OWNED: &[(&str, &[&str])] = &[
    ("url", &["http"]),
    ("query", &["http"]),
    ("headers", &["http"]),
    ("body", &["http"]),
    ("content_type", &["http"]),
    ("expect_body", &["http"]),
    ("accept", &["http"]),
    ("retry_on", &["http"]),
    ("method", &["http", "bitrix24"]),
    ("bot_token", &["telegram"]),
    ("chat_id", &["telegram"]),
    ("text", &["telegram"]),
    ("parse_mode", &["telegram"]),
    ("api_url", &["telegram", "amocrm", "metrica"]),
    ("webhook_url", &["bitrix24"]),
    ("fields", &["bitrix24"]),
    ("format", &["bitrix24"]),
    ("subdomain", &["amocrm"]),
    ("access_token", &["amocrm"]),
    ("contact", &["amocrm"]),
    ("lead", &["amocrm"]),
    ("lead_fields", &["amocrm"]),
    ("contact_fields", &["amocrm"]),
    ("tags", &["amocrm"]),
    ("key_field", &["amocrm"]),
    ("client_id", &["amocrm"]),
    ("client_secret", &["amocrm"]),
    ("redirect_uri", &["amocrm"]),
    ("remember", &["telegram", "bitrix24", "amocrm"]),
    ("params", &["bitrix24"]),
    ("counter", &["metrica"]),
    ("token", &["metrica"]),
    ("route", &["metrica"]),
    ("time_zone", &["metrica"]),
    ("batch_every", &["metrica"]),
    ("batch_max", &["metrica"]),
    ("poll_every", &["metrica"]),
    ("window", &["metrica"]),
    ("row", &["metrica"]),
    ("on_missing", &["http", "telegram", "bitrix24", "amocrm"]),
];

/// An `api_url`: an http(s) base with a host and no query, without its
/// trailing slash (a local server's, such as the tests' fakes).
pub(super) fn api_base(api: &str) -> Result<String, String> {
    match Url::parse(api) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() && u.query().is_none() => {
            Ok(api.trim_end_matches('/').to_string())
        }
        _ => Err(format!(
            "api_url: `{}` is not an http(s) URL",
            redact::url_like_text(api)
        )),
    }
}

/// Refuses a key another kind owns, naming the key and the kind it belongs to.
pub(super) fn only_for(kind: &str, raw: &RawAction) -> Result<(), String> {
    let set = |key: &str| match key {
        "url" => raw.url.is_some(),
        "query" => !raw.query.is_empty(),
        "headers" => !raw.headers.is_empty(),
        "body" => raw.body.is_some(),
        "content_type" => raw.content_type.is_some(),
        "expect_body" => raw.expect_body.is_some(),
        "accept" => raw.accept.is_some(),
        "retry_on" => raw.retry_on.is_some(),
        "method" => raw.method.is_some(),
        "bot_token" => raw.bot_token.is_some(),
        "chat_id" => raw.chat_id.is_some(),
        "text" => raw.text.is_some(),
        "parse_mode" => raw.parse_mode.is_some(),
        "api_url" => raw.api_url.is_some(),
        "webhook_url" => raw.webhook_url.is_some(),
        "fields" => raw.fields.is_some(),
        "format" => raw.format.is_some(),
        "subdomain" => raw.subdomain.is_some(),
        "access_token" => raw.access_token.is_some(),
        "contact" => raw.contact.is_some(),
        "lead" => raw.lead.is_some(),
        "lead_fields" => raw.lead_fields.is_some(),
        "contact_fields" => raw.contact_fields.is_some(),
        "tags" => raw.tags.is_some(),
        "key_field" => raw.key_field.is_some(),
        "client_id" => raw.client_id.is_some(),
        "client_secret" => raw.client_secret.is_some(),
        "redirect_uri" => raw.redirect_uri.is_some(),
        "remember" => raw.remember.is_some(),
        "params" => raw.params.is_some(),
        "counter" => raw.counter.is_some(),
        "token" => raw.token.is_some(),
        "route" => raw.route.is_some(),
        "time_zone" => raw.time_zone.is_some(),
        "batch_every" => raw.batch_every.is_some(),
        "batch_max" => raw.batch_max.is_some(),
        "poll_every" => raw.poll_every.is_some(),
        "window" => raw.window.is_some(),
        "row" => raw.row.is_some(),
        "on_missing" => raw.on_missing.is_some(),
        _ => false,
    };
    for (key, kinds) in OWNED {
        if set(key) && !kinds.contains(&kind) {
            return Err(match kind {
                "http" => format!("{key}: only a {} action has it; set kind", kinds.join(" or ")),
                _ => format!(
                    "{key}: a {kind} action builds its own request and knows its answers; remove {key} (it belongs to kind = \"{}\")",
                    kinds[0]
                ),
            });
        }
    }
    Ok(())
}

/// `kind = "telegram"`: `sendMessage` to `chat_id` with the rendered `text`.
pub(super) fn telegram(raw: &mut RawAction) -> Result<Built, String> {
    only_for("telegram", raw)?;
    let token = raw
        .bot_token
        .take()
        .ok_or("bot_token: missing (the token @BotFather gave)")?;
    if !k::bot_token_shape(token.expose()) {
        return Err(
            "bot_token: not a bot token (the bot's number, a colon, then the secret part, as @BotFather gives it)"
                .into(),
        );
    }
    let chat_id = raw
        .chat_id
        .take()
        .ok_or("chat_id: missing (the chat's number, or a channel's @name)")?;
    let chat_id = chat_id.trim().to_string();
    if !k::chat_id_shape(&chat_id) {
        return Err(format!(
            "chat_id: `{chat_id}` is not a chat's number (-100… for a group) or a channel's @name"
        ));
    }
    let text = raw.text.take().ok_or("text: missing (the message's template)")?;
    let text = parse_template("text", &text, &text)?;
    let parse_mode = match raw.parse_mode.take() {
        None => None,
        Some(mode) => match mode.as_str() {
            "HTML" | "MarkdownV2" | "Markdown" => Some(mode),
            other => {
                return Err(format!(
                    "parse_mode: `{other}` is not one of HTML, MarkdownV2, Markdown"
                ))
            }
        },
    };
    let api = raw.api_url.take().unwrap_or_else(|| k::TELEGRAM_API.to_string());
    match Url::parse(&api) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => {}
        _ => {
            return Err(format!(
                "api_url: `{}` is not an http(s) URL",
                redact::url_like_text(&api)
            ))
        }
    }
    let url = format!("{}/bot{}/sendMessage", api.trim_end_matches('/'), token.expose());
    Ok(Built {
        method: Method::Post,
        url: Template::literal(&url),
        query: Vec::new(),
        headers: Vec::new(),
        body: None,
        content_type: None,
        rules: telegram_rules(),
        kind: Kind::Telegram(Telegram {
            chat_id,
            text,
            parse_mode,
        }),
    })
}

/// Telegram's answers (core.telegram.org/bots/api, "Making requests" and
/// `ResponseParameters`): `ok: true` is taken; a 429 waits
/// `parameters.retry_after` seconds; a 400 with `migrate_to_chat_id`, a
/// 403 and a 401 are permanent, each with its own note.
fn telegram_rules() -> ResponseRules {
    let description = Some("description".to_string());
    ResponseRules {
        accept: Accept {
            json: vec![("ok".into(), vec![json!(true)])],
            ..Accept::default()
        },
        retry: RetryOn {
            delay_json: Some("parameters.retry_after".into()),
            ..RetryOn::default()
        },
        notes: vec![
            NoteRule {
                status: Vec::new(),
                when: Some(("parameters.migrate_to_chat_id".into(), Vec::new())),
                json: Some("parameters.migrate_to_chat_id".into()),
                about: About::TelegramMigrated,
            },
            NoteRule {
                status: vec![(403, 403)],
                when: None,
                json: description.clone(),
                about: About::TelegramBlocked,
            },
            NoteRule {
                status: vec![(401, 401)],
                when: None,
                json: description.clone(),
                about: About::TelegramToken,
            },
            NoteRule {
                status: Vec::new(),
                when: Some(("description".into(), Vec::new())),
                json: description,
                about: About::TelegramSaid,
            },
        ],
        keep: Some("result.message_id".into()),
        remember: None,
    }
}

/// `kind = "bitrix24"`: `method` (crm.lead.add) through the incoming
/// webhook, with `fields`.
pub(super) fn bitrix24(raw: &mut RawAction) -> Result<Built, String> {
    only_for("bitrix24", raw)?;
    let webhook = raw
        .webhook_url
        .take()
        .ok_or("webhook_url: missing (the incoming webhook's address, https://PORTAL/rest/USER/CODE/)")?;
    let webhook = k::bitrix_webhook(webhook.expose()).map_err(|e| format!("webhook_url: {e}"))?;
    let method = raw.method.take().unwrap_or_else(|| "crm.lead.add".into());
    if !k::rest_method_shape(&method) {
        return Err(format!("method: `{method}` is not a REST method's name (crm.lead.add)"));
    }
    let form = match raw.format.take().as_deref() {
        None | Some("json") => false,
        Some("form") => true,
        Some(other) => return Err(format!("format: `{other}` is not one of json, form")),
    };
    let fields = raw
        .fields
        .take()
        .ok_or("fields: missing (the table of the lead's fields, TITLE = \"…\")")?
        .into_iter()
        .map(|(name, value)| Ok((name.clone(), Shape::from_toml(&format!("fields.{name}"), value)?)))
        .collect::<Result<Vec<_>, String>>()?;
    let params = raw
        .params
        .take()
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| {
            if name == "fields" {
                return Err("params.fields: the fields go in `fields`".to_string());
            }
            Ok((name.clone(), Shape::from_toml(&format!("params.{name}"), value)?))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Built {
        method: Method::Post,
        url: Template::literal(&format!("{webhook}{method}.json")),
        query: Vec::new(),
        headers: Vec::new(),
        body: None,
        content_type: None,
        rules: bitrix_rules(),
        kind: Kind::Bitrix24(Bitrix24 {
            method,
            fields,
            params,
            form,
        }),
    })
}

/// Bitrix24's answers (apidocs.bitrix24.com "Errors" and "Limits";
/// helpdesk.bitrix24.com/open/15961972 for the operating block's 429): a
/// `result` is taken and kept (the new lead's id); an `error` is not, even
/// on a 200. `QUERY_LIMIT_EXCEEDED` (503), 429 and the other 5xx are
/// retried with backoff, and so are the server's own faults named on a
/// 200 (`INTERNAL_SERVER_ERROR`, `ERROR_UNEXPECTED_ANSWER`), `OVERLOAD_LIMIT`
/// (a 403) and `OPERATION_TIME_LIMIT`: not before `time.operating_reset_at`
/// when the answer names it. Anything else (a validation error, a 400, a
/// dead webhook) is permanent.
fn bitrix_rules() -> ResponseRules {
    let description = Some("error_description".to_string());
    let error = |codes: &[&str]| Some(("error".to_string(), codes.iter().map(|c| json!(c)).collect()));
    let note = |status: Vec<(u16, u16)>, when, about| NoteRule {
        status,
        when,
        json: description.clone(),
        about,
    };
    ResponseRules {
        accept: Accept {
            json_present: vec!["result".into()],
            ..Accept::default()
        },
        retry: RetryOn {
            json: vec![(
                "error".into(),
                [
                    "QUERY_LIMIT_EXCEEDED",
                    "OVERLOAD_LIMIT",
                    "OPERATION_TIME_LIMIT",
                    "INTERNAL_SERVER_ERROR",
                    "ERROR_UNEXPECTED_ANSWER",
                ]
                .iter()
                .map(|c| json!(c))
                .collect(),
            )],
            until_json: Some("time.operating_reset_at".into()),
            ..RetryOn::default()
        },
        notes: vec![
            note(Vec::new(), error(&["OVERLOAD_LIMIT"]), About::BitrixOverload),
            note(
                Vec::new(),
                error(&["INVALID_CREDENTIALS", "NO_AUTH_FOUND", "expired_token", "invalid_token"]),
                About::BitrixWebhook,
            ),
            note(
                Vec::new(),
                error(&["insufficient_scope", "ACCESS_DENIED", "user_access_error"]),
                About::BitrixScope,
            ),
            note(vec![(401, 401)], None, About::BitrixWebhook),
            note(Vec::new(), error(&[]), About::BitrixSaid),
        ],
        keep: Some("result".into()),
        remember: None,
    }
}

/// Every `recall('processing/action')` names an action that remembers
/// what its answers keep (`remember`).
pub(super) fn check_recalls(processings: &[Processing]) -> Result<(), String> {
    let remembering: HashSet<&str> = processings
        .iter()
        .flat_map(|p| &p.actions)
        .filter_map(|a| a.remember.as_ref().map(|r| r.name.as_str()))
        .collect();
    for p in processings {
        for action in &p.actions {
            for name in action.templates().into_iter().flat_map(Template::recalls) {
                if !remembering.contains(name) {
                    return Err(format!(
                        "processing `{}`: action `{}`: recall('{name}'): no such action remembers a result \
                         (set remember = \"{{{{a field}}}}\" on it: a telegram, bitrix24 or amocrm action)",
                        p.name, action.name
                    ));
                }
            }
        }
    }
    Ok(())
}

impl RawAction {
    /// The `http` kind: the request exactly as its templates say.
    pub(super) fn http(&mut self) -> Result<Built, String> {
        let method = match self.method.as_deref() {
            None => Method::Get,
            Some(text) => Method::parse(text).ok_or_else(|| format!("method: `{text}` is not GET or POST"))?,
        };
        // Errors quote the URL with its secrets masked, as logs do: `check`
        // output and the SIGHUP log line are read and pasted by people.
        let Some(url_text) = self.url.take() else {
            return Err("url: missing (or set kind = \"telegram\" or \"bitrix24\")".into());
        };
        let shown_url = redact::url_like_text(&url_text);
        let url = parse_template("url", &url_text, &shown_url)?;
        // Every field rendered as "x" shows whether the fixed parts form a URL.
        let sample = url.render(|_| Some("x"), Escape::Url).text;
        match Url::parse(&sample) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => return Err(format!("url: `{shown_url}` is not an http(s) URL")),
        }
        let query = string_pairs("query", std::mem::take(&mut self.query))?
            .into_iter()
            .map(|(name, source)| {
                let shown = if redact::is_secret_param(&name) {
                    redact::MASK
                } else {
                    &source
                };
                Ok((name.clone(), parse_template(&format!("query.{name}"), &source, shown)?))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let headers = string_pairs("headers", std::mem::take(&mut self.headers))?
            .into_iter()
            .map(|(name, source)| {
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
                {
                    return Err(format!("headers: `{name}` is not a valid header name"));
                }
                let shown = if redact::is_secret_header(&name) {
                    redact::MASK
                } else {
                    &source
                };
                Ok((
                    name.clone(),
                    parse_template(&format!("headers.{name}"), &source, shown)?,
                ))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let body = self
            .body
            .as_deref()
            .map(|source| parse_template("body", source, source))
            .transpose()?;
        if body.is_some() && method == Method::Get {
            return Err("body: only a POST action sends a body".into());
        }
        if self.content_type.is_some() && body.is_none() {
            return Err("content_type: set a body too".into());
        }
        Ok(Built {
            method,
            url,
            query,
            headers,
            body,
            content_type: self.content_type.take(),
            rules: rules::resolve(self.expect_body.take(), self.accept.take(), self.retry_on.take())?,
            kind: Kind::Http,
        })
    }
}
