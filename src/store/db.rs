//! One database connection, SQLite or PostgreSQL, behind the few calls the
//! store makes: the statements are written once, in the SQL both engines
//! read, with `?1`-style placeholders (rewritten to `$1` for PostgreSQL).
//! What only one engine has (SQLite's pragmas and search file,
//! PostgreSQL's row locks and advisory locks) is asked for by [`Db::dialect`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use super::StoreError;
use crate::model::said::Said;

/// SQL statements run through any [`Db`] of this process (those its
/// triggers run are SQLite's, not counted): `/metrics`
/// `hookrelay_sql_statements_total`, so that the benchmark can say how
/// many statements a webhook costs.
pub static STATEMENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn counted() {
    STATEMENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Which engine a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A value bound to a placeholder: anything both drivers can send.
pub trait Param: Sync {
    /// The value as rusqlite binds it.
    fn lite(&self) -> &dyn rusqlite::ToSql;
    /// The value as the postgres client binds it.
    fn pg(&self) -> &(dyn postgres::types::ToSql + Sync);
}

/// Only the types the schema stores (64-bit integers, text, bytes) are
/// parameters: a `u32` would reach PostgreSQL as an OID.
macro_rules! params {
    ($($t:ty),*) => {$(
        impl Param for $t {
            fn lite(&self) -> &dyn rusqlite::ToSql {
                self
            }
            fn pg(&self) -> &(dyn postgres::types::ToSql + Sync) {
                self
            }
        }
    )*};
}
params!(
    i64,
    Option<i64>,
    String,
    Option<String>,
    &str,
    Option<&str>,
    Vec<u8>,
    Option<Vec<u8>>,
    &[u8]
);

/// A value for a statement built at run time (a filter's conditions, a
/// copied row): a typed NULL is still typed, as PostgreSQL needs.
#[derive(Debug, Clone)]
pub enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Int(Some(n))
    }
}

impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::Text(Some(text))
    }
}

impl Param for Value {
    fn lite(&self) -> &dyn rusqlite::ToSql {
        match self {
            Value::Int(n) => n,
            Value::Text(text) => text,
            Value::Bytes(bytes) => bytes,
        }
    }
    fn pg(&self) -> &(dyn postgres::types::ToSql + Sync) {
        match self {
            Value::Int(n) => n,
            Value::Text(text) => text,
            Value::Bytes(bytes) => bytes,
        }
    }
}

