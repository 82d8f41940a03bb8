//! Upstream connections by worker thread: each worker takes its own, so the lock is never
//! contended on the hot path and a connection is not handed between threads. Idle connections
//! for requests that are not pipelined are checked before they are handed out
//! (`ClientConnection::is_open`), so one the upstream closed while it idled is dropped instead
//! of failing a request; each thread's pipelined connection is replaced once it broke. A
//! connection that idled longer than the pool's reuse bound (`UPSTREAM_IDLE_REUSE`) is closed
//! instead of used: the upstream may be closing it at that very moment.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::Duration;

use tokio::time::Instant;

use super::pipeline::Pipeline;
use super::stream::Stream;
use crate::http::h1::ClientConnection;
use crate::http::limits::UPSTREAM_POOL_IDLE_MAX;

pub type Connection = ClientConnection<Stream>;

/// Idle connections to one upstream, each with when it was given back.
pub struct Pool {
    idle: Mutex<HashMap<ThreadId, Vec<(Connection, Instant)>>>,
    /// Longest a connection idles and is still handed out.
    reuse: Duration,
}

impl Pool {
    /// A pool that hands out connections idle for at most `reuse`.
    pub fn new(reuse: Duration) -> Self {
        Self {
            idle: Mutex::default(),
            reuse,
        }
    }

    /// An idle connection of this thread that is still open and idled at most the reuse bound.
    pub fn take(&self) -> Option<Connection> {
        loop {
            let (connection, since) = {
                let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
                idle.get_mut(&std::thread::current().id())?.pop()?
            };
            // The most recently used comes first: once it idled too long, every other did.
            if since.elapsed() > self.reuse {
                self.forget_mine();
                return None;
            }
            // A closed one is dropped (and its socket closed) outside the lock.
            if connection.is_open() {
                return Some(connection);
            }
        }
    }

    /// Closes this thread's idle connections.
    fn forget_mine(&self) {
        let mine = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            idle.remove(&std::thread::current().id())
        };
        drop(mine);
    }

    /// Keeps `connection` for this thread's next request, up to `UPSTREAM_POOL_IDLE_MAX`.
    pub fn give_back(&self, connection: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = idle.entry(std::thread::current().id()).or_default();
        if mine.len() < UPSTREAM_POOL_IDLE_MAX {
            mine.push((connection, Instant::now()));
        }
        // Else this thread keeps enough: `connection` closes after the lock is released (a
        // parameter is dropped after the locals).
    }
}

/// The pipelined connection of each worker thread.
pub struct Pipelines {
    by_thread: Mutex<HashMap<ThreadId, Pipeline>>,
    /// Longest a pipelined connection idles and is still used.
    reuse: Duration,
}

impl Pipelines {
    /// Pipelined connections used while they idled at most `reuse`.
    pub fn new(reuse: Duration) -> Self {
        Self {
            by_thread: Mutex::default(),
            reuse,
        }
    }

    /// This thread's pipelined connection; a new one (`start`) when there was none, it broke or
    /// it idled past the reuse bound.
    pub fn take_or_start(&self, start: impl FnOnce() -> Pipeline) -> Pipeline {
        let mut by_thread = self
            .by_thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let thread = std::thread::current().id();
        if let Some(pipeline) = by_thread.get(&thread)
            && pipeline.is_open()
        {
            if !pipeline.idled_past(self.reuse) {
                return pipeline.clone();
            }
            pipeline.abandon("it idled past the reuse bound");
        }
        let pipeline = start();
        by_thread.insert(thread, pipeline.clone());
        pipeline
    }
}
