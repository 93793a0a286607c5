//! Applying a batch of jobs in one transaction: without a savepoint per
//! job when every job is data that can be applied twice (received
//! operations, attempt results), else (or after one of those failed) each
//! in its own savepoint; then answering every caller.

use super::{answer, Job, Work};
use crate::model::{AttemptRecord, Inserted};
use crate::store::db::Db;
use crate::store::write::{insert, record_attempt};
use crate::store::StoreError;

/// Applies and commits `batch`, then answers every caller. Attempt results
/// that did not make it into the database go to `carry`.
pub(super) fn commit_batch(
    conn: &Db,
    batch: impl Iterator<Item = Job>,
    carry: &mut Vec<AttemptRecord>,
) -> Result<(), String> {
    let jobs: Vec<Job> = batch.collect();
    let wakes = jobs.iter().any(|job| job.wakes);
    if jobs.iter().all(|job| !matches!(job.work, Work::Once(_))) {
        match fast(conn, &jobs, wakes) {
            Some(Ok(inserted)) => {
                for (job, inserted) in jobs.into_iter().zip(inserted) {
                    if let (Work::Insert(_, reply), Some(inserted)) = (job.work, inserted) {
                        let _ = reply.send(Ok(inserted));
                    }
                }
                return Ok(());
            }
            // A job failed: rolled back, and applied again job by job.
            None => {}
            Some(Err(err)) => {
                let reason = err.to_string();
                log::error!("database commit failed: {reason}");
                let _ = conn.batch("ROLLBACK");
                for job in jobs {
                    match job.work {
                        Work::Attempt(record) => carry.push(*record),
                        Work::Insert(_, reply) => answer(reply, None::<Result<Inserted, StoreError>>)(Some(&reason)),
                        Work::Once(work) => work(None).1(Some(&reason)),
                    }
                }
                return Err(reason);
            }
        }
    }
    careful(conn, jobs.into_iter(), wakes, carry)
}

/// Applies a batch of inserts and attempt results without a savepoint per
/// job, and commits it: what each insert stored. None when a job failed
/// (the transaction is rolled back: the batch goes again, [`careful`]ly);
/// an error when the transaction itself did (begin, commit).
fn fast(conn: &Db, jobs: &[Job], wakes: bool) -> Option<Result<Vec<Option<Inserted>>, StoreError>> {
    if let Err(err) = conn.begin_writing() {
        return Some(Err(err));
    }
    let mut inserted = Vec::with_capacity(jobs.len());
    for job in jobs {
        let applied = match &job.work {
            Work::Insert(op, _) => insert(conn, op).map(Some),
            Work::Attempt(record) => record_attempt(conn, record).map(|()| None),
            Work::Once(_) => Ok(None),
        };
        match applied {
            Ok(done) => inserted.push(done),
            Err(err) => {
                log::debug!("a job failed in a batch without savepoints ({err}); applying it job by job");
                let _ = conn.batch("ROLLBACK");
                return None;
            }
        }
    }
    Some(commit(conn, wakes).map(|()| inserted))
}

/// Commits the batch's transaction; with `wakes`, other instances'
/// schedulers hear of it at the commit.
fn commit(conn: &Db, wakes: bool) -> Result<(), StoreError> {
    if wakes {
        crate::store::postgres::claims::notify_due(conn)?;
    }
    conn.batch("COMMIT")?;
    if let Db::Postgres(pg) = conn {
        pg.committed();
    }
    Ok(())
}

/// Applies `jobs` each in its own savepoint, so that one that fails does
/// not undo the others, commits, then answers every caller.
fn careful(
    conn: &Db,
    jobs: impl Iterator<Item = Job>,
    wakes: bool,
    carry: &mut Vec<AttemptRecord>,
) -> Result<(), String> {
    let mut jobs = jobs;
    let mut answers = Vec::new();
    let mut applied = Vec::new();
    let outcome = (|| -> Result<(), StoreError> {
        let tx = conn;
        tx.begin_writing()?;
        for job in jobs.by_ref() {
            // Cached statements, not rusqlite's Savepoint: that one parses its
            // SQL anew each time, which cost a fifth of the daemon's CPU.
            tx.batch("SAVEPOINT job")?;
            let ok = match job.work {
                Work::Once(work) => {
                    let (ok, answer) = work(Some(tx));
                    answers.push(answer);
                    ok
                }
                Work::Insert(op, reply) => {
                    let result = insert(tx, &op);
                    let ok = result.is_ok();
                    answers.push(answer(reply, Some(result)));
                    ok
                }
                Work::Attempt(record) => match record_attempt(tx, &record) {
                    Ok(()) => {
                        applied.push(*record);
                        true
                    }
                    Err(err) if is_storage_fault(&err) => {
                        carry.push(*record);
                        false
                    }
                    Err(err) => {
                        log::error!("delivery {}: cannot record the attempt: {err}", record.delivery_id);
                        false
                    }
                },
            };
            if !ok {
                tx.batch("ROLLBACK TO job")?;
            }
            tx.batch("RELEASE job")?;
        }
        commit(tx, wakes)
    })();
    let failure = outcome.err().map(|e| e.to_string());
    if let Some(reason) = &failure {
        log::error!("database commit failed: {reason}");
        // Nothing of it stays; a broken session has nothing to roll back.
        let _ = conn.batch("ROLLBACK");
        carry.append(&mut applied);
    }
    // Jobs a failed transaction never reached: attempt results are kept,
    // other callers get the failure.
    for job in jobs {
        match job.work {
            Work::Attempt(record) => carry.push(*record),
            Work::Insert(_, reply) => answers.push(answer(reply, None)),
            Work::Once(work) => answers.push(work(None).1),
        }
    }
    for answer in answers {
        answer(failure.as_deref());
    }
    failure.map_or(Ok(()), Err)
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
