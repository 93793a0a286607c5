//! The console's reads: the search and the overview's counts, and the
//! totals on both engines (SQLite's trigger-kept counters and
//! PostgreSQL's counts must say the same).

use super::tests::{delivered, insert_all, operation, quiet};
use super::*;
use crate::clock::now_ms;
use crate::model::{AttemptRecord, DeliveryStatus, NewOperation, OpStatus, Outcome};

fn with_event(event: &str, actions: &[&str]) -> NewOperation {
    let mut op = operation(None, actions);
    op.fields.push(("event".into(), event.into()));
    op
}

fn failed(id: i64) -> AttemptRecord {
    AttemptRecord {
        http_status: Some(400),
        outcome: Outcome::Failed,
        ..delivered(id, 1_000)
    }
}

/// The hour's counts for `event`, sorted, as `(what, n)` strings.
fn counts(reader: &Reader, event: Option<&str>) -> Vec<String> {
    let mut found: Vec<String> = reader
        .totals(&TotalsFilter {
            processings: vec!["p".into(), "other".into()],
            event: event.map(str::to_string),
            since: 0,
            until: 3_600_000,
        })
        .unwrap()
        .into_iter()
        .map(|c| {
            assert_eq!(c.hour, 0);
            match c.what {
                Counted::Operations(status) => format!("{status} {}", c.n),
                Counted::Action(action, status) => format!("{action}:{status} {}", c.n),
            }
        })
        .collect();
    found.sort();
    found
}

/// Operations by status and each action's outcomes, by event; a replay's
/// delivery replaces the outcome it replays; pruning takes its counts.
pub(super) fn totals_follow_outcomes(location: &Location) {
    let (writer, thread) = spawn_writer(location, quiet()).unwrap();
    let ids = insert_all(
        &writer,
        vec![
            with_event("appointment_paid", &["plarin", "tg"]),
            with_event("appointment_paid", &["plarin"]),
            with_event("client_added", &["plarin"]),
        ],
    );
    let due = writer.claim_due(1_000, 10, Vec::new()).unwrap().due;
    assert_eq!(due.len(), 4);
    let by = |op: i64, action: &str| {
        due.iter()
            .find(|d| d.operation_id == op && d.request.action == action)
            .unwrap()
            .id
    };
    writer.record(delivered(by(ids[0].id, "plarin"), 1_000)).unwrap();
    writer.record(failed(by(ids[0].id, "tg"))).unwrap();
    writer.record(failed(by(ids[1].id, "plarin"))).unwrap();
    writer.record(delivered(by(ids[2].id, "plarin"), 1_000)).unwrap();
    // Records are queued; a blocking job behind them waits for their commit.
    writer.receivers().unwrap();

    let reader = Reader::open(location.clone()).unwrap();
    assert_eq!(
        counts(&reader, Some("appointment_paid")),
        [
            "failed 1",
            "partial 1",
            "plarin:delivered 1",
            "plarin:failed 1",
            "tg:failed 1"
        ]
    );
    assert_eq!(counts(&reader, None).len(), 6, "{:?}", counts(&reader, None));
    assert_eq!(
        reader.events_seen(&["p".into()], 0).unwrap(),
        ["appointment_paid", "client_added"]
    );
    let listed = reader
        .history(&HistoryFilter {
            event: Some("client_added".into()),
            limit: 10,
            ..HistoryFilter::default()
        })
        .unwrap();
    assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), [ids[2].id]);

    let failing = |outcome: Option<Failing>, text: Option<&str>| -> Vec<i64> {
        let filter = HistoryFilter {
            outcome,
            error_text: text.map(str::to_string),
            limit: 10,
            ..HistoryFilter::default()
        };
        reader.history(&filter).unwrap().iter().map(|s| s.id).collect()
    };
    assert_eq!(failing(Some(Failing::Http4xx), None), [ids[1].id, ids[0].id]);
    assert_eq!(failing(Some(Failing::Outage), None), Vec::<i64>::new());
    assert_eq!(
        failing(None, Some("HTTP")),
        [ids[1].id, ids[0].id],
        "the error as recorded"
    );
    assert_eq!(failing(None, Some("nothing like it")), Vec::<i64>::new());
    let chips = reader.outcomes_of(&[ids[0].id]).unwrap();
    let chips: Vec<(&str, DeliveryStatus, Option<u16>)> = chips[&ids[0].id]
        .iter()
        .map(|c| (c.action.as_str(), c.status, c.http_status))
        .collect();
    assert_eq!(
        chips,
        [
            ("plarin", DeliveryStatus::Delivered, Some(200)),
            ("tg", DeliveryStatus::Failed, Some(400))
        ]
    );

    // Replayed: its new delivery waits, so the old failure no longer counts.
    let mut again = operation(None, &["plarin"]).deliveries;
    again[0].action = "plarin".into();
    writer
        .queue_replays(vec![Replay {
            operation_id: ids[1].id,
            deliveries: again,
            source: "test".into(),
        }])
        .unwrap();
    assert_eq!(
        counts(&reader, Some("appointment_paid")),
        ["partial 1", "plarin:delivered 1", "queued 1", "tg:failed 1"]
    );
    let due = writer.claim_due(now_ms(), 10, Vec::new()).unwrap().due;
    assert_eq!(due.len(), 1);
    writer.record(delivered(due[0].id, 1_000)).unwrap();
    writer.receivers().unwrap();
    assert_eq!(
        counts(&reader, Some("appointment_paid")),
        ["delivered 1", "partial 1", "plarin:delivered 2", "tg:failed 1"]
    );
    let replayed = reader.operation(ids[1].id).unwrap().unwrap().summary;
    assert_eq!(
        (replayed.delivered, replayed.deliveries),
        (1, 1),
        "the replayed failure no longer counts"
    );
    assert_eq!(failing(Some(Failing::Http4xx), None), [ids[0].id]);

    writer.prune(now_ms(), 100).unwrap();
    assert_eq!(
        counts(&reader, None),
        Vec::<String>::new(),
        "pruned with their operations"
    );
    drop(writer);
    thread.join().unwrap();
}

