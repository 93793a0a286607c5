//! The scheduler's tests, on a real store and with the test as its workers.

use std::path::Path;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::deliver::breaker::Breakers;
use crate::model::{DeliveryRequest, NewOperation};
use crate::store::{spawn_writer, Hooks};

const WAIT: Duration = Duration::from_secs(10);

/// The next delivery handed to a worker, within [`WAIT`].
fn next_job(jobs: &Receiver<Job>) -> Job {
    jobs.recv_timeout(WAIT).expect("no delivery was handed out")
}

/// A scheduler of four workers (three at a time to one receiver) holds ten
/// deliveries claimed when the writer turns slow. Workers that free up
/// meanwhile get the deliveries already in hand: the scheduler's next
/// claim waits at the writer without it. At the stop, those never handed
/// out go back to the queue, the ones the late claim took included.
#[test]
fn freed_workers_are_fed_while_a_claim_waits_at_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = Hooks {
        on_commit: Box::new(|| {}),
        on_error: Box::new(|_| {}),
    };
    let (writer, _thread) = spawn_writer(&dir.path().join("t.db"), hooks).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        for _ in 0..10 {
            let mut op = NewOperation::sample(1_000);
            op.deliveries = vec![DeliveryRequest::sample("a")];
            writer.insert(op).await.unwrap();
        }
    });
    let config = Arc::new(Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml")).unwrap());
    let (own, signals) = mpsc::channel();
    let (jobs_tx, jobs) = mpsc::sync_channel(0);
    let scheduler = Scheduler::new(
        writer.clone(),
        4,
        (signals, own.clone()),
        jobs_tx,
        (Box::new(move || Arc::clone(&config)), Breakers::from(Vec::new())),
        Metrics::new(),
    );
    let running = std::thread::spawn(move || scheduler.run());

    let mut handed: Vec<i64> = (0..3).map(|_| next_job(&jobs).due.id).collect();
    let target = crate::model::target_of(&DeliveryRequest::sample("a").url);
    let slow = writer.pause();
    for _ in 0..2 {
        own.send(Signal::WorkerIdle(target.clone())).unwrap();
        handed.push(next_job(&jobs).due.id);
    }
    drop(slow);
    own.send(Signal::Stop).unwrap();
    running.join().unwrap();

    handed.sort_unstable();
    handed.dedup();
    assert_eq!(handed.len(), 5, "each delivery handed out once");
    let back = writer.claim_due(now_ms(), 100, Vec::new()).unwrap().due;
    let mut back: Vec<i64> = back.iter().map(|due| due.id).collect();
    back.sort_unstable();
    let all: Vec<i64> = (1..=10).collect();
    let mut both: Vec<i64> = handed.iter().chain(&back).copied().collect();
    both.sort_unstable();
    assert_eq!(both, all, "the rest were given back at the stop");
}
