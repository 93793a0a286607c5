//! Pruning under load (`--prune N`): a daemon prunes operations past
//! `keep_days` while taking webhooks at 32 connections.

use super::*;

pub(super) struct Pruning {
    pub(super) pruned: u64,
    pub(super) took: Duration,
    pub(super) stats: Stats,
    /// When the slowest acknowledgement's request was sent, after the daemon started.
    pub(super) worst_at: Option<Duration>,
    pub(super) wal_peak_mb: f64,
}

/// Starts hookrelay on `operations` operations older than `keep_days` (it
/// prunes at start) and loads it at 32 connections until pruning is done.
pub(super) async fn prune_under_load(
    dir: &Path,
    receiver: SocketAddr,
    operations: u64,
    opts: &Opts,
    counter: &Arc<AtomicU64>,
) -> Result<Pruning, String> {
    let (dir, config) = tokio::task::block_in_place(|| seeded(dir, "prune", receiver, operations, (120, 100)))?;
    let started = Instant::now();
    let relay = tokio::task::block_in_place(|| start_relay(&config))?;
    let wal = WalWatch::start(&dir.join("bench.db"));
    let slice = if opts.smoke {
        Limit::Count(50)
    } else {
        Limit::Time(Duration::from_secs(1))
    };
    let all = load_until(relay.addr, slice, counter, || {
        if relay.logged(&format!("pruned {operations} operations")) {
            return Ok(true);
        }
        if started.elapsed() > Duration::from_secs(900) {
            return Err("pruning did not finish within 15 minutes".to_string());
        }
        Ok(false)
    })
    .await?;
    let took = started.elapsed();
    let worst_at = all.worst.map(|(_, sent)| sent.duration_since(started));
    Ok(Pruning {
        pruned: operations,
        took,
        stats: all,
        worst_at,
        wal_peak_mb: wal.peak_mb(),
    })
}
