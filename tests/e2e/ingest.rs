//! What senders get back, and what is (and is not) recorded.

use std::io::{Read, Write};

use crate::support::{get, post, processing, Receiver, Relay, TOKEN};

fn relay() -> (Receiver, Relay) {
    let receiver = Receiver::start();
    let relay = Relay::start(&processing("p", &receiver.url("/pb"), r#"query = { id = "{{id}}" }"#));
    (receiver, relay)
}

fn history_len(relay: &Relay) -> usize {
    let out = relay.cli(&["history", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .len()
}

/// An unknown token gets 404 and nothing is recorded.
#[test]
fn unknown_token_is_404_and_not_recorded() {
    let (_receiver, relay) = relay();
    let (status, id, body) = get(&relay.url("/hook/not-the-token-0123456789abcdef"));
    assert_eq!((status, id, body.trim()), (404, None, "not found"));
    assert_eq!(get(&relay.url("/")).0, 404);
    assert_eq!(get(&relay.url(&format!("/other/{TOKEN}"))).0, 404);
    assert_eq!(history_len(&relay), 0);
}

/// A body over max_body_bytes gets 413 and nothing is recorded.
#[test]
fn oversized_body_is_413() {
    let (_receiver, relay) = relay();
    let big = vec![b'a'; 4096];
    let (status, id, body) = post(
        &relay.url(&format!("/hook/{TOKEN}")),
        "application/x-www-form-urlencoded",
        &big,
    );
    assert_eq!(status, 413);
    assert_eq!(id, None);
    assert!(body.contains("1024"), "{body}");
    assert_eq!(history_len(&relay), 0);
}

/// A body over the limit sent without Content-Length (chunked) is cut off with 413 too.
#[test]
fn oversized_chunked_body_is_413() {
    let (_receiver, relay) = relay();
    let mut stream = std::net::TcpStream::connect(relay.addr).unwrap();
    let chunk = "a".repeat(600);
    let request = format!(
        "POST /hook/{TOKEN} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(history_len(&relay), 0);
}

/// A method outside `methods` gets 405 with an Allow header.
#[test]
fn wrong_method_is_405() {
    let (_receiver, relay) = relay();
    let response = crate::support::client()
        .put(&relay.url(&format!("/hook/{TOKEN}")))
        .send("x")
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers().get("allow").unwrap(), "GET, POST");
    assert_eq!(history_len(&relay), 0);
}

/// Broken JSON gets 400 with the parser's reason, and is recorded as rejected with its raw body.
#[test]
fn broken_json_is_400_and_recorded_as_rejected() {
    let (receiver, relay) = relay();
    let (status, id, body) = post(
        &relay.url(&format!("/hook/{TOKEN}?id=3")),
        "application/json",
        b"{\"client\": ",
    );
    assert_eq!(status, 400);
    assert!(body.starts_with("the JSON body does not parse"), "{body}");
    let op = relay.show(id.expect("rejected operations are recorded"));
    assert_eq!(op["status"], "rejected");
    assert_eq!(op["body"], "{\"client\": ");
    assert_eq!(op["query"], "id=3");
    assert!(op["reason"].as_str().unwrap().contains("does not parse"));
    assert!(op["deliveries"].as_array().unwrap().is_empty());
    assert!(receiver.requests().is_empty());
}

/// A JSON body is flattened to dotted names and its values delivered.
#[test]
fn json_body_fields_are_delivered() {
    let (receiver, relay) = relay();
    let (status, id, _) = post(
        &relay.url(&format!("/hook/{TOKEN}")),
        "application/json",
        "{\"id\": \"Ёлка 1\", \"client\": {\"phone\": \"+7 912\"}}".as_bytes(),
    );
    assert_eq!(status, 200);
    let got = receiver.wait_for(1);
    assert_eq!(got[0].param("id").as_deref(), Some("Ёлка 1"));
    let op = relay.wait_status(id.unwrap(), "delivered");
    assert_eq!(op["fields"]["client.phone"], "+7 912");
}

/// Raw windows-1251 bytes in the request target are accepted and decoded, and the charset recorded.
#[test]
fn raw_windows_1251_bytes_in_the_target_are_accepted() {
    let (receiver, relay) = relay();
    let mut stream = std::net::TcpStream::connect(relay.addr).unwrap();
    let mut request = format!("GET /hook/{TOKEN}?id=").into_bytes();
    request.extend_from_slice(b"\xc0\xed\xed\xe0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(&request).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let got = receiver.wait_for(1);
    assert_eq!(got[0].param("id").as_deref(), Some("Анна"));
    let history: serde_json::Value = serde_json::from_slice(&relay.cli(&["history", "--json"]).stdout).unwrap();
    let op = relay.show(history[0]["id"].as_i64().unwrap());
    assert_eq!(op["charset"], "windows-1251");
    assert_eq!(op["fields"]["id"], "Анна");
}

/// A value still holding a Klientiks placeholder counts as missing and warns, naming the field.
#[test]
fn unfilled_placeholder_warns_and_fails_the_delivery() {
    let (receiver, relay) = relay();
    let (status, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?id=%7B%7Bclient.id%7D%7D")));
    assert_eq!(status, 200, "acknowledged and kept");
    let op = relay.wait_status(id.unwrap(), "failed");
    let warnings: Vec<String> = serde_json::from_value(op["warnings"].clone()).unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("`id`") && w.contains("{{client.id}}")),
        "{warnings:?}"
    );
    assert_eq!(
        op["deliveries"][0]["last_error"],
        "action `plarin`: field `id` holds an unfilled placeholder; nothing was sent (on_missing = \"fail\")"
    );
    assert!(op["deliveries"][0]["attempts"].as_array().unwrap().is_empty());
    assert!(receiver.requests().is_empty(), "an empty id is not sent");
}

/// SIGTERM stops the daemon cleanly with exit code 0.
#[test]
fn sigterm_exits_zero() {
    let (_receiver, mut relay) = relay();
    assert_eq!(get(&relay.url(&format!("/hook/{TOKEN}?id=1"))).0, 200);
    let status = relay.terminate();
    assert_eq!(status.code(), Some(0), "{}", relay.log_text());
    // The thread draining the daemon's stderr may not have read its last
    // line yet when the process has exited (found by a CI run).
    relay.wait_log("stopped");
}

/// Regression: a sender that shuts its sending side after the request still gets its 200.
#[test]
fn half_closed_sender_gets_its_answer() {
    let (receiver, relay) = relay();
    let mut stream = std::net::TcpStream::connect(relay.addr).unwrap();
    stream
        .write_all(format!("GET /hook/{TOKEN}?id=half HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert_eq!(receiver.wait_for(1)[0].param("id").as_deref(), Some("half"));
}

/// Overlong targets get 414 and too many headers 431; neither is recorded.
#[test]
fn oversized_heads_are_refused() {
    let (_receiver, relay) = relay();
    let long = crate::support::client()
        .get(&relay.url(&format!("/hook/{TOKEN}?x={}", "a".repeat(20_000))))
        .call()
        .unwrap();
    assert_eq!(long.status().as_u16(), 414);
    let mut request = crate::support::client().get(&relay.url(&format!("/hook/{TOKEN}")));
    for i in 0..150 {
        request = request.header(format!("X-H{i}"), "v");
    }
    assert_eq!(request.call().map(|r| r.status().as_u16()).unwrap_or(0), 431);
    assert_eq!(history_len(&relay), 0);
}

/// Regression: a wrong token got 404 and left no trace, so "Klientiks says
/// it sent, history is empty" had no answer. It is logged at warn with the
/// token cut short, and a scan of many is throttled to one line.
#[test]
fn a_wrong_token_is_logged_masked_and_throttled() {
    let relay = Relay::start(&processing("p", "http://127.0.0.1:9/", ""));
    let wrong = "wrongtoken-0123456789abcdefXYZ";
    for _ in 0..50 {
        assert_eq!(get(&relay.url(&format!("/hook/{wrong}?a=1"))).0, 404);
    }
    relay.wait_log("refused GET /hook/wron…(30 characters) from 127.0.0.1:");
    let log = relay.log_text();
    assert!(log.contains(": 404 not found"), "{log}");
    assert!(!log.contains(wrong), "{log}");
    let lines = log.lines().filter(|l| l.contains("refused GET")).count();
    assert!(lines < 10, "{lines} lines for 50 refusals:\n{log}");
}

/// Behind a trusted proxy the client's address (the proxy's last
/// `X-Forwarded-For` entry) is recorded, with the proxy named; from any
/// other peer the header is ignored.
#[test]
fn the_client_address_comes_through_a_trusted_proxy() {
    let recorded = |relay: &Relay| {
        let response = crate::support::client()
            .get(&relay.url(&format!("/hook/{TOKEN}?x=1")))
            .header("X-Forwarded-For", "10.0.0.1, 203.0.113.5")
            .call()
            .unwrap();
        let id = response
            .headers()
            .get("x-hookrelay-operation")
            .and_then(|v| v.to_str().ok()?.parse::<i64>().ok())
            .unwrap();
        relay.show(id)["remote_addr"].as_str().unwrap().to_string()
    };
    let text = crate::support::config_text(&processing("p", "http://127.0.0.1:9/", ""))
        .replace("[server]\n", "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n");
    let behind = Relay::start_in(tempfile::tempdir().unwrap(), &text);
    let remote = recorded(&behind);
    assert!(remote.starts_with("203.0.113.5 (via 127.0.0.1:"), "{remote}");
    let direct = Relay::start(&processing("p", "http://127.0.0.1:9/", ""));
    let remote = recorded(&direct);
    assert!(remote.starts_with("127.0.0.1:"), "{remote}");
}

/// `allow_from` (per processing, else the server's) admits only senders in
/// its ranges: others get 403 and nothing is stored. Behind a trusted proxy
/// the forwarded address is the one checked.
#[test]
fn allow_from_refuses_other_senders() {
    let text = crate::support::config_text(&processing("p", "http://127.0.0.1:9/", "")).replace(
        "[server]\n",
        "[server]\nallow_from = [\"10.0.0.0/8\"]\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
    );
    let relay = Relay::start_in(tempfile::tempdir().unwrap(), &text);
    let (status, id, body) = get(&relay.url(&format!("/hook/{TOKEN}?x=1")));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("may not send"), "{body}");
    assert_eq!(id, None);
    let response = crate::support::client()
        .get(&relay.url(&format!("/hook/{TOKEN}?x=2")))
        .header("X-Forwarded-For", "10.1.2.3")
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let history = relay.cli(&["history", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "only the allowed one is stored");
    let (_, metrics) = crate::support::admin_get(&relay, "/metrics", None);
    assert!(
        metrics.contains("hookrelay_requests_refused_total{reason=\"sender_not_allowed\"} 1"),
        "{metrics}"
    );
}

/// `max_per_ip` lets a burst through, then answers 429 with Retry-After.
#[test]
fn max_per_ip_answers_429() {
    let text = crate::support::config_text(&processing("p", "http://127.0.0.1:9/", ""))
        .replace("[server]\n", "[server]\nmax_per_ip = \"3/h\"\n");
    let relay = Relay::start_in(tempfile::tempdir().unwrap(), &text);
    for n in 0..3 {
        assert_eq!(get(&relay.url(&format!("/hook/{TOKEN}?n={n}"))).0, 200);
    }
    let response = crate::support::client()
        .get(&relay.url(&format!("/hook/{TOKEN}?n=4")))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap();
    assert!((1..=1200).contains(&retry_after), "{retry_after}");
}
