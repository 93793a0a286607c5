//! `hookrelay history --follow`: the newest operations, then every new one
//! and every status change as it happens, like `tail -f`. It reads the
//! database beside the running daemon (a poll every half second: new ids
//! by the primary key, and the statuses of the operations still queued)
//! and ends cleanly, exit 0, on Ctrl-C or SIGTERM.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{rows, Failure};
use crate::model::OpStatus;
use crate::store::{HistoryFilter, OperationSummary, Reader};

/// How often the database is looked at.
const POLL: Duration = Duration::from_millis(500);
/// Queued operations whose status changes are watched; the oldest beyond
/// this are let go (a large backlog would make each poll expensive).
const MAX_WATCHED: usize = 400;
/// New operations read per poll at most; more are read by the next.
const NEW_PER_POLL: usize = 1000;

/// Set by SIGINT or SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// What to show and how.
pub struct Follow {
    pub processing: Option<String>,
    pub status: Option<OpStatus>,
    pub since: Option<i64>,
    pub limit: usize,
    pub json: bool,
    pub tz: jiff::tz::TimeZone,
    /// The language reasons are said in.
    pub lang: crate::model::said::Lang,
}

/// Prints, then follows until a stop signal.
pub fn run(reader: &Reader, follow: &Follow) -> Result<(), Failure> {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_stop_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_stop_signal as *const () as libc::sighandler_t);
    }
    let mut watched: BTreeMap<i64, OpStatus> = BTreeMap::new();
    // The newest id first, then the listing up to it: an operation stored
    // between the two reads is then shown by the first poll. (The other
    // way round, one stored between them was in neither and never shown.)
    let newest_any = reader.history(&HistoryFilter {
        ids: Vec::new(),
        processing: None,
        status: None,
        since: None,
        limit: 1,
        ..HistoryFilter::default()
    })?;
    let mut last_id = newest_any.first().map_or(0, |op| op.id);
    let first = reader.history(&HistoryFilter {
        ids: vec![(0, last_id)],
        processing: follow.processing.clone(),
        status: None,
        since: follow.since,
        limit: follow.limit,
        ..HistoryFilter::default()
    })?;
    if !follow.json {
        println!("{}", rows::HEADER);
    }
    for op in first.iter().rev() {
        follow.show(op, "new");
        follow.watch(&mut watched, op);
    }
    while !stopped_within(POLL) {
        let new = reader.history(&HistoryFilter {
            ids: vec![(last_id + 1, i64::MAX)],
            processing: follow.processing.clone(),
            status: None,
            since: None,
            limit: NEW_PER_POLL,
            ..HistoryFilter::default()
        })?;
        for op in new.iter().rev() {
            last_id = last_id.max(op.id);
            follow.show(op, "new");
            follow.watch(&mut watched, op);
        }
        if watched.is_empty() {
            continue;
        }
        let now = reader.history(&HistoryFilter {
            ids: watched.keys().map(|&id| (id, id)).collect(),
            processing: None,
            status: None,
            since: None,
            limit: watched.len(),
            ..HistoryFilter::default()
        })?;
        for op in now.iter().rev() {
            if watched.get(&op.id).is_some_and(|&before| before != op.status) {
                follow.show(op, "status");
                watched.remove(&op.id);
                follow.watch(&mut watched, op);
            }
        }
    }
    let _ = std::io::stdout().flush();
    Ok(())
}

/// Waits up to `wait`, in small steps; whether a stop signal came.
fn stopped_within(wait: Duration) -> bool {
    let step = Duration::from_millis(50);
    let mut waited = Duration::ZERO;
    while waited < wait {
        if STOP.load(Ordering::Relaxed) {
            return true;
        }
        std::thread::sleep(step);
        waited += step;
    }
    STOP.load(Ordering::Relaxed)
}

impl Follow {
    /// One line: a table row, or a JSON object with `event` (`new` or `status`).
    fn show(&self, op: &OperationSummary, event: &str) {
        if self.status.is_some_and(|s| s != op.status) {
            return;
        }
        if self.json {
            let mut line = rows::to_json(op);
            line["event"] = event.into();
            println!("{line}");
        } else {
            println!("{}", rows::row(op, &self.tz, self.lang));
        }
        // A pipe gets each line as it happens, not when a buffer fills.
        let _ = std::io::stdout().flush();
    }

    /// Watches a queued operation for its next status.
    fn watch(&self, watched: &mut BTreeMap<i64, OpStatus>, op: &OperationSummary) {
        if op.status == OpStatus::Queued {
            watched.insert(op.id, op.status);
            while watched.len() > MAX_WATCHED {
                watched.pop_first();
            }
        }
    }
}
