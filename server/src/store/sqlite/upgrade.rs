//! The registry's schema brought to this metaboot-server's version when the file is opened:
//! its version is read first, in a deferred read, and DDL runs only when the schema is
//! missing or older.
//!
//! In WAL mode a read waits for no writer, so an open of a current registry (a server's
//! start, every CLI command, `list` included) goes on while another process holds the write
//! lock, such as a long bulk `instance create`; only an open that must make or upgrade the
//! schema takes the write lock (an IMMEDIATE transaction), and waits for it up to the busy
//! timeout.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::conn::map;
use super::schema;
use crate::store::error::{StoreError, StoreResult};
use crate::store::sql::SCHEMA_VERSION;
use crate::store::statements::{SCHEMA_VERSION_INSERT, SCHEMA_VERSION_READ};

/// Whether the `schema_version` table exists.
const SCHEMA_VERSION_TABLE_FOUND: &str =
    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')";

/// Reads the schema's version, and makes the schema or brings it up to [`SCHEMA_VERSION`]
/// when it is missing or older; refuses a newer one.
pub fn bring_up_to_date(conn: &mut Connection, path: &Path) -> StoreResult<()> {
    let found = {
        let tx = map(conn.transaction_with_behavior(TransactionBehavior::Deferred))?;
        version(&tx)?
    };
    if current(found, path)? {
        return Ok(());
    }
    let tx = map(conn.transaction_with_behavior(TransactionBehavior::Immediate))?;
    // Another process may have made it while this one waited for the lock.
    let found = version(&tx)?;
    if current(found, path)? {
        return Ok(());
    }
    map(tx.execute_batch(schema::SCHEMA))?;
    if let Some(older) = found {
        if older < 2 {
            map(tx.execute_batch(schema::MIGRATE_FROM_1))?;
        }
        map(tx.execute_batch(schema::MIGRATE_FROM_2))?;
    }
    map(tx.execute(SCHEMA_VERSION_INSERT.sqlite, [SCHEMA_VERSION]))?;
    map(tx.execute_batch(schema::INDEXES_2))?;
    map(tx.commit())
}

/// The schema's version; `None` when there is no schema (or no version in it).
fn version(conn: &Connection) -> StoreResult<Option<i64>> {
    let exists: bool = map(conn.query_row(SCHEMA_VERSION_TABLE_FOUND, [], |row| row.get(0)))?;
    if !exists {
        return Ok(None);
    }
    map(conn.query_row(SCHEMA_VERSION_READ.sqlite, [], |row| row.get(0)))
}

/// True when the schema is this server's version; an error when it is newer.
fn current(found: Option<i64>, path: &Path) -> StoreResult<bool> {
    match found {
        Some(found) if found > SCHEMA_VERSION => Err(StoreError::Backend(format!(
            "the registry {} has schema version {found}, newer than this metaboot-server \
             knows ({SCHEMA_VERSION}): upgrade metaboot-server",
            path.display()
        ))),
        Some(found) => Ok(found == SCHEMA_VERSION),
        None => Ok(false),
    }
}
