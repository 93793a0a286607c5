//! Field extraction: query strings, form and JSON bodies, charsets and
//! unfilled placeholders. Pure functions over bytes, so every odd input
//! can be tested (and fuzzed) without a server.

use std::collections::BTreeMap;

use crate::model::said::Said;
use crate::model::Warning;
use crate::template::{holds_macro, holds_placeholder};

/// Warning kind: a field still holds the sender's `{{placeholder}}`.
pub const PLACEHOLDER: &str = "placeholder";
/// Warning kind: a body of a type hookrelay does not read.
pub const BODY_NOT_READ: &str = "body_not_read";

/// Bounds on what one request may flatten into. JSON nesting repeats every
/// parent key in each leaf's dotted name, so without them a 60 KB body can
/// become hundreds of megabytes of fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most distinct fields.
    pub max_fields: usize,
    /// Longest field name, in bytes (a dotted JSON path counts whole).
    pub max_name_bytes: usize,
    /// Most bytes of names and values together.
    pub max_total_bytes: usize,
}

/// Why a request's fields could not be read; the variant picks the answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExtractError {
    /// The body does not parse (400).
    #[error("{0}")]
    Malformed(Said),
    /// The fields exceed [`Limits`] (413).
    #[error("{0}")]
    TooLarge(Said),
}

/// Which charset the request's text turned out to be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    Utf8,
    /// Some bytes were not UTF-8 and were read as windows-1251.
    Windows1251,
}

impl Charset {
    /// The name recorded on the operation.
    pub fn as_str(self) -> &'static str {
        match self {
            Charset::Utf8 => "utf-8",
            Charset::Windows1251 => "windows-1251",
        }
    }
}

/// The fields of one request and what was noticed while reading them.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    pub fields: BTreeMap<String, String>,
    pub charset: Charset,
    pub warnings: Vec<Warning>,
}

impl Extracted {
    /// Fields given directly (by `try`, or read back from history), with
    /// their placeholder warnings.
    pub fn from_fields(fields: BTreeMap<String, String>) -> Extracted {
        let mut out = Extracted {
            fields,
            charset: Charset::Utf8,
            warnings: Vec::new(),
        };
        out.note_placeholders();
        out
    }

    fn note_placeholders(&mut self) {
        for (name, value) in &self.fields {
            if holds_placeholder(value) {
                self.warnings.push(Warning::new(Said::Placeholder {
                    field: name.clone(),
                    value: shorten(value),
                }));
            } else if holds_macro(value) {
                self.warnings.push(Warning::new(Said::AdMacro {
                    field: name.clone(),
                    value: shorten(value),
                }));
            }
        }
    }

    /// A field's value if it is usable: present, and not an unfilled
    /// placeholder or ad platform macro.
    pub fn usable(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(String::as_str)
            .filter(|v| !holds_placeholder(v) && !holds_macro(v))
    }
}

/// Reads the fields of a request: the query string first, then a form or
/// JSON body, whose fields win on a name clash. An `Err` is a body that
/// claims to be JSON but does not parse, or fields beyond `limits`; reading
/// stops at the first field past a limit, so memory stays bounded.
pub fn extract(
    raw_query: &[u8],
    content_type: Option<&str>,
    body: &[u8],
    limits: Limits,
) -> Result<Extracted, ExtractError> {
    let mut sink = Sink {
        out: Extracted {
            fields: BTreeMap::new(),
            charset: Charset::Utf8,
            warnings: Vec::new(),
        },
        limits,
        total: 0,
    };
    parse_urlencoded(raw_query, &mut sink)?;
    let mime = content_type
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let trimmed = body.trim_ascii_start();
    if !trimmed.is_empty() {
        let sniff_json = trimmed.starts_with(b"{") || trimmed.starts_with(b"[");
        match mime.as_str() {
            "application/x-www-form-urlencoded" => parse_urlencoded(body, &mut sink)?,
            m if m == "application/json" || m.ends_with("+json") => parse_json(body, &mut sink)?,
            "" | "text/plain" if sniff_json => parse_json(body, &mut sink)?,
            "" | "text/plain" if body.contains(&b'=') => parse_urlencoded(body, &mut sink)?,
            other => sink.out.warnings.push(Warning::new(Said::BodyNotRead {
                content_type: if other.is_empty() { "no content type" } else { other }.to_string(),
            })),
        }
    }
    let mut out = sink.out;
    out.note_placeholders();
    Ok(out)
}

/// Collects fields while enforcing [`Limits`].
struct Sink {
    out: Extracted,
    limits: Limits,
    /// Bytes of every name and value inserted so far, overwritten ones too.
    total: usize,
}

impl Sink {
    /// Refuses a name past the length limit before anything is built from it.
    fn check_name(&self, name: &str) -> Result<(), ExtractError> {
        if name.len() > self.limits.max_name_bytes {
            return Err(ExtractError::TooLarge(Said::NameTooLong {
                name: shorten(name),
                limit: self.limits.max_name_bytes,
            }));
        }
        Ok(())
    }

