//! `recall('processing/action')`'s markers: what the filter renders in
//! place of a value that is only known when the request goes out, and how
//! the marker is found again (`deliver/recall.rs` fills it in).

/// What starts a recall marker: `hookrelay-recall-<hex name>-<hex key>.`,
/// only characters that URL, form and JSON encoding leave as they are, so
/// the marker reaches the stored request whole wherever it was rendered.
pub const RECALL_PREFIX: &str = "hookrelay-recall-";

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<String> {
    let bytes = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// The marker `recall(name)` renders `key` as.
pub fn recall_marker(name: &str, key: &str) -> String {
    format!("{RECALL_PREFIX}{}-{}.", hex(name), hex(key))
}

/// Every recall marker in `text`: the marker, the action's name and the key.
pub fn recall_markers(text: &str) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(RECALL_PREFIX) {
        rest = &rest[at + RECALL_PREFIX.len()..];
        let Some(end) = rest.find('.') else { break };
        let inner = &rest[..end];
        if let Some((name, key)) = inner.split_once('-').and_then(|(n, k)| Some((unhex(n)?, unhex(k)?))) {
            found.push((format!("{RECALL_PREFIX}{inner}."), name, key));
        }
        rest = &rest[end..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{Escape, Template};

    /// `recall` renders a marker that survives every escape and is read
    /// back whole; it must name the processing and the action.
    #[test]
    fn recall_marks_what_goes_in_later() {
        let t = Template::parse("{{appointment_id | recall('bookings/lead')}}").unwrap();
        assert_eq!(t.recalls().collect::<Vec<_>>(), ["bookings/lead"]);
        let text = t.render(|_| Some("A 1/é"), Escape::None).text;
        for escape in [Escape::Url, Escape::Json] {
            assert_eq!(t.render(|_| Some("A 1/é"), escape).text, text, "{escape:?}");
        }
        let found = recall_markers(&format!("{{\"id\":\"{text}\",\"x\":\"abc.\"}}"));
        assert_eq!(
            found,
            [(text.clone(), "bookings/lead".to_string(), "A 1/é".to_string())]
        );
        assert_eq!(
            t.render(|_| Some(""), Escape::None).text,
            "",
            "an empty key stays empty (missing)"
        );
        for bad in ["{{a | recall}}", "{{a | recall('lead')}}", "{{a | recall(lead/x)}}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}
