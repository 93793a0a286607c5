//! A local fake of Yandex Metrica's upload API, answering as its pages say
//! (yandex.com/dev/metrika: management/openapi/offline_conversions
//! `upload_1`, `findAll_1`, `findById_1`; schema/uploadSimpleOrders and
//! practice/crm/simple-orders-data; intro/quotas):
//!
//! - `POST …/offline_conversions/upload?comment=…`: a multipart `file`,
//!   CSV with `ClientId`/`Yclid`/`UserId`, `Target`, `DateTime` (Unix
//!   seconds); `{"uploading": {"id", "status": "PREPARED", "comment", …}}`.
//! - `GET …/offline_conversions/uploadings` lists them with their comments;
//!   `GET …/offline_conversions/uploading/{id}` gives one, its state moving
//!   on one step per read: PREPARED, UPLOADED, EXPORTED, MATCHED, then
//!   PROCESSED (or LINKAGE_FAILURE when none of its visitors is known),
//!   with `linked_quantity`, `user_not_found_quantity`,
//!   `goal_not_found_quantity`.
//! - `POST /cdp/api/v1/counter/{id}/data/simple_orders?merge_mode=SAVE`:
//!   a multipart CSV with `id`, `create_date_time` (`YYYY-MM-DD HH:MM:SS`)
//!   and phones as digits with the country code; orders kept by `id`, so
//!   an order sent twice is one order.
//! - Refusals: 403 for a wrong token, 400 for a file it cannot read (a
//!   column missing, a phone or time in the wrong shape), and on demand 503
//!   `backend_error`, 429 (quota), or an answer that comes too late.
//!   More than 3 requests at once are counted: the quota says 3.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::platforms::reply;
use super::{read_request, serve, Received};

/// What the fake does with the next upload, before its own rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Upload {
    /// 503 `backend_error`.
    Backend,
    /// 429: a quota is spent.
    Quota,
    /// Takes the file, then answers only after this long (longer than the
    /// relay waits: the answer is lost, the upload is not).
    Late(Duration),
    /// Takes the file and never answers while the test holds it (the
    /// relay is killed meanwhile).
    Hang,
    /// Drops the file, and answers only after this long (the relay has
    /// stopped waiting): nothing taken, and no answer to say so.
    Lost(Duration),
}

/// An upload Metrica took.
#[derive(Debug, Clone)]
pub struct Taken {
    pub id: i64,
    pub comment: Option<String>,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Reads of its state so far.
    pub reads: usize,
}

#[derive(Default)]
struct State {
    token: String,
    next: VecDeque<Upload>,
    uploads: Vec<Taken>,
    /// Orders by id (the CDP route).
    orders: BTreeMap<String, Vec<String>>,
    /// Every request: method and path.
    requests: Vec<(String, String)>,
    /// Answers refused with their status.
    refused: Vec<u16>,
    /// Visitors (ClientId, phone) Metrica knows.
    known: Vec<String>,
}

/// A fake Metrica API for one token.
pub struct Metrica {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    most_at_once: Arc<AtomicUsize>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

const STATES: &[&str] = &["PREPARED", "UPLOADED", "EXPORTED", "MATCHED"];

impl Metrica {
    /// A fake for `token`, knowing the visitors `known`.
    pub fn start(token: &str, known: &[&str]) -> Metrica {
        let state = Arc::new(Mutex::new(State {
            token: token.to_string(),
            known: known.iter().map(|k| k.to_string()).collect(),
            ..State::default()
        }));
        let at_once = Arc::new(AtomicUsize::new(0));
        let most_at_once = Arc::new(AtomicUsize::new(0));
        let (shared, now, most) = (Arc::clone(&state), Arc::clone(&at_once), Arc::clone(&most_at_once));
        let (addr, stop) = serve(0, move |request| {
            let (state, now, most) = (Arc::clone(&shared), Arc::clone(&now), Arc::clone(&most));
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                let received = read_request(request).await;
                let (wait, status, body) = answer(&mut state.lock().unwrap(), &received);
                match wait {
                    Some(Upload::Late(d) | Upload::Lost(d)) => tokio::time::sleep(d).await,
                    Some(Upload::Hang) => tokio::time::sleep(Duration::from_secs(3600)).await,
                    _ => {}
                }
                now.fetch_sub(1, Ordering::SeqCst);
                reply(status, body)
            }
        });
        Metrica {
            addr,
            state,
            most_at_once,
            _stop: stop,
        }
    }

