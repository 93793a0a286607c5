//! Several instances on one PostgreSQL database (README, "When one machine
//! is not enough"): the drills that only a shared database has. They run in
//! the suite's PostgreSQL pass (scripts/test) and skip on SQLite.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use crate::support::pg_cluster::Cluster;
use crate::support::{
    arrivals, client, config_text, get, on_postgres, processing, senders, wait_for, Acknowledged, Receiver, Relay,
    TAKEOVER_DEADLINE, TOKEN,
};

fn postgres_only() -> bool {
    if !on_postgres() {
        eprintln!("skipped on SQLite: several instances need PostgreSQL");
    }
    !on_postgres()
}

/// Two relays on `text`'s database, each in a folder of its own.
fn two_instances(text: &str) -> [Relay; 2] {
    [
        Relay::start_in(tempfile::tempdir().unwrap(), text),
        Relay::start_in(tempfile::tempdir().unwrap(), text),
    ]
}

/// Deliveries claimed by the instance with process id `pid` and not
/// finished: what it had in flight.
fn in_flight_of(pid: u32) -> i64 {
    let url = crate::support::postgres_database().unwrap();
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let owner = format!("%/{pid}/%");
    db.query_one(
        "SELECT count(*) FROM deliveries WHERE status = 'in_flight' AND lease_owner LIKE $1",
        &[&owner],
    )
    .unwrap()
    .get(0)
}

