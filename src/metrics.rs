//! Prometheus metrics: what the other modules count, and the text exposition.
//!
//! Counters are bumped where things happen (ingest, delivery workers, the
//! notifier); the queue gauges are read from the database at scrape time by
//! the admin listener.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::model::{BreakerChange, Outcome};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessingStatus {
    processing: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionOutcome {
    action: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Action {
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Receiver {
    receiver: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReceiverChange {
    receiver: String,
    to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelResult {
    channel: String,
    result: String,
}

/// How a delivery attempt ended, as `hookrelay_delivery_attempts_total`'s
/// `outcome` label says it.
/// `parked`: failed while the receiver's breaker is open, not counted
/// against the delivery's attempts.
pub const OUTCOMES: [&str; 4] = ["delivered", "retry", "failed", "parked"];

/// The `outcome` label of an attempt that ended with `outcome`.
fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Delivered => OUTCOMES[0],
        Outcome::RetryAt(_) => OUTCOMES[1],
        Outcome::Failed => OUTCOMES[2],
        Outcome::Parked => OUTCOMES[3],
    }
}

/// The media type of the OpenMetrics exposition.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The media type of the Prometheus text exposition (format 0.0.4).
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric hookrelay exports, shared by `Arc`.
pub struct Metrics {
    registry: Registry,
    received: Family<ProcessingStatus, Counter>,
    refused: Family<Reason, Counter>,
    attempts: Family<ActionOutcome, Counter>,
    attempt_seconds: Histogram,
    queue_depth: Gauge,
    oldest_pending_seconds: Gauge<f64, AtomicU64>,
    notifications: Family<ChannelResult, Counter>,
    breaker_open: Family<Receiver, Gauge>,
    breaker_changes: Family<ReceiverChange, Counter>,
    expired: Family<Action, Counter>,
    /// Mirrors [`crate::store::STATEMENTS`] when encoded.
    statements: Counter,
    last_delivered_at: AtomicI64,
}

impl Metrics {
    /// A fresh set of metrics, all zero.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("hookrelay");
        let received = Family::<ProcessingStatus, Counter>::default();
        registry.register(
            "operations_received",
            "Webhooks stored, by processing and the status they were given",
            received.clone(),
        );
        let refused = Family::<Reason, Counter>::default();
        registry.register(
            "requests_refused",
            "Webhook requests refused without storing them, by reason",
            refused.clone(),
        );
        let attempts = Family::<ActionOutcome, Counter>::default();
        registry.register(
            "delivery_attempts",
            "Delivery attempts by action and outcome (delivered, retry, failed)",
            attempts.clone(),
        );
        // 5 ms … about 80 s, doubling.
        let attempt_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 15));
        registry.register(
            "delivery_attempt_duration_seconds",
            "How long delivery attempts took, answer or error",
            attempt_seconds.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Deliveries pending or waiting to retry",
            queue_depth.clone(),
        );
        let oldest_pending_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "oldest_pending_seconds",
            "Age of the oldest operation with a delivery still pending, 0 if none",
            oldest_pending_seconds.clone(),
        );
        let build = Family::<Build, Gauge>::default();
        registry.register(
            "build_info",
            "Always 1; the version label says which hookrelay is running",
            build.clone(),
        );
        build
            .get_or_create(&Build {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        let notifications = Family::<ChannelResult, Counter>::default();
        registry.register(
            "notifications",
            "Notification messages by channel and result (sent, failed)",
            notifications.clone(),
        );
        let breaker_open = Family::<Receiver, Gauge>::default();
        registry.register(
            "receiver_breaker_open",
            "1 while the receiver's circuit breaker is open (its deliveries wait), else 0",
            breaker_open.clone(),
        );
        let breaker_changes = Family::<ReceiverChange, Counter>::default();
        registry.register(
            "receiver_breaker_changes",
            "Circuit breaker transitions by receiver and the state entered (open, closed)",
            breaker_changes.clone(),
        );
        let expired = Family::<Action, Counter>::default();
        registry.register(
            "deliveries_expired",
            "Deliveries that expired unsent because their max_age passed, by action",
            expired.clone(),
        );
        let statements = Counter::default();
        registry.register(
            "sql_statements",
            "SQL statements run by this process through the store (not those triggers run)",
            statements.clone(),
        );
        Arc::new(Metrics {
            registry,
            statements,
            received,
            refused,
            attempts,
            attempt_seconds,
            queue_depth,
            oldest_pending_seconds,
            notifications,
            breaker_open,
            breaker_changes,
            expired,
            last_delivered_at: AtomicI64::new(0),
        })
    }

    /// Creates, at zero, the series a processing and its actions will have,
    /// so an alert on them can be written before the first event or failure.
    pub fn declare(&self, processing: &str, statuses: &[&str], actions: &[&str]) {
        for status in statuses {
            let _ = self.received.get_or_create(&ProcessingStatus {
                processing: processing.into(),
                status: (*status).into(),
            });
        }
        for action in actions {
            let _ = self.expired.get_or_create(&Action {
                action: (*action).into(),
            });
            for outcome in OUTCOMES {
                let _ = self.attempts.get_or_create(&ActionOutcome {
                    action: (*action).into(),
                    outcome: outcome.into(),
                });
            }
        }
    }

    /// Creates, at zero, the refusal series for each of `reasons`.
    pub fn declare_refusals(&self, reasons: &[&str]) {
        for reason in reasons {
            let _ = self.refused.get_or_create(&Reason {
                reason: (*reason).into(),
            });
        }
    }

    /// A webhook was stored for `processing` with `status`.
    pub fn received(&self, processing: &str, status: &str) {
        self.received
            .get_or_create(&ProcessingStatus {
                processing: processing.into(),
                status: status.into(),
            })
            .inc();
    }

    /// A webhook request was refused (unknown_token, method, too_large, bad_request, storage).
    pub fn refused(&self, reason: &str) {
        self.refused.get_or_create(&Reason { reason: reason.into() }).inc();
    }

    /// A delivery attempt of `action` ended with `outcome` after `seconds`.
    pub fn attempt(&self, action: &str, outcome: Outcome, seconds: f64, now_ms: i64) {
        self.attempts
            .get_or_create(&ActionOutcome {
                action: action.into(),
                outcome: outcome_label(outcome).into(),
            })
            .inc();
        self.attempt_seconds.observe(seconds);
        if outcome == Outcome::Delivered {
            self.last_delivered_at.store(now_ms, Ordering::Relaxed);
        }
    }

    /// `n` deliveries of `action` expired unsent.
    pub fn expired(&self, action: &str, n: u64) {
        self.expired.get_or_create(&Action { action: action.into() }).inc_by(n);
    }

    /// `receiver`'s breaker is `open` or not; `change` counts a transition.
    pub fn breaker(&self, receiver: &str, open: bool, change: Option<BreakerChange>) {
        let label = Receiver {
            receiver: receiver.into(),
        };
        self.breaker_open.get_or_create(&label).set(i64::from(open));
        let entered = match change {
            Some(BreakerChange::Opened) => Some("open"),
            Some(BreakerChange::Closed { .. }) => Some("closed"),
            None => None,
        };
        // Both series exist from the first sight of the receiver, at zero.
        for to in ["open", "closed"] {
            let counter = self.breaker_changes.get_or_create(&ReceiverChange {
                receiver: receiver.into(),
                to: to.into(),
            });
            if entered == Some(to) {
                counter.inc();
            }
        }
    }

    /// A notification message went out on `channel`, or failed to.
    pub fn notification(&self, channel: &str, sent: bool) {
        let result = if sent { "sent" } else { "failed" };
        self.notifications
            .get_or_create(&ChannelResult {
                channel: channel.into(),
                result: result.into(),
            })
            .inc();
    }

    /// When a delivery last succeeded (ms since the epoch), if one has since start.
    pub fn last_delivered_at(&self) -> Option<i64> {
        Some(self.last_delivered_at.load(Ordering::Relaxed)).filter(|&at| at > 0)
    }

    /// Sets the queue gauges from a fresh reading.
    pub fn set_queue(&self, depth: u64, oldest_age_seconds: f64) {
        self.queue_depth.set(depth as i64);
        self.oldest_pending_seconds.set(oldest_age_seconds);
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let now = crate::store::STATEMENTS.load(Ordering::Relaxed);
        self.statements.inc_by(now.saturating_sub(self.statements.get()));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Whether an `Accept` header asks for OpenMetrics; anything else (no
/// header, `text/plain`, `*/*`) gets the Prometheus text format, which
/// every scraper and `promtool check metrics` read.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// The Prometheus text format (0.0.4) of an OpenMetrics exposition. The
/// two differ where promtool notices: a counter's HELP and TYPE name the
/// family (`x`) in OpenMetrics but the sample (`x_total`) in Prometheus
/// text, and OpenMetrics ends with `# EOF` and may carry `# UNIT`.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(&name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters are renamed to their samples' name and the OpenMetrics-only
    /// lines go; gauges and histograms stay as they are.
    #[test]
    fn prometheus_text_from_openmetrics() {
        let metrics = Metrics::new();
        metrics.declare("p", &["queued"], &["plarin"]);
        let text = to_prometheus_text(&metrics.encode());
        assert!(
            text.contains("# HELP hookrelay_operations_received_total Webhooks stored"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE hookrelay_operations_received_total counter"),
            "{text}"
        );
        assert!(
            text.contains("hookrelay_operations_received_total{processing=\"p\",status=\"queued\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("hookrelay_delivery_attempts_total{action=\"plarin\",outcome=\"failed\"} 0"),
            "{text}"
        );
        assert!(text.contains("# TYPE hookrelay_queue_depth gauge"), "{text}");
        assert!(text.contains("hookrelay_build_info{version=\""), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")));
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
        )));
    }
}
