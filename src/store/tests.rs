//! The store module's tests.

use super::*;
use crate::clock::now_ms;
use crate::model::{
    all_skipped_notice, said::Said, target_of, AttemptRecord, DeliveryRequest, DeliveryStatus, DueDelivery, Inserted,
    NewOperation, OpStatus, Outcome, Warning, ALL_SKIPPED,
};

pub(super) fn quiet() -> Hooks {
    Hooks {
        on_commit: Box::new(|| {}),
        on_error: Box::new(|_| {}),
    }
}

pub(super) fn delivery(action: &str) -> DeliveryRequest {
    DeliveryRequest {
        action: action.into(),
        method: "GET".into(),
        url: "http://127.0.0.1:1/pb?token=t".into(),
        headers: vec![("X-A".into(), "1".into())],
        body: None,
        redacted: "GET http://127.0.0.1:1/pb?token=MASKED".into(),
        rules: Default::default(),
        timeout_ms: 1000,
        max_attempts: 3,
        first_delay_ms: 10,
        max_delay_ms: 100,
        expires_at: None,
        refused: None,
        batch: None,
    }
}

pub(super) fn operation(dedupe: Option<&str>, actions: &[&str]) -> NewOperation {
    let mut op = NewOperation::sample(1_000);
    op.request.query = b"a=1".to_vec();
    op.fields = vec![("a".into(), "1".into())];
    op.warnings = vec![Warning::new("w".into())];
    op.dedupe = dedupe.map(|k| (k.to_string(), 0));
    op.deliveries = actions.iter().map(|a| delivery(a)).collect();
    op
}

/// A successful attempt of delivery `id`, started `at`.
pub(super) fn delivered(id: i64, at: i64) -> AttemptRecord {
    AttemptRecord {
        delivery_id: id,
        started_at: at,
        duration_ms: 1,
        request: String::new(),
        http_status: Some(200),
        response_body: None,
        error: None,
        judged: None,
        outcome: Outcome::Delivered,
        failure_notice: None,
        receiver: None,
        remember: None,
    }
}

pub(super) fn insert_all(writer: &Writer, ops: Vec<NewOperation>) -> Vec<Inserted> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let pending: Vec<_> = ops.into_iter().map(|op| writer.insert(op)).collect();
        let mut out = Vec::new();
        for p in pending {
            out.push(p.await.unwrap());
        }
        out
    })
}

/// Insert, claim in order, record outcomes; the operation follows its
/// deliveries and every attempt is readable.
#[test]
fn insert_claim_record_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let (writer, thread) = spawn_writer(&path, quiet()).unwrap();
    let ids = insert_all(&writer, vec![operation(None, &["first", "second"])]);
    let id = ids[0].id;

    let claimed = writer.claim_due(1_000, 10, Vec::new()).unwrap();
    let actions: Vec<_> = claimed.due.iter().map(|d| d.request.action.as_str()).collect();
    assert_eq!(actions, ["first", "second"], "configured order");
    assert_eq!(
        claimed.due[0].request.headers,
        vec![("X-A".to_string(), "1".to_string())]
    );
    assert_eq!(claimed.next_due, None, "nothing else is waiting");
    assert!(
        writer.claim_due(1_000, 10, Vec::new()).unwrap().due.is_empty(),
        "in_flight is not claimed twice"
    );

    let record = |d: &DueDelivery, outcome, status| AttemptRecord {
        delivery_id: d.id,
        started_at: 1_000,
        duration_ms: 3,
        request: d.request.redacted.clone(),
        http_status: Some(status),
        response_body: Some("body".into()),
        error: None,
        judged: None,
        outcome,
        failure_notice: None,
        receiver: None,
        remember: None,
    };
    writer.record(record(&claimed.due[0], Outcome::Delivered, 200)).unwrap();
    writer
        .record(record(&claimed.due[1], Outcome::RetryAt(5_000), 503))
        .unwrap();
    let later = writer.claim_due(4_999, 10, Vec::new()).unwrap();
    assert!(later.due.is_empty());
    assert_eq!(later.next_due, Some(5_000));
    let retry = writer.claim_due(5_000, 10, Vec::new()).unwrap();
    assert_eq!(retry.due.len(), 1);
    assert_eq!(retry.due[0].attempts, 1);
    writer.record(record(&retry.due[0], Outcome::Failed, 400)).unwrap();
    drop(writer);
    thread.join().unwrap();

    let reader = Reader::open(&path).unwrap();
    let op = reader.operation(id).unwrap().unwrap();
    assert_eq!(op.summary.status, OpStatus::Partial);
    assert_eq!(op.fields.get("a").map(String::as_str), Some("1"));
    assert_eq!(op.warnings, [Said::text("w")]);
    assert_eq!(op.request.query, b"a=1");
    assert_eq!(op.deliveries[0].attempts.len(), 1);
    let statuses: Vec<_> = op.deliveries[1].attempts.iter().map(|a| a.http_status).collect();
    assert_eq!(statuses, [Some(503), Some(400)]);
    assert_eq!(op.deliveries[1].last_error, Some(Said::Http { status: 400 }));
    assert_eq!(reader.operation(id + 1).unwrap().map(|o| o.summary.id), None);
}

