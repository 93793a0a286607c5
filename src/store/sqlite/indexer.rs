//! The search index's own thread: it reads what the writer stored and
//! indexes it into the search file (store/sqlite/search.rs), a step at a time.
//!
//! Pruned operations' rows stay in the index (an FTS5 delete per pruned
//! operation made pruning twice as slow); they match nothing, since a
//! search joins the index to `operations`. When they outnumber the rest,
//! or when the index is ahead of the database (restored from an older
//! backup), the index is emptied and filled again from the oldest
//! operation; meanwhile a search finds only what is indexed again.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::sqlite::search::{index_text, open_search};
use crate::store::{open_existing_file, StoreError, SIDE_CACHE_KIB};

/// How often new operations are looked for: a stored operation is
/// searchable within about this.
const EVERY: Duration = Duration::from_millis(100);
/// Most operations indexed in one transaction.
const STEP: usize = 1_000;
/// How often the index is compared with what pruning left.
const STALE_CHECK: Duration = Duration::from_secs(600);
/// After a failed step (the database busy or gone), the pause before the next.
const AFTER_FAILURE: Duration = Duration::from_secs(5);

/// `progress` keys: the newest operation id indexed, and how many
/// operations were indexed (pruned ones included).
const THROUGH: &str = "through";
const ROWS: &str = "rows";

/// The running indexing thread.
pub struct Indexer {
    stop: Sender<()>,
    handle: JoinHandle<()>,
}

impl Indexer {
    /// Stops the thread after the step in progress.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.handle.join();
    }
}

/// Opens the search file beside `database` and starts indexing into it.
pub fn start_indexer(database: &Path) -> Result<Indexer, StoreError> {
    let mut index = Index::open(database)?;
    let (stop, stopped) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("store-search".into())
        .spawn(move || {
            yield_to_others();
            index_until_stopped(&mut index, &stopped)
        })
        .map_err(|e| StoreError::Commit(format!("cannot start the search index thread: {e}")))?;
    Ok(Indexer { stop, handle })
}

