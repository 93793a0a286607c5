//! What several instances sharing one PostgreSQL database need beyond the
//! statements both engines run: claims that lock rows and lease them, a
//! dedupe key that is unique rather than looked up, wake-ups across
//! instances, and one instance at a time for the cluster-wide duties.
//!
//! A claimed delivery carries its instance (`lease_owner`) and a lease
//! expiry. Every claim renews the instance's leases once a third of
//! [`LEASE_MS`] has passed, and the scheduler claims at least once a poll
//! interval, so a live instance's leases never lapse; a killed instance's
//! lapse, and any instance's next claim takes them over.

use crate::model::Claimed;
use crate::store::db::{Db, Dialect, LEASE_MS};
use crate::store::deliveries::{due_row, earliest, with_headers, DUE_COLUMNS};
use crate::store::StoreError;

/// [`DUE_CHANNEL`], as a literal for the statements that name it.
macro_rules! due_channel {
    () => {
        "hookrelay_due"
    };
}

/// The channel on which a commit that queued or rescheduled deliveries
/// wakes every instance's scheduler.
pub const DUE_CHANNEL: &str = due_channel!();

/// The writer's commit with its wake-up: one round trip, not two. A
/// NOTIFY is sent when its transaction commits, so it may come first.
pub(in crate::store) const NOTIFY_AND_COMMIT: &str = concat!("NOTIFY ", due_channel!(), "; COMMIT");

/// Advisory lock key of the cluster-wide duties (retention, the silence
/// watch, notifications): "hookrelay" in ASCII, folded into 63 bits.
pub const DUTIES_LOCK: i64 = 0x686f_6f6b_7265_6c61;

/// Advisory lock key that instances migrating the schema at once take turns on.
pub const MIGRATION_LOCK: i64 = DUTIES_LOCK + 1;

/// Whether a PostgreSQL error is the server or the connection failing
/// (so the same statement can work later), not the statement.
pub fn is_transient(err: &postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    match err.code() {
        // No server answer at all: the connection broke.
        None => true,
        Some(code) => {
            let code = code.code();
            // Connection exceptions, insufficient resources (disk full),
            // operator intervention (shutdown), serialization failures and
            // deadlocks between instances' batches.
            code.starts_with("08") || code.starts_with("53") || code.starts_with("57") || code.starts_with("40")
        }
    }
}

/// The server's own message, which `postgres::Error` keeps out of its text.
pub fn describe(err: &postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(err) {
            Some(source) => format!("{err}: {source}"),
            None => err.to_string(),
        },
    }
}

/// Takes the dedupe key for an operation being inserted, unless an
/// operation received since `since` holds it; returns that operation. The
/// key's row stays locked until this transaction ends, so a twin inserted
/// by another instance meanwhile waits and then finds it.
pub(in crate::store) fn claim_dedupe_key(
    conn: &Db,
    processing: &str,
    key: &str,
    since: i64,
    received_at: i64,
) -> Result<Option<i64>, StoreError> {
    let taken = conn.execute(
        "INSERT INTO dedupe_keys (processing, key, operation_id, received_at) VALUES (?1, ?2, 0, ?4)
         ON CONFLICT (processing, key) DO UPDATE SET operation_id = 0, received_at = excluded.received_at
             WHERE dedupe_keys.received_at < ?3",
        &[&processing, &key, &since, &received_at],
    )?;
    if taken == 1 {
        return Ok(None);
    }
    conn.query_opt(
        "SELECT operation_id FROM dedupe_keys WHERE processing = ?1 AND key = ?2",
        &[&processing, &key],
        |row| row.get(0),
    )
}

/// Names the operation that took a dedupe key with [`claim_dedupe_key`].
pub(in crate::store) fn own_dedupe_key(
    conn: &Db,
    processing: &str,
    key: &str,
    operation_id: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE dedupe_keys SET operation_id = ?3 WHERE processing = ?1 AND key = ?2",
        &[&processing, &key, &operation_id],
    )?;
    Ok(())
}

