//! The one retry driver of the server's listeners, with its bounds: `all`'s reconcile loop
//! and a standalone `ns-proxy` (`proxy/addresses.rs`) try a listener whose serving ended, a
//! host bridge that could not be served, or an address no interface holds yet again after a
//! wait that starts at one pass and doubles with each failure in a row, up to a cap (the
//! shape of afterburn's `Retry`, kept per listener since a loop serves many at once). The
//! loops themselves still look every pass for what appears (a namespace or bridge made, an
//! address freed); only attempts that failed or ended wait here.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Wait after the first failure: one reconcile pass (`supervisor::RECONCILE_INTERVAL`).
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest wait between two attempts: a listener that can be served again is, within this
/// (well inside cloud-init's 120 s of asking).
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// The wait after `failures` failures in a row (at least one counts as one):
/// [`BACKOFF_BASE`], doubling, at most [`BACKOFF_CAP`].
pub fn delay(failures: u32) -> Duration {
    doubled(BACKOFF_BASE, failures.saturating_sub(1), BACKOFF_CAP)
}

/// `base` doubled `doublings` times (at most 16), at most `cap`: the one shape of every backoff
/// of the crate (this driver's, and the registry follower's pauses in `follow.rs`).
pub fn doubled(base: Duration, doublings: u32, cap: Duration) -> Duration {
    base.saturating_mul(1 << doublings.min(16)).min(cap)
}

/// Failures in a row of one key, and when it may be tried again.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    failures: u32,
    until: Instant,
}

/// The keys (listeners) that failed, each waiting out its own backoff.
#[derive(Debug)]
pub struct Backoff<K> {
    waiting: HashMap<K, Waiting>,
}

impl<K> Default for Backoff<K> {
    fn default() -> Self {
        Self {
            waiting: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash> Backoff<K> {
    /// Whether `key` may be tried at `now`: it never failed, or its wait is over.
    pub fn is_due(&self, key: &K, now: Instant) -> bool {
        self.waiting
            .get(key)
            .is_none_or(|waiting| now >= waiting.until)
    }

    /// Records one more failure of `key` at `now`; returns the wait before its next attempt.
    pub fn failed(&mut self, key: K, now: Instant) -> Duration {
        let failures = self
            .waiting
            .get(&key)
            .map_or(1, |waiting| waiting.failures.saturating_add(1));
        let wait = delay(failures);
        self.waiting.insert(
            key,
            Waiting {
                failures,
                until: now + wait,
            },
        );
        wait
    }

    /// Failures in a row of `key` so far.
    pub fn failures(&self, key: &K) -> u32 {
        self.waiting.get(key).map_or(0, |waiting| waiting.failures)
    }

    /// `key` works again: its next failure waits [`BACKOFF_BASE`] again.
    pub fn succeeded(&mut self, key: &K) {
        self.waiting.remove(key);
    }

    /// Forgets the keys `keep` refuses (no longer wanted).
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.waiting.retain(|key, _| keep(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_from_one_pass_up_to_the_cap() {
        let waits: Vec<u64> = (0..=7).map(|n| delay(n).as_secs()).collect();
        assert_eq!(waits, [1, 1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(delay(u32::MAX), BACKOFF_CAP);
        assert!(BACKOFF_BASE <= BACKOFF_CAP);
    }

    #[test]
    fn a_key_waits_after_each_failure_and_starts_over_once_it_works() {
        let start = Instant::now();
        let mut backoff = Backoff::default();
        assert!(backoff.is_due(&"br0", start));
        assert_eq!(backoff.failed("br0", start), Duration::from_secs(1));
        assert!(!backoff.is_due(&"br0", start));
        assert!(backoff.is_due(&"br1", start), "another key is not held up");
        let later = start + Duration::from_secs(1);
        assert!(backoff.is_due(&"br0", later));
        assert_eq!(backoff.failed("br0", later), Duration::from_secs(2));
        assert!(!backoff.is_due(&"br0", later + Duration::from_millis(1999)));
        assert!(backoff.is_due(&"br0", later + Duration::from_secs(2)));
        assert_eq!(backoff.failures(&"br0"), 2);
        backoff.succeeded(&"br0");
        assert_eq!(backoff.failures(&"br0"), 0);
        assert_eq!(backoff.failed("br0", later), Duration::from_secs(1));
        backoff.retain(|key| *key != "br0");
        assert!(backoff.is_due(&"br0", later));
    }
}