/// A column type both drivers can read.
pub trait Column: Sized {
    /// Reads column `index` of a SQLite row.
    fn from_lite(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Self>;
    /// Reads column `index` of a PostgreSQL row.
    fn from_pg(row: &postgres::Row, index: usize) -> Result<Self, postgres::Error>;
}

/// The same types as [`Param`], and booleans (what `x IS NULL` gives).
macro_rules! columns {
    ($($t:ty),*) => {$(
        impl Column for $t {
            fn from_lite(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Self> {
                row.get(index)
            }
            fn from_pg(row: &postgres::Row, index: usize) -> Result<Self, postgres::Error> {
                row.try_get(index)
            }
        }
    )*};
}
columns!(i64, Option<i64>, String, Option<String>, Vec<u8>, Option<Vec<u8>>, bool);

/// What was said, from the text column it is kept in: its JSON, or the
/// English text rows written before kinds were kept hold.
impl Column for Option<Said> {
    fn from_lite(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Self> {
        Ok(row.get::<_, Option<String>>(index)?.map(|text| Said::read(&text)))
    }
    fn from_pg(row: &postgres::Row, index: usize) -> Result<Self, postgres::Error> {
        Ok(row.try_get::<_, Option<String>>(index)?.map(|text| Said::read(&text)))
    }
}

/// One result row of either engine.
pub enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Postgres(&'a postgres::Row),
}

impl Row<'_> {
    /// Column `index`, as `T`.
    pub fn get<T: Column>(&self, index: usize) -> Result<T, StoreError> {
        Ok(match self {
            Row::Sqlite(row) => T::from_lite(row, index)?,
            Row::Postgres(row) => T::from_pg(row, index)?,
        })
    }
}

/// A connection to either engine.
pub enum Db {
    Sqlite(Connection),
    Postgres(Box<Pg>),
}

impl Db {
    /// Which engine this is.
    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The SQLite connection, for what only SQLite has (None on PostgreSQL).
    pub fn sqlite(&self) -> Option<&Connection> {
        match self {
            Db::Sqlite(conn) => Some(conn),
            Db::Postgres(_) => None,
        }
    }

    /// Runs one statement; how many rows it changed.
    pub fn execute(&self, sql: &str, params: &[&dyn Param]) -> Result<usize, StoreError> {
        counted();
        match self {
            Db::Sqlite(conn) => Ok(conn
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(params.iter().map(|p| p.lite())))?),
            Db::Postgres(pg) => pg.with(sql, |client, statement| {
                let params: Vec<_> = params.iter().map(|p| p.pg()).collect();
                Ok(client.execute(statement, &params)? as usize)
            }),
        }
    }

    /// Every row of a query, each mapped by `map`.
    pub fn query<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        mut map: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        counted();
        match self {
            Db::Sqlite(conn) => {
                let mut statement = conn.prepare_cached(sql)?;
                let mut rows = statement.query(rusqlite::params_from_iter(params.iter().map(|p| p.lite())))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    out.push(map(&Row::Sqlite(row))?);
                }
                Ok(out)
            }
            Db::Postgres(pg) => {
                let rows = pg.with(sql, |client, statement| {
                    let params: Vec<_> = params.iter().map(|p| p.pg()).collect();
                    Ok(client.query(statement, &params)?)
                })?;
                rows.iter().map(|row| map(&Row::Postgres(row))).collect()
            }
        }
    }

    /// Hands each row of a query to `each` as it arrives, without
    /// collecting them (an export of a million rows).
    pub fn for_each(
        &self,
        sql: &str,
        params: &[&dyn Param],
        mut each: impl FnMut(&Row<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        counted();
        match self {
            Db::Sqlite(conn) => {
                let mut statement = conn.prepare(sql)?;
                let mut rows = statement.query(rusqlite::params_from_iter(params.iter().map(|p| p.lite())))?;
                while let Some(row) = rows.next()? {
                    each(&Row::Sqlite(row))?;
                }
                Ok(())
            }
            Db::Postgres(pg) => pg.with(sql, |client, statement| {
                use postgres::fallible_iterator::FallibleIterator;
                let mut rows = client.query_raw(statement, params.iter().map(|p| p.pg()))?;
                while let Some(row) = rows.next()? {
                    each(&Row::Postgres(&row))?;
                }
                Ok(())
            }),
        }
    }

    /// The first row of a query, if any.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        map: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        // Statements here ask for one row (a key, LIMIT 1, an aggregate).
        Ok(self.query(sql, params, map)?.into_iter().next())
    }

    /// The first row of a query that always returns one (an aggregate, a
    /// RETURNING of a row known to exist).
    pub fn query_one<T>(
        &self,
        sql: &str,
        params: &[&dyn Param],
        map: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.query_opt(sql, params, map)?
            .ok_or_else(|| StoreError::Corrupt(format!("no row from: {}", first_line(sql))))
    }

    /// Begins a transaction that will write. On SQLite it takes the write
    /// lock now (`BEGIN IMMEDIATE`), waiting for it under the busy timeout:
    /// a deferred transaction that has already read cannot wait for the
    /// lock when its first write needs it, and fails at once with "database
    /// is locked" if the checkpoint thread or another process holds it.
    pub fn begin_writing(&self) -> Result<(), StoreError> {
        self.batch(match self.dialect() {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        })
    }

    /// Runs `work` in one transaction that writes ([`Db::begin_writing`]):
    /// committed if it succeeds, rolled back if it fails. For the command
    /// line's own connections; the writer thread batches its own.
    pub fn write_transaction<T>(&self, work: impl FnOnce(&Db) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.begin_writing()?;
        match work(self) {
            Ok(done) => {
                self.batch("COMMIT")?;
                Ok(done)
            }
            Err(err) => {
                let _ = self.batch("ROLLBACK");
                Err(err)
            }
        }
    }

    /// Runs statements without parameters or results (BEGIN, SAVEPOINT, DDL).
    pub fn batch(&self, sql: &str) -> Result<(), StoreError> {
        counted();
        match self {
            Db::Sqlite(conn) => {
                // Cached: the writer runs its savepoint statements per job.
                conn.prepare_cached(sql)?.execute([])?;
                Ok(())
            }
            Db::Postgres(pg) => {
                // Ends of a transaction first: a session that broke after
                // BEGIN must not be replaced by one where COMMIT succeeds
                // on nothing.
                // The store writes these statements in capitals, a COMMIT
                // last (the writer's may follow its NOTIFY).
                let ends = sql.ends_with("COMMIT") || sql == "ROLLBACK";
                let result = pg.client(|client| Ok(client.batch_execute(sql)?));
                if sql.starts_with("BEGIN") {
                    pg.in_transaction.set(result.is_ok());
                } else if ends {
                    pg.in_transaction.set(false);
                }
                result
            }
        }
    }
}

