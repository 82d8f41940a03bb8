//! An optional per-guest rate limit (Neutron's `[metadata_rate_limiting]`, off by default):
//! at most `limit` requests per `window` from one address; past it, 429.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Guests tracked at once; past it, finished windows are dropped.
pub const MAX_TRACKED_GUESTS: usize = 65_536;
/// Neutron's default window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// Fixed-window counters per guest address.
pub struct RateLimit {
    limit: u32,
    window: Duration,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RateLimit {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request; false when the guest is over its limit.
    pub fn allow(&self, guest: IpAddr) -> bool {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        if windows.len() >= MAX_TRACKED_GUESTS {
            let window = self.window;
            windows.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let (start, count) = windows.entry(guest).or_insert((now, 0));
        if now.duration_since(*start) >= self.window {
            *start = now;
            *count = 0;
        }
        *count += 1;
        *count <= self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_guest_separately_and_resets() {
        let limit = RateLimit::new(3, Duration::from_millis(50));
        let a: IpAddr = "198.18.0.10".parse().unwrap();
        let b: IpAddr = "198.18.0.11".parse().unwrap();
        assert!(limit.allow(a) && limit.allow(a) && limit.allow(a));
        assert!(!limit.allow(a));
        assert!(limit.allow(b));
        std::thread::sleep(Duration::from_millis(60));
        assert!(limit.allow(a));
    }
}
