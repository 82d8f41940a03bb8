//! The SQLite backend: one file in WAL mode, one connection behind a mutex.

mod schema;
mod sql;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::sql::{Backend, SCHEMA_VERSION, Sql};
use super::{StoreError, StoreResult};
use sql::{SqliteSql, map};

/// How long a statement waits for another process's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite registry file.
pub struct SqliteBackend {
    conn: Mutex<Connection>,
}

impl SqliteBackend {
    /// Opens (creating when missing) the registry file and its parent directory, in WAL mode
    /// with foreign keys on, and creates the schema.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            fs::create_dir_all(parent).map_err(|err| {
                StoreError::Backend(format!(
                    "cannot create the registry directory {}: {err}; create it or pass --db \
                     with a writable path",
                    parent.display()
                ))
            })?;
        }
        let conn = Connection::open(path).map_err(|err| {
            StoreError::Backend(format!(
                "cannot open the registry {}: {err}",
                path.display()
            ))
        })?;
        map(conn.busy_timeout(BUSY_TIMEOUT))?;
        let mode: String = map(conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "the registry {} cannot use WAL mode (got {mode}): put it on a local file system",
                path.display()
            )));
        }
        map(conn.execute_batch("PRAGMA foreign_keys = ON"))?;
        let backend = Self {
            conn: Mutex::new(conn),
        };
        backend.create_schema(path)?;
        Ok(backend)
    }

    fn create_schema(&self, path: &Path) -> StoreResult<()> {
        let mut conn = self.lock();
        let tx = map(conn.transaction_with_behavior(TransactionBehavior::Immediate))?;
        map(tx.execute_batch(schema::SCHEMA))?;
        let version: Option<i64> = map(tx.query_row(
            "SELECT MAX(version) FROM schema_version",
            [],
            |row| row.get(0),
        ))?;
        match version {
            None => {
                map(tx.execute(
                    "INSERT INTO schema_version (version) VALUES (?1)",
                    [SCHEMA_VERSION],
                ))?;
            }
            Some(found) if found > SCHEMA_VERSION => {
                return Err(StoreError::Backend(format!(
                    "the registry {} has schema version {found}, newer than this \
                     metaboot-server knows ({SCHEMA_VERSION}): upgrade metaboot-server",
                    path.display()
                )));
            }
            Some(_) => {}
        }
        map(tx.commit())
    }

    /// The connection; a panic in another caller leaves it usable (its transaction rolled
    /// back when unwinding dropped it), so a poisoned lock is recovered.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where `open` puts the file for a `sqlite:` URL or a plain path.
pub fn path_of(url: &str) -> PathBuf {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    PathBuf::from(path)
}

impl Backend for SqliteBackend {
    fn read<T>(&self, mut op: impl FnMut(&mut dyn Sql) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.lock();
        // A deferred transaction gives multi-statement reads one snapshot; dropping it
        // ends it (nothing to commit).
        let tx = map(conn.transaction())?;
        op(&mut SqliteSql { conn: &tx })
    }

    fn write<T>(&self, mut op: impl FnMut(&mut dyn Sql) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.lock();
        // IMMEDIATE takes the write lock up front, so checks and the write see the same data
        // and change log numbers are committed in order.
        let tx = map(conn.transaction_with_behavior(TransactionBehavior::Immediate))?;
        let value = op(&mut SqliteSql { conn: &tx })?;
        map(tx.commit())?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::ToSql;

    use super::sql::{INSTANCE_BY_UUID, PORTS_BY_IP, ports_on_networks_sql};
    use super::*;

    /// The query plan of `sql`, one detail line per step.
    fn plan(conn: &Connection, sql: &str, params: &[&dyn ToSql]) -> Vec<String> {
        let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = statement
            .query_map(params, |row| row.get::<_, String>(3))
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    #[test]
    fn hot_path_queries_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::open(&dir.path().join("registry.sqlite")).unwrap();
        let conn = backend.lock();
        let by_uuid = plan(&conn, INSTANCE_BY_UUID, &[&"u"]);
        assert!(
            by_uuid.iter().all(|step| !step.starts_with("SCAN")),
            "{by_uuid:?}"
        );
        let by_ip = plan(&conn, PORTS_BY_IP, &[&"198.18.0.3"]);
        assert!(
            by_ip.iter().any(|step| step.contains("ports_ip")),
            "{by_ip:?}"
        );
        let on_networks = plan(
            &conn,
            &ports_on_networks_sql(2),
            &[&"198.18.0.3", &"a", &"b"],
        );
        assert!(
            on_networks
                .iter()
                .all(|step| !step.starts_with("SCAN ports")),
            "{on_networks:?}"
        );
    }

    #[test]
    fn open_creates_the_parent_directory_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/registry.sqlite");
        drop(SqliteBackend::open(&path).unwrap());
        assert!(path.exists());
        drop(SqliteBackend::open(&path).unwrap());
    }

    #[test]
    fn open_refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.sqlite");
        drop(SqliteBackend::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute("UPDATE schema_version SET version = 99", [])
            .unwrap();
        drop(conn);
        match SqliteBackend::open(&path) {
            Err(StoreError::Backend(msg)) => assert!(msg.contains("upgrade"), "{msg}"),
            other => panic!("expected Backend error, got {:?}", other.err()),
        }
    }

    #[test]
    fn unwritable_directory_is_a_clear_error() {
        // A path under a regular file can never be created, even as root.
        let file = tempfile::NamedTempFile::new().unwrap();
        let path = file.path().join("sub/registry.sqlite");
        match SqliteBackend::open(&path) {
            Err(StoreError::Backend(msg)) => {
                assert!(
                    msg.contains("cannot create the registry directory"),
                    "{msg}"
                );
            }
            other => panic!("expected Backend error, got {:?}", other.err()),
        }
    }
}
