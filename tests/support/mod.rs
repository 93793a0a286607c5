//! Test fixtures: the real binary on a free port with a temp directory, a
//! real HTTP receiver on loopback, and polling with a deadline.

#![allow(dead_code)]

pub mod amocrm;
pub mod browser;
pub mod metrica;
pub mod pg_cluster;
pub mod platforms;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::Value;

/// The compiled `hookrelay` binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_hookrelay");
/// Long enough for a slow CI machine, short enough to fail a hung test.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// Longer than a lease (30 s): on PostgreSQL a killed instance's claimed
/// deliveries go out again only once their lease lapses.
pub const TAKEOVER_DEADLINE: Duration = Duration::from_secs(90);
/// A token that passes validation.
pub const TOKEN: &str = "test-token-0123456789abcdefXYZ";

/// Polls `condition` until it holds or `DEADLINE` passes; returns whether it held.
pub fn wait_until(condition: impl FnMut() -> bool) -> bool {
    wait_for(DEADLINE, condition)
}

/// [`wait_until`] with a deadline of its own.
pub fn wait_for(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

/// Webhooks acknowledged so far, by their `n`.
pub type Acknowledged = Arc<Mutex<std::collections::HashSet<String>>>;

/// `threads` senders on `relay`, each sending `n = TAG-THREAD-I` back to
/// back until `stop` is set or the relay stops answering 2xx (killed).
pub fn senders(
    relay: &Relay,
    tag: &str,
    threads: usize,
    acknowledged: &Acknowledged,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads)
        .map(|thread| {
            let url = relay.url(&format!("/hook/{TOKEN}"));
            let (acknowledged, stop, tag) = (Arc::clone(acknowledged), Arc::clone(stop), tag.to_string());
            std::thread::spawn(move || {
                let agent = client();
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let n = format!("{tag}-{thread}-{i}");
                    match agent.get(&format!("{url}?n={n}")).call() {
                        Ok(r) if r.status().is_success() => {
                            acknowledged.lock().unwrap().insert(n);
                        }
                        // After the kill: connection refused or reset.
                        _ => break,
                    }
                }
            })
        })
        .collect()
}

/// How often each `n` reached `receiver`.
pub fn arrivals(receiver: &Receiver) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    for n in receiver.requests().iter().filter_map(|r| r.param("n")) {
        *counts.entry(n).or_insert(0) += 1;
    }
    counts
}

/// Gives up on a test that needs what this machine lacks (root, a tool),
/// saying so; under CI (`CI` set) that is a failure instead.
pub fn skip_outside_ci(reason: &str) {
    assert!(std::env::var_os("CI").is_none(), "CI must run this test: {reason}");
    eprintln!("skipped: {reason}");
}

/// A running `hookrelay run` with its own directory and config.
pub struct Relay {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub addr: SocketAddr,
    /// The admin listener (/healthz, /metrics).
    pub admin: SocketAddr,
    child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Relay {
    /// Writes `processings` (TOML) under a server section on port 0 and starts the binary.
    pub fn start(processings: &str) -> Relay {
        Relay::start_in(tempfile::tempdir().unwrap(), &config_text(processings))
    }

    /// Writes the whole config `text` into `dir` and starts the binary.
    pub fn start_in(dir: tempfile::TempDir, text: &str) -> Relay {
        let config = dir.path().join("config.toml");
        std::fs::write(&config, text).unwrap();
        let started = spawn(&config);
        Relay {
            dir,
            config,
            addr: started.addr,
            admin: started.admin,
            child: started.child,
            log: started.log,
        }
    }

    /// Replaces the config file's processings (the daemon sees it on SIGHUP).
    pub fn rewrite(&self, processings: &str) {
        std::fs::write(&self.config, config_text(processings)).unwrap();
    }

    /// Sends a signal such as `HUP` to the daemon.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").arg(format!("-{name}")).arg(&pid).status().unwrap();
        assert!(status.success());
    }

    /// Waits until the daemon logged a line containing `text`.
    pub fn wait_log(&self, text: &str) {
        let found = wait_until(|| self.log_text().contains(text));
        assert!(found, "never logged {text:?}:\n{}", self.log_text());
    }

