//! Per-receiver pacing and the circuit breaker, against the real binary:
//! rates measured at a real receiver, a receiver down for longer than the
//! whole retry budget, notices through a real SMTP server, `hookrelay
//! status`, /metrics, and a restart with the breaker open.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    admin_get, free_port, get, parse_prometheus_text, processing, processing_with_token, sample, wait_until, Receiver,
    Relay, SmtpServer, TOKEN,
};

/// `[[receiver]]` for `receiver` with `settings`.
fn receiver_table(receiver: &Receiver, settings: &str) -> String {
    format!("[[receiver]]\nurl = \"http://{}\"\n{settings}\n", receiver.addr)
}

fn status_json(relay: &Relay) -> Value {
    let out = relay.cli(&["status", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The receiver's entry in `status --json`.
fn receiver_status(relay: &Relay, receiver: &Receiver) -> Value {
    let target = format!("http://{}/", receiver.addr);
    let status = status_json(relay);
    status["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["receiver"] == target.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{target} not in {status:#}"))
}

/// A receiver limited to 5/s gets at most 5 requests in any second while a
/// replay of 200 operations runs, none fails, and another receiver is
/// served meanwhile.
#[test]
fn a_paced_receiver_gets_its_rate_and_others_are_not_slowed() {
    let paced = Receiver::start();
    let other = Receiver::start();
    const OTHER_TOKEN: &str = "other-token-0123456789abcdefXYZ";
    let processings = |enabled: bool| {
        format!(
            "[[processing]]\nname = \"paced\"\nenabled = {enabled}\ntoken = \"{TOKEN}\"\n\n\
             [[processing.action]]\nname = \"plarin\"\nmethod = \"GET\"\nurl = \"{}\"\nquery = {{ n = \"{{{{n}}}}\" }}\n\n{}{}",
            paced.url("/pb"),
            processing_with_token("other", OTHER_TOKEN, &other.url("/pb"), ""),
            receiver_table(&paced, "rate = \"5/s\""),
        )
    };
    let relay = Relay::start(&processings(false));
    for n in 0..200 {
        let (status, _, _) = get(&relay.url(&format!("/hook/{TOKEN}?n={n}")));
        assert_eq!(status, 200);
    }
    relay.rewrite(&processings(true));
    relay.signal("HUP");
    relay.wait_log("config reloaded");
    let out = relay.cli(&["replay", "--status", "held"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let started = Instant::now();

    for _ in 0..20 {
        let (status, _, _) = get(&relay.url(&format!("/hook/{OTHER_TOKEN}")));
        assert_eq!(status, 200);
    }
    other.wait_for(20);
    let others_done = started.elapsed();
    assert!(
        paced.requests().len() < 100,
        "the other receiver waited for the paced one: done after {others_done:?}"
    );

    let deadline = Instant::now() + Duration::from_secs(120);
    while paced.requests().len() < 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let arrivals: Vec<Instant> = paced.requests().iter().map(|r| r.at).collect();
    assert_eq!(arrivals.len(), 200, "the paced receiver got them all");
    crate::support::assert_at_most_5_a_second(&arrivals);
    let total = arrivals[199] - arrivals[0];
    assert!(total >= Duration::from_millis(39_500), "200 at 5/s took {total:?}");
    let failed = relay.cli(&["history", "--status", "failed", "--json"]);
    assert_eq!(String::from_utf8_lossy(&failed.stdout).trim(), "[]", "nothing failed");
}

/// A receiver down for longer than the whole retry budget: once the breaker
/// is open, deliveries wait without spending attempts, probes go out as
/// configured, and after it comes back every delivery arrives, none
/// failed; the opening and the closing are each notified once.
#[test]
fn a_breaker_keeps_deliveries_through_an_outage() {
    let smtp = SmtpServer::start_on(free_port());
    let receiver = Receiver::start();
    receiver.script(&[(503, "down"); 200]);
    let relay = Relay::start(&format!(
        "[notify]\nemail_to = [\"ops@example.ru\"]\nemail_from = \"hookrelay@example.ru\"\n\
         smtp = \"smtp://127.0.0.1:{}\"\nmin_interval = \"1s\"\n\n{}{}",
        smtp.port,
        processing("klientiks-plarin", &receiver.url("/pb"), ""),
        receiver_table(
            &receiver,
            "breaker = { failures = 3, probe = \"400ms\", max_probe = \"1s\" }"
        ),
    ));
    let ids: Vec<i64> = (0..10)
        .map(|n| get(&relay.url(&format!("/hook/{TOKEN}?n={n}"))).1.unwrap())
        .collect();
    relay.wait_log("circuit breaker open after 3 failures in a row");
    let before_probes = receiver.requests().len();
    // Three probes: 400 ms after opening, then 800 ms, then 1 s (the cap).
    let probes: Vec<Instant> = receiver.wait_for(before_probes + 3)[before_probes..]
        .iter()
        .map(|r| r.at)
        .collect();
    let gaps = [probes[1] - probes[0], probes[2] - probes[1]];
    assert!(gaps[0] >= Duration::from_millis(750), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(950), "{gaps:?}");
    // The retry budget (5 attempts within about a second) is long spent.
    for id in &ids {
        let op = relay.show(*id);
        assert_eq!(op["status"], "queued", "{op:#}");
    }
    let status = receiver_status(&relay, &receiver);
    assert_eq!(status["breaker"], "open", "{status:#}");
    assert_eq!(status["last_error"], "HTTP 503");
    let waiting = status["backlog"]["waiting"].as_u64().unwrap();
    assert!(waiting >= 9, "{status:#}");
    let text = String::from_utf8(relay.cli(&["status"]).stdout).unwrap();
    assert!(text.contains("breaker OPEN, failing since"), "{text}");
    let (_, metrics) = admin_get(&relay, "/metrics", None);
    let target = format!("http://{}/", receiver.addr);
    let samples = parse_prometheus_text(&metrics);
    assert_eq!(
        sample(&samples, "hookrelay_receiver_breaker_open", &[("receiver", &target)]),
        1.0
    );

    receiver.clear_script();
    for id in &ids {
        relay.wait_status(*id, "delivered");
    }
    let status = receiver_status(&relay, &receiver);
    assert_eq!(status["breaker"], "closed", "{status:#}");
    let (_, metrics) = admin_get(&relay, "/metrics", None);
    let samples = parse_prometheus_text(&metrics);
    assert_eq!(
        sample(&samples, "hookrelay_receiver_breaker_open", &[("receiver", &target)]),
        0.0
    );
    let opened = [("receiver", target.as_str()), ("to", "open")];
    assert_eq!(
        sample(&samples, "hookrelay_receiver_breaker_changes_total", &opened),
        1.0
    );

    let all_mail = || smtp.messages().join("\n");
    assert!(wait_until(|| all_mail().contains("answers again")), "{}", all_mail());
    let mail = all_mail();
    assert_eq!(mail.matches("fails since").count(), 1, "{mail}");
    assert_eq!(mail.matches("answers again").count(), 1, "{mail}");
    assert!(mail.contains(&format!("receiver {target}")), "{mail}");
    assert!(mail.contains("last error: HTTP 503"), "{mail}");
}

/// A restart while the breaker is open keeps it open, with its backlog and
/// its probe time: nothing goes out before the probe is due.
#[test]
fn an_open_breaker_survives_a_restart() {
    let receiver = Receiver::start();
    receiver.script(&[(503, "down"); 200]);
    let mut relay = Relay::start(&format!(
        "{}{}",
        processing("klientiks-plarin", &receiver.url("/pb"), ""),
        receiver_table(&receiver, "breaker = { failures = 2, probe = \"4s\" }"),
    ));
    let ids: Vec<i64> = (0..4)
        .map(|n| get(&relay.url(&format!("/hook/{TOKEN}?n={n}"))).1.unwrap())
        .collect();
    relay.wait_log("circuit breaker open");
    let status = receiver_status(&relay, &receiver);
    let next_probe = status["next_probe_at"].as_str().unwrap().to_string();
    assert!(relay.terminate().success());
    let sent_before = receiver.requests().len();

    relay.restart();
    relay.wait_log("the circuit breaker is open");
    let status = receiver_status(&relay, &receiver);
    assert_eq!(status["breaker"], "open", "{status:#}");
    assert_eq!(status["next_probe_at"], next_probe.as_str(), "the probe time is kept");
    assert_eq!(status["backlog"]["waiting"], 4, "{status:#}");
    let (_, metrics) = admin_get(&relay, "/metrics", None);
    let target = format!("http://{}/", receiver.addr);
    assert_eq!(
        sample(
            &parse_prometheus_text(&metrics),
            "hookrelay_receiver_breaker_open",
            &[("receiver", &target)]
        ),
        1.0
    );
    receiver.clear_script();
    // The probe goes when it was due, not at once after the restart.
    let probe = receiver.wait_for(sent_before + 1)[sent_before].at;
    let due: jiff::Timestamp = next_probe.parse().unwrap();
    let arrived = jiff::Timestamp::now().as_millisecond() - probe.elapsed().as_millis() as i64;
    let early = due.as_millisecond() - arrived;
    assert!(early <= 50, "the probe went {early} ms before it was due");
    for id in &ids {
        relay.wait_status(*id, "delivered");
    }
}

/// `concurrency = 2`: while the receiver holds its answers, a third
/// request never goes out; every delivery arrives once it answers.
#[test]
fn concurrency_caps_requests_in_flight() {
    let receiver = Receiver::start();
    receiver.hold();
    let relay = Relay::start(&format!(
        "{}{}",
        processing("klientiks-plarin", &receiver.url("/pb"), ""),
        receiver_table(&receiver, "concurrency = 2"),
    ));
    let ids: Vec<i64> = (0..5)
        .map(|n| get(&relay.url(&format!("/hook/{TOKEN}?n={n}"))).1.unwrap())
        .collect();
    receiver.wait_for(2);
    // An observation window, not a synchronisation: with 4 workers and no
    // cap a third and fourth request would arrive within milliseconds.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(receiver.requests().len(), 2, "more than 2 in flight");
    receiver.release();
    for id in &ids {
        relay.wait_status(*id, "delivered");
    }
    assert_eq!(receiver.requests().len(), 5);
}

/// A reload applies a `[[receiver]]` change at once: raising `concurrency`
/// from 1 to 3 lets two more requests out while the first still hangs.
#[test]
fn a_reload_applies_receiver_settings() {
    let receiver = Receiver::start();
    receiver.hold();
    let processings = |concurrency: u32| {
        format!(
            "{}{}",
            processing("klientiks-plarin", &receiver.url("/pb"), ""),
            receiver_table(&receiver, &format!("concurrency = {concurrency}")),
        )
    };
    let relay = Relay::start(&processings(1));
    for n in 0..4 {
        assert_eq!(get(&relay.url(&format!("/hook/{TOKEN}?n={n}"))).0, 200);
    }
    receiver.wait_for(1);
    relay.rewrite(&processings(3));
    relay.signal("HUP");
    relay.wait_log("config reloaded");
    receiver.wait_for(3);
    receiver.release();
    assert_eq!(receiver.wait_for(4).len(), 4);
}

/// Regression: deliveries stuck behind an open breaker had no way out.
/// `breaker = { failures = 0 }` ("turns it off", applied on reload) left it
/// open after SIGHUP and after a restart, probing with a doubling wait,
/// and nothing closed it by hand. Now `hookrelay receiver reset URL`
/// closes it at once; so does a reload that turns it off, and a start.
#[test]
fn an_open_breaker_closes_by_hand_on_reload_and_at_start() {
    let receiver = Receiver::start();
    let processings = |breaker: &str| {
        format!(
            "{}{}",
            processing("p", &receiver.url("/pb"), ""),
            receiver_table(&receiver, breaker)
        )
    };
    let on = "breaker = { failures = 2, probe = \"1h\", max_probe = \"2h\" }";
    let mut relay = Relay::start(&processings(on));
    let open_with = |relay: &Relay| -> Vec<i64> {
        receiver.script(&[(503, "down"); 200]);
        let ids: Vec<i64> = (0..3)
            .map(|n| get(&relay.url(&format!("/hook/{TOKEN}?n={n}"))).1.unwrap())
            .collect();
        assert!(
            wait_until(|| receiver_status(relay, &receiver)["breaker"] == "open"),
            "the breaker opened"
        );
        receiver.clear_script();
        ids
    };

    // By hand: the probe is an hour away, so a delivery now is the reset's.
    let ids = open_with(&relay);
    let out = relay.cli(&["receiver", "reset", &receiver.url("/any/path")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let target = format!("http://{}/", receiver.addr);
    assert!(
        text.contains(&format!("receiver {target}: circuit breaker closed")),
        "{text}"
    );
    // On SQLite the daemon does it; PostgreSQL's instances adopt it.
    assert_eq!(
        text.contains("by the running daemon"),
        !crate::support::on_postgres(),
        "{text}"
    );
    for id in &ids {
        relay.wait_status(*id, "delivered");
    }
    let again = relay.cli(&["receiver", "reset", &receiver.url("/")]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("was not open; nothing to do"));
    assert_eq!(relay.cli(&["receiver", "reset", "not a url"]).status.code(), Some(2));

    // A reload that turns the breaker off closes it.
    let ids = open_with(&relay);
    relay.rewrite(&processings("breaker = { failures = 0 }"));
    relay.signal("HUP");
    relay.wait_log("its breaker is turned off (failures = 0)");
    for id in &ids {
        relay.wait_status(*id, "delivered");
    }

    // And so does a start with it turned off.
    relay.rewrite(&processings(on));
    relay.signal("HUP");
    assert!(wait_until(|| relay.log_text().matches("config reloaded").count() == 2));
    let ids = open_with(&relay);
    assert!(relay.terminate().success());
    relay.rewrite(&processings("breaker = { failures = 0 }"));
    relay.restart();
    for id in &ids {
        relay.wait_status(*id, "delivered");
    }
    assert_eq!(receiver_status(&relay, &receiver)["breaker"], "closed");
}

/// Deliveries waiting behind an open breaker can be cancelled, by
/// operation or by receiver: `cancelled`, with who did it, never sent.
#[test]
fn waiting_deliveries_can_be_cancelled() {
    let receiver = Receiver::start();
    receiver.script(&[(503, "down"); 200]);
    let relay = Relay::start(&format!(
        "{}{}",
        processing("p", &receiver.url("/pb"), ""),
        receiver_table(
            &receiver,
            "breaker = { failures = 1, probe = \"1h\", max_probe = \"2h\" }"
        ),
    ));
    let ids: Vec<i64> = (0..3)
        .map(|n| get(&relay.url(&format!("/hook/{TOKEN}?n={n}"))).1.unwrap())
        .collect();
    assert!(wait_until(|| receiver_status(&relay, &receiver)["breaker"] == "open"));
    // Held back by the breaker, in the database, not claimed.
    assert!(wait_until(|| ids.iter().all(|id| matches!(
        relay.show(*id)["deliveries"][0]["status"].as_str(),
        Some("pending" | "retrying")
    ))));
    let cli = |args: &[&str]| {
        let out = relay.cli(args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = cli(&["cancel", &ids[0].to_string()]);
    assert!(text.contains("cancelled 1 waiting deliveries"), "{text}");
    let op = relay.wait_status(ids[0], "failed");
    assert_eq!(op["deliveries"][0]["status"], "cancelled");
    assert!(
        op["deliveries"][0]["last_error"]
            .as_str()
            .unwrap()
            .starts_with("cancelled by command line"),
        "{op:#}"
    );
    let text = cli(&["cancel", "--receiver", &receiver.url("/")]);
    assert!(text.contains("cancelled 2 waiting deliveries"), "{text}");
    for id in &ids[1..] {
        relay.wait_status(*id, "failed");
    }
    let sent = receiver.requests().len();
    receiver.clear_script();
    cli(&["receiver", "reset", &receiver.url("/")]);
    let (_, fresh, _) = get(&relay.url(&format!("/hook/{TOKEN}?n=9")));
    relay.wait_status(fresh.unwrap(), "delivered");
    assert_eq!(receiver.requests().len(), sent + 1, "nothing cancelled was sent");
    assert_eq!(relay.cli(&["cancel"]).status.code(), Some(2));
}

/// Deliveries queued while the action pointed at a wrong address keep the
/// request they were rendered with. After the fix, the reload's log and
/// `check` say so, and `hookrelay requeue` renders them again: they go to
/// the fixed address at once.
#[test]
fn waiting_deliveries_are_rendered_again_after_a_fix() {
    let dead = crate::support::free_port();
    let processing_to = |url: &str| {
        processing(
            "p",
            url,
            "query = { n = \"{{n}}\" }\nretry = { attempts = 5, first_delay = \"1h\", max_delay = \"2h\" }",
        )
    };
    let relay = Relay::start(&processing_to(&format!("http://127.0.0.1:{dead}/pb")));
    let ids: Vec<i64> = (0..2)
        .map(|n| get(&relay.url(&format!("/hook/{TOKEN}?n={n}"))).1.unwrap())
        .collect();
    for id in &ids {
        assert!(wait_until(|| relay.show(*id)["deliveries"][0]["status"] == "retrying"));
    }
    let receiver = Receiver::start();
    relay.rewrite(&processing_to(&receiver.url("/pb")));
    relay.signal("HUP");
    relay.wait_log("action `plarin` changed; deliveries already waiting keep their old request");
    let out = relay.cli(&["check"]);
    let check = String::from_utf8_lossy(&out.stdout);
    assert!(
        check.contains("action `plarin`: deliveries waiting now were rendered with an older config"),
        "{check}"
    );
    let out = relay.cli(&["requeue", "--processing", "p"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("rendered 2 waiting deliveries again from the current config"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for id in &ids {
        relay.wait_status(*id, "delivered");
    }
    let got = receiver.wait_for(2);
    assert_eq!(got.len(), 2);
}
