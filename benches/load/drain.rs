//! The backlog drain: operations stored while nothing is sent, then
//! released at once; and the same-run fan-out ceiling of plain ureq.

use super::*;

/// The fan-out ceiling for the backlog drain: `threads` plain ureq threads
/// (one shared agent, as hookrelay's workers share one) sending `count`
/// GETs like the relay's deliveries to the same receiver, nothing stored.
/// Requests per second.
pub(super) fn fan_out(receiver: SocketAddr, threads: usize, count: u64) -> f64 {
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (agent, next) = (agent.clone(), Arc::clone(&next));
            std::thread::spawn(move || loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    break;
                }
                // Numbers past any webhook's, so the drain's count is untouched.
                let url = format!(
                    "http://{receiver}/postback?token=secret&ad_id=ad-{n}&value=1500&n={}",
                    u64::MAX / 2 + n
                );
                let _ = agent.get(&url).call().map(|mut r| r.body_mut().read_to_vec());
            })
        })
        .collect();
    for handle in handles {
        let _ = handle.join();
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// Enables the held processing in `config`'s file.
fn enable(config: &Path) -> Result<(), String> {
    std::fs::write(
        config,
        std::fs::read_to_string(config)
            .map_err(|e| e.to_string())?
            .replace("enabled = false", "enabled = true"),
    )
    .map_err(|e| e.to_string())
}

/// `hookrelay replay --status held` on `config`, to its end.
fn replay_held(config: &Path) -> Result<(), String> {
    let replay = Command::new(BIN)
        .arg("-c")
        .arg(config)
        .args(["replay", "--status", "held"])
        .output()
        .map_err(|e| e.to_string())?;
    if !replay.status.success() {
        return Err(format!("replay failed: {}", String::from_utf8_lossy(&replay.stderr)));
    }
    Ok(())
}

/// Enables the held processing, reloads the relay and replays what it held;
/// returns when the replay began.
pub(super) fn enable_and_replay(relay: &Process, config: &Path) -> Result<Instant, String> {
    enable(config)?;
    Command::new("kill")
        .args(["-HUP", &relay.child.id().to_string()])
        .status()
        .map_err(|e| e.to_string())?;
    if !relay.wait_log("config reloaded") {
        return Err("the backlog relay did not reload".into());
    }
    let replay_started = Instant::now();
    replay_held(config)?;
    Ok(replay_started)
}

/// The drain of a backlog already queued when the daemon starts: `count`
/// webhooks stored held, the daemon killed, the processing enabled and
/// `hookrelay replay --status held` run on the database alone, then the
/// daemon started on it. Deliveries/s from the first arrival to the last:
/// the scheduler and its workers, with no replay feeding them meanwhile.
pub(super) async fn queued_drain(
    dir: &Path,
    receiver: &Receiver,
    receiver_addr: SocketAddr,
    count: u64,
    counter: &Arc<AtomicU64>,
) -> Result<f64, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let config = relay_config(dir, receiver_addr, false);
    let relay = tokio::task::block_in_place(|| start_relay(&config))?;
    let first = counter.load(Ordering::Relaxed);
    let stored = load(
        relay.addr,
        &format!("/hook/{TOKEN}?{QUERY}&n="),
        32,
        Limit::Count(count),
        Arc::clone(counter),
    )
    .await;
    let last = counter.load(Ordering::Relaxed);
    drop(relay);
    if stored.failed > 0 {
        return Err(format!(
            "queued backlog: {} webhooks were not acknowledged",
            stored.failed
        ));
    }
    tokio::task::block_in_place(|| enable(&config).and_then(|()| replay_held(&config)))?;
    let relay = tokio::task::block_in_place(|| start_relay(&config))?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut began: Option<(Instant, usize)> = None;
    loop {
        let arrived = receiver.count(first, last);
        if arrived > 0 && began.is_none() {
            began = Some((Instant::now(), arrived));
        }
        if arrived >= stored.ok as usize {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("queued backlog: only {arrived} of {} delivered", stored.ok));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(relay);
    let (at, before) = began.unwrap_or((Instant::now(), 0));
    Ok((stored.ok as usize - before) as f64 / at.elapsed().as_secs_f64().max(1e-3))
}
