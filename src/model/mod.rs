//! The domain's vocabulary: what a request, an operation, a delivery and an
//! attempt are, and the states they pass through. No I/O: the store saves
//! these, ingest and the CLI build them, delivery and notification read
//! them.

pub mod location;
pub mod platform;
pub mod response;
pub mod said;

use std::str::FromStr;

use serde::Serialize;

use response::{Judged, ResponseRules};
use said::Said;

/// Most response-body bytes an attempt record keeps.
pub const RESPONSE_BODY_LIMIT: usize = 2048;

/// The part of a URL that names its receiver: `scheme://host:port/`.
pub fn target_of(url: &str) -> String {
    url::Url::parse(url).map_or_else(
        |_| url.to_string(),
        |u| format!("{}/", u.origin().ascii_serialization()),
    )
}

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name stored in the database and printed by the CLI.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "`{other}` is not one of: {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// Where an operation (one received webhook) stands.
    OpStatus {
        Queued = "queued",
        Delivered = "delivered",
        Failed = "failed",
        Partial = "partial",
        Skipped = "skipped",
        Duplicate = "duplicate",
        Held = "held",
        Rejected = "rejected",
    }
}

string_enum! {
    /// Where one action's delivery stands. `cancelled`: cancelled by hand
    /// while it waited, never sent again. `expired`: its `max_age` passed
    /// before it could be sent, and it never will be.
    DeliveryStatus {
        Pending = "pending",
        InFlight = "in_flight",
        Retrying = "retrying",
        Delivered = "delivered",
        Failed = "failed",
        Cancelled = "cancelled",
        Expired = "expired",
    }
}

string_enum! {
    /// What a notification tells the operator about: a delivery that
    /// failed for good, or a warning (the first of its kind that day, or a
    /// processing that skips everything).
    NotificationKind {
        Failure = "failure",
        Warning = "warning",
        Receiver = "receiver",
    }
}

/// A warning recorded on an operation. Its `kind` (the said kind) groups
/// warnings for notifications: the first of each kind per processing per
/// day is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    pub kind: &'static str,
    pub said: Said,
}

impl Warning {
    /// A warning saying `said`.
    pub fn new(said: Said) -> Warning {
        Warning {
            kind: said.kind(),
            said,
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.said.fmt(f)
    }
}

/// A webhook request as it arrived, kept for history and replay.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRequest {
    pub remote_addr: String,
    pub method: String,
    pub query: Vec<u8>,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
}

/// A way notifications go out; each keeps its own "sent" mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Telegram,
}

impl Channel {
    /// The name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Telegram => "telegram",
        }
    }
}

/// A received webhook to store, with the deliveries it starts.
#[derive(Debug, Clone)]
pub struct NewOperation {
    pub processing: String,
    pub received_at: i64,
    pub request: RawRequest,
    pub charset: String,
    pub fields: Vec<(String, String)>,
    pub warnings: Vec<Warning>,
    pub status: OpStatus,
    pub reason: Option<Said>,
    /// A rendered dedupe key and the oldest `received_at` it is compared with.
    pub dedupe: Option<(String, i64)>,
    pub deliveries: Vec<DeliveryRequest>,
}

/// Warning kind: a processing skipped every event for a day.
pub const ALL_SKIPPED: &str = "all_skipped";

/// What the operator is told about a processing that skipped all of its
/// `count` events of the last day, the latest for `latest_reason`.
pub fn all_skipped_notice(processing: &str, count: u64, latest_reason: Option<&Said>) -> Said {
    Said::AllSkipped {
        processing: processing.to_string(),
        count,
        latest: latest_reason.map(|r| Box::new(r.clone())),
    }
}

/// A notice day: days since the Unix epoch (UTC), the unit "once a day" counts in.
pub fn notice_day(at_ms: i64) -> i64 {
    at_ms.div_euclid(86_400_000)
}

impl NewOperation {
    /// A queued operation of `processing` with nothing read or decided yet:
    /// no fields, warnings, dedupe key or deliveries; charset UTF-8.
    pub fn new(processing: String, received_at: i64, request: RawRequest) -> NewOperation {
        NewOperation {
            processing,
            received_at,
            request,
            charset: "utf-8".into(),
            fields: Vec::new(),
            warnings: Vec::new(),
            status: OpStatus::Queued,
            reason: None,
            dedupe: None,
            deliveries: Vec::new(),
        }
    }

    /// The warnings that may be told to the operator, with the day they
    /// count for: the first of each kind. The store tells each only if no
    /// earlier operation of the processing took that kind on that day.
    pub fn warning_notices(&self) -> Vec<(&Warning, i64)> {
        let day = notice_day(self.received_at);
        let mut seen = Vec::new();
        self.warnings
            .iter()
            .filter(|w| {
                let first = !seen.contains(&w.kind);
                seen.push(w.kind);
                first
            })
            .map(|w| (w, day))
            .collect()
    }

