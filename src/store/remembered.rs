//! What actions' answers kept (a Bitrix24 lead's id, an amoCRM lead's),
//! remembered under the action's `processing/action` and the event's
//! `remember` key, so a later event's request can `recall` it: the paid
//! visit updates the lead the booking made. Written with the attempt that
//! kept it, in the same transaction; read when a request carrying a
//! recall goes out. Kept as long as the database: one short row per event.

use super::db::Db;
use super::{StoreError, Writer};

/// Remembers `value` as `name`'s for `key` (the newest wins).
pub(super) fn remember(conn: &Db, name: &str, key: &str, value: &str, at: i64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO remembered (name, key, value, at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name, key) DO UPDATE SET value = excluded.value, at = excluded.at",
        &[&name, &key, &value, &at],
    )?;
    Ok(())
}

/// What `name` remembered for `key`, if anything.
pub(super) fn recalled(conn: &Db, name: &str, key: &str) -> Result<Option<String>, StoreError> {
    conn.query_opt(
        "SELECT value FROM remembered WHERE name = ?1 AND key = ?2",
        &[&name, &key],
        |row| row.get(0),
    )
}

impl Writer {
    /// What `name` remembered for `key`. Blocks: plain threads only.
    pub fn recalled(&self, name: String, key: String) -> Result<Option<String>, StoreError> {
        self.run_blocking(false, move |conn| recalled(conn, &name, &key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_value_is_recalled() {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open_for_writing(&super::super::Location::File(dir.path().join("r.db"))).unwrap();
        assert_eq!(recalled(&conn, "bookings/lead", "A1").unwrap(), None);
        remember(&conn, "bookings/lead", "A1", "101", 1).unwrap();
        remember(&conn, "bookings/lead", "A2", "102", 2).unwrap();
        remember(&conn, "bookings/lead", "A1", "103", 3).unwrap();
        assert_eq!(recalled(&conn, "bookings/lead", "A1").unwrap().as_deref(), Some("103"));
        assert_eq!(recalled(&conn, "other/lead", "A2").unwrap(), None);
    }
}