    /// The `api_url` that reaches this fake.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the next uploads meet, in order.
    pub fn next_uploads(&self, what: &[Upload]) {
        self.state.lock().unwrap().next.extend(what.iter().copied());
    }

    /// Uploads taken so far.
    pub fn uploads(&self) -> Vec<Taken> {
        self.state.lock().unwrap().uploads.clone()
    }

    /// Orders kept (the CDP route), by id.
    pub fn orders(&self) -> BTreeMap<String, Vec<String>> {
        self.state.lock().unwrap().orders.clone()
    }

    /// Every request: method and path.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Statuses of the answers that refused something.
    pub fn refused(&self) -> Vec<u16> {
        self.state.lock().unwrap().refused.clone()
    }

    /// Most requests it was answering at once.
    pub fn most_at_once(&self) -> usize {
        self.most_at_once.load(Ordering::SeqCst)
    }
}

fn error(status: u16, kind: &str, message: &str) -> Value {
    json!({"errors": [{"error_type": kind, "message": message}], "code": status, "message": message})
}

fn answer(state: &mut State, request: &Received) -> (Option<Upload>, u16, Value) {
    let path = request.target.split('?').next().unwrap_or("").to_string();
    state.requests.push((request.method.clone(), path.clone()));
    let (wait, status, body) = judge(state, request, &path);
    if !(200..300).contains(&status) {
        state.refused.push(status);
    }
    (wait, status, body)
}