/// A second operation with the same dedupe key is a duplicate naming the first.
#[test]
fn dedupe_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, _thread) = spawn_writer(&dir.path().join("t.db"), quiet()).unwrap();
    let out = insert_all(
        &writer,
        vec![
            operation(Some("k"), &["a"]),
            operation(Some("k"), &["a"]),
            operation(Some(""), &["a"]),
        ],
    );
    assert_eq!(out[0].status, OpStatus::Queued);
    assert_eq!(out[1].status, OpStatus::Duplicate);
    assert_eq!(
        out[1].reason.as_ref().map(ToString::to_string),
        Some(format!("same dedupe key `k` as operation {}", out[0].id))
    );
    assert_eq!(out[2].status, OpStatus::Queued, "an empty key never dedupes");
    assert_eq!(
        writer.claim_due(1_000, 10, Vec::new()).unwrap().due.len(),
        2,
        "the duplicate queued nothing"
    );
}

/// Deliveries left in flight by a stopped writer are pending again at the next start.
#[test]
fn in_flight_resets_on_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let (writer, thread) = spawn_writer(&path, quiet()).unwrap();
    insert_all(&writer, vec![operation(None, &["a"])]);
    assert_eq!(writer.claim_due(1_000, 10, Vec::new()).unwrap().due.len(), 1);
    drop(writer);
    thread.join().unwrap();
    let (writer, _thread) = spawn_writer(&path, quiet()).unwrap();
    assert_eq!(writer.claim_due(1_000, 10, Vec::new()).unwrap().due.len(), 1);
}

/// An attempt's result that finds the database full is kept by the writer
/// and saved by a later commit once there is room again.
#[test]
fn attempt_results_survive_a_full_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let (writer, thread) = spawn_writer(&path, quiet()).unwrap();
    let id = insert_all(&writer, vec![operation(None, &["a"])])[0].id;
    let due = writer.claim_due(1_000, 10, Vec::new()).unwrap().due;
    let pages = writer.limit_pages(0).unwrap();
    writer
        .record(AttemptRecord {
            delivery_id: due[0].id,
            started_at: 1_000,
            duration_ms: 3,
            request: due[0].request.redacted.clone(),
            http_status: Some(200),
            // Overflow pages: more than the capped database can take.
            response_body: Some("x".repeat(200_000)),
            error: None,
            judged: None,
            outcome: Outcome::Delivered,
            failure_notice: None,
            receiver: None,
            remember: None,
        })
        .unwrap();
    let reader = Reader::open(&path).unwrap();
    // A later job makes the writer try the record again; SQLite may fail
    // the whole transaction, so this claim may fail too.
    let _ = writer.claim_due(1_000, 10, Vec::new());
    let op = reader.operation(id).unwrap().unwrap();
    assert_eq!(op.deliveries[0].status, DeliveryStatus::InFlight);
    assert!(op.deliveries[0].attempts.is_empty());

    writer.limit_pages(pages + 1_000).unwrap();
    writer.claim_due(1_000, 10, Vec::new()).unwrap();
    drop(writer);
    thread.join().unwrap();
    let op = reader.operation(id).unwrap().unwrap();
    assert_eq!(op.summary.status, OpStatus::Delivered);
    assert_eq!(op.deliveries[0].attempts.len(), 1, "saved once");
}

