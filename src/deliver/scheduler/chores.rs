//! The scheduler's chores besides handing out work: expiring deliveries
//! past their `max_age`, the token and orphan reminders, and keeping the
//! breakers in step with the config and the other instances.

use std::time::{Duration, Instant};

use super::Scheduler;
use crate::clock::now_ms;
use crate::config::Config;

/// How often instances sharing a database read each other's breakers.
const BREAKERS_REFRESH: Duration = Duration::from_millis(500);

/// How often waiting deliveries past their `max_age` are expired.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// How often deliveries past half their `max_age` are looked for (a
/// warning, once a day per processing).
const AGING_EVERY: Duration = Duration::from_secs(60);

/// How often long-lived tokens are looked at for the daily notice that
/// one lapses soon.
const TOKENS_EVERY: Duration = Duration::from_secs(3600);

/// How often, on a shared database and with nothing in hand, this
/// instance gives back what it claimed and lost track of.
const ORPHANS_EVERY: Duration = Duration::from_secs(5);

/// Whether a chore last done at `last` is due again after `every`; if so,
/// notes it done now.
fn due(last: &mut Option<Instant>, every: Duration) -> bool {
    if last.is_some_and(|at| at.elapsed() < every) {
        return false;
    }
    *last = Some(Instant::now());
    true
}

impl Scheduler {
    /// Expires the waiting deliveries past their `max_age`, every
    /// [`EXPIRE_EVERY`], and warns about those past half of it, every
    /// [`AGING_EVERY`].
    pub(super) fn expire(&mut self) {
        if due(&mut self.expired, EXPIRE_EVERY) {
            let expired = self.writer.expire();
            self.count_expired(expired);
        }
        if due(&mut self.aged, AGING_EVERY) {
            if let Err(err) = self.writer.warn_aging() {
                log::warn!("cannot look for deliveries past half their max_age: {err}");
            }
        }
    }

    /// Every [`TOKENS_EVERY`]: a notice, once a day, for each long-lived
    /// token that lapses within two weeks (or has).
    pub(super) fn remind_tokens(&mut self, config: &Config) {
        if !due(&mut self.tokens, TOKENS_EVERY) {
            return;
        }
        for (processing, action, expires) in config.lapsing_tokens(now_ms()) {
            match self
                .writer
                .remind_token(processing.to_string(), action.to_string(), expires)
            {
                Ok(true) => log::warn!(
                    "processing `{processing}`: action `{action}`: its access_token lapses at {}; notified",
                    crate::clock::rfc3339(expires)
                ),
                Ok(false) => {}
                Err(err) => log::warn!("cannot queue the notice that a token lapses: {err}"),
            }
        }
    }

    /// On a shared database, with no delivery in its queues, at its
    /// workers or in a claim whose answer is still to come, gives back any
    /// this instance still has claimed: a claim whose answer was lost to a
    /// database error left them claimed, and the lease renewal with each
    /// claim would keep them so for good.
    pub(super) fn release_orphans(&mut self) {
        if !self.writer.shared()
            || self.out.is_some()
            || !self.waiting.is_empty()
            || self.idle < self.workers
            || !due(&mut self.orphans, ORPHANS_EVERY)
        {
            return;
        }
        match self.writer.release_orphans() {
            Ok(0) => {}
            Ok(n) => log::warn!(
                "gave back {n} deliveries this instance had claimed but no longer held (a database error lost track of them); they go out again"
            ),
            Err(err) => log::warn!("cannot give back deliveries this instance lost track of: {err}"),
        }
    }

    /// Logs and counts what a sweep expired.
    pub(super) fn count_expired(&self, expired: Result<crate::store::Expired, crate::store::StoreError>) {
        match expired {
            Ok(expired) => {
                for (processing, action, n) in expired {
                    log::warn!(
                        "processing {processing}, action {action}: {n} deliveries expired unsent (max_age passed)"
                    );
                    self.metrics.expired(&action, n);
                }
            }
            Err(err) => log::warn!("cannot expire deliveries past their max_age: {err}"),
        }
    }

    /// At start and after each reload: closes the open breakers that
    /// `config` no longer wants, those turned off (`failures = 0`) and those
    /// of receivers no action sends to any more. Their waiting deliveries
    /// go out again (and fail through their retries, if the address is
    /// dead, to be replayed with the new config), instead of waiting for a
    /// probe that may never succeed.
    pub(super) fn apply_breaker_settings(&mut self, config: &Config) {
        let used: std::collections::HashSet<String> = config
            .processings
            .iter()
            .flat_map(|p| &p.actions)
            .map(|a| crate::model::target_of(a.url.source()))
            .collect();
        let stale: Vec<(String, &str)> = self
            .breakers
            .lock()
            .open()
            .filter_map(|(target, _)| {
                if config.receiver_policy(target).breaker.failures == 0 {
                    Some((target.clone(), "its breaker is turned off (failures = 0)"))
                } else if !used.contains(target) {
                    Some((target.clone(), "no action sends to it any more"))
                } else {
                    None
                }
            })
            .collect();
        for (target, why) in stale {
            {
                let mut table = self.breakers.lock();
                if let Some(state) = table.states.get_mut(&target) {
                    crate::deliver::breaker::close(state, now_ms());
                }
                table.probing.remove(&target);
            }
            match self.writer.close_breaker(target.clone()) {
                Ok(_) => log::info!("receiver {target}: circuit breaker closed: {why}; its waiting deliveries go out"),
                Err(err) => log::warn!("receiver {target}: cannot keep its breaker closed ({why}): {err}"),
            }
        }
    }

    /// Takes the breakers kept in the database: from other instances
    /// sharing it, at most every [`BREAKERS_REFRESH`], and at once after one
    /// was closed by hand (`hookrelay receiver reset`, the console).
    pub(super) fn refresh_breakers(&mut self) {
        let by_hand = self.writer.breakers_changed();
        if !by_hand && (!self.writer.shared() || self.refreshed.is_some_and(|at| at.elapsed() < BREAKERS_REFRESH)) {
            return;
        }
        self.refreshed = Some(Instant::now());
        match self.writer.receivers() {
            Ok(kept) => self.breakers.lock().adopt(kept),
            Err(err) => log::warn!("cannot read the other instances' breakers: {err}"),
        }
    }
}
