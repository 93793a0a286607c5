//! Field extraction from a query string and a body of any content type.
#![no_main]

use hookrelay::process::fields::{extract, Limits};
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

/// The daemon's defaults for a 64 KiB body (config.example.toml).
const LIMITS: Limits = Limits {
    max_fields: 1000,
    max_name_bytes: 256,
    max_total_bytes: 256 * 1024,
};

/// Most bytes one input byte may become: a field needs at least one input
/// byte, its name is at most `max_name_bytes`, and its value at most a
/// printed number's length (`1e15` prints as `1000000000000000.0`) or three
/// bytes per windows-1251 byte.
const BYTES_PER_INPUT_BYTE: usize = LIMITS.max_name_bytes + 32;

fuzz_target!(|input: (u8, &[u8], &[u8])| {
    let (kind, query, body) = input;
    let content_type = CONTENT_TYPES[kind as usize % CONTENT_TYPES.len()];
    if let Ok(extracted) = extract(query, content_type, body, LIMITS) {
        let mut flattened = 0;
        for (name, value) in &extracted.fields {
            // Whatever a field is called, looking it up must not panic.
            let _ = extracted.usable(name);
            assert!(name.len() <= LIMITS.max_name_bytes);
            flattened += name.len() + value.len();
        }
        // Amplification stays bounded: by the limits, and by the input's size.
        assert!(extracted.fields.len() <= LIMITS.max_fields);
        assert!(flattened <= LIMITS.max_total_bytes);
        assert!(flattened <= BYTES_PER_INPUT_BYTE * (query.len() + body.len()));
    }
});
