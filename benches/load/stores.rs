//! SQLite beside PostgreSQL with one and with two instances, in the same
//! run (`--postgres URL`, an admin URL of a server on this machine; in the
//! smoke run, HOOKRELAY_TEST_POSTGRES): acknowledgements/s at 32
//! connections (spread over the instances) with delivery on, and the drain
//! of a backlog of `--backlog` held operations replayed at once.

use super::*;

/// One store setup's figures.
pub(super) struct StoreRow {
    pub name: &'static str,
    pub acks: Stats,
    /// Every acknowledged webhook delivered this long after the load ended.
    pub caught_up: Option<Duration>,
    pub stored: u64,
    /// The held backlog's acknowledgements/s while it was stored.
    pub held_rate: f64,
    pub drain: Duration,
    /// CPU µs and SQL statements per acknowledged webhook, delivering and
    /// held (every instance's together; PostgreSQL's own CPU not counted).
    pub delivering: (f64, f64),
    pub held: (f64, f64),
}

/// Every instance's CPU µs and SQL statements so far.
fn readings(relays: &[(Process, PathBuf)]) -> (u64, u64) {
    relays.iter().fold((0, 0), |(cpu, sql), (r, _)| {
        (cpu + r.cpu_micros(), sql + r.statements())
    })
}

/// Per acknowledged webhook, from `before` to now.
fn per_ack(relays: &[(Process, PathBuf)], before: (u64, u64), acks: u64) -> (f64, f64) {
    let now = readings(relays);
    let acks = acks.max(1) as f64;
    (
        now.0.saturating_sub(before.0) as f64 / acks,
        now.1.saturating_sub(before.1) as f64 / acks,
    )
}

/// A fresh database `name` on the server at `admin`; its URL.
fn fresh_database(admin: &str, name: &str) -> Result<String, String> {
    let mut client = postgres::Client::connect(admin, postgres::NoTls).map_err(|e| e.to_string())?;
    // One statement each: neither may run inside a transaction block.
    for statement in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        client.batch_execute(&statement).map_err(|e| {
            format!(
                "{statement}: {}",
                e.as_db_error().map_or(e.to_string(), |d| d.message().to_string())
            )
        })?;
    }
    let mut url = url::Url::parse(admin).map_err(|e| e.to_string())?;
    url.set_path(name);
    Ok(url.to_string())
}

/// `instances` relays on `storage` (a `[storage]` line), each in its own folder.
fn start_instances(
    dir: &Path,
    receiver: SocketAddr,
    storage: &str,
    instances: usize,
    enabled: bool,
) -> Result<Vec<(Process, PathBuf)>, String> {
    (0..instances)
        .map(|i| {
            let folder = dir.join(format!("instance-{i}"));
            std::fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
            let config = relay_config(&folder, receiver, enabled);
            let text = std::fs::read_to_string(&config).map_err(|e| e.to_string())?;
            std::fs::write(&config, text.replace("path = \"bench.db\"", storage)).map_err(|e| e.to_string())?;
            let relay = start_relay(&config)?;
            Ok((relay, config))
        })
        .collect()
}

/// Load over every instance at once, `conns` connections in all.
async fn spread_load(relays: &[(Process, PathBuf)], conns: usize, limit: Limit, counter: &Arc<AtomicU64>) -> Stats {
    let per = conns / relays.len();
    let limit = match limit {
        Limit::Count(n) => Limit::Count(n / relays.len() as u64),
        time => time,
    };
    let runs = relays.iter().map(|(relay, _)| {
        let (addr, counter) = (relay.addr, Arc::clone(counter));
        async move { load(addr, &format!("/hook/{TOKEN}?{QUERY}&n="), per, limit, counter).await }
    });
    let mut all = Stats::default();
    let mut elapsed = Duration::ZERO;
    for stats in futures_join(runs).await {
        elapsed = elapsed.max(stats.elapsed);
        all.absorb(stats);
        all.sent.clear();
    }
    all.elapsed = elapsed;
    all.latencies.sort_unstable();
    all
}

/// Awaits every future together.
async fn futures_join<F: std::future::Future<Output = Stats> + Send + 'static>(
    runs: impl Iterator<Item = F>,
) -> Vec<Stats> {
    let tasks: Vec<_> = runs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for task in tasks {
        if let Ok(stats) = task.await {
            out.push(stats);
        }
    }
    out
}

