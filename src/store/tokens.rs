//! OAuth2 tokens of the integrations that sign in (amoCRM): the pair
//! kept per integration, and the lease that lets one instance at a time
//! refresh it. A refresh token is single-use and every refresh rotates the
//! pair, so the new pair is written (and committed) before its access
//! token is first used, and a refresh starts only under the lease, taken
//! for the refresh token it will spend: a second instance sees the lease,
//! or finds the token already spent, and reads the new pair instead.

use super::db::Db;
use super::{open_existing, Location, StoreError, Writer};

/// An access token, the refresh token that replaces it, and their times.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenPair {
    pub access: String,
    pub refresh: String,
    /// When the access token stops working (ms since the epoch).
    pub expires_at: i64,
    /// When the pair was obtained.
    pub obtained_at: i64,
}

impl std::fmt::Debug for TokenPair {
    /// Never the tokens themselves.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TokenPair {{ expires_at: {}, obtained_at: {} }}",
            self.expires_at, self.obtained_at
        )
    }
}

pub(super) fn get(conn: &Db, integration: &str) -> Result<Option<TokenPair>, StoreError> {
    conn.query_opt(
        "SELECT access_token, refresh_token, expires_at, obtained_at FROM oauth_tokens WHERE integration = ?1",
        &[&integration],
        |row| {
            Ok(TokenPair {
                access: row.get(0)?,
                refresh: row.get(1)?,
                expires_at: row.get(2)?,
                obtained_at: row.get(3)?,
            })
        },
    )
}

/// Keeps `pair` as the integration's, and gives its lease back.
pub(super) fn save(conn: &Db, integration: &str, pair: &TokenPair) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO oauth_tokens (integration, access_token, refresh_token, expires_at, obtained_at, refreshing_until)
         VALUES (?1, ?2, ?3, ?4, ?5, NULL)
         ON CONFLICT (integration) DO UPDATE SET access_token = excluded.access_token,
             refresh_token = excluded.refresh_token, expires_at = excluded.expires_at,
             obtained_at = excluded.obtained_at, refreshing_until = NULL",
        &[
            &integration,
            &pair.access,
            &pair.refresh,
            &pair.expires_at,
            &pair.obtained_at,
        ],
    )?;
    Ok(())
}

/// Takes the lease to spend `refresh` until `until`, if it is still the
/// kept refresh token and no one else holds a lease at `now`.
pub(super) fn lease(conn: &Db, integration: &str, refresh: &str, now: i64, until: i64) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE oauth_tokens SET refreshing_until = ?4
         WHERE integration = ?1 AND refresh_token = ?2 AND (refreshing_until IS NULL OR refreshing_until <= ?3)",
        &[&integration, &refresh, &now, &until],
    )? == 1)
}

/// Gives the lease back without a new pair (the refresh failed).
pub(super) fn release(conn: &Db, integration: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE oauth_tokens SET refreshing_until = NULL WHERE integration = ?1",
        &[&integration],
    )?;
    Ok(())
}

impl Writer {
    /// The integration's kept pair, if it was ever authorized.
    pub fn token(&self, integration: String) -> Result<Option<TokenPair>, StoreError> {
        self.run_blocking(false, move |conn| get(conn, &integration))
    }

    /// Keeps a new pair, committed when this returns.
    pub fn save_token(&self, integration: String, pair: TokenPair) -> Result<(), StoreError> {
        self.run_blocking(false, move |conn| save(conn, &integration, &pair))
    }

    /// See [`lease`].
    pub fn lease_token(&self, integration: String, refresh: String, now: i64, until: i64) -> Result<bool, StoreError> {
        self.run_blocking(false, move |conn| lease(conn, &integration, &refresh, now, until))
    }

    /// See [`release`].
    pub fn release_token(&self, integration: String) -> Result<(), StoreError> {
        self.run_blocking(false, move |conn| release(conn, &integration))
    }
}

/// Keeps a pair with no daemon running (`hookrelay amocrm authorize`).
pub fn save_token(location: impl Into<Location>, integration: &str, pair: &TokenPair) -> Result<(), StoreError> {
    let conn = open_existing(&location.into())?;
    save(&conn, integration, pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One lease at a time, only for the refresh token still kept; a new
    /// pair ends the lease.
    #[test]
    fn one_refresh_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::super::open_for_writing(&Location::File(dir.path().join("t.db"))).unwrap();
        assert_eq!(get(&conn, "amo").unwrap(), None);
        let first = TokenPair {
            access: "a1".into(),
            refresh: "r1".into(),
            expires_at: 10_000,
            obtained_at: 0,
        };
        save(&conn, "amo", &first).unwrap();
        assert!(lease(&conn, "amo", "r1", 100, 30_100).unwrap());
        assert!(!lease(&conn, "amo", "r1", 200, 30_200).unwrap(), "held by another");
        assert!(
            lease(&conn, "amo", "r1", 30_100, 60_100).unwrap(),
            "an expired lease can be taken"
        );
        let second = TokenPair {
            access: "a2".into(),
            refresh: "r2".into(),
            expires_at: 20_000,
            obtained_at: 10_000,
        };
        save(&conn, "amo", &second).unwrap();
        assert_eq!(get(&conn, "amo").unwrap(), Some(second));
        assert!(
            !lease(&conn, "amo", "r1", 30_200, 60_200).unwrap(),
            "a spent refresh token"
        );
        assert!(lease(&conn, "amo", "r2", 30_200, 60_200).unwrap());
        release(&conn, "amo").unwrap();
        assert!(lease(&conn, "amo", "r2", 30_300, 60_300).unwrap());
        assert!(!format!("{:?}", first).contains("a1"));
    }
}
