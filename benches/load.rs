//! hookrelay's load benchmark: one run, one machine, one table.
//!
//! `cargo bench --bench load [-- --duration 10 --levels 1,32,256 --backlog 100000]`
//! measures, at each concurrency level with keep-alive connections:
//! - the **ceiling**: a minimal hyper server that parses the query and answers
//!   200, with no storage (this same program, started as a separate process);
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

#[path = "load/replay.rs"]
mod replay;
#[path = "load/stores.rs"]
mod stores;

const BIN: &str = env!("CARGO_BIN_EXE_hookrelay");
const TOKEN: &str = "bench-token-0123456789abcdefgh";
/// `delivery.workers` in the benchmark's config (hookrelay's default).
const RELAY_WORKERS: usize = 8;
/// Ten Klientiks-style fields, several Cyrillic, percent-encoded as senders do.
const QUERY: &str = "event=appointment_paid&client_id=12345\
    &client_name=%D0%90%D0%BD%D0%BD%D0%B0+%D0%9F%D0%B5%D1%82%D1%80%D0%BE%D0%B2%D0%B0\
    &client_phone=8+912+345-67-89&utm_content=%D0%B2%D0%B5%D1%81%D0%BD%D0%B0-42\
    &appointment_id=777&appointment_total_cost=2500&appointment_date=2026-11-25\
    &appointment_time=14%3A30&appointment_executor=%D0%98%D1%80%D0%B8%D0%BD%D0%B0";

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

/// How long one load run lasts.
#[derive(Clone, Copy)]
enum Limit {
    Time(Duration),
    Count(u64),
}

#[derive(Default)]
struct Stats {
    ok: u64,
    failed: u64,
    elapsed: Duration,
    /// Acknowledgement latencies in microseconds.
    latencies: Vec<u64>,
    /// When each webhook number was sent.
    sent: Vec<(u64, Instant)>,
    /// The slowest acknowledgement: microseconds, and when it was sent.
    worst: Option<(u64, Instant)>,
}

impl Stats {
    /// Adds the counts and latencies of a run that continued this one.
    fn absorb(&mut self, run: Stats) {
        self.ok += run.ok;
        self.failed += run.failed;
        self.elapsed += run.elapsed;
        self.latencies.extend(run.latencies);
        self.note_worst(run.worst);
    }

    fn note_worst(&mut self, worst: Option<(u64, Instant)>) {
        if worst.is_some_and(|(w, _)| self.worst.is_none_or(|(mine, _)| w > mine)) {
            self.worst = worst;
        }
    }
}

impl Stats {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(micros: u64) -> String {
    format!("{:.2}", micros as f64 / 1000.0)
}

/// Sends GETs to `path_prefix` + `n` over `conns` keep-alive connections.
async fn load(addr: SocketAddr, path_prefix: &str, conns: usize, limit: Limit, counter: Arc<AtomicU64>) -> Stats {
    let start = Instant::now();
    let issued = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (prefix, counter, issued) = (path_prefix.to_string(), Arc::clone(&counter), Arc::clone(&issued));
        tasks.push(tokio::spawn(async move {
            let mut stats = Stats::default();
            let Ok(stream) = TcpStream::connect(addr).await else {
                stats.failed += 1;
                return stats;
            };
            let _ = stream.set_nodelay(true);
            let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
                stats.failed += 1;
                return stats;
            };
            tokio::spawn(conn);
            loop {
                match limit {
                    Limit::Time(d) if start.elapsed() >= d => break,
                    Limit::Count(n) if issued.fetch_add(1, Ordering::Relaxed) >= n => break,
                    _ => {}
                }
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let request = Request::get(format!("{prefix}{n}"))
                    .header("host", addr.to_string())
                    .body(Empty::<Bytes>::new());
                let Ok(request) = request else { break };
                let sent = Instant::now();
                match sender.send_request(request).await {
                    Ok(response) => {
                        let status = response.status();
                        let _ = response.into_body().collect().await;
                        if status.is_success() {
                            stats.ok += 1;
                            let took = sent.elapsed().as_micros() as u64;
                            stats.latencies.push(took);
                            stats.note_worst(Some((took, sent)));
                            stats.sent.push((n, sent));
                        } else {
                            stats.failed += 1;
                        }
                    }
                    Err(_) => {
                        stats.failed += 1;
                        break;
                    }
                }
            }
            stats
        }));
    }
    let mut all = Stats::default();
    for task in tasks {
        if let Ok(stats) = task.await {
            all.ok += stats.ok;
            all.failed += stats.failed;
            all.latencies.extend(stats.latencies);
            all.sent.extend(stats.sent);
            all.note_worst(stats.worst);
        }
    }
    all.elapsed = start.elapsed();
    all.latencies.sort_unstable();
    all
}

