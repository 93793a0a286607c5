//! The store against a real PostgreSQL: the one `scripts/test` starts
//! (HOOKRELAY_TEST_POSTGRES), a fresh database per test. Several writers
//! on one database stand for several instances.

use std::sync::{Arc, Barrier};

use super::tests::{delivered, insert_all, operation, quiet};
use super::*;
use crate::clock::now_ms;
use crate::model::OpStatus;

/// A database of its own for one test, dropped with it.
pub(crate) struct TestDatabase {
    admin: String,
    name: String,
    pub(crate) location: Location,
}

impl TestDatabase {
    /// A fresh database on the test cluster; None (and a line saying so)
    /// when there is no cluster, unless under CI, where that is a failure.
    pub(crate) fn create() -> Option<TestDatabase> {
        let Ok(admin) = std::env::var("HOOKRELAY_TEST_POSTGRES") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "HOOKRELAY_TEST_POSTGRES is not set: run the tests with scripts/test"
            );
            eprintln!("skipped: no PostgreSQL (run the tests with scripts/test)");
            return None;
        };
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).unwrap();
        let name = format!("t_{}", random.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let mut client = db::connect_pg(&admin).unwrap();
        client.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path(&name);
        Some(TestDatabase {
            admin,
            name,
            location: Location::Postgres(url.to_string()),
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut client) = db::connect_pg(&self.admin) {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// The whole path on PostgreSQL: stored, claimed, recorded, read back,
/// and the schema is at this build's version for the command line.
#[test]
fn insert_claim_record_and_read() {
    let Some(db) = TestDatabase::create() else { return };
    let (writer, thread) = spawn_writer(&db.location, quiet()).unwrap();
    let ids = insert_all(&writer, vec![operation(None, &["a", "b"]), operation(None, &["a"])]);
    assert_eq!(ids[0].status, OpStatus::Queued);
    let claimed = writer.claim_due(i64::MAX / 2, 10, Vec::new()).unwrap();
    assert_eq!(claimed.due.len(), 3);
    assert_eq!(
        claimed.due[0].request.headers,
        vec![("X-A".to_string(), "1".to_string())]
    );
    for due in &claimed.due {
        writer.record(delivered(due.id, 1)).unwrap();
    }
    // A claim is a job too: once it answers, the records before it are in.
    assert!(writer.claim_due(i64::MAX / 2, 10, Vec::new()).unwrap().due.is_empty());
    drop(writer);
    thread.join().unwrap();

    let reader = Reader::open(&db.location).unwrap();
    let op = reader.operation(ids[0].id).unwrap().unwrap();
    assert_eq!(op.summary.status, OpStatus::Delivered);
    assert_eq!(op.request.query, b"a=1");
    assert_eq!(op.deliveries[0].attempts[0].http_status, Some(200));
    // The operation and its two deliveries went in as one statement.
    let actions: Vec<&str> = op.deliveries.iter().map(|d| d.action.as_str()).collect();
    assert_eq!(actions, ["a", "b"]);
    let history = reader
        .history(&HistoryFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(history.len(), 2);
    let overview = reader.overview(&op.summary.processing, 1_000, 5).unwrap();
    assert_eq!(overview.week, vec![(OpStatus::Delivered, 2)]);
}

/// Two instances claiming at once never get the same delivery, and
/// between them get every one.
#[test]
fn instances_claim_disjoint_deliveries() {
    let Some(db) = TestDatabase::create() else { return };
    let (a, a_thread) = spawn_writer(&db.location, quiet()).unwrap();
    let (b, b_thread) = spawn_writer(&db.location, quiet()).unwrap();
    insert_all(&a, (0..200).map(|_| operation(None, &["x"])).collect());
    let start = Arc::new(Barrier::new(2));
    let claim_all = |writer: Writer, start: Arc<Barrier>| {
        std::thread::spawn(move || {
            start.wait();
            let mut got = Vec::new();
            loop {
                let batch = writer.claim_due(i64::MAX / 2, 7, Vec::new()).unwrap().due;
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch.into_iter().map(|d| d.id));
            }
        })
    };
    let from_a = claim_all(a.clone(), Arc::clone(&start));
    let from_b = claim_all(b.clone(), start);
    let (from_a, from_b) = (from_a.join().unwrap(), from_b.join().unwrap());
    let mut all: Vec<i64> = from_a.iter().chain(&from_b).copied().collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 200, "every delivery claimed exactly once");
    assert_eq!(from_a.len() + from_b.len(), 200, "none claimed twice");
    assert!(!from_a.is_empty() && !from_b.is_empty(), "both instances took some");
    drop((a, b));
    a_thread.join().unwrap();
    b_thread.join().unwrap();
}

/// A stopped instance's claims lapse and another instance takes them over;
/// its own live claims it never takes twice.
#[test]
fn lapsed_leases_are_taken_over() {
    let Some(db) = TestDatabase::create() else { return };
    let (a, a_thread) = spawn_writer(&db.location, quiet()).unwrap();
    insert_all(&a, vec![operation(None, &["x"])]);
    let now = now_ms();
    let held = a.claim_due(now, 10, Vec::new()).unwrap();
    assert_eq!(held.due.len(), 1);
    // Its lease lapsed by then, but it was renewed with this claim.
    let later = now + super::LEASE_MS * 2;
    assert!(
        a.claim_due(later, 10, Vec::new()).unwrap().due.is_empty(),
        "not its own"
    );
    drop(a);
    a_thread.join().unwrap();

    let (b, b_thread) = spawn_writer(&db.location, quiet()).unwrap();
    let before = b.claim_due(later + 1_000, 10, Vec::new()).unwrap();
    assert!(before.due.is_empty(), "still leased");
    assert_eq!(before.next_due, Some(later + super::LEASE_MS), "when the lease lapses");
    let after = b.claim_due(later + super::LEASE_MS + 1, 10, Vec::new()).unwrap();
    assert_eq!(after.due.iter().map(|d| d.id).collect::<Vec<_>>(), vec![held.due[0].id]);
    drop(b);
    b_thread.join().unwrap();
}

/// Regression (found by a CI run of the restart drill): a claim whose
/// answer an instance lost kept its rows claimed, their lease renewed
/// with every later claim, so no one ever sent them. With nothing in
/// hand, the instance gives them back, and they are claimed again.
#[test]
fn orphaned_claims_are_given_back() {
    let Some(db) = TestDatabase::create() else { return };
    let (a, a_thread) = spawn_writer(&db.location, quiet()).unwrap();
    insert_all(&a, vec![operation(None, &["x", "y"])]);
    let now = now_ms();
    let lost = a.claim_due(now, 10, Vec::new()).unwrap();
    assert_eq!(lost.due.len(), 2);
    // As if the answer never came: the scheduler holds nothing.
    let later = now + super::LEASE_MS * 2;
    assert!(
        a.claim_due(later, 10, Vec::new()).unwrap().due.is_empty(),
        "renewed, still its own"
    );
    assert_eq!(a.release_orphans().unwrap(), 2);
    let again = a.claim_due(later, 10, Vec::new()).unwrap();
    assert_eq!(again.due.len(), 2, "due again, and claimed again");
    assert_eq!(
        a.release_orphans().unwrap(),
        2,
        "what it holds now is its own too: only the scheduler knows"
    );
    drop(a);
    a_thread.join().unwrap();
}

/// Twins inserted by two instances at the same moment: exactly one is
/// accepted, the other is its duplicate.
#[test]
fn dedupe_holds_across_instances() {
    let Some(db) = TestDatabase::create() else { return };
    let (a, a_thread) = spawn_writer(&db.location, quiet()).unwrap();
    let (b, b_thread) = spawn_writer(&db.location, quiet()).unwrap();
    for round in 0..20 {
        let key = format!("k{round}");
        let start = Arc::new(Barrier::new(2));
        let insert = |writer: Writer, start: Arc<Barrier>, key: String| {
            std::thread::spawn(move || {
                start.wait();
                insert_all(&writer, vec![operation(Some(&key), &["x"])]).remove(0)
            })
        };
        let one = insert(a.clone(), Arc::clone(&start), key.clone());
        let two = insert(b.clone(), start, key);
        let mut statuses = vec![one.join().unwrap().status, two.join().unwrap().status];
        statuses.sort_by_key(|s| s.as_str());
        assert_eq!(statuses, vec![OpStatus::Duplicate, OpStatus::Queued], "round {round}");
    }
    drop((a, b));
    a_thread.join().unwrap();
    b_thread.join().unwrap();
}

/// Sessions are encrypted when the server offers TLS (sslmode's default,
/// prefer, checks no certificate, as libpq's); verify-full checks the
/// certificate against sslrootcert, and one the public roots do not know
/// is refused.
#[test]
fn tls_by_default_and_verify_full_checks_the_certificate() {
    let Some(db) = TestDatabase::create() else { return };
    let Location::Postgres(url) = &db.location else {
        unreachable!()
    };
    let encrypted = |url: &str| -> Result<bool, StoreError> {
        let mut client = db::connect_pg(url)?;
        Ok(client
            .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])?
            .get(0))
    };
    let Ok(ca) = std::env::var("HOOKRELAY_TEST_POSTGRES_CA") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "scripts/test sets HOOKRELAY_TEST_POSTGRES_CA"
        );
        eprintln!("skipped: the test cluster has no TLS");
        return;
    };
    assert!(encrypted(url).unwrap(), "prefer encrypts");
    let verified = format!("{url}?sslmode=verify-full&sslrootcert={ca}");
    assert!(encrypted(&verified).unwrap());
    let unknown = encrypted(&format!("{url}?sslmode=verify-full")).unwrap_err();
    assert!(unknown.to_string().to_lowercase().contains("certificate"), "{unknown}");
    assert!(!encrypted(&format!("{url}?sslmode=disable")).unwrap());
}

