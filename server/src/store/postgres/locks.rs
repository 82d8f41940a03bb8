//! The advisory locks the registry's transactions take: keys every metaboot-server sharing a
//! database must agree on, and how long a transaction waits for them.

use std::time::Duration;

use ::postgres::GenericClient;
use ::postgres::error::SqlState;

use super::pool::STATEMENT_TIMEOUT;
use crate::store::error::StoreError;

/// Taken while creating or upgrading the schema, so concurrent openers do not race on `CREATE
/// TABLE IF NOT EXISTS` (which is not atomic in PostgreSQL). Older metaboot-servers take it
/// (alone) at every open.
pub const SCHEMA_LOCK: i64 = 0x6d62_7363_6865_6d61; // "mbschema"
/// Taken first by every write transaction: writes are rare admin actions, and serialising
/// them means change log numbers become visible in order (a reader polling `seq > last` never
/// skips a later-committed lower number) and IP allocation never races. The schema's
/// creation takes it too (after [`SCHEMA_LOCK`]), so that no write holds a table lock its DDL
/// waits for while waiting for one the DDL holds.
pub const WRITE_LOCK: i64 = 0x6d62_7772_6974_6573; // "mbwrites"

/// Longest a transaction waits for [`SCHEMA_LOCK`] and [`WRITE_LOCK`] (another write, or an
/// upgrade, holds them). The session's `statement_timeout` (`pool.rs`) would cut the wait
/// short, so it is set to this while the locks are taken only: a write queued behind a bulk
/// registration, whose every statement may take up to that timeout, waits for it to end.
pub const WRITE_LOCK_WAIT: Duration = Duration::from_secs(300);

/// Takes the transaction-scoped advisory locks `keys` in order, waiting for each at most
/// [`WRITE_LOCK_WAIT`] (not the session's `statement_timeout`, which holds again after them).
/// A wait cut short fails with [`SqlState::QUERY_CANCELED`]: see [`held_too_long`].
pub fn take(client: &mut impl GenericClient, keys: &[i64]) -> Result<(), ::postgres::Error> {
    client.batch_execute(&format!(
        "SET LOCAL statement_timeout = {}",
        WRITE_LOCK_WAIT.as_millis()
    ))?;
    for key in keys {
        client.execute("SELECT pg_advisory_xact_lock($1)", &[key])?;
    }
    client.batch_execute(&format!(
        "SET LOCAL statement_timeout = {}",
        STATEMENT_TIMEOUT.as_millis()
    ))
}

/// The error of a [`take`] that waited [`WRITE_LOCK_WAIT`] in vain (`None` for any other):
/// another writer holds the registry, and how to find it.
pub fn held_too_long(err: &::postgres::Error, target: &str) -> Option<StoreError> {
    (err.code() == Some(&SqlState::QUERY_CANCELED)).then(|| {
        StoreError::Backend(format!(
            "another writer has held the registry in {target} for more than {} s (its write \
             lock): try again once it is done; `SELECT pid, state, query_start, query FROM \
             pg_stat_activity WHERE pid IN (SELECT pid FROM pg_locks WHERE locktype = \
             'advisory' AND granted)` shows it",
            WRITE_LOCK_WAIT.as_secs()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_waits_for_the_lock_longer_than_any_one_statement_may_run() {
        const { assert!(WRITE_LOCK_WAIT.as_secs() >= 2 * STATEMENT_TIMEOUT.as_secs()) };
        const { assert!(WRITE_LOCK_WAIT.as_secs() <= 600) };
    }
}
