//! Applying a batch of jobs in one transaction, then answering every
//! caller. The data jobs (received operations and attempt results: the
//! hot paths, data that can be applied twice) go first, without a
//! savepoint each, and each kind all at once (one statement each on
//! PostgreSQL); the commands (a claim, a replay, a cancel) follow, each in
//! its own savepoint. If a data job fails, the transaction is rolled back
//! and the batch applied again with a savepoint per job, so that one
//! failing job does not undo the others.

use super::job::{answer, Answer, Command, Data, Job, Work};
use crate::model::{AttemptRecord, Inserted, NewOperation};
use crate::store::attempts::{record_attempt, record_attempts};
use crate::store::db::Db;
use crate::store::inserts::{insert, insert_all};
use crate::store::StoreError;

/// Applies and commits `batch`, then answers every caller; with `wakes`,
/// other instances' schedulers hear of the commit. Attempt results that
/// did not make it into the database go to `carry`.
pub(super) fn commit_batch(
    conn: &Db,
    batch: impl Iterator<Item = Job>,
    wakes: bool,
    carry: &mut Vec<AttemptRecord>,
) -> Result<(), String> {
    // A caller that needs an order waits for its answer before its next
    // job, so within a batch the order is free: data first, so that a
    // batch holding a claim, as most do under load, still stores its
    // webhooks without a savepoint each.
    let (mut data, mut commands) = (Vec::new(), Vec::new());
    for job in batch {
        match job.work {
            Work::Data(job) => data.push(job),
            Work::Once(command) => commands.push(command),
        }
    }
    match apply(conn, data, commands, false, wakes, carry) {
        Applied::Done(outcome) => outcome,
        Applied::Again(data, commands) => match apply(conn, data, commands, true, wakes, carry) {
            Applied::Done(outcome) => outcome,
            // Not given back with a savepoint per job; answered all the same.
            Applied::Again(data, commands) => {
                let reason = "the batch was given back twice".to_string();
                answer_failed(data, commands, &reason, carry);
                Err(reason)
            }
        },
    }
}

/// What became of a batch.
enum Applied {
    /// Committed (`Ok`) or failed as a transaction (`Err`, the reason);
    /// every caller is answered.
    Done(Result<(), String>),
    /// A data job failed without a savepoint of its own: the transaction
    /// is rolled back and no one is answered yet.
    Again(Vec<Data>, Vec<Command>),
}

/// What one data job did inside the transaction.
enum Done {
    Stored(Inserted),
    Recorded,
    /// Failed in its own savepoint; the others stand.
    Failed(StoreError),
}

/// Applies `data`, then `commands`, in one transaction, commits it and
/// answers every caller. Commands always get a savepoint each; data jobs
/// only when `careful`, else the first that fails gives the batch back.
fn apply(
    conn: &Db,
    data: Vec<Data>,
    commands: Vec<Command>,
    careful: bool,
    wakes: bool,
    carry: &mut Vec<AttemptRecord>,
) -> Applied {
    let mut done = Vec::with_capacity(data.len());
    let mut failure = conn.begin_writing().err();
    if failure.is_none() {
        let applied = if careful {
            apply_each(conn, &data, &mut done).map_err(Some)
        } else {
            apply_at_once(conn, &data, &mut done)
        };
        match applied {
            Ok(()) => {}
            Err(None) => {
                let _ = conn.batch("ROLLBACK");
                return Applied::Again(data, commands);
            }
            Err(Some(err)) => failure = Some(err),
        }
    }
    let mut answers = Vec::with_capacity(commands.len());
    for command in commands {
        if failure.is_some() {
            answers.push(command(None).1);
            continue;
        }
        let (answer, err) = run_command(conn, command);
        answers.push(answer);
        failure = err;
    }
    if failure.is_none() {
        failure = commit(conn, wakes).err();
    }
    let reason = failure.map(|err| err.to_string());
    if let Some(reason) = &reason {
        log::error!("database commit failed: {reason}");
        // Nothing of it stays; a broken session has nothing to roll back.
        let _ = conn.batch("ROLLBACK");
    }
    let mut done = done.into_iter();
    for job in data {
        match (job, done.next()) {
            (Data::Insert(_, reply), Some(Done::Stored(inserted))) => {
                answer(reply, Some(Ok(inserted)))(reason.as_deref());
            }
            (Data::Insert(_, reply), Some(Done::Failed(err))) => answer(reply, Some(Err(err)))(reason.as_deref()),
            (Data::Insert(_, reply), _) => answer(reply, None::<Result<Inserted, StoreError>>)(reason.as_deref()),
            (Data::Attempt(_), Some(Done::Recorded)) if reason.is_none() => {}
            (Data::Attempt(record), Some(Done::Failed(err))) if !is_storage_fault(&err) => {
                log::error!("delivery {}: cannot record the attempt: {err}", record.delivery_id);
            }
            // Not in the database: kept for the next commit.
            (Data::Attempt(record), _) => carry.push(*record),
        }
    }
    for answer in answers {
        answer(reason.as_deref());
    }
    Applied::Done(reason.map_or(Ok(()), Err))
}

