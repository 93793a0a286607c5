//! Export and online backup (`--archive N`): an export's peak RSS, and
//! `hookrelay backup` while 32 connections send webhooks.

use super::*;

/// The export and online-backup runs.
pub(super) struct Archive {
    pub(super) exported: u64,
    pub(super) export_bytes: u64,
    pub(super) export_took: Duration,
    pub(super) export_peak_kb: u64,
    pub(super) small_exported: u64,
    pub(super) small_peak_kb: u64,
    pub(super) backup_bytes: u64,
    pub(super) backup_took: Duration,
    pub(super) during_backup: Stats,
    /// The daemon's WAL during the backup.
    pub(super) wal_peak_mb: f64,
}

/// Seeds `operations` over the last 30 days; exports them all, and about
/// 1 % of them, measuring the export's peak RSS; then starts the daemon on
/// them and takes an online backup while 32 connections send webhooks.
pub(super) async fn archive_phase(
    dir: &Path,
    operations: u64,
    opts: &Opts,
    counter: &Arc<AtomicU64>,
) -> Result<Archive, String> {
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
