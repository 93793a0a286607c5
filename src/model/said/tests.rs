//! Every kind said in both languages, and kept text read back.

use super::*;

/// One of every kind.
fn samples() -> Vec<Said> {
    let field = || "utm_content".to_string();
    let action = || "plarin".to_string();
    vec![
        Said::RequiredMissing { field: field() },
        Said::RequiredEmpty { field: field() },
        Said::RequiredPlaceholder { field: field() },
        Said::RequiredMacro {
            field: field(),
            value: "{ad_id}".into(),
        },
        Said::WhenMismatch {
            field: "event".into(),
            actual: "client_new".into(),
            wanted: "appointment_paid".into(),
        },
        Said::Disabled,
        Said::Duplicate {
            key: "A-1".into(),
            earlier: 7,
        },
        Said::BodyNotJson {
            error: "EOF while parsing".into(),
        },
        Said::BodyNotObject,
        Said::NameTooLong {
            name: "x".into(),
            limit: 256,
        },
        Said::FieldsTooBig { limit: 1024 },
        Said::TooManyFields { limit: 100 },
        Said::RenderFailed {
            action: action(),
            error: "unknown filter `fone`".into(),
        },
        Said::Absent {
            action: action(),
            fields: vec![
                Absent {
                    field: "utm_contnet".into(),
                    placeholder: false,
                    near: Some(field()),
                },
                Absent {
                    field: "status".into(),
                    placeholder: true,
                    near: None,
                },
            ],
        },
        Said::Placeholder {
            field: "status".into(),
            value: "{{appointment.status}}".into(),
        },
        Said::AdMacro {
            field: field(),
            value: "{ad_id}".into(),
        },
        Said::BodyNotRead {
            content_type: "text/xml".into(),
        },
        Said::MissingField {
            action: action(),
            field: field(),
        },
        Said::HeaderControl {
            action: action(),
            header: "X-Name".into(),
        },
        Said::Http { status: 503 },
        Said::Answer {
            verdict: Judged::StatusRefused { status: 404 },
            note: None,
        },
        Said::Network {
            error: "connection refused".into(),
        },
        Said::InvalidRequest {
            error: "bad header".into(),
        },
        Said::Recalling {
            name: "bookings/lead".into(),
            key: "A1".into(),
        },
        Said::RowRefused {
            action: "metrica".into(),
            rule: crate::model::said::RowRule::TooOld {
                column: "create_date_time".into(),
                value: "2026-10-01 10:00:00".into(),
                days: 21,
            },
        },
        Said::BatchUnlinked {
            action: "metrica".into(),
            batch: 3,
            upload: "501".into(),
            state: "LINKAGE_FAILURE".into(),
        },
        Said::Expired,
        Said::Cancelled {
            by: "command line (root)".into(),
        },
        Said::DeliveryFailed {
            action: action(),
            error: Box::new(Said::Http { status: 400 }),
            attempt: 1,
        },
        Said::ExpiredBatch {
            by_action: vec![(action(), 3)],
        },
        Said::Aging {
            count: 2,
            first_expires: "2026-12-02T10:00:00Z".into(),
        },
        Said::TokenLapsing {
            action: action(),
            expires: "2026-12-12T10:00:00Z".into(),
        },
        Said::Authorize {
            processing: "p".into(),
            action: action(),
            why: "no tokens yet".into(),
        },
        Said::AllSkipped {
            processing: "p".into(),
            count: 3,
            latest: Some(Box::new(Said::RequiredMissing { field: field() })),
        },
        Said::SilenceBegan {
            after: "3h".into(),
            hours: "09:00-21:00".into(),
            zone: "Europe/Moscow".into(),
            operation: 5,
            at: "2026-12-01 10:00:00 MSK".into(),
        },
        Said::SilenceEnded {
            operation: 6,
            at: "2026-12-01 15:00:00 MSK".into(),
            last_operation: 5,
            last_at: "2026-12-01 10:00:00 MSK".into(),
        },
        Said::BreakerOpened {
            target: "https://h/".into(),
            since: "2026-12-01T10:00:00Z".into(),
            failures: 5,
            error: Some(Box::new(Said::Http { status: 503 })),
            waiting: 4,
        },
        Said::BreakerClosed {
            target: "https://h/".into(),
            since: "2026-12-01T10:00:00Z".into(),
            waiting: 4,
        },
        Said::text("as it was"),
    ]
}

/// Every kind is said in Russian in Russian (only kept text stays as
/// it was), differently from English, and survives its column.
#[test]
fn every_kind_is_said_in_russian() {
    let samples = samples();
    let kinds: Vec<&str> = samples.iter().map(Said::kind).collect();
    assert_eq!(kinds, Said::KINDS, "a sample for every kind, in order");
    for said in &samples {
        let stored = said.store();
        assert!(
            stored.starts_with(&format!("{{\"kind\":\"{}\"", said.kind())),
            "{stored}"
        );
        assert_eq!(&Said::read(&stored), said);
        if matches!(said, Said::Text { .. }) {
            continue;
        }
        let ru = said.say(Lang::Ru);
        assert!(
            ru.chars()
                .any(|c| ('а'..='я').contains(&c.to_lowercase().next().unwrap_or(c))),
            "{}: {ru}",
            said.kind()
        );
        assert_ne!(ru, said.say(Lang::En), "{}", said.kind());
    }
}

/// A row written before kinds were kept reads back as its text.
#[test]
fn old_rows_read_as_their_text() {
    let old = "required field `utm_content` is missing";
    assert_eq!(Said::read(old), Said::text(old));
    assert_eq!(Said::read(old).say(Lang::Ru), old);
    assert_eq!(
        Said::read("{\"kind\":\"nonsense\"}"),
        Said::text("{\"kind\":\"nonsense\"}")
    );
}
