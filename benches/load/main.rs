//! hookrelay's load benchmark: one run, one machine, one table.
//!
//! `cargo bench --bench load [-- --duration 10 --levels 1,32,256 --backlog 100000]`
//! measures, at each concurrency level with keep-alive connections:
//! - the **ceiling**: a minimal hyper server that parses the query and answers
//!   200, with no storage (this same program, started as a separate process);
//! - the **storage floor**: the rows hookrelay writes for one webhook,
//!   inserted by a tight loop in fsync'd commits of 32 (`floor.rs`);
//! - **hookrelay** (the release binary) with a Klientiks-style GET of ten
//!   fields, several Cyrillic, and one action to a local receiver: acknowledged
//!   webhooks/s, acknowledgement latency, and end-to-end delivery latency;
//! - the **peer** `webhook` (adnanh/webhook, `apt-get install webhook`) running
//!   `/bin/true` per hook, if installed;
//! - the **backlog drain**: N operations stored while nothing is sent, then
//!   released at once: deliveries per second until the receiver has them all;
//! - hookrelay's idle and peak RSS and database bytes per operation;
//! - **history at scale**: `history --status failed --limit 50` and `show ID`
//!   on a database seeded with `--history N` operations (default 10 000 000);
//! - **the web console** on that database: each page, and field-value
//!   searches, timed as whole requests;
//! - **export and online backup**: `--archive N` (default 1 000 000)
//!   operations exported as JSON lines (peak RSS, beside an export of 1 %
//!   of them), then backed up with `hookrelay backup` while 32 connections
//!   send webhooks (the acknowledgement latencies meanwhile);
//! - **replay beside webhooks**: `--replay N` failed operations (default
//!   100 000) replayed with `hookrelay replay --status failed` while 32
//!   connections send webhooks: the longest acknowledgement meanwhile;
//! - **pruning under load**: a daemon started on `--prune N` operations past
//!   `keep_days` (default 1 000 000) prunes them while taking webhooks at 32
//!   connections: the acknowledgement latencies meanwhile.
//!
//! Run without `--bench` (as `cargo test` does) it is a smoke test: a few
//! hundred requests, no timing claims, still failing on any failed request.
//!
//! This file reads the options and runs the phases in order, printing the
//! table; each phase is a file of its own beside it (`ingest.rs`,
//! `drain.rs`, `history.rs`, `archive.rs`, `replay.rs`, `pruning.rs`,
//! `stores.rs` for PostgreSQL, `ceiling.rs` for the ceiling and the peer),
//! and `harness.rs` has what they share: the load generator, the
//! receiver, the relay as a process.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

mod archive;
mod ceiling;
mod drain;
mod floor;
mod harness;
mod history;
mod ingest;
mod pruning;
mod replay;
mod stores;

use archive::*;
use ceiling::*;
use drain::*;
use harness::*;
use history::*;
use ingest::*;
use pruning::*;

struct Opts {
    smoke: bool,
    duration: Duration,
    levels: Vec<usize>,
    backlog: usize,
    history: u64,
    prune: u64,
    /// Operations seeded for the export and online-backup runs.
    archive: u64,
    /// Failed operations replayed beside webhooks (benches/load/replay.rs).
    replay: u64,
    /// An admin URL of a PostgreSQL server for the stores' comparison.
    postgres: Option<String>,
}

impl Opts {
    /// How long each measured run lasts: a count in smoke mode, else a time.
    fn limit(&self) -> Limit {
        if self.smoke {
            Limit::Count(100)
        } else {
            Limit::Time(self.duration)
        }
    }
}

