//! The web console in a real browser (headless Chromium through WebDriver)
//! against the real binary: sign-in, overview, search, an operation,
//! replay, a viewer's limits, escaping, both languages, live updates.

use crate::support::browser::Browser;
use crate::support::*;

const ADMIN: &str = "console-admin-token-abcdefghij";
const VIEWER: &str = "console-viewer-token-abcdefghij";
const TOKEN_B: &str = "second-token-0123456789abcdefXYZ";
/// What the webhook addresses are shown under.
const PUBLIC: &str = "https://relay.example.ru";
/// A field value that would run script if it were not escaped.
const HOSTILE: &str = "\"><img src=x onerror=\"window.pwned=1\"><script>window.pwned=2</script>";

/// Two processings, an admin token and a viewer who sees only `salon-a`.
fn start(receiver: &Receiver) -> Relay {
    let processings = format!(
        "{}{}\n[[console.viewer]]\nname = \"salon-a-viewer\"\ntoken = \"{VIEWER}\"\nprocessings = [\"salon-a*\"]\n",
        processing("salon-a", &receiver.url("/a"), ""),
        processing_with_token("salon-b", TOKEN_B, &receiver.url("/b"), ""),
    );
    let text = config_text(&processings).replace(
        "max_body_bytes = 1024\n",
        &format!("max_body_bytes = 1024\nadmin_token = \"{ADMIN}\"\npublic_url = \"{PUBLIC}\"\n"),
    );
    Relay::start_in(tempfile::tempdir().unwrap(), &text)
}

fn send(relay: &Relay, token: &str, query: &[(&str, &str)]) -> i64 {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    let (status, id, body) = get(&relay.url(&format!("/hook/{token}?{query}")));
    assert_eq!(status, 200, "{body}");
    id.unwrap()
}

fn sign_in(browser: &Browser, token: &str) {
    browser.goto("/");
    assert_eq!(browser.path(), "/login", "signed out: the sign-in page");
    browser.fill("#token", token);
    browser.click("form.signin button");
    assert!(wait_until(|| browser.path() == "/"), "signed in: the overview");
}

#[test]
fn admin_signs_in_searches_reads_and_replays() {
    let receiver = Receiver::start();
    // salon-b's first delivery is refused for good, to be replayed later.
    receiver.script(&[(200, "ok"), (400, "bad ad id")]);
    let relay = start(&receiver);
    let paid = send(
        &relay,
        TOKEN,
        &[
            ("event", "appointment_paid"),
            ("client_phone", "8 (999) 123-45-67"),
            ("utm_content", HOSTILE),
        ],
    );
    relay.wait_status(paid, "delivered");
    let refused = send(
        &relay,
        TOKEN_B,
        &[("event", "client_created"), ("appointment_id", "A-4242")],
    );
    relay.wait_status(refused, "failed");

    let Some(browser) = Browser::start(&format!("http://{}", relay.admin), "ru") else {
        return;
    };
    browser.goto("/login");
    browser.fill("#token", "wrong-token-wrong-token-wrong");
    browser.click("form.signin button");
    browser.wait_text("Неверный токен");
    sign_in(&browser, ADMIN);
    assert!(browser.text("#p-salon-a").contains("доставлена"), "counts by status");
    assert!(browser.text("#p-salon-b").contains("ошибка"));
    // The webhook address, ready to copy.
    let address = format!("{PUBLIC}/hook/{TOKEN}");
    browser.value_when("#p-salon-a input.copyable", |value| value == address);
    browser.screenshot("overview-ru");

    // A phone typed another way finds the operation (once the writer has
    // indexed it, within about a second); the hostile field is text.
    assert!(
        wait_until(|| {
            browser.goto("/operations?q=79991234567");
            browser.count("#rows tr") == 1
        }),
        "indexed for the search"
    );
    browser.goto("/operations");
    browser.fill("input[name=q]", "+7 999 123 45 67");
    browser.click("form.filter button");
    assert!(wait_until(|| browser.path().contains("q=")));
    assert_eq!(browser.count("#rows tr"), 1, "only the matching operation");
    assert_eq!(browser.text("#rows tr td.num a"), paid.to_string());
    browser.click("#rows tr td.num a");
    browser.wait_text(&format!("Операция {paid}"));
    assert!(browser.text("table.fields").contains(HOSTILE), "shown as text");
    assert_eq!(
        browser.js("return [window.pwned === undefined, document.querySelectorAll('main img, main script').length]"),
        serde_json::json!([true, 0]),
        "nothing from the webhook ran or became markup"
    );
    browser.screenshot("operation-ru");

    // Replay the failed one from its page; the receiver takes it this time.
    browser.goto(&format!("/operations/{refused}"));
    assert!(browser.text(".delivery").contains("bad ad id"), "the response snippet");
    browser.click("form.inline button[type=submit]:not(header button)");
    browser.wait_text("1 доставка снова в очереди.");
    relay.wait_status(refused, "delivered");
    assert_eq!(receiver.wait_for(3).len(), 3);

    // English from the switch, kept on the next page.
    browser.click("a.lang");
    browser.wait_text("Deliveries");
    browser.goto("/");
    browser.wait_text("Overview");
    browser.screenshot("overview-en");
}

