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
    replay,
    replay_done,
    not_replayed,
    confirm_replay,
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
    requeued_done,
    cancelled_done,
    breaker_was_reset,
    last_success,
);

static RU: Texts = Texts {
    language_name: "Русский",
    overview: "Обзор",
    operations: "Операции",
    sign_out: "Выйти",
    admin: "администратор",
    viewer: "наблюдатель",
    times_in: "Время: {}",
    sign_in: "Вход",
    token: "Токен",
    sign_in_hint: "Токен администратора (server.admin_token) или наблюдателя ([[console.viewer]]).",
    no_admin_token: "server.admin_token не задан: войти могут только наблюдатели.",
    wrong_token: "Неверный токен.",
    too_many: "Слишком много неверных попыток с этого адреса. Повторите через {} мин.",
    enabled: "включена",
    held: "приостановлена: запросы сохраняются, но не отправляются",
    webhook_address: "Адрес вебхука",
    copy: "Копировать",
    last_event: "Последнее событие",
    no_events: "Событий ещё не было",
    status: "Статус",
    last_day: "24 часа",
    last_week: "7 дней",
    waiting: "Доставки в очереди",
    action: "Действие",
    pending: "ожидают",
    retrying: "повторяются",
    last_error: "Последняя ошибка",
    nothing_waiting: "Очередь пуста",
    aging: "Доставок, ждущих дольше половины max_age: {}. Если не уйдут вовремя, они просрочатся и не будут отправлены; первая — {}",
    warnings: "Предупреждения",
    fields_and_templates: "Поля и шаблоны",
    processing: "Обработка",
    any: "все",
    since: "С",
    until: "По",
    field_value: "Значение поля",
    field_value_hint: "id записи, телефон, Иван*…",
    show: "Показать",
    reset: "Сбросить",
    id: "№",
    received: "Получена",
    fields: "Поля",
    deliveries: "Доставки",
    older: "Более ранние →",
    no_operations: "Операций не найдено.",
    live: "Новые операции появляются сами.",
    replay_matching: "Повторить неудачные и приостановленные по этому фильтру",
    operation: "Операция {}",
    reason: "Причина",
    from: "Отправитель",
    charset: "Кодировка",
    raw_request: "Исходный запрос",
    query: "Строка запроса",
    body: "Тело",
    name: "Имя",
    value: "Значение",
    delivery: "Доставка {}",
    request: "Запрос",
    next_attempt: "Следующая попытка",
    attempts: "Попытки",
    started: "Начало",
    answer: "Ответ",
    latency_ms: "мс",
    response: "Тело ответа",
    error: "Ошибка",
    no_attempts: "Попыток ещё не было.",
    replay: "Повторить",
    replay_done: "Поставлено доставок в очередь: {}.",
    not_replayed: "Не повторена операция {}",
    confirm_replay: "Повторить операций: {}?",
    confirm: "Да, повторить",
    cancel: "Отмена",
    nothing_to_replay: "Под фильтр не попала ни одна неудачная или приостановленная операция.",
    replay_stopped: "Повторить, хотя обработка «{}» остановлена",
    not_replayable: "Повтор невозможен: {}",
    replays: "Повторы",
    replayed_by: "{}, доставок в очереди: ",
    will_go: "Будут отправлены",
    will_not_go: "Не будут отправлены",
    include_stopped: "Отправить и приостановленные операции остановленных обработок ({}), хотя они остановлены",
    exclude_stopped: "Не отправлять операции остановленных обработок",
    include_expired: "Отправить и операции старше max_age ({}), хотя получатель, скорее всего, их отклонит",
    exclude_expired: "Не отправлять операции старше max_age",
    replay_expired: "Отправить всё равно, хотя событие старше max_age действия «{}»",
    count: "Операций",
    latest_fields: "Поля последнего события",
    template: "Шаблон",
    no_fields: "Событий с полями ещё не было. Отправьте тестовое событие на адрес вебхука.",
    klientiks_address: "Адрес для Klientiks",
    event: "Событие",
    make_address: "Получить адрес",
    not_found: "Не найдено.",
    forbidden: "Недостаточно прав.",
    stale_form: "Форма устарела: обновите страницу и повторите.",
    read_failed: "Не удалось прочитать базу: {}",
    since_hint: "24h, 7d или 2026-11-25",
    silent: "Тишина: событий нет с {} (настройка silence)",
    receiver_open: "Получатель {} не отвечает с {}: доставки ждут и не тратят попытки. Последняя ошибка: {}. Следующая проверка: {}.",
    receivers: "Получатели",
    receiver: "Получатель",
    state: "Состояние",
    breaker_open: "не отвечает, доставки ждут",
    breaker_closed: "работает",
    breaker_refusing: "отвечает, но не принимает",
    breaker_reset: "Отправлять снова",
    cancel_waiting: "Отменить ожидающие доставки",
    requeue_waiting: "Отправить с текущими настройками",
    requeued_done: "Доставок переделано по текущим настройкам: {}.",
    cancelled_done: "Доставок отменено: {}. Они не будут отправлены.",
    breaker_was_reset: "Получатель {}: ожидающие доставки отправляются снова.",
    last_success: "Последний успех",
};

