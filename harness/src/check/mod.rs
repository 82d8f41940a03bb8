//! Checks a user would make on a booted guest, from outside it.

pub mod apt_repo;
pub mod apt_signing;
pub mod fingerprints;
pub mod ns_server;
pub mod phone_home;
pub mod ssh;
pub mod ssh_log;

use serde::Serialize;

/// One check's outcome.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CheckResult {
    /// What was checked ("key login + hostname").
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was expected and what was seen.
    pub detail: String,
}

impl CheckResult {
    /// A passed check.
    pub fn pass(name: &str, detail: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            passed: true,
            detail: detail.into(),
        }
    }

    /// A failed check.
    pub fn fail(name: &str, detail: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            passed: false,
            detail: detail.into(),
        }
    }

    /// Passed when `ok`.
    pub fn from_bool(name: &str, ok: bool, detail: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            passed: ok,
            detail: detail.into(),
        }
    }
}
