//! Upstream connections by worker thread: each worker takes its own, so the lock is never
//! contended on the hot path and a connection is not handed between threads. Idle connections
//! for requests that are not pipelined are checked before they are handed out
//! (`ClientConnection::is_open`), so one the upstream closed while it idled is dropped instead
//! of failing a request; each thread's pipelined connection is replaced once it broke.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::thread::ThreadId;

use super::pipeline::Pipeline;
use super::stream::Stream;
use crate::http::h1::ClientConnection;
use crate::http::limits::UPSTREAM_POOL_IDLE_MAX;

pub type Connection = ClientConnection<Stream>;

/// Idle connections to one upstream.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<ThreadId, Vec<Connection>>>,
}

impl Pool {
    /// An idle connection of this thread that is still open.
    pub fn take(&self) -> Option<Connection> {
        loop {
            let connection = {
                let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
                idle.get_mut(&std::thread::current().id())?.pop()?
            };
            // A closed one is dropped (and its socket closed) outside the lock.
            if connection.is_open() {
                return Some(connection);
            }
        }
    }

    /// Keeps `connection` for this thread's next request, up to `UPSTREAM_POOL_IDLE_MAX`.
    pub fn give_back(&self, connection: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = idle.entry(std::thread::current().id()).or_default();
        if mine.len() < UPSTREAM_POOL_IDLE_MAX {
            mine.push(connection);
        }
        // Else this thread keeps enough: `connection` closes after the lock is released (a
        // parameter is dropped after the locals).
    }
}

/// The pipelined connection of each worker thread.
#[derive(Default)]
pub struct Pipelines {
    by_thread: Mutex<HashMap<ThreadId, Pipeline>>,
}

impl Pipelines {
    /// This thread's pipelined connection, and whether it was there before; a new one
    /// (`start`) when there was none or it broke.
    pub fn take_or_start(&self, start: impl FnOnce() -> Pipeline) -> (Pipeline, bool) {
        let mut by_thread = self
            .by_thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let thread = std::thread::current().id();
        if let Some(pipeline) = by_thread.get(&thread)
            && pipeline.is_open()
        {
            return (pipeline.clone(), true);
        }
        let pipeline = start();
        by_thread.insert(thread, pipeline.clone());
        (pipeline, false)
    }
}