/// A claim is its instance's to send while its lease is renewed; once the
/// lease lapsed and another instance took the delivery over, the first one
/// learns it must not send it.
#[test]
fn a_claim_is_sent_only_while_leased() {
    let Some(db) = TestDatabase::create() else { return };
    let (a, a_thread) = spawn_writer(&db.location, quiet()).unwrap();
    insert_all(&a, vec![operation(None, &["x"])]);
    let now = now_ms();
    assert!(!a.leases_hold(now), "nothing claimed, nothing leased");
    let held = a.claim_due(now, 10, Vec::new()).unwrap().due;
    assert!(
        a.leases_hold(now + super::LEASE_MS - 1_000),
        "the claim's renewal committed"
    );
    assert!(!a.leases_hold(now + super::LEASE_MS + 1_000));
    assert!(a.still_claimed(held[0].id).unwrap());

    let (b, b_thread) = spawn_writer(&db.location, quiet()).unwrap();
    let taken = b.claim_due(now + super::LEASE_MS + 1, 10, Vec::new()).unwrap().due;
    assert_eq!(taken[0].id, held[0].id);
    assert!(
        !a.still_claimed(held[0].id).unwrap(),
        "taken over: not the first instance's to send"
    );
    drop((a, b));
    a_thread.join().unwrap();
    b_thread.join().unwrap();
}

