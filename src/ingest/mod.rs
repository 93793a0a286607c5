//! The webhook listener: routing, limits, field extraction, and the answer
//! that is sent only after the operation is committed.

pub mod fields;
pub mod rules;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, StatusCode};
use tokio::net::TcpListener;

use crate::config::{Config, Processing};
use crate::http::{self, Reply};
use crate::metrics::Metrics;
use crate::store::{now_ms, OpStatus, RawRequest, Writer};

/// A declared body must arrive within this time, else 408 (slow-body attacks).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest request target (path and query) accepted; longer gets 414.
pub const MAX_TARGET_BYTES: usize = 16 * 1024;
/// Answer header carrying the stored operation's id.
pub const OPERATION_HEADER: &str = "X-Hookrelay-Operation";

/// What every connection shares: the current config and the store writer.
pub struct Shared {
    config: RwLock<Arc<Config>>,
    writer: Writer,
    metrics: Arc<Metrics>,
}

impl Shared {
    /// State for the listener.
    pub fn new(config: Arc<Config>, writer: Writer, metrics: Arc<Metrics>) -> Shared {
        Shared {
            config: RwLock::new(config),
            writer,
            metrics,
        }
    }

    /// Makes `config` the one new requests use.
    pub fn replace(&self, config: Arc<Config>) {
        match self.config.write() {
            Ok(mut guard) => *guard = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
    }

    /// The config new requests use.
    pub fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
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
        }
    }

    fn response(&self) -> Reply {
        let mut response = http::text(self.status(), format!("{self}\n"));
        if let Refusal::Method(_, allowed) = self {
            if let Ok(value) = HeaderValue::from_str(allowed) {
                response.headers_mut().insert(ALLOW, value);
            }
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

async fn handle(shared: Arc<Shared>, remote: SocketAddr, request: Request<Incoming>) -> Reply {
    match accept(&shared, remote, request).await {
        Ok(response) => response,
        Err(refusal) => {
            log::debug!("refused a request from {remote}: {refusal}");
            // A rejected body was stored, and counted as received.
            if !matches!(refusal, Refusal::Rejected(_) | Refusal::FieldsTooLarge(_)) {
                shared.metrics.refused(refusal.metric());
            }
            refusal.response()
        }
    }
}

async fn accept(shared: &Shared, remote: SocketAddr, request: Request<Incoming>) -> Result<Reply, Refusal> {
    let config = shared.config();
    if request.uri().path_and_query().map_or(0, |pq| pq.as_str().len()) > MAX_TARGET_BYTES {
        return Err(Refusal::TargetTooLong);
    }
    let token = request
        .uri()
        .path()
        .strip_prefix("/hook/")
        .map(|t| t.trim_end_matches('/'))
        .ok_or(Refusal::NotFound)?;
    let processing = find_processing(&config, token).ok_or(Refusal::NotFound)?;
    let method = request.method().as_str().to_string();
    if !processing.methods.contains(&method) {
        return Err(Refusal::Method(method, processing.methods.join(", ")));
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
    let inserted = shared.writer.insert(operation).await.map_err(|err| {
        log::error!("processing `{}`: cannot store a webhook: {err}", processing.name);
        Refusal::Storage
    })?;
    shared.metrics.received(&processing.name, inserted.status.as_str());
    log::info!(
        "processing `{}`: operation {} from {remote}: {}{}",
        processing.name,
        inserted.id,
        inserted.status,
        inserted
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    let mut response = if inserted.status == OpStatus::Rejected {
        let reason = inserted.reason.unwrap_or_default();
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
