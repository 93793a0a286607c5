//! SIGHUP: re-read the config; refuse a broken one and keep serving.

use crate::support::{get, processing, processing_with_token, Receiver, Relay, TOKEN};

const SECOND_TOKEN: &str = "second-token-0123456789abcdefXYZ";

/// A processing added to the file serves its address after SIGHUP; the old one keeps working.
#[test]
fn reload_adds_a_processing() {
    let receiver = Receiver::start();
    let first = processing("first", &receiver.url("/first"), "");
    let relay = Relay::start(&first);
    assert_eq!(get(&relay.url(&format!("/hook/{SECOND_TOKEN}"))).0, 404);

    relay.rewrite(&format!(
        "{first}\n{}",
        processing_with_token("second", SECOND_TOKEN, &receiver.url("/second"), "")
    ));
    relay.signal("HUP");
    relay.wait_log("config reloaded: 2 processing(s); added: [second]");

    let (status, id, _) = get(&relay.url(&format!("/hook/{SECOND_TOKEN}?x=1")));
    assert_eq!(status, 200);
    let op = relay.wait_status(id.unwrap(), "delivered");
    assert_eq!(op["processing"], "second");
    assert_eq!(get(&relay.url(&format!("/hook/{TOKEN}"))).0, 200);
    let targets: Vec<_> = receiver.wait_for(2).iter().map(|r| r.target.clone()).collect();
    assert!(targets.contains(&"/second".to_string()), "{targets:?}");
}

/// A broken file on SIGHUP is refused with its reason logged, and the relay keeps serving.
#[test]
fn reload_with_a_broken_file_keeps_serving() {
    let receiver = Receiver::start();
    let relay = Relay::start(&processing("p", &receiver.url("/pb"), ""));
    std::fs::write(&relay.config, "[server]\nlisten = \"127.0.0.1:0\"\nbogus = 1\n").unwrap();
    relay.signal("HUP");
    relay.wait_log("config refused, the running config stays");
    assert!(relay.log_text().contains("unknown field `bogus`"));
    let (status, _, _) = get(&relay.url(&format!("/hook/{TOKEN}?x=1")));
    assert_eq!(status, 200);
    assert_eq!(receiver.wait_for(1)[0].target, "/pb");
}

/// Regression: a reload that changed the listen address was applied in part
/// (the address only after a restart); now the whole file is refused, so
/// the processing changed beside it is not applied either.
#[test]
fn reload_refuses_listen_change() {
    let receiver = Receiver::start();
    let relay = Relay::start(&processing("p", &receiver.url("/pb"), ""));
    let text = std::fs::read_to_string(&relay.config)
        .unwrap()
        .replace("127.0.0.1:0", "127.0.0.1:1")
        .replace(TOKEN, SECOND_TOKEN);
    std::fs::write(&relay.config, text).unwrap();
    relay.signal("HUP");
    relay.wait_log("config refused, the running config stays: server.listen, server.admin_listen changed, which only a restart applies");
    assert_eq!(get(&relay.url(&format!("/hook/{TOKEN}"))).0, 200);
    assert_eq!(get(&relay.url(&format!("/hook/{SECOND_TOKEN}"))).0, 404);
}

/// Regression: a truncated (empty) file reloaded as "0 processing(s)" and
/// 15 044 webhooks got 404; now it is refused and every webhook is stored.
#[test]
fn reload_refuses_an_empty_file() {
    let receiver = Receiver::start();
    let relay = Relay::start(&processing("p", &receiver.url("/pb"), ""));
    std::fs::write(&relay.config, "").unwrap();
    relay.signal("HUP");
    relay.wait_log("config refused, the running config stays");
    assert!(relay.log_text().contains("the file is empty"));
    assert_eq!(get(&relay.url(&format!("/hook/{TOKEN}?x=1"))).0, 200);
    // A file with settings but no processing is refused the same way.
    std::fs::write(&relay.config, crate::support::config_text("")).unwrap();
    relay.signal("HUP");
    relay.wait_log("no [[processing]] is configured");
    assert_eq!(get(&relay.url(&format!("/hook/{TOKEN}?x=2"))).0, 200);
    assert_eq!(receiver.wait_for(2).len(), 2);
}

/// Token rotation: the previous token keeps working until it is removed and the config reloaded.
#[test]
fn token_rotation_loses_nothing() {
    let receiver = Receiver::start();
    let rotating = processing_with_token("p", SECOND_TOKEN, &receiver.url("/pb"), "").replace(
        "[[processing.action]]",
        &format!("previous_tokens = [\"{TOKEN}\"]\n\n[[processing.action]]"),
    );
    let relay = Relay::start(&rotating);
    assert_eq!(get(&relay.url(&format!("/hook/{TOKEN}?step=old"))).0, 200);
    assert_eq!(get(&relay.url(&format!("/hook/{SECOND_TOKEN}?step=new"))).0, 200);

    relay.rewrite(&processing_with_token("p", SECOND_TOKEN, &receiver.url("/pb"), ""));
    relay.signal("HUP");
    relay.wait_log("config reloaded");
    assert_eq!(get(&relay.url(&format!("/hook/{TOKEN}"))).0, 404);
    assert_eq!(get(&relay.url(&format!("/hook/{SECOND_TOKEN}"))).0, 200);
    assert_eq!(receiver.wait_for(3).len(), 3);
}
