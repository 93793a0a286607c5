//! The HTTP accept loop both listeners share: a cap on connections, back-off
//! on accept errors, a header read timeout, escaping of raw bytes in request
//! lines, and a bounded graceful drain on shutdown.

pub mod escape;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Most connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 1024;
/// A client must send its request headers within this time (slowloris);
/// the same timer closes keep-alive connections idle that long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Most header fields in one request.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of request line and headers together; more gets 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long a stop waits for open requests to finish.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection past its address's cap is closed.
const TOO_MANY_FROM_CLIENT: &str = "too many open connections from your address; retry\n";

/// The response type of every handler.
pub type Reply = Response<Full<Bytes>>;

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// The answer to a request framed two ways; the connection is closed after
/// it, since where its body ends is exactly what is in doubt.
fn framing_conflict() -> Reply {
    let mut response = text(
        StatusCode::BAD_REQUEST,
        "Content-Length and Transfer-Encoding together are refused\n",
    );
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The first transfer coding of `headers` other than `chunked`, the only
/// one hyper decodes. hyper reads `Transfer-Encoding: gzip, chunked` as
/// chunked and hands over the still-compressed body, which would be stored
/// as if it were the sender's text.
fn unknown_coding(headers: &hyper::HeaderMap) -> Option<String> {
    headers
        .get_all(hyper::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("(not text)").split(','))
        .map(|coding| coding.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .find(|coding| coding != "chunked")
}

/// The answer to a transfer coding hyper cannot decode: 501, as RFC 9112
/// (section 6.1) asks. The connection is closed: the body was not read.
fn coding_not_implemented(coding: &str) -> Reply {
    let mut response = text(
        StatusCode::NOT_IMPLEMENTED,
        format!("transfer coding `{coding}` is not supported; send the body with Content-Length or chunked alone\n"),
    );
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Open connections per client address, so that one address cannot hold
/// every connection slot (idle or slowloris connections) and delay the rest.
#[derive(Default)]
struct PerClient {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerClient {
    /// Counts a connection from `ip` unless it already has `cap` open; the
    /// returned guard uncounts it when dropped.
    fn admit(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<ClientSlot> {
        let ip = ip.to_canonical();
        let mut open = match self.open.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let count = open.entry(ip).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            clients: Arc::clone(self),
            ip,
        })
    }
}

/// One counted connection of [`PerClient`].
struct ClientSlot {
    clients: Arc<PerClient>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = match self.clients.open.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Tells a connection past its address's cap why, without reading its
/// request, and closes it. Nothing waits on it: a fresh socket's send
/// buffer is empty, so the write does not block, and no task or timer
/// outlives the call, so a flood of refused connections costs nothing that
/// lasts.
fn refuse_client(stream: TcpStream) {
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{TOO_MANY_FROM_CLIENT}",
        TOO_MANY_FROM_CLIENT.len()
    );
    let _ = stream.try_write(answer.as_bytes());
    if let Ok(stream) = stream.into_std() {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
}

/// Serves `handler` on `listener` until `shutdown` resolves, then stops
/// accepting and gives open requests [`DRAIN_TIMEOUT`] to finish. One
/// client address may hold at most `per_client` connections; more are
/// answered 503 and closed at once.
pub async fn serve<H, F>(
    name: &str,
    listener: TcpListener,
    per_client: usize,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(SocketAddr, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let clients = Arc::new(PerClient::default());
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
                    log::warn!("{name}: accept failed: {err}; pausing {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        backoff = Duration::from_millis(10);
        let Some(slot) = clients.admit(remote.ip(), per_client) else {
            drop(permit);
            log::debug!("{name}: refused a connection from {remote}: {per_client} already open from it");
            refuse_client(stream);
            continue;
        };
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let refused = if request.headers().contains_key(escape::FRAMING_CONFLICT) {
                Some(framing_conflict())
            } else {
                unknown_coding(request.headers()).map(|coding| coding_not_implemented(&coding))
            };
            let reply = refused.is_none().then(|| handler(remote, request));
            async move {
                Ok::<_, Infallible>(match (reply, refused) {
                    (Some(reply), _) => reply.await,
                    (None, refused) => refused.unwrap_or_else(framing_conflict),
                })
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_headers(MAX_HEADERS)
            .max_buf_size(MAX_HEAD_BYTES)
            // A client may shut its sending side and still wait for the answer.
            .half_close(true)
            .serve_connection(TokioIo::new(escape::EscapeTarget::new(stream)), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                log::debug!("connection from {remote}: {err}");
            }
            drop(slot);
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => log::warn!("{name}: stopped waiting for open requests"),
    }
}
