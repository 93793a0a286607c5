//! The console's words in Russian and English. Each language is one value
//! of [`Texts`], so a string missing in one language does not compile.

use crate::model::said::Said;
use crate::model::{DeliveryStatus, OpStatus};

pub use crate::model::said::Lang;

impl Lang {
    /// This language's words.
    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::Ru => &RU,
            Lang::En => &EN,
        }
    }
}

/// Puts `value` where `{}` is in `text`.
pub fn fill(text: &str, value: impl std::fmt::Display) -> String {
    text.replacen("{}", &value.to_string(), 1)
}

macro_rules! texts {
    ($($name:ident),* $(,)?) => {
        /// Every string the console shows, in one language.
        #[derive(Debug)]
        pub struct Texts {
            $(pub $name: &'static str,)*
        }
    };
}

texts!(
    language_name,
    overview,
    operations,
    sign_out,
    admin,
    viewer,
    times_in,
    sign_in,
    token,
    sign_in_hint,
    no_admin_token,
    wrong_token,
    too_many,
    enabled,
    held,
    webhook_address,
    copy,
    last_event,
    no_events,
    status,
    last_day,
    last_week,
    waiting,
    action,
    pending,
    retrying,
    last_error,
    nothing_waiting,
    aging,
    warnings,
    fields_and_templates,
    processing,
    any,
    since,
    until,
    field_value,
    field_value_hint,
    show,
    reset,
    id,
    received,
    fields,
    deliveries,
    older,
    no_operations,
    live,
    replay_matching,
    operation,
    reason,
    from,
    charset,
    raw_request,
    query,
    body,
    name,
    value,
    delivery,
    request,
    next_attempt,
    attempts,
    started,
    answer,
    latency_ms,
    response,
    error,
    no_attempts,
    batch,
    batch_waiting,
    batch_rows,
    batch_sent,
    batch_upload,
    batch_linked,
    batch_user_not_found,
    batch_goal_not_found,
    metrica_batches,
    metrica_waiting,
    metrica_last_batch,
    replay,
    not_replayed,
    confirm,
    cancel,
    nothing_to_replay,
    replay_stopped,
    not_replayable,
    replays,
    replayed_by,
    will_go,
    will_not_go,
    include_stopped,
    exclude_stopped,
    include_expired,
    exclude_expired,
    replay_expired,
    count,
    latest_fields,
    template,
    no_fields,
    klientiks_address,
    event,
    make_address,
    not_found,
    forbidden,
    stale_form,
    read_failed,
    since_hint,
    silent,
    receiver_open,
    receivers,
    receiver,
    state,
    breaker_open,
    breaker_closed,
    breaker_refusing,
    breaker_reset,
    cancel_waiting,
    requeue_waiting,
    breaker_was_reset,
    last_success,
    client,
    amount,
    day,
    today,
    yesterday,
    days_7,
    days_30,
    outcome,
    error_text,
    error_text_hint,
    until_inclusive,
    shown_range,
    beginning,
    now,
    bad_time,
    bad_choice,
    not_accepted_chip,
    replay_chosen,
    replay_outage,
    totals,
    for_days,
    totals_default,
    received_n,
    delivered_n,
    failed_n,
    expired_n,
    by_day,
    by_day_hint,
    totals_narrowed,
    too_many_chosen,
    export_csv,
    day_counts,
    chart_label,
    chart_days,
    verdict_delivered,
    verdict_kept,
    verdict_failed,
    verdict_expired,
    verdict_cancelled,
    verdict_breaker,
    verdict_sending,
    verdict_turn,
    verdict_retry,
    verdict_pending,
);

mod en;
mod plural;
mod ru;
use en::EN;
pub use plural::{say, Counted};
use ru::RU;

impl Texts {
    /// Who asked for a replay, as recorded ("console (admin)", "command
    /// line (root)"), in this language; anything else as it was recorded.
    pub fn source(&self, recorded: &str) -> String {
        if !std::ptr::eq(self, &RU) {
            return recorded.to_string();
        }
        if recorded == "console (admin)" {
            return "консоль (администратор)".to_string();
        }
        match recorded.strip_prefix("command line") {
            Some(rest) => format!("командная строка{rest}"),
            None => recorded.to_string(),
        }
    }

    /// How a delivery fails, as the outcome filter offers it.
    pub fn failing(&self, failing: crate::store::Failing) -> &'static str {
        use crate::store::Failing;
        let ru = std::ptr::eq(self, &RU);
        match (failing, ru) {
            (Failing::Http4xx, true) => "ответ 4xx (отказ)",
            (Failing::Http5xx, true) => "ответ 5xx (сбой получателя)",
            (Failing::Network, true) => "нет ответа (сеть, тайм-аут)",
            (Failing::Outage, true) => "5xx или нет ответа",
            (Failing::NotAccepted, true) => "ответ 2xx, но не принят",
            (Failing::Expired, true) => "просрочена",
            (Failing::Http4xx, false) => "4xx answer (refused)",
            (Failing::Http5xx, false) => "5xx answer (receiver fault)",
            (Failing::Network, false) => "no answer (network, timeout)",
            (Failing::Outage, false) => "5xx or no answer",
            (Failing::NotAccepted, false) => "2xx answer, not accepted",
            (Failing::Expired, false) => "expired",
        }
    }

    /// An operation status as people say it.
    pub fn op_status(&self, status: OpStatus) -> &'static str {
        let ru = std::ptr::eq(self, &RU);
        match (status, ru) {
            (OpStatus::Queued, true) => "в очереди",
            (OpStatus::Delivered, true) => "доставлена",
            (OpStatus::Failed, true) => "ошибка",
            (OpStatus::Partial, true) => "частично",
            (OpStatus::Skipped, true) => "пропущена",
            (OpStatus::Duplicate, true) => "дубль",
            (OpStatus::Held, true) => "приостановлена",
            (OpStatus::Rejected, true) => "отклонена",
            (status, false) => status.as_str(),
        }
    }

    /// Why an operation is not replayed, as people say it.
    pub fn refused(&self, why: &crate::replay::Refused) -> String {
        use crate::replay::Refused;
        let ru = std::ptr::eq(self, &RU);
        match (why, ru) {
            (Refused::Missing, true) => "такой операции нет".into(),
            (Refused::Missing, false) => "no such operation".into(),
            (Refused::StillQueued, true) => "она ещё доставляется".into(),
            (Refused::StillQueued, false) => "it is still being delivered".into(),
            (Refused::Rejected, true) => {
                "тело запроса не разобрано: исправьте отправителя и отправьте событие заново".into()
            }
            (Refused::Rejected, false) => "its body did not parse: fix the sender and send it again".into(),
            (Refused::ProcessingGone(p), true) => format!("обработки «{p}» больше нет в настройках"),
            (Refused::ProcessingGone(p), false) => format!("processing “{p}” is no longer in the config"),
            (Refused::Stopped(p), true) => format!("обработка «{p}» остановлена (enabled = false)"),
            (Refused::Stopped(p), false) => format!("processing “{p}” is stopped (enabled = false)"),
            (Refused::Skipped(rule), true) => {
                format!("правила обработки по-прежнему пропускают её: {}", self.said(rule))
            }
            (Refused::Skipped(rule), false) => format!("the processing's rules still skip it: {rule}"),
            (Refused::AllDelivered, true) => "все действия уже доставлены".into(),
            (Refused::AllDelivered, false) => "every action was already delivered".into(),
            (Refused::Render(why), _) => self.said(why),
            (Refused::Expired(a), true) => {
                format!("событие старше max_age действия «{a}»: получатель, скорее всего, его отклонит")
            }
            (Refused::Expired(a), false) => {
                format!("the event is older than action “{a}”'s max_age: the destination would likely refuse it")
            }
        }
    }

    /// A reason, warning or error, in this language.
    pub fn said(&self, said: &Said) -> String {
        said.say(if std::ptr::eq(self, &RU) { Lang::Ru } else { Lang::En })
    }

    /// A delivery status as people say it.
    /// A Metrica batch's state (store/batches.rs).
    pub fn batch_state(&self, state: &str) -> &'static str {
        let ru = std::ptr::eq(self, &RU);
        match (state, ru) {
            ("ready", true) => "ждёт отправки",
            ("sending", true) => "отправляется",
            ("uploaded", true) => "принята, обрабатывается",
            ("done", true) => "обработана",
            ("failed", true) => "ошибка",
            ("ready", false) => "to upload",
            ("sending", false) => "uploading",
            ("uploaded", false) => "taken, processing",
            ("done", false) => "processed",
            ("failed", false) => "failed",
            _ => "?",
        }
    }

    pub fn delivery_status(&self, status: DeliveryStatus) -> &'static str {
        let ru = std::ptr::eq(self, &RU);
        match (status, ru) {
            (DeliveryStatus::Pending, true) => "ожидает",
            (DeliveryStatus::InFlight, true) => "отправляется",
            (DeliveryStatus::Retrying, true) => "повтор",
            (DeliveryStatus::Delivered, true) => "доставлена",
            (DeliveryStatus::Failed, true) => "ошибка",
            (DeliveryStatus::Cancelled, true) => "отменена",
            (DeliveryStatus::Expired, true) => "просрочена",
            (DeliveryStatus::InFlight, false) => "in flight",
            (status, false) => status.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::response::Judged;

    #[test]
    fn accept_language_picks_ours_by_weight() {
        assert_eq!(Lang::from_accept_language(Some("en-US,en;q=0.9,ru;q=0.8")), Lang::En);
        assert_eq!(Lang::from_accept_language(Some("de, ru-RU;q=0.5, en;q=0.4")), Lang::Ru);
        assert_eq!(Lang::from_accept_language(Some("de")), Lang::Ru);
        assert_eq!(Lang::from_accept_language(None), Lang::Ru);
        assert_eq!(Lang::from_accept_language(Some("ru;q=0, en")), Lang::En);
    }

    /// Every replay refusal reads in Russian in the Russian console (but
    /// `render`, which carries the renderer's own text), and each kind
    /// survives the control socket's round trip.
    #[test]
    fn replay_refusals_are_said_in_russian() {
        use crate::replay::Refused;
        for kind in Refused::KINDS {
            let refused = Refused::from_parts(kind, "salon").unwrap();
            assert_eq!(refused.kind(), *kind);
            let ru = Lang::Ru.texts().refused(&refused);
            let cyrillic = ru
                .chars()
                .any(|c| ('а'..='я').contains(&c.to_lowercase().next().unwrap_or(c)));
            assert!(cyrillic || *kind == "render", "{kind}: {ru}");
            if *kind != "render" {
                assert_ne!(ru, Lang::En.texts().refused(&refused), "{kind}");
            }
        }
        assert_eq!(Refused::from_parts("nonsense", ""), None);
    }

    /// Every verdict kind reads in Russian in the Russian console, and in
    /// English as the CLI says it.
    #[test]
    fn verdicts_are_said_in_russian() {
        use serde_json::json;
        let samples = [
            Judged::Accepted {
                status: 200,
                kept: None,
            },
            Judged::StatusRefused { status: 404 },
            Judged::StatusRetry { status: 503 },
            Judged::JsonRetry {
                status: 200,
                path: "error".into(),
                value: json!("QUERY_LIMIT_EXCEEDED"),
            },
            Judged::JsonMismatch {
                status: 200,
                path: "success".into(),
                expected: vec![json!("POSTBACK ACCEPTED")],
                found: json!(null),
            },
            Judged::NotJson { status: 200 },
            Judged::BodyLacks {
                status: 200,
                text: "ok".into(),
            },
        ];
        let kinds: Vec<String> = samples
            .iter()
            .map(|j| serde_json::to_value(j).unwrap()["kind"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(kinds, Judged::KINDS);
        for judged in &samples {
            let answer = Said::Answer {
                verdict: judged.clone(),
                note: None,
            };
            let ru = Lang::Ru.texts().said(&answer);
            assert!(ru.starts_with("ответ "), "{ru}");
            assert_eq!(Lang::En.texts().said(&answer), judged.to_string());
            assert_eq!(Judged::parse(&judged.to_json()).as_ref(), Some(judged));
        }
    }

    #[test]
    fn statuses_are_translated() {
        assert_eq!(Lang::Ru.texts().op_status(OpStatus::Failed), "ошибка");
        assert_eq!(Lang::En.texts().op_status(OpStatus::Failed), "failed");
    }
}
