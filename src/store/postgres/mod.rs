//! What only PostgreSQL has: its schema, the leases and SKIP LOCKED claims
//! several instances share one database with, TLS, the cluster session
//! (wake-ups and the chores' advisory lock), and `migrate-store`, which
//! copies a SQLite history in.

pub(super) mod claims;
pub(super) mod cluster;
pub(super) mod migrate;
pub(super) mod schema;
pub(super) mod tls;
