//! The registry's schema brought to this metaboot-server's version when it is opened: its
//! version is read first, and DDL runs only when the schema is missing or older.
//!
//! An open runs no DDL on a current schema, so neither a role that may only read and write
//! the registry's rows nor a concurrent write is troubled by it: `CREATE INDEX IF NOT EXISTS`
//! on an existing index still takes a SHARE lock on its table (a write's ROW EXCLUSIVE on one
//! table, then on another, deadlocks against it) and checks that the role owns the table
//! before it finds the index. When the schema is missing or older, the DDL runs under
//! [`SCHEMA_LOCK`] and [`WRITE_LOCK`], so that no write holds a table lock meanwhile.

use ::postgres::error::SqlState;
use ::postgres::{Client, GenericClient, IsolationLevel, Transaction};

use super::conn::is_connection_error;
use super::locks::{SCHEMA_LOCK, WRITE_LOCK};
use super::pool::error_text;
use super::schema;
use crate::store::error::StoreError;
use crate::store::sql::SCHEMA_VERSION;
use crate::store::statements::{SCHEMA_VERSION_INSERT, SCHEMA_VERSION_READ};

/// Whether the `schema_version` table exists (in the role's search path, where the other
/// statements find it).
const SCHEMA_VERSION_TABLE_FOUND: &str =
    "SELECT pg_catalog.to_regclass('schema_version') IS NOT NULL";

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
    let found = version(client).map_err(fail)?;
    if current(found, target)? {
        return Ok(());
    }
    create_or_upgrade(client, target)
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
fn create_or_upgrade(client: &mut Client, target: &str) -> Result<(), SchemaFailure> {
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
    for key in [SCHEMA_LOCK, WRITE_LOCK] {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key])
            .map_err(fail)?;
    }
    let found = version(&mut tx).map_err(fail)?;
    if !current(found, target)? {
        apply(&mut tx, found).map_err(|err| match err.code() {
            Some(code) if *code == SqlState::INSUFFICIENT_PRIVILEGE => {
                not_allowed(&err, found, target)
            }
            _ => fail(err),
        })?;
    }
    tx.commit().map_err(fail)
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
        error: StoreError::Backend(format!(
            "cannot create the registry schema in {target}: {}; the database {what}, and this \
             role may not create or alter its tables: run any metaboot-server command (e.g. \
             `network list`) once with --db naming a role that may (the database's owner), \
             then this one",
            error_text(err)
        )),
        lost: false,
    }
}
