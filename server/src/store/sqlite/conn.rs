//! One SQLite connection as the store sees it: opened with the busy timeout and foreign keys
//! on, and its errors mapped to clear ones (a lock held too long, a constraint hit by a race).

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::store::constraint::Constraint;
use crate::store::error::{StoreError, StoreResult};

/// How long a statement waits for another process's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Opens a connection to the registry file with the busy timeout and foreign keys on. It
/// never creates the file: only `create_private` (`mod.rs`) does, readable by its owner only,
/// and a connection opened after `rm registry.sqlite*` would otherwise make an empty one with
/// the default mode, which the server would then adopt and fill with passwords and user data.
/// The path is a path, never a URI: see [`as_path`].
pub(super) fn connect(path: &Path) -> StoreResult<Connection> {
    let flags = OpenFlags::default()
        .difference(OpenFlags::SQLITE_OPEN_CREATE)
        .difference(OpenFlags::SQLITE_OPEN_URI);
    let conn = Connection::open_with_flags(as_path(path), flags).map_err(|err| {
        let gone = if path.exists() {
            ""
        } else {
            " (the file is gone: the next metaboot-server command makes a new one, which \
             this server then follows)"
        };
        StoreError::Backend(format!(
            "cannot open the registry {}: {err}{gone}",
            path.display()
        ))
    })?;
    map(conn.busy_timeout(BUSY_TIMEOUT))?;
    map(conn.execute_batch("PRAGMA foreign_keys = ON"))?;
    Ok(conn)
}

/// `path` as SQLite must be given it to take it as a file's path: a relative one under `./`.
/// SQLite reads a name that starts with `file:` as a URI (when `SQLITE_OPEN_URI` is set, and
/// whatever the flags when it was built with `SQLITE_USE_URI`, as rusqlite's bundled SQLite
/// is): `--db file:reg.sqlite` would open `reg.sqlite` beside the empty `file:reg.sqlite`
/// made for it, and `?mode=memory` a registry thrown away at exit.
fn as_path(path: &Path) -> Cow<'_, Path> {
    if path.is_relative() {
        Cow::Owned(Path::new(".").join(path))
    } else {
        Cow::Borrowed(path)
    }
}

fn backend_error(err: &rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Backend(format!(
            "the registry is locked by another writer for more than {} s: try again ({err})",
            BUSY_TIMEOUT.as_secs()
        )),
        Some(ErrorCode::ConstraintViolation) => {
            let message = err.to_string();
            constraint(&message).refusal(&message)
        }
        _ => StoreError::Backend(err.to_string()),
    }
}

/// The constraint named by SQLite's message (a constraint the rules should have caught
/// first: a race with another process).
fn constraint(message: &str) -> Constraint {
    if message.contains("ports.network_id, ports.ip")
        || message.contains("ports.network_id, ports.second_ip")
    {
        Constraint::PortIp
    } else if message.contains("ports.mac") {
        Constraint::PortMac
    } else if message.contains("instances.uuid") {
        Constraint::InstanceUuid
    } else if message.contains("FOREIGN KEY constraint failed") {
        Constraint::ForeignKey
    } else {
        Constraint::Other
    }
}

/// A rusqlite result as the store's.
pub(super) fn map<T>(result: rusqlite::Result<T>) -> StoreResult<T> {
    result.map_err(|err| backend_error(&err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_path_is_never_a_uri() {
        assert_eq!(
            as_path(Path::new("file:reg.sqlite?mode=memory")),
            Path::new("./file:reg.sqlite?mode=memory")
        );
        assert_eq!(
            as_path(Path::new("/var/lib/file:x")),
            Path::new("/var/lib/file:x")
        );
    }

    #[test]
    fn a_foreign_key_violation_is_the_same_refusal_as_on_postgresql() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE networks (id TEXT NOT NULL UNIQUE);
             CREATE TABLE ports (network_id TEXT NOT NULL REFERENCES networks (id));",
        )
        .unwrap();
        let err = map(conn.execute("INSERT INTO ports VALUES ('gone')", [])).unwrap_err();
        let expected = Constraint::ForeignKey.refusal("FOREIGN KEY constraint failed");
        assert_eq!(err.to_string(), expected.to_string());
        assert!(err.is_user_error(), "{err}");
    }
}