fn first_line(sql: &str) -> &str {
    sql.trim().lines().next().unwrap_or_default()
}

/// How long connecting to PostgreSQL may take before it counts as down.
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a claimed delivery stays an instance's without renewal
/// (PostgreSQL's leases, `postgres/claims.rs`).
pub const LEASE_MS: i64 = 30_000;

/// A PostgreSQL connection that reconnects by itself: after the server
/// restarts, the next call opens a new session. Within a transaction it
/// does not: a call that finds the session gone fails, so a transaction
/// never silently continues (or commits) in a new one.
pub struct Pg {
    url: String,
    /// This instance, as the owner of the deliveries it claims.
    owner: String,
    /// Whether a transaction was begun on the current session and not ended.
    in_transaction: Cell<bool>,
    /// When this instance's leases were last renewed (in the transaction
    /// under way: it counts once committed).
    renewed_at: Cell<i64>,
    /// No other instance's lease can have lapsed before this time (ms),
    /// as the last claim saw them: until then a claim does not look.
    lapses_from: Cell<i64>,
    /// Until when every claim this instance holds is surely leased to it:
    /// the last committed renewal plus the lease. Read by the workers.
    leased_until: Arc<AtomicI64>,
    client: RefCell<Option<postgres::Client>>,
    /// Prepared statements of the current session, by their SQLite text.
    statements: RefCell<HashMap<String, postgres::Statement>>,
}

impl Pg {
    /// Connects to `url` (`postgres://user@host/db`).
    pub fn connect(url: &str) -> Result<Pg, StoreError> {
        let pg = Pg {
            url: url.to_string(),
            owner: instance_name(),
            in_transaction: Cell::new(false),
            renewed_at: Cell::new(0),
            lapses_from: Cell::new(0),
            leased_until: Arc::new(AtomicI64::new(0)),
            client: RefCell::new(None),
            statements: RefCell::new(HashMap::new()),
        };
        pg.client(|_| Ok(()))?;
        Ok(pg)
    }

    /// The instance's name on the deliveries it claims.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// When this instance last renewed its leases.
    pub fn renewed_at(&self) -> i64 {
        self.renewed_at.get()
    }

    /// Notes that this instance's leases were renewed at `now`.
    pub fn renewed(&self, now: i64) {
        self.renewed_at.set(now);
    }

    /// When the earliest lease another instance holds may lapse.
    pub fn lapses_from(&self) -> i64 {
        self.lapses_from.get()
    }

    /// Notes when the earliest lease another instance holds may lapse.
    pub fn lapses_at(&self, at: i64) {
        self.lapses_from.set(at);
    }

