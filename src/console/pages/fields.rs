//! The fields page: a processing's latest fields, a template snippet for
//! each, and the Klientiks address builder (for those who may see the
//! address).

use maud::{html, Markup};

use super::{layout, Frame};
use crate::console::i18n::{fill, Lang};
use crate::klientiks::{self, EVENTS};
use crate::store::OperationView;

/// The template snippet for a field: the `phone` filter for phone numbers.
/// Only a field named as a phone, or holding one written as people write
/// phones, gets it: `| phone` on a 10- or 11-digit ad id or record id
/// sent `+71234567890` to the ad platform.
fn snippet(name: &str, value: &str) -> String {
    let lower = name.to_lowercase();
    let leaf = lower.rsplit(['.', '_']).next().unwrap_or(&lower);
    let named_phone = ["phone", "tel", "mobile", "телефон"]
        .iter()
        .any(|word| lower.contains(word));
    let named_otherwise = lower.starts_with("utm") || leaf == "id" || lower.ends_with("id");
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let phone_chars = value
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '(' | ')' | ' '));
    let written_as_phone = value.starts_with('+') || value.contains(['(', ' ', '-']);
    let phone_like =
        (10..=11).contains(&digits) && phone_chars && !named_otherwise && (named_phone || written_as_phone);
    if phone_like {
        format!("{{{{{name} | phone}}}}")
    } else {
        format!("{{{{{name}}}}}")
    }
}

/// A processing's latest fields with a template snippet for each, and the
/// Klientiks address helper.
pub fn fields(
    frame: &Frame,
    processing: &str,
    latest: Option<&OperationView>,
    event: Option<&klientiks::Event>,
    // None for a viewer who may not see the address (it holds the token).
    webhook: Option<&str>,
) -> Markup {
    let t = frame.t();
    layout(
        frame,
        t.fields_and_templates,
        html! {
            h1 { (t.fields_and_templates) ": " (processing) }
            h2 { (t.latest_fields) }
            @match latest {
                None => { p.quiet { (t.no_fields) } },
                Some(op) => {
                    p { a href=(format!("/operations/{}", op.summary.id)) { (fill(t.operation, op.summary.id)) } ", " (frame.time(op.summary.received_at)) }
                    table.fields {
                        thead { tr { th { (t.name) } th { (t.value) } th { (t.template) } } }
                        tbody {
                            @for (name, value) in &op.fields {
                                tr {
                                    td { code { (name) } }
                                    td { (value) }
                                    td.snippet {
                                        input.copyable readonly value=(snippet(name, value)) aria-label=(t.template);
                                        button.copy type="button" hidden { (t.copy) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(webhook) = webhook {
            h2 { (t.klientiks_address) }
            form.filter method="get" action=(format!("/fields/{processing}")) {
                label { (t.event)
                    select name="event" {
                        @for e in EVENTS {
                            option value=(e.key) selected[event.is_some_and(|x| x.key == e.key)] {
                                @if frame.lang == Lang::Ru { (e.russian) } @else { (e.english) }
                            }
                        }
                    }
                }
                button type="submit" { (t.make_address) }
            }
            @if let Some(event) = event {
                div.address {
                    textarea.copyable readonly rows="4" { (event.address(webhook)) }
                    button.copy type="button" hidden { (t.copy) }
                }
            }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_fields_get_the_phone_filter() {
        assert_eq!(
            snippet("client.phone", "+7 (999) 123-45-67"),
            "{{client.phone | phone}}"
        );
        assert_eq!(snippet("ad_id", "12345"), "{{ad_id}}");
        assert_eq!(snippet("client_phone", "79991234567"), "{{client_phone | phone}}");
        assert_eq!(snippet("contact", "8 (999) 123-45-67"), "{{contact | phone}}");
    }

    /// Regression: a 10- or 11-digit ad id in `utm_content` was offered
    /// `| phone`, which sends `+71234567890` to the ad platform.
    #[test]
    fn ids_and_utm_fields_never_get_the_phone_filter() {
        assert_eq!(snippet("utm_content", "1234567890"), "{{utm_content}}");
        assert_eq!(snippet("utm_content", "+7 999 123 45 67"), "{{utm_content}}");
        assert_eq!(snippet("appointment_id", "12345678901"), "{{appointment_id}}");
        assert_eq!(snippet("client.id", "79991234567"), "{{client.id}}");
        assert_eq!(snippet("total", "12345678901"), "{{total}}");
    }
}