#[test]
fn the_operations_list_updates_itself_and_bulk_replay_asks_first() {
    let receiver = Receiver::start();
    receiver.script(&[(400, "no"), (400, "no")]);
    let relay = start(&receiver);
    let first = send(&relay, TOKEN, &[("appointment_id", "1")]);
    let second = send(&relay, TOKEN, &[("appointment_id", "2")]);
    relay.wait_status(first, "failed");
    relay.wait_status(second, "failed");
    let Some(browser) = Browser::start(&format!("http://{}", relay.admin), "en-US") else {
        return;
    };
    sign_in(&browser, ADMIN);
    browser.wait_text("Overview");
    browser.goto("/operations");
    assert_eq!(browser.count("#rows tr"), 2);
    let third = send(&relay, TOKEN, &[("appointment_id", "3")]);
    assert!(
        wait_until(|| browser.count(&format!("#rows tr[data-id=\"{third}\"]")) == 1),
        "the new operation appeared without a reload"
    );
    relay.wait_status(third, "delivered");
    browser.screenshot("operations-en");

    browser.goto("/operations?status=failed");
    browser.click("form.replay button");
    browser.wait_text("Replay 2 operations?");
    browser.click("main form button");
    // The list then shows what was replayed, as it goes, not the (now
    // empty) filter that found it.
    browser.wait_text("2 operations queued again.");
    assert_eq!(browser.count("#rows tr"), 2, "the two replayed");
    relay.wait_status(first, "delivered");
    relay.wait_status(second, "delivered");
    assert!(
        wait_until(|| browser.count("#rows tr[data-status=\"delivered\"]") == 2),
        "the rows' statuses changed without a reload"
    );
    assert!(
        wait_until(|| browser.text("#progress").contains("delivered 2")),
        "the progress says so: {}",
        browser.text("#progress")
    );
}

/// Regression: "Повторить" on an operation `require` had skipped sent it
/// (an empty `ad_id`, a false conversion) and wrote "replayed" over its
/// reason. The console now offers no replay while the rules still skip it
/// and says why; held operations of a stopped processing are sent only by a
/// button that names it; the bulk confirmation breaks down what goes and
/// what does not; a replay is listed with who asked.
#[test]
fn the_console_replays_only_what_the_rules_let_through() {
    let receiver = Receiver::start();
    let processings = format!(
        "[[processing]]\nname = \"salon-a\"\ntoken = \"{TOKEN}\"\nrequire = [\"utm_content\"]\n\n\
         [[processing.action]]\nname = \"plarin\"\nurl = \"{}\"\nquery = {{ ad_id = \"{{{{utm_content}}}}\" }}\n\n\
         [[processing]]\nname = \"salon-b\"\ntoken = \"{TOKEN_B}\"\nenabled = false\n\n\
         [[processing.action]]\nname = \"plarin\"\nurl = \"{}\"\n",
        receiver.url("/a"),
        receiver.url("/b")
    );
    let text = config_text(&processings).replace(
        "max_body_bytes = 1024\n",
        &format!("max_body_bytes = 1024\nadmin_token = \"{ADMIN}\"\n"),
    );
    let relay = Relay::start_in(tempfile::tempdir().unwrap(), &text);
    let skipped = send(&relay, TOKEN, &[("event", "appointment_paid")]);
    relay.wait_status(skipped, "skipped");
    let held: Vec<i64> = (0..2)
        .map(|n| send(&relay, TOKEN_B, &[("n", &n.to_string())]))
        .collect();
    relay.wait_status(held[1], "held");
    let Some(browser) = Browser::start(&format!("http://{}", relay.admin), "ru") else {
        return;
    };
    sign_in(&browser, ADMIN);

    browser.goto(&format!("/operations/{skipped}"));
    browser.wait_text(
        "Повтор невозможен: правила обработки по-прежнему пропускают её: обязательного поля «utm_content» нет",
    );
    assert_eq!(browser.count("main form.inline"), 0, "no replay button");

    browser.goto("/operations?status=held");
    browser.click("form.replay button");
    browser.wait_text("Не будут отправлены");
    assert!(browser
        .text("main")
        .contains("обработка «salon-b» остановлена (enabled = false)"));
    assert!(browser.text("main").contains("Повторить 0 операций?"));
    browser.click("main p a");
    browser.wait_text("Будут отправлены");
    assert!(browser.text("main table").contains("salon-b"));
    assert!(browser.text("main").contains("Повторить 2 операции?"));
    browser.screenshot("replay-confirm-ru");

    browser.goto(&format!("/operations/{}", held[0]));
    assert_eq!(
        browser.text("main form.inline button"),
        "Повторить, хотя обработка «salon-b» остановлена"
    );
    browser.click("main form.inline button");
    browser.wait_text("1 доставка снова в очереди.");
    relay.wait_status(held[0], "delivered");
    browser.goto(&format!("/operations/{}", held[0]));
    browser.wait_text("Повторы");
    assert!(browser
        .text("ul.replays")
        .contains("консоль (администратор), доставок в очереди: 1"));
    browser.screenshot("replayed-ru");
    assert!(
        browser.text("dl.facts").contains("enabled = false"),
        "the original reason stays"
    );
    assert_eq!(receiver.wait_for(1).len(), 1, "only the held operation was sent");
    assert_eq!(relay.show(held[1])["status"], "held");
}

