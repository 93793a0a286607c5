//! Replaying recorded operations with the current config's actions: which
//! operations, and what to queue for each. `hookrelay replay` and the
//! console's replay buttons share it, so both mean the same.

use crate::config::Config;
use crate::model::said::Said;
use crate::model::{DeliveryStatus, OpStatus};
use crate::process::{self as rules, fields::Extracted};
use crate::store::{queue_replays, HistoryFilter, Location, OperationView, Reader, Replay, StoreError, Writer};

/// Operations queued per writer job. The webhooks committed in the same
/// transaction wait for the whole job; 50 operations take a few
/// milliseconds (BENCHMARKS.md, "Replay beside webhooks").
const OPERATIONS_PER_JOB: usize = 50;

/// Where a replay's deliveries are written.
pub enum Queue<'a> {
    /// The running daemon's writer, `OPERATIONS_PER_JOB` operations a job,
    /// so webhooks' commits go between them (the console, and the command
    /// line through the control socket).
    Writer(&'a Writer),
    /// A connection of the replay's own: no daemon runs on this SQLite
    /// file, or the database is PostgreSQL.
    Database(Location),
}

/// Hands `items` to `job` [`OPERATIONS_PER_JOB`] at a time (one writer job
/// each); the sum of what the jobs return.
fn in_jobs<T>(items: Vec<T>, mut job: impl FnMut(Vec<T>) -> Result<usize, StoreError>) -> Result<usize, StoreError> {
    let mut done = 0;
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        done += job(items.by_ref().take(OPERATIONS_PER_JOB).collect())?;
    }
    Ok(done)
}

/// How a replay was asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ask {
    /// Send held operations of a processing that is still stopped
    /// (`enabled = false`); without it they are refused.
    pub include_stopped: bool,
    /// Send operations older than an action's `max_age` anyway (the
    /// destination may refuse them); without it they are refused.
    pub force: bool,
    /// Who asks, recorded with each replay: "command line (root)",
    /// "console (admin)".
    pub source: String,
}

/// Why an operation is not replayed.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// No operation has this id.
    Missing,
    /// Its deliveries are still being sent.
    StillQueued,
    /// Its body did not parse.
    Rejected,
    /// Its processing is no longer in the config.
    ProcessingGone(String),
    /// It is held and its processing is still stopped.
    Stopped(String),
    /// The current `require` or `when` skip it: the rule's reason.
    Skipped(Said),
    /// Every action was delivered already.
    AllDelivered,
    /// An action cannot be rendered: which, and why.
    Render(Said),
    /// The event is older than this action's `max_age`.
    Expired(String),
}

impl Refused {
    /// Every kind's name, as [`Refused::kind`] gives it.
    pub const KINDS: &'static [&'static str] = &[
        "missing",
        "still_queued",
        "rejected",
        "processing_gone",
        "stopped",
        "skipped",
        "all_delivered",
        "render",
        "expired",
    ];

    /// A stable name for the kind, for the control socket and the console's words.
    pub fn kind(&self) -> &'static str {
        match self {
            Refused::Missing => "missing",
            Refused::StillQueued => "still_queued",
            Refused::Rejected => "rejected",
            Refused::ProcessingGone(_) => "processing_gone",
            Refused::Stopped(_) => "stopped",
            Refused::Skipped(_) => "skipped",
            Refused::AllDelivered => "all_delivered",
            Refused::Render(_) => "render",
            Refused::Expired(_) => "expired",
        }
    }

    /// Its one parameter (a processing, an action, a rule's reason as
    /// stored), or "".
    pub fn param(&self) -> String {
        match self {
            Refused::ProcessingGone(p) | Refused::Stopped(p) | Refused::Expired(p) => p.clone(),
            Refused::Skipped(said) | Refused::Render(said) => said.store(),
            Refused::Missing | Refused::StillQueued | Refused::Rejected | Refused::AllDelivered => String::new(),
        }
    }

    /// The refusal named by [`Refused::kind`] and [`Refused::param`].
    pub fn from_parts(kind: &str, param: &str) -> Option<Refused> {
        let param = param.to_string();
        Some(match kind {
            "missing" => Refused::Missing,
            "still_queued" => Refused::StillQueued,
            "rejected" => Refused::Rejected,
            "processing_gone" => Refused::ProcessingGone(param),
            "stopped" => Refused::Stopped(param),
            "skipped" => Refused::Skipped(Said::read(&param)),
            "all_delivered" => Refused::AllDelivered,
            "render" => Refused::Render(Said::read(&param)),
            "expired" => Refused::Expired(param),
            _ => return None,
        })
    }
}

/// Refusals are counted by kind and parameter (the bulk confirmation's
/// rows).
impl Eq for Refused {}

impl Ord for Refused {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.kind(), self.param()).cmp(&(other.kind(), other.param()))
    }
}