    fn insert(&mut self, name: String, value: String) -> Result<(), ExtractError> {
        self.check_name(&name)?;
        self.total = self.total.saturating_add(name.len() + value.len());
        if self.total > self.limits.max_total_bytes {
            return Err(ExtractError::TooLarge(Said::FieldsTooBig {
                limit: self.limits.max_total_bytes,
            }));
        }
        if self.out.fields.len() >= self.limits.max_fields && !self.out.fields.contains_key(&name) {
            return Err(ExtractError::TooLarge(Said::TooManyFields {
                limit: self.limits.max_fields,
            }));
        }
        self.out.fields.insert(name, value);
        Ok(())
    }
}

fn shorten(value: &str) -> String {
    const MAX: usize = 80;
    match value.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_string(),
    }
}

/// `a=1&b=x+y&c=%D0%B4`: `+` is a space, percent escapes are bytes.
fn parse_urlencoded(input: &[u8], sink: &mut Sink) -> Result<(), ExtractError> {
    for pair in input.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &pair[..0]),
        };
        let name = decode_text(&percent_decode(name), &mut sink.out.charset);
        if name.is_empty() {
            continue;
        }
        let value = decode_text(&percent_decode(value), &mut sink.out.charset);
        sink.insert(name, value)?;
    }
    Ok(())
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => match (input.get(i + 1).and_then(hex), input.get(i + 2).and_then(hex)) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    out
}

fn hex(byte: &u8) -> Option<u8> {
    (*byte as char).to_digit(16).map(|d| d as u8)
}

/// UTF-8 if the bytes are UTF-8, else windows-1251 (noting it in `charset`).
fn decode_text(bytes: &[u8], charset: &mut Charset) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => {
            *charset = Charset::Windows1251;
            encoding_rs::WINDOWS_1251
                .decode_without_bom_handling(bytes)
                .0
                .into_owned()
        }
    }
}

fn parse_json(body: &[u8], sink: &mut Sink) -> Result<(), ExtractError> {
    let text = decode_text(body, &mut sink.out.charset);
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ExtractError::Malformed(Said::BodyNotJson { error: e.to_string() }))?;
    if !value.is_object() {
        return Err(ExtractError::Malformed(Said::BodyNotObject));
    }
    flatten("", &value, sink)
}

