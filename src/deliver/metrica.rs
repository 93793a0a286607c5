//! Yandex Metrica's batches, sent by a thread of their own: each second
//! it gathers every metrica action's waiting rows into a batch when one is
//! due (`batch_max` rows, or the oldest waited `batch_every`), then works
//! on the batches due: uploads them, checks for an upload whose answer was
//! lost, and reads the state of those Metrica is processing
//! (store/batches.rs keeps them; config/kinds/metrica.rs cites the API).
//!
//! One request at a time, at most 30 a second, and no more than
//! [`DAILY_BUDGET`] a day per token: under Metrica's quotas of 3 requests
//! at once, 30 a second per address and 5 000 a day per login (with room
//! left for the people who use the same login by hand). The day's count
//! is kept in memory: a restart starts it again.
//!
//! After a kill -9 a batch is either `ready` (never sent: sent now),
//! `sending` (sent, answer unknown) or further. A `sending` batch of
//! offline conversions is looked for in Metrica's uploads list by the
//! comment each upload carries (`hookrelay batch N`) before it is sent
//! again, so no row is in two accepted uploads. The CDP's orders route
//! has no comment to look for; its upload is sent again, which is safe
//! because `merge_mode=SAVE` keeps one order per `id`: the same orders
//! uploaded twice are the same orders.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod api;

pub use api::upload_request;
use api::{comment, json_text, request, taken};

use super::send::{self, Answer, SendError};
use super::ConfigSource;
use crate::clock::now_ms;
use crate::config::kinds::{Metrica, Route};
use crate::config::Action;
use crate::model::response::Judged;
use crate::model::said::Said;
use crate::model::DueDelivery;
use crate::store::{Batch, BatchAttempt, BatchStep, StoreError, Writer};

/// Requests a day per token this relay allows itself, of Metrica's 5 000.
pub const DAILY_BUDGET: u32 = 4500;

/// Least time between two requests: 30 a second.
const SPACING: Duration = Duration::from_millis(34);

/// How long a batch taken for work is this instance's, so that another
/// instance sharing the database leaves it alone; an upload extends it
/// past its own timeout. One killed meanwhile leaves it to the others (or
/// to itself, restarted) when it lapses. Alone on its database, an
/// instance takes its batches back at once when it starts.
const LEASE_MS: i64 = crate::store::LEASE_MS;

/// Time a read of Metrica's lists and states may take.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// How long an upload's state is read before hookrelay stops asking:
/// Metrica says processing takes up to two hours.
const POLL_FOR_MS: i64 = 24 * 3600 * 1000;

/// Metrica's states of an offline conversions upload that are not final
/// (…/offline_conversions/findById_1).
const IN_PROGRESS: &[&str] = &["PREPARED", "UPLOADED", "EXPORTED", "MATCHED"];

/// The thread's state.
pub(super) struct Batcher {
    writer: Writer,
    agent: ureq::Agent,
    config: ConfigSource,
    stop: Arc<AtomicBool>,
    /// Requests made today (UTC day number), by token.
    day: i64,
    spent: HashMap<String, u32>,
    last_request: Option<Instant>,
}

impl Batcher {
    pub(super) fn new(writer: Writer, agent: ureq::Agent, config: ConfigSource, stop: Arc<AtomicBool>) -> Batcher {
        Batcher {
            writer,
            agent,
            config,
            stop,
            day: 0,
            spent: HashMap::new(),
            last_request: None,
        }
    }