fn judge(state: &mut State, request: &Received, path: &str) -> (Option<Upload>, u16, Value) {
    if request.header("authorization") != Some(&format!("OAuth {}", state.token)) {
        return (None, 403, error(403, "invalid_token", "Invalid oauth_token"));
    }
    let uploading = |u: &Taken, state: &str, counts: Option<(usize, usize)>| {
        let mut v = json!({
            "id": u.id, "create_time": "2026-12-03T10:00:00Z", "source_quantity": u.rows.len(),
            "line_quantity": u.rows.len(), "comment": u.comment, "type": "BASIC", "status": state,
        });
        if let Some((linked, not_found)) = counts {
            v["linked_quantity"] = json!(linked);
            v["user_not_found_quantity"] = json!(not_found);
            v["goal_not_found_quantity"] = json!(0);
        }
        v
    };
    if request.method == "GET" && path.ends_with("/offline_conversions/uploadings") {
        let list: Vec<Value> = state.uploads.iter().map(|u| uploading(u, "PREPARED", None)).collect();
        return (None, 200, json!({ "uploadings": list }));
    }
    if request.method == "GET" {
        if let Some(id) = path
            .rsplit_once("/offline_conversions/uploading/")
            .and_then(|(_, id)| id.parse::<i64>().ok())
        {
            let known = state.known.clone();
            let Some(u) = state.uploads.iter_mut().find(|u| u.id == id) else {
                return (None, 404, error(404, "not_found", "Upload not found"));
            };
            u.reads += 1;
            if u.reads <= STATES.len() {
                return (
                    None,
                    200,
                    json!({ "uploading": uploading(u, STATES[u.reads - 1], None) }),
                );
            }
            let who = u
                .header
                .iter()
                .position(|c| ["ClientId", "Yclid", "UserId"].contains(&c.as_str()));
            let linked = u
                .rows
                .iter()
                .filter(|r| who.is_some_and(|i| known.contains(&r[i])))
                .count();
            let end = if linked == 0 { "LINKAGE_FAILURE" } else { "PROCESSED" };
            let counts = Some((linked, u.rows.len() - linked));
            return (None, 200, json!({ "uploading": uploading(u, end, counts) }));
        }
        return (None, 404, error(404, "not_found", "Not found"));
    }
    let conversions = path.ends_with("/offline_conversions/upload");
    let orders = path.ends_with("/data/simple_orders");
    if request.method != "POST" || !(conversions || orders) {
        return (None, 404, error(404, "not_found", "Not found"));
    }
    let next = state.next.pop_front();
    match next {
        Some(Upload::Lost(_)) => return (next, 503, error(503, "backend_error", "Internal error")),
        Some(Upload::Backend) => return (None, 503, error(503, "backend_error", "Internal error")),
        Some(Upload::Quota) => return (None, 429, error(429, "quota_requests_by_uid", "Quota exceeded")),
        _ => {}
    }
    let Some(file) = multipart_file(request) else {
        return (None, 400, error(400, "invalid_parameter", "file is missing"));
    };
    let mut reader = csv::Reader::from_reader(file.as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(String::from).collect(),
        Err(_) => return (None, 400, error(400, "invalid_parameter", "not CSV")),
    };
    let rows: Vec<Vec<String>> = reader
        .records()
        .filter_map(Result::ok)
        .map(|r| r.iter().map(String::from).collect())
        .collect();
    if let Err(why) = check(&header, &rows, conversions) {
        return (None, 400, error(400, "invalid_parameter", &why));
    }
    let id = 500 + state.uploads.len() as i64 + 1;
    let comment = request.param("comment");
    if orders {
        let at = header.iter().position(|c| c == "id").unwrap_or(0);
        for row in &rows {
            state.orders.insert(row[at].clone(), row.clone());
        }
    }
    let taken = Taken {
        id,
        comment,
        header,
        rows,
        reads: 0,
    };
    let body = if orders {
        json!({"uploading": {"uploading_id": id.to_string(), "api_validation_status": "PASSED"}})
    } else {
        json!({ "uploading": uploading(&taken, "PREPARED", None) })
    };
    state.uploads.push(taken);
    (next, 200, body)
}

/// The `file` part of a multipart body.
fn multipart_file(request: &Received) -> Option<String> {
    let boundary = request
        .header("content-type")?
        .split("boundary=")
        .nth(1)?
        .trim()
        .to_string();
    let body = String::from_utf8(request.body.clone()).ok()?;
    let part = body
        .split(&format!("--{boundary}"))
        .find(|p| p.contains("name=\"file\""))?;
    let (_, content) = part.split_once("\r\n\r\n")?;
    Some(content.strip_suffix("\r\n").unwrap_or(content).to_string())
}

/// What Metrica would not read in a file.
fn check(header: &[String], rows: &[Vec<String>], conversions: bool) -> Result<(), String> {
    let column = |name: &str| header.iter().position(|c| c == name);
    let required: &[&str] = if conversions {
        &["Target", "DateTime"]
    } else {
        &["id", "create_date_time"]
    };
    for name in required {
        if column(name).is_none() {
            return Err(format!("column {name} is missing"));
        }
    }
    for row in rows {
        if let Some(i) = column("phones") {
            for phone in row[i].split(',').filter(|p| !p.is_empty()) {
                if !(phone.len() >= 11 && phone.bytes().all(|b| b.is_ascii_digit())) {
                    return Err(format!("phone {phone} is not digits with the country code"));
                }
            }
        }
        if let Some(i) = column("DateTime") {
            if row[i].parse::<i64>().is_err() {
                return Err(format!("DateTime {} is not a Unix time", row[i]));
            }
        }
        if let Some(i) = column("create_date_time") {
            let t = &row[i];
            if t.len() != 19 || &t[4..5] != "-" || &t[10..11] != " " {
                return Err(format!("create_date_time {t} is not YYYY-MM-DD HH:MM:SS"));
            }
        }
    }
    Ok(())
}