/// A session that ends in the middle of a transaction (the server
/// restarted, or killed it) fails that transaction's COMMIT, and the next
/// transaction reconnects by itself.
#[test]
fn a_broken_session_fails_its_transaction() {
    let Some(test) = TestDatabase::create() else { return };
    let Location::Postgres(url) = &test.location else {
        unreachable!()
    };
    let conn = db::Db::Postgres(Box::new(db::Pg::connect(url).unwrap()));
    conn.batch("CREATE TABLE t (x BIGINT)").unwrap();
    conn.batch("BEGIN").unwrap();
    conn.execute("INSERT INTO t (x) VALUES (?1)", &[&1i64]).unwrap();
    let pid: i64 = conn
        .query_one("SELECT CAST(pg_backend_pid() AS BIGINT)", &[], |row| row.get(0))
        .unwrap();
    let mut admin = db::connect_pg(url).unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(CAST(CAST($1 AS TEXT) AS INTEGER))",
            &[&pid.to_string()],
        )
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(conn.batch("COMMIT").is_err(), "the commit of a lost transaction fails");
    let _ = conn.batch("ROLLBACK");
    conn.batch("BEGIN").unwrap();
    conn.execute("INSERT INTO t (x) VALUES (?1)", &[&2i64]).unwrap();
    conn.batch("COMMIT").unwrap();
    let rows: Vec<i64> = conn.query("SELECT x FROM t", &[], |row| row.get(0)).unwrap();
    assert_eq!(rows, vec![2], "only the second transaction's row");
}

#[test]
fn claimed_deliveries_still_wait_on_postgres() {
    let Some(db) = TestDatabase::create() else { return };
    super::tests::claimed_deliveries_still_wait(&db.location);
}

#[test]
fn batches_take_each_row_once_on_postgres() {
    let Some(db) = TestDatabase::create() else { return };
    super::write_tests::batches_take_each_row_once(&db.location);
}

