//! The config module's tests.

use super::*;

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// The shipped example parses and points its database beside itself.
#[test]
fn example_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let config = Config::load(&path).unwrap();
    assert_eq!(config.storage.path, path.parent().unwrap().join("hookrelay.db"));
    assert!(config.server.listen.ip().is_loopback());
    assert!(!config.processings.is_empty());
}

/// Each broken config fails with the message on its first line (`# error: …`).
/// Regression: `check` and the SIGHUP log printed an action URL's
/// `token=` value in "url: … is not an http(s) URL"; no broken fixture's
/// error may show the secret its file holds.
#[test]
fn config_errors_mask_secrets() {
    let files = fixtures("tests/config/broken");
    let with_secret: Vec<_> = files
        .iter()
        .filter(|f| std::fs::read_to_string(f).unwrap().contains("s3cr3t"))
        .collect();
    assert!(with_secret.len() >= 3, "fixtures with a secret missing");
    for file in with_secret {
        let err = Config::load(file).unwrap_err().to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
    }
}

/// Regression: `smtp://user:password@host` sent the password in clear;
/// now it needs tls=required, or tls=none said out loud (which lettre
/// does not know, so it is removed), and `check` says which.
#[test]
fn smtp_credentials_need_tls_or_an_explicit_none() {
    let transport = |smtp: &str| {
        let text = format!(
            "[notify]\nemail_to = [\"a@b.ru\"]\nemail_from = \"c@d.ru\"\nsmtp = \"{smtp}\"\n\
             [[processing]]\nname = \"p\"\ntoken = \"abcdefghijklmnopqrstuvwxyz\"\n\
             [[processing.action]]\nname = \"a\"\nurl = \"https://h.example/\"\n"
        );
        Config::parse(&text, Path::new("/c.toml")).map(|c| c.notify.unwrap().email.unwrap().transport)
    };
    for refused in [
        "smtp://u:pw@h:587",
        "smtp://u:pw@h:587?tls=opportunistic",
        "smtps://u:pw@h:465?tls=none",
        "smtp://h:25?tls=maybe",
    ] {
        let err = transport(refused).unwrap_err().to_string();
        assert!(!err.contains("pw"), "{err}");
    }
    let plain = transport("smtp://u:pw@h:587?tls=none").unwrap();
    assert_eq!(plain, EmailTransport::Smtp(Secret::new("smtp://u:pw@h:587")));
    assert!(plain.describe().contains("the password crosses the network in clear"));
    assert!(!plain.describe().contains("pw"));
    let starttls = transport("smtp://u:pw@h:587?tls=required").unwrap();
    assert_eq!(
        starttls.describe(),
        "smtp://u:MASKED@h:587?tls=required (STARTTLS required)"
    );
    assert_eq!(
        transport("smtps://u:pw@h:465").unwrap().describe(),
        "smtps://u:MASKED@h:465 (implicit TLS)"
    );
    assert_eq!(
        transport("smtp://127.0.0.1:25").unwrap().describe(),
        "smtp://127.0.0.1:25 (no TLS)"
    );
}

/// A reload cannot apply what is read once at start; each such key is named.
#[test]
fn silences_are_checked() {
    let text = |notify: &str, keys: &str| {
        format!(
            "{notify}[[processing]]\nname = \"p\"\ntoken = \"abcdefghijklmnopqrstuvwxyz\"\n{keys}\n\
             [[processing.action]]\nname = \"a\"\nurl = \"https://h.example/\"\n"
        )
    };
    let notify =
        "[notify]\nemail_to = [\"a@example.ru\"]\nemail_from = \"b@example.ru\"\nsendmail = \"/usr/sbin/sendmail\"\n";
    let parse = |t: &str| Config::parse(t, Path::new("/c.toml"));
    let config = parse(&text(
        notify,
        "silence = \"3h\"\nactive_hours = \"09:00-21:00\"\nactive_days = [\"mon\", \"Fri\"]",
    ))
    .unwrap();
    let silence = config.processings[0].silence.as_ref().unwrap();
    assert_eq!(silence.after, Duration::from_secs(3 * 3600));
    assert_eq!(silence.active.describe(), "09:00-21:00 mon,fri");
    for (notify, keys, expected) in [
        ("", "silence = \"3h\"", "[notify], which is not configured"),
        (notify, "active_hours = \"09:00-21:00\"", "`silence`, which is not set"),
        (
            notify,
            "silence = \"3h\"\nactive_days = [\"someday\"]",
            "`someday` is not one of mon",
        ),
        (
            notify,
            "silence = \"3h\"\nactive_hours = \"22:00-06:00\"",
            "across midnight",
        ),
    ] {
        let err = parse(&text(notify, keys)).unwrap_err().to_string();
        assert!(err.contains(expected), "{keys}: {err}");
    }
}