    /// The base URL of the webhook listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Runs a CLI subcommand against this relay's config.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs a CLI subcommand with `input` on its stdin (answers to prompts).
    pub fn cli_with_input(&self, args: &[&str], input: &str) -> Output {
        let mut child = Command::new(BIN)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// `show ID --json`, parsed.
    pub fn show(&self, id: i64) -> Value {
        let out = self.cli(&["show", &id.to_string(), "--json"]);
        assert!(
            out.status.success(),
            "show failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Polls `show ID` until the operation has `status`; returns the last view.
    pub fn wait_status(&self, id: i64, status: &str) -> Value {
        let mut last = Value::Null;
        let reached = wait_until(|| {
            last = self.show(id);
            last["status"] == status
        });
        assert!(reached, "operation {id} never became {status}: {last:#}");
        last
    }

    /// Kills the daemon with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the daemon again on the same config and database (on a new port).
    pub fn restart(&mut self) {
        let started = spawn(&self.config);
        self.child = started.child;
        self.addr = started.addr;
        self.admin = started.admin;
        self.log = started.log;
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        self.child.wait().unwrap()
    }

    /// Everything the daemon logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether this run is against PostgreSQL (`HOOKRELAY_E2E_STORE=postgres`,
/// which `scripts/test` sets for its second run of this suite).
pub fn on_postgres() -> bool {
    std::env::var("HOOKRELAY_E2E_STORE").is_ok_and(|store| store == "postgres")
}

/// Whether a test of what only SQLite has (its file, lock, backup, search
/// index) should stop here: true on PostgreSQL, saying so.
pub fn sqlite_only(what: &str) -> bool {
    if on_postgres() {
        eprintln!("skipped on PostgreSQL: {what} is SQLite's");
    }
    on_postgres()
}

/// A database of this test's own on the cluster `scripts/test` started,
/// dropped when the test's thread ends.
struct TestDatabase {
    admin: String,
    name: String,
    url: String,
}

impl TestDatabase {
    fn create() -> TestDatabase {
        let admin = std::env::var("HOOKRELAY_TEST_POSTGRES")
            .expect("HOOKRELAY_TEST_POSTGRES: run the PostgreSQL suite with scripts/test");
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).unwrap();
        let name = format!("e2e_{}", random.iter().map(|b| format!("{b:02x}")).collect::<String>());
        let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        client.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let mut url = url::Url::parse(&admin).unwrap();
        url.set_path(&name);
        TestDatabase {
            admin,
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for TestDatabase {
    /// On a thread of its own: this runs as the test's thread ends, when
    /// the client's runtime can no longer start on it.
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let dropping = std::thread::spawn(move || {
            if let Ok(mut client) = postgres::Client::connect(&admin, postgres::NoTls) {
                let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        });
        let _ = dropping.join();
    }
}

thread_local! {
    /// Every relay a test starts shares one database, as instances do.
    static DATABASE: std::cell::OnceCell<TestDatabase> = const { std::cell::OnceCell::new() };
}

/// The test's `[storage]` location: `path = "relay.db"` beside the config,
/// or on PostgreSQL the URL of the test's own database.
pub fn storage_line() -> String {
    if on_postgres() {
        DATABASE.with(|db| format!("url = \"{}\"", db.get_or_init(TestDatabase::create).url))
    } else {
        "path = \"relay.db\"".to_string()
    }
}

/// The URL of this test's own PostgreSQL database, whichever store the
/// suite runs on (for `migrate-store`); None, saying so, without a cluster.
pub fn postgres_database() -> Option<String> {
    if std::env::var_os("HOOKRELAY_TEST_POSTGRES").is_none() {
        skip_outside_ci("HOOKRELAY_TEST_POSTGRES is not set: run the tests with scripts/test");
        return None;
    }
    Some(DATABASE.with(|db| db.get_or_init(TestDatabase::create).url.clone()))
}

/// Where [`storage_line`] keeps the data, for a test that opens the store
/// itself: the test's PostgreSQL database, or `file` in `dir`.
pub fn storage_location(dir: &std::path::Path, file: &str) -> hookrelay::store::Location {
    if on_postgres() {
        DATABASE.with(|db| hookrelay::store::Location::Postgres(db.get_or_init(TestDatabase::create).url.clone()))
    } else {
        hookrelay::store::Location::File(dir.join(file))
    }
}

/// A test config: loopback on port 0, a small body limit, fast retries,
/// and no circuit breaker unless a `[[receiver]]` sets one (tests/e2e/receivers.rs),
/// so the retry budget is tested on its own.
pub fn config_text(processings: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nmax_body_bytes = 1024\n\n[storage]\n{}\n\n\
         [delivery]\nworkers = 4\ntimeout = \"5s\"\nretry = {{ attempts = 5, first_delay = \"50ms\", max_delay = \"200ms\" }}\n\
         breaker = {{ failures = 0 }}\n\n{processings}",
        storage_line()
    )
}

struct Started {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

fn spawn(config: &std::path::Path) -> Started {
    let mut child = Command::new(BIN)
        .arg("-c")
        .arg(config)
        .arg("run")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = Arc::clone(&log);
    // Keeps draining stderr so the daemon never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            for marker in [
                "listening for webhooks on ",
                "admin endpoints (/healthz, /metrics) and the web console on ",
            ] {
                if let Some(rest) = line.split(marker).nth(1) {
                    let addr: String = rest.split(';').next().unwrap_or("").to_string();
                    let _ = tx.send((marker, addr));
                }
            }
            lines.lock().unwrap().push(line);
        }
    });
    let mut addresses = std::collections::HashMap::new();
    while addresses.len() < 2 {
        match rx.recv_timeout(DEADLINE) {
            Ok((marker, addr)) => addresses.insert(marker, addr.parse::<SocketAddr>().unwrap()),
            Err(_) => panic!("relay did not start: {}", log.lock().unwrap().join("\n")),
        };
    }
    Started {
        child,
        addr: addresses["listening for webhooks on "],
        admin: addresses["admin endpoints (/healthz, /metrics) and the web console on "],
        log,
    }
}

/// A request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When it arrived (its head was read).
    pub at: Instant,
}

impl Received {
    /// The decoded query parameters.
    pub fn query(&self) -> Vec<(String, String)> {
        let url = url::Url::parse(&format!("http://x{}", self.target)).unwrap();
        url.query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// One decoded query parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        self.query().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// One header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One scripted answer: status, body and extra headers.
type Answer = (u16, String, Vec<(String, String)>);
type Log = Arc<Mutex<Vec<Received>>>;
type Script = Arc<Mutex<VecDeque<Answer>>>;
/// Whether answers may go out (see [`Receiver::hold`]).
type Gate = tokio::sync::watch::Receiver<bool>;

/// A real HTTP server on loopback standing in for Plarin. It answers from a
/// script of (status, body, headers), then 200 "ok" once the script is used up.
pub struct Receiver {
    pub addr: SocketAddr,
    requests: Log,
    script: Script,
    gate: tokio::sync::watch::Sender<bool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Serves HTTP/1 on a loopback `port` (0: any free one) on a thread of its
/// own, each request through `handle`, until the sender returned is used
/// or dropped.
pub fn serve<F, Fut>(port: u16, handle: F) -> (SocketAddr, tokio::sync::oneshot::Sender<()>)
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<hyper::Response<Full<Bytes>>, std::convert::Infallible>> + Send + 'static,
{
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let serve = async {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let service = hyper::service::service_fn(handle.clone());
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                    );
                }
            };
            tokio::select! {
                () = serve => {}
                _ = stopped => {}
            }
        });
    });
    (addr, stop)
}

