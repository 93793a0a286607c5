//! The amocrm kind against a local fake account (`support::platforms::AmoCrm`):
//! a lead with its contact, made once even when an answer is lost, every
//! documented refusal, the account's pace, and a lapsing token.

use std::time::Duration;

use serde_json::Value;

use crate::support::amocrm::{Account, AmoCrm};
use crate::support::{config_text, get, wait_until, Relay, TOKEN};

const ACCESS: &str = "long-lived-s3cr3t-token";

fn start(actions: &[(&str, String)]) -> Relay {
    let processings: String = actions
        .iter()
        .map(|(name, action)| {
            format!(
                "[[processing]]\nname = \"{name}\"\ntoken = \"{name}-{TOKEN}\"\n\n[[processing.action]]\nname = \"amo\"\n{action}\n"
            )
        })
        .collect();
    Relay::start_in(tempfile::tempdir().unwrap(), &config_text(&processings))
}

fn amo_action(fake: &AmoCrm, token: &str, status_id: i64) -> String {
    format!(
        "kind = \"amocrm\"\napi_url = \"{}\"\naccess_token = \"{token}\"\ntimeout = \"1s\"\nkey_field = 777\n\
         tags = [\"Klientiks\"]\n\
         contact = {{ name = \"{{{{client_name}}}}\", phone = \"{{{{client_phone | phone}}}}\", email = \"{{{{client_email | default('')}}}}\" }}\n\
         lead = {{ name = \"Запись {{{{client_name}}}}\", price = \"{{{{total | default('')}}}}\", pipeline_id = 55, status_id = {status_id} }}\n\
         lead_fields = {{ 321 = \"{{{{utm_content | default('')}}}}\" }}\n",
        fake.api_url()
    )
}

fn send(relay: &Relay, name: &str, query: &str) -> i64 {
    let (status, id, body) = get(&relay.url(&format!("/hook/{name}-{TOKEN}?{query}")));
    assert_eq!(status, 200, "{body}");
    id.unwrap()
}

fn attempts(op: &Value) -> Vec<Value> {
    op["deliveries"][0]["attempts"].as_array().unwrap().clone()
}

/// A lead with its contact (phone and email as PHONE and EMAIL, WORK),
/// price as a number, pipeline, status, a custom field and the tags. When
/// amoCRM makes the lead but its answer never comes, the retry looks the
/// lead up by the delivery's key and takes it: one lead, not two.
#[test]
fn a_lead_is_made_once_even_when_its_answer_is_lost() {
    let fake = AmoCrm::start(ACCESS, &[142, 143]);
    let relay = start(&[("salon", amo_action(&fake, ACCESS, 142))]);
    let first = send(
        &relay,
        "salon",
        "client_name=%D0%90%D0%BD%D0%BD%D0%B0&client_phone=8+916+123-45-67&total=1+500,00&utm_content=ad-7",
    );
    let op = relay.wait_status(first, "delivered");
    let leads = fake.leads();
    assert_eq!(leads.len(), 1);
    let lead = &leads[0].lead;
    assert_eq!(lead["name"], "Запись Анна");
    assert_eq!(lead["price"], 1500);
    assert_eq!(
        (lead["pipeline_id"].clone(), lead["status_id"].clone()),
        (55.into(), 142.into())
    );
    assert_eq!(
        lead["custom_fields_values"][0],
        serde_json::json!({"field_id": 321, "values": [{"value": "ad-7"}]})
    );
    assert_eq!(lead["custom_fields_values"][1]["field_id"], 777);
    assert!(lead["custom_fields_values"][1]["values"][0]["value"]
        .as_str()
        .unwrap()
        .starts_with("hookrelay-"));
    assert_eq!(lead["_embedded"]["tags"][0]["name"], "Klientiks");
    let contact = &lead["_embedded"]["contacts"][0];
    assert_eq!(contact["name"], "Анна");
    assert_eq!(
        contact["custom_fields_values"][0],
        serde_json::json!({"field_code": "PHONE", "values": [{"value": "+79161234567", "enum_code": "WORK"}]})
    );
    assert_eq!(
        contact["custom_fields_values"].as_array().unwrap().len(),
        1,
        "an empty email is left out"
    );
    assert_eq!(attempts(&op)[0]["verdict"]["kept"], leads[0].id);

    fake.next(Account::Slow(Duration::from_secs(3)));
    let second = send(&relay, "salon", "client_name=Bob&client_phone=1");
    let op = relay.wait_status(second, "delivered");
    let tries = attempts(&op);
    assert_eq!(tries.len(), 2, "{tries:#?}");
    assert!(
        tries[0]["http_status"].is_null(),
        "the first answer was lost: {}",
        tries[0]
    );
    assert!(
        tries[1]["request"]
            .as_str()
            .unwrap()
            .contains("did an earlier attempt make the lead?"),
        "{}",
        tries[1]
    );
    let leads = fake.leads();
    assert_eq!(leads.len(), 2, "one lead per event, not two for the lost answer");
    assert_eq!(tries[1]["verdict"]["kept"], leads[1].id);
    let posts = fake.calls().iter().filter(|(m, _, _)| m == "POST").count();
    assert_eq!(posts, 2, "{:?}", fake.calls());
    for text in [relay.log_text(), op.to_string()] {
        assert!(!text.contains("s3cr3t"), "the token leaked: {text}");
    }
}

