//! Failure notifications: a thread that gathers what the store queued (permanent
//! delivery failures, the first warning of each kind per processing per day)
//! and storage errors, and sends at most one digest per `min_interval` by email
//! and/or Telegram.
//!
//! Notifications wait in SQLite until each channel has sent them, so a failed
//! send is retried with the next digest and a restart resends nothing that went
//! out. Storage errors cannot be stored; they wait in memory.

pub mod email;
pub mod message;
pub mod telegram;

use crate::store::{Duty, Location};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::clock::{self, now_ms};
use crate::config::{Config, Notify};
use crate::metrics::Metrics;
use crate::model::said::Said;
use crate::model::{all_skipped_notice, Channel, ALL_SKIPPED};
use crate::store::{AllSkipped, Notification, Reader, Writer};
use message::{Item, ItemFields, Message};

/// How often the thread looks for work.
const TICK: Duration = Duration::from_secs(1);
/// A failed send is retried after this long (or `min_interval`, if shorter).
const RETRY_AFTER: Duration = Duration::from_secs(60);
/// Notifications older than this are not sent any more (e.g. from before
/// notifications were configured).
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Most notifications read for one digest.
const MAX_PENDING: usize = 500;
/// How often the notifier looks for processings that skip every event.
const ALL_SKIPPED_WATCH: Duration = Duration::from_secs(3600);
/// The period a processing must have skipped everything in.
const ALL_SKIPPED_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Fewer events than this in the window are no pattern.
const ALL_SKIPPED_MIN_EVENTS: u32 = 3;
/// Most storage errors remembered between digests.
const MAX_ALARMS: usize = 20;

/// Reports storage errors to the notifier; cheap to clone.
#[derive(Clone)]
pub struct Alarm(Sender<String>);

impl Alarm {
    /// Queues a storage error for the next digest.
    pub fn raise(&self, reason: &str) {
        let _ = self.0.send(reason.to_string());
    }
}

/// An alarm and the receiving end the notifier will own.
pub fn alarm_channel() -> (Alarm, Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    (Alarm(tx), rx)
}

/// The running notifier thread.
pub struct Notifier {
    stop: Sender<()>,
    handle: JoinHandle<()>,
}

impl Notifier {
    /// Stops the thread (after any send in progress).
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.handle.join();
    }
}

/// This machine's name, for subjects.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The channels `notify` configures.
pub fn channels(notify: &Notify) -> Vec<Channel> {
    let mut channels = Vec::new();
    if notify.email.is_some() {
        channels.push(Channel::Email);
    }
    if notify.telegram.is_some() {
        channels.push(Channel::Telegram);
    }
    channels
}

/// Sends `message` on one channel.
pub fn send(notify: &Notify, agent: &ureq::Agent, channel: Channel, message: &Message) -> Result<(), String> {
    match (channel, &notify.email, &notify.telegram) {
        (Channel::Email, Some(email), _) => email::send(email, message),
        (Channel::Telegram, _, Some(telegram)) => telegram::send(agent, telegram, message),
        _ => Err(format!("{} is not configured", channel.as_str())),
    }
}

/// The HTTP agent for the Telegram Bot API.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

/// Starts the notifier thread; its messages show times in the config's
/// `server.time_zone` as it is at the start.
pub fn start(
    notify: Notify,
    config: LiveConfig,
    database: Location,
    duty: Duty,
    writer: Writer,
    alarms: Receiver<String>,
    metrics: Arc<Metrics>,
) -> std::io::Result<Notifier> {
    let (stop, stopped) = mpsc::channel();
    let time_zone = config().server.time_zone.clone();
    let state = State {
        config,
        channels: channels(&notify),
        notify,
        database,
        duty,
        writer,
        alarms,
        metrics,
        agent: agent(),
        host: host_name(),
        time_zone,
        pending_alarms: Vec::new(),
        next_try: 0,
        next_watch: 0,
    };
    let handle = std::thread::Builder::new()
        .name("notify".into())
        .spawn(move || state.run(stopped))?;
    Ok(Notifier { stop, handle })
}