    /// Works until told to stop.
    pub(super) fn run(mut self) {
        if !self.writer.shared() {
            if let Err(err) = self.writer.release_batch_leases() {
                log::warn!("metrica: cannot resume the batches: {err}");
            }
        }
        while !self.stop.load(Ordering::Relaxed) {
            if let Err(err) = self.round() {
                log::warn!("metrica: {err}");
            }
            for _ in 0..4 {
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }

    /// Makes the batches due, then works on those due.
    fn round(&mut self) -> Result<(), StoreError> {
        let config = (self.config)();
        if config.metrica_actions().next().is_none() {
            return Ok(());
        }
        for (_, m) in config.metrica_actions() {
            let every = m.batch_every.as_millis() as i64;
            if let Some(id) = self.writer.make_batch(m.key.clone(), m.batch_max, every, now_ms())? {
                log::info!("metrica {}: batch {id} made", m.key);
            }
        }
        loop {
            let due = self.writer.due_batches(now_ms(), LEASE_MS, 1)?;
            let Some(batch) = due.into_iter().next() else {
                return Ok(());
            };
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let Some((action, m)) = config.metrica(&batch.key) else {
                // Its lease keeps it from being taken again at once.
                log::warn!(
                    "metrica: batch {} belongs to `{}`, which the config no longer has; it waits",
                    batch.id,
                    batch.key
                );
                continue;
            };
            let step = self.work(&batch, action, m)?;
            if let Some(step) = step {
                self.writer.batch_step(batch.id, step, now_ms())?;
            }
        }
    }

    /// One step of `batch`: none when the day's requests are spent (its
    /// lease holds it until later).
    fn work(&mut self, batch: &Batch, action: &Action, m: &Metrica) -> Result<Option<BatchStep>, StoreError> {
        match batch.state.as_str() {
            "uploaded" => Ok(self.poll(batch, m)),
            "sending" if m.route == Route::Conversions => match self.find(batch, m) {
                Some(BatchStep::NotFound) if batch.attempts >= i64::from(action.retry.attempts) => {
                    Ok(Some(lost(batch, action, m)))
                }
                Some(BatchStep::NotFound) => self.upload(batch, action, m),
                other => Ok(other),
            },
            _ => self.upload(batch, action, m),
        }
    }

    /// Whether the day's quota allows one more request with `m`'s token;
    /// if so, it is counted.
    fn spend(&mut self, m: &Metrica) -> bool {
        let day = now_ms().div_euclid(86_400_000);
        if day != self.day {
            self.day = day;
            self.spent.clear();
        }
        let spent = self.spent.entry(m.token.expose().to_string()).or_insert(0);
        if *spent >= DAILY_BUDGET {
            log::warn!(
                "metrica {}: {DAILY_BUDGET} requests made today with this token; the rest wait for tomorrow (UTC)",
                m.key
            );
            return false;
        }
        *spent += 1;
        true
    }

    /// Sends a request (after [`Self::spend`]), no sooner than [`SPACING`]
    /// after the last one; the answer, when it started and how long it took.
    fn send(&mut self, due: DueDelivery) -> (Result<Answer, SendError>, i64, i64) {
        if let Some(last) = self.last_request {
            std::thread::sleep(SPACING.saturating_sub(last.elapsed()));
        }
        let started = now_ms();
        let clock = Instant::now();
        let answer = send::send(&self.agent, &due);
        self.last_request = Some(Instant::now());
        (answer, started, clock.elapsed().as_millis() as i64)
    }

    /// Uploads `batch`'s rows as one CSV file.
    fn upload(&mut self, batch: &Batch, action: &Action, m: &Metrica) -> Result<Option<BatchStep>, StoreError> {
        let mut rows: Vec<Vec<(String, String)>> = Vec::new();
        for (id, body) in self.writer.batch_rows(batch.id)? {
            // Written by process::metrica; one that does not read is a
            // database edited by hand: left out of the file, and said.
            match body.as_deref().map(serde_json::from_slice) {
                Some(Ok(row)) => rows.push(row),
                _ => log::error!(
                    "metrica {}: delivery {id}'s row does not read; it is left out of the file",
                    m.key
                ),
            }
        }
        let (due, line) = upload_request(m, &comment(batch.id), &rows, action.timeout, batch.id);
        if !self.spend(m) {
            return Ok(None);
        }
        let now = now_ms();
        let until = now + action.timeout.as_millis() as i64 + 10_000;
        self.writer.batch_sending(batch.id, now, until)?;
        let (answer, started, took) = self.send(due);
        let attempt =
            |status: Option<u16>, body: Option<String>, error: Option<Said>, judged: Option<Judged>| BatchAttempt {
                started_at: started,
                duration_ms: took,
                request: line.clone(),
                http_status: status,
                response_body: body,
                error,
                judged,
            };
        let tries = u32::try_from(batch.attempts + 1).unwrap_or(u32::MAX);
        let policy = super::retry::Policy {
            attempts: action.retry.attempts,
            first_delay: action.retry.first_delay,
            max_delay: action.retry.max_delay,
        };
        // Refused for good: the rows fail, and the operator is told why.
        let fail = |attempt: BatchAttempt| {
            let notice = Said::DeliveryFailed {
                action: action.name.clone(),
                error: Box::new(attempt.error.clone().unwrap_or(Said::text("refused"))),
                attempt: tries,
            };
            BatchStep::Failed { attempt, notice }
        };
        let retry = |attempt: BatchAttempt, retry_after: Option<Duration>, unknown: bool| {
            // An offline conversions upload without an answer is looked
            // for first, and fails only if Metrica does not have it.
            let lookup = unknown && m.route == Route::Conversions;
            if tries >= policy.attempts && !lookup {
                return fail(attempt);
            }
            let wait = super::retry::backoff(&policy, tries, retry_after, super::random_unit());
            BatchStep::Retry {
                attempt,
                at: now_ms() + wait.as_millis() as i64,
                unknown,
            }
        };
        let answer = match answer {
            // The answer was lost: Metrica may have the file.
            Err(SendError::Network(why)) => {
                let attempt = attempt(None, None, Some(Said::Network { error: why }), None);
                return Ok(Some(retry(attempt, None, true)));
            }
            Err(other) => {
                let error = Said::InvalidRequest {
                    error: other.to_string(),
                };
                return Ok(Some(fail(attempt(None, None, Some(error), None))));
            }
            Ok(answer) => answer,
        };
        let status = answer.status;
        let head = Some(answer.body_head());
        let judged = |verdict: Judged| {
            let error = Said::Answer {
                verdict: verdict.clone(),
                note: None,
            };
            attempt(Some(status), head.clone(), Some(error), Some(verdict))
        };
        let mismatch = |path: &str, expected: Vec<serde_json::Value>, found: serde_json::Value| {
            judged(Judged::JsonMismatch {
                status,
                path: path.into(),
                expected,
                found,
            })
        };
        Ok(Some(match (status, taken(&answer.body)) {
            (200..=299, Some((_, Some(state)))) if state == "FAILED" => fail(mismatch(
                "uploading.api_validation_status",
                vec!["PASSED".into()],
                state.into(),
            )),
            (200..=299, Some((id, state))) => {
                let kept = Some(serde_json::Value::String(id.clone()));
                let verdict = Judged::Accepted { status, kept };
                let final_state = state.as_deref().is_some_and(|s| !IN_PROGRESS.contains(&s));
                let poll_at =
                    (m.route == Route::Conversions && !final_state).then(|| now_ms() + m.poll_every.as_millis() as i64);
                BatchStep::Uploaded {
                    attempt: attempt(Some(status), head.clone(), None, Some(verdict)),
                    upload_id: id,
                    upload_state: state,
                    poll_at,
                }
            }
            (408 | 420 | 429 | 500..=599, _) => {
                retry(judged(Judged::StatusRetry { status }), answer.retry_after, false)
            }
            (200..=299, None) => fail(mismatch("uploading.id", Vec::new(), serde_json::Value::Null)),
            _ => fail(judged(Judged::StatusRefused { status })),
        }))
    }

    /// Looks for `batch`'s upload in Metrica's list after its answer was
    /// lost: found, it is taken; not found, it is sent again. When the
    /// list cannot be read, the batch waits a poll interval.
    fn find(&mut self, batch: &Batch, m: &Metrica) -> Option<BatchStep> {
        let url = m.uploads_url();
        let due = request(m, "GET", url.clone(), Vec::new(), None, READ_TIMEOUT, batch.id);
        if !self.spend(m) {
            return None;
        }
        let (answer, started, took) = self.send(due);
        let later = BatchStep::Retry {
            attempt: BatchAttempt {
                started_at: started,
                duration_ms: took,
                request: format!("GET {} (looking for batch {})", crate::redact::url_text(&url), batch.id),
                http_status: answer.as_ref().ok().map(|a| a.status),
                response_body: answer.as_ref().ok().map(Answer::body_head),
                error: Some(Said::text("the uploads list could not be read")),
                judged: None,
            },
            at: now_ms() + m.poll_every.as_millis() as i64,
            unknown: true,
        };
        let Ok(answer) = answer else { return Some(later) };
        let Ok(list) = serde_json::from_slice::<serde_json::Value>(&answer.body) else {
            return Some(later);
        };
        if !(200..300).contains(&answer.status) {
            return Some(later);
        }
        let wanted = comment(batch.id);
        let found = list
            .get("uploadings")
            .and_then(|u| u.as_array())
            .into_iter()
            .flatten()
            .find(|u| u.get("comment").and_then(|c| c.as_str()) == Some(wanted.as_str()));
        let Some(found) = found else {
            log::info!(
                "metrica {}: batch {} is not among the uploads; sending it again",
                m.key,
                batch.id
            );
            return Some(BatchStep::NotFound);
        };
        let id = json_text(found.get("id")).unwrap_or_default();
        let state = json_text(found.get("status"));
        log::info!(
            "metrica {}: batch {}'s answer was lost, and Metrica has it as upload {id}",
            m.key,
            batch.id
        );
        let final_state = state.as_deref().is_some_and(|s| !IN_PROGRESS.contains(&s));
        Some(BatchStep::Uploaded {
            attempt: BatchAttempt {
                started_at: started,
                duration_ms: took,
                request: format!(
                    "GET {} (batch {}'s answer was lost: found as upload {id})",
                    crate::redact::url_text(&url),
                    batch.id
                ),
                http_status: Some(answer.status),
                response_body: None,
                error: None,
                judged: Some(Judged::Accepted {
                    status: answer.status,
                    kept: Some(serde_json::Value::String(id.clone())),
                }),
            },
            upload_id: id,
            upload_state: state,
            poll_at: (!final_state).then(|| now_ms() + m.poll_every.as_millis() as i64),
        })
    }

    /// Reads an uploaded batch's processing state.
    fn poll(&mut self, batch: &Batch, m: &Metrica) -> Option<BatchStep> {
        let id = batch.upload_id.clone().unwrap_or_default();
        let url = m.upload_state_url(&id);
        let due = request(m, "GET", url, Vec::new(), None, READ_TIMEOUT, batch.id);
        if !self.spend(m) {
            return None;
        }
        let (answer, _, _) = self.send(due);
        let now = now_ms();
        let giving_up = batch.sent_at.is_some_and(|at| now - at > POLL_FOR_MS);
        let again = (!giving_up).then(|| now + m.poll_every.as_millis() as i64);
        let unchanged = BatchStep::Polled {
            upload_state: batch.upload_state.clone().unwrap_or_default(),
            counts: [batch.linked, batch.user_not_found, batch.goal_not_found],
            poll_at: again,
            notice: None,
        };
        let Ok(answer) = answer else { return Some(unchanged) };
        let Some(uploading) = serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .filter(|_| (200..300).contains(&answer.status))
            .and_then(|v| v.get("uploading").cloned())
        else {
            return Some(unchanged);
        };
        let state = json_text(uploading.get("status")).unwrap_or_default();
        let count = |name: &str| uploading.get(name).and_then(serde_json::Value::as_i64);
        let ended = !IN_PROGRESS.contains(&state.as_str());
        let notice = (state == "LINKAGE_FAILURE").then(|| Said::BatchUnlinked {
            action: batch.key.clone(),
            batch: batch.id,
            upload: id.clone(),
            state: state.clone(),
        });
        if ended {
            log::info!("metrica {}: batch {} (upload {id}) ended {state}", m.key, batch.id);
        }
        Some(BatchStep::Polled {
            upload_state: state,
            counts: [
                count("linked_quantity"),
                count("user_not_found_quantity"),
                count("goal_not_found_quantity"),
            ],
            poll_at: if ended { None } else { again },
            notice,
        })
    }
}

/// A batch whose every try went unanswered and which Metrica's list does
/// not have: its rows fail.
fn lost(batch: &Batch, action: &Action, m: &Metrica) -> BatchStep {
    let error = Said::Network {
        error: format!(
            "{} uploads went unanswered and Metrica's list has none of them",
            batch.attempts
        ),
    };
    let attempts = u32::try_from(batch.attempts).unwrap_or(u32::MAX);
    BatchStep::Failed {
        attempt: BatchAttempt {
            started_at: now_ms(),
            duration_ms: 0,
            request: format!(
                "GET {} (looking for batch {})",
                crate::redact::url_text(&m.uploads_url()),
                batch.id
            ),
            http_status: None,
            response_body: None,
            error: Some(error.clone()),
            judged: None,
        },
        notice: Said::DeliveryFailed {
            action: action.name.clone(),
            error: Box::new(error),
            attempt: attempts,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token's requests stop at the day's budget; another token's go on.
    #[test]
    fn a_token_stops_at_the_days_budget() {
        let dir = tempfile::tempdir().unwrap();
        let hooks = crate::store::Hooks {
            on_commit: Box::new(|| {}),
            on_error: Box::new(|_| {}),
        };
        let (writer, _thread) =
            crate::store::spawn_writer(crate::store::Location::File(dir.path().join("q.db")), hooks).unwrap();
        let config = crate::config::Config::parse(
            "[[processing]]\nname = \"p\"\ntoken = \"abcdefghijklmnopqrstuvwxyz\"\n\
             [[processing.action]]\nname = \"m\"\nkind = \"metrica\"\ncounter = 1\ntoken = \"y0_one\"\n\
             row = { id = \"{{id}}\", phones = \"{{phone}}\" }\n",
            std::path::Path::new("/etc/hookrelay/c.toml"),
        )
        .unwrap();
        let config = Arc::new(config);
        let source = Arc::clone(&config);
        let mut batcher = Batcher::new(
            writer,
            send::agent("test"),
            Box::new(move || Arc::clone(&source)),
            Arc::new(AtomicBool::new(false)),
        );
        let (_, m) = config.metrica("p/m").unwrap();
        assert!((0..DAILY_BUDGET).all(|_| batcher.spend(m)));
        assert!(!batcher.spend(m));
        let mut other = m.clone();
        other.token = crate::config::Secret::new("y0_two");
        assert!(batcher.spend(&other));
        // A new day starts the count again.
        batcher.day -= 1;
        assert!(batcher.spend(m));
    }
}