/// Two instances gathering the same rows into batches at once: each row
/// ends in exactly one batch.
#[test]
fn two_instances_never_batch_a_row_twice() {
    let Some(db) = TestDatabase::create() else { return };
    let (first, _a) = spawn_writer(&db.location, quiet()).unwrap();
    let (second, _b) = spawn_writer(&db.location, quiet()).unwrap();
    let rows: Vec<crate::model::NewOperation> = (0..60)
        .map(|_| {
            let mut op = operation(None, &["m"]);
            op.deliveries[0].batch = Some("p/m".into());
            op
        })
        .collect();
    insert_all(&first, rows);
    let start = Arc::new(Barrier::new(2));
    let gather = |writer: Writer, start: Arc<Barrier>| {
        std::thread::spawn(move || {
            start.wait();
            let mut made = Vec::new();
            while let Some(id) = writer.make_batch("p/m".into(), 7, 0, now_ms()).unwrap() {
                made.push(id);
            }
            made
        })
    };
    let (a, b) = (gather(first.clone(), Arc::clone(&start)), gather(second, start));
    let mut batches = a.join().unwrap();
    batches.extend(b.join().unwrap());
    let mut rows: Vec<i64> = Vec::new();
    for batch in &batches {
        rows.extend(first.batch_rows(*batch).unwrap().into_iter().map(|(id, _)| id));
    }
    let total = rows.len();
    rows.sort_unstable();
    rows.dedup();
    assert_eq!((total, rows.len()), (60, 60), "batches {batches:?}");
}

#[test]
fn one_failing_insert_does_not_undo_the_others_on_postgres() {
    let Some(db) = TestDatabase::create() else { return };
    super::write_tests::one_failing_insert_does_not_undo_the_others(&db.location);
}

#[test]
fn a_batch_of_webhooks_keeps_each_ones_rows_on_postgres() {
    let Some(db) = TestDatabase::create() else { return };
    super::write_tests::a_batch_of_webhooks_keeps_each_ones_rows(&db.location);
}

#[test]
fn the_status_roll_up_in_sql_matches_the_models_on_postgres() {
    let Some(db) = TestDatabase::create() else { return };
    super::write_tests::status_roll_up_matches(&db.location);
}

/// The words kept in the operation's row before version 8 move to their
/// own table and are still found; a webhook stored after is found too.
#[test]
fn words_move_to_their_own_table() {
    let Some(db) = TestDatabase::create() else { return };
    let Location::Postgres(url) = &db.location else {
        unreachable!()
    };
    let old = Db::Postgres(Box::new(db::Pg::connect(url).unwrap()));
    postgres::schema::migrate_to(&old, 7).unwrap();
    old.execute(
        "INSERT INTO operations (processing, received_at, remote_addr, method, raw_query, raw_body, charset,
             fields, warnings, status, updated_at, search_text)
         VALUES ('p', 1, '', 'GET', '', '', 'utf-8', '{}', '[]', 'held', 1, ?1)",
        &[&"анна 79991234567"],
    )
    .unwrap();
    drop(old);
    let (writer, thread) = spawn_writer(&db.location, quiet()).unwrap();
    let mut op = operation(None, &["a"]);
    op.fields = vec![("client".into(), "Анна Петрова".into())];
    insert_all(&writer, vec![op]);
    drop(writer);
    thread.join().unwrap();
    let reader = Reader::open(&db.location).unwrap();
    let found = |search: &str| -> Vec<i64> {
        let filter = HistoryFilter {
            search: Some(search.into()),
            limit: 10,
            ..Default::default()
        };
        reader.history(&filter).unwrap().iter().map(|op| op.id).collect()
    };
    assert_eq!(found("8 (999) 123-45-67"), [1]);
    assert_eq!(found("анна"), [2, 1]);
    assert_eq!(found("петрова"), [2]);
}

/// A commit that queues a delivery wakes every instance's scheduler (the
/// NOTIFY goes with the writer's COMMIT, in one round trip).
#[test]
fn a_commit_that_queues_a_delivery_wakes_the_cluster() {
    use ::postgres::fallible_iterator::FallibleIterator;
    let Some(db) = TestDatabase::create() else { return };
    let Location::Postgres(url) = &db.location else {
        unreachable!()
    };
    let (writer, _thread) = spawn_writer(&db.location, quiet()).unwrap();
    let mut listener = db::connect_pg(url).unwrap();
    listener
        .batch_execute(&format!("LISTEN {}", postgres::claims::DUE_CHANNEL))
        .unwrap();
    insert_all(&writer, vec![operation(None, &["a"])]);
    let mut notifications = listener.notifications();
    let heard = notifications
        .timeout_iter(std::time::Duration::from_secs(10))
        .next()
        .unwrap();
    assert_eq!(
        heard.map(|n| n.channel().to_string()),
        Some(postgres::claims::DUE_CHANNEL.to_string())
    );
}
