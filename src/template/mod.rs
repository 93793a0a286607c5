//! `{{ field | filter | filter(arg) }}` templates: parsing, rendering and the filters.
//!
//! A template is parsed once, when the config is loaded, so a typo in a filter
//! name is a config error rather than a surprise at delivery time.

use std::fmt;

use sha2::{Digest, Sha256};

mod recall;
pub use recall::{recall_marker, recall_markers, RECALL_PREFIX};

/// A parsed template: literal text and `{{ … }}` expressions.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Literal(String),
    Field { name: String, filters: Vec<Filter> },
}

/// One step of a `|` pipeline.
#[derive(Clone, Debug, PartialEq)]
enum Filter {
    Default(String),
    Trim,
    Lower,
    Upper,
    Digits,
    Phone,
    Sha256,
    UrlEncode,
    Html,
    /// `recall('processing/action')`: the value that action kept (a lead's
    /// id) for this field's value, put in when the request goes out.
    Recall(String),
}

/// Names accepted after `|`, for error messages.
pub const FILTER_NAMES: &str =
    "default('x'), trim, lower, upper, digits, phone, sha256, urlencode, html, recall('processing/action')";

/// Why a template string does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    #[error("`{{{{` at byte {0} is never closed with `}}}}`")]
    Unclosed(usize),
    #[error("`}}}}` at byte {0} has no opening `{{{{`")]
    StrayClose(usize),
    #[error("empty field name in `{{{{ }}}}`")]
    EmptyField,
    #[error("field name `{0}` may only hold letters, digits, `_`, `.` and `-`")]
    BadField(String),
    #[error("unknown filter `{0}` (known: {FILTER_NAMES})")]
    UnknownFilter(String),
    #[error("filter `{0}`: {1}")]
    BadArgument(String, &'static str),
}

/// How inserted values are escaped for the place the text goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// Values are inserted as they are.
    None,
    /// Values are percent-encoded as one URL component (for a URL template).
    Url,
    /// Values are escaped as the inside of a JSON string.
    Json,
}

/// The result of rendering: the text, and the fields that were missing.
#[derive(Debug, Default, PartialEq)]
pub struct Rendered {
    /// The rendered text.
    pub text: String,
    /// Fields the template named that were missing or empty and had no `default`.
    pub missing: Vec<String>,
    /// Of those, the ones the event did not have at all (`lookup` gave
    /// `None`): a misspelled name, or an unfilled placeholder.
    pub absent: Vec<String>,
}

impl Template {
    /// Fixed text, with nothing to fill (a destination kind's own URL).
    pub fn literal(text: &str) -> Template {
        Template {
            source: text.to_string(),
            parts: vec![Part::Literal(text.to_string())],
        }
    }

    /// Parses `source`; every filter must be a known one.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = source;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if let Some(close) = rest[..open].find("}}") {
                return Err(TemplateError::StrayClose(offset + close));
            }
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let inner_start = open + 2;
            let close = rest[inner_start..]
                .find("}}")
                .ok_or(TemplateError::Unclosed(offset + open))?;
            parts.push(parse_expression(&rest[inner_start..inner_start + close])?);
            let consumed = inner_start + close + 2;
            rest = &rest[consumed..];
            offset += consumed;
        }
        if let Some(close) = rest.find("}}") {
            return Err(TemplateError::StrayClose(offset + close));
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    /// The text the template was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The field names this template reads, in order of appearance.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Field { name, .. } => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The actions this template recalls a value of (`recall('p/a')`).
    pub fn recalls(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().flat_map(|part| match part {
            Part::Field { filters, .. } => filters
                .iter()
                .filter_map(|f| match f {
                    Filter::Recall(name) => Some(name.as_str()),
                    _ => None,
                })
                .collect(),
            Part::Literal(_) => Vec::new(),
        })
    }

    /// Renders with `lookup` giving each field's value (`None` when missing).
    pub fn render<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>, escape: Escape) -> Rendered {
        let mut out = Rendered::default();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.text.push_str(text),
                Part::Field { name, filters } => {
                    let found = lookup(name);
                    let original = found.unwrap_or("");
                    let mut value = original.to_string();
                    for filter in filters {
                        value = filter.apply(value);
                    }
                    let defaulted = filters.iter().any(|f| matches!(f, Filter::Default(_)));
                    if original.is_empty() && !defaulted && !out.missing.contains(name) {
                        out.missing.push(name.clone());
                        if found.is_none() {
                            out.absent.push(name.clone());
                        }
                    }
                    push_escaped(&mut out.text, &value, escape);
                }
            }
        }
        out
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn parse_expression(inner: &str) -> Result<Part, TemplateError> {
    let mut pieces = split_pipes(inner).into_iter();
    let name = pieces.next().unwrap_or_default().trim().to_string();
    if name.is_empty() {
        return Err(TemplateError::EmptyField);
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(TemplateError::BadField(name));
    }
    let filters = pieces
        .map(|piece| parse_filter(piece.trim()))
        .collect::<Result<_, _>>()?;
    Ok(Part::Field { name, filters })
}

