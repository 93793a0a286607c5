//! A metrica action's row, rendered when the event arrives: each column's
//! template, then Metrica's rules for it (config/kinds/metrica.rs cites
//! them). A row that breaks one is refused with the rule, never uploaded:
//! Metrica would drop it, or count it wrong.

use jiff::civil::DateTime;
use jiff::Timestamp;

use crate::config::kinds::{Metrica, Route};
use crate::model::said::RowRule;
use crate::template::{Escape, Template};

/// Most a row's time may be ahead of the clock before it counts as in
/// the future: a CRM's clock a little fast is not an error.
const FUTURE_SLACK_MS: i64 = 5 * 60 * 1000;

/// A rendered row: its columns and values, in the route's order, and the
/// fields its templates found missing (sent empty).
pub struct Row {
    pub cells: Vec<(String, String)>,
    pub missing: Vec<String>,
}

/// Renders `m`'s row from the event's fields, for an event received at
/// `received_at`, judged at `now` (ms since the epoch).
pub fn row<'a>(
    m: &Metrica,
    lookup: impl Fn(&str) -> Option<&'a str> + Copy,
    received_at: i64,
    now: i64,
) -> Result<Row, RowRule> {
    let mut cells = Vec::new();
    let mut missing = Vec::new();
    for (column, template) in &m.row {
        let rendered = render(template, lookup);
        for field in rendered.1 {
            if !missing.contains(&field) {
                missing.push(field);
            }
        }
        cells.push((column.clone(), cell(column, rendered.0.trim())?));
    }
    let time_column = m.route.time_column();
    match cells.iter_mut().find(|(c, _)| c == time_column) {
        Some((_, value)) if !value.is_empty() => {
            let at = parse_time(value, &m.time_zone).ok_or_else(|| RowRule::NotTime {
                column: time_column.into(),
                value: value.clone(),
            })?;
            check_age(m, time_column, value, at, now)?;
            *value = write_time(m, at);
        }
        Some((_, _)) => {
            return Err(RowRule::Missing {
                column: time_column.into(),
            })
        }
        // Not in the row: the event's arrival.
        None => {
            let value = write_time(m, received_at);
            check_age(m, time_column, &value, received_at, now)?;
            cells.push((time_column.into(), value));
        }
    }
    for required in m.route.required() {
        if cells.iter().any(|(c, v)| c == required && v.is_empty()) {
            return Err(RowRule::Missing {
                column: (*required).into(),
            });
        }
    }
    let ids = m.route.identifiers();
    if !cells.iter().any(|(c, v)| ids.contains(&c.as_str()) && !v.is_empty()) {
        return Err(RowRule::NoIdentifier {
            columns: ids.join(", "),
        });
    }
    cells.sort_by_key(|(name, _)| m.route.columns().iter().position(|c| c == name));
    Ok(Row { cells, missing })
}

fn render<'a>(template: &Template, lookup: impl Fn(&str) -> Option<&'a str> + Copy) -> (String, Vec<String>) {
    let rendered = template.render(lookup, Escape::None);
    (rendered.text, rendered.missing)
}

/// A column's value as Metrica wants it.
fn cell(column: &str, value: &str) -> Result<String, RowRule> {
    if value.is_empty() {
        return Ok(String::new());
    }
    Ok(match column {
        "phones" => phones(value)?.join(","),
        "phones_md5" => phones(value)?.iter().map(|p| hashed(p)).collect::<Vec<_>>().join(","),
        "emails" => emails(value).join(","),
        "emails_md5" => emails(value).iter().map(|e| hashed(e)).collect::<Vec<_>>().join(","),
        "revenue" | "cost" | "Price" => number(column, value)?,
        _ => value.to_string(),
    })
}

/// Each of the comma-separated phones as `7XXXXXXXXXX` (a number with its
/// country code, digits only: Metrica's format); one already hashed (32
/// hex digits) as it is.
fn phones(value: &str) -> Result<Vec<String>, RowRule> {
    value
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            if is_md5(p) {
                return Ok(p.to_ascii_lowercase());
            }
            let digits = crate::template::phone(p).trim_start_matches('+').to_string();
            if (11..=15).contains(&digits.len()) {
                Ok(digits)
            } else {
                Err(RowRule::NotPhone { value: p.to_string() })
            }
        })
        .collect()
}

fn emails(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|e| e.trim().to_lowercase())
        .filter(|e| !e.is_empty())
        .collect()
}

fn is_md5(value: &str) -> bool {
    value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// md5 in hex, unless `value` already is one.
fn hashed(value: &str) -> String {
    use md5::Digest;
    if is_md5(value) {
        return value.to_ascii_lowercase();
    }
    md5::Md5::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A decimal number with a dot (`1 500,50` → `1500.50`).
fn number(column: &str, value: &str) -> Result<String, RowRule> {
    let text: String = value
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| if c == ',' { '.' } else { c })
        .collect();
    match text.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(text),
        _ => Err(RowRule::NotNumber {
            column: column.into(),
            value: value.into(),
        }),
    }
}