#[test]
fn console_viewers_are_checked() {
    let text = |viewer: &str| {
        format!(
            "[server]\nadmin_token = \"admin-token-abcdefghijklmnop\"\n\
             [[processing]]\nname = \"salon-a\"\ntoken = \"abcdefghijklmnopqrstuvwxyz\"\n\
             [[processing.action]]\nname = \"a\"\nurl = \"https://h.example/\"\n\
             [[console.viewer]]\n{viewer}\n"
        )
    };
    let parse = |t: &str| Config::parse(t, Path::new("/c.toml"));
    let ok = parse(&text(
        "name = \"v\"\ntoken = \"viewer-token-abcdefghijklmn\"\nprocessings = [\"salon-?\"]",
    ))
    .unwrap();
    let viewer = &ok.console.viewers[0];
    assert!(viewer.sees("salon-a") && !viewer.sees("salon-ab"));
    for (viewer, expected) in [
        (
            "name = \"v\"\ntoken = \"admin-token-abcdefghijklmnop\"\nprocessings = [\"*\"]",
            "already used",
        ),
        (
            "name = \"v\"\ntoken = \"abcdefghijklmnopqrstuvwxyz\"\nprocessings = [\"*\"]",
            "already used",
        ),
        ("name = \"v\"\ntoken = \"short\"\nprocessings = [\"*\"]", "too short"),
        (
            "name = \"V V\"\ntoken = \"viewer-token-abcdefghijklmn\"\nprocessings = [\"*\"]",
            "a-z",
        ),
        (
            "name = \"v\"\ntoken = \"viewer-token-abcdefghijklmn\"\nprocessings = []",
            "at least one",
        ),
    ] {
        let err = parse(&text(viewer)).unwrap_err().to_string();
        assert!(err.contains(expected), "{viewer}: {err}");
        assert!(!err.contains("abcdefghijklmn"), "no token in the error: {err}");
    }
}

#[test]
fn restart_only_keys_are_named() {
    let text = |extra: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:8080\"\n{extra}\n[[processing]]\nname = \"p\"\n\
             token = \"abcdefghijklmnopqrstuvwxyz\"\n[[processing.action]]\nname = \"a\"\nurl = \"https://h.example/\"\n"
        )
    };
    let parse = |t: &str| Config::parse(t, Path::new("/c.toml")).unwrap();
    let running = parse(&text(""));
    assert!(running.restart_only_changes(&parse(&text("max_fields = 5"))).is_empty());
    assert_eq!(
        running.restart_only_changes(&parse(&text(
            "max_connections_per_client = 5\nadmin_listen = \"127.0.0.1:1\""
        ))),
        ["server.admin_listen", "server.max_connections_per_client"]
    );
}

/// Regression: a truncated (0-byte) file loaded as "0 processing(s)" and a
/// reload made every webhook a 404; now it is refused, blank lines too.
#[test]
fn empty_file_is_refused() {
    for text in ["", "\n  \n"] {
        let err = Config::parse(text, Path::new("/etc/hookrelay/config.toml")).unwrap_err();
        assert_eq!(err.to_string(), "/etc/hookrelay/config.toml: the file is empty");
    }
}

#[test]
fn broken_configs_fail_with_their_message() {
    let files = fixtures("tests/config/broken");
    assert!(files.len() >= 10, "fixtures missing: found {}", files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# error: "))
            .unwrap_or_else(|| panic!("{}: first line must be `# error: …`", file.display()));
        let err = Config::load(&file).expect_err(&file.display().to_string()).to_string();
        let shown = err.strip_prefix(&format!("{}", file.display())).unwrap_or(&err);
        assert_eq!(shown, expected, "{}", file.display());
    }
}

/// Secrets print as MASKED in Debug output of the whole config.
#[test]
fn debug_masks_secrets() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let config = Config::load(&path).unwrap();
    let token = config.processings[0].token.expose().to_string();
    let debug = format!("{config:?}");
    assert!(!debug.contains(&token));
    assert!(debug.contains("MASKED"));
}