fn opts() -> Result<Opts, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let mut opts = Opts {
        smoke,
        duration: Duration::from_secs(10),
        levels: if smoke { vec![1, 8] } else { vec![1, 32, 256] },
        backlog: if smoke { 200 } else { 100_000 },
        history: if smoke { 2_000 } else { 10_000_000 },
        prune: if smoke { 1_000 } else { 1_000_000 },
        archive: if smoke { 1_000 } else { 1_000_000 },
        replay: if smoke { 1_000 } else { 100_000 },
        // The smoke run compares the stores when scripts/test started a server.
        postgres: if smoke {
            std::env::var("HOOKRELAY_TEST_POSTGRES").ok()
        } else {
            None
        },
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--duration" => {
                opts.duration = Duration::from_secs(value()?.parse().map_err(|e| format!("--duration: {e}"))?)
            }
            "--levels" => {
                opts.levels = value()?
                    .split(',')
                    .map(|l| l.parse().map_err(|e| format!("--levels: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--backlog" => opts.backlog = value()?.parse().map_err(|e| format!("--backlog: {e}"))?,
            "--history" => opts.history = value()?.parse().map_err(|e| format!("--history: {e}"))?,
            "--prune" => opts.prune = value()?.parse().map_err(|e| format!("--prune: {e}"))?,
            "--archive" => opts.archive = value()?.parse().map_err(|e| format!("--archive: {e}"))?,
            "--replay" => opts.replay = value()?.parse().map_err(|e| format!("--replay: {e}"))?,
            "--postgres" => opts.postgres = Some(value()?),
            "--bench" => {}
            other if other.starts_with("--") => return Err(format!("unknown option {other}")),
            _ => {} // test-harness filters when run by `cargo test`
        }
    }
    Ok(opts)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--ceiling") {
        let Some(addr) = args.get(2).and_then(|a| a.parse::<SocketAddr>().ok()) else {
            eprintln!("--ceiling needs an address");
            return ExitCode::from(2);
        };
        return run_ceiling(addr);
    }
    let opts = match opts() {
        Ok(opts) => opts,
        Err(err) => {
            eprintln!("load: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("load: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(opts)) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(failed) => {
            eprintln!("load: {failed} request(s) failed");
            ExitCode::from(1)
        }
        Err(err) => {
            eprintln!("load: {err}");
            ExitCode::from(1)
        }
    }
}

/// Runs everything; returns how many requests failed.
async fn run(opts: Opts) -> Result<u64, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let receiver = Receiver::default();
    let receiver_addr = {
        let receiver = receiver.clone();
        serve(move |request| receiver.handle(request)).await
    };
    let counter = Arc::new(AtomicU64::new(0));
    let mut rows = Vec::new();
    let mut failed = 0;

    // The ceiling.
    // Starting processes blocks: off the worker that runs the receiver's tasks.
    let ceiling = tokio::task::block_in_place(start_ceiling)?;
    rows.extend(
        plain_levels(
            "ceiling",
            ceiling.addr,
            &format!("/hook/{TOKEN}?{QUERY}&n="),
            &opts,
            &counter,
        )
        .await,
    );
    drop(ceiling);

    // The storage floor, on this disk and this schema.
    let floor = tokio::task::block_in_place(|| floor::storage_floors(dir.path(), receiver_addr, &opts))?;

    // hookrelay.
    let relay_dir = dir.path().join("relay");
    std::fs::create_dir_all(&relay_dir).map_err(|e| e.to_string())?;
    let relay = tokio::task::block_in_place(|| start_relay(&relay_config(&relay_dir, receiver_addr, true)))?;
    let levels_wal = WalWatch::start(&relay_dir.join("bench.db"));
    let idle_rss = relay.status_kb("VmRSS:");
    let mut costs = Vec::new();
    for &conns in &opts.levels {
        let (cpu_before, statements_before) = (relay.cpu_micros(), relay.statements());
        let stats = load(
            relay.addr,
            &format!("/hook/{TOKEN}?{QUERY}&n="),
            conns,
            opts.limit(),
            Arc::clone(&counter),
        )
        .await;
        // Every acknowledged webhook must reach the receiver.
        let deadline = Instant::now() + Duration::from_secs(120);
        let wanted: Vec<(u64, Instant)> = stats.sent.clone();
        let load_ended = Instant::now();
        let e2e = loop {
            let arrived = receiver.arrived.lock().map(|a| a.clone()).unwrap_or_default();
            let missing = wanted.iter().filter(|(n, _)| !arrived.contains_key(n)).count();
            if missing == 0 {
                let mut lat: Vec<u64> = wanted
                    .iter()
                    .filter_map(|(n, sent)| arrived.get(n).map(|at| at.duration_since(*sent).as_micros() as u64))
                    .collect();
                lat.sort_unstable();
                break Some((percentile(&lat, 0.5), percentile(&lat, 0.99)));
            }
            if Instant::now() > deadline {
                eprintln!("load: {missing} acknowledged webhooks never reached the receiver");
                failed += missing as u64;
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // Delivery included: the receiver has them all by now.
        costs.push(Cost::since(&relay, conns, (cpu_before, statements_before), stats.ok));
        rows.push(Row {
            name: "hookrelay",
            conns,
            stats,
            e2e,
            caught_up: Some(load_ended.elapsed()),
        });
    }
    let peak_rss = relay.status_kb("VmHWM:");
    let levels_wal_mb = levels_wal.peak_mb();
    let operations: u64 = rows.iter().filter(|r| r.name == "hookrelay").map(|r| r.stats.ok).sum();
    let db_bytes: u64 = ["bench.db", "bench.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(relay_dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    drop(relay);

    // The peer, if installed.
    let peer = tokio::task::block_in_place(|| start_peer(dir.path()));
    if let Some(peer) = &peer {
        rows.extend(
            plain_levels(
                "webhook",
                peer.addr,
                &format!("/hooks/hook?{QUERY}&n="),
                &opts,
                &counter,
            )
            .await,
        );
    }
    drop(peer);

    // The backlog: stored while nothing is sent (held), then released at once.
    let backlog_dir = dir.path().join("backlog");
    std::fs::create_dir_all(&backlog_dir).map_err(|e| e.to_string())?;
    let config = relay_config(&backlog_dir, receiver_addr, false);
    let relay = tokio::task::block_in_place(|| start_relay(&config))?;
    let backlog_wal = WalWatch::start(&backlog_dir.join("bench.db"));
    let first = counter.load(Ordering::Relaxed);
    let held_before = (relay.cpu_micros(), relay.statements());
    let stored = load(
        relay.addr,
        &format!("/hook/{TOKEN}?{QUERY}&n="),
        32,
        Limit::Count(opts.backlog as u64),
        Arc::clone(&counter),
    )
    .await;
    failed += stored.failed;
    let held = Cost::since(&relay, 32, held_before, stored.ok);
    let last = counter.load(Ordering::Relaxed);
    let replay_started = tokio::task::block_in_place(|| enable_and_replay(&relay, &config))?;
    let replay_took = replay_started.elapsed();
    let drain_started = Instant::now();
    let deadline = drain_started + Duration::from_secs(600);
    while receiver.count(first, last) < stored.ok as usize {
        if Instant::now() > deadline {
            return Err(format!(
                "backlog: only {} of {} delivered",
                receiver.count(first, last),
                stored.ok
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after_replay = drain_started.elapsed();
    // From the replay's start: deliveries begin while it still queues.
    let drain = replay_started.elapsed();
    let backlog_wal_mb = backlog_wal.peak_mb();
    // The same number of requests from as many plain threads as workers.
    let fan_out_rate = tokio::task::block_in_place(|| fan_out(receiver_addr, RELAY_WORKERS, stored.ok.max(1)));
    let idle_wal =
        tokio::task::block_in_place(|| wal_after_idle(&backlog_dir.join("bench.db"), Duration::from_secs(5)));
    drop(relay);
    let queued = queued_drain(
        &dir.path().join("queued"),
        &receiver,
        receiver_addr,
        opts.backlog as u64,
        &counter,
    )
    .await?;

    let stores = match &opts.postgres {
        Some(admin) => Some(stores::stores_phase(dir.path(), &receiver, receiver_addr, admin, &opts, &counter).await?),
        None => None,
    };
    let replayed = match opts.replay {
        0 => None,
        n => Some(replay::replay_under_load(dir.path(), receiver_addr, n, &opts, &counter).await?),
    };
    let pruning = match opts.prune {
        0 => None,
        n => Some(prune_under_load(dir.path(), receiver_addr, n, &opts, &counter).await?),
    };
    let archive = match opts.archive {
        0 => None,
        n => Some(archive_phase(dir.path(), n, &opts, &counter).await?),
    };
    // Last: writing gigabytes disturbs what runs after it.
    let history = match opts.history {
        0 => None,
        // Blocking work off the runtime's worker, whose queued tasks (the
        // receiver's) would otherwise wait for it.
        n => Some(tokio::task::block_in_place(|| {
            history_timing(dir.path(), n, !opts.smoke)
        })?),
    };
    if let Some(r) = &replayed {
        failed += r.stats.failed;
    }
    if let Some(p) = &pruning {
        failed += p.stats.failed;
    }
    if let Some(a) = &archive {
        failed += a.during_backup.failed;
    }

    // The table.
    println!();
    println!(
        "{:<10} {:>5} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "server", "conns", "req/s", "p50 ms", "p99 ms", "max ms", "e2e p50", "e2e p99", "failed"
    );
    for row in &rows {
        let l = &row.stats.latencies;
        let (e50, e99) = row.e2e.map_or(("-".into(), "-".into()), |(a, b)| (ms(a), ms(b)));
        println!(
            "{:<10} {:>5} {:>10.0} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
            row.name,
            row.conns,
            row.stats.rate(),
            ms(percentile(l, 0.5)),
            ms(percentile(l, 0.99)),
            ms(l.last().copied().unwrap_or(0)),
            e50,
            e99,
            row.stats.failed
        );
    }
    println!();
    let rate = |name: &str, conns: usize| {
        rows.iter()
            .find(|r| r.name == name && r.conns == conns)
            .map(|r| r.stats.rate())
    };
    for row in rows.iter().filter(|r| r.name == "hookrelay") {
        if let Some(after) = row.caught_up {
            println!(
                "{:>4} conns: every acknowledged webhook delivered {:.2} s after the load ended",
                row.conns,
                after.as_secs_f64()
            );
        }
    }
    for &conns in &opts.levels {
        let relay = rate("hookrelay", conns).unwrap_or(0.0);
        let vs = |name| rate(name, conns).map_or("-".to_string(), |r| format!("{:.2}", relay / r));
        println!(
            "{conns:>4} conns: hookrelay / ceiling = {}, hookrelay / webhook = {}",
            vs("ceiling"),
            vs("webhook")
        );
    }
    if peer_missing(&rows) {
        println!("(webhook not installed: apt-get install webhook)");
    }
    for cost in &costs {
        cost.print("delivering");
    }
    held.print("held");
    floor.print(rate("hookrelay", 32), stored.rate(), rate("ceiling", 32));
    println!();
    println!(
        "backlog: {} operations stored at {:.0}/s; replay queued them in {:.1} s, the last delivered {:.2} s after it; \
         drained {:.0} deliveries/s from the replay's start",
        stored.ok,
        stored.rate(),
        replay_took.as_secs_f64(),
        after_replay.as_secs_f64(),
        stored.ok as f64 / drain.as_secs_f64()
    );
    println!(
        "queued backlog: the daemon started on as many deliveries already queued sent them at {queued:.0}/s \
         (first arrival to last)"
    );
    println!(
        "fan-out ceiling: {RELAY_WORKERS} plain ureq threads sent as many to the same receiver at {fan_out_rate:.0}/s; \
         drain / fan-out = {:.2} from the replay's start, {:.2} queued",
        stored.ok as f64 / drain.as_secs_f64() / fan_out_rate,
        queued / fan_out_rate
    );
    println!(
        "WAL peak: {levels_wal_mb:.1} MB under the load levels, {backlog_wal_mb:.1} MB storing, replaying and draining the backlog; \
         {idle_wal} bytes after the drain once idle (up to 5 s)"
    );
    println!(
        "hookrelay RSS: idle {:.1} MB, peak {:.1} MB",
        idle_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0
    );
    if operations > 0 {
        println!(
            "database: {:.0} bytes per operation ({operations} operations)",
            db_bytes as f64 / operations as f64
        );
    }
    if let Some(rows) = &stores {
        stores::print(rows);
    }
    if let Some(h) = &history {
        println!(
            "history: {} operations seeded in {:.0} s ({:.0} bytes/op); each the whole command, {} warm runs:\n  \
             `history --status failed --limit 50`: {}\n  `show ID`: {}",
            h.operations,
            h.seeded.as_secs_f64(),
            h.bytes_per_op,
            TIMED_RUNS,
            h.history,
            h.show
        );
        println!("console on the same database, each page the whole request:");
        for (name, timing) in &h.pages {
            println!("  {name}: {timing}");
        }
    }
    if let Some(r) = &replayed {
        replay::print(r);
    }
    if let Some(p) = &pruning {
        let l = &p.stats.latencies;
        println!(
            "pruning: {} operations pruned in {:.1} s under 32 connections; meanwhile {} webhooks at {:.0}/s, \
             ack p50 {} ms, p99 {} ms, max {} ms (sent {:.1} s after the start); WAL peak {:.1} MB",
            p.pruned,
            p.took.as_secs_f64(),
            p.stats.ok,
            p.stats.rate(),
            ms(percentile(l, 0.5)),
            ms(percentile(l, 0.99)),
            ms(l.last().copied().unwrap_or(0)),
            p.worst_at.unwrap_or_default().as_secs_f64(),
            p.wal_peak_mb
        );
    }
    if let Some(a) = &archive {
        let l = &a.during_backup.latencies;
        println!(
            "export: {} operations as JSON lines ({:.0} MB) in {:.1} s, peak RSS {:.1} MB; {} operations: peak RSS {:.1} MB",
            a.exported,
            a.export_bytes as f64 / 1e6,
            a.export_took.as_secs_f64(),
            a.export_peak_kb as f64 / 1024.0,
            a.small_exported,
            a.small_peak_kb as f64 / 1024.0
        );
        println!(
            "backup: {:.0} MB copied in {:.1} s while 32 connections sent webhooks: {} at {:.0}/s, \
             ack p50 {} ms, p99 {} ms, max {} ms; WAL peak {:.1} MB",
            a.backup_bytes as f64 / 1e6,
            a.backup_took.as_secs_f64(),
            a.during_backup.ok,
            a.during_backup.rate(),
            ms(percentile(l, 0.5)),
            ms(percentile(l, 0.99)),
            ms(l.last().copied().unwrap_or(0)),
            a.wal_peak_mb
        );
    }
    failed += rows.iter().map(|r| r.stats.failed).sum::<u64>();
    // One line a test runner reads: each measured run, and the backlog, passed or failed.
    let store_runs = stores.as_ref().map_or(0, Vec::len);
    let failed_store_runs = stores
        .as_ref()
        .map_or(0, |s| s.iter().filter(|r| r.acks.failed > 0).count());
    failed += stores
        .as_ref()
        .map_or(0, |s| s.iter().map(|r| r.acks.failed).sum::<u64>());
    let failed_runs = rows.iter().filter(|r| r.stats.failed > 0).count()
        + failed_store_runs
        + usize::from(stored.failed > 0)
        + usize::from(replayed.as_ref().is_some_and(|r| r.stats.failed > 0))
        + usize::from(pruning.as_ref().is_some_and(|p| p.stats.failed > 0))
        + usize::from(archive.as_ref().is_some_and(|a| a.during_backup.failed > 0));
    let runs = rows.len()
        + store_runs
        + 1
        + usize::from(history.is_some())
        + usize::from(replayed.is_some())
        + usize::from(pruning.is_some())
        + usize::from(archive.is_some());
    println!("load: {} passed, {failed_runs} failed", runs - failed_runs);
    Ok(failed)
}
/// What acknowledging webhooks cost the daemon over one run: process CPU
/// time and SQL statements (`hookrelay_sql_statements_total`), each per
/// acknowledged webhook.
struct Cost {
    conns: usize,
    cpu_per_ack_us: f64,
    statements_per_ack: f64,
}

impl Cost {
    /// From the readings `before` (CPU µs, statements) to now, over `acks`.
    fn since(relay: &Process, conns: usize, before: (u64, u64), acks: u64) -> Cost {
        let acks = acks.max(1) as f64;
        Cost {
            conns,
            cpu_per_ack_us: relay.cpu_micros().saturating_sub(before.0) as f64 / acks,
            statements_per_ack: relay.statements().saturating_sub(before.1) as f64 / acks,
        }
    }

    fn print(&self, how: &str) {
        println!(
            "{:>4} conns, {how}: {:.1} µs CPU and {:.2} SQL statements per acknowledged webhook",
            self.conns, self.cpu_per_ack_us, self.statements_per_ack
        );
    }
}