/// One operation with a delivery to each of `urls`.
fn to_receivers(urls: &[&str]) -> NewOperation {
    let mut op = operation(None, &[]);
    op.deliveries = urls
        .iter()
        .map(|url| DeliveryRequest {
            url: url.to_string(),
            ..delivery(url)
        })
        .collect();
    op
}

/// A claim that skips a busy receiver gets the others' deliveries, and
/// the next due time among the others only.
#[test]
fn claims_skip_busy_receivers() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, _thread) = spawn_writer(&dir.path().join("t.db"), quiet()).unwrap();
    let busy = "http://busy.example:8080/pb?n=1";
    let other = "https://other.example/pb";
    insert_all(&writer, vec![to_receivers(&[busy, other]), to_receivers(&[busy])]);
    let skip = vec![target_of(busy)];
    let claimed = writer.claim_due(1_000, 10, skip.clone()).unwrap();
    let urls: Vec<_> = claimed.due.iter().map(|d| d.request.url.as_str()).collect();
    assert_eq!(urls, [other]);
    assert_eq!(claimed.next_due, None, "the busy receiver's deliveries do not count");
    let rest = writer.claim_due(1_000, 10, Vec::new()).unwrap();
    assert_eq!(rest.due.len(), 2, "without skipping, the busy receiver's come too");
}

/// A database from before the receiver column gets it filled in for the
/// deliveries still waiting, so claims can skip them.
#[test]
fn migration_fills_in_receivers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let (writer, thread) = spawn_writer(&path, quiet()).unwrap();
    let busy = "http://busy.example:8080/pb";
    insert_all(&writer, vec![to_receivers(&[busy, "http://other.example/pb"])]);
    drop(writer);
    thread.join().unwrap();
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TABLE replays; DROP INDEX deliveries_in_flight; DROP INDEX deliveries_due_by_target; ALTER TABLE deliveries DROP COLUMN target;
         DROP TRIGGER hour_counts_operation_insert; DROP TRIGGER hour_counts_operation_update;
         DROP TRIGGER hour_counts_operation_delete; DROP TRIGGER hour_counts_delivery_supersede;
         DROP TRIGGER hour_counts_delivery_insert; DROP TRIGGER hour_counts_delivery_leaves;
         DROP TRIGGER hour_counts_delivery_finishes;
         DROP TABLE hour_counts; ALTER TABLE operations DROP COLUMN event;
         DROP TABLE silences;
         DROP TABLE receivers;
         DROP TABLE oauth_tokens;
         DROP TABLE remembered;
         DROP TABLE batches; DROP INDEX deliveries_unbatched; DROP INDEX deliveries_by_batch;
         ALTER TABLE deliveries DROP COLUMN batch_key; ALTER TABLE deliveries DROP COLUMN batch_id;
         PRAGMA user_version = 2;",
    )
    .unwrap();
    drop(conn);

    let (writer, _thread) = spawn_writer(&path, quiet()).unwrap();
    let claimed = writer.claim_due(1_000, 10, vec![target_of(busy)]).unwrap();
    let urls: Vec<_> = claimed.due.iter().map(|d| d.request.url.as_str()).collect();
    assert_eq!(urls, ["http://other.example/pb"]);
}

