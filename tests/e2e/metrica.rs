//! Yandex Metrica's batches against a local fake of its API
//! (`support::metrica`): rows gathered and uploaded as one CSV, Metrica's
//! row rules, its refusals, an answer lost, the upload's state read until
//! it ends, and kill -9 at the worst moments: no row lost, none uploaded
//! twice.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::metrica::{Metrica, Upload};
use crate::support::{config_text, console_get, console_session, get, wait_for, wait_until, Relay, TOKEN};

const OAUTH: &str = "y0_AgAAAAB-metrica-token-0123456789";
const ADMIN: &str = "admin-token-0123456789abcdefXYZ";

fn token(name: &str) -> String {
    format!("{name}-{TOKEN}")
}

/// A processing `name` whose one action is a metrica action with `keys`.
fn processing(name: &str, fake: &Metrica, keys: &str) -> String {
    format!(
        "[[processing]]\nname = \"{name}\"\ntoken = \"{}\"\n\n[[processing.action]]\nname = \"metrica\"\nkind = \"metrica\"\n\
         counter = 2215573\ntoken = \"{OAUTH}\"\napi_url = \"{}\"\n{keys}\n",
        token(name),
        fake.api_url()
    )
}

fn send(relay: &Relay, name: &str, query: &str) -> i64 {
    let (status, id, body) = get(&relay.url(&format!("/hook/{}?{query}", token(name))));
    assert_eq!(status, 200, "{body}");
    id.unwrap()
}