/// Two instances, senders on both, one killed with SIGKILL at a random
/// moment of each of 10 rounds and started again: every acknowledged
/// webhook arrives, and no more arrive twice than the killed instances
/// had claimed and not finished.
#[test]
fn killing_one_of_two_instances_loses_nothing() {
    if postgres_only() {
        return;
    }
    let receiver = Receiver::start();
    let text = config_text(&processing("p", &receiver.url("/pb"), r#"query = { n = "{{n}}" }"#));
    let mut relays = two_instances(&text);
    let acknowledged: Acknowledged = Arc::default();
    let mut in_flight_at_kills = 0;
    for round in 0..10 {
        let before = acknowledged.lock().unwrap().len();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = senders(&relays[0], &format!("{round}a"), 4, &acknowledged, &stop);
        threads.extend(senders(&relays[1], &format!("{round}b"), 4, &acknowledged, &stop));
        assert!(
            wait_for(TAKEOVER_DEADLINE, || acknowledged.lock().unwrap().len() >= before + 100),
            "round {round}: senders made no progress"
        );
        let mut random = [0u8; 2];
        getrandom::fill(&mut random).unwrap();
        std::thread::sleep(Duration::from_millis(u64::from(random[0]) * 2));
        let victim = usize::from(random[1] % 2);
        let pid = relays[victim].pid();
        relays[victim].kill9();
        in_flight_at_kills += in_flight_of(pid);
        // The survivor keeps taking webhooks meanwhile.
        let survivor_before = acknowledged.lock().unwrap().len();
        assert!(
            wait_for(TAKEOVER_DEADLINE, || acknowledged.lock().unwrap().len()
                >= survivor_before + 20),
            "round {round}: the surviving instance stopped answering"
        );
        stop.store(true, Ordering::Relaxed);
        for thread in threads {
            thread.join().unwrap();
        }
        relays[victim].restart();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let all_arrived = wait_for(TAKEOVER_DEADLINE, || {
        let arrived = arrivals(&receiver);
        acknowledged.iter().all(|n| arrived.contains_key(n))
    });
    let arrived = arrivals(&receiver);
    let lost: Vec<&String> = acknowledged.iter().filter(|n| !arrived.contains_key(*n)).collect();
    let twice: usize = arrived.values().map(|&count| count - 1).sum();
    eprintln!(
        "cluster drill: 10 rounds, {} acknowledged, {} delivered, {} lost, {twice} extra deliveries, \
         {in_flight_at_kills} in flight at the kills",
        acknowledged.len(),
        arrived.len(),
        lost.len()
    );
    assert!(
        all_arrived,
        "{} acknowledged never arrived, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        twice as i64 <= in_flight_at_kills,
        "{twice} extra deliveries, more than the {in_flight_at_kills} in flight at the kills"
    );
}

/// Twins sent to two instances at the same moment: one is accepted, the
/// other is its duplicate, and the receiver gets exactly one request.
#[test]
fn dedupe_holds_across_instances() {
    if postgres_only() {
        return;
    }
    let receiver = Receiver::start();
    let text = config_text(
        &processing("p", &receiver.url("/pb"), r#"query = { n = "{{n}}" }"#).replacen(
            "\n\n[[processing.action]]",
            "\ndedupe = \"{{n}}\"\n\n[[processing.action]]",
            1,
        ),
    );
    let relays = two_instances(&text);
    let rounds = 30;
    for round in 0..rounds {
        let start = Arc::new(Barrier::new(2));
        let sends: Vec<_> = relays
            .iter()
            .map(|relay| {
                let url = relay.url(&format!("/hook/{TOKEN}?n=twin{round}"));
                let start = Arc::clone(&start);
                std::thread::spawn(move || {
                    start.wait();
                    get(&url)
                })
            })
            .collect();
        for send in sends {
            let (status, _, body) = send.join().unwrap();
            assert_eq!(status, 200, "{body}");
        }
    }
    assert!(wait_for(TAKEOVER_DEADLINE, || arrivals(&receiver).len() == rounds));
    let out = relays[0].cli(&["history", "--json", "--limit", "1000"]);
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let statuses: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "duplicate").count(),
        rounds,
        "{statuses:?}"
    );
    // Anything sent twice would have arrived by now: a queued twin is
    // claimed within a poll interval.
    std::thread::sleep(Duration::from_millis(1500));
    let arrived = arrivals(&receiver);
    assert!(arrived.values().all(|&count| count == 1), "{arrived:?}");
}

/// PostgreSQL stopped under load and started again: webhooks are answered
/// 503 while it is down, both instances recover by themselves, and every
/// acknowledged webhook arrives.
#[test]
fn a_postgresql_restart_under_load_loses_nothing() {
    if postgres_only() {
        return;
    }
    let Some(cluster) = Cluster::start() else { return };
    let receiver = Receiver::start();
    let text = config_text(&processing("p", &receiver.url("/pb"), r#"query = { n = "{{n}}" }"#)).replace(
        &crate::support::storage_line(),
        &format!("url = \"{}\"", cluster.url("hookrelay")),
    );
    let relays = two_instances(&text);
    let acknowledged: Acknowledged = Arc::default();
    let refused = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let url = relays[thread % 2].url(&format!("/hook/{TOKEN}"));
            let (acknowledged, refused, stop) = (Arc::clone(&acknowledged), Arc::clone(&refused), Arc::clone(&stop));
            std::thread::spawn(move || {
                let agent = client();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let n = format!("{thread}-{i}");
                    let status = agent.get(&format!("{url}?n={n}")).call().unwrap().status();
                    match status.as_u16() {
                        200 => {
                            acknowledged.lock().unwrap().insert(n);
                        }
                        503 => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        other => panic!("unexpected {other}"),
                    }
                }
            })
        })
        .collect();
    assert!(wait_for(TAKEOVER_DEADLINE, || acknowledged.lock().unwrap().len() >= 200));
    cluster.down();
    assert!(
        wait_for(TAKEOVER_DEADLINE, || refused.load(Ordering::Relaxed) >= 20),
        "webhooks are refused while the database is down"
    );
    cluster.up();
    for relay in &relays {
        let url = relay.url(&format!("/hook/{TOKEN}?n=after"));
        assert!(
            wait_for(TAKEOVER_DEADLINE, || get(&url).0 == 200),
            "an instance did not recover"
        );
    }
    let before = acknowledged.lock().unwrap().len();
    assert!(wait_for(TAKEOVER_DEADLINE, || acknowledged.lock().unwrap().len() >= before + 100));
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let all_arrived = wait_for(TAKEOVER_DEADLINE, || {
        let arrived = arrivals(&receiver);
        acknowledged.iter().all(|n| arrived.contains_key(n))
    });
    let lost = acknowledged
        .iter()
        .filter(|n| !arrivals(&receiver).contains_key(*n))
        .count();
    eprintln!(
        "restart drill: {} acknowledged, {} refused while down, {lost} lost",
        acknowledged.len(),
        refused.load(Ordering::Relaxed)
    );
    assert!(all_arrived, "{lost} acknowledged webhooks never arrived");
}

