//! Operations received in a time range, as a range of ids, on SQLite.
//!
//! A listing bounded by dates ("yesterday's paid visits") walks a
//! processing's operations newest first by id; without an id bound it
//! walked through every operation received since the range's end first
//! (today's, on 10 M operations over 30 days: 1.5 s cold, 54 ms warm,
//! BENCHMARKS.md). An index on the time would cost every acknowledgement
//! a write. Instead, ids follow the order webhooks are received in: one
//! writer numbers them as they come, a moment after their time is taken.
//! So the first id received at or after a time is found by a binary search
//! on the primary key (a few dozen lookups), and the listing's id range
//! comes from it, with the exact time conditions kept as well.
//!
//! What it assumes: an operation is never numbered more than [`DISORDER_MS`]
//! out of its time's order. A webhook waits for the writer for far less;
//! a system clock stepped back by more than that could hide operations
//! near the step from a date-bounded list (the console's lists and
//! `history --since` alike; `export` reads by time, not by id).

use crate::store::db::Db;
use crate::store::StoreError;

/// How far out of time order ids may be: far more than a webhook ever waits
/// between being received and being numbered.
pub(in crate::store) const DISORDER_MS: i64 = 5 * 60_000;

/// The first id at or after `id` and its time, if any.
fn next(conn: &Db, id: i64) -> Result<Option<(i64, i64)>, StoreError> {
    conn.query_opt(
        "SELECT id, received_at FROM operations WHERE id >= ?1 ORDER BY id LIMIT 1",
        &[&id],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
}

/// The first id whose operation was received at or after `at`, were ids
/// in time order (see the module's docs for why that is close enough);
/// `None` when none was.
pub(in crate::store) fn first_received(conn: &Db, at: i64) -> Result<Option<i64>, StoreError> {
    let Some((first, first_at)) = next(conn, 0)? else {
        return Ok(None);
    };
    if first_at >= at {
        return Ok(Some(first));
    }
    let last: i64 = conn.query_one("SELECT MAX(id) FROM operations", &[], |row| row.get(0))?;
    let reached = |id: i64| -> Result<bool, StoreError> { Ok(next(conn, id)?.is_some_and(|(_, t)| t >= at)) };
    if !reached(last)? {
        return Ok(None);
    }
    // The smallest id whose next operation was received at or after `at`.
    let (mut low, mut high) = (first + 1, last);
    while low < high {
        let middle = low + (high - low) / 2;
        if reached(middle)? {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    Ok(next(conn, low)?.map(|(id, _)| id))
}

/// The ids to walk for operations received from `since` to before `until`:
/// at least the first, and below the second.
pub(in crate::store) fn id_range(
    conn: &Db,
    since: Option<i64>,
    until: Option<i64>,
) -> Result<(Option<i64>, Option<i64>), StoreError> {
    let from = match since {
        // None received since: past every id.
        Some(since) => Some(first_received(conn, since.saturating_sub(DISORDER_MS))?.unwrap_or(i64::MAX)),
        None => None,
    };
    let below = match until {
        Some(until) => first_received(conn, until.saturating_add(DISORDER_MS))?,
        None => None,
    };
    Ok((from, below))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id range holds every operation of the time range, gaps
    /// (pruned ids) and a little disorder included.
    #[test]
    fn ids_bound_a_time_range() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Db::Sqlite(crate::store::open_file_for_writing(&dir.path().join("t.db")).unwrap());
        // Ids 1..=1000 a minute apart, with gaps, and two out of order by 2 minutes.
        for id in (1..=1000i64).filter(|id| id % 7 != 0) {
            let mut at = id * 60_000;
            if id == 500 {
                at -= 120_000;
            }
            if id == 300 {
                at += 120_000;
            }
            conn.execute(
                "INSERT INTO operations (id, processing, received_at, remote_addr, method, raw_query, raw_body,
                     charset, fields, warnings, status, updated_at)
                 VALUES (?1, 'p', ?2, '', 'GET', X'', X'', 'utf-8', '{}', '[]', 'delivered', ?2)",
                &[&id, &at],
            )
            .unwrap();
        }
        let within = |since: i64, until: i64| -> Vec<i64> {
            let (from, below) = id_range(&conn, Some(since), Some(until)).unwrap();
            conn.query(
                "SELECT id FROM operations WHERE received_at >= ?1 AND received_at < ?2 ORDER BY id",
                &[&since, &until],
                |row| row.get::<i64>(0),
            )
            .unwrap()
            .into_iter()
            .inspect(|id| {
                assert!(
                    from.is_none_or(|f| *id >= f) && below.is_none_or(|b| *id < b),
                    "{id} outside {from:?}..{below:?}"
                )
            })
            .collect()
        };
        assert_eq!(within(498 * 60_000, 499 * 60_000), [498, 500], "500 came early");
        assert_eq!(within(302 * 60_000, 302 * 60_000 + 1), [300, 302], "300 came late");
        assert_eq!(within(0, 3 * 60_000).len(), 2);
        assert_eq!(within(2_000 * 60_000, 3_000 * 60_000), Vec::<i64>::new());
        let (from, below) = id_range(&conn, Some(2_000 * 60_000), None).unwrap();
        assert_eq!((from, below), (Some(i64::MAX), None), "none since");
        let (from, below) = id_range(&conn, Some(0), Some(100 * 60_000)).unwrap();
        assert_eq!(from, Some(1));
        assert!(below.is_some_and(|b| (100..=107).contains(&b)), "{below:?}");
    }
}
