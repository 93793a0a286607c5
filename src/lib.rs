//! hookrelay: a self-hosted webhook relay. Webhooks in, stored durably in
//! SQLite, forwarded by HTTP with retries, every attempt kept.
//!
//! # Layout
//!
//! - [`clock`]: time: now, RFC 3339, and as people read and type it.
//! - [`model`]: the domain's vocabulary: statuses, requests, outcomes. No I/O.
//! - [`config`]: the TOML schema, defaults and validation.
//! - [`template`]: `{{ field | filter }}` parsing, rendering and filters.
//! - [`process`]: what happens to a request, for ingest and the CLI alike:
//!   field extraction, `require`/`when`/dedupe, actions rendered into requests.
//! - [`redact`]: secret masking, the same in logs, history, `check` and config errors.
//! - [`ingest`]: the webhook listener: routing, limits, the answer after commit.
//! - [`klientiks`]: Klientiks events and the addresses to paste into it.
//! - [`store`]: SQLite: schema, the single writer thread, queries. The only SQL.
//! - [`deliver`]: the scheduler, the worker threads, the retry policy.
//! - [`daemon`]: `hookrelay run`: wires the pieces, signals, shutdown.
//! - [`cli`]: the command line, one file per subcommand.
//!
//! Data flows one way: `ingest` → `store` → `deliver` → `store`.

pub mod admin;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod deliver;
pub mod http;
pub mod ingest;
pub mod klientiks;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod process;
pub mod redact;
pub mod retention;
pub mod store;
pub mod template;
