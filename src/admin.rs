//! The admin listener: `GET /healthz` and `GET /metrics`, and the web
//! console ([`crate::console`]) on every other path. It listens on loopback
//! unless `admin_token` is set, and then `/healthz` and `/metrics` need
//! `Authorization: Bearer <admin_token>`; the console has its own sign-in.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;

use crate::clock::{now_ms, rfc3339};
use crate::config::Secret;
use crate::console::{self, Console};
use crate::http::{self, Reply};
use crate::metrics::{self, Metrics};
use crate::store::{QueueStats, Reader, Writer};

/// What the admin endpoints read.
pub struct Admin {
    pub writer: Writer,
    /// A reading connection; queries run on the blocking pool.
    pub reader: Arc<Mutex<Reader>>,
    pub metrics: Arc<Metrics>,
    pub token: Option<Secret>,
    pub console: Arc<Console>,
}

/// Serves the admin endpoints on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, shutdown: impl std::future::Future<Output = ()>) {
    let handler = move |remote, request| handle(Arc::clone(&admin), remote, request);
    // Loopback or token-guarded, and scraped by one collector: no
    // per-address cap beyond the global one.
    http::serve("admin", listener, http::MAX_CONNECTIONS, handler, shutdown).await;
}

async fn handle(admin: Arc<Admin>, remote: SocketAddr, request: Request<Incoming>) -> Reply {
    if console::owns(request.uri().path()) {
        return console::handle(Arc::clone(&admin.console), remote, request).await;
    }
    if let Some(token) = &admin.token {
        let given = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !token.matches(given) {
            let mut response = http::text(StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n");
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => healthz(&admin).await,
        (&Method::GET, "/metrics") => {
            let accept = request
                .headers()
                .get(ACCEPT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            metrics(&admin, accept.as_deref()).await
        }
        _ => http::text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n"),
    }
}

/// The queue as the database has it, read off the async workers. A
/// reading task that panicked is said so, not dressed as a database error.
async fn queue_stats(admin: &Admin) -> Result<QueueStats, String> {
    let reader = Arc::clone(&admin.reader);
    let read = tokio::task::spawn_blocking(move || match reader.lock() {
        Ok(reader) => reader.queue_stats(),
        Err(poisoned) => poisoned.into_inner().queue_stats(),
    })
    .await;
    match read {
        Ok(stats) => stats.map_err(|e| e.to_string()),
        Err(err) => Err(format!("the reading task failed: {err}")),
    }
}

fn age_seconds(stats: &QueueStats) -> f64 {
    stats
        .oldest_received_at
        .map_or(0.0, |at| (now_ms() - at).max(0) as f64 / 1000.0)
}

/// 200 with a small JSON when the database takes a write, else 503.
async fn healthz(admin: &Admin) -> Reply {
    let probe = admin.writer.probe().await;
    let stats = queue_stats(admin).await;
    let writable = probe.is_ok();
    let body = json!({
        "status": if writable { "ok" } else { "unavailable" },
        "database_writable": writable,
        "database_error": probe.err().map(|e| e.to_string()),
        "queue_depth": stats.as_ref().map(|s| s.depth).ok(),
        "oldest_pending_age_seconds": stats.as_ref().map(age_seconds).ok(),
        "last_delivery_at": admin.metrics.last_delivered_at().map(rfc3339),
    });
    let status = if writable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = http::text(status, format!("{body}\n"));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The exposition with fresh queue gauges: OpenMetrics when the scraper
/// asks for it, else the Prometheus text format.
async fn metrics(admin: &Admin, accept: Option<&str>) -> Reply {
    match queue_stats(admin).await {
        Ok(stats) => admin.metrics.set_queue(stats.depth, age_seconds(&stats)),
        Err(err) => log::warn!("/metrics: cannot read the queue: {err}"),
    }
    let openmetrics = admin.metrics.encode();
    let (body, content_type) = if metrics::wants_openmetrics(accept) {
        (openmetrics, metrics::OPENMETRICS)
    } else {
        (metrics::to_prometheus_text(&openmetrics), metrics::PROMETHEUS_TEXT)
    };
    let mut response = http::text(StatusCode::OK, body);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