/// Forgets dedupe keys taken before `before`, with the operations pruned.
pub(in crate::store) fn prune_dedupe_keys(conn: &Db, before: i64) -> Result<(), StoreError> {
    conn.execute("DELETE FROM dedupe_keys WHERE received_at < ?1", &[&before])?;
    Ok(())
}

/// Queues a wake-up for every instance's scheduler, sent at commit.
pub(in crate::store) fn notify_due(conn: &Db) -> Result<(), StoreError> {
    if conn.dialect() == Dialect::Postgres {
        conn.batch(concat!("NOTIFY ", due_channel!()))?;
    }
    Ok(())
}

/// Gives back every delivery this instance has claimed. The scheduler
/// asks only when it holds none (its queues and its workers are empty),
/// so each one found is an orphan: a claim whose commit went through but
/// whose answer was lost with the connection, or a give-back that failed
/// while the database was away. Its lease, renewed with every claim,
/// would otherwise never lapse. How many.
pub(in crate::store) fn release_owned(conn: &Db) -> Result<usize, StoreError> {
    let Db::Postgres(pg) = conn else {
        return Ok(0);
    };
    let owner = pg.owner().to_string();
    conn.execute(
        "UPDATE deliveries SET status = CASE WHEN attempts > 0 THEN 'retrying' ELSE 'pending' END, lease_owner = NULL
         WHERE lease_owner = ?1 AND status = 'in_flight'",
        &[&owner],
    )
}

impl crate::store::Writer {
    /// On a shared database, gives back the deliveries this instance
    /// claimed but no longer holds ([`release_owned`]); call only while
    /// the scheduler holds none. Blocks: plain threads only.
    pub fn release_orphans(&self) -> Result<usize, StoreError> {
        self.run_blocking(false, release_owned)
    }
}

/// Claims up to `limit` due deliveries for this instance, skipping the
/// receivers in `skip`: rows another instance is claiming are passed over
/// (SKIP LOCKED), and deliveries whose lease lapsed are taken over.
pub(in crate::store) fn claim(conn: &Db, now: i64, limit: usize, skip: &[String]) -> Result<Claimed, StoreError> {
    let Db::Postgres(pg) = conn else {
        return Err(StoreError::WriterGone);
    };
    let owner = pg.owner();
    let lease_until = now + LEASE_MS;
    if now - pg.renewed_at() >= LEASE_MS / 3 {
        conn.execute(
            "UPDATE deliveries SET lease_until = ?2 WHERE lease_owner = ?1 AND status = 'in_flight'",
            &[&owner, &lease_until],
        )?;
        pg.renewed(now);
    }
    // Receivers are URLs without line breaks: one text, split by the server.
    let skip = skip.join("\n");
    // Only when a lease may have lapsed: most claims need not look.
    let lapsed = if now < pg.lapses_from() {
        Vec::new()
    } else {
        conn.query(
            &format!(
                "UPDATE deliveries SET lease_owner = ?2, lease_until = ?3, updated_at = ?1
                 WHERE id IN (SELECT id FROM deliveries
                              WHERE status = 'in_flight' AND lease_until < ?1 AND lease_owner <> ?2
                                AND target <> ALL (string_to_array(?5, E'\\n'))
                              ORDER BY lease_until LIMIT ?4 FOR UPDATE SKIP LOCKED)
                 RETURNING {DUE_COLUMNS}"
            ),
            &[&now, &owner, &lease_until, &(limit as i64), &skip],
            due_row,
        )?
    };
    if !lapsed.is_empty() {
        log::info!(
            "took over {} deliveries whose instance stopped renewing its lease",
            lapsed.len()
        );
    }
    let room = limit.saturating_sub(lapsed.len()) as i64;
    let mut rows = conn.query(
        &format!(
            "UPDATE deliveries SET status = 'in_flight', lease_owner = ?2, lease_until = ?3, updated_at = ?1
             WHERE id IN (SELECT id FROM deliveries
                          WHERE status IN ('pending', 'retrying') AND next_attempt_at <= ?1
                            AND target <> ALL (string_to_array(?5, E'\\n'))
                          ORDER BY next_attempt_at, id LIMIT ?4 FOR UPDATE SKIP LOCKED)
             RETURNING {DUE_COLUMNS}"
        ),
        &[&now, &owner, &lease_until, &room, &skip],
        due_row,
    )?;
    rows.extend(lapsed);
    rows.sort_by_key(|(due, _, at)| (*at, due.id));
    // When the next delivery is due, and when another instance's lease
    // lapses if it never renews it: one round trip.
    let (due_next, lapses_next): (Option<i64>, Option<i64>) = conn.query_one(
        "SELECT (SELECT MIN(next_attempt_at) FROM deliveries
                 WHERE status IN ('pending', 'retrying') AND target <> ALL (string_to_array(?1, E'\\n'))),
                (SELECT MIN(lease_until) FROM deliveries WHERE status = 'in_flight' AND lease_owner <> ?2)",
        &[&skip, &owner],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    // Leases only move later (renewals), and one taken after this lapses
    // a lease from its start: no sooner than half a lease from now, which
    // leaves room for clocks that disagree.
    pg.lapses_at(lapses_next.unwrap_or(i64::MAX).min(now + LEASE_MS / 2));
    Ok(Claimed {
        due: with_headers(rows)?,
        next_due: earliest(due_next, lapses_next),
    })
}

