//! Where the data is kept, as config and store both name it: a SQLite
//! file or a PostgreSQL URL. A domain value, so the config can say it
//! without importing the store.

use std::path::{Path, PathBuf};

/// Where the data is kept: `[storage] path` or `[storage] url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    File(PathBuf),
    /// A PostgreSQL database, shared by any number of instances.
    Postgres(String),
}

impl Location {
    /// The SQLite file, if that is where the data is.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Location::File(path) => Some(path),
            Location::Postgres(_) => None,
        }
    }
}

impl From<&Path> for Location {
    fn from(path: &Path) -> Location {
        Location::File(path.to_path_buf())
    }
}

impl From<&PathBuf> for Location {
    fn from(path: &PathBuf) -> Location {
        Location::File(path.clone())
    }
}

impl From<&Location> for Location {
    fn from(location: &Location) -> Location {
        location.clone()
    }
}

impl std::fmt::Display for Location {
    /// The file's path, or the URL without its password (it goes to logs).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => f.write_str(&crate::redact::without_password(url)),
        }
    }
}
