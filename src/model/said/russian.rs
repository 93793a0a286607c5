//! What is said, in Russian: the console's language for Russian readers,
//! and `server.language = "ru"`.

use super::Said;

impl Said {
    /// Said in Russian.
    pub(super) fn russian(&self) -> String {
        match self {
            Said::RequiredMissing { field } => format!("обязательного поля «{field}» нет"),
            Said::RequiredEmpty { field } => format!("обязательное поле «{field}» пустое"),
            Said::RequiredPlaceholder { field } => {
                format!("в обязательном поле «{field}» незаполненная подстановка")
            }
            Said::RequiredMacro { field, value } => {
                format!("в обязательном поле «{field}» незаполненный макрос рекламной площадки «{value}»")
            }
            Said::WhenMismatch { field, actual, wanted } => {
                format!("условие when: в поле «{field}» «{actual}», а нужно «{wanted}»")
            }
            Said::Disabled => "обработка выключена (enabled = false); чтобы отправить, повторите".into(),
            Said::Duplicate { key, earlier } => {
                format!("тот же ключ дедупликации «{key}», что у операции {earlier}")
            }
            Said::BodyNotJson { error } => format!("тело JSON не разбирается: {error}"),
            Said::BodyNotObject => "тело JSON должно быть объектом, например {\"client_id\": \"1\"}".into(),
            Said::NameTooLong { name, limit } => format!("имя поля «{name}» длиннее {limit} байт"),
            Said::FieldsTooBig { limit } => format!("поля вместе занимают больше {limit} байт"),
            Said::TooManyFields { limit } => format!("полей больше {limit}"),
            Said::RenderFailed { action, error } => format!("действие «{action}»: {error}"),
            Said::Absent { action, fields } => {
                let each: Vec<String> = fields
                    .iter()
                    .map(|a| match (&a.near, a.placeholder) {
                        (_, true) => format!("в поле «{}» незаполненная подстановка", a.field),
                        (Some(near), false) => format!("в событии нет поля «{}» (может быть, «{near}»?)", a.field),
                        (None, false) => format!("в событии нет поля «{}»", a.field),
                    })
                    .collect();
                format!(
                    "действие «{action}»: {}; ничего не отправлено (on_missing = \"fail\")",
                    each.join("; ")
                )
            }
            Said::Placeholder { field, value } => format!(
                "в поле «{field}» незаполненная подстановка «{value}»: в адресе у отправителя опечатка; поле считается отсутствующим"
            ),
            Said::AdMacro { field, value } => format!(
                "в поле «{field}» незаполненный макрос рекламной площадки «{value}»: ссылка объявления не получила значения; поле считается отсутствующим"
            ),
            Said::BodyNotRead { content_type } => format!(
                "тело ({content_type}) сохранено, но поля из него не читались: читаются только формы и JSON"
            ),
            Said::MissingField { action, field } => {
                format!("действие «{action}»: поля «{field}» нет, оно отправлено пустым")
            }
            Said::HeaderControl { action, header } => format!(
                "действие «{action}»: в заголовке «{header}» были управляющие символы, они заменены пробелами"
            ),
            Said::Http { status } => format!("ответ HTTP {status}"),
            Said::Answer { verdict, note: None } => verdict.russian(),
            Said::Answer {
                verdict,
                note: Some(note),
            } => format!("{}; {}", verdict.russian(), note.russian()),
            Said::Network { error } => format!("нет ответа: {error}"),
            Said::InvalidRequest { error } => format!("запрос не собрать: {error}"),
            Said::Recalling { name, key } => format!(
                "пока не отправлено: нужно то, что `{name}` сохранило для `{key}` (ответ на более раннее событие, \
                 номер лида), а этого ещё нет; повтор позже"
            ),
            Said::RowRefused { action, rule } => {
                format!("действие «{action}»: {}; строка не выгружается", rule.russian())
            }
            Said::BatchUnlinked { action, batch, upload, state } => format!(
                "действие «{action}»: загрузка {upload} в Метрику (пачка {batch}) закончилась состоянием {state}: \
                 ни одна строка не связалась с визитами; см. офлайн-данные счётчика в Метрике"
            ),
            Said::Expired => "просрочена: max_age истёк раньше, чем её удалось отправить; отправлена не будет".into(),
            Said::Cancelled { by } => format!("отменена: {by}"),
            Said::DeliveryFailed { action, error, attempt } => {
                format!("действие «{action}»: {} (попытка {attempt})", error.russian())
            }
            Said::ExpiredBatch { by_action } => {
                let total: u64 = by_action.iter().map(|(_, n)| n).sum();
                let each: Vec<String> = by_action.iter().map(|(a, n)| format!("«{a}»: {n}")).collect();
                format!(
                    "просрочено и не отправлено доставок: {total} ({}): max_age истёк раньше отправки; \
                     список: `hookrelay history --status failed`, отправить всё равно: `hookrelay replay --force ID`",
                    each.join(", ")
                )
            }
            Said::Aging { count, first_expires } => format!(
                "доставок, ждущих дольше половины max_age: {count}; если не уйдут вовремя, они просрочатся, \
                 первая — в {first_expires}. Состояние получателей: `hookrelay status`"
            ),
            Said::TokenLapsing { action, expires } => format!(
                "действие `{action}`: долгосрочный токен amoCRM (access_token) истекает {expires}; \
                 выпустите новый в настройках интеграции и впишите его в access_token до этого"
            ),
            Said::Authorize { processing, action, why } => format!(
                "не отправлено: amoCRM просит войти заново ({why}); откройте интеграцию в amoCRM, скопируйте \
                 новый код авторизации и выполните `hookrelay amocrm authorize {processing} {action} КОД`, затем повторите"
            ),
            Said::AllSkipped {
                processing,
                count,
                latest,
            } => format!(
                "все {count} событий за последние 24 ч пропущены, ничего не отправлено \
                 (последнее: {}); сверьте `require` и `when` с `hookrelay fields {processing}`",
                latest.as_ref().map_or("причина не записана".to_string(), |l| l.russian())
            ),
            Said::SilenceBegan {
                after,
                hours,
                zone,
                operation,
                at,
            } => format!(
                "нет событий {after} в рабочие часы ({hours}, {zone}); последнее — операция {operation} в {at}. \
                 Не сменился ли адрес вебхука у отправителя, не перестал ли он отправлять?"
            ),
            Said::SilenceEnded {
                operation,
                at,
                last_operation,
                last_at,
            } => format!(
                "события снова идут: операция {operation} в {at}, первая после операции {last_operation} в {last_at}"
            ),
            Said::BreakerOpened {
                target,
                since,
                failures,
                error,
                waiting,
            } => format!(
                "получатель {target} не отвечает с {since} (ошибок подряд: {failures}), последняя ошибка: {}; \
                 предохранитель разомкнут: доставок ждёт {waiting}, попытки не тратятся, пока пробная не пройдёт",
                error.as_ref().map_or("неизвестна".to_string(), |e| e.russian())
            ),
            Said::BreakerClosed { target, since, waiting } => format!(
                "получатель {target} снова отвечает (ошибки с {since}); предохранитель замкнут: ждавшие доставки ({waiting}) отправляются"
            ),
            Said::Text { text } => text.clone(),
        }
    }
}
