//! Local fakes of the platforms destination kinds send to, each answering
//! as its documents say, including every documented way it says no.
//!
//! - Telegram's Bot API (core.telegram.org/bots/api, "Making requests",
//!   `sendMessage`, `ResponseParameters`; core.telegram.org/bots/faq on
//!   limits): `{"ok":true,"result":Message}`; 401 for an unknown token;
//!   400 for an unknown chat, an empty or too long text, HTML it cannot
//!   parse, and a group that became a supergroup (`migrate_to_chat_id`);
//!   403 for a bot that was blocked or removed; 429 with
//!   `parameters.retry_after` for more than one message a second to a chat
//!   or 20 a minute to a group.
//! - Bitrix24's REST through an incoming webhook (apidocs.bitrix24.com,
//!   "Errors", "Limits", crm.lead.add; helpdesk.bitrix24.com/open/15961972):
//!   `{"result":ID,"time":{…}}`; 401 for a wrong webhook code; a leaky
//!   bucket (50, 2 a second) answering 503 `QUERY_LIMIT_EXCEEDED`; 400 for
//!   a lead without `TITLE` (a validation error); and, when told to, 429
//!   `OPERATION_TIME_LIMIT` with `time.operating_reset_at`, `OVERLOAD_LIMIT`,
//!   an `error` on a 200, and 403 `insufficient_scope`.
//! - amoCRM: `support::amocrm`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::{json, Value};

use super::{read_request, serve, Received};

pub(super) type Reply = Result<hyper::Response<Full<Bytes>>, std::convert::Infallible>;

pub(super) fn reply(status: u16, body: Value) -> Reply {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    Ok(response)
}

/// What a Telegram chat does with the next message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Chat {
    /// Takes it.
    Open,
    /// 403: the bot was blocked or removed.
    Blocked,
    /// 400: the group became the supergroup with this id.
    Migrated(i64),
}

/// A message Telegram took.
#[derive(Debug, Clone)]
pub struct Message {
    pub chat: String,
    pub text: String,
    pub parse_mode: Option<String>,
    pub at: Instant,
}

#[derive(Default)]
struct TelegramState {
    token: String,
    chats: HashMap<String, Chat>,
    taken: Vec<Message>,
    /// Every answer: status, and the chat.
    answers: Vec<(u16, String)>,
    last: HashMap<String, Instant>,
    /// The next messages get 429 with this retry_after, however paced.
    flood: Vec<u64>,
}

/// A fake Bot API for one bot.
pub struct Telegram {
    pub addr: SocketAddr,
    state: Arc<Mutex<TelegramState>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Two messages to one chat closer than this are flooding. Telegram says
/// "about one a second"; the fake gives 10 % for the loopback's jitter.
const CHAT_GAP: Duration = Duration::from_millis(900);

impl Telegram {
    /// A fake for the bot `token`, knowing `chats`.
    pub fn start(token: &str, chats: &[(&str, Chat)]) -> Telegram {
        let state = Arc::new(Mutex::new(TelegramState {
            token: token.to_string(),
            chats: chats.iter().map(|(id, c)| (id.to_string(), *c)).collect(),
            ..TelegramState::default()
        }));
        let shared = Arc::clone(&state);
        let (addr, stop) = serve(0, move |request| {
            let state = Arc::clone(&shared);
            async move {
                let received = read_request(request).await;
                let (status, body) = telegram_answer(&mut state.lock().unwrap(), &received);
                reply(status, body)
            }
        });
        Telegram {
            addr,
            state,
            _stop: stop,
        }
    }

    /// The `api_url` that reaches this fake.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Messages taken so far.
    pub fn messages(&self) -> Vec<Message> {
        self.state.lock().unwrap().taken.clone()
    }

    /// Every answer given: status and chat.
    pub fn answers(&self) -> Vec<(u16, String)> {
        self.state.lock().unwrap().answers.clone()
    }