fn status_json(relay: &Relay) -> Value {
    let out = relay.cli(&["status", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Orders matched by phone: `batch_max` rows go out at once as one CSV
/// with Metrica's columns, phones as 7XXXXXXXXXX, the time in the
/// counter's zone; rows too old, in the future or without a phone are
/// refused at once, in Metrica's words; what waits shows in `status`,
/// and each delivery shows its batch.
#[test]
fn orders_go_out_in_one_batch_at_batch_max() {
    let fake = Metrica::start(OAUTH, &[]);
    let with_console = |processings: &str| {
        config_text(processings).replace(
            "max_body_bytes = 1024\n",
            &format!("max_body_bytes = 1024\nadmin_token = \"{ADMIN}\"\n"),
        )
    };
    let relay = Relay::start_in(
        tempfile::tempdir().unwrap(),
        &with_console(&processing(
            "salon",
            &fake,
            "batch_max = 3\nbatch_every = \"1h\"\ntime_zone = \"Europe/Moscow\"\n\
         [processing.action.row]\nid = \"{{appointment_id}}\"\ncreate_date_time = \"{{paid_at}}\"\n\
         phones = \"{{client_phone}}\"\nrevenue = \"{{total}}\"\norder_status = \"PAID\"\n",
        )),
    );
    let day = |days_ago: u64| {
        let at = now_secs() - days_ago * 86_400;
        // A Unix time reads as itself whatever the zone.
        at.to_string()
    };
    let old = send(
        &relay,
        "salon",
        &format!("appointment_id=A0&paid_at={}&client_phone=89161234567", day(30)),
    );
    let future = send(
        &relay,
        "salon",
        &format!(
            "appointment_id=A9&paid_at={}&client_phone=89161234567",
            now_secs() + 86_400
        ),
    );
    let no_phone = send(&relay, "salon", &format!("appointment_id=A8&paid_at={}", day(1)));
    for (id, says) in [
        (old, "older than Metrica's 21-day window"),
        (future, "is in the future"),
        (no_phone, "nothing says who the row is about"),
    ] {
        let op = relay.wait_status(id, "failed");
        let error = op["deliveries"][0]["last_error"].as_str().unwrap().to_string();
        assert!(error.contains(says), "{error}");
    }
    let (iso, dotted) = yesterday();
    let ids: Vec<i64> = (1..=2)
        .map(|i| {
            send(
                &relay,
                "salon",
                &format!("appointment_id=A{i}&paid_at={iso}+10:0{i}&client_phone=8+(916)+123-45-6{i}&total=1+500,50"),
            )
        })
        .collect();
    // Two rows wait: fewer than batch_max, and far from batch_every.
    let waiting = wait_until(|| status_json(&relay)["batches"][0]["waiting"] == 2);
    assert!(waiting, "{:#}", status_json(&relay));
    assert_eq!(relay.show(ids[0])["deliveries"][0]["batch"], "waiting");
    assert!(fake.uploads().is_empty());
    let third = send(
        &relay,
        "salon",
        &format!("appointment_id=A3&paid_at={dotted}+12:30&client_phone=%2B7+916+123+45+63"),
    );
    let op = relay.wait_status(third, "delivered");
    let uploads = fake.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    let u = &uploads[0];
    assert_eq!(
        u.header,
        ["id", "create_date_time", "phones", "order_status", "revenue"]
    );
    let rows: Vec<Vec<&str>> = u.rows.iter().map(|r| r.iter().map(String::as_str).collect()).collect();
    assert_eq!(
        rows,
        [
            ["A1", &format!("{iso} 10:01:00"), "79161234561", "PAID", "1500.50"],
            ["A2", &format!("{iso} 10:02:00"), "79161234562", "PAID", "1500.50"],
            ["A3", &format!("{iso} 12:30:00"), "79161234563", "PAID", ""],
        ]
    );
    let batch = &op["deliveries"][0]["batch"];
    assert_eq!(batch["rows"], 3, "{op:#}");
    assert_eq!(batch["state"], "done", "{op:#}");
    assert_eq!(batch["upload_id"], "501", "{op:#}");
    let attempt = &op["deliveries"][0]["attempts"][0];
    assert_eq!(attempt["http_status"], 200);
    assert!(
        attempt["request"].as_str().unwrap().contains("(batch 1: 3 rows)"),
        "{attempt}"
    );
    for id in &ids {
        relay.wait_status(*id, "delivered");
    }
    let status = status_json(&relay);
    assert_eq!(status["batches"][0]["waiting"], 0, "{status:#}");
    assert_eq!(status["batches"][0]["last_batch"]["upload_id"], "501", "{status:#}");
    let text = String::from_utf8(relay.cli(&["status"]).stdout).unwrap();
    assert!(text.contains("metrica salon/metrica:"), "{text}");
    assert!(text.contains("batch 1, 3 rows, done"), "{text}");
    // The console says it in Russian, on the operation and the overview.
    let cookie = console_session(&relay, ADMIN);
    let (_, page) = console_get(&relay, &cookie, &format!("/operations/{third}?lang=ru"));
    assert!(page.contains("Пачка 1 · обработана · строк: 3"), "{page}");
    assert!(page.contains("загрузка 501"), "{page}");
    let (_, overview) = console_get(&relay, &cookie, "/?lang=ru");
    assert!(overview.contains("Пачки для Яндекс Метрики"), "{overview}");
    // The token goes in the header only, and shows nowhere.
    assert!(!format!("{op}{status}{text}{page}{overview}").contains(OAUTH));
    assert!(!relay.log_text().contains(OAUTH));
}

/// Fewer than `batch_max` rows go out once the oldest waited `batch_every`.
#[test]
fn rows_go_out_after_batch_every() {
    let fake = Metrica::start(OAUTH, &[]);
    let relay = Relay::start(&processing(
        "salon",
        &fake,
        "batch_max = 100\nbatch_every = \"2s\"\n[processing.action.row]\nid = \"{{id}}\"\nphones_md5 = \"{{phone}}\"\n",
    ));
    let first = send(&relay, "salon", "id=1&phone=89161234567");
    let second = send(&relay, "salon", "id=2&phone=89161234568");
    relay.wait_status(first, "delivered");
    relay.wait_status(second, "delivered");
    let uploads = fake.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    // md5 of 79161234567: the phone as Metrica writes it, hashed.
    assert_eq!(uploads[0].header, ["id", "create_date_time", "phones_md5"]);
    assert_eq!(uploads[0].rows[0][2], md5_hex("79161234567"));
}

fn md5_hex(text: &str) -> String {
    use md5::Digest;
    md5::Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Yesterday in Moscow, as `YYYY-MM-DD` and `DD.MM.YYYY`.
fn yesterday() -> (String, String) {
    let moscow = jiff::tz::TimeZone::get("Europe/Moscow").unwrap();
    let day = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(24))
        .unwrap()
        .to_zoned_datetime(moscow);
    (
        day.strftime("%Y-%m-%d").to_string(),
        day.strftime("%d.%m.%Y").to_string(),
    )
}

/// Offline conversions: 503 `backend_error` and 429 are tried again; an
/// upload whose answer was lost is found in Metrica's list by its comment
/// and not sent again; its state is read until PROCESSED, with the
/// counts; each row's delivery shows every step.
#[test]
fn conversions_get_through_refusals_and_a_lost_answer_once() {
    let fake = Metrica::start(OAUTH, &["cid-1", "cid-2"]);
    fake.next_uploads(&[Upload::Backend, Upload::Quota, Upload::Late(Duration::from_secs(3))]);
    let relay = Relay::start(&processing(
        "salon",
        &fake,
        "route = \"conversions\"\nbatch_max = 3\npoll_every = \"1s\"\ntimeout = \"1s\"\n\
         retry = { attempts = 6, first_delay = \"100ms\", max_delay = \"300ms\" }\n\
         [processing.action.row]\nClientId = \"{{cid}}\"\nTarget = \"paid_visit\"\nPrice = \"{{total}}\"\nCurrency = \"RUB\"\n",
    ));
    let ids: Vec<i64> = (1..=3)
        .map(|i| send(&relay, "salon", &format!("cid=cid-{i}&total={i}00")))
        .collect();
    for id in &ids {
        relay.wait_status(*id, "delivered");
    }
    let processed = wait_until(|| relay.show(ids[0])["deliveries"][0]["batch"]["upload_state"] == "PROCESSED");
    let op = relay.show(ids[0]);
    assert!(processed, "{op:#}");
    let batch = &op["deliveries"][0]["batch"];
    assert_eq!(
        (batch["linked"].clone(), batch["user_not_found"].clone()),
        (2.into(), 1.into()),
        "{op:#}"
    );
    // One upload taken, three refused or unanswered tries before it.
    let uploads = fake.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(uploads[0].comment.as_deref(), Some("hookrelay batch 1"));
    assert_eq!(
        uploads[0].header,
        ["ClientId", "Target", "DateTime", "Price", "Currency"]
    );
    assert_eq!(fake.refused(), [503, 429]);
    let posts = fake.requests().iter().filter(|(m, _)| m == "POST").count();
    assert_eq!(posts, 3, "{:?}", fake.requests());
    let attempts: Vec<String> = op["deliveries"][0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["request"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(attempts.len(), 4, "{attempts:?}");
    assert!(attempts[3].contains("found as upload 501"), "{attempts:?}");
    assert_eq!(op["deliveries"][0]["attempts"][0]["http_status"], 503);
    assert_eq!(op["deliveries"][0]["attempts"][1]["http_status"], 429);
    assert!(fake.most_at_once() <= 3, "{}", fake.most_at_once());
}

/// Uploads that all go unanswered, none of which Metrica's list has: once
/// the retries are spent, the rows fail, saying so; nothing was taken.
#[test]
fn unanswered_uploads_missing_from_the_list_fail_in_the_end() {
    let fake = Metrica::start(OAUTH, &[]);
    let lost = Upload::Lost(Duration::from_secs(2));
    fake.next_uploads(&[lost, lost]);
    let relay = Relay::start(&processing(
        "salon",
        &fake,
        "route = \"conversions\"\nbatch_max = 1\npoll_every = \"1s\"\ntimeout = \"1s\"\n\
         retry = { attempts = 2, first_delay = \"100ms\", max_delay = \"100ms\" }\n\
         [processing.action.row]\nClientId = \"{{cid}}\"\nTarget = \"paid_visit\"\n",
    ));
    let id = send(&relay, "salon", "cid=cid-1");
    let op = relay.wait_status(id, "failed");
    let error = op["deliveries"][0]["last_error"].as_str().unwrap().to_string();
    assert!(
        error.contains("2 uploads went unanswered and Metrica's list has none of them"),
        "{op:#}"
    );
    assert!(fake.uploads().is_empty());
    let posts = fake.requests().iter().filter(|(m, _)| m == "POST").count();
    assert_eq!(posts, 2, "{:?}", fake.requests());
}

/// An upload none of whose visitors Metrica knows ends LINKAGE_FAILURE,
/// and the operator is told; a refused token fails the rows at once.
#[test]
fn an_unlinked_upload_is_told_and_a_bad_token_fails() {
    let fake = Metrica::start(OAUTH, &[]);
    let relay = Relay::start(&format!(
        "{}\n{}",
        processing(
            "salon",
            &fake,
            "route = \"conversions\"\nbatch_max = 1\npoll_every = \"1s\"\n\
             [processing.action.row]\nYclid = \"{{yclid}}\"\nTarget = \"booked\"\n",
        ),
        processing(
            "other",
            &fake,
            "batch_max = 1\n[processing.action.row]\nid = \"{{id}}\"\nemails = \"{{email}}\"\n",
        )
        .replace(OAUTH, "y0_wrong-token-000000000000")
    ));
    let id = send(&relay, "salon", "yclid=123456789");
    relay.wait_status(id, "delivered");
    let ended = wait_until(|| relay.show(id)["deliveries"][0]["batch"]["upload_state"] == "LINKAGE_FAILURE");
    assert!(ended, "{:#}", relay.show(id));
    relay.wait_log("ended LINKAGE_FAILURE");
    let refused = send(&relay, "other", "id=7&email=Anna@Example.ru");
    let op = relay.wait_status(refused, "failed");
    let attempt = &op["deliveries"][0]["attempts"][0];
    assert_eq!(attempt["http_status"], 403, "{op:#}");
    assert_eq!(op["deliveries"][0]["batch"]["state"], "failed", "{op:#}");
}

/// kill -9 while rows wait, and again while Metrica holds the upload's
/// answer: after each restart the rows are still there, the batch is
/// found in Metrica's list instead of sent again, and every row is in
/// exactly one accepted upload.
#[test]
fn kill9_loses_no_row_and_sends_none_twice() {
    let fake = Metrica::start(OAUTH, &["cid-1", "cid-2", "cid-3", "cid-4"]);
    fake.next_uploads(&[Upload::Hang]);
    let mut relay = Relay::start(&processing(
        "salon",
        &fake,
        "route = \"conversions\"\nbatch_max = 4\npoll_every = \"1s\"\ntimeout = \"5s\"\n\
         [processing.action.row]\nClientId = \"{{cid}}\"\nTarget = \"paid_visit\"\n",
    ));
    let mut ids: Vec<i64> = (1..=2)
        .map(|i| send(&relay, "salon", &format!("cid=cid-{i}")))
        .collect();
    // Rows waiting for their batch, killed.
    relay.kill9();
    relay.restart();
    ids.extend((3..=4).map(|i| send(&relay, "salon", &format!("cid=cid-{i}"))));
    // The batch goes out, and Metrica takes it but never answers: killed.
    let taken = wait_for(Duration::from_secs(20), || fake.uploads().len() == 1);
    assert!(taken, "{:?}", fake.requests());
    relay.kill9();
    relay.restart();
    // On PostgreSQL the killed instance's lease on the batch lapses first.
    for id in &ids {
        let delivered = wait_for(Duration::from_secs(60), || relay.show(*id)["status"] == "delivered");
        assert!(delivered, "{:#}", relay.show(*id));
    }
    let uploads = fake.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    let mut sent: Vec<String> = uploads[0].rows.iter().map(|r| r[0].clone()).collect();
    sent.sort();
    assert_eq!(sent, ["cid-1", "cid-2", "cid-3", "cid-4"]);
    let op = relay.show(ids[0]);
    let attempts = op["deliveries"][0]["attempts"].as_array().unwrap();
    assert!(
        attempts.last().unwrap()["request"]
            .as_str()
            .unwrap()
            .contains("found as upload 501"),
        "{op:#}"
    );
}

/// `try` shows a metrica row as the CSV its batch will carry, and `check`
/// names a column the route does not have.
#[test]
fn try_shows_the_csv_row_and_check_names_a_wrong_column() {
    let fake = Metrica::start(OAUTH, &[]);
    let relay = Relay::start(&processing(
        "salon",
        &fake,
        "[processing.action.row]\nid = \"{{id}}\"\ncreate_date_time = \"{{at}}\"\nphones = \"{{phone}}\"\n",
    ));
    let (iso, _) = yesterday();
    let at = format!("at={iso} 10:00");
    let out = relay.cli(&["try", "salon", "id=A1", &at, "phone=8 916 123-45-67"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("id,create_date_time,phones"), "{text}");
    assert!(text.contains(&format!("A1,{iso} 10:00:00,79161234567")), "{text}");
    assert!(!text.contains(OAUTH), "{text}");
    // --send uploads that row alone, as a batch of one.
    let sent = relay.cli(&[
        "try",
        "salon",
        "id=A1",
        &at,
        "phone=8 916 123-45-67",
        "--send",
        "metrica",
        "--yes",
    ]);
    let said = String::from_utf8_lossy(&sent.stdout);
    assert!(sent.status.success(), "{said}{}", String::from_utf8_lossy(&sent.stderr));
    assert!(said.contains("answer: HTTP 200"), "{said}");
    let uploads = fake.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(
        uploads[0].rows,
        [vec!["A1".to_string(), format!("{iso} 10:00:00"), "79161234567".into()]]
    );
    std::fs::write(
        &relay.config,
        crate::support::config_text(&processing(
            "salon",
            &fake,
            "[processing.action.row]\nid = \"{{id}}\"\nphone = \"{{p}}\"\n",
        )),
    )
    .unwrap();
    let check = relay.cli(&["check"]);
    assert!(!check.status.success());
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(said.contains("row.phone: not a column of the orders route"), "{said}");
    assert!(!said.contains(OAUTH), "{said}");
}
