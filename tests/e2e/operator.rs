//! The operator's loop: fields, try, replay, check warnings, klientiks addresses.

use crate::support::{config_text, get, on_postgres, processing, sqlite_only, Receiver, Relay, TOKEN};

fn stdout(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `fields` shows the latest request's fields and warnings.
#[test]
fn fields_after_a_real_request() {
    let receiver = Receiver::start();
    let relay = Relay::start(&processing("p", &receiver.url("/pb"), ""));
    let before = stdout(&relay.cli(&["fields", "p"]));
    assert!(before.contains("no request to `p` is recorded yet"), "{before}");
    get(&relay.url(&format!(
        "/hook/{TOKEN}?client.name=%D0%90%D0%BD%D0%BD%D0%B0&phone=%7B%7Bclient.phone%7D%7D"
    )));
    let text = stdout(&relay.cli(&["fields", "p"]));
    assert!(text.contains("client.name  Анна"), "{text}");
    assert!(
        text.contains("warning: field `phone` holds an unfilled placeholder"),
        "{text}"
    );
    let unknown = relay.cli(&["fields", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
}

/// `try` prints the rendered request with secrets masked, and sends and writes nothing.
#[test]
fn try_prints_and_sends_nothing() {
    let receiver = Receiver::start();
    let relay = Relay::start(&format!(
        "{}headers = {{ \"X-Api-Key\" = \"k-123\" }}\n",
        processing(
            "p",
            &receiver.url("/pb?token=postback-secret"),
            r#"query = { ad = "{{ad_id}}", name = "{{name | upper}}" }"#
        )
    ));
    let text = stdout(&relay.cli(&["try", "p", "ad_id=42", "name=анна"]));
    assert!(text.contains("would be queued"), "{text}");
    assert!(text.contains("GET http://"), "{text}");
    assert!(
        text.contains("token=MASKED&ad=42&name=%D0%90%D0%9D%D0%9D%D0%90"),
        "{text}"
    );
    assert!(text.contains("X-Api-Key: MASKED"), "{text}");
    assert!(!text.contains("postback-secret") && !text.contains("k-123"));
    let history: serde_json::Value = serde_json::from_str(&stdout(&relay.cli(&["history", "--json"]))).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 0, "try writes nothing");

    // --from takes the fields of a recorded operation.
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?ad_id=77&name=x")));
    relay.wait_status(id.unwrap(), "delivered");
    let text = stdout(&relay.cli(&["try", "p", "--from", &id.unwrap().to_string()]));
    assert!(text.contains("ad=77"), "{text}");
    assert_eq!(
        receiver.requests().len(),
        1,
        "only the real webhook reached the receiver"
    );

    let bad = relay.cli(&["try", "p", "not-a-pair"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// A failed operation replayed after the receiver recovers is delivered; the old attempt stays.
#[test]
fn replay_a_failed_operation_after_the_receiver_recovers() {
    let receiver = Receiver::start();
    receiver.script(&[(410, "gone for now")]);
    let relay = Relay::start(&processing("p", &receiver.url("/pb"), r#"query = { n = "{{n}}" }"#));
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?n=5")));
    let id = id.unwrap();
    relay.wait_status(id, "failed");

    let text = stdout(&relay.cli(&["replay", "--status", "failed", "--since", "1h"]));
    assert!(text.contains("queued 1 deliveries for 1 operation(s)"), "{text}");
    // On SQLite the daemon queues them through its writer: a connection of
    // the command line's own would keep its webhooks waiting for the lock.
    assert_eq!(text.contains("by the running daemon"), !on_postgres(), "{text}");
    let op = relay.wait_status(id, "delivered");
    let deliveries = op["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0]["status"], "failed");
    assert_eq!(deliveries[0]["attempts"][0]["http_status"], 410);
    assert_eq!(deliveries[1]["status"], "delivered");
    let got = receiver.requests();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].param("n").as_deref(), Some("5"));

    // A delivered operation has nothing left to send.
    let again = stdout(&relay.cli(&["replay", &id.to_string()]));
    assert!(again.contains("every action was already delivered"), "{again}");
    assert_eq!(relay.cli(&["replay"]).status.code(), Some(2));
    assert_eq!(relay.cli(&["replay", "999999"]).status.code(), Some(1));
}

/// Regression: `prune` and `replay` beside a running daemon wrote through
/// connections of their own, whose back-to-back transactions kept the
/// daemon's writer (and every webhook) waiting for SQLite's unfair lock
/// for over a second. Now the daemon does them, asked through its control
/// socket, and a replay it refuses is reported as refused.
#[test]
fn prune_and_replay_beside_a_daemon_go_through_it() {
    if sqlite_only("the control socket") {
        return;
    }
    let receiver = Receiver::start();
    let relay = Relay::start(&processing("p", &receiver.url("/pb"), r#"query = { n = "{{n}}" }"#));
    let text = stdout(&relay.cli(&["prune"]));
    assert!(text.contains("deleted 0 operation(s)"), "{text}");
    assert!(text.contains("by the running daemon"), "{text}");
    relay.wait_log("prune requested through the control socket");

    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?n=1")));
    let id = id.unwrap();
    relay.wait_status(id, "delivered");
    let text = stdout(&relay.cli(&["replay", &id.to_string()]));
    assert!(
        text.contains(&format!(
            "operation {id}: not replayed: every action was already delivered"
        )),
        "{text}"
    );
    assert!(
        text.contains("queued 0 deliveries for 0 operation(s), by the running daemon"),
        "{text}"
    );
    relay.wait_log("replay requested through the control socket");
}

/// The processing `p` with `extra` lines of its own (not the action's) and
/// one action that sends the field `field` as `ad_id`.
fn processing_with(receiver: &Receiver, extra: &str, field: &str) -> String {
    format!(
        "[[processing]]\nname = \"p\"\ntoken = \"{TOKEN}\"\n{extra}\n\n[[processing.action]]\nname = \"plarin\"\n\
         method = \"GET\"\nurl = \"{}\"\nquery = {{ ad_id = \"{{{{{field}}}}}\" }}\n",
        receiver.url("/pb")
    )
}

/// Regression: replaying an operation that `require` skipped sent it
/// (`ad_id=` empty, a false conversion) and overwrote its reason with
/// "replayed". A replay runs the current rules: refused while they still
/// skip it, naming the rule; queued once the config is fixed. The reason
/// stays, and the replay is recorded with who asked.
#[test]
fn replay_runs_the_current_rules_and_keeps_the_reason() {
    let receiver = Receiver::start();
    let relay = Relay::start(&processing_with(
        &receiver,
        "require = [\"utm_content\"]",
        "utm_content",
    ));
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?n=1")));
    let id = id.unwrap();
    let reason = "required field `utm_content` is missing";
    assert_eq!(relay.wait_status(id, "skipped")["reason"], reason);

    let text = stdout(&relay.cli(&["replay", &id.to_string()]));
    assert!(
        text.contains(&format!(
            "operation {id}: not replayed: the processing's rules skip it: {reason}"
        )),
        "{text}"
    );
    assert!(text.contains("queued 0 deliveries for 0 operation(s)"), "{text}");
    let op = relay.show(id);
    assert_eq!(
        (op["status"].as_str(), op["reason"].as_str()),
        (Some("skipped"), Some(reason))
    );
    assert!(op["replays"].as_array().unwrap().is_empty());

    // The config is fixed (the ad id was in `n` all along): the same
    // replay is queued and sent.
    relay.rewrite(&processing_with(&receiver, "require = [\"n\"]", "n"));
    relay.signal("HUP");
    relay.wait_log("config reloaded");
    let text = stdout(&relay.cli(&["replay", &id.to_string()]));
    assert!(text.contains("queued 1 deliveries for 1 operation(s)"), "{text}");
    let op = relay.wait_status(id, "delivered");
    assert_eq!(op["reason"], reason, "the original reason stays");
    let replays = op["replays"].as_array().unwrap();
    assert_eq!(replays.len(), 1);
    assert!(
        replays[0]["source"].as_str().unwrap().starts_with("command line"),
        "{replays:?}"
    );
    assert_eq!(replays[0]["deliveries"], 1);
    assert_eq!(receiver.wait_for(1).len(), 1);
}

/// Regression: with `ad_id = "{{utm_contnet}}"` the receiver got `ad_id=`
/// (empty) and the operation showed delivered. Now nothing is sent, the
/// delivery fails naming the field and the closest one the event has (so
/// do the log and `check`), and a replay sends it once the config is fixed.
#[test]
fn a_misspelled_field_fails_the_delivery_and_is_named() {
    let receiver = Receiver::start();
    let relay = Relay::start(&processing_with(&receiver, "", "utm_contnet"));
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?utm_content=ad-7")));
    let id = id.unwrap();
    let op = relay.wait_status(id, "failed");
    let why = "action `plarin`: the event has no field `utm_contnet` (did you mean `utm_content`?); nothing was sent (on_missing = \"fail\")";
    assert_eq!(op["deliveries"][0]["last_error"], why);
    assert_eq!(op["reason"], why);
    relay.wait_log("did you mean `utm_content`?");
    let check = stdout(&relay.cli(&["check"]));
    assert!(
        check.contains(&format!(
            "warning: processing `p`: `utm_contnet` was not in the last event (operation {id}) (did you mean `utm_content`?)"
        )),
        "{check}"
    );
    // Still misspelled: the replay is refused, not sent empty.
    let text = stdout(&relay.cli(&["replay", &id.to_string()]));
    assert!(text.contains(&format!("operation {id}: not replayed: {why}")), "{text}");
    relay.rewrite(&processing_with(&receiver, "", "utm_content"));
    relay.signal("HUP");
    relay.wait_log("config reloaded");
    let text = stdout(&relay.cli(&["replay", &id.to_string()]));
    assert!(text.contains("queued 1 deliveries for 1 operation(s)"), "{text}");
    relay.wait_status(id, "delivered");
    let got = receiver.wait_for(1);
    assert_eq!((got.len(), got[0].param("ad_id").as_deref()), (1, Some("ad-7")));
}

/// Regression: a receiver that answered 400 to every postback showed "last
/// error: none" in `status`. An answer that is not accepted is the
/// receiver's last error, and its state says it answers but does not accept.
#[test]
fn status_counts_a_refused_answer_as_the_last_error() {
    let receiver = Receiver::start();
    receiver.script(&[(400, "bad ad id")]);
    let relay = Relay::start(&processing("p", &receiver.url("/pb"), ""));
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?n=1")));
    relay.wait_status(id.unwrap(), "failed");
    let text = stdout(&relay.cli(&["status"]));
    assert!(
        text.contains("breaker closed; it answers, but its last answer was not accepted"),
        "{text}"
    );
    assert!(text.contains("  last error:     HTTP 400 at "), "{text}");
    assert!(text.contains("  last success:   none"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&stdout(&relay.cli(&["status", "--json"]))).unwrap();
    assert_eq!(json["receivers"][0]["last_error"], "HTTP 400", "{json:#}");
}

/// Regression: `try --from ID` found the operation's own dedupe key and
/// said "would be duplicate (same dedupe key as operation ID)" for every
/// operation. It does not duplicate itself; a later twin still does.
/// `--json` prints the same as one object.
#[test]
fn try_from_an_operation_is_not_its_own_duplicate() {
    let receiver = Receiver::start();
    let relay = Relay::start(&processing_with(
        &receiver,
        "dedupe = \"{{appointment_id}}\"",
        "utm_content",
    ));
    let (_, first, _) = get(&relay.url(&format!("/hook/{TOKEN}?appointment_id=7&utm_content=ad-1")));
    let (_, twin, _) = get(&relay.url(&format!("/hook/{TOKEN}?appointment_id=7&utm_content=ad-1")));
    let (first, twin) = (first.unwrap(), twin.unwrap());
    relay.wait_status(first, "delivered");
    let text = stdout(&relay.cli(&["try", "p", "--from", &first.to_string()]));
    assert!(text.contains("processing p: would be queued"), "{text}");
    let text = stdout(&relay.cli(&["try", "p", "--from", &twin.to_string()]));
    assert!(
        text.contains(&format!(
            "would be duplicate (same dedupe key `7` as operation {first})"
        )),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&relay.cli(&[
        "try",
        "p",
        "--from",
        &first.to_string(),
        "--json",
    ])))
    .unwrap();
    assert_eq!(json["status"], "queued", "{json:#}");
    assert_eq!(json["deliveries"][0]["action"], "plarin");
    assert!(
        json["deliveries"][0]["url"]
            .as_str()
            .unwrap()
            .ends_with("/pb?ad_id=ad-1"),
        "{json:#}"
    );
    assert_eq!(json["deliveries"][0]["refused"], serde_json::Value::Null);
}

/// Held operations of a processing that is still stopped are refused
/// unless `--include-stopped` asks for them.
#[test]
fn held_operations_of_a_stopped_processing_need_include_stopped() {
    let receiver = Receiver::start();
    let relay = Relay::start(&processing_with(&receiver, "enabled = false", "utm_content"));
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?utm_content=ad-7")));
    let id = id.unwrap();
    relay.wait_status(id, "held");
    let text = stdout(&relay.cli(&["replay", "--status", "held"]));
    assert!(
        text.contains(&format!(
            "operation {id}: not replayed: processing `p` is still stopped (enabled = false); replay with --include-stopped to send it anyway"
        )),
        "{text}"
    );
    assert_eq!(relay.show(id)["status"], "held");
    let text = stdout(&relay.cli(&["replay", "--status", "held", "--include-stopped"]));
    assert!(text.contains("queued 1 deliveries for 1 operation(s)"), "{text}");
    relay.wait_status(id, "delivered");
    assert_eq!(receiver.wait_for(1)[0].param("ad_id").as_deref(), Some("ad-7"));
}

/// A held operation is sent once the processing is enabled (reload) and the operation replayed.
#[test]
fn held_then_replayed_after_reload() {
    let receiver = Receiver::start();
    let enabled = processing("p", &receiver.url("/pb"), r#"query = { n = "{{n}}" }"#);
    let disabled = enabled.replace("[[processing.action]]", "enabled = false\n\n[[processing.action]]");
    let relay = Relay::start(&disabled);
    let (status, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?n=1")));
    assert_eq!(status, 200);
    let id = id.unwrap();
    let op = relay.show(id);
    assert_eq!(op["status"], "held");
    assert!(op["deliveries"].as_array().unwrap().is_empty());

    relay.rewrite(&enabled);
    relay.signal("HUP");
    relay.wait_log("config reloaded");
    let text = stdout(&relay.cli(&["replay", "--status", "held"]));
    assert!(text.contains("queued 1 deliveries"), "{text}");
    relay.wait_status(id, "delivered");
    assert_eq!(receiver.wait_for(1)[0].param("n").as_deref(), Some("1"));
}

/// `check` warns about template fields the last event lacked, and still exits 0.
#[test]
fn check_warns_about_fields_missing_from_the_last_event() {
    let receiver = Receiver::start();
    let relay = Relay::start(&processing(
        "p",
        &receiver.url("/pb"),
        r#"query = { ad = "{{utm_content}}" }"#,
    ));
    let clean = stdout(&relay.cli(&["check"]));
    assert!(!clean.contains("warning"), "{clean}");
    get(&relay.url(&format!("/hook/{TOKEN}?client.id=1&ad_id=2")));
    let text = stdout(&relay.cli(&["check"]));
    assert!(
        text.contains(
            "warning: processing `p`: `utm_content` was not in the last event (operation 1); it had: ad_id, client.id"
        ),
        "{text}"
    );
}

/// Regression: with `breaker.failures` at least `retry.attempts`, a sparse
/// sender's events failed for good in an outage before the breaker
/// opened. `check` warns (and exits 0), and so does the daemon at start.
#[test]
fn check_warns_about_a_breaker_that_opens_after_the_retry_budget() {
    let receiver = Receiver::start();
    let text = config_text(&processing("p", &receiver.url("/pb"), ""))
        .replace("breaker = { failures = 0 }", "breaker = { failures = 5 }");
    let relay = Relay::start_in(tempfile::tempdir().unwrap(), &text);
    let warning = "warning: processing `p`: action `plarin`: the breaker opens after 5 failures in a row ([delivery] breaker.failures), but the action gives up after 5 attempts (retry.attempts)";
    let out = stdout(&relay.cli(&["check"]));
    assert!(out.contains(warning), "{out}");
    relay.wait_log("the breaker opens after 5 failures in a row");
}

/// The Klientiks address for an event, filled in as Klientiks would, arrives with every field.
#[test]
fn klientiks_address_round_trip() {
    let receiver = Receiver::start();
    let relay = Relay::start(&processing("p", &receiver.url("/pb"), ""));
    let list = stdout(&relay.cli(&["klientiks", "--list"]));
    for name in [
        "Добавление клиента",
        "Запись клиента на прием",
        "Создание счета на оплату",
        "Визит клиента оплачен",
    ] {
        assert!(list.contains(name), "{list}");
    }
    let address = stdout(&relay.cli(&["klientiks", "Визит клиента оплачен", "--processing", "p"]));
    // The test config listens on port 0, so the printed host is not the bound one.
    let address = relay.url(&format!("/hook/{}", address.trim().split_once("/hook/").unwrap().1));
    let address = address.as_str();
    assert!(
        address.contains(&format!(
            "/hook/{TOKEN}?event=appointment_paid&client_id={{{{client.id}}}}&"
        )),
        "{address}"
    );
    assert!(
        address.starts_with(&format!("http://{}/hook/{TOKEN}?event=appointment_paid&", relay.addr)),
        "{address}"
    );
    assert!(address.contains("appointment_time={{appointment.time}}"), "{address}");
    assert!(
        address.contains("appointment_status={{appointment.status}}"),
        "{address}"
    );

    // Fill every {{variable}} the way Klientiks does, then call it.
    let mut filled = String::new();
    let mut rest = address;
    while let Some(open) = rest.find("{{") {
        let close = rest[open..].find("}}").unwrap() + open;
        filled.push_str(&rest[..open]);
        filled.push_str(&format!("v-{}", &rest[open + 2..close]));
        rest = &rest[close + 2..];
    }
    filled.push_str(rest);
    let (status, id, _) = get(&filled);
    assert_eq!(status, 200);
    let op = relay.show(id.unwrap());
    assert_eq!(op["fields"]["event"], "appointment_paid");
    assert_eq!(op["fields"]["appointment_time"], "v-appointment.time");
    assert_eq!(op["fields"]["client_phone"], "v-client.phone");
    assert!(op["warnings"].as_array().unwrap().is_empty(), "{op:#}");

    let unknown = relay.cli(&["klientiks", "nonsense", "--processing", "p"]);
    assert_eq!(unknown.status.code(), Some(2));
}

/// Regression: `try` on a held processing printed only "would be held …
/// nothing would be sent"; it now shows the requests enabling it would send.
#[test]
fn try_renders_a_held_processing() {
    let relay = Relay::start(
        &processing(
            "p",
            "http://127.0.0.1:9/pb?token=s3cr3t",
            "query = { ad_id = \"{{utm_content}}\" }",
        )
        .replace("token = ", "enabled = false\ntoken = "),
    );
    let text = stdout(&relay.cli(&["try", "p", "utm_content=ad-7"]));
    assert!(text.contains("would be held"), "{text}");
    assert!(text.contains("once enabled (enabled = true), it would send:"), "{text}");
    assert!(
        text.contains("GET http://127.0.0.1:9/pb?token=MASKED&ad_id=ad-7"),
        "{text}"
    );
}

/// Regression: `fields` and `check` read the latest operation even when it
/// was rejected ("it had: no fields"), and `show` did not print a rejected
/// request's raw body; now they read the latest one with fields, and the
/// body is shown.
#[test]
fn a_rejected_request_does_not_hide_the_last_fields() {
    let relay = Relay::start(&processing(
        "p",
        "http://127.0.0.1:9/pb",
        "query = { a = \"{{utm_content}}\" }",
    ));
    let (status, _, _) = get(&relay.url(&format!("/hook/{TOKEN}?utm_content=ad-1")));
    assert_eq!(status, 200);
    let (status, rejected, _) = crate::support::post(
        &relay.url(&format!("/hook/{TOKEN}")),
        "application/json",
        b"{\"broken\": ",
    );
    assert_eq!(status, 400);

    let fields = stdout(&relay.cli(&["fields", "p"]));
    assert!(fields.contains("utm_content"), "{fields}");
    let check = stdout(&relay.cli(&["check"]));
    assert!(!check.contains("warning:"), "{check}");
    let shown = stdout(&relay.cli(&["show", &rejected.unwrap().to_string()]));
    assert!(shown.contains("body:      (application/json, 11 bytes)"), "{shown}");
    assert!(shown.contains("  {\"broken\": "), "{shown}");
}

/// `history --follow --json` prints new operations and their status changes
/// as they happen, beside the running daemon, and ends with exit 0 on Ctrl-C.
#[test]
fn history_follow_prints_new_operations_and_changes() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let receiver = Receiver::start();
    receiver.hold();
    let relay = Relay::start(&processing("p", &receiver.url("/pb"), ""));
    /// Ends the command if the test fails first: left running, it would
    /// hold the test runner's output open.
    struct Ends(std::process::Child);
    impl Drop for Ends {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut follow = Ends(
        Command::new(crate::support::BIN)
            .arg("-c")
            .arg(&relay.config)
            .args(["history", "--follow", "--json"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = follow.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?x=1")));
    let id = id.unwrap();
    let mut events = Vec::new();
    let next = |events: &mut Vec<serde_json::Value>| {
        let line = rx.recv_timeout(crate::support::DEADLINE).expect("a line from --follow");
        events.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
    };
    next(&mut events);
    assert_eq!(
        (events[0]["event"].as_str(), events[0]["id"].as_i64()),
        (Some("new"), Some(id))
    );
    assert_eq!(events[0]["status"], "queued");
    receiver.release();
    next(&mut events);
    assert_eq!(events[1]["event"], "status");
    assert_eq!(events[1]["id"].as_i64(), Some(id));
    assert_eq!(events[1]["status"], "delivered");

    let pid = follow.0.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let ended = crate::support::wait_until(|| matches!(follow.0.try_wait(), Ok(Some(_))));
    assert!(ended, "--follow did not stop on SIGINT");
    assert_eq!(follow.0.wait().unwrap().code(), Some(0));
}