/// A request as a fake server records it, its body read whole.
pub async fn read_request(request: hyper::Request<hyper::body::Incoming>) -> Received {
    let at = Instant::now();
    let method = request.method().to_string();
    let target = request.uri().to_string();
    let headers = request
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    Received {
        method,
        target,
        headers,
        body,
        at,
    }
}

/// Records one request and answers it from the script.
async fn respond(
    request: hyper::Request<hyper::body::Incoming>,
    log: Log,
    script: Script,
    mut gate: Gate,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let received = read_request(request).await;
    let (status, text, extra) = script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or((200, "ok".into(), Vec::new()));
    log.lock().unwrap().push(received);
    let _ = gate.wait_for(|open| *open).await;
    let mut response = hyper::Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    for (name, value) in extra {
        let name = hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap();
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    Ok(response)
}

impl Receiver {
    /// Starts answering on a free loopback port.
    pub fn start() -> Receiver {
        Receiver::start_on(0)
    }

    /// Starts answering on `port` (0: any free one).
    pub fn start_on(port: u16) -> Receiver {
        let requests: Log = Arc::default();
        let script: Script = Arc::default();
        let (gate, open) = tokio::sync::watch::channel(true);
        let (log, scr) = (Arc::clone(&requests), Arc::clone(&script));
        let (addr, stop) = serve(port, move |request| {
            respond(request, Arc::clone(&log), Arc::clone(&scr), open.clone())
        });
        Receiver {
            addr,
            requests,
            script,
            gate,
            stop: Some(stop),
        }
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Queues answers for the next requests.
    pub fn script(&self, answers: &[(u16, &str)]) {
        let mut script = self.script.lock().unwrap();
        script.extend(answers.iter().map(|(s, b)| (*s, b.to_string(), Vec::new())));
    }

    /// Drops the answers still scripted: from now on every request gets 200 "ok".
    pub fn clear_script(&self) {
        self.script.lock().unwrap().clear();
    }

    /// Queues one answer with extra headers.
    pub fn script_with_headers(&self, status: u16, body: &str, headers: &[(&str, &str)]) {
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.script
            .lock()
            .unwrap()
            .push_back((status, body.to_string(), headers));
    }

    /// Keeps answers back: requests are recorded, then wait for [`Receiver::release`].
    pub fn hold(&self) {
        self.gate.send_replace(false);
    }

    /// Lets held and later answers go out.
    pub fn release(&self) {
        self.gate.send_replace(true);
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived; returns them all.
    pub fn wait_for(&self, n: usize) -> Vec<Received> {
        let arrived = wait_until(|| self.requests.lock().unwrap().len() >= n);
        let got = self.requests();
        assert!(arrived, "receiver got {} requests, expected {n}: {got:#?}", got.len());
        got
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// An HTTP client that reports every status instead of erroring on 4xx/5xx.
pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent()
}

/// GETs `url`; returns status, the operation id header if any, and the body.
pub fn get(url: &str) -> (u16, Option<i64>, String) {
    let response = client().get(url).call().unwrap();
    answer(response)
}

/// POSTs `body` with `content_type`; returns like [`get`].
pub fn post(url: &str, content_type: &str, body: &[u8]) -> (u16, Option<i64>, String) {
    let response = client()
        .post(url)
        .header("Content-Type", content_type)
        .send(body)
        .unwrap();
    answer(response)
}

fn answer(mut response: ureq::http::Response<ureq::Body>) -> (u16, Option<i64>, String) {
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("x-hookrelay-operation")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (status, id, body)
}

/// A processing with one GET action to `url`, with `extra` TOML for the action.
pub fn processing(name: &str, url: &str, extra: &str) -> String {
    processing_with_token(name, TOKEN, url, extra)
}

/// Like [`processing`], with its own token.
pub fn processing_with_token(name: &str, token: &str, url: &str, extra: &str) -> String {
    format!(
        "[[processing]]\nname = \"{name}\"\ntoken = \"{token}\"\n\n[[processing.action]]\nname = \"plarin\"\nmethod = \"GET\"\nurl = \"{url}\"\n{extra}\n"
    )
}

/// Asserts that no more than five of `arrivals` fall within any second (a
/// `rate = "5/s"` receiver's view). 30 ms are allowed for the hand-over
/// from the scheduler to a worker and loopback, which can bring two
/// requests closer than they were started.
pub fn assert_at_most_5_a_second(arrivals: &[Instant]) {
    for (i, six) in arrivals.windows(6).enumerate() {
        let span = six[5] - six[0];
        assert!(
            span >= Duration::from_millis(970),
            "requests {i}..{} came within {span:?}",
            i + 5
        );
    }
}

/// A `[notify]` section emailing ops@example.ru through the SMTP server on `port`.
pub fn notify_email(port: u16, min_interval: &str) -> String {
    format!(
        "[notify]\nemail_to = [\"ops@example.ru\"]\nemail_from = \"hookrelay@example.ru\"\n\
         smtp = \"smtp://127.0.0.1:{port}\"\nmin_interval = \"{min_interval}\"\n\n"
    )
}

/// A free loopback port (bound and released: only for servers that must be
/// started on a known port, such as the SMTP server started late).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real SMTP server (Python's aiosmtpd, installed by `.ci/run`) writing
/// every message it accepts into a maildir.
pub struct SmtpServer {
    pub port: u16,
    child: Child,
    maildir: tempfile::TempDir,
}

impl SmtpServer {
    /// Starts aiosmtpd on `port` and waits until it accepts connections.
    pub fn start_on(port: u16) -> SmtpServer {
        let maildir = tempfile::tempdir().unwrap();
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path().join("box"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with aiosmtpd (pip install aiosmtpd)");
        let up = wait_until(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        assert!(up, "aiosmtpd did not start on port {port}");
        SmtpServer { port, child, maildir }
    }

    /// The messages received so far, oldest first, as text.
    pub fn messages(&self) -> Vec<String> {
        let dir = self.maildir.path().join("box").join("new");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        files
            .iter()
            .map(|p| decode_mail(&std::fs::read_to_string(p).unwrap_or_default()))
            .collect()
    }

    /// Waits until at least `n` messages arrived; returns them.
    pub fn wait_for(&self, n: usize) -> Vec<String> {
        let arrived = wait_until(|| self.messages().len() >= n);
        assert!(
            arrived,
            "SMTP server got {} messages, expected {n}",
            self.messages().len()
        );
        self.messages()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Headers as they are, the body decoded if it is base64 (lettre's choice for UTF-8 text).
fn decode_mail(raw: &str) -> String {
    use base64::Engine;
    let Some((headers, body)) = raw.split_once("\n\n") else {
        return raw.to_string();
    };
    if !headers
        .to_ascii_lowercase()
        .contains("content-transfer-encoding: base64")
    {
        return raw.to_string();
    }
    let compact: String = body.split_whitespace().collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .unwrap_or_default();
    format!("{headers}\n\n{}", String::from_utf8_lossy(&decoded))
}

/// GETs `path` from the relay's admin listener: status and body.
pub fn admin_get(relay: &Relay, path: &str, token: Option<&str>) -> (u16, String) {
    admin_get_as(relay, path, token, None)
}

/// Like [`admin_get`], with an `Accept` header.
pub fn admin_get_as(relay: &Relay, path: &str, token: Option<&str>, accept: Option<&str>) -> (u16, String) {
    let mut request = client().get(&format!("http://{}{path}", relay.admin));
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    let mut response = request.call().unwrap();
    (
        response.status().as_u16(),
        response.body_mut().read_to_string().unwrap(),
    )
}

/// The value of the first sample named `name` with `labels`, 0 if none.
pub fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v)))
        .map_or(0.0, |(_, _, v)| *v)
}

/// One metric sample: name, labels, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// The media type a scraper sends to ask for OpenMetrics.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0";

/// Samples of an OpenMetrics exposition, checked by Python's prometheus_client
/// parser: `(name, labels, value)` for each.
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    parse_exposition(text, "prometheus_client.openmetrics.parser")
}

/// Samples of a Prometheus text exposition (format 0.0.4), checked by
/// prometheus_client's parser for that format.
pub fn parse_prometheus_text(text: &str) -> Vec<Sample> {
    parse_exposition(text, "prometheus_client.parser")
}

/// promtool, which scripts/test unpacks; `None` (after saying why, and
/// failing under CI) when it is not there.
pub fn promtool() -> Option<PathBuf> {
    let path = std::env::var_os("HOOKRELAY_PROMTOOL")
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .or_else(|| {
            let found = Command::new("promtool").arg("--version").output().is_ok();
            found.then(|| PathBuf::from("promtool"))
        });
    if path.is_none() {
        skip_outside_ci("promtool is not installed (scripts/test unpacks it into target/tools)");
    }
    path
}

fn parse_exposition(text: &str, module: &str) -> Vec<Sample> {
    use std::io::Write;
    let script = format!(
        "import sys, json\n\
         from {module} import text_string_to_metric_families as parse\n\
         print(json.dumps([[s.name, sorted(s.labels.items()), s.value] for f in parse(sys.stdin.read()) for s in f.samples]))"
    );
    let mut child = Command::new("python3")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 with prometheus_client (pip install prometheus_client)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the exposition does not parse: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Signs in to the relay's console with `token`; the session cookie (`name=value`).
pub fn console_session(relay: &Relay, token: &str) -> String {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent();
    let response = agent
        .post(&format!("http://{}/login", relay.admin))
        .content_type("application/x-www-form-urlencoded")
        .send(format!("token={token}"))
        .unwrap();
    assert_eq!(response.status(), 303, "signed in");
    let cookie = response.headers().get("set-cookie").unwrap().to_str().unwrap();
    cookie.split(';').next().unwrap().to_string()
}

/// GETs a console page in English with the session `cookie`: status and body.
pub fn console_get(relay: &Relay, cookie: &str, path: &str) -> (u16, String) {
    let mut response = client()
        .get(&format!("http://{}{path}", relay.admin))
        .header("Cookie", cookie)
        .header("Accept-Language", "en")
        .call()
        .unwrap();
    (
        response.status().as_u16(),
        response.body_mut().read_to_string().unwrap(),
    )
}