/// A revoked token, a server address the account does not allow (code
/// 113) and a validation error fail at once, each saying what to do.
#[test]
fn refusals_say_what_to_do() {
    let fake = AmoCrm::start(ACCESS, &[142]);
    let relay = start(&[
        ("revoked", amo_action(&fake, "an-old-s3cr3t", 142)),
        ("blocked", amo_action(&fake, ACCESS, 142)),
        ("invalid", amo_action(&fake, ACCESS, 999)),
    ]);
    let error = |name: &str| {
        let op = relay.wait_status(send(&relay, name, "client_name=a&client_phone=1"), "failed");
        assert_eq!(attempts(&op).len(), 1, "{name} is not retried");
        op["deliveries"][0]["last_error"].as_str().unwrap().to_string()
    };
    let revoked = error("revoked");
    assert!(
        revoked.contains("make a new one in the integration's settings"),
        "{revoked}"
    );
    fake.next(Account::AddressNotAllowed);
    let blocked = error("blocked");
    assert!(
        blocked.contains("refuses calls from this server's address: 127.0.0.1 (code 113)"),
        "{blocked}"
    );
    let invalid = error("invalid");
    assert!(
        invalid.contains("amoCRM did not accept the data: The value you selected is not a valid choice."),
        "{invalid}"
    );
    assert!(fake.leads().is_empty());
}

/// 10 leads at once, each looked up then sent (`key_field`), go at 2 a
/// second, 4 requests: amoCRM (7 a second) never has to answer 429.
#[test]
fn the_account_is_never_called_too_fast() {
    let fake = AmoCrm::start(ACCESS, &[142]);
    let relay = start(&[("salon", amo_action(&fake, ACCESS, 142))]);
    for i in 0..10 {
        send(&relay, "salon", &format!("client_name=n{i}&client_phone=1"));
    }
    assert!(wait_until(|| fake.leads().len() == 10), "{:?}", fake.calls());
    assert!(
        fake.calls().iter().all(|(_, _, status)| *status != 429),
        "{:?}",
        fake.calls()
    );
    let leads = fake.leads();
    assert!(leads[9].at - leads[0].at >= Duration::from_secs(4));
}

/// A long-lived token that lapses within two weeks: `check` warns, the
/// daemon logs it and queues the daily notice.
#[test]
fn a_lapsing_token_is_told() {
    use base64::Engine;
    let part = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3 * 86_400;
    let jwt = format!(
        "{}.{}.c2lnbmF0dXJl",
        part(r#"{"alg":"RS256","typ":"JWT"}"#),
        part(&format!(r#"{{"exp":{exp}}}"#))
    );
    let fake = AmoCrm::start(&jwt, &[142]);
    let relay = start(&[("salon", amo_action(&fake, &jwt, 142))]);
    let check = relay.cli(&["check"]);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        out.contains("warning: processing `salon`: action `amo`: its access_token expires at"),
        "{out}"
    );
    assert!(!out.contains(&jwt));
    assert!(
        wait_until(|| relay.log_text().contains("its access_token lapses at")),
        "{}",
        relay.log_text()
    );
}
