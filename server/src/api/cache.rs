//! Rendered instances kept in memory: a pure render cache over the read model. An entry is
//! good while the model still holds the very record it was rendered from (any change to the
//! instance, its ports or its password replaces the record), so there is no TTL and no
//! invalidation to miss.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use uuid::Uuid;

use super::view::InstanceView;
use crate::model::InstanceRecord;

/// Most instances kept rendered at once (a boot storm's guests fit); past it the cache starts
/// over.
pub const MAX_CACHED_INSTANCES: usize = 4096;

struct Entry {
    record: Arc<InstanceRecord>,
    view: Arc<InstanceView>,
}

/// The render cache, by instance uuid.
#[derive(Default)]
pub struct ViewCache {
    entries: RwLock<HashMap<Uuid, Entry>>,
}

impl ViewCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The view rendered from `record`, if it is still the one cached. (The entry holds the
    /// record, so its address cannot be reused by another while it is compared.)
    pub fn get(&self, record: &Arc<InstanceRecord>) -> Option<Arc<InstanceView>> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(&record.uuid)
            .filter(|entry| Arc::ptr_eq(&entry.record, record))
            .map(|entry| entry.view.clone())
    }

    /// Keeps the view rendered from `record`.
    pub fn insert(&self, record: Arc<InstanceRecord>, view: Arc<InstanceView>) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_CACHED_INSTANCES && !entries.contains_key(&record.uuid) {
            entries.clear();
        }
        entries.insert(record.uuid, Entry { record, view });
    }

    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
