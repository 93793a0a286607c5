//! A string that never prints: tokens, passwords, the SMTP URL.

use std::fmt;

use serde::Deserialize;

/// A string that prints as `MASKED` in `Debug` and `Display`, so logging a
/// config never leaks it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `text`; it prints as `MASKED` from now on.
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The secret itself, for the few places that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this secret, in time that does not depend on
    /// where they differ (both are hashed first, so length leaks nothing either).
    pub fn matches(&self, candidate: &str) -> bool {
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq;
        let wanted = Sha256::digest(self.0.as_bytes());
        bool::from(wanted.ct_eq(&Sha256::digest(candidate.as_bytes())))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MASKED")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MASKED")
    }
}
