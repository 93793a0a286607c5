//! Failure notifications: email through a real SMTP server, Telegram through
//! a local stand-in for the Bot API, batching, and sends that fail.

use std::time::{Duration, Instant};

use crate::support::{free_port, get, notify_email, processing, Receiver, Relay, SmtpServer, TOKEN};

/// A permanent failure is emailed with what to do; a second one within min_interval waits for the next digest.
#[test]
fn email_digest_for_a_permanent_failure_then_batching() {
    let smtp = SmtpServer::start_on(free_port());
    let receiver = Receiver::start();
    receiver.script(&[(400, "bad ad"), (400, "bad ad")]);
    let relay = Relay::start(&format!(
        "{}{}",
        notify_email(smtp.port, "2s"),
        processing(
            "klientiks-plarin",
            &receiver.url("/pb"),
            r#"query = { ad = "{{ad_id}}" }"#
        )
    ));
    let (_, first, _) = get(&relay.url(&format!("/hook/{TOKEN}?ad_id=A1&client.name=%D0%90%D0%BD%D0%BD%D0%B0")));
    let first = first.unwrap();
    let mails = smtp.wait_for(1);
    let seen_first = Instant::now();
    let mail = &mails[0];
    for needle in [
        "To: ops@example.ru",
        "Subject: hookrelay on ",
        "Message-ID: <",
        "Failed deliveries: 1",
        "Processing: klientiks-plarin",
        &format!("Operation: {first} ("),
        "action `plarin`: HTTP 400 (attempt 1)",
        "client.name = Анна",
        &format!("hookrelay show {first}"),
        &format!("hookrelay replay {first}"),
    ] {
        assert!(mail.contains(needle), "{needle:?} missing from:\n{mail}");
    }

    let (_, second, _) = get(&relay.url(&format!("/hook/{TOKEN}?ad_id=A2")));
    let second = second.unwrap();
    relay.wait_status(second, "failed");
    let mails = smtp.wait_for(2);
    let gap = seen_first.elapsed();
    assert!(
        gap >= Duration::from_millis(1500),
        "the second digest came {gap:?} after the first"
    );
    assert!(mails[1].contains(&format!("hookrelay replay {second}")), "{}", mails[1]);
    assert!(
        !mails[1].contains(&format!("hookrelay replay {first}\n")),
        "{}",
        mails[1]
    );
    assert_eq!(smtp.messages().len(), 2);
}

/// While the SMTP server is down the notification waits; it is sent once the server is up.
#[test]
fn unreachable_smtp_loses_nothing() {
    let port = free_port();
    let receiver = Receiver::start();
    receiver.script(&[(404, "no such postback")]);
    let relay = Relay::start(&format!(
        "{}{}",
        notify_email(port, "1s"),
        processing("p", &receiver.url("/pb"), "")
    ));
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}")));
    relay.wait_status(id.unwrap(), "failed");
    relay.wait_log("notification by email failed, will retry");

    let smtp = SmtpServer::start_on(port);
    let mails = smtp.wait_for(1);
    assert!(
        mails[0].contains(&format!("hookrelay replay {}", id.unwrap())),
        "{}",
        mails[0]
    );
}

/// Telegram gets sendMessage with the chat id; the bot token stays out of logs.
#[test]
fn telegram_receives_send_message() {
    let telegram = Receiver::start();
    telegram.script(&[(200, r#"{"ok":true}"#)]);
    let receiver = Receiver::start();
    receiver.script(&[(403, "forbidden")]);
    let relay = Relay::start(&format!(
        "[notify]\nmin_interval = \"1s\"\n[notify.telegram]\nbot_token = \"123456:SECRET-bot-token\"\nchat_id = \"-1001234\"\napi_url = \"{}\"\n\n{}",
        telegram.url(""),
        processing("p", &receiver.url("/pb"), "")
    ));
    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}?phone=79123456789")));
    let got = telegram.wait_for(1);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].target, "/bot123456:SECRET-bot-token/sendMessage");
    let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["chat_id"], "-1001234");
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("Доставка не удалась / Delivery failed"), "{text}");
    assert!(text.contains(&format!("hookrelay replay {}", id.unwrap())), "{text}");
    relay.wait_log("notification sent by telegram");
    assert!(!relay.log_text().contains("SECRET-bot-token"));
}