/// A session of its own for taking paced receivers' turns: a turn is a
/// small write that must be quick rather than durable (lost in a crash,
/// it allows one request early), so it stays out of the writer's
/// fsync'd batches, whose latency would come between a turn and its send.
pub struct Turns(Db);

impl Turns {
    /// Opens the session on `url`, its commits not waiting for the disk.
    pub(in crate::store) fn open(url: &str) -> Result<Turns, StoreError> {
        let db = Db::Postgres(Box::new(crate::store::db::Pg::connect(url)?));
        db.batch("SET synchronous_commit = off")?;
        Ok(Turns(db))
    }

    /// Takes `target`'s turn, one every `gap_us` for the whole cluster
    /// after a burst of `burst`, if it has come; otherwise says in how many
    /// µs it will. The database's clock is the one clock, so the instances'
    /// own need not agree. The same cell rate algorithm as `deliver::pace`.
    pub fn take(&self, target: &str, gap_us: i64, burst: u32) -> Result<Option<i64>, StoreError> {
        let slack_us = gap_us * i64::from(burst.max(1) - 1);
        let taken = self.0.execute(
            "INSERT INTO paces (target, next_at)
                 SELECT ?1, CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT) + CAST(?2 AS BIGINT)
             ON CONFLICT (target) DO UPDATE
                 SET next_at = GREATEST(paces.next_at, excluded.next_at - CAST(?2 AS BIGINT)) + CAST(?2 AS BIGINT)
                 WHERE paces.next_at <= excluded.next_at - CAST(?2 AS BIGINT) + CAST(?3 AS BIGINT)",
            &[&target, &gap_us, &slack_us],
        )?;
        if taken == 1 {
            return Ok(None);
        }
        self.0.query_opt(
            "SELECT next_at - CAST(?2 AS BIGINT) - CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)
             FROM paces WHERE target = ?1",
            &[&target, &slack_us],
            |row| row.get(0),
        )
    }
}

/// Whether delivery `id` is still `in_flight` under this instance's name.
pub(in crate::store) fn still_claimed(conn: &Db, id: i64) -> Result<bool, StoreError> {
    let Db::Postgres(pg) = conn else {
        return Ok(true);
    };
    conn.query_one(
        "SELECT EXISTS (SELECT 1 FROM deliveries WHERE id = ?1 AND status = 'in_flight' AND lease_owner = ?2)",
        &[&id, &pg.owner()],
        |row| row.get(0),
    )
}
