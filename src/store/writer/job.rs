//! What the writer's queue carries: jobs for the next transaction, with
//! how each one's caller is answered once the commit's fate is known.

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::model::{AttemptRecord, Inserted, NewOperation, Outcome};
use crate::store::db::Db;
use crate::store::sqlite::online_backup::OnlineBackup;
use crate::store::StoreError;

/// Answers a command's caller once the commit's fate is known: `Some(reason)`
/// if the commit failed.
pub(super) type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

/// A command run once inside the batch's transaction: whether it succeeded,
/// and how to answer its caller. Given no connection, the transaction failed
/// before reaching it, and it only builds the answer.
pub(super) type Command = Box<dyn FnOnce(Option<&Db>) -> (bool, Answer) + Send>;

/// A command run on the writer's SQLite connection between transactions,
/// with the backup in progress (if any): backup steps cannot run inside one.
pub(super) type Between = Box<dyn FnOnce(&Connection, &mut Option<OnlineBackup>) + Send>;

/// What a job does inside the batch's transaction.
pub(super) enum Work {
    Once(Command),
    Data(Data),
}

/// The hot paths' jobs: data, which can be applied twice, so a batch of
/// them needs no savepoint each (writer/apply.rs).
pub(super) enum Data {
    /// A received operation to store, and its caller.
    Insert(Box<NewOperation>, oneshot::Sender<Result<Inserted, StoreError>>),
    /// An attempt's result. The request has already gone out, so a commit
    /// that fails (disk full) must not lose it: it is kept and applied again
    /// with the next batch until a commit takes it.
    Attempt(Box<AttemptRecord>),
}

/// What the writer's queue carries: a job for the next transaction, or a
/// command to run after its commit.
pub(super) enum Queued {
    Job(Job),
    Between(Between),
}

/// One command for the writer.
pub(super) struct Job {
    pub(super) work: Work,
    /// Whether committing it may make deliveries due.
    pub(super) wakes: bool,
}

impl Job {
    pub(super) fn attempt(record: Box<AttemptRecord>) -> Job {
        // Only a retry needs the scheduler's attention (a new due time); the
        // worker tells it itself when it is free.
        let wakes = matches!(record.outcome, Outcome::RetryAt(_));
        Job {
            wakes,
            work: Work::Data(Data::Attempt(record)),
        }
    }

    /// A command whose result goes to `then` once the commit's fate is
    /// known (on the writer thread: a channel send, nothing slow).
    pub(super) fn new<T: Send + 'static>(
        wakes: bool,
        work: impl FnOnce(&Db) -> Result<T, StoreError> + Send + 'static,
        then: impl FnOnce(Result<T, StoreError>) + Send + 'static,
    ) -> Job {
        Job {
            wakes,
            work: Work::Once(Box::new(move |conn| {
                let result = conn.map(work);
                let ok = matches!(result, Some(Ok(_)));
                let answer: Answer = Box::new(move |commit_failure| then(settle(commit_failure, result)));
                (ok, answer)
            })),
        }
    }
}

/// Hands a job's result to its caller waiting on `reply`.
pub(super) fn replying<T>(reply: oneshot::Sender<Result<T, StoreError>>) -> impl FnOnce(Result<T, StoreError>) {
    move |result| {
        let _ = reply.send(result);
    }
}

/// How a job's caller is answered once the commit's fate is known, with
/// `result` (none: the transaction failed before reaching the job).
pub(super) fn answer<T: Send + 'static>(
    reply: oneshot::Sender<Result<T, StoreError>>,
    result: Option<Result<T, StoreError>>,
) -> Answer {
    Box::new(move |commit_failure| replying(reply)(settle(commit_failure, result)))
}

/// A job's result once the commit's fate is known: a commit that failed
/// undoes what the job did.
fn settle<T>(commit_failure: Option<&str>, result: Option<Result<T, StoreError>>) -> Result<T, StoreError> {
    match (commit_failure, result) {
        (Some(reason), Some(Ok(_)) | None) => Err(StoreError::Commit(reason.to_string())),
        (None, None) => Err(StoreError::WriterGone),
        (_, Some(result)) => result,
    }
}
