//! `[[receiver]]` and `[delivery] breaker`: pacing and circuit breakers,
//! keyed by the receiver (`scheme://host:port`), not by the action, because
//! what they protect is the server: several actions, of several
//! processings, often call one.

use std::collections::HashSet;

use super::*;
use crate::model::target_of;

/// Five failures in a row; a probe after 30 s, backing off to 5 min.
pub(super) const DEFAULT_BREAKER: Breaker = Breaker {
    failures: 5,
    probe: Duration::from_secs(30),
    max_probe: Duration::from_secs(300),
};

impl RawBreaker {
    /// Fills unset keys from `defaults` and checks the result.
    pub(super) fn over(&self, defaults: Breaker) -> Result<Breaker, String> {
        let breaker = Breaker {
            failures: self.failures.unwrap_or(defaults.failures),
            probe: self.probe.map_or(defaults.probe, |d| d.0),
            max_probe: self.max_probe.map_or(defaults.max_probe, |d| d.0),
        };
        if breaker.probe.is_zero() {
            return Err("probe: must be longer than zero".into());
        }
        if breaker.max_probe < breaker.probe {
            return Err("max_probe: must not be shorter than probe".into());
        }
        Ok(breaker)
    }
}

/// Resolves every `[[receiver]]`; each names a receiver once.
pub(super) fn resolve(raw: Vec<RawReceiver>, delivery: &Delivery) -> Result<Vec<Receiver>, String> {
    let mut seen = HashSet::new();
    let mut receivers = Vec::new();
    for raw in raw {
        let key = format!("receiver `{}`", redact::url_text(&raw.url));
        let url = Url::parse(&raw.url).map_err(|e| format!("{key}: url: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(format!("{key}: url: give http:// or https:// and a host"));
        }
        if url.path() != "/" || url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "{key}: url: give only scheme://host[:port]; pacing and the breaker cover the whole receiver"
            ));
        }
        let target = target_of(url.as_str());
        if !seen.insert(target.clone()) {
            return Err(format!("{key}: this receiver is configured twice"));
        }
        let rate = raw
            .rate
            .as_deref()
            .map(rate)
            .transpose()
            .map_err(|e| format!("{key}: rate: {e}"))?;
        if raw.burst == Some(0) {
            return Err(format!("{key}: burst: must be at least 1"));
        }
        if raw.burst.is_some() && rate.is_none() {
            return Err(format!("{key}: burst: set a rate too"));
        }
        if raw.concurrency == Some(0) {
            return Err(format!("{key}: concurrency: must be at least 1"));
        }
        let breaker = match &raw.breaker {
            Some(b) => b.over(delivery.breaker).map_err(|e| format!("{key}: breaker.{e}"))?,
            None => delivery.breaker,
        };
        receivers.push(Receiver {
            target,
            policy: ReceiverPolicy {
                rate,
                burst: raw.burst.unwrap_or(1),
                concurrency: raw.concurrency,
                breaker,
            },
        });
    }
    Ok(receivers)
}

/// Bitrix24's documented bucket for a portal's REST calls: 50 at once,
/// then 2 a second (apidocs.bitrix24.com/settings/performance/limits.html;
/// Enterprise plans have 250 and 5: set a `[[receiver]]` for the portal).
const BITRIX24_RATE: Rate = Rate {
    count: 2,
    per: Duration::from_secs(1),
};
/// Two short of the documented 50: the portal counts a request when it
/// arrives, and requests started on time can arrive bunched.
const BITRIX24_BURST: u32 = 48;

/// amoCRM's limit per account is 7 requests a second (only third-party
/// clients say so: aioamocrm's README; a `[[receiver]]` overrides it).
/// Requests spaced evenly at N a second can put N + 1 in some second when
/// one arrives a moment early, so 6.
const AMOCRM_RATE: Rate = Rate {
    count: 6,
    per: Duration::from_secs(1),
};
/// The same where a lead is looked up before it is sent (`key_field`): two
/// requests a lead, and 3 leads can fall in one second, so 2 a second.
const AMOCRM_KEYED_RATE: Rate = Rate {
    count: 2,
    per: Duration::from_secs(1),
};

/// The pacing a destination kind implies for its receiver, for every one
/// without a `[[receiver]]` of its own: a Bitrix24 portal's bucket, an
/// amoCRM account's rate, each shared by every action calling it.
pub(super) fn implied(processings: &[Processing], receivers: &mut Vec<Receiver>, delivery: &Delivery) {
    use crate::config::kinds::Kind;
    let configured: HashSet<String> = receivers.iter().map(|r| r.target.clone()).collect();
    for action in processings.iter().flat_map(|p| &p.actions) {
        let (rate, burst) = match action.kind {
            Kind::Bitrix24(_) => (BITRIX24_RATE, BITRIX24_BURST),
            Kind::AmoCrm(ref amo) if amo.key_field.is_some() => (AMOCRM_KEYED_RATE, 1),
            Kind::AmoCrm(_) => (AMOCRM_RATE, 1),
            // Metrica's uploads keep to its quotas themselves (deliver/metrica.rs).
            Kind::Http | Kind::Telegram(_) | Kind::Metrica(_) => continue,
        };
        let target = target_of(action.url.source());
        if configured.contains(&target) {
            continue;
        }
        let gap = |r: Rate| r.per.as_secs_f64() / f64::from(r.count.max(1));
        if let Some(known) = receivers.iter_mut().find(|r| r.target == target) {
            // Two actions implying a pace for one receiver: the slower holds.
            if known.policy.rate.is_some_and(|old| gap(rate) > gap(old)) {
                known.policy.rate = Some(rate);
                known.policy.burst = burst;
            }
            continue;
        }
        receivers.push(Receiver {
            target,
            policy: ReceiverPolicy {
                rate: Some(rate),
                burst,
                concurrency: None,
                breaker: delivery.breaker,
            },
        });
    }
}
