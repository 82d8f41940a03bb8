//! The registry's schema brought to this metaboot-server's version when it is opened: its
//! version is read first, and DDL runs only when the schema is missing or older.
//!
//! An open runs no DDL on a current schema, so neither a role that may only read and write
//! the registry's rows nor a concurrent write is troubled by it: `CREATE INDEX IF NOT EXISTS`
//! on an existing index still takes a SHARE lock on its table (a write's ROW EXCLUSIVE on one
//! table, then on another, deadlocks against it) and checks that the role owns the table
//! before it finds the index. When the schema is missing or older, the DDL runs under
//! [`SCHEMA_LOCK`] and [`WRITE_LOCK`], so that no write holds a table lock meanwhile.
//!
//! Reads take no advisory lock: a server's snapshot read (REPEATABLE READ, `mod.rs`) holds
//! each table it has read until it ends, and `ALTER TABLE` waits for it, holding the tables it
//! altered before, which the read may ask for next: a deadlock, which PostgreSQL ends by
//! aborting one of the two, the read when it waited last. So the DDL waits for a table at
//! most [`UPGRADE_LOCK_TIMEOUT`], shorter than PostgreSQL's deadlock detection, gives way by
//! rolling back, and is tried again [`UPGRADE_ATTEMPTS`] times; meanwhile every other session
//! queued behind its lock waits no longer than that either. This is a matter of timing, not a
//! guarantee: PostgreSQL runs its detector in the session that has waited `deadlock_timeout`
//! first, which is still the read when it began to wait more than the difference earlier
//! (then the read is aborted, and its server retries it); a migration that alters one table
//! only (`MIGRATE_FROM_2`) forms no such cycle.

use std::time::Duration;

use ::postgres::error::SqlState;
use ::postgres::{Client, GenericClient, IsolationLevel, Transaction};

use super::conn::is_connection_error;
use super::grants::read_write_grants;
use super::locks::{self, SCHEMA_LOCK, WRITE_LOCK};
use super::pool::error_text;
use super::schema;
use crate::store::error::StoreError;
use crate::store::sql::SCHEMA_VERSION;
use crate::store::statements::{SCHEMA_VERSION_INSERT, SCHEMA_VERSION_READ};

/// Whether the `schema_version` table exists (in the role's search path, where the other
/// statements find it).
const SCHEMA_VERSION_TABLE_FOUND: &str =
    "SELECT pg_catalog.to_regclass('schema_version') IS NOT NULL";

/// How long the DDL waits for a table another session holds (PostgreSQL's `lock_timeout`, in
/// its transaction only): less than PostgreSQL's default `deadlock_timeout` (1 s), so that
/// the upgrade gives way before the deadlock detector would abort the session in its way.
pub const UPGRADE_LOCK_TIMEOUT: Duration = Duration::from_millis(500);
/// Attempts at the DDL before the open gives up, each after [`UPGRADE_RETRY_PAUSE`].
pub const UPGRADE_ATTEMPTS: u32 = 10;
/// The pause before another attempt, in which the session in the way may end.
pub const UPGRADE_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Why the schema could not be read or brought up to date.
pub struct SchemaFailure {
    pub error: StoreError,
    /// The connection broke: nothing was committed, and another connection may succeed.
    pub lost: bool,
}

/// Reads the schema's version, and creates the schema or brings it up to
/// [`SCHEMA_VERSION`] when it is missing or older; refuses a newer one.
pub fn bring_up_to_date(client: &mut Client, target: &str) -> Result<(), SchemaFailure> {
    let fail = |err: ::postgres::Error| SchemaFailure {
        lost: is_connection_error(&err),
        error: StoreError::Backend(format!(
            "cannot read the registry's schema version in {target}: {}",
            error_text(&err)
        )),
    };
    let found = match version(client) {
        Ok(found) => found,
        Err(err) if is_denied(&err) => return Err(may_not_read(client, &err, target)),
        Err(err) => return Err(fail(err)),
    };
    if current(found, target)? {
        return Ok(());
    }
    upgrade_when_free(client, target, found)
}

