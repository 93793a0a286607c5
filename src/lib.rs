//! hookrelay: a self-hosted webhook relay. Webhooks in, stored durably in
//! SQLite (or PostgreSQL, shared by several instances), forwarded by HTTP
//! with retries, every attempt kept.
//!
//! # Layout
//!
//! Lowest first; a module imports only those above it in this list.
//!
//! - [`clock`]: time: now, RFC 3339, and as people read and type it.
//! - [`redact`]: secret masking, the same in logs, history, `check` and config errors.
//! - [`eventlog`]: the log's line per webhook and per delivery, within a budget a second.
//! - [`model`]: the domain's vocabulary: statuses, requests, operations,
//!   deliveries, attempts and their outcomes, response rules and verdicts
//!   (`response.rs`), what is said as kinds in two languages (`said/`),
//!   notification kinds, where the data is kept (`location.rs`). No I/O.
//! - [`template`]: `{{ field | filter }}` parsing, rendering and filters;
//!   `recall`'s markers (`recall.rs`).
//! - [`klientiks`]: Klientiks events and the addresses to paste into it.
//! - [`config`]: the resolved config (`mod.rs`), the serde schema (`raw.rs`)
//!   and its resolution (`raw/resolve.rs`), [`config::Secret`].
//! - [`process`]: what happens to a request, for ingest and the CLI alike:
//!   fields (`fields.rs`), `require`/`when`/dedupe, rendering (`render.rs`).
//! - [`store`]: the only SQL. What both engines share at its top (the
//!   writer's engine `writer.rs` and its statements, the queries), what
//!   only SQLite has in `store/sqlite/`, what only PostgreSQL has in
//!   `store/postgres/`.
//! - [`replay`]: what replaying an operation queues, for the CLI and the console.
//! - [`metrics`]: the counters the rooms below bump, and the exposition.
//! - [`http`]: the accept loop both listeners share: limits, drain.
//! - [`ingest`]: the webhook listener: routing, limits, the answer after commit.
//! - [`deliver`]: the scheduler (`scheduler.rs`), the workers, the retry
//!   policy, the response rules' judge (`judge.rs`).
//! - [`notify`]: email and Telegram digests.
//! - [`retention`]: hourly pruning.
//! - [`console`]: the web console: sign-in, overview, operations, replay, fields.
//! - [`admin`]: `/healthz` and `/metrics`, and the console beside them.
//! - [`control`]: the control socket `hookrelay backup` asks the daemon through.
//! - [`daemon`]: `hookrelay run`: wires the pieces, signals, shutdown.
//! - [`cli`]: the command line, one file per subcommand.
//!
//! Data flows one way: `ingest` → `store` → `deliver` → `store`.

pub mod admin;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod control;
pub mod daemon;
pub mod deliver;
pub mod eventlog;
pub mod http;
pub mod ingest;
pub mod klientiks;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod process;
pub mod redact;
pub mod replay;
pub mod retention;
pub mod store;
pub mod template;