/// `{"client": {"phone": "1"}, "ids": [5]}` becomes `client.phone=1`, `ids.0=5`.
/// A dotted name is checked against the length limit before descending, so
/// deep nesting of long keys stops at the first name that is too long.
fn flatten(prefix: &str, value: &serde_json::Value, sink: &mut Sink) -> Result<(), ExtractError> {
    use serde_json::Value;
    let join = |key: &str, sink: &Sink| {
        let name = if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        };
        sink.check_name(&name).map(|()| name)
    };
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                flatten(&join(key, sink)?, inner, sink)?;
            }
        }
        Value::Array(items) => {
            for (index, inner) in items.iter().enumerate() {
                flatten(&join(&index.to_string(), sink)?, inner, sink)?;
            }
        }
        Value::String(text) => sink.insert(prefix.to_string(), text.clone())?,
        Value::Null => sink.insert(prefix.to_string(), String::new())?,
        other => sink.insert(prefix.to_string(), other.to_string())?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Limits no test below comes near, except those that test them.
    const LIMITS: Limits = Limits {
        max_fields: 100,
        max_name_bytes: 64,
        max_total_bytes: 4096,
    };

    fn extract(query: &[u8], content_type: Option<&str>, body: &[u8]) -> Result<Extracted, ExtractError> {
        super::extract(query, content_type, body, LIMITS)
    }

    fn fields(e: &Extracted) -> Vec<(&str, &str)> {
        e.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    /// Percent-encoded UTF-8 and `+` decode; the charset stays utf-8.
    #[test]
    fn query_utf8_and_plus() {
        let e = extract(b"name=%D0%90%D0%BD%D0%BD%D0%B0+%D0%9F&x=a%2Bb&empty=&flag", None, b"").unwrap();
        assert_eq!(
            fields(&e),
            [("empty", ""), ("flag", ""), ("name", "Анна П"), ("x", "a+b")]
        );
        assert_eq!(e.charset, Charset::Utf8);
        assert!(e.warnings.is_empty());
    }

    /// Raw (unescaped) UTF-8 bytes in the query are read as UTF-8.
    #[test]
    fn query_raw_utf8() {
        let e = extract("city=Москва".as_bytes(), None, b"").unwrap();
        assert_eq!(fields(&e), [("city", "Москва")]);
    }

    /// Bytes that are not UTF-8 are windows-1251, and the operation says so.
    #[test]
    fn query_windows_1251() {
        let e = extract(b"name=%C0%ED%ED%E0&raw=\xcf\xf0\xe8", None, b"").unwrap();
        assert_eq!(fields(&e), [("name", "Анна"), ("raw", "При")]);
        assert_eq!(e.charset, Charset::Windows1251);
    }

    /// Broken percent escapes are kept literally instead of failing.
    #[test]
    fn broken_escapes_are_literal() {
        let e = extract(b"a=100%&b=%zz&c=%4", None, b"").unwrap();
        assert_eq!(fields(&e), [("a", "100%"), ("b", "%zz"), ("c", "%4")]);
    }

    /// Form bodies add fields; on a clash the body wins.
    #[test]
    fn form_body() {
        let e = extract(
            b"a=1&b=2",
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            b"b=3&c=%D0%B4",
        )
        .unwrap();
        assert_eq!(fields(&e), [("a", "1"), ("b", "3"), ("c", "д")]);
    }

    /// JSON objects flatten to dotted names; numbers, bools and null become text.
    #[test]
    fn json_flattening() {
        let body = r#"{"client": {"id": 42, "phone": "+7 912", "vip": true, "note": null},
                        "services": [{"name": "Стрижка"}, {"name": "Укладка"}], "empty": {}}"#;
        let e = extract(b"", Some("application/json"), body.as_bytes()).unwrap();
        assert_eq!(
            fields(&e),
            [
                ("client.id", "42"),
                ("client.note", ""),
                ("client.phone", "+7 912"),
                ("client.vip", "true"),
                ("services.0.name", "Стрижка"),
                ("services.1.name", "Укладка"),
            ]
        );
    }

    /// A JSON body without a content type is recognised by its first byte.
    #[test]
    fn json_sniffed() {
        let e = extract(b"", None, br#" {"a": "b"}"#).unwrap();
        assert_eq!(fields(&e), [("a", "b")]);
    }

    /// Broken JSON is an error with the parser's reason; a JSON scalar too.
    #[test]
    fn broken_json_is_rejected() {
        let err = extract(b"", Some("application/json"), b"{\"a\": ").unwrap_err();
        assert!(matches!(err, ExtractError::Malformed(_)));
        assert!(
            err.to_string().starts_with("the JSON body does not parse: EOF"),
            "{err}"
        );
        let err = extract(b"", Some("application/json"), b"[1]").unwrap_err();
        assert!(err.to_string().contains("must be an object"), "{err}");
    }

    /// Other bodies are kept but not read, with a warning.
    #[test]
    fn unknown_body_warns() {
        let e = extract(b"a=1", Some("application/xml"), b"<a/>").unwrap();
        assert_eq!(fields(&e), [("a", "1")]);
        assert_eq!(e.warnings.len(), 1);
        assert!(e.warnings[0].to_string().contains("application/xml"));
        assert_eq!(e.warnings[0].kind, BODY_NOT_READ);
    }

    /// Unfilled placeholders warn, name the field, and make it unusable.
    #[test]
    fn placeholders_count_as_missing() {
        let e = extract(
            b"phone=%7B%7Bclient.phone%7D%7D&status={appointment.status}}&id=5",
            None,
            b"",
        )
        .unwrap();
        assert_eq!(e.usable("phone"), None);
        assert_eq!(e.usable("status"), None);
        assert_eq!(e.usable("id"), Some("5"));
        assert_eq!(e.warnings.len(), 2);
        assert!(e
            .warnings
            .iter()
            .any(|w| w.to_string().contains("`phone`") && w.to_string().contains("{{client.phone}}")));
        assert!(e
            .warnings
            .iter()
            .any(|w| w.to_string().contains("`status`") && w.kind == PLACEHOLDER));
    }

    /// Regression: 40 levels of 1 000-character keys around 10 000 zeros
    /// flattened into 400 MB of fields; now the first long name stops it.
    #[test]
    fn json_amplification_is_refused() {
        let key = "k".repeat(1000);
        let mut body = format!("[{}]", vec!["0"; 10_000].join(","));
        for _ in 0..40 {
            body = format!("{{\"{key}\": {body}}}");
        }
        let err = extract(b"", Some("application/json"), body.as_bytes()).unwrap_err();
        assert!(matches!(err, ExtractError::TooLarge(_)), "{err}");
        assert!(err.to_string().contains("longer than 64 bytes"), "{err}");
    }

    /// Short keys nested within the name limit still stop at the field count.
    #[test]
    fn too_many_fields_is_refused() {
        let body = format!("{{\"a\": [{}]}}", vec!["0"; 101].join(","));
        let err = extract(b"", Some("application/json"), body.as_bytes()).unwrap_err();
        assert_eq!(err, ExtractError::TooLarge(Said::TooManyFields { limit: 100 }));
        // The query string counts too.
        let query = (0..101).map(|i| format!("p{i}=1")).collect::<Vec<_>>().join("&");
        assert!(extract(query.as_bytes(), None, b"").is_err());
        // Exactly at the limit is fine, and a repeated name is one field.
        let query = (0..100).map(|i| format!("p{i}=1")).collect::<Vec<_>>().join("&") + "&p0=2";
        assert_eq!(extract(query.as_bytes(), None, b"").unwrap().fields.len(), 100);
    }

    /// Names and values together are capped.
    #[test]
    fn total_size_is_capped() {
        let query = format!("a={}", "x".repeat(4096));
        let err = extract(query.as_bytes(), None, b"").unwrap_err();
        assert!(err.to_string().contains("more than 4096 bytes"), "{err}");
        let query = format!("a={}", "x".repeat(4095));
        assert!(extract(query.as_bytes(), None, b"").is_ok());
    }
}
