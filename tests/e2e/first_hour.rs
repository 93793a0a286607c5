//! The README's walk-through as a new user follows it: the example config,
//! the address `hookrelay klientiks` prints, and what reaches the receiver.

use crate::support::{get, Receiver, Relay};

/// The example config with its listeners on free ports and its action
/// pointed at `receiver`.
fn example_config(receiver: &Receiver) -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml")).unwrap();
    let text = text
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
        .replace("admin_listen = \"127.0.0.1:9180\"", "admin_listen = \"127.0.0.1:0\"")
        .replace(
            "http://127.0.0.1:9999/postback?token=example-postback-token",
            &receiver.url("/postback?token=example-postback-token"),
        );
    assert_eq!(text.matches("127.0.0.1:0").count(), 2, "the example's listeners moved");
    assert!(text.contains("/postback?token=example-postback-token"));
    text
}

/// Regression: the example config required `ad_id`, but the address
/// `hookrelay klientiks` generates carries the ad id as `utm_content`, so
/// every real event was `skipped`. Now a paid visit sent to that address is
/// delivered with the ad id from `utm_content`.
#[test]
fn example_config_delivers_what_the_klientiks_address_sends() {
    let receiver = Receiver::start();
    let relay = Relay::start_in(tempfile::tempdir().unwrap(), &example_config(&receiver));
    let out = relay.cli(&["klientiks", "Визит клиента оплачен", "--processing", "klientiks-plarin"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let address = String::from_utf8(out.stdout).unwrap();
    let path = &address.trim()[address.find("/hook/").unwrap()..];
    // What Klientiks does: fill every {{object.variable}} of the address.
    let mut filled = path.to_string();
    while let Some(start) = filled.find("{{") {
        let end = start + filled[start..].find("}}").unwrap() + 2;
        let value = match &filled[start + 2..end - 2] {
            "client.utm_content" => "ad-42",
            "appointment.total_cost" => "2500",
            "appointment.id" => "77",
            _ => "x",
        };
        filled.replace_range(start..end, value);
    }
    let (status, id, _) = get(&relay.url(&filled));
    assert_eq!(status, 200);
    let op = relay.wait_status(id.unwrap(), "delivered");
    assert_eq!(op["fields"]["utm_content"], "ad-42");
    let got = receiver.wait_for(1);
    assert_eq!(got[0].param("ad_id").as_deref(), Some("ad-42"));
    assert_eq!(got[0].param("value").as_deref(), Some("2500"));
}

/// Regression: `hookrelay.db-search` showed in `git status` after the quick
/// start. `.gitignore` covers every file the relay leaves beside its config
/// (the database, its WAL and lock, the control socket, the search index).
#[test]
fn gitignore_covers_what_the_quick_start_leaves() {
    let receiver = Receiver::start();
    let relay = Relay::start_in(tempfile::tempdir().unwrap(), &example_config(&receiver));
    let dir = relay.config.parent().unwrap().to_path_buf();
    let (status, id, _) =
        get(&relay.url("/hook/3q2-7wEXAMPLE-only-use-hookrelay-token?utm_content=ad-1&event=appointment_paid"));
    assert_eq!(status, 200);
    relay.wait_status(id.unwrap(), "delivered");
    let names = || -> Vec<String> {
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !name.ends_with(".toml"))
            .collect()
    };
    assert!(
        crate::support::wait_until(|| names().iter().any(|n| n.ends_with("-search"))),
        "{:?}",
        names()
    );
    let repo = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/.gitignore"),
        repo.path().join(".gitignore"),
    )
    .unwrap();
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(repo.path())
            .args(args)
            .output()
    };
    let Ok(init) = git(&["init", "-q"]) else {
        return crate::support::skip_outside_ci("git is not installed");
    };
    assert!(init.status.success());
    let left = names();
    assert!(left.len() >= 5, "{left:?}");
    for name in left {
        let ignored = git(&["check-ignore", "-q", "--no-index", &name]).unwrap();
        assert!(ignored.status.success(), "`{name}` is not in .gitignore");
    }
}
