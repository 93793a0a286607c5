//! Destination kinds against local fakes of their platforms
//! (`support::platforms`): each kind's request, its pacing, and every
//! documented refusal, through the real binary.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::platforms::{Bitrix24, Chat, Portal, Telegram};
use crate::support::{config_text, console_get, console_session, get, wait_until, Relay, TOKEN};

const BOT: &str = "123456:AAEhBP0av28eBxs3cr3tZZZZ";
const CODE: &str = "x7k2s3cr3t9q";
const ADMIN: &str = "admin-token-0123456789abcdefXYZ";

/// The relay on `processings`, with the console open to [`ADMIN`].
fn start(processings: &str) -> Relay {
    let text = config_text(processings).replace(
        "max_body_bytes = 1024\n",
        &format!("max_body_bytes = 1024\nadmin_token = \"{ADMIN}\"\n"),
    );
    Relay::start_in(tempfile::tempdir().unwrap(), &text)
}

/// A processing named `name` with one action of `kind`'s keys, its token
/// `token-<name>` padded to length.
fn processing(name: &str, action: &str) -> String {
    format!(
        "[[processing]]\nname = \"{name}\"\ntoken = \"{}\"\n\n[[processing.action]]\nname = \"{name}-action\"\n{action}\n",
        token(name)
    )
}

fn token(name: &str) -> String {
    format!("{name}-{TOKEN}")
}

fn telegram_action(fake: &Telegram, chat: &str, text: &str) -> String {
    format!(
        "kind = \"telegram\"\nbot_token = \"{BOT}\"\napi_url = \"{}\"\nchat_id = \"{chat}\"\nparse_mode = \"HTML\"\ntext = \"\"\"{text}\"\"\"\n",
        fake.api_url()
    )
}

fn send(relay: &Relay, name: &str, query: &str) -> i64 {
    let (status, id, body) = get(&relay.url(&format!("/hook/{}?{query}", token(name))));
    assert_eq!(status, 200, "{body}");
    id.unwrap()
}

fn attempts(op: &Value) -> Vec<Value> {
    op["deliveries"][0]["attempts"].as_array().unwrap().clone()
}

fn started(attempt: &Value) -> SystemTime {
    humantime::parse_rfc3339(attempt["started_at"].as_str().unwrap()).unwrap()
}

/// Messages reach the chat escaped, one a second per chat even from two
/// processings sharing the bot, so Telegram never has to say 429; a text
/// past 4 096 characters arrives cut with its HTML whole; the message id
/// is kept; the token shows nowhere.
#[test]
fn telegram_messages_arrive_paced_escaped_and_whole() {
    let fake = Telegram::start(BOT, &[("555", Chat::Open)]);
    let long = "я".repeat(5000);
    let relay = start(&format!(
        "{}\n{}",
        processing(
            "bookings",
            &telegram_action(&fake, "555", "<b>Запись</b>: {{client_name | html}}")
        ),
        processing("long", &telegram_action(&fake, "555", &format!("<i>{long}</i>")))
    ));
    let ids: Vec<i64> = (0..3)
        .map(|i| {
            send(
                &relay,
                "bookings",
                &format!("client_name=%D0%90%D0%BD%D0%BD%D0%B0+%3CVIP%3E+{i}"),
            )
        })
        .chain([send(&relay, "long", "x=1")])
        .collect();
    for id in &ids {
        relay.wait_status(*id, "delivered");
    }
    let messages = fake.messages();
    assert_eq!(messages.len(), 4);
    assert!(
        fake.answers().iter().all(|(status, _)| *status == 200),
        "{:?}",
        fake.answers()
    );
    for pair in messages.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(900),
            "two messages to one chat {gap:?} apart"
        );
    }
    let first = messages
        .iter()
        .find(|m| m.text.contains("VIP> 0") || m.text.contains("VIP&gt; 0"));
    assert_eq!(first.unwrap().text, "<b>Запись</b>: Анна &lt;VIP&gt; 0");
    assert_eq!(first.unwrap().parse_mode.as_deref(), Some("HTML"));
    let cut = messages.iter().find(|m| m.text.starts_with("<i>")).unwrap();
    assert!(cut.text.encode_utf16().count() <= 4096);
    assert!(cut.text.ends_with("</i>\n[…]"), "{}", &cut.text[cut.text.len() - 20..]);

    let op = relay.show(ids[0]);
    let accepted = &attempts(&op)[0]["verdict"];
    assert_eq!(accepted["kind"], "accepted");
    assert!(accepted["kept"].as_i64().is_some(), "{accepted}");
    let shown = String::from_utf8(relay.cli(&["show", &ids[0].to_string()]).stdout).unwrap();
    assert!(shown.contains("bot123456:MASKED/sendMessage"), "{shown}");
    assert!(shown.contains("accepted, result"), "{shown}");
    for text in [shown, relay.log_text(), op.to_string()] {
        assert!(!text.contains("s3cr3t"), "the bot token leaked: {text}");
    }
}

