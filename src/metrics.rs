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
struct ChannelResult {
    channel: String,
    result: String,
}

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
        let notifications = Family::<ChannelResult, Counter>::default();
        registry.register(
            "notifications",
            "Notification messages by channel and result (sent, failed)",
            notifications.clone(),
        );
        Arc::new(Metrics {
            registry,
            received,
            refused,
            attempts,
            attempt_seconds,
            queue_depth,
            oldest_pending_seconds,
            notifications,
            last_delivered_at: AtomicI64::new(0),
        })
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
    pub fn attempt(&self, action: &str, outcome: &str, seconds: f64, now_ms: i64) {
        self.attempts
            .get_or_create(&ActionOutcome {
                action: action.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.attempt_seconds.observe(seconds);
        if outcome == "delivered" {
            self.last_delivered_at.store(now_ms, Ordering::Relaxed);
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

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
