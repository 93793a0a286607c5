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
//!
//! The index lives in a file of its own beside the database (its path plus
//! `-search`), written by its own thread (store/sqlite/indexer.rs), not by the
//! writer: FTS5 merges its segments inside the commit that adds rows, and
//! on an index of a million operations some of those commits took 40-200 ms
//! of CPU, which every webhook in the same commit waited for (BENCHMARKS.md,
//! "Pruning and backup stalls"). In a file of its own, a merge holds up no one.
//! The index is derived data: it can be deleted at any time and is rebuilt.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::store::sqlite::files;
use crate::store::{StoreError, BUSY_TIMEOUT};

/// The layout of the search file; a file with another is started over.
const SEARCH_VERSION: i64 = 1;

/// The search index's file for the database at `database`.
pub(in crate::store) fn search_path(database: &Path) -> PathBuf {
    crate::store::sqlite::files::beside(database, "-search")
}

/// Opens the search file beside `database`, creating it (owner-only) or
/// starting it over when its layout is not this build's.
pub(in crate::store) fn open_search(database: &Path) -> Result<Connection, StoreError> {
    let path = search_path(database);
    files::owner_only(&path);
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Rebuildable, so a power cut may cost its last commits: no fsync per commit.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version != SEARCH_VERSION {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE;
             DROP TABLE IF EXISTS field_search;
             DROP TABLE IF EXISTS progress;
             CREATE VIRTUAL TABLE field_search USING fts5 (text, content = '');
             -- through: the newest operation id indexed; rows: operations indexed.
             CREATE TABLE progress (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
             PRAGMA user_version = {SEARCH_VERSION};
             COMMIT;"
        ))?;
    }
    Ok(conn)
}

/// Digits in a Russian phone number with its country code.
const PHONE_DIGITS: usize = 11;

/// The text indexed for an operation with these fields: the values, then
/// the normal form of each phone among them.
pub(in crate::store) fn index_text<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
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
pub(in crate::store) fn match_expression(typed: &str) -> Option<String> {
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

/// Words as FTS5's default tokenizer sees them: runs of letters and
/// digits, lower-cased.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
}

/// PostgreSQL's searchable text of an operation's field values: the same
/// words FTS5 indexes here, space-separated, so that PostgreSQL's `simple`
/// parser finds exactly those (and not, say, an e-mail address as one).
pub(in crate::store) fn pg_search_text<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    words(&index_text(values)).collect::<Vec<_>>().join(" ")
}

/// What is typed, as a PostgreSQL `tsquery` of the same meaning as
/// [`match_expression`]: the words in a row, the last one a prefix if it
/// ends with `*`; None when there is nothing to look for.
pub(in crate::store) fn pg_query(typed: &str) -> Option<String> {
    let expression = match_expression(typed)?;
    let prefix = expression.ends_with('*');
    let words: Vec<String> = words(&expression).map(|w| format!("'{w}'")).collect();
    let mut query = words.join(" <-> ");
    if words.is_empty() {
        return None;
    }
    if prefix {
        query.push_str(":*");
    }
    Some(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_sees_the_same_words() {
        assert_eq!(
            pg_search_text(["Иван Петров", "ivan@mail.ru", "8 (999) 123-45-67"]),
            "иван петров ivan mail ru 8 999 123 45 67 79991234567"
        );
        assert_eq!(pg_query("+7 999 123 45 67").as_deref(), Some("'79991234567'"));
        assert_eq!(pg_query("Иван Пет*").as_deref(), Some("'иван' <-> 'пет':*"));
        assert_eq!(pg_query("it's"), Some("'it' <-> 's'".to_string()));
        assert_eq!(pg_query(" -- "), None);
    }

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