    /// Makes the next message flood-limited: 429, retry after `seconds`.
    pub fn flood_next(&self, seconds: u64) {
        self.state.lock().unwrap().flood.push(seconds);
    }

    /// Sets what `chat` does from now on.
    pub fn set_chat(&self, chat: &str, mode: Chat) {
        self.state.lock().unwrap().chats.insert(chat.to_string(), mode);
    }
}

fn refused(status: u16, description: &str) -> (u16, Value) {
    (
        status,
        json!({"ok": false, "error_code": status, "description": description}),
    )
}

fn telegram_answer(state: &mut TelegramState, request: &Received) -> (u16, Value) {
    let (status, body, chat) = telegram_judge(state, request);
    state.answers.push((status, chat));
    (status, body)
}

fn telegram_judge(state: &mut TelegramState, request: &Received) -> (u16, Value, String) {
    let path = request.target.split('?').next().unwrap_or("");
    let Some(rest) = path.strip_prefix("/bot") else {
        let (s, b) = refused(404, "Not Found");
        return (s, b, String::new());
    };
    let (token, method) = rest.split_once('/').unwrap_or((rest, ""));
    if token != state.token {
        let (s, b) = refused(401, "Unauthorized");
        return (s, b, String::new());
    }
    if method != "sendMessage" {
        let (s, b) = refused(404, "Not Found: method not found");
        return (s, b, String::new());
    }
    let Ok(message) = serde_json::from_slice::<Value>(&request.body) else {
        let (s, b) = refused(400, "Bad Request: message text is empty");
        return (s, b, String::new());
    };
    let chat = match &message["chat_id"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let text = message["text"].as_str().unwrap_or("").to_string();
    let parse_mode = message["parse_mode"].as_str().map(String::from);
    let with = |(s, b): (u16, Value)| (s, b, chat.clone());
    let Some(mode) = state.chats.get(&chat).copied() else {
        return with(refused(400, "Bad Request: chat not found"));
    };
    match mode {
        Chat::Blocked => return with(refused(403, "Forbidden: bot was blocked by the user")),
        Chat::Migrated(to) => {
            return with((
                400,
                json!({"ok": false, "error_code": 400,
                       "description": "Bad Request: group chat was upgraded to a supergroup chat",
                       "parameters": {"migrate_to_chat_id": to}}),
            ))
        }
        Chat::Open => {}
    }
    if text.is_empty() {
        return with(refused(400, "Bad Request: message text is empty"));
    }
    if text.encode_utf16().count() > 4096 {
        return with(refused(400, "Bad Request: message is too long"));
    }
    if parse_mode.as_deref() == Some("HTML") && !balanced(&text) {
        return with(refused(
            400,
            "Bad Request: can't parse entities: can't find end tag corresponding to start tag",
        ));
    }
    let now = Instant::now();
    let flooded = !state.flood.is_empty() || state.last.get(&chat).is_some_and(|at| now - *at < CHAT_GAP);
    if flooded {
        let wait = if state.flood.is_empty() {
            1
        } else {
            state.flood.remove(0)
        };
        return with((
            429,
            json!({"ok": false, "error_code": 429,
                   "description": format!("Too Many Requests: retry after {wait}"),
                   "parameters": {"retry_after": wait}}),
        ));
    }
    state.last.insert(chat.clone(), now);
    state.taken.push(Message {
        chat: chat.clone(),
        text: text.clone(),
        parse_mode,
        at: now,
    });
    let id = state.taken.len();
    with((
        200,
        json!({"ok": true, "result": {"message_id": id, "chat": {"id": chat}, "date": 0, "text": text}}),
    ))
}

/// Whether every HTML tag opened is closed, in order, and no entity or
/// tag is cut: what Telegram's parser insists on.
fn balanced(html: &str) -> bool {
    let mut open: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else {
            return false;
        };
        let tag = &rest[start + 1..start + len];
        rest = &rest[start + len + 1..];
        let name = |t: &str| t.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
        match tag.strip_prefix('/') {
            Some(closed) => {
                if open.pop() != Some(name(closed)) {
                    return false;
                }
            }
            None => open.push(name(tag)),
        }
    }
    open.is_empty()
}

/// What the Bitrix24 fake answers besides its own rules.
#[derive(Debug, Clone, PartialEq)]
pub enum Portal {
    /// 429 `OPERATION_TIME_LIMIT`, the method free again at this Unix time.
    Operating(i64),
    /// `OVERLOAD_LIMIT`: the webhook is blocked for overload.
    Overload,
    /// A 200 with an `error` and no `result`.
    ErrorOn200,
    /// 403 `insufficient_scope`.
    NoScope,
}

/// A lead the portal added: its id and fields.
#[derive(Debug, Clone)]
pub struct Lead {
    pub id: i64,
    pub method: String,
    pub fields: Value,
    pub at: Instant,
}

#[derive(Default)]
struct PortalState {
    path: String,
    leads: Vec<Lead>,
    /// `crm.lead.update` calls taken: the lead's id and the fields.
    updates: Vec<Lead>,
    /// The leaky bucket's level and when it was last drained.
    level: f64,
    drained: Option<Instant>,
    answers: Vec<u16>,
    /// Answers to give next, before the portal's own rules.
    next: Vec<Portal>,
    /// Fields whose value the portal rejects (a field it validates).
    invalid: Option<(String, String)>,
}

/// A fake Bitrix24 portal with one incoming webhook.
pub struct Bitrix24 {
    pub addr: SocketAddr,
    state: Arc<Mutex<PortalState>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// The documented bucket: 50, draining 2 a second.
const BUCKET: f64 = 50.0;
const DRAIN_PER_SECOND: f64 = 2.0;

impl Bitrix24 {
    /// A portal whose incoming webhook is `/rest/<user>/<code>/`.
    pub fn start(user: u32, code: &str) -> Bitrix24 {
        let state = Arc::new(Mutex::new(PortalState {
            path: format!("/rest/{user}/{code}/"),
            ..PortalState::default()
        }));
        let shared = Arc::clone(&state);
        let (addr, stop) = serve(0, move |request| {
            let state = Arc::clone(&shared);
            async move {
                let received = read_request(request).await;
                let mut state = state.lock().unwrap();
                let (status, body) = portal_answer(&mut state, &received);
                state.answers.push(status);
                reply(status, body)
            }
        });
        Bitrix24 {
            addr,
            state,
            _stop: stop,
        }
    }

