//! One SQLite connection as the store sees it: opened with the busy timeout and foreign keys
//! on, and its errors mapped to clear ones (a lock held too long, a constraint hit by a race).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::store::error::{StoreError, StoreResult};

/// How long a statement waits for another process's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Opens a connection to the registry file with the busy timeout and foreign keys on. It
/// never creates the file: only `create_private` (`mod.rs`) does, readable by its owner only,
/// and a connection opened after `rm registry.sqlite*` would otherwise make an empty one with
/// the default mode, which the server would then adopt and fill with passwords and user data.
pub(super) fn connect(path: &Path) -> StoreResult<Connection> {
    let flags = OpenFlags::default().difference(OpenFlags::SQLITE_OPEN_CREATE);
    let conn = Connection::open_with_flags(path, flags).map_err(|err| {
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

fn backend_error(err: &rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Backend(format!(
            "the registry is locked by another writer for more than {} s: try again ({err})",
            BUSY_TIMEOUT.as_secs()
        )),
        Some(ErrorCode::ConstraintViolation) => conflict(&err.to_string()),
        _ => StoreError::Backend(err.to_string()),
    }
}

/// A constraint the rules should have caught first (a race with another process): still a
/// clear refusal rather than a backend failure.
fn conflict(message: &str) -> StoreError {
    let what = if message.contains("ports.network_id, ports.ip") {
        "that IP is already used on that network: pick another address or omit the IP"
    } else if message.contains("ports.mac") {
        "that MAC is already used by another port: pick another MAC or omit it"
    } else if message.contains("instances.uuid") {
        "an instance with that uuid already exists: omit --uuid to get a new one"
    } else {
        "the change conflicts with an existing record"
    };
    StoreError::Conflict(format!("{what} ({message})"))
}

/// A rusqlite result as the store's.
pub(super) fn map<T>(result: rusqlite::Result<T>) -> StoreResult<T> {
    result.map_err(|err| backend_error(&err))
}
