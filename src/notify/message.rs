//! The text of a notification: a digest in Russian and English, built from
//! what waited since the last message. Pure functions, tested directly.

use std::collections::BTreeMap;

use crate::clock;
use crate::model::NotificationKind;

/// Most operations described one by one; the rest are only counted.
pub const MAX_ITEMS: usize = 10;
/// Most fields listed per operation.
const MAX_FIELDS: usize = 20;

/// One thing to tell the operator about.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub kind: NotificationKind,
    pub processing: String,
    pub operation_id: i64,
    pub created_at: i64,
    pub text: String,
    pub fields: ItemFields,
}

/// What a message says of an operation's fields.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemFields {
    Shown(BTreeMap<String, String>),
    /// `notify.include_fields = false`: personal data stays out of messages.
    Hidden,
    /// The operation is gone (pruned), or was not read (past [`MAX_ITEMS`]).
    Gone,
}

/// A message ready for any channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub subject: String,
    pub body: String,
}

/// The digest of `items` and of storage errors (`alarms`), for `host`.
pub fn digest(items: &[Item], alarms: &[String], host: &str, tz: &jiff::tz::TimeZone) -> Message {
    let count = |kind| items.iter().filter(|i| i.kind == kind).count();
    let failures = count(NotificationKind::Failure);
    let receivers = count(NotificationKind::Receiver);
    let warnings = items.len() - failures - receivers;
    let mut processings: Vec<&str> = items.iter().map(|i| i.processing.as_str()).collect();
    processings.dedup();
    processings.sort_unstable();
    processings.dedup();
    let mut counts = Vec::new();
    if failures > 0 {
        counts.push(format!("{failures} failed"));
    }
    if warnings > 0 {
        counts.push(format!("{warnings} warning(s)"));
    }
    if receivers > 0 {
        counts.push(format!("{receivers} receiver change(s)"));
    }
    if !alarms.is_empty() {
        counts.push("storage error".to_string());
    }
    let subject = format!(
        "hookrelay on {host}: {} ({})",
        counts.join(", "),
        processings.join(", ")
    );

    let mut body = String::new();
    body.push_str(&format!("hookrelay на {host} / hookrelay on {host}\n\n"));
    body.push_str(&format!("Неудачные доставки / Failed deliveries: {failures}\n"));
    body.push_str(&format!("Предупреждения / Warnings: {warnings}\n"));
    for alarm in alarms {
        body.push_str(&format!(
            "\nОшибка базы данных / Storage error: {alarm}\n\
             Вебхуки получают 503 и не сохраняются / Webhooks get 503 and are not stored.\n"
        ));
    }
    for (n, item) in items.iter().take(MAX_ITEMS).enumerate() {
        body.push('\n');
        body.push_str(&describe(n + 1, item, tz));
    }
    if items.len() > MAX_ITEMS {
        // Exactly the operations not described, whatever their status now
        // (a failed action leaves its operation `failed` or `partial`).
        let mut rest: Vec<i64> = items[MAX_ITEMS..].iter().map(|i| i.operation_id).collect();
        rest.sort_unstable();
        rest.dedup();
        body.push_str(&format!(
            "\n…и ещё {0} / …and {0} more: hookrelay history --id {1}\n",
            items.len() - MAX_ITEMS,
            id_ranges(&rest)
        ));
    }
    Message { subject, body }
}