/// `migrate-store` moves a SQLite history into an empty PostgreSQL
/// database: refused while the daemon runs and into a database that holds
/// data; afterwards the relay on PostgreSQL lists the same history, shows
/// the same attempts, keeps the dedupe keys and numbers new operations
/// past the old ones.
#[test]
fn migrate_store_moves_the_whole_history() {
    if crate::support::sqlite_only("the source of migrate-store") {
        return;
    }
    let Some(url) = crate::support::postgres_database() else {
        return;
    };
    let receiver = Receiver::start();
    let processings = processing("p", &receiver.url("/pb"), r#"query = { n = "{{n}}" }"#).replacen(
        "\n\n[[processing.action]]",
        "\ndedupe = \"{{n}}\"\n\n[[processing.action]]",
        1,
    );
    let mut relay = Relay::start(&processings);
    let send = |relay: &Relay, n: &str| get(&relay.url(&format!("/hook/{TOKEN}?n={n}")));
    let ids: Vec<i64> = (1..=5).map(|n| send(&relay, &n.to_string()).1.unwrap()).collect();
    for id in &ids {
        relay.wait_status(*id, "delivered");
    }
    let twin = send(&relay, "1").1.unwrap();
    let history = |relay: &Relay| -> serde_json::Value {
        let out = relay.cli(&["history", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let before = history(&relay);
    let shown = relay.show(ids[0]);

    let running = relay.cli(&["migrate-store", "--to", &url]);
    assert_eq!(running.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&running.stderr).contains("another hookrelay daemon"),
        "{}",
        String::from_utf8_lossy(&running.stderr)
    );
    assert!(relay.terminate().success());
    let moved = relay.cli(&["migrate-store", "--to", &url]);
    let said = String::from_utf8_lossy(&moved.stdout);
    assert!(moved.status.success(), "{}", String::from_utf8_lossy(&moved.stderr));
    assert!(said.contains("copied 6 operation(s)"), "{said}");
    let again = relay.cli(&["migrate-store", "--to", &url]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds hookrelay data"));

    let text = std::fs::read_to_string(&relay.config)
        .unwrap()
        .replace("path = \"relay.db\"", &format!("url = \"{url}\""));
    std::fs::write(&relay.config, text).unwrap();
    relay.restart();
    assert_eq!(history(&relay), before, "the same history");
    assert_eq!(relay.show(ids[0]), shown, "the same operation, deliveries and attempts");
    assert_eq!(relay.show(twin)["status"], "duplicate");
    let (_, again_twin, _) = send(&relay, "2");
    assert_eq!(
        relay.show(again_twin.unwrap())["status"],
        "duplicate",
        "dedupe keys came along"
    );
    let (_, fresh, _) = send(&relay, "6");
    let fresh = fresh.unwrap();
    assert!(fresh > twin, "new ids continue past the old ones: {fresh} after {twin}");
    relay.wait_status(fresh, "delivered");
}

/// A `[[receiver]]` rate holds for the cluster: webhooks taken by two
/// instances reach a 5/s receiver no faster than 5 in any second.
#[test]
fn pacing_holds_across_instances() {
    if postgres_only() {
        return;
    }
    let paced = Receiver::start();
    let text = config_text(&format!(
        "{}[[receiver]]\nurl = \"http://{}\"\nrate = \"5/s\"\n",
        processing("p", &paced.url("/pb"), r#"query = { n = "{{n}}" }"#),
        paced.addr
    ));
    let relays = two_instances(&text);
    for n in 0..30 {
        let (status, _, _) = get(&relays[n % 2].url(&format!("/hook/{TOKEN}?n={n}")));
        assert_eq!(status, 200);
    }
    assert!(
        wait_for(TAKEOVER_DEADLINE, || paced.requests().len() >= 30),
        "{} arrived; logs:\n{}\n{}",
        paced.requests().len(),
        relays[0].log_text(),
        relays[1].log_text()
    );
    let arrivals: Vec<Instant> = paced.requests().iter().map(|r| r.at).collect();
    crate::support::assert_at_most_5_a_second(&arrivals);
}

/// Notifications go out once for the cluster: of two instances, the one
/// holding the chores sends the digest of failures either one recorded;
/// stopping it hands the chores to the other, which sends the next.
#[test]
fn notifications_are_sent_once_across_instances() {
    if postgres_only() {
        return;
    }
    let smtp = crate::support::SmtpServer::start_on(crate::support::free_port());
    let receiver = Receiver::start();
    receiver.script(&[(400, "bad ad"); 8]);
    let text = config_text(&format!(
        "{}{}",
        crate::support::notify_email(smtp.port, "1s"),
        processing("p", &receiver.url("/pb"), r#"query = { n = "{{n}}" }"#)
    ));
    let mut relays = two_instances(&text);
    let holds = |relay: &Relay| relay.log_text().contains("this instance does the duties");
    assert!(wait_for(TAKEOVER_DEADLINE, || relays.iter().any(holds)));
    let holder = usize::from(!holds(&relays[0]));
    // A failure recorded by the instance without the chores.
    let (_, first, _) = get(&relays[1 - holder].url(&format!("/hook/{TOKEN}?n=one")));
    relays[1 - holder].wait_status(first.unwrap(), "failed");
    let mails = smtp.wait_for(1);
    assert!(mails[0].contains("Failed deliveries: 1"), "{}", mails[0]);
    // Longer than min_interval and two notifier ticks: a second instance
    // sending too would have by now.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(smtp.messages().len(), 1, "one digest for the cluster");

    relays[holder].terminate();
    assert!(
        wait_for(TAKEOVER_DEADLINE, || holds(&relays[1 - holder])),
        "the other instance takes the chores over"
    );
    let (_, second, _) = get(&relays[1 - holder].url(&format!("/hook/{TOKEN}?n=two")));
    relays[1 - holder].wait_status(second.unwrap(), "failed");
    let mails = smtp.wait_for(2);
    assert!(
        mails[1].contains(&format!("Operation: {} (", second.unwrap())),
        "{}",
        mails[1]
    );
}

/// A receiver's breaker is one for the cluster: two instances sending to a
/// receiver that is down open it once, probe it one at a time (never two
/// probes within an interval), and close it once it answers; the opening
/// and the closing are each announced once.
#[test]
fn the_breaker_is_one_for_the_cluster() {
    if postgres_only() {
        return;
    }
    let smtp = crate::support::SmtpServer::start_on(crate::support::free_port());
    let receiver = Receiver::start();
    receiver.script(&[(503, "down"); 400]);
    let text = config_text(&format!(
        "{}{}[[receiver]]\nurl = \"http://{}\"\nbreaker = {{ failures = 3, probe = \"800ms\", max_probe = \"800ms\" }}\n",
        crate::support::notify_email(smtp.port, "1s"),
        processing("p", &receiver.url("/pb"), r#"query = { n = "{{n}}" }"#),
        receiver.addr
    ));
    let relays = two_instances(&text);
    let ids: Vec<(usize, i64)> = (0..10)
        .map(|n| {
            (
                n % 2,
                get(&relays[n % 2].url(&format!("/hook/{TOKEN}?n={n}"))).1.unwrap(),
            )
        })
        .collect();
    assert!(wait_for(TAKEOVER_DEADLINE, || relays
        .iter()
        .all(|r| r.log_text().contains("circuit breaker open"))
        || relays.iter().any(|r| r.log_text().contains("probing with delivery"))));
    // Once open, one probe per interval for both instances together.
    let before = receiver.requests().len();
    let probes: Vec<Instant> = receiver.wait_for(before + 5)[before..].iter().map(|r| r.at).collect();
    for pair in probes.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(600),
            "two probes {gap:?} apart: {probes:?}"
        );
    }
    receiver.clear_script();
    for (relay, id) in &ids {
        relays[*relay].wait_status(*id, "delivered");
    }
    let all_mail = || smtp.messages().join("\n");
    assert!(
        wait_for(TAKEOVER_DEADLINE, || all_mail().contains("answers again")),
        "{}",
        all_mail()
    );
    std::thread::sleep(Duration::from_secs(2));
    let mail = all_mail();
    assert_eq!(mail.matches("fails since").count(), 1, "{mail}");
    assert_eq!(mail.matches("answers again").count(), 1, "{mail}");
}
