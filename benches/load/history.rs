//! History at scale and the web console, on a seeded database: the
//! command line's reads and each console page, cold and warm.

use super::*;

/// A folder `name` under `dir` with a config delivering to `receiver` and
/// a database of `operations` finished operations received from `days.0`
/// to `days.1` days ago: the folder and the config's path.
pub(super) fn seeded(
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
pub(super) const TIMED_RUNS: usize = 5;
pub(super) const DAY_MS: i64 = 86_400_000;

pub(super) struct HistoryTimes {
    pub(super) operations: u64,
    pub(super) seeded: Duration,
    pub(super) bytes_per_op: f64,
    pub(super) history: Timing,
    pub(super) show: Timing,
    /// Console pages, each timed as a whole request on loopback.
    pub(super) pages: Vec<(&'static str, Timing)>,
}

/// A command's run times, in microseconds.
pub(super) struct Timing {
    /// The first run with an empty page cache, where it could be emptied.
    pub(super) cold: Option<u64>,
    pub(super) median: u64,
    pub(super) max: u64,
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(cold) = self.cold {
            write!(f, "cold {} ms, ", ms(cold))?;
        }
        write!(f, "warm median {} ms, max {} ms", ms(self.median), ms(self.max))
    }
}

/// Seeds `operations` finished operations over the last 30 days into a fresh
/// database, then times the operator's commands on it.
/// With `cold`, first empties the page cache (not in the smoke test: no
/// timing claims there, and other work on the machine would pay for it).
pub(super) fn history_timing(dir: &Path, operations: u64, cold: bool) -> Result<HistoryTimes, String> {
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

pub(super) const CONSOLE_TOKEN: &str = "bench-admin-token-0123456789ab";

/// Starts the daemon on the seeded database in `dir`, signs in to the
/// console and times its pages and searches, each a whole GET on loopback
/// (so an upper bound on the server's time).
pub(super) fn console_timing(dir: &Path, operations: u64, cold: bool) -> Result<Vec<(&'static str, Timing)>, String> {
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
        (
            "operations, yesterday's paid visits, with totals",
            "/operations?processing=bench&event=appointment_paid&since=%D0%B2%D1%87%D0%B5%D1%80%D0%B0&until=%D0%B2%D1%87%D0%B5%D1%80%D0%B0"
                .into(),
        ),
        ("operations, failed with a 4xx", "/operations?outcome=4xx".into()),
        ("operations, error text `bad`", "/operations?error=bad".into()),
        ("operation page", format!("/operations/{middle}")),
        (
            "CSV export of one match",
            format!("/export.csv?q={n}"),
        ),
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