/// Sorted ids as `hookrelay history --id` takes them: runs as `a-b`.
pub fn id_ranges(sorted: &[i64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

fn describe(n: usize, item: &Item, tz: &jiff::tz::TimeZone) -> String {
    let title = match item.kind {
        NotificationKind::Failure => "Доставка не удалась / Delivery failed",
        NotificationKind::Warning => "Предупреждение / Warning",
        NotificationKind::Receiver => "Получатель / Receiver",
    };
    let mut text = format!("--- {n}. {title} ---\n");
    if item.kind == NotificationKind::Receiver {
        // About a server, not about the operation that happened to notice.
        text.push_str(&format!(
            "Когда / When: {}\nЧто / What: {}\nСостояние / Status: hookrelay status\n",
            clock::local(item.created_at, tz),
            item.text
        ));
        return text;
    }
    text.push_str(&format!("Обработка / Processing: {}\n", item.processing));
    text.push_str(&format!(
        "Операция / Operation: {} ({})\n",
        item.operation_id,
        clock::local(item.created_at, tz)
    ));
    let label = if item.kind == NotificationKind::Failure {
        "Ошибка / Error"
    } else {
        "Что / What"
    };
    text.push_str(&format!("{label}: {}\n", item.text));
    match &item.fields {
        ItemFields::Shown(fields) if !fields.is_empty() => {
            text.push_str("Поля / Fields:\n");
            for (name, value) in fields.iter().take(MAX_FIELDS) {
                text.push_str(&format!("  {name} = {value}\n"));
            }
            if fields.len() > MAX_FIELDS {
                text.push_str(&format!("  … ({} more)\n", fields.len() - MAX_FIELDS));
            }
        }
        ItemFields::Shown(_) => text.push_str("Поля / Fields: (none)\n"),
        ItemFields::Hidden => text.push_str("Поля / Fields: скрыты / hidden (notify.include_fields = false)\n"),
        ItemFields::Gone => text.push_str("Поля / Fields: (operation pruned)\n"),
    }
    text.push_str(&format!("Подробнее / Details: hookrelay show {}\n", item.operation_id));
    if item.kind == NotificationKind::Failure {
        text.push_str(&format!(
            "Отправить снова / Resend: hookrelay replay {}\n",
            item.operation_id
        ));
    }
    text
}

/// The message `hookrelay notify-test` sends.
pub fn test_message(host: &str) -> Message {
    Message {
        subject: format!("hookrelay on {host}: test notification"),
        body: format!(
            "Это проверочное сообщение hookrelay на {host}.\n\
             This is a test message from hookrelay on {host}.\n\n\
             Если вы его читаете, уведомления о сбоях дойдут.\n\
             If you can read it, failure notifications will reach you.\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moscow() -> jiff::tz::TimeZone {
        crate::clock::time_zone(crate::clock::DEFAULT_TIME_ZONE).unwrap()
    }

    fn item(kind: NotificationKind, id: i64) -> Item {
        Item {
            kind,
            processing: "klientiks-plarin".into(),
            operation_id: id,
            created_at: 0,
            text: "action `plarin`: HTTP 400 (attempt 1)".into(),
            fields: ItemFields::Shown(BTreeMap::from([("ad_id".to_string(), "42".to_string())])),
        }
    }

    /// A failure names the processing, operation, error, fields and both commands, in both languages.
    #[test]
    fn failure_digest_says_what_to_do() {
        let m = digest(&[item(NotificationKind::Failure, 17)], &[], "vps1", &moscow());
        assert_eq!(m.subject, "hookrelay on vps1: 1 failed (klientiks-plarin)");
        for needle in [
            "Неудачные доставки / Failed deliveries: 1",
            "Обработка / Processing: klientiks-plarin",
            "Операция / Operation: 17 (1970-01-01 03:00:00 MSK)",
            "Ошибка / Error: action `plarin`: HTTP 400 (attempt 1)",
            "  ad_id = 42",
            "hookrelay show 17",
            "hookrelay replay 17",
        ] {
            assert!(m.body.contains(needle), "{needle}\n{}", m.body);
        }
    }

    /// Runs of ids are written as ranges.
    #[test]
    fn ids_as_ranges() {
        assert_eq!(id_ranges(&[1, 2, 3, 5, 7, 8]), "1-3,5,7-8");
        assert_eq!(id_ranges(&[]), "");
    }

    /// Hidden fields are said to be hidden, with no value in the message.
    #[test]
    fn fields_can_be_kept_out() {
        let mut hidden = item(NotificationKind::Failure, 3);
        hidden.fields = ItemFields::Hidden;
        let m = digest(&[hidden], &[], "h", &moscow());
        assert!(m.body.contains("hidden (notify.include_fields = false)"), "{}", m.body);
        assert!(!m.body.contains("42"), "{}", m.body);
    }

    /// Beyond MAX_ITEMS operations are counted, not listed; warnings do not offer replay.
    #[test]
    fn long_digests_are_cut() {
        let mut items: Vec<Item> = (0..15).map(|i| item(NotificationKind::Failure, i)).collect();
        items.push(item(NotificationKind::Warning, 99));
        let m = digest(&items, &["disk full".into()], "h", &moscow());
        assert_eq!(
            m.subject,
            "hookrelay on h: 15 failed, 1 warning(s), storage error (klientiks-plarin)"
        );
        // Regression: the footer said `history --status failed`, which
        // missed operations that were `partial`; it now names them.
        assert!(
            m.body.contains("…and 6 more: hookrelay history --id 10-14,99"),
            "{}",
            m.body
        );
        assert!(!m.body.contains("hookrelay show 99"));
        assert!(m.body.contains("Storage error: disk full"));
        let warning = digest(&[item(NotificationKind::Warning, 5)], &[], "h", &moscow());
        assert!(!warning.body.contains("replay"));
    }
}