/// Regression: once every operation was pruned, ids started again at 1, so
/// a receiver dropping repeats by `X-Hookrelay-Delivery` dropped new events.
#[test]
fn ids_are_not_reused_after_pruning_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let (writer, _thread) = spawn_writer(&path, quiet()).unwrap();
    let first = insert_all(&writer, vec![operation(None, &["a", "b"])])[0].id;
    let due = writer.claim_due(1_000, 10, Vec::new()).unwrap().due;
    let last_delivery = due.iter().map(|d| d.id).max().unwrap();
    for d in &due {
        writer.record(delivered(d.id, 1_000)).unwrap();
    }
    // The writer answers jobs in order: once this claim returns, the
    // results above are committed.
    assert!(writer.claim_due(1_000, 10, Vec::new()).unwrap().due.is_empty());
    assert_eq!(PruneConnection::open(&path).unwrap().batch(i64::MAX, 10).unwrap(), 1);
    assert!(Reader::open(&path).unwrap().operation(first).unwrap().is_none());

    let second = insert_all(&writer, vec![operation(None, &["a"])])[0].id;
    assert!(second > first, "operation id {second} after {first}");
    let again = writer.claim_due(1_000, 10, Vec::new()).unwrap().due;
    assert!(
        again[0].id > last_delivery,
        "delivery id {} after {last_delivery}",
        again[0].id
    );
}

/// Regression: the database was created 0644 and then chmod'ed (a window
/// for other local users), and an existing 0644 one stayed so. Now a new
/// one and its -wal are 0600 from the start, and an old one is tightened.
#[cfg(unix)]
#[test]
fn database_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let (writer, thread) = spawn_writer(&path, quiet()).unwrap();
    insert_all(&writer, vec![operation(None, &["a"])]);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("t.db-wal")), 0o600);
    drop(writer);
    thread.join().unwrap();

    for file in ["t.db", "t.db-wal", "t.db-shm"] {
        let file = dir.path().join(file);
        if file.exists() {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let (_writer, _thread) = spawn_writer(&path, quiet()).unwrap();
    assert_eq!(mode(&path), 0o600);
    for file in ["t.db-wal", "t.db-shm"] {
        let file = dir.path().join(file);
        if file.exists() {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }
}

/// A processing that skipped every event of the window is warned about
/// once a day; one that sent anything, or got too few events, is not.
#[test]
fn all_skipped_processings_are_warned_once_a_day() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let (writer, _thread) = spawn_writer(&path, quiet()).unwrap();
    let op = |processing: &str, status| NewOperation {
        processing: processing.into(),
        status,
        reason: Some("required field `ad_id` is missing".into()),
        warnings: Vec::new(),
        deliveries: Vec::new(),
        ..operation(None, &[])
    };
    insert_all(
        &writer,
        vec![
            op("never", OpStatus::Skipped),
            op("never", OpStatus::Skipped),
            op("never", OpStatus::Skipped),
            op("mixed", OpStatus::Skipped),
            op("mixed", OpStatus::Skipped),
            op("mixed", OpStatus::Held),
            op("few", OpStatus::Skipped),
        ],
    );
    // What the notifier does: read the candidates, then warn once a day.
    let reader = Reader::open(&path).unwrap();
    let warn_all_skipped = |since: i64, min_events: u32, now: i64| -> Vec<String> {
        let mut warned = Vec::new();
        for found in reader.all_skipped(since, min_events).unwrap() {
            let text = all_skipped_notice(&found.processing, found.count, found.latest_reason.as_ref());
            if writer
                .warn_once(found.processing.clone(), ALL_SKIPPED, found.latest, text, now)
                .unwrap()
            {
                warned.push(found.processing);
            }
        }
        warned
    };
    assert_eq!(warn_all_skipped(0, 3, 1_000), ["never"]);
    assert!(warn_all_skipped(0, 3, 2_000).is_empty(), "once a day");
    assert_eq!(warn_all_skipped(0, 3, 86_400_000 + 1), ["never"]);
    let pending = reader.pending_notifications(0, 10).unwrap();
    assert_eq!(pending.len(), 2);
    assert!(
        pending[0].text.to_string().contains("every one of the 3 events"),
        "{}",
        pending[0].text
    );
    assert!(
        pending[0]
            .text
            .to_string()
            .contains("required field `ad_id` is missing"),
        "{}",
        pending[0].text
    );
}

/// Pruning gives disk back: the file shrinks once most of it is pruned,
/// on a new database and on one made before incremental auto-vacuum.
#[test]
fn pruning_returns_disk() {
    let size = |path: &Path| std::fs::metadata(path).unwrap().len();
    let fill = |path: &Path| {
        let (writer, thread) = spawn_writer(path, quiet()).unwrap();
        let ops = (0..2_000)
            .map(|n| {
                let mut op = NewOperation::sample(1_000 + n);
                op.status = OpStatus::Skipped;
                op.request.body = vec![b'x'; 8_192];
                op
            })
            .collect();
        insert_all(&writer, ops);
        drop(writer);
        thread.join().unwrap();
    };
    let prune_all = |path: &Path| {
        let (writer, thread) = spawn_writer(path, quiet()).unwrap();
        while writer.prune(i64::MAX, 200).unwrap() > 0 {}
        drop(writer);
        thread.join().unwrap();
    };
    let dir = tempfile::tempdir().unwrap();

    let fresh = dir.path().join("fresh.db");
    fill(&fresh);
    let full = size(&fresh);
    assert!(full > 16_000_000, "{full}");
    prune_all(&fresh);
    assert!(size(&fresh) < full / 4, "{} of {full} bytes left", size(&fresh));

    // A database from before: no auto-vacuum, schema version 4.
    let old = dir.path().join("old.db");
    {
        let mut conn = Connection::open(&old).unwrap();
        sqlite::schema::migrate_to_without_vacuum(&mut conn, 4);
    }
    fill(&old);
    let full = size(&old);
    let conn = Connection::open(&old).unwrap();
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |row| row.get(0)).unwrap();
    assert_eq!(mode, 2, "migrated to incremental");
    drop(conn);
    prune_all(&old);
    assert!(size(&old) < full / 4, "{} of {full} bytes left", size(&old));
}