    /// The dedupe key to look for and the oldest `received_at` it counts
    /// from, when this operation may turn out a duplicate: it has a
    /// non-empty key and would otherwise be sent or held. The one place the
    /// rule lives; the store (for real) and `try` (for show) ask it.
    pub fn dedupe_candidate(&self) -> Option<(&str, i64)> {
        match &self.dedupe {
            Some((key, since)) if !key.is_empty() && matches!(self.status, OpStatus::Queued | OpStatus::Held) => {
                Some((key, *since))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
impl NewOperation {
    /// A queued GET to processing `p` with no fields, warnings or
    /// deliveries, for tests to fill in what they need.
    pub(crate) fn sample(received_at: i64) -> NewOperation {
        let request = RawRequest {
            remote_addr: "127.0.0.1:1".into(),
            method: "GET".into(),
            query: Vec::new(),
            body: Vec::new(),
            content_type: None,
        };
        NewOperation::new("p".into(), received_at, request)
    }
}

#[cfg(test)]
impl DeliveryRequest {
    /// A GET of action `action` to an unused local port, one attempt.
    pub(crate) fn sample(action: &str) -> DeliveryRequest {
        DeliveryRequest {
            action: action.into(),
            method: "GET".into(),
            url: "http://127.0.0.1:1/".into(),
            headers: Vec::new(),
            body: None,
            redacted: "GET http://127.0.0.1:1/".into(),
            rules: ResponseRules::default(),
            timeout_ms: 1000,
            max_attempts: 1,
            first_delay_ms: 1,
            max_delay_ms: 1,
            expires_at: None,
            refused: None,
            batch: None,
        }
    }
}

/// One action's rendered request and its retry budget.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRequest {
    pub action: String,
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub redacted: String,
    /// What counts as taken, and what as "try again later".
    pub rules: ResponseRules,
    pub timeout_ms: u64,
    pub max_attempts: u32,
    pub first_delay_ms: u64,
    pub max_delay_ms: u64,
    /// When it stops being worth sending (the event's time plus the
    /// action's `max_age`); none: never.
    pub expires_at: Option<i64>,
    /// Why it is never sent: it is stored `failed` at once with this error
    /// (a template named a field the event does not have).
    pub refused: Option<Said>,
    /// A metrica row: the `processing/action` whose batch it waits for.
    /// Such a delivery is never claimed on its own (deliver/metrica.rs).
    pub batch: Option<String>,
}

/// What storing an operation decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Inserted {
    pub id: i64,
    pub status: OpStatus,
    pub reason: Option<Said>,
}

/// A delivery claimed for an attempt: everything a worker needs to send it.
#[derive(Debug, Clone, PartialEq)]
pub struct DueDelivery {
    pub id: i64,
    pub operation_id: i64,
    /// Attempts already made before this one.
    pub attempts: u32,
    /// Its receiver, as [`target_of`] names it (stored with the delivery).
    pub target: String,
    pub request: DeliveryRequest,
}

/// How an attempt ended, as far as the delivery is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again at this time (ms since the epoch).
    RetryAt(i64),
    Failed,
    /// The receiver's circuit breaker is open: the delivery waits for it to
    /// close, and this attempt does not count against its retry budget.
    Parked,
}

/// One finished attempt, to record.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_id: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub request: String,
    pub http_status: Option<u16>,
    pub response_body: Option<String>,
    pub error: Option<Said>,
    /// How the answer was judged, and by which rule; none without an answer.
    pub judged: Option<Judged>,
    pub outcome: Outcome,
    /// What to tell the operator, when this attempt ended the delivery in
    /// failure: the delivery side decides, the store queues it.
    pub failure_notice: Option<Said>,
    /// The receiver's breaker after this attempt, to keep; none for
    /// attempts made outside the daemon's scheduler.
    pub receiver: Option<ReceiverState>,
    /// What an accepted answer kept, to remember for a later event's
    /// `recall`: the action's `processing/action`, the key, the value.
    pub remember: Option<(String, String, String)>,
}

/// What is kept of a receiver between restarts: its circuit breaker and
/// when it last answered or failed. Each new state has a higher `version`,
/// so one recorded late never replaces a newer one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceiverState {
    /// `scheme://host:port/`, as [`target_of`] names it.
    pub target: String,
    pub version: i64,
    /// Retryable failures in a row.
    pub failures: u32,
    /// When the current run of failures began.
    pub failing_since: Option<i64>,
    /// Set while the breaker is open.
    pub open: Option<Open>,
    pub last_success_at: Option<i64>,
    pub last_error: Option<Said>,
    pub last_error_at: Option<i64>,
    /// The breaker opened or closed with this attempt: tell the operator.
    pub change: Option<BreakerChange>,
}

