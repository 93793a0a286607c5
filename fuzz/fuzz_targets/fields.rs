//! Field extraction from a query string and a body of any content type.
#![no_main]

use hookrelay::ingest::fields::extract;
use libfuzzer_sys::fuzz_target;

/// Content types senders use, right and wrong, with and without charsets.
const CONTENT_TYPES: &[Option<&str>] = &[
    None,
    Some("application/x-www-form-urlencoded"),
    Some("application/x-www-form-urlencoded; charset=windows-1251"),
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("application/json; charset=cp1251"),
    Some("text/plain"),
    Some("multipart/form-data; boundary=x"),
    Some("application/xml"),
    Some(""),
    Some(";;charset="),
];

fuzz_target!(|input: (u8, &[u8], &[u8])| {
    let (kind, query, body) = input;
    let content_type = CONTENT_TYPES[kind as usize % CONTENT_TYPES.len()];
    if let Ok(extracted) = extract(query, content_type, body) {
        for name in extracted.fields.keys() {
            // Whatever a field is called, looking it up must not panic.
            let _ = extracted.usable(name);
        }
    }
});
