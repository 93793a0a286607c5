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

/// Enables the held processing, reloads the relay and replays what it held;
/// returns when the replay began.
pub(super) fn enable_and_replay(relay: &Process, config: &Path) -> Result<Instant, String> {
    std::fs::write(
        config,
        std::fs::read_to_string(config)
            .map_err(|e| e.to_string())?
            .replace("enabled = false", "enabled = true"),
    )
    .map_err(|e| e.to_string())?;
    Command::new("kill")
        .args(["-HUP", &relay.child.id().to_string()])
        .status()
        .map_err(|e| e.to_string())?;
    if !relay.wait_log("config reloaded") {
        return Err("the backlog relay did not reload".into());
    }
    let replay_started = Instant::now();
    let replay = Command::new(BIN)
        .arg("-c")
        .arg(config)
        .args(["replay", "--status", "held"])
        .output()
        .map_err(|e| e.to_string())?;
    if !replay.status.success() {
        return Err(format!("replay failed: {}", String::from_utf8_lossy(&replay.stderr)));
    }
    Ok(replay_started)
}
