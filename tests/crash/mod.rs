//! Crash safety: every webhook that got a 2xx reaches the receiver, even
//! when the daemon is killed with SIGKILL in the middle of a burst.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::support::{client, processing, wait_until, Receiver, Relay, TOKEN};

/// Many concurrent webhooks, `kill -9` in the middle, restart: nothing acknowledged is lost.
#[test]
fn kill_9_loses_no_acknowledged_webhook() {
    let receiver = Receiver::start();
    let mut relay = Relay::start(&processing("p", &receiver.url("/pb"), r#"query = { n = "{{n}}" }"#));
    let acknowledged = Arc::new(Mutex::new(HashSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..8)
        .map(|thread| {
            let url = relay.url(&format!("/hook/{TOKEN}"));
            let (acknowledged, stop) = (Arc::clone(&acknowledged), Arc::clone(&stop));
            std::thread::spawn(move || {
                let agent = client();
                for i in 0..100_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let n = format!("{thread}-{i}");
                    match agent.get(&format!("{url}?n={n}")).call() {
                        Ok(r) if r.status().is_success() => {
                            acknowledged.lock().unwrap().insert(n);
                        }
                        // After the kill: connection refused or reset.
                        _ => break,
                    }
                }
            })
        })
        .collect();
    assert!(
        wait_until(|| acknowledged.lock().unwrap().len() >= 300),
        "senders made no progress"
    );
    relay.kill9();
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let before_restart = receiver.requests().len();

    relay.restart();
    let arrived = || -> HashSet<String> { receiver.requests().iter().filter_map(|r| r.param("n")).collect() };
    let all_arrived = wait_until(|| acknowledged.is_subset(&arrived()));
    let missing: Vec<_> = acknowledged.difference(&arrived()).cloned().collect();
    eprintln!(
        "crash test: {} acknowledged, {before_restart} delivered before the kill, {} requests in all",
        acknowledged.len(),
        receiver.requests().len()
    );
    assert!(
        all_arrived,
        "{} acknowledged webhooks never arrived, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}
