//! Crash safety: every webhook that got a 2xx reaches the receiver, even
//! when the daemon is killed with SIGKILL in the middle of a burst, round
//! after round.
//!
//! `HOOKRELAY_CRASH_ROUNDS=20 cargo test crash -- --nocapture` runs the
//! 20-round drill and prints acknowledged / delivered / lost / delivered-twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::support::{
    arrivals, processing, senders, wait_for, wait_until, Acknowledged, Receiver, Relay, TAKEOVER_DEADLINE,
};

/// Rounds of concurrent webhooks, `kill -9` in the middle, restart: nothing acknowledged is lost.
#[test]
fn kill_9_loses_no_acknowledged_webhook() {
    let rounds: usize = std::env::var("HOOKRELAY_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let receiver = Receiver::start();
    let mut relay = Relay::start(&processing("p", &receiver.url("/pb"), r#"query = { n = "{{n}}" }"#));
    let acknowledged: Acknowledged = Arc::default();
    for round in 0..rounds {
        let before = acknowledged.lock().unwrap().len();
        let stop = Arc::new(AtomicBool::new(false));
        let threads = senders(&relay, &round.to_string(), 8, &acknowledged, &stop);
        assert!(
            wait_until(|| acknowledged.lock().unwrap().len() >= before + 200),
            "round {round}: senders made no progress"
        );
        relay.kill9();
        stop.store(true, Ordering::Relaxed);
        for thread in threads {
            thread.join().unwrap();
        }
        relay.restart();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    // On PostgreSQL what the last round's instance had claimed waits for
    // its lease to lapse.
    let all_arrived = wait_for(TAKEOVER_DEADLINE, || {
        let arrived = arrivals(&receiver);
        acknowledged.iter().all(|n| arrived.contains_key(n))
    });
    let arrived = arrivals(&receiver);
    let lost: Vec<&String> = acknowledged.iter().filter(|n| !arrived.contains_key(*n)).collect();
    let twice = arrived.values().filter(|&&count| count > 1).count();
    eprintln!(
        "crash drill: {rounds} rounds, {} acknowledged, {} delivered, {} lost, {twice} delivered twice",
        acknowledged.len(),
        arrived.len(),
        lost.len()
    );
    assert!(
        all_arrived,
        "{} acknowledged webhooks never arrived, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}