/// A reader refuses a database this build cannot read.
#[test]
fn reader_checks_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Reader::open(&dir.path().join("none.db")).err().unwrap();
    assert!(missing.to_string().contains("no database"), "{missing}");
    let path = dir.path().join("new.db");
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    let err = Reader::open(&path).err().unwrap();
    assert!(matches!(err, StoreError::TooNew(99, _)), "{err}");
}

/// Regression: 0.8 s after a breaker closed, `status`, /healthz and
/// `hookrelay_queue_depth` said nothing waited while 20-28 deliveries had
/// not been sent: the scheduler had claimed them (`in_flight`) ahead of
/// the workers. What waits counts claimed deliveries, everywhere.
pub(super) fn claimed_deliveries_still_wait(location: &Location) {
    let (writer, thread) = spawn_writer(location, quiet()).unwrap();
    let received = insert_all(&writer, vec![operation(None, &["a", "b"]), operation(None, &["a"])]);
    let processing = NewOperation::sample(0).processing;
    let reader = Reader::open(location).unwrap();
    let waiting = |expected: u64| {
        assert_eq!(reader.queue_stats().unwrap().depth, expected, "queue depth");
        let status = reader.processing_status(&processing).unwrap();
        assert_eq!(status.backlog.waiting, expected, "the processing's backlog");
        assert_eq!(status.backlog.oldest.is_some(), expected > 0);
        let receivers = reader.receiver_statuses().unwrap();
        let by_receivers: u64 = receivers.iter().map(|r| r.backlog.waiting).sum();
        assert_eq!(by_receivers, expected, "the receivers' backlogs");
        let queues = reader.overview(&processing, now_ms(), 0).unwrap().waiting;
        let by_actions: u64 = queues.iter().map(|q| q.pending + q.retrying).sum();
        assert_eq!(by_actions, expected, "the overview's per-action queues: {queues:?}");
    };
    waiting(3);
    let claimed = writer.claim_due(i64::MAX / 2, 2, Vec::new()).unwrap().due;
    assert_eq!(claimed.len(), 2);
    waiting(3);
    writer.record(delivered(claimed[0].id, now_ms())).unwrap();
    // A claim is a job too: once it answers, the record before it is in.
    writer.claim_due(0, 0, Vec::new()).unwrap();
    waiting(2);
    assert_eq!(received.len(), 2);
    drop(writer);
    thread.join().unwrap();
}

#[test]
fn claimed_deliveries_still_wait_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    claimed_deliveries_still_wait(&Location::File(dir.path().join("t.db")));
}
