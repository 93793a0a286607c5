//! Klientiks events and the webhook addresses to paste into its
//! "Добавить событие-webhook" form.
//!
//! Klientiks fills `{{object.variable}}` placeholders in the address before it
//! calls it. Each parameter here is `name={{variable}}`: the name is what
//! hookrelay's templates and `require` refer to, the variable is Klientiks's.
//! Widely copied examples swap the two (`appointment.time={{appointment_time}}`)
//! or drop a brace (`appointment_status={appointment.status}}`); the table
//! below is the one place these strings are written, and a test checks that
//! every placeholder is balanced.

/// One Klientiks event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The value sent as `event=`, for `[processing.when]`.
    pub key: &'static str,
    pub english: &'static str,
    /// The name in Klientiks's event list.
    pub russian: &'static str,
    /// `(parameter name, Klientiks variable)` pairs, in address order.
    pub params: &'static [(&'static str, &'static str)],
}

const CLIENT: &[(&str, &str)] = &[
    ("client_id", "client.id"),
    ("client_name", "client.name"),
    ("client_first_name", "client.first_name"),
    ("client_patron_name", "client.patron_name"),
    ("client_second_name", "client.second_name"),
    ("client_phone", "client.phone"),
    ("client_email", "client.email"),
    ("utm_source", "client.utm_source"),
    ("utm_medium", "client.utm_medium"),
    ("utm_campaign", "client.utm_campaign"),
    ("utm_content", "client.utm_content"),
    ("utm_term", "client.utm_term"),
];

const APPOINTMENT: &[(&str, &str)] = &[
    ("appointment_id", "appointment.id"),
    ("appointment_date", "appointment.date"),
    ("appointment_time", "appointment.time"),
    ("appointment_status", "appointment.status"),
    ("appointment_executor", "appointment.executor"),
    ("appointment_services", "appointment.services"),
    ("appointment_total_cost", "appointment.total_cost"),
];

const INVOICE: &[(&str, &str)] = &[
    ("invoice_id", "invoice.id"),
    ("invoice_amount", "invoice.amount"),
    ("invoice_paid", "invoice.paid"),
    ("invoice_paid_sum", "invoice.paid_sum"),
    ("invoice_left_to_pay", "invoice.left_to_pay"),
];

/// Concatenates parameter groups at compile time.
macro_rules! params {
    ($($group:expr),+) => {{
        const LEN: usize = 0 $(+ $group.len())+;
        const ALL: [(&str, &str); LEN] = {
            let mut all = [("", ""); LEN];
            let mut at = 0;
            $(
                let mut i = 0;
                while i < $group.len() {
                    all[at] = $group[i];
                    at += 1;
                    i += 1;
                }
            )+
            all
        };
        &ALL
    }};
}

/// The events hookrelay knows addresses for.
pub const EVENTS: &[Event] = &[
    Event {
        key: "client_added",
        english: "Client added",
        russian: "Добавление клиента",
        params: CLIENT,
    },
    Event {
        key: "appointment_created",
        english: "Client booked an appointment",
        russian: "Запись клиента на прием",
        params: params!(CLIENT, APPOINTMENT),
    },
    Event {
        key: "invoice_created",
        english: "Invoice created",
        russian: "Создание счета на оплату",
        params: params!(CLIENT, INVOICE),
    },
    Event {
        key: "appointment_paid",
        english: "Client's visit paid",
        russian: "Визит клиента оплачен",
        params: params!(CLIENT, APPOINTMENT, INVOICE),
    },
];

/// Finds an event by key, English or Russian name (case-insensitive).
pub fn find(name: &str) -> Option<&'static Event> {
    let wanted = name.trim().to_lowercase();
    EVENTS
        .iter()
        .find(|e| e.key == wanted || e.english.to_lowercase() == wanted || e.russian.to_lowercase() == wanted)
}

impl Event {
    /// The query string Klientiks should send: `event=<key>` and every parameter.
    pub fn query(&self) -> String {
        let mut query = format!("event={}", self.key);
        for (name, variable) in self.params {
            query.push_str(&format!("&{name}={{{{{variable}}}}}"));
        }
        query
    }

    /// The full address: `webhook` (the processing's `/hook/<token>` URL) plus the query.
    pub fn address(&self, webhook: &str) -> String {
        format!("{webhook}?{}", self.query())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Every generated address parses as a URL and keeps its placeholders intact.
    #[test]
    fn addresses_parse_as_urls() {
        for event in EVENTS {
            let address = event.address("https://relay.example.ru/hook/abcdefghijklmnopqrstuvwxyz");
            let url = url::Url::parse(&address).unwrap_or_else(|e| panic!("{}: {e}", event.key));
            let pairs: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into(), v.into())).collect();
            assert_eq!(pairs[0], ("event".to_string(), event.key.to_string()));
            assert_eq!(pairs.len(), event.params.len() + 1);
            for ((name, value), (want_name, variable)) in pairs[1..].iter().zip(event.params.iter()) {
                assert_eq!(name, want_name);
                assert_eq!(value, &format!("{{{{{variable}}}}}"));
            }
        }
    }

    /// Every placeholder is a balanced `{{…}}` holding a dotted variable, never a parameter name.
    #[test]
    fn placeholders_are_balanced() {
        for event in EVENTS {
            let query = event.query();
            assert_eq!(query.matches("{{").count(), event.params.len(), "{}", event.key);
            assert_eq!(query.matches("}}").count(), event.params.len(), "{}", event.key);
            for part in query.split('&').skip(1) {
                let (name, value) = part.split_once('=').unwrap();
                let inner = value.strip_prefix("{{").and_then(|v| v.strip_suffix("}}")).unwrap();
                assert!(!inner.contains(['{', '}']), "{part}");
                assert!(inner.contains('.'), "variable `{inner}` should be object.field");
                assert!(
                    !name.contains(['.', '{', '}']),
                    "parameter `{name}` should be a plain name"
                );
            }
        }
    }

    /// Parameter names are unique within each event, and event keys are unique.
    #[test]
    fn names_are_unique() {
        for event in EVENTS {
            let mut seen = HashSet::new();
            for (name, _) in event.params {
                assert!(seen.insert(*name), "{}: `{name}` twice", event.key);
            }
        }
        let keys: HashSet<_> = EVENTS.iter().map(|e| e.key).collect();
        assert_eq!(keys.len(), EVENTS.len());
    }

    /// Events are found by key, English and Russian name.
    #[test]
    fn finds_events() {
        assert_eq!(find("appointment_paid").map(|e| e.key), Some("appointment_paid"));
        assert_eq!(find("Визит клиента оплачен").map(|e| e.key), Some("appointment_paid"));
        assert_eq!(find("визит клиента оплачен").map(|e| e.key), Some("appointment_paid"));
        assert_eq!(find("client added").map(|e| e.key), Some("client_added"));
        assert_eq!(find("nope"), None);
    }
}
