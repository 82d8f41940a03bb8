//! The registry store: one `Store` trait, two backends (SQLite embedded, PostgreSQL shared).
//!
//! The trait is synchronous; async callers run it on `tokio::task::spawn_blocking`. Every write
//! is one transaction that also appends to the change log, so running servers can drop caches
//! and follow routers and isolated networks as they come and go.

pub mod allocate;
mod clock;
mod driver;
mod error;
mod location;
mod model;
mod postgres;
mod registry;
mod rows;
mod sql;
mod sqlite;
mod statements;
pub mod validate;

pub use error::{StoreError, StoreResult};
pub use location::{DEFAULT_DB, redacted};
pub use model::{
    Change, ChangeKind, Instance, KeyPair, Network, NewInstance, NewNetwork, NewPort, NewRouter,
    PasswordSet, Port, Router,
};

use std::net::IpAddr;
use std::sync::Arc;

use self::postgres::PostgresBackend;
use registry::Registry;
use sqlite::SqliteBackend;

/// Largest user data the registry stores, in raw bytes. Nova limits the base64 text to 65 535
/// characters (about 49 KiB raw, docs/protocol.md §1.8): everything nova accepts fits here.
pub const MAX_USER_DATA_BYTES: usize = 65_535;
/// Largest password the password endpoint stores, in bytes (nova: 4 × 255).
pub const MAX_PASSWORD_BYTES: usize = 1_020;

/// Most registry calls running at once from a process's async code; the rest wait their turn
/// without a thread. A boot storm's cache misses would otherwise start a blocking thread and a
/// database connection each, all at once.
pub const MAX_CONCURRENT_CALLS: usize = 8;

static CALL_GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_CALLS);

/// Runs a store call from async code: on a blocking thread, at most [`MAX_CONCURRENT_CALLS`]
/// at once.
pub async fn call<T, F>(store: &Arc<dyn Store>, op: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> StoreResult<T> + Send + 'static,
{
    let _turn = CALL_GATE
        .acquire()
        .await
        .map_err(|_| StoreError::Backend("the store call gate is closed".to_owned()))?;
    let store = store.clone();
    tokio::task::spawn_blocking(move || op(store.as_ref()))
        .await
        .unwrap_or_else(|err| Err(StoreError::Backend(format!("store task failed: {err}"))))
}

/// Runs a read-only store call from async code: in place when the store's reads never wait
/// (SQLite: tens of microseconds, less than a hand-off to a blocking thread costs on a busy
/// machine), else like [`call`].
pub async fn read<T, F>(store: &Arc<dyn Store>, op: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> StoreResult<T> + Send + 'static,
{
    if store.reads_in_place() {
        op(store.as_ref())
    } else {
        call(store, op).await
    }
}

/// The registry of networks, routers, ports and instances.
pub trait Store: Send + Sync {
    /// True when reads never wait for another process or the network, so async code may run
    /// them in place (see [`read`]).
    fn reads_in_place(&self) -> bool {
        false
    }

    // --- networks
    fn create_network(&self, new: &NewNetwork) -> StoreResult<Network>;
    fn networks(&self) -> StoreResult<Vec<Network>>;
    /// By id, or by name when the name is unique.
    fn network(&self, id_or_name: &str) -> StoreResult<Network>;
    /// Refused (Conflict) while ports are on it.
    fn delete_network(&self, id: &str) -> StoreResult<()>;

    // --- routers
    fn create_router(&self, new: &NewRouter) -> StoreResult<Router>;
    fn routers(&self) -> StoreResult<Vec<Router>>;
    fn router(&self, id_or_name: &str) -> StoreResult<Router>;
    fn add_router_network(&self, router_id: &str, network_id: &str) -> StoreResult<()>;
    fn delete_router(&self, id: &str) -> StoreResult<()>;

    // --- instances
    /// Creates the instance and its first port in one transaction; allocates the port's IP
    /// (lowest free host address, skipping gateway and DHCP address) and MAC (`fa:16:3e:…`)
    /// when not given.
    fn create_instance(&self, new: &NewInstance, port: &NewPort) -> StoreResult<(Instance, Port)>;
    fn instances(&self) -> StoreResult<Vec<Instance>>;
    /// By uuid, or by name when the name is unique.
    fn instance(&self, id_or_name: &str) -> StoreResult<Instance>;
    /// By uuid only; `None` when absent. The API's hot path.
    fn instance_by_uuid(&self, uuid: &str) -> StoreResult<Option<Instance>>;
    /// Deletes the instance and its ports.
    fn delete_instance(&self, uuid: &str) -> StoreResult<()>;
    /// Write-once: exactly one of any number of concurrent calls gets `Stored`.
    fn set_password(&self, uuid: &str, password: &str) -> StoreResult<PasswordSet>;

    // --- ports
    fn create_port(&self, new: &NewPort) -> StoreResult<Port>;
    fn ports(&self) -> StoreResult<Vec<Port>>;
    fn port(&self, id: &str) -> StoreResult<Port>;
    fn delete_port(&self, id: &str) -> StoreResult<()>;
    /// The instance's ports with their networks, oldest port first (network_data.json).
    fn instance_ports(&self, uuid: &str) -> StoreResult<Vec<(Port, Network)>>;

    // --- the agent's hot path
    /// Ports with this IP on any of these networks (indexed; zero, one or several).
    fn find_ports(&self, ip: IpAddr, network_ids: &[String]) -> StoreResult<Vec<Port>>;
    /// Ports with this IP on the networks behind router `router_id` (by id), in one read: the
    /// agent's hot path on the router path.
    fn find_ports_behind_router(&self, ip: IpAddr, router_id: &str) -> StoreResult<Vec<Port>>;
    /// Ports with this IP on any network (the API's source-IP mode).
    fn find_ports_by_ip(&self, ip: IpAddr) -> StoreResult<Vec<Port>>;

    // --- change log
    /// The newest change's sequence number (0 when none).
    fn last_change(&self) -> StoreResult<i64>;
    /// Changes after `seq`, oldest first.
    fn changes_since(&self, seq: i64) -> StoreResult<Vec<Change>>;
}

/// How many of the newest changes the change log keeps; every write drops the ones before.
/// A server further behind than this has missed changes and starts over (see
/// `watch::MAX_CHANGES_PER_POLL`, which must not exceed it).
pub const CHANGE_LOG_KEPT: i64 = 100_000;

/// Opens the registry named by `--db`: a `postgres://` or `postgresql://` URL is PostgreSQL;
/// `sqlite:PATH`, `sqlite://PATH` or a plain path is a SQLite file (created with its
/// directory when missing). The schema is created on first use.
pub fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    open_keeping_changes(url, CHANGE_LOG_KEPT)
}

/// `open`, with the change log keeping only the newest `kept` changes (at least 1).
pub fn open_keeping_changes(url: &str, kept: i64) -> StoreResult<Arc<dyn Store>> {
    if url.trim().is_empty() {
        return Err(StoreError::Invalid(
            "the registry location is empty: pass --db PATH or a postgres:// URL".to_owned(),
        ));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let backend = PostgresBackend::open(url)?;
        return Ok(Arc::new(Registry::new(backend).keeping_changes(kept)));
    }
    let backend = SqliteBackend::open(&sqlite::path_of(url))?;
    Ok(Arc::new(Registry::new(backend).keeping_changes(kept)))
}
