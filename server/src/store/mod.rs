//! The registry store: one `Store` trait, two backends (SQLite embedded, PostgreSQL shared).
//!
//! The trait is synchronous; async callers run it on `tokio::task::spawn_blocking`. Every write
//! is one transaction that also appends to the change log (and, on PostgreSQL, notifies
//! listening servers), so running servers keep their read model (`crate::model`) current.

pub mod allocate;
mod calls;
mod clock;
mod constraint;
mod contract;
mod driver;
mod error;
mod feed;
mod fixed_ips;
pub mod host;
mod location;
mod model;
mod postgres;
mod registry;
mod rows;
mod sql;
mod sqlite;
mod statements;
pub mod subnets;
mod taken;
pub mod validate;

pub use calls::{MAX_CONCURRENT_CALLS, call, read};
pub use contract::{CHANGE_LOG_KEPT, Store};
pub use error::{StoreError, StoreResult};
pub use feed::{Batch, CHANGE_CHANNEL, Feed, MAX_CHANGES_PER_BATCH, Record, Wakeups};
pub use location::{
    DEFAULT_DB, Location, OLD_DEFAULT_DB, default_db, holds_password, locate, redacted,
};
pub use model::{
    Change, ChangeKind, HostBridge, Instance, Ipv6AddressMode, KeyPair, LEARNED_IP_BLOCK,
    LEARNED_IP_SHOWN, Network, NewInstance, NewNetwork, NewPort, NewRouter, PasswordSet, Port,
    Router, Subnet, is_learned_placeholder,
};
pub use rows::LoggedChange;
pub use validate::{MAX_PASSWORD_BYTES, MAX_USER_DATA_BYTES};

use std::sync::Arc;

use self::postgres::PostgresBackend;
pub use self::postgres::{
    MAX_CONNECTIONS, MAX_WRITERS, POOL_WAIT, STATEMENT_TIMEOUT, WRITE_LOCK_WAIT,
};
use registry::Registry;
use sqlite::SqliteBackend;

/// Opens the registry named by `--db`: a `postgres://` or `postgresql://` URL is PostgreSQL;
/// `sqlite:PATH`, `sqlite://PATH` or a plain path is a SQLite file (created with its
/// directory when missing); a value that looks like another URL is refused
/// ([`location::locate`]). The schema is created on first use.
pub fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    open_keeping_changes(url, CHANGE_LOG_KEPT)
}

/// `open`, with the change log keeping only the newest `kept` changes (at least 1).
pub fn open_keeping_changes(url: &str, kept: i64) -> StoreResult<Arc<dyn Store>> {
    match location::locate(url)? {
        Location::Postgres(url) => {
            let backend = PostgresBackend::open(url)?;
            Ok(Arc::new(Registry::new(backend).keeping_changes(kept)))
        }
        Location::Sqlite(path) => {
            let backend = SqliteBackend::open(&path)?;
            Ok(Arc::new(Registry::new(backend).keeping_changes(kept)))
        }
    }
}
