//! Keeping the read model (`crate::model`) current: a thread of its own waits for the store to announce a
//! change (PostgreSQL `LISTEN`, with a slower poll as the fallback) or polls it (SQLite, a
//! read of microseconds), then catches the model up and tells the listeners (`all`'s namespace
//! supervisor) what changed. While the store is unreachable the model keeps serving what it
//! has; when it is back, the model catches up (or reloads) without a restart.

use std::sync::Arc;
use std::time::Duration;

use crate::model::{CatchUp, ReadModel};
use crate::retry::doubled;
use crate::store::{Change, Store, Wakeups};

/// How often SQLite's change log is polled: well inside the 150 ms a change may take to
/// reach every server.
pub const SQLITE_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long a PostgreSQL follower waits for a notification before polling anyway (a lost
/// notification is noticed within this).
pub const NOTIFIED_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Poll interval while the notification connection is down.
pub const FALLBACK_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long after losing it the notification connection is opened again.
pub const RELISTEN_INTERVAL: Duration = Duration::from_secs(1);
/// How long the follower pauses before it reloads after a second panic in a row while catching
/// up (after the first it reloads at its next wake-up); doubled with each further one.
pub const PANIC_RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// The longest pause between reloads while every catch-up panics: a whole snapshot of a large
/// registry is a real load on a shared PostgreSQL.
pub const MAX_PANIC_RETRY_INTERVAL: Duration = Duration::from_secs(60);

/// The pause after a first failed reload (the registry answered the change log but its
/// snapshot could not be read whole: a statement timeout, a row that does not decode),
/// doubled with each further one in a row.
pub const RELOAD_RETRY_INTERVAL: Duration = Duration::from_millis(250);
/// The longest pause between failed reloads: each reads the whole registry, a real load on a
/// shared PostgreSQL when it fails again and again.
pub const MAX_RELOAD_RETRY_INTERVAL: Duration = Duration::from_secs(10);

/// The pause before the catch-up that follows `failures` failed reloads in a row:
/// [`RELOAD_RETRY_INTERVAL`], doubling, at most [`MAX_RELOAD_RETRY_INTERVAL`]; none after none.
pub fn reload_pause(failures: u32) -> Duration {
    match failures {
        0 => Duration::ZERO,
        _ => doubled(
            RELOAD_RETRY_INTERVAL,
            failures - 1,
            MAX_RELOAD_RETRY_INTERVAL,
        ),
    }
}

/// The panics of a follower that have not yet been followed by [`MAX_PANIC_RETRY_INTERVAL`]
/// without one: a catch-up that succeeds between two (the reload, before a listener panics
/// again at the next change) does not start the count over.
#[derive(Debug, Default)]
pub struct Panics {
    count: u32,
    last: Option<std::time::Instant>,
}

impl Panics {
    /// A panic at `now`: the pause before the reload ([`panic_pause`] of the count).
    pub fn panicked(&mut self, now: std::time::Instant) -> Duration {
        self.count = self.count.saturating_add(1);
        self.last = Some(now);
        panic_pause(self.count)
    }

    /// A catch-up without a panic at `now`: the count starts over once the last panic is
    /// [`MAX_PANIC_RETRY_INTERVAL`] old.
    pub fn followed(&mut self, now: std::time::Instant) {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) >= MAX_PANIC_RETRY_INTERVAL)
        {
            *self = Panics::default();
        }
    }

    /// Panics counted.
    pub fn count(&self) -> u32 {
        self.count
    }
}

/// The pause before the reload that follows `panics` panics in a row: none after the first,
/// then [`PANIC_RETRY_INTERVAL`], doubling, at most [`MAX_PANIC_RETRY_INTERVAL`].
pub fn panic_pause(panics: u32) -> Duration {
    match panics {
        0 | 1 => Duration::ZERO,
        _ => doubled(PANIC_RETRY_INTERVAL, panics - 2, MAX_PANIC_RETRY_INTERVAL),
    }
}

/// Something that reacts to registry changes once the model has them.
pub trait ChangeListener: Send + Sync {
    /// These records changed (created, updated or deleted), oldest first.
    fn changed(&self, changes: &[Change]);
    /// The model was rebuilt: anything may have changed.
    fn lagged(&self);
}

/// How the follower is woken.
enum Waiter {
    /// Polls every interval (SQLite).
    Poll,
    /// A `LISTEN` connection, or when it is down the time to try again.
    Listen(Option<Box<dyn Wakeups>>, std::time::Instant),
}

/// Opens a `LISTEN` connection (`Store::listen`).
type Listen<'a> = &'a dyn Fn() -> crate::store::StoreResult<Option<Box<dyn Wakeups>>>;

