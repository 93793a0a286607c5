//! The admin listener: /healthz, /metrics, and its bearer token.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::{
    admin_get, admin_get_as, get, parse_metrics, parse_prometheus_text, processing, promtool, sample, Receiver, Relay,
    OPENMETRICS, TOKEN,
};

/// /healthz answers 200 with the database writable and the queue.
#[test]
fn healthz_reports_a_writable_database() {
    let receiver = Receiver::start();
    let relay = Relay::start(&processing("p", &receiver.url("/pb"), ""));
    let (status, body) = admin_get(&relay, "/healthz", None);
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["database_writable"], true);
    assert_eq!(health["queue_depth"], 0);
    assert!(health["last_delivery_at"].is_null());

    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}")));
    relay.wait_status(id.unwrap(), "delivered");
    let (_, body) = admin_get(&relay, "/healthz", None);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(health["last_delivery_at"].is_string(), "{body}");
    let (status, page) = admin_get(&relay, "/other", None);
    assert_eq!(status, 200, "the console's sign-in page: {page}");
    assert!(page.contains("action=\"/login\""), "{page}");
}

/// /metrics, asked for OpenMetrics, parses as OpenMetrics and its values follow the webhooks.
#[test]
fn metrics_parse_and_change_as_webhooks_arrive() {
    let receiver = Receiver::start();
    receiver.script(&[(503, "busy")]);
    let relay = Relay::start(&processing("p", &receiver.url("/pb"), ""));
    let openmetrics = |relay: &Relay| admin_get_as(relay, "/metrics", None, Some(OPENMETRICS)).1;
    let before = parse_metrics(&openmetrics(&relay));
    assert_eq!(
        sample(&before, "hookrelay_operations_received_total", &[("processing", "p")]),
        0.0
    );

    let (_, id, _) = get(&relay.url(&format!("/hook/{TOKEN}")));
    get(&relay.url("/hook/unknown-token-0123456789abcdef"));
    relay.wait_status(id.unwrap(), "delivered");
    let after = parse_metrics(&openmetrics(&relay));
    let received = [("processing", "p"), ("status", "queued")];
    assert_eq!(sample(&after, "hookrelay_operations_received_total", &received), 1.0);
    assert_eq!(
        sample(
            &after,
            "hookrelay_requests_refused_total",
            &[("reason", "unknown_token")]
        ),
        1.0
    );
    let delivered = [("action", "plarin"), ("outcome", "delivered")];
    assert_eq!(sample(&after, "hookrelay_delivery_attempts_total", &delivered), 1.0);
    let retried = [("action", "plarin"), ("outcome", "retry")];
    assert_eq!(sample(&after, "hookrelay_delivery_attempts_total", &retried), 1.0);
    assert_eq!(
        sample(&after, "hookrelay_delivery_attempt_duration_seconds_count", &[]),
        2.0
    );
    assert_eq!(sample(&after, "hookrelay_queue_depth", &[]), 0.0);
    // Storing, claiming and recording ran statements: the count grew.
    let statements = |m: &[crate::support::Sample]| sample(m, "hookrelay_sql_statements_total", &[]);
    assert!(
        statements(&after) > statements(&before),
        "{} -> {}",
        statements(&before),
        statements(&after)
    );
}

/// With admin_token set, requests need the bearer token.
#[test]
fn admin_token_is_required_when_set() {
    let receiver = Receiver::start();
    let mut relay = Relay::start(&processing("p", &receiver.url("/pb"), ""));
    let text = std::fs::read_to_string(&relay.config)
        .unwrap()
        .replace("[server]\n", "[server]\nadmin_token = \"admin-secret-123\"\n");
    std::fs::write(&relay.config, text).unwrap();
    relay.kill9();
    relay.restart();
    assert_eq!(admin_get(&relay, "/healthz", None).0, 401);
    assert_eq!(admin_get(&relay, "/healthz", Some("wrong")).0, 401);
    assert_eq!(admin_get(&relay, "/healthz", Some("admin-secret-123")).0, 200);
    assert_eq!(admin_get(&relay, "/metrics", Some("admin-secret-123")).0, 200);
}

/// Regression: `promtool check metrics` exited 3 ("no help text"): the
/// output was OpenMetrics whatever `Accept` asked. Without an OpenMetrics
/// `Accept` it is now the Prometheus text format, which promtool passes;
/// the build is named, and each action's failure series exists at zero
/// before any failure, so an alert can be written on day one.
#[test]
fn metrics_pass_promtool_and_start_at_zero() {
    let relay = Relay::start(&processing("p", "http://127.0.0.1:9/", ""));
    let (status, text) = admin_get(&relay, "/metrics", None);
    assert_eq!(status, 200);
    let samples = parse_prometheus_text(&text);
    let failed = [("action", "plarin"), ("outcome", "failed")];
    assert!(
        samples.iter().any(|(n, l, v)| n == "hookrelay_delivery_attempts_total"
            && failed.iter().all(|(k, w)| l.iter().any(|(lk, lv)| lk == k && lv == w))
            && *v == 0.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &samples,
            "hookrelay_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(samples
        .iter()
        .any(|(n, l, _)| n == "hookrelay_requests_refused_total" && l.iter().any(|(_, v)| v == "unknown_token")));
    let Some(promtool) = promtool() else { return };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
