//! The SQLite backend: one file in WAL mode; writes on one connection behind a mutex, reads on
//! a small pool of their own, so a write waiting for another process's lock never holds up the
//! hot path's reads (WAL readers do not wait for writers).

mod conn;
mod schema;
mod sql;
mod upgrade;

use std::fs;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use super::error::{StoreError, StoreResult};
use super::sql::{Backend, Sql};
use conn::{BUSY_TIMEOUT, connect, map};
use sql::SqliteSql;

/// Read connections kept open between reads; more are opened when reads run at once.
pub const MAX_IDLE_READERS: usize = 8;
/// Page cache of each read connection, KiB (SQLite's default is 2 000 KiB a connection). The
/// reads are the read model's start-up scan, which visits each page once, and the follower's
/// and the API's lookups of a few pages; a large cache only keeps the scan's pages resident
/// for the life of the process (issue 14: the peak RSS of `all` over 100 000 instances).
pub const READER_CACHE_KIB: u32 = 256;
/// Mode of a new registry file: it holds admin passwords and user data. SQLite gives its
/// `-wal` and `-shm` files the same mode.
pub const REGISTRY_FILE_MODE: u32 = 0o600;

/// Creates the registry file readable by its owner only, unless it exists already.
fn create_private(path: &Path) -> StoreResult<()> {
    let created = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(REGISTRY_FILE_MODE)
        .open(path);
    match created {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(StoreError::Backend(format!(
            "cannot create the registry {}: {err}",
            path.display()
        ))),
    }
}

/// A file's identity: (device, inode).
type FileId = (u64, u64);

/// The identity of the file at `path`, `None` when there is none.
fn file_id(path: &Path) -> Option<FileId> {
    fs::metadata(path).ok().map(|meta| (meta.dev(), meta.ino()))
}

/// The SQLite registry file.
pub struct SqliteBackend {
    path: PathBuf,
    /// The one connection that writes.
    conn: Mutex<Connection>,
    /// Idle read connections.
    readers: Mutex<Vec<Connection>>,
    /// The file the connections have open: a registry deleted and made again under the same
    /// name (a lab reset while a server runs) is another file, which they would never see.
    opened: Mutex<Option<FileId>>,
    /// Set when the connections moved to a new file, until the change log's reader learns it.
    replaced: AtomicBool,
    /// How many times they moved: a read connection of an older file is not kept.
    generation: AtomicU64,
}

/// A read connection on loan from the pool; it goes back when dropped.
struct Reader<'a> {
    backend: &'a SqliteBackend,
    conn: Option<Connection>,
    /// The backend's generation when it was taken.
    generation: u64,
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut idle = self
                .backend
                .readers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let current = self.backend.generation.load(Ordering::SeqCst) == self.generation;
            if current && idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
    }
}

/// Pause between two tries of the switch to WAL mode while another connection holds the file.
pub const WAL_SWITCH_PAUSE: Duration = Duration::from_millis(10);

/// Switches the connection's file to WAL mode (a no-op once it is); returns the mode it is in.
/// On a new registry that several processes open at once, the switch needs the file to
/// itself, and SQLite answers "database is locked" at once rather than through the busy
/// timeout (it holds a read lock while it asks, and waiting could deadlock): tried again
/// every [`WAL_SWITCH_PAUSE`] for up to [`BUSY_TIMEOUT`], as a write would wait.
fn wal_mode(conn: &Connection) -> StoreResult<String> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)) {
            Err(err)
                if err.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(WAL_SWITCH_PAUSE);
            }
            result => return map(result),
        }
    }
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
        create_private(path)?;
        let opened = file_id(path);
        let conn = writer(path)?;
        Ok(Self {
            path: path.to_owned(),
            conn: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
            opened: Mutex::new(opened),
            replaced: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        })
    }

    /// Moves the connections to the file now at the path when it is not the one they have
    /// open (deleted and made again: `rm registry.sqlite*` and a new `network create`), so
    /// that this server reads the new registry and its writes (a password a guest posts) go
    /// there rather than into a deleted file. A path with no file yet keeps the old one.
    fn follow_path(&self) -> StoreResult<()> {
        let mut opened = self.opened.lock().unwrap_or_else(PoisonError::into_inner);
        let now = file_id(&self.path);
        if now.is_none() || now == *opened {
            return Ok(());
        }
        let conn = writer(&self.path)?;
        *self.lock() = conn;
        {
            let mut idle = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
            self.generation.fetch_add(1, Ordering::SeqCst);
            idle.clear();
        }
        *opened = now;
        self.replaced.store(true, Ordering::SeqCst);
        tracing::warn!(
            registry = %self.path.display(),
            "the registry file was replaced (deleted and made again): now serving the new one"
        );
        Ok(())
    }
}

