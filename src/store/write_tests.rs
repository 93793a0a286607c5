//! Tests of what the writer commits since the writer applies batches
//! with and without savepoints: Metrica's batches, one failing insert
//! among others, and the operation's status rolled up in SQL.

use super::tests::{delivered, delivery, insert_all, operation, quiet};
use super::*;
use crate::clock::now_ms;
use crate::model::said::Said;
use crate::model::{AttemptRecord, DeliveryStatus, Inserted, OpStatus, Outcome};
use crate::store::db::Dialect;

/// Metrica rows are never due on their own; a batch takes each row once,
/// at `max` rows or once the oldest waited `every`; its step is recorded
/// on each of its rows; a row in a batch is not rendered again.
pub(super) fn batches_take_each_row_once(location: &Location) {
    let (writer, thread) = spawn_writer(location, quiet()).unwrap();
    let row = || {
        let mut op = operation(None, &["m"]);
        op.deliveries[0].batch = Some("p/m".into());
        op.deliveries[0].body = Some(br#"[["id","1"]]"#.to_vec());
        op
    };
    let ops = insert_all(&writer, (0..5).map(|_| row()).collect());
    assert!(writer
        .claim_due(now_ms() + 86_400_000, 10, Vec::new())
        .unwrap()
        .due
        .is_empty());
    // When the operations arrived (`operation`'s sample time).
    let now = 1_000;
    let hour = 3_600_000;
    let first = writer.make_batch("p/m".into(), 3, hour, now).unwrap().unwrap();
    assert_eq!(writer.make_batch("p/m".into(), 3, hour, now).unwrap(), None);
    assert_eq!(writer.make_batch("other/m".into(), 1, 0, now).unwrap(), None);
    let second = writer.make_batch("p/m".into(), 3, hour, now + hour).unwrap().unwrap();
    assert_eq!(writer.make_batch("p/m".into(), 1, 0, now + hour).unwrap(), None);
    let (a, b) = (writer.batch_rows(first).unwrap(), writer.batch_rows(second).unwrap());
    assert_eq!((a.len(), b.len()), (3, 2));
    assert!(a.iter().all(|(id, _)| b.iter().all(|(other, _)| other != id)));
    let taken = writer.due_batches(now + hour, 30_000, 10).unwrap();
    assert_eq!(taken.iter().map(|b| b.id).collect::<Vec<_>>(), [first, second]);
    assert!(writer.due_batches(now + hour, 30_000, 10).unwrap().is_empty(), "leased");
    // A row in a batch is the batch's.
    let mut again = delivery("m");
    again.batch = Some("p/m".into());
    assert_eq!(writer.rerender(vec![(a[0].0, again)]).unwrap(), 0);
    let attempt = BatchAttempt {
        started_at: now,
        duration_ms: 5,
        request: "POST upload (batch)".into(),
        http_status: Some(200),
        response_body: None,
        error: None,
        judged: None,
    };
    writer.batch_sending(first, now, now + 30_000).unwrap();
    let step = BatchStep::Uploaded {
        attempt: attempt.clone(),
        upload_id: "501".into(),
        upload_state: Some("PREPARED".into()),
        poll_at: Some(now + 1_000),
    };
    writer.batch_step(first, step, now).unwrap();
    let refused = BatchAttempt {
        http_status: Some(400),
        error: Some(Said::Http { status: 400 }),
        ..attempt
    };
    let notice = Said::Http { status: 400 };
    writer
        .batch_step(
            second,
            BatchStep::Failed {
                attempt: refused,
                notice,
            },
            now,
        )
        .unwrap();
    let reader = Reader::open(location).unwrap();
    let mut seen = Vec::new();
    for inserted in &ops {
        let op = reader.operation(inserted.id).unwrap().unwrap();
        let batch = op.deliveries[0].batch.clone().unwrap().unwrap();
        assert_eq!(op.deliveries[0].attempts.len(), 1);
        seen.push((batch.id, batch.state, op.summary.status));
    }
    seen.sort_by_key(|(id, _, _)| *id);
    let (ok, failed) = (
        (first, "uploaded".to_string(), OpStatus::Delivered),
        (second, "failed".to_string(), OpStatus::Failed),
    );
    assert_eq!(seen, [ok.clone(), ok.clone(), ok, failed.clone(), failed]);
    let queue = reader.batch_queue("p/m").unwrap();
    assert_eq!((queue.waiting, queue.unfinished), (0, 1));
    assert_eq!(queue.last.map(|b| b.state), Some("failed".to_string()));
    drop(writer);
    thread.join().unwrap();
}

#[test]
fn batches_take_each_row_once_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    batches_take_each_row_once(&Location::File(path.clone()));
    // A restart leaves a batch's rows in flight: the batch resumes them.
    let (writer, _thread) = spawn_writer(&path, quiet()).unwrap();
    assert!(writer
        .claim_due(now_ms() + 86_400_000, 10, Vec::new())
        .unwrap()
        .due
        .is_empty());
}