#[test]
fn a_viewer_sees_only_its_processings_and_cannot_replay() {
    let receiver = Receiver::start();
    receiver.script(&[(400, "no")]);
    let relay = start(&receiver);
    let hidden = send(&relay, TOKEN_B, &[("secret_field", "b-only")]);
    relay.wait_status(hidden, "failed");
    let own = send(
        &relay,
        TOKEN,
        &[
            ("appointment_id", "7"),
            ("client_name", "Анна Петрова"),
            ("client_phone", "8 (912) 345-67-89"),
            ("utm_content", "vesna-42"),
        ],
    );
    relay.wait_status(own, "delivered");
    let Some(browser) = Browser::start(&format!("http://{}", relay.admin), "ru") else {
        return;
    };
    sign_in(&browser, VIEWER);
    assert_eq!(browser.count("section.card"), 1);
    assert!(!browser.text("body").contains("salon-b"), "no other processing's name");
    // Regression: viewers could copy the webhook address with its token;
    // they see it only with `show_address = true`.
    assert_eq!(browser.count("input.copyable"), 0, "no webhook address");
    assert!(!browser
        .js("return document.documentElement.outerHTML")
        .to_string()
        .contains(TOKEN));
    browser.goto("/operations");
    assert_eq!(browser.count("#rows tr"), 1);
    assert_eq!(browser.count("form.replay"), 0, "no replay for viewers");
    for path in [
        format!("/operations/{hidden}"),
        "/fields/salon-b".to_string(),
        "/operations?processing=salon-b".to_string(),
        "/operations?q=b-only".to_string(),
    ] {
        browser.goto(&path);
        let body = browser.text("body");
        assert!(
            !body.contains("b-only") && !body.contains(&relay.url(&format!("/hook/{TOKEN_B}"))),
            "{path}: {body}"
        );
    }
    browser.goto(&format!("/operations/{hidden}"));
    browser.wait_text("Не найдено");
    browser.goto(&format!("/operations/{own}"));
    // A replay posted by hand, with the session's own CSRF token, is still refused.
    let status = browser.js_async(
        "const done = arguments[arguments.length - 1];
         const csrf = document.querySelector('input[name=csrf]').value;
         fetch(location.pathname + '/replay', {method: 'POST', body: new URLSearchParams({csrf})})
           .then(r => done(r.status));",
    );
    assert_eq!(status, 403);
    assert_eq!(receiver.requests().len(), 2, "nothing was sent again");
    browser.goto("/fields/salon-a?event=appointment_paid");
    let snippets = browser.js("return Array.from(document.querySelectorAll('td.snippet input')).map(i => i.value)");
    assert_eq!(
        snippets,
        serde_json::json!([
            "{{appointment_id}}",
            "{{client_name}}",
            "{{client_phone | phone}}",
            "{{utm_content}}"
        ]),
        "a template snippet for each field, the phone through `phone`"
    );
    assert_eq!(
        browser.count("textarea.copyable"),
        0,
        "no Klientiks address: it holds the token"
    );
    browser.screenshot("fields-ru");
}

/// Without a browser: the security headers, the brake on guessing, and a
/// form without the session's CSRF token.
#[test]
fn console_answers_carry_its_protections() {
    let receiver = Receiver::start();
    let relay = start(&receiver);
    let login = format!("http://{}/login", relay.admin);
    let response = client().get(&login).call().unwrap();
    let csp = response
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(response.headers().get("x-frame-options").unwrap(), "DENY");
    let post = |token: &str| {
        let no_redirects = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .new_agent();
        no_redirects
            .post(&login)
            .content_type("application/x-www-form-urlencoded")
            .send(format!("token={token}"))
            .unwrap()
    };
    let signed = post(ADMIN);
    assert_eq!(signed.status(), 303);
    let cookie = signed
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let forged = client()
        .post(&format!("http://{}/logout", relay.admin))
        .header("Cookie", &session)
        .content_type("application/x-www-form-urlencoded")
        .send("csrf=forged")
        .unwrap();
    assert_eq!(forged.status(), 403, "a form without the session's CSRF token");
    for _ in 0..5 {
        assert_eq!(post("wrong-token-wrong-token-wrong").status(), 401);
    }
    let braked = post(ADMIN);
    assert_eq!(braked.status(), 429, "even the right token, once braked");
    assert!(braked.headers().get("retry-after").is_some());
    assert!(!relay.log_text().contains(ADMIN), "tokens are never logged");
}