/// A blocked bot and a group that became a supergroup fail at once, each
/// saying what to do (the new chat id to put in the config); a 429 waits
/// the `retry_after` Telegram asked for.
#[test]
fn telegram_refusals_say_what_to_do() {
    let fake = Telegram::start(
        BOT,
        &[
            ("-100111", Chat::Blocked),
            ("-200", Chat::Migrated(-100222)),
            ("777", Chat::Open),
        ],
    );
    let relay = start(&format!(
        "{}\n{}\n{}",
        processing("blocked", &telegram_action(&fake, "-100111", "x")),
        processing("migrated", &telegram_action(&fake, "-200", "x")),
        processing("flood", &telegram_action(&fake, "777", "x")),
    ));
    fake.flood_next(2);
    let flood = send(&relay, "flood", "a=1");
    let blocked = send(&relay, "blocked", "a=1");
    let migrated = send(&relay, "migrated", "a=1");

    let op = relay.wait_status(blocked, "failed");
    assert_eq!(attempts(&op).len(), 1, "a blocked bot is not retried");
    let error = op["deliveries"][0]["last_error"].as_str().unwrap();
    assert!(error.contains("Forbidden: bot was blocked by the user"), "{error}");
    assert!(error.contains("add the bot to the chat again, then replay"), "{error}");

    let op = relay.wait_status(migrated, "failed");
    assert_eq!(attempts(&op).len(), 1);
    let error = op["deliveries"][0]["last_error"].as_str().unwrap();
    assert!(error.contains(r#"set chat_id = "-100222" in this action"#), "{error}");

    let op = relay.wait_status(flood, "delivered");
    let tries = attempts(&op);
    assert_eq!(tries.len(), 2);
    assert_eq!(tries[0]["http_status"], 429);
    let gap = started(&tries[1]).duration_since(started(&tries[0])).unwrap();
    assert!(
        gap >= Duration::from_secs(2),
        "retried after {gap:?}, Telegram asked for 2 s"
    );

    // The console says it in Russian.
    let cookie = console_session(&relay, ADMIN);
    let (_, page) = console_get(&relay, &cookie, &format!("/operations/{migrated}?lang=ru"));
    assert!(
        page.contains("впишите chat_id = &quot;-100222&quot;") || page.contains("впишите chat_id = \"-100222\""),
        "{page}"
    );
}

fn bitrix_action(fake: &Bitrix24, extra: &str) -> String {
    format!(
        "kind = \"bitrix24\"\nwebhook_url = \"{}\"\n{extra}\nfields = {{ TITLE = \"Запись {{{{client_name}}}}\", NAME = \"{{{{client_name}}}}\", OPENED = true, PHONE = [{{ VALUE = \"{{{{client_phone | phone}}}}\", VALUE_TYPE = \"WORK\" }}] }}\n",
        fake.webhook_url(1, CODE)
    )
}

/// A lead per event, as JSON and as nested form keys alike; the lead's
/// id is kept with the attempt and shown; the webhook's code shows nowhere.
#[test]
fn bitrix_leads_are_added_and_their_ids_kept() {
    let fake = Bitrix24::start(1, CODE);
    let relay = start(&format!(
        "{}\n{}",
        processing("json", &bitrix_action(&fake, "")),
        processing("form", &bitrix_action(&fake, "format = \"form\"")),
    ));
    let query = "client_name=%D0%90%D0%BD%D0%BD%D0%B0&client_phone=8+916+123-45-67";
    let json = send(&relay, "json", query);
    relay.wait_status(json, "delivered");
    let form = send(&relay, "form", query);
    relay.wait_status(form, "delivered");
    let leads = fake.leads();
    assert_eq!(leads.len(), 2);
    for lead in &leads {
        assert_eq!(lead.method, "crm.lead.add");
        assert_eq!(lead.fields["TITLE"], "Запись Анна");
        assert_eq!(lead.fields["OPENED"], "Y");
        assert_eq!(lead.fields["PHONE"][0]["VALUE"], "+79161234567");
        assert_eq!(lead.fields["PHONE"][0]["VALUE_TYPE"], "WORK");
    }
    let op = relay.show(json);
    assert_eq!(attempts(&op)[0]["verdict"]["kept"], leads[0].id);
    let shown = String::from_utf8(relay.cli(&["show", &json.to_string()]).stdout).unwrap();
    assert!(shown.contains(&format!("accepted, result {}", leads[0].id)), "{shown}");
    assert!(shown.contains("/rest/1/MASKED/crm.lead.add.json"), "{shown}");
    let cookie = console_session(&relay, ADMIN);
    let (_, page) = console_get(&relay, &cookie, &format!("/operations/{form}?lang=ru"));
    assert!(
        page.contains(&format!("ответ 200, результат {}", leads[1].id)),
        "{page}"
    );
    for text in [shown, page, relay.log_text(), op.to_string()] {
        assert!(!text.contains("s3cr3t"), "the webhook's code leaked: {text}");
    }
}

/// Each documented refusal: a validation error and a dead webhook fail at
/// once with Bitrix24's words and what to do; an `error` on a 200, an
/// overload block and the operating block are retried, the last not
/// before the time Bitrix24 named.
#[test]
fn bitrix_refusals_and_blocks() {
    let fake = Bitrix24::start(1, CODE);
    let dead = format!(
        "kind = \"bitrix24\"\nwebhook_url = \"{}\"\nfields = {{ TITLE = \"x\" }}\n",
        fake.webhook_url(1, "revoked0code")
    );
    let relay = start(&format!(
        "{}\n{}\n{}",
        processing("lead", &bitrix_action(&fake, "")),
        processing("dead", &dead),
        processing("scope", &bitrix_action(&fake, "")),
    ));
    // A validation error (no title): permanent, in Bitrix24's words.
    fake.reject("NAME", "Плохое");
    let invalid = send(
        &relay,
        "lead",
        "client_name=%D0%9F%D0%BB%D0%BE%D1%85%D0%BE%D0%B5&client_phone=1",
    );
    let op = relay.wait_status(invalid, "failed");
    assert_eq!(attempts(&op).len(), 1);
    let error = op["deliveries"][0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("Bitrix24 refused it: Неверное значение поля \"NAME\""),
        "{error}"
    );

    let op = relay.wait_status(send(&relay, "dead", "a=1"), "failed");
    assert_eq!(attempts(&op).len(), 1);
    let error = op["deliveries"][0]["last_error"].as_str().unwrap();
    assert!(error.contains("Make a new incoming webhook"), "{error}");

    fake.next(Portal::NoScope);
    let op = relay.wait_status(send(&relay, "scope", "client_name=a&client_phone=1"), "failed");
    let error = op["deliveries"][0]["last_error"].as_str().unwrap();
    assert!(error.contains("CRM (crm) permission"), "{error}");

    fake.next(Portal::ErrorOn200);
    fake.next(Portal::Overload);
    let op = relay.wait_status(send(&relay, "lead", "client_name=a&client_phone=1"), "delivered");
    let tries = attempts(&op);
    let kinds: Vec<&str> = tries.iter().map(|a| a["verdict"]["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["json_retry", "json_retry", "accepted"]);
    assert!(
        tries[1]["error"]
            .as_str()
            .unwrap()
            .contains("blocked the webhook for overload"),
        "{}",
        tries[1]
    );

    let reset_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 2;
    fake.next(Portal::Operating(reset_at as i64));
    let op = relay.wait_status(send(&relay, "lead", "client_name=b&client_phone=1"), "delivered");
    let tries = attempts(&op);
    assert_eq!(tries[0]["http_status"], 429);
    let second = started(&tries[1]).duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!(second >= reset_at, "retried at {second}, before {reset_at}");
}

/// 60 leads at once: the portal's bucket (50, then 2 a second) is never
/// overrun, so Bitrix24 never answers QUERY_LIMIT_EXCEEDED, and all arrive.
#[test]
fn bitrix_bucket_is_never_overrun() {
    let fake = Bitrix24::start(1, CODE);
    let relay = start(&processing("lead", &bitrix_action(&fake, "")));
    for i in 0..60 {
        send(&relay, "lead", &format!("client_name=n{i}&client_phone=1"));
    }
    assert!(
        wait_until(|| fake.leads().len() == 60),
        "{} leads, answers {:?}",
        fake.leads().len(),
        fake.answers()
    );
    assert!(!fake.answers().contains(&503), "{:?}", fake.answers());
    let leads = fake.leads();
    let span = leads[59].at - leads[0].at;
    assert!(
        span >= Duration::from_secs(5),
        "60 leads in {span:?}: faster than the bucket drains"
    );
}

/// `try` renders each kind (its URL masked, its body as sent) and `check`
/// shows no secret; `try --send` sends one for real and judges the answer
/// by the kind's rules.
#[test]
fn try_renders_each_kind_and_sends_one() {
    let telegram = Telegram::start(BOT, &[("555", Chat::Open)]);
    let portal = Bitrix24::start(1, CODE);
    let relay = start(&format!(
        "{}\n{}",
        processing(
            "tg",
            &telegram_action(&telegram, "555", "Запись: {{client_name | html}}")
        ),
        processing("lead", &bitrix_action(&portal, "")),
    ));
    let text = String::from_utf8(relay.cli(&["try", "tg", "client_name=Анна <VIP>"]).stdout).unwrap();
    assert!(text.contains("POST http://"), "{text}");
    assert!(text.contains("/bot123456:MASKED/sendMessage"), "{text}");
    assert!(text.contains(r#""text":"Запись: Анна &lt;VIP&gt;""#), "{text}");
    let text = String::from_utf8(
        relay
            .cli(&["try", "lead", "client_name=Анна", "client_phone=89161234567"])
            .stdout,
    )
    .unwrap();
    assert!(text.contains("/rest/1/MASKED/crm.lead.add.json"), "{text}");
    assert!(text.contains(r#""VALUE":"+79161234567""#), "{text}");
    let check = relay.cli(&["check"]);
    let checked = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    for shown in [&text, &checked] {
        assert!(!shown.contains("s3cr3t"), "a secret leaked: {shown}");
    }
    assert!(
        telegram.messages().is_empty() && portal.leads().is_empty(),
        "try sends nothing"
    );

    let sent = relay.cli(&["try", "tg", "client_name=Анна", "--send", "tg-action", "--yes"]);
    let stdout = String::from_utf8_lossy(&sent.stdout);
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    assert!(stdout.contains("verdict: answered 200: accepted, result 1"), "{stdout}");
    assert_eq!(telegram.messages()[0].text, "Запись: Анна");
}

/// The lead a booking made is updated by the paid visit: the booking's
/// action remembers the lead's id under the appointment, the visit's
/// recalls it. A visit whose booking's lead is not made yet waits for it,
/// and goes once it is.
#[test]
fn a_later_event_updates_the_lead_an_earlier_one_made() {
    let fake = Bitrix24::start(1, CODE);
    let booking = format!(
        "kind = \"bitrix24\"\nwebhook_url = \"{}\"\nremember = \"{{{{appointment_id}}}}\"\nfields = {{ TITLE = \"Запись {{{{appointment_id}}}}\" }}\n",
        fake.webhook_url(1, CODE)
    );
    let paid = format!(
        "kind = \"bitrix24\"\nwebhook_url = \"{}\"\nmethod = \"crm.lead.update\"\nretry = {{ attempts = 100 }}\n\
         params = {{ id = \"{{{{appointment_id | recall('bookings/bookings-action')}}}}\" }}\n\
         fields = {{ STATUS_ID = \"CONVERTED\", OPPORTUNITY = \"{{{{total}}}}\" }}\n",
        fake.webhook_url(1, CODE)
    );
    let relay = start(&format!(
        "{}\n{}",
        processing("bookings", &booking),
        processing("paid", &paid)
    ));
    let made = send(&relay, "bookings", "appointment_id=A1");
    relay.wait_status(made, "delivered");
    let lead = fake.leads()[0].id;
    let tried = String::from_utf8(relay.cli(&["try", "paid", "appointment_id=A1", "total=1500"]).stdout).unwrap();
    assert!(tried.contains("<recall bookings/bookings-action for A1>"), "{tried}");

    let visit = send(&relay, "paid", "appointment_id=A1&total=1500");
    relay.wait_status(visit, "delivered");
    let updates = fake.updates();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].id, lead);
    assert_eq!(updates[0].fields["STATUS_ID"], "CONVERTED");

    // The visit first, its booking after: the visit waits for the lead.
    let early = send(&relay, "paid", "appointment_id=A2&total=900");
    assert!(
        wait_until(|| relay.show(early)["deliveries"][0]["attempts"]
            .as_array()
            .is_some_and(|a| !a.is_empty())),
        "the visit was not tried"
    );
    let waiting = relay.show(early);
    let error = waiting["deliveries"][0]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("not sent yet: it needs what `bookings/bookings-action` keeps for `A2`"),
        "{error}"
    );
    let second = send(&relay, "bookings", "appointment_id=A2");
    relay.wait_status(second, "delivered");
    relay.wait_status(early, "delivered");
    let updates = fake.updates();
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[1].id, fake.leads()[1].id);
}

/// The rest of Telegram's refusals: a token that is not the bot's (401),
/// a chat the bot does not know (400 chat not found) and HTML Telegram
/// cannot parse (an unclosed tag written in the template): each fails at
/// once in Telegram's words, the token one saying what to do.
#[test]
fn telegram_wrong_token_unknown_chat_and_bad_html_fail_at_once() {
    let fake = Telegram::start(BOT, &[("555", Chat::Open)]);
    let wrong = telegram_action(&fake, "555", "x").replace(BOT, "123456:AAEotherS3cr3tZZZZZZZZZZ");
    let relay = start(&format!(
        "{}\n{}\n{}",
        processing("wrong", &wrong),
        processing("unknown", &telegram_action(&fake, "999", "x")),
        processing(
            "html",
            &telegram_action(&fake, "555", "<b>Запись {{client_name | html}}")
        ),
    ));
    let error = |name: &str| {
        let op = relay.wait_status(send(&relay, name, "client_name=a"), "failed");
        assert_eq!(attempts(&op).len(), 1, "{name} is not retried");
        op["deliveries"][0]["last_error"].as_str().unwrap().to_string()
    };
    let wrong = error("wrong");
    assert!(
        wrong.contains("Telegram knows no bot by this bot_token (401): Unauthorized"),
        "{wrong}"
    );
    assert!(wrong.contains("@BotFather"), "{wrong}");
    let unknown = error("unknown");
    assert!(
        unknown.contains("Telegram refused it: Bad Request: chat not found"),
        "{unknown}"
    );
    let html = error("html");
    assert!(
        html.contains("Telegram refused it: Bad Request: can't parse entities"),
        "{html}"
    );
    assert!(fake.messages().is_empty());
    assert!(!relay.log_text().contains("S3cr3t"), "the token leaked");
}