static EN: Texts = Texts {
    language_name: "English",
    overview: "Overview",
    operations: "Operations",
    sign_out: "Sign out",
    admin: "admin",
    viewer: "viewer",
    times_in: "Times in {}",
    sign_in: "Sign in",
    token: "Token",
    sign_in_hint: "The admin token (server.admin_token) or a viewer's ([[console.viewer]]).",
    no_admin_token: "server.admin_token is not set: only viewers can sign in.",
    wrong_token: "Wrong token.",
    too_many: "Too many wrong tokens from this address. Try again in {} min.",
    enabled: "enabled",
    held: "held: requests are recorded, not sent",
    webhook_address: "Webhook address",
    copy: "Copy",
    last_event: "Last event",
    no_events: "No events yet",
    status: "Status",
    last_day: "24 hours",
    last_week: "7 days",
    waiting: "Deliveries waiting",
    action: "Action",
    pending: "pending",
    retrying: "retrying",
    last_error: "Last error",
    nothing_waiting: "Nothing waiting",
    aging: "{} deliveries have waited past half their max_age; if they cannot go in time, they expire unsent, the first at {}",
    warnings: "Warnings",
    fields_and_templates: "Fields and templates",
    processing: "Processing",
    any: "any",
    since: "Since",
    until: "Until",
    field_value: "Field value",
    field_value_hint: "appointment id, phone, Ann*…",
    show: "Show",
    reset: "Reset",
    id: "ID",
    received: "Received",
    fields: "Fields",
    deliveries: "Deliveries",
    older: "Older →",
    no_operations: "No operations found.",
    live: "New operations appear by themselves.",
    replay_matching: "Replay the failed and held ones matching this filter",
    operation: "Operation {}",
    reason: "Reason",
    from: "Sender",
    charset: "Charset",
    raw_request: "Raw request",
    query: "Query string",
    body: "Body",
    name: "Name",
    value: "Value",
    delivery: "Delivery {}",
    request: "Request",
    next_attempt: "Next attempt",
    attempts: "Attempts",
    started: "Started",
    answer: "Answer",
    latency_ms: "ms",
    response: "Response body",
    error: "Error",
    no_attempts: "No attempts yet.",
    replay: "Replay",
    replay_done: "Deliveries queued: {}.",
    not_replayed: "Not replayed: operation {}",
    confirm_replay: "Replay {} operations?",
    confirm: "Yes, replay",
    cancel: "Cancel",
    nothing_to_replay: "No failed or held operation matches this filter.",
    replay_stopped: "Replay although processing “{}” is stopped",
    not_replayable: "Cannot be replayed: {}",
    replays: "Replays",
    replayed_by: "{}, deliveries queued: ",
    will_go: "Will be sent",
    will_not_go: "Will not be sent",
    include_stopped: "Send the held operations of stopped processings ({}) too, although they are stopped",
    exclude_stopped: "Leave out the operations of stopped processings",
    include_expired:
        "Send the operations older than max_age ({}) too, although the destination will likely refuse them",
    exclude_expired: "Leave out the operations older than max_age",
    replay_expired: "Send anyway, although the event is older than action “{}”'s max_age",
    count: "Operations",
    latest_fields: "Fields of the latest event",
    template: "Template",
    no_fields: "No event with fields yet. Send a test event to the webhook address.",
    klientiks_address: "Address for Klientiks",
    event: "Event",
    make_address: "Make the address",
    not_found: "Not found.",
    forbidden: "Not allowed.",
    stale_form: "This form is out of date: reload the page and try again.",
    read_failed: "Cannot read the database: {}",
    since_hint: "24h, 7d or 2026-11-25",
    silent: "Silent: no events since {} (the silence setting)",
    receiver_open:
        "Receiver {} fails since {}: deliveries wait without spending attempts. Last error: {}. Next probe: {}.",
    receivers: "Receivers",
    receiver: "Receiver",
    state: "State",
    breaker_open: "failing, deliveries wait",
    breaker_closed: "working",
    breaker_refusing: "answers, but does not accept",
    breaker_reset: "Send again",
    cancel_waiting: "Cancel the waiting deliveries",
    requeue_waiting: "Send with the current config",
    requeued_done: "Deliveries rendered again from the current config: {}.",
    cancelled_done: "Deliveries cancelled: {}. They will not be sent.",
    breaker_was_reset: "Receiver {}: the waiting deliveries are being sent again.",
    last_success: "Last success",
};

impl Texts {
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
            Judged::Accepted { status: 200 },
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
