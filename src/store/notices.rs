//! Notifications queued in the database for the notifier to send: each
//! as a said thing, and warnings once a day per processing and kind. The
//! writer's statements, the expiry sweep and the receivers' breaker
//! changes queue them here.

use super::db::Db;
use super::StoreError;
use crate::model::said::Said;
use crate::model::{NewOperation, NotificationKind};

/// Queues a notification for each of the operation's warning notices that
/// is the first of its kind that day for its processing (the mark is kept
/// here, in `warning_days`; which warnings are notices is the model's rule).
pub(super) fn note_first_warnings(conn: &Db, op: &NewOperation, operation_id: i64) -> Result<(), StoreError> {
    for (warning, day) in op.warning_notices() {
        warn_once(
            conn,
            &op.processing,
            warning.kind,
            day,
            operation_id,
            &warning.said,
            op.received_at,
        )?;
    }
    Ok(())
}

/// Queues a warning notification unless one of `kind` was already queued
/// for `processing` on `day`; whether it was queued.
pub(super) fn warn_once(
    conn: &Db,
    processing: &str,
    kind: &str,
    day: i64,
    operation_id: i64,
    text: &Said,
    at: i64,
) -> Result<bool, StoreError> {
    let first = conn.execute(
        "INSERT INTO warning_days (processing, kind, day) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        &[&processing, &kind, &day],
    )?;
    warn_if_changed(conn, first, processing, operation_id, text, at)
}

/// Queues a warning when the mark just written (`changed` rows) was new:
/// how each once-only warning stays once-only. Whether it was queued.
pub(super) fn warn_if_changed(
    conn: &Db,
    changed: usize,
    processing: &str,
    operation_id: i64,
    text: &Said,
    at: i64,
) -> Result<bool, StoreError> {
    if changed == 1 {
        queue_notification(conn, NotificationKind::Warning, processing, operation_id, text, at)?;
    }
    Ok(changed == 1)
}

pub(super) fn queue_notification(
    conn: &Db,
    kind: NotificationKind,
    processing: &str,
    operation_id: i64,
    text: &Said,
    at: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO notifications (created_at, kind, processing, operation_id, text) VALUES (?1, ?2, ?3, ?4, ?5)",
        &[&at, &kind.as_str(), &processing, &operation_id, &text.store()],
    )?;
    Ok(())
}

/// Queues, at most once a day per processing and action, the notice that
/// an action's long-lived token lapses soon: about a credential, not an
/// operation (operation 0), so it reads like a receiver's notice. Whether
/// it was queued.
pub(super) fn remind_token(
    conn: &Db,
    processing: &str,
    action: &str,
    expires: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let kind = format!("token:{action}");
    let first = conn.execute(
        "INSERT INTO warning_days (processing, kind, day) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        &[&processing, &kind, &crate::model::notice_day(now)],
    )?;
    if first == 1 {
        let said = Said::TokenLapsing {
            action: action.to_string(),
            expires: crate::clock::rfc3339(expires),
        };
        queue_notification(conn, NotificationKind::Receiver, processing, 0, &said, now)?;
    }
    Ok(first == 1)
}

impl super::Writer {
    /// Queues the daily notice that an action's long-lived token lapses at
    /// `expires` (see [`remind_token`]). Blocks: plain threads only.
    pub fn remind_token(&self, processing: String, action: String, expires: i64) -> Result<bool, StoreError> {
        self.run_blocking(false, move |conn| {
            remind_token(conn, &processing, &action, expires, crate::clock::now_ms())
        })
    }
}
