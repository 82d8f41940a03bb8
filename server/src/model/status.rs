//! How the read model stands, for `/metrics`: whether the store answers, the change it
//! reflects, how many instances it holds, how often it was rebuilt.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// Gauges and counters the follower updates and `/metrics` shows.
#[derive(Debug)]
pub struct ModelStatus {
    store_up: AtomicBool,
    seq: AtomicI64,
    instances: AtomicU64,
    batches: AtomicU64,
    reloads: AtomicU64,
}

impl Default for ModelStatus {
    fn default() -> Self {
        Self {
            store_up: AtomicBool::new(true),
            seq: AtomicI64::new(0),
            instances: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
        }
    }
}

impl ModelStatus {
    pub fn loaded(&self, seq: i64, instances: usize) {
        self.seq.store(seq, Ordering::Relaxed);
        self.instances.store(instances as u64, Ordering::Relaxed);
    }

    pub fn applied(&self, seq: i64, instances: usize) {
        self.loaded(seq, instances);
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reloaded(&self, seq: i64, instances: usize) {
        self.loaded(seq, instances);
        self.reloads.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the last read of the store's change log succeeded.
    pub fn set_store_up(&self, up: bool) {
        self.store_up.store(up, Ordering::Relaxed);
    }

    pub fn store_up(&self) -> bool {
        self.store_up.load(Ordering::Relaxed)
    }

    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// The Prometheus text of these numbers.
    pub fn render(&self) -> String {
        format!(
            "# TYPE metaboot_store_up gauge\nmetaboot_store_up {}\n\
             # TYPE metaboot_model_change_seq gauge\nmetaboot_model_change_seq {}\n\
             # TYPE metaboot_model_instances gauge\nmetaboot_model_instances {}\n\
             # TYPE metaboot_model_batches_total counter\nmetaboot_model_batches_total {}\n\
             # TYPE metaboot_model_reloads_total counter\nmetaboot_model_reloads_total {}\n",
            u8::from(self.store_up()),
            self.seq.load(Ordering::Relaxed),
            self.instances.load(Ordering::Relaxed),
            self.batches.load(Ordering::Relaxed),
            self.reloads()
        )
    }
}