impl Waiter {
    /// Waits for the next catch-up. A panic while waiting (opening or reading the notification
    /// connection) is the connection lost, not the end of the following: the follower polls
    /// and listens again later.
    fn wait_guarded(&mut self, listen: Listen<'_>) {
        let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.wait(listen)));
        if waited.is_err() {
            tracing::error!(
                "waiting for registry changes panicked: polling, and listening again later"
            );
            if let Self::Listen(wakeups, retry_at) = self {
                *wakeups = None;
                *retry_at = std::time::Instant::now() + RELISTEN_INTERVAL;
            }
            std::thread::sleep(FALLBACK_POLL_INTERVAL);
        }
    }

    fn wait(&mut self, listen: Listen<'_>) {
        match self {
            Self::Poll => std::thread::sleep(SQLITE_POLL_INTERVAL),
            Self::Listen(wakeups, retry_at) => {
                if wakeups.is_none() && std::time::Instant::now() >= *retry_at {
                    match listen() {
                        // Listening again: changes committed since the last poll announced
                        // themselves to no one, so catch up now rather than at the next
                        // notification or poll.
                        Ok(Some(opened)) => {
                            *wakeups = Some(opened);
                            return;
                        }
                        Ok(None) => {}
                        Err(err) => {
                            tracing::debug!(error = %err, "cannot listen for changes yet");
                            *retry_at = std::time::Instant::now() + RELISTEN_INTERVAL;
                        }
                    }
                }
                match wakeups {
                    Some(listening) => {
                        if let Err(err) = listening.wait(NOTIFIED_POLL_INTERVAL) {
                            tracing::debug!(error = %err, "lost the change notifications");
                            *wakeups = None;
                            *retry_at = std::time::Instant::now() + RELISTEN_INTERVAL;
                        }
                    }
                    None => std::thread::sleep(FALLBACK_POLL_INTERVAL),
                }
            }
        }
    }
}

/// Starts the follower thread; it runs as long as the process.
pub fn follow(
    store: Arc<dyn Store>,
    model: Arc<ReadModel>,
    listeners: Vec<Arc<dyn ChangeListener>>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("model-follower".to_owned())
        .spawn(move || {
            let mut waiter = match store.listen() {
                Ok(None) => Waiter::Poll,
                Ok(Some(wakeups)) => Waiter::Listen(Some(wakeups), std::time::Instant::now()),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for changes; polling until it can");
                    Waiter::Listen(None, std::time::Instant::now() + RELISTEN_INTERVAL)
                }
            };
            let mut panics = Panics::default();
            let mut failed_reloads = 0_u32;
            loop {
                // A panic while catching up (a bug in applying a change, or in a listener)
                // must not end the following while the server goes on serving what it had: the
                // model is rebuilt at the next wake-up and the listeners told to start over; a
                // panic that repeats waits longer each time (`panic_pause`).
                let followed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    follow_once(store.as_ref(), &model, &listeners);
                }));
                match followed {
                    Ok(()) => {
                        panics.followed(std::time::Instant::now());
                        // A reload still owed failed: the next whole read waits longer each
                        // time (a change log that cannot be read is polled as before).
                        failed_reloads = if model.owes_reload() {
                            failed_reloads.saturating_add(1)
                        } else {
                            0
                        };
                        std::thread::sleep(reload_pause(failed_reloads));
                    }
                    Err(_) => {
                        let pause = panics.panicked(std::time::Instant::now());
                        tracing::error!(
                            times = panics.count(),
                            "following the registry panicked: the model will be reloaded (in {pause:?}) and the listeners told to start over"
                        );
                        model.owe_reload();
                        std::thread::sleep(pause);
                    }
                }
                waiter.wait_guarded(&|| store.listen());
            }
        })
}

/// Catches `model` up once and tells `listeners` what changed.
fn follow_once(store: &dyn Store, model: &ReadModel, listeners: &[Arc<dyn ChangeListener>]) {
    let status = model.status();
    match model.catch_up(store) {
        Ok(outcome) => {
            if !status.store_up() {
                tracing::info!(seq = model.seq(), "the registry answers again: caught up");
                status.set_store_up(true);
            }
            match outcome {
                CatchUp::UpToDate => {}
                CatchUp::Applied(changes) => {
                    tracing::debug!(count = changes.len(), seq = model.seq(), "registry changed");
                    listeners.iter().for_each(|l| l.changed(&changes));
                }
                CatchUp::Reloaded => listeners.iter().for_each(|l| l.lagged()),
            }
        }
        Err(err) => {
            if status.store_up() {
                tracing::warn!(error = %err, "cannot read the registry's change log: serving what is in memory; retrying");
                status.set_store_up(false);
            }
        }
    }
}

#[cfg(test)]
mod tests;
