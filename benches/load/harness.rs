//! What every phase uses: the load generator and its figures, the
//! receiver, the relay as a process, and small helpers.

use super::*;

pub(super) const BIN: &str = env!("CARGO_BIN_EXE_hookrelay");
pub(super) const TOKEN: &str = "bench-token-0123456789abcdefgh";
/// `delivery.workers` in the benchmark's config (hookrelay's default).
pub(super) const RELAY_WORKERS: usize = 8;
/// Ten Klientiks-style fields, several Cyrillic, percent-encoded as senders do.
pub(super) const QUERY: &str = "event=appointment_paid&client_id=12345\
    &client_name=%D0%90%D0%BD%D0%BD%D0%B0+%D0%9F%D0%B5%D1%82%D1%80%D0%BE%D0%B2%D0%B0\
    &client_phone=8+912+345-67-89&utm_content=%D0%B2%D0%B5%D1%81%D0%BD%D0%B0-42\
    &appointment_id=777&appointment_total_cost=2500&appointment_date=2026-11-25\
    &appointment_time=14%3A30&appointment_executor=%D0%98%D1%80%D0%B8%D0%BD%D0%B0";

/// How long one load run lasts.
#[derive(Clone, Copy)]
pub(super) enum Limit {
    Time(Duration),
    Count(u64),
}

#[derive(Default)]
pub(super) struct Stats {
    pub(super) ok: u64,
    pub(super) failed: u64,
    pub(super) elapsed: Duration,
    /// Acknowledgement latencies in microseconds.
    pub(super) latencies: Vec<u64>,
    /// When each webhook number was sent.
    pub(super) sent: Vec<(u64, Instant)>,
    /// The slowest acknowledgement: microseconds, and when it was sent.
    pub(super) worst: Option<(u64, Instant)>,
}

impl Stats {
    /// Adds the counts and latencies of a run that continued this one.
    pub(super) fn absorb(&mut self, run: Stats) {
        self.ok += run.ok;
        self.failed += run.failed;
        self.elapsed += run.elapsed;
        self.latencies.extend(run.latencies);
        self.note_worst(run.worst);
    }

    pub(super) fn note_worst(&mut self, worst: Option<(u64, Instant)>) {
        if worst.is_some_and(|(w, _)| self.worst.is_none_or(|(mine, _)| w > mine)) {
            self.worst = worst;
        }
    }
}

impl Stats {
    pub(super) fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

pub(super) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub(super) fn ms(micros: u64) -> String {
    format!("{:.2}", micros as f64 / 1000.0)
}

/// Sends GETs to `path_prefix` + `n` over `conns` keep-alive connections.
pub(super) async fn load(
    addr: SocketAddr,
    path_prefix: &str,
    conns: usize,
    limit: Limit,
    counter: Arc<AtomicU64>,
) -> Stats {
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
pub(super) async fn serve<F>(handler: F) -> SocketAddr
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

pub(super) fn ok() -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from_static(b"ok")))
}

/// The receiver standing in for Plarin: answers 200 at once and notes when each `n` arrived.
#[derive(Clone, Default)]
pub(super) struct Receiver {
    pub(super) arrived: Arc<Mutex<HashMap<u64, Instant>>>,
}

impl Receiver {
    pub(super) fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
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

    pub(super) fn count(&self, from: u64, to: u64) -> usize {
        self.arrived
            .lock()
            .map_or(0, |a| a.keys().filter(|&&n| n >= from && n < to).count())
    }
}

/// A child process that is killed when dropped.
/// The largest size a database's WAL file reached while watched (polled
/// every 20 ms), for issue 15's "the WAL stays below 64 MB in every phase".
pub(super) struct WalWatch {
    pub(super) peak: Arc<AtomicU64>,
    pub(super) stop: Arc<std::sync::atomic::AtomicBool>,
}

impl WalWatch {
    /// Watches `db`'s `-wal` file until dropped.
    pub(super) fn start(db: &Path) -> WalWatch {
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
    pub(super) fn peak_mb(&self) -> f64 {
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
pub(super) fn wal_after_idle(db: &Path, wait: Duration) -> u64 {
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

pub(super) struct Process {
    pub(super) child: Child,
    pub(super) addr: SocketAddr,
    pub(super) log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    pub(super) fn status_kb(&self, key: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(key))
                    .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            })
            .unwrap_or(0)
    }

    /// The process's CPU time so far (user and system), in µs.
    pub(super) fn cpu_micros(&self) -> u64 {
        // SAFETY: sysconf only reads a constant of the system.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .ok()
            .and_then(|stat| {
                // Fields after the command's `)`: state is the 3rd, utime the 14th.
                let rest = stat.rsplit_once(')')?.1;
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let utime: u64 = fields.get(11)?.parse().ok()?;
                let stime: u64 = fields.get(12)?.parse().ok()?;
                Some((utime + stime) * 1_000_000 / ticks)
            })
            .unwrap_or(0)
    }

    /// `hookrelay_sql_statements_total` from the daemon's /metrics; 0 if
    /// it cannot be read.
    pub(super) fn statements(&self) -> u64 {
        let Some(admin) = self.admin_addr() else { return 0 };
        ureq::get(&format!("http://{admin}/metrics"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("hookrelay_sql_statements_total "))
                    .and_then(|n| n.trim().parse::<f64>().ok())
            })
            .map_or(0, |n| n as u64)
    }

    /// The admin listener's address, once the daemon has logged it.
    pub(super) fn admin_addr(&self) -> Option<SocketAddr> {
        const MARKER: &str = "and the web console on ";
        if !self.wait_log(MARKER) {
            return None;
        }
        let log = self.log.lock().ok()?;
        let line = log.iter().find(|line| line.contains(MARKER))?;
        line.split(MARKER).nth(1)?.trim().parse().ok()
    }

    pub(super) fn logged(&self, text: &str) -> bool {
        self.log.lock().is_ok_and(|l| l.iter().any(|line| line.contains(text)))
    }

    pub(super) fn wait_log(&self, text: &str) -> bool {
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

pub(super) fn relay_config(dir: &Path, receiver: SocketAddr, enabled: bool) -> PathBuf {
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

pub(super) fn start_relay(config: &Path) -> Result<Process, String> {
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

pub(super) fn wait_port(addr: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

pub(super) fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// Empties the kernel's page cache (needs root); returns whether it could.
pub(super) fn drop_page_cache() -> bool {
    Command::new("sync").status().is_ok_and(|s| s.success()) && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Keeps 32 connections sending webhooks to `addr`, a `slice` at a time,
/// until `done` says so (or fails); the slices' figures together, latencies
/// sorted.
pub(super) async fn load_until(
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

/// Runs `hookrelay` with `args`, counting (and dropping) what it prints:
/// lines printed, bytes, time, and its peak RSS in kB.
pub(super) fn measured_command(config: &Path, args: &[&str]) -> Result<(u64, u64, Duration, u64), String> {
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
