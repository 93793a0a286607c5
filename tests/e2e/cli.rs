//! The command line: exit codes, one-line errors, `check`, `token`, `history`.

use std::process::Command;

use crate::support::{get, processing, Receiver, Relay, BIN, TOKEN};

/// A broken config exits 2 with one line naming the file, line and column.
#[test]
fn check_reports_a_broken_config_in_one_line_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:8080\"\nlistn = 1\n").unwrap();
    for command in ["check", "run"] {
        let out = Command::new(BIN).arg("-c").arg(&path).arg(command).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{command}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("bad.toml:3:1: unknown field `listn`"), "{stderr}");
    }
    let missing = Command::new(BIN)
        .args(["-c", "/nonexistent/hookrelay.toml", "check"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    // It says how to name another file.
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("no config at /nonexistent/hookrelay.toml: name one with -c PATH or the HOOKRELAY_CONFIG"),
        "{stderr}"
    );
}

/// Regression: `check` on an empty file exited 0; an empty file and one
/// without processings are refused by `check` and `run` alike.
#[test]
fn check_refuses_an_empty_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.toml");
    for (text, reason) in [
        ("", "the file is empty"),
        (
            "[server]\nlisten = \"127.0.0.1:0\"\n",
            "no [[processing]] is configured",
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        for command in ["check", "run"] {
            let out = Command::new(BIN).arg("-c").arg(&path).arg(command).output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{command}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains(reason), "{command}: {stderr}");
        }
    }
}

/// HOOKRELAY_CONFIG points at the config when -c is not given.
#[test]
fn config_from_environment() {
    let receiver = Receiver::start();
    let relay = Relay::start(&processing("from-env", &receiver.url("/pb"), ""));
    let out = Command::new(BIN)
        .arg("check")
        .env("HOOKRELAY_CONFIG", &relay.config)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("processing from-env"), "{stdout}");
    assert!(stdout.contains(&format!("/hook/{TOKEN}")), "{stdout}");
}

/// `token` prints a fresh URL-safe token of at least 128 bits each time.
#[test]
fn token_is_random_and_url_safe() {
    let one = Command::new(BIN).arg("token").output().unwrap();
    let two = Command::new(BIN).arg("token").output().unwrap();
    let (one, two) = (
        String::from_utf8(one.stdout).unwrap(),
        String::from_utf8(two.stdout).unwrap(),
    );
    let (one, two) = (one.trim(), two.trim());
    assert!(one.len() >= 22);
    assert!(
        one.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{one}"
    );
    assert_ne!(one, two);
}