/// Serves `handler` on a loopback port; returns the address.
async fn serve<F>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            let service = hyper::service::service_fn(move |request| {
                let response = handler(request);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    addr
}

fn ok() -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from_static(b"ok")))
}

/// The no-storage ceiling: parse the query like a relay must, answer 200.
fn ceiling(request: Request<Incoming>) -> Response<Full<Bytes>> {
    let query = request.uri().query().unwrap_or("");
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    std::hint::black_box(fields);
    ok()
}

/// The receiver standing in for Plarin: answers 200 at once and notes when each `n` arrived.
#[derive(Clone, Default)]
struct Receiver {
    arrived: Arc<Mutex<HashMap<u64, Instant>>>,
}

impl Receiver {
    fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let query = request.uri().query().unwrap_or("");
        if let Some((_, n)) = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "n") {
            if let Ok(n) = n.parse::<u64>() {
                if let Ok(mut arrived) = self.arrived.lock() {
                    arrived.entry(n).or_insert_with(Instant::now);
                }
            }
        }
        ok()
    }

    fn count(&self, from: u64, to: u64) -> usize {
        self.arrived
            .lock()
            .map_or(0, |a| a.keys().filter(|&&n| n >= from && n < to).count())
    }
}

/// A child process that is killed when dropped.
/// The largest size a database's WAL file reached while watched (polled
/// every 20 ms), for issue 15's "the WAL stays below 64 MB in every phase".
struct WalWatch {
    peak: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl WalWatch {
    /// Watches `db`'s `-wal` file until dropped.
    fn start(db: &Path) -> WalWatch {
        let wal = PathBuf::from(format!("{}-wal", db.display()));
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, s) = (Arc::clone(&peak), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Ok(meta) = std::fs::metadata(&wal) {
                    p.fetch_max(meta.len(), Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        WalWatch { peak, stop }
    }

    /// The peak so far, in MB.
    fn peak_mb(&self) -> f64 {
        self.peak.load(Ordering::Relaxed) as f64 / 1e6
    }
}

impl Drop for WalWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The size of `db`'s WAL file once the daemon has been idle for up to
/// `wait`: it should be truncated to nothing a second after the last commit.
fn wal_after_idle(db: &Path, wait: Duration) -> u64 {
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    let deadline = Instant::now() + wait;
    loop {
        let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
        if size == 0 || Instant::now() > deadline {
            return size;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The fan-out ceiling for the backlog drain: `threads` plain ureq threads
/// (one shared agent, as hookrelay's workers share one) sending `count`
/// GETs like the relay's deliveries to the same receiver, nothing stored.
/// Requests per second.
fn fan_out(receiver: SocketAddr, threads: usize, count: u64) -> f64 {
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

struct Process {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    fn status_kb(&self, key: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(key))
                    .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            })
            .unwrap_or(0)
    }

    /// The admin listener's address, once the daemon has logged it.
    fn admin_addr(&self) -> Option<SocketAddr> {
        const MARKER: &str = "and the web console on ";
        if !self.wait_log(MARKER) {
            return None;
        }
        let log = self.log.lock().ok()?;
        let line = log.iter().find(|line| line.contains(MARKER))?;
        line.split(MARKER).nth(1)?.trim().parse().ok()
    }

    fn logged(&self, text: &str) -> bool {
        self.log.lock().is_ok_and(|l| l.iter().any(|line| line.contains(text)))
    }

    fn wait_log(&self, text: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.logged(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

fn relay_config(dir: &Path, receiver: SocketAddr, enabled: bool) -> PathBuf {
    let path = dir.join("bench.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         max_connections_per_client = 1024\n\
         [storage]\npath = \"bench.db\"\n\
         [delivery]\nworkers = {RELAY_WORKERS}\nretry = {{ attempts = 5, first_delay = \"1s\", max_delay = \"10s\" }}\n\
         [[processing]]\nname = \"bench\"\ntoken = \"{TOKEN}\"\nenabled = {enabled}\nrequire = [\"utm_content\"]\n\
         [[processing.action]]\nname = \"plarin\"\nurl = \"http://{receiver}/postback?token=secret\"\n\
         query = {{ ad_id = \"{{{{utm_content}}}}\", value = \"{{{{appointment_total_cost}}}}\", n = \"{{{{n}}}}\" }}\n"
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn start_relay(config: &Path) -> Result<Process, String> {
    let mut child = Command::new(BIN)
        .arg("-c")
        .arg(config)
        .arg("run")
        .env("RUST_LOG", "warn,hookrelay::daemon=info,hookrelay::retention=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {BIN}: {e}"))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening for webhooks on ").nth(1) {
                let _ = tx.send(rest.split(';').next().unwrap_or("").to_string());
            }
            if let Ok(mut lines) = lines.lock() {
                lines.push(line);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| "hookrelay did not start".to_string())?
        .parse()
        .map_err(|e| format!("bad address: {e}"))?;
    Ok(Process { child, addr, log })
}

fn wait_port(addr: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// The ceiling server as its own process, like hookrelay: this program with `--ceiling ADDR`.
fn start_ceiling() -> Result<Process, String> {
    let addr = free_addr();
    let child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args(["--ceiling", &addr.to_string()])
        .spawn()
        .map_err(|e| format!("starting the ceiling server: {e}"))?;
    let process = Process {
        child,
        addr,
        log: Arc::default(),
    };
    wait_port(addr)
        .then_some(process)
        .ok_or("the ceiling server did not start".into())
}

fn start_peer(dir: &Path) -> Option<Process> {
    let hooks = dir.join("hooks.json");
    std::fs::write(
        &hooks,
        r#"[{"id": "hook", "execute-command": "/bin/true", "response-message": "ok"}]"#,
    )
    .ok()?;
    let addr = free_addr();
    let child = Command::new("webhook")
        .arg("-hooks")
        .arg(&hooks)
        .args(["-ip", "127.0.0.1", "-port", &addr.port().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let process = Process {
        child,
        addr,
        log: Arc::default(),
    };
    wait_port(addr).then_some(process)
}

struct Row {
    name: &'static str,
    conns: usize,
    stats: Stats,
    e2e: Option<(u64, u64)>,
    /// How long after the load ended the receiver had every webhook (to
    /// the 50 ms the check polls at).
    caught_up: Option<Duration>,
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

fn run_ceiling(addr: SocketAddr) -> ExitCode {
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else {
        return ExitCode::from(1);
    };
    runtime.block_on(async move {
        let Ok(listener) = TcpListener::bind(addr).await else {
            return ExitCode::from(1);
        };
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let service =
                hyper::service::service_fn(
                    |request| async move { Ok::<_, std::convert::Infallible>(ceiling(request)) },
                );
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    })
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

    // hookrelay.
    let relay_dir = dir.path().join("relay");
    std::fs::create_dir_all(&relay_dir).map_err(|e| e.to_string())?;
    let relay = tokio::task::block_in_place(|| start_relay(&relay_config(&relay_dir, receiver_addr, true)))?;
    let levels_wal = WalWatch::start(&relay_dir.join("bench.db"));
    let idle_rss = relay.status_kb("VmRSS:");
    for &conns in &opts.levels {
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
    let stored = load(
        relay.addr,
        &format!("/hook/{TOKEN}?{QUERY}&n="),
        32,
        Limit::Count(opts.backlog as u64),
        Arc::clone(&counter),
    )
    .await;
    failed += stored.failed;
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
    let drain = drain_started.elapsed();
    let backlog_wal_mb = backlog_wal.peak_mb();
    // The same number of requests from as many plain threads as workers.
    let fan_out_rate = tokio::task::block_in_place(|| fan_out(receiver_addr, RELAY_WORKERS, stored.ok.max(1)));
    let idle_wal =
        tokio::task::block_in_place(|| wal_after_idle(&backlog_dir.join("bench.db"), Duration::from_secs(5)));
    drop(relay);

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
    println!();
    println!(
        "backlog: {} operations stored at {:.0}/s; replay queued them in {:.1} s; drained in {:.2} s = {:.0} deliveries/s",
        stored.ok,
        stored.rate(),
        replay_took.as_secs_f64(),
        drain.as_secs_f64(),
        stored.ok as f64 / drain.as_secs_f64()
    );
    println!(
        "fan-out ceiling: {RELAY_WORKERS} plain ureq threads sent as many to the same receiver at {fan_out_rate:.0}/s; \
         drain / fan-out = {:.2}",
        stored.ok as f64 / drain.as_secs_f64() / fan_out_rate
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

/// Enables the held processing, reloads the relay and replays what it held;
/// returns when the replay began.
fn enable_and_replay(relay: &Process, config: &Path) -> Result<Instant, String> {
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

/// Every load level against a server with nothing to check afterwards.
async fn plain_levels(
    name: &'static str,
    addr: SocketAddr,
    prefix: &str,
    opts: &Opts,
    counter: &Arc<AtomicU64>,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for &conns in &opts.levels {
        let stats = load(addr, prefix, conns, opts.limit(), Arc::clone(counter)).await;
        rows.push(Row {
            name,
            conns,
            stats,
            e2e: None,
            caught_up: None,
        });
    }
    rows
}

fn peer_missing(rows: &[Row]) -> bool {
    !rows.iter().any(|r| r.name == "webhook")
}

/// A folder `name` under `dir` with a config delivering to `receiver` and
/// a database of `operations` finished operations received from `days.0`
/// to `days.1` days ago: the folder and the config's path.
fn seeded(
    dir: &Path,
    name: &str,
    receiver: SocketAddr,
    operations: u64,
    days: (i64, i64),
) -> Result<(PathBuf, PathBuf), String> {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let config = relay_config(&dir, receiver, true);
    let now = now_ms();
    let plan = hookrelay::store::seed::Seed {
        operations,
        oldest: now - days.0 * DAY_MS,
        newest: now - days.1 * DAY_MS,
        failed_every: 100,
        query: QUERY.to_string(),
    };
    hookrelay::store::seed::seed(&dir.join("bench.db"), &plan).map_err(|e| format!("seeding: {e}"))?;
    Ok((dir, config))
}

/// How often each history command is timed.
const TIMED_RUNS: usize = 5;
const DAY_MS: i64 = 86_400_000;

struct HistoryTimes {
    operations: u64,
    seeded: Duration,
    bytes_per_op: f64,
    history: Timing,
    show: Timing,
    /// Console pages, each timed as a whole request on loopback.
    pages: Vec<(&'static str, Timing)>,
}

/// A command's run times, in microseconds.
struct Timing {
    /// The first run with an empty page cache, where it could be emptied.
    cold: Option<u64>,
    median: u64,
    max: u64,
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(cold) = self.cold {
            write!(f, "cold {} ms, ", ms(cold))?;
        }
        write!(f, "warm median {} ms, max {} ms", ms(self.median), ms(self.max))
    }
}

/// Empties the kernel's page cache (needs root); returns whether it could.
fn drop_page_cache() -> bool {
    Command::new("sync").status().is_ok_and(|s| s.success()) && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Seeds `operations` finished operations over the last 30 days into a fresh
/// database, then times the operator's commands on it.
/// With `cold`, first empties the page cache (not in the smoke test: no
/// timing claims there, and other work on the machine would pay for it).
fn history_timing(dir: &Path, operations: u64, cold: bool) -> Result<HistoryTimes, String> {
    let started = Instant::now();
    let (dir, config) = seeded(dir, "history", free_addr(), operations, (30, 0))?;
    let db = dir.join("bench.db");
    let seeded = started.elapsed();
    let bytes = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let run = |args: &[&str]| -> Result<u64, String> {
        let started = Instant::now();
        let out = Command::new(BIN)
            .arg("-c")
            .arg(&config)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() || out.stdout.is_empty() {
            return Err(format!("{args:?} failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(started.elapsed().as_micros() as u64)
    };
    // The first run after emptying the page cache (root only), then warm runs.
    let time = |args: &[&str]| -> Result<Timing, String> {
        let cold = (cold && drop_page_cache()).then(|| run(args)).transpose()?;
        let mut took = (0..TIMED_RUNS).map(|_| run(args)).collect::<Result<Vec<_>, _>>()?;
        took.sort_unstable();
        Ok(Timing {
            cold,
            median: percentile(&took, 0.5),
            max: took.last().copied().unwrap_or(0),
        })
    };
    let history = time(&["history", "--status", "failed", "--limit", "50"])?;
    let show = time(&["show", &(operations / 2).max(1).to_string()])?;
    let pages = console_timing(&dir, operations, cold)?;
    Ok(HistoryTimes {
        operations,
        seeded,
        bytes_per_op: bytes as f64 / operations.max(1) as f64,
        history,
        show,
        pages,
    })
}

const CONSOLE_TOKEN: &str = "bench-admin-token-0123456789ab";

/// Starts the daemon on the seeded database in `dir`, signs in to the
/// console and times its pages and searches, each a whole GET on loopback
/// (so an upper bound on the server's time).
fn console_timing(dir: &Path, operations: u64, cold: bool) -> Result<Vec<(&'static str, Timing)>, String> {
    let config = dir.join("console.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nadmin_token = \"{CONSOLE_TOKEN}\"\n\
             [storage]\npath = \"bench.db\"\n\
             [[processing]]\nname = \"bench\"\ntoken = \"{TOKEN}\"\nrequire = [\"utm_content\"]\n\
             [[processing.action]]\nname = \"plarin\"\nurl = \"http://127.0.0.1:9/postback\"\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let relay = start_relay(&config)?;
    let admin = relay.admin_addr().ok_or("the daemon never logged its admin address")?;
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent();
    let signed = agent
        .post(&format!("http://{admin}/login"))
        .content_type("application/x-www-form-urlencoded")
        .send(format!("token={CONSOLE_TOKEN}"))
        .map_err(|e| format!("signing in: {e}"))?;
    let cookie = signed
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or("signing in: no session cookie")?
        .to_string();
    let middle = (operations / 2).max(1) as i64;
    // The seed's fields: `n` and `client_phone` are unique per operation
    // (an appointment id, a phone); `utm_content` is the same in all.
    let fields = hookrelay::store::Reader::open(&dir.join("bench.db"))
        .and_then(|reader| reader.operation(middle))
        .map_err(|e| e.to_string())?
        .ok_or("no operation in the middle of the seed")?
        .fields;
    let field = |name: &str| fields.get(name).cloned().ok_or(format!("the seed has no `{name}`"));
    let n = field("n")?;
    let stored_phone = field("client_phone")?;
    // `79123456789` as a person types it: `8 (912) 345-67-89`.
    let digits = stored_phone.get(1..).ok_or("a short phone")?;
    let phone = format!(
        "8 ({}) {}-{}-{}",
        &digits[0..3],
        &digits[3..6],
        &digits[6..8],
        &digits[8..10]
    );
    let searched_phone = format!(
        "/operations?q={}",
        url::form_urlencoded::byte_serialize(phone.as_bytes()).collect::<String>()
    );
    let paths: Vec<(&'static str, String)> = vec![
        ("overview `/`", "/".into()),
        ("operations, newest 50", "/operations".into()),
        ("operations, failed", "/operations?status=failed".into()),
        (
            "operations, last 7 days of `bench`",
            "/operations?processing=bench&since=7d".into(),
        ),
        ("operation page", format!("/operations/{middle}")),
        ("fields page", "/fields/bench".into()),
        ("search: an appointment id (one match)", format!("/operations?q={n}")),
        ("search: a phone typed another way (one match)", searched_phone),
        (
            "search: a value every operation has",
            "/operations?q=%D0%B2%D0%B5%D1%81%D0%BD%D0%B0".into(),
        ),
        ("search: a value none has", "/operations?q=nothing-has-this".into()),
        (
            "search: a word's start every operation has (`весн*`)",
            "/operations?q=%D0%B2%D0%B5%D1%81%D0%BD*".into(),
        ),
    ];
    let get = |path: &str| -> Result<u64, String> {
        let started = Instant::now();
        let mut response = agent
            .get(&format!("http://{admin}{path}"))
            .header("Cookie", &cookie)
            .call()
            .map_err(|e| format!("{path}: {e}"))?;
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{path}: {e}"))?;
        let took = started.elapsed().as_micros() as u64;
        if response.status() != 200 {
            return Err(format!("{path}: {} {body}", response.status()));
        }
        Ok(took)
    };
    let mut timings = Vec::new();
    for (name, path) in &paths {
        let cold = (cold && drop_page_cache()).then(|| get(path)).transpose()?;
        let mut took = (0..TIMED_RUNS).map(|_| get(path)).collect::<Result<Vec<_>, _>>()?;
        took.sort_unstable();
        timings.push((
            *name,
            Timing {
                cold,
                median: percentile(&took, 0.5),
                max: took.last().copied().unwrap_or(0),
            },
        ));
    }
    Ok(timings)
}

/// Keeps 32 connections sending webhooks to `addr`, a `slice` at a time,
/// until `done` says so (or fails); the slices' figures together, latencies
/// sorted.
async fn load_until(
    addr: SocketAddr,
    slice: Limit,
    counter: &Arc<AtomicU64>,
    mut done: impl FnMut() -> Result<bool, String>,
) -> Result<Stats, String> {
    let mut all = Stats::default();
    loop {
        let stats = load(
            addr,
            &format!("/hook/{TOKEN}?{QUERY}&n="),
            32,
            slice,
            Arc::clone(counter),
        )
        .await;
        all.absorb(stats);
        if done()? {
            break;
        }
    }
    all.latencies.sort_unstable();
    Ok(all)
}

/// The export and online-backup runs.
struct Archive {
    exported: u64,
    export_bytes: u64,
    export_took: Duration,
    export_peak_kb: u64,
    small_exported: u64,
    small_peak_kb: u64,
    backup_bytes: u64,
    backup_took: Duration,
    during_backup: Stats,
    /// The daemon's WAL during the backup.
    wal_peak_mb: f64,
}

/// Runs `hookrelay` with `args`, counting (and dropping) what it prints:
/// lines printed, bytes, time, and its peak RSS in kB.
fn measured_command(config: &Path, args: &[&str]) -> Result<(u64, u64, Duration, u64), String> {
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .arg("-c")
        .arg(config)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let counting = std::thread::spawn(move || {
        let (mut lines, mut bytes) = (0u64, 0u64);
        let mut buffer = vec![0u8; 1 << 16];
        while let Ok(n) = std::io::Read::read(&mut stdout, &mut buffer) {
            if n == 0 {
                break;
            }
            bytes += n as u64;
            lines += buffer[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        }
        (lines, bytes)
    });
    // wait4 reports the child's own peak RSS, however short it lived
    // (sampling /proc misses a process that ends within the interval).
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if reaped != pid {
        return Err(format!("waiting for {args:?}: {}", std::io::Error::last_os_error()));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("{args:?} failed (status {status})"));
    }
    // Linux reports ru_maxrss in kilobytes.
    let peak = usage.ru_maxrss as u64;
    let (lines, bytes) = counting.join().map_err(|_| "the counting thread panicked")?;
    Ok((lines, bytes, started.elapsed(), peak))
}

/// Seeds `operations` over the last 30 days; exports them all, and about
/// 1 % of them, measuring the export's peak RSS; then starts the daemon on
/// them and takes an online backup while 32 connections send webhooks.
async fn archive_phase(dir: &Path, operations: u64, opts: &Opts, counter: &Arc<AtomicU64>) -> Result<Archive, String> {
    let (dir, config) = tokio::task::block_in_place(|| seeded(dir, "archive", free_addr(), operations, (30, 0)))?;
    let (exported, export_bytes, export_took, export_peak_kb) =
        tokio::task::block_in_place(|| measured_command(&config, &["export", "--since", "31d", "--format", "jsonl"]))?;
    // 7.2 hours of 30 days: 1 %.
    let (small_exported, _, _, small_peak_kb) =
        tokio::task::block_in_place(|| measured_command(&config, &["export", "--since", "432m"]))?;
    if exported != operations {
        return Err(format!("export: {exported} lines for {operations} operations"));
    }

    let relay = tokio::task::block_in_place(|| start_relay(&config))?;
    let wal = WalWatch::start(&dir.join("bench.db"));
    let copy = dir.join("backup.db");
    let backup = {
        let config = config.clone();
        let copy = copy.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let out = Command::new(BIN)
                .arg("-c")
                .arg(&config)
                .arg("backup")
                .arg(&copy)
                .output();
            (out, started.elapsed())
        })
    };
    let slice = if opts.smoke {
        Limit::Count(50)
    } else {
        Limit::Time(Duration::from_millis(500))
    };
    let all = load_until(relay.addr, slice, counter, || Ok(backup.is_finished())).await?;
    let (out, backup_took) = backup.join().map_err(|_| "the backup thread panicked")?;
    let out = out.map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("backup failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    drop(relay);
    Ok(Archive {
        exported,
        export_bytes,
        export_took,
        export_peak_kb,
        small_exported,
        small_peak_kb,
        backup_bytes: std::fs::metadata(&copy).map(|m| m.len()).unwrap_or(0),
        backup_took,
        during_backup: all,
        wal_peak_mb: wal.peak_mb(),
    })
}

struct Pruning {
    pruned: u64,
    took: Duration,
    stats: Stats,
    /// When the slowest acknowledgement's request was sent, after the daemon started.
    worst_at: Option<Duration>,
    wal_peak_mb: f64,
}

/// Starts hookrelay on `operations` operations older than `keep_days` (it
/// prunes at start) and loads it at 32 connections until pruning is done.
async fn prune_under_load(
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
