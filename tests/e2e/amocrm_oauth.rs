//! amoCRM's OAuth2 against the fake account: signing in with
//! `hookrelay amocrm authorize`, tokens refreshed ahead of expiry one at a
//! time and rotated, a 401 refreshed once, a dead refresh token saying what
//! to do, and a kill -9 right after a refresh.

use std::time::{Duration, Instant};

use crate::support::amocrm::{Account, AmoCrm};
use crate::support::{config_text, get, wait_until, Relay, TOKEN};

const SECRET: &str = "client-s3cr3t-value";
const REDIRECT: &str = "https://salon.example/amo";

fn start(fake: &AmoCrm) -> Relay {
    let processing = format!(
        "[[processing]]\nname = \"salon\"\ntoken = \"salon-{TOKEN}\"\n\n[[processing.action]]\nname = \"amo\"\n\
         kind = \"amocrm\"\napi_url = \"{}\"\nclient_id = \"cid-1\"\nclient_secret = \"{SECRET}\"\nredirect_uri = \"{REDIRECT}\"\n\
         timeout = \"1s\"\nkey_field = 777\ncontact = {{ name = \"{{{{client_name}}}}\" }}\nlead = {{ name = \"x\", status_id = 142 }}\n",
        fake.api_url()
    );
    Relay::start_in(tempfile::tempdir().unwrap(), &config_text(&processing))
}

