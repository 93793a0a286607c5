//! Processing rules at ingest: require, when, dedupe, enabled = false.

use crate::support::{get, Receiver, Relay, TOKEN};

/// A processing with processing-level `rules` and one GET action to `url`.
fn config(rules: &str, url: &str) -> String {
    format!(
        "[[processing]]\nname = \"p\"\ntoken = \"{TOKEN}\"\n{rules}\n\n[[processing.action]]\nname = \"plarin\"\nurl = \"{url}\"\nquery = {{ ad = \"{{{{ad_id}}}}\" }}\n"
    )
}

/// A missing, empty or placeholder-holding required field skips the event; nothing is sent.
#[test]
fn require_skips_without_the_field() {
    let receiver = Receiver::start();
    let relay = Relay::start(&config("require = [\"ad_id\"]", &receiver.url("/pb")));
    let cases = [
        ("", "required field `ad_id` is missing"),
        ("?ad_id=", "required field `ad_id` is empty"),
        (
            "?ad_id=%7B%7Bclient.utm_content%7D%7D",
            "required field `ad_id` holds an unfilled placeholder",
        ),
    ];
    for (query, reason) in cases {
        let (status, id, body) = get(&relay.url(&format!("/hook/{TOKEN}{query}")));
        assert_eq!(
            (status, body.as_str()),
            (200, "ok"),
            "skipping is not an error for the sender"
        );
        let op = relay.show(id.unwrap());
        assert_eq!(op["status"], "skipped");
        assert_eq!(op["reason"], reason);
        assert!(op["deliveries"].as_array().unwrap().is_empty());
    }
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?ad_id=9")));
    relay.wait_status(id.unwrap(), "delivered");
    assert_eq!(receiver.requests().len(), 1, "only the event with ad_id was sent");
}

/// `[processing.when]` skips events whose fields do not all match.
#[test]
fn when_skips_other_events() {
    let receiver = Receiver::start();
    let relay = Relay::start(&config(
        "[processing.when]\nevent = \"appointment_paid\"",
        &receiver.url("/pb"),
    ));
    let (_, other, _) = get(&relay.url(&format!("/hook/{TOKEN}?event=client_added&ad_id=1")));
    let op = relay.show(other.unwrap());
    assert_eq!(op["status"], "skipped");
    assert_eq!(op["reason"], "when: `event` is `client_added`, not `appointment_paid`");
    let (_, paid, _) = get(&relay.url(&format!("/hook/{TOKEN}?event=appointment_paid&ad_id=2")));
    relay.wait_status(paid.unwrap(), "delivered");
    let got = receiver.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].param("ad").as_deref(), Some("2"));
}

/// The same dedupe key within the window is a duplicate naming the first; after the window it is sent again.
#[test]
fn dedupe_within_and_outside_the_window() {
    let receiver = Receiver::start();
    let relay = Relay::start(&config(
        "dedupe = \"{{appointment_id}}\"\ndedupe_window = \"2s\"",
        &receiver.url("/pb"),
    ));
    let send = |appointment: &str| {
        get(&relay.url(&format!("/hook/{TOKEN}?appointment_id={appointment}&ad_id=1")))
            .1
            .unwrap()
    };
    let first = send("A-1");
    let started = std::time::Instant::now();
    let repeat = send("A-1");
    let other = send("B-2");
    let no_key = get(&relay.url(&format!("/hook/{TOKEN}?ad_id=1"))).1.unwrap();
    let op = relay.show(repeat);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "the machine was too slow to test the window"
    );
    assert_eq!(op["status"], "duplicate");
    assert_eq!(op["reason"], format!("same dedupe key `A-1` as operation {first}"));
    relay.wait_status(first, "delivered");
    relay.wait_status(other, "delivered");
    relay.wait_status(no_key, "delivered");

    // The window is the behaviour under test: let it pass.
    std::thread::sleep(
        std::time::Duration::from_secs(2).saturating_sub(started.elapsed()) + std::time::Duration::from_millis(100),
    );
    let later = send("A-1");
    relay.wait_status(later, "delivered");
    assert_eq!(receiver.requests().len(), 4);
}

/// `response` sets what the sender gets back; `try` shows the skip decision without recording it.
#[test]
fn custom_response_and_try_shows_skips() {
    let receiver = Receiver::start();
    let relay = Relay::start(&config(
        "require = [\"ad_id\"]\nresponse = { status = 202, body = '{\"ok\":true}', content_type = \"application/json\" }",
        &receiver.url("/pb"),
    ));
    let response = crate::support::client()
        .get(&relay.url(&format!("/hook/{TOKEN}?ad_id=1")))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(response.headers().get("content-type").unwrap(), "application/json");
    assert_eq!(response.into_body().read_to_string().unwrap(), "{\"ok\":true}");

    let out = relay.cli(&["try", "p", "client.id=5"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("would be skipped (required field `ad_id` is missing)"),
        "{text}"
    );
    assert!(text.contains("nothing would be sent"), "{text}");
    receiver.wait_for(1);
    let history: serde_json::Value = serde_json::from_slice(&relay.cli(&["history", "--json"]).stdout).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 1, "try recorded nothing");
}
