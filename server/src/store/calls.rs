//! Calling the synchronous store from async code: on a blocking thread, a bounded number at
//! once, or in place where the backend's reads never wait.

use std::sync::Arc;

use super::contract::Store;
use super::error::{StoreError, StoreResult};

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
