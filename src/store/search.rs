//! Finding operations by a field's value (an appointment id, a phone, an ad
//! id): what the console's search box does.
//!
//! Each operation's field values go into one row of `field_search`, an FTS5
//! table without content of its own (the values stay in `operations`), so
//! the index costs one row per operation and a search is an index lookup
//! that yields ids newest first. Values are tokenized (unicode61: letters
//! and digits, case folded, Cyrillic included); a search is the phrase
//! typed, in whole words, or its last word as a prefix when it ends in `*`. Phones are written many ways
//! (`8 (999) 123-45-67`, `+79991234567`), so a phone-like value is also
//! indexed as `79991234567`, and a phone-like search looks for that.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};

/// The `meta` key holding the newest operation id the search has indexed
/// (its name is also in migration 6's trigger).
const META_INDEXED_THROUGH: &str = "search_indexed_through";
/// Rows in the index, and those of them whose operation was pruned since.
const META_ROWS: &str = "search_rows";
const META_STALE_ROWS: &str = "search_stale_rows";

/// Digits in a Russian phone number with its country code.
const PHONE_DIGITS: usize = 11;

/// The text indexed for an operation with these fields: the values, then
/// the normal form of each phone among them.
pub(super) fn index_text<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    let mut text = String::new();
    for value in values {
        text.push_str(value);
        text.push('\n');
        if let Some(phone) = phone(value) {
            text.push_str(&phone);
            text.push('\n');
        }
    }
    text
}

/// `79991234567` for a value written as a Russian phone number in any
/// usual way; `None` for anything else.
fn phone(value: &str) -> Option<String> {
    let value = value.trim();
    if !value
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '(' | ')' | ' '))
    {
        return None;
    }
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    match digits.len() {
        10 if digits.starts_with('9') => Some(format!("7{digits}")),
        PHONE_DIGITS if digits.starts_with('8') || digits.starts_with('7') => Some(format!("7{}", &digits[1..])),
        _ => None,
    }
}

/// The FTS5 query for what a person typed, or `None` when it holds no
/// word to look for.
pub(super) fn match_expression(typed: &str) -> Option<String> {
    if let Some(phone) = phone(typed) {
        return Some(format!("\"{phone}\""));
    }
    if !typed.chars().any(char::is_alphanumeric) {
        return None;
    }
    // A phrase in double quotes is taken literally by FTS5 (its own quotes
    // doubled), so nothing typed is read as query syntax. Whole words by
    // default: a prefix query merges the lists of every word it matches
    // (half a second for a word in each of 10 M operations), while a
    // whole word is read newest first and stops at the page's end.
    let typed = typed.trim();
    match typed.strip_suffix('*') {
        Some(start) if start.chars().any(char::is_alphanumeric) => {
            Some(format!("\"{}\"*", start.trim().replace('"', "\"\"")))
        }
        _ => Some(format!("\"{}\"", typed.replace('"', "\"\""))),
    }
}

/// Indexes one operation's field values (an operation without fields has no row).
fn index<'a>(conn: &Connection, id: i64, values: impl IntoIterator<Item = &'a str>) -> rusqlite::Result<()> {
    let text = index_text(values);
    if text.is_empty() {
        return Ok(());
    }
    conn.prepare_cached("INSERT INTO field_search (rowid, text) VALUES (?1, ?2)")?
        .execute(params![id, text])?;
    Ok(())
}

/// Indexes up to `limit` operations past the last one indexed, oldest
/// first, and moves the mark past them; how many it indexed.
///
/// The writer calls it ten times a second, in the transaction of whatever
/// batch it is committing, rather than indexing each operation as it is
/// stored: FTS5 writes a new segment per transaction, and one per group
/// commit cost a quarter of the acknowledgement rate (BENCHMARKS.md). An
/// operation is therefore searchable a moment after it is stored.
pub(super) fn index_pending(conn: &Connection, limit: usize) -> rusqlite::Result<usize> {
    let through = meta(conn, META_INDEXED_THROUGH)?;
    let mut read = conn.prepare_cached("SELECT id, fields FROM operations WHERE id > ?1 ORDER BY id LIMIT ?2")?;
    let mut rows = read.query(params![through, limit as i64])?;
    let mut last = through;
    let mut indexed = 0;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let text: String = row.get(1)?;
        // A row that cannot be read is left out of the search, not a
        // reason to stop indexing the others.
        if let Ok(fields) = serde_json::from_str::<BTreeMap<String, String>>(&text) {
            index(conn, id, fields.values().map(String::as_str))?;
        }
        last = id;
        indexed += 1;
    }
    if last > through {
        add_to_meta(conn, META_INDEXED_THROUGH, last - through)?;
        add_to_meta(conn, META_ROWS, indexed as i64)?;
    }
    Ok(indexed)
}

/// Starts the index over when the rows of pruned operations outnumber
/// the others (they match nothing, but take space): it is emptied at once
/// and [`index_pending`] fills it again from the oldest operation, a step
/// at a time; meanwhile a search finds only what is indexed again.
/// Whether it started over.
pub(super) fn rebuild_if_stale(conn: &Connection) -> rusqlite::Result<bool> {
    let stale = meta(conn, META_STALE_ROWS)?;
    if stale == 0 || stale < meta(conn, META_ROWS)? {
        return Ok(false);
    }
    conn.execute("INSERT INTO field_search (field_search) VALUES ('delete-all')", [])?;
    conn.execute(
        "DELETE FROM meta WHERE key IN (?1, ?2, ?3)",
        params![META_INDEXED_THROUGH, META_ROWS, META_STALE_ROWS],
    )?;
    log::info!("search index: rows of {stale} pruned operations outnumbered the rest; rebuilding it in the background");
    Ok(true)
}

fn meta(conn: &Connection, key: &str) -> rusqlite::Result<i64> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

fn add_to_meta(conn: &Connection, key: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

/// Migration 6: indexes the operations recorded before it.
pub(super) fn index_existing(conn: &Connection) -> rusqlite::Result<()> {
    while index_pending(conn, 10_000)? > 0 {}
    Ok(())
}

/// Marks every operation so far as indexed (the benchmark's seed indexes
/// its own in bulk).
#[cfg(feature = "bench")]
pub(super) fn mark_all_indexed(conn: &Connection) -> rusqlite::Result<()> {
    for key in [META_INDEXED_THROUGH, META_ROWS] {
        conn.execute(
            "INSERT INTO meta (key, value) SELECT ?1, COALESCE(MAX(id), 0) FROM operations WHERE true
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_written_any_usual_way_are_one_token() {
        for written in ["8 (999) 123-45-67", "+7 999 123 45 67", "79991234567", "9991234567"] {
            assert_eq!(phone(written).as_deref(), Some("79991234567"), "{written}");
        }
        assert_eq!(phone("12345"), None);
        assert_eq!(phone("order 89991234567"), None);
        assert_eq!(match_expression("8-999-123-45-67").as_deref(), Some("\"79991234567\""));
    }

    #[test]
    fn what_is_typed_is_a_literal_phrase() {
        assert_eq!(
            match_expression("Иван \"x\" OR y").as_deref(),
            Some("\"Иван \"\"x\"\" OR y\"")
        );
        assert_eq!(
            match_expression("Иван*").as_deref(),
            Some("\"Иван\"*"),
            "a prefix when asked"
        );
        assert_eq!(match_expression("  -- "), None);
        assert_eq!(match_expression("*"), None);
    }
}