/// Splits on `|` outside quotes, so `default('a|b')` stays whole.
fn split_pipes(inner: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut quote = None;
    let mut start = 0;
    for (i, c) in inner.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if q == c => quote = None,
            (None, '|') => {
                pieces.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(&inner[start..]);
    pieces
}

fn parse_filter(text: &str) -> Result<Filter, TemplateError> {
    let (name, arg) = match text.find('(') {
        Some(open) => {
            let name = text[..open].trim();
            let Some(arg) = text[open + 1..].strip_suffix(')') else {
                return Err(TemplateError::BadArgument(name.to_string(), "missing `)`"));
            };
            (name, Some(arg.trim()))
        }
        None => (text, None),
    };
    let filter = match name {
        "default" => {
            let arg =
                arg.ok_or_else(|| TemplateError::BadArgument(name.to_string(), "needs a quoted value: default('0')"))?;
            return Ok(Filter::Default(unquote(arg).ok_or_else(|| {
                TemplateError::BadArgument(name.to_string(), "the value must be quoted: default('0')")
            })?));
        }
        "trim" => Filter::Trim,
        "lower" => Filter::Lower,
        "upper" => Filter::Upper,
        "digits" => Filter::Digits,
        "phone" => Filter::Phone,
        "sha256" => Filter::Sha256,
        "urlencode" => Filter::UrlEncode,
        "html" => Filter::Html,
        "recall" => {
            let arg = arg.and_then(unquote).ok_or_else(|| {
                TemplateError::BadArgument(name.to_string(), "needs the quoted action: recall('processing/action')")
            })?;
            if arg.split('/').filter(|p| !p.is_empty()).count() != 2 {
                return Err(TemplateError::BadArgument(
                    name.to_string(),
                    "name the processing and the action: recall('processing/action')",
                ));
            }
            return Ok(Filter::Recall(arg));
        }
        other => return Err(TemplateError::UnknownFilter(other.to_string())),
    };
    if arg.is_some() {
        return Err(TemplateError::BadArgument(name.to_string(), "takes no argument"));
    }
    Ok(filter)
}

fn unquote(arg: &str) -> Option<String> {
    let quote = arg.chars().next().filter(|c| matches!(c, '\'' | '"'))?;
    let inner = arg.strip_prefix(quote)?.strip_suffix(quote)?;
    Some(inner.to_string())
}

impl Filter {
    fn apply(&self, value: String) -> String {
        match self {
            Filter::Default(fallback) if value.is_empty() => fallback.clone(),
            Filter::Default(_) => value,
            Filter::Trim => value.trim().to_string(),
            Filter::Lower => value.to_lowercase(),
            Filter::Upper => value.to_uppercase(),
            Filter::Digits => value.chars().filter(char::is_ascii_digit).collect(),
            Filter::Phone => phone(&value),
            Filter::Sha256 => Sha256::digest(value.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            Filter::UrlEncode => url_component(&value),
            Filter::Html => html_text(&value),
            Filter::Recall(_) if value.is_empty() => value,
            Filter::Recall(name) => recall_marker(name, &value),
        }
    }
}

/// Text for a Telegram message sent with `parse_mode = "HTML"`: the three
/// characters its docs say must be entities outside tags (`<`, `>`, `&`),
/// so a client's name such as `<Аня & Co>` shows as written
/// (core.telegram.org/bots/api#html-style).
fn html_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Russian numbers to `+7XXXXXXXXXX`; anything else keeps its digits with a `+`.
pub(crate) fn phone(value: &str) -> String {
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    match digits.len() {
        0 => String::new(),
        10 => format!("+7{digits}"),
        11 if digits.starts_with('8') || digits.starts_with('7') => format!("+7{}", &digits[1..]),
        _ => format!("+{digits}"),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn url_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    push_escaped(&mut out, value, Escape::Url);
    out
}

fn push_escaped(out: &mut String, value: &str, escape: Escape) {
    match escape {
        Escape::None => out.push_str(value),
        Escape::Url => {
            for byte in value.bytes() {
                if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                    out.push(byte as char);
                } else {
                    out.push_str(&format!("%{byte:02X}"));
                }
            }
        }
        Escape::Json => {
            let quoted = serde_json::Value::String(value.to_string()).to_string();
            out.push_str(&quoted[1..quoted.len() - 1]);
        }
    }
}

/// Whether a value still holds an unfilled placeholder such as `{{client.phone}}`,
/// `{appointment.status}}` or `<<x>>`: the sender's address template has a typo.
pub fn holds_placeholder(value: &str) -> bool {
    value.contains("{{") || value.contains("}}") || value.find("<<").is_some_and(|open| value[open..].contains(">>"))
}

/// Whether a value still holds an ad platform's unfilled macro: `{ad_id}`,
/// `{campaign_id}` (Yandex Direct, VK Ads: one pair of braces around a
/// lower-case name) or `__CID__` (TikTok-style: upper-case between double
/// underscores). The click went through a link whose macro the platform
/// did not fill, so the value is not an id. (`{{...}}` is a Klientiks
/// placeholder, [`holds_placeholder`].)
pub fn holds_macro(value: &str) -> bool {
    let braced = value.match_indices('{').any(|(open, _)| {
        let rest = &value[open + 1..];
        let name_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
            .count();
        name_len >= 2
            && rest.as_bytes().get(name_len) == Some(&b'}')
            && rest.as_bytes()[0].is_ascii_lowercase()
            && !value[..open].ends_with('{')
    });
    let underscored = value.match_indices("__").any(|(open, _)| {
        let rest = &value[open + 2..];
        let name_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
            .count();
        // The name, then the closing `__` (the last two of a run of `_`).
        name_len >= 4 && rest[..name_len].ends_with("__") && rest.as_bytes()[0].is_ascii_uppercase()
    });
    braced || underscored
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashMap;

    fn render(source: &str, fields: &[(&str, &str)], escape: Escape) -> Rendered {
        let map: HashMap<&str, &str> = fields.iter().copied().collect();
        Template::parse(source)
            .unwrap()
            .render(|name| map.get(name).copied(), escape)
    }

    /// Literal text and fields interleave, with spaces inside braces allowed.
    #[test]
    fn renders_fields_between_literals() {
        let out = render(
            "id={{ client.id }}&ad={{ad_id}}!",
            &[("client.id", "42"), ("ad_id", "7")],
            Escape::None,
        );
        assert_eq!(out.text, "id=42&ad=7!");
        assert!(out.missing.is_empty());
    }

    /// Every filter in DESIGN.md does what its name says.
    #[test]
    fn filters_transform_values() {
        let f = [("v", "  Иван Petrov  "), ("p", "8 (912) 345-67-89"), ("e", "")];
        assert_eq!(render("{{v|trim}}", &f, Escape::None).text, "Иван Petrov");
        assert_eq!(render("{{v|trim|lower}}", &f, Escape::None).text, "иван petrov");
        assert_eq!(render("{{v|trim|upper}}", &f, Escape::None).text, "ИВАН PETROV");
        assert_eq!(render("{{p|digits}}", &f, Escape::None).text, "89123456789");
        assert_eq!(render("{{p|phone}}", &f, Escape::None).text, "+79123456789");
        assert_eq!(render("{{e|default('0')}}", &f, Escape::None).text, "0");
        assert_eq!(render("{{v|default('0')|trim}}", &f, Escape::None).text, "Иван Petrov");
        assert_eq!(render("{{e|default(\"a|b\")}}", &f, Escape::None).text, "a|b");
        assert_eq!(
            render("{{v|trim|urlencode}}", &f, Escape::None).text,
            "%D0%98%D0%B2%D0%B0%D0%BD%20Petrov"
        );
        assert_eq!(
            render("{{x|sha256}}", &[("x", "abc")], Escape::None).text,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // Telegram's HTML mode: `<`, `>` and `&` as entities, the rest as is.
        assert_eq!(
            render("<b>{{n|html}}</b>", &[("n", "<Аня & Co> \"5★\"")], Escape::None).text,
            "<b>&lt;Аня &amp; Co&gt; \"5★\"</b>"
        );
    }

    /// Phone numbers in the usual Russian spellings all become +7XXXXXXXXXX.
    #[test]
    fn phone_normalises_russian_numbers() {
        for input in ["+7 912 345-67-89", "89123456789", "9123456789", "7(912)3456789"] {
            assert_eq!(phone(input), "+79123456789", "{input}");
        }
        assert_eq!(phone("+380 44 123 4567"), "+380441234567");
        assert_eq!(phone("нет"), "");
    }

    /// A missing field renders empty and is reported once; `default` silences it.
    #[test]
    fn missing_fields_are_reported() {
        let out = render("{{a}}-{{a}}-{{b|default('x')}}", &[], Escape::None);
        assert_eq!(out.text, "--x");
        assert_eq!(out.missing, vec!["a".to_string()]);
    }

    /// URL escaping encodes a value exactly once, JSON escaping keeps JSON valid.
    #[test]
    fn escaping_modes() {
        let f = [("v", "a b&c=д\"")];
        assert_eq!(render("{{v}}", &f, Escape::Url).text, "a%20b%26c%3D%D0%B4%22");
        let json = render("{\"v\": \"{{v}}\"}", &f, Escape::Json).text;
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["v"], "a b&c=д\"");
    }

    /// Broken templates are refused with a message that names the problem.
    #[test]
    fn parse_errors() {
        let err = |s: &str| Template::parse(s).unwrap_err().to_string();
        assert_eq!(
            err("{{ad_id | fone}}"),
            format!("unknown filter `fone` (known: {FILTER_NAMES})")
        );
        assert_eq!(err("x={{ad_id"), "`{{` at byte 2 is never closed with `}}`");
        assert_eq!(err("x={ad_id}}"), "`}}` at byte 8 has no opening `{{`");
        assert_eq!(err("{{ }}"), "empty field name in `{{ }}`");
        assert_eq!(err("{{a|trim(1)}}"), "filter `trim`: takes no argument");
        assert_eq!(
            err("{{a|default(0)}}"),
            "filter `default`: the value must be quoted: default('0')"
        );
        assert_eq!(
            err("{{a b}}"),
            "field name `a b` may only hold letters, digits, `_`, `.` and `-`"
        );
    }

    /// The fields a template reads are listed for `check`.
    #[test]
    fn lists_fields() {
        let t = Template::parse("{{a}}/{{b.c|trim}}").unwrap();
        assert_eq!(t.fields().collect::<Vec<_>>(), ["a", "b.c"]);
    }

    /// Unfilled placeholders in all the shapes Klientiks typos produce are caught.
    #[test]
    fn detects_placeholders() {
        for v in [
            "{{client.phone}}",
            "{appointment.status}}",
            "{{x}",
            "<<x>>",
            "a {{b}} c",
        ] {
            assert!(holds_placeholder(v), "{v}");
        }
        for v in ["", "79123456789", "a{b}c", "<<", "x >> y", "{x}"] {
            assert!(!holds_placeholder(v), "{v}");
        }
    }

    /// Ad platforms' unfilled macros are told from ids and from text with
    /// braces in it.
    #[test]
    fn detects_ad_platform_macros() {
        for v in [
            "{ad_id}",
            "{campaign_id}",
            "vk_{banner_id}",
            "__CID__",
            "ad__AID__x",
            "__CAMPAIGN_ID__",
        ] {
            assert!(holds_macro(v), "{v}");
        }
        for v in [
            "",
            "12345",
            "a{b}c",
            "{x}",
            "{Ad}",
            "{{ad_id}}",
            "__x__",
            "a__b",
            "__ID",
            "{ad id}",
        ] {
            assert!(!holds_macro(v), "{v}");
        }
    }
}