fn send(relay: &Relay, name: &str) -> i64 {
    let (status, id, body) = get(&relay.url(&format!("/hook/salon-{TOKEN}?client_name={name}")));
    assert_eq!(status, 200, "{body}");
    id.unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Before signing in, a lead fails saying what to run; `authorize` takes
/// the code once; then leads go, the token is refreshed ahead of its
/// expiry once for five leads at a time, a revoked token is refreshed and
/// the lead sent in the same attempt, and a dead refresh token asks for a
/// new authorization. No refresh token is ever presented twice.
#[test]
fn signs_in_refreshes_one_at_a_time_and_rotates() {
    let fake = AmoCrm::start_oauth("cid-1", SECRET, REDIRECT, "code-1", Duration::from_secs(4));
    let relay = start(&fake);
    let early = send(&relay, "early");
    let op = relay.wait_status(early, "failed");
    let error = op["deliveries"][0]["last_error"].as_str().unwrap().to_string();
    assert!(
        error.contains("run `hookrelay amocrm authorize salon amo CODE`"),
        "{error}"
    );

    let signed = relay.cli(&["amocrm", "authorize", "salon", "amo", "code-1"]);
    assert!(signed.status.success(), "{}", stdout(&signed));
    // Through the daemon's control socket on SQLite; PostgreSQL takes
    // the write from the command itself.
    let how = if crate::support::on_postgres() {
        "signed in to amoCRM;"
    } else {
        "signed in to amoCRM, by the running daemon"
    };
    assert!(stdout(&signed).contains(how), "{}", stdout(&signed));
    let signed_at = Instant::now();
    let again = relay.cli(&["amocrm", "authorize", "salon", "amo", "code-1"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stdout(&again).contains("amoCRM refused the code"), "{}", stdout(&again));

    let replayed = relay.cli(&["replay", &early.to_string()]);
    assert!(replayed.status.success(), "{}", stdout(&replayed));
    assert!(wait_until(|| fake.leads().len() == 1));
    assert_eq!(fake.refreshes(), (0, 0), "a fresh token is not refreshed");

    // Within the token's last half: the next leads refresh it, once.
    while signed_at.elapsed() < Duration::from_millis(2300) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let ids: Vec<i64> = (0..5).map(|i| send(&relay, &format!("n{i}"))).collect();
    for id in ids {
        relay.wait_status(id, "delivered");
    }
    // The 5 take 2.5 s at the account's pace: the new token can reach its
    // own last half meanwhile, so once or twice; never a spent one again.
    let (refreshes, reused) = fake.refreshes();
    assert!((1..=2).contains(&refreshes), "{refreshes} refreshes");
    assert_eq!(reused, 0, "no refresh token presented twice");

    fake.revoke_access();
    let op = relay.wait_status(send(&relay, "revoked"), "delivered");
    assert_eq!(
        op["deliveries"][0]["attempts"].as_array().unwrap().len(),
        1,
        "refreshed and sent in one attempt"
    );
    assert_eq!(fake.refreshes(), (refreshes + 1, 0));

    fake.revoke_all();
    let op = relay.wait_status(send(&relay, "dead"), "failed");
    let error = op["deliveries"][0]["last_error"].as_str().unwrap().to_string();
    assert!(error.contains("the refresh token was refused"), "{error}");
    assert!(error.contains("hookrelay amocrm authorize salon amo CODE"), "{error}");
    for text in [relay.log_text(), op.to_string()] {
        assert!(
            !text.contains(SECRET) && !text.contains("refresh-") && !text.contains("access-"),
            "{text}"
        );
    }
}

/// A kill -9 after a refresh was committed, while amoCRM made the lead but
/// had not answered: the restarted daemon uses the new tokens (the old
/// ones are dead), finds the lead by its key and makes no second one.
#[test]
fn a_kill_after_a_refresh_loses_neither_the_tokens_nor_the_lead() {
    let fake = AmoCrm::start_oauth("cid-1", SECRET, REDIRECT, "code-1", Duration::from_secs(4));
    let mut relay = start(&fake);
    let signed = relay.cli(&["amocrm", "authorize", "salon", "amo", "code-1"]);
    assert!(signed.status.success(), "{}", stdout(&signed));
    let signed_at = Instant::now();
    while signed_at.elapsed() < Duration::from_millis(2300) {
        std::thread::sleep(Duration::from_millis(50));
    }
    fake.next(Account::Slow(Duration::from_secs(30)));
    let id = send(&relay, "slow");
    assert!(wait_until(|| fake.leads().len() == 1), "{:?}", fake.calls());
    assert_eq!(fake.refreshes(), (1, 0), "refreshed before the lead went");
    relay.kill9();
    relay.restart();
    relay.wait_status(id, "delivered");
    assert_eq!(fake.leads().len(), 1, "no second lead: {:?}", fake.calls());
    let (refreshes, reused) = fake.refreshes();
    assert_eq!(reused, 0, "the restarted daemon never presented a spent refresh token");
    assert!(refreshes >= 1);
}

/// A config whose account is not paced (`[[receiver]] rate = "1000/s"`),
/// so leads go to amoCRM at once from every worker.
fn unpaced(fake: &AmoCrm) -> String {
    let processing = format!(
        "[[processing]]\nname = \"salon\"\ntoken = \"salon-{TOKEN}\"\n\n[[processing.action]]\nname = \"amo\"\n\
         kind = \"amocrm\"\napi_url = \"{0}\"\nclient_id = \"cid-1\"\nclient_secret = \"{SECRET}\"\nredirect_uri = \"{REDIRECT}\"\n\
         contact = {{ name = \"{{{{client_name}}}}\" }}\nlead = {{ name = \"x\", status_id = 142 }}\n\n\
         [[receiver]]\nurl = \"{0}\"\nrate = \"1000/s\"\nconcurrency = 8\n",
        fake.api_url()
    );
    config_text(&processing).replace("workers = 4", "workers = 8")
}

/// Leads sent at once by every worker, of one daemon and then (on
/// PostgreSQL) of two sharing the database, all want the token while it
/// is due for a refresh: it is refreshed once, and no refresh token is
/// presented twice.
#[test]
fn many_workers_and_two_instances_refresh_once() {
    let fake = AmoCrm::start_oauth("cid-1", SECRET, REDIRECT, "code-1", Duration::from_secs(6));
    fake.unlimited();
    fake.slow_refresh(Duration::from_millis(500));
    let text = unpaced(&fake);
    let first = Relay::start_in(tempfile::tempdir().unwrap(), &text);
    let second = crate::support::on_postgres().then(|| Relay::start_in(tempfile::tempdir().unwrap(), &text));
    let signed = first.cli(&["amocrm", "authorize", "salon", "amo", "code-1"]);
    assert!(signed.status.success(), "{}", stdout(&signed));
    let signed_at = Instant::now();
    while signed_at.elapsed() < Duration::from_millis(3300) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let relays: Vec<&Relay> = std::iter::once(&first).chain(second.as_ref()).collect();
    let ids: Vec<(usize, i64)> = (0..12)
        .map(|i| {
            let which = i % relays.len();
            let (status, id, body) = get(&relays[which].url(&format!("/hook/salon-{TOKEN}?client_name=n{i}")));
            assert_eq!(status, 200, "{body}");
            (which, id.unwrap())
        })
        .collect();
    for (which, id) in ids {
        relays[which].wait_status(id, "delivered");
    }
    assert_eq!(fake.leads().len(), 12);
    assert_eq!(
        fake.refreshes(),
        (1, 0),
        "one refresh for all of them; no refresh token presented twice"
    );
}