/// `history` filters by processing and status, and `--json` has the stable keys.
#[test]
fn history_filters_and_json_shape() {
    let receiver = Receiver::start();
    receiver.script(&[(400, "no")]);
    let relay = Relay::start(&processing("p", &receiver.url("/pb"), ""));
    let (_, first, _) = get(&relay.url(&format!("/hook/{TOKEN}?n=1")));
    relay.wait_status(first.unwrap(), "failed");
    let (_, second, _) = get(&relay.url(&format!("/hook/{TOKEN}?n=2")));
    relay.wait_status(second.unwrap(), "delivered");

    let list = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut all = vec!["history", "--json"];
        all.extend_from_slice(args);
        let out = relay.cli(&all);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let all = list(&[]);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["id"], second.unwrap(), "newest first");
    for key in ["id", "processing", "received_at", "status"] {
        assert!(!all[0][key].is_null(), "{key}");
    }
    assert!(humantime::parse_rfc3339(all[0]["received_at"].as_str().unwrap()).is_ok());
    let failed = list(&["--status", "failed"]);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["id"], first.unwrap());
    assert_eq!(list(&["--processing", "other"]).len(), 0);
    assert_eq!(list(&["--limit", "1"]).len(), 1);
    assert_eq!(list(&["--since", "1h"]).len(), 2);
    assert_eq!(list(&["--since", "2000-01-01T00:00:00Z"]).len(), 2);

    let table = relay.cli(&["history"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("failed") && text.contains("delivered"), "{text}");

    let bad = relay.cli(&["history", "--status", "lost"]);
    assert_eq!(bad.status.code(), Some(2));
    let missing = relay.cli(&["show", "999999"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no operation 999999"));
    let text = relay.cli(&["show", &first.unwrap().to_string()]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("attempt 1"));
}

/// `prune --dry-run` counts what `prune` then deletes; queued operations stay.
#[test]
fn prune_dry_run_then_prune() {
    use hookrelay::model::{NewOperation, OpStatus, RawRequest};
    use hookrelay::store::{spawn_writer, Hooks};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\n{}\nkeep_days = 30\n\n{}",
            crate::support::storage_line().replace("relay.db", "old.db"),
            processing("p", "http://127.0.0.1:9/", "")
        ),
    )
    .unwrap();
    let hooks = Hooks {
        on_commit: Box::new(|| {}),
        on_error: Box::new(|_| {}),
    };
    let (writer, thread) = spawn_writer(crate::support::storage_location(dir.path(), "old.db"), hooks).unwrap();
    let now = hookrelay::clock::now_ms();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        for (age_days, status) in [
            (40, OpStatus::Skipped),
            (40, OpStatus::Held),
            (40, OpStatus::Queued),
            (1, OpStatus::Skipped),
        ] {
            let op = NewOperation {
                processing: "p".into(),
                received_at: now - age_days * 86_400_000,
                request: RawRequest {
                    remote_addr: "127.0.0.1:1".into(),
                    method: "GET".into(),
                    query: Vec::new(),
                    body: Vec::new(),
                    content_type: None,
                },
                charset: "utf-8".into(),
                fields: Vec::new(),
                warnings: Vec::new(),
                status,
                reason: None,
                dedupe: None,
                deliveries: Vec::new(),
            };
            writer.insert(op).await.unwrap();
        }
    });
    drop(writer);
    thread.join().unwrap();

    let run = |args: &[&str]| {
        let out = Command::new(BIN).arg("-c").arg(&config).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(run(&["prune", "--dry-run"]).contains("would delete 2 operation(s)"));
    assert!(run(&["prune"]).contains("deleted 2 operation(s)"));
    assert!(run(&["prune", "--dry-run"]).contains("would delete 0 operation(s)"));
    let history: serde_json::Value = serde_json::from_str(&run(&["history", "--json"])).unwrap();
    let statuses: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["skipped", "queued"],
        "the recent one and the queued one stay"
    );
}

/// Regression: a second daemon on the same database started silently and
/// 15 of 40 webhooks got 503 `database is locked`; it now exits 1 with one
/// line naming the lock, and the first keeps serving.
#[test]
fn a_second_daemon_on_the_same_database_is_refused() {
    if crate::support::sqlite_only("the daemon lock") {
        return;
    }
    let relay = Relay::start(&processing("p", "http://127.0.0.1:9/", ""));
    let second = Command::new(BIN)
        .arg("-c")
        .arg(&relay.config)
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("another hookrelay daemon is using"), "{stderr}");
    assert!(stderr.contains("relay.db.lock"), "{stderr}");
    assert_eq!(get(&relay.url(&format!("/hook/{TOKEN}?x=1"))).0, 200);
}

/// Regression: a missing database folder printed the path three times and
/// never the cause (twice: as a log line and as the error); `run` now says
/// it once, in one line, and `check` warns with the same words.
#[test]
fn a_missing_database_folder_is_one_clear_line() {
    if crate::support::sqlite_only("the database folder") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let text = crate::support::config_text(&processing("p", "http://127.0.0.1:9/", ""))
        .replace("path = \"relay.db\"", "path = \"missing/relay.db\"");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(BIN).arg("-c").arg(&config).arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("missing does not exist"), "{stderr}");
    assert_eq!(stderr.matches("relay.db").count(), 1, "{stderr}");
    // check warns: it may run as another user, before systemd made the folder.
    let out = Command::new(BIN).arg("-c").arg(&config).arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let warning = stdout
        .lines()
        .find(|l| l.starts_with("warning: database folder"))
        .unwrap_or_default();
    assert!(warning.contains("missing does not exist"), "{stdout}");
    // The verdict is the last line, below the warning it sums up.
    assert!(stdout.trim_end().ends_with("ok, with 1 warning(s) above"), "{stdout}");
}