/// The config as it is now (reloads change the processings' silences).
pub type LiveConfig = Box<dyn Fn() -> Arc<Config> + Send>;

struct State {
    config: LiveConfig,
    notify: Notify,
    channels: Vec<Channel>,
    database: Location,
    /// Of several instances on one database, the holder watches and sends
    /// what is stored; each sends its own storage errors.
    duty: Duty,
    writer: Writer,
    alarms: Receiver<String>,
    metrics: Arc<Metrics>,
    agent: ureq::Agent,
    host: String,
    /// The zone the messages show times in (`server.time_zone`).
    time_zone: jiff::tz::TimeZone,
    pending_alarms: Vec<String>,
    /// No sending before this time (ms since the epoch).
    next_try: i64,
    /// When to look next for processings that skip everything.
    next_watch: i64,
}

impl State {
    fn run(mut self, stopped: Receiver<()>) {
        let mut reader = None;
        loop {
            match stopped.recv_timeout(TICK) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
            while let Ok(alarm) = self.alarms.try_recv() {
                if self.pending_alarms.len() < MAX_ALARMS && !self.pending_alarms.contains(&alarm) {
                    self.pending_alarms.push(alarm);
                }
            }
            if reader.is_none() {
                reader = Reader::open(&self.database)
                    .map_err(|err| log::error!("notifications: cannot read the database: {err}"))
                    .ok();
            }
            if let Some(r) = reader.as_ref().filter(|_| self.duty.held()) {
                self.watch_all_skipped(r);
                if let Err(err) = self.watch_silences(r) {
                    log::error!("notifications: cannot watch for silent processings: {err}");
                }
            }
            if now_ms() < self.next_try {
                continue;
            }
            if let Some(r) = &reader {
                if let Err(err) = self.tick(r) {
                    log::error!("notifications: {err}");
                    reader = None;
                }
            }
        }
    }

    /// Hourly: a processing that received events all day and skipped every
    /// one is told about once a day (a `require` that can never be met
    /// sends nothing and fails nothing, so nothing else would say so).
    fn watch_all_skipped(&mut self, reader: &Reader) {
        let now = now_ms();
        if now < self.next_watch {
            return;
        }
        self.next_watch = now + ALL_SKIPPED_WATCH.as_millis() as i64;
        let since = now - ALL_SKIPPED_WINDOW.as_millis() as i64;
        let warn = |found: AllSkipped| {
            let text = all_skipped_notice(&found.processing, found.count, found.latest_reason.as_ref());
            let queued = self
                .writer
                .warn_once(found.processing.clone(), ALL_SKIPPED, found.latest, text, now)?;
            Ok::<_, crate::store::StoreError>(queued.then_some(found.processing))
        };
        let warned = reader
            .all_skipped(since, ALL_SKIPPED_MIN_EVENTS)
            .and_then(|found| found.into_iter().map(warn).collect::<Result<Vec<_>, _>>());
        match warned {
            Ok(warned) => {
                let warned: Vec<String> = warned.into_iter().flatten().collect();
                if !warned.is_empty() {
                    log::warn!(
                        "processing(s) {} skipped every event of the last 24 h",
                        warned.join(", ")
                    )
                }
            }
            Err(err) => log::error!("notifications: cannot look for processings that skip everything: {err}"),
        }
    }

