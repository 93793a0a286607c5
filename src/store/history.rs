//! The operations a filter lists, newest first: `history`, the console's
//! list, and the WHERE clause they and the export share.

use super::db::{Dialect, Param, Value};
use super::read::{summary_row, with_status, OperationSummary, Reader, SUMMARY_COLUMNS};
use super::StoreError;
use crate::model::OpStatus;

/// Which operations `history` lists.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    /// Only operations whose id is in one of these inclusive ranges (none: any id).
    pub ids: Vec<(i64, i64)>,
    pub processing: Option<String>,
    pub status: Option<OpStatus>,
    /// Only operations whose `event` field is this.
    pub event: Option<String>,
    /// Only operations received at or after this time.
    pub since: Option<i64>,
    /// Only operations received before this time.
    pub until: Option<i64>,
    /// Only these processings (a console viewer's); `None`: any.
    pub within: Option<Vec<String>>,
    /// Only ids below this one: the next page after a page ending there.
    pub before: Option<i64>,
    /// Only operations with a field value matching this, as typed (see `search.rs`).
    pub search: Option<String>,
    pub limit: usize,
}

/// A WHERE clause built from the filters given, with its bound values.
#[derive(Default)]
pub(super) struct Conditions {
    pub(super) parts: Vec<String>,
    pub(super) values: Vec<Value>,
}

impl Conditions {
    /// Binds `value`; returns its placeholder (`?3`).
    pub(super) fn bind(&mut self, value: impl Into<Value>) -> String {
        self.values.push(value.into());
        format!("?{}", self.values.len())
    }

    /// Adds `column_and_operator ?n` for `value`.
    pub(super) fn add(&mut self, column_and_operator: &str, value: impl Into<Value>) {
        let placeholder = self.bind(value);
        self.parts.push(format!("{column_and_operator} {placeholder}"));
    }

    /// The processing and status filters every listing has.
    pub(super) fn add_matches(&mut self, processing: Option<&str>, status: Option<OpStatus>) {
        if let Some(processing) = processing {
            self.add("o.processing =", processing.to_string());
        }
        if let Some(status) = status {
            self.add("o.status =", status.as_str().to_string());
        }
    }

    /// `WHERE a AND b`, or nothing.
    pub(super) fn where_clause(&self) -> String {
        if self.parts.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.parts.join(" AND "))
        }
    }

    /// The bound values, as a statement takes them.
    pub(super) fn params(&self) -> Vec<&dyn Param> {
        self.values.iter().map(|v| v as &dyn Param).collect()
    }
}

impl Reader {
    /// Operations matching `filter`, newest first.
    pub fn history(&self, filter: &HistoryFilter) -> Result<Vec<OperationSummary>, StoreError> {
        // Only the filters given become conditions, so SQLite can pick the
        // index that fits (by processing, by status, or the primary key).
        let mut conditions = Conditions::default();
        if !filter.ids.is_empty() {
            let any: Vec<String> = filter
                .ids
                .iter()
                .map(|&(from, to)| {
                    let from = conditions.bind(from);
                    let to = conditions.bind(to);
                    format!("o.id BETWEEN {from} AND {to}")
                })
                .collect();
            conditions.parts.push(format!("({})", any.join(" OR ")));
        }
        conditions.add_matches(filter.processing.as_deref(), filter.status);
        if let Some(event) = &filter.event {
            conditions.add("o.event =", event.clone());
        }
        if let Some(since) = filter.since {
            conditions.add("o.received_at >=", since);
        }
        if let Some(until) = filter.until {
            conditions.add("o.received_at <", until);
        }
        if let Some(within) = &filter.within {
            let names: Vec<String> = within.iter().map(|name| conditions.bind(name.clone())).collect();
            conditions.parts.push(format!("o.processing IN ({})", names.join(", ")));
        }
        if let Some(before) = filter.before {
            conditions.add("o.id <", before);
        }
        if let (Some(typed), Dialect::Postgres) = (filter.search.as_deref(), self.conn.dialect()) {
            // No index file there: the operations' own words (postgres/schema.rs).
            let Some(query) = super::sqlite::search::pg_query(typed) else {
                return Ok(Vec::new());
            };
            let placeholder = conditions.bind(query);
            conditions.parts.push(format!(
                "to_tsvector('simple', o.search_text) @@ to_tsquery('simple', {placeholder})"
            ));
        }
        let search = match filter.search.as_deref().map(super::sqlite::search::match_expression) {
            _ if self.conn.dialect() == Dialect::Postgres => None,
            None => None,
            // Typed, but nothing in it to look for: nothing matches.
            Some(None) => return Ok(Vec::new()),
            Some(Some(expression)) if self.attach_search()? => Some(expression),
            // No index yet: nothing found so far.
            Some(Some(_)) => return Ok(Vec::new()),
        };
        let (from, order) = match search {
            // Driven by the search index, which yields ids newest first, so
            // a common value stops at the page's end instead of collecting
            // every match first.
            Some(expression) => {
                let placeholder = conditions.bind(expression);
                conditions.parts.push(format!("s.field_search MATCH {placeholder}"));
                if let Some(before) = filter.before {
                    conditions.add("s.rowid <", before);
                }
                (
                    "search.field_search s CROSS JOIN operations o ON o.id = s.rowid",
                    "s.rowid",
                )
            }
            None => ("operations o", "o.id"),
        };
        let limit = conditions.bind(filter.limit as i64);
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM {from} {} ORDER BY {order} DESC LIMIT {limit}",
            conditions.where_clause()
        );
        let rows = self.conn.query(&sql, &conditions.params(), summary_row)?;
        rows.into_iter().map(with_status).collect()
    }
}
