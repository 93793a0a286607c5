//! `hookrelay export`: operations with their fields and delivery outcome,
//! oldest first, as JSON lines or CSV on stdout, streamed in constant
//! memory. The columns are stable (README, "Command line").

use std::io::{BufWriter, Write};

use serde_json::json;

use super::history::{parse_status, resolve_since, resolve_time};
use super::{load_config, Cli, Failure};
use crate::model::OpStatus;
use crate::store::{ExportFilter, ExportRow, Reader, StoreError};

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    Jsonl,
    Csv,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only operations received since then (24h, 7d, 2026-11-25, 2026-11-25 10:00).
    #[arg(long)]
    since: Option<String>,
    /// Only operations received before then (same forms as --since).
    #[arg(long)]
    until: Option<String>,
    /// Only this processing.
    #[arg(long)]
    processing: Option<String>,
    /// Only this status.
    #[arg(long, value_parser = parse_status())]
    status: Option<OpStatus>,
    /// jsonl (one JSON object per line) or csv.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let config = load_config(cli)?;
    let filter = ExportFilter {
        since: resolve_since(args.since.as_deref(), &config)?,
        until: resolve_time("--until", args.until.as_deref(), &config)?,
        processing: args.processing.clone(),
        status: args.status,
    };
    let reader = Reader::open(config.storage.location())?;
    let stdout = std::io::stdout().lock();
    let written = match args.format {
        Format::Jsonl => {
            let mut out = BufWriter::new(stdout);
            let count = reader.export(&filter, |row| {
                writeln!(out, "{}", to_json(&row)).map_err(|e| StoreError::Unusable(format!("writing: {e}")))
            })?;
            out.flush()?;
            count
        }
        Format::Csv => {
            let mut out = csv::Writer::from_writer(BufWriter::new(stdout));
            let written = |e: csv::Error| StoreError::Unusable(format!("writing: {e}"));
            out.write_record(ExportRow::CSV_COLUMNS).map_err(written)?;
            let count = reader.export(&filter, |row| out.write_record(row.csv_record()).map_err(written))?;
            out.flush()?;
            count
        }
    };
    eprintln!("exported {written} operation(s)");
    Ok(())
}

/// One operation as an export line: `history --json`'s keys and `fields`.
fn to_json(row: &ExportRow) -> serde_json::Value {
    let mut line = super::rows::to_json(&row.summary);
    line["fields"] = json!(row.fields);
    line
}
