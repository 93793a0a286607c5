//! Template parsing and rendering, and the escaping of inserted values.
#![no_main]

use std::collections::BTreeMap;

use hookrelay::template::{Escape, Template};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, BTreeMap<String, String>, String)| {
    let (source, fields, value) = input;
    if let Ok(template) = Template::parse(source) {
        assert_eq!(template.to_string(), source);
        for escape in [Escape::None, Escape::Url, Escape::Json] {
            let rendered = template.render(|name| fields.get(name).map(String::as_str), escape);
            for missing in &rendered.missing {
                let given = fields.get(missing).is_some_and(|v| !v.is_empty());
                assert!(!given, "{missing} was given");
            }
        }
    }

    // A value inserted into a URL comes back intact and escaped.
    let one = Template::parse("{{v}}").unwrap();
    let url = one.render(|_| Some(&value), Escape::Url).text;
    assert!(
        url.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
        "{url:?}"
    );
    let decoded: String = url::form_urlencoded::parse(format!("v={url}").as_bytes())
        .map(|(_, v)| v.into_owned())
        .next()
        .unwrap_or_default();
    assert_eq!(decoded, value);
    // A value inserted into a JSON string stays one JSON string.
    let json = one.render(|_| Some(&value), Escape::Json).text;
    let parsed: String = serde_json::from_str(&format!("\"{json}\"")).unwrap();
    assert_eq!(parsed, value);
});