/// True when `err` is PostgreSQL refusing the role a privilege.
fn is_denied(err: &::postgres::Error) -> bool {
    err.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE)
}

/// The role may not read the registry's `schema_version` table (granted some tables, or none,
/// by hand): the grants its owner runs.
fn may_not_read(client: &mut Client, err: &::postgres::Error, target: &str) -> SchemaFailure {
    let grants = read_write_grants(client);
    SchemaFailure {
        error: StoreError::NotPermitted(format!(
            "cannot read the registry's schema version in {target}: {}; this role may not read \
             the registry's tables: have the database's owner run `{grants}` in that database, \
             then run this again",
            error_text(err)
        )),
        lost: false,
    }
}

/// [`create_or_upgrade`] until it is not held up by another session's table lock, at most
/// [`UPGRADE_ATTEMPTS`] times; `found` is the version read before.
fn upgrade_when_free(
    client: &mut Client,
    target: &str,
    mut found: Option<i64>,
) -> Result<(), SchemaFailure> {
    for attempt in 1..=UPGRADE_ATTEMPTS {
        if attempt > 1 {
            std::thread::sleep(UPGRADE_RETRY_PAUSE);
        }
        match create_or_upgrade(client, target, &mut found)? {
            Upgrade::Done => return Ok(()),
            Upgrade::HeldUp => {
                tracing::debug!(attempt, "the registry's schema upgrade waits for a table");
            }
        }
    }
    Err(held_up(found, target))
}

/// How one attempt at the DDL ended, when it did not fail.
enum Upgrade {
    /// The schema is this server's version (made so, or found so).
    Done,
    /// Another session held a table past [`UPGRADE_LOCK_TIMEOUT`]: nothing was changed.
    HeldUp,
}

/// True when `err` is the DDL giving way to another session's lock: its `lock_timeout`, or
/// the deadlock detector choosing it (under a `deadlock_timeout` set below
/// [`UPGRADE_LOCK_TIMEOUT`]).
fn gave_way(err: &::postgres::Error) -> bool {
    err.code().is_some_and(|code| {
        *code == SqlState::LOCK_NOT_AVAILABLE || *code == SqlState::T_R_DEADLOCK_DETECTED
    })
}

/// Every attempt was held up by another session: what to do.
fn held_up(found: Option<i64>, target: &str) -> SchemaFailure {
    let what = match found {
        None => format!("create the registry schema in {target}"),
        Some(found) => format!(
            "bring the registry in {target} up to date from schema version {found} to \
             {SCHEMA_VERSION}"
        ),
    };
    SchemaFailure {
        error: StoreError::Backend(format!(
            "cannot {what}: a table of it is in use by another session (a metaboot-server \
             reading it, a transaction left open in psql: see pg_stat_activity) for each of \
             {UPGRADE_ATTEMPTS} attempts of {} ms; nothing was changed: try again, or end that \
             session",
            UPGRADE_LOCK_TIMEOUT.as_millis()
        )),
        lost: false,
    }
}

/// The schema's version; `None` when there is no schema (or no version in it).
fn version(client: &mut impl GenericClient) -> Result<Option<i64>, ::postgres::Error> {
    let exists: bool = client
        .query_one(SCHEMA_VERSION_TABLE_FOUND, &[])?
        .try_get(0)?;
    if !exists {
        return Ok(None);
    }
    client
        .query_one(SCHEMA_VERSION_READ.postgres, &[])?
        .try_get(0)
}

/// True when the schema is this server's version; an error when it is newer.
fn current(found: Option<i64>, target: &str) -> Result<bool, SchemaFailure> {
    match found {
        Some(found) if found > SCHEMA_VERSION => Err(SchemaFailure {
            error: StoreError::Backend(format!(
                "the registry in {target} has schema version {found}, newer than this \
                 metaboot-server knows ({SCHEMA_VERSION}): upgrade metaboot-server"
            )),
            lost: false,
        }),
        Some(found) => Ok(found == SCHEMA_VERSION),
        None => Ok(false),
    }
}