/// A command's savepoint journal stays in memory past SQLite's 64 KiB:
/// written to /var/tmp it was a quarter of the writer's time in a replay.
#[test]
fn the_writer_keeps_its_statement_journals_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, thread) = spawn_writer(&dir.path().join("t.db"), quiet()).unwrap();
    assert_eq!(count(&writer, "PRAGMA temp_store"), 2, "MEMORY");
    drop(writer);
    thread.join().unwrap();
}

/// Waits until `n` jobs are queued behind the held one, then lets the writer go.
fn release_when_queued(writer: &Writer, n: usize, held: std::sync::mpsc::Sender<()>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while writer.queued() < n {
        assert!(std::time::Instant::now() < deadline, "the jobs were not queued");
        std::thread::yield_now();
    }
    held.send(()).unwrap();
}

/// One row's count, asked through the writer (either engine).
fn count(writer: &Writer, sql: &'static str) -> i64 {
    writer
        .run_blocking(false, move |conn| conn.query_one(sql, &[], |r| r.get(0)))
        .unwrap()
}

/// A runtime for the inserts a test queues at once.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// A batch of webhooks goes without a savepoint per job (on PostgreSQL,
/// in one statement), a command in it (a claim, a replay) after them in a
/// savepoint of its own; one webhook that fails sends the batch again job
/// by job: the others are stored, it alone is refused, and each command
/// runs once, a failing one undoing only itself. The jobs are queued while
/// the writer is held, so that they share one batch.
pub(super) fn one_failing_insert_does_not_undo_the_others(location: &Location) {
    let (writer, _thread) = spawn_writer(location, quiet()).unwrap();
    writer
        .run_blocking(false, |conn| {
            conn.batch(match conn.dialect() {
                Dialect::Sqlite => {
                    "CREATE TRIGGER poison BEFORE INSERT ON operations WHEN NEW.processing = 'poison'
                     BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
                }
                Dialect::Postgres => "ALTER TABLE operations ADD CONSTRAINT poisoned CHECK (processing <> 'poison')",
            })
        })
        .unwrap();
    let held = writer.pause();
    let runtime = runtime();
    let mut inserts = Vec::new();
    let mut commands = Vec::new();
    for name in ["good", "poison", "good"] {
        let mut op = operation(None, &["a"]);
        op.processing = name.to_string();
        let inserting = writer.clone();
        inserts.push(runtime.spawn(async move { inserting.insert(op).await }));
        // A command after each webhook; the second one fails after writing.
        let writer = writer.clone();
        let fails = name == "poison";
        commands.push(std::thread::spawn(move || {
            writer.run_blocking(false, move |conn| {
                let n = conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('mark-' || (SELECT count(*) FROM meta), 1)",
                    &[],
                )?;
                if fails {
                    return Err(StoreError::Corrupt("refused on purpose".into()));
                }
                Ok(n)
            })
        }));
    }
    release_when_queued(&writer, 6, held);
    let results: Vec<_> = inserts
        .into_iter()
        .map(|task| runtime.block_on(task).unwrap())
        .collect();
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(
        results[1].as_ref().is_err_and(|e| e.to_string().contains("poisoned")),
        "{results:?}"
    );
    let commands: Vec<_> = commands.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(commands[0].is_ok() && commands[2].is_ok(), "{commands:?}");
    assert!(commands[1].is_err(), "{commands:?}");
    assert_eq!(count(&writer, "SELECT count(*) FROM operations"), 2);
    assert_eq!(count(&writer, "SELECT count(*) FROM meta WHERE key LIKE 'mark-%'"), 2);
    // And the next batch goes through.
    assert_eq!(insert_all(&writer, vec![operation(None, &["a"])]).len(), 1);
    assert_eq!(count(&writer, "SELECT count(*) FROM operations"), 3);
}

#[test]
fn one_failing_insert_does_not_undo_the_others_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    one_failing_insert_does_not_undo_the_others(&Location::File(dir.path().join("t.db")));
}

