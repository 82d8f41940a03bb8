//! Store errors: what the caller did wrong (exit code 2, HTTP 4xx) or what failed underneath.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    /// No record with that id (or unique name).
    #[error("{kind} {key:?} not found")]
    NotFound { kind: &'static str, key: String },
    /// A name matched several records.
    #[error("{kind} name {name:?} is ambiguous: use one of the ids {ids}")]
    Ambiguous {
        kind: &'static str,
        name: String,
        ids: String,
    },
    /// The request breaks a rule of the registry (bad CIDR, IP outside it, too large user
    /// data, …). The message says what and how to fix it.
    #[error("{0}")]
    Invalid(String),
    /// The request collides with an existing record (IP or MAC taken, duplicate name, …).
    #[error("{0}")]
    Conflict(String),
    /// The database refuses this role a privilege the registry needs (PostgreSQL: no grant on
    /// its tables, no right to create them). A configuration problem, as a bad flag is: exit
    /// code 2, which the units do not restart (`RestartPreventExitStatus=2`), since running
    /// again fails the same way until the grants change. The message says what to run.
    #[error("{0}")]
    NotPermitted(String),
    /// The backend failed (I/O, connection lost, locked past the busy timeout).
    #[error("store backend failed: {0}")]
    Backend(String),
}

impl StoreError {
    /// True when the caller's input or configuration is at fault (CLI exit code 2), false for
    /// backend failures.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, Self::Backend(_))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_privilege_refused_is_a_configuration_refusal_and_a_backend_failure_is_not() {
        assert!(StoreError::NotPermitted("grant it".to_owned()).is_user_error());
        assert!(!StoreError::Backend("connection lost".to_owned()).is_user_error());
    }
}