/// Lowers this thread's CPU priority (nice 10). Indexing can always wait;
/// under load it took 15 % of the daemon's CPU from acknowledging webhooks
/// on a two-core machine (perf, BENCHMARKS.md session 6). Linux's nice
/// value is per thread; elsewhere, or refused, the thread runs as is.
fn yield_to_others() {
    // SAFETY: who = 0 names the calling thread; no memory is touched.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
    if result != 0 {
        log::debug!(
            "search index: cannot lower its priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn index_until_stopped(index: &mut Index, stopped: &mpsc::Receiver<()>) {
    loop {
        let wait = match index.step(STEP) {
            Ok(indexed) if indexed == STEP => Duration::ZERO,
            Ok(_) => EVERY,
            Err(err) => {
                log::warn!("search index: {err}; trying again in {} s", AFTER_FAILURE.as_secs());
                AFTER_FAILURE
            }
        };
        match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Indexes everything stored so far, now, rather than within the next
/// tenth of a second; how many operations it indexed.
pub fn index_search(database: &Path) -> Result<usize, StoreError> {
    let mut index = Index::open(database)?;
    let mut total = 0;
    loop {
        let indexed = index.step(STEP)?;
        total += indexed;
        if indexed < STEP {
            return Ok(total);
        }
    }
}

/// The two connections indexing needs: one reading the database, one
/// writing the search file.
struct Index {
    database: Connection,
    search: Connection,
    /// When the index was last compared with what pruning left.
    checked: Option<Instant>,
}

impl Index {
    fn open(database: &Path) -> Result<Self, StoreError> {
        let index = Index {
            database: open_existing_file(database)?,
            search: open_search(database)?,
            checked: None,
        };
        // Each step reads the newest rows and writes a new segment: a small
        // cache serves that (SQLite's default is 2 MB per connection).
        for conn in [&index.database, &index.search] {
            conn.pragma_update(None, "cache_size", -SIDE_CACHE_KIB)?;
        }
        Ok(index)
    }

    /// Indexes up to `limit` operations past the last one indexed, oldest
    /// first; how many it indexed.
    fn step(&mut self, limit: usize) -> Result<usize, StoreError> {
        let through = self.start_over_if_stale()?;
        let stored: Vec<(i64, String)> = self
            .database
            .prepare_cached("SELECT id, fields FROM operations WHERE id > ?1 ORDER BY id LIMIT ?2")?
            .query_map(params![through, limit as i64], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let Some(&(last, _)) = stored.last() else {
            return Ok(0);
        };
        let tx = self
            .search
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for (id, fields) in &stored {
            // A row that cannot be read is left out of the search, not a
            // reason to stop indexing the others.
            let Ok(fields) = serde_json::from_str::<BTreeMap<String, String>>(fields) else {
                continue;
            };
            let text = index_text(fields.values().map(String::as_str));
            if !text.is_empty() {
                tx.prepare_cached("INSERT INTO field_search (rowid, text) VALUES (?1, ?2)")?
                    .execute(params![id, text])?;
            }
        }
        set_progress(&tx, THROUGH, last)?;
        set_progress(&tx, ROWS, progress(&tx, ROWS)? + stored.len() as i64)?;
        tx.commit()?;
        Ok(stored.len())
    }

    /// Empties the index when it is ahead of the database, or (checked
    /// every [`STALE_CHECK`]) when pruned operations' rows outnumber the
    /// rest; the newest operation id indexed after that.
    fn start_over_if_stale(&mut self) -> Result<i64, StoreError> {
        let through = progress(&self.search, THROUGH)?;
        let newest: i64 = self
            .database
            .query_row("SELECT COALESCE(MAX(id), 0) FROM operations", [], |row| row.get(0))?;
        let mut why = None;
        if through > newest {
            why = Some("it is ahead of the database (restored from a backup?)".to_string());
        } else if self.checked.is_none_or(|at| at.elapsed() >= STALE_CHECK) {
            self.checked = Some(Instant::now());
            let rows = progress(&self.search, ROWS)?;
            // All operations, not those up to `through`: this counts an
            // index, where a range of ids would read the table itself.
            let live: i64 = self
                .database
                .query_row("SELECT count(*) FROM operations", [], |row| row.get(0))?;
            if rows > live && rows - live >= live {
                why = Some(format!(
                    "rows of {} pruned operations outnumber the {live} left",
                    rows - live
                ));
            }
        }
        if let Some(why) = why {
            self.search.execute_batch(
                "BEGIN IMMEDIATE;
                 INSERT INTO field_search (field_search) VALUES ('delete-all');
                 DELETE FROM progress;
                 COMMIT;",
            )?;
            log::info!("search index: {why}; rebuilding it in the background");
            return Ok(0);
        }
        Ok(through)
    }
}

fn progress(conn: &Connection, key: &str) -> rusqlite::Result<i64> {
    Ok(conn
        .prepare_cached("SELECT value FROM progress WHERE key = ?1")?
        .query_row([key], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

fn set_progress(conn: &Connection, key: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO progress (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

/// Marks every operation so far as indexed (the benchmark's seed indexes
/// its own in bulk, on a connection with the search file attached as `search`).
#[cfg(feature = "bench")]
pub(in crate::store) fn mark_all_indexed(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO search.progress (key, value)
         SELECT 'through', COALESCE(MAX(id), 0) FROM main.operations WHERE true
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [],
    )?;
    conn.execute(
        "INSERT INTO search.progress (key, value)
         SELECT 'rows', count(*) FROM main.operations WHERE true
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::model::{NewOperation, OpStatus};
    use crate::store::index_search;
    use crate::store::tests::{insert_all, operation, quiet};
    use crate::store::{backup, spawn_writer, HistoryFilter, Reader};

    /// An index ahead of its database (the database restored from an older
    /// copy) starts over, so operations stored after the restore, whose ids
    /// the index had already passed, are found.
    #[test]
    fn an_index_ahead_of_a_restored_database_starts_over() {
        let with_phone = |phone: &str| {
            let mut op = operation(None, &[]);
            op.status = OpStatus::Delivered;
            op.fields = [("phone".to_string(), phone.to_string())].into();
            op
        };
        let store = |path: &Path, ops: Vec<NewOperation>| -> Vec<i64> {
            let (writer, thread) = spawn_writer(path, quiet()).unwrap();
            let ids = insert_all(&writer, ops).iter().map(|o| o.id).collect();
            drop(writer);
            thread.join().unwrap();
            ids
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let copy = dir.path().join("copy.db");
        store(&path, vec![with_phone("89990000001")]);
        backup(&path, &copy).unwrap();
        store(&path, vec![with_phone("89990000002"), with_phone("89990000003")]);
        assert_eq!(index_search(&path).unwrap(), 3);

        // The restore: the copy replaces the database; the index stays.
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let _ = std::fs::remove_file(name);
        }
        std::fs::copy(&copy, &path).unwrap();
        let newer = store(&path, vec![with_phone("89990000004")])[0];
        assert_eq!(newer, 2, "an id the index had passed");
        index_search(&path).unwrap();
        let found = Reader::open(&path)
            .unwrap()
            .history(&HistoryFilter {
                search: Some("89990000004".into()),
                limit: 10,
                ..HistoryFilter::default()
            })
            .unwrap();
        assert_eq!(found.iter().map(|o| o.id).collect::<Vec<_>>(), [newer]);
    }
}
