//! Storage fault drill: the database's file system fills up under the
//! running daemon, then gets room again.
//!
//! The database lives on a small tmpfs the test mounts, so this needs root
//! (CI runs as root). Elsewhere the test says it was skipped, unless `CI` is
//! set, where not being able to mount is a failure.
//!
//! A read-only remount cannot be drilled the same way: the kernel refuses to
//! remount a file system read-only while the daemon holds the database open
//! for writing, and a read-only error takes the same path as a full disk
//! (SQLite answers with an error and the transaction is rolled back).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{
    admin_get, config_text, free_port, get, parse_prometheus_text, processing, sample, skip_outside_ci, wait_until,
    Receiver, Relay, SmtpServer, TOKEN,
};

/// A tmpfs mounted for the length of a test.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (such as "4m") on `path`, or `None` where not permitted.
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .output()
            .is_ok_and(|out| out.status.success());
        if !mounted {
            skip_outside_ci("mounting a tmpfs for the storage drill needs root");
            return None;
        }
        Some(Tmpfs { path: path.into() })
    }

    /// Writes a filler file until the file system has no room left.
    fn fill(&self) {
        let mut filler = std::fs::File::create(self.path.join("filler")).unwrap();
        let chunk = vec![0u8; 4096];
        while filler.write_all(&chunk).is_ok() {}
    }

    /// Deletes the filler file.
    fn free(&self) {
        std::fs::remove_file(self.path.join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the daemon of a failed test may still hold files open.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// With the disk full, webhooks get 503 and /healthz turns 503; an attempt
/// that finishes meanwhile is not lost; once there is room again, the same
/// process takes webhooks, every acknowledged one is delivered once, and
/// the storage error is emailed.
#[test]
fn a_full_disk_refuses_webhooks_then_recovers_without_restart() {
    if crate::support::sqlite_only("a file system filling up") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk"), "4m") else {
        return;
    };
    let smtp = SmtpServer::start_on(free_port());
    let receiver = Receiver::start();
    let notify = format!(
        "[notify]\nemail_to = [\"ops@example.ru\"]\nemail_from = \"hookrelay@example.ru\"\n\
         smtp = \"smtp://127.0.0.1:{}\"\nmin_interval = \"1s\"\n\n",
        smtp.port
    );
    let text = config_text(&format!(
        "{notify}{}",
        processing("p", &receiver.url("/pb"), r#"query = { n = "{{n}}" }"#)
    ))
    .replace("path = \"relay.db\"", "path = \"disk/relay.db\"");
    let relay = Relay::start_in(dir, &text);
    let hook = |n: &str| get(&relay.url(&format!("/hook/{TOKEN}?n={n}&pad={}", "x".repeat(500))));

    // An attempt that is under way when the disk fills up.
    receiver.hold();
    let (status, first, _) = hook("first");
    assert_eq!(status, 200);
    let mut acknowledged = vec![first.unwrap()];
    receiver.wait_for(1);

    disk.fill();
    let mut refused = None;
    for i in 0..2_000 {
        let (status, id, body) = hook(&format!("full-{i}"));
        match status {
            // Whatever still fits (WAL pages being reused) is kept, as promised.
            200 => acknowledged.push(id.unwrap()),
            503 => {
                refused = Some(body);
                break;
            }
            other => panic!("answer {other} with the disk full: {body}"),
        }
    }
    let refused = refused.expect("the full disk never refused a webhook");
    assert!(refused.contains("storage"), "{refused}");
    let unhealthy = wait_until(|| admin_get(&relay, "/healthz", None).0 == 503);
    assert!(unhealthy, "{}", admin_get(&relay, "/healthz", None).1);

    // The held attempt now gets its 200 while nothing can be written.
    receiver.release();
    let attempted = wait_until(|| {
        let metrics = parse_prometheus_text(&admin_get(&relay, "/metrics", None).1);
        let delivered = [("action", "plarin"), ("outcome", "delivered")];
        sample(&metrics, "hookrelay_delivery_attempts_total", &delivered) >= 1.0
    });
    assert!(attempted, "the held attempt never finished");

    disk.free();
    let mut after = None;
    let recovered = wait_until(|| {
        let (status, id, _) = hook("after");
        after = id;
        status == 200
    });
    assert!(recovered, "webhooks still refused once the disk had room");
    acknowledged.push(after.unwrap());
    assert_eq!(admin_get(&relay, "/healthz", None).0, 200);

    for &id in &acknowledged {
        relay.wait_status(id, "delivered");
    }
    let arrivals: Vec<String> = receiver.requests().iter().filter_map(|r| r.param("n")).collect();
    let first_arrivals = arrivals.iter().filter(|n| *n == "first").count();
    assert_eq!(first_arrivals, 1, "the attempt whose result waited was not sent again");
    let out = relay.cli(&["history", "--limit", "100000", "--json"]);
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        history.as_array().map(Vec::len),
        Some(acknowledged.len()),
        "only acknowledged webhooks were stored"
    );

    let mails = smtp.wait_for(1);
    assert!(
        mails
            .iter()
            .any(|m| m.contains("Storage error") && m.contains("disk is full")),
        "{mails:#?}"
    );
}
