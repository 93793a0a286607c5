//! `hookrelay try NAME … --send ACTION`: sends one rendered request for
//! real, after a confirmation, and prints the answer and how the action's
//! response rules judge it, so an operator can learn what a destination
//! really answers and write the rule. Nothing is recorded: the event is
//! not stored, and no attempt is kept. The destination, though, counts
//! what it received (a conversion in Plarin is a conversion).

use std::io::{BufRead, Write};
use std::time::Instant;

use super::Failure;
use crate::config::Processing;
use crate::deliver::{judge::judge, send};
use crate::model::said::{Lang, Said};
use crate::model::{DeliveryRequest, DueDelivery, OpStatus};
use crate::redact;

/// What was asked: the action, whether `--yes` confirmed already, and
/// the language reasons are said in.
pub struct Ask<'a> {
    pub action: &'a str,
    pub confirmed: bool,
    pub lang: Lang,
}

/// Sends `ask.action`'s delivery among `deliveries` (what the event
/// renders to) and prints the answer and the verdict.
pub fn run(
    processing: &Processing,
    status: OpStatus,
    reason: Option<&Said>,
    deliveries: &[DeliveryRequest],
    ask: &Ask,
) -> Result<(), Failure> {
    if processing.actions.iter().all(|a| a.name != ask.action) {
        let known: Vec<_> = processing.actions.iter().map(|a| a.name.as_str()).collect();
        return Err(Failure::Usage(format!(
            "processing `{}` has no action `{}` (it has: {})",
            processing.name,
            ask.action,
            known.join(", ")
        )));
    }
    let Some(delivery) = deliveries.iter().find(|d| d.action == ask.action) else {
        let why = reason.map(|r| format!(" ({})", r.say(ask.lang))).unwrap_or_default();
        return Err(Failure::Runtime(format!(
            "the event would be {status}{why}: nothing to send"
        )));
    };
    if let Some(why) = &delivery.refused {
        return Err(Failure::Runtime(format!("not sent: {}", why.say(ask.lang))));
    }
    let oauth = processing
        .actions
        .iter()
        .any(|a| a.name == ask.action && a.kind.oauth().is_some());
    if oauth {
        // Its access token is the daemon's to use and refresh: spending
        // the refresh token here would leave the daemon's spent.
        return Err(Failure::Usage(format!(
            "--send does not sign in with OAuth2: send a test event to the daemon instead (action `{}`)",
            ask.action
        )));
    }
    println!("action {}:", delivery.action);
    print_request(delivery);
    println!();
    if !ask.confirmed && !confirm(&delivery.url)? {
        return Err(Failure::Runtime("not sent: not confirmed".into()));
    }
    let agent = send::agent(concat!("hookrelay/", env!("CARGO_PKG_VERSION")));
    let metrica = processing
        .actions
        .iter()
        .find(|a| a.name == ask.action)
        .and_then(|a| a.kind.metrica().map(|m| (a, m)));
    let due = match metrica {
        // The row alone, as a batch of one.
        Some((action, m)) => {
            let row: Vec<(String, String)> = delivery
                .body
                .as_deref()
                .and_then(|body| serde_json::from_slice(body).ok())
                .unwrap_or_default();
            crate::deliver::metrica::upload_request(m, "hookrelay try", &[row], action.timeout, 0).0
        }
        None => DueDelivery {
            // No delivery is stored; 0 tells a receiver that reads the header
            // that this one is not a real delivery's.
            id: 0,
            operation_id: 0,
            attempts: 0,
            target: crate::model::target_of(&delivery.url),
            request: delivery.clone(),
        },
    };
    let clock = Instant::now();
    let answer = send::send(&agent, &due).map_err(|e| Failure::Runtime(format!("sent, but no answer: {e}")))?;
    let took = clock.elapsed().as_millis();
    let (_, judged) = judge(
        &delivery.rules,
        answer.status,
        &answer.body,
        answer.retry_after,
        crate::clock::now_ms(),
    );
    println!("answer: HTTP {} in {took} ms", answer.status);
    let body = answer.body_head();
    if !body.is_empty() {
        println!("body: {body}");
    }
    let note = (!judged.accepted())
        .then(|| crate::deliver::judge::note(&delivery.rules, answer.status, &answer.body))
        .flatten();
    println!("verdict: {}", Said::Answer { verdict: judged, note }.say(ask.lang));
    println!("(sent for real; nothing was recorded)");
    Ok(())
}

/// Asks on the terminal (or reads stdin) whether to send; only `y` or
/// `yes` sends.
fn confirm(url: &str) -> Result<bool, Failure> {
    eprint!(
        "send this request for real to {}? The destination counts it. [y/N] ",
        crate::model::target_of(url)
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::Runtime(format!("cannot read the answer: {e}")))?;
    Ok(matches!(line.trim().to_lowercase().as_str(), "y" | "yes"))
}

/// The request a delivery sends, secrets masked, indented under its action.
pub fn print_request(delivery: &DeliveryRequest) {
    println!(
        "  {} {}",
        delivery.method,
        recalls_shown(&redact::url_text(&delivery.url))
    );
    for (name, value) in &delivery.headers {
        println!("  {name}: {}", redact::header(name, value));
    }
    if delivery.batch.is_some() {
        // A metrica row: shown as the CSV its batch will upload.
        let row: Vec<(String, String)> = delivery
            .body
            .as_deref()
            .and_then(|body| serde_json::from_slice(body).ok())
            .unwrap_or_default();
        println!("  a row of the next batch, in the CSV file it goes in:");
        println!();
        for line in String::from_utf8_lossy(&crate::process::metrica::row_csv(&row)).lines() {
            println!("  {line}");
        }
        return;
    }
    if let Some(body) = &delivery.body {
        println!();
        println!("  {}", recalls_shown(&String::from_utf8_lossy(body)));
    }
}

/// `text` with each recall marker shown as what it stands for,
/// `<recall bookings/lead for A1>`: filled in when the request goes out.
fn recalls_shown(text: &str) -> String {
    crate::template::recall_markers(text)
        .into_iter()
        .fold(text.to_string(), |shown, (marker, name, key)| {
            shown.replace(&marker, &format!("<recall {name} for {key}>"))
        })
}