/// Webhooks that share a batch (one statement on PostgreSQL) each get
/// their own deliveries, in their order; a twin of one in the same batch
/// is told which operation it repeats, as it would be one by one; the
/// same key in another processing is no twin.
pub(super) fn a_batch_of_webhooks_keeps_each_ones_rows(location: &Location) {
    let (writer, _thread) = spawn_writer(location, quiet()).unwrap();
    let held = writer.pause();
    let runtime = runtime();
    let mut other = operation(Some("k"), &["c"]);
    other.processing = "other".into();
    let ops = [
        operation(Some("k"), &["a", "b"]),
        operation(None, &["c"]),
        operation(Some("k"), &["a", "b"]),
        other,
        operation(Some("k"), &["a"]),
    ];
    let inserts: Vec<_> = ops
        .into_iter()
        .map(|op| {
            let writer = writer.clone();
            runtime.spawn(async move { writer.insert(op).await })
        })
        .collect();
    release_when_queued(&writer, 5, held);
    let results: Vec<Inserted> = inserts
        .into_iter()
        .map(|task| runtime.block_on(task).unwrap().unwrap())
        .collect();
    // Which twin is the first is the queue's order; one of them is.
    let twins = [0, 2, 4];
    let first: Vec<usize> = twins
        .into_iter()
        .filter(|&i| results[i].status == OpStatus::Queued)
        .collect();
    let [first] = first[..] else {
        panic!("not one first among the twins: {results:?}")
    };
    for twin in twins.into_iter().filter(|&i| i != first) {
        assert_eq!(results[twin].status, OpStatus::Duplicate, "{results:?}");
        assert_eq!(
            results[twin].reason,
            Some(crate::model::duplicate_reason("k", results[first].id))
        );
    }
    assert_eq!(
        (results[1].status, results[3].status),
        (OpStatus::Queued, OpStatus::Queued)
    );
    let reader = Reader::open(location.clone()).unwrap();
    let actions = |at: usize| -> Vec<String> {
        let op = reader.operation(results[at].id).unwrap().unwrap();
        op.deliveries.into_iter().map(|d| d.action).collect()
    };
    assert_eq!(actions(first), if first == 4 { vec!["a"] } else { vec!["a", "b"] });
    assert_eq!((actions(1), actions(3)), (vec!["c".to_string()], vec!["c".to_string()]));
    for twin in twins.into_iter().filter(|&i| i != first) {
        assert!(actions(twin).is_empty(), "a duplicate is sent nowhere");
    }
}

#[test]
fn a_batch_of_webhooks_keeps_each_ones_rows_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    a_batch_of_webhooks_keeps_each_ones_rows(&Location::File(dir.path().join("t.db")));
}

/// The status roll-up in SQL says what `model::operation_status` says, for
/// every pair of delivery statuses, and a replay's newer delivery stands
/// for the one it replays.
#[test]
fn the_status_roll_up_in_sql_matches_the_models() {
    let dir = tempfile::tempdir().unwrap();
    status_roll_up_matches(&Location::File(dir.path().join("t.db")));
}

