//! A local fake of an amoCRM account, answering as amoCRM's pages say
//! (amocrm.ru/developers: leads-api's `POST /api/v4/leads/complex` and
//! `GET /api/v4/leads?query=`, errors as problem+json, `validation-errors`
//! on a 400, OAuth2 in oauth/step-by-step), and as third-party clients say
//! where its pages are silent (7 requests a second, code 113).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::{json, Value};

use super::platforms::reply;
use super::{read_request, serve, Received};

/// What the amoCRM fake does with the next call, before its own rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Account {
    /// Makes the lead, then answers only after this long (longer than the
    /// relay waits: the answer is lost, the lead is not).
    Slow(Duration),
    /// 403 with code 113: the account takes calls from listed addresses only.
    AddressNotAllowed,
}

/// A lead amoCRM made: its id, the lead as sent.
#[derive(Debug, Clone)]
pub struct AmoLead {
    pub id: i64,
    pub lead: Value,
    pub at: Instant,
}

/// The account's OAuth2 side (amocrm.ru/developers/content/oauth/step-by-step):
/// an authorization code works once; each refresh spends its refresh token
/// and hands out a new pair; only the newest access token works (stricter
/// than amoCRM needs to be, so a relay using a stale one is caught).
#[derive(Default)]
struct Sign {
    client_id: String,
    secret: String,
    redirect: String,
    codes: Vec<String>,
    lifetime: Duration,
    access: Option<(String, Instant)>,
    refresh: Option<String>,
    issued: u64,
    refreshes: usize,
    /// Refresh tokens presented after they were spent.
    reused: usize,
    /// How long a refresh takes to answer.
    slow: Duration,
}

#[derive(Default)]
struct AccountState {
    token: String,
    sign: Option<Sign>,
    statuses: Vec<i64>,
    leads: Vec<AmoLead>,
    /// Every call: method, path and status.
    calls: Vec<(String, String, u16)>,
    recent: Vec<Instant>,
    /// Requests a second before 429; none: no limit.
    limit: Option<usize>,
    next: Vec<Account>,
}