/// `notify-test` reports each channel, and fails (exit 1) when one fails.
#[test]
fn notify_test_reports_each_channel() {
    let smtp = SmtpServer::start_on(free_port());
    let telegram = Receiver::start();
    let receiver = Receiver::start();
    let relay = Relay::start(&format!(
        "{}[notify.telegram]\nbot_token = \"1:tok\"\nchat_id = \"42\"\napi_url = \"{}\"\n\n{}",
        notify_email(smtp.port, "15m"),
        telegram.url(""),
        processing("p", &receiver.url("/pb"), "")
    ));
    let out = relay.cli(&["notify-test"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("email: sent") && stdout.contains("telegram: sent"),
        "{stdout}"
    );
    assert!(smtp.wait_for(1)[0].contains("test notification"));
    assert_eq!(telegram.requests().len(), 1);

    telegram.script(&[(401, r#"{"ok":false,"description":"Unauthorized"}"#)]);
    let out = relay.cli(&["notify-test"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("telegram: failed: Telegram answered HTTP 401"),
        "{stdout}"
    );
}

/// A restart does not resend a notification that went out: the next digest holds only the new failure.
#[test]
fn restart_does_not_resend() {
    let smtp = SmtpServer::start_on(free_port());
    let receiver = Receiver::start();
    receiver.script(&[(400, "no"), (400, "no")]);
    let mut relay = Relay::start(&format!(
        "{}{}",
        notify_email(smtp.port, "1s"),
        processing("p", &receiver.url("/pb"), "")
    ));
    let (_, first, _) = get(&relay.url(&format!("/hook/{TOKEN}")));
    assert!(smtp.wait_for(1)[0].contains(&format!("hookrelay replay {}", first.unwrap())));
    assert_eq!(relay.terminate().code(), Some(0));
    relay.restart();
    let (_, second, _) = get(&relay.url(&format!("/hook/{TOKEN}")));
    let mails = smtp.wait_for(2);
    assert!(
        mails[1].contains(&format!("hookrelay replay {}", second.unwrap())),
        "{}",
        mails[1]
    );
    assert!(mails[1].contains("Failed deliveries: 1"), "{}", mails[1]);
}

/// A processing that goes quiet for its `silence` is announced once, not
/// again after a restart, and its first event after that is announced too.
#[test]
fn silence_is_announced_once_and_its_end_too() {
    let smtp = SmtpServer::start_on(free_port());
    let receiver = Receiver::start();
    // The processing's own keys go before its action's table.
    let salon = processing("salon", &receiver.url("/pb"), "").replacen(
        "\n\n[[processing.action]]",
        "\nsilence = \"2s\"\nactive_hours = \"00:00-24:00\"\n\n[[processing.action]]",
        1,
    );
    let admin = "silence-admin-token-0123456789";
    let text = crate::support::config_text(&format!("{}{salon}", notify_email(smtp.port, "100ms"))).replace(
        "max_body_bytes = 1024\n",
        &format!("max_body_bytes = 1024\nadmin_token = \"{admin}\"\n"),
    );
    let mut relay = Relay::start_in(tempfile::tempdir().unwrap(), &text);
    let (_, first, _) = get(&relay.url(&format!("/hook/{TOKEN}?n=1")));
    let first = first.unwrap();
    let mails = smtp.wait_for(1);
    assert!(
        mails[0].contains("no events for 2s") && mails[0].contains(&format!("operation {first}")),
        "{}",
        mails[0]
    );
    let cookie = crate::support::console_session(&relay, admin);
    let (_, page) = crate::support::console_get(&relay, &cookie, "/");
    assert!(page.contains("Silent: no events since"), "the console shows it: {page}");
    relay.kill9();
    relay.restart();
    // An absence can only be watched for: several of the notifier's ticks.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        smtp.messages().len(),
        1,
        "the silence was not announced again after the restart"
    );

    let (_, second, _) = get(&relay.url(&format!("/hook/{TOKEN}?n=2")));
    let second = second.unwrap();
    let mails = smtp.wait_for(2);
    assert!(
        mails[1].contains(&format!("events are back: operation {second}")),
        "{}",
        mails[1]
    );
}