/// Action settings fall back to [delivery], key by key.
#[test]
fn action_inherits_delivery_defaults() {
    let text = r#"
        [delivery]
        timeout = "5s"
        retry = { attempts = 3, first_delay = "1s" }
        [[processing]]
        name = "p"
        token = "abcdefghijklmnopqrstuvwxyz"
        [[processing.action]]
        name = "a"
        url = "http://127.0.0.1/x?{{id}}"
        retry = { max_delay = "10m" }
    "#;
    let config = Config::parse(text, Path::new("/etc/hookrelay/c.toml")).unwrap();
    let action = &config.processings[0].actions[0];
    assert_eq!(action.timeout, Duration::from_secs(5));
    assert_eq!(
        action.retry,
        Retry {
            attempts: 3,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(600)
        }
    );
    assert_eq!(config.storage.path, Path::new("/var/lib/hookrelay/hookrelay.db"));
}

/// `[[receiver]]` is found by the receiver's `scheme://host:port/` whatever
/// the URL's spelling; unset breaker keys come from `[delivery] breaker`,
/// and receivers without a table get those defaults and no pacing.
#[test]
fn receivers_are_keyed_by_origin_and_inherit_the_breaker() {
    let text = "[delivery]\nbreaker = { failures = 7, probe = \"1m\", max_probe = \"10m\" }\n\
        [[processing]]\nname = \"p\"\ntoken = \"abcdefghijklmnopqrstuvwxyz\"\n\
        [[processing.action]]\nname = \"a\"\nurl = \"https://h.example/pb\"\n\
        [[receiver]]\nurl = \"HTTPS://H.example:443\"\nrate = \"600/m\"\nconcurrency = 2\nbreaker = { probe = \"2m\" }\n";
    let config = Config::parse(text, Path::new("/c.toml")).unwrap();
    let policy = config.receiver_policy(&crate::model::target_of("https://h.example/pb?x=1"));
    assert_eq!(
        policy.rate,
        Some(Rate {
            count: 600,
            per: Duration::from_secs(60)
        })
    );
    assert_eq!(policy.concurrency, Some(2));
    assert_eq!(
        policy.breaker,
        Breaker {
            failures: 7,
            probe: Duration::from_secs(120),
            max_probe: Duration::from_secs(600)
        }
    );
    let other = config.receiver_policy("http://other.example/");
    assert_eq!((other.rate, other.concurrency), (None, None));
    assert_eq!(other.breaker, config.delivery.breaker);
    let defaults = Config::parse(
        &text.replace(
            "[delivery]\nbreaker = { failures = 7, probe = \"1m\", max_probe = \"10m\" }\n",
            "",
        ),
        Path::new("/c.toml"),
    )
    .unwrap();
    assert_eq!(
        defaults.delivery.breaker,
        Breaker {
            failures: 5,
            probe: Duration::from_secs(30),
            max_probe: Duration::from_secs(300)
        }
    );
}

/// Regression: a breaker that opens only after an action's whole retry
/// budget lets a sparse sender's events fail for good during an outage.
/// `late_breakers` names each such action, after inheritance from
/// `[delivery]` and `[[receiver]]`, and no other.
#[test]
fn breakers_that_open_after_the_retry_budget_are_named() {
    let text = "[delivery]\nretry = { attempts = 5 }\n\
        [[processing]]\nname = \"p\"\ntoken = \"abcdefghijklmnopqrstuvwxyz\"\n\
        [[processing.action]]\nname = \"default\"\nurl = \"https://a.example/pb\"\n\
        [[processing.action]]\nname = \"more-attempts\"\nurl = \"https://a.example/pb\"\nretry = { attempts = 6 }\n\
        [[processing.action]]\nname = \"own-receiver\"\nurl = \"https://b.example/pb\"\nretry = { attempts = 6 }\n\
        [[processing.action]]\nname = \"no-breaker\"\nurl = \"https://c.example/pb\"\nretry = { attempts = 1 }\n\
        [[receiver]]\nurl = \"https://b.example\"\nbreaker = { failures = 6 }\n\
        [[receiver]]\nurl = \"https://c.example\"\nbreaker = { failures = 0 }\n";
    let config = Config::parse(text, Path::new("/c.toml")).unwrap();
    let warnings = config.late_breakers();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(
        warnings[0].starts_with("processing `p`: action `default`: the breaker opens after 5 failures in a row ([delivery] breaker.failures), but the action gives up after 5 attempts"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].ends_with("make breaker.failures less than 5"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].starts_with("processing `p`: action `own-receiver`: the breaker opens after 6 failures in a row ([[receiver]] https://b.example/ breaker.failures)"),
        "{}",
        warnings[1]
    );
}