/// Applies the data jobs without a savepoint, the received operations
/// first, each kind all at once (one statement each on PostgreSQL), into
/// `done` in the jobs' order. `Err(None)`: one failed, so the batch goes
/// again job by job.
fn apply_at_once(conn: &Db, data: &[Data], done: &mut Vec<Done>) -> Result<(), Option<StoreError>> {
    let given_back = |err: StoreError| {
        log::debug!("a job failed in a batch without savepoints ({err}); applying it job by job");
        None
    };
    let (mut ops, mut records): (Vec<&NewOperation>, Vec<&AttemptRecord>) = (Vec::new(), Vec::new());
    for job in data {
        match job {
            Data::Insert(op, _) => ops.push(op),
            Data::Attempt(record) => records.push(record),
        }
    }
    let mut stored = insert_all(conn, &ops).map_err(given_back)?.into_iter();
    record_attempts(conn, &records).map_err(given_back)?;
    for job in data {
        done.push(match job {
            Data::Insert(..) => Done::Stored(stored.next().ok_or(None)?),
            Data::Attempt(_) => Done::Recorded,
        });
    }
    Ok(())
}

/// Applies the data jobs one by one, each in a savepoint of its own, into
/// `done`; `Err`: the session failed.
fn apply_each(conn: &Db, data: &[Data], done: &mut Vec<Done>) -> Result<(), StoreError> {
    for job in data {
        conn.batch("SAVEPOINT job")?;
        let result = match job {
            Data::Insert(op, _) => insert(conn, op).map(Done::Stored),
            Data::Attempt(record) => record_attempt(conn, record).map(|()| Done::Recorded),
        };
        match result {
            Ok(applied) => {
                conn.batch("RELEASE job")?;
                done.push(applied);
            }
            Err(err) => {
                conn.batch("ROLLBACK TO job")?;
                conn.batch("RELEASE job")?;
                done.push(Done::Failed(err));
            }
        }
    }
    Ok(())
}

/// Runs a command in its own savepoint: how to answer its caller, and the
/// session's failure if the savepoint itself failed.
fn run_command(conn: &Db, command: Command) -> (Answer, Option<StoreError>) {
    // Cached statements, not rusqlite's Savepoint: that one parses its
    // SQL anew each time, which cost a fifth of the daemon's CPU.
    if let Err(err) = conn.batch("SAVEPOINT job") {
        return (command(None).1, Some(err));
    }
    let (ok, answer) = command(Some(conn));
    let ended = if ok {
        conn.batch("RELEASE job")
    } else {
        conn.batch("ROLLBACK TO job").and_then(|()| conn.batch("RELEASE job"))
    };
    (answer, ended.err())
}

/// Answers every job of a batch that was not committed.
fn answer_failed(data: Vec<Data>, commands: Vec<Command>, reason: &str, carry: &mut Vec<AttemptRecord>) {
    for job in data {
        match job {
            Data::Attempt(record) => carry.push(*record),
            Data::Insert(_, reply) => answer(reply, None::<Result<Inserted, StoreError>>)(Some(reason)),
        }
    }
    for command in commands {
        command(None).1(Some(reason));
    }
}

/// Commits the batch's transaction; with `wakes`, other instances'
/// schedulers hear of it at the commit.
fn commit(conn: &Db, wakes: bool) -> Result<(), StoreError> {
    match conn {
        Db::Postgres(pg) => {
            conn.batch(if wakes {
                crate::store::postgres::claims::NOTIFY_AND_COMMIT
            } else {
                "COMMIT"
            })?;
            pg.committed();
        }
        Db::Sqlite(_) => conn.batch("COMMIT")?,
    }
    Ok(())
}

/// Whether `err` comes from the storage (full, read-only, failing) rather
/// than from the command, so trying the same command again later can work.
fn is_storage_fault(err: &StoreError) -> bool {
    use rusqlite::ErrorCode::{CannotOpen, DatabaseBusy, DatabaseLocked, DiskFull, ReadOnly, SystemIoFailure};
    match err {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
            matches!(
                e.code,
                CannotOpen | DatabaseBusy | DatabaseLocked | DiskFull | ReadOnly | SystemIoFailure
            )
        }
        StoreError::Postgres(e) => crate::store::postgres::claims::is_transient(e),
        _ => false,
    }
}