/// Creates the schema or brings it up to date in one transaction under [`SCHEMA_LOCK`] and
/// [`WRITE_LOCK`], unless another opener did while this one waited for them. The transaction
/// is READ COMMITTED whatever the database's `default_transaction_isolation`: the version is
/// read again by a statement after the locks, whose snapshot sees another opener's upgrade
/// committed meanwhile; under REPEATABLE READ the snapshot of the locks' statement, taken
/// before their wait, would hide it and the DDL would run again.
fn create_or_upgrade(
    client: &mut Client,
    target: &str,
    found: &mut Option<i64>,
) -> Result<Upgrade, SchemaFailure> {
    let fail = |err: ::postgres::Error| SchemaFailure {
        lost: is_connection_error(&err),
        error: StoreError::Backend(format!(
            "cannot create the registry schema in {target}: {}",
            error_text(&err)
        )),
    };
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .map_err(fail)?;
    locks::take(&mut tx, &[SCHEMA_LOCK, WRITE_LOCK]).map_err(|err| {
        match locks::held_too_long(&err, target) {
            Some(error) => SchemaFailure { error, lost: false },
            None => fail(err),
        }
    })?;
    // After the advisory locks: another opener's upgrade (or a write) is waited for up to
    // `locks::WRITE_LOCK_WAIT`, not this DDL's wait for a table.
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = {}",
        UPGRADE_LOCK_TIMEOUT.as_millis()
    ))
    .map_err(fail)?;
    let read = version(&mut tx);
    if read.as_ref().is_err_and(gave_way) {
        return Ok(Upgrade::HeldUp);
    }
    *found = read.map_err(fail)?;
    if !current(*found, target)? {
        match apply(&mut tx, *found) {
            Ok(()) => {}
            // Dropping the transaction rolls it back: nothing was changed.
            Err(err) if gave_way(&err) => return Ok(Upgrade::HeldUp),
            Err(err) if is_denied(&err) => return Err(not_allowed(&err, *found, target)),
            Err(err) => return Err(fail(err)),
        }
    }
    tx.commit().map_err(fail)?;
    Ok(Upgrade::Done)
}

/// The DDL that takes a schema of version `found` (`None`: no schema) to [`SCHEMA_VERSION`].
fn apply(tx: &mut Transaction<'_>, found: Option<i64>) -> Result<(), ::postgres::Error> {
    tx.batch_execute(schema::SCHEMA)?;
    if let Some(older) = found {
        if older < 2 {
            tx.batch_execute(schema::MIGRATE_FROM_1)?;
        }
        tx.batch_execute(schema::MIGRATE_FROM_2)?;
    }
    tx.execute(SCHEMA_VERSION_INSERT.postgres, &[&SCHEMA_VERSION])?;
    tx.batch_execute(schema::INDEXES_2)
}

/// The role may not create or alter the registry's tables, which need it: what to do.
fn not_allowed(err: &::postgres::Error, found: Option<i64>, target: &str) -> SchemaFailure {
    let what = match found {
        None => "has no registry yet".to_owned(),
        Some(found) => format!(
            "holds a registry of schema version {found}, older than this metaboot-server's \
             ({SCHEMA_VERSION})"
        ),
    };
    SchemaFailure {
        error: StoreError::NotPermitted(format!(
            "cannot create the registry schema in {target}: {}; the database {what}, and this \
             role may not create or alter its tables: run any metaboot-server command (e.g. \
             `network list`) once with --db naming a role that may (the database's owner), \
             then this one",
            error_text(err)
        )),
        lost: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL's default `deadlock_timeout`.
    const POSTGRES_DEADLOCK_TIMEOUT: Duration = Duration::from_secs(1);

    #[test]
    fn the_upgrade_gives_way_before_a_deadlock_is_detected_and_gives_up_in_bounded_time() {
        assert!(UPGRADE_LOCK_TIMEOUT < POSTGRES_DEADLOCK_TIMEOUT);
        let longest = (UPGRADE_LOCK_TIMEOUT + UPGRADE_RETRY_PAUSE) * UPGRADE_ATTEMPTS;
        assert!(
            longest <= super::super::pool::STATEMENT_TIMEOUT / 2,
            "{longest:?}"
        );
        const { assert!(UPGRADE_ATTEMPTS > 1) };
    }
}
