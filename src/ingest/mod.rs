//! The webhook listener: routing, limits, refusals (answered, counted and
//! logged), and the answer that is sent only after the operation is
//! committed. What the request means is decided in [`crate::process`].

pub mod sender;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Request, StatusCode};
use tokio::net::TcpListener;

use crate::clock::now_ms;
use crate::config::{Config, Processing};
use crate::http::{self, Reply};
use crate::metrics::Metrics;
use crate::model::{OpStatus, RawRequest};
use crate::process::{self as rules, fields};
use crate::store::Writer;

/// A declared body must arrive within this time, else 408 (slow-body attacks).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest request target (path and query) accepted; longer gets 414.
pub const MAX_TARGET_BYTES: usize = 16 * 1024;
/// Answer header carrying the stored operation's id.
pub const OPERATION_HEADER: &str = "X-Hookrelay-Operation";

/// Refused requests are logged at most once per this long; the next line
/// says how many were left out, so a token scan cannot flood the journal.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What every connection shares: the current config and the store writer.
pub struct Shared {
    config: RwLock<Arc<Config>>,
    writer: Writer,
    metrics: Arc<Metrics>,
    refusal_log: Mutex<Throttle>,
    rate: Mutex<sender::PerIpRate>,
}

/// Lets one log line through per interval and counts the ones held back.
/// Fed the clock, so it is tested without waiting.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    /// A throttle letting one line through per `interval`.
    pub fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            last: None,
            held_back: 0,
        }
    }

    /// `Some(n)` if a line may be logged at `now`, `n` being how many were
    /// held back since the last one; `None` (and one more held back) if not.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.held_back += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }
}

impl Shared {
    /// State for the listener.
    pub fn new(config: Arc<Config>, writer: Writer, metrics: Arc<Metrics>) -> Shared {
        metrics.declare_refusals(REFUSAL_REASONS);
        declare_series(&metrics, &config);
        Shared {
            config: RwLock::new(config),
            writer,
            metrics,
            refusal_log: Mutex::new(Throttle::new(REFUSAL_LOG_INTERVAL)),
            rate: Mutex::new(sender::PerIpRate::default()),
        }
    }

    /// Makes `config` the one new requests use.
    pub fn replace(&self, config: Arc<Config>) {
        declare_series(&self.metrics, &config);
        match self.config.write() {
            Ok(mut guard) => *guard = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
    }

    /// The store's writer.
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// The config new requests use.
    pub fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

/// Every label [`Refusal::metric`] gives, created at zero at start.
pub const REFUSAL_REASONS: &[&str] = &[
    "unknown_token",
    "target_too_long",
    "body_timeout",
    "method",
    "too_large",
    "bad_request",
    "storage",
    "sender_not_allowed",
    "rate_limited",
];

/// Creates each processing's and action's metric series at zero.
fn declare_series(metrics: &Metrics, config: &Config) {
    let statuses: Vec<&str> = OpStatus::ALL.iter().map(|s| s.as_str()).collect();
    for processing in &config.processings {
        let actions: Vec<&str> = processing.actions.iter().map(|a| a.name.as_str()).collect();
        metrics.declare(&processing.name, &statuses, &actions);
    }
}

/// Why a request is refused; each maps to one status in [`Refusal::status`].
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("not found")]
    NotFound,
    #[error("request target longer than {MAX_TARGET_BYTES} bytes")]
    TargetTooLong,
    #[error("method {0} not allowed; use {1}")]
    Method(String, String),
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// Stored as `rejected`; the fields were past the configured limits.
    #[error("{0}")]
    FieldsTooLarge(String),
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("the request body did not arrive within {} s", BODY_READ_TIMEOUT.as_secs())]
    BodyTimeout,
    #[error("{0}")]
    Rejected(String),
    #[error("storage unavailable; retry later")]
    Storage,
    #[error("this sender's address may not send to this webhook")]
    SenderNotAllowed,
    #[error("too many requests from your address; retry in {} s", .0.as_secs().max(1))]
    RateLimited(Duration),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::TargetTooLong => StatusCode::URI_TOO_LONG,
            Refusal::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::Method(..) => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::TooLarge(_) | Refusal::FieldsTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BodyRead(_) | Refusal::Rejected(_) => StatusCode::BAD_REQUEST,
            Refusal::Storage => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::SenderNotAllowed => StatusCode::FORBIDDEN,
            Refusal::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The label this refusal is counted under in metrics.
    fn metric(&self) -> &'static str {
        match self {
            Refusal::NotFound => "unknown_token",
            Refusal::TargetTooLong => "target_too_long",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::Method(..) => "method",
            Refusal::TooLarge(_) | Refusal::FieldsTooLarge(_) => "too_large",
            Refusal::BodyRead(_) | Refusal::Rejected(_) => "bad_request",
            Refusal::Storage => "storage",
            Refusal::SenderNotAllowed => "sender_not_allowed",
            Refusal::RateLimited(_) => "rate_limited",
        }
    }

    fn response(&self) -> Reply {
        let mut response = http::text(self.status(), format!("{self}\n"));
        match self {
            Refusal::Method(_, allowed) => {
                if let Ok(value) = HeaderValue::from_str(allowed) {
                    response.headers_mut().insert(ALLOW, value);
                }
            }
            Refusal::RateLimited(wait) => {
                let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
                response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
            }
            _ => {}
        }
        response
    }
}