/// `[accept]` and `[retry_on]` become the delivery's rules: dotted keys
/// are paths, a list is "any of", statuses take classes and ranges, and
/// `expect_body` alone is `accept.body`.
#[test]
fn response_rules_are_read() {
    use crate::model::response::ResponseRules;
    use serde_json::json;
    let text = "[[processing]]\nname = \"p\"\ntoken = \"abcdefghijklmnopqrstuvwxyz\"\n\
        [[processing.action]]\nname = \"a\"\nurl = \"https://h.example/\"\n\
        accept = { status = [200, \"3xx\"], json = { ok = true, result.state = [\"new\", 2] }, json_present = [\"result.id\"] }\n\
        retry_on = { status = [\"500-503\", 429], json = { error = \"QUERY_LIMIT_EXCEEDED\" }, delay_json = \"parameters.retry_after\", until_json = \"time.operating_reset_at\" }\n\
        [[processing.action]]\nname = \"b\"\nurl = \"https://h.example/\"\nexpect_body = \"OK\"\n";
    let config = Config::parse(text, Path::new("/c.toml")).unwrap();
    let actions = &config.processings[0].actions;
    let rules = &actions[0].rules;
    assert_eq!(rules.accept.status, Some(vec![(200, 200), (300, 399)]));
    assert_eq!(
        rules.accept.json,
        [
            ("ok".to_string(), vec![json!(true)]),
            ("result.state".to_string(), vec![json!("new"), json!(2)])
        ]
    );
    assert_eq!(rules.accept.json_present, ["result.id"]);
    assert_eq!(rules.retry.status, Some(vec![(500, 503), (429, 429)]));
    assert_eq!(
        rules.retry.json,
        [("error".to_string(), vec![json!("QUERY_LIMIT_EXCEEDED")])]
    );
    assert_eq!(rules.retry.delay_json.as_deref(), Some("parameters.retry_after"));
    assert_eq!(rules.retry.until_json.as_deref(), Some("time.operating_reset_at"));
    assert_eq!(actions[1].rules, ResponseRules::expecting(Some("OK".into())));
}

/// A viewer sees webhook addresses (they hold the token) only when its
/// `show_address` says so.
#[test]
fn viewers_see_addresses_only_when_told() {
    let text = |extra: &str| {
        format!(
            "[[console.viewer]]\nname = \"v\"\ntoken = \"viewer-token-abcdefghijklmnop\"\nprocessings = [\"p\"]\n{extra}\n\
             [[processing]]\nname = \"p\"\ntoken = \"abcdefghijklmnopqrstuvwxyz\"\n\
             [[processing.action]]\nname = \"a\"\nurl = \"https://h.example/\"\n"
        )
    };
    let shown = |extra: &str| {
        Config::parse(&text(extra), Path::new("/c.toml"))
            .unwrap()
            .console
            .viewers[0]
            .show_address
    };
    assert!(!shown(""));
    assert!(shown("show_address = true"));
}

/// The README's metrica action, as written there: its keys, defaults and
/// the row's columns in the route's order; its token never in Debug.
#[test]
fn a_metrica_action_as_the_readme_writes_it() {
    let text = r#"
        [[processing]]
        name = "salon"
        token = "abcdefghijklmnopqrstuvwxyz"
        [[processing.action]]
        name = "metrica"
        kind = "metrica"
        counter = 2215573
        token = "y0_AgAAAA-secret-part"
        route = "orders"
        time_zone = "Europe/Moscow"
        batch_every = "15m"
        batch_max = 1000
        poll_every = "5m"
        window = "21d"
        [processing.action.row]
        order_status = "PAID"
        id = "{{appointment_id}}"
        create_date_time = "{{appointment_date}}"
        phones = "{{client_phone}}"
        revenue = "{{appointment_total_cost}}"
    "#;
    let config = Config::parse(text, Path::new("/etc/hookrelay/c.toml")).unwrap();
    let (action, m) = config.metrica("salon/metrica").unwrap();
    assert_eq!(action.max_age, None);
    assert_eq!(
        m.upload_url(),
        "https://api-metrika.yandex.net/cdp/api/v1/counter/2215573/data/simple_orders?merge_mode=SAVE&delimiter_type=COMMA"
    );
    let columns: Vec<&str> = m.row.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(columns, ["id", "create_date_time", "phones", "order_status", "revenue"]);
    assert_eq!(
        (m.batch_max, m.batch_every, m.poll_every),
        (1000, Duration::from_secs(900), Duration::from_secs(300))
    );
    assert!(!format!("{config:?}").contains("secret-part"));
    // [delivery] max_age is not a row's: `window` is.
    let with_default = text.replace("[[processing]]", "[delivery]\nmax_age = \"1h\"\n[[processing]]");
    let config = Config::parse(&with_default, Path::new("/etc/hookrelay/c.toml")).unwrap();
    assert_eq!(config.metrica("salon/metrica").unwrap().0.max_age, None);
}