    /// The webhook's address with `code`: the right one or not.
    pub fn webhook_url(&self, user: u32, code: &str) -> String {
        format!("http://{}/rest/{user}/{code}/", self.addr)
    }

    /// Leads added so far.
    pub fn leads(&self) -> Vec<Lead> {
        self.state.lock().unwrap().leads.clone()
    }

    /// Every answer's status.
    pub fn answers(&self) -> Vec<u16> {
        self.state.lock().unwrap().answers.clone()
    }

    /// `crm.lead.update` calls taken so far.
    pub fn updates(&self) -> Vec<Lead> {
        self.state.lock().unwrap().updates.clone()
    }

    /// Gives `answer` to the next call, before the portal's own rules.
    pub fn next(&self, answer: Portal) {
        self.state.lock().unwrap().next.push(answer);
    }

    /// Rejects leads whose `field` holds `value`, as a validation error.
    pub fn reject(&self, field: &str, value: &str) {
        self.state.lock().unwrap().invalid = Some((field.to_string(), value.to_string()));
    }
}

fn bitrix_error(status: u16, error: &str, description: &str) -> (u16, Value) {
    (status, json!({"error": error, "error_description": description}))
}

fn portal_answer(state: &mut PortalState, request: &Received) -> (u16, Value) {
    let path = request.target.split('?').next().unwrap_or("");
    let Some(method) = path.strip_prefix(state.path.as_str()) else {
        return bitrix_error(401, "INVALID_CREDENTIALS", "Invalid request credentials");
    };
    let method = method.trim_end_matches(".json").to_string();
    // The bucket counts every request, refused or not.
    let now = Instant::now();
    if let Some(then) = state.drained {
        state.level = (state.level - (now - then).as_secs_f64() * DRAIN_PER_SECOND).max(0.0);
    }
    state.drained = Some(now);
    if state.level + 1.0 > BUCKET {
        return bitrix_error(503, "QUERY_LIMIT_EXCEEDED", "Too many requests");
    }
    state.level += 1.0;
    if !state.next.is_empty() {
        return match state.next.remove(0) {
            Portal::Operating(at) => (
                429,
                json!({"error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked due to operation time limit.",
                       "time": {"operating_reset_at": at}}),
            ),
            Portal::Overload => bitrix_error(403, "OVERLOAD_LIMIT", "REST API is blocked due to overload."),
            Portal::ErrorOn200 => bitrix_error(200, "INTERNAL_SERVER_ERROR", "Internal server error"),
            Portal::NoScope => bitrix_error(
                403,
                "insufficient_scope",
                "The request requires higher privileges than provided by the webhook token",
            ),
        };
    }
    let (fields, id) = match request.header("content-type") {
        Some(ct) if ct.contains("json") => match serde_json::from_slice::<Value>(&request.body) {
            Ok(call) => (Some(call["fields"].clone()), call.get("id").cloned()),
            Err(_) => (None, None),
        },
        _ => {
            let id = url::form_urlencoded::parse(&request.body)
                .find(|(k, _)| k == "id")
                .map(|(_, v)| Value::String(v.into_owned()));
            (Some(form_fields(&request.body)), id)
        }
    };
    let Some(fields) = fields.filter(Value::is_object) else {
        return bitrix_error(400, "INVALID_ARG_VALUE", "Parameter 'fields' is required");
    };
    if method == "crm.lead.update" {
        let id = id.and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()));
        let Some(id) = id.filter(|id| state.leads.iter().any(|l| l.id == *id)) else {
            return bitrix_error(400, "", "Not found");
        };
        state.updates.push(Lead {
            id,
            method,
            fields,
            at: now,
        });
        return (200, json!({"result": true, "time": {"start": 0, "finish": 0}}));
    }
    if fields["TITLE"].as_str().is_none_or(str::is_empty) {
        return bitrix_error(400, "", "Не заполнено обязательное поле \"Название лида\"");
    }
    if let Some((field, value)) = &state.invalid {
        if fields[field.as_str()].as_str() == Some(value.as_str()) {
            return bitrix_error(400, "", &format!("Неверное значение поля \"{field}\""));
        }
    }
    let id = state.leads.len() as i64 + 101;
    state.leads.push(Lead {
        id,
        method,
        fields,
        at: now,
    });
    (
        200,
        json!({"result": id, "time": {"start": 0, "finish": 0, "operating": 0.1}}),
    )
}

/// `fields[A]=x&fields[B][0][C]=y` as the JSON object PHP would make of it.
fn form_fields(body: &[u8]) -> Value {
    let mut root = json!({});
    for (key, value) in url::form_urlencoded::parse(body) {
        let Some(rest) = key.strip_prefix("fields") else {
            continue;
        };
        let steps: Vec<&str> = rest.split('[').filter_map(|s| s.strip_suffix(']')).collect();
        let mut at = &mut root;
        for (i, step) in steps.iter().enumerate() {
            let last = i + 1 == steps.len();
            let next = match step.parse::<usize>() {
                Ok(n) => {
                    if !at.is_array() {
                        *at = json!([]);
                    }
                    let list = at.as_array_mut().unwrap();
                    while list.len() <= n {
                        list.push(json!({}));
                    }
                    &mut list[n]
                }
                Err(_) => {
                    if !at.is_object() {
                        *at = json!({});
                    }
                    at.as_object_mut().unwrap().entry(step.to_string()).or_insert(json!({}))
                }
            };
            if last {
                *next = Value::String(value.to_string());
            }
            at = next;
        }
    }
    root
}