pub(super) fn status_roll_up_matches(location: &Location) {
    use crate::model::operation_status;
    let conn = open_for_writing(location).unwrap();
    let id = inserts::insert(&conn, &operation(None, &["a", "b"])).unwrap().id;
    let all = [
        DeliveryStatus::Pending,
        DeliveryStatus::Retrying,
        DeliveryStatus::InFlight,
        DeliveryStatus::Delivered,
        DeliveryStatus::Failed,
        DeliveryStatus::Cancelled,
        DeliveryStatus::Expired,
    ];
    let status = || -> String {
        conn.query_one("SELECT status FROM operations WHERE id = ?1", &[&id], |row| row.get(0))
            .unwrap()
    };
    for a in all {
        for b in all {
            for (action, s) in [("a", a), ("b", b)] {
                conn.execute(
                    "UPDATE deliveries SET status = ?2 WHERE operation_id = ?1 AND action = ?3",
                    &[&id, &s.as_str(), &action],
                )
                .unwrap();
            }
            attempts::refresh_operation_status(&conn, id, 5).unwrap();
            assert_eq!(status(), operation_status(&[a, b]).as_str(), "{a:?} {b:?}");
        }
    }
    // A replay's delivery of `a`, delivered, beside the old failed one.
    conn.execute(
        "UPDATE deliveries SET status = 'failed' WHERE operation_id = ?1",
        &[&id],
    )
    .unwrap();
    let mut again = delivery("a");
    again.refused = None;
    deliveries::insert_delivery(&conn, id, 2, &again, 6).unwrap();
    conn.execute(
        "UPDATE deliveries SET status = 'delivered' WHERE operation_id = ?1 AND position = 2",
        &[&id],
    )
    .unwrap();
    attempts::refresh_operation_status(&conn, id, 7).unwrap();
    assert_eq!(status(), "partial");

    // The same through an attempt's record (on PostgreSQL one statement,
    // whose roll-up is given the delivery's new status; a parked attempt
    // has its own): each outcome of `a`'s attempt beside each status of `b`.
    let id = inserts::insert(&conn, &operation(None, &["a", "b"])).unwrap().id;
    let status = || -> String {
        conn.query_one("SELECT status FROM operations WHERE id = ?1", &[&id], |row| row.get(0))
            .unwrap()
    };
    let delivery_of = |action: &str| -> i64 {
        conn.query_one(
            "SELECT id FROM deliveries WHERE operation_id = ?1 AND action = ?2",
            &[&id, &action],
            |row| row.get(0),
        )
        .unwrap()
    };
    let (a, b) = (delivery_of("a"), delivery_of("b"));
    let outcomes = [
        (Outcome::Delivered, DeliveryStatus::Delivered),
        (Outcome::Failed, DeliveryStatus::Failed),
        (Outcome::RetryAt(100), DeliveryStatus::Retrying),
        // Parked behind an open breaker: waiting again, its own statements.
        (Outcome::Parked, DeliveryStatus::Retrying),
    ];
    for (outcome, after) in outcomes {
        for other in all {
            conn.execute(
                "UPDATE deliveries SET status = CASE WHEN id = ?1 THEN 'in_flight' ELSE ?3 END WHERE id IN (?1, ?2)",
                &[&a, &b, &other.as_str()],
            )
            .unwrap();
            attempts::refresh_operation_status(&conn, id, 8).unwrap();
            let record = AttemptRecord {
                outcome,
                ..delivered(a, 9)
            };
            attempts::record_attempt(&conn, &record).unwrap();
            let delivery: String = conn
                .query_one("SELECT status FROM deliveries WHERE id = ?1", &[&a], |row| row.get(0))
                .unwrap();
            assert_eq!(delivery, after.as_str());
            assert_eq!(
                status(),
                operation_status(&[after, other]).as_str(),
                "{outcome:?} {other:?}"
            );
        }
    }
    let attempts: i64 = conn
        .query_one("SELECT count(*) FROM attempts WHERE delivery_id = ?1", &[&a], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(attempts, (outcomes.len() * all.len()) as i64);

    // Both deliveries' attempts in one call (on PostgreSQL one statement
    // unless parked): the roll-up sees both new statuses.
    for (first, a_after) in outcomes {
        for (second, b_after) in outcomes {
            conn.execute(
                "UPDATE deliveries SET status = 'in_flight' WHERE id IN (?1, ?2)",
                &[&a, &b],
            )
            .unwrap();
            let records = [
                AttemptRecord {
                    outcome: first,
                    ..delivered(a, 10)
                },
                AttemptRecord {
                    outcome: second,
                    ..delivered(b, 10)
                },
            ];
            attempts::record_attempts(&conn, &[&records[0], &records[1]]).unwrap();
            assert_eq!(
                status(),
                operation_status(&[a_after, b_after]).as_str(),
                "{first:?} {second:?}"
            );
        }
    }
    // Two results for one delivery (one carried from a failed commit) go
    // in turn: the later one stands, and both are counted.
    conn.execute(
        "UPDATE deliveries SET status = 'in_flight', attempts = 0 WHERE id IN (?1, ?2)",
        &[&a, &b],
    )
    .unwrap();
    let records = [
        AttemptRecord {
            outcome: Outcome::RetryAt(100),
            ..delivered(a, 11)
        },
        AttemptRecord {
            outcome: Outcome::Failed,
            ..delivered(b, 11)
        },
        delivered(a, 12),
    ];
    attempts::record_attempts(&conn, &records.iter().collect::<Vec<_>>()).unwrap();
    let (a_status, a_attempts): (String, i64) = conn
        .query_one("SELECT status, attempts FROM deliveries WHERE id = ?1", &[&a], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .unwrap();
    assert_eq!((a_status.as_str(), a_attempts), ("delivered", 2));
    assert_eq!(status(), "partial");
}
