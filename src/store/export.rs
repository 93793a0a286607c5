//! Streaming every operation that matches, oldest first, one row at a time:
//! `hookrelay export` writes a million of them in constant memory.

use std::collections::BTreeMap;

use super::history::Conditions;
use super::read::{parse_json, summary_row, with_status, SUMMARY_COLUMNS};
use super::{OperationSummary, Reader, StoreError};
use crate::model::OpStatus;

/// Which operations an export takes; every `None` matches all.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    /// Received at or after (ms since the epoch).
    pub since: Option<i64>,
    /// Received before.
    pub until: Option<i64>,
    pub processing: Option<String>,
    pub status: Option<OpStatus>,
}

/// One exported operation: its summary and its fields.
#[derive(Debug, Clone)]
pub struct ExportRow {
    pub summary: OperationSummary,
    pub fields: BTreeMap<String, String>,
}

impl ExportRow {
    /// The CSV columns, in order. `fields` is a JSON object: the fields differ
    /// from event to event, and one column keeps the file's shape stable.
    pub const CSV_COLUMNS: [&str; 8] = [
        "id",
        "processing",
        "received_at",
        "status",
        "reason",
        "deliveries",
        "delivered",
        "fields",
    ];

    /// This operation as a CSV record, in [`Self::CSV_COLUMNS`] order
    /// (`hookrelay export --format csv`, and the console's export).
    pub fn csv_record(&self) -> [String; 8] {
        let s = &self.summary;
        [
            s.id.to_string(),
            s.processing.clone(),
            crate::clock::rfc3339(s.received_at),
            s.status.as_str().to_string(),
            s.reason.as_ref().map(ToString::to_string).unwrap_or_default(),
            s.deliveries.to_string(),
            s.delivered.to_string(),
            serde_json::Value::from(serde_json::Map::from_iter(
                self.fields
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str()))),
            ))
            .to_string(),
        ]
    }
}

impl Reader {
    /// Hands each operation matching `filter` to `each`, oldest first,
    /// without collecting them; returns how many. It reads in one
    /// transaction, so the rows are one consistent view; in WAL mode that
    /// does not hold up the daemon's writes.
    pub fn export(
        &self,
        filter: &ExportFilter,
        mut each: impl FnMut(ExportRow) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let mut conditions = Conditions::default();
        if let Some(since) = filter.since {
            conditions.add("o.received_at >=", since);
        }
        if let Some(until) = filter.until {
            conditions.add("o.received_at <", until);
        }
        conditions.add_matches(filter.processing.as_deref(), filter.status);
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS}, o.fields FROM operations o {} ORDER BY o.id",
            conditions.where_clause()
        );
        let mut count = 0;
        let on_row = |row: &super::db::Row| {
            let summary = with_status(summary_row(row)?)?;
            let fields: String = row.get(8)?;
            count += 1;
            each(ExportRow {
                summary,
                fields: parse_json("fields", &fields)?,
            })
        };
        self.conn.for_each(&sql, &conditions.params(), on_row)?;
        Ok(count)
    }
}