#[test]
fn totals_follow_outcomes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    totals_follow_outcomes(&Location::File(dir.path().join("t.db")));
}

#[test]
fn totals_follow_outcomes_on_postgres() {
    let Some(db) = super::pg_tests::TestDatabase::create() else {
        return;
    };
    totals_follow_outcomes(&db.location);
}

/// The console's reads: a field value finds its operations newest first
/// (a phone however written), pages continue below the last id, a
/// viewer's processings bound every list, and the overview's counts
/// follow status changes and pruning.
#[test]
fn search_pages_and_overview_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let (writer, thread) = spawn_writer(&path, quiet()).unwrap();
    let with = |processing: &str, fields: &[(&str, &str)], actions: &[&str]| {
        let mut op = operation(None, actions);
        op.processing = processing.into();
        op.received_at = now_ms();
        op.fields = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if actions.is_empty() {
            op.status = OpStatus::Delivered;
        }
        op
    };
    let ops = insert_all(
        &writer,
        vec![
            with(
                "salon-a",
                &[("phone", "8 (999) 123-45-67"), ("name", "Иванова Анна")],
                &["plarin"],
            ),
            with("salon-b", &[("phone", "+79991234567")], &[]),
            with("salon-a", &[("appointment_id", "A-77")], &[]),
        ],
    );
    let ids: Vec<i64> = ops.iter().map(|o| o.id).collect();
    // The daemon's indexer runs ten times a second; a test need not wait.
    assert_eq!(index_search(&path).unwrap(), 3);
    assert_eq!(index_search(&path).unwrap(), 0, "each operation is indexed once");
    let reader = Reader::open(&path).unwrap();
    let found = |search: &str, within: Option<&[&str]>, before: Option<i64>| -> Vec<i64> {
        let filter = HistoryFilter {
            search: Some(search.into()),
            within: within.map(|w| w.iter().map(|s| s.to_string()).collect()),
            before,
            limit: 10,
            ..HistoryFilter::default()
        };
        reader.history(&filter).unwrap().iter().map(|o| o.id).collect()
    };
    assert_eq!(found("89991234567", None, None), [ids[1], ids[0]], "newest first");
    assert_eq!(found("89991234567", None, Some(ids[1])), [ids[0]], "the next page");
    assert_eq!(found("+7 999 123 45 67", Some(&["salon-a"]), None), [ids[0]]);
    assert_eq!(found("иванова", None, None), [ids[0]], "a whole word, any case");
    assert!(found("иван", None, None).is_empty(), "not a word's start unless asked");
    assert_eq!(found("иван*", None, None), [ids[0]], "a word's start when asked");
    assert_eq!(found("a-77", None, None), [ids[2]]);
    assert!(found("\"", None, None).is_empty(), "no word: nothing, not an error");
    assert!(found("NEAR(a b)", None, None).is_empty(), "query syntax is just text");

    let overview = reader.overview("salon-a", now_ms(), 5).unwrap();
    assert_eq!(overview.last.map(|(id, _)| id), Some(ids[2]));
    assert_eq!(overview.day, [(OpStatus::Queued, 1), (OpStatus::Delivered, 1)]);
    assert_eq!(overview.waiting.len(), 1);
    assert_eq!(overview.waiting[0].pending, 1);

    let due = writer.claim_due(now_ms(), 10, Vec::new()).unwrap().due;
    writer.record(delivered(due[0].id, now_ms())).unwrap();
    // Answered after the commit that carries the record queued before it.
    writer.release(Vec::new()).unwrap();
    let overview = reader.overview("salon-a", now_ms(), 5).unwrap();
    assert_eq!(
        overview.week,
        [(OpStatus::Delivered, 2)],
        "a status change moves the count"
    );
    assert!(overview.waiting.is_empty());

    assert_eq!(writer.prune(now_ms() + 1, 100).unwrap(), 3);
    assert_eq!(reader.overview("salon-a", now_ms(), 5).unwrap().week, []);
    assert!(
        found("89991234567", None, None).is_empty(),
        "pruned operations match nothing"
    );
    // All three pruned: the index starts over (empty, nothing to index).
    assert_eq!(index_search(&path).unwrap(), 0);
    let counters: i64 = Connection::open(sqlite::search::search_path(&path))
        .unwrap()
        .query_row("SELECT count(*) FROM progress", [], |row| row.get(0))
        .unwrap();
    assert_eq!(counters, 0, "the index was emptied and its counts reset");
    let again = insert_all(&writer, vec![with("salon-a", &[("phone", "89991234567")], &[])]);
    assert_eq!(index_search(&path).unwrap(), 1);
    assert_eq!(found("89991234567", None, None), [again[0].id], "and filled again");
    drop(writer);
    thread.join().unwrap();
}
