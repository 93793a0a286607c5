//! Replay beside webhooks (`--replay N`, default 100 000; 0 skips it): N
//! failed operations seeded, then `hookrelay replay --status failed` run
//! beside the daemon while 32 connections send webhooks. The figure is the
//! longest acknowledgement meanwhile (the target is 50 ms): the command
//! line's own back-to-back transactions used to keep the daemon's writer
//! out of SQLite's unfair lock for over a second.

use super::*;

/// What the replay phase measured.
pub(super) struct ReplayRun {
    pub operations: u64,
    /// From starting the command until it exited.
    pub took: Duration,
    /// The acknowledgements meanwhile.
    pub stats: Stats,
    /// The command's last line ("queued … by the running daemon").
    pub said: String,
}

/// Seeds `operations` failed operations, starts the daemon on them, and
/// replays them all from the command line under load.
pub(super) async fn replay_under_load(
    dir: &Path,
    receiver: SocketAddr,
    operations: u64,
    opts: &Opts,
    counter: &Arc<AtomicU64>,
) -> Result<ReplayRun, String> {
    let dir = dir.join("replay");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let config = relay_config(&dir, receiver, true);
    let now = now_ms();
    let plan = hookrelay::store::seed::Seed {
        operations,
        oldest: now - DAY_MS,
        newest: now - 60_000,
        failed_every: 1,
        query: QUERY.to_string(),
    };
    tokio::task::block_in_place(|| hookrelay::store::seed::seed(&dir.join("bench.db"), &plan))
        .map_err(|e| format!("seeding: {e}"))?;
    let relay = tokio::task::block_in_place(|| start_relay(&config))?;
    let started = Instant::now();
    let mut replay = Command::new(BIN)
        .arg("-c")
        .arg(&config)
        .args(["replay", "--status", "failed"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting replay: {e}"))?;
    let slice = if opts.smoke {
        Limit::Count(50)
    } else {
        Limit::Time(Duration::from_millis(500))
    };
    let stats = load_until(relay.addr, slice, counter, || match replay.try_wait() {
        Ok(Some(_)) => Ok(true),
        Ok(None) if started.elapsed() > Duration::from_secs(900) => {
            Err("the replay did not finish within 15 minutes".to_string())
        }
        Ok(None) => Ok(false),
        Err(err) => Err(format!("waiting for the replay: {err}")),
    })
    .await?;
    let took = started.elapsed();
    let output = replay.wait_with_output().map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!("replay failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let said = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    Ok(ReplayRun {
        operations,
        took,
        stats,
        said,
    })
}

/// The phase's line in the report.
pub(super) fn print(run: &ReplayRun) {
    let l = &run.stats.latencies;
    println!(
        "replay: {} failed operations replayed in {:.1} s beside 32 connections: {} webhooks at {:.0}/s, \
         ack p50 {} ms, p99 {} ms, max {} ms (target: max <= 50 ms); the command said: {}",
        run.operations,
        run.took.as_secs_f64(),
        run.stats.ok,
        run.stats.rate(),
        ms(percentile(l, 0.5)),
        ms(percentile(l, 0.99)),
        ms(l.last().copied().unwrap_or(0)),
        run.said
    );
}