impl PartialOrd for Refused {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Missing => f.write_str("no such operation"),
            Refused::StillQueued => f.write_str("it is still being delivered"),
            Refused::Rejected => f.write_str("its body did not parse; fix the sender and send it again"),
            Refused::ProcessingGone(p) => write!(f, "processing `{p}` is no longer in the config"),
            Refused::Stopped(p) => write!(
                f,
                "processing `{p}` is still stopped (enabled = false); replay with --include-stopped to send it anyway"
            ),
            Refused::Skipped(why) => write!(f, "the processing's rules skip it: {why}"),
            Refused::AllDelivered => f.write_str("every action was already delivered"),
            Refused::Render(why) => write!(f, "{why}"),
            Refused::Expired(action) => write!(
                f,
                "the event is older than action `{action}`'s max_age, so the destination would likely refuse it; replay with --force to send it anyway"
            ),
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Deliveries queued, over every operation replayed.
    pub queued: usize,
    /// Operations that got deliveries.
    pub operations: usize,
    /// Operations left alone, each with the reason.
    pub refused: Vec<(i64, Refused)>,
}

/// What a replay of many operations would do, for its confirmation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Preview {
    /// Operations that would be sent, by processing and status.
    pub go: Vec<((String, OpStatus), usize)>,
    /// Held operations of stopped processings, by processing: refused
    /// unless the replay includes them (then they are in `go`).
    pub stopped: Vec<(String, usize)>,
    /// Operations older than an action's `max_age`, by action: refused
    /// unless the replay forces them (then they are in `go`).
    pub expired: Vec<(String, usize)>,
    /// Operations refused for any other reason, by reason.
    pub refused: Vec<(Refused, usize)>,
}

impl Preview {
    /// How many operations would be sent.
    pub fn count(&self) -> usize {
        self.go.iter().map(|(_, n)| n).sum()
    }
}

/// What replaying `operations` with `ask` would send and refuse.
pub fn preview(config: &Config, operations: &[OperationView], ask: &Ask) -> Preview {
    use std::collections::BTreeMap;
    let mut go: BTreeMap<(String, OpStatus), usize> = BTreeMap::new();
    let mut stopped: BTreeMap<String, usize> = BTreeMap::new();
    let mut expired: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused: BTreeMap<Refused, usize> = BTreeMap::new();
    let plain = Ask {
        include_stopped: false,
        force: false,
        ..ask.clone()
    };
    for op in operations {
        // Stopped and too old are counted whether or not they are asked
        // for, so the page can offer them; then the asked-for ones go.
        let mut outcome = plan(config, op, &plain);
        if let Err(Refused::Stopped(name)) = &outcome {
            *stopped.entry(name.clone()).or_default() += 1;
            if ask.include_stopped {
                outcome = plan(
                    config,
                    op,
                    &Ask {
                        force: false,
                        ..ask.clone()
                    },
                );
            }
        }
        if let Err(Refused::Expired(action)) = &outcome {
            *expired.entry(action.clone()).or_default() += 1;
            if ask.force {
                outcome = plan(config, op, ask);
            }
        }
        match outcome {
            Ok(_) => {
                *go.entry((op.summary.processing.clone(), op.summary.status))
                    .or_default() += 1
            }
            Err(Refused::Stopped(_) | Refused::Expired(_)) => {}
            Err(why) => *refused.entry(why).or_default() += 1,
        }
    }
    Preview {
        go: go.into_iter().collect(),
        stopped: stopped.into_iter().collect(),
        expired: expired.into_iter().collect(),
        refused: refused.into_iter().collect(),
    }
}

/// Every operation `filter` matches (its limit ignored), with what was recorded.
pub fn select(reader: &Reader, filter: &HistoryFilter) -> Result<Vec<OperationView>, StoreError> {
    let mut list = Vec::new();
    for id in select_ids(reader, filter)? {
        list.extend(reader.operation(id)?);
    }
    Ok(list)
}

/// Every operation id `filter` matches (its limit ignored).
pub fn select_ids(reader: &Reader, filter: &HistoryFilter) -> Result<Vec<i64>, StoreError> {
    let filter = HistoryFilter {
        limit: i64::MAX as usize,
        ..filter.clone()
    };
    Ok(reader.history(&filter)?.iter().map(|summary| summary.id).collect())
}

/// Queues fresh deliveries for `operations` through `queue`. Blocks: plain
/// threads only.
pub fn run(config: &Config, operations: &[OperationView], ask: &Ask, queue: &Queue) -> Result<Report, StoreError> {
    let mut report = Report::default();
    let mut replays = Vec::new();
    for op in operations {
        match plan(config, op, ask) {
            Ok(replay) => replays.push(replay),
            Err(why) => report.refused.push((op.summary.id, why)),
        }
    }
    report.operations = replays.len();
    report.queued = match queue {
        Queue::Database(_) if replays.is_empty() => 0,
        Queue::Database(location) => queue_replays(location, &replays)?,
        Queue::Writer(writer) => in_jobs(replays, |job| writer.queue_replays(job))?,
    };
    Ok(report)
}

