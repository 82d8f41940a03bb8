//! Following the registry: every admin write appends to the store's change log; running roles
//! poll it and tell their caches (and `all`'s listener set) what changed.

use std::sync::Arc;
use std::time::Duration;

use crate::store::{Change, Store};

/// How often the change log is polled: changes reach running servers within this time.
pub const CHANGE_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Most changes read in one poll; a longer backlog is treated as "everything changed".
pub const MAX_CHANGES_PER_POLL: usize = 10_000;

/// Something that reacts to registry changes.
pub trait ChangeListener: Send + Sync {
    /// These records changed (created, updated or deleted), oldest first.
    fn changed(&self, changes: &[Change]);
    /// Changes were missed (store unreachable for a while, or too many): forget everything.
    fn lagged(&self);
}

/// Polls the change log until the task is dropped.
pub async fn follow(store: Arc<dyn Store>, listeners: Vec<Arc<dyn ChangeListener>>) {
    let mut seen = None;
    let mut failing = false;
    loop {
        let poll_store = store.clone();
        let since = seen;
        let polled = tokio::task::spawn_blocking(move || -> Result<(i64, Vec<Change>), String> {
            let last = poll_store.last_change().map_err(|e| e.to_string())?;
            match since {
                Some(since) if last > since => {
                    let changes = poll_store.changes_since(since).map_err(|e| e.to_string())?;
                    Ok((last, changes))
                }
                _ => Ok((last, Vec::new())),
            }
        })
        .await
        .unwrap_or_else(|err| Err(format!("change poll task failed: {err}")));
        match polled {
            Ok((last, changes)) => {
                if failing {
                    tracing::info!("registry reachable again: dropping cached state");
                    listeners.iter().for_each(|l| l.lagged());
                    failing = false;
                }
                if seen.is_none_or(|since| last < since) || changes.len() > MAX_CHANGES_PER_POLL {
                    // First poll, a reset store, or a flood: start over from here. On the first
                    // poll too: whatever was cached before it may predate a change it counts
                    // as seen.
                    listeners.iter().for_each(|l| l.lagged());
                } else if !changes.is_empty() {
                    tracing::debug!(count = changes.len(), "registry changed");
                    listeners.iter().for_each(|l| l.changed(&changes));
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