/// Finds the processing whose token is `token`, comparing against every
/// token in constant time so the answer's timing says nothing about it.
fn find_processing<'a>(config: &'a Config, token: &str) -> Option<&'a Processing> {
    // No early exit: every token is compared whichever one matches.
    let mut found = None;
    for processing in &config.processings {
        if processing.accepts(token) {
            found = Some(processing);
        }
    }
    found
}

async fn handle(shared: Arc<Shared>, peer: SocketAddr, request: Request<Incoming>) -> Reply {
    // Kept for the refusal log line, which alone formats them.
    let (method, uri) = (request.method().clone(), request.uri().clone());
    let config = shared.config();
    let client = sender::client_of(peer, request.headers(), &config.server.trusted_proxies);
    let answered = match config.server.max_per_ip {
        Some(rate) => rate_check(&shared, client.ip, rate),
        None => Ok(()),
    };
    let answered = match answered {
        Ok(()) => accept(&shared, &config, &client, request).await,
        Err(refusal) => Err(refusal),
    };
    match answered {
        Ok(response) => response,
        Err(refusal) => {
            // A rejected body was stored, counted as received and logged;
            // a storage failure is logged as an error where it happens.
            match refusal {
                Refusal::Rejected(_) | Refusal::FieldsTooLarge(_) => {}
                Refusal::Storage => shared.metrics.refused(refusal.metric()),
                _ => {
                    shared.metrics.refused(refusal.metric());
                    let target = shown_target(method.as_str(), uri.path());
                    log_refusal(&shared, &client.shown, &target, &refusal);
                }
            }
            refusal.response()
        }
    }
}

/// "Klientiks says it sent, the history is empty" is the first support
/// question, so refusals are logged at warn, throttled.
fn log_refusal(shared: &Shared, remote: &str, target: &str, refusal: &Refusal) {
    let admitted = match shared.refusal_log.lock() {
        Ok(mut throttle) => throttle.admit(Instant::now()),
        Err(poisoned) => poisoned.into_inner().admit(Instant::now()),
    };
    if let Some(held_back) = admitted {
        let more = if held_back > 0 {
            format!(" ({held_back} more refused since the last such line)")
        } else {
            String::new()
        };
        log::warn!(
            "refused {target} from {remote}: {} {refusal}{more}",
            refusal.status().as_u16()
        );
    }
}

/// `METHOD path` for the log, with a token cut to its first four characters:
/// enough to tell which address a sender has, not enough to use it.
fn shown_target(method: &str, path: &str) -> String {
    const MAX: usize = 100;
    let path = match path.strip_prefix("/hook/") {
        Some(token) => {
            let head: String = token.chars().take(4).collect();
            format!("/hook/{head}…({} characters)", token.chars().count())
        }
        None => path.chars().take(MAX).collect(),
    };
    format!("{method} {path}")
}

/// Takes a token from the sender's bucket, or says how long to wait.
fn rate_check(shared: &Shared, ip: IpAddr, rate: crate::config::Rate) -> Result<(), Refusal> {
    let checked = match shared.rate.lock() {
        Ok(mut limiter) => limiter.check(ip, rate, Instant::now()),
        Err(poisoned) => poisoned.into_inner().check(ip, rate, Instant::now()),
    };
    checked.map_err(Refusal::RateLimited)
}

