//! GET /export.csv: the operations page's filter as CSV, with the columns
//! of `hookrelay export --format csv`, for a spreadsheet. A viewer's file
//! holds only its processings, as its list does. Newest first, as the list
//! shows them, and at most [`MAX_ROWS`] operations: a bigger export is
//! the command line's, which streams.

use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use super::auth::Signed;
use super::listing::{filter_of, history_filter};
use super::request::Context;
use super::{read, Console};
use crate::http::Reply;
use crate::store::ExportRow;

/// Most operations one console export holds.
pub(super) const MAX_ROWS: usize = 100_000;
/// Operations read per query.
const CHUNK: usize = 1_000;

pub(super) async fn export(console: &Arc<Console>, cx: &Context, signed: &Signed) -> Reply {
    let filter = filter_of(|key| cx.param(key));
    let mut store_filter = match history_filter(cx, signed, &filter) {
        Ok(f) => f,
        Err(problem) => return cx.message(StatusCode::BAD_REQUEST, Some(signed), &problem),
    };
    store_filter.limit = CHUNK;
    let written = read(console, move |reader| {
        let mut out = csv::Writer::from_writer(Vec::new());
        let failed = |e: csv::Error| crate::store::StoreError::Unusable(format!("writing CSV: {e}"));
        out.write_record(ExportRow::CSV_COLUMNS).map_err(failed)?;
        let mut rows = 0;
        loop {
            let page = reader.history(&store_filter)?;
            let ids: Vec<i64> = page.iter().map(|s| s.id).collect();
            let mut fields = reader.fields_of(&ids)?;
            for summary in page.iter().take(MAX_ROWS - rows) {
                let row = ExportRow {
                    fields: fields.remove(&summary.id).unwrap_or_default(),
                    summary: summary.clone(),
                };
                out.write_record(row.csv_record()).map_err(failed)?;
            }
            rows += page.len().min(MAX_ROWS - rows);
            match page.last() {
                Some(last) if page.len() == CHUNK && rows < MAX_ROWS => store_filter.before = Some(last.id),
                _ => break,
            }
        }
        out.into_inner()
            .map_err(|e| crate::store::StoreError::Unusable(format!("writing CSV: {e}")))
    })
    .await;
    let body = match written {
        Ok(body) => body,
        Err(err) => return cx.read_failed(signed, err),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    headers.insert(
        CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"hookrelay-operations.csv\""),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}
