//! The operations a filter lists, newest first: `history`, the console's
//! list, and the WHERE clause they and the export share.

use std::collections::HashMap;

use super::db::{Dialect, Param, Value};
use super::read::{summary_row, with_status, OperationSummary, Reader, SUMMARY_COLUMNS};
use super::StoreError;
use crate::model::said::Said;
use crate::model::{DeliveryStatus, OpStatus};

/// Which operations `history` lists.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    /// Only operations whose id is in one of these inclusive ranges (none: any id).
    pub ids: Vec<(i64, i64)>,
    pub processing: Option<String>,
    pub status: Option<OpStatus>,
    /// Only operations whose `event` field is this.
    pub event: Option<String>,
    /// Only operations with an action whose newest delivery did not arrive
    /// and failed (or is failing) this way.
    pub outcome: Option<Failing>,
    /// Only operations with an action whose newest delivery's error holds
    /// this text (as recorded: English, with the receiver's own words).
    pub error_text: Option<String>,
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

/// One action's newest delivery of a listed operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Chip {
    pub action: String,
    pub status: DeliveryStatus,
    /// Its last attempt's HTTP status, if it got an answer.
    pub http_status: Option<u16>,
    /// Why it did not arrive (yet): the rule that judged the answer, or the error.
    pub error: Option<Said>,
}

/// How an action's newest delivery failed or is failing: the console's
/// outcome filter, so "replay only what the receiver's outage broke" is
/// one filter away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failing {
    /// Its last answer was 4xx.
    Http4xx,
    /// Its last answer was 5xx.
    Http5xx,
    /// No answer: connection, DNS, TLS or timeout.
    Network,
    /// 5xx or no answer: what a receiver's outage leaves, worth a replay.
    Outage,
    /// A 2xx its response rules did not accept.
    NotAccepted,
    /// Its `max_age` passed before it could be sent.
    Expired,
}

impl Failing {
    /// Every kind, as the console's filter offers them.
    pub const ALL: &[Failing] = &[
        Failing::Http4xx,
        Failing::Http5xx,
        Failing::Network,
        Failing::Outage,
        Failing::NotAccepted,
        Failing::Expired,
    ];

    /// The name in a query string.
    pub fn as_str(self) -> &'static str {
        match self {
            Failing::Http4xx => "4xx",
            Failing::Http5xx => "5xx",
            Failing::Network => "network",
            Failing::Outage => "outage",
            Failing::NotAccepted => "not_accepted",
            Failing::Expired => "expired",
        }
    }

    /// The kind named `text`, if any.
    pub fn parse(text: &str) -> Option<Failing> {
        Failing::ALL.iter().copied().find(|f| f.as_str() == text)
    }

    /// The condition on `d` (the newest delivery, one that did not arrive).
    fn condition(self) -> String {
        let last = |what: &str| format!("({LAST_ATTEMPT_OF_D} {what}))");
        match self {
            Failing::Http4xx => last("AND a.http_status BETWEEN 400 AND 499"),
            Failing::Http5xx => last("AND a.http_status >= 500"),
            Failing::Network => last("AND a.http_status IS NULL AND a.error IS NOT NULL"),
            Failing::Outage => last("AND (a.http_status >= 500 OR (a.http_status IS NULL AND a.error IS NOT NULL))"),
            Failing::NotAccepted => last("AND a.http_status BETWEEN 200 AND 299"),
            Failing::Expired => "d.status = 'expired'".to_string(),
        }
    }
}

/// `EXISTS` of delivery `d`'s last attempt, to be completed with `AND` a
/// condition on it (`a`). Looked up only for deliveries that did not
/// arrive: with the failures one in ten, reading every delivery's
/// attempts made a cold page of "failed with a 4xx" 124 ms on 10 M operations.
const LAST_ATTEMPT_OF_D: &str = "EXISTS (SELECT 1 FROM attempts a WHERE a.id = (
     SELECT MAX(x.id) FROM attempts x WHERE x.delivery_id = d.id)";

/// The condition on delivery `d` that it is the newest of its action (see
/// `newest_per_action!`).
const NEWEST_PER_ACTION: &str = newest_per_action!();

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
        if filter.outcome.is_some() || filter.error_text.is_some() {
            let mut how = vec!["d.status != 'delivered'".to_string()];
            if let Some(outcome) = filter.outcome {
                how.push(outcome.condition());
            }
            if let Some(text) = &filter.error_text {
                let like = conditions.bind(format!(
                    "%{}%",
                    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
                ));
                // lower() on both sides: PostgreSQL's LIKE minds case.
                how.push(format!(
                    "(lower(d.last_error) LIKE lower({like}) ESCAPE '\\'
                      OR ({LAST_ATTEMPT_OF_D} AND (lower(a.error) LIKE lower({like}) ESCAPE '\\'
                                                   OR lower(a.response_body) LIKE lower({like}) ESCAPE '\\'))))"
                ));
            }
            conditions.parts.push(format!(
                "EXISTS (SELECT 1 FROM deliveries d WHERE d.operation_id = o.id AND {NEWEST_PER_ACTION} AND {})",
                how.join(" AND ")
            ));
        }
        if let Some(since) = filter.since {
            conditions.add("o.received_at >=", since);
        }
        if let Some(until) = filter.until {
            conditions.add("o.received_at <", until);
        }
        if (filter.since.is_some() || filter.until.is_some()) && self.conn.dialect() == Dialect::Sqlite {
            // The ids received then, so a walk newest first starts at the
            // range's end (store/sqlite/received.rs). PostgreSQL's planner
            // uses its index on the time instead.
            let (from, below) = super::sqlite::received::id_range(&self.conn, filter.since, filter.until)?;
            if let Some(from) = from {
                conditions.add("o.id >=", from);
            }
            if let Some(below) = below {
                conditions.add("o.id <", below);
            }
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
                "o.id IN (SELECT operation_id FROM operation_words
                          WHERE to_tsvector('simple', search_text) @@ to_tsquery('simple', {placeholder}))"
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

    /// Each of `ids`' actions as a list row shows it: the newest delivery's
    /// status, its last answer's HTTP status and its error, in action order.
    pub fn outcomes_of(&self, ids: &[i64]) -> Result<HashMap<i64, Vec<Chip>>, StoreError> {
        let mut found: HashMap<i64, Vec<Chip>> = HashMap::new();
        if ids.is_empty() {
            return Ok(found);
        }
        let mut conditions = Conditions::default();
        let listed: Vec<String> = ids.iter().map(|id| conditions.bind(*id)).collect();
        let sql = format!(
            "SELECT d.operation_id, d.action, d.status, d.last_error,
                    (SELECT a.http_status FROM attempts a WHERE a.delivery_id = d.id ORDER BY a.id DESC LIMIT 1)
             FROM deliveries d
             WHERE d.operation_id IN ({}) AND {NEWEST_PER_ACTION}
             ORDER BY d.operation_id, d.position",
            listed.join(", ")
        );
        let rows = self.conn.query(&sql, &conditions.params(), |row| {
            Ok((
                row.get::<i64>(0)?,
                Chip {
                    action: row.get(1)?,
                    status: row.get::<String>(2)?.parse().map_err(StoreError::Corrupt)?,
                    error: row.get(3)?,
                    http_status: row.get::<Option<i64>>(4)?.map(|s| s as u16),
                },
            ))
        })?;
        for (id, chip) in rows {
            found.entry(id).or_default().push(chip);
        }
        Ok(found)
    }
}
