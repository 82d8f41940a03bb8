//! Following the registry: every admin write appends to the store's change log; running roles
//! poll it and tell their caches (and `all`'s listener set) what changed.

use std::sync::Arc;
use std::time::Duration;

use crate::store::{Change, Store};

/// How often the change log is polled: changes reach running servers within this time.
pub const CHANGE_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Most changes read in one poll; a longer backlog is treated as "everything changed".
pub const MAX_CHANGES_PER_POLL: usize = 10_000;
// A server within this many changes of the newest finds all of them still in the log.
const _: () = assert!(MAX_CHANGES_PER_POLL as i64 <= crate::store::CHANGE_LOG_KEPT);

/// Something that reacts to registry changes.
pub trait ChangeListener: Send + Sync {
    /// These records changed (created, updated or deleted), oldest first.
    fn changed(&self, changes: &[Change]);
    /// Changes were missed (store unreachable for a while, or too many): forget everything.
    fn lagged(&self);
}

/// What one poll of the change log found.
enum Poll {
    /// These changes since the last poll (maybe none).
    Changed(Vec<Change>),
    /// Changes may have been missed: every cache starts over.
    StartOver,
}

/// Polls the change log until the task is dropped.
pub async fn follow(store: Arc<dyn Store>, listeners: Vec<Arc<dyn ChangeListener>>) {
    let mut seen = None;
    let mut failing = false;
    loop {
        let poll_store = store.clone();
        let since = seen;
        let polled = tokio::task::spawn_blocking(move || -> Result<(i64, Poll), String> {
            let last = poll_store.last_change().map_err(|e| e.to_string())?;
            let poll = match since {
                // First poll, or a reset store: start over from here. On the first poll too:
                // whatever was cached before it may predate a change it counts as seen.
                None => Poll::StartOver,
                Some(since) if last < since => Poll::StartOver,
                // A flood, or further behind than the log may still hold: start over.
                Some(since) if last - since > MAX_CHANGES_PER_POLL as i64 => Poll::StartOver,
                Some(since) if last > since => {
                    let changes = poll_store.changes_since(since).map_err(|e| e.to_string())?;
                    if changes.len() > MAX_CHANGES_PER_POLL {
                        Poll::StartOver
                    } else {
                        Poll::Changed(changes)
                    }
                }
                Some(_) => Poll::Changed(Vec::new()),
            };
            Ok((last, poll))
        })
        .await
        .unwrap_or_else(|err| Err(format!("change poll task failed: {err}")));
        match polled {
            Ok((last, poll)) => {
                if failing {
                    tracing::info!("registry reachable again: dropping cached state");
                    listeners.iter().for_each(|l| l.lagged());
                    failing = false;
                }
                match poll {
                    Poll::StartOver => listeners.iter().for_each(|l| l.lagged()),
                    Poll::Changed(changes) if !changes.is_empty() => {
                        tracing::debug!(count = changes.len(), "registry changed");
                        listeners.iter().for_each(|l| l.changed(&changes));
                    }
                    Poll::Changed(_) => {}
                }
                seen = Some(last);
            }
            Err(err) => {
                if !failing {
                    tracing::warn!(error = %err, "cannot read the registry's change log; retrying");
                    failing = true;
                }
            }
        }
        tokio::time::sleep(CHANGE_POLL_INTERVAL).await;
    }
}
