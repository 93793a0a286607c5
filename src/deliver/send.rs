//! One HTTP attempt through the shared ureq agent.

use std::io::Read;
use std::time::{Duration, SystemTime};

use ureq::http;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::time::Duration as Wait;
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use super::retry::parse_retry_after;
use crate::model::{DueDelivery, RESPONSE_BODY_LIMIT};

/// Response bytes read for the response rules to judge; the rest is discarded.
const READ_LIMIT: u64 = 64 * 1024;
/// Header every outgoing request carries so receivers can drop repeats.
pub const DELIVERY_HEADER: &str = "X-Hookrelay-Delivery";

/// What the receiver answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The body's first [`READ_LIMIT`] bytes.
    pub body: Vec<u8>,
    pub retry_after: Option<Duration>,
}

impl Answer {
    /// The body's first bytes as text, as the attempt record keeps them.
    pub fn body_head(&self) -> String {
        String::from_utf8_lossy(&self.body[..self.body.len().min(RESPONSE_BODY_LIMIT)]).into_owned()
    }
}

/// Why an attempt got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The request cannot be built (a header value or URL the HTTP client
    /// refuses): the same bytes would fail the same way, so it is not retried.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Connecting, sending or reading failed; worth another try.
    #[error("{0}")]
    Network(String),
    /// Not sent: the integration must be authorized again (no OAuth2
    /// tokens, or a refresh token refused); permanent until it is.
    #[error("{0}")]
    Unauthorized(crate::model::said::Said),
    /// Not sent yet: it recalls a value an earlier event has not yet
    /// produced; tried again later (see `deliver::recall`).
    #[error("{0}")]
    NotYet(crate::model::said::Said),
}

/// The agent every worker shares: one connection pool, keep-alive, no
/// status-as-error (the retry policy reads the status itself).
pub fn agent(user_agent: &str) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .user_agent(user_agent)
        .max_idle_connections_per_host(16)
        .build();
    ureq::Agent::with_parts(config, DefaultConnector::default(), OnThisThread::default())
}

/// Looks the receiver's host up on the calling thread. ureq resolves it
/// before every request, pooled connection or not, and with a timeout set
/// its default resolver does that on a new thread so that it can stop
/// waiting: a thread per delivery (about 200 a second were counted while
/// delivering 2 600/s). A delivery worker is a thread of its own that
/// waits for the answer anyway, and an IP address needs no lookup; a name
/// is looked up with the system resolver's own timeouts (`/etc/resolv.conf`).
#[derive(Debug, Default)]
struct OnThisThread(DefaultResolver);

impl Resolver for OnThisThread {
    fn resolve(
        &self,
        uri: &http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        // Without a deadline the default resolver stays on this thread.
        let unbounded = NextTimeout {
            after: Wait::NotHappening,
            ..timeout
        };
        self.0.resolve(uri, config, unbounded)
    }
}

/// Sends one attempt of `due`; an `Err` means no answer came.
pub fn send(agent: &ureq::Agent, due: &DueDelivery) -> Result<Answer, SendError> {
    let d = &due.request;
    let mut builder = http::Request::builder()
        .method(d.method.as_str())
        .uri(d.url.as_str())
        .header(DELIVERY_HEADER, due.id.to_string());
    for (name, value) in &d.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let timeout = Some(Duration::from_millis(d.timeout_ms));
    let result = match &d.body {
        Some(body) => {
            let request = builder
                .body(body.clone())
                .map_err(|e| SendError::Invalid(e.to_string()))?;
            let request = agent.configure_request(request).timeout_global(timeout).build();
            agent.run(request)
        }
        None => {
            let request = builder.body(()).map_err(|e| SendError::Invalid(e.to_string()))?;
            let request = agent.configure_request(request).timeout_global(timeout).build();
            agent.run(request)
        }
    };
    let mut response = result.map_err(|e| match e {
        ureq::Error::Http(_) | ureq::Error::BadUri(_) => SendError::Invalid(e.to_string()),
        other => SendError::Network(other.to_string()),
    })?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let mut body = Vec::new();
    // A body that breaks off midway still leaves its status meaningful.
    let _ = response.body_mut().as_reader().take(READ_LIMIT).read_to_end(&mut body);
    Ok(Answer {
        status,
        body,
        retry_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Addresses and names resolve on the calling thread, to the same
    /// addresses ureq's own resolver gives.
    #[test]
    fn resolves_addresses_and_names_in_place() {
        let config = ureq::config::Config::default();
        let timeout = NextTimeout {
            after: Wait::Exact(Duration::from_secs(5)),
            reason: ureq::Timeout::Resolve,
            per_read: None,
            per_write: None,
        };
        let resolve = |url: &str| -> Vec<std::net::SocketAddr> {
            let uri: http::Uri = url.parse().unwrap();
            OnThisThread::default()
                .resolve(&uri, &config, timeout)
                .unwrap()
                .iter()
                .copied()
                .collect()
        };
        assert_eq!(
            resolve("http://127.0.0.1:8080/pb"),
            ["127.0.0.1:8080".parse::<std::net::SocketAddr>().unwrap()]
        );
        let local = resolve("http://localhost:9/pb");
        assert!(
            !local.is_empty() && local.iter().all(|a| a.ip().is_loopback() && a.port() == 9),
            "{local:?}"
        );
    }
}