    /// After a commit: the renewal in it holds.
    pub fn committed(&self) {
        let until = self.renewed_at.get() + LEASE_MS;
        self.leased_until.fetch_max(until, Ordering::Relaxed);
    }

    /// The workers' view of [`Pg::committed`]'s time.
    pub fn leased_until(&self) -> Arc<AtomicI64> {
        Arc::clone(&self.leased_until)
    }

    /// The session's client, opened anew if there is none or it broke.
    fn client<T>(&self, run: impl FnOnce(&mut postgres::Client) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut slot = self.client.borrow_mut();
        if slot.as_ref().is_none_or(|client| client.is_closed()) {
            // The client notices a broken session only during a call, so the
            // call that broke is the one that fails; this guard keeps any
            // later statement of the same transaction from a fresh session.
            if self.in_transaction.replace(false) {
                return Err(StoreError::Commit(
                    "the database session ended in the middle of a transaction".into(),
                ));
            }
            self.statements.borrow_mut().clear();
            *slot = None;
            *slot = Some(connect_pg(&self.url)?);
        }
        let Some(client) = slot.as_mut() else {
            return Err(StoreError::WriterGone);
        };
        run(client)
    }

    /// Every row of a query whose parameters only PostgreSQL takes (arrays,
    /// for a statement that writes many rows), each given with its type,
    /// each row mapped by `map`. `sql` is PostgreSQL's own, with `$N`
    /// placeholders, so it is not converted on every call. Not prepared:
    /// PostgreSQL plans it for these values each time, in the same round
    /// trip. A prepared statement's generic plan cannot know how long the
    /// arrays are, and one made while a table was small keeps scanning it
    /// whole as it grows (seen: 14 ms instead of 1.3 ms per batch of
    /// attempts).
    pub fn query_typed<T>(
        &self,
        sql: &str,
        params: &[(&(dyn postgres::types::ToSql + Sync), postgres::types::Type)],
        mut map: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        counted();
        let rows = self.client(|client| Ok(client.query_typed(sql, params)?))?;
        rows.iter().map(|row| map(&Row::Postgres(row))).collect()
    }

    /// Runs `run` with the prepared form of `sql`.
    fn with<T>(
        &self,
        sql: &str,
        run: impl FnOnce(&mut postgres::Client, &postgres::Statement) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.client(|client| {
            let cached = self.statements.borrow().get(sql).cloned();
            let statement = match cached {
                Some(statement) => statement,
                None => {
                    let statement = client.prepare(&placeholders(sql))?;
                    self.statements.borrow_mut().insert(sql.to_string(), statement.clone());
                    statement
                }
            };
            run(client, &statement)
        })
    }
}

/// A name for this instance's claims: the host, the process and a random
/// part, so that a restarted process never mistakes its predecessor's
/// claims for its own.
fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut random = [0u8; 4];
    let _ = getrandom::fill(&mut random);
    format!(
        "{}/{}/{:08x}",
        host.trim(),
        std::process::id(),
        u32::from_be_bytes(random)
    )
}

impl Drop for Pg {
    /// The client's own drop blocks on its runtime, which panics on an
    /// async worker (where the last handle to a reader can go): there, the
    /// session is closed on a thread of its own.
    fn drop(&mut self) {
        if let Some(client) = self.client.get_mut().take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new()
                    .name("pg-close".into())
                    .spawn(move || drop(client));
            }
        }
    }
}

/// Opens a session to `url`.
pub fn connect_pg(url: &str) -> Result<postgres::Client, StoreError> {
    let (url, tls) = super::postgres::tls::connector(url)?;
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Unusable(format!("storage.url: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(PG_CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("hookrelay");
    }
    Ok(config.connect(tls)?)
}

/// `?1` placeholders as PostgreSQL's `$1`.
fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// A stored count as the model's `u32` (the store only writes small ones).
pub(super) fn count(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars() {
        assert_eq!(
            placeholders("SELECT a FROM t WHERE b = ?1 AND c IN (?2, ?12) AND d = '?'"),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $12) AND d = '?'"
        );
    }
}