/// A fake amoCRM account (amocrm.ru/developers: leads-api's
/// `POST /api/v4/leads/complex` and `GET /api/v4/leads?query=`, errors as
/// problem+json, `validation-errors` on a 400; 7 requests a second, as
/// third-party clients say, answered 429 past it; code 113 as third-party
/// integrations report it).
pub struct AmoCrm {
    pub addr: SocketAddr,
    state: Arc<Mutex<AccountState>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl AmoCrm {
    /// An account taking `token`, whose pipelines have `statuses`.
    pub fn start(token: &str, statuses: &[i64]) -> AmoCrm {
        let state = Arc::new(Mutex::new(AccountState {
            token: token.to_string(),
            statuses: statuses.to_vec(),
            limit: Some(7),
            ..AccountState::default()
        }));
        let shared = Arc::clone(&state);
        let (addr, stop) = serve(0, move |request| {
            let state = Arc::clone(&shared);
            async move {
                let received = read_request(request).await;
                let (status, body, delay) = {
                    let mut state = state.lock().unwrap();
                    let (status, body, delay) = account_answer(&mut state, &received);
                    let path = received.target.split('?').next().unwrap_or("").to_string();
                    state.calls.push((received.method.clone(), path, status));
                    (status, body, delay)
                };
                if let Some(delay) = delay {
                    tokio::time::sleep(delay).await;
                }
                if status == 204 {
                    let mut response = hyper::Response::new(Full::new(Bytes::new()));
                    *response.status_mut() = hyper::StatusCode::NO_CONTENT;
                    return Ok(response);
                }
                reply(status, body)
            }
        });
        AmoCrm {
            addr,
            state,
            _stop: stop,
        }
    }

    /// The `api_url` that reaches this fake.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Leads made so far.
    pub fn leads(&self) -> Vec<AmoLead> {
        self.state.lock().unwrap().leads.clone()
    }

    /// Every call: method, path, status.
    pub fn calls(&self) -> Vec<(String, String, u16)> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Gives `what` to the next lead, before the account's own rules.
    pub fn next(&self, what: Account) {
        self.state.lock().unwrap().next.push(what);
    }

    /// An account signing in with OAuth2: `code` is the one authorization
    /// code it will take; access tokens live `lifetime`.
    pub fn start_oauth(client_id: &str, secret: &str, redirect: &str, code: &str, lifetime: Duration) -> AmoCrm {
        let fake = AmoCrm::start("", &[142]);
        fake.state.lock().unwrap().sign = Some(Sign {
            client_id: client_id.into(),
            secret: secret.into(),
            redirect: redirect.into(),
            codes: vec![code.into()],
            lifetime,
            ..Sign::default()
        });
        fake
    }

    /// Makes each refresh take `wait` to answer (the new pair is made at
    /// once): refreshes wanted meanwhile overlap it.
    pub fn slow_refresh(&self, wait: Duration) {
        self.state.lock().unwrap().sign.as_mut().unwrap().slow = wait;
    }

    /// Lifts the 7-a-second limit, for drills that want calls at once.
    pub fn unlimited(&self) {
        self.state.lock().unwrap().limit = None;
    }

    /// Refreshes so far, and refresh tokens presented after being spent.
    pub fn refreshes(&self) -> (usize, usize) {
        let state = self.state.lock().unwrap();
        let sign = state.sign.as_ref().unwrap();
        (sign.refreshes, sign.reused)
    }

    /// Revokes the access token before its time (the next call gets 401).
    pub fn revoke_access(&self) {
        self.state.lock().unwrap().sign.as_mut().unwrap().access = None;
    }

    /// Revokes the refresh token too: only a new authorization helps.
    pub fn revoke_all(&self) {
        let mut state = self.state.lock().unwrap();
        let sign = state.sign.as_mut().unwrap();
        sign.access = None;
        sign.refresh = None;
    }
}

/// `/oauth2/access_token`: a code or a refresh token for a new pair.
fn sign_in(sign: &mut Sign, body: &[u8]) -> (u16, Value) {
    let refused = |hint: &str| {
        (
            400,
            json!({"hint": hint, "title": "Некорректный запрос", "status": 400, "detail": hint}),
        )
    };
    let Ok(asked) = serde_json::from_slice::<Value>(body) else {
        return refused("The request is missing a required parameter");
    };
    if asked["client_id"] != sign.client_id.as_str()
        || asked["client_secret"] != sign.secret.as_str()
        || asked["redirect_uri"] != sign.redirect.as_str()
    {
        return refused("Client authentication failed");
    }
    match asked["grant_type"].as_str() {
        Some("authorization_code") => {
            let code = asked["code"].as_str().unwrap_or("");
            let Some(at) = sign.codes.iter().position(|c| c == code) else {
                return refused("Authorization code has been revoked");
            };
            sign.codes.remove(at);
        }
        Some("refresh_token") => {
            let token = asked["refresh_token"].as_str().unwrap_or("");
            if sign.refresh.as_deref() != Some(token) {
                sign.reused += 1;
                return refused("Token has been revoked");
            }
            sign.refreshes += 1;
        }
        _ => return refused("The authorization grant type is not supported"),
    }
    sign.issued += 1;
    let access = format!("access-{}", sign.issued);
    let refresh = format!("refresh-{}", sign.issued);
    sign.access = Some((access.clone(), Instant::now() + sign.lifetime));
    sign.refresh = Some(refresh.clone());
    (
        200,
        json!({"token_type": "Bearer", "expires_in": sign.lifetime.as_secs(), "access_token": access, "refresh_token": refresh}),
    )
}

fn problem(status: u16, title: &str, detail: &str) -> Value {
    json!({"title": title, "type": format!("https://httpstatus.es/{status}"), "status": status, "detail": detail})
}

fn account_answer(state: &mut AccountState, request: &Received) -> (u16, Value, Option<Duration>) {
    let now = Instant::now();
    if request.target == "/oauth2/access_token" {
        let Some(sign) = state.sign.as_mut() else {
            return (404, problem(404, "Not Found", "Not found"), None);
        };
        let slow = sign.slow;
        let (status, body) = sign_in(sign, &request.body);
        return (status, body, Some(slow));
    }
    state.recent.retain(|at| now - *at < Duration::from_secs(1));
    state.recent.push(now);
    if state.limit.is_some_and(|limit| state.recent.len() > limit) {
        return (429, problem(429, "Too Many Requests", "Too many requests"), None);
    }
    let bearer = request
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    let signed_in = match &state.sign {
        Some(sign) => sign
            .access
            .as_ref()
            .is_some_and(|(token, until)| token == bearer && now < *until),
        None => bearer == state.token,
    };
    if !signed_in {
        return (401, problem(401, "Unauthorized", "Unauthorized"), None);
    }
    let path = request.target.split('?').next().unwrap_or("");
    if request.method == "GET" && path == "/api/v4/leads" {
        let query = url::Url::parse(&format!("http://x{}", request.target))
            .ok()
            .and_then(|u| u.query_pairs().find(|(k, _)| k == "query").map(|(_, v)| v.into_owned()))
            .unwrap_or_default();
        let found: Vec<Value> = state
            .leads
            .iter()
            .filter(|l| l.lead.to_string().contains(&format!("\"{query}\"")))
            .map(|l| {
                let mut lead = l.lead.clone();
                lead["id"] = json!(l.id);
                lead
            })
            .collect();
        if found.is_empty() {
            return (204, Value::Null, None);
        }
        return (200, json!({"_embedded": {"leads": found}}), None);
    }
    if request.method != "POST" || path != "/api/v4/leads/complex" {
        return (404, problem(404, "Not Found", "Not found"), None);
    }
    let mut delay = None;
    if !state.next.is_empty() {
        match state.next.remove(0) {
            Account::AddressNotAllowed => {
                let mut body = problem(403, "Forbidden", "Access denied: IP address is not allowed");
                body["error_code"] = json!(113);
                body["ip"] = json!("127.0.0.1");
                return (403, body, None);
            }
            Account::Slow(wait) => delay = Some(wait),
        }
    }
    let Ok(Value::Array(leads)) = serde_json::from_slice::<Value>(&request.body) else {
        return (
            400,
            problem(400, "Bad Request", "Request body is not a list of leads"),
            None,
        );
    };
    let Some(lead) = leads.first() else {
        return (400, problem(400, "Bad Request", "No leads"), None);
    };
    if let Some(status) = lead["status_id"].as_i64() {
        if !state.statuses.contains(&status) {
            let mut body = problem(400, "Bad Request", "Request validation failed");
            body["validation-errors"] = json!([{"request_id": "0", "errors": [
                {"code": "NotSupportedChoice", "path": "status_id", "detail": "The value you selected is not a valid choice."}
            ]}]);
            return (400, body, None);
        }
    }
    let id = 9000 + state.leads.len() as i64;
    state.leads.push(AmoLead {
        id,
        lead: lead.clone(),
        at: now,
    });
    (
        200,
        json!([{"id": id, "contact_id": id + 500, "company_id": null, "request_id": ["0"], "merged": false}]),
        delay,
    )
}