/// The deliveries to queue for `op`, or why there are none. The current
/// config decides, as if the event arrived now: `require` and `when` run
/// again on the recorded fields (dedupe does not: the operation would
/// duplicate itself), and a held operation of a processing still stopped
/// waits unless `ask` includes it. Actions the operation already delivered
/// are not sent again, so replaying a `partial` operation only retries
/// what failed.
pub fn plan(config: &Config, op: &OperationView, ask: &Ask) -> Result<Replay, Refused> {
    match op.summary.status {
        OpStatus::Queued => return Err(Refused::StillQueued),
        OpStatus::Rejected => return Err(Refused::Rejected),
        _ => {}
    }
    let name = &op.summary.processing;
    let processing = config
        .processing(name)
        .ok_or_else(|| Refused::ProcessingGone(name.clone()))?;
    if op.summary.status == OpStatus::Held && !processing.enabled && !ask.include_stopped {
        return Err(Refused::Stopped(name.clone()));
    }
    let extracted = Extracted::from_fields(op.fields.clone());
    if let Some(why) = rules::skip_reason(processing, &extracted) {
        return Err(Refused::Skipped(why));
    }
    let delivered: Vec<&str> = op
        .deliveries
        .iter()
        .filter(|d| d.status == DeliveryStatus::Delivered)
        .map(|d| d.action.as_str())
        .collect();
    let mut deliveries = Vec::new();
    let now = crate::clock::now_ms();
    for action in processing
        .actions
        .iter()
        .filter(|a| !delivered.contains(&a.name.as_str()))
    {
        let (mut delivery, _) = rules::delivery(action, &extracted, op.summary.received_at).map_err(|error| {
            Refused::Render(Said::RenderFailed {
                action: action.name.clone(),
                error,
            })
        })?;
        if delivery.expires_at.is_some_and(|at| at <= now) {
            if !ask.force {
                return Err(Refused::Expired(action.name.clone()));
            }
            // Forced: sent however old, as asked, and never expired.
            delivery.expires_at = None;
        }
        // A field the event lacks is still lacking: sending now would fail
        // the same way, so the replay waits for the config's fix.
        if let Some(why) = delivery.refused {
            return Err(Refused::Render(why));
        }
        deliveries.push(delivery);
    }
    if deliveries.is_empty() {
        return Err(Refused::AllDelivered);
    }
    Ok(Replay {
        operation_id: op.summary.id,
        deliveries,
        source: ask.source.clone(),
    })
}

/// What rendering waiting deliveries again did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rerendered {
    /// Deliveries whose request now comes from the current config.
    pub rerendered: usize,
    /// Waiting deliveries left as they were: operation, action and why.
    pub left: Vec<(i64, String, Said)>,
}

/// Renders the waiting (`pending` or `retrying`) deliveries of
/// `operations` again from the current config, as `hookrelay requeue`
/// and the console ask: each keeps its attempts, is due at once, and goes out
/// with its action's current URL, templates and settings. One whose action
/// is gone from the config, or that cannot be rendered now, is left as it
/// was (cancel it, or fix the config). Deliveries being sent right now
/// are not touched. Blocks: plain threads only.
pub fn rerender(config: &Config, operations: &[OperationView], queue: &Queue) -> Result<Rerendered, StoreError> {
    let mut done = Rerendered::default();
    let mut requests = Vec::new();
    for op in operations {
        let waiting = op
            .deliveries
            .iter()
            .filter(|d| matches!(d.status, DeliveryStatus::Pending | DeliveryStatus::Retrying));
        let processing = config.processing(&op.summary.processing);
        let extracted = Extracted::from_fields(op.fields.clone());
        for d in waiting {
            let action = processing.and_then(|p| p.actions.iter().find(|a| a.name == d.action));
            let Some(action) = action else {
                let why = Said::text(format!("action `{}` is no longer in the config; cancel it", d.action));
                done.left.push((op.summary.id, d.action.clone(), why));
                continue;
            };
            match rules::delivery(action, &extracted, op.summary.received_at) {
                Ok((request, _)) => match &request.refused {
                    Some(why) => done.left.push((op.summary.id, d.action.clone(), why.clone())),
                    None => requests.push((d.id, request)),
                },
                Err(error) => {
                    let why = Said::RenderFailed {
                        action: d.action.clone(),
                        error,
                    };
                    done.left.push((op.summary.id, d.action.clone(), why));
                }
            }
        }
    }
    done.rerendered = match queue {
        Queue::Writer(writer) => in_jobs(requests, |job| writer.rerender(job))?,
        Queue::Database(location) => crate::store::rerender_waiting(location, &requests)?,
    };
    Ok(done)
}

/// Who runs this command, for the replay's record: "command line (USER)".
pub fn command_line_source() -> String {
    match std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        Ok(user) if !user.is_empty() => format!("command line ({user})"),
        _ => "command line".to_string(),
    }
}
