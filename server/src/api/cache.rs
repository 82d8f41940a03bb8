//! Rendered instances kept in memory for a short time (nova: 15 s) and dropped at once when the
//! registry changes them.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::view::InstanceView;
use crate::store::{Change, ChangeKind};
use crate::watch::ChangeListener;

/// nova's `metadata_cache_expiration` default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);
/// Most instances kept at once; past it expired entries are dropped, then everything.
pub const MAX_CACHED_INSTANCES: usize = 4096;

struct Entry {
    loaded: Instant,
    view: Arc<InstanceView>,
}

#[derive(Default)]
struct Inner {
    /// Bumped by every invalidation, so a view loaded before it is never stored after it.
    generation: u64,
    entries: HashMap<String, Entry>,
}

/// The cache of instance views, by uuid.
pub struct ViewCache {
    ttl: Duration,
    inner: RwLock<Inner>,
}

impl ViewCache {
    /// A cache whose entries live `ttl`; a zero TTL disables caching.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            inner: RwLock::new(Inner::default()),
        }
    }

    /// A fresh cached view, and the generation to pass to `insert` after a miss.
    pub fn get(&self, uuid: &str) -> Result<Arc<InstanceView>, u64> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        match inner.entries.get(uuid) {
            Some(entry) if entry.loaded.elapsed() < self.ttl => Ok(entry.view.clone()),
            _ => Err(inner.generation),
        }
    }

    /// Stores a view loaded at `generation`, unless something was invalidated since.
    pub fn insert(&self, uuid: &str, view: Arc<InstanceView>, generation: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if inner.generation != generation {
            return;
        }
        if inner.entries.len() >= MAX_CACHED_INSTANCES {
            let ttl = self.ttl;
            inner
                .entries
                .retain(|_, entry| entry.loaded.elapsed() < ttl);
            if inner.entries.len() >= MAX_CACHED_INSTANCES {
                inner.entries.clear();
            }
        }
        inner.entries.insert(
            uuid.to_owned(),
            Entry {
                loaded: Instant::now(),
                view,
            },
        );
    }

    /// Drops one instance.
    pub fn evict(&self, uuid: &str) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.generation += 1;
        inner.entries.remove(uuid);
    }

    /// Drops everything.
    pub fn clear(&self) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.generation += 1;
        inner.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ChangeListener for ViewCache {
    fn changed(&self, changes: &[Change]) {
        for change in changes {
            match change.kind {
                ChangeKind::Instance => self.evict(&change.id),
                // Ports and networks feed network_data.json and local-ipv4 of any instance.
                ChangeKind::Port | ChangeKind::Network => self.clear(),
                ChangeKind::Router => {}
            }
        }
    }

    fn lagged(&self) {
        self.clear();
    }
}