impl ReceiverState {
    /// Whether the receiver answers but its newest answer was not taken
    /// (a 4xx, or a body the action does not accept), with the breaker
    /// closed: up, but not working.
    pub fn refusing(&self) -> bool {
        self.open.is_none()
            && self
                .last_error_at
                .is_some_and(|at| self.last_success_at.is_none_or(|ok| at > ok))
            && self.failures == 0
    }
}

/// An open breaker: since when the receiver failed, and the next probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open {
    /// When the failures that opened it began.
    pub since: i64,
    /// The wait before the next probe; doubles after each failed one.
    pub probe_wait_ms: i64,
    pub next_probe_at: i64,
}

/// A breaker's transition, told to the operator once each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerChange {
    Opened,
    /// Closed after being open since this time.
    Closed {
        since: i64,
    },
}

/// The notification of a breaker `change` on `state.target`, with
/// `waiting` deliveries queued for it (times in UTC, RFC 3339).
pub fn breaker_notice(state: &ReceiverState, change: BreakerChange, waiting: i64) -> Said {
    let at = crate::clock::rfc3339;
    let target = state.target.clone();
    match change {
        BreakerChange::Opened => Said::BreakerOpened {
            target,
            since: state.open.map_or(String::new(), |o| at(o.since)),
            failures: state.failures,
            error: state.last_error.clone().map(Box::new),
            waiting,
        },
        BreakerChange::Closed { since } => Said::BreakerClosed {
            target,
            since: at(since),
            waiting,
        },
    }
}

/// The reason recorded on an operation found to duplicate `earlier`.
pub fn duplicate_reason(key: &str, earlier: i64) -> Said {
    Said::Duplicate {
        key: key.to_string(),
        earlier,
    }
}

/// Deliveries handed out by the store's `Writer::claim_due`, now `in_flight`.
#[derive(Debug, Default)]
pub struct Claimed {
    pub due: Vec<DueDelivery>,
    /// When the next not-yet-due delivery becomes due, if any.
    pub next_due: Option<i64>,
}

/// An operation is `queued` while any delivery is unfinished, then
/// `delivered`, `failed` or `partial` by how its deliveries ended.
pub fn operation_status(deliveries: &[DeliveryStatus]) -> OpStatus {
    // A cancelled or expired delivery is over and did not reach its receiver.
    let finished = |s: &&DeliveryStatus| {
        matches!(
            s,
            DeliveryStatus::Delivered | DeliveryStatus::Failed | DeliveryStatus::Cancelled | DeliveryStatus::Expired
        )
    };
    if deliveries.is_empty() || !deliveries.iter().all(|s| finished(&s)) {
        return OpStatus::Queued;
    }
    let delivered = deliveries.iter().filter(|s| **s == DeliveryStatus::Delivered).count();
    match delivered {
        0 => OpStatus::Failed,
        n if n == deliveries.len() => OpStatus::Delivered,
        _ => OpStatus::Partial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryStatus::*;

    /// One notice per warning kind, for the operation's day.
    #[test]
    fn warning_notices_are_the_first_of_each_kind() {
        let op = NewOperation {
            warnings: vec![
                Warning::new(said::Said::Placeholder {
                    field: "a".into(),
                    value: "{{a}}".into(),
                }),
                Warning::new(said::Said::MissingField {
                    action: "b".into(),
                    field: "b".into(),
                }),
                Warning::new(said::Said::Placeholder {
                    field: "c".into(),
                    value: "{{c}}".into(),
                }),
            ],
            ..NewOperation::sample(86_400_000 + 5)
        };
        let notices: Vec<(&str, i64)> = op.warning_notices().iter().map(|(w, d)| (w.kind, *d)).collect();
        assert_eq!(notices, [("placeholder", 1), ("missing_field", 1)]);
    }

    /// The operation's status follows its deliveries.
    #[test]
    fn operation_status_from_deliveries() {
        assert_eq!(operation_status(&[Delivered, Delivered]), OpStatus::Delivered);
        assert_eq!(operation_status(&[Delivered, Retrying]), OpStatus::Queued);
        assert_eq!(operation_status(&[Pending]), OpStatus::Queued);
        assert_eq!(operation_status(&[InFlight, Failed]), OpStatus::Queued);
        assert_eq!(operation_status(&[Failed, Failed]), OpStatus::Failed);
        assert_eq!(operation_status(&[Delivered, Failed]), OpStatus::Partial);
    }
}