/// The writing connection of the registry at `path`: in WAL mode, with the schema made or
/// brought up to date.
fn writer(path: &Path) -> StoreResult<Connection> {
    let mut conn = connect(path)?;
    let mode = wal_mode(&conn)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "the registry {} cannot use WAL mode (got {mode}): put it on a local file system",
            path.display()
        )));
    }
    upgrade::bring_up_to_date(&mut conn, path)?;
    Ok(conn)
}

impl SqliteBackend {
    /// A read connection: an idle one, or a new one (`query_only`: it can never write).
    fn reader(&self) -> StoreResult<Reader<'_>> {
        let (idle, generation) = {
            let mut idle = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
            (idle.pop(), self.generation.load(Ordering::SeqCst))
        };
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let conn = connect(&self.path)?;
                map(conn.execute_batch(&format!(
                    "PRAGMA query_only = ON; PRAGMA cache_size = -{READER_CACHE_KIB}"
                )))?;
                conn
            }
        };
        Ok(Reader {
            backend: self,
            conn: Some(conn),
            generation,
        })
    }

    /// The connection; a panic in another caller leaves it usable (its transaction rolled
    /// back when unwinding dropped it), so a poisoned lock is recovered.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Backend for SqliteBackend {
    /// WAL readers never wait for writers, and the file is local: a read takes microseconds.
    fn reads_in_place(&self) -> bool {
        true
    }

    fn read<T>(&self, mut op: impl FnMut(&mut dyn Sql) -> StoreResult<T>) -> StoreResult<T> {
        let mut reader = self.reader()?;
        let conn = reader
            .conn
            .as_mut()
            .ok_or_else(|| StoreError::Backend("read connection missing".to_owned()))?;
        // A deferred transaction gives multi-statement reads one snapshot; dropping it
        // ends it (nothing to commit).
        let tx = map(conn.transaction())?;
        op(&mut SqliteSql { conn: &tx })
    }

    /// Moves to the file now at the registry's path when it was replaced; true once after it
    /// did, so that the change log's reader starts over from a snapshot.
    fn follow_replacement(&self) -> StoreResult<bool> {
        self.follow_path()?;
        Ok(self.replaced.swap(false, Ordering::SeqCst))
    }

    fn write<T>(&self, mut op: impl FnMut(&mut dyn Sql) -> StoreResult<T>) -> StoreResult<T> {
        // A write never goes into a deleted file.
        self.follow_path()?;
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

    use std::time::Duration;

    use super::conn::BUSY_TIMEOUT;
    use super::sql::ports_on_networks_sql;
    use super::*;
    use crate::store::ChangeKind;
    use crate::store::statements::{INSTANCE_BY_UUID, PORTS_BEHIND_ROUTER, PORTS_BY_IP};

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
        let by_uuid = plan(&conn, INSTANCE_BY_UUID.sqlite, &[&"u"]);
        assert!(
            by_uuid.iter().all(|step| !step.starts_with("SCAN")),
            "{by_uuid:?}"
        );
        let by_ip = plan(&conn, PORTS_BY_IP.sqlite, &[&"198.18.0.3"]);
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
        let behind_router = plan(&conn, PORTS_BEHIND_ROUTER.sqlite, &[&"198.18.0.3", &"r"]);
        assert!(
            behind_router.iter().all(|step| !step.starts_with("SCAN")),
            "{behind_router:?}"
        );
    }

    #[test]
    fn open_creates_the_parent_directory_and_a_private_file() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/registry.sqlite");
        drop(SqliteBackend::open(&path).unwrap());
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, REGISTRY_FILE_MODE);
        drop(SqliteBackend::open(&path).unwrap());
    }

    #[test]
    fn a_panicking_caller_does_not_break_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::open(&dir.path().join("registry.sqlite")).unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            backend.write(|sql| -> StoreResult<()> {
                sql.log_change(ChangeKind::Network, "half-done")?;
                panic!("a caller bug mid-transaction")
            })
        }));
        assert!(panicked.is_err());
        assert!(backend.conn.is_poisoned());
        // The transaction rolled back and the next caller gets the connection.
        assert_eq!(backend.read(|sql| sql.last_change()).unwrap(), 0);
        backend
            .write(|sql| sql.log_change(ChangeKind::Network, "n"))
            .unwrap();
        assert_eq!(backend.read(|sql| sql.last_change()).unwrap(), 1);
    }

    #[test]
    fn a_new_registry_waits_for_another_opener_to_switch_it_to_wal() {
        assert!(WAL_SWITCH_PAUSE < BUSY_TIMEOUT / 100);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.sqlite");
        // Another process writes the new file (still in rollback mode) and commits while the
        // switch to WAL waits for it: each needs the file alone, and SQLite breaks the
        // deadlock by saying "locked" at once to the switch, which holds a read lock.
        let holder = Connection::open(&path).unwrap();
        holder.busy_timeout(BUSY_TIMEOUT).unwrap();
        holder
            .execute_batch("CREATE TABLE t (x); BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            holder.execute_batch("COMMIT").unwrap();
        });
        let backend = SqliteBackend::open(&path).unwrap();
        releaser.join().unwrap();
        assert_eq!(backend.read(|sql| sql.last_change()).unwrap(), 0);
    }

    #[test]
    fn a_writer_waits_for_the_lock_up_to_the_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.sqlite");
        let backend = SqliteBackend::open(&path).unwrap();
        let write = || backend.write(|sql| sql.log_change(ChangeKind::Network, "n"));

        // Another process holds the write lock briefly: the write waits, then succeeds.
        let holder = Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            holder.execute_batch("COMMIT").unwrap();
            holder
        });
        write().unwrap();
        let holder = releaser.join().unwrap();

        // It holds the lock past the timeout: a clear backend error, not a hang.
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let started = std::time::Instant::now();
        match write() {
            Err(StoreError::Backend(msg)) => assert!(msg.contains("locked"), "{msg}"),
            other => panic!("expected a backend error, got {other:?}"),
        }
        assert!(started.elapsed() >= BUSY_TIMEOUT);
        holder.execute_batch("ROLLBACK").unwrap();
        write().unwrap();
    }

    #[test]
    fn reads_go_on_while_another_process_holds_the_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.sqlite");
        let backend = SqliteBackend::open(&path).unwrap();
        backend
            .write(|sql| sql.log_change(ChangeKind::Network, "n"))
            .unwrap();
        let holder = Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        holder
            .execute_batch("INSERT INTO changes (kind, id) VALUES ('network', 'pending')")
            .unwrap();
        let started = std::time::Instant::now();
        // A writer of this process waits for the lock on another thread meanwhile.
        std::thread::scope(|scope| {
            let waiting =
                scope.spawn(|| backend.write(|sql| sql.log_change(ChangeKind::Port, "p")));
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(backend.read(|sql| sql.last_change()).unwrap(), 1);
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "the read waited for the writer"
            );
            holder.execute_batch("COMMIT").unwrap();
            waiting.join().unwrap().unwrap();
        });
        assert_eq!(backend.read(|sql| sql.last_change()).unwrap(), 3);
        // Read connections never write.
        let reader = backend.reader().unwrap();
        assert!(
            reader
                .conn
                .as_ref()
                .unwrap()
                .execute_batch("DELETE FROM changes")
                .is_err()
        );
    }

    #[test]
    fn read_connections_keep_a_small_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::open(&dir.path().join("registry.sqlite")).unwrap();
        let reader = backend.reader().unwrap();
        let kib: i64 = reader
            .conn
            .as_ref()
            .unwrap()
            .query_row("PRAGMA cache_size", [], |row| row.get(0))
            .unwrap();
        // Negative: KiB rather than pages.
        assert_eq!(kib, -i64::from(READER_CACHE_KIB));
    }

    #[test]
    fn an_open_of_a_current_schema_waits_for_no_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.sqlite");
        drop(SqliteBackend::open(&path).unwrap());
        // Another process is in a long write (a bulk `instance create`).
        let holder = Connection::open(&path).unwrap();
        holder
            .execute_batch(
                "BEGIN IMMEDIATE; INSERT INTO changes (kind, id) VALUES ('network', 'pending')",
            )
            .unwrap();
        let started = std::time::Instant::now();
        let backend = match SqliteBackend::open(&path) {
            Ok(backend) => backend,
            Err(err) => panic!("an open of a current registry waited for the writer: {err}"),
        };
        assert_eq!(backend.read(|sql| sql.last_change()).unwrap(), 0);
        assert!(
            started.elapsed() < BUSY_TIMEOUT / 5,
            "took {:?}",
            started.elapsed()
        );
        holder.execute_batch("ROLLBACK").unwrap();
    }

    #[test]
    fn no_connection_makes_a_deleted_registry_file_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.sqlite");
        let backend = SqliteBackend::open(&path).unwrap();
        // `rm registry.sqlite*` under the running server.
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{}{suffix}", path.display());
            if Path::new(&file).exists() {
                fs::remove_file(&file).unwrap();
            }
        }
        match backend.reader() {
            Err(StoreError::Backend(msg)) => assert!(msg.contains("the file is gone"), "{msg}"),
            Err(other) => panic!("expected a backend error, got {other:?}"),
            Ok(_) => panic!("a read connection opened a deleted registry"),
        }
        assert!(!path.exists(), "a read connection made the registry file");
        assert!(writer(&path).is_err());
        assert!(
            !path.exists(),
            "the writing connection made the registry file"
        );
        // The server keeps the file it has until a new one exists.
        assert!(!backend.follow_replacement().unwrap());
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