/// Stores the request under `config` (one snapshot for the whole request,
/// taken by the caller) and answers it.
async fn accept(
    shared: &Shared,
    config: &Config,
    client: &sender::Client,
    request: Request<Incoming>,
) -> Result<Reply, Refusal> {
    let remote = client.shown.as_str();
    if request.uri().path_and_query().map_or(0, |pq| pq.as_str().len()) > MAX_TARGET_BYTES {
        return Err(Refusal::TargetTooLong);
    }
    let token = request
        .uri()
        .path()
        .strip_prefix("/hook/")
        .map(|t| t.trim_end_matches('/'))
        .ok_or(Refusal::NotFound)?;
    let processing = find_processing(config, token).ok_or(Refusal::NotFound)?;
    if !processing.allows(client.ip) {
        return Err(Refusal::SenderNotAllowed);
    }
    let method = request.method().as_str().to_string();
    // HTTP methods are case-sensitive: `get` is not GET.
    if !processing.methods.iter().any(|m| m.as_str() == method) {
        let allowed: Vec<&str> = processing.methods.iter().map(|m| m.as_str()).collect();
        return Err(Refusal::Method(method, allowed.join(", ")));
    }
    let limit = config.server.max_body_bytes;
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(Refusal::TooLarge(limit));
    }
    let raw_query = request.uri().query().unwrap_or("").as_bytes().to_vec();
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let reading = Limited::new(request.into_body(), limit).collect();
    let body = tokio::time::timeout(BODY_READ_TIMEOUT, reading)
        .await
        .map_err(|_| Refusal::BodyTimeout)?
        .map_err(|err| {
            if err.is::<http_body_util::LengthLimitError>() {
                Refusal::TooLarge(limit)
            } else {
                Refusal::BodyRead(err.to_string())
            }
        })?
        .to_bytes();
    let limits = fields::Limits {
        max_fields: config.server.max_fields,
        max_name_bytes: config.server.max_field_name_bytes,
        max_total_bytes: config.server.max_fields_bytes,
    };
    let extracted = fields::extract(&raw_query, content_type.as_deref(), &body, limits);
    let too_large = matches!(extracted, Err(fields::ExtractError::TooLarge(_)));
    let request = RawRequest {
        remote_addr: remote.to_string(),
        method,
        query: raw_query,
        body: body.to_vec(),
        content_type,
    };
    let operation = rules::operation(processing, now_ms(), request, extracted);
    for why in operation.deliveries.iter().filter_map(|d| d.refused.as_ref()) {
        log::warn!("processing `{}`: {why}", processing.name);
    }
    let inserted = shared.writer.insert(operation).await.map_err(|err| {
        log::error!("processing `{}`: cannot store a webhook: {err}", processing.name);
        Refusal::Storage
    })?;
    shared.metrics.received(&processing.name, inserted.status.as_str());
    if crate::eventlog::admit() {
        log::info!(
            "processing `{}`: operation {} from {remote}: {}{}",
            processing.name,
            inserted.id,
            inserted.status,
            inserted.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
        );
    }
    let mut response = if inserted.status == OpStatus::Rejected {
        // The sender's answer is in English, whatever server.language says.
        let reason = inserted.reason.as_ref().map(ToString::to_string).unwrap_or_default();
        if too_large {
            Refusal::FieldsTooLarge(reason).response()
        } else {
            Refusal::Rejected(reason).response()
        }
    } else {
        let answer = &processing.response;
        let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
        let mut response = http::text(status, answer.body.clone());
        if let Ok(value) = HeaderValue::from_str(&answer.content_type) {
            response.headers_mut().insert(CONTENT_TYPE, value);
        }
        response
    };
    response
        .headers_mut()
        .insert(OPERATION_HEADER, HeaderValue::from(inserted.id));
    Ok(response)
}

/// Serves webhooks on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    let per_client = shared.config().server.max_connections_per_client;
    let handler = move |remote, request| handle(Arc::clone(&shared), remote, request);
    http::serve("webhooks", listener, per_client, handler, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One line per interval; the next says how many were held back.
    #[test]
    fn throttle_lets_one_line_through_per_interval() {
        let start = Instant::now();
        let mut throttle = Throttle::new(Duration::from_secs(10));
        assert_eq!(throttle.admit(start), Some(0));
        assert_eq!(throttle.admit(start + Duration::from_secs(1)), None);
        assert_eq!(throttle.admit(start + Duration::from_secs(9)), None);
        assert_eq!(throttle.admit(start + Duration::from_secs(10)), Some(2));
        assert_eq!(throttle.admit(start + Duration::from_secs(25)), Some(0));
    }

    /// Every refusal's metric label is among those created at zero.
    #[test]
    fn refusal_reasons_are_all_declared() {
        let all = [
            Refusal::NotFound,
            Refusal::TargetTooLong,
            Refusal::Method(String::new(), String::new()),
            Refusal::TooLarge(1),
            Refusal::FieldsTooLarge(String::new()),
            Refusal::BodyRead(String::new()),
            Refusal::BodyTimeout,
            Refusal::Rejected(String::new()),
            Refusal::Storage,
            Refusal::SenderNotAllowed,
            Refusal::RateLimited(Duration::ZERO),
        ];
        for refusal in all {
            assert!(REFUSAL_REASONS.contains(&refusal.metric()), "{}", refusal.metric());
        }
    }

    /// A token in the log is cut to four characters.
    #[test]
    fn tokens_are_cut_in_the_log() {
        assert_eq!(
            shown_target("GET", "/hook/3q2-7wEXAMPLE-only-use"),
            "GET /hook/3q2-…(22 characters)"
        );
        assert_eq!(shown_target("POST", "/favicon.ico"), "POST /favicon.ico");
    }
}