/// `history --id` lists exactly the operations named, by id and range, as
/// a notification's footer names them.
#[test]
fn history_by_ids_and_ranges() {
    let relay = Relay::start(&processing("p", "http://127.0.0.1:9/", ""));
    let ids: Vec<i64> = (0..5)
        .map(|n| get(&relay.url(&format!("/hook/{TOKEN}?n={n}"))).1.unwrap())
        .collect();
    let list = format!("{},{}-{}", ids[0], ids[2], ids[3]);
    let out = relay.cli(&["history", "--id", &list, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got: Vec<i64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, [ids[3], ids[2], ids[0]]);
    let bad = relay.cli(&["history", "--id", "7-3"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// Times people read are in `server.time_zone` (default Europe/Moscow) with
/// the zone named; `--since` takes a date, read in that zone.
#[test]
fn history_times_are_local_and_since_takes_a_date() {
    let relay = Relay::start(&processing("p", "http://127.0.0.1:9/", ""));
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?x=1")));
    let id = id.unwrap().to_string();
    let run = |args: &[&str]| {
        let out = relay.cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = run(&["history"]);
    assert!(text.contains(" MSK "), "{text}");
    assert!(run(&["show", &id]).contains(" MSK from "), "show");
    // Moscow is UTC+3 all year: the local date of now.
    let moscow_now = std::time::SystemTime::now() + std::time::Duration::from_secs(3 * 3600);
    let today = humantime::format_rfc3339(moscow_now).to_string()[..10].to_string();
    assert!(run(&["history", "--since", &today]).contains(&id), "since {today}");
    assert!(run(&["history", "--since", "2999-01-01"]).contains("no operations match"));
    let bad = relay.cli(&["history", "--since", "sometime"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--since: `sometime`"));
}

/// `man` prints a roff page naming every subcommand, and `completions`
/// a script for each shell; the .deb installs what they print.
#[test]
fn man_page_and_completions_come_from_the_parser() {
    let out = Command::new(BIN).arg("man").output().unwrap();
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH hookrelay 1"), "{page}");
    // Regression: the page was a bare list pointing at hookrelay-run(1) and
    // other pages that are not shipped. It now has every command with its
    // options, and the sections a man page has.
    assert!(!page.contains("hookrelay\\-run(1)"), "no pages that are not shipped");
    for section in [
        ".SH COMMANDS",
        ".SS \"hookrelay history\"",
        "\\-\\-status <STATUS>",
        ".SH FILES",
        ".SH ENVIRONMENT",
        ".SH \"EXIT STATUS\"",
        ".SH EXAMPLES",
        ".SH \"SEE ALSO\"",
    ] {
        assert!(page.contains(section), "{section}");
    }
    for command in ["run", "check", "replay", "klientiks", "completions"] {
        assert!(
            page.contains(&format!("hookrelay\\-{command}")) || page.contains(command),
            "{command}"
        );
    }
    for (shell, marker) in [
        ("bash", "_hookrelay()"),
        ("zsh", "#compdef hookrelay"),
        ("fish", "complete -c hookrelay"),
    ] {
        let out = Command::new(BIN).args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("replay"), "{shell}");
    }
    // Regression: `history --status <TAB>` offered file names.
    let bash = Command::new(BIN).args(["completions", "bash"]).output().unwrap();
    let bash = String::from_utf8(bash.stdout).unwrap();
    assert!(bash.contains("queued delivered failed partial skipped duplicate held rejected"));
    let bad = Command::new(BIN).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// Regression: `hookrelay show ID | head` panicked with "failed printing to
/// stdout: Broken pipe" once the reader went away; it now ends quietly, as
/// `ls | head` does.
#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(BIN)
        .arg("man")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");
}

/// Regression: under systemd every line landed at priority info, so
/// `journalctl -p err` showed nothing. With JOURNAL_STREAM set, lines carry
/// their syslog priority, and a fatal error is printed once, at `<3>`.
#[test]
fn under_journald_lines_carry_their_priority() {
    // A second daemon on the first one's port: an error on either store.
    let relay = Relay::start(&processing("p", "http://127.0.0.1:9/", ""));
    let taken = tempfile::tempdir().unwrap();
    let taken_config = taken.path().join("config.toml");
    std::fs::write(
        &taken_config,
        crate::support::config_text(&processing("p", "http://127.0.0.1:9/", "")).replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"{}\"", relay.addr),
            1,
        ),
    )
    .unwrap();
    let second = Command::new(BIN)
        .arg("-c")
        .arg(&taken_config)
        .arg("run")
        .env("JOURNAL_STREAM", "8:12345")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("<3>hookrelay: listening on"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        crate::support::config_text(&processing("p", "http://127.0.0.1:9/", "")),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .arg("-c")
        .arg(&config)
        .arg("run")
        .env("JOURNAL_STREAM", "8:12345")
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.starts_with("<6>INFO: "), "{first:?}");
}

/// `backup` writes a consistent, owner-only copy while webhooks keep being
/// acknowledged, and never overwrites a file.
#[test]
fn backup_under_load_gives_a_copy_that_opens() {
    if crate::support::sqlite_only("`hookrelay backup`") {
        return;
    }
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let relay = Relay::start(&processing("p", "http://127.0.0.1:9/", ""));
    for n in 0..50 {
        assert_eq!(get(&relay.url(&format!("/hook/{TOKEN}?before={n}"))).0, 200);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, acked, refused) = (Arc::clone(&stop), Arc::clone(&acked), Arc::clone(&refused));
        let url = relay.url(&format!("/hook/{TOKEN}?during=1"));
        std::thread::spawn(move || {
            // Bounded: at most 2 000 requests, stopped once the backup is done.
            for _ in 0..2_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match get(&url).0 {
                    200 => acked.fetch_add(1, Ordering::Relaxed),
                    _ => refused.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    let copy = relay.dir.path().join("copy.db");
    let out = relay.cli(&["backup", copy.to_str().unwrap()]);
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        said.starts_with("backed up ") && said.contains("by the running daemon"),
        "{said}"
    );
    relay.wait_log("backup done");
    let left: Vec<_> = std::fs::read_dir(relay.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".backup-"))
        .collect();
    assert!(left.is_empty(), "the daemon's copy was moved, not left: {left:?}");
    assert_eq!(
        refused.load(Ordering::Relaxed),
        0,
        "every webhook during the backup was acknowledged"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let copy_config = relay.dir.path().join("copy.toml");
    let text = std::fs::read_to_string(&relay.config)
        .unwrap()
        .replace("relay.db", "copy.db");
    std::fs::write(&copy_config, text).unwrap();
    let history = Command::new(BIN)
        .arg("-c")
        .arg(&copy_config)
        .args(["history", "--json", "--limit", "100000"])
        .output()
        .unwrap();
    assert!(history.status.success(), "{}", String::from_utf8_lossy(&history.stderr));
    let list: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert!(
        list.as_array().unwrap().len() >= 50,
        "the copy holds what was acknowledged before it"
    );

    let again = relay.cli(&["backup", copy.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwrites"));

    // A folder that is not there is said before the daemon copies anything.
    let nowhere = relay.dir.path().join("missing").join("x.db");
    let out = relay.cli(&["backup", nowhere.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such folder for the copy"));

    // With the daemon stopped, the command line copies on its own.
    let mut relay = relay;
    assert!(relay.terminate().success());
    let offline = relay.dir.path().join("offline.db");
    let out = relay.cli(&["backup", offline.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && said.contains("with no daemon running"),
        "{said}"
    );
}

/// `export` streams the matching operations oldest first, as JSON lines or
/// as CSV with stable columns, fields (quotes, commas, Cyrillic) intact.
#[test]
fn export_as_jsonl_and_csv() {
    let relay = Relay::start(&format!(
        "{}\n{}",
        processing("p", "http://127.0.0.1:9/", ""),
        crate::support::processing_with_token("q", "other-token-0123456789abcdef", "http://127.0.0.1:9/", "")
    ));
    let ids: Vec<i64> = ["a", "%22%D0%90%2C+b%22", "c"]
        .iter()
        .map(|v| get(&relay.url(&format!("/hook/{TOKEN}?v={v}"))).1.unwrap())
        .collect();
    assert_eq!(get(&relay.url("/hook/other-token-0123456789abcdef?v=q")).0, 200);

    let out = relay.cli(&["export", "--processing", "p"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: Vec<i64> = lines.iter().map(|l| l["id"].as_i64().unwrap()).collect();
    assert_eq!(got, ids, "oldest first, only processing p");
    assert_eq!(lines[1]["fields"]["v"], "\"А, b\"");
    assert_eq!(lines[0]["status"], "queued");

    let out = relay.cli(&["export", "--format", "csv", "--processing", "p"]);
    assert!(out.status.success());
    let mut csv = csv::Reader::from_reader(out.stdout.as_slice());
    let header: Vec<String> = csv.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(
        header,
        [
            "id",
            "processing",
            "received_at",
            "status",
            "reason",
            "deliveries",
            "delivered",
            "fields"
        ]
    );
    let records: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 3);
    let fields: serde_json::Value = serde_json::from_str(&records[1][7]).unwrap();
    assert_eq!(fields["v"], "\"А, b\"");

    let none = relay.cli(&["export", "--until", "2000-01-01"]);
    assert!(none.status.success());
    assert!(none.stdout.is_empty());
}
