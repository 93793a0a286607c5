//! Mapping, retries and failures, seen at the receiver and in `show --json`.

use crate::support::{get, processing, processing_with_token, wait_until, Receiver, Relay, TOKEN};

/// A Klientiks-style GET with Cyrillic values arrives at the receiver mapped as configured.
#[test]
fn klientiks_get_with_cyrillic_values_reaches_the_receiver_mapped() {
    let receiver = Receiver::start();
    let relay = Relay::start(&processing(
        "klientiks-plarin",
        &receiver.url("/postback?token=s3cret-postback&src=klientiks"),
        r#"query = { ad_id = "{{utm_content}}", name = "{{client.name | trim}}", phone = "{{client.phone | phone}}", total = "{{appointment.total | default('0')}}" }"#,
    ));
    let (status, id, body) = get(&relay.url(&format!(
        "/hook/{TOKEN}?client.name=+%D0%90%D0%BD%D0%BD%D0%B0+%D0%9F%D0%B5%D1%82%D1%80%D0%BE%D0%B2%D0%B0+&client.phone=8+(912)+345-67-89&utm_content=ad%2F42+%D0%B2%D0%B5%D1%81%D0%BD%D0%B0"
    )));
    assert_eq!((status, body.as_str()), (200, "ok"));
    let id = id.expect("operation id header");

    let got = receiver.wait_for(1);
    let request = &got[0];
    assert_eq!(request.method, "GET");
    assert!(
        request
            .target
            .starts_with("/postback?token=s3cret-postback&src=klientiks&"),
        "{}",
        request.target
    );
    assert_eq!(request.param("ad_id").as_deref(), Some("ad/42 весна"));
    assert_eq!(request.param("name").as_deref(), Some("Анна Петрова"));
    assert_eq!(request.param("phone").as_deref(), Some("+79123456789"));
    assert_eq!(request.param("total").as_deref(), Some("0"));
    assert!(request
        .header("x-hookrelay-delivery")
        .is_some_and(|v| v.parse::<i64>().is_ok()));

    let op = relay.wait_status(id, "delivered");
    assert_eq!(op["processing"], "klientiks-plarin");
    assert_eq!(op["fields"]["client.name"], " Анна Петрова ");
    assert_eq!(op["charset"], "utf-8");
    let delivery = &op["deliveries"][0];
    assert_eq!(delivery["action"], "plarin");
    assert_eq!(delivery["status"], "delivered");
    let attempts = delivery["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["http_status"], 200);
    assert!(attempts[0]["error"].is_null());
    assert!(attempts[0]["duration_ms"].is_u64());
    // The postback token never reaches the history.
    let request_line = attempts[0]["request"].as_str().unwrap();
    assert!(request_line.contains("token=MASKED"), "{request_line}");
    assert!(!op.to_string().contains("s3cret-postback"));
}

/// A receiver that answers 503 twice and then 200 gets three attempts, all in `show --json`.
#[test]
fn retries_after_503_until_success() {
    let receiver = Receiver::start();
    receiver.script(&[(503, "busy"), (503, "busy"), (200, "ok")]);
    let relay = Relay::start(&processing("p", &receiver.url("/pb"), r#"query = { id = "{{id}}" }"#));
    let (status, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?id=7")));
    assert_eq!(status, 200);
    let op = relay.wait_status(id.unwrap(), "delivered");
    let attempts = op["deliveries"][0]["attempts"].as_array().unwrap().clone();
    let statuses: Vec<_> = attempts.iter().map(|a| a["http_status"].as_u64()).collect();
    assert_eq!(statuses, [Some(503), Some(503), Some(200)]);
    assert_eq!(attempts[0]["response_body"], "busy");

    let got = receiver.requests();
    assert_eq!(got.len(), 3);
    // Every attempt carries the same delivery id so the receiver can drop repeats.
    let ids: Vec<_> = got
        .iter()
        .map(|r| r.header("x-hookrelay-delivery").unwrap().to_string())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
}

/// A 400 is a permanent failure: one attempt, status failed.
#[test]
fn a_400_is_not_retried() {
    let receiver = Receiver::start();
    receiver.script(&[(400, "bad ad_id")]);
    let relay = Relay::start(&processing("p", &receiver.url("/pb"), ""));
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?id=1")));
    let op = relay.wait_status(id.unwrap(), "failed");
    let delivery = &op["deliveries"][0];
    assert_eq!(delivery["status"], "failed");
    assert_eq!(delivery["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(delivery["attempts"][0]["http_status"], 400);
    assert_eq!(delivery["last_error"], "HTTP 400");
    assert_eq!(receiver.requests().len(), 1);
}

/// A receiver that is never reachable spends the retry budget, then fails.
#[test]
fn retry_budget_is_spent_on_network_errors() {
    // Bind and drop a listener: nothing listens on that port afterwards.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let relay = Relay::start(&processing("p", &format!("http://127.0.0.1:{port}/pb"), ""));
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}")));
    let op = relay.wait_status(id.unwrap(), "failed");
    let attempts = op["deliveries"][0]["attempts"].as_array().unwrap().clone();
    assert_eq!(attempts.len(), 5, "the test config allows 5 attempts");
    assert!(attempts
        .iter()
        .all(|a| a["http_status"].is_null() && a["error"].is_string()));
}

/// Two actions each get their request; a failing one makes the operation partial.
#[test]
fn two_actions_partial_failure() {
    let receiver = Receiver::start();
    let config = format!(
        "{}\n[[processing.action]]\nname = \"crm\"\nmethod = \"POST\"\nurl = \"{}\"\nbody = '{{\"phone\": \"{{{{phone | phone}}}}\"}}'\nretry = {{ attempts = 1 }}\n",
        processing("p", &receiver.url("/first"), ""),
        receiver.url("/second")
    );
    receiver.script(&[(200, "ok"), (404, "no such hook")]);
    let relay = Relay::start(&config);
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?phone=9123456789")));
    let op = relay.wait_status(id.unwrap(), "partial");
    let got = receiver.requests();
    assert_eq!(got.len(), 2);
    let post = got.iter().find(|r| r.method == "POST").unwrap();
    assert_eq!(post.target, "/second");
    assert_eq!(post.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&post.body).unwrap();
    assert_eq!(body["phone"], "+79123456789");
    assert!(wait_until(|| op["deliveries"].as_array().unwrap().len() == 2));
}

/// A 429 with Retry-After is retried no sooner than the receiver asked.
#[test]
fn retry_after_is_honoured() {
    let receiver = Receiver::start();
    receiver.script_with_headers(429, "slow down", &[("Retry-After", "1")]);
    let relay = Relay::start(&processing("p", &receiver.url("/pb"), ""));
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}")));
    let op = relay.wait_status(id.unwrap(), "delivered");
    let attempts = op["deliveries"][0]["attempts"].as_array().unwrap().clone();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["http_status"], 429);
    let at = |a: &serde_json::Value| humantime::parse_rfc3339(a["started_at"].as_str().unwrap()).unwrap();
    let gap = at(&attempts[1]).duration_since(at(&attempts[0])).unwrap();
    // The test config's backoff is 50-200 ms; only Retry-After explains a second.
    assert!(gap >= std::time::Duration::from_millis(1000), "retried after {gap:?}");
}

/// A receiver that never answers holds at most 3/4 of the workers, so another processing is still delivered.
#[test]
fn a_hanging_receiver_does_not_starve_other_processings() {
    // Accepts connections and never answers: every attempt waits for the timeout.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hole_addr = hole.local_addr().unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let holder = std::sync::Arc::clone(&held);
    std::thread::spawn(move || {
        for stream in hole.incoming().map_while(Result::ok) {
            holder.lock().unwrap().push(stream);
        }
    });
    let receiver = Receiver::start();
    let slow = processing_with_token(
        "slow",
        "slow-token-0123456789abcdefXYZ",
        &format!("http://{hole_addr}/pb"),
        "timeout = \"60s\"",
    );
    let fast = processing("fast", &receiver.url("/pb"), "");
    let relay = Relay::start(&format!("{slow}\n{fast}"));
    // More than the scheduler claims ahead (2 × 4 workers), all for the hanging receiver.
    for _ in 0..12 {
        assert_eq!(get(&relay.url("/hook/slow-token-0123456789abcdefXYZ")).0, 200);
    }
    // The test config has 4 workers: at most 3 may wait on one receiver.
    assert!(wait_until(|| held.lock().unwrap().len() >= 3));
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}")));
    relay.wait_status(id.unwrap(), "delivered");
    assert_eq!(
        held.lock().unwrap().len(),
        3,
        "more than 3/4 of the pool went to the hanging receiver"
    );
}

/// Slow-receiver drill: answers come after the action's timeout, so attempts
/// time out and are retried while another processing is delivered at once;
/// when the receiver speeds up, everything arrives.
#[test]
fn a_slow_receiver_times_out_and_retries_without_starving_others() {
    let slow_receiver = Receiver::start();
    slow_receiver.hold();
    let fast_receiver = Receiver::start();
    let slow = processing_with_token(
        "slow",
        "slow-token-0123456789abcdefXYZ",
        &slow_receiver.url("/pb"),
        "timeout = \"300ms\"\nretry = { attempts = 50, first_delay = \"50ms\", max_delay = \"100ms\" }",
    );
    let fast = processing("fast", &fast_receiver.url("/pb"), "");
    let relay = Relay::start(&format!("{slow}\n{fast}"));
    // More than the pool (4 workers), so the slow receiver always has work.
    let slow_ids: Vec<i64> = (0..8)
        .map(|_| get(&relay.url("/hook/slow-token-0123456789abcdefXYZ")).1.unwrap())
        .collect();
    // Two rounds of attempts that timed out.
    slow_receiver.wait_for(16);
    let (_, fast_id, _) = get(&relay.url(&format!("/hook/{TOKEN}")));
    relay.wait_status(fast_id.unwrap(), "delivered");
    for &id in &slow_ids {
        assert_eq!(relay.show(id)["status"], "queued", "operation {id}");
    }

    slow_receiver.release();
    for &id in &slow_ids {
        let op = relay.wait_status(id, "delivered");
        let attempts = op["deliveries"][0]["attempts"].as_array().unwrap().clone();
        let (last, timed_out) = attempts.split_last().unwrap();
        assert_eq!(last["http_status"], 200, "operation {id}");
        assert!(!timed_out.is_empty(), "operation {id}: {attempts:?}");
        for attempt in timed_out {
            assert!(attempt["http_status"].is_null(), "{attempt}");
            let error = attempt["error"].as_str().unwrap_or_default();
            assert!(error.contains("timed out") || error.contains("timeout"), "{error}");
        }
    }
}

/// Outage drill: the receiver refuses connections, then answers 503, then recovers;
/// every accepted operation is delivered, after the attempts the outage cost.
#[test]
fn receiver_outage_then_recovery_loses_nothing() {
    let port = crate::support::free_port();
    let relay = Relay::start(&processing(
        "p",
        &format!("http://127.0.0.1:{port}/pb"),
        r#"query = { n = "{{n}}" }
retry = { attempts = 50, first_delay = "50ms", max_delay = "100ms" }"#,
    ));
    let ids: Vec<i64> = (0..10)
        .map(|n| get(&relay.url(&format!("/hook/{TOKEN}?n={n}"))).1.unwrap())
        .collect();
    // Refused: every operation has failed at least once before the receiver exists.
    for &id in &ids {
        assert!(wait_until(|| relay.show(id)["deliveries"][0]["attempts"]
            .as_array()
            .is_some_and(|a| !a.is_empty())));
    }
    let receiver = Receiver::start_on(port);
    receiver.script(&[(503, "down"); 10]);
    for &id in &ids {
        let op = relay.wait_status(id, "delivered");
        let attempts = op["deliveries"][0]["attempts"].as_array().unwrap().clone();
        assert!(attempts.len() >= 2, "operation {id}: {attempts:?}");
        assert!(attempts[0]["http_status"].is_null(), "the first attempt was refused");
        assert_eq!(attempts.last().unwrap()["http_status"], 200);
    }
    let arrived: std::collections::BTreeSet<String> = receiver
        .requests()
        .iter()
        .filter(|r| r.header("x-hookrelay-delivery").is_some())
        .filter_map(|r| r.param("n"))
        .collect();
    assert_eq!(arrived.len(), 10, "{arrived:?}");
}

/// Regression: a NUL in a field used in a header failed every attempt with
/// "failed to parse header value" until the budget was spent; now it is sent
/// as a space on the first attempt, with a warning naming the header.
#[test]
fn control_characters_in_a_header_field_are_sent_as_spaces() {
    let receiver = Receiver::start();
    let relay = Relay::start(&processing(
        "p",
        &receiver.url("/pb"),
        r#"headers = { "X-Phone" = "{{phone}}" }"#,
    ));
    let (status, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?phone=%2B7%00912%07")));
    assert_eq!(status, 200);
    let op = relay.wait_status(id.unwrap(), "delivered");
    assert_eq!(receiver.wait_for(1)[0].header("x-phone"), Some("+7 912"));
    assert_eq!(op["deliveries"][0]["attempts"].as_array().map(Vec::len), Some(1));
    let warnings = op["warnings"].to_string();
    assert!(
        warnings.contains("header `X-Phone` held control characters"),
        "{warnings}"
    );
}
