//! The webhook listener: routing, limits, field extraction, and the answer
//! that is sent only after the operation is committed.

mod escape;
pub mod fields;
pub mod rules;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::{Config, Processing};
use crate::store::{now_ms, OpStatus, RawRequest, Writer};

/// Most connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 1024;
/// A client must send its request headers within this time (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stop waits for open requests to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Answer header carrying the stored operation's id.
pub const OPERATION_HEADER: &str = "X-Hookrelay-Operation";

/// What every connection shares: the current config and the store writer.
pub struct Shared {
    config: RwLock<Arc<Config>>,
    writer: Writer,
}

impl Shared {
    /// State for the listener.
    pub fn new(config: Arc<Config>, writer: Writer) -> Shared {
        Shared {
            config: RwLock::new(config),
            writer,
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
    #[error("method {0} not allowed; use {1}")]
    Method(String, String),
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("{0}")]
    Rejected(String),
    #[error("storage unavailable; retry later")]
    Storage,
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::Method(..) => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BodyRead(_) | Refusal::Rejected(_) => StatusCode::BAD_REQUEST,
            Refusal::Storage => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn response(&self) -> Response<Full<Bytes>> {
        let mut response = text_response(self.status(), format!("{self}\n"));
        if let Refusal::Method(_, allowed) = self {
            if let Ok(value) = HeaderValue::from_str(allowed) {
                response.headers_mut().insert(ALLOW, value);
            }
        }
        response
    }
}

fn text_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Finds the processing whose token is `token`, comparing against every
/// token in constant time so the answer's timing says nothing about it.
fn find_processing<'a>(config: &'a Config, token: &str) -> Option<&'a Processing> {
    let wanted = Sha256::digest(token.as_bytes());
    let mut found = None;
    for processing in &config.processings {
        let candidate = Sha256::digest(processing.token.expose().as_bytes());
        if bool::from(candidate.ct_eq(&wanted)) {
            found = Some(processing);
        }
    }
    found
}

async fn handle(shared: Arc<Shared>, remote: SocketAddr, request: Request<Incoming>) -> Response<Full<Bytes>> {
    match accept(&shared, remote, request).await {
        Ok(response) => response,
        Err(refusal) => {
            log::debug!("refused a request from {remote}: {refusal}");
            refusal.response()
        }
    }
}

async fn accept(
    shared: &Shared,
    remote: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Refusal> {
    let config = shared.config();
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
    let body = Limited::new(request.into_body(), limit)
        .collect()
        .await
        .map_err(|err| {
            if err.is::<http_body_util::LengthLimitError>() {
                Refusal::TooLarge(limit)
            } else {
                Refusal::BodyRead(err.to_string())
            }
        })?
        .to_bytes();
    let extracted = fields::extract(&raw_query, content_type.as_deref(), &body);
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
    if inserted.status == OpStatus::Rejected {
        let mut response = Refusal::Rejected(inserted.reason.unwrap_or_default()).response();
        response
            .headers_mut()
            .insert(OPERATION_HEADER, HeaderValue::from(inserted.id));
        return Ok(response);
    }
    let answer = &processing.response;
    let mut response = Response::new(Full::new(Bytes::from(answer.body.clone())));
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    if let Ok(value) = HeaderValue::from_str(&answer.content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
        .headers_mut()
        .insert(OPERATION_HEADER, HeaderValue::from(inserted.id));
    Ok(response)
}

/// Serves webhooks on `listener` until `shutdown` resolves, then stops
/// accepting and gives open requests [`DRAIN_TIMEOUT`] to finish.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Duration::from_millis(10);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // EMFILE and friends: wait instead of spinning.
                    log::warn!("accept failed: {err}; pausing {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        backoff = Duration::from_millis(10);
        let shared = Arc::clone(&shared);
        let service = hyper::service::service_fn(move |request| {
            let shared = Arc::clone(&shared);
            async move { Ok::<_, Infallible>(handle(shared, remote, request).await) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(escape::EscapeTarget::new(stream)), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                log::debug!("connection from {remote}: {err}");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => log::warn!("stopped waiting for open webhook requests"),
    }
}