/// A row's time: Unix seconds (or milliseconds), RFC 3339 with its
/// offset, or a date and time without a zone (`2026-12-01 14:30`,
/// `01.12.2026 14:30`, a date alone at midnight) read in the counter's zone.
pub fn parse_time(value: &str, tz: &jiff::tz::TimeZone) -> Option<i64> {
    let value = value.trim();
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = value.parse().ok()?;
        return match value.len() {
            9 | 10 => n.checked_mul(1000),
            13 => Some(n),
            _ => None,
        };
    }
    if let Ok(ts) = value.parse::<Timestamp>() {
        return Some(ts.as_millisecond());
    }
    let civil = value
        .replacen(' ', "T", 1)
        .parse::<DateTime>()
        .ok()
        .or_else(|| {
            ["%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y"]
                .iter()
                .find_map(|f| {
                    DateTime::strptime(f, value).ok().or_else(|| {
                        jiff::civil::Date::strptime(f, value)
                            .ok()
                            .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
                    })
                })
        })
        .or_else(|| {
            value
                .parse::<jiff::civil::Date>()
                .ok()
                .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
        })?;
    civil
        .to_zoned_datetime(tz.clone())
        .ok()
        .map(|z| z.timestamp().as_millisecond())
}

fn check_age(m: &Metrica, column: &str, value: &str, at: i64, now: i64) -> Result<(), RowRule> {
    if at > now + FUTURE_SLACK_MS {
        return Err(RowRule::Future {
            column: column.into(),
            value: value.into(),
        });
    }
    if now - at > m.window.as_millis() as i64 {
        return Err(RowRule::TooOld {
            column: column.into(),
            value: value.into(),
            days: m.window.as_secs().div_ceil(86_400),
        });
    }
    Ok(())
}

