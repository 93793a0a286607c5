//! An operation as `history` and `history --follow` print it: a table row
//! in text, an object in JSON.

use serde_json::json;

use super::rfc3339;
use crate::clock;
use crate::model::said::Lang;
use crate::store::OperationSummary;

/// The table's header line.
pub const HEADER: &str = "      ID  RECEIVED                 PROCESSING            STATUS     SENT  REASON";

/// One operation as a table row, its time in `tz`, its words in `lang`. Its reason, or for
/// one that failed in delivery, why ("answered 200, but the body says …").
pub fn row(op: &OperationSummary, tz: &jiff::tz::TimeZone, lang: Lang) -> String {
    format!(
        "{:>8}  {:<23}  {:<20}  {:<9}  {:>4}  {}",
        op.id,
        clock::local(op.received_at, tz),
        op.processing,
        op.status.as_str(),
        format!("{}/{}", op.delivered, op.deliveries),
        op.reason
            .as_ref()
            .or(op.failure.as_ref())
            .map(|s| s.say(lang))
            .unwrap_or_default()
    )
}

/// One operation as `history --json` prints it (stable keys).
pub fn to_json(op: &OperationSummary) -> serde_json::Value {
    json!({
        "id": op.id,
        "processing": op.processing,
        "received_at": rfc3339(op.received_at),
        "status": op.status.as_str(),
        "reason": op.reason.as_ref().map(ToString::to_string),
        "failure": op.failure.as_ref().map(ToString::to_string),
        "deliveries": op.deliveries,
        "delivered": op.delivered,
    })
}
