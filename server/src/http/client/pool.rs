//! Upstream connections by worker thread: each worker takes its own, so the lock is never
//! contended on the hot path and a connection is not handed between threads. Idle connections
//! for requests that are not pipelined are checked before they are handed out
//! (`ClientConnection::is_open`), so one the upstream closed while it idled is dropped instead
//! of failing a request; each thread's pipelined connection is replaced once it broke. A
//! connection that idled longer than the pool's reuse bound (`UPSTREAM_IDLE_REUSE`) is closed
//! instead of used: the upstream may be closing it at that very moment.
//!
//! Nothing reads an idle connection, so when the upstream closes one (its idle timeout, a
//! restart) our end would stay open, in CLOSE_WAIT, until the next request of its thread looks
//! at it: for ever on a thread that sends no more. So while a thread keeps idle connections, a
//! task of its own looks them over every `UPSTREAM_POOL_SWEEP` and closes those the upstream
//! closed or that idled past the reuse bound; it ends once none is left, and the next
//! connection given back starts another. One timer per thread with idle connections, none per
//! request: a request only checks a flag when it gives its connection back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::ThreadId;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use super::pipeline::Pipeline;
use super::stream::Stream;
use crate::http::h1::ClientConnection;
use crate::http::limits::{UPSTREAM_POOL_IDLE_MAX, UPSTREAM_POOL_SWEEP};

pub type Connection = ClientConnection<Stream>;

/// Idle connections to one upstream, by worker thread.
pub struct Pool {
    idle: Arc<Idle>,
}

struct Idle {
    by_thread: Mutex<HashMap<ThreadId, Mine>>,
    /// Longest a connection idles and is still handed out.
    reuse: Duration,
}

/// One thread's idle connections.
#[derive(Default)]
struct Mine {
    /// Each with when it was given back, the most recent last.
    connections: Vec<(Connection, Instant)>,
    /// A task looks them over (`sweep`).
    swept: bool,
}

impl Pool {
    /// A pool that hands out connections idle for at most `reuse`, and closes the others
    /// within `UPSTREAM_POOL_SWEEP`.
    pub fn new(reuse: Duration) -> Self {
        Self {
            idle: Arc::new(Idle {
                by_thread: Mutex::default(),
                reuse,
            }),
        }
    }

    /// An idle connection of this thread that is still open and idled at most the reuse bound.
    pub fn take(&self) -> Option<Connection> {
        loop {
            let (connection, since) = {
                let mut idle = self.idle.lock();
                idle.get_mut(&std::thread::current().id())?
                    .connections
                    .pop()?
            };
            // The most recently used comes first: once it idled too long, every other did.
            if since.elapsed() > self.idle.reuse {
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
            let mut idle = self.idle.lock();
            idle.get_mut(&std::thread::current().id())
                .map(|mine| std::mem::take(&mut mine.connections))
        };
        drop(mine);
    }

    /// Keeps `connection` for this thread's next request, up to `UPSTREAM_POOL_IDLE_MAX`; the
    /// first one kept starts the thread's sweeping task, on the thread's runtime.
    pub fn give_back(&self, connection: Connection) {
        let thread = std::thread::current().id();
        let start = {
            let mut idle = self.idle.lock();
            let mine = idle.entry(thread).or_default();
            if mine.connections.len() >= UPSTREAM_POOL_IDLE_MAX {
                // This thread keeps enough: `connection` closes after the lock is released (a
                // parameter is dropped after the locals).
                return;
            }
            mine.connections.push((connection, Instant::now()));
            !std::mem::replace(&mut mine.swept, true)
        };
        if start {
            tokio::spawn(sweep(Arc::downgrade(&self.idle), thread));
        }
    }
}

impl Idle {
    fn lock(&self) -> MutexGuard<'_, HashMap<ThreadId, Mine>> {
        self.by_thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `thread`'s idle connections that can no longer be handed out (the upstream closed
    /// them, or they idled past the reuse bound), to be closed by the caller outside the lock;
    /// and whether none is left, the sweeping then over (`Mine::swept` cleared).
    fn stale(&self, thread: ThreadId) -> (Vec<(Connection, Instant)>, bool) {
        let mut idle = self.lock();
        let Some(mine) = idle.get_mut(&thread) else {
            return (Vec::new(), true);
        };
        let stale = mine
            .connections
            .extract_if(.., |(connection, since)| {
                since.elapsed() > self.reuse || !connection.is_open()
            })
            .collect();
        let done = mine.connections.is_empty();
        if done {
            mine.swept = false;
        }
        (stale, done)
    }
}

/// Closes `thread`'s idle connections of the pool `idle` once they can no longer be handed out,
/// looking every `UPSTREAM_POOL_SWEEP`, until none is left or the pool is gone. Spawned by that
/// thread: on a worker's single-threaded runtime it runs there, beside the requests that use
/// them.
async fn sweep(idle: Weak<Idle>, thread: ThreadId) {
    let every = UPSTREAM_POOL_SWEEP;
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    // A late tick is not made up for with a burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(pool) = idle.upgrade() else {
            return;
        };
        let (stale, done) = pool.stale(thread);
        // Closed outside the lock.
        drop(stale);
        if done {
            return;
        }
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