/// The time as the route writes it: the CDP's `YYYY-MM-DD HH:MM:SS` in the
/// counter's zone; offline conversions' Unix seconds.
fn write_time(m: &Metrica, at: i64) -> String {
    match m.route {
        Route::Conversions => (at / 1000).to_string(),
        Route::Orders => Timestamp::from_millisecond(at)
            .map(|ts| {
                ts.to_zoned_datetime(m.time_zone.clone())
                    .strftime("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_default(),
    }
}

/// The CSV file of a batch: the header, then each row (JSON pairs, as
/// stored) with the columns any row has, in the route's order.
pub fn csv(route: Route, rows: &[Vec<(String, String)>]) -> Vec<u8> {
    let columns: Vec<&str> = route
        .columns()
        .iter()
        .copied()
        .filter(|c| rows.iter().any(|r| r.iter().any(|(name, _)| name == c)))
        .collect();
    write_csv(&columns, rows)
}

/// One row as the CSV file it goes in (a row is stored in its route's
/// column order): what `try` shows.
pub fn row_csv(row: &[(String, String)]) -> Vec<u8> {
    let columns: Vec<&str> = row.iter().map(|(name, _)| name.as_str()).collect();
    write_csv(&columns, std::slice::from_ref(&row.to_vec()))
}

fn write_csv(columns: &[&str], rows: &[Vec<(String, String)>]) -> Vec<u8> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let _ = out.write_record(columns);
    for row in rows {
        let record: Vec<&str> = columns
            .iter()
            .map(|c| row.iter().find(|(name, _)| name == c).map_or("", |(_, v)| v.as_str()))
            .collect();
        let _ = out.write_record(&record);
    }
    out.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn metrica(route: Route, row: &[(&str, &str)]) -> Metrica {
        Metrica {
            counter: 1,
            token: crate::config::Secret::new("t"),
            route,
            api: "http://127.0.0.1:9".into(),
            time_zone: jiff::tz::TimeZone::get("Europe/Moscow").unwrap(),
            time_zone_name: "Europe/Moscow".into(),
            batch_every: Duration::from_secs(900),
            batch_max: 1000,
            poll_every: Duration::from_secs(300),
            window: Duration::from_secs(21 * 86_400),
            row: row
                .iter()
                .map(|(c, t)| (c.to_string(), Template::parse(t).unwrap()))
                .collect(),
            key: "p/a".into(),
        }
    }

    /// 2026-12-01 10:00:00 in Moscow (UTC+3).
    const DEC_1_10AM_MSK: i64 = 1_796_108_400_000;

    #[test]
    fn times_read_in_the_counters_zone_unless_they_say_theirs() {
        let tz = jiff::tz::TimeZone::get("Europe/Moscow").unwrap();
        for text in [
            "2026-12-01 10:00",
            "2026-12-01T10:00:00",
            "01.12.2026 10:00",
            "01.12.2026 10:00:00",
            "2026-12-01T07:00:00Z",
            "2026-12-01T10:00:00+03:00",
            "1796108400",
            "1796108400000",
        ] {
            assert_eq!(parse_time(text, &tz), Some(DEC_1_10AM_MSK), "{text}");
        }
        assert_eq!(parse_time("01.12.2026", &tz), Some(DEC_1_10AM_MSK - 10 * 3_600_000));
        for bad in ["вчера", "2026-13-01 10:00", "12345", ""] {
            assert_eq!(parse_time(bad, &tz), None, "{bad}");
        }
    }

    #[test]
    fn a_row_follows_metricas_rules() {
        let m = metrica(
            Route::Orders,
            &[
                ("id", "{{id}}"),
                ("create_date_time", "{{at}}"),
                ("phones", "{{phone}}"),
                ("emails_md5", "{{email}}"),
                ("revenue", "{{sum}}"),
            ],
        );
        let now = DEC_1_10AM_MSK + 3_600_000;
        let fields = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        };
        let got = row(
            &m,
            fields(&[
                ("id", "A1"),
                ("at", "01.12.2026 10:00"),
                ("phone", "8 (916) 123-45-67, +7 916 765 43 21"),
                ("email", " Anna@Example.RU "),
                ("sum", "1 500,50"),
            ]),
            now,
            now,
        )
        .unwrap();
        assert_eq!(
            got.cells,
            [
                ("id".to_string(), "A1".to_string()),
                ("create_date_time".into(), "2026-12-01 10:00:00".into()),
                ("phones".into(), "79161234567,79167654321".into()),
                ("emails_md5".into(), hashed("anna@example.ru")),
                ("revenue".into(), "1500.50".into()),
            ]
        );
        assert_eq!(hashed("anna@example.ru").len(), 32);
        let refused = |pairs: &'static [(&'static str, &'static str)]| row(&m, fields(pairs), now, now).err();
        assert_eq!(
            refused(&[("id", "A1"), ("at", "01.11.2026 10:00"), ("phone", "89161234567")]),
            Some(RowRule::TooOld {
                column: "create_date_time".into(),
                value: "01.11.2026 10:00".into(),
                days: 21
            })
        );
        assert!(matches!(
            refused(&[("id", "A1"), ("at", "02.12.2026 10:00"), ("phone", "89161234567")]),
            Some(RowRule::Future { .. })
        ));
        assert!(matches!(
            refused(&[("id", "A1"), ("at", "01.12.2026 10:00"), ("phone", "123")]),
            Some(RowRule::NotPhone { .. })
        ));
        assert!(matches!(
            refused(&[
                ("id", "A1"),
                ("at", "01.12.2026 10:00"),
                ("phone", "89161234567"),
                ("sum", "free")
            ]),
            Some(RowRule::NotNumber { .. })
        ));
        assert!(matches!(
            refused(&[("id", ""), ("at", "01.12.2026 10:00"), ("phone", "89161234567")]),
            Some(RowRule::Missing { .. })
        ));
        assert!(matches!(
            refused(&[("id", "A1"), ("at", "01.12.2026 10:00")]),
            Some(RowRule::NoIdentifier { .. })
        ));
    }

    /// Offline conversions carry Unix seconds; a row without a time is
    /// dated when its event arrived.
    #[test]
    fn conversions_are_dated_in_unix_seconds() {
        let m = metrica(Route::Conversions, &[("ClientId", "{{cid}}"), ("Target", "paid")]);
        let got = row(
            &m,
            |name| (name == "cid").then_some("17000"),
            DEC_1_10AM_MSK,
            DEC_1_10AM_MSK,
        )
        .unwrap();
        assert_eq!(
            got.cells,
            [
                ("ClientId".to_string(), "17000".to_string()),
                ("Target".into(), "paid".into()),
                ("DateTime".into(), "1796108400".into()),
            ]
        );
    }

    /// The file has the columns any row has, in the route's order; a value
    /// holding a comma or a quote is quoted, as CSV says.
    #[test]
    fn a_batch_is_one_csv_file() {
        let rows = vec![
            vec![
                ("id".to_string(), "1".to_string()),
                ("phones".into(), "79161234567,79167654321".into()),
            ],
            vec![
                ("id".to_string(), "2".to_string()),
                ("create_date_time".into(), "2026-12-01 10:00:00".into()),
            ],
            vec![("id".to_string(), "3 \"VIP\"".to_string())],
        ];
        let file = String::from_utf8(csv(Route::Orders, &rows)).unwrap();
        assert_eq!(
            file,
            "id,create_date_time,phones\n1,,\"79161234567,79167654321\"\n2,2026-12-01 10:00:00,\n\"3 \"\"VIP\"\"\",,\n"
        );
    }
}