/// Waits until the receiver has every `n` in `from..to` that was
/// acknowledged (`count` of them); how long that took.
async fn delivered(receiver: &Receiver, from: u64, to: u64, count: u64) -> Result<Duration, String> {
    let started = Instant::now();
    while (receiver.count(from, to) as u64) < count {
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!("only {} of {count} delivered", receiver.count(from, to)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(started.elapsed())
}

/// Runs the comparison: SQLite, PostgreSQL with one instance, with two.
pub(super) async fn stores_phase(
    dir: &Path,
    receiver: &Receiver,
    receiver_addr: SocketAddr,
    admin: &str,
    opts: &Opts,
    counter: &Arc<AtomicU64>,
) -> Result<Vec<StoreRow>, String> {
    let mut rows = Vec::new();
    for (name, instances) in [("sqlite", 1), ("postgres x1", 1), ("postgres x2", 2)] {
        let folder = dir.join(name.replace(' ', "-"));
        let storage = |purpose: &str| -> Result<String, String> {
            Ok(match name {
                "sqlite" => format!("path = \"{purpose}.db\""),
                _ => format!(
                    "url = \"{}\"",
                    fresh_database(admin, &format!("bench_{purpose}_{instances}"))?
                ),
            })
        };
        // Acknowledgements with delivery on.
        let storage_line = tokio::task::block_in_place(|| storage("acks"))?;
        let relays = tokio::task::block_in_place(|| {
            start_instances(&folder.join("acks"), receiver_addr, &storage_line, instances, true)
        })?;
        let from = counter.load(Ordering::Relaxed);
        let before = readings(&relays);
        let acks = spread_load(&relays, 32, opts.limit(), counter).await;
        let to = counter.load(Ordering::Relaxed);
        let caught_up = delivered(receiver, from, to, acks.ok).await.ok();
        // Delivery included: the receiver has them all by now.
        let delivering = per_ack(&relays, before, acks.ok);
        drop(relays);
        // The drain of a held backlog.
        let storage_line = tokio::task::block_in_place(|| storage("drain"))?;
        let relays = tokio::task::block_in_place(|| {
            start_instances(&folder.join("drain"), receiver_addr, &storage_line, instances, false)
        })?;
        let from = counter.load(Ordering::Relaxed);
        let before = readings(&relays);
        let stored = spread_load(&relays, 32, Limit::Count(opts.backlog as u64), counter).await;
        let held = per_ack(&relays, before, stored.ok);
        let to = counter.load(Ordering::Relaxed);
        // Every instance takes the enabled config; one replay queues it all.
        for (relay, config) in relays.iter().skip(1) {
            let text = std::fs::read_to_string(config).map_err(|e| e.to_string())?;
            std::fs::write(config, text.replace("enabled = false", "enabled = true")).map_err(|e| e.to_string())?;
            Command::new("kill")
                .args(["-HUP", &relay.child.id().to_string()])
                .status()
                .map_err(|e| e.to_string())?;
        }
        let (first, config) = &relays[0];
        // From the replay's start: with two instances, the other one
        // delivers while the replay is still queueing.
        let replay_started = Instant::now();
        tokio::task::block_in_place(|| enable_and_replay(first, config))?;
        delivered(receiver, from, to, stored.ok).await?;
        let drain = replay_started.elapsed();
        drop(relays);
        rows.push(StoreRow {
            name,
            acks,
            caught_up,
            stored: stored.ok,
            held_rate: stored.rate(),
            drain,
            delivering,
            held,
        });
    }
    Ok(rows)
}

/// The comparison's table.
pub(super) fn print(rows: &[StoreRow]) {
    println!();
    println!(
        "{:<12} {:>10} {:>9} {:>9} {:>12} {:>9} {:>13} {:>10} {:>16} {:>16}",
        "store",
        "acks/s",
        "p50 ms",
        "p99 ms",
        "caught up s",
        "backlog",
        "drain/s",
        "held/s",
        "µs/ack del/held",
        "SQL/ack del/held"
    );
    for row in rows {
        let l = &row.acks.latencies;
        println!(
            "{:<12} {:>10.0} {:>9} {:>9} {:>12} {:>9} {:>13.0} {:>10.0} {:>16} {:>16}",
            row.name,
            row.acks.rate(),
            ms(percentile(l, 0.5)),
            ms(percentile(l, 0.99)),
            row.caught_up
                .map_or("-".to_string(), |d| format!("{:.2}", d.as_secs_f64())),
            row.stored,
            row.stored as f64 / row.drain.as_secs_f64(),
            row.held_rate,
            format!("{:.0} / {:.0}", row.delivering.0, row.held.0),
            format!("{:.2} / {:.2}", row.delivering.1, row.held.1),
        );
    }
}