    /// Each tick: a processing with `silence` that received nothing for
    /// that long in its active hours is announced once; the first event
    /// after an announced silence is announced too. The marks live in the
    /// database, so a restart neither repeats nor forgets them.
    fn watch_silences(&mut self, reader: &Reader) -> Result<(), crate::store::StoreError> {
        let config = (self.config)();
        let marks = reader.silences()?;
        let now = now_ms();
        for mark in &marks {
            let Some((id, at)) = reader.last_event(&mark.processing)? else {
                continue;
            };
            if id > mark.last_operation {
                let text = Said::SilenceEnded {
                    operation: id,
                    at: clock::local(at, &self.time_zone),
                    last_operation: mark.last_operation,
                    last_at: clock::local(mark.last_event_at, &self.time_zone),
                };
                if self.writer.silence_ends(mark.processing.clone(), id, text)? {
                    log::info!("processing `{}`: events are back (operation {id})", mark.processing);
                }
            }
        }
        for processing in &config.processings {
            let Some(silence) = &processing.silence else { continue };
            if marks.iter().any(|m| m.processing == processing.name) {
                continue;
            }
            // Nothing received yet: no silence to speak of until the first event.
            let Some((id, at)) = reader.last_event(&processing.name)? else {
                continue;
            };
            if silence.active.between(at, now, &self.time_zone) < silence.after.as_millis() as i64 {
                continue;
            }
            let text = Said::SilenceBegan {
                after: humantime::format_duration(silence.after).to_string(),
                hours: silence.active.describe(),
                zone: self.time_zone.iana_name().unwrap_or("UTC").to_string(),
                operation: id,
                at: clock::local(at, &self.time_zone),
            };
            if self.writer.silence_begins(processing.name.clone(), (id, at), text)? {
                log::warn!(
                    "processing `{}`: silent for {} of active time since operation {id}",
                    processing.name,
                    humantime::format_duration(silence.after)
                );
            }
        }
        Ok(())
    }

    /// Sends a digest if one is due and there is something to say.
    fn tick(&mut self, reader: &Reader) -> Result<(), crate::store::StoreError> {
        let now = now_ms();
        let interval = self.notify.min_interval.as_millis() as i64;
        if let Some(last) = reader.last_notified_at()? {
            if now - last < interval {
                self.next_try = last + interval;
                return Ok(());
            }
        }
        let pending = match self.duty.held() {
            true => reader.pending_notifications(now - MAX_AGE.as_millis() as i64, MAX_PENDING)?,
            false => Vec::new(),
        };
        if pending.is_empty() && self.pending_alarms.is_empty() {
            return Ok(());
        }
        let mut any_failed = false;
        let mut any_sent = false;
        for &channel in &self.channels {
            let mine: Vec<&Notification> = pending.iter().filter(|n| n.pending_on(channel)).collect();
            if mine.is_empty() && self.pending_alarms.is_empty() {
                continue;
            }
            let lang = (self.config)().server.language;
            let items = items(reader, &mine, self.notify.include_fields, lang)?;
            let message = message::digest(&items, &self.pending_alarms, &self.host, &self.time_zone);
            match send(&self.notify, &self.agent, channel, &message) {
                Ok(()) => {
                    log::info!(
                        "notification sent by {}: {} item(s)",
                        channel.as_str(),
                        mine.len() + self.pending_alarms.len()
                    );
                    self.metrics.notification(channel.as_str(), true);
                    self.writer
                        .notified(mine.iter().map(|n| n.id).collect(), channel, now)?;
                    any_sent = true;
                }
                Err(err) => {
                    log::warn!("notification by {} failed, will retry: {err}", channel.as_str());
                    self.metrics.notification(channel.as_str(), false);
                    any_failed = true;
                }
            }
        }
        if any_sent {
            self.pending_alarms.clear();
        }
        if any_failed {
            let retry = RETRY_AFTER.min(self.notify.min_interval).as_millis() as i64;
            self.next_try = now + retry;
        }
        Ok(())
    }
}

/// The digest items for `notifications`, with their operations' fields.
fn items(
    reader: &Reader,
    notifications: &[&Notification],
    include_fields: bool,
    lang: crate::model::said::Lang,
) -> Result<Vec<Item>, crate::store::StoreError> {
    notifications
        .iter()
        .enumerate()
        .map(|(n, notification)| {
            // Only the listed ones need their fields read.
            let fields = if !include_fields {
                ItemFields::Hidden
            } else if n < message::MAX_ITEMS && notification.kind != crate::model::NotificationKind::Receiver {
                reader
                    .operation(notification.operation_id)?
                    .map_or(ItemFields::Gone, |op| ItemFields::Shown(op.fields))
            } else {
                ItemFields::Gone
            };
            Ok(Item {
                kind: notification.kind,
                processing: notification.processing.clone(),
                operation_id: notification.operation_id,
                created_at: notification.created_at,
                text: notification.text.say(lang),
                fields,
            })
        })
        .collect()
}
