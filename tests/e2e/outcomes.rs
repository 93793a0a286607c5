//! Honest outcomes: "delivered" is what the destination's answer says, by
//! the action's response rules, seen at the receiver and in history.

use crate::support::{admin_get, get, processing, Receiver, Relay, TOKEN};

/// Regression: a 200 whose body says no was recorded `delivered`. With
/// Plarin's rule (`{"success": "POSTBACK ACCEPTED"}`), a 200 saying
/// anything else fails for good, once, and history says why.
#[test]
fn a_200_that_says_no_is_not_delivered() {
    let receiver = Receiver::start();
    receiver.script(&[
        (200, r#"{"error": "unknown postback token"}"#),
        (200, r#"{"success": "POSTBACK ACCEPTED"}"#),
    ]);
    let relay = Relay::start(&processing(
        "p",
        &receiver.url("/pb"),
        r#"accept = { json = { success = "POSTBACK ACCEPTED" } }"#,
    ));
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?id=1")));
    let op = relay.wait_status(id.unwrap(), "failed");
    let delivery = &op["deliveries"][0];
    let attempts = delivery["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "a body that says no is not retried");
    assert_eq!(attempts[0]["http_status"], 200);
    assert_eq!(attempts[0]["verdict"]["kind"], "json_mismatch");
    assert_eq!(attempts[0]["verdict"]["path"], "success");
    let said = r#"answered 200, but the body has no success (expected "POSTBACK ACCEPTED"): not accepted"#;
    assert_eq!(delivery["last_error"], said);

    // The text output names the rule too: `show` per attempt, `history` per row.
    let show = relay.cli(&["show", &id.unwrap().to_string()]);
    assert!(String::from_utf8_lossy(&show.stdout).contains(said));
    let history = relay.cli(&["history", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(rows[0]["failure"], said);

    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?id=2")));
    let op = relay.wait_status(id.unwrap(), "delivered");
    assert_eq!(op["deliveries"][0]["attempts"][0]["verdict"]["kind"], "accepted");
}

/// Bitrix24's way: a 200 with `"error": "QUERY_LIMIT_EXCEEDED"` is tried
/// again (`retry_on.json`); the next answer with a `result` is taken.
#[test]
fn a_body_value_can_mean_try_again() {
    let receiver = Receiver::start();
    receiver.script(&[
        (
            200,
            r#"{"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}"#,
        ),
        (200, r#"{"result": 17, "time": {}}"#),
    ]);
    let relay = Relay::start(&processing(
        "p",
        &receiver.url("/rest/1/abc/crm.lead.add"),
        "accept = { json_present = [\"result\"] }\nretry_on = { json = { error = [\"QUERY_LIMIT_EXCEEDED\", \"OVERLOAD_LIMIT\"] } }",
    ));
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?id=1")));
    let op = relay.wait_status(id.unwrap(), "delivered");
    let attempts = op["deliveries"][0]["attempts"].as_array().unwrap().clone();
    let kinds: Vec<_> = attempts.iter().map(|a| a["verdict"]["kind"].clone()).collect();
    assert_eq!(kinds, ["json_retry", "accepted"]);
    assert_eq!(receiver.requests().len(), 2);
}

/// Telegram's way: a 429 says how long to wait in its body
/// (`parameters.retry_after`), with no Retry-After header; the next
/// attempt waits that long, not the test config's 50-200 ms backoff.
#[test]
fn a_wait_read_from_the_body_is_honoured() {
    let receiver = Receiver::start();
    receiver.script(&[
        (
            429,
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1","parameters":{"retry_after":1}}"#,
        ),
        (200, r#"{"ok":true,"result":{"message_id":5}}"#),
    ]);
    let relay = Relay::start(&processing(
        "p",
        &receiver.url("/bot123:abc/sendMessage"),
        "accept = { json = { ok = true } }\nretry_on = { delay_json = \"parameters.retry_after\" }",
    ));
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}")));
    let op = relay.wait_status(id.unwrap(), "delivered");
    let attempts = op["deliveries"][0]["attempts"].as_array().unwrap().clone();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["verdict"]["kind"], "status_retry");
    let at = |a: &serde_json::Value| humantime::parse_rfc3339(a["started_at"].as_str().unwrap()).unwrap();
    let gap = at(&attempts[1]).duration_since(at(&attempts[0])).unwrap();
    assert!(gap >= std::time::Duration::from_millis(1000), "retried after {gap:?}");
}

/// Bitrix24's way: the body says until when (`time.operating_reset_at`, a
/// Unix time in seconds); the next attempt waits until then, not the
/// test config's 50-200 ms backoff.
#[test]
fn a_time_read_from_the_body_is_waited_for() {
    let receiver = Receiver::start();
    let reset_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let blocked = format!(r#"{{"error":"QUERY_LIMIT_EXCEEDED","time":{{"operating_reset_at":{reset_at}}}}}"#);
    receiver.script(&[(503, blocked.as_str()), (200, r#"{"result":17}"#)]);
    let relay = Relay::start(&processing(
        "p",
        &receiver.url("/rest/1/code/crm.lead.add.json"),
        "accept = { json_present = [\"result\"] }\nretry_on = { until_json = \"time.operating_reset_at\" }",
    ));
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}")));
    let op = relay.wait_status(id.unwrap(), "delivered");
    let attempts = op["deliveries"][0]["attempts"].as_array().unwrap().clone();
    assert_eq!(attempts.len(), 2);
    let at = |a: &serde_json::Value| humantime::parse_rfc3339(a["started_at"].as_str().unwrap()).unwrap();
    let second = at(&attempts[1]).duration_since(std::time::UNIX_EPOCH).unwrap();
    assert!(
        second.as_secs() >= reset_at,
        "retried at {second:?}, before {reset_at} s"
    );
}

/// `try --send` sends one rendered request for real only once confirmed,
/// and prints the answer and the verdict; it records nothing.
#[test]
fn try_send_asks_then_sends_and_judges() {
    let receiver = Receiver::start();
    receiver.script(&[(200, r#"{"success": "POSTBACK ACCEPTED"}"#)]);
    let relay = Relay::start(&format!(
        "[[processing]]\nname = \"p\"\ntoken = \"{TOKEN}\"\nenabled = false\n\n\
         [[processing.action]]\nname = \"plarin\"\nurl = \"{}\"\nquery = {{ ad_id = \"{{{{utm_content}}}}\" }}\n\
         accept = {{ json = {{ success = \"POSTBACK ACCEPTED\" }} }}\n",
        receiver.url("/pb?token=s3cret")
    ));
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?utm_content=ad-7")));
    let id = id.unwrap().to_string();
    relay.wait_status(id.parse().unwrap(), "held");

    let declined = relay.cli_with_input(&["try", "p", "--from", &id, "--send", "plarin"], "n\n");
    assert_eq!(declined.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&declined.stderr).contains("not sent: not confirmed"));
    assert!(receiver.requests().is_empty());

    let unknown = relay.cli(&["try", "p", "--from", &id, "--send", "nope", "--yes"]);
    assert_eq!(unknown.status.code(), Some(2));

    let sent = relay.cli_with_input(&["try", "p", "--from", &id, "--send", "plarin"], "y\n");
    let stdout = String::from_utf8_lossy(&sent.stdout);
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    assert!(stdout.contains("token=MASKED"), "{stdout}");
    assert!(stdout.contains("answer: HTTP 200"), "{stdout}");
    assert!(stdout.contains("verdict: answered 200: accepted"), "{stdout}");
    let got = receiver.wait_for(1);
    assert_eq!(got[0].param("ad_id").as_deref(), Some("ad-7"));
    // Nothing recorded: the operation is still held, with no delivery.
    let op = relay.show(id.parse().unwrap());
    assert_eq!(op["status"], "held");
    assert_eq!(op["deliveries"].as_array().unwrap().len(), 0);
}

/// A delivery that cannot go within its action's `max_age` expires: it is
/// never sent after, the operation fails, the metric counts it. Replaying
/// it is refused as too old unless forced.
#[test]
fn a_delivery_past_its_max_age_expires_unsent() {
    let receiver = Receiver::start();
    receiver.script(&[(503, "busy"); 40]);
    let relay = Relay::start(&processing(
        "p",
        &receiver.url("/pb"),
        "max_age = \"1s\"\nretry = { attempts = 100, first_delay = \"300ms\", max_delay = \"300ms\" }",
    ));
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?id=1")));
    let id = id.unwrap();
    let op = relay.wait_status(id, "failed");
    let delivery = &op["deliveries"][0];
    assert_eq!(delivery["status"], "expired");
    assert!(delivery["last_error"]
        .as_str()
        .unwrap()
        .starts_with("expired: max_age passed"));
    let history: serde_json::Value = serde_json::from_slice(&relay.cli(&["history", "--json"]).stdout).unwrap();
    assert!(
        history[0]["failure"].as_str().unwrap().starts_with("expired: "),
        "{history}"
    );
    let tried = receiver.requests().len();
    assert!((1..=6).contains(&tried), "{tried} attempts within the second");
    relay.wait_log("1 deliveries expired unsent (max_age passed)");
    let (_, metrics) = admin_get(&relay, "/metrics", None);
    assert!(
        metrics.contains("hookrelay_deliveries_expired_total{action=\"plarin\"} 1"),
        "{metrics}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(receiver.requests().len(), tried, "an expired delivery is never sent");

    let refused = relay.cli(&["replay", &id.to_string()]);
    let said = String::from_utf8_lossy(&refused.stdout).to_string() + &String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("older than action `plarin`'s max_age"), "{said}");
    receiver.clear_script();
    let forced = relay.cli(&["replay", "--force", &id.to_string()]);
    assert!(forced.status.success(), "{}", String::from_utf8_lossy(&forced.stderr));
    let op = relay.wait_status(id, "delivered");
    assert_eq!(op["deliveries"].as_array().unwrap().len(), 2);
}

/// Reasons are kept as kinds and said in `server.language` by the text
/// output, while `--json` stays English for scripts.
#[test]
fn reasons_are_said_in_the_configured_language() {
    let receiver = Receiver::start();
    let text = crate::support::config_text(&format!(
        "[[processing]]\nname = \"p\"\ntoken = \"{TOKEN}\"\nrequire = [\"utm_content\"]\n\n\
         [[processing.action]]\nname = \"plarin\"\nurl = \"{}\"\n",
        receiver.url("/pb")
    ))
    .replace("[server]\n", "[server]\nlanguage = \"ru\"\n");
    let relay = Relay::start_in(tempfile::tempdir().unwrap(), &text);
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?id=1")));
    let id = id.unwrap();
    relay.wait_status(id, "skipped");
    let history = String::from_utf8_lossy(&relay.cli(&["history"]).stdout).to_string();
    assert!(history.contains("обязательного поля «utm_content» нет"), "{history}");
    let show = String::from_utf8_lossy(&relay.cli(&["show", &id.to_string()]).stdout).to_string();
    assert!(
        show.contains("reason:    обязательного поля «utm_content» нет"),
        "{show}"
    );
    let json = relay.show(id);
    assert_eq!(json["reason"], "required field `utm_content` is missing");
}

/// Regression: deliveries the scheduler had claimed ahead and held for a
/// paced receiver's turn were given back and claimed again at once, so
/// no sweep saw them waiting: they never expired. Now they expire where
/// they wait, unsent.
#[test]
fn deliveries_held_for_a_turn_expire_too() {
    let receiver = Receiver::start();
    let relay = Relay::start(&format!(
        "{}\n[[receiver]]\nurl = \"{}\"\nrate = \"1/m\"\n",
        processing("p", &receiver.url("/pb"), "max_age = \"1s\""),
        receiver.url("/")
    ));
    let ids: Vec<i64> = (0..3)
        .map(|n| get(&relay.url(&format!("/hook/{TOKEN}?n={n}"))).1.unwrap())
        .collect();
    relay.wait_status(ids[0], "delivered");
    for id in &ids[1..] {
        let op = relay.wait_status(*id, "failed");
        assert_eq!(op["deliveries"][0]["status"], "expired", "{op:#}");
        assert!(op["deliveries"][0]["attempts"].as_array().unwrap().is_empty());
    }
    assert_eq!(receiver.requests().len(), 1);
}
