//! What only SQLite has: its schema and migrations, WAL checkpoints, the
//! database's files, modes and daemon lock, backups (the file copy and the
//! online one through the daemon), and the field-value search index with
//! its indexer thread.

pub(super) mod backup;
pub(super) mod checkpoint;
pub(super) mod files;
pub(super) mod indexer;
mod migrations;
pub(super) mod online_backup;
pub(super) mod received;
pub(super) mod schema;
pub(super) mod search;
